/* dir-pgsql.c - the "pgsql" backend: one query to PostgreSQL through
 * libpq, with the address as parameters ($1 the address, $2 the local
 * part, $3 the domain), never spliced into the SQL.
 *
 * A few connections are kept in a pool and made lazily, so lmtpd starts
 * while the database is down.  Each new connection gets its
 * statement_timeout and prepares the query once; a connection that fails
 * in any way is dropped and the next lookup makes a new one, so a
 * restarted server is found again without restarting lmtpd.  Several hosts
 * ("host=a,b" or "postgresql://a,b/db") are libpq's own failover.
 *
 * Every wait is bounded by the lookup timeout: connecting by libpq's
 * connect_timeout (per host, whole seconds, at least 2), the query by the
 * server's statement_timeout and, should the server stop answering
 * altogether, by polling the socket until the deadline.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#include "dir-pgsql.h"

#define POOL_MAX 4
#define STATEMENT "lmtpd_user"
#define PASSWORD_STATEMENT "lmtpd_password"  /* [users] pgsql_password_query, for logins */
#define TEXTOID 25              /* the parameters are text (catalog/pg_type_d.h) */

typedef struct {
  char *conninfo;
  char *password;             /* from pgsql_password_file, or NULL */
  char *query;
  char *password_query;       /* or NULL */

  GMutex lock;
  GCond returned;             /* a connection came back to the pool */
  PGconn *idle[POOL_MAX];
  guint n_idle;
  guint n_open;               /* idle, in use, or being made */
} PgDirectory;

/* libpq's message on one line (with several hosts it has one per host). */
static void
set_pg_error (GError **error, const char *what, const char *message)
{
  g_autofree char *m = g_strdup (message && message[0] ? message : "unknown error");

  g_strstrip (g_strdelimit (m, "\r\n", ' '));
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "pgsql: %s: %s", what, m);
}

/* ---- waiting on the socket, up to a deadline ----------------------------- */

static gboolean
wait_socket (PGconn *conn, short events, gint64 deadline, GError **error)
{
  struct pollfd p = { PQsocket (conn), events, 0 };
  int rc;

  do
    {
      gint64 left_ms = (deadline - g_get_monotonic_time () + 999) / 1000;
      if (left_ms <= 0)
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "pgsql: the server did not answer in time");
          return FALSE;
        }
      rc = poll (&p, 1, (int) MIN (left_ms, G_MAXINT));
    }
  while (rc < 0 && errno == EINTR);
  if (rc < 0)
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "pgsql: poll: %s", g_strerror (errno));
  return rc >= 0;
}

/* Sends what PQsend* queued (the connection is non-blocking). */
static gboolean
flush_until (PGconn *conn, gint64 deadline, GError **error)
{
  int rc;

  while ((rc = PQflush (conn)) == 1)
    if (!wait_socket (conn, POLLIN | POLLOUT, deadline, error) || !PQconsumeInput (conn))
      break;
  if (rc != 0 && error && *error == NULL)
    set_pg_error (error, "send", PQerrorMessage (conn));
  return rc == 0;
}

/* The result of what was sent, once the server has said all of it; NULL
 * with @error if it does not before @deadline or the result is not
 * @want. */
static PGresult *
await_result (PGconn *conn, ExecStatusType want, const char *what, gint64 deadline, GError **error)
{
  PGresult *first = NULL, *r;

  if (!flush_until (conn, deadline, error))
    return NULL;
  for (;;)
    {
      while (PQisBusy (conn))
        if (!wait_socket (conn, POLLIN, deadline, error) || !PQconsumeInput (conn))
          {
            if (error && *error == NULL)
              set_pg_error (error, what, PQerrorMessage (conn));
            PQclear (first);
            return NULL;
          }
      if ((r = PQgetResult (conn)) == NULL)
        break;
      if (first == NULL)
        first = r;
      else
        PQclear (r);
    }
  if (first && PQresultStatus (first) == want)
    return first;
  set_pg_error (error, what, first ? PQresultErrorMessage (first) : PQerrorMessage (conn));
  PQclear (first);
  return NULL;
}

/* ---- connections --------------------------------------------------------- */

/* What each new connection is told before its first lookup: the
 * statement timeout, and the query, prepared. */
static gboolean
set_up (PgDirectory *pg, PGconn *conn, guint timeout_ms, gint64 deadline, GError **error)
{
  static const Oid types[3] = { TEXTOID, TEXTOID, TEXTOID };
  g_autofree char *ms = g_strdup_printf ("%u", timeout_ms);
  const char *values[1] = { ms };
  PGresult *r;

  if (PQsetnonblocking (conn, 1) != 0
      || !PQsendQueryParams (conn, "SELECT set_config('statement_timeout', $1, false)", 1, types, values, NULL,
                             NULL, 0))
    {
      set_pg_error (error, "statement_timeout", PQerrorMessage (conn));
      return FALSE;
    }
  if ((r = await_result (conn, PGRES_TUPLES_OK, "statement_timeout", deadline, error)) == NULL)
    return FALSE;
  PQclear (r);
  if (!PQsendPrepare (conn, STATEMENT, pg->query, 3, types))
    {
      set_pg_error (error, "pgsql_query", PQerrorMessage (conn));
      return FALSE;
    }
  r = await_result (conn, PGRES_COMMAND_OK, "pgsql_query (a configuration error)", deadline, error);
  PQclear (r);
  if (r == NULL || pg->password_query == NULL)
    return r != NULL;
  if (!PQsendPrepare (conn, PASSWORD_STATEMENT, pg->password_query, 3, types))
    {
      set_pg_error (error, "pgsql_password_query", PQerrorMessage (conn));
      return FALSE;
    }
  r = await_result (conn, PGRES_COMMAND_OK, "pgsql_password_query (a configuration error)", deadline, error);
  PQclear (r);
  return r != NULL;
}

/* A new connection; libpq's connect_timeout counts whole seconds, per
 * host.  The connection string may set its own, which then wins. */
static PGconn *
pgsql_connect (PgDirectory *pg, guint timeout_ms, gint64 deadline, GError **error)
{
  g_autofree char *timeout = g_strdup_printf ("%u", MAX (2u, (timeout_ms + 999) / 1000));
  const char *keys[] = { "connect_timeout", "fallback_application_name", "dbname", "password", NULL };
  const char *values[] = { timeout, "lmtpd", pg->conninfo, pg->password, NULL };
  PGconn *conn = PQconnectdbParams (keys, values, 1);

  if (conn == NULL || PQstatus (conn) != CONNECTION_OK)
    {
      set_pg_error (error, "connect", conn ? PQerrorMessage (conn) : "out of memory");
      PQfinish (conn);
      return NULL;
    }
  if (!set_up (pg, conn, timeout_ms, deadline, error))
    {
      PQfinish (conn);
      return NULL;
    }
  return conn;
}

/* Gives back a connection's place in the pool; @conn (if any) is closed. */
static void
pool_drop (PgDirectory *pg, PGconn *conn)
{
  PQfinish (conn);
  g_mutex_lock (&pg->lock);
  pg->n_open--;
  g_cond_signal (&pg->returned);
  g_mutex_unlock (&pg->lock);
}

static void
pool_give (PgDirectory *pg, PGconn *conn)
{
  if (PQstatus (conn) != CONNECTION_OK || PQtransactionStatus (conn) != PQTRANS_IDLE)
    {
      pool_drop (pg, conn);
      return;
    }
  g_mutex_lock (&pg->lock);
  pg->idle[pg->n_idle++] = conn;
  g_cond_signal (&pg->returned);
  g_mutex_unlock (&pg->lock);
}

/* A connection for one lookup: an idle one (*@reused), else a new one
 * while the pool has room, else the first one given back before
 * @deadline. */
static PGconn *
pool_take (PgDirectory *pg, guint timeout_ms, gint64 deadline, gboolean *reused, GError **error)
{
  PGconn *conn = NULL;
  gboolean make = FALSE;

  g_mutex_lock (&pg->lock);
  while (pg->n_idle == 0 && pg->n_open >= POOL_MAX)
    if (!g_cond_wait_until (&pg->returned, &pg->lock, deadline))
      break;
  if (pg->n_idle > 0)
    conn = pg->idle[--pg->n_idle];
  else if (pg->n_open < POOL_MAX)
    {
      pg->n_open++;
      make = TRUE;
    }
  g_mutex_unlock (&pg->lock);
  *reused = conn != NULL;
  if (make && (conn = pgsql_connect (pg, timeout_ms, deadline, error)) == NULL)
    pool_drop (pg, NULL);
  else if (!make && conn == NULL)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "pgsql: all %d connections stayed busy", POOL_MAX);
  return conn;
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
      set_pg_error (error, "[users] pgsql_conninfo", why ? why : "out of memory");
      PQfreemem (why);
      return NULL;
    }
  PQconninfoFree (parsed);
  pg = g_new0 (PgDirectory, 1);
  pg->conninfo = g_strdup (config->users_pgsql_conninfo ? config->users_pgsql_conninfo : "");
  pg->password = g_strdup (config->users_pgsql_password);
  pg->query = g_strdup (config->users_pgsql_query);
  pg->password_query = g_strdup (config->users_pgsql_password_query);
  g_mutex_init (&pg->lock);
  g_cond_init (&pg->returned);
  return pg;
}

static void
pgsql_close (gpointer backend)
{
  PgDirectory *pg = backend;

  /* the directory is closed when its last lookup has ended: all idle */
  for (guint i = 0; i < pg->n_idle; i++)
    PQfinish (pg->idle[i]);
  g_mutex_clear (&pg->lock);
  g_cond_clear (&pg->returned);
  g_free (pg->conninfo);
  if (pg->password)
    memset (pg->password, 0, strlen (pg->password));
  g_free (pg->password);
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
      set_pg_error (error, "query", PQerrorMessage (conn));
      return NULL;
    }
  return await_result (conn, PGRES_TUPLES_OK, "query", deadline, error);
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
  PGconn *conn = pool_take (pg, timeout_ms, deadline, &reused, error);
  PGresult *res;
  DirectoryResult r;

  *stale = FALSE;
  if (conn == NULL)
    return DIRECTORY_TEMPFAIL;
  if ((res = ask (conn, address, deadline, error)) == NULL)
    {
      *stale = reused && PQstatus (conn) == CONNECTION_BAD;
      pool_drop (pg, conn);
      return DIRECTORY_TEMPFAIL;
    }
  r = pgsql_row_user (res, address, out, error);
  PQclear (res);
  pool_give (pg, conn);
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
      PGconn *conn = pool_take (pg, timeout_ms, deadline, &reused, error);
      PGresult *res = conn ? ask_statement (conn, PASSWORD_STATEMENT, address, deadline, error) : NULL;
      if (res == NULL)
        {
          reused = conn && reused && PQstatus (conn) == CONNECTION_BAD;
          if (conn)
            pool_drop (pg, conn);
          if (reused)
            g_clear_error (error);
          continue;
        }
      r = password_row (res, password, error);
      PQclear (res);
      pool_give (pg, conn);
      break;
    }
  return r;
}

const DirectoryBackend directory_backend_pgsql = {
  "pgsql", TRUE, pgsql_open, pgsql_lookup, pgsql_close, pgsql_authenticate,
};
