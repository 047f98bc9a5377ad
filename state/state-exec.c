/* state-exec.c - the bottom of state/: which database, and one
 * statement on the pool with the store's timeout, its failure logged once
 * here.  The other files of state/ stand on it.
 */
#include "config.h"

#include "lmtpd-util.h"
#include "state-private.h"

#define WARN_EVERY 10 /* seconds */

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

/* A failing database fails every delivery: its error is logged when it
 * starts, then at most every WARN_EVERY seconds with the count in
 * between, and its end once. */
static void
note (StateStore *s, const GError *error)
{
  gint64 now = g_get_monotonic_time ();
  g_autofree char *why = error ? util_sanitize (error->message, 300) : NULL;

  g_mutex_lock (&s->warn_lock);
  if (error == NULL && s->failures > 0)
    {
      g_message ("shared state: PostgreSQL answers again (%u failures)", s->failures);
      s->failures = 0;
    }
  else if (error && (s->failures++ == 0 || now - s->warned >= WARN_EVERY * G_USEC_PER_SEC))
    {
      g_warning ("shared state: %s (%u failures so far)", why, s->failures);
      s->warned = now;
    }
  g_mutex_unlock (&s->warn_lock);
}

PGresult *
state_exec (StateStore *s, const char *sql, int n, const char *const *values, ExecStatusType want)
{
  g_autoptr (GError) error = NULL;
  PGresult *r = util_pg_exec (s->pool, sql, n, values, want, s->timeout_ms, &error);

  note (s, error);
  return r;
}

PGresult *
state_run (StateStore *s, StateSql id, int n, const char *const *values, ExecStatusType want)
{
  g_autoptr (GError) error = NULL;
  PGresult *r = util_pg_exec_prepared (s->pool, state_statements[id].name, n, values, want, s->timeout_ms, &error);

  note (s, error);
  return r;
}
