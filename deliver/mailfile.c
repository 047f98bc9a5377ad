/* mailfile.c - the small files lmtpd reads and writes inside a mailbox
 * (maildirsize, subscriptions, dotlocks, the vacation log).
 *
 * A mailbox belongs to the mail user, who may plant anything there: a
 * symlink to /dev/zero, a FIFO that blocks an open() or read() forever, a
 * file of gigabytes.  So such a file is opened without following a
 * symlink and without blocking (O_NOFOLLOW | O_NONBLOCK), must be a
 * regular file (fstat), and is read with a size bound.  Every such access
 * goes through here.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver.h"

#define LOCK_POLL_US 50000

int
deliver_mailfile_open (const char *path, int flags, GError **error)
{
  int fd = open (path, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0600);
  struct stat st;

  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, DELIVER_ERROR, e, "open %s: %s", path, g_strerror (e));
      return -1;
    }
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode))
    {
      close (fd);
      g_set_error (error, DELIVER_ERROR, ELOOP, "%s: not a regular file", path);
      return -1;
    }
  /* a regular file never blocks; clear the flag for the usual semantics */
  fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

gboolean
deliver_mailfile_read_fd (int fd, const char *path, gsize max, char **out, gsize *out_len, GError **error)
{
  GString *s = g_string_new (NULL);
  char buf[8192];

  for (;;)
    {
      gssize n = read (fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int e = errno;
          g_string_free (s, TRUE);
          g_set_error (error, DELIVER_ERROR, e, "read %s: %s", path, g_strerror (e));
          return FALSE;
        }
      if (n == 0)
        break;
      if (s->len + n > max)
        {
          g_string_free (s, TRUE);
          g_set_error (error, DELIVER_ERROR, EFBIG, "%s: larger than %" G_GSIZE_FORMAT " bytes", path, max);
          return FALSE;
        }
      g_string_append_len (s, buf, n);
    }
  if (out_len)
    *out_len = s->len;
  *out = g_string_free (s, FALSE);
  return TRUE;
}

gboolean
deliver_mailfile_read (const char *path, gsize max, char **out, gsize *out_len, GError **error)
{
  int fd = deliver_mailfile_open (path, O_RDONLY, error);
  gboolean ok;

  if (fd < 0)
    return FALSE;
  ok = deliver_mailfile_read_fd (fd, path, max, out, out_len, error);
  close (fd);
  return ok;
}

gboolean
deliver_mailfile_lock (int fd, const char *path, guint timeout_s, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_s * G_USEC_PER_SEC;

  /* the mail user may hold the lock forever: poll, within a bound */
  while (flock (fd, LOCK_EX | LOCK_NB) < 0)
    {
      int e = errno;
      if (e != EWOULDBLOCK && e != EINTR)
        {
          g_set_error (error, DELIVER_ERROR, e, "lock %s: %s", path, g_strerror (e));
          return FALSE;
        }
      if (g_get_monotonic_time () > deadline)
        {
          g_set_error (error, DELIVER_ERROR, EAGAIN, "lock %s: timed out", path);
          return FALSE;
        }
      g_usleep (LOCK_POLL_US);
    }
  return TRUE;
}
