/* opes.c - the OPES configuration: the loaders of [opes] system and
 * bypass, the tables of [service NAME] and [rule NAME] with the loaders
 * their rows name, loading every such group of a file (the main table's
 * "service" and "rule" rows), and which rule a recipient matches.
 *
 * Each named group is loaded with the table engine (conf-table.c).  The
 * rows are in load order, which is the order problems are reported in.
 */
#include "config.h"

#include <string.h>

#include "conf-private.h"

#define SVC(field) G_STRUCT_OFFSET (LmtpdService, field)

void
conf_service_free (gpointer p)
{
  LmtpdService *sv = p;
  conf_free_values (&conf_service_table, sv);
  g_free (sv->name);
  g_free (sv);
}

void
conf_rule_free (gpointer p)
{
  LmtpdRule *r = p;
  g_free (r->name);
  g_strfreev (r->match);
  g_ptr_array_unref (r->regexes);
  g_ptr_array_unref (r->services);
  g_free (r);
}

/* ---- [opes] ------------------------------------------------------------- */

/* Given, or named after the host name just loaded. */
void
conf_load_opes_system (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;

  if (g_key_file_has_key (kf, group, s->key, NULL))
    conf_get_path (kf, group, s->key, &c->opes_system);
  else
    {
      g_free (c->opes_system);
      c->opes_system = g_strdup_printf ("urn:x-opes-lmtpd:system:%s", c->hostname);
    }
}

void
conf_load_bypass (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  g_auto (GStrv) bypass = g_key_file_get_string_list (kf, group, s->key, NULL, NULL);

  for (guint i = 0; bypass && bypass[i]; i++)
    {
      char *b = g_strstrip (bypass[i]);
      if (strcmp (b, "header") == 0)
        c->opes_bypass |= LMTPD_BYPASS_HEADER;
      else if (strcmp (b, "parameter") == 0)
        c->opes_bypass |= LMTPD_BYPASS_PARAMETER;
      else if (strcmp (b, "none") != 0 && *b)
        conf_problem (ld, group, s->key, "'%s' is not header, parameter or none", b);
    }
}

/* ---- [service NAME] ----------------------------------------------------- */

static const LmtpdService *
find_service (const LmtpdConfig *c, const char *name)
{
  for (guint i = 0; i < c->services->len; i++)
    if (strcmp (((LmtpdService *) c->services->pdata[i])->name, name) == 0)
      return c->services->pdata[i];
  return NULL;
}

/* An endpoint a callout can connect to, or a problem. */
static gboolean
server_is_valid (ConfLoader *ld, const char *group, const char *key, const char *spec)
{
  g_autofree char *why = NULL;
  LmtpdListen *l = conf_parse_listen (spec, &why);
  gboolean ok = l != NULL && !(l->kind == LMTPD_LISTEN_INET && l->port == 0);

  if (!ok)
    conf_problem (ld, group, key, "%s", why ? why : "port 0 is not a server");
  if (l)
    lmtpd_listen_free (l);
  return ok;
}

static void
load_servers (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdService *sv = base;
  g_auto (GStrv) servers = g_key_file_get_string_list (kf, group, s->key, NULL, NULL);
  GPtrArray *eps = g_ptr_array_new ();

  for (guint i = 0; servers && servers[i]; i++)
    {
      char *e = g_strstrip (servers[i]);
      if (*e && server_is_valid (ld, group, s->key, e))
        g_ptr_array_add (eps, g_strdup (e));
    }
  if (eps->len == 0 && servers == NULL)
    conf_problem (ld, group, NULL, "no servers = given");
  g_ptr_array_add (eps, NULL);
  g_strfreev (sv->servers);
  sv->servers = (char **) g_ptr_array_free (eps, FALSE);
}

static void
check_service_uri (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdService *sv = base;

  if (sv->uri == NULL)
    sv->uri = g_strdup_printf ("urn:x-opes-lmtpd:service:%s", sv->name);
}

/* By default what the stage (loaded before) can send. */
static void
load_parts (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdService *sv = base;
  g_auto (GStrv) p = NULL;

  sv->parts = conf_get_string (kf, group, s->key);
  if (sv->parts == NULL)
    {
      sv->parts = g_strdup (sv->rcpt_stage ? "envelope" : "envelope,message-header,message-body");
      return;
    }
  p = g_strsplit_set (sv->parts, ";, ", -1);
  for (guint i = 0; p[i]; i++)
    if (p[i][0] && strcmp (p[i], "envelope") && strcmp (p[i], "message-header") && strcmp (p[i], "message-body"))
      conf_problem (ld, group, s->key, "unknown part '%s' (envelope, message-header, message-body)", p[i]);
}

static void
check_is_file (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  const char *path = CONF_FIELD (base, s, char *);

  if (path && !g_file_test (path, G_FILE_TEST_IS_REGULAR))
    conf_problem (ld, group, s->key, "'%s' is not a file", path);
}

static const ConfChoices stage_choices = {
  FALSE, "rcpt or data", { { "rcpt", TRUE }, { "data", FALSE }, { NULL, 0 } },
};

static const ConfChoices on_failure_choices = {
  FALSE, "tempfail, accept or reject",
  { { "tempfail", LMTPD_FAIL_TEMPFAIL }, { "accept", LMTPD_FAIL_ACCEPT }, { "reject", LMTPD_FAIL_REJECT },
    { NULL, 0 } },
};

static const ConfChoices mode_choices = {
  FALSE, "normal or shadow", { { "normal", FALSE }, { "shadow", TRUE }, { NULL, 0 } },
};

static const ConfChoices quarantine_choices = {
  FALSE, "folder or store", { { "folder", FALSE }, { "store", TRUE }, { NULL, 0 } },
};

static const ConfSetting service_rows[] = {
  { "service", "servers", CONF_LIST, SVC (servers), .load = load_servers,
    .doc = "endpoints inet:HOST:PORT or unix:PATH, primary first" },
  { "service", "uri", CONF_STRING, SVC (uri), .check = check_service_uri,
    .doc = "the service URI in traces and bypass" },
  { "service", "stage", CONF_CHOICE, SVC (rcpt_stage), .def = FALSE, .choices = &stage_choices,
    .doc = "rcpt (metadata only) or data" },
  { "service", "parts", CONF_STRING, SVC (parts), .load = load_parts,
    .doc = "what is sent: envelope, message-header, message-body" },
  { "service", "on_failure", CONF_CHOICE, SVC (on_failure), .def = LMTPD_FAIL_TEMPFAIL,
    .choices = &on_failure_choices, .doc = "when the service fails: tempfail, accept or reject" },
  { "service", "connect_timeout", CONF_MS, SVC (connect_timeout_ms), .def = 2000, .doc = "to connect" },
  { "service", "response_timeout", CONF_MS, SVC (response_timeout_ms), .def = 20000,
    .doc = "between messages of a response" },
  { "service", "timeout", CONF_MS, SVC (timeout_ms), .def = 30000, .doc = "for the whole call" },
  { "service", "max_connections", CONF_UINT, SVC (max_connections), .def = 16, .min = 1, .max = 1024,
    .doc = "connections to the service at once" },
  { "service", "bypassable", CONF_BOOL, SVC (bypassable), .def = TRUE, .doc = "a bypass request may skip it" },
  { "service", "tls", CONF_BOOL, SVC (tls), .def = FALSE, .doc = "connect with TLS" },
  { "service", "tls_ca_file", CONF_STRING, SVC (tls_ca_file), .check = check_is_file,
    .doc = "CA certificates to verify the service against" },
  { "service", "tls_cert_file", CONF_STRING, SVC (tls_cert_file), .check = check_is_file,
    .doc = "client certificate" },
  { "service", "tls_key_file", CONF_STRING, SVC (tls_key_file), .doc = "its private key" },
  { "service", "tls_server_name", CONF_STRING, SVC (tls_server_name), .doc = "name to verify and send (SNI)" },
  { "service", "mode", CONF_CHOICE, SVC (shadow), .def = FALSE, .choices = &mode_choices,
    .doc = "normal, or shadow: called, its verdict recorded and counted, never applied" },
  { "service", "quarantine", CONF_CHOICE, SVC (quarantine_store), .def = FALSE, .choices = &quarantine_choices,
    .doc = "where its quarantine verdict goes: folder (of the mailbox) or store ([quarantine])" },
};

const ConfTable conf_service_table = { service_rows, G_N_ELEMENTS (service_rows) };

static void
load_service (ConfLoader *ld, GKeyFile *kf, LmtpdConfig *c, const char *group, const char *name)
{
  LmtpdService *sv = g_new0 (LmtpdService, 1);

  sv->name = g_strdup (name);
  conf_apply_defaults (&conf_service_table, sv);
  conf_load_group (ld, kf, &conf_service_table, group, sv);
  if (find_service (c, sv->name))
    conf_problem (ld, group, NULL, "service defined twice");
  g_ptr_array_add (c->services, sv);
}

/* ---- [rule NAME] -------------------------------------------------------- */

/* What the "rule" rows load into: the rule, and the services it names. */
typedef struct {
  LmtpdRule *rule;
  const LmtpdConfig *config;
} RuleLoad;

static void
load_match (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdRule *r = ((RuleLoad *) base)->rule;
  g_auto (GStrv) match = g_key_file_get_string_list (kf, group, s->key, NULL, NULL);
  GPtrArray *m = g_ptr_array_new ();

  for (guint i = 0; match && match[i]; i++)
    {
      char *e = g_strstrip (match[i]);
      gsize n = strlen (e);
      if (n > 2 && e[0] == '/' && e[n - 1] == '/')
        {
          g_autoptr (GError) err = NULL;
          g_autofree char *pat = g_strndup (e + 1, n - 2);
          GRegex *re = g_regex_new (pat, G_REGEX_CASELESS, 0, &err);
          if (re == NULL)
            conf_problem (ld, group, s->key, "bad regular expression: %s", err->message);
          else
            g_ptr_array_add (r->regexes, re);
        }
      else if (n)
        g_ptr_array_add (m, g_ascii_strdown (e, -1));
    }
  g_ptr_array_add (m, NULL);
  r->match = (char **) g_ptr_array_free (m, FALSE);
  if (match == NULL)
    conf_problem (ld, group, NULL, "no match = given");
}

static void
load_rule_services (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdRule *r = ((RuleLoad *) base)->rule;
  const LmtpdConfig *c = ((RuleLoad *) base)->config;
  g_auto (GStrv) names = g_key_file_get_string_list (kf, group, s->key, NULL, NULL);

  for (guint i = 0; names && names[i]; i++)
    {
      /* "a;b", "a, b" and "a b" all list two services */
      g_auto (GStrv) parts = g_strsplit_set (names[i], ", \t", -1);
      for (guint j = 0; parts[j]; j++)
        {
          const LmtpdService *sv;
          if (parts[j][0] == '\0')
            continue;
          sv = find_service (c, parts[j]);
          if (sv == NULL)
            conf_problem (ld, group, s->key, "no [service %s]", parts[j]);
          else
            g_ptr_array_add (r->services, (gpointer) sv);
        }
    }
}

static const ConfSetting rule_rows[] = {
  { "rule", "match", CONF_NONE, 0, .load = load_match,
    .doc = "user@domain, @domain, globs, /regex/ or *" },
  { "rule", "services", CONF_NONE, 0, .load = load_rule_services, .doc = "the services to run, in order" },
};

const ConfTable conf_rule_table = { rule_rows, G_N_ELEMENTS (rule_rows) };

static void
load_rule (ConfLoader *ld, GKeyFile *kf, LmtpdConfig *c, const char *group, const char *name)
{
  LmtpdRule *r = g_new0 (LmtpdRule, 1);
  RuleLoad rl = { r, c };

  r->name = g_strdup (name);
  r->regexes = g_ptr_array_new_with_free_func ((GDestroyNotify) g_regex_unref);
  r->services = g_ptr_array_new ();
  conf_load_group (ld, kf, &conf_rule_table, group, &rl);
  g_ptr_array_add (c->rules, r);
}

/* ---- every [service NAME], [rule NAME] of a file ------------------------ */

typedef void (*NamedGroupFunc) (ConfLoader *ld, GKeyFile *kf, LmtpdConfig *c, const char *group, const char *name);

/* Every [@prefix NAME] of the file, in file order. */
static void
load_named_groups (ConfLoader *ld, GKeyFile *kf, LmtpdConfig *c, const char *prefix, NamedGroupFunc load)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);

  for (guint i = 0; groups[i]; i++)
    {
      const char *name = conf_named_group_name (groups[i], prefix);
      if (name)
        load (ld, kf, c, groups[i], name);
    }
}

/* The main table's "service" row: @group is "service". */
void
conf_load_services (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  load_named_groups (ld, kf, base, group, load_service);
}

void
conf_load_rules (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  load_named_groups (ld, kf, base, group, load_rule);
}

/* ---- matching ----------------------------------------------------------- */

static gboolean
rule_matches (const LmtpdRule *r, const char *address, const char *at)
{
  for (guint k = 0; r->match[k]; k++)
    {
      const char *m = r->match[k];
      if (strcmp (m, "*") == 0 || strcmp (m, address) == 0 || (m[0] == '@' && at && strcmp (m, at) == 0)
          || (strpbrk (m, "*?") && g_pattern_match_simple (m, address)))
        return TRUE;
    }
  for (guint k = 0; k < r->regexes->len; k++)
    if (g_regex_match (r->regexes->pdata[k], address, 0, NULL))
      return TRUE;
  return FALSE;
}

const LmtpdRule *
lmtpd_config_match_rule (const LmtpdConfig *c, const char *address)
{
  const char *at = strrchr (address, '@');

  for (guint i = 0; i < c->rules->len; i++)
    if (rule_matches (c->rules->pdata[i], address, at))
      return c->rules->pdata[i];
  return NULL;
}
