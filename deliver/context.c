/* context.c - the delivery context: what deliveries share across
 * transactions (OCP client, script cache, spool pool, duplicate journal,
 * callout observer, two small path caches), built once by lmtpd and by
 * the deliver command and passed to every pipeline entry point.
 */
#include "config.h"

#include <stdlib.h>

#include "context.h"
#include "record.h"

DeliverContext *
deliver_context_new (void)
{
  DeliverContext *ctx = g_new0 (DeliverContext, 1);

  g_atomic_ref_count_init (&ctx->ref);
  ctx->ocp = ocp_client_new ();
  ctx->scripts = filter_cache_new ();
  ctx->spools = deliver_spool_pool_new ();
  g_mutex_init (&ctx->tmp_lock);
  ctx->tmp_cleaned = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_mutex_init (&ctx->root_lock);
  g_mutex_init (&ctx->users_lock);
  ctx->counts = verdict_counter_new ();
  ctx->recorder = recorder_new ();
  return ctx;
}

DeliverContext *
deliver_context_ref (DeliverContext *ctx)
{
  g_atomic_ref_count_inc (&ctx->ref);
  return ctx;
}

void
deliver_context_unref (DeliverContext *ctx)
{
  if (ctx == NULL || !g_atomic_ref_count_dec (&ctx->ref))
    return;
  ocp_client_free (ctx->ocp);
  filter_cache_free (ctx->scripts);
  deliver_spool_pool_unref (ctx->spools);
  deliver_dedupe_free (ctx->journal);
  state_store_free (ctx->state);
  deliver_verdict_counts_flush (ctx);
  verdict_counter_free (ctx->counts);
  recorder_free (ctx->recorder);
  state_records_free (ctx->records);
  g_hash_table_unref (ctx->tmp_cleaned);
  g_mutex_clear (&ctx->tmp_lock);
  g_free (ctx->root_configured);
  free (ctx->root_resolved);
  g_mutex_clear (&ctx->root_lock);
  directory_unref (ctx->users);
  g_mutex_clear (&ctx->users_lock);
  g_free (ctx);
}

/* The shared state first (it holds the vacation log too, whatever the
 * duplicate window); the local journal as well, for on_error = local. */
gboolean
deliver_context_open_journal (DeliverContext *ctx, const LmtpdConfig *config, GError **error)
{
  if (ctx->state == NULL && config->state_backend == LMTPD_STATE_PGSQL
      && (ctx->state = state_store_open (config, error)) == NULL)
    return FALSE;
  if (config->duplicate_window == 0 || ctx->journal)
    return TRUE;
  ctx->journal = deliver_dedupe_open (config->duplicate_db, config->duplicate_window, error);
  return ctx->journal != NULL;
}

StateStore *
deliver_context_state (DeliverContext *ctx)
{
  return ctx->state;
}

gboolean
deliver_context_open_records (DeliverContext *ctx, const LmtpdConfig *config, GError **error)
{
  if (ctx->records == NULL)
    ctx->records = state_records_open (config, error);
  return ctx->records != NULL;
}

StateRecords *
deliver_context_records (DeliverContext *ctx)
{
  return ctx->records;
}

void
deliver_context_set_callout_observer (DeliverContext *ctx, DeliverCalloutObserver observer)
{
  ctx->observer = observer;
}

void
deliver_context_set_shadow_observer (DeliverContext *ctx, DeliverShadowObserver observer)
{
  ctx->shadow_observer = observer;
}

void
deliver_context_set_directory_observer (DeliverContext *ctx, DeliverDirectoryObserver observer)
{
  ctx->directory_observer = observer;
}

void
deliver_context_set_sieve_observer (DeliverContext *ctx, DeliverSieveObserver observer)
{
  ctx->sieve_observer = observer;
}

void
deliver_context_close_callouts (DeliverContext *ctx)
{
  ocp_client_close (ctx->ocp);
}

Directory *
deliver_context_directory (DeliverContext *ctx, const LmtpdConfig *config, GError **error)
{
  Directory *dir;

  if (ctx == NULL)
    return directory_new (config, error);
  g_mutex_lock (&ctx->users_lock);
  if (ctx->users == NULL || !directory_matches (ctx->users, config))
    {
      Directory *made = directory_new (config, error);
      if (made)
        {
          directory_unref (ctx->users);
          ctx->users = made;
        }
    }
  dir = ctx->users ? directory_ref (ctx->users) : NULL;
  g_mutex_unlock (&ctx->users_lock);
  return dir;
}
