/* callout.c - OPES callouts for one recipient, and what their verdicts do.
 *
 * Which services run: the first [rule] whose match names the recipient,
 * less the services a bypass request names that may be bypassed.  Each
 * service is called over OCP (ocp/); recipients of one transaction that
 * share a rule and a bypass request share one call per service, with all
 * their addresses in Rcpt-To.  Each recipient applies its own verdict: the
 * section the service returned for it (profile 2), else the call's one
 * (docs/ocp-lmtp-profile.md, "Sharing").  Verdicts combine by precedence:
 *
 *   reject > tempfail > discard > redirect > quarantine > modify > accept
 *
 * A service that fails is answered by its on_failure policy.  A service
 * in mode = shadow is called like the others, but its verdict is only
 * counted and recorded (record.c): it changes no reply, byte, header,
 * folder or Sieve value, and its failure is no failure.  Header
 * changes are made by the header editor (header-edit.c); the OPES trace
 * names this system and every service with what it did (RFC 3897, RFC
 * 4902 3.1).  The OCP client and the observer are the delivery context's.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "callout.h"
#include "context.h"
#include "lmtpd-util.h"
#include "header-edit.h"
#include "record.h"
#include "ocp.h"

/* ---- the client ---------------------------------------------------------- */

void
callout_service_config (const LmtpdService *sv, OcpServiceConfig *out)
{
  guint parts = OCP_PARTS_ALL;

  ocp_parts_parse (sv->parts, &parts);
  out->name = sv->name;
  out->uri = sv->uri;
  out->servers = sv->servers;
  out->parts = parts | OCP_PART_ENVELOPE;
  out->connect_timeout_ms = sv->connect_timeout_ms;
  out->response_timeout_ms = sv->response_timeout_ms;
  out->timeout_ms = sv->timeout_ms;
  out->max_connections = sv->max_connections;
  out->tls = sv->tls;
  out->tls_ca_file = sv->tls_ca_file;
  out->tls_cert_file = sv->tls_cert_file;
  out->tls_key_file = sv->tls_key_file;
  out->tls_server_name = sv->tls_server_name;
}

/* ---- results --------------------------------------------------------------- */

static void
outcome_free (gpointer p)
{
  CalloutOutcome *o = p;
  ocp_verdict_clear (&o->verdict);
  g_free (o->why);
  g_free (o->server);
  g_free (o);
}

void
callout_result_free (CalloutResult *r)
{
  if (r == NULL)
    return;
  g_ptr_array_unref (r->outcomes);
  g_free (r);
}

static int
rank (const CalloutOutcome *o, const LmtpdService *sv)
{
  if (o->state == OUT_FAILED)
    return sv->on_failure == LMTPD_FAIL_REJECT ? 6 : 5;
  if (o->state != OUT_APPLIED)
    return 0;
  switch (o->verdict.verdict)
    {
    case OCP_VERDICT_REJECT: return 6;
    case OCP_VERDICT_TEMPFAIL: return 5;
    case OCP_VERDICT_DISCARD: return 4;
    case OCP_VERDICT_REDIRECT: return 3;
    case OCP_VERDICT_QUARANTINE: return 2;
    case OCP_VERDICT_ACCEPT: return strcmp (callout_outcome_word (o), "modify") == 0 ? 1 : 0;
    }
  return 0;
}

/* ---- bypass ---------------------------------------------------------------- */

/* RFC 3897: a bypass names services by URI ("*" = all).  We also take
 * service names; an entry that names nothing we know counts as "*". */
static gboolean
bypassed (const LmtpdConfig *config, const LmtpdService *sv, const char *request)
{
  g_auto (GStrv) items = NULL;

  if (request == NULL || !sv->bypassable)
    return FALSE;
  items = g_strsplit_set (request, ", ", -1);
  for (guint i = 0; items[i]; i++)
    {
      gboolean known = FALSE;
      if (items[i][0] == '\0')
        continue;
      if (strcmp (items[i], "*") == 0 || strcmp (items[i], sv->uri) == 0 || strcmp (items[i], sv->name) == 0)
        return TRUE;
      for (guint k = 0; k < config->services->len; k++)
        {
          const LmtpdService *o = config->services->pdata[k];
          known |= strcmp (items[i], o->uri) == 0 || strcmp (items[i], o->name) == 0;
        }
      if (!known)
        return TRUE;
    }
  return FALSE;
}

static char *
header_bypass (const DeliverMessage *msg)
{
  guint64 hlen = deliver_spool_header_len (msg->spool);
  g_autofree char *buf = NULL;
  g_autoptr (GMimeStream) stream = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  g_autoptr (GMimeMessage) m = NULL;
  const char *v;

  if (hlen == 0 || hlen > 1024 * 1024 || (buf = deliver_spool_read_header (msg->spool, NULL)) == NULL)
    return NULL;
  stream = g_mime_stream_mem_new_with_buffer (buf, hlen);
  parser = g_mime_parser_new_with_stream (stream);
  m = g_mime_parser_construct_message (parser, NULL);
  v = m ? g_mime_object_get_header (GMIME_OBJECT (m), "OPES-Bypass") : NULL;
  return v ? g_strstrip (g_strdup (v)) : NULL;
}

/* The bypass request that counts for this recipient, per policy. */
static char *
bypass_request (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt)
{
  GString *s = g_string_new (NULL);

  if ((config->opes_bypass & LMTPD_BYPASS_PARAMETER) && rcpt->bypass)
    g_string_append (s, rcpt->bypass);
  if ((config->opes_bypass & LMTPD_BYPASS_HEADER) && msg->spool)
    {
      g_autofree char *h = header_bypass (msg);
      if (h)
        g_string_append_printf (s, "%s%s", s->len ? "," : "", h);
    }
  if (s->len == 0)
    {
      g_string_free (s, TRUE);
      return NULL;
    }
  return g_string_free (s, FALSE);
}

/* ---- calling ---------------------------------------------------------------- */

/* One run of a rule's services for a group of recipients. */
typedef struct {
  DeliverContext *ctx;
  const LmtpdConfig *config;
  const DeliverMessage *msg;
  const char *bypass;
  gboolean rcpt_stage;
} Chain;

/* A recipient's settings from the directory ("Name: value") as the
 * services get them (Recipient-Data), or NULL.  A name that is not a
 * token is left out. */
static GHashTable *
recipient_data (const DeliverRecipient *m)
{
  GHashTable *data = NULL;

  for (guint i = 0; m->settings && m->settings[i]; i++)
    {
      const char *colon = strchr (m->settings[i], ':');
      g_autofree char *name = colon ? g_strndup (m->settings[i], colon - m->settings[i]) : NULL;
      if (name == NULL || name[0] == '\0' || strspn (name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                          "0123456789-") != strlen (name))
        continue;
      if (data == NULL)
        data = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      g_hash_table_replace (data, g_steal_pointer (&name), g_strstrip (g_strdup (colon + 1)));
    }
  return data;
}

static void
data_free (gpointer p)
{
  if (p)
    g_hash_table_unref (p);
}

/* The request for @members' addresses (kept in @addrs, @orcpts and
 * @datas, which the caller frees with data_free). */
static void
fill_request (const Chain *ch, GPtrArray *members, GPtrArray *addrs, GPtrArray *orcpts, GPtrArray *datas,
              OcpRequest *req)
{
  const DeliverMessage *msg = ch->msg;
  gboolean any_data = FALSE;

  for (guint i = 0; i < members->len; i++)
    {
      const DeliverRecipient *m = members->pdata[i];
      GHashTable *data = recipient_data (m);
      g_ptr_array_add (addrs, m->address);
      g_ptr_array_add (orcpts, m->orcpt);
      g_ptr_array_add (datas, data);
      any_data = any_data || data != NULL;
    }
  g_ptr_array_add (addrs, NULL);
  req->rcpt_data = any_data ? (GHashTable *const *) datas->pdata : NULL;
  req->stage = ch->rcpt_stage ? "rcpt" : "data";
  req->transaction_id = msg->id;
  req->client_address = msg->client_addr;
  req->client_name = msg->helo;
  req->mail_from = msg->sender;
  req->mail_params = msg->mail_params;
  req->rcpt_to = (const char *const *) addrs->pdata;
  req->orcpt = (const char *const *) orcpts->pdata;
  req->bypass = ch->bypass;
  req->fd = -1;
  if (!ch->rcpt_stage && msg->spool)
    {
      req->fd = deliver_spool_fd (msg->spool);
      req->header_len = deliver_spool_header_len (msg->spool);
      req->body_len = deliver_spool_size (msg->spool) - req->header_len;
      req->message_size = deliver_spool_size (msg->spool);
    }
}

/* What the services before the last outcome said (logging services want
 * it): "uri=word, ...", "" for none. */
static char *
prior_verdicts (const CalloutResult *r)
{
  GString *prior = g_string_new (NULL);

  for (guint k = 0; k + 1 < r->outcomes->len; k++)
    {
      const CalloutOutcome *p = r->outcomes->pdata[k];
      if (p->service->shadow) /* the chain sees what it would without it */
        continue;
      g_string_append_printf (prior, "%s%s=%s", prior->len ? ", " : "", p->service->uri, callout_outcome_word (p));
    }
  return g_string_free (prior, FALSE);
}

/* Calls @o's service, and tells the observer. */
static void
call_service (const Chain *ch, const OcpRequest *req, CalloutOutcome *o)
{
  const LmtpdService *sv = o->service;
  DeliverCalloutObserver observer = ch->ctx->observer;
  g_autoptr (GError) error = NULL;
  OcpServiceConfig sc;
  gint64 t0;

  callout_service_config (sv, &sc);
  t0 = g_get_monotonic_time ();
  if (ocp_client_call (ch->ctx->ocp, &sc, req, &o->verdict, &error))
    {
      o->elapsed_us = g_get_monotonic_time () - t0;
      o->server = g_strdup (o->verdict.server);
      o->state = sv->shadow ? OUT_SHADOW : OUT_APPLIED;
      if (observer)
        observer (sv->name, g_get_monotonic_time () - t0, callout_verdict_word (&o->verdict));
      if (record_wanted (ch->config, sv))
        record_call (ch->ctx, ch->config, sv, req, &o->verdict,
                     ch->msg->spool ? deliver_spool_digest (ch->msg->spool) : NULL);
      g_debug ("%s: service %s: %s (%" G_GINT64_FORMAT " us)", ch->msg->id, sv->name, callout_outcome_word (o),
               g_get_monotonic_time () - t0);
      return;
    }
  o->elapsed_us = g_get_monotonic_time () - t0;
  o->server = g_strdup (o->verdict.server);
  if (observer)
    observer (sv->name, g_get_monotonic_time () - t0, NULL);
  o->why = util_sanitize (error->message, 200);
  o->state = sv->on_failure == LMTPD_FAIL_ACCEPT || sv->shadow ? OUT_SKIPPED : OUT_FAILED;
  g_warning ("%s: service %s failed (%s): %s", ch->msg->id, sv->name,
             sv->shadow ? "shadow, nothing applies"
                        : o->state == OUT_SKIPPED ? "delivering unadapted" : "policy applies", o->why);
}

/* A quarantine release does not call again the service that quarantined
 * it (and only it); such a recipient's chain runs alone (callout_run). */
static gboolean
skipped_for_release (GPtrArray *members, const LmtpdService *sv)
{
  const DeliverRecipient *m = members->len == 1 ? members->pdata[0] : NULL;

  return m && m->skip_service && strcmp (m->skip_service, sv->name) == 0;
}

static CalloutResult *
run_chain (const Chain *ch, const LmtpdRule *rule, GPtrArray *members)
{
  CalloutResult *r = g_new0 (CalloutResult, 1);
  g_autoptr (GPtrArray) addrs = g_ptr_array_new ();
  g_autoptr (GPtrArray) orcpts = g_ptr_array_new ();
  g_autoptr (GPtrArray) datas = g_ptr_array_new_with_free_func (data_free);
  g_autofree char *prior_text = NULL;
  OcpRequest req = { 0 };

  r->outcomes = g_ptr_array_new_with_free_func (outcome_free);
  fill_request (ch, members, addrs, orcpts, datas, &req);
  for (guint i = 0; i < rule->services->len; i++)
    {
      const LmtpdService *sv = rule->services->pdata[i];
      CalloutOutcome *o;

      if (sv->rcpt_stage != ch->rcpt_stage)
        continue;
      o = g_new0 (CalloutOutcome, 1);
      o->service = sv;
      ocp_verdict_init (&o->verdict);
      g_ptr_array_add (r->outcomes, o);
      if (bypassed (ch->config, sv, ch->bypass) || skipped_for_release (members, sv))
        {
          o->state = OUT_BYPASSED;
          continue;
        }
      g_free (prior_text);
      prior_text = prior_verdicts (r);
      req.prior_verdicts = prior_text[0] ? prior_text : NULL;
      call_service (ch, &req, o);
    }
  return r;
}

/* The recipients of the transaction that share @rcpt's rule and bypass. */
static GPtrArray *
group_members (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverShared *shared,
               const DeliverRecipient *rcpt, const LmtpdRule *rule, const char *bypass)
{
  GPtrArray *members = g_ptr_array_new ();

  for (guint i = 0; shared && shared->rcpts && i < shared->rcpts->len; i++)
    {
      const DeliverRecipient *o = shared->rcpts->pdata[i];
      g_autofree char *ob = NULL;
      if (lmtpd_config_match_rule (config, o->address) != rule)
        continue;
      ob = bypass_request (config, msg, o);
      if (g_strcmp0 (ob, bypass) == 0)
        g_ptr_array_add (members, (gpointer) o);
    }
  if (members->len == 0)
    g_ptr_array_add (members, (gpointer) rcpt);
  return members;
}

typedef struct {
  gboolean done;
  CalloutResult *result;
} SharedCall;

static void
shared_call_free (gpointer p)
{
  SharedCall *c = p;
  callout_result_free (c->result);
  g_free (c);
}

/* The outcome as @address sees it: its own section of the verdict, with
 * the call's adapted body (and header, unless it has its own). */
static CalloutOutcome *
outcome_for_recipient (const CalloutOutcome *o, const char *address)
{
  CalloutOutcome *mine = g_new0 (CalloutOutcome, 1);
  const OcpRecipientVerdict *rv = callout_outcome_answered (o) ? ocp_verdict_for_recipient (&o->verdict, address) : NULL;

  mine->service = o->service;
  mine->state = o->state;
  mine->why = g_strdup (o->why);
  mine->server = g_strdup (o->server);
  mine->elapsed_us = o->elapsed_us;
  if (rv == NULL)
    {
      ocp_verdict_copy (&mine->verdict, &o->verdict);
      return mine;
    }
  ocp_verdict_copy (&mine->verdict, &rv->verdict);
  if (mine->verdict.header == NULL && o->verdict.header)
    mine->verdict.header = g_bytes_ref (o->verdict.header);
  if (o->verdict.body_fd >= 0)
    mine->verdict.body_fd = dup (o->verdict.body_fd);
  mine->verdict.body_len = o->verdict.body_len;
  if (mine->verdict.service_id == NULL)
    mine->verdict.service_id = g_strdup (o->verdict.service_id);
  return mine;
}

/* @rcpt's own view of a shared call, or NULL when no service answered
 * for it alone (the shared result then applies as it is). */
static CalloutResult *
result_for_recipient (const CalloutResult *shared, const DeliverRecipient *rcpt)
{
  CalloutResult *r;
  gboolean any = FALSE;

  for (guint i = 0; i < shared->outcomes->len && !any; i++)
    {
      const CalloutOutcome *o = shared->outcomes->pdata[i];
      any = callout_outcome_answered (o) && ocp_verdict_for_recipient (&o->verdict, rcpt->address);
    }
  if (!any)
    return NULL;
  r = g_new0 (CalloutResult, 1);
  r->outcomes = g_ptr_array_new_with_free_func (outcome_free);
  for (guint i = 0; i < shared->outcomes->len; i++)
    g_ptr_array_add (r->outcomes, outcome_for_recipient (shared->outcomes->pdata[i], rcpt->address));
  return r;
}

static const CalloutResult *
own_view (const CalloutResult *shared, const DeliverRecipient *rcpt, CalloutResult **owned)
{
  *owned = result_for_recipient (shared, rcpt);
  return *owned ? *owned : shared;
}

GHashTable *
callout_shared_table_new (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, g_free, shared_call_free);
}

/* Each verdict @r gives its recipient, counted per service and hour (a
 * shadow service's would-be verdict too); failures as "failed". */
static void
count_verdicts (DeliverContext *ctx, const CalloutResult *r)
{
  for (guint i = 0; r && i < r->outcomes->len; i++)
    {
      const CalloutOutcome *o = r->outcomes->pdata[i];
      const char *word = o->state == OUT_SHADOW ? callout_verdict_word (&o->verdict) : callout_outcome_word (o);
      if (o->state == OUT_BYPASSED || (o->state == OUT_SKIPPED && o->why == NULL))
        continue;
      verdict_counts_add (ctx, o->service->name, o->why && !callout_outcome_answered (o) ? "failed" : word, o->service->shadow);
    }
}

static const CalloutResult *
recipient_view (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                const DeliverRecipient *rcpt, DeliverShared *shared, CalloutResult **owned)
{
  Chain ch = { ctx, config, msg, NULL, FALSE };
  const LmtpdRule *rule = lmtpd_config_match_rule (config, rcpt->address);
  g_autofree char *bypass = NULL;
  g_autofree char *key = NULL;
  SharedCall *call;
  gboolean mine = FALSE;

  *owned = NULL;
  if (rule == NULL || rule->services->len == 0)
    return NULL;
  bypass = bypass_request (config, msg, rcpt);
  ch.bypass = bypass;
  if (shared == NULL || shared->callouts == NULL || rcpt->skip_service)
    {
      g_autoptr (GPtrArray) one = g_ptr_array_new ();
      g_ptr_array_add (one, (gpointer) rcpt);
      *owned = run_chain (&ch, rule, one);
      return *owned;
    }
  key = g_strdup_printf ("%s\n%s", rule->name, bypass ? bypass : "");
  g_mutex_lock (&shared->lock);
  call = g_hash_table_lookup (shared->callouts, key);
  if (call == NULL)
    {
      call = g_new0 (SharedCall, 1);
      g_hash_table_insert (shared->callouts, g_strdup (key), call);
      mine = TRUE;
    }
  g_mutex_unlock (&shared->lock);
  if (mine)
    {
      g_autoptr (GPtrArray) members = group_members (config, msg, shared, rcpt, rule, bypass);
      CalloutResult *r = run_chain (&ch, rule, members);
      g_mutex_lock (&shared->lock);
      call->result = r;
      call->done = TRUE;
      g_cond_broadcast (&shared->cond);
      g_mutex_unlock (&shared->lock);
      return own_view (r, rcpt, owned);
    }
  g_mutex_lock (&shared->lock);
  while (!call->done)
    g_cond_wait (&shared->cond, &shared->lock);
  g_mutex_unlock (&shared->lock);
  return own_view (call->result, rcpt, owned);
}

const CalloutResult *
callout_run (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
             const DeliverRecipient *rcpt, DeliverShared *shared, CalloutResult **owned)
{
  const CalloutResult *r = recipient_view (ctx, config, msg, rcpt, shared, owned);

  count_verdicts (ctx, r);
  return r;
}

gboolean
callout_rcpt_stage (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                    DeliverRecipient *rcpt, GString *steps, DeliverStatus *status)
{
  Chain ch = { ctx, config, msg, NULL, TRUE };
  const LmtpdRule *rule = lmtpd_config_match_rule (config, rcpt->address);
  g_autofree char *bypass = NULL;
  g_autoptr (GPtrArray) one = NULL;
  CalloutResult *r;
  CalloutDecision d;
  gboolean ok;

  if (rule == NULL)
    return TRUE;
  for (guint i = 0; i < rule->services->len; i++)
    if (((LmtpdService *) rule->services->pdata[i])->rcpt_stage)
      goto run;
  return TRUE;
run:
  bypass = (config->opes_bypass & LMTPD_BYPASS_PARAMETER) && rcpt->bypass ? g_strdup (rcpt->bypass) : NULL;
  one = g_ptr_array_new ();
  g_ptr_array_add (one, (gpointer) rcpt);
  ch.bypass = bypass;
  r = run_chain (&ch, rule, one);
  count_verdicts (ctx, r);
  if (steps)
    callout_trace_steps (r, "rcpt", steps);
  callout_decide (config, r, rcpt, &d);
  ok = d.kind != CALLOUT_REJECT && d.kind != CALLOUT_TEMPFAIL;
  if (!ok)
    callout_refusal (config, &d, rcpt, status);
  else
    {
      /* remembered for the trace of the delivered message */
      GString *t = g_string_new (NULL);
      for (guint i = 0; i < r->outcomes->len; i++)
        {
          const CalloutOutcome *o = r->outcomes->pdata[i];
          if (!o->service->shadow)
            g_string_append_printf (t, "%s%s ; verdict=%s", t->len ? ",\n\t" : "", o->service->uri,
                                    callout_outcome_word (o));
        }
      g_free (rcpt->rcpt_trace);
      rcpt->rcpt_trace = g_string_free (t, FALSE);
    }
  callout_result_free (r);
  return ok;
}

/* ---- deciding --------------------------------------------------------------- */

void
callout_decide (const LmtpdConfig *config, const CalloutResult *r, const DeliverRecipient *rcpt,
                CalloutDecision *d)
{
  int best = -1;

  memset (d, 0, sizeof *d);
  d->kind = CALLOUT_ACCEPT;
  for (guint i = 0; r && i < r->outcomes->len; i++)
    {
      const CalloutOutcome *o = r->outcomes->pdata[i];
      int k = rank (o, o->service);
      if (k > best)
        {
          best = k;
          d->decider = o;
        }
      if (o->state != OUT_APPLIED)
        continue;
      /* modifications accumulate in chain order; a later part wins */
      if (o->verdict.header)
        d->header = o->verdict.header;
      if (o->verdict.body_fd >= 0)
        {
          d->body_fd = o->verdict.body_fd;
          d->body_len = o->verdict.body_len;
          d->has_body = TRUE;
        }
      if (o->verdict.folder && o->verdict.verdict != OCP_VERDICT_QUARANTINE)
        d->folder = o->verdict.folder;
    }
  switch (best)
    {
    case 6: d->kind = CALLOUT_REJECT; break;
    case 5: d->kind = CALLOUT_TEMPFAIL; break;
    case 4: d->kind = CALLOUT_DISCARD; break;
    case 3: d->kind = CALLOUT_REDIRECT; d->redirect = d->decider->verdict.redirect; break;
    case 2: d->kind = CALLOUT_QUARANTINE; d->folder = d->decider->verdict.folder; break;
    default: d->kind = CALLOUT_ACCEPT; break;
    }
}

gboolean
callout_quarantines_to_store (const CalloutDecision *d)
{
  return d->kind == CALLOUT_QUARANTINE && d->decider && d->decider->service->quarantine_store;
}

const char *
callout_decision_service (const CalloutDecision *d)
{
  return d->decider ? d->decider->service->name : NULL;
}

const char *
callout_decision_reason (const CalloutDecision *d)
{
  if (d->decider == NULL)
    return NULL;
  return d->decider->verdict.reply_text ? d->decider->verdict.reply_text : d->decider->verdict.folder;
}

/* "550 5.7.1 <rcpt> text (OPES system via service)" with the service's own
 * code when it is of the right class. */
void
callout_refusal (const LmtpdConfig *config, const CalloutDecision *d, const DeliverRecipient *rcpt,
                 DeliverStatus *status)
{
  const CalloutOutcome *o = d->decider;
  gboolean perm = d->kind == CALLOUT_REJECT;
  guint code = perm ? 550 : 451;
  char enh[16];
  g_autofree char *text = NULL;
  const char *t = NULL;

  g_strlcpy (enh, perm ? "5.7.1" : "4.7.1", sizeof enh);
  if (o->state == OUT_FAILED)
    {
      if (!perm)
        g_strlcpy (enh, "4.3.0", sizeof enh);
      text = g_strdup_printf ("Content filter %s unavailable", o->service->name);
    }
  else
    {
      guint c = o->verdict.reply_code;
      if (c / 100 == (perm ? 5 : 4))
        code = c;
      t = o->verdict.reply_text;
      /* "x.y.z rest": the service's enhanced code, if of the same class */
      if (t && g_ascii_isdigit (t[0]) && t[1] == '.' && t[0] == (perm ? '5' : '4'))
        {
          gsize n = strcspn (t, " ");
          if (n < sizeof enh)
            {
              g_strlcpy (enh, t, n + 1);
              t += n;
              while (*t == ' ')
                t++;
            }
        }
      text = util_sanitize (t && *t ? t : (perm ? "Message refused by content filter"
                                                   : "Message deferred by content filter"), 300);
    }
  deliver_status_set (status, code, enh, "<%s> %s (OPES %s via %s)", rcpt->original, text,
                      config->opes_system, o->service->uri);
}

/* ---- the adapted message --------------------------------------------------- */

char *
callout_trace (const LmtpdConfig *config, const CalloutResult *r, const char *rcpt_trace)
{
  GString *s;
  gboolean any = FALSE;

  if (config->services->len == 0)
    return g_strdup ("");
  s = g_string_new (NULL);
  g_string_append_printf (s, "OPES-System: %s\n", config->opes_system);
  if (rcpt_trace && rcpt_trace[0])
    {
      g_string_append_printf (s, "OPES-Via: %s", rcpt_trace);
      any = TRUE;
    }
  for (guint i = 0; r && i < r->outcomes->len; i++)
    {
      const CalloutOutcome *o = r->outcomes->pdata[i];
      if (o->service->shadow) /* a shadow service changes no stored byte */
        continue;
      g_string_append_printf (s, "%s%s ; verdict=%s", any ? ",\n\t" : "OPES-Via: ", o->service->uri,
                              callout_outcome_word (o));
      any = TRUE;
    }
  if (any)
    g_string_append_c (s, '\n');
  return g_string_free (s, FALSE);
}

gboolean
callout_needs_new_header (const CalloutResult *r, const CalloutDecision *d)
{
  if (d->header)
    return TRUE;
  for (guint i = 0; r && i < r->outcomes->len; i++)
    {
      const CalloutOutcome *o = r->outcomes->pdata[i];
      if (o->state == OUT_APPLIED && (o->verdict.add_headers || o->verdict.remove_headers || o->verdict.subject_tag))
        return TRUE;
    }
  return FALSE;
}

/* ---- the stored header ------------------------------------------------------ */

static void
apply_edits (GPtrArray *fields, const CalloutOutcome *o)
{
  for (guint k = 0; o->verdict.remove_headers && k < o->verdict.remove_headers->len; k++)
    header_raw_remove (fields, o->verdict.remove_headers->pdata[k]);
  for (guint k = 0; o->verdict.add_headers && k < o->verdict.add_headers->len; k++)
    header_raw_add (fields, o->verdict.add_headers->pdata[k]);
  if (o->verdict.subject_tag)
    header_raw_tag_subject (fields, o->verdict.subject_tag);
}

/* The header part as it will be stored: the adapted one (or the original),
 * with header removals, additions and subject tags applied.  LF line ends,
 * final empty line included.  NULL if it cannot be read. */
char *
callout_new_header (const DeliverMessage *msg, const CalloutResult *r, const CalloutDecision *d)
{
  g_autofree char *orig = NULL;
  g_autoptr (GPtrArray) fields = NULL;
  const char *src;
  gsize len;

  if (d->header)
    src = g_bytes_get_data (d->header, &len);
  else if ((orig = deliver_spool_read_header (msg->spool, &len)) != NULL)
    src = orig;
  else
    return NULL;
  fields = header_raw_split (src, len);
  for (guint i = 0; r && i < r->outcomes->len; i++)
    {
      const CalloutOutcome *o = r->outcomes->pdata[i];
      if (o->state == OUT_APPLIED)
        apply_edits (fields, o);
    }
  return header_raw_join (fields, len);
}

char *
callout_flags (const CalloutResult *r)
{
  g_autoptr (GString) all = g_string_new (NULL);

  for (guint i = 0; r && i < r->outcomes->len; i++)
    {
      const CalloutOutcome *o = r->outcomes->pdata[i];
      if (o->state == OUT_APPLIED && o->verdict.flags)
        g_string_append (all, o->verdict.flags);
    }
  return all->len ? deliver_flags_normalize (all->str) : NULL;
}

void
callout_for_sieve (const CalloutResult *r, SieveMessage *sm, GArray *callouts, GPtrArray *keep)
{
  sm->spamtest = sm->spamtest_percent = sm->virustest = 0;
  for (guint i = 0; r && i < r->outcomes->len; i++)
    {
      const CalloutOutcome *o = r->outcomes->pdata[i];
      const OcpVerdict *v = &o->verdict;
      SieveCallout c = { 0 };
      char *labels = NULL;

      if (o->state != OUT_APPLIED)
        continue;
      if (v->labels && v->labels->len)
        {
          GString *j = g_string_new (NULL);
          for (guint k = 0; k < v->labels->len; k++)
            g_string_append_printf (j, "%s%s", k ? "," : "", (const char *) v->labels->pdata[k]);
          labels = g_string_free (j, FALSE);
          g_ptr_array_add (keep, labels);
        }
      c.service = o->service->name;
      c.verdict = ocp_verdict_name (v->verdict);
      c.score = v->score;
      c.labels = labels;
      g_array_append_val (callouts, c);
      if (v->score && v->threshold && sm->spamtest == 0)
        sieve_spamtest_from_score (v->score, v->threshold, &sm->spamtest, &sm->spamtest_percent);
      for (guint k = 0; v->labels && k < v->labels->len; k++)
        {
          const char *l = v->labels->pdata[k];
          if (strcmp (l, "virus") == 0)
            sm->virustest = 5;
          else if (strcmp (l, "virus-scanned") == 0 && sm->virustest == 0)
            sm->virustest = 1;
        }
    }
  sm->callouts = (const SieveCallout *) (void *) callouts->data;
  sm->n_callouts = callouts->len;
}
