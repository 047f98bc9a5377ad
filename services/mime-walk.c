/* mime-walk.c - the message of the input parts for the services that look
 * inside the MIME tree: loaded with GMime (large parts stay in the body
 * file), walked leaf by leaf to any depth with a visitor that may replace a
 * leaf, and written back.  GMime writes every part not replaced byte for
 * byte; the body part is sent back, and the header part too when it changed
 * (a replaced top-level body brings its own Content-* fields).
 */
#include "config.h"

#include <string.h>

#include "services-mime.h"

/* ---- the message and its parts ------------------------------------------ */

/* Parses header part + body part; large parts stay in the body file.
 * Either may be missing: a message without an empty line arrives as a
 * header part alone, and its first line need not be a header field at all.
 * GMime builds no message from that; read as all body, it is scanned too. */
gboolean
mime_load (const ServiceInput *in, MimeLoaded *out)
{
  if (in->header == NULL && !service_input_has_body (in))
    return FALSE;
  out->msg = service_input_message (in, SERVICE_PARSE_PERSIST);
  if (out->msg == NULL)
    out->msg = service_input_message (in, SERVICE_PARSE_PERSIST | SERVICE_PARSE_BODY_ONLY);
  out->header = in->header;
  return out->msg != NULL;
}

/* Splits @a into the adapted parts: the body always, the header only when
 * it is no longer the one lmtpd sent (a replaced top-level body changes
 * its Content-* fields).  FALSE if no file could be written. */
static gboolean
emit (const MimeLoaded *l, const GByteArray *a, ServiceOutput *out)
{
  const guint8 *sep = a->len && a->data[0] == '\n' ? a->data : NULL;
  gsize hlen, orig_len = 0;
  const void *orig = l->header ? g_bytes_get_data (l->header, &orig_len) : NULL;

  for (gsize i = 1; sep == NULL && i < a->len; i++)
    if (a->data[i] == '\n' && a->data[i - 1] == '\n')
      sep = a->data + i;
  hlen = sep ? (gsize) (sep + 1 - a->data) : a->len;
  /* an empty adapted body is sent as no body part at all, which means
   * "unchanged": what was removed would come back.  One empty line it is. */
  if (hlen == a->len)
    out->body_fd = service_body_file ("services-XXXXXX", "\n", 1);
  else
    out->body_fd = service_body_file ("services-XXXXXX", a->data + hlen, a->len - hlen);
  if (out->body_fd < 0)
    return FALSE;
  if (orig == NULL || hlen != orig_len || memcmp (orig, a->data, hlen) != 0)
    out->header = g_bytes_new (a->data, hlen);
  return TRUE;
}

gboolean
mime_adapt (const MimeLoaded *l, ServiceOutput *out)
{
  gboolean complete;
  g_autoptr (GByteArray) a = service_object_bytes (GMIME_OBJECT (l->msg), GMIME_NEWLINE_FORMAT_UNIX, &complete);
  return complete && emit (l, a, out);
}

GByteArray *
mime_decoded (GMimePart *part)
{
  GMimeDataWrapper *w = g_mime_part_get_content (part);
  g_autoptr (GMimeStream) mem = g_mime_stream_mem_new ();
  GByteArray *a;

  if (w == NULL)
    return g_byte_array_new ();
  g_mime_stream_mem_set_owner (GMIME_STREAM_MEM (mem), FALSE);
  a = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
  if (g_mime_data_wrapper_write_to_stream (w, mem) < 0)
    g_byte_array_set_size (a, 0);
  return a;
}

GMimePart *
mime_notice_part (const char *text)
{
  GMimeTextPart *p = g_mime_text_part_new_with_subtype ("plain");
  g_mime_text_part_set_text (p, text);
  return GMIME_PART (p);
}

/* ---- every leaf, wherever it sits ----------------------------------------
 * A walk over the whole tree: the message's own top-level body, every child
 * of a multipart, and the message of every message/rfc822 part, to any
 * depth up to DEPTH_MAX.  A visitor may replace any leaf, may drop the text
 * GMime keeps outside the parts (a multipart's preface and epilogue: all of
 * the body when the boundary is missing), and decides what becomes of a
 * subtree nested deeper than it can look.
 */

#define DEPTH_MAX 32

static GMimeObject *visit (MimeVisitor *v, GMimeObject *obj, guint depth);

static void
visit_stray (MimeVisitor *v, GMimeMultipart *mp)
{
  const char *pre = g_mime_multipart_get_prologue (mp);
  const char *post = g_mime_multipart_get_epilogue (mp);

  if (v->stray == NULL)
    return;
  if (pre && v->stray (pre, v->data))
    {
      g_mime_multipart_set_prologue (mp, NULL);
      v->changed = TRUE;
    }
  if (post && v->stray (post, v->data))
    {
      g_mime_multipart_set_epilogue (mp, NULL);
      v->changed = TRUE;
    }
}

static void
visit_multipart (MimeVisitor *v, GMimeMultipart *mp, guint depth)
{
  visit_stray (v, mp);
  for (int i = 0; i < g_mime_multipart_get_count (mp); i++)
    {
      g_autoptr (GMimeObject) repl = visit (v, g_mime_multipart_get_part (mp, i), depth + 1);
      if (repl)
        g_mime_multipart_replace (mp, i, repl);
    }
}

/* The message of a message/rfc822 part, or the top-level message. */
static void
visit_message (MimeVisitor *v, GMimeMessage *msg, guint depth)
{
  GMimeObject *body = msg ? g_mime_message_get_mime_part (msg) : NULL;
  g_autoptr (GMimeObject) repl = body ? visit (v, body, depth) : NULL;

  if (repl)
    g_mime_message_set_mime_part (msg, repl);
}

/* Returns a replacement for @obj (a new reference), or NULL. */
static GMimeObject *
visit (MimeVisitor *v, GMimeObject *obj, guint depth)
{
  GMimeObject *repl = NULL;

  if (depth > DEPTH_MAX)
    repl = v->too_deep ? v->too_deep (obj, v->data) : NULL;
  else if (GMIME_IS_MULTIPART (obj))
    visit_multipart (v, GMIME_MULTIPART (obj), depth);
  else if (GMIME_IS_MESSAGE_PART (obj))
    visit_message (v, g_mime_message_part_get_message (GMIME_MESSAGE_PART (obj)), depth + 1);
  else if (GMIME_IS_PART (obj))
    repl = v->leaf (GMIME_PART (obj), v->data);
  if (repl)
    v->changed = TRUE;
  return repl;
}

gboolean
mime_visit_all (GMimeMessage *msg, MimeVisitor *v)
{
  visit_message (v, msg, 0);
  return v->changed;
}
