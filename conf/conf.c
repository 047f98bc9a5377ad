/* conf.c - load and validate the lmtpd configuration (GKeyFile format).
 *
 * Every problem is collected, not just the first, and each is reported as
 * "file:line: [group] key: problem" so that --check-config tells the
 * administrator everything in one run.  GKeyFile does not expose line
 * numbers, so a small pre-scan maps group/key to the line it sits on.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <gio/gio.h>

#include "lmtpd-conf.h"

G_DEFINE_QUARK (lmtpd-conf-error-quark, lmtpd_conf_error)

typedef struct {
  const char *file;
  GHashTable *lines; /* "group\nkey" -> line number */
  GString *errors;
} Loader;

typedef struct {
  const char *group;
  const char *keys[20];
} KnownGroup;

static const KnownGroup known_groups[] = {
  { "server", { "listen", "socket_mode", "socket_owner", "hostname", "spool_dir",
                "max_sessions", "idle_timeout", "shutdown_timeout", "user", "delivery_threads",
                "max_memory", "xforward_hosts", "metrics_listen", "log_format",
                "tls_cert_file", "tls_key_file", "tls_client_ca_file", NULL } },
  { "limits", { "max_line_length", "max_data_line_length", "max_message_size",
                "max_recipients", "max_errors", "min_data_rate", NULL } },
  { "delivery", { "mail_root", "mailbox", "fsync", "create_folders", "recipient_delimiter",
                  "detail_folder", "quota_full_tempfail", "single_instance", "duplicate_window",
                  "duplicate_db", "mbox_quoting", "mbox_lock_timeout", "delivery_timeout", NULL } },
  { "users", { "map", "domains", "postmaster", "rewrite", NULL } },
  { "mailboxes", { NULL } }, /* any domain as key */
  { "opes", { "system", "bypass", NULL } },
  { "service", { "servers", "uri", "stage", "parts", "on_failure", "connect_timeout",
                 "response_timeout", "timeout", "max_connections", "bypassable", "tls", "tls_ca_file",
                 "tls_cert_file", "tls_key_file", "tls_server_name", NULL } },
  { "rule", { "match", "services", NULL } },
  { "sieve", { "script", "before", "after", "max_script_size", "max_actions", "max_redirects",
               "max_run_time", "submission", "sendmail", "vacation_max_days",
               "vacation_never_reply", NULL } },
};

void
lmtpd_listen_free (LmtpdListen *l)
{
  g_free (l->host);
  g_free (l->path);
  g_free (l);
}

static void
user_free (gpointer p)
{
  LmtpdUser *u = p;
  g_free (u->address);
  g_free (u->mailbox);
  g_free (u);
}

static void
service_free (gpointer p)
{
  LmtpdService *sv = p;
  g_free (sv->name);
  g_free (sv->uri);
  g_strfreev (sv->servers);
  g_free (sv->parts);
  g_free (sv->tls_ca_file);
  g_free (sv->tls_cert_file);
  g_free (sv->tls_key_file);
  g_free (sv->tls_server_name);
  g_free (sv);
}

static void
rule_free (gpointer p)
{
  LmtpdRule *r = p;
  g_free (r->name);
  g_strfreev (r->match);
  g_ptr_array_unref (r->regexes);
  g_ptr_array_unref (r->services);
  g_free (r);
}

static void
rewrite_free (gpointer p)
{
  LmtpdRewrite *r = p;
  g_free (r->from);
  g_free (r->to);
  g_clear_pointer (&r->regex, g_regex_unref);
  g_free (r);
}

static LmtpdConfig *
config_alloc (void)
{
  LmtpdConfig *c = g_new0 (LmtpdConfig, 1);
  g_atomic_ref_count_init (&c->ref_count);
  return c;
}

LmtpdConfig *
lmtpd_config_ref (LmtpdConfig *config)
{
  g_return_val_if_fail (config != NULL, NULL);
  g_atomic_ref_count_inc (&config->ref_count);
  return config;
}

void
lmtpd_config_unref (LmtpdConfig *c)
{
  if (c == NULL || !g_atomic_ref_count_dec (&c->ref_count))
    return;
  g_clear_pointer (&c->listen, g_ptr_array_unref);
  g_free (c->socket_owner);
  g_free (c->hostname);
  g_free (c->spool_dir);
  g_free (c->mail_root);
  g_free (c->mailbox_template);
  g_clear_pointer (&c->domain_mailbox, g_hash_table_unref);
  g_free (c->recipient_delimiter);
  g_free (c->duplicate_db);
  g_free (c->user);
  g_free (c->rewrite_map);
  g_clear_pointer (&c->rewrites, g_ptr_array_unref);
  g_free (c->opes_system);
  g_clear_pointer (&c->rules, g_ptr_array_unref);
  g_clear_pointer (&c->services, g_ptr_array_unref);
  g_free (c->users_map);
  g_clear_pointer (&c->users, g_hash_table_unref);
  g_strfreev (c->domains);
  g_free (c->metrics_listen);
  g_free (c->tls_cert_file);
  g_free (c->tls_key_file);
  g_free (c->tls_client_ca_file);
  if (c->xforward_hosts)
    g_ptr_array_unref (c->xforward_hosts);
  g_free (c->postmaster);
  g_free (c->sieve_script);
  g_strfreev (c->sieve_before);
  g_strfreev (c->sieve_after);
  g_free (c->submission);
  g_free (c->sendmail);
  g_strfreev (c->vacation_never_reply);
  g_free (c->source);
  g_free (c);
}

LmtpdConfig *
lmtpd_config_new_default (void)
{
  LmtpdConfig *c = config_alloc ();
  LmtpdListen *l = g_new0 (LmtpdListen, 1);

  c->listen = g_ptr_array_new_with_free_func ((GDestroyNotify) lmtpd_listen_free);
  l->kind = LMTPD_LISTEN_INET;
  l->host = g_strdup ("127.0.0.1");
  l->port = 2424;
  g_ptr_array_add (c->listen, l);
  c->socket_mode = 0660;
  c->hostname = g_strdup (g_get_host_name ());
  c->spool_dir = g_strdup ("./var/spool");
  c->max_sessions = 100;
  c->idle_timeout = 300;
  c->shutdown_timeout = 30;

  c->max_line_length = 2048;
  c->max_data_line_length = 1024 * 1024;
  c->max_message_size = 50 * 1024 * 1024 + 1024 * 1024;
  c->max_recipients = 1000;
  c->max_errors = 20;
  c->min_data_rate = 500;
  c->max_memory = G_GUINT64_CONSTANT (1) << 30;

  c->mail_root = g_strdup ("./var/mail");
  c->mailbox_template = g_strdup ("%d/%n/Maildir");
  c->domain_mailbox = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  c->fsync = TRUE;
  c->create_folders = TRUE;
  c->recipient_delimiter = g_strdup ("+");
  c->detail_folder = LMTPD_DETAIL_NO;
  c->single_instance = TRUE;
  c->duplicate_window = 4 * 3600;
  c->duplicate_db = g_strdup ("./var/lib/duplicates");
  c->mbox_lock_timeout = 30;
  c->delivery_timeout = 120;
  c->rewrites = g_ptr_array_new_with_free_func (rewrite_free);
  c->delivery_threads = 64;
  c->opes_system = g_strdup_printf ("urn:x-opes-lmtpd:system:%s", c->hostname);
  c->services = g_ptr_array_new_with_free_func (service_free);
  c->rules = g_ptr_array_new_with_free_func (rule_free);
  c->sieve_script = g_strdup ("%d/%n/.dovecot.sieve");
  c->sieve_before = g_new0 (char *, 1);
  c->sieve_after = g_new0 (char *, 1);
  c->sieve_max_script_size = 1024 * 1024;
  c->sieve_max_actions = 32;
  c->sieve_max_redirects = 4;
  c->sieve_max_run_time_ms = 2000;
  c->vacation_max_days = 90;
  c->vacation_never_reply = g_new0 (char *, 1);

  c->users = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, user_free);
  c->domains = g_strsplit ("*", ";", -1);
  return c;
}

/* ---- line numbers ------------------------------------------------------ */

static GHashTable *
scan_lines (const char *text)
{
  GHashTable *lines = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_auto (GStrv) v = g_strsplit (text, "\n", -1);
  g_autofree char *group = g_strdup ("");

  for (guint i = 0; v[i] != NULL; i++)
    {
      char *s = g_strstrip (v[i]);
      if (*s == '[')
        {
          char *end = strchr (s, ']');
          g_free (group);
          group = g_strndup (s + 1, end ? (gsize) (end - s - 1) : strlen (s + 1));
          /* "group\n" (no key): where the group first starts */
          {
            char *k = g_strdup_printf ("%s\n", group);
            if (!g_hash_table_contains (lines, k))
              g_hash_table_insert (lines, k, GUINT_TO_POINTER (i + 1));
            else
              g_free (k);
          }
        }
      else if (*s != '#' && *s != '\0' && strchr (s, '='))
        {
          g_autofree char *key = g_strndup (s, strchr (s, '=') - s);
          g_strstrip (key);
          g_hash_table_insert (lines, g_strdup_printf ("%s\n%s", group, key),
                               GUINT_TO_POINTER (i + 1));
        }
    }
  return lines;
}

/* The first line GKeyFile would refuse (not blank, a comment, a group or
 * a key=value pair), 1-based, or 0: its own error names no line. */
guint
lmtpd_keyfile_bad_line (const char *text)
{
  g_auto (GStrv) v = g_strsplit (text, "\n", -1);

  for (guint i = 0; v[i] != NULL; i++)
    {
      const char *s = v[i];
      while (g_ascii_isspace (*s))
        s++;
      if (*s == '\0' || *s == '#')
        continue;
      if (*s == '[' ? strchr (s, ']') == NULL : (strchr (s, '=') == NULL || *s == '='))
        return i + 1;
    }
  return 0;
}

guint
lmtpd_keyfile_group_line (const char *text, const char *group)
{
  g_autoptr (GHashTable) lines = scan_lines (text);
  g_autofree char *k = g_strdup_printf ("%s\n", group);

  return GPOINTER_TO_UINT (g_hash_table_lookup (lines, k));
}

static void G_GNUC_PRINTF (4, 5)
problem (Loader *ld, const char *group, const char *key, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  guint line = 0;

  if (group)
    {
      g_autofree char *k = g_strdup_printf ("%s\n%s", group, key ? key : "");
      line = GPOINTER_TO_UINT (g_hash_table_lookup (ld->lines, k));
    }
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (ld->errors->len)
    g_string_append_c (ld->errors, '\n');
  if (line)
    g_string_append_printf (ld->errors, "%s:%u: ", ld->file, line);
  else
    g_string_append_printf (ld->errors, "%s: ", ld->file);
  if (group && key)
    g_string_append_printf (ld->errors, "[%s] %s: ", group, key);
  else if (group)
    g_string_append_printf (ld->errors, "[%s]: ", group);
  g_string_append (ld->errors, msg);
}

/* ---- typed getters ------------------------------------------------------ */

static char *
get_string (GKeyFile *kf, const char *group, const char *key)
{
  char *v = g_key_file_get_string (kf, group, key, NULL);
  if (v)
    g_strstrip (v);
  return v;
}

/* Number with an optional unit suffix from @units ("k", "M", ... or "s", "m").
 * Returns FALSE if absent (value untouched); records a problem if invalid. */
static gboolean
get_number (Loader *ld, GKeyFile *kf, const char *group, const char *key,
            gboolean size_units, guint64 min, guint64 max, guint64 *value)
{
  g_autofree char *s = get_string (kf, group, key);
  char *end = NULL;
  guint64 v, mult = 1;

  if (s == NULL)
    return FALSE;
  errno = 0;
  if (!g_ascii_isdigit (*s) || (v = g_ascii_strtoull (s, &end, 10), errno != 0))
    {
      problem (ld, group, key, "'%s' is not a number", s);
      return FALSE;
    }
  while (*end == ' ')
    end++;
  if (*end && size_units)
    {
      switch (g_ascii_tolower (*end))
        {
        case 'k': mult = 1024; break;
        case 'm': mult = 1024 * 1024; break;
        case 'g': mult = 1024 * 1024 * 1024; break;
        default: mult = 0; break;
        }
      if (mult && (end[1] == '\0' || (g_ascii_tolower (end[1]) == 'b' && end[2] == '\0')))
        end = end + strlen (end);
    }
  else if (*end && !size_units)
    {
      switch (*end)
        {
        case 's': mult = 1; break;
        case 'm': mult = 60; break;
        case 'h': mult = 3600; break;
        default: mult = 0; break;
        }
      if (mult && end[1] == '\0')
        end++;
    }
  if (*end != '\0' || mult == 0)
    {
      problem (ld, group, key, "'%s' has an unknown unit (use %s)", s,
               size_units ? "k, M or G" : "s, m or h");
      return FALSE;
    }
  if (v > max / mult || v * mult < min || v * mult > max)
    {
      problem (ld, group, key, "'%s' is out of range (%" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT ")",
               s, min, max);
      return FALSE;
    }
  *value = v * mult;
  return TRUE;
}

static void
get_uint (Loader *ld, GKeyFile *kf, const char *group, const char *key,
          gboolean size_units, guint64 min, guint64 max, guint *out)
{
  guint64 v;
  if (get_number (ld, kf, group, key, size_units, min, max, &v))
    *out = (guint) v;
}

static void
get_path (GKeyFile *kf, const char *group, const char *key, char **out)
{
  char *s = get_string (kf, group, key);
  if (s == NULL)
    return;
  g_free (*out);
  *out = s;
}

static gboolean
parse_size (const char *s, guint64 *out)
{
  char *end = NULL;
  guint64 v, mult = 1;

  if (s == NULL || !g_ascii_isdigit (*s))
    return FALSE;
  errno = 0;
  v = g_ascii_strtoull (s, &end, 10);
  if (errno)
    return FALSE;
  switch (*end)
    {
    case '\0': break;
    case 'k': case 'K': mult = 1024; end++; break;
    case 'm': case 'M': mult = 1024 * 1024; end++; break;
    case 'g': case 'G': mult = 1024 * 1024 * 1024; end++; break;
    default: return FALSE;
    }
  if (*end != '\0' || v > G_MAXUINT64 / mult)
    return FALSE;
  *out = v * mult;
  return TRUE;
}

/* ---- listeners ---------------------------------------------------------- */

static LmtpdListen *
parse_listen (const char *spec, char **why);

LmtpdListen *
lmtpd_listen_parse (const char *spec, GError **error)
{
  g_autofree char *why = NULL;
  LmtpdListen *l = parse_listen (spec, &why);
  if (l == NULL)
    g_set_error_literal (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, why);
  return l;
}

static LmtpdListen *
parse_listen (const char *spec, char **why)
{
  LmtpdListen *l = g_new0 (LmtpdListen, 1);

  if (g_str_has_prefix (spec, "unix:") && spec[5] != '\0')
    {
      l->kind = LMTPD_LISTEN_UNIX;
      l->path = g_strdup (spec + 5);
      if (strlen (l->path) >= 100)
        {
          *why = g_strdup_printf ("socket path '%s' is longer than 99 bytes", l->path);
          lmtpd_listen_free (l);
          return NULL;
        }
      return l;
    }
  if (g_str_has_prefix (spec, "inet:"))
    {
      const char *hp = spec + 5;
      const char *colon = strrchr (hp, ':');
      char *end = NULL;
      guint64 port;

      if (colon && colon != hp)
        {
          port = g_ascii_strtoull (colon + 1, &end, 10);
          if (end && *end == '\0' && colon[1] && port < 65536)
            {
              l->kind = LMTPD_LISTEN_INET;
              l->host = g_strndup (hp, colon - hp);
              if (l->host[0] == '[' && g_str_has_suffix (l->host, "]"))
                {
                  char *h = g_strndup (l->host + 1, strlen (l->host) - 2);
                  g_free (l->host);
                  l->host = h;
                }
              l->port = (guint16) port;
              return l;
            }
        }
    }
  *why = g_strdup_printf ("'%s' is not inet:HOST:PORT or unix:PATH", spec);
  lmtpd_listen_free (l);
  return NULL;
}

char *
lmtpd_listen_to_string (const LmtpdListen *l)
{
  if (l->kind == LMTPD_LISTEN_UNIX)
    return g_strdup_printf ("unix:%s", l->path);
  if (strchr (l->host, ':'))
    return g_strdup_printf ("inet:[%s]:%u", l->host, l->port);
  return g_strdup_printf ("inet:%s:%u", l->host, l->port);
}

/* ---- users map ---------------------------------------------------------- */

static gboolean
address_is_sane (const char *a)
{
  const char *at = strchr (a, '@');
  if (at == NULL || at == a || at[1] == '\0' || strchr (at + 1, '@'))
    return FALSE;
  for (const char *p = a; *p; p++)
    if ((guchar) *p < 0x21 || *p == 0x7f || *p == '/')
      return FALSE;
  return strstr (a, "..") == NULL;
}

static gboolean parse_size (const char *s, guint64 *out);

static void G_GNUC_PRINTF (4, 5)
file_problem (Loader *ld, const char *file, guint line, const char *fmt, ...)
{
  va_list ap;

  if (ld->errors->len)
    g_string_append_c (ld->errors, '\n');
  g_string_append_printf (ld->errors, "%s:%u: ", file, line);
  va_start (ap, fmt);
  g_string_append_vprintf (ld->errors, fmt, ap);
  va_end (ap);
}

/* Lines of a map file without comments and blank lines, split on blanks. */
static GPtrArray *
read_map (Loader *ld, const char *group, const char *key, const char *path)
{
  g_autofree char *text = NULL;
  g_autoptr (GError) err = NULL;
  g_auto (GStrv) lines = NULL;
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);

  if (!g_file_get_contents (path, &text, NULL, &err))
    {
      problem (ld, group, key, "%s", err->message);
      return out;
    }
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      char *s = g_strstrip (lines[i]);
      char **f;
      if (*s == '\0' || *s == '#')
        {
          g_ptr_array_add (out, NULL);
          continue;
        }
      f = g_regex_split_simple ("[ \t]+", s, 0, 0);
      g_ptr_array_add (out, f);
    }
  return out;
}

/* The user's mailbox, or else its domain's template, is an mbox. */
static gboolean
user_is_mbox (const LmtpdConfig *c, const LmtpdUser *u)
{
  const char *at = strrchr (u->address, '@');
  const char *m = u->mailbox ? u->mailbox : lmtpd_config_mailbox_template (c, at ? at + 1 : NULL);
  return g_str_has_prefix (m, "mbox:");
}

/* One field after the address, in any order: a bare mailbox (once),
 * mailbox=, quota= or quota_messages=.  The error says what is wrong with
 * the very token, not what was expected in its place. */
static gboolean
user_field (Loader *ld, const char *map, guint line, LmtpdUser *u, const char *field)
{
  const char *eq = strchr (field, '=');
  gsize klen = eq ? (gsize) (eq - field) : 0;

  gboolean setting = eq && ((klen == 7 && strncmp (field, "mailbox", 7) == 0)
                            || (klen == 5 && strncmp (field, "quota", 5) == 0)
                            || (klen == 14 && strncmp (field, "quota_messages", 14) == 0));

  if (!setting)
    {
      /* "maildir:/x=y" is a mailbox too: only known keys are settings */
      if (u->mailbox)
        {
          file_problem (ld, map, line, "'%s': a second mailbox (the first is '%s')", field, u->mailbox);
          return FALSE;
        }
      if (eq && !strchr (field, ':') && !strchr (field, '/'))
        {
          file_problem (ld, map, line, "'%.*s=': unknown setting (mailbox=, quota= or quota_messages=)",
                        (int) klen, field);
          return FALSE;
        }
      u->mailbox = g_strdup (field);
      return TRUE;
    }
  if (eq[1] == '\0')
    file_problem (ld, map, line, "'%s': no value", field);
  else if (strncmp (field, "mailbox=", 8) == 0)
    {
      g_free (u->mailbox);
      u->mailbox = g_strdup (eq + 1);
      return TRUE;
    }
  else if (parse_size (eq + 1, strncmp (field, "quota=", 6) == 0 ? &u->quota_bytes : &u->quota_messages))
    return TRUE;
  else
    file_problem (ld, map, line, "'%s': '%s' is not a size (e.g. 500M, 2G, 10000)", field, eq + 1);
  return FALSE;
}

static void
load_users_map (Loader *ld, LmtpdConfig *c)
{
  g_autoptr (GPtrArray) lines = read_map (ld, "users", "map", c->users_map);

  for (guint i = 0; i < lines->len; i++)
    {
      char **f = lines->pdata[i];
      LmtpdUser *u;
      gboolean ok = TRUE;

      if (f == NULL)
        continue;
      if (!address_is_sane (f[0]))
        {
          file_problem (ld, c->users_map, i + 1, "'%s' is not user@domain", f[0]);
          continue;
        }
      u = g_new0 (LmtpdUser, 1);
      u->address = g_ascii_strdown (f[0], -1);
      for (guint k = 1; f[k] && ok; k++)
        ok = user_field (ld, c->users_map, i + 1, u, f[k]);
      if (ok && u->mailbox && strstr (u->mailbox, ".."))
        {
          file_problem (ld, c->users_map, i + 1, "mailbox '%s' may not contain '..'", u->mailbox);
          ok = FALSE;
        }
      if (ok && u->quota_messages && user_is_mbox (c, u))
        {
          /* counting the messages of an mbox means reading all of it on
           * every delivery: refused rather than silently ignored */
          file_problem (ld, c->users_map, i + 1,
                        "quota_messages= is not supported for an mbox mailbox (use quota= for bytes)");
          ok = FALSE;
        }
      if (!ok)
        {
          user_free (u);
          continue;
        }
      g_hash_table_replace (c->users, u->address, u);
    }
}

static void
load_rewrite_map (Loader *ld, LmtpdConfig *c)
{
  g_autoptr (GPtrArray) lines = read_map (ld, "users", "rewrite", c->rewrite_map);
  g_autoptr (GPtrArray) exact = g_ptr_array_new (), domain = g_ptr_array_new (), regex = g_ptr_array_new ();

  for (guint i = 0; i < lines->len; i++)
    {
      char **f = lines->pdata[i];
      LmtpdRewrite *r;
      gsize len;

      if (f == NULL)
        continue;
      if (g_strv_length (f) != 2)
        {
          file_problem (ld, c->rewrite_map, i + 1, "expected 'from to', got %u fields", g_strv_length (f));
          continue;
        }
      len = strlen (f[0]);
      r = g_new0 (LmtpdRewrite, 1);
      r->to = g_strdup (f[1]);
      if (len > 2 && f[0][0] == '/' && f[0][len - 1] == '/')
        {
          g_autoptr (GError) err = NULL;
          g_autofree char *pat = g_strndup (f[0] + 1, len - 2);
          r->kind = LMTPD_REWRITE_REGEX;
          r->from = g_strdup (f[0]);
          r->regex = g_regex_new (pat, G_REGEX_CASELESS, 0, &err);
          if (r->regex == NULL)
            {
              file_problem (ld, c->rewrite_map, i + 1, "bad regular expression: %s", err->message);
              rewrite_free (r);
              continue;
            }
          g_ptr_array_add (regex, r);
          continue;
        }
      r->from = g_ascii_strdown (f[0], -1);
      if (r->from[0] == '@' && r->from[1] && !strchr (r->from + 1, '@'))
        {
          r->kind = LMTPD_REWRITE_DOMAIN;
          g_ptr_array_add (domain, r);
        }
      else if (address_is_sane (r->from))
        {
          r->kind = LMTPD_REWRITE_EXACT;
          g_ptr_array_add (exact, r);
        }
      else
        {
          file_problem (ld, c->rewrite_map, i + 1, "'%s' is not user@domain, @domain or /regex/", f[0]);
          rewrite_free (r);
          continue;
        }
      if (r->to[0] == '@' ? strchr (r->to + 1, '@') != NULL || !r->to[1] : !address_is_sane (r->to))
        {
          file_problem (ld, c->rewrite_map, i + 1, "'%s' is not user@domain or @domain", r->to);
          g_ptr_array_remove_index (r->kind == LMTPD_REWRITE_DOMAIN ? domain : exact,
                                    (r->kind == LMTPD_REWRITE_DOMAIN ? domain : exact)->len - 1);
          rewrite_free (r);
        }
    }
  g_ptr_array_extend_and_steal (c->rewrites, g_steal_pointer (&exact));
  g_ptr_array_extend_and_steal (c->rewrites, g_steal_pointer (&domain));
  g_ptr_array_extend_and_steal (c->rewrites, g_steal_pointer (&regex));
}

char *
lmtpd_config_rewrite (const LmtpdConfig *c, const char *address)
{
  const char *at = strrchr (address, '@');

  for (guint i = 0; i < c->rewrites->len; i++)
    {
      const LmtpdRewrite *r = c->rewrites->pdata[i];
      switch (r->kind)
        {
        case LMTPD_REWRITE_EXACT:
          if (strcmp (r->from, address) == 0)
            return r->to[0] == '@' && at ? g_strdup_printf ("%.*s%s", (int) (at - address), address, r->to)
                                         : g_ascii_strdown (r->to, -1);
          break;
        case LMTPD_REWRITE_DOMAIN:
          if (at && strcmp (r->from, at) == 0)
            return r->to[0] == '@' ? g_strdup_printf ("%.*s%s", (int) (at - address), address, r->to)
                                   : g_ascii_strdown (r->to, -1);
          break;
        case LMTPD_REWRITE_REGEX:
          if (g_regex_match (r->regex, address, 0, NULL))
            {
              char *out = g_regex_replace (r->regex, address, -1, 0, r->to, 0, NULL);
              if (out)
                {
                  char *lower = g_ascii_strdown (out, -1);
                  g_free (out);
                  return lower;
                }
            }
          break;
        }
    }
  return NULL;
}

const LmtpdUser *
lmtpd_config_get_user (const LmtpdConfig *c, const char *address)
{
  return g_hash_table_lookup (c->users, address);
}

const char *
lmtpd_config_mailbox_template (const LmtpdConfig *c, const char *domain)
{
  const char *t = domain ? g_hash_table_lookup (c->domain_mailbox, domain) : NULL;
  return t ? t : c->mailbox_template;
}

gboolean
lmtpd_config_lookup_user (const LmtpdConfig *c, const char *address, const char **out_mailbox)
{
  LmtpdUser *u = g_hash_table_lookup (c->users, address);
  const char *at;

  if (out_mailbox)
    *out_mailbox = u ? u->mailbox : NULL;
  if (u)
    return TRUE;
  at = strrchr (address, '@');
  if (at == NULL || c->domains == NULL)
    return FALSE;
  for (guint i = 0; c->domains[i]; i++)
    if (strcmp (c->domains[i], "*") == 0 || g_ascii_strcasecmp (c->domains[i], at + 1) == 0)
      return TRUE;
  return FALSE;
}

/* ---- the whole file ----------------------------------------------------- */

static void
check_known (Loader *ld, GKeyFile *kf)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);

  for (guint i = 0; groups[i]; i++)
    {
      const KnownGroup *kg = NULL;
      g_auto (GStrv) keys = NULL;

      for (guint j = 0; j < G_N_ELEMENTS (known_groups); j++)
        {
          gsize n = strlen (known_groups[j].group);
          /* "[service NAME]" and "[rule NAME]" */
          if (strcmp (known_groups[j].group, groups[i]) == 0
              || ((strcmp (known_groups[j].group, "service") == 0 || strcmp (known_groups[j].group, "rule") == 0)
                  && strncmp (groups[i], known_groups[j].group, n) == 0 && groups[i][n] == ' '
                  && groups[i][n + 1] != '\0'))
            kg = &known_groups[j];
        }
      if (kg == NULL)
        {
          problem (ld, groups[i], NULL, "unknown group");
          continue;
        }
      if (kg->keys[0] == NULL)
        continue; /* free-form keys */
      keys = g_key_file_get_keys (kf, groups[i], NULL, NULL);
      for (guint k = 0; keys && keys[k]; k++)
        {
          gboolean found = FALSE;
          for (guint j = 0; kg->keys[j]; j++)
            found |= strcmp (kg->keys[j], keys[k]) == 0;
          if (!found)
            problem (ld, groups[i], keys[k], "unknown key");
        }
    }
}

/* [server] xforward_hosts: CIDR blocks or addresses, and "local" for the
 * UNIX sockets, separated by ';', ',' or blanks. */
static void
load_xforward_hosts (Loader *ld, GKeyFile *kf, LmtpdConfig *c)
{
  g_autofree char *text = get_string (kf, "server", "xforward_hosts");
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
        problem (ld, "server", "xforward_hosts", "'%s' is not an address or CIDR block", items[i]);
      else
        g_ptr_array_add (c->xforward_hosts, m);
    }
}

gboolean
lmtpd_config_xforward_allowed (const LmtpdConfig *config, const char *peer)
{
  g_autoptr (GInetAddress) a = NULL;

  if (peer == NULL)
    return FALSE;
  if (strcmp (peer, "local") == 0)
    return config->xforward_local;
  if (config->xforward_hosts == NULL || (a = g_inet_address_new_from_string (peer)) == NULL)
    return FALSE;
  for (guint i = 0; i < config->xforward_hosts->len; i++)
    if (g_inet_address_mask_matches (config->xforward_hosts->pdata[i], a))
      return TRUE;
  return FALSE;
}

static void
load_server (Loader *ld, GKeyFile *kf, LmtpdConfig *c)
{
  g_auto (GStrv) specs = g_key_file_get_string_list (kf, "server", "listen", NULL, NULL);
  g_autofree char *mode = get_string (kf, "server", "socket_mode");

  if (specs)
    {
      g_ptr_array_set_size (c->listen, 0);
      for (guint i = 0; specs[i]; i++)
        {
          g_autofree char *why = NULL;
          LmtpdListen *l;
          char *s = g_strstrip (specs[i]);
          if (*s == '\0')
            continue;
          l = parse_listen (s, &why);
          if (l)
            g_ptr_array_add (c->listen, l);
          else
            problem (ld, "server", "listen", "%s", why);
        }
      if (c->listen->len == 0)
        problem (ld, "server", "listen", "no listener given");
    }
  if (mode)
    {
      char *end = NULL;
      guint64 m = g_ascii_strtoull (mode, &end, 8);
      if (*mode == '\0' || *end != '\0' || m > 0777)
        problem (ld, "server", "socket_mode", "'%s' is not an octal mode like 0660", mode);
      else
        c->socket_mode = (guint) m;
    }
  get_path (kf, "server", "socket_owner", &c->socket_owner);
  get_path (kf, "server", "hostname", &c->hostname);
  if (c->hostname[0] == '\0' || strpbrk (c->hostname, " \t\r\n<>()[];"))
    problem (ld, "server", "hostname", "'%s' is not a host name", c->hostname);
  get_path (kf, "server", "spool_dir", &c->spool_dir);
  get_uint (ld, kf, "server", "max_sessions", FALSE, 1, 100000, &c->max_sessions);
  get_uint (ld, kf, "server", "idle_timeout", FALSE, 1, 86400, &c->idle_timeout);
  get_uint (ld, kf, "server", "shutdown_timeout", FALSE, 0, 3600, &c->shutdown_timeout);
  get_path (kf, "server", "user", &c->user);
  get_uint (ld, kf, "server", "delivery_threads", FALSE, 1, 1024, &c->delivery_threads);
  get_number (ld, kf, "server", "max_memory", TRUE, 0, G_MAXINT64, &c->max_memory);
  load_xforward_hosts (ld, kf, c);
  get_path (kf, "server", "metrics_listen", &c->metrics_listen);
  get_path (kf, "server", "tls_cert_file", &c->tls_cert_file);
  get_path (kf, "server", "tls_key_file", &c->tls_key_file);
  get_path (kf, "server", "tls_client_ca_file", &c->tls_client_ca_file);
  if ((c->tls_cert_file == NULL) != (c->tls_key_file == NULL))
    problem (ld, "server", c->tls_cert_file ? "tls_key_file" : "tls_cert_file",
             "STARTTLS needs both tls_cert_file and tls_key_file");
  {
    g_autofree char *fmt = get_string (kf, "server", "log_format");
    if (fmt && strcmp (fmt, "json") == 0)
      c->log_json = TRUE;
    else if (fmt && strcmp (fmt, "text") != 0)
      problem (ld, "server", "log_format", "'%s' is not text or json", fmt);
  }
  if (c->metrics_listen && c->metrics_listen[0] == '\0')
    g_clear_pointer (&c->metrics_listen, g_free);
  if (c->metrics_listen)
    {
      g_autoptr (GError) err = NULL;
      LmtpdListen *l = lmtpd_listen_parse (c->metrics_listen, &err);
      if (l == NULL)
        problem (ld, "server", "metrics_listen", "%s", err->message);
      else
        lmtpd_listen_free (l);
    }
  if (c->user && c->user[0] == '\0')
    g_clear_pointer (&c->user, g_free);
}

static void
load_limits (Loader *ld, GKeyFile *kf, LmtpdConfig *c)
{
  guint64 v;

  if (get_number (ld, kf, "limits", "max_line_length", TRUE, 512, 1024 * 1024, &v))
    c->max_line_length = v;
  if (get_number (ld, kf, "limits", "max_data_line_length", TRUE, 1000, G_MAXUINT32, &v))
    c->max_data_line_length = v;
  get_number (ld, kf, "limits", "max_message_size", TRUE, 0, G_MAXINT64, &c->max_message_size);
  get_uint (ld, kf, "limits", "max_recipients", FALSE, 1, 100000, &c->max_recipients);
  get_uint (ld, kf, "limits", "max_errors", FALSE, 1, 10000, &c->max_errors);
  get_number (ld, kf, "limits", "min_data_rate", TRUE, 0, G_MAXUINT32, &c->min_data_rate);
}

static void
get_bool (Loader *ld, GKeyFile *kf, const char *group, const char *key, gboolean *out)
{
  g_autoptr (GError) err = NULL;
  gboolean b;

  if (!g_key_file_has_key (kf, group, key, NULL))
    return;
  b = g_key_file_get_boolean (kf, group, key, &err);
  if (err)
    problem (ld, group, key, "expected true or false");
  else
    *out = b;
}

/* [maildir:|mbox:]PATH[:INBOX=FILE] with only %u %d %n %% escapes */
static void
check_mailbox_template (Loader *ld, const char *group, const char *key, const char *t)
{
  const char *path = t;

  if (g_str_has_prefix (t, "maildir:"))
    path = t + 8;
  else if (g_str_has_prefix (t, "mbox:"))
    path = t + 5;
  if (path[0] == '\0' || path[0] == '/' || strstr (path, ".."))
    problem (ld, group, key, "'%s' must be relative to mail_root, without '..'", t);
  for (const char *p = path; *p; p++)
    if (*p == '%' && (p[1] == '\0' || !strchr ("udn%", p[1])))
      {
        problem (ld, group, key, "unknown escape '%%%c' (use %%u, %%d, %%n or %%%%)", p[1] ? p[1] : ' ');
        break;
      }
    else if (*p == '%')
      p++;
}

static void
load_delivery (Loader *ld, GKeyFile *kf, LmtpdConfig *c)
{
  g_autofree char *detail = get_string (kf, "delivery", "detail_folder");
  g_autofree char *quoting = get_string (kf, "delivery", "mbox_quoting");
  g_auto (GStrv) domains = g_key_file_get_keys (kf, "mailboxes", NULL, NULL);

  get_path (kf, "delivery", "mail_root", &c->mail_root);
  get_path (kf, "delivery", "mailbox", &c->mailbox_template);
  check_mailbox_template (ld, "delivery", "mailbox", c->mailbox_template);
  for (guint i = 0; domains && domains[i]; i++)
    {
      char *t = get_string (kf, "mailboxes", domains[i]);
      check_mailbox_template (ld, "mailboxes", domains[i], t);
      g_hash_table_replace (c->domain_mailbox, g_ascii_strdown (domains[i], -1), t);
    }
  get_bool (ld, kf, "delivery", "fsync", &c->fsync);
  get_bool (ld, kf, "delivery", "create_folders", &c->create_folders);
  get_bool (ld, kf, "delivery", "quota_full_tempfail", &c->quota_full_tempfail);
  get_bool (ld, kf, "delivery", "single_instance", &c->single_instance);
  if (g_key_file_has_key (kf, "delivery", "recipient_delimiter", NULL))
    {
      g_free (c->recipient_delimiter);
      c->recipient_delimiter = g_key_file_get_string (kf, "delivery", "recipient_delimiter", NULL);
      for (const char *p = c->recipient_delimiter; p && *p; p++)
        if (!g_ascii_isprint (*p) || *p == '@' || *p == ' ' || *p == '/')
          {
            problem (ld, "delivery", "recipient_delimiter", "'%c' cannot be a delimiter", *p);
            break;
          }
    }
  if (detail)
    {
      if (g_ascii_strcasecmp (detail, "no") == 0 || g_ascii_strcasecmp (detail, "false") == 0)
        c->detail_folder = LMTPD_DETAIL_NO;
      else if (g_ascii_strcasecmp (detail, "yes") == 0 || g_ascii_strcasecmp (detail, "true") == 0)
        c->detail_folder = LMTPD_DETAIL_YES;
      else if (g_ascii_strcasecmp (detail, "if-exists") == 0)
        c->detail_folder = LMTPD_DETAIL_IF_EXISTS;
      else
        problem (ld, "delivery", "detail_folder", "'%s' is not no, yes or if-exists", detail);
    }
  get_uint (ld, kf, "delivery", "duplicate_window", FALSE, 0, 30 * 86400, &c->duplicate_window);
  get_path (kf, "delivery", "duplicate_db", &c->duplicate_db);
  if (quoting)
    {
      if (g_ascii_strcasecmp (quoting, "mboxrd") == 0)
        c->mbox_mboxo = FALSE;
      else if (g_ascii_strcasecmp (quoting, "mboxo") == 0)
        c->mbox_mboxo = TRUE;
      else
        problem (ld, "delivery", "mbox_quoting", "'%s' is not mboxrd or mboxo", quoting);
    }
  get_uint (ld, kf, "delivery", "mbox_lock_timeout", FALSE, 1, 3600, &c->mbox_lock_timeout);
  get_uint (ld, kf, "delivery", "delivery_timeout", FALSE, 1, 86400, &c->delivery_timeout);
}

static void
load_sieve (Loader *ld, GKeyFile *kf, LmtpdConfig *c)
{
  guint secs = 0;

  if (g_key_file_has_key (kf, "sieve", "script", NULL))
    {
      g_free (c->sieve_script);
      c->sieve_script = get_string (kf, "sieve", "script");
      for (const char *p = c->sieve_script; *p; p++)
        if (*p == '%' && !(p[1] && strchr ("undh%", p[1]) && (p++, TRUE)))
          {
            problem (ld, "sieve", "script", "unknown %%-escape (use %%u %%n %%d %%h %%%%)");
            break;
          }
    }
  for (int k = 0; k < 2; k++)
    {
      const char *key = k ? "after" : "before";
      char ***out = k ? &c->sieve_after : &c->sieve_before;
      g_auto (GStrv) list = g_key_file_get_string_list (kf, "sieve", key, NULL, NULL);
      GPtrArray *a = g_ptr_array_new ();
      for (guint i = 0; list && list[i]; i++)
        {
          char *p = g_strstrip (list[i]);
          if (*p == '\0')
            continue;
          if (!g_file_test (p, G_FILE_TEST_IS_REGULAR))
            problem (ld, "sieve", key, "'%s' is not a readable file", p);
          g_ptr_array_add (a, g_strdup (p));
        }
      g_ptr_array_add (a, NULL);
      g_strfreev (*out);
      *out = (char **) g_ptr_array_free (a, FALSE);
    }
  get_number (ld, kf, "sieve", "max_script_size", TRUE, 64, 64 * 1024 * 1024, &c->sieve_max_script_size);
  get_uint (ld, kf, "sieve", "max_actions", FALSE, 1, 1000, &c->sieve_max_actions);
  get_uint (ld, kf, "sieve", "max_redirects", FALSE, 0, 100, &c->sieve_max_redirects);
  get_uint (ld, kf, "sieve", "vacation_max_days", FALSE, 1, 365, &c->vacation_max_days);
  if (g_key_file_has_key (kf, "sieve", "max_run_time", NULL))
    {
      get_uint (ld, kf, "sieve", "max_run_time", FALSE, 1, 600, &secs);
      if (secs)
        c->sieve_max_run_time_ms = secs * 1000;
    }
  if (g_key_file_has_key (kf, "sieve", "submission", NULL))
    {
      g_autoptr (GError) e = NULL;
      LmtpdListen *l;
      get_path (kf, "sieve", "submission", &c->submission);
      l = lmtpd_listen_parse (c->submission, &e);
      if (l == NULL)
        problem (ld, "sieve", "submission", "%s", e->message);
      else
        lmtpd_listen_free (l);
    }
  get_path (kf, "sieve", "sendmail", &c->sendmail);
  if (g_key_file_has_key (kf, "sieve", "vacation_never_reply", NULL))
    {
      g_auto (GStrv) list = g_key_file_get_string_list (kf, "sieve", "vacation_never_reply", NULL, NULL);
      GPtrArray *a = g_ptr_array_new ();
      for (guint i = 0; list && list[i]; i++)
        if (*g_strstrip (list[i]))
          g_ptr_array_add (a, g_ascii_strdown (list[i], -1));
      g_ptr_array_add (a, NULL);
      g_strfreev (c->vacation_never_reply);
      c->vacation_never_reply = (char **) g_ptr_array_free (a, FALSE);
    }
  if (c->sendmail && c->submission)
    problem (ld, "sieve", "sendmail", "set submission or sendmail, not both");
}

static void
load_users (Loader *ld, GKeyFile *kf, LmtpdConfig *c)
{
  g_auto (GStrv) domains = g_key_file_get_string_list (kf, "users", "domains", NULL, NULL);

  get_path (kf, "users", "map", &c->users_map);
  get_path (kf, "users", "postmaster", &c->postmaster);
  get_path (kf, "users", "rewrite", &c->rewrite_map);
  if (c->rewrite_map)
    load_rewrite_map (ld, c);
  if (domains)
    {
      GPtrArray *d = g_ptr_array_new ();
      for (guint i = 0; domains[i]; i++)
        {
          char *s = g_strstrip (domains[i]);
          if (*s)
            g_ptr_array_add (d, g_ascii_strdown (s, -1));
        }
      g_ptr_array_add (d, NULL);
      g_strfreev (c->domains);
      c->domains = (char **) g_ptr_array_free (d, FALSE);
    }
  else if (c->users_map)
    {
      /* A users map alone means: only the users in it. */
      g_strfreev (c->domains);
      c->domains = NULL;
    }
  if (c->users_map)
    load_users_map (ld, c);
  if (c->postmaster)
    {
      char *lower = g_ascii_strdown (c->postmaster, -1);
      g_free (c->postmaster);
      c->postmaster = lower;
      if (!address_is_sane (lower))
        problem (ld, "users", "postmaster", "'%s' is not an address", lower);
      else if (!lmtpd_config_lookup_user (c, lower, NULL))
        problem (ld, "users", "postmaster", "'%s' is not a known user", lower);
    }
}

/* ---- OPES: [opes], [service NAME], [rule NAME] ------------------------- */

/* "250ms", "2s", "1m" or plain seconds, to milliseconds */
static void
get_ms (Loader *ld, GKeyFile *kf, const char *group, const char *key, guint *out)
{
  g_autofree char *s = get_string (kf, group, key);
  char *end = NULL;
  guint64 v;

  if (s == NULL)
    return;
  v = g_ascii_strtoull (s, &end, 10);
  if (end == s || v > 3600 * 1000)
    goto bad;
  if (strcmp (end, "ms") == 0)
    ;
  else if (*end == '\0' || strcmp (end, "s") == 0)
    v *= 1000;
  else if (strcmp (end, "m") == 0)
    v *= 60000;
  else
    goto bad;
  if (v == 0 || v > 3600 * 1000)
    goto bad;
  *out = (guint) v;
  return;
bad:
  problem (ld, group, key, "'%s' is not a duration like 500ms, 2s or 1m", s);
}

static const LmtpdService *
find_service (const LmtpdConfig *c, const char *name)
{
  for (guint i = 0; i < c->services->len; i++)
    if (strcmp (((LmtpdService *) c->services->pdata[i])->name, name) == 0)
      return c->services->pdata[i];
  return NULL;
}

static void
load_service (Loader *ld, GKeyFile *kf, LmtpdConfig *c, const char *group)
{
  LmtpdService *sv = g_new0 (LmtpdService, 1);
  g_autofree char *stage = get_string (kf, group, "stage");
  g_autofree char *fail = get_string (kf, group, "on_failure");
  g_auto (GStrv) servers = g_key_file_get_string_list (kf, group, "servers", NULL, NULL);
  GPtrArray *eps = g_ptr_array_new ();

  sv->name = g_strdup (group + strlen ("service "));
  sv->uri = get_string (kf, group, "uri");
  if (sv->uri == NULL)
    sv->uri = g_strdup_printf ("urn:x-opes-lmtpd:service:%s", sv->name);
  for (guint i = 0; servers && servers[i]; i++)
    {
      char *e = g_strstrip (servers[i]);
      g_autofree char *why = NULL;
      LmtpdListen *l;
      if (*e == '\0')
        continue;
      l = parse_listen (e, &why);
      if (l == NULL || (l->kind == LMTPD_LISTEN_INET && l->port == 0))
        problem (ld, group, "servers", "%s", why ? why : "port 0 is not a server");
      else
        g_ptr_array_add (eps, g_strdup (e));
      if (l)
        lmtpd_listen_free (l);
    }
  if (eps->len == 0 && servers == NULL)
    problem (ld, group, NULL, "no servers = given");
  g_ptr_array_add (eps, NULL);
  sv->servers = (char **) g_ptr_array_free (eps, FALSE);
  if (stage && strcmp (stage, "rcpt") == 0)
    sv->rcpt_stage = TRUE;
  else if (stage && strcmp (stage, "data") != 0)
    problem (ld, group, "stage", "'%s' is not rcpt or data", stage);
  sv->parts = get_string (kf, group, "parts");
  if (sv->parts == NULL)
    sv->parts = g_strdup (sv->rcpt_stage ? "envelope" : "envelope,message-header,message-body");
  else
    {
      g_auto (GStrv) p = g_strsplit_set (sv->parts, ";, ", -1);
      for (guint i = 0; p[i]; i++)
        if (p[i][0] && strcmp (p[i], "envelope") && strcmp (p[i], "message-header")
            && strcmp (p[i], "message-body"))
          problem (ld, group, "parts", "unknown part '%s' (envelope, message-header, message-body)", p[i]);
    }
  sv->on_failure = LMTPD_FAIL_TEMPFAIL;
  if (fail && strcmp (fail, "accept") == 0)
    sv->on_failure = LMTPD_FAIL_ACCEPT;
  else if (fail && strcmp (fail, "reject") == 0)
    sv->on_failure = LMTPD_FAIL_REJECT;
  else if (fail && strcmp (fail, "tempfail") != 0)
    problem (ld, group, "on_failure", "'%s' is not tempfail, accept or reject", fail);
  sv->connect_timeout_ms = 2000;
  sv->response_timeout_ms = 20000;
  sv->timeout_ms = 30000;
  sv->max_connections = 16;
  sv->bypassable = TRUE;
  get_ms (ld, kf, group, "connect_timeout", &sv->connect_timeout_ms);
  get_ms (ld, kf, group, "response_timeout", &sv->response_timeout_ms);
  get_ms (ld, kf, group, "timeout", &sv->timeout_ms);
  get_uint (ld, kf, group, "max_connections", FALSE, 1, 1024, &sv->max_connections);
  get_bool (ld, kf, group, "bypassable", &sv->bypassable);
  get_bool (ld, kf, group, "tls", &sv->tls);
  get_path (kf, group, "tls_ca_file", &sv->tls_ca_file);
  get_path (kf, group, "tls_cert_file", &sv->tls_cert_file);
  get_path (kf, group, "tls_key_file", &sv->tls_key_file);
  get_path (kf, group, "tls_server_name", &sv->tls_server_name);
  if (sv->tls_ca_file && !g_file_test (sv->tls_ca_file, G_FILE_TEST_IS_REGULAR))
    problem (ld, group, "tls_ca_file", "'%s' is not a file", sv->tls_ca_file);
  if (sv->tls_cert_file && !g_file_test (sv->tls_cert_file, G_FILE_TEST_IS_REGULAR))
    problem (ld, group, "tls_cert_file", "'%s' is not a file", sv->tls_cert_file);
  if (find_service (c, sv->name))
    problem (ld, group, NULL, "service defined twice");
  g_ptr_array_add (c->services, sv);
}

static void
load_rule (Loader *ld, GKeyFile *kf, LmtpdConfig *c, const char *group)
{
  LmtpdRule *r = g_new0 (LmtpdRule, 1);
  g_auto (GStrv) names = g_key_file_get_string_list (kf, group, "services", NULL, NULL);
  g_auto (GStrv) match = g_key_file_get_string_list (kf, group, "match", NULL, NULL);
  GPtrArray *m = g_ptr_array_new ();

  r->name = g_strdup (group + strlen ("rule "));
  r->regexes = g_ptr_array_new_with_free_func ((GDestroyNotify) g_regex_unref);
  r->services = g_ptr_array_new ();
  for (guint i = 0; match && match[i]; i++)
    {
      char *e = g_strstrip (match[i]);
      gsize n = strlen (e);
      if (n == 0)
        continue;
      if (n > 2 && e[0] == '/' && e[n - 1] == '/')
        {
          g_autoptr (GError) err = NULL;
          g_autofree char *pat = g_strndup (e + 1, n - 2);
          GRegex *re = g_regex_new (pat, G_REGEX_CASELESS, 0, &err);
          if (re == NULL)
            problem (ld, group, "match", "bad regular expression: %s", err->message);
          else
            g_ptr_array_add (r->regexes, re);
          continue;
        }
      g_ptr_array_add (m, g_ascii_strdown (e, -1));
    }
  g_ptr_array_add (m, NULL);
  r->match = (char **) g_ptr_array_free (m, FALSE);
  if (match == NULL)
    problem (ld, group, NULL, "no match = given");
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
            problem (ld, group, "services", "no [service %s]", parts[j]);
          else
            g_ptr_array_add (r->services, (gpointer) sv);
        }
    }
  g_ptr_array_add (c->rules, r);
}

static void
load_opes (Loader *ld, GKeyFile *kf, LmtpdConfig *c)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);
  g_auto (GStrv) bypass = g_key_file_get_string_list (kf, "opes", "bypass", NULL, NULL);

  if (g_key_file_has_key (kf, "opes", "system", NULL))
    get_path (kf, "opes", "system", &c->opes_system);
  else
    {
      g_free (c->opes_system);
      c->opes_system = g_strdup_printf ("urn:x-opes-lmtpd:system:%s", c->hostname);
    }
  for (guint i = 0; bypass && bypass[i]; i++)
    {
      char *b = g_strstrip (bypass[i]);
      if (strcmp (b, "header") == 0)
        c->opes_bypass |= LMTPD_BYPASS_HEADER;
      else if (strcmp (b, "parameter") == 0)
        c->opes_bypass |= LMTPD_BYPASS_PARAMETER;
      else if (strcmp (b, "none") != 0 && *b)
        problem (ld, "opes", "bypass", "'%s' is not header, parameter or none", b);
    }
  /* services first: rules name them */
  for (guint i = 0; groups[i]; i++)
    if (g_str_has_prefix (groups[i], "service ") && groups[i][8])
      load_service (ld, kf, c, groups[i]);
  for (guint i = 0; groups[i]; i++)
    if (g_str_has_prefix (groups[i], "rule ") && groups[i][5])
      load_rule (ld, kf, c, groups[i]);
}

const LmtpdRule *
lmtpd_config_match_rule (const LmtpdConfig *c, const char *address)
{
  const char *at = strrchr (address, '@');

  for (guint i = 0; i < c->rules->len; i++)
    {
      const LmtpdRule *r = c->rules->pdata[i];
      for (guint k = 0; r->match[k]; k++)
        {
          const char *m = r->match[k];
          if (strcmp (m, "*") == 0 || strcmp (m, address) == 0 || (m[0] == '@' && at && strcmp (m, at) == 0)
              || (strpbrk (m, "*?") && g_pattern_match_simple (m, address)))
            return r;
        }
      for (guint k = 0; k < r->regexes->len; k++)
        if (g_regex_match (r->regexes->pdata[k], address, 0, NULL))
          return r;
    }
  return NULL;
}

LmtpdConfig *
lmtpd_config_load (const char *path, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) err = NULL;
  g_autofree char *text = NULL;
  g_autoptr (LmtpdConfig) c = NULL;
  g_autoptr (GString) errors = g_string_new (NULL);
  Loader ld = { path, NULL, errors };
  gsize len;

  if (!g_file_get_contents (path, &text, &len, &err))
    {
      g_set_error (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, "%s", err->message);
      return NULL;
    }
  if (!g_key_file_load_from_data (kf, text, len, G_KEY_FILE_NONE, &err))
    {
      guint line = lmtpd_keyfile_bad_line (text);
      if (line)
        g_set_error (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, "%s:%u: %s", path, line, err->message);
      else
        g_set_error (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, "%s: %s", path, err->message);
      return NULL;
    }
  ld.lines = scan_lines (text);
  c = lmtpd_config_new_default ();
  c->source = g_strdup (path);
  check_known (&ld, kf);
  load_server (&ld, kf, c);
  load_limits (&ld, kf, c);
  load_delivery (&ld, kf, c);
  load_users (&ld, kf, c);
  load_opes (&ld, kf, c);
  load_sieve (&ld, kf, c);
  g_hash_table_unref (ld.lines);
  if (errors->len)
    {
      g_set_error_literal (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, errors->str);
      return NULL;
    }
  return g_steal_pointer (&c);
}
