/* util-pgsql.h - a small pool of PostgreSQL connections with every wait
 * bounded, shared by the directory's pgsql backend (directory/dir-pgsql.c)
 * and the shared state (state/).  Apart from lmtpd-util.h so that only the
 * parts that talk to PostgreSQL see libpq.
 */
#pragma once

#include <gio/gio.h>
#include <libpq-fe.h>

G_BEGIN_DECLS

#define UTIL_PG_POOL_MAX 4

/* What a new connection is told after its statement_timeout (prepared
 * statements, say); FALSE with @error drops it. */
typedef gboolean (*UtilPgSetup) (PGconn *conn, gpointer data, gint64 deadline, GError **error);

/* A statement util_pg_pool_prepare() prepares on each new connection. */
typedef struct {
  const char *name;
  const char *sql;
} UtilPgStatement;

typedef struct UtilPgPool UtilPgPool;

/* Connections are made lazily (a pool on a dead server is no error).
 * @password may be NULL; @setup may be NULL. */
UtilPgPool *util_pg_pool_new (const char *conninfo, const char *password, UtilPgSetup setup, gpointer data);
/* Each new connection prepares @statements (a static array ending with
 * a NULL name) and runs @settings (SQL, or NULL) before its first use. */
void util_pg_pool_prepare (UtilPgPool *pool, const UtilPgStatement *statements, const char *settings);
/* Once no connection is taken. */
void util_pg_pool_free (UtilPgPool *pool);

/* A connection: an idle one (*@reused), else a new one while there is
 * room (connect_timeout from @timeout_ms, statement_timeout @timeout_ms),
 * else the first one given back before @deadline (monotonic). */
PGconn *util_pg_pool_take (UtilPgPool *pool, guint timeout_ms, gint64 deadline, gboolean *reused, GError **error);
/* Back to the pool; a broken connection or one inside a transaction is
 * closed instead. */
void util_pg_pool_give (UtilPgPool *pool, PGconn *conn);
/* Closes @conn (may be NULL) and gives its place back. */
void util_pg_pool_drop (UtilPgPool *pool, PGconn *conn);

/* The first result of what was sent on the (non-blocking) @conn once the
 * server has said all of it; NULL with @error if that takes past
 * @deadline or the result is not @want. */
PGresult *util_pg_await (PGconn *conn, ExecStatusType want, const char *what, gint64 deadline, GError **error);

/* One statement with text parameters: on a pooled connection the server
 * had closed (after its restart), tried again on another.  NULL with
 * @error if it fails or takes longer than @timeout_ms. */
PGresult *util_pg_exec (UtilPgPool *pool, const char *sql, int n, const char *const *values, ExecStatusType want,
                        guint timeout_ms, GError **error);

/* Likewise, a statement of util_pg_pool_prepare() by its name. */
PGresult *util_pg_exec_prepared (UtilPgPool *pool, const char *name, int n, const char *const *values,
                                 ExecStatusType want, guint timeout_ms, GError **error);

/* libpq's @message on one line, as "pgsql: WHAT: MESSAGE". */
void util_pg_set_error (GError **error, const char *what, const char *message);

G_END_DECLS
