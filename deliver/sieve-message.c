/* sieve-message.c - the message each Sieve action stores or sends: the
 * header edits (RFC 5293 7) and the replace and enclose changes (RFC 5703
 * 5, 6) made before it, in script order.  The message as received is a
 * header (the prefix and the spool's header part) and the spool's body;
 * an edit makes a new header, a change a new header and a new body,
 * written to a spool file of its own (streamed, one fixed buffer).
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "header-edit.h"
#include "pipeline.h"

/* Where a replaced part lay in the body as received, and how many bytes
 * took its place. */
typedef struct {
  gint64 start, end;
  gint64 new_len;
  gboolean set;
} PartRange;

/* One state of the message: borrowed strings and files of SieveMessages. */
typedef struct {
  const char *header;
  DeliverContent body;
} Version;

struct SieveMessages {
  const Delivery *dv;
  const SieveResult *r;
  Version received;
  Version *after;           /* [i]: after changes[i] (for stores), made on first use */
  guint n_after;
  GPtrArray *strings;       /* headers made */
  GPtrArray *spools;        /* bodies made */
  /* replace of a part (RFC 5703 5): the message as received, parsed on
   * the first such replace (its parts numbered as the script saw them),
   * and where each change's part lay in its body */
  GMimeStream *stream;
  GMimeMessage *parsed;
  PartRange *ranges;        /* [i]: changes[i]'s */
};

static const char *
keep_string (SieveMessages *m, char *s)
{
  g_ptr_array_add (m->strings, s);
  return s;
}

/* @header with edits [@from, @to) applied. */
static const char *
edit_range (SieveMessages *m, const char *header, guint from, guint to)
{
  const GPtrArray *edits = m->r->edits;
  g_autoptr (GPtrArray) some = g_ptr_array_new ();

  to = MIN (to, edits->len);
  for (guint i = from; i < to; i++)
    g_ptr_array_add (some, edits->pdata[i]);
  if (some->len == 0)
    return header;
  return keep_string (m, header_edit_sieve (header, some, filter_protected_fields));
}

/* ---- a new body --------------------------------------------------------------- */

static gboolean
put (DeliverSpool *s, const char *text, GError **error)
{
  return deliver_spool_write (s, text, strlen (text), error);
}

/* Bytes [@from, @to) of @c */
static gboolean
put_range (DeliverSpool *s, const DeliverContent *c, guint64 from, guint64 to, GError **error)
{
  char buf[32 * 1024];
  guint64 base = 0;

  for (guint k = 0; k < c->n; base += c->seg[k].length, k++)
    for (guint64 off = MAX (from, base) - base; off < c->seg[k].length && base + off < to;)
      {
        gssize n = pread (c->seg[k].fd, buf, MIN (sizeof buf, MIN (c->seg[k].length - off, to - base - off)),
                          c->seg[k].offset + off);
        if (n <= 0)
          {
            g_set_error (error, DELIVER_ERROR, n < 0 ? errno : EIO, "reading the message: %s",
                         n < 0 ? g_strerror (errno) : "short read");
            return FALSE;
          }
        if (!deliver_spool_write (s, buf, n, error))
          return FALSE;
        off += n;
      }
  return TRUE;
}

static gboolean
put_content (DeliverSpool *s, const DeliverContent *c, GError **error)
{
  return put_range (s, c, 0, G_MAXUINT64, error);
}

/* A spool for a new body, kept until @m goes. */
static DeliverSpool *
new_body (SieveMessages *m, GError **error)
{
  DeliverSpool *s = deliver_spool_new (m->dv->ctx, m->dv->config->spool_dir, error);

  if (s)
    g_ptr_array_add (m->spools, s);
  return s;
}

static gboolean
finish_body (DeliverSpool *s, Version *v, GError **error)
{
  if (!deliver_spool_finish (s, error))
    return FALSE;
  deliver_content_from_spool (&v->body, s);
  return TRUE;
}

/* @text as a text/plain UTF-8 entity: its MIME fields into @fields, its
 * encoded body returned. */
static char *
text_entity (const char *text, GString *fields)
{
  g_autoptr (GMimeFormatOptions) fmt = g_mime_format_options_new ();
  GMimeTextPart *t = g_mime_text_part_new_with_subtype ("plain");
  g_autofree char *whole = NULL;
  char *body;

  g_mime_text_part_set_text (t, text);
  /* RFC 5703 5: "a text/plain part in UTF-8", whatever the text */
  g_mime_text_part_set_charset (t, "utf-8");
  g_mime_part_set_content_encoding (GMIME_PART (t), g_mime_part_get_best_content_encoding (
                                      GMIME_PART (t), GMIME_ENCODING_CONSTRAINT_7BIT));
  g_mime_format_options_set_newline_format (fmt, GMIME_NEWLINE_FORMAT_UNIX);
  whole = g_mime_object_to_string (GMIME_OBJECT (t), fmt);
  g_object_unref (t);
  body = strstr (whole, "\n\n");
  g_string_append_len (fields, whole, body ? (gsize) (body - whole) + 1 : strlen (whole));
  return g_strdup (body ? body + 2 : "");
}

/* ---- enclose (RFC 5703 6) ------------------------------------------------------- */

static gboolean
named (const char *field, const char *const *names)
{
  g_autofree char *name = header_field_name (field);

  for (guint i = 0; names && names[i]; i++)
    if (g_ascii_strcasecmp (name, names[i]) == 0)
      return TRUE;
  return FALSE;
}

/* The new message's header: our Return-Path stays on top; the fields
 * :headers names are copied; Date and From are made unless copied (the
 * user's address as given); the Subject is :subject or the enclosed
 * one's.  sieve-lite shows later tests the same (sieve-replace.c). */
static char *
enclose_header (const Delivery *dv, const SieveChange *c, const char *old, const char *boundary)
{
  g_autoptr (GPtrArray) fields = header_fields (old);
  const char *const *copy = (const char *const *) c->headers;
  static const char *const date[] = { "Date", NULL }, *const from[] = { "From", NULL };
  static const char *const subj[] = { "Subject", NULL }, *const rp[] = { "Return-Path", NULL };
  gboolean has_date = FALSE, has_from = FALSE, has_subject = FALSE;
  GString *h = g_string_new (NULL);

  for (guint i = 0; i < fields->len; i++)
    if ((i == 0 && named (fields->pdata[i], rp))
        || (named (fields->pdata[i], copy) && !(c->subject && named (fields->pdata[i], subj))))
      {
        g_string_append (h, fields->pdata[i]);
        has_date |= named (fields->pdata[i], date);
        has_from |= named (fields->pdata[i], from);
        has_subject |= named (fields->pdata[i], subj);
      }
  if (!has_date)
    {
      g_autoptr (GDateTime) now = g_date_time_new_now_local ();
      g_autofree char *d = g_mime_utils_header_format_date (now);
      g_string_append_printf (h, "Date: %s\n", d);
    }
  if (!has_from)
    g_string_append_printf (h, "From: <%s>\n", dv->rcpt->original);
  for (guint i = 0; !c->subject && !has_subject && i < fields->len; i++)
    if (named (fields->pdata[i], subj))
      {
        g_string_append (h, fields->pdata[i]);
        break;
      }
  if (c->subject)
    {
      g_autofree char *enc = g_mime_utils_header_encode_text (NULL, c->subject, "utf-8");
      g_string_append_printf (h, "Subject: %s\n", enc);
    }
  g_string_append_printf (h, "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"%s\"\n\n", boundary);
  return g_string_free (h, FALSE);
}

/* The enclosed message goes in without our Return-Path (it stays on the
 * outer one). */
static const char *
without_return_path (const char *header)
{
  if (g_ascii_strncasecmp (header, "Return-Path:", 12) != 0)
    return header;
  return strchr (header, '\n') ? strchr (header, '\n') + 1 : "";
}

static gboolean
enclose (SieveMessages *m, const SieveChange *c, Version *v, GError **error)
{
  g_autofree char *boundary = g_strdup_printf ("=_lmtpd_%08x%08x%08x", g_random_int (), g_random_int (),
                                               g_random_int ());
  g_autoptr (GString) part = g_string_new (NULL);
  g_autofree char *lf = filter_to_lf (c->text);
  g_autofree char *text = text_entity (lf, part);
  DeliverSpool *s = new_body (m, error);
  g_autofree char *intro = NULL;

  if (s == NULL)
    return FALSE;
  intro = g_strdup_printf ("This is a message in MIME format.\n\n--%s\n%s\n%s\n--%s\n"
                           "Content-Type: message/rfc822\n\n", boundary, part->str, text, boundary);
  if (!put (s, intro, error) || !put (s, without_return_path (v->header), error)
      || !put_content (s, &v->body, error))
    return FALSE;
  {
    g_autofree char *end = g_strdup_printf ("\n--%s--\n", boundary);
    if (!put (s, end, error) || !finish_body (s, v, error))
      return FALSE;
  }
  v->header = keep_string (m, enclose_header (m->dv, c, v->header, boundary));
  return TRUE;
}

/* ---- replace (RFC 5703 5), the whole message ---------------------------------------- */

/* The fields that describe the body replaced: they go with it. */
static gboolean
mime_field (const char *field)
{
  g_autofree char *name = header_field_name (field);

  return g_ascii_strncasecmp (name, "Content-", 8) == 0 || g_ascii_strcasecmp (name, "MIME-Version") == 0;
}

/* Renames a field to Original-<name>, its value as it was. */
static void
append_original (GString *h, const char *field)
{
  g_string_append (h, "Original-");
  g_string_append (h, field);
}

/* The old header with the MIME fields gone, Subject and From kept as
 * Original-Subject and Original-From when :subject and :from replace them. */
static GString *
replace_fields (const SieveChange *c, const char *old, gboolean keep_mime)
{
  g_autoptr (GPtrArray) fields = header_fields (old);
  static const char *const subj[] = { "Subject", NULL }, *const from[] = { "From", NULL };
  GString *h = g_string_new (NULL);

  for (guint i = 0; i < fields->len; i++)
    {
      const char *f = fields->pdata[i];
      if (mime_field (f) && !keep_mime)
        continue;
      if ((c->subject && named (f, subj)) || (c->from && named (f, from)))
        append_original (h, f);
      else
        g_string_append (h, f);
    }
  if (c->subject)
    {
      g_autofree char *enc = g_mime_utils_header_encode_text (NULL, c->subject, "utf-8");
      g_string_append_printf (h, "Subject: %s\n", enc);
    }
  if (c->from)
    {
      g_autoptr (InternetAddressList) l = internet_address_list_parse (NULL, c->from);
      g_autofree char *enc = l ? internet_address_list_to_string (l, NULL, TRUE) : g_strdup (c->from);
      g_string_append_printf (h, "From: %s\n", enc);
    }
  if (!keep_mime)
    g_string_append (h, "MIME-Version: 1.0\n");
  return h;
}

/* replace :mime: the entity's MIME fields go into @h (no others: they
 * describe the body, RFC 2045 2.4), its body is returned.  Without the
 * empty line it is all body. */
static char *
mime_entity (const char *lf, GString *h)
{
  const char *sep = g_str_has_prefix (lf, "\n") ? lf : strstr (lf, "\n\n");
  g_autofree char *fields = NULL;
  g_autoptr (GPtrArray) list = NULL;

  if (sep == NULL)
    return g_strdup (lf);
  fields = g_strndup (lf, sep - lf + (sep == lf ? 0 : 1));
  list = header_fields (fields);
  for (guint i = 0; i < list->len; i++)
    if (mime_field (list->pdata[i]) && g_ascii_strncasecmp (list->pdata[i], "MIME-Version", 12) != 0)
      g_string_append (h, list->pdata[i]);
  return g_strdup (sep + (sep == lf ? 1 : 2));
}

static gboolean
replace (SieveMessages *m, const SieveChange *c, Version *v, GError **error)
{
  g_autoptr (GString) h = replace_fields (c, v->header, FALSE);
  g_autofree char *lf = filter_to_lf (c->text);
  g_autofree char *body = c->mime ? mime_entity (lf, h) : text_entity (lf, h);
  DeliverSpool *s;

  g_string_append_c (h, '\n');
  /* a stored message ends with a line end */
  if (body[0] && !g_str_has_suffix (body, "\n"))
    {
      char *ended = g_strconcat (body, "\n", NULL);
      g_free (body);
      body = ended;
    }
  if ((s = new_body (m, error)) == NULL || !put (s, body, error) || !finish_body (s, v, error))
    return FALSE;
  v->header = keep_string (m, g_string_free (g_steal_pointer (&h), FALSE));
  return TRUE;
}

/* ---- replace of a part (RFC 5703 5) ---------------------------------------------- */

#define MAX_PART_HEADER (64 * 1024)

/* The message as received, parsed as the filter view parsed it: its
 * parts are numbered as the script saw them (SieveChange.part). */
static GMimeMessage *
received_parsed (SieveMessages *m)
{
  g_autoptr (GMimeParser) parser = NULL;

  if (m->stream)
    return m->parsed;
  m->stream = filter_message_stream (m->received.header, &m->received.body);
  parser = g_mime_parser_new_with_stream (m->stream);
  m->parsed = g_mime_parser_construct_message (parser, NULL);
  return m->parsed;
}

/* Where @h's empty line begins (LF or CR LF lines), or NULL */
static char *
empty_line (char *h)
{
  char *lf = strstr (h, "\n\n"), *crlf = strstr (h, "\n\r\n");

  return lf && (crlf == NULL || lf < crlf) ? lf : crlf;
}

/* The fields of the part in [@start, @end) of the stream, up to its
 * empty line (at most MAX_PART_HEADER bytes of them) */
static char *
read_fields (GMimeStream *stream, gint64 start, gint64 end)
{
  GString *h = g_string_new (NULL);
  char buf[4096], *blank = NULL;
  gssize n;

  if (g_mime_stream_seek (stream, start, GMIME_STREAM_SEEK_SET) < 0)
    return g_string_free (h, FALSE);
  while (blank == NULL && h->len < MAX_PART_HEADER && (gint64) h->len < end - start
         && (n = g_mime_stream_read (stream, buf, MIN ((gint64) sizeof buf, end - start - (gint64) h->len))) > 0)
    {
      g_string_append_len (h, buf, n);
      blank = empty_line (h->str);
    }
  if (h->str[0] == '\n' || g_str_has_prefix (h->str, "\r\n"))
    g_string_truncate (h, 0);   /* a part without fields: its empty line comes first */
  else if (blank)
    g_string_truncate (h, blank - h->str + 1);
  return g_string_free (h, FALSE);
}

/* Finds part @part in the message as received: its range in the body
 * into @r, its fields, and whether it is the top part of an enclosed
 * message. */
static gboolean
locate_part (SieveMessages *m, guint part, PartRange *r, char **fields, gboolean *top, GError **error)
{
  GMimeMessage *msg = received_parsed (m), *enclosed = NULL;
  GMimeObject *obj = NULL;
  gint64 hlen = strlen (m->received.header), start = 0, end = 0;

  if (msg == NULL || !sieve_mime_part_range (msg, m->stream, part, &obj, &enclosed, &start, &end) || start < hlen)
    {
      g_set_error (error, DELIVER_ERROR, ENOENT, "replace: part %u of the message not found", part);
      return FALSE;
    }
  *fields = read_fields (m->stream, start, end);
  *top = enclosed != NULL;
  r->start = start - hlen;
  r->end = end - hlen;
  return TRUE;
}

/* Where changes[@i]'s part lies in the body as the changes before it left
 * it (each part replaced before it moved it by its new length, a part
 * replaced inside another replaced later counting no more); FALSE when
 * one of them took it away: it lay inside a part replaced, or the whole
 * message changed. */
static gboolean
map_range (SieveMessages *m, guint i, gint64 *start, gint64 *end)
{
  g_autoptr (GArray) live = g_array_new (FALSE, FALSE, sizeof (PartRange));
  const PartRange *r = &m->ranges[i];

  *start = r->start;
  *end = r->end;
  for (guint j = 0; j < i; j++)
    {
      const PartRange *p = &m->ranges[j];
      if (((const SieveChange *) m->r->changes->pdata[j])->part == 0 || !p->set)
        return FALSE;
      for (guint k = live->len; k > 0; k--)
        if (p->start <= g_array_index (live, PartRange, k - 1).start
            && g_array_index (live, PartRange, k - 1).end <= p->end)
          g_array_remove_index (live, k - 1);
      g_array_append_val (live, *p);
    }
  for (guint k = 0; k < live->len; k++)
    {
      const PartRange *q = &g_array_index (live, PartRange, k);
      gint64 d = q->new_len - (q->end - q->start);
      if (q->start <= r->start && r->end <= q->end && (q->start != r->start || q->end != r->end))
        return FALSE;
      *start += q->end <= r->start ? d : 0;
      *end += q->end <= r->end ? d : 0;
    }
  return TRUE;
}

/* The part's new bytes: its own fields but the MIME ones (they described
 * the content replaced), the replacement's MIME fields (replace :mime:
 * the entity's), the empty line, the body.  The line end before the
 * next delimiter is the delimiter's (RFC 2046 5.1.1), not the part's. */
static char *
part_entity (const SieveChange *c, const char *old_fields, gboolean top, gboolean at_end)
{
  g_autoptr (GPtrArray) fields = header_fields (old_fields);
  g_autofree char *lf = filter_to_lf (c->text);
  g_autofree char *body = NULL;
  GString *h = g_string_new (NULL);

  for (guint i = 0; i < fields->len; i++)
    if (!mime_field (fields->pdata[i]))
      g_string_append (h, fields->pdata[i]);
  if (top)
    g_string_append (h, "MIME-Version: 1.0\n");
  body = c->mime ? mime_entity (lf, h) : text_entity (lf, h);
  g_string_append_c (h, '\n');
  g_string_append (h, body);
  if (!at_end && g_str_has_suffix (h->str, "\n"))
    g_string_truncate (h, h->len - 1);
  else if (at_end && !g_str_has_suffix (h->str, "\n"))
    g_string_append_c (h, '\n');
  return g_string_free (h, FALSE);
}

/* replace inside foreverypart: the body with the part's bytes, from its
 * first field to the end of its body, swapped for the new entity,
 * streamed into a spool; :subject and :from change the top header. */
static gboolean
replace_part (SieveMessages *m, guint i, Version *v, GError **error)
{
  const SieveChange *c = m->r->changes->pdata[i];
  g_autofree char *fields = NULL, *entity = NULL;
  gint64 start, end, size = deliver_content_size (&v->body);
  gboolean top = FALSE;
  DeliverSpool *s;

  if (!locate_part (m, c->part, &m->ranges[i], &fields, &top, error))
    return FALSE;
  if (!map_range (m, i, &start, &end) || end > size)
    {
      g_set_error (error, DELIVER_ERROR, ENOENT, "replace: part %u is gone: an earlier change took it", c->part);
      return FALSE;
    }
  entity = part_entity (c, fields, top, end == size);
  m->ranges[i].new_len = strlen (entity);
  m->ranges[i].set = TRUE;
  if ((s = new_body (m, error)) == NULL || !put_range (s, &v->body, 0, start, error) || !put (s, entity, error)
      || !put_range (s, &v->body, end, G_MAXUINT64, error) || !finish_body (s, v, error))
    return FALSE;
  if (c->subject || c->from)
    {
      GString *h = replace_fields (c, v->header, TRUE);
      g_string_append_c (h, '\n');
      v->header = keep_string (m, g_string_free (h, FALSE));
    }
  return TRUE;
}

/* ---- the versions ---------------------------------------------------------------- */

/* @v (the message with the edits before changes[@i] applied) as it leaves it. */
static gboolean
apply_change (SieveMessages *m, guint i, Version *v, GError **error)
{
  const SieveChange *c = m->r->changes->pdata[i];

  if (c->part != 0)
    return replace_part (m, i, v, error);
  return c->kind == SIEVE_CHANGE_ENCLOSE ? enclose (m, c, v, error) : replace (m, c, v, error);
}

/* The message after changes [0, @n) with the edits made before each. */
static gboolean
after_changes (SieveMessages *m, guint n, Version *v, GError **error)
{
  const GPtrArray *changes = m->r->changes;

  if (n == 0)
    {
      *v = m->received;
      return TRUE;
    }
  for (guint i = m->n_after; i < n; i++)
    {
      const SieveChange *c = changes->pdata[i];
      Version w = i ? m->after[i - 1] : m->received;
      guint from = i ? ((SieveChange *) changes->pdata[i - 1])->edits_before : 0;
      w.header = edit_range (m, w.header, from, c->edits_before);
      if (!apply_change (m, i, &w, error))
        return FALSE;
      m->after[i] = w;
      m->n_after = i + 1;
    }
  *v = m->after[n - 1];
  return TRUE;
}

/* A redirect's message: enclose "does not affect messages that are
 * forwarded via a redirect action" (RFC 5703 6); made afresh (replace
 * bodies are small, and redirects few). */
static gboolean
redirect_version (SieveMessages *m, guint edits, guint changes, Version *v, GError **error)
{
  guint done = 0;

  *v = m->received;
  for (guint i = 0; i < changes; i++)
    {
      const SieveChange *c = m->r->changes->pdata[i];
      if (c->kind == SIEVE_CHANGE_ENCLOSE)
        continue;
      v->header = edit_range (m, v->header, done, c->edits_before);
      done = MAX (done, c->edits_before);
      if (!apply_change (m, i, v, error))
        return FALSE;
    }
  v->header = edit_range (m, v->header, done, edits);
  return TRUE;
}

gboolean
sieve_messages_get (SieveMessages *m, guint edits, guint changes, gboolean redirect, const char **header,
                    DeliverContent *body, GError **error)
{
  Version v;

  changes = MIN (changes, m->r->changes->len);
  if (redirect)
    {
      if (!redirect_version (m, edits, changes, &v, error))
        return FALSE;
    }
  else
    {
      guint from = changes ? ((SieveChange *) m->r->changes->pdata[changes - 1])->edits_before : 0;
      if (!after_changes (m, changes, &v, error))
        return FALSE;
      v.header = edit_range (m, v.header, from, edits);
    }
  *header = v.header;
  *body = v.body;
  return TRUE;
}

SieveMessages *
sieve_messages_new (const Delivery *dv, const SieveResult *r, const char *header, const DeliverContent *body)
{
  SieveMessages *m = g_new0 (SieveMessages, 1);

  m->dv = dv;
  m->r = r;
  m->strings = g_ptr_array_new_with_free_func (g_free);
  m->spools = g_ptr_array_new_with_free_func ((GDestroyNotify) deliver_spool_free);
  m->received.header = keep_string (m, g_strdup (header));
  m->received.body = *body;
  m->after = g_new0 (Version, r->changes->len + 1);
  m->ranges = g_new0 (PartRange, r->changes->len + 1);
  return m;
}

void
sieve_messages_free (SieveMessages *m)
{
  if (m == NULL)
    return;
  g_ptr_array_unref (m->strings);
  g_ptr_array_unref (m->spools);
  g_free (m->after);
  g_free (m->ranges);
  g_clear_object (&m->parsed);
  g_clear_object (&m->stream);
  g_free (m);
}
