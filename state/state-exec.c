/* state-exec.c - the bottom of state/: which database, and one
 * statement on the pool with the store's timeout, its failure logged once
 * here.  The other files of state/ stand on it.
 */
#include "config.h"

#include "lmtpd-util.h"
#include "state-private.h"

const char *
state_conninfo (const LmtpdConfig *config, const char **password)
{
  if (config->state_pgsql_conninfo && config->state_pgsql_conninfo[0])
    {
      *password = NULL;  /* in the string, or in PGPASSFILE / ~/.pgpass */
      return config->state_pgsql_conninfo;
    }
  *password = config->users_pgsql_password;
  return config->users_pgsql_conninfo ? config->users_pgsql_conninfo : "";
}

PGresult *
state_exec (StateStore *s, const char *sql, int n, const char *const *values, ExecStatusType want)
{
  g_autoptr (GError) error = NULL;
  PGresult *r = util_pg_exec (s->pool, sql, n, values, want, s->timeout_ms, &error);

  if (r == NULL)
    {
      g_autofree char *why = util_sanitize (error->message, 300);
      g_warning ("shared state: %s", why);
    }
  return r;
}

PGresult *
state_run (StateStore *s, StateSql id, int n, const char *const *values, ExecStatusType want)
{
  g_autoptr (GError) error = NULL;
  PGresult *r = util_pg_exec_prepared (s->pool, state_statements[id].name, n, values, want, s->timeout_ms, &error);

  if (r == NULL)
    {
      g_autofree char *why = util_sanitize (error->message, 300);
      g_warning ("shared state: %s", why);
    }
  return r;
}
