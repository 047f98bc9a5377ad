/* main.c - ocp-services: OPES callout services for the RFC 4496 use cases.
 *
 *   ocp-services [-c services.conf] [-d] [--check-config]
 *
 * Each [service NAME] names a module and the endpoint it listens on; this
 * file reads the configuration, opens the listeners, drops privileges and
 * runs the main loop; each call on a listener is services-call.c's (the
 * module's check in a worker thread, one log line per recipient).  SIGHUP
 * reloads the modules' settings (maps, policies, thresholds); what cannot
 * change without a restart (listeners, [server]) is named in the log and
 * keeps its old value; a configuration with an error is not applied at
 * all, as with lmtpd.  docs/services.md documents every module.
 */
#include "config.h"

#include <locale.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>
#include <glib-unix.h>

#include "lmtpd-conf.h"
#include "services-call.h"

static const ServiceModule *const modules[] = {
  &service_logging, &service_access, &service_blocking, &service_reroute, &service_spam,
  &service_security, &service_links, &service_normalize, &service_smime,
};

#ifndef SERVICES_CONFIG
#define SERVICES_CONFIG "/etc/lmtpd/services.conf"
#endif

static gboolean debug;

/* A service's listeners, which outlive reloads; handle() uses whatever
 * ServiceLive is current. */
typedef struct {
  OcpServer *server;
  ServiceLive *live;
} Slot;

static void
slot_free (gpointer p)
{
  Slot *slot = p;
  ocp_server_free (slot->server);
  service_live_unref (slot->live);
  g_free (slot);
}

/* ocp_server_new's handler: the call runs on whatever service is current. */
static void
handle (OcpServerTxn *txn, gpointer data)
{
  Slot *slot = data;
  service_call_start (slot->live, txn, debug);
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
static ServiceLive *
live_new (GKeyFile *kf, const char *group, GError **error)
{
  g_autofree char *module = service_get_string (kf, group, "module", NULL);
  g_auto (GStrv) listen = service_get_list (kf, group, "listen");
  const ServiceModule *m = module ? find_module (module) : NULL;
  ServiceLive *l;

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
  l = g_new0 (ServiceLive, 1);
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
      service_live_unref (l);
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
      ServiceLive *l;
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

/* The whole file, every service configured: a list of ServiceLive, or NULL with
 * @error (the file name and, for syntax, the line in the message). */
static GPtrArray *
config_load (const char *path, GKeyFile *kf, GError **error)
{
  g_autoptr (GPtrArray) lives = g_ptr_array_new_with_free_func ((GDestroyNotify) service_live_unref);
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
slot_open (ServiceLive *l, GError **error)
{
  g_auto (GStrv) listen = g_strsplit (l->listen, ",", -1);
  Slot *slot = g_new0 (Slot, 1);

  slot->live = service_live_ref (l);
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
    if (strcmp (((ServiceLive *) lives->pdata[i])->svc.name, name) == 0)
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
      ServiceLive *l = lives->pdata[i];
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
      service_live_unref (slot->live);
      slot->live = service_live_ref (l);
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
daemon_open (Daemon *d, GPtrArray *lives, GKeyFile *kf, GObject **metrics)
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
  GObject *metrics = NULL;
  int rc;

  d->slots = g_ptr_array_new_with_free_func (slot_free);
  d->server_group = server_group_text (kf);
  d->loop = g_main_loop_new (NULL, FALSE);
  rc = daemon_open (d, lives, kf, &metrics);
  /* configured and listening: from here on, the unprivileged user */
  if (rc == 0 && !util_drop_privileges (service_user, &error))
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
  util_http_server_free (metrics);
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
