/* users-settings.c - the checks of the [users] keys that need more than
 * a type (the rows are in settings.c's table): the domains, the sockets of
 * the Dovecot backends and their names, the postmaster, and the ldap_*
 * keys (URIs, base, filter, attributes, files).  The pgsql_* keys are
 * users-pgsql.c's.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "conf-private.h"

/* ---- [users] ------------------------------------------------------------ */

void
conf_load_domains (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  g_auto (GStrv) domains = g_key_file_get_string_list (kf, group, s->key, NULL, NULL);

  if (domains)
    {
      g_strfreev (c->domains);
      c->domains = conf_clean_list (domains, TRUE);
    }
  else if (c->users_map)
    {
      /* A users map alone means: only the users in it. */
      g_strfreev (c->domains);
      c->domains = NULL;
    }
}

/* backend dovecot needs the socket; a UNIX socket path fits in sun_path */
/* [users] dovecot_auth_socket: optional, a socket path if set. */
void
conf_check_socket_path (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  const char *path;

  conf_check_empty_is_unset (ld, kf, group, s, base);
  path = CONF_FIELD (base, s, char *);
  if (path && strlen (path) >= 108)
    conf_problem (ld, group, s->key, "'%s' is too long for a UNIX socket path", path);
  for (const guchar *p = (const guchar *) path; p && *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      {
        conf_problem (ld, group, s->key, "the socket path has a control character");
        break;
      }
}

void
conf_check_dovecot_socket (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;

  conf_check_empty_is_unset (ld, kf, group, s, base);
  if (c->users_dovecot_socket == NULL)
    {
      if (c->users_backend_kind == LMTPD_USERS_DOVECOT)
        conf_problem (ld, group, s->key, "backend dovecot needs the path of Dovecot's auth-userdb socket");
      return;
    }
  if (strlen (c->users_dovecot_socket) >= 108)
    conf_problem (ld, group, s->key, "'%s' is too long for a UNIX socket path", c->users_dovecot_socket);
  for (const guchar *p = (const guchar *) c->users_dovecot_socket; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      {
        conf_problem (ld, group, s->key, "the socket path has a control character");
        break;
      }
}

/* a service or field name goes into the protocol as is: letters, digits,
 * '_', '-' and '.' only (no tab, no '=') */
void
conf_check_dovecot_name (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  const char *v = CONF_FIELD (base, s, char *);

  if (v == NULL || v[0] == '\0' || strlen (v) > 64)
    {
      conf_problem (ld, group, s->key, "must be a name of 1 to 64 characters");
      return;
    }
  for (const char *p = v; *p; p++)
    if (!g_ascii_isalnum (*p) && !strchr ("_-.", *p))
      {
        conf_problem (ld, group, s->key, "'%s' may hold only letters, digits, '_', '-' and '.'", v);
        return;
      }
}

void
conf_check_postmaster (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  char *lower;

  if (c->postmaster == NULL)
    return;
  lower = g_ascii_strdown (c->postmaster, -1);
  g_free (c->postmaster);
  c->postmaster = lower;
  if (!conf_address_is_sane (lower))
    conf_problem (ld, group, s->key, "'%s' is not an address", lower);
  else if (!lmtpd_config_lookup_user (c, lower, NULL))
    conf_problem (ld, group, s->key, "'%s' is not a known user", lower);
}

/* ---- [users] ldap_* ------------------------------------------------------- */

static gboolean
ldap_backend (gpointer base)
{
  return ((LmtpdConfig *) base)->users_backend_kind == LMTPD_USERS_LDAP;
}

/* URIs separated by blanks or ';', each ldap://, ldaps:// or ldapi://;
 * required by the ldap backend. */
void
conf_check_ldap_uris (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  const char *uris = CONF_FIELD (base, s, char *);
  g_auto (GStrv) items = NULL;
  guint n = 0;

  conf_check_empty_is_unset (ld, kf, group, s, base);
  uris = CONF_FIELD (base, s, char *);
  if (uris == NULL)
    {
      if (ldap_backend (base))
        conf_problem (ld, group, s->key, "backend = ldap needs the server's URIs");
      return;
    }
  items = g_strsplit_set (uris, "; \t", -1);
  for (guint i = 0; items[i]; i++)
    {
      if (items[i][0] == '\0')
        continue;
      n++;
      if (!g_str_has_prefix (items[i], "ldap://") && !g_str_has_prefix (items[i], "ldaps://")
          && !g_str_has_prefix (items[i], "ldapi://"))
        conf_problem (ld, group, s->key, "'%s' is not an ldap://, ldaps:// or ldapi:// URI", items[i]);
    }
  if (n == 0 || n > 16)
    conf_problem (ld, group, s->key, "give 1 to 16 URIs");
}

void
conf_check_ldap_base (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  if (CONF_FIELD (base, s, char *) == NULL && ldap_backend (base))
    conf_problem (ld, group, s->key, "backend = ldap needs the search base");
}

/* A filter template: in parentheses, balanced, escapes %u %n %d %% only. */
void
conf_check_ldap_filter (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  const char *f = CONF_FIELD (base, s, char *);
  int depth = 0;

  for (const char *p = f; *p; p++)
    {
      if (*p == '%' && (p[1] == '\0' || !strchr ("und%", p[1])))
        {
          conf_problem (ld, group, s->key, "unknown escape in '%s' (use %%u, %%n, %%d or %%%%)", f);
          return;
        }
      if (*p == '%')
        p++;
      else if (*p == '(')
        depth++;
      else if (*p == ')' && --depth < 0)
        break;
    }
  if (f[0] != '(' || depth != 0 || f[strlen (f) - 1] != ')')
    conf_problem (ld, group, s->key, "'%s' is not a filter in balanced parentheses", f);
}

/* An attribute name (or an OID); empty: the attribute is not read. */
void
conf_check_ldap_attribute (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  const char *a;

  conf_check_empty_is_unset (ld, kf, group, s, base);
  a = CONF_FIELD (base, s, char *);
  if (a == NULL)
    return;
  for (const char *p = a; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '.' && *p != ';')
      {
        conf_problem (ld, group, s->key, "'%s' is not an attribute name", a);
        return;
      }
  if (strlen (a) > 128)
    conf_problem (ld, group, s->key, "'%s' is too long for an attribute name", a);
}

void
conf_check_readable_file (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  const char *path;

  conf_check_empty_is_unset (ld, kf, group, s, base);
  path = CONF_FIELD (base, s, char *);
  if (path && !g_file_test (path, G_FILE_TEST_IS_REGULAR))
    conf_problem (ld, group, s->key, "'%s' is not a readable file", path);
}

void
conf_check_ldap_password_file (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;

  conf_check_readable_file (ld, kf, group, s, base);
  if (c->ldap_bind_dn && c->ldap_bind_dn[0] && c->ldap_bind_password_file == NULL)
    conf_problem (ld, group, s->key, "ldap_bind_dn needs a password file");
  else if ((c->ldap_bind_dn == NULL || c->ldap_bind_dn[0] == '\0') && c->ldap_bind_password_file)
    conf_problem (ld, group, s->key, "a password file needs ldap_bind_dn");
}
