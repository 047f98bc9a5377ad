/* conf-values.c - typed values of a key file: numbers with units (the one
 * size parser), durations, booleans, lists and listener specs; and the
 * error domain of lmtpd-conf.h, which they are at the bottom to raise.
 *
 * An invalid value is reported as a problem and leaves the setting as it
 * was, so one run reports every problem of the file.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "conf-private.h"

G_DEFINE_QUARK (lmtpd-conf-error-quark, lmtpd_conf_error)

char *
conf_get_string (GKeyFile *kf, const char *group, const char *key)
{
  char *v = g_key_file_get_string (kf, group, key, NULL);
  if (v)
    g_strstrip (v);
  return v;
}

void
conf_get_path (GKeyFile *kf, const char *group, const char *key, char **out)
{
  char *s = conf_get_string (kf, group, key);
  if (s == NULL)
    return;
  g_free (*out);
  *out = s;
}

static guint64
unit_multiplier (const char **end, ConfUnits units)
{
  const char *u = *end;
  guint64 mult = 0;

  if (units == CONF_UNITS_SIZE)
    {
      switch (g_ascii_tolower (*u))
        {
        case 'k': mult = 1024; break;
        case 'm': mult = 1024 * 1024; break;
        case 'g': mult = 1024 * 1024 * 1024; break;
        default: break;
        }
      /* "10M" and "10MB" alike */
      if (mult && (u[1] == '\0' || (g_ascii_tolower (u[1]) == 'b' && u[2] == '\0')))
        *end = u + strlen (u);
      return mult;
    }
  switch (*u)
    {
    case 's': mult = 1; break;
    case 'm': mult = 60; break;
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    default: break;
    }
  if (mult && u[1] == '\0')
    *end = u + 1;
  return mult;
}

/* Digits, optional blanks, then an optional unit of @units.  The users
 * map's quota= and the settings share it: one rule for every size. */
ConfNumberResult
conf_parse_number (const char *s, ConfUnits units, guint64 *out)
{
  char *digits_end = NULL;
  const char *end;
  guint64 v, mult = 1;

  if (!g_ascii_isdigit (*s))
    return CONF_NUMBER_NOT_NUMBER;
  errno = 0;
  v = g_ascii_strtoull (s, &digits_end, 10);
  if (errno != 0)
    return CONF_NUMBER_NOT_NUMBER;
  end = digits_end;
  while (*end == ' ')
    end++;
  if (*end)
    mult = unit_multiplier (&end, units);
  if (*end != '\0' || mult == 0)
    return CONF_NUMBER_BAD_UNIT;
  if (v > G_MAXUINT64 / mult)
    return CONF_NUMBER_TOO_BIG;
  *out = v * mult;
  return CONF_NUMBER_OK;
}

gboolean
conf_get_number (ConfLoader *ld, GKeyFile *kf, const char *group, const char *key, ConfUnits units,
                 guint64 min, guint64 max, guint64 *value)
{
  g_autofree char *s = conf_get_string (kf, group, key);
  guint64 v = 0;
  ConfNumberResult r;

  if (s == NULL)
    return FALSE;
  r = conf_parse_number (s, units, &v);
  if (r == CONF_NUMBER_NOT_NUMBER)
    conf_problem (ld, group, key, "'%s' is not a number", s);
  else if (r == CONF_NUMBER_BAD_UNIT)
    conf_problem (ld, group, key, "'%s' has an unknown unit (use %s)", s,
                  units == CONF_UNITS_SIZE ? "k, M or G" : "s, m, h or d");
  else if (r == CONF_NUMBER_TOO_BIG || v < min || v > max)
    conf_problem (ld, group, key, "'%s' is out of range (%" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT ")", s,
                  min, max);
  else
    {
      *value = v;
      return TRUE;
    }
  return FALSE;
}

/* "250ms", "2s", "1m" or plain seconds, to milliseconds */
void
conf_get_ms (ConfLoader *ld, GKeyFile *kf, const char *group, const char *key, guint *out)
{
  g_autofree char *s = conf_get_string (kf, group, key);
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
  conf_problem (ld, group, key, "'%s' is not a duration like 500ms, 2s or 1m", s);
}

void
conf_get_bool (ConfLoader *ld, GKeyFile *kf, const char *group, const char *key, gboolean *out)
{
  g_autoptr (GError) err = NULL;
  gboolean b;

  if (!g_key_file_has_key (kf, group, key, NULL))
    return;
  b = g_key_file_get_boolean (kf, group, key, &err);
  if (err)
    conf_problem (ld, group, key, "expected true or false");
  else
    *out = b;
}

char **
conf_clean_list (char **list, gboolean lower)
{
  GPtrArray *a = g_ptr_array_new ();

  for (guint i = 0; list && list[i]; i++)
    {
      char *s = g_strstrip (list[i]);
      if (*s)
        g_ptr_array_add (a, lower ? g_ascii_strdown (s, -1) : g_strdup (s));
    }
  g_ptr_array_add (a, NULL);
  return (char **) g_ptr_array_free (a, FALSE);
}

/* ---- listeners ---------------------------------------------------------- */

void
lmtpd_listen_free (LmtpdListen *l)
{
  g_free (l->host);
  g_free (l->path);
  g_free (l);
}

LmtpdListen *
lmtpd_listen_parse (const char *spec, GError **error)
{
  g_autofree char *why = NULL;
  LmtpdListen *l = conf_parse_listen (spec, &why);
  if (l == NULL)
    g_set_error_literal (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, why);
  return l;
}

static LmtpdListen *
parse_unix (const char *spec, char **why)
{
  LmtpdListen *l = g_new0 (LmtpdListen, 1);

  l->kind = LMTPD_LISTEN_UNIX;
  l->path = g_strdup (spec + 5);
  if (strlen (l->path) < 100)
    return l;
  *why = g_strdup_printf ("socket path '%s' is longer than 99 bytes", l->path);
  lmtpd_listen_free (l);
  return NULL;
}

/* HOST:PORT after "inet:", HOST possibly [v6]; NULL if it is not that */
static LmtpdListen *
parse_inet (const char *hp)
{
  const char *colon = strrchr (hp, ':');
  char *end = NULL;
  guint64 port;
  LmtpdListen *l;

  if (colon == NULL || colon == hp)
    return NULL;
  port = g_ascii_strtoull (colon + 1, &end, 10);
  if (!end || *end != '\0' || !colon[1] || port >= 65536)
    return NULL;
  l = g_new0 (LmtpdListen, 1);
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

LmtpdListen *
conf_parse_listen (const char *spec, char **why)
{
  LmtpdListen *l = NULL;

  if (g_str_has_prefix (spec, "unix:") && spec[5] != '\0')
    return parse_unix (spec, why);
  if (g_str_has_prefix (spec, "inet:"))
    l = parse_inet (spec + 5);
  if (l == NULL)
    *why = g_strdup_printf ("'%s' is not inet:HOST:PORT or unix:PATH", spec);
  return l;
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

char *
conf_listen_list_text (const GPtrArray *listen)
{
  GString *out = g_string_new (NULL);

  for (guint i = 0; listen && i < listen->len; i++)
    {
      const LmtpdListen *l = listen->pdata[i];
      if (l->kind == LMTPD_LISTEN_UNIX)
        g_string_append_printf (out, "%sunix:%s", i ? ";" : "", l->path);
      else
        g_string_append_printf (out, "%sinet:%s:%u", i ? ";" : "", l->host, l->port);
    }
  return g_string_free (out, FALSE);
}

/* "key =" with nothing: as if not set */
void
conf_check_empty_is_unset (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  char **v = &CONF_FIELD (base, s, char *);

  if (*v && (*v)[0] == '\0')
    g_clear_pointer (v, g_free);
}
