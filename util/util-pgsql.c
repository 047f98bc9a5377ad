/* util-pgsql.c - a few PostgreSQL connections, kept in a pool and made
 * lazily, so a daemon starts while the database is down.  Each new
 * connection gets its statement_timeout and what the user of the pool
 * sets up (prepared statements); a connection that fails in any way is
 * dropped and the next request makes a new one, so a restarted server is
 * found again without a restart.  Several hosts ("host=a,b") are libpq's
 * own failover.
 *
 * Every wait is bounded: connecting by libpq's connect_timeout (per host,
 * whole seconds, at least 2), a statement by the server's
 * statement_timeout and, should the server stop answering altogether, by
 * polling the socket until the deadline.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#include "util-pgsql.h"

#define TEXTOID 25              /* text parameters (catalog/pg_type_d.h) */

struct UtilPgPool {
  char *conninfo;
  char *password;             /* or NULL */
  UtilPgSetup setup;
  gpointer data;
  const UtilPgStatement *statements;  /* or NULL */
  char *settings;             /* or NULL */

  GMutex lock;
  GCond returned;             /* a connection came back to the pool */
  PGconn *idle[UTIL_PG_POOL_MAX];
  guint n_idle;
  guint n_open;               /* idle, in use, or being made */
};

void
util_pg_set_error (GError **error, const char *what, const char *message)
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
    util_pg_set_error (error, "send", PQerrorMessage (conn));
  return rc == 0;
}

PGresult *
util_pg_await (PGconn *conn, ExecStatusType want, const char *what, gint64 deadline, GError **error)
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
              util_pg_set_error (error, what, PQerrorMessage (conn));
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
  util_pg_set_error (error, what, first ? PQresultErrorMessage (first) : PQerrorMessage (conn));
  PQclear (first);
  return NULL;
}

/* ---- connections --------------------------------------------------------- */

static gboolean
prepare_all (UtilPgPool *pool, PGconn *conn, gint64 deadline, GError **error)
{
  PGresult *r;

  if (pool->settings)
    {
      if (!PQsendQueryParams (conn, pool->settings, 0, NULL, NULL, NULL, NULL, 0))
        {
          util_pg_set_error (error, "settings", PQerrorMessage (conn));
          return FALSE;
        }
      if ((r = util_pg_await (conn, PGRES_COMMAND_OK, "settings", deadline, error)) == NULL)
        return FALSE;
      PQclear (r);
    }
  for (const UtilPgStatement *st = pool->statements; st && st->name; st++)
    {
      if (!PQsendPrepare (conn, st->name, st->sql, 0, NULL))
        {
          util_pg_set_error (error, st->name, PQerrorMessage (conn));
          return FALSE;
        }
      if ((r = util_pg_await (conn, PGRES_COMMAND_OK, st->name, deadline, error)) == NULL)
        return FALSE;
      PQclear (r);
    }
  return TRUE;
}

static gboolean
set_up (UtilPgPool *pool, PGconn *conn, guint timeout_ms, gint64 deadline, GError **error)
{
  static const Oid types[1] = { TEXTOID };
  g_autofree char *ms = g_strdup_printf ("%u", timeout_ms);
  const char *values[1] = { ms };
  PGresult *r;

  if (PQsetnonblocking (conn, 1) != 0
      || !PQsendQueryParams (conn, "SELECT set_config('statement_timeout', $1, false)", 1, types, values, NULL,
                             NULL, 0))
    {
      util_pg_set_error (error, "statement_timeout", PQerrorMessage (conn));
      return FALSE;
    }
  if ((r = util_pg_await (conn, PGRES_TUPLES_OK, "statement_timeout", deadline, error)) == NULL)
    return FALSE;
  PQclear (r);
  return prepare_all (pool, conn, deadline, error)
         && (pool->setup == NULL || pool->setup (conn, pool->data, deadline, error));
}

/* A new connection; libpq's connect_timeout counts whole seconds, per
 * host.  The connection string may set its own, which then wins. */
static PGconn *
pool_connect (UtilPgPool *pool, guint timeout_ms, gint64 deadline, GError **error)
{
  g_autofree char *timeout = g_strdup_printf ("%u", MAX (2u, (timeout_ms + 999) / 1000));
  const char *keys[] = { "connect_timeout", "fallback_application_name", "dbname", "password", NULL };
  const char *values[] = { timeout, "lmtpd", pool->conninfo, pool->password, NULL };
  PGconn *conn = PQconnectdbParams (keys, values, 1);

  if (conn == NULL || PQstatus (conn) != CONNECTION_OK)
    {
      util_pg_set_error (error, "connect", conn ? PQerrorMessage (conn) : "out of memory");
      PQfinish (conn);
      return NULL;
    }
  if (!set_up (pool, conn, timeout_ms, deadline, error))
    {
      PQfinish (conn);
      return NULL;
    }
  return conn;
}

void
util_pg_pool_drop (UtilPgPool *pool, PGconn *conn)
{
  PQfinish (conn);
  g_mutex_lock (&pool->lock);
  pool->n_open--;
  g_cond_signal (&pool->returned);
  g_mutex_unlock (&pool->lock);
}

void
util_pg_pool_give (UtilPgPool *pool, PGconn *conn)
{
  if (PQstatus (conn) != CONNECTION_OK || PQtransactionStatus (conn) != PQTRANS_IDLE)
    {
      util_pg_pool_drop (pool, conn);
      return;
    }
  g_mutex_lock (&pool->lock);
  pool->idle[pool->n_idle++] = conn;
  g_cond_signal (&pool->returned);
  g_mutex_unlock (&pool->lock);
}

PGconn *
util_pg_pool_take (UtilPgPool *pool, guint timeout_ms, gint64 deadline, gboolean *reused, GError **error)
{
  PGconn *conn = NULL;
  gboolean make = FALSE;

  g_mutex_lock (&pool->lock);
  while (pool->n_idle == 0 && pool->n_open >= UTIL_PG_POOL_MAX)
    if (!g_cond_wait_until (&pool->returned, &pool->lock, deadline))
      break;
  if (pool->n_idle > 0)
    conn = pool->idle[--pool->n_idle];
  else if (pool->n_open < UTIL_PG_POOL_MAX)
    {
      pool->n_open++;
      make = TRUE;
    }
  g_mutex_unlock (&pool->lock);
  *reused = conn != NULL;
  if (make && (conn = pool_connect (pool, timeout_ms, deadline, error)) == NULL)
    util_pg_pool_drop (pool, NULL);
  else if (!make && conn == NULL)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "pgsql: all %d connections stayed busy",
                 UTIL_PG_POOL_MAX);
  return conn;
}

UtilPgPool *
util_pg_pool_new (const char *conninfo, const char *password, UtilPgSetup setup, gpointer data)
{
  UtilPgPool *pool = g_new0 (UtilPgPool, 1);

  pool->conninfo = g_strdup (conninfo ? conninfo : "");
  pool->password = g_strdup (password);
  pool->setup = setup;
  pool->data = data;
  g_mutex_init (&pool->lock);
  g_cond_init (&pool->returned);
  return pool;
}

void
util_pg_pool_prepare (UtilPgPool *pool, const UtilPgStatement *statements, const char *settings)
{
  pool->statements = statements;
  g_free (pool->settings);
  pool->settings = g_strdup (settings);
}

void
util_pg_pool_free (UtilPgPool *pool)
{
  if (pool == NULL)
    return;
  g_free (pool->settings);
  for (guint i = 0; i < pool->n_idle; i++)
    PQfinish (pool->idle[i]);
  g_mutex_clear (&pool->lock);
  g_cond_clear (&pool->returned);
  g_free (pool->conninfo);
  if (pool->password)
    memset (pool->password, 0, strlen (pool->password));
  g_free (pool->password);
  g_free (pool);
}

/* ---- one statement ------------------------------------------------------- */

static PGresult *
exec_on (PGconn *conn, gboolean prepared, const char *sql, int n, const char *const *values, ExecStatusType want,
         gint64 deadline, GError **error)
{
  if (!(prepared ? PQsendQueryPrepared (conn, sql, n, values, NULL, NULL, 0)
                 : PQsendQueryParams (conn, sql, n, NULL, values, NULL, NULL, 0)))
    {
      util_pg_set_error (error, "query", PQerrorMessage (conn));
      return NULL;
    }
  return util_pg_await (conn, want, prepared ? sql : "query", deadline, error);
}

/* A pooled connection the server has closed costs one more try rather
 * than a failure: after a restart of the server each idle connection
 * would fail once. */
static PGresult *
exec_retried (UtilPgPool *pool, gboolean prepared, const char *sql, int n, const char *const *values,
              ExecStatusType want, guint timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  gboolean reused = TRUE;

  for (guint i = 0; i <= UTIL_PG_POOL_MAX && reused; i++)
    {
      g_autoptr (GError) failure = NULL;
      PGconn *conn = util_pg_pool_take (pool, timeout_ms, deadline, &reused, &failure);
      PGresult *res = conn ? exec_on (conn, prepared, sql, n, values, want, deadline, &failure) : NULL;
      if (res)
        {
          util_pg_pool_give (pool, conn);
          return res;
        }
      reused = conn && reused && PQstatus (conn) == CONNECTION_BAD && g_get_monotonic_time () < deadline;
      if (conn)
        util_pg_pool_drop (pool, conn);
      if (!reused)
        g_propagate_error (error, g_steal_pointer (&failure));
    }
  return NULL;
}

PGresult *
util_pg_exec (UtilPgPool *pool, const char *sql, int n, const char *const *values, ExecStatusType want,
              guint timeout_ms, GError **error)
{
  return exec_retried (pool, FALSE, sql, n, values, want, timeout_ms, error);
}

PGresult *
util_pg_exec_prepared (UtilPgPool *pool, const char *name, int n, const char *const *values, ExecStatusType want,
                       guint timeout_ms, GError **error)
{
  return exec_retried (pool, TRUE, name, n, values, want, timeout_ms, error);
}
