/* services-call.c - one OCP call to a service of ocp-services: the
 * module's check runs in a worker thread (it may talk to spamd, clamd ...),
 * once per recipient when the module has settings per recipient (each
 * recipient then gets a section of its own where the answers differ), and
 * the answer goes back on the main loop, where one line per recipient logs
 * the decision and the metrics count it.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "services-call.h"

ServiceLive *
service_live_ref (ServiceLive *l)
{
  g_atomic_int_inc (&l->ref_count);
  return l;
}

void
service_live_unref (ServiceLive *l)
{
  if (!g_atomic_int_dec_and_test (&l->ref_count))
    return;
  if (l->svc.state && l->svc.module->free)
    l->svc.module->free (l->svc.state);
  g_free (l->svc.name);
  g_free (l->svc.uri);
  g_free (l->module_name);
  g_free (l->listen);
  g_free (l);
}

typedef struct {
  ServiceLive *live;
  OcpServerTxn *txn;
  ServiceInput in;
  ServiceOutput out;
  gint64 started_us;
  gboolean debug;       /* one more line per call */
} Job;

static void
job_free (gpointer p)
{
  Job *job = p;
  service_live_unref (job->live);
  ocp_server_txn_unref (job->txn);
  g_hash_table_unref (job->in.env);
  g_hash_table_unref (job->in.call_memo);
  g_strfreev (job->in.rcpts);
  if (job->in.header)
    g_bytes_unref (job->in.header);
  if (job->in.body)
    g_bytes_unref (job->in.body);
  if (job->in.body_fd >= 0)
    close (job->in.body_fd);
  ocp_verdict_clear (&job->out.verdict);
  if (job->out.header)
    g_bytes_unref (job->out.header);
  if (job->out.body_fd >= 0)
    close (job->out.body_fd);
  g_free (job);
}

static void
output_clear (ServiceOutput *out)
{
  ocp_verdict_clear (&out->verdict);
  g_clear_pointer (&out->header, g_bytes_unref);
  if (out->body_fd >= 0)
    close (out->body_fd);
  out->body_fd = -1;
}

/* Adapted bodies are read from their current offset (ocp_server_txn_respond). */
static gboolean
same_body (int a, int b)
{
  off_t oa, ob;
  char ba[65536], bb[65536];
  gssize na, nb;

  if (a < 0 || b < 0)
    return a == b;
  oa = lseek (a, 0, SEEK_CUR);
  ob = lseek (b, 0, SEEK_CUR);
  do
    {
      na = pread (a, ba, sizeof ba, oa);
      nb = pread (b, bb, sizeof bb, ob);
      if (na != nb || na < 0 || memcmp (ba, bb, na) != 0)
        return FALSE;
      oa += na;
      ob += nb;
    }
  while (na > 0);
  return TRUE;
}

static gboolean
same_verdict (const OcpVerdict *a, const OcpVerdict *b)
{
  g_autoptr (OcpMessage) ma = ocp_message_new ("AMS");
  g_autoptr (OcpMessage) mb = ocp_message_new ("AMS");
  g_autoptr (GBytes) ba = NULL, bb = NULL;

  ocp_verdict_to_message (a, ma);
  ocp_verdict_to_message (b, mb);
  ba = ocp_message_to_bytes (ma);
  bb = ocp_message_to_bytes (mb);
  return g_bytes_equal (ba, bb);
}

static gboolean
same_header (GBytes *a, GBytes *b)
{
  return a == NULL || b == NULL ? a == b : g_bytes_equal (a, b);
}

/* Recipient @i's section: its own verdict and, when it differs from the
 * transaction's (the first recipient's), its own header.  The body is one
 * for all: a recipient for whom the service made another body is deferred,
 * so the MTA delivers it again in a transaction of its own rather than
 * with someone else's content. */
static void
add_section (Job *job, const char *rcpt, ServiceOutput *mine)
{
  const ServiceOutput *first = &job->out;

  if (!same_body (first->body_fd, mine->body_fd))
    {
      OcpVerdict defer;
      ocp_verdict_init (&defer);
      service_apply_action (&defer, "tempfail 451 4.3.0 Content adapted differently for this recipient, "
                                    "deliver it separately", NULL);
      ocp_verdict_add_recipient (&job->out.verdict, rcpt, &defer);
      ocp_verdict_clear (&defer);
      return;
    }
  g_clear_pointer (&mine->verdict.header, g_bytes_unref);
  if (!same_header (first->header, mine->header))
    mine->verdict.header = mine->header ? g_bytes_ref (mine->header)
                           : job->in.header ? g_bytes_ref (job->in.header) : NULL;
  ocp_verdict_add_recipient (&job->out.verdict, rcpt, &mine->verdict);
}

/* The envelope as one recipient's check sees it: Rcpt-To is that
 * recipient alone, and its Recipient-Data settings (a user directory's
 * "Spam-Threshold" ...) appear under their own names, never over an
 * envelope parameter. */
static GHashTable *
env_for (GHashTable *env, const char *rcpt)
{
  GHashTable *copy = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autofree char *prefix = ocp_recipient_data_key (rcpt, "");
  GHashTableIter it;
  gpointer k, v;

  g_hash_table_iter_init (&it, env);
  while (g_hash_table_iter_next (&it, &k, &v))
    if (!g_str_has_prefix (k, "Recipient-Data:"))
      g_hash_table_replace (copy, g_strdup (k), g_strdup (v));
  g_hash_table_iter_init (&it, env);
  while (g_hash_table_iter_next (&it, &k, &v))
    if (g_str_has_prefix (k, prefix) && !g_hash_table_contains (copy, (char *) k + strlen (prefix)))
      g_hash_table_insert (copy, g_strdup ((char *) k + strlen (prefix)), g_strdup (v));
  g_hash_table_replace (copy, g_strdup ("Rcpt-To"), g_strdup (rcpt));
  return copy;
}

static void
check_one (Job *job, guint i, ServiceOutput *out)
{
  char *one[] = { job->in.rcpts[i], NULL };
  ServiceInput in = job->in;

  in.rcpts = one;
  in.env = env_for (job->in.env, one[0]);
  out->body_fd = -1;
  ocp_verdict_init (&out->verdict);
  job->live->svc.module->check (&job->live->svc, &in, out);
  g_hash_table_unref (in.env);
}

/* A module with settings per recipient decides for each recipient alone.
 * The first recipient's answer is the transaction's (what a processor that
 * speaks only profile 1 applies to all, as before); when any other differs,
 * every recipient gets a section of its own. */
static void
check_each_recipient (Job *job)
{
  guint n = g_strv_length (job->in.rcpts);
  g_autofree ServiceOutput *outs = g_new0 (ServiceOutput, n);
  gboolean same = TRUE;
  /* a module may read the body with read(): each check starts where the first did */
  off_t body_start = job->in.body_fd >= 0 ? lseek (job->in.body_fd, 0, SEEK_CUR) : 0;

  for (guint i = 0; i < n; i++)
    {
      if (job->in.body_fd >= 0 && lseek (job->in.body_fd, body_start, SEEK_SET) < 0)
        g_printerr ("ocp-services: %s: body: %s\n", job->live->svc.name, g_strerror (errno));
      check_one (job, i, &outs[i]);
      same = same && same_verdict (&outs[0].verdict, &outs[i].verdict)
             && same_header (outs[0].header, outs[i].header) && same_body (outs[0].body_fd, outs[i].body_fd);
    }
  job->out = outs[0];
  for (guint i = 0; !same && i < n; i++)
    add_section (job, job->in.rcpts[i], i == 0 ? &job->out : &outs[i]);
  /* outs[0] now belongs to job->out */
  for (guint i = 1; i < n; i++)
    output_clear (&outs[i]);
}

static void
run_check (GTask *task, gpointer src, gpointer data, GCancellable *cancel)
{
  Job *job = data;

  if (job->live->svc.module->per_recipient && g_strv_length (job->in.rcpts) > 1)
    check_each_recipient (job);
  else if (g_strv_length (job->in.rcpts) == 1)
    check_one (job, 0, &job->out);
  else
    job->live->svc.module->check (&job->live->svc, &job->in, &job->out);
  g_task_return_boolean (task, TRUE);
}

/* What a verdict does to the message, in one word: an accept that files
 * the message in a folder is "junk", one that changes it is "modify" (the
 * words lmtpd traces, so both logs say the same).  @adapted: the message
 * comes back changed. */
static const char *
verdict_word (const OcpVerdict *v, gboolean adapted)
{
  if (v->verdict != OCP_VERDICT_ACCEPT)
    return ocp_verdict_name (v->verdict);
  if (v->folder)
    return "junk";
  if (adapted || v->header || v->body_fd >= 0 || v->add_headers || v->remove_headers || v->subject_tag || v->flags)
    return "modify";
  return "accept";
}

/* Why, as far as the verdict says: the reply, the folder or address, the
 * score and classifications. */
static char *
verdict_reason (const OcpVerdict *v)
{
  GString *why = g_string_new (NULL);

  if (v->reply_code || v->reply_text)
    g_string_append_printf (why, " reply=\"%u %s\"", v->reply_code, v->reply_text ? v->reply_text : "");
  if (v->folder)
    g_string_append_printf (why, " folder=%s", v->folder);
  if (v->redirect)
    g_string_append_printf (why, " redirect=<%s>", v->redirect);
  if (v->score)
    g_string_append_printf (why, " score=%s/%s", v->score, v->threshold ? v->threshold : "-");
  for (guint i = 0; v->labels && i < v->labels->len; i++)
    g_string_append_printf (why, "%s%s", i ? "," : " labels=", (const char *) v->labels->pdata[i]);
  return g_string_free (why, FALSE);
}

/* One line per recipient and decision, whatever -d says: a recipient with
 * a section of its own (profile 2) is logged with its own verdict. */
static void
log_decision (const Job *job, const char *rcpt_in, const OcpVerdict *v, const char *word, const char *stamp)
{
  const char *xid = g_hash_table_lookup (job->in.env, "Transaction-Id");
  g_autofree char *why = verdict_reason (v);
  g_autofree char *safe_why = util_sanitize (why, 512);
  g_autofree char *safe_xid = util_sanitize (xid ? xid : "-", 64);
  g_autofree char *rcpt = util_sanitize (rcpt_in, 256);

  g_printerr ("%s ocp-services[%d]: %s: txn=%s rcpt=<%s> verdict=%s%s\n", stamp, (int) getpid (),
              job->live->svc.name, safe_xid, rcpt, word, safe_why);
}

/* Local time with milliseconds, as lmtpd's lines.  localtime_r reads the
 * zone once; GDateTime's local time looked /etc/localtime up (readlink,
 * two stats) on every call. */
static void
log_stamp (char *stamp, gsize size)
{
  struct timespec ts;
  struct tm tm;
  char sec[32];

  clock_gettime (CLOCK_REALTIME, &ts);
  localtime_r (&ts.tv_sec, &tm);
  strftime (sec, sizeof sec, "%Y-%m-%dT%H:%M:%S", &tm);
  g_snprintf (stamp, size, "%s.%03ld", sec, ts.tv_nsec / 1000000);
}

static void
check_done (GObject *src, GAsyncResult *res, gpointer data)
{
  Job *job = g_task_get_task_data (G_TASK (res));
  const OcpVerdict *top = &job->out.verdict;
  gboolean adapted = job->out.header || job->out.body_fd >= 0;
  gint64 took = g_get_monotonic_time () - job->started_us;
  char stamp[40];

  log_stamp (stamp, sizeof stamp);
  if (job->out.verdict.service_id == NULL)
    job->out.verdict.service_id = g_strdup (job->live->svc.uri);
  if (job->debug) /* one line per call, with the recipients in the order lmtpd listed them */
    {
      g_autofree char *all = g_strjoinv (", ", job->in.rcpts);
      g_autofree char *safe = util_sanitize (all, 2048);
      g_printerr ("ocp-services: %s: %s for %s\n", job->live->svc.name, verdict_word (top, adapted), safe);
    }
  for (guint i = 0; job->in.rcpts[i]; i++)
    {
      const OcpRecipientVerdict *own = ocp_verdict_for_recipient (top, job->in.rcpts[i]);
      const OcpVerdict *v = own ? &own->verdict : top;
      const char *word = verdict_word (v, own ? own->verdict.header != NULL || job->out.body_fd >= 0 : adapted);
      log_decision (job, job->in.rcpts[i], v, word, stamp);
      service_metrics_decision (job->live->svc.name, word, 1, i == 0 ? took : -1);
    }
  ocp_server_txn_respond (job->txn, &job->out.verdict, job->out.header, job->out.body_fd);
}

void
service_call_start (ServiceLive *live, OcpServerTxn *txn, gboolean debug)
{
  Job *job = g_new0 (Job, 1);
  g_autoptr (GTask) task = NULL;
  const char *rcpts;
  int fd;

  job->live = service_live_ref (live);
  job->debug = debug;
  job->started_us = g_get_monotonic_time ();
  job->txn = ocp_server_txn_ref (txn);
  job->in.env = g_hash_table_ref (ocp_server_txn_envelope (txn));
  job->in.call_memo = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  rcpts = g_hash_table_lookup (job->in.env, "Rcpt-To");
  job->in.rcpts = g_strsplit (rcpts ? rcpts : "", ", ", -1);
  job->in.header = ocp_server_txn_header (txn);
  job->in.body = ocp_server_txn_body (txn);
  fd = job->in.body ? -1 : ocp_server_txn_body_fd (txn, &job->in.body_len);
  job->in.body_len = job->in.body ? g_bytes_get_size (job->in.body) : job->in.body_len;
  job->in.body_fd = fd >= 0 ? dup (fd) : -1;
  job->out.body_fd = -1;
  ocp_verdict_init (&job->out.verdict);
  task = g_task_new (NULL, NULL, check_done, NULL);
  g_task_set_task_data (task, job, job_free);
  g_task_run_in_thread (task, run_check);
}
