/* lmtp-delivery.c - recipients and their deliveries: every call the
 * session makes into the deliver/ pipeline is in this file.
 *
 * A recipient is resolved at RCPT, and checked there in a delivery
 * thread when a quota or a service at RCPT asks for it.  After the data
 * each accepted recipient's whole pipeline runs in a delivery thread
 * (the server's pool); results come back to the main loop, and replies
 * go out in RCPT order as soon as each one and all before it are known
 * (RFC 2033 4.2).  Every recipient's reply, at RCPT or after the data,
 * goes through the recipient_* family below, which logs and counts it.
 */
#include "config.h"

#include <string.h>

#include "lmtp-proxy.h"
#include "lmtp-session.h"

/* ---- transactions ------------------------------------------------------------ */

void
lmtp_delivery_txn_free (Txn *t)
{
  if (t == NULL)
    return;
  lmtpd_config_unref (t->config);
  g_free (t->id);
  g_free (t->sender);
  g_ptr_array_unref (t->rcpts);
  if (t->jobs)
    g_ptr_array_unref (t->jobs);
  deliver_shared_clear (&t->shared);
  deliver_spool_free (t->spool);
  g_clear_error (&t->spool_error);
  g_free (t->mail_params);
  g_free (t->message_id);
  lmtp_proxy_free (t->proxy);
  g_free (t);
}

/* ---- the log line of a recipient's result ---------------------------------- */

/* One recipient's result, as a line and as fields.  @mailbox is NULL for a
 * refusal at RCPT (nothing was stored, so neither size nor mailbox). */
typedef struct {
  const char *to, *orig, *mailbox;
  const DeliverStatus *st;
  guint64 callout_us;
} LogResult;

static void
log_result (LmtpSession *s, const LogResult *res)
{
  Txn *t = s->txn;
  gboolean rcpt = res->mailbox == NULL;
  g_autofree char *from = util_sanitize (t->sender, 256);
  g_autofree char *to = util_sanitize (res->to, 256);
  g_autofree char *orig = util_sanitize (res->orig, 256);
  g_autofree char *text = util_sanitize (res->st->text, 256);
  g_autofree char *mailbox = util_sanitize (rcpt ? "" : res->mailbox, 1024);
  const char *qid = s->xf.ident ? s->xf.ident : "", *msgid = t->message_id ? t->message_id : "";
  gint64 delay_ms = (g_get_real_time () - t->started_us) / 1000;
  gboolean failed = res->st->code >= 400, orig_differs = strcmp (orig, to) != 0;
  char callouts[48] = "", size[24], code[8], delay[24], cus[24];

  if (res->callout_us)
    g_snprintf (callouts, sizeof callouts, " callout_us=%" G_GUINT64_FORMAT, res->callout_us);
  g_snprintf (size, sizeof size, "%" G_GUINT64_FORMAT, rcpt ? 0 : t->received);
  g_snprintf (code, sizeof code, "%u", res->st->code);
  g_snprintf (delay, sizeof delay, "%" G_GINT64_FORMAT, delay_ms);
  g_snprintf (cus, sizeof cus, "%" G_GUINT64_FORMAT, res->callout_us);
  /* the same facts as fields, for the journal and log_format = json */
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_INFO,
                    "LMTPD_SESSION", s->log_id, "LMTPD_TXN", t->id, "LMTPD_RCPT", to,
                    "LMTPD_FROM", from, "LMTPD_ORIG_RCPT", orig, "LMTPD_MAILBOX", mailbox,
                    "LMTPD_SIZE", size, "LMTPD_STATUS", code, "LMTPD_DSN", res->st->enhanced,
                    "LMTPD_DELAY_MS", delay, "LMTPD_CALLOUT_US", cus,
                    "LMTPD_STAGE", rcpt ? "rcpt" : "data", "LMTPD_QUEUE_ID", qid, "LMTPD_MESSAGE_ID", msgid,
                    "LMTPD_REASON", failed ? text : "",
                    "MESSAGE", "%s: %s: %sfrom=<%s> to=<%s>%s%s%s%s%s%s%s status=%u %s delay_ms=%" G_GINT64_FORMAT
                    "%s%s%s%s%s%s%s",
                    s->log_id, t->id, rcpt ? "rejected at RCPT: " : "", from, to,
                    orig_differs ? " orig_to=<" : "", orig_differs ? orig : "", orig_differs ? ">" : "",
                    rcpt ? "" : " mailbox=", mailbox, rcpt ? "" : " size=", rcpt ? "" : size,
                    res->st->code, res->st->enhanced, delay_ms, callouts,
                    qid[0] ? " queue_id=" : "", qid, msgid[0] ? " message_id=" : "", msgid,
                    failed ? " reason=" : "", failed ? text : "");
}

/* ---- one reply family for recipients --------------------------------------- */

static void
recipient_accepted (LmtpSession *s, DeliverRecipient *r)
{
  g_ptr_array_add (s->txn->rcpts, r);
  lmtp_session_reply (s, LMTP_REPLY_RCPT_OK);
}

/* Refused at RCPT: logged and counted like a delivery. */
static void
recipient_refused (LmtpSession *s, const char *address, const DeliverStatus *st)
{
  LogResult res = { address, address, NULL, st, 0 };

  lmtp_metrics_rcpt_refused (st->code);
  log_result (s, &res);
  lmtp_session_reply (s, LMTP_REPLY_STATUS, st->code, st->enhanced, st->text);
}

/* A recipient's reply after the data.  A success names the transaction
 * (as Dovecot's "250 2.0.0 <user> id Saved" does), so the MTA's log line
 * for it ("status=sent (250 ...)") leads to ours. */
static void
recipient_delivered (LmtpSession *s, const DeliverRecipient *r, const DeliverStatus *st, const char *path,
                     gboolean proxied)
{
  LogResult res = { r->address, r->original, path ? path : r->mailbox, st, st->callout_us };

  lmtp_metrics_delivery (st->code, (guint64) MAX (g_get_real_time () - s->txn->started_us, 0), st->callout_us);
  log_result (s, &res);
  /* a backend's reply names its own transaction, which names ours */
  if (st->code >= 400 || proxied)
    lmtp_session_reply (s, LMTP_REPLY_STATUS, st->code, st->enhanced, st->text);
  else
    lmtp_session_reply (s, LMTP_REPLY_DELIVERED, st->code, st->enhanced, st->text, s->txn->id);
}

/* ---- jobs for the delivery threads ------------------------------------------ */

/* A recipient's whole pipeline after the data, or its checks at RCPT. */
typedef struct {
  LmtpSession *s;
  Txn *t;
  gboolean rcpt_check;
  LmtpdConfig *config;
  DeliverContext *ctx;      /* a reference, for as long as the job runs */
  DeliverMessage msg;
  DeliverRecipient *rcpt;   /* borrowed from t->rcpts; owned for rcpt_check */
  guint64 size_hint;
  DeliverStatus status;
  char *path;
  gboolean ok;
  gboolean done;
  gpointer same_as;         /* Job* of the same recipient earlier in the transaction, or NULL */
  gboolean proxied;         /* another node delivers it (lmtp-proxy.c) */
  gboolean check_later;     /* resolved only: the owner first, then the checks */
  /* a recipient to resolve in the thread first (a directory server may be
   * slow): the RCPT path and its parts; rcpt_path NULL once resolved */
  char *rcpt_path, *local, *domain;
  LmtpRcptParams params;
} Job;

static void
job_free (Job *job)
{
  lmtpd_config_unref (job->config);
  deliver_context_unref (job->ctx);
  g_free (job->rcpt_path);
  g_free (job->local);
  g_free (job->domain);
  g_free (job->params.orcpt);
  g_free (job->params.bypass);
  g_free (job->params.text);
  deliver_status_clear (&job->status);
  if (job->rcpt_check)
    deliver_recipient_free (job->rcpt);
  g_free (job->path);
  g_free (job);
}

static void delivered (LmtpSession *s);
static void rcpt_checked (LmtpSession *s, Job *job);
static const LmtpProxyResults proxy_results;

/* Where the threads hand finished jobs back to the main loop; made by the
 * first job_push, for the process's lifetime. */
static LmtpHandback *handback;

static void
job_finished (gpointer data)
{
  Job *job = data;
  LmtpSession *s = job->s;

  job->done = TRUE;
  if (job->rcpt_check)
    rcpt_checked (s, job);
  else
    delivered (s);
  lmtp_session_unref (s);
}

static gboolean rcpt_needs_check (const LmtpdConfig *c, const DeliverRecipient *r);

/* In the thread: the recipient resolved (its directory lookup may wait
 * for a server), then checked as at RCPT. */
static gboolean
rcpt_resolve_and_check (Job *job)
{
  job->rcpt = deliver_resolve (job->ctx, job->config, job->local, job->domain, &job->status);
  if (job->rcpt == NULL)
    return FALSE;
  job->rcpt->orcpt = g_steal_pointer (&job->params.orcpt);
  job->rcpt->bypass = g_steal_pointer (&job->params.bypass);
  g_clear_pointer (&job->rcpt_path, g_free);
  /* in a cluster the owner is decided first, on the main loop: another
   * node's recipient is checked there, not here */
  if (lmtp_nodes_enabled (job->config))
    job->check_later = TRUE;
  if (job->check_later || !rcpt_needs_check (job->config, job->rcpt))
    return TRUE;
  return deliver_rcpt_check (job->ctx, job->config, &job->msg, job->rcpt, job->size_hint, &job->status);
}

void
lmtp_delivery_run (gpointer data, gpointer unused)
{
  Job *job = data;

  if (job->rcpt_check && job->rcpt_path)
    job->ok = rcpt_resolve_and_check (job);
  else if (job->rcpt_check)
    job->ok = deliver_rcpt_check (job->ctx, job->config, &job->msg, job->rcpt, job->size_hint, &job->status);
  else
    deliver_pipeline_run (job->ctx, job->config, &job->msg, job->rcpt, &job->t->shared, &job->status,
                          &job->path);
  lmtp_handback_push (handback, job);
}

static Job *
job_new (LmtpSession *s, Txn *t, DeliverRecipient *rcpt)
{
  Job *job = g_new0 (Job, 1);

  job->s = lmtp_session_ref (s);
  job->t = t;
  job->config = lmtpd_config_ref (t->config);
  job->ctx = deliver_context_ref (s->host->context (s->server));
  job->msg.id = t->id;
  job->msg.sender = t->sender;
  job->msg.helo = s->xf.helo ? s->xf.helo : s->lhlo;
  job->msg.client_addr = s->xf.addr ? s->xf.addr : s->peer;
  job->msg.client_name = s->xf.name ? s->xf.name : s->client_name;
  job->msg.protocol = "LMTP";
  job->msg.mail_params = t->mail_params;
  job->msg.received_us = t->started_us;
  job->msg.spool = t->spool;
  job->msg.queue_id = s->xf.ident;
  job->msg.message_id = t->message_id;   /* known after the data (the decision trace) */
  job->rcpt = rcpt;
  return job;
}

/* Input waits (MODE_BUSY) while a job is out. */
static void
job_push (LmtpSession *s, Job *job)
{
  if (handback == NULL) /* here on the main thread, before any job is out */
    handback = lmtp_handback_new (job_finished);
  g_thread_pool_push (s->host->pool (s->server), job, NULL);
}

/* ---- RCPT ------------------------------------------------------------------ */

/* Is there anything to check for @r before answering RCPT: a quota, or a
 * service that runs at RCPT?  (Both may block, so they go to a thread.) */
static gboolean
rcpt_needs_check (const LmtpdConfig *c, const DeliverRecipient *r)
{
  const LmtpdRule *rule;

  if (r->quota_bytes || r->quota_messages)
    return TRUE;
  rule = lmtpd_config_match_rule (c, r->address);
  for (guint i = 0; rule && i < rule->services->len; i++)
    if (((const LmtpdService *) rule->services->pdata[i])->rcpt_stage)
      return TRUE;
  return FALSE;
}

static void rcpt_job_push (LmtpSession *s, Job *job);

/* Back on the main loop from a RCPT check. */
static void
rcpt_checked (LmtpSession *s, Job *job)
{
  s->mode = MODE_COMMAND;
  if (s->txn == job->t && !s->closed)
    {
      if (job->ok)
        {
          DeliverRecipient *r = g_steal_pointer (&job->rcpt);
          if (lmtp_proxy_rcpt (s, r, job->params.text, &proxy_results))
            ;
          else if (job->check_later && rcpt_needs_check (job->config, r))
            rcpt_job_push (s, job_new (s, job->t, r));
          else
            recipient_accepted (s, r);
        }
      else
        recipient_refused (s, job->rcpt ? job->rcpt->address : job->rcpt_path, &job->status);
    }
  job->rcpt_check = job->rcpt != NULL; /* job_free frees it only if still ours */
  job_free (job);
  if (s->closed || s->mode == MODE_BUSY) /* busy: a backend answers this RCPT */
    return;
  lmtp_session_resume_commands (s);
}

/* Input waits while the job resolves and checks the recipient. */
static void
rcpt_job_push (LmtpSession *s, Job *job)
{
  job->rcpt_check = TRUE;
  job->msg.spool = NULL;
  job->size_hint = s->txn->size_hint;
  s->mode = MODE_BUSY;
  lmtp_session_rearm (s);
  lmtp_session_flush (s);
  job_push (s, job);
}

/* A directory that asks a server is asked in a delivery thread, so a slow
 * one holds up only this session. */
static void
rcpt_lookup_later (LmtpSession *s, const char *path, const char *local, const char *domain,
                   LmtpRcptParams *params)
{
  Job *job = job_new (s, s->txn, NULL);

  job->rcpt_path = g_strdup (path);
  job->local = g_strdup (local);
  job->domain = g_strdup (domain);
  job->params.orcpt = g_steal_pointer (&params->orcpt);
  job->params.bypass = g_steal_pointer (&params->bypass);
  job->params.text = g_steal_pointer (&params->text);
  rcpt_job_push (s, job);
}

void
lmtp_delivery_rcpt (LmtpSession *s, const char *path, const char *local, const char *domain,
                    LmtpRcptParams *params)
{
  Txn *t = s->txn;
  DeliverStatus st = { 0 };
  DeliverContext *ctx = s->host->context (s->server);
  gboolean would_block = FALSE;
  DeliverRecipient *r;

  /* the directory's cache answers here; a lookup that must wait for a
   * server goes to a delivery thread */
  if (deliver_resolve_may_block (ctx, t->config))
    r = deliver_resolve_cached (ctx, t->config, local, domain, &st, &would_block);
  else
    r = deliver_resolve (ctx, t->config, local, domain, &st);
  if (would_block)
    {
      rcpt_lookup_later (s, path, local, domain, params);
      return;
    }

  if (r == NULL)
    {
      recipient_refused (s, path, &st);
      deliver_status_clear (&st);
      return;
    }
  r->orcpt = g_steal_pointer (&params->orcpt);
  r->bypass = g_steal_pointer (&params->bypass);
  if (lmtp_proxy_rcpt (s, r, params->text, &proxy_results))
    return;
  if (!rcpt_needs_check (t->config, r))
    {
      recipient_accepted (s, r);
      return;
    }
  rcpt_job_push (s, job_new (s, t, r));
}

/* ---- after the data -------------------------------------------------------- */

gboolean
lmtp_delivery_open_spool (LmtpSession *s)
{
  g_autoptr (GError) error = NULL;

  if (s->txn->spool)
    return TRUE;
  s->txn->spool = deliver_spool_new (s->host->context (s->server), s->txn->config->spool_dir, &error);
  if (s->txn->spool == NULL)
    {
      g_warning ("%s: %s", s->log_id, error->message);
      return FALSE;
    }
  return TRUE;
}

/* A delivery is done: reply for every recipient whose turn has come. */
static void
delivered (LmtpSession *s)
{
  Txn *t = s->txn;

  while (t->delivered < t->jobs->len)
    {
      Job *job = t->jobs->pdata[t->delivered];
      const Job *result = job->same_as ? job->same_as : job;
      if (!job->done)
        break;
      recipient_delivered (s, job->rcpt, &result->status, result->path, job->proxied);
      t->delivered++;
    }
  lmtp_session_flush (s); /* RFC 2033 4.2: each reply as soon as it is known */
  if (t->delivered < t->jobs->len)
    return;
  lmtp_session_txn_end (s);
  lmtp_session_resume_commands (s);
}

/* The job of an earlier recipient that would store into the same place
 * as @r: the same final address (two addresses that are aliases of one
 * user, or one address twice) and the same folder; or NULL. */
static Job *
job_same_recipient (GPtrArray *jobs, const DeliverRecipient *r)
{
  for (guint i = 0; i < jobs->len; i++)
    {
      Job *other = jobs->pdata[i];
      const DeliverRecipient *o = other->rcpt;
      if (other->same_as == NULL && !other->proxied && strcmp (o->address, r->address) == 0
          && g_strcmp0 (o->folder, r->folder) == 0
          && o->folder_if_exists == r->folder_if_exists)
        return other;
    }
  return NULL;
}

/* The same recipient twice (or an alias next to its target) is stored
 * once, as Dovecot does and as Postfix's duplicate filter does for
 * expanded aliases, and answered twice with the first one's reply: two
 * copies in one mailbox are never what the sender meant, and RFC 2033
 * wants a reply per RCPT.  Decided here, before any runs: left to the
 * duplicate journal, two deliveries running at once would both store. */
static void
deliver_all (LmtpSession *s)
{
  Txn *t = s->txn;
  g_autoptr (GPtrArray) distinct = g_ptr_array_new ();

  t->jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) job_free);
  for (guint i = 0; i < t->rcpts->len; i++)
    {
      Job *job = job_new (s, t, t->rcpts->pdata[i]);
      job->proxied = lmtp_proxy_owns (s, job->rcpt);
      job->same_as = job->proxied ? NULL : job_same_recipient (t->jobs, job->rcpt);
      if (job->proxied)
        g_clear_pointer (&job->s, lmtp_session_unref); /* lmtp_delivery_proxied answers it */
      else if (job->same_as)
        {
          job->done = TRUE;
          g_clear_pointer (&job->s, lmtp_session_unref); /* it never runs */
        }
      else
        g_ptr_array_add (distinct, job->rcpt);
      g_ptr_array_add (t->jobs, job);
    }
  deliver_shared_init (&t->shared, distinct);
  for (guint i = 0; i < t->jobs->len; i++)
    if (((Job *) t->jobs->pdata[i])->same_as == NULL && !((Job *) t->jobs->pdata[i])->proxied)
      job_push (s, t->jobs->pdata[i]);
  lmtp_proxy_data (s);
}

/* ---- recipients another node owns (lmtp-proxy.c) ------------------------------ */

static void
proxy_rcpt_over (LmtpSession *s)
{
  if (s->closed)
    return;
  s->mode = MODE_COMMAND;
  lmtp_session_resume_commands (s);
}

static void
proxy_accepted (LmtpSession *s, DeliverRecipient *r, const ProxyReply *reply)
{
  g_ptr_array_add (s->txn->rcpts, r);
  if (!s->closed)
    lmtp_session_reply (s, LMTP_REPLY_STATUS, reply->code, reply->enhanced, reply->text);
  proxy_rcpt_over (s);
}

static void
proxy_refused (LmtpSession *s, DeliverRecipient *r, const DeliverStatus *st)
{
  if (!s->closed)
    recipient_refused (s, r->original, st);
  deliver_recipient_free (r);
  proxy_rcpt_over (s);
}

/* A backend's reply after the data, or the proxy's 451 for it: once. */
static void
proxy_delivered (LmtpSession *s, const DeliverRecipient *r, const DeliverStatus *st, const char *node)
{
  Txn *t = s->txn;

  for (guint i = 0; t && t->jobs && i < t->jobs->len; i++)
    {
      Job *job = t->jobs->pdata[i];
      if (job->rcpt != r || !job->proxied || job->done)
        continue;
      deliver_status_set (&job->status, st->code, st->enhanced, "%s", st->text);
      job->path = g_strdup_printf ("proxy:%s", node);
      job->done = TRUE;
      delivered (s);
      return;
    }
}

static const LmtpProxyResults proxy_results = { proxy_accepted, proxy_refused, proxy_delivered };

/* The Message-ID as the log shows it: sanitised (it comes from the
 * sender) and cut to a length a log line can carry. */
static char *
message_id_for_log (const DeliverSpool *spool)
{
  g_autofree char *raw = deliver_spool_header_value (spool, "Message-ID");

  if (raw == NULL || raw[0] == '\0')
    return NULL;
  return util_sanitize (raw, 256);
}

/* The data could not be taken: every recipient gets the same answer. */
static void
data_refused (LmtpSession *s)
{
  Txn *t = s->txn;
  DeliverStatus st = { 0 };

  if (t->failure == FAIL_TOO_BIG)
    deliver_status_set (&st, LMTP_STATUS_TOO_BIG);
  else if (t->failure == FAIL_LINE_TOO_LONG)
    deliver_status_set (&st, LMTP_STATUS_DATA_LINE_TOO_LONG);
  else
    deliver_status_from_error (&st, t->spool_error); /* disk full is 452 4.3.1, anything else 451 4.3.0 */
  for (guint i = 0; i < t->rcpts->len; i++)
    recipient_delivered (s, t->rcpts->pdata[i], &st, NULL, FALSE);
  deliver_status_clear (&st);
  lmtp_session_txn_end (s);
}

void
lmtp_delivery_data_complete (LmtpSession *s)
{
  Txn *t = s->txn;
  g_autoptr (GError) error = NULL;

  lmtp_metrics_transaction (t->received);
  if (t->failure == FAIL_NONE && !deliver_spool_finish (t->spool, &error))
    {
      g_warning ("%s: %s: %s", s->log_id, t->id, error->message);
      t->failure = FAIL_SPOOL;
      t->spool_error = g_steal_pointer (&error);
    }
  if (t->failure != FAIL_NONE)
    {
      data_refused (s);
      return;
    }
  t->message_id = message_id_for_log (t->spool);
  s->mode = MODE_BUSY;
  lmtp_session_rearm (s);
  lmtp_session_flush (s);
  deliver_all (s);
}
