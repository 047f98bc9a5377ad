/* filter-view.c - the message as Sieve sees it: the prefix and content
 * this recipient would store, parsed with GMime on first use, and the
 * questions a script asks of it (header values, body text, whether a
 * mailbox exists).
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "filter.h"
#include "lmtpd-util.h"

#define MAX_BODY_TEXT (1024 * 1024)

void
filter_view_init (FilterView *v, const FilterMessage *m)
{
  v->m = m;
  v->rcpt = m->rcpt;
  v->prefix = m->prefix;
  v->content = m->content;
  v->mime = NULL;
  v->failed = FALSE;
  v->parts = NULL;
  v->raw = NULL;
  v->raw_read = FALSE;
}

void
filter_view_clear (FilterView *v)
{
  g_clear_object (&v->mime);
  g_clear_pointer (&v->parts, g_ptr_array_unref);
  g_clear_pointer (&v->raw, g_free);
}

/* A stream of its own over a range of a file shared with other threads:
 * reopened through /proc so the file offset is not shared. */
static GMimeStream *
segment_stream (const DeliverSegment *seg)
{
  g_autofree char *proc = g_strdup_printf ("/proc/self/fd/%d", seg->fd);
  int fd = open (proc, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    {
      /* no /proc: a copy in memory */
      GByteArray *b = g_byte_array_sized_new (seg->length);
      g_byte_array_set_size (b, seg->length);
      if (pread (seg->fd, b->data, seg->length, seg->offset) != (gssize) seg->length)
        g_byte_array_set_size (b, 0);
      return g_mime_stream_mem_new_with_byte_array (b);
    }
  return g_mime_stream_fs_new_with_bounds (fd, seg->offset, seg->offset + seg->length);
}

GMimeStream *
filter_message_stream (const char *prefix, const DeliverContent *content)
{
  GMimeStream *cat = g_mime_stream_cat_new ();
  g_autoptr (GMimeStream) p = g_mime_stream_mem_new_with_buffer (prefix, strlen (prefix));

  g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), p);
  for (guint i = 0; content && i < content->n; i++)
    {
      g_autoptr (GMimeStream) s = segment_stream (&content->seg[i]);
      g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), s);
    }
  return cat;
}

/* The message as it would be stored: the prefix, then the content */
static GMimeStream *
view_stream (const FilterView *v)
{
  return filter_message_stream (v->prefix, v->content);
}

GMimeMessage *
filter_view_message (FilterView *v)
{
  g_autoptr (GMimeStream) cat = NULL;
  g_autoptr (GMimeParser) parser = NULL;

  if (v->mime || v->failed)
    return v->mime;
  cat = view_stream (v);
  parser = g_mime_parser_new_with_stream (cat);
  v->mime = g_mime_parser_construct_message (parser, NULL);
  v->failed = v->mime == NULL;
  return v->mime;
}

/* All values of @name: the message's fields and its top part's (GMime
 * keeps Content-* there), decoded. */
char **
filter_view_header (const char *name, gpointer data)
{
  GMimeMessage *m = filter_view_message (data);
  GPtrArray *out = g_ptr_array_new ();

  for (int pass = 0; m && pass < 2; pass++)
    {
      GMimeObject *part = pass ? g_mime_message_get_mime_part (m) : GMIME_OBJECT (m);
      GMimeHeaderList *l = part ? g_mime_object_get_header_list (part) : NULL;
      for (int i = 0; l && i < g_mime_header_list_get_count (l); i++)
        {
          GMimeHeader *h = g_mime_header_list_get_header_at (l, i);
          if (g_ascii_strcasecmp (g_mime_header_get_name (h), name) == 0)
            {
              const char *val = g_mime_header_get_value (h);
              g_ptr_array_add (out, g_strdup (val ? val : "")); /* decoded by GMime already */
            }
        }
    }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

static void
collect_text (GMimeObject *parent, GMimeObject *part, gpointer data)
{
  GString *s = data;
  if (GMIME_IS_TEXT_PART (part) && s->len < MAX_BODY_TEXT)
    {
      g_autofree char *t = g_mime_text_part_get_text (GMIME_TEXT_PART (part));
      if (t)
        g_string_append_len (s, t, MIN (strlen (t), MAX_BODY_TEXT - s->len));
    }
}

char *
filter_view_body (gpointer data)
{
  GMimeMessage *m = filter_view_message (data);
  GString *s = g_string_new (NULL);
  if (m)
    g_mime_message_foreach (m, collect_text, s);
  return g_string_free (s, FALSE);
}

gboolean
filter_view_mailbox_exists (const char *name, gpointer data)
{
  const FilterView *v = data;
  const char *why;
  g_autofree char *path = NULL;

  if (deliver_folder_is_inbox (name))
    return TRUE;
  if (!deliver_folder_valid (name, &why))
    return FALSE;
  if (v->rcpt->format == DELIVER_MAILDIR)
    {
      g_autofree char *dir = deliver_folder_maildir_path (v->rcpt->mailbox, name);
      path = g_build_filename (dir, "cur", NULL);
      return g_file_test (path, G_FILE_TEST_IS_DIR);
    }
  path = deliver_folder_mbox_path (v->rcpt->mailbox, name);
  return g_file_test (path, G_FILE_TEST_IS_REGULAR);
}

/* body :raw (RFC 5173 5.1): the stored bytes after the header, read
 * again from the spool once per view (per recipient) and again only for
 * more than was read (whether there is a body at all asks for 1) */
char *
filter_view_raw_body (gsize max, gpointer data)
{
  FilterView *v = data;

  if (!v->raw_read || max > v->raw_max)
    {
      g_autoptr (GMimeStream) s = view_stream (v);
      g_free (v->raw);
      v->raw = sieve_raw_body_read (s, max);
      v->raw_max = max;
      v->raw_read = TRUE;
    }
  return v->raw ? g_strndup (v->raw, max) : NULL;
}

/* The MIME parts (RFC 5173 :content, RFC 5703), built once per view,
 * that is once per recipient, from the message parsed for the headers */
const GPtrArray *
filter_view_mime_parts (gpointer data)
{
  FilterView *v = data;
  GMimeMessage *m;

  if (v->parts == NULL && (m = filter_view_message (v)) != NULL)
    v->parts = sieve_mime_parts_new (m, MAX_BODY_TEXT);
  return v->parts;
}
