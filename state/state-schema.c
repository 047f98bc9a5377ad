/* state-schema.c - the schema of the shared state (lmtpd --init-db) and
 * the expiry of its old rows.
 *
 * Migrations are numbered; lmtpd_schema_version holds the last one
 * applied.  --init-db applies the missing ones in one transaction under
 * an advisory lock, so it can run twice, or on two nodes at once.  The
 * SQL is docs/cluster.md's, word for word.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "records-private.h"
#include "state-private.h"

#define INIT_TIMEOUT_MS 30000
#define EXPIRE_BATCH "5000"   /* rows a table a call: a long backlog goes in steps */
#define SCHEMA_LOCK "7421180" /* pg_advisory_xact_lock key: "lmtpd" */

/* Migration 1: the duplicate journal, the vacation log, the Sieve
 * duplicate ids and the nodes. */
static const char *const migration_1[] = {
  "CREATE TABLE lmtpd_duplicates (key text PRIMARY KEY, path text, confirmed boolean NOT NULL,"
  " intended timestamptz, expires timestamptz NOT NULL)",
  "CREATE INDEX lmtpd_duplicates_expires ON lmtpd_duplicates (expires)",
  "CREATE TABLE lmtpd_vacation (address text NOT NULL, handle text NOT NULL, sender text NOT NULL,"
  " expires timestamptz NOT NULL, PRIMARY KEY (address, handle, sender))",
  "CREATE INDEX lmtpd_vacation_expires ON lmtpd_vacation (expires)",
  "CREATE TABLE lmtpd_sieve_ids (address text NOT NULL, key text NOT NULL, expires timestamptz NOT NULL,"
  " PRIMARY KEY (address, key))",
  "CREATE INDEX lmtpd_sieve_ids_expires ON lmtpd_sieve_ids (expires)",
  "CREATE TABLE lmtpd_nodes (name text PRIMARY KEY, lmtp_address text NOT NULL,"
  " state text NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'draining', 'down')), heartbeat timestamptz)",
  NULL,
};

/* Migration 2: the records of issue 19 (records-schema.c) */
static const char *const *const migrations[] = { migration_1, records_schema };

static gboolean
run_for (PGconn *conn, const char *sql, ExecStatusType want, gint64 deadline, GError **error)
{
  PGresult *r;

  if (!PQsendQueryParams (conn, sql, 0, NULL, NULL, NULL, NULL, 0))
    {
      util_pg_set_error (error, "init-db", PQerrorMessage (conn));
      return FALSE;
    }
  r = util_pg_await (conn, want, "init-db", deadline, error);
  PQclear (r);
  return r != NULL;
}

static int
current_version (PGconn *conn, gint64 deadline, GError **error)
{
  PGresult *r;
  int v = -1;

  if (!PQsendQueryParams (conn, "SELECT coalesce(max(version), 0) FROM lmtpd_schema_version", 0, NULL, NULL, NULL,
                          NULL, 0))
    {
      util_pg_set_error (error, "init-db", PQerrorMessage (conn));
      return -1;
    }
  if ((r = util_pg_await (conn, PGRES_TUPLES_OK, "init-db", deadline, error)) == NULL)
    return -1;
  if (PQntuples (r) == 1)
    v = atoi (PQgetvalue (r, 0, 0));
  PQclear (r);
  return v;
}

static gboolean
run (PGconn *conn, const char *sql, gint64 deadline, GError **error)
{
  return run_for (conn, sql, PGRES_COMMAND_OK, deadline, error);
}

/* Inside the transaction: the missing migrations, each recorded. */
static gboolean
migrate (PGconn *conn, gint64 deadline, GError **error)
{
  int v;

  /* first the lock: a second --init-db waits here, then finds it done */
  if (!run_for (conn, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK ")", PGRES_TUPLES_OK, deadline, error))
    return FALSE;
  if (!run (conn, "CREATE TABLE IF NOT EXISTS lmtpd_schema_version (version integer PRIMARY KEY,"
                  " applied timestamptz NOT NULL DEFAULT now())", deadline, error)
      || (v = current_version (conn, deadline, error)) < 0)
    return FALSE;
  for (guint m = (guint) v; m < G_N_ELEMENTS (migrations); m++)
    {
      g_autofree char *done = g_strdup_printf ("INSERT INTO lmtpd_schema_version (version) VALUES (%u)", m + 1);
      for (guint i = 0; migrations[m][i]; i++)
        if (!run (conn, migrations[m][i], deadline, error))
          return FALSE;
      if (!run (conn, done, deadline, error))
        return FALSE;
      g_message ("shared state: schema migration %u applied", m + 1);
    }
  return TRUE;
}

gboolean
state_init_db (const LmtpdConfig *config, GError **error)
{
  const char *password = NULL;
  const char *conninfo = state_conninfo (config, &password);
  UtilPgPool *pool;
  gint64 deadline = g_get_monotonic_time () + (gint64) INIT_TIMEOUT_MS * 1000;
  gboolean reused, ok = FALSE;
  PGconn *conn;

  if (conninfo[0] == '\0')
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "no PostgreSQL: set [state] pgsql_conninfo (or [users] pgsql_conninfo)");
      return FALSE;
    }
  pool = util_pg_pool_new (conninfo, password, NULL, NULL);
  conn = util_pg_pool_take (pool, INIT_TIMEOUT_MS, deadline, &reused, error);

  if (conn)
    {
      ok = run (conn, "BEGIN", deadline, error) && migrate (conn, deadline, error)
           && run (conn, "COMMIT", deadline, error);
      util_pg_pool_drop (pool, conn);
    }
  util_pg_pool_free (pool);
  return ok;
}

/* Bounded: at most EXPIRE_BATCH rows a table a call, by the expiry
 * index; what is left goes next time. */
void
state_expire (StateStore *s)
{
  static const char *const tables[] = { "lmtpd_duplicates", "lmtpd_vacation", "lmtpd_sieve_ids" };

  for (guint i = 0; i < G_N_ELEMENTS (tables); i++)
    {
      g_autofree char *sql = g_strdup_printf ("DELETE FROM %s WHERE ctid = ANY (ARRAY (SELECT ctid FROM %s"
                                              " WHERE expires < now() LIMIT " EXPIRE_BATCH "))",
                                              tables[i], tables[i]);
      PGresult *r = state_exec (s, sql, 0, NULL, PGRES_COMMAND_OK);
      PQclear (r);
    }
}
