/* decision-trace.c - the decision trace of one recipient: the pipeline
 * adds a line per step (each callout, each Sieve action, duplicate
 * suppression), the places the message went, and at the end one row goes
 * to the records (lmtpd_trace) through their writer thread, so the reply
 * never waits for it.  Every hundredth row of a process also deletes a
 * bounded batch of expired ones.  lmtpctl trace reads them (trace-find.c).
 */
#include "config.h"

#include <stdarg.h>
#include <string.h>

#include "context.h"
#include "decision-trace.h"

#define EXPIRE_EVERY 100          /* rows posted between two expiry batches */
#define EXPIRE_BATCH "1000"       /* rows deleted at most per batch */
#define MAX_STEPS_BYTES (64 * 1024) /* a hostile script or service cannot grow a row without end */
#define MAX_ID 256

void
decision_trace_init (DecisionTrace *t, DeliverContext *ctx, const LmtpdConfig *config)
{
  gboolean on = config->trace_enabled && ctx && deliver_context_records (ctx);

  t->steps = on ? g_string_sized_new (256) : NULL;
  t->folders = on ? g_string_new (NULL) : NULL;
}

void
decision_trace_clear (DecisionTrace *t)
{
  if (t->steps)
    g_string_free (t->steps, TRUE);
  if (t->folders)
    g_string_free (t->folders, TRUE);
  t->steps = t->folders = NULL;
}

static gboolean
tracing (const DecisionTrace *t)
{
  return t && t->steps && t->steps->len < MAX_STEPS_BYTES;
}

void
decision_trace_add (DecisionTrace *t, const char *fmt, ...)
{
  gsize from;
  va_list ap;

  if (!tracing (t))
    return;
  from = t->steps->len;
  va_start (ap, fmt);
  g_string_append_vprintf (t->steps, fmt, ap);
  va_end (ap);
  /* one step, one line */
  for (gsize i = from; i < t->steps->len; i++)
    if (t->steps->str[i] == '\n' || t->steps->str[i] == '\r')
      t->steps->str[i] = ' ';
  g_string_append_c (t->steps, '\n');
}

void
decision_trace_add_lines (DecisionTrace *t, const char *lines)
{
  if (tracing (t) && lines)
    g_string_append (t->steps, lines);
}

void
decision_trace_folder (DecisionTrace *t, const char *where)
{
  if (!tracing (t))
    return;
  if (t->folders->len)
    g_string_append (t->folders, ", ");
  g_string_append (t->folders, where);
}

/* "sieve SCRIPT:LINE ACTION \"ARGUMENT\"" for one action. */
static void
sieve_step (DecisionTrace *t, const SieveAction *a)
{
  g_autofree char *arg = a->argument ? util_sanitize (a->argument, 200) : NULL;
  g_autofree char *script = a->script ? util_sanitize (a->script, 300) : NULL;
  const char *name = sieve_action_name (a->kind);

  if (a->line == 0 && a->kind == SIEVE_KEEP)
    {
      decision_trace_add (t, "sieve implicit keep");
      return;
    }
  decision_trace_add (t, "sieve %s:%u %s%s%s%s%s", script ? script : "-", a->line, name, a->copy ? " :copy" : "",
                      arg ? " \"" : "", arg ? arg : "", arg ? "\"" : "");
}

void
decision_trace_sieve (DecisionTrace *t, const SieveResult *r)
{
  if (!tracing (t))
    return;
  if (r->error)
    {
      g_autofree char *why = util_sanitize (r->error, 300);
      decision_trace_add (t, "sieve failed: %s", why);
    }
  for (guint i = 0; i < r->actions->len; i++)
    sieve_step (t, r->actions->pdata[i]);
}

char *
decision_trace_message_id (const char *value)
{
  g_autofree char *v = g_strstrip (g_strdup (value ? value : ""));
  gsize n = strlen (v);

  if (n >= 2 && v[0] == '<' && v[n - 1] == '>')
    {
      v[n - 1] = '\0';
      return util_sanitize (v + 1, MAX_ID);
    }
  return util_sanitize (v, MAX_ID);
}

/* The id of the topmost Received field ("... with ESMTP id 4AbC12; date"),
 * the MTA's queue id when the client did not send XFORWARD IDENT. */
static char *
received_id (const DeliverSpool *spool)
{
  g_autofree char *received = spool ? deliver_spool_header_value (spool, "Received") : NULL;
  char *end, *p;

  if (received == NULL)
    return NULL;
  if ((end = strchr (received, ';')) != NULL)
    *end = '\0';
  for (p = received; (p = strstr (p, " id ")) != NULL; p += 4)
    {
      gsize n;
      p += 4;
      while (*p == ' ')
        p++;
      n = strcspn (p, " \t;");
      if (n > 0 && n <= 64)
        return g_strndup (p, n);
    }
  return NULL;
}

/* Now and then, a bounded delete of what has expired (never a long lock). */
static void
maybe_expire (DeliverContext *ctx, StateRecords *records, const char *now)
{
  const char *values[] = { now };

  if (g_atomic_int_add (&ctx->trace_posts, 1) % EXPIRE_EVERY != 0)
    return;
  state_records_post (records,
                      "DELETE FROM lmtpd_trace WHERE (txn, recipient) IN (SELECT txn, recipient FROM lmtpd_trace"
                      " WHERE expires < $1 LIMIT " EXPIRE_BATCH ")",
                      1, values);
}

/* The Message-ID and the queue id of @msg, as traces are found by them. */
static void
message_ids (const DeliverMessage *msg, char **message_id, char **queue_id)
{
  g_autofree char *raw = NULL;

  if (msg->message_id == NULL && msg->spool)
    raw = deliver_spool_header_value (msg->spool, "Message-ID");
  *message_id = msg->message_id || raw ? decision_trace_message_id (msg->message_id ? msg->message_id : raw) : NULL;
  if (*message_id && (*message_id)[0] == '\0')
    g_clear_pointer (message_id, g_free);
  *queue_id = msg->queue_id ? util_sanitize (msg->queue_id, 64) : received_id (msg->spool);
}

void
decision_trace_post (DecisionTrace *t, DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                     const char *recipient, const DeliverStatus *status)
{
  StateRecords *records = ctx ? deliver_context_records (ctx) : NULL;
  gint64 at = g_get_real_time () / G_USEC_PER_SEC;
  char at_s[24], expires_s[24];
  g_autofree char *reply = NULL, *message_id = NULL, *queue_id = NULL;
  const char *values[10];

  if (t == NULL || t->steps == NULL || records == NULL)
    return;
  g_snprintf (at_s, sizeof at_s, "%" G_GINT64_FORMAT, at);
  g_snprintf (expires_s, sizeof expires_s, "%" G_GINT64_FORMAT, at + (gint64) config->trace_keep);
  reply = g_strdup_printf ("%u %s %s", status->code, status->enhanced, status->text ? status->text : "");
  message_ids (msg, &message_id, &queue_id);
  if (t->steps->len && t->steps->str[t->steps->len - 1] == '\n')
    g_string_truncate (t->steps, t->steps->len - 1);
  values[0] = msg->id;
  values[1] = recipient;
  values[2] = at_s;
  values[3] = expires_s;
  values[4] = message_id;
  values[5] = queue_id;
  values[6] = msg->sender;
  values[7] = reply;
  /* a folder only for what was delivered: a store taken back does not count */
  values[8] = status->code / 100 == 2 && t->folders->len ? t->folders->str : NULL;
  values[9] = t->steps->str;
  state_records_post (records,
                      "INSERT INTO lmtpd_trace (txn, recipient, at, expires, message_id, queue_id, sender, reply,"
                      " folder, steps) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                      " ON CONFLICT (txn, recipient) DO UPDATE SET at = excluded.at, expires = excluded.expires,"
                      " reply = excluded.reply, folder = excluded.folder, steps = excluded.steps",
                      G_N_ELEMENTS (values), values);
  maybe_expire (ctx, records, at_s);
}
