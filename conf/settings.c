/* settings.c - the main table: every key of the fixed groups of
 * lmtpd.conf once, with where its value lives, its type, default, bounds,
 * whether a reload applies it and a line for people; the checks of the keys
 * that need more than a type; and one row each standing for [service NAME]
 * and [rule NAME], whose own tables and loaders are in opes.c.
 *
 * Rows are in load order within each group, which is the order problems
 * are reported in; the named groups are loaded where their rows stand.
 * The table engine (conf-table.c) drives it; conf.c hands it over.
 * docs/man/lmtpd.conf.5 lists the same keys (a unit test compares them).
 * The maps' loaders are in maps.c.  A new key is one row here (or in
 * opes.c's tables), a line in the man page and one in
 * conf/lmtpd.conf.example.
 */
#include "config.h"

#include <string.h>

#include "conf-private.h"

#define CFG(field) G_STRUCT_OFFSET (LmtpdConfig, field)

/* ---- [server] ----------------------------------------------------------- */

static void
load_socket_mode (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  g_autofree char *mode = conf_get_string (kf, group, s->key);
  char *end = NULL;
  guint64 m;

  if (mode == NULL)
    return;
  m = g_ascii_strtoull (mode, &end, 8);
  if (*mode == '\0' || *end != '\0' || m > 0777)
    conf_problem (ld, group, s->key, "'%s' is not an octal mode like 0660", mode);
  else
    ((LmtpdConfig *) base)->socket_mode = (guint) m;
}

static void
check_hostname (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  const char *h = ((LmtpdConfig *) base)->hostname;

  if (h[0] == '\0' || strpbrk (h, " \t\r\n<>()[];"))
    conf_problem (ld, group, s->key, "'%s' is not a host name", h);
}

/* [server] xforward_hosts: CIDR blocks or addresses, and "local" for the
 * UNIX sockets, separated by ';', ',' or blanks. */
static void
load_xforward_hosts (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  g_autofree char *text = conf_get_string (kf, group, s->key);
  g_auto (GStrv) items = NULL;

  if (text == NULL)
    return;
  items = g_strsplit_set (text, ";, \t", -1);
  c->xforward_hosts = g_ptr_array_new_with_free_func (g_object_unref);
  for (guint i = 0; items[i]; i++)
    {
      g_autoptr (GError) err = NULL;
      GInetAddressMask *m;

      if (items[i][0] == '\0')
        continue;
      if (g_ascii_strcasecmp (items[i], "local") == 0)
        {
          c->xforward_local = TRUE;
          continue;
        }
      m = g_inet_address_mask_new_from_string (items[i], &err);
      if (m == NULL)
        conf_problem (ld, group, s->key, "'%s' is not an address or CIDR block", items[i]);
      else
        g_ptr_array_add (c->xforward_hosts, m);
    }
}

static void
check_tls_pair (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;

  if ((c->tls_cert_file == NULL) != (c->tls_key_file == NULL))
    conf_problem (ld, group, c->tls_cert_file ? "tls_key_file" : "tls_cert_file",
                  "STARTTLS needs both tls_cert_file and tls_key_file");
}

static void
check_ms_tls_pair (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;

  if ((c->managesieve_tls_cert_file == NULL) != (c->managesieve_tls_key_file == NULL))
    conf_problem (ld, group, c->managesieve_tls_cert_file ? "tls_key_file" : "tls_cert_file",
                  "STARTTLS needs both tls_cert_file and tls_key_file");
}

/* A listener spec, if set ("" is unset). */
static void
check_listen_spec (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  char **v = &CONF_FIELD (base, s, char *);
  g_autoptr (GError) err = NULL;
  LmtpdListen *l;

  if (*v == NULL)
    return;
  l = lmtpd_listen_parse (*v, &err);
  if (l == NULL)
    conf_problem (ld, group, s->key, "%s", err->message);
  else
    lmtpd_listen_free (l);
}

static void
check_metrics_listen (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  conf_check_empty_is_unset (ld, kf, group, s, base);
  check_listen_spec (ld, kf, group, s, base);
}

/* ---- [cluster] ---------------------------------------------------------- */

/* [cluster] nodes: NAME=inet:HOST:PORT or NAME=unix:PATH, separated by ';';
 * names unique, and node_name among them. */
static void
check_cluster_nodes (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  g_auto (GStrv) items = NULL;
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  conf_check_empty_is_unset (ld, kf, group, s, base);
  if (c->cluster_nodes == NULL || strcmp (c->cluster_nodes, LMTPD_CLUSTER_NODES_PGSQL) == 0)
    return;
  items = g_strsplit (c->cluster_nodes, ";", -1);
  for (guint i = 0; items[i]; i++)
    {
      char *item = g_strstrip (items[i]), *eq = strchr (item, '=');
      g_autoptr (GError) err = NULL;
      LmtpdListen *l;

      if (item[0] == '\0')
        continue;
      if (eq == NULL || eq == item)
        {
          conf_problem (ld, group, s->key, "'%s' is not NAME=inet:HOST:PORT or NAME=unix:PATH", item);
          continue;
        }
      *eq = '\0';
      if (!g_hash_table_add (seen, item))
        conf_problem (ld, group, s->key, "node '%s' is listed twice", item);
      if ((l = lmtpd_listen_parse (eq + 1, &err)) == NULL)
        conf_problem (ld, group, s->key, "node '%s': %s", item, err ? err->message : "not an address");
      else
        lmtpd_listen_free (l);
    }
  if (c->cluster_node_name == NULL || !g_hash_table_contains (seen, c->cluster_node_name))
    conf_problem (ld, group, s->key, "node_name '%s' is not one of the nodes",
                  c->cluster_node_name ? c->cluster_node_name : "");
}

/* [cluster] lmtp_address: HOST:PORT ([v6]:PORT), a real port; a node
 * with a name must say where it is reached. */
static void
check_lmtp_address (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  g_autoptr (GError) err = NULL;
  g_autofree char *spec = NULL;
  LmtpdListen *l;

  gboolean registry = g_strcmp0 (c->cluster_nodes, LMTPD_CLUSTER_NODES_PGSQL) == 0;

  if (registry && c->state_backend != LMTPD_STATE_PGSQL)
    conf_problem (ld, group, "nodes", "pgsql (the nodes table) needs [state] backend = pgsql");
  if (c->cluster_lmtp_address == NULL)
    {
      /* the heartbeat says where this node is */
      if (c->cluster_node_name && c->state_backend == LMTPD_STATE_PGSQL)
        conf_problem (ld, group, s->key, "node_name is set: say where the other nodes reach this one (HOST:PORT)");
      return;
    }
  spec = g_strconcat ("inet:", c->cluster_lmtp_address, NULL);
  if ((l = lmtpd_listen_parse (spec, &err)) == NULL)
    conf_problem (ld, group, s->key, "'%s' is not HOST:PORT", c->cluster_lmtp_address);
  else
    {
      if (l->port == 0)
        conf_problem (ld, group, s->key, "needs a port other than 0");
      lmtpd_listen_free (l);
    }
}

/* ---- [delivery], [mailboxes] -------------------------------------------- */

/* [maildir:|mbox:]PATH[:INBOX=FILE] with only %u %d %n %% escapes */
static void
check_mailbox_template (ConfLoader *ld, const char *group, const char *key, const char *t)
{
  const char *path = t;

  if (g_str_has_prefix (t, "maildir:"))
    path = t + 8;
  else if (g_str_has_prefix (t, "mbox:"))
    path = t + 5;
  if (path[0] == '\0' || path[0] == '/' || strstr (path, ".."))
    conf_problem (ld, group, key, "'%s' must be relative to mail_root, without '..'", t);
  for (const char *p = path; *p; p++)
    if (*p == '%' && (p[1] == '\0' || !strchr ("udn%", p[1])))
      {
        conf_problem (ld, group, key, "unknown escape '%%%c' (use %%u, %%d, %%n or %%%%)", p[1] ? p[1] : ' ');
        break;
      }
    else if (*p == '%')
      p++;
}

static void
check_mailbox (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  check_mailbox_template (ld, group, s->key, CONF_FIELD (base, s, char *));
}

/* [mailboxes]: any domain as key, a mailbox template as value */
static void
load_domain_mailboxes (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  g_auto (GStrv) domains = g_key_file_get_keys (kf, group, NULL, NULL);

  for (guint i = 0; domains && domains[i]; i++)
    {
      char *t = conf_get_string (kf, group, domains[i]);
      check_mailbox_template (ld, group, domains[i], t);
      g_hash_table_replace (c->domain_mailbox, g_ascii_strdown (domains[i], -1), t);
    }
}

/* Not blank-stripped: the delimiter characters are the value. */
static void
load_recipient_delimiter (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  char **v = &CONF_FIELD (base, s, char *);

  if (!g_key_file_has_key (kf, group, s->key, NULL))
    return;
  g_free (*v);
  *v = g_key_file_get_string (kf, group, s->key, NULL);
  for (const char *p = *v; p && *p; p++)
    if (!g_ascii_isprint (*p) || *p == '@' || *p == ' ' || *p == '/')
      {
        conf_problem (ld, group, s->key, "'%c' cannot be a delimiter", *p);
        break;
      }
}

static const ConfChoices detail_choices = {
  TRUE, "no, yes or if-exists",
  { { "no", LMTPD_DETAIL_NO }, { "false", LMTPD_DETAIL_NO }, { "yes", LMTPD_DETAIL_YES },
    { "true", LMTPD_DETAIL_YES }, { "if-exists", LMTPD_DETAIL_IF_EXISTS }, { NULL, 0 } },
};

static const ConfChoices sync_choices = {
  TRUE, "one-commit or two-step",
  { { "one-commit", LMTPD_SYNC_ONE_COMMIT }, { "two-step", LMTPD_SYNC_TWO_STEP }, { NULL, 0 } },
};

static const ConfChoices quoting_choices = {
  TRUE, "mboxrd or mboxo", { { "mboxrd", FALSE }, { "mboxo", TRUE }, { NULL, 0 } },
};

static const ConfChoices users_backend_choices = {
  FALSE, "file, ldap, pgsql or dovecot",
  { { "file", LMTPD_USERS_FILE }, { "ldap", LMTPD_USERS_LDAP }, { "pgsql", LMTPD_USERS_PGSQL },
    { "dovecot", LMTPD_USERS_DOVECOT }, { NULL, 0 } },
};

/* yes/no as the LDAP tools' own ldap.conf says it, true/false as lmtpd's */
static const ConfChoices yes_no_choices = {
  TRUE, "yes or no",
  { { "yes", TRUE }, { "no", FALSE }, { "true", TRUE }, { "false", FALSE }, { NULL, 0 } },
};

static const ConfChoices ldap_scope_choices = {
  TRUE, "sub, one or base",
  { { "sub", LMTPD_LDAP_SCOPE_SUB }, { "one", LMTPD_LDAP_SCOPE_ONE }, { "base", LMTPD_LDAP_SCOPE_BASE }, { NULL, 0 } },
};

static const ConfChoices dovecot_user_key_choices = {
  FALSE, "address or localpart", { { "address", FALSE }, { "localpart", TRUE }, { NULL, 0 } },
};

static const ConfChoices log_format_choices = {
  FALSE, "text or json", { { "text", FALSE }, { "json", TRUE }, { NULL, 0 } },
};

static const ConfChoices state_backend_choices = {
  FALSE, "file or pgsql", { { "file", LMTPD_STATE_FILE }, { "pgsql", LMTPD_STATE_PGSQL }, { NULL, 0 } },
};

static const ConfChoices state_on_error_choices = {
  FALSE, "tempfail or local", { { "tempfail", FALSE }, { "local", TRUE }, { NULL, 0 } },
};

/* ---- [sieve] ------------------------------------------------------------ */

static void
check_script_escapes (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  for (const char *p = CONF_FIELD (base, s, char *); *p; p++)
    {
      if (*p != '%')
        continue;
      if (p[1] == '\0' || !strchr ("undh%", p[1]))
        {
          conf_problem (ld, group, s->key, "unknown %%-escape (use %%u %%n %%d %%h %%%%)");
          break;
        }
      p++;
    }
}

static void
check_readable_files (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  char **list = CONF_FIELD (base, s, char **);

  for (guint i = 0; list[i]; i++)
    if (!g_file_test (list[i], G_FILE_TEST_IS_REGULAR))
      conf_problem (ld, group, s->key, "'%s' is not a readable file", list[i]);
}

/* USE=FOLDER, USE an atom with or without its '\\' (which a key file
 * would read as an escape) */
static void
check_special_use (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  char **list = CONF_FIELD (base, s, char **);

  for (guint i = 0; list[i]; i++)
    {
      const char *use = list[i][0] == '\\' ? list[i] + 1 : list[i];
      const char *eq = strchr (use, '=');
      gboolean ok = eq && eq > use && eq[1] != '\0';
      for (const char *p = use; ok && p < eq; p++)
        ok = g_ascii_isalnum (*p) || *p == '-' || *p == '_';
      if (!ok)
        conf_problem (ld, group, s->key, "'%s' is not USE=FOLDER (as Junk=Spam)", list[i]);
    }
}

/* Given in seconds, kept in milliseconds. */
static void
load_max_run_time (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  guint64 secs = 0;

  if (conf_get_number (ld, kf, group, s->key, CONF_UNITS_TIME, s->min, s->max, &secs) && secs)
    ((LmtpdConfig *) base)->sieve_max_run_time_ms = (guint) secs * 1000;
}

static void
check_one_sender (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;

  if (c->sendmail && c->submission)
    conf_problem (ld, group, s->key, "set submission or sendmail, not both");
}

static void
load_lowercase_list (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  char ***v = &CONF_FIELD (base, s, char **);
  g_auto (GStrv) list = g_key_file_get_string_list (kf, group, s->key, NULL, NULL);

  if (!g_key_file_has_key (kf, group, s->key, NULL))
    return;
  g_strfreev (*v);
  *v = conf_clean_list (list, TRUE);
}

/* redirect_sender: Pigeonhole's sieve_redirect_envelope_from values, or srs */
static void
check_redirect_sender (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  static const char *const words[] = { "sender", "recipient", "orig_recipient", "user_email", "postmaster",
                                       "srs", "<>", NULL };
  const char *v = CONF_FIELD (base, s, char *) ? CONF_FIELD (base, s, char *) : "sender";
  gsize n = strlen (v);
  g_autofree char *bare = n >= 2 && v[0] == '<' && v[n - 1] == '>' ? g_strndup (v + 1, n - 2) : g_strdup (v);

  if (!g_strv_contains (words, v) && (strchr (bare, '@') == NULL || !conf_address_is_sane (bare)))
    conf_problem (ld, group, s->key, "'%s' is not sender, recipient, orig_recipient, user_email, postmaster, "
                  "srs, <> or an address", v);
}

/* srs needs a domain and a secret: the first line of a readable file */
static void
check_srs (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  g_autofree char *text = NULL;

  conf_check_empty_is_unset (ld, kf, group, s, base);
  if (c->srs_secret_file && (!g_file_get_contents (c->srs_secret_file, &text, NULL, NULL) || strchr ("\r\n", text[0])))
    conf_problem (ld, group, s->key, "'%s' is not a readable file whose first line is the secret",
                  c->srs_secret_file);
  if (c->redirect_sender && !strcmp (c->redirect_sender, "srs")
      && (c->srs_domain == NULL || c->srs_domain[0] == '\0' || c->srs_secret_file == NULL))
    conf_problem (ld, group, s->key, "redirect_sender = srs needs srs_domain and srs_secret_file");
}

/* ---- the table ---------------------------------------------------------- */

#define KiB G_GUINT64_CONSTANT (1024)
#define MiB (KiB * 1024)

/* Sizes take k, M, G; CONF_UINT values (counts too) take s, m, h as they
 * always have. */
static const ConfSetting main_rows[] = {
  { "server", "listen", CONF_LISTEN, CFG (listen), .def_text = "inet:127.0.0.1:2424", .needs_restart = TRUE,
    .doc = "inet:HOST:PORT and unix:PATH listeners, separated by ;" },
  { "server", "socket_mode", CONF_UINT, CFG (socket_mode), .def = 0660, .load = load_socket_mode,
    .doc = "octal mode of the UNIX sockets" },
  { "server", "socket_owner", CONF_STRING, CFG (socket_owner), .doc = "user[:group] owning the UNIX sockets" },
  { "server", "hostname", CONF_STRING, CFG (hostname), .check = check_hostname,
    .doc = "name in the greeting and trace headers (default: this host's)" },
  { "server", "spool_dir", CONF_STRING, CFG (spool_dir), .def_text = "./var/spool",
    .doc = "where message data is spooled" },
  { "server", "max_sessions", CONF_UINT, CFG (max_sessions), .def = 100, .min = 1, .max = 100000,
    .doc = "sessions at once; more get 421" },
  { "server", "idle_timeout", CONF_UINT, CFG (idle_timeout), .def = 300, .min = 1, .max = 86400,
    .doc = "seconds a client may be idle" },
  { "server", "shutdown_timeout", CONF_UINT, CFG (shutdown_timeout), .def = 30, .min = 0, .max = 3600,
    .doc = "seconds transactions get to finish at SIGTERM" },
  { "server", "user", CONF_STRING, CFG (user), .needs_restart = TRUE, .check = conf_check_empty_is_unset,
    .doc = "the account to switch to after binding" },
  { "server", "delivery_threads", CONF_UINT, CFG (delivery_threads), .def = 64, .min = 1, .max = 1024,
    .doc = "worker threads for deliveries and callouts" },
  { "server", "max_memory", CONF_SIZE, CFG (max_memory), .def = 1024 * MiB, .min = 0, .max = G_MAXINT64,
    .doc = "resident size above which new sessions get 421 (0: no limit)" },
  { "server", "xforward_hosts", CONF_NONE, 0, .load = load_xforward_hosts,
    .doc = "addresses, CIDR blocks and local allowed to send XFORWARD" },
  { "server", "tls_cert_file", CONF_STRING, CFG (tls_cert_file), .doc = "STARTTLS certificate chain (PEM)" },
  { "server", "tls_key_file", CONF_STRING, CFG (tls_key_file), .check = check_tls_pair,
    .doc = "its private key" },
  { "server", "tls_client_ca_file", CONF_STRING, CFG (tls_client_ca_file),
    .doc = "CA certificates to verify client certificates against" },
  { "server", "log_format", CONF_CHOICE, CFG (log_json), .def = FALSE, .choices = &log_format_choices,
    .doc = "text or json (one object a line)" },
  { "server", "metrics_listen", CONF_STRING, CFG (metrics_listen), .needs_restart = TRUE,
    .check = check_metrics_listen, .doc = "inet:HOST:PORT or unix:PATH serving GET /metrics" },
  { "server", "socketmap_listen", CONF_STRING, CFG (socketmap_listen), .needs_restart = TRUE,
    .check = check_metrics_listen, .doc = "inet:HOST:PORT or unix:PATH serving Postfix socketmap lookups" },
  { "server", "policy_listen", CONF_STRING, CFG (policy_listen), .needs_restart = TRUE,
    .check = check_metrics_listen, .doc = "inet:HOST:PORT or unix:PATH serving a Postfix policy service" },

  { "limits", "max_line_length", CONF_SIZE_T, CFG (max_line_length), .def = 2048, .min = 512, .max = MiB,
    .doc = "a command line, CRLF included" },
  { "limits", "max_data_line_length", CONF_SIZE_T, CFG (max_data_line_length), .def = MiB, .min = 1000,
    .max = G_MAXUINT32, .doc = "a line of message data" },
  { "limits", "max_message_size", CONF_SIZE, CFG (max_message_size), .def = 51 * MiB, .min = 0,
    .max = G_MAXINT64, .doc = "bytes (0: unlimited)" },
  { "limits", "max_recipients", CONF_UINT, CFG (max_recipients), .def = 1000, .min = 1, .max = 100000,
    .doc = "recipients a transaction" },
  { "limits", "max_errors", CONF_UINT, CFG (max_errors), .def = 20, .min = 1, .max = 10000,
    .doc = "errors a session before it is closed" },
  { "limits", "min_data_rate", CONF_SIZE, CFG (min_data_rate), .def = 500, .min = 0, .max = G_MAXUINT32,
    .doc = "bytes a second a client must keep up in DATA and BDAT (0: none)" },

  { "delivery", "mail_root", CONF_STRING, CFG (mail_root), .def_text = "./var/mail",
    .doc = "where mailboxes live" },
  { "delivery", "mailbox", CONF_STRING, CFG (mailbox_template), .def_text = "%d/%n/Maildir",
    .check = check_mailbox, .doc = "[maildir:|mbox:]PATH under mail_root with %u %n %d" },
  { "mailboxes", "*", CONF_NONE, 0, .load = load_domain_mailboxes, .doc = "DOMAIN = a mailbox template" },
  { "delivery", "fsync", CONF_BOOL, CFG (fsync), .def = TRUE, .doc = "fsync messages and directories" },
  { "delivery", "sync_mode", CONF_CHOICE, CFG (sync_mode), .def = LMTPD_SYNC_ONE_COMMIT, .choices = &sync_choices,
    .doc = "one-commit (ext4 with an ordered journal, else two-step) or two-step" },
  { "delivery", "create_folders", CONF_BOOL, CFG (create_folders), .def = TRUE,
    .doc = "create a missing folder a delivery names" },
  { "delivery", "quota_full_tempfail", CONF_BOOL, CFG (quota_full_tempfail),
    .doc = "452 4.2.2 instead of 552 5.2.2 when over quota" },
  { "delivery", "single_instance", CONF_BOOL, CFG (single_instance), .def = TRUE,
    .doc = "hard-link identical copies of one transaction" },
  { "delivery", "recipient_delimiter", CONF_STRING, CFG (recipient_delimiter), .def_text = "+",
    .load = load_recipient_delimiter, .doc = "characters that start a detail (empty: none)" },
  { "delivery", "detail_folder", CONF_CHOICE, CFG (detail_folder), .def = LMTPD_DETAIL_NO,
    .choices = &detail_choices, .doc = "user+detail into folder detail: no, yes or if-exists" },
  { "delivery", "duplicate_window", CONF_UINT, CFG (duplicate_window), .def = 4 * 3600, .min = 0,
    .max = 30 * 86400, .doc = "seconds a duplicate is suppressed (0: never)" },
  { "delivery", "duplicate_db", CONF_STRING, CFG (duplicate_db), .def_text = "./var/lib/duplicates",
    .doc = "the duplicate journal" },
  { "delivery", "mbox_quoting", CONF_CHOICE, CFG (mbox_mboxo), .def = FALSE, .choices = &quoting_choices,
    .doc = "mboxrd or mboxo" },
  { "delivery", "mbox_lock_timeout", CONF_UINT, CFG (mbox_lock_timeout), .def = 30, .min = 1, .max = 3600,
    .doc = "seconds to wait for an mbox lock" },
  { "delivery", "delivery_timeout", CONF_UINT, CFG (delivery_timeout), .def = 120, .min = 1, .max = 86400,
    .doc = "seconds one recipient's delivery may take (then 451 4.4.7)" },

  /* the maps' problems come in this order: rewrite, users, postmaster */
  { "users", "rewrite", CONF_STRING, CFG (rewrite_map), .check = conf_load_rewrite_map,
    .doc = "the rewrite map file" },
  { "users", "backend", CONF_CHOICE, CFG (users_backend_kind), .def = LMTPD_USERS_FILE,
    .choices = &users_backend_choices, .doc = "where users come from: file (the users map), ldap, pgsql or dovecot" },
  { "users", "cache_ttl", CONF_UINT, CFG (users_cache_ttl), .def = 60, .min = 0, .max = 86400,
    .doc = "seconds a user found by a directory server is remembered" },
  { "users", "negative_cache_ttl", CONF_UINT, CFG (users_negative_ttl), .def = 10, .min = 0, .max = 86400,
    .doc = "seconds an address a directory server does not know is remembered" },
  { "users", "lookup_timeout", CONF_MS, CFG (users_lookup_timeout_ms), .def = 5000,
    .doc = "a directory lookup slower than this answers 451" },
  { "users", "map", CONF_STRING, CFG (users_map), .check = conf_load_users_map, .doc = "the users map file" },
  { "users", "pgsql_conninfo", CONF_STRING, CFG (users_pgsql_conninfo), .check = conf_check_pgsql_conninfo,
    .doc = "backend pgsql: libpq connection string or URI (several hosts: failover)" },
  { "users", "pgsql_password_file", CONF_STRING, CFG (users_pgsql_password_file),
    .check = conf_load_pgsql_password, .doc = "backend pgsql: a file holding the password" },
  { "users", "pgsql_query", CONF_STRING, CFG (users_pgsql_query), .check = conf_check_pgsql_query,
    .def_text = "SELECT * FROM users WHERE address = $1",
    .doc = "backend pgsql: the query ($1 address, $2 local part, $3 domain)" },
  { "users", "pgsql_password_query", CONF_STRING, CFG (users_pgsql_password_query),
    .check = conf_check_pgsql_query,
    .doc = "backend pgsql: ManageSieve logins, the query whose first column is the password hash ($1 $2 $3)" },
  { "users", "dovecot_socket", CONF_STRING, CFG (users_dovecot_socket), .check = conf_check_dovecot_socket,
    .doc = "Dovecot's auth-userdb socket (backend dovecot)" },
  { "users", "dovecot_auth_socket", CONF_STRING, CFG (users_dovecot_auth_socket), .check = conf_check_socket_path,
    .doc = "Dovecot's auth-client socket, for ManageSieve logins with backend dovecot" },
  { "users", "dovecot_service", CONF_STRING, CFG (users_dovecot_service), .def_text = "lmtp",
    .check = conf_check_dovecot_name, .doc = "the service named in Dovecot's USER lookup" },
  { "users", "dovecot_user_key", CONF_CHOICE, CFG (users_dovecot_local), .def = FALSE,
    .choices = &dovecot_user_key_choices, .doc = "what Dovecot is asked for: address or localpart" },
  { "users", "dovecot_sieve_field", CONF_STRING, CFG (users_dovecot_sieve_field), .def_text = "sieve",
    .check = conf_check_dovecot_name, .doc = "the userdb field naming the user's Sieve script" },
  { "users", "dovecot_settings_prefix", CONF_STRING, CFG (users_dovecot_settings_prefix),
    .def_text = "lmtpd_setting_", .check = conf_check_dovecot_name,
    .doc = "userdb fields so prefixed are per-recipient settings for the services" },
  { "users", "domains", CONF_LIST, CFG (domains), .def_text = "*", .load = conf_load_domains,
    .doc = "any local part of these domains is a user (*: any domain)" },
  { "users", "postmaster", CONF_STRING, CFG (postmaster), .check = conf_check_postmaster,
    .doc = "where a bare <postmaster> goes" },
  { "users", "ldap_uris", CONF_STRING, CFG (ldap_uris), .check = conf_check_ldap_uris,
    .doc = "backend ldap: the servers' URIs, tried in order" },
  { "users", "ldap_base", CONF_STRING, CFG (ldap_base), .check = conf_check_ldap_base, .doc = "the search base" },
  { "users", "ldap_scope", CONF_CHOICE, CFG (ldap_scope), .def = LMTPD_LDAP_SCOPE_SUB,
    .choices = &ldap_scope_choices, .doc = "sub, one or base" },
  { "users", "ldap_bind_dn", CONF_STRING, CFG (ldap_bind_dn), .doc = "the DN to bind as (none: anonymous)" },
  { "users", "ldap_bind_password_file", CONF_STRING, CFG (ldap_bind_password_file),
    .check = conf_check_ldap_password_file, .doc = "the file holding its password" },
  { "users", "ldap_starttls", CONF_CHOICE, CFG (ldap_starttls), .def = FALSE, .choices = &yes_no_choices, .doc = "StartTLS on ldap:// URIs" },
  { "users", "ldap_tls_ca_file", CONF_STRING, CFG (ldap_tls_ca_file), .check = conf_check_readable_file,
    .doc = "CA certificates for StartTLS and ldaps://" },
  { "users", "ldap_filter", CONF_STRING, CFG (ldap_filter), .def_text = "(mail=%u)", .check = conf_check_ldap_filter,
    .doc = "the search filter; %u %n %d are escaped" },
  { "users", "ldap_mailbox_attribute", CONF_STRING, CFG (ldap_mailbox_attribute), .def_text = "mailMessageStore",
    .check = conf_check_ldap_attribute, .doc = "the mailbox spec" },
  { "users", "ldap_quota_attribute", CONF_STRING, CFG (ldap_quota_attribute), .def_text = "mailQuota",
    .check = conf_check_ldap_attribute, .doc = "quota in bytes (or 10M)" },
  { "users", "ldap_quota_messages_attribute", CONF_STRING, CFG (ldap_quota_messages_attribute),
    .def_text = "mailQuotaMessages", .check = conf_check_ldap_attribute, .doc = "quota in messages" },
  { "users", "ldap_sieve_attribute", CONF_STRING, CFG (ldap_sieve_attribute), .def_text = "mailSieveScript",
    .check = conf_check_ldap_attribute, .doc = "the Sieve script path" },
  { "users", "ldap_enabled_attribute", CONF_STRING, CFG (ldap_enabled_attribute), .def_text = "accountStatus",
    .check = conf_check_ldap_attribute, .doc = "enabled if absent or ldap_enabled_value" },
  { "users", "ldap_enabled_value", CONF_STRING, CFG (ldap_enabled_value), .def_text = "active",
    .doc = "the value that means enabled" },
  { "users", "ldap_alias_attribute", CONF_STRING, CFG (ldap_alias_attribute), .def_text = "mailForwardingAddress",
    .check = conf_check_ldap_attribute, .doc = "an alias's target address" },
  { "users", "ldap_settings_attribute", CONF_STRING, CFG (ldap_settings_attribute),
    .def_text = "mailRecipientSetting", .check = conf_check_ldap_attribute, .doc = "\"Name: value\" for the services" },
  { "users", "ldap_host_attribute", CONF_STRING, CFG (ldap_host_attribute), .def_text = "mailHost",
    .check = conf_check_ldap_attribute, .doc = "the node holding the mailbox" },

  { "opes", "system", CONF_STRING, CFG (opes_system), .load = conf_load_opes_system,
    .doc = "URI naming this OPES system in traces" },
  { "opes", "bypass", CONF_UINT, CFG (opes_bypass), .load = conf_load_bypass,
    .doc = "bypass requests honoured: header, parameter or none" },

  { "service", NULL, CONF_NONE, 0, .load = conf_load_services, .named = &conf_service_table,
    .doc = "[service NAME]: a callout service, with the rows of opes.c" },
  { "rule", NULL, CONF_NONE, 0, .load = conf_load_rules, .named = &conf_rule_table,
    .doc = "[rule NAME]: which services a recipient's messages go to" },

  { "sieve", "script", CONF_STRING, CFG (sieve_script), .def_text = "%d/%n/.dovecot.sieve",
    .check = check_script_escapes, .doc = "per-user script, relative to mail_root; %u %n %d %h (empty: none)" },
  { "sieve", "before", CONF_LIST, CFG (sieve_before), .check = check_readable_files,
    .doc = "global scripts run first" },
  { "sieve", "after", CONF_LIST, CFG (sieve_after), .check = check_readable_files,
    .doc = "global scripts run last" },
  { "sieve", "max_script_size", CONF_SIZE, CFG (sieve_max_script_size), .def = MiB, .min = 64,
    .max = 64 * MiB, .doc = "bytes of a script" },
  { "sieve", "max_actions", CONF_UINT, CFG (sieve_max_actions), .def = 32, .min = 1, .max = 1000,
    .doc = "actions a run" },
  { "sieve", "max_redirects", CONF_UINT, CFG (sieve_max_redirects), .def = 4, .min = 0, .max = 100,
    .doc = "redirects a run" },
  { "sieve", "vacation_max_days", CONF_UINT, CFG (vacation_max_days), .def = 90, .min = 1, .max = 365,
    .doc = "cap on vacation :days and :seconds" },
  { "sieve", "vacation_min_period", CONF_UINT, CFG (vacation_min_period), .def = 86400, .min = 0,
    .max = 365 * 86400, .doc = "seconds at least between two replies to a sender (0: :seconds 0 answers every message)" },
  /* given in seconds (min, max), kept in milliseconds (def) */
  { "sieve", "max_run_time", CONF_UINT, CFG (sieve_max_run_time_ms), .def = 2000, .min = 1, .max = 600,
    .load = load_max_run_time, .doc = "seconds a run may take" },
  { "sieve", "submission", CONF_STRING, CFG (submission), .check = check_listen_spec,
    .doc = "inet:HOST:PORT SMTP for redirect and vacation" },
  { "sieve", "sendmail", CONF_STRING, CFG (sendmail), .check = check_one_sender,
    .doc = "or a sendmail-compatible command line" },
  { "sieve", "vacation_never_reply", CONF_LIST, CFG (vacation_never_reply), .load = load_lowercase_list,
    .doc = "sender globs never answered" },
  { "sieve", "redirect_sender", CONF_STRING, CFG (redirect_sender), .def_text = "sender",
    .check = check_redirect_sender,
    .doc = "envelope sender of redirects: sender, recipient, orig_recipient, user_email, postmaster, <>, "
           "<ADDRESS> or srs" },
  { "sieve", "srs_domain", CONF_STRING, CFG (srs_domain), .doc = "redirect_sender = srs: the domain of SRS addresses" },
  { "sieve", "srs_secret_file", CONF_STRING, CFG (srs_secret_file), .check = check_srs,
    .doc = "redirect_sender = srs: a file whose first line is the secret (postsrsd's)" },
  { "sieve", "dir", CONF_STRING, CFG (sieve_dir), .def_text = "%d/%n/sieve", .check = check_script_escapes,
    .doc = "personal scripts NAME.sieve (include, ManageSieve), relative to mail_root; %u %n %d %h" },
  { "sieve", "global_dir", CONF_STRING, CFG (sieve_global_dir),
    .doc = "site scripts NAME.sieve for include :global (unset: none)" },
  { "sieve", "special_use", CONF_LIST, CFG (sieve_special_use),
    .def_text = "Drafts=Drafts;Junk=Junk;Trash=Trash;Sent=Sent", .check = check_special_use,
    .doc = "USE=FOLDER;...: the folder of each special use for fileinto :specialuse" },
  /* managesieved (managesieve/), RFC 5804 */
  { "managesieve", "listen", CONF_LISTEN, CFG (managesieve_listen), .def_text = "inet:127.0.0.1:4190",
    .needs_restart = TRUE, .doc = "inet:HOST:PORT and unix:PATH listeners of managesieved, separated by ;" },
  { "managesieve", "tls_cert_file", CONF_STRING, CFG (managesieve_tls_cert_file),
    .doc = "STARTTLS certificate chain (PEM); unset: [server] tls_cert_file" },
  { "managesieve", "tls_key_file", CONF_STRING, CFG (managesieve_tls_key_file), .check = check_ms_tls_pair,
    .doc = "its private key" },
  { "managesieve", "plaintext_auth", CONF_BOOL, CFG (managesieve_plaintext),
    .doc = "allow PLAIN without TLS on every listener (always allowed on loopback and UNIX sockets)" },
  { "managesieve", "max_connections", CONF_UINT, CFG (managesieve_max_connections), .def = 50, .min = 1,
    .max = 10000, .doc = "connections at once; more get BYE" },
  { "managesieve", "idle_timeout", CONF_UINT, CFG (managesieve_idle_timeout), .def = 300, .min = 1,
    .max = 86400, .doc = "seconds a client may be idle, or not read what it is sent" },
  { "managesieve", "max_scripts", CONF_UINT, CFG (managesieve_max_scripts), .def = 20, .min = 1,
    .max = 10000, .doc = "scripts a user may keep" },
  { "managesieve", "max_auth_failures", CONF_UINT, CFG (managesieve_max_auth_failures), .def = 3, .min = 1,
    .max = 100, .doc = "failed logins a connection before BYE (each answered after a delay)" },
  /* [cluster]: per-recipient LMTP proxying (docs/cluster.md) */
  { "cluster", "node_name", CONF_STRING, CFG (cluster_node_name), .check = conf_check_empty_is_unset,
    .needs_restart = TRUE, .doc = "this node's name in [cluster] nodes and the nodes table (unset: not in a cluster)" },
  { "cluster", "nodes", CONF_STRING, CFG (cluster_nodes), .check = check_cluster_nodes,
    .doc = "NAME=inet:HOST:PORT;NAME=unix:PATH;...: the nodes and their LMTP listeners, or pgsql: the nodes "
           "table of [state]" },
  { "cluster", "proxy_timeout", CONF_UINT, CFG (cluster_proxy_timeout), .def = 60, .min = 1, .max = 3600,
    .doc = "seconds a backend has for a proxied message's data and replies (then 451 4.4.2)" },
  { "cluster", "proxy_command_timeout", CONF_UINT, CFG (cluster_proxy_command_timeout), .def = 10, .min = 1,
    .max = 600, .doc = "seconds a backend has to connect and answer a proxied RCPT (then 451 4.4.1)" },
  /* shared state and the nodes of a cluster (state/, docs/cluster.md) */
  { "state", "backend", CONF_CHOICE, CFG (state_backend), .def = LMTPD_STATE_FILE,
    .choices = &state_backend_choices, .needs_restart = TRUE,
    .doc = "duplicate journal, vacation log and duplicate ids: file (local) or pgsql (shared)" },
  { "state", "pgsql_conninfo", CONF_STRING, CFG (state_pgsql_conninfo), .check = conf_check_state_conninfo,
    .needs_restart = TRUE, .doc = "backend pgsql: libpq connection string (unset: [users] pgsql_conninfo)" },
  { "state", "pgsql_timeout", CONF_MS, CFG (state_pgsql_timeout_ms), .def = 3000, .needs_restart = TRUE,
    .doc = "a state query slower than this counts as PostgreSQL failing" },
  { "state", "on_error", CONF_CHOICE, CFG (state_on_error_local), .def = FALSE,
    .choices = &state_on_error_choices, .needs_restart = TRUE,
    .doc = "PostgreSQL failing: tempfail (451 4.3.0) or local (the local files, with a warning)" },
  { "state", "records_db", CONF_STRING, CFG (state_records_db), .def_text = "./var/lib/records.db",
    .needs_restart = TRUE,
    .doc = "backend file: the SQLite file of the quarantine index, traces and recorded calls" },
  { "cluster", "lmtp_address", CONF_STRING, CFG (cluster_lmtp_address), .needs_restart = TRUE,
    .check = check_lmtp_address,
    .doc = "HOST:PORT where the other nodes reach this one over LMTP" },
  { "cluster", "node_timeout", CONF_UINT, CFG (cluster_node_timeout), .def = 15, .min = 2, .max = 3600,
    .needs_restart = TRUE, .doc = "seconds without a heartbeat after which a node counts as down" },
};

const ConfTable conf_main_table = { main_rows, G_N_ELEMENTS (main_rows), &conf_ops_table };
