/* svc-normalize.c - format normalisation (RFC 4496 4.6).
 *
 * Absurd command values (over-long addresses) are refused with an error
 * reply.  The message is parsed with GMime, which is lenient about broken
 * MIME, and written back well-formed: multiparts get boundaries, parts
 * with lines over 998 octets or raw 8-bit in 7bit parts are re-encoded
 * (quoted-printable for text, base64 otherwise), and file names are made
 * safe.  Only when that changes anything is an adapted message sent.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "gmime-cleanup.h"
#include "services.h"

#define LINE_MAX_OCTETS 998

typedef struct {
  guint max_address;
} Normalize;

static gboolean
normalize_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  Normalize *n = g_new0 (Normalize, 1);
  g_autofree char *max = service_get_string (kf, group, "max_address", "256");
  n->max_address = (guint) g_ascii_strtoull (max, NULL, 10);
  svc->state = n;
  return TRUE;
}

/* Does this part's encoded content need re-encoding? */
static gboolean
needs_encoding (GMimePart *part)
{
  GMimeDataWrapper *w = g_mime_part_get_content (part);
  GMimeContentEncoding enc = g_mime_part_get_content_encoding (part);
  g_autoptr (GMimeStream) mem = NULL;
  GByteArray *a;
  gsize line = 0;
  gboolean eightbit = FALSE;

  if (w == NULL || enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
      || enc == GMIME_CONTENT_ENCODING_BINARY)
    return FALSE;
  mem = g_mime_stream_mem_new ();
  if (g_mime_data_wrapper_write_to_stream (w, mem) < 0)
    return FALSE;
  a = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
  for (guint i = 0; i < a->len; i++)
    {
      if (a->data[i] == '\n')
        line = 0;
      else if (++line > LINE_MAX_OCTETS)
        return TRUE;
      eightbit |= a->data[i] >= 0x80;
    }
  return eightbit && enc != GMIME_CONTENT_ENCODING_8BIT;
}

static gboolean
fix_part (GMimeObject *obj)
{
  gboolean changed = FALSE;

  if (GMIME_IS_MULTIPART (obj))
    {
      GMimeMultipart *mp = GMIME_MULTIPART (obj);
      if (g_mime_multipart_get_boundary (mp) == NULL)
        {
          g_mime_multipart_set_boundary (mp, NULL); /* generates one */
          changed = TRUE;
        }
      for (int i = 0; i < g_mime_multipart_get_count (mp); i++)
        changed |= fix_part (g_mime_multipart_get_part (mp, i));
    }
  else if (GMIME_IS_PART (obj))
    {
      GMimePart *part = GMIME_PART (obj);
      const char *name = g_mime_part_get_filename (part);
      if (name && (strpbrk (name, "/\\\r\n\t") || name[0] == '.' || strlen (name) > 200))
        {
          g_autofree char *safe = g_path_get_basename (name);
          g_strdelimit (safe, "/\\\r\n\t:", '_');
          if (safe[0] == '.')
            safe[0] = '_';
          if (strlen (safe) > 200)
            safe[200] = '\0';
          g_mime_part_set_filename (part, safe);
          changed = TRUE;
        }
      if (needs_encoding (part))
        {
          GMimeContentType *ct = g_mime_object_get_content_type (obj);
          gboolean text = ct && g_mime_content_type_is_type (ct, "text", "*");
          g_mime_part_set_content_encoding (part, text ? GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
                                                       : GMIME_CONTENT_ENCODING_BASE64);
          changed = TRUE;
        }
    }
  else if (GMIME_IS_MESSAGE_PART (obj))
    {
      GMimeMessage *inner = g_mime_message_part_get_message (GMIME_MESSAGE_PART (obj));
      if (inner && g_mime_message_get_mime_part (inner))
        changed |= fix_part (g_mime_message_get_mime_part (inner));
    }
  return changed;
}

static void
normalize_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Normalize *n = svc->state;
  const char *from = g_hash_table_lookup (in->env, "Mail-From");
  g_autoptr (GMimeStream) cat = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  g_autoptr (GMimeMessage) msg = NULL;
  g_autoptr (GMimeFormatOptions) fmt = NULL;
  g_autoptr (GMimeStream) mem = NULL;
  GByteArray *bytes;
  gsize hlen = 0;
  const char *h;
  char *sep;

  if (from && strlen (from) > n->max_address)
    {
      service_apply_action (&out->verdict, "reject 553 5.1.7 Sender address too long", NULL);
      return;
    }
  for (guint i = 0; in->rcpts[i]; i++)
    if (strlen (in->rcpts[i]) > n->max_address)
      {
        service_apply_action (&out->verdict, "reject 553 5.1.3 Recipient address too long", NULL);
        return;
      }
  if (in->header == NULL || in->body_fd < 0)
    return;
  h = g_bytes_get_data (in->header, &hlen);
  cat = g_mime_stream_cat_new ();
  {
    g_autoptr (GMimeStream) hs = g_mime_stream_mem_new_with_buffer (h, hlen);
    g_autoptr (GMimeStream) bs = g_mime_stream_fs_new (dup (in->body_fd));
    g_mime_stream_seek (bs, 0, GMIME_STREAM_SEEK_SET);
    g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), hs);
    g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), bs);
  }
  parser = g_mime_parser_new_with_stream (cat);
  g_mime_parser_set_persist_stream (parser, TRUE);
  msg = g_mime_parser_construct_message (parser, NULL);
  if (msg == NULL || g_mime_message_get_mime_part (msg) == NULL
      || !fix_part (g_mime_message_get_mime_part (msg)))
    return;
  fmt = g_mime_format_options_new ();
  g_mime_format_options_set_newline_format (fmt, GMIME_NEWLINE_FORMAT_UNIX);
  mem = g_mime_stream_mem_new ();
  g_mime_stream_mem_set_owner (GMIME_STREAM_MEM (mem), TRUE);
  if (g_mime_object_write_to_stream (GMIME_OBJECT (msg), fmt, mem) < 0)
    return;
  bytes = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
  g_byte_array_append (bytes, (const guint8 *) "", 1);
  sep = strstr ((char *) bytes->data, "\n\n");
  if (sep == NULL)
    return;
  out->header = g_bytes_new (bytes->data, sep + 2 - (char *) bytes->data);
  {
    g_autofree char *path = NULL;
    int fd = g_file_open_tmp ("normalize-XXXXXX", &path, NULL);
    gsize body_len = bytes->len - 1 - (sep + 2 - (char *) bytes->data);
    if (fd < 0)
      return;
    g_unlink (path);
    if (write (fd, sep + 2, body_len) != (gssize) body_len)
      {
        close (fd);
        return;
      }
    lseek (fd, 0, SEEK_SET);
    out->body_fd = fd;
  }
  service_add_header (&out->verdict, "X-Normalized: MIME structure repaired");
}

const ServiceModule service_normalize = {
  "normalize", OCP_PARTS_ALL, normalize_configure, normalize_check, g_free,
};
