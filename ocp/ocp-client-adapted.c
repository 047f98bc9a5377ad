/* ocp-client-adapted.c - the adapted message as the callout server sends
 * it back: the header in memory (bounded), the body in an unlinked file.
 *
 * A part comes as data (DUM) or as a reference to original octets the
 * processor kept (DUY, RFC 4037 7.1), copied from the spool.  The common
 * echo of the whole body is not copied at all, and an adapted message that
 * is the original octet for octet counts as not adapted.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "ocp-client-private.h"

#define HEADER_MAX (1024 * 1024)

void
ocp_adapted_init (OcpAdapted *a, const OcpRequest *req)
{
  *a = (OcpAdapted) { .req = req, .body_fd = -1 };
}

void
ocp_adapted_clear (OcpAdapted *a)
{
  if (a->header)
    g_string_free (a->header, TRUE);
  a->header = NULL;
  if (a->body_fd >= 0)
    close (a->body_fd);
  a->body_fd = -1;
}

static gboolean
body_write (OcpAdapted *a, const char *p, gsize n, GError **error)
{
  if (a->body_fd < 0)
    {
      g_autofree char *path = NULL;
      a->body_fd = g_file_open_tmp ("ocp-body-XXXXXX", &path, error);
      if (a->body_fd < 0)
        return FALSE;
      g_unlink (path);
    }
  while (n > 0)
    {
      gssize w = write (a->body_fd, p, n);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "adapted body: %s", g_strerror (errno));
          return FALSE;
        }
      p += w;
      n -= w;
      a->body_len += w;
    }
  return TRUE;
}

gboolean
ocp_adapted_header (OcpAdapted *a, const char *p, gsize n, GError **error)
{
  if (a->header == NULL)
    a->header = g_string_new (NULL);
  if (a->header->len + n > HEADER_MAX)
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_LIMIT, "adapted header too large");
      return FALSE;
    }
  g_string_append_len (a->header, p, n);
  return TRUE;
}

/* Copies original octets [off, off+n) of the spool into the adapted parts. */
static gboolean
copy_original (OcpAdapted *a, guint64 off, guint64 n, GError **error)
{
  char buf[OCP_CLIENT_CHUNK];
  /* original flow offset -> spool offset: header first, then body */
  while (n > 0)
    {
      gboolean in_header = off < a->org_header;
      guint64 spool_off = in_header ? off : a->req->header_len + (off - a->org_header);
      guint64 k = MIN (n, in_header ? a->org_header - off : a->org_header + a->org_body - off);
      gssize r;

      if (k == 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "DUY beyond the original data");
          return FALSE;
        }
      r = pread (a->req->fd, buf, MIN (k, sizeof buf), spool_off);
      if (r <= 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "reading preserved data failed");
          return FALSE;
        }
      if (in_header ? !ocp_adapted_header (a, buf, r, error) : !body_write (a, buf, r, error))
        return FALSE;
      off += r;
      n -= r;
    }
  return TRUE;
}

/* Anything but the whole original body: an earlier whole-body reference
 * is materialized first. */
static gboolean
body_changes (OcpAdapted *a, GError **error)
{
  a->body_data = TRUE;
  if (!a->body_whole_duy)
    return TRUE;
  a->body_whole_duy = FALSE;
  return copy_original (a, a->org_header, a->org_body, error);
}

gboolean
ocp_adapted_body (OcpAdapted *a, const char *p, gsize n, GError **error)
{
  return body_changes (a, error) && body_write (a, p, n, error);
}

gboolean
ocp_adapted_duy (OcpAdapted *a, guint64 off, guint64 n, GError **error)
{
  guint64 end = off + n;

  if (end < off || end > a->org_header + a->org_body)
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "DUY of data never kept");
      return FALSE;
    }
  /* the common case: the whole body, unchanged: nothing to copy */
  if (off <= a->org_header && end == a->org_header + a->org_body && !a->body_data && a->org_body > 0)
    {
      if (off < a->org_header && !copy_original (a, off, a->org_header - off, error))
        return FALSE;
      a->body_whole_duy = TRUE;
      return TRUE;
    }
  if (end > a->org_header && !body_changes (a, error))
    return FALSE;
  return copy_original (a, off, n, error);
}

/* Whether @n octets of @p (or, if NULL, of @fd from its start) are the
 * spool's from @spool_off. */
static gboolean
same_octets (const OcpRequest *req, guint64 spool_off, const char *p, int fd, guint64 n)
{
  char a[OCP_CLIENT_CHUNK], b[OCP_CLIENT_CHUNK];
  guint64 off = 0;

  while (off < n)
    {
      gsize k = MIN (n - off, sizeof a);
      if (pread (req->fd, a, k, spool_off + off) != (gssize) k)
        return FALSE;
      if (p == NULL && pread (fd, b, k, off) != (gssize) k)
        return FALSE;
      if (memcmp (a, p ? p + off : b, k) != 0)
        return FALSE;
      off += k;
    }
  return TRUE;
}

/* Whether the adapted message is the original octet for octet (a part not
 * sent back is the original part). */
static gboolean
is_original (const OcpAdapted *a)
{
  const OcpRequest *req = a->req;
  guint64 hlen = a->header ? a->header->len : req->header_len;
  guint64 blen = a->body_fd >= 0 ? a->body_len : req->body_len;

  if (req->fd < 0 || (a->header == NULL && a->body_fd < 0))
    return FALSE;
  if (hlen + blen != req->header_len + req->body_len)
    return FALSE;
  if (a->header && !same_octets (req, 0, a->header->str, -1, hlen))
    return FALSE;
  return a->body_fd < 0 || same_octets (req, hlen, NULL, a->body_fd, blen);
}

void
ocp_adapted_take (OcpAdapted *a, OcpVerdict *out)
{
  if (is_original (a))
    ocp_adapted_clear (a); /* an echo: as if nothing had been adapted (stored and traced so) */
  if (a->header)
    out->header = g_string_free_to_bytes (g_steal_pointer (&a->header));
  if (a->body_fd >= 0)
    {
      lseek (a->body_fd, 0, SEEK_SET);
      out->body_fd = a->body_fd;
      out->body_len = a->body_len;
      a->body_fd = -1;
    }
}
