/* dir-pgsql-row.c - the row the pgsql backend's query returns, read into
 * a DirectoryUser.
 *
 * Columns are taken by name, so a site maps its own schema in the query
 * ("SELECT maildir AS mailbox, ..."): mailbox, quota_bytes,
 * quota_messages, sieve_script, enabled, alias_of, settings, host.  Each
 * is optional; a missing column or NULL means "not set" (and, for
 * enabled, enabled).  A value that cannot be meant (a quota that is not a
 * number, a path with "..", a setting that is not "Name: value", a
 * control character anywhere) is a bad answer: TEMPFAIL, so the mail
 * waits while the administrator fixes the row, rather than going
 * somewhere else.
 */
#include "config.h"

#include <string.h>

#include "dir-pgsql.h"

#define VALUE_MAX 4096          /* bytes of one column or one setting */
#define SETTINGS_MAX 64         /* settings of one user */
#define TEXTARRAYOID 1009       /* text[] (catalog/pg_type_d.h, not installed with libpq-fe.h) */
#define VARCHARARRAYOID 1015    /* varchar[] */

static gboolean
bad (GError **error, const char *column, const char *why)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "pgsql: column %s: %s", column, why);
  return FALSE;
}

static gboolean
text_ok (const char *s)
{
  if (strlen (s) > VALUE_MAX)
    return FALSE;
  for (const guchar *p = (const guchar *) s; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return FALSE;
  return TRUE;
}

/* The text of column @name of the row, NULL if there is no such column or
 * it is NULL or empty. */
static const char *
column (const PGresult *res, const char *name)
{
  int i = PQfnumber (res, name);
  const char *v;

  if (i < 0 || PQgetisnull (res, 0, i))
    return NULL;
  v = PQgetvalue (res, 0, i);
  return v[0] ? v : NULL;
}

/* A text column into *@out (NULL if unset); @path: no "..". */
static gboolean
take_text (const PGresult *res, const char *name, gboolean path, char **out, GError **error)
{
  const char *v = column (res, name);

  if (v == NULL)
    return TRUE;
  if (!text_ok (v))
    return bad (error, name, "too long or holds a control character");
  if (path && strstr (v, "..") != NULL)
    return bad (error, name, "a path may not contain '..'");
  *out = g_strdup (v);
  return TRUE;
}

static gboolean
take_number (const PGresult *res, const char *name, guint64 *out, GError **error)
{
  const char *v = column (res, name);

  if (v == NULL)
    return TRUE;
  if (!g_ascii_string_to_unsigned (v, 10, 0, G_MAXUINT64, out, NULL))
    return bad (error, name, "not a number of 0 or more");
  return TRUE;
}

/* enabled: a boolean, or t/f, true/false, 1/0, yes/no, on/off. */
static gboolean
take_enabled (const PGresult *res, gboolean *disabled, GError **error)
{
  static const char *const yes[] = { "t", "true", "1", "yes", "on", NULL };
  static const char *const no[] = { "f", "false", "0", "no", "off", NULL };
  const char *v = column (res, "enabled");

  if (v == NULL)
    return TRUE;
  for (guint i = 0; yes[i]; i++)
    if (g_ascii_strcasecmp (v, yes[i]) == 0)
      return TRUE;
  for (guint i = 0; no[i]; i++)
    if (g_ascii_strcasecmp (v, no[i]) == 0)
      return (*disabled = TRUE);
  return bad (error, "enabled", "not a boolean");
}

/* "Name: value": a name of letters, digits and '-', then ':'. */
static gboolean
setting_ok (const char *s)
{
  gsize n = strspn (s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-");
  return n > 0 && s[n] == ':' && text_ok (s);
}

/* Adds one setting (trimmed; empty ones are skipped). */
static gboolean
add_setting (GPtrArray *out, char *s, GError **error)
{
  g_strstrip (s);
  if (s[0] == '\0')
    return TRUE;
  if (out->len >= SETTINGS_MAX)
    return bad (error, "settings", "too many settings");
  if (!setting_ok (s))
    return bad (error, "settings", "want \"Name: value\" lines");
  g_ptr_array_add (out, g_strdup (s));
  return TRUE;
}

/* One element of a text[] in PostgreSQL's output syntax, from *@p to the
 * ',' or '}' after it; NULL for a NULL element. */
static char *
array_element (const char **p)
{
  GString *e = g_string_new (NULL);
  const char *s = *p;
  gboolean quoted = *s == '"';

  for (s += quoted; *s && (quoted ? *s != '"' : *s != ',' && *s != '}'); s++)
    {
      if (*s == '\\' && s[1])
        s++;
      g_string_append_c (e, *s);
    }
  if (quoted && *s == '"')
    s++;
  *p = s;
  if (!quoted && g_ascii_strcasecmp (e->str, "NULL") == 0)
    {
      g_string_free (e, TRUE);
      return NULL;
    }
  return g_string_free (e, FALSE);
}

/* A one-dimensional text[] ("{a,\"b c\",NULL}") into @out. */
static gboolean
array_settings (const char *v, GPtrArray *out, GError **error)
{
  const char *p = v;

  if (*p == '[')
    p = strchr (p, '=') ? strchr (p, '=') + 1 : p; /* "[0:1]={...}": bounds other than 1 */
  if (*p++ != '{')
    return bad (error, "settings", "not an array");
  while (*p && *p != '}')
    {
      g_autofree char *e = NULL;

      if (*p == '{')
        return bad (error, "settings", "an array of more than one dimension");
      e = array_element (&p);
      if (e && !add_setting (out, e, error))
        return FALSE;
      if (*p == ',')
        p++;
      else if (*p != '}')
        return bad (error, "settings", "a malformed array");
    }
  return *p == '}' || bad (error, "settings", "an unterminated array");
}

static gboolean
take_settings (const PGresult *res, char ***out, GError **error)
{
  const char *v = column (res, "settings");
  g_autoptr (GPtrArray) list = NULL;
  Oid type;

  if (v == NULL)
    return TRUE;
  list = g_ptr_array_new_with_free_func (g_free);
  type = PQftype (res, PQfnumber (res, "settings"));
  if (type == TEXTARRAYOID || type == VARCHARARRAYOID)
    {
      if (!array_settings (v, list, error))
        return FALSE;
    }
  else
    {
      g_auto (GStrv) lines = g_strsplit (v, "\n", SETTINGS_MAX + 2);
      for (guint i = 0; lines[i]; i++)
        if (!add_setting (list, lines[i], error))
          return FALSE;
    }
  if (list->len == 0)
    return TRUE;
  g_ptr_array_add (list, NULL);
  *out = (char **) g_ptr_array_free (g_steal_pointer (&list), FALSE);
  return TRUE;
}

/* alias_of must be an address: something@something, of safe text. */
static gboolean
take_alias (const PGresult *res, char **out, GError **error)
{
  const char *at;

  if (!take_text (res, "alias_of", FALSE, out, error))
    return FALSE;
  if (*out == NULL)
    return TRUE;
  at = strrchr (*out, '@');
  if (at == NULL || at == *out || at[1] == '\0' || strchr (*out, ' '))
    return bad (error, "alias_of", "not an address");
  return TRUE;
}

DirectoryResult
pgsql_row_user (const PGresult *res, const char *address, DirectoryUser **out, GError **error)
{
  g_autoptr (DirectoryUser) u = NULL;
  int rows = PQntuples (res);

  if (rows == 0)
    return DIRECTORY_UNKNOWN;
  if (rows > 1)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "pgsql: the query returned %d rows for <%s>: a configuration error, it must return one "
                   "row per user at most", rows, address);
      return DIRECTORY_TEMPFAIL;
    }
  u = g_new0 (DirectoryUser, 1);
  u->address = g_strdup (address);
  if (!take_text (res, "mailbox", TRUE, &u->mailbox, error) || !take_number (res, "quota_bytes", &u->quota_bytes, error)
      || !take_number (res, "quota_messages", &u->quota_messages, error)
      || !take_text (res, "sieve_script", TRUE, &u->sieve_script, error)
      || !take_enabled (res, &u->disabled, error) || !take_alias (res, &u->alias_of, error)
      || !take_settings (res, &u->settings, error) || !take_text (res, "host", FALSE, &u->host, error))
    return DIRECTORY_TEMPFAIL;
  if (out)
    *out = g_steal_pointer (&u);
  return DIRECTORY_FOUND;
}
