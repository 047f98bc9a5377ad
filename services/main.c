/* main.c - ocp-services: OPES callout services for the RFC 4496 use cases.
 *
 *   ocp-services -c services.conf [-d]
 *
 * Each [service NAME] names a module and the endpoint it listens on; the
 * module's check runs in a worker thread (it may talk to spamd, clamd ...),
 * and the answer goes back on the main loop.  docs/services.md documents
 * every module.
 */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <string.h>
#include <unistd.h>
#include <glib-unix.h>

#include "deliver.h"
#include "gmime-cleanup.h"
#include "services.h"

static const ServiceModule *const modules[] = {
  &service_logging, &service_access, &service_blocking, &service_reroute, &service_spam,
  &service_security, &service_links, &service_normalize, &service_smime,
};

static gboolean debug;
static GPtrArray *services; /* Service*, freed at exit */

static void
service_free (gpointer p)
{
  Service *svc = p;
  if (svc->state && svc->module->free)
    svc->module->free (svc->state);
  g_free (svc->name);
  g_free (svc->uri);
  g_free (svc);
}

typedef struct {
  Service *svc;
  OcpServerTxn *txn;
  ServiceInput in;
  ServiceOutput out;
} Job;

static void
job_free (gpointer p)
{
  Job *job = p;
  ocp_server_txn_unref (job->txn);
  g_hash_table_unref (job->in.env);
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
  job->svc->module->check (job->svc, &in, out);
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
        g_printerr ("ocp-services: %s: body: %s\n", job->svc->name, g_strerror (errno));
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

  if (job->svc->module->per_recipient && g_strv_length (job->in.rcpts) > 1)
    check_each_recipient (job);
  else if (g_strv_length (job->in.rcpts) == 1)
    check_one (job, 0, &job->out);
  else
    job->svc->module->check (job->svc, &job->in, &job->out);
  g_task_return_boolean (task, TRUE);
}

static void
check_done (GObject *src, GAsyncResult *res, gpointer data)
{
  Job *job = g_task_get_task_data (G_TASK (res));

  if (job->out.verdict.service_id == NULL)
    job->out.verdict.service_id = g_strdup (job->svc->uri);
  if (debug)
    g_printerr ("ocp-services: %s: %s for %s\n", job->svc->name, ocp_verdict_name (job->out.verdict.verdict),
                (char *) g_hash_table_lookup (job->in.env, "Rcpt-To"));
  ocp_server_txn_respond (job->txn, &job->out.verdict, job->out.header, job->out.body_fd);
}

static void
handle (OcpServerTxn *txn, gpointer data)
{
  Service *svc = data;
  Job *job = g_new0 (Job, 1);
  g_autoptr (GTask) task = NULL;
  const char *rcpts;
  int fd;

  job->svc = svc;
  job->txn = ocp_server_txn_ref (txn);
  job->in.env = g_hash_table_ref (ocp_server_txn_envelope (txn));
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

static gboolean
on_term (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

static gboolean
start_service (GKeyFile *kf, const char *group, GPtrArray *servers, GError **error)
{
  g_autofree char *module = service_get_string (kf, group, "module", NULL);
  g_auto (GStrv) listen = service_get_list (kf, group, "listen");
  const ServiceModule *m = module ? find_module (module) : NULL;
  Service *svc;
  OcpServer *server;

  if (m == NULL)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "[%s] module: '%s' is not logging, access, blocking, reroute, spam, security, links, normalize or smime", group,
                   module ? module : "(none)");
      return FALSE;
    }
  if (listen == NULL || listen[0] == NULL)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND, "[%s] listen: missing", group);
      return FALSE;
    }
  svc = g_new0 (Service, 1);
  g_ptr_array_add (services, svc);
  svc->module = m;
  svc->name = g_strdup (group + strlen ("service "));
  svc->uri = service_get_string (kf, group, "uri", NULL);
  if (svc->uri == NULL)
    svc->uri = g_strdup_printf ("urn:x-opes-lmtpd:service:%s", svc->name);
  if (!m->configure (svc, kf, group, error))
    {
      g_prefix_error (error, "[%s] ", group);
      return FALSE;
    }
  server = ocp_server_new (m->parts, handle, svc);
  g_ptr_array_add (servers, server);
  for (guint i = 0; listen[i]; i++)
    {
      guint16 port = 0;
      if (!ocp_server_listen (server, listen[i], &port, error))
        {
          g_prefix_error (error, "[%s] listen %s: ", group, listen[i]);
          return FALSE;
        }
      if (port)
        {
          g_autofree char *host = g_strndup (listen[i] + 5, strrchr (listen[i], ':') - listen[i] - 5);
          g_printerr ("ocp-services: %s (%s) listening on inet:%s:%u\n", svc->name, m->name, host, port);
        }
      else
        g_printerr ("ocp-services: %s (%s) listening on %s\n", svc->name, m->name, listen[i]);
    }
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autofree char *config = NULL;
  g_autoptr (GOptionContext) ctx = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GPtrArray) servers = g_ptr_array_new_with_free_func ((GDestroyNotify) ocp_server_free);
  g_auto (GStrv) groups = NULL;
  GMainLoop *loop;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config, "Configuration file", "FILE" },
    { "debug", 'd', 0, G_OPTION_ARG_NONE, &debug, "Log every transaction", NULL },
    { NULL }
  };

  setlocale (LC_ALL, "C");
  ctx = g_option_context_new ("- OPES callout services (RFC 4496)");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || config == NULL)
    {
      g_printerr ("ocp-services: %s\n", error ? error->message : "-c FILE is required");
      return 64;
    }
  if (!g_key_file_load_from_file (kf, config, G_KEY_FILE_NONE, &error))
    {
      g_printerr ("ocp-services: %s: %s\n", config, error->message);
      return 78;
    }
  g_mime_init ();
  services = g_ptr_array_new_with_free_func (service_free);
  service_user = service_get_string (kf, "server", "user", NULL);
  if (geteuid () == 0 && service_user == NULL)
    {
      g_printerr ("ocp-services: refusing to run as root: set [server] user\n");
      return 77;
    }
  loop = g_main_loop_new (NULL, FALSE);
  groups = g_key_file_get_groups (kf, NULL);
  for (guint i = 0; groups[i]; i++)
    if (g_str_has_prefix (groups[i], "service ") && !start_service (kf, groups[i], servers, &error))
      {
        g_printerr ("ocp-services: %s: %s\n", config, error->message);
        return 78;
      }
  if (servers->len == 0)
    {
      g_printerr ("ocp-services: %s: no [service NAME]\n", config);
      return 78;
    }
  /* configured and listening: from here on, the unprivileged user */
  if (!deliver_drop_privileges (service_user, &error))
    {
      g_printerr ("ocp-services: %s\n", error->message);
      return 77;
    }
  g_printerr ("ocp-services: started\n");
  g_unix_signal_add (SIGTERM, on_term, loop);
  g_unix_signal_add (SIGINT, on_term, loop);
  g_main_loop_run (loop);
  g_main_loop_unref (loop);
  g_ptr_array_set_size (servers, 0);
  g_ptr_array_unref (services);
  g_free (service_user);
  return 0;
}
