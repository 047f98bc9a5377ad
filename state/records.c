/* records.c - the records (issue 19): the store a backend gives, and a
 * writer thread that commits posted statements in batches so that a
 * delivery never waits on a trace or a count.
 */
#include "config.h"

#include <string.h>

#include "records-private.h"

#define QUEUE_MAX 20000    /* statements waiting; more are dropped */
#define BATCH_MAX 500      /* statements per transaction */
/* What is posted within this time of the first statement goes into the
 * same transaction: one commit (one fsync with synchronous = FULL) for
 * many rows rather than one per delivery, which would double the fsyncs
 * a delivery costs the disk. */
#define LINGER_US (100 * 1000)

static RecordsStatement *
statement_new (const char *sql, guint n, const char *const *values)
{
  RecordsStatement *st = g_new0 (RecordsStatement, 1);
  st->sql = g_strdup (sql);
  st->n = n;
  st->values = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++)
    st->values[i] = g_strdup (values[i]);
  return st;
}

gboolean
state_records_exec (StateRecords *r, const char *sql, guint n, const char *const *values, guint64 *changed,
                    GError **error)
{
  return r->backend->run (r, sql, n, values, changed, NULL, error);
}

StateRows *
state_records_query (StateRecords *r, const char *sql, guint n, const char *const *values, GError **error)
{
  StateRows *rows = NULL;

  if (!r->backend->run (r, sql, n, values, NULL, &rows, error))
    return NULL;
  return rows;
}

/* ---- the writer ---------------------------------------------------------- */

static void
write_batch (StateRecords *r, GPtrArray *batch)
{
  g_autoptr (GError) error = NULL;

  if (!r->backend->batch (r, batch, &error))
    {
      g_warning ("records: %u statements not written: %s", batch->len, error->message);
      g_mutex_lock (&r->lock);
      r->dropped += batch->len;
      g_mutex_unlock (&r->lock);
    }
}

static gpointer
writer_main (gpointer data)
{
  StateRecords *r = data;

  g_mutex_lock (&r->lock);
  for (;;)
    {
      g_autoptr (GPtrArray) batch = NULL;
      gint64 linger_until;
      guint take;

      while (r->queue->len == 0 && !r->stopping)
        g_cond_wait (&r->wake, &r->lock);
      if (r->queue->len == 0)
        break;
      linger_until = g_get_monotonic_time () + LINGER_US;
      while (r->queue->len < BATCH_MAX && !r->stopping && g_cond_wait_until (&r->wake, &r->lock, linger_until))
        ;
      take = MIN (r->queue->len, BATCH_MAX);
      batch = g_ptr_array_new_with_free_func (records_statement_free);
      for (guint i = 0; i < take; i++)
        g_ptr_array_add (batch, r->queue->pdata[i]);
      g_ptr_array_remove_range (r->queue, 0, take);   /* the queue frees nothing */
      g_mutex_unlock (&r->lock);
      write_batch (r, batch);
      g_mutex_lock (&r->lock);
      r->written += take;
      g_cond_broadcast (&r->done);
    }
  g_mutex_unlock (&r->lock);
  return NULL;
}

void
state_records_post (StateRecords *r, const char *sql, guint n, const char *const *values)
{
  g_mutex_lock (&r->lock);
  if (r->queue->len >= QUEUE_MAX || r->stopping)
    {
      if (r->dropped++ % 1000 == 0)
        g_warning ("records: the writer is behind, %u statements queued: dropping", r->queue->len);
      g_mutex_unlock (&r->lock);
      return;
    }
  g_ptr_array_add (r->queue, statement_new (sql, n, values));
  r->posted++;
  /* the writer waits for a first statement, or lingers until a batch is
   * full: waking it for every other one would cost a switch per post */
  if (r->queue->len == 1 || r->queue->len >= BATCH_MAX)
    g_cond_signal (&r->wake);
  g_mutex_unlock (&r->lock);
}

void
state_records_flush (StateRecords *r)
{
  guint64 target;

  g_mutex_lock (&r->lock);
  target = r->posted;
  while (r->written < target && r->writer)
    g_cond_wait (&r->done, &r->lock);
  g_mutex_unlock (&r->lock);
}

guint64
state_records_dropped (const StateRecords *r)
{
  guint64 n;
  g_mutex_lock ((GMutex *) &r->lock);
  n = r->dropped;
  g_mutex_unlock ((GMutex *) &r->lock);
  return n;
}

/* ---- open and close ---------------------------------------------------------- */

StateRecords *
state_records_open (const LmtpdConfig *config, GError **error)
{
  StateRecords *r = g_new0 (StateRecords, 1);
  gboolean ok;

  r->timeout_ms = config->state_pgsql_timeout_ms;
  g_mutex_init (&r->lock);
  g_cond_init (&r->wake);
  g_cond_init (&r->done);
  r->queue = g_ptr_array_new ();
  r->shared = config->state_backend == LMTPD_STATE_PGSQL;
  if (r->shared)
    ok = records_pgsql_open (r, config, error);
  else
    ok = records_sqlite_open (r, config->state_records_db, error);
  if (!ok)
    {
      g_ptr_array_unref (r->queue);
      g_free (r);
      return NULL;
    }
  r->writer = g_thread_new ("records", writer_main, r);
  return r;
}

void
state_records_free (StateRecords *r)
{
  if (r == NULL)
    return;
  g_mutex_lock (&r->lock);
  r->stopping = TRUE;
  g_cond_signal (&r->wake);
  g_mutex_unlock (&r->lock);
  g_thread_join (r->writer);
  r->backend->close (r);
  g_ptr_array_unref (r->queue);
  g_mutex_clear (&r->lock);
  g_cond_clear (&r->wake);
  g_cond_clear (&r->done);
  g_free (r);
}

gboolean
state_records_shared (const StateRecords *r)
{
  return r->shared;
}

char *
state_records_new_id (void)
{
  return g_strdup_printf ("%08x%08x", g_random_int (), g_random_int ());
}
