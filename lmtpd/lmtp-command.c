/* lmtp-command.c - parsing LMTP command lines (RFC 2033, RFC 5321 4.1):
 * verbs, paths, every MAIL and RCPT parameter, BDAT, XFORWARD and XCLIENT
 * attributes.  Pure functions: no I/O, no state; a bad argument comes
 * back as the reply it deserves (lmtp-reply.h), and the session decides
 * what to do with it.
 */
#include "config.h"

#include <string.h>

#include "deliver.h"
#include "lmtpd.h"
#include "lmtp-reply.h"

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

/* The address between < and >, with any source route (A-d-l, RFC 5321
 * 4.1.2 and appendix C) accepted and ignored.  Returns NULL and sets
 * *why if the brackets do not close; *rest: after the '>'. */
static char *
parse_angle_path (const char *p, const char **rest, const char **why)
{
  const char *start;
  gboolean quoted = FALSE;

  if (*p != '<')
    {
      *why = "Missing '<' around the address";
      return NULL;
    }
  start = ++p;
  for (; *p && (quoted || *p != '>'); p++)
    {
      if (quoted && *p == '\\' && p[1])
        p++;
      else if (*p == '"')
        quoted = !quoted;
    }
  if (*p != '>')
    {
      *why = "Missing '>' after the address";
      return NULL;
    }
  if (*start == '@')
    {
      const char *colon = memchr (start, ':', p - start);
      if (colon == NULL)
        {
          *why = "Bad source route";
          return NULL;
        }
      start = colon + 1;
    }
  *rest = p + 1;
  return g_strndup (start, p - start);
}

/* " KEY[=value]..." after the path into @params. */
static gboolean
parse_params (const char *p, GPtrArray *params, const char **why)
{
  while (*p)
    {
      gsize n;
      LmtpParam *param;

      if (*p != ' ')
        {
          *why = "Invalid parameters";
          return FALSE;
        }
      while (*p == ' ')
        p++;
      n = strcspn (p, " ");
      if (n == 0)
        break;
      if (!parse_param (p, n, &param))
        {
          *why = "Invalid parameter syntax";
          return FALSE;
        }
      g_ptr_array_add (params, param);
      p += n;
    }
  return TRUE;
}

gboolean
lmtp_command_parse_path (const char *args, const char *prefix, LmtpPathArgs *out, const char **why)
{
  gsize plen = strlen (prefix);
  const char *p, *rest = NULL;

  memset (out, 0, sizeof *out);
  if (g_ascii_strncasecmp (args, prefix, plen) != 0)
    {
      *why = prefix[0] == 'F' ? "Syntax: MAIL FROM:<address>" : "Syntax: RCPT TO:<address>";
      return FALSE;
    }
  p = args + plen;
  if (*p == ' ')
    p++;
  out->path = parse_angle_path (p, &rest, why);
  if (out->path == NULL)
    return FALSE;
  out->params = g_ptr_array_new_with_free_func (param_free);
  if (!parse_params (rest, out->params, why))
    {
      lmtp_path_args_clear (out);
      return FALSE;
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

/* ---- MAIL and RCPT parameters -------------------------------------------- */

static const char *
mail_param_size (const char *v, guint64 max_size, LmtpMailParams *out)
{
  char *end = NULL;
  guint64 n;

  if (v == NULL || !g_ascii_isdigit (*v))
    return LMTP_REPLY_BAD_SIZE;
  n = g_ascii_strtoull (v, &end, 10);
  if (*end)
    return LMTP_REPLY_BAD_SIZE;
  if (max_size && n > max_size)
    return LMTP_REPLY_SIZE_EXCEEDED;
  out->size = n;
  return NULL;
}

static const char *
mail_param_body (const char *v, guint64 max_size, LmtpMailParams *out)
{
  if (v && g_ascii_strcasecmp (v, "BINARYMIME") == 0)
    out->binarymime = TRUE;
  else if (v == NULL || (g_ascii_strcasecmp (v, "7BIT") && g_ascii_strcasecmp (v, "8BITMIME")))
    return LMTP_REPLY_BAD_BODY;
  return NULL;
}

static const char *
mail_param_smtputf8 (const char *v, guint64 max_size, LmtpMailParams *out)
{
  if (v != NULL)
    return LMTP_REPLY_BAD_SMTPUTF8;
  out->smtputf8 = TRUE;
  return NULL;
}

static const char *
mail_param_ret (const char *v, guint64 max_size, LmtpMailParams *out)
{
  if (v == NULL || (g_ascii_strcasecmp (v, "FULL") && g_ascii_strcasecmp (v, "HDRS")))
    return LMTP_REPLY_BAD_RET;
  return NULL;
}

static const char *
mail_param_envid (const char *v, guint64 max_size, LmtpMailParams *out)
{
  g_autofree char *d = v ? lmtp_xtext_decode (v) : NULL;

  return d == NULL ? LMTP_REPLY_BAD_ENVID : NULL;
}

static const struct {
  const char *keyword;
  const char *(*check) (const char *value, guint64 max_size, LmtpMailParams *out);
} mail_params[] = {
  { "SIZE", mail_param_size },
  { "BODY", mail_param_body },
  { "SMTPUTF8", mail_param_smtputf8 },
  { "RET", mail_param_ret },
  { "ENVID", mail_param_envid },
};

const char *
lmtp_command_mail_params (const LmtpPathArgs *a, guint64 max_size, LmtpMailParams *out)
{
  memset (out, 0, sizeof *out);
  for (guint i = 0; i < a->params->len; i++)
    {
      const LmtpParam *p = a->params->pdata[i];
      const char *err = LMTP_REPLY_UNSUPPORTED_PARAM;

      for (guint k = 0; k < G_N_ELEMENTS (mail_params); k++)
        if (strcmp (p->keyword, mail_params[k].keyword) == 0)
          err = mail_params[k].check (p->value, max_size, out);
      if (err)
        return err;
    }
  return NULL;
}

char *
lmtp_command_params_text (const LmtpPathArgs *a)
{
  GString *ps = g_string_new (NULL);

  for (guint i = 0; i < a->params->len; i++)
    {
      const LmtpParam *p = a->params->pdata[i];
      g_string_append_printf (ps, "%s%s%s%s", i ? " " : "", p->keyword, p->value ? "=" : "",
                              p->value ? p->value : "");
    }
  return g_string_free (ps, FALSE);
}

/* Decodes @v into *slot (the last one given wins); FALSE if malformed. */
static gboolean
rcpt_param_xtext (const char *v, char **slot)
{
  char *d = v ? lmtp_xtext_decode (v) : NULL;

  if (d == NULL)
    return FALSE;
  g_free (*slot);
  *slot = d;
  return TRUE;
}

/* One RCPT parameter: RFC 3461 ORCPT=addr-type;xtext and NOTIFY (whose
 * value is not looked at); OPES-BYPASS (RFC 4902 3.2), bypass asked for
 * in the dialog, which policy decides on. */
static LmtpParamResult
rcpt_param (const LmtpParam *p, LmtpRcptParams *out)
{
  const char *v = p->value;

  if (strcmp (p->keyword, "ORCPT") == 0)
    {
      const char *addr = v ? strchr (v, ';') : NULL;
      return addr && rcpt_param_xtext (addr + 1, &out->orcpt) ? LMTP_PARAM_OK : LMTP_PARAM_INVALID;
    }
  if (strcmp (p->keyword, "NOTIFY") == 0)
    return v ? LMTP_PARAM_OK : LMTP_PARAM_INVALID;
  if (strcmp (p->keyword, "OPES-BYPASS") == 0)
    return rcpt_param_xtext (v, &out->bypass) ? LMTP_PARAM_OK : LMTP_PARAM_INVALID;
  return LMTP_PARAM_UNSUPPORTED;
}

LmtpParamResult
lmtp_command_rcpt_params (const LmtpPathArgs *a, LmtpRcptParams *out, const char **bad)
{
  memset (out, 0, sizeof *out);
  for (guint i = 0; i < a->params->len; i++)
    {
      const LmtpParam *p = a->params->pdata[i];
      LmtpParamResult r = rcpt_param (p, out);
      if (r != LMTP_PARAM_OK)
        {
          *bad = p->keyword;
          return r;
        }
    }
  return LMTP_PARAM_OK;
}

void
lmtp_rcpt_params_clear (LmtpRcptParams *p)
{
  g_clear_pointer (&p->orcpt, g_free);
  g_clear_pointer (&p->text, g_free);
  g_clear_pointer (&p->bypass, g_free);
}

/* ---- XFORWARD and XCLIENT ------------------------------------------------ */

static const char *const xforward_attrs[] = { "NAME", "ADDR", "PROTO", "HELO", "SOURCE", "IDENT", "PORT", NULL };
static const char *const xclient_attrs[] = { "NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR",
                                             "DESTPORT", NULL };

void
lmtp_forwarded_clear (LmtpForwarded *f)
{
  g_clear_pointer (&f->name, g_free);
  g_clear_pointer (&f->addr, g_free);
  g_clear_pointer (&f->helo, g_free);
  g_clear_pointer (&f->ident, g_free);
}

static gboolean
attr_known (const char *name, const char *const *attrs)
{
  gboolean known = FALSE;

  for (guint k = 0; attrs[k]; k++)
    known |= g_ascii_strcasecmp (name, attrs[k]) == 0;
  return known;
}

/* ADDR: an IP address ("IPV6:" prefix allowed), kept in its usual form. */
static const char *
forwarded_addr (const char *value, gboolean unavailable, LmtpForwarded *f)
{
  const char *a = g_ascii_strncasecmp (value, "IPV6:", 5) == 0 ? value + 5 : value;
  g_autoptr (GInetAddress) ip = unavailable ? NULL : g_inet_address_new_from_string (a);

  if (!unavailable && ip == NULL)
    return LMTP_REPLY_ATTR_ADDRESS;
  g_free (f->addr);
  f->addr = ip ? g_inet_address_to_string (ip) : NULL;
  return NULL;
}

/* One "name=value" (modified in place); the attributes not kept
 * (PROTO, SOURCE, PORT, LOGIN, ...) are only checked. */
static const char *
forwarded_attr (char *item, const char *const *attrs, LmtpForwarded *f)
{
  char *eq = strchr (item, '=');
  g_autofree char *value = NULL;
  gboolean unavailable;
  char **slot = NULL;

  if (eq == NULL || eq == item)
    return LMTP_REPLY_ATTR_SYNTAX;
  *eq = '\0';
  if (!attr_known (item, attrs))
    return LMTP_REPLY_ATTR_NAME;
  value = lmtp_xtext_decode (eq + 1);
  if (value == NULL || value[0] == '\0')
    return LMTP_REPLY_ATTR_VALUE;
  unavailable = strcmp (value, "[UNAVAILABLE]") == 0 || strcmp (value, "[TEMPUNAVAIL]") == 0;
  if (g_ascii_strcasecmp (item, "ADDR") == 0)
    return forwarded_addr (value, unavailable, f);
  if (g_ascii_strcasecmp (item, "NAME") == 0)
    slot = &f->name;
  else if (g_ascii_strcasecmp (item, "HELO") == 0)
    slot = &f->helo;
  else if (g_ascii_strcasecmp (item, "IDENT") == 0)
    slot = &f->ident;
  if (slot)
    {
      g_free (*slot);
      *slot = unavailable ? NULL : util_sanitize (value, 255);
    }
  return NULL;
}

const char *
lmtp_command_parse_forwarded (const char *args, LmtpVerb verb, LmtpForwarded *f)
{
  const char *const *attrs = verb == LMTP_CMD_XCLIENT ? xclient_attrs : xforward_attrs;
  g_auto (GStrv) items = g_strsplit (args, " ", -1);
  gboolean any = FALSE;

  for (guint i = 0; items[i]; i++)
    {
      const char *err;

      if (items[i][0] == '\0')
        continue;
      err = forwarded_attr (items[i], attrs, f);
      if (err)
        return err;
      any = TRUE;
    }
  return any ? NULL : LMTP_REPLY_ATTR_SYNTAX;
}
