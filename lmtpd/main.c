/* main.c - lmtpd: options, logging, signals, the main loop.
 *
 *   lmtpd [-c FILE] [--check-config] [-d] [--listen SPEC]... [--maildir-root DIR]
 *
 * Runs in the foreground.  SIGHUP reloads the configuration (a broken one
 * is reported and the old one kept); SIGTERM and SIGINT stop accepting,
 * let transactions in flight finish (at most shutdown_timeout seconds) and
 * exit 0.
 */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <glib-unix.h>

#include "admin.h"
#include "deliver.h"
#include "learn.h"
#include "lmtpd-state.h"
#include "lmtpd-util.h"
#include "lmtpd.h"

typedef struct {
  const char *config_path;   /* options, owned by main() */
  char **listen;
  const char *mail_root;
  GMainLoop *loop;
  LmtpServer *server;
  DeliverContext *ctx;       /* what deliveries share, for the life of the process */
  GObject *metrics;           /* [server] metrics_listen: a libsoup server, or NULL */
  GObject *admin;             /* [admin] listen: the admin web listener, or NULL */
  LmtpMaps *socketmap, *policy; /* Postfix's lookups ([server] socketmap_listen, policy_listen) */
  LmtpdConfig *started;      /* the configuration the listeners were made from */
  gint64 started_at;         /* unix seconds */
  Learner *learner;          /* [learn]: the Junk moves taught to the spam filter, or NULL */
  gboolean debug;
  int exit_code;
} Daemon;

static gboolean debug_enabled;
static gboolean log_json;   /* [server] log_format = json */

static void
json_string (GString *out, const char *v)
{
  g_autofree char *valid = util_sanitize_record (v);

  g_string_append_c (out, '"');
  for (const char *p = valid; *p; p++)
    {
      unsigned char c = *p;
      if (c == '"' || c == '\\')
        g_string_append_printf (out, "\\%c", c);
      else if (c < 0x20)
        g_string_append_printf (out, "\\u%04x", c);
      else
        g_string_append_c (out, c);
    }
  g_string_append_c (out, '"');
}

/* {"time":..., "level":..., "program":..., "pid":..., "message":...} plus
 * every LMTPD_ field, lowercased, numbers as numbers. */
static char *
json_record (GLogLevelFlags level, const GLogField *fields, gsize n, const char *domain, const char *message)
{
  static const char *const numeric[] = { "size", "status", "delay_ms", "callout_us", NULL };
  GString *out = g_string_new ("{\"time\":");
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *stamp = g_date_time_format_iso8601 (now);
  const char *lvl;

  switch (level & G_LOG_LEVEL_MASK)
    {
    case G_LOG_LEVEL_ERROR: lvl = "fatal"; break;
    case G_LOG_LEVEL_CRITICAL: lvl = "critical"; break;
    case G_LOG_LEVEL_WARNING: lvl = "warning"; break;
    case G_LOG_LEVEL_DEBUG: lvl = "debug"; break;
    default: lvl = "info"; break;
    }
  json_string (out, stamp);
  g_string_append_printf (out, ",\"level\":\"%s\",\"program\":", lvl);
  json_string (out, domain ? domain : "lmtpd");
  g_string_append_printf (out, ",\"pid\":%d,\"message\":", util_pid ());
  json_string (out, message ? message : "");
  for (gsize i = 0; i < n; i++)
    {
      g_autofree char *key = NULL;
      gboolean number = FALSE;

      if (!g_str_has_prefix (fields[i].key, "LMTPD_") || fields[i].length >= 0)
        continue;
      key = g_ascii_strdown (fields[i].key + 6, -1);
      for (guint k = 0; numeric[k]; k++)
        number |= strcmp (key, numeric[k]) == 0;
      g_string_append_printf (out, ",\"%s\":", key);
      if (number && g_ascii_isdigit (((const char *) fields[i].value)[0]))
        g_string_append (out, fields[i].value);
      else
        json_string (out, fields[i].value);
    }
  g_string_append (out, "}\n");
  return g_string_free (out, FALSE);
}

static void
write_all_stderr (const char *p, gsize n)
{
  while (n > 0)
    {
      ssize_t w = write (STDERR_FILENO, p, n);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        return;
      p += w;
      n -= w;
    }
}

static const char *
level_tag (GLogLevelFlags level)
{
  switch (level & G_LOG_LEVEL_MASK)
    {
    case G_LOG_LEVEL_ERROR: return "fatal: ";
    case G_LOG_LEVEL_CRITICAL: return "critical: ";
    case G_LOG_LEVEL_WARNING: return "warning: ";
    case G_LOG_LEVEL_DEBUG: return "debug: ";
    default: return "";
    }
}

/* One line per record, one write: lines from threads never interleave;
 * localtime_r reads the zone once (GDateTime looked it up every time). */
static void
write_text_record (const char *domain, const char *tag, const char *message)
{
  g_autofree char *safe = NULL;
  char stamp[32], line[2048];
  struct timespec ts;
  struct tm tm;
  int n;

  clock_gettime (CLOCK_REALTIME, &ts);
  localtime_r (&ts.tv_sec, &tm);
  strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  /* no terminal escapes in the log, whoever forgot to sanitise */
  safe = util_sanitize_record (message);
  n = snprintf (line, sizeof line, "%s.%03ld %s[%d]: %s%s\n", stamp, ts.tv_nsec / 1000000,
                domain ? domain : "lmtpd", util_pid (), tag, safe);
  if (n >= 0 && (gsize) n < sizeof line)
    write_all_stderr (line, n);
  else
    {
      g_autofree char *big = g_strdup_printf ("%s.%03ld %s[%d]: %s%s\n", stamp, ts.tv_nsec / 1000000,
                                              domain ? domain : "lmtpd", util_pid (), tag, safe);
      write_all_stderr (big, strlen (big));
    }
}

static GLogWriterOutput
log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  static int journald = -1;
  const char *message = NULL, *domain = NULL;

  if ((level & G_LOG_LEVEL_DEBUG) && !debug_enabled)
    return G_LOG_WRITER_HANDLED;
  if (journald < 0)
    journald = g_log_writer_is_journald (fileno (stderr));
  if (journald)
    return g_log_writer_journald (level, fields, n_fields, data);
  for (gsize i = 0; i < n_fields; i++)
    {
      if (strcmp (fields[i].key, "MESSAGE") == 0)
        message = fields[i].value;
      else if (strcmp (fields[i].key, "GLIB_DOMAIN") == 0)
        domain = fields[i].value;
    }
  if (log_json)
    {
      g_autofree char *json = json_record (level, fields, n_fields, domain, message);
      write_all_stderr (json, strlen (json));
      return G_LOG_WRITER_HANDLED;
    }
  write_text_record (domain, level_tag (level), message);
  return G_LOG_WRITER_HANDLED;
}

/* Loads the configuration and applies the command line overrides. */
static LmtpdConfig *
load_config (Daemon *d, GError **error)
{
  g_autoptr (LmtpdConfig) c = d->config_path ? lmtpd_config_load (d->config_path, error)
                                             : lmtpd_config_new_default ();
  if (c == NULL)
    return NULL;
  if (d->listen)
    {
      /* "HOST:PORT" alone means inet */
      g_ptr_array_set_size (c->listen, 0);
      for (guint i = 0; d->listen[i]; i++)
        {
          const char *spec = d->listen[i];
          g_autofree char *full = g_str_has_prefix (spec, "inet:") || g_str_has_prefix (spec, "unix:")
                                  ? g_strdup (spec) : g_strconcat ("inet:", spec, NULL);
          LmtpdListen *l = lmtpd_listen_parse (full, error);
          if (l == NULL)
            {
              g_prefix_error (error, "--listen: ");
              return NULL;
            }
          g_ptr_array_add (c->listen, l);
        }
    }
  if (d->mail_root)
    {
      g_free (c->mail_root);
      c->mail_root = g_strdup (d->mail_root);
    }
  return g_steal_pointer (&c);
}

/* Creates the directories lmtpd writes to and, when it will switch users,
 * hands them to the mail user. */
static gboolean
prepare_dirs (const LmtpdConfig *c, GError **error)
{
  if (!deliver_prepare_dirs (c, error))
    return FALSE;
  /* a socket directory lmtpd makes is the mail user's, so it can remove
   * its sockets at shutdown */
  for (guint i = 0; i < c->listen->len; i++)
    {
      const LmtpdListen *l = c->listen->pdata[i];
      g_autofree char *dir = l->kind == LMTPD_LISTEN_UNIX ? g_path_get_dirname (l->path) : NULL;
      if (dir == NULL || g_file_test (dir, G_FILE_TEST_EXISTS))
        continue;
      if (!deliver_make_dir_for_user (dir, 0755, c->user, error))
        return FALSE;
    }
  return TRUE;
}

/* SIGUSR1: one line of counters in the log */
static gboolean
on_sigusr1 (gpointer data)
{
  g_autofree char *line = lmtp_metrics_summary ();
  g_message ("%s", line);
  return G_SOURCE_CONTINUE;
}

/* The mail user must exist on this host: found by --check-config and
 * reported as a configuration error at start, not only when start drops
 * privileges.  (The loader does not look: the example names a user that
 * setup.sh creates.) */
static gboolean
check_user (const LmtpdConfig *c, const char *path, GError **error)
{
  if (c->user == NULL || getpwnam (c->user) != NULL)
    return TRUE;
  g_set_error (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, "%s: [server] user: no user '%s' on this system",
               path ? path : "(built-in defaults)", c->user);
  return FALSE;
}

/* Settings read once at start (the table of conf/settings.c marks them):
 * a reload that changes them from what is running says so rather than seem
 * to apply them.  Returns how many. */
static guint
report_not_reloadable (const LmtpdConfig *old, const LmtpdConfig *c)
{
  g_autoptr (GPtrArray) changes = lmtpd_config_reload_differences (old, c);

  for (guint i = 0; i < changes->len; i++)
    {
      const LmtpdConfigChange *x = changes->pdata[i];
      g_warning ("reload: [%s] %s changed (%s -> %s): not applied, it needs a restart", x->group, x->key,
                 x->was ? x->was : "unset", x->now ? x->now : "unset");
    }
  return changes->len;
}

static gboolean
on_sighup (gpointer data)
{
  Daemon *d = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) c = load_config (d, &error);
  guint not_applied;

  if (c == NULL || !deliver_prepare_dirs (c, &error))
    {
      g_warning ("reload failed, keeping the old configuration:\n%s", error->message);
      return G_SOURCE_CONTINUE;
    }
  not_applied = report_not_reloadable (d->started, c);
  /* the delivery context stays as it is: it holds no configuration (the
   * OCP client gets each service's settings with every call, a cached
   * script is used only while its file is unchanged) */
  lmtp_server_set_config (d->server, c);
  lmtp_maps_set_config (d->socketmap, c);
  lmtp_maps_set_config (d->policy, c);
  log_json = c->log_json;
  if (not_applied)
    g_message ("configuration reloaded%s%s, %u setting(s) not applied (see above)", d->config_path ? " from " : "",
               d->config_path ? d->config_path : "", not_applied);
  else
    g_message ("configuration reloaded%s%s", d->config_path ? " from " : "", d->config_path ? d->config_path : "");
  return G_SOURCE_CONTINUE;
}

static gboolean
on_stopped (gpointer data)
{
  Daemon *d = data;
  g_message ("stopped");
  g_main_loop_quit (d->loop);
  return G_SOURCE_REMOVE;
}

static gboolean
on_sigterm (gpointer data)
{
  Daemon *d = data;

  if (lmtp_server_is_shutting_down (d->server))
    {
      g_message ("second signal: exiting now");
      g_main_loop_quit (d->loop);
      return G_SOURCE_CONTINUE;
    }
  g_message ("shutting down: finishing transactions in flight");
  lmtp_server_shutdown (d->server, on_stopped, d);
  return G_SOURCE_CONTINUE;
}

typedef struct {
  char *config_path, *mail_root;
  char **listen;
  char **lookup;
  gboolean check, probe, version, init_db;
} Options;

static void
options_clear (Options *o)
{
  g_free (o->config_path);
  g_free (o->mail_root);
  g_strfreev (o->listen);
  g_strfreev (o->lookup);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Options, options_clear)

/* Returns FALSE (said on stderr) for a bad command line. */
static gboolean
parse_options (Options *o, gboolean *debug, int *argc, char ***argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GOptionContext) ctx = NULL;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &o->config_path, "Configuration file", "FILE" },
    { "check-config", 0, 0, G_OPTION_ARG_NONE, &o->check, "Validate the configuration and exit", NULL },
    { "probe", 0, 0, G_OPTION_ARG_NONE, &o->probe,
      "With --check-config: also ask the user directory once (exit 75 if it cannot answer)", NULL },
    { "debug", 'd', 0, G_OPTION_ARG_NONE, debug, "Log debug messages", NULL },
    { "listen", 'l', 0, G_OPTION_ARG_STRING_ARRAY, &o->listen,
      "Listen here instead of [server] listen (inet:HOST:PORT, HOST:PORT or unix:PATH)", "SPEC" },
    { "maildir-root", 0, 0, G_OPTION_ARG_FILENAME, &o->mail_root, "Override [delivery] mail_root", "DIR" },
    { "lookup", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->lookup,
      "Print what delivery would do for ADDRESS and exit (0 deliverable, 67 unknown, 75 try later)", "ADDRESS" },
    { "version", 'V', 0, G_OPTION_ARG_NONE, &o->version, "Print the version", NULL },
    { "init-db", 0, 0, G_OPTION_ARG_NONE, &o->init_db,
      "Create or migrate the shared state's schema in PostgreSQL ([state]) and exit", NULL },
    { NULL }
  };

  ctx = g_option_context_new ("- LMTP delivery agent with OPES callouts");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (g_option_context_parse (ctx, argc, argv, &error))
    return TRUE;
  fprintf (stderr, "lmtpd: %s\n", error->message);
  return FALSE;
}

/* The configuration to start with, or NULL (said on stderr). */
static LmtpdConfig *
startup_config (Daemon *d)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) config = load_config (d, &error);

  if (config && !check_user (config, d->config_path, &error))
    g_clear_pointer (&config, lmtpd_config_unref);
  if (config == NULL)
    {
      fprintf (stderr, "lmtpd: configuration is invalid:\n%s\n", error->message);
      return NULL;
    }
  log_json = config->log_json;
  return g_steal_pointer (&config);
}

/* Every session holds a socket and, while delivering, a few files: take
 * all the descriptors the hard limit allows. */
static void
raise_fd_limit (void)
{
  struct rlimit rl;

  if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
    {
      rl.rlim_cur = rl.rlim_max;
      setrlimit (RLIMIT_NOFILE, &rl);
    }
}

/* [server] socketmap_listen and policy_listen, if set. */
static gboolean
listen_postfix_maps (Daemon *d, LmtpdConfig *config, GError **error)
{
  if (config->socketmap_listen
      && (d->socketmap = lmtp_maps_listen (LMTP_MAPS_SOCKETMAP, config->socketmap_listen, config, d->ctx,
                                           error)) == NULL)
    {
      g_prefix_error (error, "socketmap_listen: ");
      return FALSE;
    }
  if (config->policy_listen
      && (d->policy = lmtp_maps_listen (LMTP_MAPS_POLICY, config->policy_listen, config, d->ctx, error)) == NULL)
    {
      g_prefix_error (error, "policy_listen: ");
      g_clear_pointer (&d->socketmap, lmtp_maps_free);
      return FALSE;
    }
  return TRUE;
}

/* Binds the listeners, drops privileges and starts serving.  Returns 0,
 * or the exit code (said on stderr). */
static int
start_serving (Daemon *d, LmtpdConfig *config)
{
  g_autoptr (GError) error = NULL;

  if (geteuid () == 0 && config->user == NULL)
    {
      fprintf (stderr, "lmtpd: refusing to run as root: set [server] user to the account that "
                       "owns the mail (see README, Privileges)\n");
      return 77; /* EX_NOPERM */
    }
  if (!prepare_dirs (config, &error))
    {
      fprintf (stderr, "lmtpd: %s\n", error->message);
      return 73; /* EX_CANTCREAT */
    }
  d->server = lmtp_server_new (config, d->ctx, &error);
  if (d->server == NULL)
    {
      fprintf (stderr, "lmtpd: cannot listen: %s\n", error->message);
      return 71; /* EX_OSERR */
    }
  if ((config->metrics_listen && (d->metrics = lmtp_metrics_listen (config->metrics_listen, &error)) == NULL)
      || (config->admin_listen && (d->admin = admin_web_new (config, d->ctx, lmtp_metrics_render, &error)) == NULL)
      || !listen_postfix_maps (d, config, &error))
    {
      fprintf (stderr, "lmtpd: cannot listen: %s\n", error->message);
      g_clear_pointer (&d->server, lmtp_server_free);
      return 71; /* EX_OSERR */
    }
  /* Sockets are bound: from here on, the mail user. */
  if (!util_drop_privileges (config->user, &error) || !lmtp_server_start (d->server, &error))
    {
      fprintf (stderr, "lmtpd: %s\n", error->message);
      g_clear_pointer (&d->server, lmtp_server_free);
      return 77;
    }
  /* as the mail user: it only reads the mailboxes; a learner that cannot
   * start costs the lessons, never a delivery */
  if ((d->learner = learner_start (config, &error)) == NULL && error)
    g_warning ("learn: not started: %s", error->message);
  return 0;
}

/* The quarantine's releases a crash interrupted, completed in a thread
 * (they deliver) once their claims are stale (delivery_timeout). */
typedef struct {
  DeliverContext *ctx;
  LmtpdConfig *config;
  gint64 started;           /* unix seconds: claims from before are a crash's */
} QuarantineRecovery;

static gpointer
quarantine_recovery (gpointer data)
{
  QuarantineRecovery *r = data;

  deliver_quarantine_recover (r->ctx, r->config, r->started);
  deliver_context_unref (r->ctx);
  lmtpd_config_unref (r->config);
  g_free (r);
  return NULL;
}

static gboolean
start_quarantine_recovery (gpointer data)
{
  Daemon *d = data;
  QuarantineRecovery *r = g_new0 (QuarantineRecovery, 1);

  r->ctx = deliver_context_ref (d->ctx);
  r->config = lmtpd_config_ref (d->started);
  r->started = d->started_at;
  g_thread_unref (g_thread_new ("quarantine", quarantine_recovery, r));
  return G_SOURCE_REMOVE;
}

/* Until SIGTERM (or SIGINT) and the shutdown after it. */
/* The verdict counts reach the records even when mail stops coming. */
static gboolean
flush_verdict_counts (gpointer ctx)
{
  deliver_verdict_counts_flush (ctx);
  return G_SOURCE_CONTINUE;
}

static void
run (Daemon *d, LmtpdConfig *config)
{
  g_autofree char *inflight = deliver_inflight_dir (config);

  deliver_mbox_recover (inflight);
  d->started = lmtpd_config_ref (config);
  d->loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGHUP, on_sighup, d);
  g_unix_signal_add (SIGUSR1, on_sigusr1, d);
  g_unix_signal_add (SIGTERM, on_sigterm, d);
  g_unix_signal_add (SIGINT, on_sigterm, d);
  g_timeout_add_seconds (5, flush_verdict_counts, d->ctx);
  d->started_at = g_get_real_time () / G_USEC_PER_SEC;
  g_timeout_add_seconds (config->delivery_timeout + 1, start_quarantine_recovery, d);
  g_message ("%s %s started (mail_root %s, hostname %s)", PACKAGE_NAME, PACKAGE_VERSION,
             config->mail_root, config->hostname);
  g_main_loop_run (d->loop);
  util_http_server_free (d->metrics);
  admin_web_free (d->admin);
  g_clear_pointer (&d->socketmap, lmtp_maps_free);
  g_clear_pointer (&d->policy, lmtp_maps_free);
  g_clear_pointer (&d->learner, learner_stop);
  lmtp_server_free (d->server);
  deliver_context_close_callouts (d->ctx);
  lmtpd_config_unref (d->started);
  g_main_loop_unref (d->loop);
}

/* --check-config --probe: the user directory answers (a user or not) for
 * an address no site has, within its lookup timeout. */
static int
probe_directory (LmtpdConfig *config)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverContext) ctx = NULL;
  g_autoptr (GString) out = g_string_new (NULL);
  guint code;

  if (!util_drop_privileges (config->user, &error))
    {
      fprintf (stderr, "lmtpd: %s\n", error->message);
      return 77; /* EX_NOPERM */
    }
  ctx = deliver_context_new ();
  code = deliver_explain (ctx, config, "lmtpd-probe@probe.invalid", out);
  printf ("%s", out->str);
  if (code >= 400 && code < 500)
    {
      fprintf (stderr, "lmtpd: the user directory cannot answer\n");
      return 75; /* EX_TEMPFAIL */
    }
  printf ("user directory: answers\n");
  return 0;
}

/* --lookup: each address as RCPT would resolve it, as the mail user (a
 * quota recalculation writes maildirsize).  The worst answer decides the
 * exit code. */
static int
lookup_addresses (LmtpdConfig *config, char **addresses)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverContext) ctx = NULL;
  guint worst = 250;

  if (!util_drop_privileges (config->user, &error))
    {
      fprintf (stderr, "lmtpd: %s\n", error->message);
      return 77; /* EX_NOPERM */
    }
  ctx = deliver_context_new ();
  for (guint i = 0; addresses[i]; i++)
    {
      g_autoptr (GString) out = g_string_new (NULL);
      guint code = deliver_explain (ctx, config, addresses[i], out);
      printf ("%s%s", i ? "\n" : "", out->str);
      worst = MAX (worst, code);
    }
  return worst < 400 ? 0 : worst < 500 ? 75 /* EX_TEMPFAIL */ : 67 /* EX_NOUSER */;
}

/* --init-db: [state]'s PostgreSQL (else [users]'s), schema made or
 * brought up to date; 75 when the database cannot be reached. */
static int
init_db (const LmtpdConfig *config)
{
  g_autoptr (GError) error = NULL;

  if (!state_init_db (config, &error))
    {
      fprintf (stderr, "lmtpd: --init-db: %s\n", error->message);
      return 75; /* EX_TEMPFAIL */
    }
  printf ("lmtpd: the shared state's schema is up to date\n");
  return 0;
}

int
main (int argc, char **argv)
{
  Daemon d = { 0 };
  g_auto (Options) o = { 0 };
  g_autoptr (LmtpdConfig) config = NULL;
  int code;

  setlocale (LC_ALL, "C");
  g_mime_init ();
  if (!parse_options (&o, &d.debug, &argc, &argv))
    return 64;
  if (o.version)
    {
      printf ("lmtpd (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
      return 0;
    }
  d.config_path = o.config_path;
  d.listen = o.listen;
  d.mail_root = o.mail_root;
  debug_enabled = d.debug;
  g_log_set_writer_func (log_writer, NULL, NULL);
  config = startup_config (&d);
  if (config == NULL)
    return 78; /* EX_CONFIG */
  if (o.check)
    {
      printf ("%s: OK\n", d.config_path ? d.config_path : "(built-in defaults)");
      return o.probe ? probe_directory (config) : 0;
    }
  if (o.lookup)
    return lookup_addresses (config, o.lookup);
  if (o.init_db)
    return init_db (config);
  signal (SIGPIPE, SIG_IGN);
  d.ctx = deliver_context_new ();
  deliver_context_set_callout_observer (d.ctx, lmtp_metrics_callout);
  deliver_context_set_directory_observer (d.ctx, lmtp_metrics_directory);
  deliver_context_set_sieve_observer (d.ctx, lmtp_metrics_sieve_error);
  deliver_context_set_shadow_observer (d.ctx, lmtp_metrics_shadow);
  raise_fd_limit ();
  code = start_serving (&d, config);
  if (code == 0)
    {
      run (&d, config);
      code = d.exit_code;
    }
  deliver_context_unref (d.ctx);
  return code;
}
