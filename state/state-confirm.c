/* state-confirm.c - the duplicate journal's confirmations, sent by a
 * thread of their own in batches (what arrives within 20 ms, up to 500),
 * so a delivery waits for one round trip fewer and PostgreSQL sees one
 * statement for many deliveries.  Nothing is lost by the wait: until its confirmation lands, a
 * copy's intent names its file, and an intent whose file is there counts
 * as delivered (on every node) and holds the key against other nodes'
 * claims.  The queue is bounded: when it is full the caller confirms
 * synchronously.  A batch that fails is logged and dropped, for the same
 * reason.
 */
#include "config.h"

#include <string.h>

#include "state-private.h"

#define CONFIRM_MAX 10000     /* keys waiting */
#define CONFIRM_BATCH 500     /* keys a statement */
#define CONFIRM_LINGER_US (20 * 1000) /* the wait for more keys */

/* "{k1,k2,...}": the keys are hex digests, nothing to quote. */
static void
send_batch (StateStore *s, GPtrArray *keys)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GString) array = g_string_new ("{");
  g_autofree char *window = g_strdup_printf ("%u", s->window);
  const char *values[2];
  PGresult *r;

  /* ON CONFLICT cannot touch one row twice in a statement */
  for (guint i = 0; i < keys->len; i++)
    if (g_hash_table_add (seen, keys->pdata[i]))
      g_string_append_printf (array, "%s%s", array->len > 1 ? "," : "", (char *) keys->pdata[i]);
  g_string_append_c (array, '}');
  values[0] = array->str;
  values[1] = window;
  if ((r = state_run (s, SQL_DUP_RECORD, 2, values, PGRES_COMMAND_OK)) == NULL)
    g_warning ("shared state: %u confirmations not sent (their intents name their files)", keys->len);
  PQclear (r);
}

static gpointer
confirm_thread (gpointer data)
{
  StateStore *s = data;

  g_mutex_lock (&s->confirm_lock);
  for (;;)
    {
      g_autoptr (GPtrArray) batch = g_ptr_array_new_with_free_func (g_free);
      gint64 until;
      while (s->confirm_queue->len == 0 && !s->confirm_stopping)
        g_cond_wait (&s->confirm_wake, &s->confirm_lock);
      if (s->confirm_queue->len == 0)
        break;
      /* a moment for more keys: one statement for many deliveries */
      until = g_get_monotonic_time () + CONFIRM_LINGER_US;
      while (s->confirm_queue->len < CONFIRM_BATCH && !s->confirm_stopping)
        if (!g_cond_wait_until (&s->confirm_wake, &s->confirm_lock, until))
          break;
      while (batch->len < CONFIRM_BATCH && s->confirm_queue->len > 0)
        g_ptr_array_add (batch, g_ptr_array_steal_index (s->confirm_queue, s->confirm_queue->len - 1));
      g_mutex_unlock (&s->confirm_lock);
      send_batch (s, batch);
      g_mutex_lock (&s->confirm_lock);
    }
  g_mutex_unlock (&s->confirm_lock);
  return NULL;
}

gboolean
state_confirm_queue (StateStore *s, char *key)
{
  gboolean queued = FALSE;

  g_mutex_lock (&s->confirm_lock);
  if (!s->confirm_stopping && s->confirm_queue->len < CONFIRM_MAX)
    {
      if (s->confirmer == NULL)
        s->confirmer = g_thread_new ("state-confirm", confirm_thread, s);
      g_ptr_array_add (s->confirm_queue, key);
      /* the thread waits for the first key, then for a full batch */
      if (s->confirm_queue->len == 1 || s->confirm_queue->len == CONFIRM_BATCH)
        g_cond_signal (&s->confirm_wake);
      queued = TRUE;
    }
  g_mutex_unlock (&s->confirm_lock);
  if (!queued)
    g_free (key);
  return queued;
}

/* What is queued still goes out (bounded by pgsql_timeout a batch). */
void
state_confirm_stop (StateStore *s)
{
  g_mutex_lock (&s->confirm_lock);
  s->confirm_stopping = TRUE;
  g_cond_signal (&s->confirm_wake);
  g_mutex_unlock (&s->confirm_lock);
  if (s->confirmer)
    g_thread_join (s->confirmer);
  s->confirmer = NULL;
}
