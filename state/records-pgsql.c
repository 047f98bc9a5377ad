/* records-pgsql.c - the records in the PostgreSQL the nodes share: the
 * same pool settings as the shared state ([state] pgsql_conninfo,
 * pgsql_timeout), so a slow database fails a call instead of hanging it.
 * The tables come from lmtpd --init-db (migration 2).
 */
#include "config.h"

#include "records-private.h"
#include "state-private.h"

static StateRows *
rows_of (PGresult *res)
{
  StateRows *rows = records_rows_new ((guint) PQnfields (res));

  for (int i = 0; i < PQntuples (res); i++)
    {
      g_autofree char **cells = g_new0 (char *, rows->n_cols);
      for (guint c = 0; c < rows->n_cols; c++)
        cells[c] = PQgetisnull (res, i, (int) c) ? NULL : g_strdup (PQgetvalue (res, i, (int) c));
      records_rows_add (rows, cells);
    }
  return rows;
}

static gboolean
pgsql_run (StateRecords *r, const char *sql, guint n, const char *const *values, guint64 *changed,
           StateRows **rows, GError **error)
{
  /* RETURNING makes rows of a change: ask for what the statement gives */
  ExecStatusType want = rows || g_strrstr (sql, "RETURNING") ? PGRES_TUPLES_OK : PGRES_COMMAND_OK;
  PGresult *res = util_pg_exec (r->db, sql, (int) n, values, want, r->timeout_ms, error);

  if (res == NULL)
    return FALSE;
  if (changed)
    *changed = g_ascii_strtoull (PQcmdTuples (res), NULL, 10);
  if (rows)
    *rows = rows_of (res);
  PQclear (res);
  return TRUE;
}

/* Statement by statement: each commits alone (a batch is traces and
 * counts, and a lost one costs only itself). */
static gboolean
pgsql_batch (StateRecords *r, GPtrArray *stmts, GError **error)
{
  for (guint i = 0; i < stmts->len; i++)
    {
      const RecordsStatement *s = stmts->pdata[i];
      g_autoptr (GError) one = NULL;
      if (!pgsql_run (r, s->sql, s->n, (const char *const *) s->values, NULL, NULL, &one))
        {
          g_propagate_error (error, g_steal_pointer (&one));
          return FALSE;
        }
    }
  return TRUE;
}

static void
pgsql_close (StateRecords *r)
{
  util_pg_pool_free (r->db);
}

static const RecordsBackend pgsql_backend = { pgsql_run, pgsql_batch, pgsql_close };

gboolean
records_pgsql_open (StateRecords *r, const LmtpdConfig *config, GError **error)
{
  const char *password = NULL;
  const char *conninfo = state_conninfo (config, &password);

  if (conninfo[0] == '\0')
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "no PostgreSQL: set [state] pgsql_conninfo (or [users] pgsql_conninfo)");
      return FALSE;
    }
  r->db = util_pg_pool_new (conninfo, password, NULL, NULL);
  r->backend = &pgsql_backend;
  r->timeout_ms = MAX (config->state_pgsql_timeout_ms, 100u);
  return TRUE;
}
