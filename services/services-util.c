/* services-util.c - small helpers the service modules share: settings,
 * the input parsed by GMime, adapted parts written back, connections to
 * outside daemons, and the actions a configuration names.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <pwd.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <gio/gunixsocketaddress.h>

#include "services.h"

char *service_user;

void
service_own_path (const char *path)
{
  struct passwd *pw;

  if (geteuid () != 0 || service_user == NULL || (pw = getpwnam (service_user)) == NULL)
    return;
  if (chown (path, pw->pw_uid, pw->pw_gid) < 0)
    g_printerr ("ocp-services: chown %s: %s\n", path, g_strerror (errno));
}

char *
service_get_string (GKeyFile *kf, const char *group, const char *key, const char *def)
{
  char *v = g_key_file_get_string (kf, group, key, NULL);
  if (v)
    return g_strstrip (v);
  return def ? g_strdup (def) : NULL;
}

char **
service_get_list (GKeyFile *kf, const char *group, const char *key)
{
  char **v = g_key_file_get_string_list (kf, group, key, NULL, NULL);
  for (guint i = 0; v && v[i]; i++)
    g_strstrip (v[i]);
  return v;
}

guint64
service_get_number (GKeyFile *kf, const char *group, const char *key, const char *def)
{
  g_autofree char *v = service_get_string (kf, group, key, def);
  return g_ascii_strtoull (v, NULL, 10);
}

char **
service_read_lines (const char *path, GError **error)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, error))
    return NULL;
  return g_strsplit (text, "\n", -1);
}

gboolean
service_load_lines (const char *path, ServiceLineParser parse, GPtrArray *items, GError **error)
{
  g_auto (GStrv) lines = service_read_lines (path, error);

  for (guint i = 0; lines && lines[i]; i++)
    {
      GError *bad = NULL;
      gpointer item = parse (lines[i], path, i + 1, &bad);
      if (bad)
        {
          g_propagate_error (error, bad);
          return FALSE;
        }
      if (item)
        g_ptr_array_add (items, item);
    }
  return lines != NULL;
}

/* ---- the input and the output, through GMime ------------------------------ */

void
service_header_values (GBytes *header, const char *const *names, char **values)
{
  g_autoptr (GMimeMessage) msg = util_gmime_parse_header (header);

  for (guint i = 0; names[i]; i++)
    {
      const char *v = NULL;
      if (msg && g_ascii_strcasecmp (names[i], "Subject") == 0)
        v = g_mime_message_get_subject (msg);
      else if (msg)
        v = g_mime_object_get_header (GMIME_OBJECT (msg), names[i]);
      values[i] = v ? g_strdup (v) : NULL;
    }
}

char *
service_header_value (GBytes *header, const char *name)
{
  const char *names[] = { name, NULL };
  char *value;

  service_header_values (header, names, &value);
  return value;
}

gboolean
service_input_has_body (const ServiceInput *in)
{
  return in->body != NULL || in->body_fd >= 0;
}

GMimeMessage *
service_input_message (const ServiceInput *in, ServiceParseFlags flags)
{
  g_autoptr (GMimeStream) cat = g_mime_stream_cat_new ();
  g_autoptr (GMimeParser) parser = NULL;
  gsize n = 0;
  const char *h = in->header ? g_bytes_get_data (in->header, &n) : NULL;

  if (flags & SERVICE_PARSE_BODY_ONLY)
    {
      g_autoptr (GMimeStream) nl = g_mime_stream_mem_new_with_buffer ("\n", 1);
      g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), nl);
    }
  if (h != NULL)
    {
      g_autoptr (GMimeStream) hs = g_mime_stream_mem_new_with_buffer (h, n);
      g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), hs);
    }
  if (in->body)
    {
      gsize bn;
      const char *b = g_bytes_get_data (in->body, &bn);
      g_autoptr (GMimeStream) bs = g_mime_stream_mem_new_with_buffer (b, bn);
      g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), bs);
    }
  else if (in->body_fd >= 0)
    {
      g_autoptr (GMimeStream) bs = g_mime_stream_fs_new (dup (in->body_fd));
      g_mime_stream_fs_set_owner (GMIME_STREAM_FS (bs), TRUE);
      g_mime_stream_seek (bs, 0, GMIME_STREAM_SEEK_SET);
      g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), bs);
    }
  parser = g_mime_parser_new_with_stream (cat);
  if (flags & SERVICE_PARSE_PERSIST)
    g_mime_parser_set_persist_stream (parser, TRUE);
  return g_mime_parser_construct_message (parser, NULL);
}

GByteArray *
service_object_bytes (GMimeObject *obj, GMimeNewLineFormat newline, gboolean *out_complete)
{
  g_autoptr (GMimeFormatOptions) fmt = g_mime_format_options_new ();
  g_autoptr (GMimeStream) mem = g_mime_stream_mem_new ();
  gboolean complete;

  g_mime_stream_mem_set_owner (GMIME_STREAM_MEM (mem), FALSE);
  g_mime_format_options_set_newline_format (fmt, newline);
  complete = g_mime_object_write_to_stream (obj, fmt, mem) >= 0;
  if (out_complete)
    *out_complete = complete;
  return g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
}

int
service_body_file (const char *tmpl, const void *data, gsize len)
{
  g_autofree char *path = NULL;
  int fd = g_file_open_tmp (tmpl, &path, NULL);

  if (fd < 0)
    return -1;
  g_unlink (path);
  if (write (fd, data, len) != (gssize) len)
    {
      close (fd);
      return -1;
    }
  lseek (fd, 0, SEEK_SET);
  return fd;
}

gboolean
service_emit_message (GMimeMessage *msg, const char *tmpl, ServiceOutput *out)
{
  gboolean complete;
  g_autoptr (GByteArray) bytes = service_object_bytes (GMIME_OBJECT (msg), GMIME_NEWLINE_FORMAT_UNIX, &complete);
  const char *sep;
  gsize hlen;

  if (!complete)
    return FALSE;
  g_byte_array_append (bytes, (const guint8 *) "", 1);
  sep = strstr ((const char *) bytes->data, "\n\n");
  if (sep == NULL)
    return FALSE;
  hlen = sep + 2 - (const char *) bytes->data;
  out->header = g_bytes_new (bytes->data, hlen);
  out->body_fd = service_body_file (tmpl, sep + 2, bytes->len - 1 - hlen);
  return out->body_fd >= 0;
}

GSocketConnection *
service_connect (const char *endpoint, guint16 default_port, guint timeout_s, GError **error)
{
  g_autoptr (GSocketClient) client = util_socket_client_new ();

  g_socket_client_set_timeout (client, timeout_s);
  if (g_str_has_prefix (endpoint, "unix:"))
    {
      g_autoptr (GSocketAddress) addr = g_unix_socket_address_new (endpoint + 5);
      return g_socket_client_connect (client, G_SOCKET_CONNECTABLE (addr), NULL, error);
    }
  return g_socket_client_connect_to_host (client, g_str_has_prefix (endpoint, "inet:") ? endpoint + 5 : endpoint,
                                          default_port, NULL, error);
}

/* ---- verdicts ------------------------------------------------------------- */

void
service_add_header (OcpVerdict *v, const char *fmt, ...)
{
  va_list ap;
  char *h;

  va_start (ap, fmt);
  h = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_strdelimit (h, "\r\n", ' ');
  if (v->add_headers == NULL)
    v->add_headers = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (v->add_headers, h);
}

static void
replace_string (char **field, const char *value)
{
  g_free (*field);
  *field = g_strdup (value);
}

/* "reject 5xx TEXT" or "tempfail 4xx TEXT", @arg after the word. */
static gboolean
apply_reply (OcpVerdict *v, const char *action, const char *arg)
{
  char *end = NULL;
  guint64 code = g_ascii_strtoull (arg, &end, 10);
  gboolean reject = action[0] == 'r';

  if (code / 100 != (reject ? 5u : 4u) || *end != ' ')
    return FALSE;
  v->verdict = reject ? OCP_VERDICT_REJECT : OCP_VERDICT_TEMPFAIL;
  v->reply_code = (guint) code;
  replace_string (&v->reply_text, end + 1);
  return TRUE;
}

gboolean
service_apply_action (OcpVerdict *v, const char *action, GError **error)
{
  const char *arg = strchr (action, ' ');
  gboolean ok = TRUE;

  arg = arg ? arg + 1 : "";
  if (strcmp (action, "accept") == 0)
    v->verdict = OCP_VERDICT_ACCEPT;
  else if (strcmp (action, "discard") == 0)
    v->verdict = OCP_VERDICT_DISCARD;
  else if (g_str_has_prefix (action, "reject ") || g_str_has_prefix (action, "tempfail "))
    ok = apply_reply (v, action, arg);
  else if (g_str_has_prefix (action, "quarantine ") && arg[0])
    {
      v->verdict = OCP_VERDICT_QUARANTINE;
      replace_string (&v->folder, arg);
    }
  else if (g_str_has_prefix (action, "folder ") && arg[0])
    replace_string (&v->folder, arg);
  else if (g_str_has_prefix (action, "tag ") && arg[0])
    replace_string (&v->subject_tag, arg);
  else if (g_str_has_prefix (action, "header ") && strchr (arg, ':'))
    service_add_header (v, "%s", arg);
  else
    ok = FALSE;
  if (!ok)
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                 "'%s' is not an action (accept, discard, reject 5xx TEXT, tempfail 4xx TEXT, "
                 "quarantine FOLDER, folder FOLDER, tag TEXT, header NAME: VALUE)", action);
  return ok;
}

gboolean
service_action_valid (const char *action, GError **error)
{
  OcpVerdict probe;
  gboolean ok;

  ocp_verdict_init (&probe);
  ok = service_apply_action (&probe, action, error);
  ocp_verdict_clear (&probe);
  return ok;
}

char **
service_parse_actions (const char *text, const char *keyword, GError **error)
{
  g_auto (GStrv) actions = g_strsplit (text, ";", -1);

  for (guint i = 0; actions[i]; i++)
    {
      g_strstrip (actions[i]);
      if (keyword && strcmp (actions[i], keyword) == 0)
        continue;
      if (!service_action_valid (actions[i], error))
        return NULL;
    }
  return g_steal_pointer (&actions);
}
