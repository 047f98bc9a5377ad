/* lmtp-command.c - parsing LMTP command lines (RFC 2033, RFC 5321 4.1).
 * Pure functions: no I/O, no state; the session decides what to answer.
 */
#include "config.h"

#include <string.h>

#include "lmtpd.h"

static const struct {
  const char *name;
  LmtpVerb verb;
} verbs[] = {
  { "LHLO", LMTP_CMD_LHLO }, { "HELO", LMTP_CMD_HELO }, { "EHLO", LMTP_CMD_EHLO },
  { "MAIL", LMTP_CMD_MAIL }, { "RCPT", LMTP_CMD_RCPT }, { "DATA", LMTP_CMD_DATA },
  { "BDAT", LMTP_CMD_BDAT }, { "RSET", LMTP_CMD_RSET }, { "NOOP", LMTP_CMD_NOOP },
  { "QUIT", LMTP_CMD_QUIT }, { "VRFY", LMTP_CMD_VRFY }, { "HELP", LMTP_CMD_HELP },
};

LmtpVerb
lmtp_command_verb (const char *line, const char **args)
{
  gsize n = strcspn (line, " ");

  *args = line[n] == ' ' ? line + n + 1 : line + n;
  if (n == 8 && g_ascii_strncasecmp (line, "XFORWARD", 8) == 0)
    return LMTP_CMD_XFORWARD;
  if (n == 7 && g_ascii_strncasecmp (line, "XCLIENT", 7) == 0)
    return LMTP_CMD_XCLIENT;
  if (n == 8 && g_ascii_strncasecmp (line, "STARTTLS", 8) == 0)
    return LMTP_CMD_STARTTLS;
  if (n != 4)
    return LMTP_CMD_UNKNOWN;
  for (guint i = 0; i < G_N_ELEMENTS (verbs); i++)
    if (g_ascii_strncasecmp (line, verbs[i].name, 4) == 0)
      return verbs[i].verb;
  return LMTP_CMD_UNKNOWN;
}

static void
param_free (gpointer p)
{
  LmtpParam *param = p;
  g_free (param->keyword);
  g_free (param->value);
  g_free (param);
}

void
lmtp_path_args_clear (LmtpPathArgs *a)
{
  g_clear_pointer (&a->path, g_free);
  g_clear_pointer (&a->params, g_ptr_array_unref);
}

const LmtpParam *
lmtp_path_args_find (const LmtpPathArgs *a, const char *keyword)
{
  for (guint i = 0; a->params && i < a->params->len; i++)
    {
      const LmtpParam *p = a->params->pdata[i];
      if (strcmp (p->keyword, keyword) == 0)
        return p;
    }
  return NULL;
}

/* esmtp-param = esmtp-keyword ["=" esmtp-value] (RFC 5321 4.1.2) */
static gboolean
parse_param (const char *s, gsize len, LmtpParam **out)
{
  const char *eq = memchr (s, '=', len);
  gsize klen = eq ? (gsize) (eq - s) : len;

  if (klen == 0 || !g_ascii_isalnum (s[0]))
    return FALSE;
  for (gsize i = 1; i < klen; i++)
    if (!g_ascii_isalnum (s[i]) && s[i] != '-')
      return FALSE;
  if (eq)
    {
      if (eq + 1 == s + len)
        return FALSE;
      for (const char *p = eq + 1; p < s + len; p++)
        /* esmtp-value: %d33-60 / %d62-126, plus UTF-8 (RFC 6531) */
        if ((guchar) *p < 33 || *p == '=' || *p == 127)
          return FALSE;
    }
  *out = g_new0 (LmtpParam, 1);
  (*out)->keyword = g_ascii_strup (s, klen);
  (*out)->value = eq ? g_strndup (eq + 1, s + len - eq - 1) : NULL;
  return TRUE;
}

gboolean
lmtp_command_parse_path (const char *args, const char *prefix, LmtpPathArgs *out, const char **why)
{
  gsize plen = strlen (prefix);
  const char *p, *start;
  gboolean quoted = FALSE;

  memset (out, 0, sizeof *out);
  if (g_ascii_strncasecmp (args, prefix, plen) != 0)
    return (*why = prefix[0] == 'F' ? "Syntax: MAIL FROM:<address>" : "Syntax: RCPT TO:<address>", FALSE);
  p = args + plen;
  if (*p == ' ')
    p++;
  if (*p != '<')
    return (*why = "Missing '<' around the address", FALSE);
  start = ++p;
  for (; *p && (quoted || *p != '>'); p++)
    {
      if (quoted && *p == '\\' && p[1])
        p++;
      else if (*p == '"')
        quoted = !quoted;
    }
  if (*p != '>')
    return (*why = "Missing '>' after the address", FALSE);
  /* A-d-l (source route) is accepted and ignored, RFC 5321 4.1.2 / C */
  if (*start == '@')
    {
      const char *colon = memchr (start, ':', p - start);
      if (colon == NULL)
        return (*why = "Bad source route", FALSE);
      start = colon + 1;
    }
  out->path = g_strndup (start, p - start);
  out->params = g_ptr_array_new_with_free_func (param_free);
  for (p++; *p;)
    {
      gsize n;
      LmtpParam *param;

      if (*p != ' ')
        {
          lmtp_path_args_clear (out);
          return (*why = "Invalid parameters", FALSE);
        }
      while (*p == ' ')
        p++;
      n = strcspn (p, " ");
      if (n == 0)
        break;
      if (!parse_param (p, n, &param))
        {
          lmtp_path_args_clear (out);
          return (*why = "Invalid parameter syntax", FALSE);
        }
      g_ptr_array_add (out->params, param);
      p += n;
    }
  return TRUE;
}

gboolean
lmtp_command_parse_bdat (const char *args, guint64 *size, gboolean *last)
{
  const char *p = args;
  guint64 v = 0;

  if (!g_ascii_isdigit (*p))
    return FALSE;
  for (; g_ascii_isdigit (*p); p++)
    {
      if (v > (G_MAXUINT64 - 9) / 10)
        return FALSE;
      v = v * 10 + (*p - '0');
    }
  *last = FALSE;
  if (*p == ' ')
    {
      while (*p == ' ')
        p++;
      if (g_ascii_strcasecmp (p, "LAST") != 0)
        return FALSE;
      *last = TRUE;
    }
  else if (*p != '\0')
    return FALSE;
  *size = v;
  return TRUE;
}

char *
lmtp_xtext_decode (const char *s)
{
  GString *out = g_string_new (NULL);

  for (const char *p = s; *p; p++)
    {
      if (*p == '+')
        {
          int hi = g_ascii_xdigit_value (p[1]), lo = hi < 0 ? -1 : g_ascii_xdigit_value (p[2]);
          if (hi < 0 || lo < 0 || (hi << 4 | lo) == 0)
            {
              g_string_free (out, TRUE);
              return NULL;
            }
          g_string_append_c (out, (char) (hi << 4 | lo));
          p += 2;
        }
      else if ((guchar) *p < 33 || (guchar) *p > 126 || *p == '=')
        {
          g_string_free (out, TRUE);
          return NULL;
        }
      else
        g_string_append_c (out, *p);
    }
  return g_string_free (out, FALSE);
}
