/* address.c - RFC 5321 mailboxes: syntax, and the stricter rules that
 * make a local part or domain safe to use as a path component.
 */
#include "config.h"

#include <string.h>

#include "deliver.h"

#define LOCAL_MAX 255
#define DOMAIN_MAX 255

/* Reasons compared by address in deliver_address_status(). */
static const char NON_ASCII_LOCAL[] = "non-ASCII local part without SMTPUTF8";
static const char NON_ASCII_DOMAIN[] = "non-ASCII domain without SMTPUTF8";

static gboolean
is_atext (guchar c, gboolean allow_utf8)
{
  if (g_ascii_isalnum (c))
    return TRUE;
  if (c >= 0x80)
    return allow_utf8;
  return c != '\0' && strchr ("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static gboolean
parse_local (const char *s, const char *end, gboolean allow_utf8, GString *out, const char **why)
{
  const char *p = s;

  if (p < end && *p == '"')
    {
      for (p++; p < end && *p != '"'; p++)
        {
          guchar c = *p;
          if (c == '\\')
            {
              if (++p >= end || (guchar) *p < 32 || (guchar) *p > 126)
                return (*why = "bad quoted pair in local part", FALSE);
              c = *p;
            }
          else if (c >= 0x80 && !allow_utf8)
            return (*why = NON_ASCII_LOCAL, FALSE);
          else if (c < 32 || c == 127)
            return (*why = "invalid character in quoted local part", FALSE);
          g_string_append_c (out, c);
        }
      if (p >= end || p + 1 != end)
        return (*why = "unterminated quoted local part", FALSE);
      return TRUE;
    }
  if (p == end)
    return (*why = "empty local part", FALSE);
  for (; p < end; p++)
    {
      if (*p == '.')
        {
          if (p == s || p + 1 == end || p[1] == '.')
            return (*why = "misplaced dot in local part", FALSE);
        }
      else if (!is_atext (*p, allow_utf8))
        return (*why = (guchar) *p >= 0x80 ? NON_ASCII_LOCAL : "invalid character in local part", FALSE);
      g_string_append_c (out, *p);
    }
  return TRUE;
}

static gboolean
parse_domain (const char *s, gboolean allow_utf8, const char **why)
{
  gsize len = strlen (s);
  const char *label = s;

  if (len == 0)
    return (*why = "empty domain", FALSE);
  if (len > DOMAIN_MAX)
    return (*why = "domain too long", FALSE);
  if (s[0] == '[')
    {
      /* address-literal: we only check it is well formed and harmless */
      if (s[len - 1] != ']' || len < 3)
        return (*why = "bad address literal", FALSE);
      for (const char *p = s + 1; p < s + len - 1; p++)
        if (!(g_ascii_isalnum (*p) || *p == '.' || *p == ':' || *p == '-'))
          return (*why = "bad address literal", FALSE);
      return TRUE;
    }
  for (const char *p = s;; p++)
    {
      if (*p == '.' || *p == '\0')
        {
          if (p == label || label[0] == '-' || p[-1] == '-')
            return (*why = "bad domain", FALSE);
          if (*p == '\0')
            return TRUE;
          label = p + 1;
        }
      else if ((guchar) *p >= 0x80 && !allow_utf8)
        return (*why = NON_ASCII_DOMAIN, FALSE);
      else if (!(g_ascii_isalnum (*p) || *p == '-' || (guchar) *p >= 0x80))
        return (*why = "invalid character in domain", FALSE);
    }
}

gboolean
deliver_address_parse (const char *s, gboolean allow_utf8,
                       char **out_local, char **out_domain, const char **why)
{
  g_autoptr (GString) local = g_string_new (NULL);
  const char *at;
  gsize len = strlen (s);

  *out_local = *out_domain = NULL;
  if (allow_utf8 && !g_utf8_validate (s, len, NULL))
    return (*why = "address is not UTF-8", FALSE);
  /* The last '@' outside a quoted string separates local part and domain. */
  at = strrchr (s, '@');
  if (at == NULL)
    {
      if (g_ascii_strcasecmp (s, "postmaster") != 0)
        return (*why = "address has no domain", FALSE);
      *out_local = g_strdup (s);
      return TRUE;
    }
  if (!parse_local (s, at, allow_utf8, local, why))
    return FALSE;
  if (local->len > LOCAL_MAX)
    return (*why = "local part too long", FALSE);
  if (!parse_domain (at + 1, allow_utf8, why))
    return FALSE;
  *out_local = g_string_free (g_steal_pointer (&local), FALSE);
  *out_domain = g_strdup (at + 1);
  return TRUE;
}

const char *
deliver_address_status (const char *why, gboolean sender, guint *code)
{
  if (why == NON_ASCII_LOCAL || why == NON_ASCII_DOMAIN)
    {
      /* RFC 6531 3.6 */
      *code = 553;
      return "5.6.7";
    }
  *code = 501;
  return sender ? "5.1.7" : "5.1.3";
}
