/* svc-mime.c - the services that look inside the MIME tree (GMime):
 *   security (RFC 4496 4.1)  attachment policy by declared type, detected
 *                            type and file name; ClamAV's clamd (INSTREAM)
 *   links    (4.9)           large attachments move to a store directory
 *                            and become a link
 * An offending part is replaced by a text/plain notice; GMime writes every
 * other part back byte for byte.  The body part is sent back, and the header
 * part too when it changed (a replaced top-level body brings its own
 * Content-* fields).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <gio/gunixsocketaddress.h>

#include "gmime-cleanup.h"
#include "services.h"

#define PART_MAX (64 * 1024 * 1024)

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimePart, g_object_unref)

/* ---- the message and its parts ------------------------------------------ */

typedef struct {
  GMimeMessage *msg;
  GBytes *header;       /* the header part as lmtpd sent it, or NULL */
} Loaded;

/* Parses header part + body part; large parts stay in the body file.
 * Either may be missing: a message without an empty line arrives as a
 * header part alone, and its first line need not be a header field at all,
 * so GMime may well read all of it as the body.  Both are scanned. */
static GMimeMessage *
parse (const ServiceInput *in, gboolean body_only)
{
  g_autoptr (GMimeStream) cat = g_mime_stream_cat_new ();
  g_autoptr (GMimeParser) parser = NULL;
  gsize n = 0;
  const char *h = in->header ? g_bytes_get_data (in->header, &n) : NULL;

  if (body_only)
    {
      g_autoptr (GMimeStream) nl = g_mime_stream_mem_new_with_buffer ("\n", 1);
      g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), nl);
    }
  if (h != NULL)
    {
      g_autoptr (GMimeStream) hs = g_mime_stream_mem_new_with_buffer (h, n);
      g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), hs);
    }
  if (in->body_fd >= 0)
    {
      g_autoptr (GMimeStream) bs = g_mime_stream_fs_new (dup (in->body_fd));
      g_mime_stream_fs_set_owner (GMIME_STREAM_FS (bs), TRUE);
      g_mime_stream_seek (bs, 0, GMIME_STREAM_SEEK_SET);
      g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), bs);
    }
  parser = g_mime_parser_new_with_stream (cat);
  g_mime_parser_set_persist_stream (parser, TRUE);
  return g_mime_parser_construct_message (parser, NULL);
}

/* Parses header part + body part; large parts stay in the body file.
 * Either may be missing: a message without an empty line arrives as a
 * header part alone, and its first line need not be a header field at all.
 * GMime builds no message from that; read as all body, it is scanned too. */
static gboolean
load (const ServiceInput *in, Loaded *out)
{
  if (in->header == NULL && in->body_fd < 0)
    return FALSE;
  out->msg = parse (in, FALSE);
  if (out->msg == NULL)
    out->msg = parse (in, TRUE);
  out->header = in->header;
  return out->msg != NULL;
}

/* The message as GMime writes it (every part not replaced byte for byte). */
static GByteArray *
serialize (GMimeObject *obj)
{
  g_autoptr (GMimeFormatOptions) fmt = g_mime_format_options_new ();
  g_autoptr (GMimeStream) mem = g_mime_stream_mem_new ();
  GByteArray *a;

  g_mime_stream_mem_set_owner (GMIME_STREAM_MEM (mem), FALSE);
  g_mime_format_options_set_newline_format (fmt, GMIME_NEWLINE_FORMAT_UNIX);
  a = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
  if (g_mime_object_write_to_stream (obj, fmt, mem) < 0)
    {
      g_byte_array_unref (a);
      return NULL;
    }
  return a;
}

/* Splits @a into the adapted parts: the body always, the header only when
 * it is no longer the one lmtpd sent (a replaced top-level body changes
 * its Content-* fields).  FALSE if no file could be written. */
static gboolean
emit (const Loaded *l, const GByteArray *a, ServiceOutput *out)
{
  const guint8 *sep = a->len && a->data[0] == '\n' ? a->data : NULL;
  gsize hlen, orig_len = 0;
  const void *orig = l->header ? g_bytes_get_data (l->header, &orig_len) : NULL;
  g_autofree char *path = NULL;
  int fd;

  for (gsize i = 1; sep == NULL && i < a->len; i++)
    if (a->data[i] == '\n' && a->data[i - 1] == '\n')
      sep = a->data + i;
  hlen = sep ? (gsize) (sep + 1 - a->data) : a->len;
  fd = g_file_open_tmp ("services-XXXXXX", &path, NULL);
  if (fd < 0)
    return FALSE;
  g_unlink (path);
  /* an empty adapted body is sent as no body part at all, which means
   * "unchanged": what was removed would come back.  One empty line it is. */
  if (hlen == a->len && write (fd, "\n", 1) != 1)
    {
      close (fd);
      return FALSE;
    }
  if (write (fd, a->data + hlen, a->len - hlen) != (gssize) (a->len - hlen))
    {
      close (fd);
      return FALSE;
    }
  lseek (fd, 0, SEEK_SET);
  out->body_fd = fd;
  if (orig == NULL || hlen != orig_len || memcmp (orig, a->data, hlen) != 0)
    out->header = g_bytes_new (a->data, hlen);
  return TRUE;
}

/* Writes the message and hands back its adapted parts. */
static gboolean
adapt (const Loaded *l, ServiceOutput *out)
{
  g_autoptr (GByteArray) a = serialize (GMIME_OBJECT (l->msg));
  return a != NULL && emit (l, a, out);
}

/* Decoded content of a leaf part (bounded). */
static GByteArray *
decoded (GMimePart *part)
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

static GMimePart *
notice_part (const char *text)
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

typedef struct {
  /* a replacement for @part, or NULL to keep it */
  GMimeObject *(*leaf) (GMimePart *part, gpointer data);
  /* TRUE to drop text outside the parts; NULL keeps it */
  gboolean (*stray) (const char *text, gpointer data);
  /* a replacement for a subtree too deep to walk; NULL keeps it */
  GMimeObject *(*too_deep) (GMimeObject *obj, gpointer data);
  gpointer data;
  gboolean changed;
} Visitor;

static GMimeObject *visit (Visitor *v, GMimeObject *obj, guint depth);

static void
visit_stray (Visitor *v, GMimeMultipart *mp)
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
visit_multipart (Visitor *v, GMimeMultipart *mp, guint depth)
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
visit_message (Visitor *v, GMimeMessage *msg, guint depth)
{
  GMimeObject *body = msg ? g_mime_message_get_mime_part (msg) : NULL;
  g_autoptr (GMimeObject) repl = body ? visit (v, body, depth) : NULL;

  if (repl)
    g_mime_message_set_mime_part (msg, repl);
}

/* Returns a replacement for @obj (a new reference), or NULL. */
static GMimeObject *
visit (Visitor *v, GMimeObject *obj, guint depth)
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

/* Walks all of @msg; TRUE if anything was replaced or dropped. */
static gboolean
visit_all (GMimeMessage *msg, Visitor *v)
{
  visit_message (v, msg, 0);
  return v->changed;
}

/* ---- security ------------------------------------------------------------- */

#define EICAR "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

typedef struct {
  char **extensions;    /* lowercased, without dot */
  char **types;         /* lowercased MIME types */
  char *clamd;          /* endpoint or NULL */
  char **actions;
  char *notify_lmtp;    /* lmtpd to send an admin notice through, or NULL */
  char *notify_rcpt;
} Security;

typedef struct {
  Security *sec;
  GString *findings;
  GError *error;        /* clamd unreachable */
} Scan;

static gboolean
security_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  Security *s = g_new0 (Security, 1);
  g_autofree char *actions = service_get_string (kf, group, "actions", "replace;tag [VIRUS]");

  svc->state = s;
  s->extensions = service_get_list (kf, group, "block_extensions");
  s->types = service_get_list (kf, group, "block_types");
  for (guint i = 0; s->extensions && s->extensions[i]; i++)
    {
      char *e = s->extensions[i];
      for (char *p = e; *p; p++)
        *p = g_ascii_tolower (*p);
      if (e[0] == '.')
        memmove (e, e + 1, strlen (e));
    }
  for (guint i = 0; s->types && s->types[i]; i++)
    for (char *p = s->types[i]; *p; p++)
      *p = g_ascii_tolower (*p);
  s->clamd = service_get_string (kf, group, "clamd", NULL);
  s->notify_lmtp = service_get_string (kf, group, "notify_lmtp", NULL);
  s->notify_rcpt = service_get_string (kf, group, "notify", NULL);
  s->actions = g_strsplit (actions, ";", -1);
  for (guint i = 0; s->actions[i]; i++)
    {
      OcpVerdict probe;
      gboolean ok;
      g_strstrip (s->actions[i]);
      if (strcmp (s->actions[i], "replace") == 0)
        continue;
      ocp_verdict_init (&probe);
      ok = service_apply_action (&probe, s->actions[i], error);
      ocp_verdict_clear (&probe);
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

/* The type the bytes say they are, for the few that matter. */
static const char *
detected_type (const GByteArray *a)
{
  if (a->len >= 2 && a->data[0] == 'M' && a->data[1] == 'Z')
    return "application/x-dosexec";
  if (a->len >= 4 && memcmp (a->data, "\177ELF", 4) == 0)
    return "application/x-executable";
  if (a->len >= 4 && memcmp (a->data, "PK\003\004", 4) == 0)
    return "application/zip";
  return NULL;
}

/* clamd INSTREAM: "stream: OK" or "stream: NAME FOUND" */
static char *
clamd_scan (const char *endpoint, const GByteArray *a, GError **error)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn = NULL;
  g_autoptr (GSocketAddress) addr = NULL;
  GOutputStream *out;
  GInputStream *in;
  char answer[512];
  gsize got = 0;
  guint32 len;

  g_socket_client_set_timeout (client, 60);
  if (g_str_has_prefix (endpoint, "unix:"))
    {
      addr = g_unix_socket_address_new (endpoint + 5);
      conn = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (addr), NULL, error);
    }
  else
    conn = g_socket_client_connect_to_host (client, g_str_has_prefix (endpoint, "inet:") ? endpoint + 5 : endpoint,
                                            3310, NULL, error);
  if (conn == NULL)
    return NULL;
  out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  in = g_io_stream_get_input_stream (G_IO_STREAM (conn));
  if (!g_output_stream_write_all (out, "zINSTREAM", 10, NULL, NULL, error))
    return NULL;
  for (gsize off = 0; off < a->len; off += 65536)
    {
      gsize n = MIN (65536, a->len - off);
      len = GUINT32_TO_BE ((guint32) n);
      if (!g_output_stream_write_all (out, &len, 4, NULL, NULL, error)
          || !g_output_stream_write_all (out, a->data + off, n, NULL, NULL, error))
        return NULL;
    }
  len = 0;
  if (!g_output_stream_write_all (out, &len, 4, NULL, NULL, error)
      || !g_input_stream_read_all (in, answer, sizeof answer - 1, &got, NULL, error))
    return NULL;
  answer[got] = '\0';
  if (strstr (answer, "FOUND"))
    {
      char *name = g_strdup (answer + (g_str_has_prefix (answer, "stream: ") ? 8 : 0));
      char *f = strstr (name, " FOUND");
      if (f)
        *f = '\0';
      return name;
    }
  if (!strstr (answer, "OK"))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "clamd: %s", answer);
      return NULL;
    }
  return g_strdup ("");
}

/* ---- what a reader may make of a part ----------------------------------
 * A part is judged by every reading a mail client could give it, not only
 * the one its header declares: headers can disagree (two
 * Content-Transfer-Encoding fields, a name in Content-Type and another in
 * Content-Disposition), and a text body can carry an inline uuencoded file
 * that clients show as an attachment.  So the raw content is also decoded
 * as base64, quoted-printable and uuencode, and every name counts.
 */

typedef struct {
  GPtrArray *contents;  /* GByteArray: distinct, non-empty */
  guint shown;          /* the first ones are what a client shows: as
                           declared, and its inline uuencoded files */
  GPtrArray *names;     /* file names the part goes by */
} Views;

static void
views_add (Views *v, GByteArray *a)
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
views_add_uuencoded (Views *v, const GByteArray *a)
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

/* @raw as it stands and under every transfer decoding. */
static void
views_add_readings (Views *v, const GByteArray *raw)
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

static void
views_init (Views *v)
{
  v->contents = g_ptr_array_new_with_free_func ((GDestroyNotify) g_byte_array_unref);
  v->names = g_ptr_array_new_with_free_func (g_free);
  v->shown = 0;
}

static void
views_clear (Views *v)
{
  g_ptr_array_unref (v->contents);
  g_ptr_array_unref (v->names);
}

static void
views_of_part (Views *v, GMimePart *part)
{
  GMimeContentDisposition *cd = g_mime_object_get_content_disposition (GMIME_OBJECT (part));
  GMimeContentType *ct = g_mime_object_get_content_type (GMIME_OBJECT (part));
  const char *names[] = {
    cd ? g_mime_content_disposition_get_parameter (cd, "filename") : NULL,
    ct ? g_mime_content_type_get_parameter (ct, "name") : NULL,
  };
  g_autoptr (GByteArray) raw = encoded (part);

  views_init (v);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (names[i] && names[i][0])
      g_ptr_array_add (v->names, g_strdup (names[i]));
  views_add (v, decoded (part));
  if (v->contents->len)
    views_add_uuencoded (v, v->contents->pdata[0]);
  v->shown = v->contents->len;
  views_add_readings (v, raw);
}

/* ---- the security checks -------------------------------------------------- */

/* The extension a file system would see: Windows drops trailing dots and
 * spaces ("setup.exe." runs as setup.exe), and a path is not the name. */
static char *
effective_extension (const char *name)
{
  const char *base = MAX (strrchr (name, '/'), strrchr (name, '\\'));
  g_autofree char *n = g_strdup (base ? base + 1 : name);
  gsize len = strlen (n);
  char *dot;

  while (len > 0 && (n[len - 1] == '.' || g_ascii_isspace (n[len - 1])))
    n[--len] = '\0';
  dot = strrchr (n, '.');
  return dot ? g_ascii_strdown (dot + 1, -1) : NULL;
}

static char *
name_why (const Security *s, const Views *v)
{
  for (guint i = 0; s->extensions && i < v->names->len; i++)
    {
      g_autofree char *ext = effective_extension (v->names->pdata[i]);
      if (ext && g_strv_contains ((const char *const *) s->extensions, ext))
        return g_strdup_printf ("file name %s is not allowed", (char *) v->names->pdata[i]);
    }
  return NULL;
}

static char *
content_why (Scan *scan, const Views *v)
{
  const Security *s = scan->sec;

  /* only what a client shows: a guessed decoding of text can start with
   * "MZ" by chance, and that is no executable */
  for (guint i = 0; s->types && i < v->shown; i++)
    {
      const char *dtype = detected_type (v->contents->pdata[i]);
      if (dtype && g_strv_contains ((const char *const *) s->types, dtype))
        return g_strdup_printf ("content detected as %s is not allowed", dtype);
    }
  for (guint i = 0; s->clamd && scan->error == NULL && i < v->contents->len; i++)
    {
      g_autofree char *virus = clamd_scan (s->clamd, v->contents->pdata[i], &scan->error);
      if (virus && virus[0])
        return g_strdup_printf ("virus %s found", virus);
    }
  /* also behind clamd: a scanner without signatures must not let it by */
  for (guint i = 0; i < v->contents->len; i++)
    {
      const GByteArray *a = v->contents->pdata[i];
      if (g_strstr_len ((const char *) a->data, a->len, EICAR))
        return g_strdup ("virus Eicar-Test-Signature found");
    }
  return NULL;
}

static void
add_finding (Scan *scan, const char *what, const char *why)
{
  g_string_append_printf (scan->findings, "%s%s: %s", scan->findings->len ? "; " : "", what, why);
}

static GMimeObject *
security_leaf (GMimePart *part, gpointer data)
{
  Scan *scan = data;
  GMimeContentType *ct = g_mime_object_get_content_type (GMIME_OBJECT (part));
  g_autofree char *mime_type = ct ? g_mime_content_type_get_mime_type (ct) : NULL;
  g_autofree char *type = g_ascii_strdown (mime_type ? mime_type : "", -1);
  const char *filename = g_mime_part_get_filename (part);
  g_autofree char *why = NULL, *text = NULL;
  Views v;

  views_of_part (&v, part);
  why = name_why (scan->sec, &v);
  if (!why && scan->sec->types && g_strv_contains ((const char *const *) scan->sec->types, type))
    why = g_strdup_printf ("type %s is not allowed", type);
  if (!why)
    why = content_why (scan, &v);
  if (!filename && v.names->len)
    filename = v.names->pdata[0];
  if (why)
    add_finding (scan, filename ? filename : type, why);
  if (why && filename)
    text = g_strdup_printf ("The attachment %s was removed by the security filter: %s.\n", filename, why);
  else if (why)
    text = g_strdup_printf ("A %s part was removed by the security filter: %s.\n", type, why);
  views_clear (&v);
  return text ? GMIME_OBJECT (notice_part (text)) : NULL;
}

/* Text outside the parts: no client shows it, so it goes if it is bad. */
static gboolean
security_stray (const char *text, gpointer data)
{
  Scan *scan = data;
  g_autoptr (GByteArray) raw = g_byte_array_append (g_byte_array_new (), (const guint8 *) text, strlen (text));
  g_autofree char *why = NULL;
  Views v;

  views_init (&v);
  views_add_readings (&v, raw);
  why = name_why (scan->sec, &v);
  if (!why)
    why = content_why (scan, &v);
  if (why)
    add_finding (scan, "text outside the MIME parts", why);
  views_clear (&v);
  return why != NULL;
}

static GMimeObject *
security_too_deep (GMimeObject *obj, gpointer data)
{
  add_finding (data, "MIME structure", "nested too deeply to be scanned");
  return GMIME_OBJECT (notice_part ("A part was removed by the security filter: "
                                    "it was nested too deeply to be scanned.\n"));
}

/* The last word: whatever GMime did not see as content (a header of a
 * part, a structure it read differently) must not carry the test string
 * either; if it still does, the whole body goes. */
static gboolean
security_leftovers (Scan *scan, GMimeMessage *msg)
{
  GMimeObject *top = g_mime_message_get_mime_part (msg);
  g_autoptr (GByteArray) a = top ? serialize (top) : NULL;
  g_autoptr (GMimePart) notice = NULL;

  if (a == NULL || g_strstr_len ((const char *) a->data, a->len, EICAR) == NULL)
    return FALSE;
  add_finding (scan, "message body", "virus Eicar-Test-Signature found");
  notice = notice_part ("The message body was removed by the security filter: "
                        "virus Eicar-Test-Signature found.\n");
  g_mime_message_set_mime_part (msg, GMIME_OBJECT (notice));
  return TRUE;
}

/* A short notice to the admin mailbox, delivered over LMTP. */
static void
notify_admin (Security *s, const ServiceInput *in, const char *findings)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn = NULL;
  g_autoptr (GDataInputStream) din = NULL;
  GOutputStream *out;
  g_autofree char *msg = NULL;
  const char *from = g_hash_table_lookup (in->env, "Mail-From");
  const char *to = g_hash_table_lookup (in->env, "Rcpt-To");

  g_socket_client_set_timeout (client, 30);
  if (g_str_has_prefix (s->notify_lmtp, "unix:"))
    {
      g_autoptr (GSocketAddress) a = g_unix_socket_address_new (s->notify_lmtp + 5);
      conn = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (a), NULL, NULL);
    }
  else
    conn = g_socket_client_connect_to_host (client, s->notify_lmtp + (g_str_has_prefix (s->notify_lmtp, "inet:") ? 5 : 0),
                                            24, NULL, NULL);
  if (conn == NULL)
    return;
  out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  din = g_data_input_stream_new (g_io_stream_get_input_stream (G_IO_STREAM (conn)));
  msg = g_strdup_printf ("LHLO security-filter\r\nMAIL FROM:<>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                         "Subject: Security filter notice\r\nFrom: security-filter\r\nTo: <%s>\r\n"
                         "Auto-Submitted: auto-generated\r\n\r\nMessage from <%s> to <%s>: %s\r\n.\r\nQUIT\r\n",
                         s->notify_rcpt, s->notify_rcpt, from ? from : "", to ? to : "", findings);
  g_output_stream_write_all (out, msg, strlen (msg), NULL, NULL, NULL);
  /* read until QUIT's reply so the notice is delivered before we go */
  for (int i = 0; i < 20; i++)
    {
      g_autofree char *line = g_data_input_stream_read_line (din, NULL, NULL, NULL);
      if (line == NULL || g_str_has_prefix (line, "221"))
        break;
    }
}

/* Typed results for Sieve's virustest (RFC 5235). */
static void
security_labels (const Scan *scan, gboolean replaced, OcpVerdict *v)
{
  gboolean virus = strstr (scan->findings->str, "virus ") != NULL;

  v->labels = g_ptr_array_new_with_free_func (g_free);
  if (!scan->error)
    g_ptr_array_add (v->labels, g_strdup ("virus-scanned"));
  if (virus)
    g_ptr_array_add (v->labels, g_strdup ("virus"));
  if (replaced && !virus)
    g_ptr_array_add (v->labels, g_strdup ("dangerous-attachment"));
}

static void
security_tempfail (OcpVerdict *v, const char *what)
{
  v->verdict = OCP_VERDICT_TEMPFAIL;
  v->reply_code = 451;
  g_free (v->reply_text);
  v->reply_text = g_strdup (what);
}

/* The configured actions; "replace" sends the rewritten message, and if
 * that cannot be written the mail waits rather than go through unfiltered. */
static void
security_act (Security *s, const Loaded *l, const ServiceInput *in, const Scan *scan, ServiceOutput *out)
{
  for (guint i = 0; s->actions[i]; i++)
    if (strcmp (s->actions[i], "replace") != 0)
      service_apply_action (&out->verdict, s->actions[i], NULL);
    else if (!adapt (l, out))
      {
        security_tempfail (&out->verdict, "4.3.0 Security filter could not rewrite the message");
        return;
      }
  service_add_header (&out->verdict, "X-Security-Filter: %s", scan->findings->str);
  if (s->notify_lmtp && s->notify_rcpt)
    notify_admin (s, in, scan->findings->str);
}

static void
security_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Security *s = svc->state;
  Loaded l = { 0 };
  Scan scan = { s, g_string_new (NULL), NULL };
  Visitor v = { security_leaf, security_stray, security_too_deep, &scan, FALSE };
  gboolean replaced;

  if (!load (in, &l))
    {
      g_string_free (scan.findings, TRUE);
      return; /* an empty message */
    }
  replaced = visit_all (l.msg, &v);
  if (!scan.error)
    replaced |= security_leftovers (&scan, l.msg);
  security_labels (&scan, replaced, &out->verdict);
  if (scan.error)
    {
      g_autofree char *why = g_strdup_printf ("4.7.1 Virus scanner unavailable: %s", scan.error->message);
      security_tempfail (&out->verdict, why);
      g_clear_error (&scan.error);
    }
  else if (replaced)
    security_act (s, &l, in, &scan, out);
  g_string_free (scan.findings, TRUE);
  g_object_unref (l.msg);
}

static void
security_free (gpointer p)
{
  Security *s = p;
  g_strfreev (s->extensions);
  g_strfreev (s->types);
  g_strfreev (s->actions);
  g_free (s->clamd);
  g_free (s->notify_lmtp);
  g_free (s->notify_rcpt);
  g_free (s);
}

const ServiceModule service_security = {
  "security", OCP_PARTS_ALL, security_configure, security_check, security_free,
};

/* ---- attachments to links ------------------------------------------------- */

typedef struct {
  char *store;
  char *url;
  guint64 max_size;     /* default limit */
  GPtrArray *limits;    /* "glob size" per recipient, first match */
} Links;

typedef struct {
  Links *links;
  guint64 limit;
  guint moved;
} Move;

static gboolean
links_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  Links *l = g_new0 (Links, 1);
  g_autofree char *max = service_get_string (kf, group, "max_size", "1048576");
  g_auto (GStrv) per = service_get_list (kf, group, "per_recipient");

  svc->state = l;
  l->store = service_get_string (kf, group, "store", NULL);
  l->url = service_get_string (kf, group, "url", NULL);
  l->max_size = g_ascii_strtoull (max, NULL, 10);
  l->limits = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; per && per[i]; i++)
    if (per[i][0])
      g_ptr_array_add (l->limits, g_strdup (per[i]));
  if (l->store == NULL || l->url == NULL)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND, "store and url are required");
      return FALSE;
    }
  if (g_mkdir_with_parents (l->store, 0755) == 0)
    service_own_path (l->store);
  else
    {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "store %s: %s", l->store, g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

static GMimeObject *
links_part (GMimePart *part, gpointer data)
{
  Move *m = data;
  const char *filename = g_mime_part_get_filename (part);
  g_autoptr (GByteArray) bytes = NULL;
  g_autofree char *digest = NULL, *dir = NULL, *safe = NULL, *path = NULL, *text = NULL, *esc = NULL;

  if (filename == NULL || !g_mime_part_is_attachment (part))
    return NULL;
  bytes = decoded (part);
  if (bytes->len <= m->limit || bytes->len > PART_MAX)
    return NULL;
  digest = g_compute_checksum_for_data (G_CHECKSUM_SHA256, bytes->data, bytes->len);
  safe = g_path_get_basename (filename);
  g_strdelimit (safe, "/\\:\r\n\t", '_');
  if (safe[0] == '.' || safe[0] == '\0')
    {
      g_free (safe);
      safe = g_strdup ("attachment");
    }
  dir = g_build_filename (m->links->store, digest, NULL);
  path = g_build_filename (dir, safe, NULL);
  if (g_mkdir_with_parents (dir, 0755) < 0 || !g_file_set_contents (path, (const char *) bytes->data, bytes->len, NULL))
    return NULL;
  g_chmod (path, 0644);
  esc = g_uri_escape_string (safe, NULL, FALSE);
  text = g_strdup_printf ("The attachment %s (%u bytes) was moved to:\n%s%s%s/%s\n", safe, bytes->len,
                          m->links->url, g_str_has_suffix (m->links->url, "/") ? "" : "/", digest, esc);
  m->moved++;
  return GMIME_OBJECT (notice_part (text));
}

static void
links_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Links *l = svc->state;
  Move m = { l, l->max_size, 0 };
  Loaded ld = { 0 };
  Visitor v = { links_part, NULL, NULL, NULL, FALSE };
  g_autofree char *rcpt = in->rcpts[0] ? g_ascii_strdown (in->rcpts[0], -1) : g_strdup ("");

  for (guint i = 0; i < l->limits->len; i++)
    {
      g_auto (GStrv) f = g_strsplit (l->limits->pdata[i], " ", 2);
      if (f[1] && g_pattern_match_simple (f[0], rcpt))
        {
          m.limit = g_ascii_strtoull (f[1], NULL, 10);
          break;
        }
    }
  if (!load (in, &ld))
    return;
  v.data = &m;
  /* a single-part message stays as it is: links move attachments out of
   * a message, they do not turn the message into a link */
  if (GMIME_IS_PART (g_mime_message_get_mime_part (ld.msg)))
    {
      g_object_unref (ld.msg);
      return;
    }
  if (visit_all (ld.msg, &v) && adapt (&ld, out))
    service_add_header (&out->verdict, "X-Attachments-Moved: %u", m.moved);
  g_object_unref (ld.msg);
}

static void
links_free (gpointer p)
{
  Links *l = p;
  g_free (l->store);
  g_free (l->url);
  g_ptr_array_unref (l->limits);
  g_free (l);
}

const ServiceModule service_links = {
  "links", OCP_PARTS_ALL, links_configure, links_check, links_free, TRUE,
};
