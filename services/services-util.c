/* services-util.c - small helpers the service modules share. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <pwd.h>
#include <unistd.h>

#include "gmime-cleanup.h"
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

char *
service_header_value (GBytes *header, const char *name)
{
  g_autoptr (GMimeStream) stream = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  g_autoptr (GMimeMessage) msg = NULL;
  const char *v;
  gsize n;
  const char *p;

  if (header == NULL)
    return NULL;
  p = g_bytes_get_data (header, &n);
  stream = g_mime_stream_mem_new_with_buffer (p, n);
  parser = g_mime_parser_new_with_stream (stream);
  msg = g_mime_parser_construct_message (parser, NULL);
  if (msg == NULL)
    return NULL;
  if (g_ascii_strcasecmp (name, "Subject") == 0)
    v = g_mime_message_get_subject (msg);
  else
    v = g_mime_object_get_header (GMIME_OBJECT (msg), name);
  return v ? g_strdup (v) : NULL;
}

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

gboolean
service_apply_action (OcpVerdict *v, const char *action, GError **error)
{
  const char *arg = strchr (action, ' ');
  arg = arg ? arg + 1 : "";

  if (strcmp (action, "accept") == 0)
    v->verdict = OCP_VERDICT_ACCEPT;
  else if (strcmp (action, "discard") == 0)
    v->verdict = OCP_VERDICT_DISCARD;
  else if (g_str_has_prefix (action, "reject ") || g_str_has_prefix (action, "tempfail "))
    {
      char *end = NULL;
      guint64 code = g_ascii_strtoull (arg, &end, 10);
      gboolean reject = action[0] == 'r';
      if (code / 100 != (reject ? 5u : 4u) || *end != ' ')
        goto bad;
      v->verdict = reject ? OCP_VERDICT_REJECT : OCP_VERDICT_TEMPFAIL;
      v->reply_code = (guint) code;
      g_free (v->reply_text);
      v->reply_text = g_strdup (end + 1);
    }
  else if (g_str_has_prefix (action, "quarantine ") && arg[0])
    {
      v->verdict = OCP_VERDICT_QUARANTINE;
      g_free (v->folder);
      v->folder = g_strdup (arg);
    }
  else if (g_str_has_prefix (action, "folder ") && arg[0])
    {
      g_free (v->folder);
      v->folder = g_strdup (arg);
    }
  else if (g_str_has_prefix (action, "tag ") && arg[0])
    {
      g_free (v->subject_tag);
      v->subject_tag = g_strdup (arg);
    }
  else if (g_str_has_prefix (action, "header ") && strchr (arg, ':'))
    service_add_header (v, "%s", arg);
  else
    goto bad;
  return TRUE;
bad:
  g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
               "'%s' is not an action (accept, discard, reject 5xx TEXT, tempfail 4xx TEXT, "
               "quarantine FOLDER, folder FOLDER, tag TEXT, header NAME: VALUE)", action);
  return FALSE;
}
