/* pipeline.c - one message to one recipient: the steps every delivery
 * takes, whether it came over LMTP or from the LDA command.
 *
 *   duplicate check ▸ callouts ▸ verdict ▸ trace headers ▸ Sieve
 *   ▸ store ▸ journal
 *
 * The stored message is a prefix (trace headers, and the header part when
 * a service changed it) followed by ranges of files: the whole spool, its
 * body part, or an adapted body.  A copy is stored by store.c (folder,
 * quota, Maildir or mbox, single instance); a Sieve result is carried out
 * by apply-sieve.c.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "pipeline.h"

void
deliver_shared_init (DeliverShared *shared, GPtrArray *rcpts)
{
  memset (shared, 0, sizeof *shared);
  g_mutex_init (&shared->lock);
  g_cond_init (&shared->cond);
  shared->rcpts = rcpts ? g_ptr_array_ref (rcpts) : NULL;
  shared->n_recipients = rcpts ? rcpts->len : 1;
  shared->callouts = callout_shared_table_new ();
}

void
deliver_shared_clear (DeliverShared *shared)
{
  if (shared->callouts)
    {
      g_hash_table_unref (shared->callouts);
      shared->callouts = NULL;
      g_mutex_clear (&shared->lock);
      g_cond_clear (&shared->cond);
    }
  g_clear_pointer (&shared->rcpts, g_ptr_array_unref);
  g_clear_pointer (&shared->copies, g_ptr_array_unref);
}

gboolean
deliver_precheck (const LmtpdConfig *config, const DeliverRecipient *rcpt, guint64 size_hint,
                  DeliverStatus *status)
{
  g_autoptr (GError) error = NULL;

  if (rcpt->quota_bytes == 0 && rcpt->quota_messages == 0)
    return TRUE;
  if (rcpt->format == DELIVER_MAILDIR
      ? deliver_quota_check (rcpt->mailbox, rcpt->quota_bytes, rcpt->quota_messages, size_hint, &error)
      : deliver_quota_check_mbox (rcpt->inbox, rcpt->quota_bytes, size_hint, &error))
    return TRUE;
  store_quota_status (config, status, rcpt);
  return FALSE;
}

/* The RCPT stage's trace: kept with the recipient for its delivery, or
 * written now when it was refused. */
gboolean
deliver_rcpt_check (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                    DeliverRecipient *rcpt, guint64 size_hint, DeliverStatus *status)
{
  DecisionTrace trace;
  gboolean ok;

  decision_trace_init (&trace, ctx, config);
  ok = deliver_precheck (config, rcpt, size_hint, status);
  if (!ok)
    decision_trace_add (&trace, "quota: over quota at RCPT");
  else
    ok = callout_rcpt_stage (ctx, config, msg, rcpt, trace.steps, status);
  if (!ok)
    decision_trace_post (&trace, ctx, config, msg, rcpt->address, status);
  else if (trace.steps && trace.steps->len)
    {
      g_free (rcpt->trace_steps);
      rcpt->trace_steps = g_strdup (trace.steps->str);
    }
  decision_trace_clear (&trace);
  return ok;
}

/* An adapted body is normalized to LF through a spool of its own. */
static DeliverSpool *
adapted_body (const Delivery *dv, int fd, GError **error)
{
  g_autoptr (DeliverSpool) s = deliver_spool_new (dv->ctx, dv->config->spool_dir, error);
  char buf[64 * 1024];
  guint64 off = 0;
  gssize n;

  if (s == NULL)
    return NULL;
  while ((n = pread (fd, buf, sizeof buf, off)) > 0)
    {
      if (!deliver_spool_write (s, buf, n, error))
        return NULL;
      off += n;
    }
  if (n < 0)
    {
      g_set_error (error, DELIVER_ERROR, errno, "adapted body: %s", g_strerror (errno));
      return NULL;
    }
  if (!deliver_spool_finish (s, error))
    return NULL;
  return g_steal_pointer (&s);
}

/* A service's redirect: the recipient it names, resolved (*@redirected),
 * keeping the original address.  FALSE with the status set if it is not
 * one of ours. */
static gboolean
verdict_redirect (Delivery *dv, const CalloutDecision *d, DeliverRecipient **redirected)
{
  g_autofree char *local = NULL, *domain = NULL;
  const char *why;

  if (d->redirect == NULL || !deliver_address_parse (d->redirect, TRUE, &local, &domain, &why) || domain == NULL
      || (*redirected = deliver_resolve (dv->ctx, dv->config, local, domain, dv->status)) == NULL)
    {
      deliver_status_clear (dv->status);
      deliver_status_set (dv->status, 451, "4.3.5", "<%s> Content filter redirected to an unknown recipient",
                          dv->rcpt->original);
      return FALSE;
    }
  g_free ((*redirected)->original);
  (*redirected)->original = g_strdup (dv->rcpt->original);
  decision_trace_add (dv->trace, "redirect to <%s> (content filter)", (*redirected)->address);
  dv->rcpt = *redirected;
  return TRUE;
}

/* What the services' verdict does before anything is stored: refuse,
 * discard, redirect (dv->rcpt becomes the new recipient, owned by
 * *@redirected).  FALSE when the delivery ends here (status set). */
static gboolean
apply_verdict (Delivery *dv, const CalloutDecision *d, DeliverRecipient **redirected)
{
  switch (d->kind)
    {
    case CALLOUT_REJECT:
    case CALLOUT_TEMPFAIL:
      callout_refusal (dv->config, d, dv->rcpt, dv->status);
      return FALSE;
    case CALLOUT_DISCARD:
      decision_trace_folder (dv->trace, "discard");
      g_message ("%s: <%s> discarded by a content filter", dv->msg->id, dv->rcpt->address);
      deliver_status_set (dv->status, 250, "2.0.0", "<%s> Discarded by content filter", dv->rcpt->original);
      return FALSE;
    case CALLOUT_REDIRECT:
      return verdict_redirect (dv, d, redirected);
    case CALLOUT_QUARANTINE:
    case CALLOUT_ACCEPT:
      break;
    }
  return TRUE;
}

/* The folder: the recipient's, or the one a service named (quarantine or
 * delivery folder).  FALSE with the status set if that one is unusable. */
static gboolean
verdict_folder (const Delivery *dv, const CalloutDecision *d, Store *st)
{
  const char *why;

  st->folder = dv->rcpt->folder;
  st->folder_if_exists = dv->rcpt->folder_if_exists;
  if (d->folder == NULL)
    return TRUE;
  if (!deliver_folder_valid (d->folder, &why))
    {
      deliver_status_set (dv->status, 451, "4.3.5", "<%s> Content filter named a bad folder", dv->rcpt->original);
      return FALSE;
    }
  st->folder = deliver_folder_is_inbox (d->folder) ? NULL : d->folder;
  st->folder_if_exists = FALSE;
  return TRUE;
}

/* The services' changes to the stored message: a new header part
 * (*@new_header) and the content after it (the spool's body, or an
 * adapted body in *@body).  FALSE with the status set on failure. */
static gboolean
adapted_content (const Delivery *dv, const CalloutResult *result, const CalloutDecision *d, Store *st,
                 char **new_header, DeliverSpool **body, GError **error)
{
  const DeliverSpool *spool = dv->msg->spool;

  deliver_content_from_spool (&st->content, spool);
  if (!callout_needs_new_header (result, d) && !d->has_body)
    return TRUE;
  *new_header = callout_new_header (dv->msg, result, d);
  if (*new_header == NULL)
    {
      deliver_status_set (dv->status, 451, "4.3.0", "<%s> Adapted header could not be parsed", dv->rcpt->original);
      return FALSE;
    }
  if (!d->has_body)
    {
      guint64 hlen = deliver_spool_header_len (spool);
      st->content.seg[0].offset = hlen;
      st->content.seg[0].length -= hlen;
      st->content.seg[0].lines -= deliver_spool_header_lines (spool);
      return TRUE;
    }
  *body = adapted_body (dv, d->body_fd, error);
  if (*body == NULL)
    {
      deliver_status_from_error (dv->status, *error);
      return FALSE;
    }
  deliver_content_from_spool (&st->content, *body);
  return TRUE;
}

/* Sieve sees the message as it would be stored, after the services.
 * TRUE if a script ran (and its result was carried out). */
static gboolean
run_sieve (const Delivery *dv, const CalloutResult *result, Store *st, gboolean header_in_prefix, char **out_path,
           GError **error)
{
  FilterMessage fm = { dv->ctx, dv->config, dv->msg, dv->rcpt, st->prefix, &st->content };
  FilterOutcome fo;
  gboolean ran;

  filter_run (&fm, result, &fo);
  ran = fo.ran;
  if (ran)
    decision_trace_sieve (dv->trace, &fo.result);
  if (ran && store_past_deadline (dv->commit))
    store_deadline_status (dv->status, dv->rcpt);
  else if (ran)
    sieve_actions_apply (dv, st, &fo, header_in_prefix, out_path, error);
  filter_outcome_clear (&fo);
  return ran;
}

/* After the callouts: the verdict, the stored message, Sieve, the store. */
static void
deliver_decided (Delivery *dv, const CalloutResult *result, char **out_path, GError **error)
{
  g_autoptr (DeliverRecipient) redirected = NULL;
  g_autoptr (DeliverSpool) body = NULL;
  g_autofree char *trace = NULL, *opes = NULL, *new_header = NULL, *prefix = NULL, *flags = NULL;
  g_autofree char *path = NULL;
  const DeliverShared *shared = dv->shared;
  gboolean per_recipient = !dv->config->single_instance || shared == NULL || shared->n_recipients <= 1;
  CalloutDecision d;
  Store st = { 0 };

  callout_decide (dv->config, result, dv->rcpt, &d);
  if (!apply_verdict (dv, &d, &redirected))
    return;
  st.commit = dv->commit;
  if (!callout_quarantines_to_store (&d) && !verdict_folder (dv, &d, &st))
    return;
  flags = callout_flags (result);
  st.flags = flags;
  /* a released copy has its trace headers already (stored with them) */
  trace = dv->msg->released ? g_strdup (dv->msg->released)
                            : deliver_trace_headers (dv->config, dv->msg, dv->rcpt, per_recipient);
  opes = callout_trace (dv->config, result, dv->rcpt->rcpt_trace);
  if (!adapted_content (dv, result, &d, &st, &new_header, &body, error))
    return;
  prefix = g_strconcat (trace, opes, new_header ? new_header : "", NULL);
  st.prefix = prefix;
  if (callout_quarantines_to_store (&d))
    {
      quarantine_store_copy (dv, &d, &st, out_path);
      return;
    }
  if (d.kind == CALLOUT_ACCEPT && run_sieve (dv, result, &st, new_header != NULL, out_path, error))
    return;
  if (!store_copy (dv, &st, &path, error))
    {
      store_failed (dv, *error);
      return;
    }
  deliver_status_set (dv->status, 250, "2.0.0", "<%s> Saved", dv->rcpt->original);
  *out_path = g_steal_pointer (&path);
}

/* Everything after the duplicate check; fills the status. */
static void
run (Delivery *dv, char **out_path, GError **error)
{
  CalloutResult *owned = NULL;
  gint64 t0 = g_get_monotonic_time ();
  const CalloutResult *result = callout_run (dv->ctx, dv->config, dv->msg, dv->rcpt, dv->shared, &owned);
  guint64 callout_us = result ? (guint64) (g_get_monotonic_time () - t0) : 0;

  if (dv->trace->steps && result)
    callout_trace_steps (result, "data", dv->trace->steps);

  if (store_past_deadline (dv->commit))
    store_deadline_status (dv->status, dv->rcpt);
  else
    deliver_decided (dv, result, out_path, error);
  dv->status->callout_us = callout_us;
  callout_result_free (owned);
}

/* The duplicate check: FALSE when the delivery ends here (status set). */
static gboolean
not_seen (Delivery *dv, StateAnswer seen)
{
  const DeliverMessage *msg = dv->msg;
  const DeliverRecipient *rcpt = dv->rcpt;

  if (seen == STATE_NO)
    return TRUE;
  if (seen == STATE_YES)
    {
      g_message ("%s: <%s> has this message already: duplicate not delivered", msg->id, rcpt->address);
      decision_trace_add (dv->trace, "duplicate: delivered before within duplicate_window, not stored again");
      deliver_status_set (dv->status, 250, "2.0.0", "<%s> Saved (duplicate)", rcpt->original);
      return FALSE;
    }
  g_warning ("%s: <%s> shared state failing: 451 (on_error = tempfail)", msg->id, rcpt->address);
  decision_trace_add (dv->trace, "duplicate check: the shared state failed (on_error = tempfail)");
  journal_failed_status (dv->commit, dv->status, rcpt);
  return FALSE;
}

void
deliver_pipeline_run (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                      const DeliverRecipient *rcpt, DeliverShared *shared, DeliverStatus *status,
                      char **out_path)
{
  const char *digest = deliver_spool_digest (msg->spool);
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  Commit commit = { msg->journal ? msg->journal : ctx->journal, digest, msg->sender, rcpt->address, FALSE, FALSE,
                    g_get_monotonic_time () + (gint64) config->delivery_timeout * G_USEC_PER_SEC, NULL, FALSE,
                    FALSE };
  DecisionTrace trace;
  Delivery dv = { ctx, config, msg, rcpt, shared, &commit, status, &trace };
  /* a release's own journal is local (window 0: not the shared state) */
  guint window = msg->journal ? 0 : config->duplicate_window;

  decision_trace_init (&trace, ctx, config);
  decision_trace_add_lines (&trace, rcpt->trace_steps);
  if (!not_seen (&dv, journal_seen (&commit, ctx, window, msg->id)))
    {
      decision_trace_post (&trace, ctx, config, msg, rcpt->address, status);
      decision_trace_clear (&trace);
      return;
    }
  run (&dv, &path, &error);
  if (error)
    {
      g_autofree char *why = util_sanitize (error->message, 512);
      g_warning ("%s: delivery to <%s> failed: %s", msg->id, rcpt->address, why);
    }
  journal_failed_status (&commit, status, rcpt);
  if (status->code / 100 == 2)
    store_commit_record (&commit, NULL, TRUE);
  else if (commit.recorded)
    journal_forget (&commit);
  decision_trace_post (&trace, ctx, config, msg, rcpt->address, status);
  decision_trace_clear (&trace);
  if (out_path)
    *out_path = g_steal_pointer (&path);
}
