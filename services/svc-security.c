/* svc-security.c - the security filter (RFC 4496 4.1): attachment policy
 * by declared type, detected type and file name, and ClamAV's clamd
 * (INSTREAM), over every leaf of the MIME tree and every reading of it
 * (mime-walk.c, mime-views.c).  An offending part is replaced by a
 * text/plain notice; the configured actions apply, and an admin may get a
 * notice over LMTP.
 */
#include "config.h"

#include <string.h>

#include "services-mime.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimePart, g_object_unref)

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

static void
strv_ascii_down (char **v)
{
  for (guint i = 0; v && v[i]; i++)
    for (char *p = v[i]; *p; p++)
      *p = g_ascii_tolower (*p);
}

static gboolean
security_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  Security *s = g_new0 (Security, 1);
  g_autofree char *actions = service_get_string (kf, group, "actions", "replace;tag [VIRUS]");

  svc->state = s;
  s->extensions = service_get_list (kf, group, "block_extensions");
  s->types = service_get_list (kf, group, "block_types");
  strv_ascii_down (s->extensions);
  for (guint i = 0; s->extensions && s->extensions[i]; i++)
    if (s->extensions[i][0] == '.')
      memmove (s->extensions[i], s->extensions[i] + 1, strlen (s->extensions[i]));
  strv_ascii_down (s->types);
  s->clamd = service_get_string (kf, group, "clamd", NULL);
  s->notify_lmtp = service_get_string (kf, group, "notify_lmtp", NULL);
  s->notify_rcpt = service_get_string (kf, group, "notify", NULL);
  s->actions = service_parse_actions (actions, "replace", error);
  return s->actions != NULL;
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

/* The INSTREAM command and @a in chunks, then the end mark. */
static gboolean
clamd_send (GOutputStream *out, const GByteArray *a, GError **error)
{
  guint32 len;

  if (!g_output_stream_write_all (out, "zINSTREAM", 10, NULL, NULL, error))
    return FALSE;
  for (gsize off = 0; off < a->len; off += 65536)
    {
      gsize n = MIN (65536, a->len - off);
      len = GUINT32_TO_BE ((guint32) n);
      if (!g_output_stream_write_all (out, &len, 4, NULL, NULL, error)
          || !g_output_stream_write_all (out, a->data + off, n, NULL, NULL, error))
        return FALSE;
    }
  len = 0;
  return g_output_stream_write_all (out, &len, 4, NULL, NULL, error);
}

/* "stream: NAME FOUND" gives NAME, "stream: OK" an empty string. */
static char *
clamd_verdict (const char *answer, GError **error)
{
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

/* clamd INSTREAM: the virus found, "" for none, NULL with @error. */
static char *
clamd_scan (const char *endpoint, const GByteArray *a, GError **error)
{
  g_autoptr (GSocketConnection) conn = service_connect (endpoint, 3310, 60, error);
  GInputStream *in;
  char answer[512];
  gsize got = 0;

  if (conn == NULL)
    return NULL;
  in = g_io_stream_get_input_stream (G_IO_STREAM (conn));
  if (!clamd_send (g_io_stream_get_output_stream (G_IO_STREAM (conn)), a, error)
      || !g_input_stream_read_all (in, answer, sizeof answer - 1, &got, NULL, error))
    return NULL;
  answer[got] = '\0';
  return clamd_verdict (answer, error);
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
name_why (const Security *s, const MimeViews *v)
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
content_why (Scan *scan, const MimeViews *v)
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
  MimeViews v;

  mime_views_of_part (&v, part);
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
  mime_views_clear (&v);
  return text ? GMIME_OBJECT (mime_notice_part (text)) : NULL;
}

/* Text outside the parts: no client shows it, so it goes if it is bad. */
static gboolean
security_stray (const char *text, gpointer data)
{
  Scan *scan = data;
  g_autoptr (GByteArray) raw = g_byte_array_append (g_byte_array_new (), (const guint8 *) text, strlen (text));
  g_autofree char *why = NULL;
  MimeViews v;

  mime_views_init (&v);
  mime_views_add_readings (&v, raw);
  why = name_why (scan->sec, &v);
  if (!why)
    why = content_why (scan, &v);
  if (why)
    add_finding (scan, "text outside the MIME parts", why);
  mime_views_clear (&v);
  return why != NULL;
}

static GMimeObject *
security_too_deep (GMimeObject *obj, gpointer data)
{
  add_finding (data, "MIME structure", "nested too deeply to be scanned");
  return GMIME_OBJECT (mime_notice_part ("A part was removed by the security filter: "
                                    "it was nested too deeply to be scanned.\n"));
}

/* The last word: whatever GMime did not see as content (a header of a
 * part, a structure it read differently) must not carry the test string
 * either; if it still does, the whole body goes. */
static gboolean
security_leftovers (Scan *scan, GMimeMessage *msg)
{
  GMimeObject *top = g_mime_message_get_mime_part (msg);
  gboolean complete = FALSE;
  g_autoptr (GByteArray) a = top ? service_object_bytes (top, GMIME_NEWLINE_FORMAT_UNIX, &complete) : NULL;
  g_autoptr (GMimePart) notice = NULL;

  if (!complete || g_strstr_len ((const char *) a->data, a->len, EICAR) == NULL)
    return FALSE;
  add_finding (scan, "message body", "virus Eicar-Test-Signature found");
  notice = mime_notice_part ("The message body was removed by the security filter: "
                        "virus Eicar-Test-Signature found.\n");
  g_mime_message_set_mime_part (msg, GMIME_OBJECT (notice));
  return TRUE;
}

/* A short notice to the admin mailbox, delivered over LMTP. */
static void
notify_admin (Security *s, const ServiceInput *in, const char *findings)
{
  g_autoptr (GSocketConnection) conn = service_connect (s->notify_lmtp, 24, 30, NULL);
  g_autoptr (GDataInputStream) din = NULL;
  GOutputStream *out;
  g_autofree char *msg = NULL;
  const char *from = g_hash_table_lookup (in->env, "Mail-From");
  const char *to = g_hash_table_lookup (in->env, "Rcpt-To");

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
security_act (Security *s, const MimeLoaded *l, const ServiceInput *in, const Scan *scan, ServiceOutput *out)
{
  for (guint i = 0; s->actions[i]; i++)
    if (strcmp (s->actions[i], "replace") != 0)
      service_apply_action (&out->verdict, s->actions[i], NULL);
    else if (!mime_adapt (l, out))
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
  MimeLoaded l = { 0 };
  Scan scan = { s, g_string_new (NULL), NULL };
  MimeVisitor v = { security_leaf, security_stray, security_too_deep, &scan, FALSE };
  gboolean replaced;

  if (!mime_load (in, &l))
    {
      g_string_free (scan.findings, TRUE);
      return; /* an empty message */
    }
  replaced = mime_visit_all (l.msg, &v);
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
