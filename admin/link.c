/* link.c - the users' signed links: /u/release?id=ID&exp=EXPIRES&sig=SIG,
 * SIG the hex HMAC-SHA256 of "ID\nEXPIRES" under [admin] link_secret_file.
 * A link is a capability for one message until it expires: whoever holds
 * it may see that message's summary and release it, nothing else.
 * Also the secret files (the admin token, the link key): read once, as
 * root, and refused when others may read them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "web-private.h"

#define SECRET_MAX 4096

/* In constant time for strings of the same length: how long the common
 * prefix of a guess is says nothing. */
gboolean
admin_secret_equal (const char *a, const char *b)
{
  gsize la = strlen (a), lb = strlen (b);
  guint8 diff = la != lb;

  for (gsize i = 0; i < la; i++)
    diff |= (guint8) a[i] ^ (guint8) b[i % MAX (lb, 1)];
  return diff == 0;
}

static gboolean
secret_file_safe (int fd, const char *path, const char *what, GError **error)
{
  struct stat st;

  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME, "%s %s: not a regular file", what, path);
      return FALSE;
    }
  if (st.st_mode & S_IRWXO)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                   "%s %s: others may read it (mode %04o): chmod o= it", what, path, st.st_mode & 07777);
      return FALSE;
    }
  return TRUE;
}

/* The file's content without surrounding blanks; a missing, empty,
 * oversized or world-accessible file is an error. */
GBytes *
admin_secret_file_read (const char *path, const char *what, GError **error)
{
  char buf[SECRET_MAX + 1];
  gssize n;
  int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  g_autofree char *text = NULL;

  if (fd < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "%s %s: %s", what, path, g_strerror (errno));
      return NULL;
    }
  n = secret_file_safe (fd, path, what, error) ? read (fd, buf, sizeof buf) : -2;
  close (fd);
  if (n == -2)
    return NULL;
  if (n < 0 || n > SECRET_MAX)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s %s: %s", what, path,
                   n < 0 ? g_strerror (errno) : "larger than 4 KiB");
      return NULL;
    }
  text = g_strstrip (g_strndup (buf, n));
  if (strlen (text) < 16)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s %s: empty or shorter than 16 characters", what,
                   path);
      return NULL;
    }
  return g_bytes_new (text, strlen (text));
}

char *
admin_link_signature (GBytes *secret, const char *id, gint64 expires)
{
  g_autofree char *data = g_strdup_printf ("%s\n%" G_GINT64_FORMAT, id, expires);
  gsize n;
  const guint8 *key = g_bytes_get_data (secret, &n);

  return g_compute_hmac_for_string (G_CHECKSUM_SHA256, key, n, data, -1);
}

const char *
admin_link_refusal (GBytes *secret, const char *id, const char *expires, const char *sig)
{
  g_autofree char *want = NULL;
  char *end = NULL;
  gint64 exp;

  if (secret == NULL)
    return "signed links are off ([admin] link_secret_file)";
  if (id == NULL || expires == NULL || sig == NULL)
    return "the link is incomplete";
  exp = g_ascii_strtoll (expires, &end, 10);
  if (end == expires || *end != '\0')
    return "the link is not valid";
  want = admin_link_signature (secret, id, exp);
  if (!admin_secret_equal (want, sig))
    return "the link is not valid";
  if (exp <= g_get_real_time () / G_USEC_PER_SEC)
    return "the link has expired";
  return NULL;
}

/* The base of links: http(s)://HOST:PORT of [admin] listen, or "" for a
 * UNIX socket (a proxy in front gives the address). */
static char *
link_base (const LmtpdConfig *config)
{
  LmtpdListen *l = config->admin_listen ? lmtpd_listen_parse (config->admin_listen, NULL) : NULL;
  char *base;

  if (l == NULL || l->kind == LMTPD_LISTEN_UNIX)
    base = g_strdup ("");
  else
    base = g_strdup_printf ("%s://%s%s%s:%u", config->admin_tls_cert_file ? "https" : "http",
                            strchr (l->host, ':') ? "[" : "", l->host, strchr (l->host, ':') ? "]" : "", l->port);
  if (l)
    lmtpd_listen_free (l);
  return base;
}

GBytes *
admin_link_secret (const LmtpdConfig *config, GError **error)
{
  if (config->admin_link_secret_file == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "[admin] link_secret_file is not set");
      return NULL;
    }
  return admin_secret_file_read (config->admin_link_secret_file, "[admin] link_secret_file", error);
}

char *
admin_link_url (const LmtpdConfig *config, GBytes *secret, const char *id, gint64 expires)
{
  g_autofree char *sig = NULL, *base = NULL, *esc = NULL;

  if (expires == 0)
    expires = g_get_real_time () / G_USEC_PER_SEC + config->admin_link_lifetime;
  sig = admin_link_signature (secret, id, expires);
  base = link_base (config);
  esc = g_uri_escape_string (id, NULL, FALSE);
  return g_strdup_printf ("%s/u/release?id=%s&exp=%" G_GINT64_FORMAT "&sig=%s", base, esc, expires, sig);
}
