/* users-pgsql.c - the [users] pgsql_* settings, checked as far as they can
 * be without the server: --check-config and a reload refuse a connection
 * string that libpq could not parse, a password file that cannot be read
 * and a query that cannot be the one lookup the backend makes.
 *
 * The password is read here, at load: lmtpd reads its configuration as
 * root at start, and the directory connects later as the mail user.
 * libpq parses the connection string again when the backend opens
 * (directory/dir-pgsql.c); this file only needs no libpq for it, so that
 * everything that links conf/ does not link libpq too.
 */
#include "config.h"

#include <string.h>

#include "conf-private.h"

#define CONNINFO_MAX 4096
#define PASSWORD_MAX 1024
#define QUERY_MAX 8192

static gboolean
has_control (const char *s)
{
  for (const guchar *p = (const guchar *) s; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return TRUE;
  return FALSE;
}

/* A value of a "key=value" string: bare, or single-quoted with backslash
 * escapes (libpq's rules).  Returns where it ends, or NULL. */
static const char *
conninfo_value (const char *p)
{
  if (*p != '\'')
    {
      for (; *p && !g_ascii_isspace (*p); p++)
        if (*p == '\\' && *++p == '\0')
          return NULL;
      return p;
    }
  for (p++; *p != '\''; p++)
    if (*p == '\0' || (*p == '\\' && *++p == '\0'))
      return NULL;
  return p + 1;
}

/* NULL if @s reads as a libpq connection string, else why not. */
static const char *
conninfo_problem (const char *s)
{
  const char *p = s;

  if (g_str_has_prefix (s, "postgresql://") || g_str_has_prefix (s, "postgres://"))
    return NULL;
  while (*p)
    {
      const char *key = p;

      while (g_ascii_isspace (*p))
        key = ++p;
      if (*p == '\0')
        break;
      while (g_ascii_isalnum (*p) || *p == '_')
        p++;
      if (p == key)
        return "expected keyword=value or a postgresql:// URI";
      while (g_ascii_isspace (*p))
        p++;
      if (*p++ != '=')
        return "a keyword without '='";
      while (g_ascii_isspace (*p))
        p++;
      if ((p = conninfo_value (p)) == NULL)
        return "an unterminated quoted value";
    }
  return NULL;
}

void
conf_check_pgsql_conninfo (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  const char *v = c->users_pgsql_conninfo;
  const char *why;

  if (v == NULL || v[0] == '\0')
    {
      if (c->users_backend_kind == LMTPD_USERS_PGSQL)
        conf_problem (ld, group, s->key, "backend pgsql needs a connection string (\"host=... dbname=...\")");
      return;
    }
  if (has_control (v))
    conf_problem (ld, group, s->key, "contains a control character");
  else if (strlen (v) > CONNINFO_MAX)
    conf_problem (ld, group, s->key, "is longer than %d bytes", CONNINFO_MAX);
  else if ((why = conninfo_problem (v)) != NULL)
    conf_problem (ld, group, s->key, "'%s' is not a libpq connection string: %s", v, why);
}

/* The password is the file's first line, without its line end. */
void
conf_load_pgsql_password (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  g_autofree char *text = NULL;
  g_autoptr (GError) err = NULL;
  gsize len = 0;

  if (c->users_pgsql_password_file == NULL)
    return;
  if (!g_file_get_contents (c->users_pgsql_password_file, &text, &len, &err))
    {
      conf_problem (ld, group, s->key, "%s", err->message);
      return;
    }
  text[strcspn (text, "\r\n")] = '\0';
  if (text[0] == '\0' || len > PASSWORD_MAX || has_control (text))
    conf_problem (ld, group, s->key, "%s: want one line of at most %d bytes, the password",
                  c->users_pgsql_password_file, PASSWORD_MAX);
  else
    {
      g_free (c->users_pgsql_password);
      c->users_pgsql_password = g_strdup (text);
    }
  memset (text, 0, len);
}

/* The parameters a query names: $1 to $3 only, at least one of them. */
void
conf_check_pgsql_query (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  const char *q = CONF_FIELD (base, s, char *);
  gboolean uses_address = FALSE;

  if (q == NULL && s->def_text == NULL)
    return; /* an optional query (pgsql_password_query) left unset */
  if (q == NULL || q[0] == '\0' || strlen (q) > QUERY_MAX)
    {
      conf_problem (ld, group, s->key, "want one query of 1 to %d bytes", QUERY_MAX);
      return;
    }
  for (const char *p = strchr (q, '$'); p; p = strchr (p + 1, '$'))
    {
      if (!g_ascii_isdigit (p[1]))
        continue;
      if (p[1] < '1' || p[1] > '3' || g_ascii_isdigit (p[2]))
        {
          conf_problem (ld, group, s->key, "'%.*s': the parameters are $1 (address), $2 (local part) and "
                        "$3 (domain)", (int) strspn (p + 1, "0123456789") + 1, p);
          return;
        }
      uses_address = TRUE;
    }
  if (!uses_address)
    conf_problem (ld, group, s->key, "never names the address ($1, $2 or $3): it would find the same row "
                  "for everyone");
}

/* [state] pgsql_conninfo, checked as [users]'s; unset with backend pgsql,
 * [users] pgsql_conninfo must be there (it is then used). */
void
conf_check_state_conninfo (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  LmtpdConfig *c = base;
  const char *v = c->state_pgsql_conninfo;
  const char *why;

  if (v == NULL || v[0] == '\0')
    {
      if (c->state_backend == LMTPD_STATE_PGSQL && (c->users_pgsql_conninfo == NULL || !c->users_pgsql_conninfo[0]))
        conf_problem (ld, group, s->key, "backend pgsql needs a connection string (here or in [users])");
      return;
    }
  if (has_control (v))
    conf_problem (ld, group, s->key, "contains a control character");
  else if (strlen (v) > CONNINFO_MAX)
    conf_problem (ld, group, s->key, "is longer than %d bytes", CONNINFO_MAX);
  else if ((why = conninfo_problem (v)) != NULL)
    conf_problem (ld, group, s->key, "'%s' is not a libpq connection string: %s", v, why);
}
