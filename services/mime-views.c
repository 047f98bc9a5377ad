/* mime-views.c - what a reader may make of a leaf part.
 * A part is judged by every reading a mail client could give it, not only
 * the one its header declares: headers can disagree (two
 * Content-Transfer-Encoding fields, a name in Content-Type and another in
 * Content-Disposition), and a text body can carry an inline uuencoded file
 * that clients show as an attachment.  So the raw content is also decoded
 * as base64, quoted-printable and uuencode, and every name counts.
 */
#include "config.h"

#include <string.h>

#include "services-mime.h"

static void
views_add (MimeViews *v, GByteArray *a)
{
  for (guint i = 0; a->len && i < v->contents->len; i++)
    {
      GByteArray *b = v->contents->pdata[i];
      if (b->len == a->len && memcmp (b->data, a->data, a->len) == 0)
        {
          g_byte_array_unref (a);
          return;
        }
    }
  if (a->len)
    g_ptr_array_add (v->contents, a);
  else
    g_byte_array_unref (a);
}

/* @data through GMime's decoder for @enc. */
static GByteArray *
filtered (const guint8 *data, gsize len, GMimeContentEncoding enc)
{
  g_autoptr (GMimeStream) src = g_mime_stream_mem_new_with_buffer ((const char *) data, len);
  g_autoptr (GMimeStream) mem = g_mime_stream_mem_new ();
  g_autoptr (GMimeStream) filt = g_mime_stream_filter_new (mem);
  GMimeFilter *f = g_mime_filter_basic_new (enc, FALSE);
  GByteArray *a;

  g_mime_stream_filter_add (GMIME_STREAM_FILTER (filt), f);
  g_object_unref (f);
  g_mime_stream_mem_set_owner (GMIME_STREAM_MEM (mem), FALSE);
  a = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
  if (g_mime_stream_write_to_stream (src, filt) < 0 || g_mime_stream_flush (filt) < 0)
    g_byte_array_set_size (a, 0);
  return a;
}

#define UU_BLOCKS_MAX 64

/* Every inline "begin MODE NAME" block of @a: its name and its content. */
static void
views_add_uuencoded (MimeViews *v, const GByteArray *a)
{
  const guint8 *p = a->data, *end = a->data + a->len;
  guint blocks = 0;

  while (p < end && blocks < UU_BLOCKS_MAX)
    {
      const guint8 *nl = memchr (p, '\n', end - p);
      const guint8 *eol = nl ? nl : end;

      if (eol - p > 6 && memcmp (p, "begin ", 6) == 0)
        {
          g_autofree char *line = g_strndup ((const char *) p, eol - p);
          char *name = strchr (line + 6, ' ');
          if (name && strspn (line + 6, "01234567") == (gsize) (name - line - 6))
            {
              g_ptr_array_add (v->names, g_strdup (g_strstrip (name + 1)));
              views_add (v, filtered (p, end - p, GMIME_CONTENT_ENCODING_UUENCODE));
              blocks++;
            }
        }
      p = eol + 1;
    }
}

void
mime_views_add_readings (MimeViews *v, const GByteArray *raw)
{
  views_add (v, g_byte_array_append (g_byte_array_new (), raw->data, raw->len));
  views_add (v, filtered (raw->data, raw->len, GMIME_CONTENT_ENCODING_BASE64));
  views_add (v, filtered (raw->data, raw->len, GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE));
  views_add_uuencoded (v, raw);
}

/* The content as it stands in the message, before any decoding. */
static GByteArray *
encoded (GMimePart *part)
{
  GMimeDataWrapper *w = g_mime_part_get_content (part);
  GMimeStream *s = w ? g_mime_data_wrapper_get_stream (w) : NULL;
  g_autoptr (GMimeStream) mem = g_mime_stream_mem_new ();
  GByteArray *a;

  g_mime_stream_mem_set_owner (GMIME_STREAM_MEM (mem), FALSE);
  a = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
  if (s == NULL || g_mime_stream_reset (s) < 0 || g_mime_stream_write_to_stream (s, mem) < 0)
    g_byte_array_set_size (a, 0);
  if (s)
    g_mime_stream_reset (s);
  return a;
}

void
mime_views_init (MimeViews *v)
{
  v->contents = g_ptr_array_new_with_free_func ((GDestroyNotify) g_byte_array_unref);
  v->names = g_ptr_array_new_with_free_func (g_free);
  v->shown = 0;
}

void
mime_views_clear (MimeViews *v)
{
  g_ptr_array_unref (v->contents);
  g_ptr_array_unref (v->names);
}

void
mime_views_of_part (MimeViews *v, GMimePart *part)
{
  GMimeContentDisposition *cd = g_mime_object_get_content_disposition (GMIME_OBJECT (part));
  GMimeContentType *ct = g_mime_object_get_content_type (GMIME_OBJECT (part));
  const char *names[] = {
    cd ? g_mime_content_disposition_get_parameter (cd, "filename") : NULL,
    ct ? g_mime_content_type_get_parameter (ct, "name") : NULL,
  };
  g_autoptr (GByteArray) raw = encoded (part);

  mime_views_init (v);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (names[i] && names[i][0])
      g_ptr_array_add (v->names, g_strdup (names[i]));
  views_add (v, mime_decoded (part));
  if (v->contents->len)
    views_add_uuencoded (v, v->contents->pdata[0]);
  v->shown = v->contents->len;
  mime_views_add_readings (v, raw);
}
