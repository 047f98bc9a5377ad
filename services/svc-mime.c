/* svc-mime.c - the services that look inside the MIME tree (GMime):
 *   security (RFC 4496 4.1)  attachment policy by declared type, detected
 *                            type and file name; ClamAV's clamd (INSTREAM)
 *   links    (4.9)           large attachments move to a store directory
 *                            and become a link
 * An offending part is replaced by a text/plain notice; GMime writes every
 * other part back byte for byte, and only the body part is sent back.
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
  gsize header_len;
} Loaded;

/* Parses header part + body part; large parts stay in the body file. */
static gboolean
load (const ServiceInput *in, Loaded *out)
{
  g_autoptr (GMimeStream) cat = g_mime_stream_cat_new ();
  g_autoptr (GMimeParser) parser = NULL;
  gsize n = 0;
  const char *h = in->header ? g_bytes_get_data (in->header, &n) : NULL;

  if (h == NULL || in->body_fd < 0)
    return FALSE;
  {
    g_autoptr (GMimeStream) hs = g_mime_stream_mem_new_with_buffer (h, n);
    g_autoptr (GMimeStream) bs = g_mime_stream_fs_new (dup (in->body_fd));
    g_mime_stream_fs_set_owner (GMIME_STREAM_FS (bs), TRUE);
    g_mime_stream_seek (bs, 0, GMIME_STREAM_SEEK_SET);
    g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), hs);
    g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), bs);
  }
  parser = g_mime_parser_new_with_stream (cat);
  g_mime_parser_set_persist_stream (parser, TRUE);
  out->msg = g_mime_parser_construct_message (parser, NULL);
  out->header_len = n;
  return out->msg != NULL;
}

/* Writes the message and hands back its body part in an unlinked file. */
static int
body_of (Loaded *l)
{
  g_autofree char *path = NULL;
  g_autoptr (GMimeFormatOptions) fmt = g_mime_format_options_new ();
  g_autoptr (GMimeStream) out = NULL;
  int fd = g_file_open_tmp ("services-XXXXXX", &path, NULL);

  if (fd < 0)
    return -1;
  g_unlink (path);
  out = g_mime_stream_fs_new (dup (fd));
  g_mime_format_options_set_newline_format (fmt, GMIME_NEWLINE_FORMAT_UNIX);
  if (g_mime_object_write_to_stream (GMIME_OBJECT (l->msg), fmt, out) < 0 || g_mime_stream_flush (out) < 0)
    {
      close (fd);
      return -1;
    }
  /* the top-level header is unchanged: the body starts where it ended */
  lseek (fd, l->header_len, SEEK_SET);
  return fd;
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
  if (g_mime_data_wrapper_write_to_stream (w, mem) < 0)
    return g_byte_array_new ();
  a = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
  return a;
}

static GMimePart *
notice_part (const char *text)
{
  GMimeTextPart *p = g_mime_text_part_new_with_subtype ("plain");
  g_mime_text_part_set_text (p, text);
  return GMIME_PART (p);
}

/* Calls @fn for every leaf part below @obj; @fn may return a replacement. */
typedef GMimeObject *(*PartFn) (GMimePart *part, gpointer data);

static gboolean
replace_parts (GMimeObject *obj, PartFn fn, gpointer data)
{
  gboolean changed = FALSE;

  if (GMIME_IS_MULTIPART (obj))
    {
      GMimeMultipart *mp = GMIME_MULTIPART (obj);
      for (int i = 0; i < g_mime_multipart_get_count (mp); i++)
        {
          GMimeObject *child = g_mime_multipart_get_part (mp, i);
          GMimeObject *repl = GMIME_IS_PART (child) ? fn (GMIME_PART (child), data) : NULL;
          if (repl)
            {
              g_mime_multipart_replace (mp, i, repl);
              g_object_unref (repl);
              changed = TRUE;
            }
          else
            changed |= replace_parts (child, fn, data);
        }
    }
  else if (GMIME_IS_MESSAGE_PART (obj))
    {
      GMimeMessage *inner = g_mime_message_part_get_message (GMIME_MESSAGE_PART (obj));
      if (inner)
        changed |= replace_parts (g_mime_message_get_mime_part (inner), fn, data);
    }
  return changed;
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

static GMimeObject *
security_part (GMimePart *part, gpointer data)
{
  Scan *scan = data;
  Security *s = scan->sec;
  const char *filename = g_mime_part_get_filename (part);
  GMimeContentType *ct = g_mime_object_get_content_type (GMIME_OBJECT (part));
  g_autofree char *mime_type = ct ? g_mime_content_type_get_mime_type (ct) : NULL;
  g_autofree char *type = g_ascii_strdown (mime_type ? mime_type : "", -1);
  g_autoptr (GByteArray) bytes = decoded (part);
  const char *dtype = detected_type (bytes);
  g_autofree char *why = NULL;

  if (filename && strrchr (filename, '.'))
    {
      g_autofree char *ext = g_ascii_strdown (strrchr (filename, '.') + 1, -1);
      if (s->extensions && g_strv_contains ((const char *const *) s->extensions, ext))
        why = g_strdup_printf ("file name %s is not allowed", filename);
    }
  if (!why && s->types && g_strv_contains ((const char *const *) s->types, type))
    why = g_strdup_printf ("type %s is not allowed", type);
  if (!why && dtype && s->types && g_strv_contains ((const char *const *) s->types, dtype))
    why = g_strdup_printf ("content detected as %s is not allowed", dtype);
  if (!why && s->clamd && scan->error == NULL)
    {
      g_autofree char *virus = clamd_scan (s->clamd, bytes, &scan->error);
      if (virus && virus[0])
        why = g_strdup_printf ("virus %s found", virus);
    }
  else if (!why && !s->clamd && g_strstr_len ((const char *) bytes->data, bytes->len, EICAR))
    why = g_strdup ("virus Eicar-Test-Signature found");
  if (!why)
    return NULL;
  g_string_append_printf (scan->findings, "%s%s: %s", scan->findings->len ? "; " : "",
                          filename ? filename : type, why);
  {
    g_autofree char *text = g_strdup_printf ("The attachment %s was removed by the security filter: %s.\n",
                                             filename ? filename : "(unnamed)", why);
    return GMIME_OBJECT (notice_part (text));
  }
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

static void
security_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Security *s = svc->state;
  Loaded l = { 0 };
  Scan scan = { s, g_string_new (NULL), NULL };
  gboolean replaced;

  if (!load (in, &l))
    {
      g_string_free (scan.findings, TRUE);
      return; /* nothing to look at */
    }
  replaced = replace_parts (g_mime_message_get_mime_part (l.msg), security_part, &scan);
  /* typed results for Sieve's virustest (RFC 5235) */
  out->verdict.labels = g_ptr_array_new_with_free_func (g_free);
  if (!scan.error)
    g_ptr_array_add (out->verdict.labels, g_strdup ("virus-scanned"));
  if (strstr (scan.findings->str, "virus "))
    g_ptr_array_add (out->verdict.labels, g_strdup ("virus"));
  if (replaced && !strstr (scan.findings->str, "virus "))
    g_ptr_array_add (out->verdict.labels, g_strdup ("dangerous-attachment"));
  if (scan.error)
    {
      out->verdict.verdict = OCP_VERDICT_TEMPFAIL;
      out->verdict.reply_code = 451;
      out->verdict.reply_text = g_strdup_printf ("4.7.1 Virus scanner unavailable: %s", scan.error->message);
      g_clear_error (&scan.error);
    }
  else if (replaced)
    {
      for (guint i = 0; s->actions[i]; i++)
        if (strcmp (s->actions[i], "replace") == 0)
          out->body_fd = body_of (&l);
        else
          service_apply_action (&out->verdict, s->actions[i], NULL);
      service_add_header (&out->verdict, "X-Security-Filter: %s", scan.findings->str);
      if (s->notify_lmtp && s->notify_rcpt)
        notify_admin (s, in, scan.findings->str);
    }
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
  if (replace_parts (g_mime_message_get_mime_part (ld.msg), links_part, &m))
    {
      out->body_fd = body_of (&ld);
      service_add_header (&out->verdict, "X-Attachments-Moved: %u", m.moved);
    }
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
