/* util-gmime.c - GMime helpers shared by the callout services, the test
 * callout server and the delivery pipeline.
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"

GMimeMessage *
util_gmime_parse_header (GBytes *header)
{
  g_autoptr (GMimeStream) stream = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  gsize n;
  const char *p;

  if (header == NULL)
    return NULL;
  p = g_bytes_get_data (header, &n);
  stream = g_mime_stream_mem_new_with_buffer (p, n);
  parser = g_mime_parser_new_with_stream (stream);
  return g_mime_parser_construct_message (parser, NULL);
}

/* ---- a safe text view: what an operator may read of a suspect message ---- */

/* @needle (lower case) in @hay, whatever the case of @hay; NULL if not */
static const char *
find_caseless (const char *hay, const char *needle)
{
  gsize n = strlen (needle);

  for (; *hay; hay++)
    if (g_ascii_strncasecmp (hay, needle, n) == 0)
      return hay;
  return NULL;
}

/* HTML as text: tags dropped, <script> and <style> with their content,
 * the few entities plain text needs decoded.  The result is still
 * untrusted text: whoever shows it escapes it. */
static void
append_html_as_text (GString *out, const char *html, gsize max)
{
  static const struct { const char *name; const char *text; } entities[] = {
    { "&lt;", "<" }, { "&gt;", ">" }, { "&amp;", "&" }, { "&quot;", "\"" }, { "&#39;", "'" }, { "&nbsp;", " " },
  };
  const char *p = html;
  gboolean entity;

  while (*p && out->len < max)
    {
      if (g_ascii_strncasecmp (p, "<script", 7) == 0 || g_ascii_strncasecmp (p, "<style", 6) == 0)
        {
          /* on to the closing tag, which the next branch drops */
          const char *end = find_caseless (p, p[2] == 'c' || p[2] == 'C' ? "</script" : "</style");
          p = end ? end : p + strlen (p);
        }
      if (*p == '<')
        {
          const char *gt = strchr (p, '>');
          p = gt ? gt + 1 : p + strlen (p);
          continue;
        }
      entity = FALSE;
      for (guint i = 0; *p == '&' && i < G_N_ELEMENTS (entities) && !entity; i++)
        if (g_str_has_prefix (p, entities[i].name))
          {
            g_string_append (out, entities[i].text);
            p += strlen (entities[i].name);
            entity = TRUE;
          }
      if (!entity && *p)
        g_string_append_c (out, *p++);
    }
}

typedef struct {
  GString *out;
  gsize max;
} TextView;

static void
text_view_part (GMimeObject *parent, GMimeObject *part, gpointer data)
{
  TextView *v = data;
  GMimeContentType *type = g_mime_object_get_content_type (part);
  const char *disposition = g_mime_object_get_disposition (part);
  g_autofree char *text = NULL;

  (void) parent;
  if (!GMIME_IS_TEXT_PART (part) || v->out->len >= v->max
      || (disposition && g_ascii_strcasecmp (disposition, "attachment") == 0))
    return;
  if (!g_mime_content_type_is_type (type, "text", "plain") && !g_mime_content_type_is_type (type, "text", "html"))
    return;
  if ((text = g_mime_text_part_get_text (GMIME_TEXT_PART (part))) == NULL)
    return;
  if (v->out->len)
    g_string_append (v->out, "\n\n");
  if (g_mime_content_type_is_type (type, "text", "html"))
    append_html_as_text (v->out, text, v->max);
  else
    g_string_append_len (v->out, text, MIN (strlen (text), v->max - v->out->len));
}

char *
util_gmime_text_view (GMimeMessage *message, gsize max)
{
  TextView v = { g_string_new (NULL), max };
  char *valid;

  g_mime_message_foreach (message, text_view_part, &v);
  if (v.out->len > max)
    g_string_truncate (v.out, max);
  valid = g_utf8_make_valid (v.out->str, v.out->len);
  g_string_free (v.out, TRUE);
  return valid;
}
