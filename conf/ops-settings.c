/* ops-settings.c - the rows of the operator's tools (issue 19): the
 * decision trace, the quarantine store, recorded calls, learning from the
 * user's Junk moves and the admin listener.  The main table (settings.c)
 * goes on here; each group's rows stay together.
 */
#include "config.h"

#include <string.h>

#include "conf-private.h"

#define CFG(field) G_STRUCT_OFFSET (LmtpdConfig, field)

/* [learn] backend */
static const ConfChoices learn_backend_choices = {
  FALSE, "spamd, rspamd or builtin",
  { { "spamd", LMTPD_LEARN_SPAMD }, { "rspamd", LMTPD_LEARN_RSPAMD }, { "builtin", LMTPD_LEARN_BUILTIN },
    { NULL, 0 } },
};

/* [learn] with enabled = true needs what its backend talks to. */
static void
check_learn (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;

  (void) kf;
  (void) s;
  if (!c->learn_enabled)
    return;
  if (c->learn_backend == LMTPD_LEARN_SPAMD && (c->learn_spamd == NULL
      || (!g_str_has_prefix (c->learn_spamd, "inet:") && !g_str_has_prefix (c->learn_spamd, "unix:"))))
    conf_problem (ld, group, "spamd", "backend spamd needs spamd = inet:HOST:PORT or unix:PATH");
  if (c->learn_backend == LMTPD_LEARN_RSPAMD && (c->learn_rspamd == NULL
      || (!g_str_has_prefix (c->learn_rspamd, "http://") && !g_str_has_prefix (c->learn_rspamd, "https://"))))
    conf_problem (ld, group, "rspamd", "backend rspamd needs rspamd = the controller's http:// URL");
  if (c->learn_backend == LMTPD_LEARN_BUILTIN && c->learn_bayes_db == NULL)
    conf_problem (ld, group, "bayes_db", "backend builtin needs bayes_db = PATH");
}

/* [admin] listen, if set ("" is unset) */
static void
check_admin_listen (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  char **v = &CONF_FIELD (base, s, char *);
  g_autoptr (GError) err = NULL;
  LmtpdListen *l;

  conf_check_empty_is_unset (ld, kf, group, s, base);
  if (*v == NULL)
    return;
  if ((l = lmtpd_listen_parse (*v, &err)) == NULL)
    conf_problem (ld, group, s->key, "%s", err->message);
  else
    lmtpd_listen_free (l);
}

/* What only the whole group can say: a listener needs a way in, HTTPS
 * both halves, client certificates HTTPS. */
static void
check_admin_group (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;

  (void) kf;
  (void) s;
  if ((c->admin_tls_cert_file == NULL) != (c->admin_tls_key_file == NULL))
    conf_problem (ld, group, c->admin_tls_cert_file ? "tls_key_file" : "tls_cert_file",
                  "HTTPS needs both tls_cert_file and tls_key_file");
  if (c->admin_tls_client_ca_file && c->admin_tls_cert_file == NULL)
    conf_problem (ld, group, "tls_client_ca_file", "client certificates need tls_cert_file (HTTPS)");
  if (c->admin_listen && c->admin_token_file == NULL && c->admin_tls_client_ca_file == NULL)
    conf_problem (ld, group, "listen", "the admin listener needs token_file or tls_client_ca_file");
}

static const ConfSetting ops_rows[] = {
  /* [trace]: what happened to each recipient (deliver/, lmtpctl trace) */
  { "trace", "enabled", CONF_BOOL, CFG (trace_enabled), .def = TRUE,
    .doc = "record each recipient's decisions: callouts, Sieve rules, the reply and folder" },
  { "trace", "keep", CONF_UINT, CFG (trace_keep), .def = 7 * 86400, .min = 60, .max = 366 * 86400,
    .doc = "how long a decision trace is kept" },

  /* [learn]: the user's Junk moves taught to the spam filter (learn/) */
  { "learn", "enabled", CONF_BOOL, CFG (learn_enabled), .def = FALSE, .needs_restart = TRUE,
    .doc = "watch the Maildirs and learn from moves into and out of Junk" },
  { "learn", "junk_folders", CONF_LIST, CFG (learn_junk_folders), .def_text = "Junk;Spam", .needs_restart = TRUE,
    .doc = "folders whose messages are spam (their subfolders too)" },
  { "learn", "trash_folders", CONF_LIST, CFG (learn_trash_folders), .def_text = "Trash;Deleted Messages",
    .needs_restart = TRUE, .doc = "a move out of Junk into these teaches nothing" },
  { "learn", "backend", CONF_CHOICE, CFG (learn_backend), .def = LMTPD_LEARN_SPAMD,
    .choices = &learn_backend_choices, .needs_restart = TRUE, .doc = "spamd, rspamd or builtin" },
  { "learn", "spamd", CONF_STRING, CFG (learn_spamd), .needs_restart = TRUE,
    .doc = "inet:HOST:PORT or unix:PATH of spamd (run with --allow-tell)" },
  { "learn", "rspamd", CONF_STRING, CFG (learn_rspamd), .needs_restart = TRUE,
    .doc = "the URL of rspamd's controller (http://127.0.0.1:11334)" },
  { "learn", "rspamd_password", CONF_STRING, CFG (learn_rspamd_password), .needs_restart = TRUE,
    .doc = "the controller's password (sent as the Password header)" },
  { "learn", "bayes_db", CONF_STRING, CFG (learn_bayes_db), .needs_restart = TRUE,
    .doc = "backend builtin: the SQLite file of per-user token counts ([service] bayes_db reads it)" },
  { "learn", "rate", CONF_UINT, CFG (learn_rate), .def = 100, .min = 1, .max = 100000, .needs_restart = TRUE,
    .doc = "learns per user per hour; more are dropped (and logged)" },
  { "learn", "max_size", CONF_SIZE, CFG (learn_max_size), .def = 1024 * 1024, .min = 1024,
    .max = 64 * 1024 * 1024, .needs_restart = TRUE, .check = check_learn, /* the group's last row: all loaded */
    .doc = "bigger messages are not learned" },

  /* [record]: callout calls kept for lmtpctl replay (deliver/record.c) */
  { "record", "services", CONF_LIST, CFG (record_services),
    .doc = "services whose calls are recorded (none: no recording); unset: the shadow services" },
  { "record", "dir", CONF_STRING, CFG (record_dir), .def_text = "./var/lib/recorded",
    .doc = "where one copy of each recorded message is kept" },
  { "record", "keep", CONF_UINT, CFG (record_keep), .def = 2 * 86400, .min = 60, .max = 366 * 86400,
    .doc = "how long a recorded call and its copy are kept" },
  { "record", "max_size", CONF_SIZE, CFG (record_max_size), .def = 1024 * 1024 * 1024, .min = 0,
    .max = G_MAXINT64, .doc = "bytes of kept copies at most; when full, recording pauses (0: no recording)" },
  /* [quarantine]: the store outside the mailboxes (deliver/quarantine*.c, lmtpctl quarantine) */
  { "quarantine", "dir", CONF_STRING, CFG (quarantine_dir), .def_text = "./var/lib/quarantine",
    .doc = "where the quarantined copies are kept (created by lmtpd, owned by the mail user)" },
  { "quarantine", "keep", CONF_UINT, CFG (quarantine_keep), .def = 30 * 86400, .min = 60, .max = 3660 * 86400,
    .doc = "how long a quarantined copy is kept before lmtpctl quarantine expire removes it" },
  { "quarantine", "max_size", CONF_SIZE, CFG (quarantine_max_size), .def = 0, .min = 0,
    .max = G_MAXINT64, .doc = "a copy larger than this is refused with 451 (0: max_message_size)" },

  /* [admin]: the admin web listener lmtpd serves (admin/web-*.c) */
  { "admin", "listen", CONF_STRING, CFG (admin_listen), .needs_restart = TRUE, .check = check_admin_listen,
    .doc = "inet:HOST:PORT or unix:PATH of the admin web page and its /metrics; unset: none" },
  { "admin", "token_file", CONF_STRING, CFG (admin_token_file), .needs_restart = TRUE,
    .check = conf_check_empty_is_unset, .doc = "a file holding the admin token (not readable by others)" },
  { "admin", "tls_cert_file", CONF_STRING, CFG (admin_tls_cert_file), .needs_restart = TRUE,
    .check = conf_check_empty_is_unset, .doc = "HTTPS certificate chain (PEM); unset: plain HTTP" },
  { "admin", "tls_key_file", CONF_STRING, CFG (admin_tls_key_file), .needs_restart = TRUE,
    .check = conf_check_empty_is_unset, .doc = "HTTPS private key (PEM)" },
  { "admin", "tls_client_ca_file", CONF_STRING, CFG (admin_tls_client_ca_file), .needs_restart = TRUE,
    .check = conf_check_empty_is_unset, .doc = "a CA (PEM) whose client certificates are admins" },
  { "admin", "link_secret_file", CONF_STRING, CFG (admin_link_secret_file), .needs_restart = TRUE,
    .check = conf_check_empty_is_unset, .doc = "a file holding the HMAC key of the users' signed release links" },
  { "admin", "link_lifetime", CONF_UINT, CFG (admin_link_lifetime), .def = 7 * 86400, .min = 60,
    .max = 366 * 86400, .doc = "how long a signed release link is valid" },
  { "admin", "max_connections", CONF_UINT, CFG (admin_max_connections), .def = 32, .min = 1, .max = 10000,
    .needs_restart = TRUE, .check = check_admin_group, .doc = "connections the admin listener serves at once" },
};

const ConfTable conf_ops_table = { ops_rows, G_N_ELEMENTS (ops_rows), NULL };
