/* ops-settings.c - the rows of the operator's tools (issue 19): the
 * decision trace, the quarantine store, recorded calls, learning from the
 * user's Junk moves and the admin listener.  The main table (settings.c)
 * goes on here; each group's rows stay together.
 */
#include "config.h"

#include <string.h>

#include "conf-private.h"

#define CFG(field) G_STRUCT_OFFSET (LmtpdConfig, field)

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
