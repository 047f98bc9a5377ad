/* dir-pgsql.c - the "pgsql" backend: one query to PostgreSQL through
 * libpq, with the address as parameters ($1 the address, $2 the local
 * part, $3 the domain), never spliced into the SQL.
 *
 * The connections are util-pgsql.c's pool (made lazily, so lmtpd starts
 * while the database is down; dropped on any failure, so a restarted
 * server is found again; every wait bounded by the lookup timeout).  Each
 * new connection prepares the query once.  Several hosts ("host=a,b" or
 * "postgresql://a,b/db") are libpq's own failover.
 */
#include "config.h"

#include <string.h>

#include "dir-pgsql.h"
#include "util-pgsql.h"

#define POOL_MAX UTIL_PG_POOL_MAX
#define STATEMENT "lmtpd_user"
#define PASSWORD_STATEMENT "lmtpd_password"  /* [users] pgsql_password_query, for logins */
#define TEXTOID 25              /* the parameters are text (catalog/pg_type_d.h) */

typedef struct {
  char *query;
  char *password_query;       /* or NULL */
  UtilPgPool *pool;
} PgDirectory;

/* What each new connection is told before its first lookup (after its
 * statement timeout): the queries, prepared. */
static gboolean
set_up (PGconn *conn, gpointer data, gint64 deadline, GError **error)
{
  static const Oid types[3] = { TEXTOID, TEXTOID, TEXTOID };
  PgDirectory *pg = data;
  PGresult *r;

  if (!PQsendPrepare (conn, STATEMENT, pg->query, 3, types))
    {
      util_pg_set_error (error, "pgsql_query", PQerrorMessage (conn));
      return FALSE;
    }
  r = util_pg_await (conn, PGRES_COMMAND_OK, "pgsql_query (a configuration error)", deadline, error);
  PQclear (r);
  if (r == NULL || pg->password_query == NULL)
    return r != NULL;
  if (!PQsendPrepare (conn, PASSWORD_STATEMENT, pg->password_query, 3, types))
    {
      util_pg_set_error (error, "pgsql_password_query", PQerrorMessage (conn));
      return FALSE;
    }
  r = util_pg_await (conn, PGRES_COMMAND_OK, "pgsql_password_query (a configuration error)", deadline, error);
  PQclear (r);
  return r != NULL;
}

/* ---- the backend --------------------------------------------------------- */

static gpointer
pgsql_open (const LmtpdConfig *config, GError **error)
{
  char *why = NULL;
  PQconninfoOption *parsed = PQconninfoParse (config->users_pgsql_conninfo ? config->users_pgsql_conninfo : "", &why);
  PgDirectory *pg;

  if (parsed == NULL)
    {
      util_pg_set_error (error, "[users] pgsql_conninfo", why ? why : "out of memory");
      PQfreemem (why);
      return NULL;
    }
  PQconninfoFree (parsed);
  pg = g_new0 (PgDirectory, 1);
  pg->query = g_strdup (config->users_pgsql_query);
  pg->password_query = g_strdup (config->users_pgsql_password_query);
  pg->pool = util_pg_pool_new (config->users_pgsql_conninfo, config->users_pgsql_password, set_up, pg);
  return pg;
}

static void
pgsql_close (gpointer backend)
{
  PgDirectory *pg = backend;

  /* the directory is closed when its last lookup has ended: all idle */
  util_pg_pool_free (pg->pool);
  g_free (pg->query);
  g_free (pg->password_query);
  g_free (pg);
}

/* The answer of @statement for @address on @conn, or NULL with @error. */
static PGresult *
ask_statement (PGconn *conn, const char *statement, const char *address, gint64 deadline, GError **error)
{
  const char *at = strrchr (address, '@');
  g_autofree char *local = at ? g_strndup (address, at - address) : g_strdup (address);
  const char *values[3] = { address, local, at ? at + 1 : "" };

  if (!PQsendQueryPrepared (conn, statement, 3, values, NULL, NULL, 0))
    {
      util_pg_set_error (error, "query", PQerrorMessage (conn));
      return NULL;
    }
  return util_pg_await (conn, PGRES_TUPLES_OK, "query", deadline, error);
}

static PGresult *
ask (PGconn *conn, const char *address, gint64 deadline, GError **error)
{
  return ask_statement (conn, STATEMENT, address, deadline, error);
}

/* One try on a connection of the pool; *@stale: it was an idle one that
 * the server had closed (restarted, or idle too long). */
static DirectoryResult
try_lookup (PgDirectory *pg, const char *address, guint timeout_ms, gint64 deadline, gboolean *stale,
            DirectoryUser **out, GError **error)
{
  gboolean reused = FALSE;
  PGconn *conn = util_pg_pool_take (pg->pool, timeout_ms, deadline, &reused, error);
  PGresult *res;
  DirectoryResult r;

  *stale = FALSE;
  if (conn == NULL)
    return DIRECTORY_TEMPFAIL;
  if ((res = ask (conn, address, deadline, error)) == NULL)
    {
      *stale = reused && PQstatus (conn) == CONNECTION_BAD;
      util_pg_pool_drop (pg->pool, conn);
      return DIRECTORY_TEMPFAIL;
    }
  r = pgsql_row_user (res, address, out, error);
  PQclear (res);
  util_pg_pool_give (pg->pool, conn);
  return r;
}

/* A pooled connection the server has closed costs one more try, on
 * another or a new connection, rather than a 451: after a restart of the
 * server each idle connection would fail once. */
static DirectoryResult
pgsql_lookup (gpointer backend, const char *address, guint timeout_ms, DirectoryUser **out, GError **error)
{
  PgDirectory *pg = backend;
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  g_autoptr (GError) failure = NULL;
  gboolean stale = TRUE;
  DirectoryResult r = DIRECTORY_TEMPFAIL;

  for (guint i = 0; i <= POOL_MAX && stale && g_get_monotonic_time () < deadline; i++)
    {
      g_clear_error (&failure);
      r = try_lookup (pg, address, timeout_ms, deadline, &stale, out, &failure);
    }
  if (r == DIRECTORY_TEMPFAIL)
    g_propagate_error (error, failure ? g_steal_pointer (&failure)
                                      : g_error_new_literal (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                                             "pgsql: no time left for the lookup"));
  return r;
}

/* pgsql_password_query's first column of its one row: the stored hash
 * (no row or NULL: no login; more rows: a configuration error). */
static DirectoryResult
password_row (const PGresult *res, const char *password, GError **error)
{
  g_autoptr (GError) bad = NULL;

  if (PQntuples (res) > 1)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "pgsql_password_query gave %d rows", PQntuples (res));
      return DIRECTORY_TEMPFAIL;
    }
  if (PQntuples (res) == 0 || PQnfields (res) < 1 || PQgetisnull (res, 0, 0))
    return DIRECTORY_UNKNOWN;
  if (directory_password_verify (PQgetvalue (res, 0, 0), password, &bad))
    return DIRECTORY_FOUND;
  if (bad)
    g_warning ("pgsql_password_query: %s", bad->message);
  return DIRECTORY_UNKNOWN;
}

/* One try, as lookups make it: a pooled connection found closed is tried
 * once more. */
static DirectoryResult
pgsql_authenticate (gpointer backend, const char *address, const char *password, guint timeout_ms,
                    GError **error)
{
  PgDirectory *pg = backend;
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  DirectoryResult r = DIRECTORY_TEMPFAIL;
  gboolean reused = TRUE;

  if (pg->password_query == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "[users] pgsql_password_query is not set");
      return DIRECTORY_TEMPFAIL;
    }
  for (guint i = 0; i <= POOL_MAX && reused; i++)
    {
      PGconn *conn = util_pg_pool_take (pg->pool, timeout_ms, deadline, &reused, error);
      PGresult *res = conn ? ask_statement (conn, PASSWORD_STATEMENT, address, deadline, error) : NULL;
      if (res == NULL)
        {
          reused = conn && reused && PQstatus (conn) == CONNECTION_BAD;
          if (conn)
            util_pg_pool_drop (pg->pool, conn);
          if (reused)
            g_clear_error (error);
          continue;
        }
      r = password_row (res, password, error);
      PQclear (res);
      util_pg_pool_give (pg->pool, conn);
      break;
    }
  return r;
}

const DirectoryBackend directory_backend_pgsql = {
  "pgsql", TRUE, pgsql_open, pgsql_lookup, pgsql_close, pgsql_authenticate,
};
