/* util-sanitize.c - the one sanitiser for strings from outside (peers,
 * senders, headers, scripts, helper programs) before they reach a log
 * line, the journal or a terminal.
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"

/* What a log line must not carry raw: C0 controls (line breaks that forge
 * records, ESC), DEL, and the C1 controls (U+0080..U+009F: U+009B is a
 * one-character CSI for a terminal). */
static gboolean
unsafe_in_log (gunichar c)
{
  return c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0);
}

/* The length of the run of printable ASCII at @p, which is copied as it
 * is: nearly all of a log line, so it goes in one append, not a call per
 * character (the per-character path was the largest part of a small
 * delivery's logging cost). */
static gsize
plain_run (const char *p, const char *end)
{
  const char *q = p;

  while (q < end && (guchar) *q >= 0x20 && (guchar) *q < 0x7f)
    q++;
  return q - p;
}

static char *
sanitize (const char *s, gsize max, gboolean keep_newlines)
{
  GString *out;
  const char *p, *end;

  if (s == NULL)
    return g_strdup ("");
  end = s + strlen (s);
  if ((gsize) (end - s) <= max && plain_run (s, end) == (gsize) (end - s))
    return g_strndup (s, end - s); /* the common case: nothing to replace */
  out = g_string_sized_new (MIN ((gsize) (end - s), max) + 4);
  for (p = s; p < end && out->len < max;)
    {
      gsize run = MIN (plain_run (p, end), max - out->len);
      if (run > 0)
        {
          g_string_append_len (out, p, run);
          p += run;
          continue;
        }
      gunichar c = g_utf8_get_char_validated (p, end - p);
      if (c == (gunichar) -1 || c == (gunichar) -2)
        {
          g_string_append_c (out, '?');
          p++;
          continue;
        }
      if (unsafe_in_log (c) && !(keep_newlines && (c == '\n' || c == '\t')))
        g_string_append_c (out, '?');
      else
        g_string_append_len (out, p, g_utf8_next_char (p) - p);
      p = g_utf8_next_char (p);
    }
  if (p < end)
    g_string_append (out, "...");
  return g_string_free (out, FALSE);
}

char *
util_sanitize (const char *s, gsize max)
{
  return sanitize (s, max, FALSE);
}

char *
util_sanitize_record (const char *s)
{
  return sanitize (s, G_MAXSIZE, TRUE);
}
