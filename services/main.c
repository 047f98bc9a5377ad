/* main.c - ocp-services: OPES callout services for the RFC 4496 use cases.
 *
 *   ocp-services [-c services.conf] [-d] [--check-config]
 *
 * Each [service NAME] names a module and the endpoint it listens on; the
 * module's check runs in a worker thread (it may talk to spamd, clamd ...),
 * and the answer goes back on the main loop, where one line per recipient
 * logs the decision.  SIGHUP reloads the modules' settings (maps, policies,
 * thresholds); what cannot change without a restart (listeners, [server])
 * is named in the log and keeps its old value; a configuration with an
 * error is not applied at all, as with lmtpd.  docs/services.md documents
 * every module.
 */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>
#include <glib-unix.h>

#include "deliver.h"
#include "gmime-cleanup.h"
#include "lmtpd-conf.h"
#include "services.h"

static const ServiceModule *const modules[] = {
  &service_logging, &service_access, &service_blocking, &service_reroute, &service_spam,
  &service_security, &service_links, &service_normalize, &service_smime,
};

#ifndef SERVICES_CONFIG
#define SERVICES_CONFIG "/etc/lmtpd/services.conf"
#endif

static gboolean debug;

/* A configured service, shared by the jobs that use it: a reload makes a
 * new one, and the old goes when its last job is done. */
typedef struct {
  Service svc;        /* first: modules get &live->svc */
  gint ref_count;
  char *module_name;
  char *listen;       /* the listen value as written, to notice a change */
} Live;

/* A service's listeners, which outlive reloads; handle() uses whatever
 * Live is current. */
typedef struct {
  OcpServer *server;
  Live *live;
} Slot;

static Live *
live_ref (Live *l)
{
  g_atomic_int_inc (&l->ref_count);
  return l;
}

static void
live_unref (Live *l)
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

static void
slot_free (gpointer p)
{
  Slot *slot = p;
  ocp_server_free (slot->server);
  live_unref (slot->live);
  g_free (slot);
}

typedef struct {
  Live *live;
  OcpServerTxn *txn;
  ServiceInput in;
  ServiceOutput out;
  gint64 started_us;
} Job;

static void
job_free (gpointer p)
{
  Job *job = p;
  live_unref (job->live);
  ocp_server_txn_unref (job->txn);
  g_hash_table_unref (job->in.env);
  g_hash_table_unref (job->in.call_memo);
  g_strfreev (job->in.rcpts);
  if (job->in.header)
    g_bytes_unref (job->in.header);
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
  g_autofree char *safe_why = deliver_sanitize (why, 512);
  g_autofree char *safe_xid = deliver_sanitize (xid ? xid : "-", 64);
  g_autofree char *rcpt = deliver_sanitize (rcpt_in, 256);

  g_printerr ("%s ocp-services[%d]: %s: txn=%s rcpt=<%s> verdict=%s%s\n", stamp, (int) getpid (),
              job->live->svc.name, safe_xid, rcpt, word, safe_why);
}

static void
check_done (GObject *src, GAsyncResult *res, gpointer data)
{
  Job *job = g_task_get_task_data (G_TASK (res));
  const OcpVerdict *top = &job->out.verdict;
  gboolean adapted = job->out.header || job->out.body_fd >= 0;
  gint64 took = g_get_monotonic_time () - job->started_us;
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y-%m-%dT%H:%M:%S.%f");

  stamp[23] = '\0'; /* milliseconds, as lmtpd's lines */
  if (job->out.verdict.service_id == NULL)
    job->out.verdict.service_id = g_strdup (job->live->svc.uri);
  if (debug) /* one line per call, with the recipients in the order lmtpd listed them */
    {
      g_autofree char *all = g_strjoinv (", ", job->in.rcpts);
      g_autofree char *safe = deliver_sanitize (all, 2048);
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

static void
handle (OcpServerTxn *txn, gpointer data)
{
  Slot *slot = data;
  Job *job = g_new0 (Job, 1);
  g_autoptr (GTask) task = NULL;
  const char *rcpts;
  int fd;

  job->live = live_ref (slot->live);
  job->started_us = g_get_monotonic_time ();
  job->txn = ocp_server_txn_ref (txn);
  job->in.env = g_hash_table_ref (ocp_server_txn_envelope (txn));
  job->in.call_memo = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  rcpts = g_hash_table_lookup (job->in.env, "Rcpt-To");
  job->in.rcpts = g_strsplit (rcpts ? rcpts : "", ", ", -1);
  job->in.header = ocp_server_txn_header (txn);
  fd = ocp_server_txn_body_fd (txn, &job->in.body_len);
  job->in.body_fd = fd >= 0 ? dup (fd) : -1;
  job->out.body_fd = -1;
  ocp_verdict_init (&job->out.verdict);
  task = g_task_new (NULL, NULL, check_done, NULL);
  g_task_set_task_data (task, job, job_free);
  g_task_run_in_thread (task, run_check);
}

static const ServiceModule *
find_module (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (modules); i++)
    if (strcmp (modules[i]->name, name) == 0)
      return modules[i];
  return NULL;
}

/* ---- configuration ---------------------------------------------------------- */

/* [service NAME] read and configured, nothing opened yet. */
static Live *
live_new (GKeyFile *kf, const char *group, GError **error)
{
  g_autofree char *module = service_get_string (kf, group, "module", NULL);
  g_auto (GStrv) listen = service_get_list (kf, group, "listen");
  const ServiceModule *m = module ? find_module (module) : NULL;
  Live *l;

  if (m == NULL)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "[%s] module: '%s' is not logging, access, blocking, reroute, spam, security, links, normalize or smime", group,
                   module ? module : "(none)");
      return NULL;
    }
  if (listen == NULL || listen[0] == NULL)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND, "[%s] listen: missing", group);
      return NULL;
    }
  l = g_new0 (Live, 1);
  l->ref_count = 1;
  l->svc.module = m;
  l->svc.name = g_strdup (group + strlen ("service "));
  l->svc.uri = service_get_string (kf, group, "uri", NULL);
  if (l->svc.uri == NULL)
    l->svc.uri = g_strdup_printf ("urn:x-opes-lmtpd:service:%s", l->svc.name);
  l->module_name = g_steal_pointer (&module);
  l->listen = g_strjoinv (",", listen);
  if (!m->configure (&l->svc, kf, group, error))
    {
      g_prefix_error (error, "[%s] ", group);
      live_unref (l);
      return NULL;
    }
  return l;
}

/* @path read into @kf and its text into @out_text; a syntax error names
 * the line. */
static gboolean
keyfile_load (const char *path, GKeyFile *kf, char **out_text, GError **error)
{
  g_autofree char *text = NULL;
  gsize len;

  if (!g_file_get_contents (path, &text, &len, error))
    return FALSE;
  if (!g_key_file_load_from_data (kf, text, len, G_KEY_FILE_NONE, error))
    {
      guint line = lmtpd_keyfile_bad_line (text);
      if (line)
        g_prefix_error (error, "%s:%u: ", path, line);
      else
        g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  *out_text = g_steal_pointer (&text);
  return TRUE;
}

/* [server] user must exist.  At start, modules hand what they create to
 * that user; a reload runs as it and keeps the one of the start. */
static gboolean
server_user_check (const char *path, GKeyFile *kf, GError **error)
{
  if (service_user == NULL)
    service_user = service_get_string (kf, "server", "user", NULL);
  if (service_user && getpwnam (service_user) == NULL)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, "%s: [server] user: no user '%s'",
                   path, service_user);
      return FALSE;
    }
  return TRUE;
}

/* Every [service NAME] of @kf configured, in order, into @lives. */
static gboolean
services_configure (const char *path, const char *text, GKeyFile *kf, GPtrArray *lives, GError **error)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);

  for (guint i = 0; groups[i]; i++)
    {
      Live *l;
      if (strcmp (groups[i], "server") == 0)
        continue;
      if (!g_str_has_prefix (groups[i], "service "))
        {
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
                       "%s:%u: [%s]: unknown group (only [server] and [service NAME])", path,
                       lmtpd_keyfile_group_line (text, groups[i]), groups[i]);
          return FALSE;
        }
      if ((l = live_new (kf, groups[i], error)) == NULL)
        {
          g_prefix_error (error, "%s: ", path);
          return FALSE;
        }
      g_ptr_array_add (lives, l);
    }
  return TRUE;
}

/* The whole file, every service configured: a list of Live, or NULL with
 * @error (the file name and, for syntax, the line in the message). */
static GPtrArray *
config_load (const char *path, GKeyFile *kf, GError **error)
{
  g_autoptr (GPtrArray) lives = g_ptr_array_new_with_free_func ((GDestroyNotify) live_unref);
  g_autofree char *text = NULL;

  if (!keyfile_load (path, kf, &text, error) || !server_user_check (path, kf, error)
      || !services_configure (path, text, kf, lives, error))
    return NULL;
  if (lives->len == 0)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND, "%s: no [service NAME]", path);
      return NULL;
    }
  return g_steal_pointer (&lives);
}

static Slot *
slot_open (Live *l, GError **error)
{
  g_auto (GStrv) listen = g_strsplit (l->listen, ",", -1);
  Slot *slot = g_new0 (Slot, 1);

  slot->live = live_ref (l);
  slot->server = ocp_server_new (l->svc.module->parts, handle, slot);
  for (guint i = 0; listen[i]; i++)
    {
      guint16 port = 0;
      if (!ocp_server_listen (slot->server, listen[i], &port, error))
        {
          g_prefix_error (error, "[service %s] listen %s: ", l->svc.name, listen[i]);
          slot_free (slot);
          return NULL;
        }
      if (port)
        {
          g_autofree char *host = g_strndup (listen[i] + 5, strrchr (listen[i], ':') - listen[i] - 5);
          g_printerr ("ocp-services: %s (%s) listening on inet:%s:%u\n", l->svc.name, l->module_name, host, port);
        }
      else
        g_printerr ("ocp-services: %s (%s) listening on %s\n", l->svc.name, l->module_name, listen[i]);
    }
  return slot;
}

/* ---- reload ------------------------------------------------------------------- */

typedef struct {
  char *path;
  GPtrArray *slots;       /* Slot* */
  char *server_group;     /* [server] as loaded at start, to notice a change */
  GMainLoop *loop;
} Daemon;

static char *
server_group_text (GKeyFile *kf)
{
  g_auto (GStrv) keys = g_key_file_get_keys (kf, "server", NULL, NULL);
  GString *out = g_string_new (NULL);

  for (guint i = 0; keys && keys[i]; i++)
    {
      g_autofree char *v = g_key_file_get_value (kf, "server", keys[i], NULL);
      g_string_append_printf (out, "%s=%s\n", keys[i], v ? v : "");
    }
  return g_string_free (out, FALSE);
}

static Slot *
slot_named (Daemon *d, const char *name)
{
  for (guint i = 0; i < d->slots->len; i++)
    {
      Slot *slot = d->slots->pdata[i];
      if (strcmp (slot->live->svc.name, name) == 0)
        return slot;
    }
  return NULL;
}

static gboolean
live_listed (GPtrArray *lives, const char *name)
{
  for (guint i = 0; i < lives->len; i++)
    if (strcmp (((Live *) lives->pdata[i])->svc.name, name) == 0)
      return TRUE;
  return FALSE;
}

/* Puts each new service in its slot; returns how many settings could not
 * change (each one logged). */
static guint
reload_apply (Daemon *d, GPtrArray *lives)
{
  guint not_applied = 0;

  for (guint i = 0; i < lives->len; i++)
    {
      Live *l = lives->pdata[i];
      Slot *slot = slot_named (d, l->svc.name);
      if (slot == NULL)
        {
          g_printerr ("ocp-services: reload: [service %s] is new: not applied, it needs a restart\n", l->svc.name);
          not_applied++;
          continue;
        }
      if (strcmp (slot->live->module_name, l->module_name) || strcmp (slot->live->listen, l->listen))
        {
          g_printerr ("ocp-services: reload: [service %s] %s changed: not applied (the old one stays), "
                      "it needs a restart\n", l->svc.name, strcmp (slot->live->listen, l->listen) ? "listen" : "module");
          not_applied++;
          continue;
        }
      live_unref (slot->live);
      slot->live = live_ref (l);
    }
  for (guint i = 0; i < d->slots->len; i++)
    {
      Slot *slot = d->slots->pdata[i];
      if (!live_listed (lives, slot->live->svc.name))
        {
          g_printerr ("ocp-services: reload: [service %s] removed: still serving until a restart\n",
                      slot->live->svc.name);
          not_applied++;
        }
    }
  return not_applied;
}

static gboolean
on_hup (gpointer data)
{
  Daemon *d = data;
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) lives = config_load (d->path, kf, &error);
  g_autofree char *server = NULL;
  guint not_applied;

  if (lives == NULL)
    {
      g_printerr ("ocp-services: reload failed, keeping the old configuration: %s\n", error->message);
      service_metrics_reload (FALSE);
      return G_SOURCE_CONTINUE;
    }
  not_applied = reload_apply (d, lives);
  server = server_group_text (kf);
  if (strcmp (server, d->server_group) != 0)
    {
      g_printerr ("ocp-services: reload: [server] changed: not applied, it needs a restart\n");
      not_applied++;
    }
  service_metrics_reload (TRUE);
  if (not_applied)
    g_printerr ("ocp-services: configuration reloaded, %u setting(s) not applied (see above)\n", not_applied);
  else
    g_printerr ("ocp-services: configuration reloaded\n");
  return G_SOURCE_CONTINUE;
}

static gboolean
on_term (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

/* ---- main ---------------------------------------------------------------------- */

/* Opens every listener, then the metrics; the exit code on failure. */
static int
daemon_open (Daemon *d, GPtrArray *lives, GKeyFile *kf, GSocketService **metrics)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *metrics_listen = service_get_string (kf, "server", "metrics_listen", NULL);

  for (guint i = 0; i < lives->len; i++)
    {
      Slot *slot = slot_open (lives->pdata[i], &error);
      if (slot == NULL)
        {
          g_printerr ("ocp-services: %s: %s\n", d->path, error->message);
          return 78;
        }
      g_ptr_array_add (d->slots, slot);
    }
  if (metrics_listen && (*metrics = service_metrics_listen (metrics_listen, &error)) == NULL)
    {
      g_printerr ("ocp-services: %s: %s\n", d->path, error->message);
      return 78;
    }
  return 0;
}

static int
run (Daemon *d, GPtrArray *lives, GKeyFile *kf)
{
  g_autoptr (GError) error = NULL;
  GSocketService *metrics = NULL;
  int rc;

  d->slots = g_ptr_array_new_with_free_func (slot_free);
  d->server_group = server_group_text (kf);
  d->loop = g_main_loop_new (NULL, FALSE);
  rc = daemon_open (d, lives, kf, &metrics);
  /* configured and listening: from here on, the unprivileged user */
  if (rc == 0 && !deliver_drop_privileges (service_user, &error))
    {
      g_printerr ("ocp-services: %s\n", error->message);
      rc = 77;
    }
  if (rc == 0)
    {
      g_printerr ("ocp-services: started\n");
      g_unix_signal_add (SIGTERM, on_term, d->loop);
      g_unix_signal_add (SIGINT, on_term, d->loop);
      g_unix_signal_add (SIGHUP, on_hup, d);
      g_main_loop_run (d->loop);
    }
  if (metrics)
    {
      g_socket_service_stop (metrics);
      g_object_unref (metrics);
    }
  g_ptr_array_unref (d->slots);
  g_main_loop_unref (d->loop);
  g_free (d->server_group);
  return rc;
}

/* The command line; FALSE, having said why, if it is wrong. */
static gboolean
parse_options (int *argc, char ***argv, char **config, gboolean *check_only)
{
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- OPES callout services (RFC 4496)");
  g_autoptr (GError) error = NULL;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, config, "Configuration file (default " SERVICES_CONFIG ")", "FILE" },
    { "check-config", 0, 0, G_OPTION_ARG_NONE, check_only, "Check the configuration and exit", NULL },
    { "debug", 'd', 0, G_OPTION_ARG_NONE, &debug, "Log every transaction", NULL },
    { NULL }
  };

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, argc, argv, &error) || *argc > 1)
    {
      g_printerr ("ocp-services: %s\n", error ? error->message : "unexpected arguments");
      return FALSE;
    }
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autofree char *config = NULL;
  gboolean check_only = FALSE;
  g_autoptr (GError) error = NULL;
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GPtrArray) lives = NULL;
  Daemon d = { 0 };
  int rc;

  setlocale (LC_ALL, "C");
  if (!parse_options (&argc, &argv, &config, &check_only))
    return 64;
  d.path = config ? config : SERVICES_CONFIG;
  g_mime_init ();
  lives = config_load (d.path, kf, &error);
  if (lives == NULL)
    {
      g_printerr ("ocp-services: %s\n", error->message);
      return 78;
    }
  if (check_only)
    {
      g_printerr ("ocp-services: %s: configuration OK (%u services)\n", d.path, lives->len);
      return 0;
    }
  if (geteuid () == 0 && service_user == NULL)
    {
      g_printerr ("ocp-services: refusing to run as root: set [server] user\n");
      return 77;
    }
  rc = run (&d, lives, kf);
  g_clear_pointer (&lives, g_ptr_array_unref);
  g_free (service_user);
  return rc;
}
