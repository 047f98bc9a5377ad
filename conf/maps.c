/* maps.c - the users map and the rewrite map: loading them, with a problem
 * per bad line ("map:line: ..."), looking addresses up in them, and the
 * mailbox template of a domain.
 */
#include "config.h"

#include <string.h>

#include "conf-private.h"

void
conf_user_free (gpointer p)
{
  LmtpdUser *u = p;
  g_free (u->address);
  g_free (u->mailbox);
  g_free (u->sieve);
  g_free (u->host);
  g_free (u->alias_of);
  g_strfreev (u->settings);
  if (u->password)
    memset (u->password, 0, strlen (u->password));
  g_free (u->password);
  g_free (u);
}

void
conf_rewrite_free (gpointer p)
{
  LmtpdRewrite *r = p;
  g_free (r->from);
  g_free (r->to);
  g_clear_pointer (&r->regex, g_regex_unref);
  g_free (r);
}

gboolean
conf_address_is_sane (const char *a)
{
  const char *at = strchr (a, '@');
  if (at == NULL || at == a || at[1] == '\0' || strchr (at + 1, '@'))
    return FALSE;
  for (const char *p = a; *p; p++)
    if ((guchar) *p < 0x21 || *p == 0x7f || *p == '/')
      return FALSE;
  return strstr (a, "..") == NULL;
}

/* Lines of a map file, split on blanks; NULL for comments and blank lines
 * so that index + 1 is the line number. */
static GPtrArray *
read_map (ConfLoader *ld, const char *group, const char *key, const char *path)
{
  g_autofree char *text = NULL;
  g_autoptr (GError) err = NULL;
  g_auto (GStrv) lines = NULL;
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);

  if (!g_file_get_contents (path, &text, NULL, &err))
    {
      conf_problem (ld, group, key, "%s", err->message);
      return out;
    }
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      char *s = g_strstrip (lines[i]);
      if (*s == '\0' || *s == '#')
        g_ptr_array_add (out, NULL);
      else
        g_ptr_array_add (out, g_regex_split_simple ("[ \t]+", s, 0, 0));
    }
  return out;
}

/* ---- users map ---------------------------------------------------------- */

/* [mailboxes]' template for @domain, or else [delivery] mailbox */
const char *
lmtpd_config_mailbox_template (const LmtpdConfig *c, const char *domain)
{
  const char *t = domain ? g_hash_table_lookup (c->domain_mailbox, domain) : NULL;
  return t ? t : c->mailbox_template;
}


/* The user's mailbox, or else its domain's template, is an mbox. */
static gboolean
user_is_mbox (const LmtpdConfig *c, const LmtpdUser *u)
{
  const char *at = strrchr (u->address, '@');
  const char *m = u->mailbox ? u->mailbox : lmtpd_config_mailbox_template (c, at ? at + 1 : NULL);
  return g_str_has_prefix (m, "mbox:");
}

/* A bare mailbox (once); "maildir:/x=y" is a mailbox too: only known keys
 * are settings. */
static gboolean
user_mailbox (ConfLoader *ld, const char *map, guint line, LmtpdUser *u, const char *field)
{
  const char *eq = strchr (field, '=');

  if (u->mailbox)
    {
      conf_file_problem (ld, map, line, "'%s': a second mailbox (the first is '%s')", field, u->mailbox);
      return FALSE;
    }
  if (eq && !strchr (field, ':') && !strchr (field, '/'))
    {
      conf_file_problem (ld, map, line, "'%.*s=': unknown setting (mailbox=, quota=, quota_messages=, sieve=, "
                         "alias=, disabled=, setting=, password= or host=)", (int) (eq - field), field);
      return FALSE;
    }
  u->mailbox = g_strdup (field);
  return TRUE;
}

static gboolean
key_is (const char *field, const char *eq, const char *key)
{
  return (gsize) (eq - field) == strlen (key) && strncmp (field, key, eq - field) == 0;
}

/* sieve=, alias=, disabled=, setting=Name:value. */
static gboolean
user_directory_field (ConfLoader *ld, const char *map, guint line, LmtpdUser *u, const char *field)
{
  const char *eq = strchr (field, '='), *v = eq + 1;

  if (key_is (field, eq, "sieve"))
    {
      g_free (u->sieve);
      u->sieve = g_strdup (v);
    }
  else if (key_is (field, eq, "host") && !strpbrk (v, " \t;="))
    {
      g_free (u->host);
      u->host = g_strdup (v);
    }
  else if (key_is (field, eq, "alias") && conf_address_is_sane (v))
    {
      g_free (u->alias_of);
      u->alias_of = g_ascii_strdown (v, -1);
    }
  else if (key_is (field, eq, "password") && v[0] == '{' && strchr (v, '}'))
    {
      g_free (u->password);
      u->password = g_strdup (v);
    }
  else if (key_is (field, eq, "disabled") && (strcmp (v, "yes") == 0 || strcmp (v, "no") == 0))
    u->disabled = strcmp (v, "yes") == 0;
  else if (key_is (field, eq, "setting") && strchr (v, ':') && v[0] != ':')
    {
      gsize n = u->settings ? g_strv_length (u->settings) : 0;
      u->settings = g_renew (char *, u->settings, n + 2);
      u->settings[n] = g_strdup (v);
      u->settings[n + 1] = NULL;
    }
  else
    {
      conf_file_problem (ld, map, line, "'%s': %s", field,
                         key_is (field, eq, "alias") ? "not user@domain"
                         : key_is (field, eq, "password") ? "a password is {SCHEME}hash, e.g. {SHA512-CRYPT}$6$..."
                         : key_is (field, eq, "disabled") ? "yes or no"
                         : key_is (field, eq, "host") ? "a node name" : "a setting is Name:value");
      return FALSE;
    }
  return TRUE;
}

/* One field after the address, in any order: a bare mailbox (once),
 * mailbox=, quota=, quota_messages=, sieve=, alias=, disabled= or
 * setting=.  The error says what is wrong with the very token, not what
 * was expected in its place. */
static gboolean
user_field (ConfLoader *ld, const char *map, guint line, LmtpdUser *u, const char *field)
{
  const char *eq = strchr (field, '=');
  gboolean setting = eq && (key_is (field, eq, "mailbox") || key_is (field, eq, "quota")
                            || key_is (field, eq, "quota_messages"));
  gboolean directory = eq && (key_is (field, eq, "sieve") || key_is (field, eq, "alias")
                              || key_is (field, eq, "disabled") || key_is (field, eq, "setting")
                              || key_is (field, eq, "password") || key_is (field, eq, "host"));

  if (!setting && !directory)
    return user_mailbox (ld, map, line, u, field);
  if (eq[1] == '\0')
    conf_file_problem (ld, map, line, "'%s': no value", field);
  else if (directory)
    return user_directory_field (ld, map, line, u, field);
  else if (strncmp (field, "mailbox=", 8) == 0)
    {
      g_free (u->mailbox);
      u->mailbox = g_strdup (eq + 1);
      return TRUE;
    }
  else if (conf_parse_number (eq + 1, CONF_UNITS_SIZE,
                              strncmp (field, "quota=", 6) == 0 ? &u->quota_bytes : &u->quota_messages)
           == CONF_NUMBER_OK)
    return TRUE;
  else
    conf_file_problem (ld, map, line, "'%s': '%s' is not a size (e.g. 500M, 2G, 10000)", field, eq + 1);
  return FALSE;
}

/* The user of line @line's fields @f, or NULL after reporting why not. */
static LmtpdUser *
parse_user (ConfLoader *ld, const LmtpdConfig *c, guint line, char **f)
{
  LmtpdUser *u;
  gboolean ok = TRUE;

  if (!conf_address_is_sane (f[0]))
    {
      conf_file_problem (ld, c->users_map, line, "'%s' is not user@domain", f[0]);
      return NULL;
    }
  u = g_new0 (LmtpdUser, 1);
  u->address = g_ascii_strdown (f[0], -1);
  for (guint k = 1; f[k] && ok; k++)
    ok = user_field (ld, c->users_map, line, u, f[k]);
  if (ok && u->mailbox && strstr (u->mailbox, ".."))
    {
      conf_file_problem (ld, c->users_map, line, "mailbox '%s' may not contain '..'", u->mailbox);
      ok = FALSE;
    }
  if (ok && u->quota_messages && user_is_mbox (c, u))
    {
      /* counting the messages of an mbox means reading all of it on
       * every delivery: refused rather than silently ignored */
      conf_file_problem (ld, c->users_map, line,
                         "quota_messages= is not supported for an mbox mailbox (use quota= for bytes)");
      ok = FALSE;
    }
  if (ok)
    return u;
  conf_user_free (u);
  return NULL;
}

void
conf_load_users_map (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  g_autoptr (GPtrArray) lines = NULL;

  if (c->users_map == NULL)
    return;
  lines = read_map (ld, "users", "map", c->users_map);
  for (guint i = 0; i < lines->len; i++)
    {
      LmtpdUser *u;
      if (lines->pdata[i] == NULL)
        continue;
      u = parse_user (ld, c, i + 1, lines->pdata[i]);
      if (u)
        g_hash_table_replace (c->users, u->address, u);
    }
}

GHashTable *
lmtpd_users_map_load (const LmtpdConfig *config, const char *path, GError **error)
{
  g_autoptr (GString) errors = g_string_new (NULL);
  ConfLoader ld = { path, NULL, errors };
  LmtpdConfig copy = *config;
  g_autoptr (GPtrArray) lines = NULL;

  copy.users_map = (char *) path;
  copy.users = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, conf_user_free);
  lines = read_map (&ld, "users", "map", path);
  for (guint i = 0; i < lines->len; i++)
    {
      LmtpdUser *u = lines->pdata[i] ? parse_user (&ld, &copy, i + 1, lines->pdata[i]) : NULL;
      if (u)
        g_hash_table_replace (copy.users, u->address, u);
    }
  if (errors->len == 0)
    return copy.users;
  g_hash_table_unref (copy.users);
  g_set_error_literal (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, errors->str);
  return NULL;
}

const LmtpdUser *
lmtpd_config_get_user (const LmtpdConfig *c, const char *address)
{
  return g_hash_table_lookup (c->users, address);
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

/* ---- rewrite map -------------------------------------------------------- */

/* Lookup order: exact entries, then @domain entries, then /regex/ in file
 * order; each list keeps file order. */
typedef struct {
  GPtrArray *exact, *domain, *regex;
} RewriteLists;

static LmtpdRewrite *
parse_rewrite_regex (ConfLoader *ld, const char *map, guint line, const char *from, const char *to)
{
  g_autoptr (GError) err = NULL;
  g_autofree char *pat = g_strndup (from + 1, strlen (from) - 2);
  GRegex *re = g_regex_new (pat, G_REGEX_CASELESS, 0, &err);
  LmtpdRewrite *r;

  if (re == NULL)
    {
      conf_file_problem (ld, map, line, "bad regular expression: %s", err->message);
      return NULL;
    }
  r = g_new0 (LmtpdRewrite, 1);
  r->kind = LMTPD_REWRITE_REGEX;
  r->from = g_strdup (from);
  r->regex = re;
  r->to = g_strdup (to);
  return r;
}

/* user@domain or @domain to user@domain or @domain */
static LmtpdRewrite *
parse_rewrite_address (ConfLoader *ld, const char *map, guint line, const char *from, const char *to)
{
  g_autofree char *lower = g_ascii_strdown (from, -1);
  LmtpdRewrite *r;

  if (!(lower[0] == '@' && lower[1] && !strchr (lower + 1, '@')) && !conf_address_is_sane (lower))
    {
      conf_file_problem (ld, map, line, "'%s' is not user@domain, @domain or /regex/", from);
      return NULL;
    }
  if (to[0] == '@' ? strchr (to + 1, '@') != NULL || !to[1] : !conf_address_is_sane (to))
    {
      conf_file_problem (ld, map, line, "'%s' is not user@domain or @domain", to);
      return NULL;
    }
  r = g_new0 (LmtpdRewrite, 1);
  r->kind = lower[0] == '@' ? LMTPD_REWRITE_DOMAIN : LMTPD_REWRITE_EXACT;
  r->from = g_steal_pointer (&lower);
  r->to = g_strdup (to);
  return r;
}

static void
add_rewrite_line (ConfLoader *ld, const char *map, guint line, char **f, RewriteLists *out)
{
  gsize len;
  LmtpdRewrite *r;

  if (g_strv_length (f) != 2)
    {
      conf_file_problem (ld, map, line, "expected 'from to', got %u fields", g_strv_length (f));
      return;
    }
  len = strlen (f[0]);
  if (len > 2 && f[0][0] == '/' && f[0][len - 1] == '/')
    r = parse_rewrite_regex (ld, map, line, f[0], f[1]);
  else
    r = parse_rewrite_address (ld, map, line, f[0], f[1]);
  if (r)
    g_ptr_array_add (r->kind == LMTPD_REWRITE_REGEX    ? out->regex
                     : r->kind == LMTPD_REWRITE_DOMAIN ? out->domain
                                                       : out->exact,
                     r);
}

void
conf_load_rewrite_map (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  g_autoptr (GPtrArray) lines = NULL;
  RewriteLists out;

  if (c->rewrite_map == NULL)
    return;
  out = (RewriteLists) { g_ptr_array_new (), g_ptr_array_new (), g_ptr_array_new () };
  lines = read_map (ld, "users", "rewrite", c->rewrite_map);
  for (guint i = 0; i < lines->len; i++)
    if (lines->pdata[i])
      add_rewrite_line (ld, c->rewrite_map, i + 1, lines->pdata[i], &out);
  g_ptr_array_extend_and_steal (c->rewrites, out.exact);
  g_ptr_array_extend_and_steal (c->rewrites, out.domain);
  g_ptr_array_extend_and_steal (c->rewrites, out.regex);
}

/* @to for @address: "@domain" keeps the local part */
static char *
rewrite_to (const char *address, const char *at, const char *to)
{
  if (to[0] == '@' && at)
    return g_strdup_printf ("%.*s%s", (int) (at - address), address, to);
  return g_ascii_strdown (to, -1);
}

static char *
rewrite_regex (const LmtpdRewrite *r, const char *address)
{
  char *out, *lower;

  if (!g_regex_match (r->regex, address, 0, NULL))
    return NULL;
  out = g_regex_replace (r->regex, address, -1, 0, r->to, 0, NULL);
  if (out == NULL)
    return NULL;
  lower = g_ascii_strdown (out, -1);
  g_free (out);
  return lower;
}

char *
lmtpd_config_rewrite (const LmtpdConfig *c, const char *address)
{
  const char *at = strrchr (address, '@');

  for (guint i = 0; i < c->rewrites->len; i++)
    {
      const LmtpdRewrite *r = c->rewrites->pdata[i];
      char *out;
      switch (r->kind)
        {
        case LMTPD_REWRITE_EXACT:
          if (strcmp (r->from, address) == 0)
            return rewrite_to (address, at, r->to);
          break;
        case LMTPD_REWRITE_DOMAIN:
          if (at && strcmp (r->from, at) == 0)
            return rewrite_to (address, at, r->to);
          break;
        case LMTPD_REWRITE_REGEX:
          if ((out = rewrite_regex (r, address)) != NULL)
            return out;
          break;
        }
    }
  return NULL;
}
