/* state.c - the shared state's store (backend pgsql) and its three
 * tables of delivery state: the duplicate journal, the vacation reply log
 * and the Sieve duplicate ids (the statements: state-sql.c).
 *
 * The commits are synchronous (the server's synchronous_commit): with it
 * off, a crash of the server loses its last fraction of a second of
 * intents, and a retry of those messages is delivered twice (the test
 * that stops PostgreSQL showed it).
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"
#include "state-private.h"

StateStore *
state_store_open (const LmtpdConfig *config, GError **error)
{
  StateStore *s;
  const char *password = NULL;
  const char *conninfo = state_conninfo (config, &password);

  if (config->state_backend != LMTPD_STATE_PGSQL)
    return NULL;
  if (conninfo[0] == '\0')
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "[state] backend pgsql: no pgsql_conninfo in [state] or [users]");
      return NULL;
    }
  s = g_new0 (StateStore, 1);
  s->pool = util_pg_pool_new (conninfo, password, NULL, NULL);
  util_pg_pool_prepare (s->pool, state_statements, NULL);
  s->timeout_ms = MAX (config->state_pgsql_timeout_ms, 100u);
  s->window = config->duplicate_window;
  /* an intent older than a delivery may take is a dead node's */
  s->claim_timeout = config->delivery_timeout + 5;
  s->fall_back = config->state_on_error_local;
  s->node_timeout = config->cluster_node_timeout;
  g_mutex_init (&s->nodes_lock);
  g_mutex_init (&s->beat_lock);
  g_cond_init (&s->beat_stop);
  g_mutex_init (&s->warn_lock);
  g_mutex_init (&s->confirm_lock);
  g_cond_init (&s->confirm_wake);
  s->confirm_queue = g_ptr_array_new_with_free_func (g_free);
  return s;
}

void
state_store_free (StateStore *s)
{
  if (s == NULL)
    return;
  state_nodes_stop (s);
  state_confirm_stop (s);
  util_pg_pool_free (s->pool);
  g_ptr_array_unref (s->confirm_queue);
  g_mutex_clear (&s->warn_lock);
  g_mutex_clear (&s->confirm_lock);
  g_cond_clear (&s->confirm_wake);
  g_clear_pointer (&s->nodes, g_ptr_array_unref);
  g_mutex_clear (&s->nodes_lock);
  g_mutex_clear (&s->beat_lock);
  g_cond_clear (&s->beat_stop);
  g_free (s->node_name);
  g_free (s->node_address);
  g_free (s);
}

gboolean
state_store_fall_back (const StateStore *s)
{
  return s && s->fall_back;
}

/* A statement whose answer is whether it gave (or touched) a row. */
static StateAnswer
ask (StateStore *s, StateSql id, int n, const char *const *values, gboolean command)
{
  PGresult *r = state_run (s, id, n, values, command ? PGRES_COMMAND_OK : PGRES_TUPLES_OK);
  StateAnswer a;

  if (r == NULL)
    return STATE_FAILED;
  a = command ? (strcmp (PQcmdTuples (r), "0") != 0 ? STATE_YES : STATE_NO) : PQntuples (r) > 0 ? STATE_YES : STATE_NO;
  PQclear (r);
  return a;
}

/* ---- the duplicate journal ------------------------------------------------ */

/* As dedupe.c's key: NUL-separated, so no two triples give one input. */
char *
state_dup_key (const char *digest, const char *sender, const char *address)
{
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);

  g_checksum_update (sum, (const guchar *) "v2", 3);
  g_checksum_update (sum, (const guchar *) digest, strlen (digest) + 1);
  g_checksum_update (sum, (const guchar *) sender, strlen (sender) + 1);
  g_checksum_update (sum, (const guchar *) address, strlen (address));
  return g_strdup (g_checksum_get_string (sum));
}

/* Confirmed, or an intent whose file is there (its node died before the
 * confirmation, or is confirming right now). */
StateAnswer
state_dup_seen (StateStore *s, const char *digest, const char *sender, const char *address)
{
  g_autofree char *key = state_dup_key (digest, sender, address);
  const char *values[1] = { key };
  PGresult *r = state_run (s, SQL_DUP_SEEN, 1, values, PGRES_TUPLES_OK);
  StateAnswer a = STATE_NO;

  if (r == NULL)
    return STATE_FAILED;
  if (PQntuples (r) == 1 && PQnfields (r) == 2)
    {
      if (!strcmp (PQgetvalue (r, 0, 0), "t"))
        a = STATE_YES;
      else if (!PQgetisnull (r, 0, 1) && util_maildir_file_exists (PQgetvalue (r, 0, 1)))
        a = STATE_YES;
    }
  PQclear (r);
  return a;
}

/* A claim: STATE_NO when the row is confirmed (another node's copy is
 * there) or another node's intent is still live (it is renaming its file
 * right now, or died before the rename less than claim_timeout ago): then
 * this copy must not appear, and the MTA's retry learns the outcome. */
StateAnswer
state_dup_intend (StateStore *s, const char *digest, const char *sender, const char *address, const char *path)
{
  g_autofree char *key = state_dup_key (digest, sender, address);
  g_autofree char *window = g_strdup_printf ("%u", s->window);
  g_autofree char *claim = g_strdup_printf ("%u", s->claim_timeout);
  const char *values[4] = { key, path, window, claim };

  return ask (s, SQL_DUP_INTEND, 4, values, FALSE);
}

/* Queued for the confirmation thread; synchronously when the queue is
 * full. */
StateAnswer
state_dup_record (StateStore *s, const char *digest, const char *sender, const char *address)
{
  g_autofree char *key = state_dup_key (digest, sender, address);
  g_autofree char *array = NULL;
  g_autofree char *window = NULL;
  const char *values[2];

  if (state_confirm_queue (s, g_strdup (key)))
    return STATE_YES;
  array = g_strdup_printf ("{%s}", key);
  window = g_strdup_printf ("%u", s->window);
  values[0] = array;
  values[1] = window;
  return ask (s, SQL_DUP_RECORD, 2, values, TRUE) == STATE_FAILED ? STATE_FAILED : STATE_YES;
}

StateAnswer
state_dup_forget (StateStore *s, const char *digest, const char *sender, const char *address)
{
  g_autofree char *key = state_dup_key (digest, sender, address);
  const char *values[1] = { key };

  return ask (s, SQL_DUP_FORGET, 1, values, TRUE);
}

/* ---- the vacation reply log ----------------------------------------------- */

static char *
handle_key (const char *handle)
{
  g_autofree char *digest = g_compute_checksum_for_string (G_CHECKSUM_SHA256, handle, -1);

  return g_strndup (digest, 32);
}

/* The row lock of ON CONFLICT makes two nodes' claims one after the
 * other: the second finds the first's unexpired row and touches nothing. */
StateAnswer
state_vacation_claim (StateStore *s, const char *user, const char *handle, const char *sender, guint64 period)
{
  g_autofree char *hkey = handle_key (handle);
  g_autofree char *lower = g_ascii_strdown (sender, -1);
  g_autofree char *seconds = g_strdup_printf ("%" G_GUINT64_FORMAT, period);
  const char *values[4] = { user, hkey, lower, seconds };

  return ask (s, SQL_VAC_CLAIM, 4, values, FALSE);
}

void
state_vacation_release (StateStore *s, const char *user, const char *handle, const char *sender)
{
  g_autofree char *hkey = handle_key (handle);
  g_autofree char *lower = g_ascii_strdown (sender, -1);
  const char *values[3] = { user, hkey, lower };

  ask (s, SQL_VAC_RELEASE, 3, values, TRUE);
}

/* ---- the Sieve duplicate ids ---------------------------------------------- */

StateAnswer
state_ids_seen (StateStore *s, const char *user, const char *key)
{
  const char *values[2] = { user, key };

  return ask (s, SQL_IDS_SEEN, 2, values,
              FALSE);
}

StateAnswer
state_ids_record (StateStore *s, const char *user, const char *key, guint64 seconds, gboolean last)
{
  g_autofree char *secs = g_strdup_printf ("%" G_GUINT64_FORMAT, seconds);
  const char *values[4] = { user, key, secs, last ? "t" : "f" };

  return ask (s, SQL_IDS_RECORD, 4, values, TRUE) == STATE_FAILED ? STATE_FAILED : STATE_YES;
}
