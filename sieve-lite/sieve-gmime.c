/* sieve-gmime.c - the MIME structure a script sees, built from a message
 * GMime parsed, for the callers (the delivery side, the sieve-lite
 * command): the parts in depth-first order (RFC 5173 5.2, RFC 5703) and
 * the raw body (RFC 5173 5.1).  Bounded in parts, depth and bytes: the
 * message is untrusted.
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"
#include "sieve.h"

#define DEFAULT_MAX_BYTES (1024 * 1024)

typedef struct {
  GPtrArray *parts;
  gsize room;               /* bytes of content left */
} Walk;

/* @s cut to the room left (on a UTF-8 boundary when it is text) */
static char *
take (Walk *w, char *s)
{
  gsize n;

  if (s == NULL)
    return NULL;
  n = strlen (s);
  if (n > w->room)
    {
      n = w->room;
      while (n > 0 && ((guchar) s[n] & 0xc0) == 0x80)
        n--;
      s[n] = '\0';
    }
  w->room -= n;
  return s;
}

/* The fields of @obj, after those of @msg when it is a message's top part */
static void
add_fields (GPtrArray *names, GPtrArray *values, GMimeObject *obj)
{
  GMimeHeaderList *l = obj ? g_mime_object_get_header_list (obj) : NULL;

  for (int i = 0; l && i < g_mime_header_list_get_count (l); i++)
    {
      GMimeHeader *h = g_mime_header_list_get_header_at (l, i);
      const char *v = g_mime_header_get_value (h);
      g_ptr_array_add (names, g_strdup (g_mime_header_get_name (h)));
      g_ptr_array_add (values, g_strdup (v ? v : ""));
    }
}

static void
set_fields (SieveMimePart *p, GMimeMessage *msg, GMimeObject *obj)
{
  GPtrArray *names = g_ptr_array_new (), *values = g_ptr_array_new ();

  if (msg)
    add_fields (names, values, GMIME_OBJECT (msg));
  add_fields (names, values, obj);
  g_ptr_array_add (names, NULL);
  g_ptr_array_add (values, NULL);
  p->names = (char **) g_ptr_array_free (names, FALSE);
  p->values = (char **) g_ptr_array_free (values, FALSE);
}

/* A text part's charset filter to UTF-8, or NULL (UTF-8, ASCII, none
 * given or not known to iconv: the octets as they are) */
static GMimeFilter *
charset_filter (GMimeObject *obj)
{
  const char *cs = GMIME_IS_TEXT_PART (obj) ? g_mime_object_get_content_type_parameter (obj, "charset") : NULL;

  if (cs == NULL || g_ascii_strcasecmp (cs, "utf-8") == 0 || g_ascii_strcasecmp (cs, "us-ascii") == 0)
    return NULL;
  return g_mime_filter_charset_new (cs, "UTF-8");
}

/* A leaf's content, transfer encoding undone, text converted to UTF-8:
 * read through filters, no more than @room (and a character's tail, for
 * take to cut), so a large attachment is never decoded whole. */
static char *
leaf_content (GMimeObject *obj, gsize room)
{
  GMimeDataWrapper *dw;
  g_autoptr (GMimeStream) f = NULL;
  GMimeFilter *filter;
  GString *out;
  char buf[8192];
  gssize n;

  if (!GMIME_IS_PART (obj) || (dw = g_mime_part_get_content (GMIME_PART (obj))) == NULL
      || g_mime_data_wrapper_get_stream (dw) == NULL)
    return NULL;
  g_mime_stream_reset (g_mime_data_wrapper_get_stream (dw));
  f = g_mime_stream_filter_new (g_mime_data_wrapper_get_stream (dw));
  filter = g_mime_filter_basic_new (g_mime_data_wrapper_get_encoding (dw), FALSE);
  g_mime_stream_filter_add (GMIME_STREAM_FILTER (f), filter);
  g_object_unref (filter);
  if ((filter = charset_filter (obj)) != NULL)
    {
      g_mime_stream_filter_add (GMIME_STREAM_FILTER (f), filter);
      g_object_unref (filter);
    }
  out = g_string_new (NULL);
  while (out->len < room + 4 && (n = g_mime_stream_read (f, buf, MIN (sizeof buf, room + 4 - out->len))) > 0)
    g_string_append_len (out, buf, n);
  return g_string_free (out, FALSE);
}

/* The enclosed message's header as "Name: value" lines */
static char *
header_text (const SieveMimePart *child)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; child->names[i]; i++)
    g_string_append_printf (s, "%s: %s\r\n", child->names[i], child->values[i]);
  return g_string_free (s, FALSE);
}

static void walk (Walk *w, GMimeObject *obj, GMimeMessage *msg, guint depth);

/* The children of @obj, then how many parts they came to */
static void
walk_children (Walk *w, SieveMimePart *p, GMimeObject *obj, guint depth)
{
  guint at = w->parts->len;

  if (GMIME_IS_MULTIPART (obj))
    {
      GMimeMultipart *mp = GMIME_MULTIPART (obj);
      p->prologue = take (w, g_strdup (g_mime_multipart_get_prologue (mp)));
      p->epilogue = take (w, g_strdup (g_mime_multipart_get_epilogue (mp)));
      for (int i = 0; i < g_mime_multipart_get_count (mp); i++)
        walk (w, g_mime_multipart_get_part (mp, i), NULL, depth + 1);
    }
  else if (GMIME_IS_MESSAGE_PART (obj))
    {
      GMimeMessage *inner = g_mime_message_part_get_message (GMIME_MESSAGE_PART (obj));
      if (inner)
        walk (w, g_mime_message_get_mime_part (inner), inner, depth + 1);
      if (w->parts->len > at)
        p->message_header = take (w, header_text (w->parts->pdata[at]));
    }
  else
    p->content = take (w, leaf_content (obj, w->room));
  p->n_descendants = w->parts->len - at;
}

static void
walk (Walk *w, GMimeObject *obj, GMimeMessage *msg, guint depth)
{
  SieveMimePart *p;
  GMimeContentType *ct;

  if (obj == NULL || depth >= SIEVE_MIME_MAX_DEPTH || w->parts->len >= SIEVE_MIME_MAX_PARTS)
    return;
  p = g_new0 (SieveMimePart, 1);
  p->depth = depth;
  ct = g_mime_object_get_content_type (obj);
  p->type = g_ascii_strdown (ct && g_mime_content_type_get_media_type (ct)
                             ? g_mime_content_type_get_media_type (ct) : "text", -1);
  p->subtype = g_ascii_strdown (ct && g_mime_content_type_get_media_subtype (ct)
                                ? g_mime_content_type_get_media_subtype (ct) : "plain", -1);
  set_fields (p, msg, obj);
  g_ptr_array_add (w->parts, p);
  walk_children (w, p, obj, depth);
}

GPtrArray *
sieve_mime_parts_new (GMimeMessage *message, gsize max_bytes)
{
  Walk w = { g_ptr_array_new_with_free_func (sieve_mime_part_free), max_bytes ? max_bytes : DEFAULT_MAX_BYTES };

  if (message)
    walk (&w, g_mime_message_get_mime_part (message), message, 0);
  return w.parts;
}

/* Where the header ends: the state of a scan for an empty line carried
 * over reads (0: inside a line, 1: at a line's start, 2: after a CR
 * there).  Returns the offset of the body in @buf, or -1. */
static gssize
header_end (const char *buf, gssize n, int *state)
{
  for (gssize i = 0; i < n; i++)
    {
      char c = buf[i];
      if (*state == 1 && c == '\n')
        return i + 1;
      if (*state == 1 && c == '\r')
        *state = 2;
      else if (*state == 2 && c == '\n')
        return i + 1;
      else
        *state = c == '\n' ? 1 : 0;
    }
  return -1;
}

char *
sieve_raw_body_read (GMimeStream *stream, gsize max)
{
  char buf[16384];
  GString *out = NULL;
  int state = 1;
  gssize n;

  while (out == NULL || out->len < max)
    {
      gssize at = 0;
      if ((n = g_mime_stream_read (stream, buf, sizeof buf)) <= 0)
        break;
      if (out == NULL && (at = header_end (buf, n, &state)) < 0)
        continue;
      if (out == NULL)
        out = g_string_new (NULL);
      g_string_append_len (out, buf + at, MIN ((gsize) (n - at), max - out->len));
    }
  return out ? g_string_free (out, FALSE) : NULL;
}

/* ---- where a part lies (replace inside foreverypart, RFC 5703 5) ------------ */

typedef struct {
  guint left;               /* parts to pass before the one sought */
  GPtrArray *boundaries;    /* of the multiparts holding it */
  GMimeObject *obj;         /* found: the part, and the enclosed message it is the top of */
  GMimeMessage *msg;
} Find;

/* As walk numbers them (the same bounds), so the index means the same part */
static gboolean
find (Find *f, GMimeObject *obj, GMimeMessage *msg, guint depth, guint *seen)
{
  if (obj == NULL || depth >= SIEVE_MIME_MAX_DEPTH || *seen >= SIEVE_MIME_MAX_PARTS)
    return FALSE;
  if ((*seen)++ == f->left)
    {
      f->obj = obj;
      f->msg = msg;
      return TRUE;
    }
  if (GMIME_IS_MULTIPART (obj))
    {
      GMimeMultipart *mp = GMIME_MULTIPART (obj);
      g_ptr_array_add (f->boundaries, (gpointer) g_mime_multipart_get_boundary (mp));
      for (int i = 0; i < g_mime_multipart_get_count (mp); i++)
        if (find (f, g_mime_multipart_get_part (mp, i), NULL, depth + 1, seen))
          return TRUE;
      g_ptr_array_remove_index (f->boundaries, f->boundaries->len - 1);
    }
  else if (GMIME_IS_MESSAGE_PART (obj))
    {
      GMimeMessage *inner = g_mime_message_part_get_message (GMIME_MESSAGE_PART (obj));
      if (inner && find (f, g_mime_message_get_mime_part (inner), inner, depth + 1, seen))
        return TRUE;
    }
  return FALSE;
}

/* The offset of @obj's first field, or -1 */
static gint64
first_field (GMimeObject *obj, gint64 best)
{
  GMimeHeaderList *l = obj ? g_mime_object_get_header_list (obj) : NULL;

  for (int i = 0; l && i < g_mime_header_list_get_count (l); i++)
    {
      gint64 at = g_mime_header_get_offset (g_mime_header_list_get_header_at (l, i));
      if (at >= 0 && (best < 0 || at < best))
        best = at;
    }
  return best;
}

/* Does the line @line (its first bytes) open a delimiter of @boundaries
 * (RFC 2046 5.1.1: "--" boundary, then "--", blanks or the line end)? */
static gboolean
delimiter (const char *line, gsize n, const GPtrArray *boundaries)
{
  for (guint i = 0; i < boundaries->len; i++)
    {
      const char *b = boundaries->pdata[i];
      gsize bl = b ? strlen (b) : 0;
      if (bl == 0 || n < bl + 2 || strncmp (line, "--", 2) != 0 || strncmp (line + 2, b, bl) != 0)
        continue;
      if (n == bl + 2 || strchr ("- \t\r\n", line[bl + 2]))
        return TRUE;
    }
  return FALSE;
}

/* Where the part from @start ends: at the line end before the first
 * delimiter of @boundaries, else at the end of @stream.  One pass of
 * fixed buffers; only a line's first bytes are kept. */
static gint64
part_end (GMimeStream *stream, gint64 start, const GPtrArray *boundaries)
{
  char buf[16384], line[1024];
  gsize ln = 0;
  gint64 at = start, brk = start;   /* brk: where the line end before this line began */
  gssize n;

  if (g_mime_stream_seek (stream, start, GMIME_STREAM_SEEK_SET) < 0)
    return -1;
  while ((n = g_mime_stream_read (stream, buf, sizeof buf)) > 0)
    for (gssize i = 0; i < n; i++, at++)
      {
        if (ln < sizeof line)
          line[ln++] = buf[i];
        if (buf[i] != '\n')
          continue;
        if (at > start && delimiter (line, ln, boundaries))
          return brk;
        brk = ln >= 2 && line[ln - 2] == '\r' ? at - 1 : at;
        ln = 0;
      }
  if (ln > 0 && delimiter (line, ln, boundaries))
    return brk;
  return at;
}

/* A leaf without fields begins with its empty line, just before its
 * content (one LF or CR LF), or -1 */
static gint64
empty_header (GMimeObject *obj, GMimeStream *stream)
{
  GMimeDataWrapper *dw = GMIME_IS_PART (obj) ? g_mime_part_get_content (GMIME_PART (obj)) : NULL;
  GMimeStream *content = dw ? g_mime_data_wrapper_get_stream (dw) : NULL;
  char cr = 0;

  if (content == NULL || content->bound_start < 1)
    return -1;
  if (content->bound_start >= 2 && g_mime_stream_seek (stream, content->bound_start - 2, GMIME_STREAM_SEEK_SET) >= 0
      && g_mime_stream_read (stream, &cr, 1) == 1 && cr == '\r')
    return content->bound_start - 2;
  return content->bound_start - 1;
}

gboolean
sieve_mime_part_range (GMimeMessage *message, GMimeStream *stream, guint index, GMimeObject **part,
                       GMimeMessage **enclosed, gint64 *start, gint64 *end)
{
  g_autoptr (GPtrArray) boundaries = g_ptr_array_new ();
  Find f = { index, boundaries, NULL, NULL };
  guint seen = 0;

  if (message == NULL || !find (&f, g_mime_message_get_mime_part (message), message, 0, &seen))
    return FALSE;
  *start = first_field (f.msg ? GMIME_OBJECT (f.msg) : NULL, first_field (f.obj, -1));
  if (*start < 0)
    *start = empty_header (f.obj, stream);
  if (*start < 0 || (*end = part_end (stream, *start, boundaries)) < *start)
    return FALSE;
  *part = f.obj;
  *enclosed = f.msg;
  return TRUE;
}
