/* verdict-counts.c - how many verdicts each callout service gave, per
 * hour (lmtpd_verdicts): applied ones, and a shadow service's would-be
 * ones.  A delivery only increments a counter in memory (one hash lookup
 * under a lock); what was counted is posted to the records every few
 * seconds (state_records_post, the async writer: counts may be lost in a
 * crash, never slow a delivery) as "n = n + excluded.n" upserts, and at
 * the end (deliver_verdict_counts_flush from the context).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "record.h"

#define FLUSH_EVERY_US (5 * G_USEC_PER_SEC)
#define MAX_KEYS 4096 /* distinct (hour, service, verdict) counted before a flush */

struct DeliverVerdictCounter {
  GMutex lock;
  GHashTable *counts; /* "hour\nshadow\nverdict\nservice" -> guint64* */
  gint64 last_flush;  /* monotonic */
};

DeliverVerdictCounter *
verdict_counter_new (void)
{
  DeliverVerdictCounter *c = g_new0 (DeliverVerdictCounter, 1);

  g_mutex_init (&c->lock);
  c->counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  c->last_flush = g_get_monotonic_time ();
  return c;
}

void
verdict_counter_free (DeliverVerdictCounter *c)
{
  if (c == NULL)
    return;
  g_hash_table_unref (c->counts);
  g_mutex_clear (&c->lock);
  g_free (c);
}

void
verdict_counts_add (DeliverContext *ctx, const char *service, const char *verdict, gboolean shadow)
{
  DeliverVerdictCounter *c = ctx->counts;
  gint64 hour = g_get_real_time () / G_USEC_PER_SEC / 3600 * 3600;
  g_autofree char *key = g_strdup_printf ("%" G_GINT64_FORMAT "\n%d\n%s\n%s", hour, shadow ? 1 : 0, verdict, service);
  guint64 *n;
  gboolean due;

  if (shadow && ctx->shadow_observer)
    ctx->shadow_observer (service, verdict);
  g_mutex_lock (&c->lock);
  n = g_hash_table_lookup (c->counts, key);
  if (n == NULL)
    g_hash_table_insert (c->counts, g_steal_pointer (&key), n = g_new0 (guint64, 1));
  (*n)++;
  due = g_get_monotonic_time () - c->last_flush >= FLUSH_EVERY_US || g_hash_table_size (c->counts) >= MAX_KEYS;
  g_mutex_unlock (&c->lock);
  if (due)
    deliver_verdict_counts_flush (ctx);
}

static const char upsert_sql[] =
  "INSERT INTO lmtpd_verdicts (hour, shadow, verdict, service, n) VALUES ($1, $2, $3, $4, $5)"
  " ON CONFLICT (hour, service, verdict, shadow) DO UPDATE SET n = lmtpd_verdicts.n + excluded.n";

/* One counter as an upsert; the key's four lines are the first four
 * parameters. */
static void
post_count (StateRecords *records, const char *key, guint64 n)
{
  g_auto (GStrv) parts = g_strsplit (key, "\n", 4);
  g_autofree char *count = g_strdup_printf ("%" G_GUINT64_FORMAT, n);
  const char *values[5] = { parts[0], parts[1], parts[2], parts[3], count };

  state_records_post (records, upsert_sql, 5, values);
}

void
deliver_verdict_counts_flush (DeliverContext *ctx)
{
  DeliverVerdictCounter *c = ctx->counts;
  g_autoptr (GHashTable) taken = NULL;
  GHashTableIter it;
  gpointer k, v;

  g_mutex_lock (&c->lock);
  c->last_flush = g_get_monotonic_time ();
  if (g_hash_table_size (c->counts) > 0)
    {
      taken = g_steal_pointer (&c->counts);
      c->counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
    }
  g_mutex_unlock (&c->lock);
  if (taken == NULL || ctx->records == NULL)
    return;
  g_hash_table_iter_init (&it, taken);
  while (g_hash_table_iter_next (&it, &k, &v))
    post_count (ctx->records, k, *(guint64 *) v);
}

void
deliver_verdict_count_free (DeliverVerdictCount *c)
{
  if (c == NULL)
    return;
  g_free (c->service);
  g_free (c->verdict);
  g_free (c);
}

static DeliverVerdictCount *
count_from_row (const StateRows *rows, guint i)
{
  DeliverVerdictCount *c = g_new0 (DeliverVerdictCount, 1);

  c->hour = g_ascii_strtoll (state_rows_get (rows, i, 0) ?: "0", NULL, 10);
  c->service = g_strdup (state_rows_get (rows, i, 1) ?: "");
  c->verdict = g_strdup (state_rows_get (rows, i, 2) ?: "");
  c->shadow = g_strcmp0 (state_rows_get (rows, i, 3), "1") == 0;
  c->n = g_ascii_strtoull (state_rows_get (rows, i, 4) ?: "0", NULL, 10);
  return c;
}

GPtrArray *
deliver_verdict_counts (DeliverContext *ctx, gint64 since, GError **error)
{
  g_autofree char *from = g_strdup_printf ("%" G_GINT64_FORMAT, since - since % 3600);
  const char *values[1] = { from };
  g_autoptr (StateRows) rows = NULL;
  GPtrArray *out;

  if (ctx->records == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED, "the records are not open");
      return NULL;
    }
  /* what this process counted, written first (the web page's view) */
  deliver_verdict_counts_flush (ctx);
  state_records_flush (ctx->records);
  rows = state_records_query (ctx->records,
                              "SELECT hour, service, verdict, shadow, n FROM lmtpd_verdicts WHERE hour >= $1"
                              " ORDER BY hour, service, shadow, verdict", 1, values, error);
  if (rows == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) deliver_verdict_count_free);
  for (guint i = 0; i < rows->n_rows; i++)
    g_ptr_array_add (out, count_from_row (rows, i));
  return out;
}
