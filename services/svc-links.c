/* svc-links.c - attachments to links (RFC 4496 4.9): an attachment over
 * the recipient's size limit moves to a store directory, named by its
 * SHA-256, and a text/plain notice with its URL takes its place in the
 * message (mime-walk.c walks and writes it back).
 */
#include "config.h"

#include <errno.h>
#include <glib/gstdio.h>

#include "services-mime.h"

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
  g_auto (GStrv) per = service_get_list (kf, group, "per_recipient");

  svc->state = l;
  l->store = service_get_string (kf, group, "store", NULL);
  l->url = service_get_string (kf, group, "url", NULL);
  l->max_size = service_get_number (kf, group, "max_size", "1048576");
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
  bytes = mime_decoded (part);
  if (bytes->len <= m->limit || bytes->len > MIME_PART_MAX)
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
  return GMIME_OBJECT (mime_notice_part (text));
}

static void
links_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Links *l = svc->state;
  Move m = { l, l->max_size, 0 };
  MimeLoaded ld = { 0 };
  MimeVisitor v = { links_part, NULL, NULL, NULL, FALSE };
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
  if (!mime_load (in, &ld))
    return;
  v.data = &m;
  /* a single-part message stays as it is: links move attachments out of
   * a message, they do not turn the message into a link */
  if (GMIME_IS_PART (g_mime_message_get_mime_part (ld.msg)))
    {
      g_object_unref (ld.msg);
      return;
    }
  if (mime_visit_all (ld.msg, &v) && mime_adapt (&ld, out))
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
