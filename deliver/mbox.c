/* mbox.c - append one message to an mbox file (RFC 4155), safely.
 *
 * Lock order as Postfix and Dovecot: open (O_APPEND, O_NOFOLLOW, regular
 * files only), dotlock "<mbox>.lock", then an fcntl write lock, then check
 * that the path still names the file we hold.  The old size is remembered
 * and the file is truncated back to it on any error, so no partial message
 * remains.  Our dotlock records "<pid> <old size>": if lmtpd is killed in
 * the middle of an append, the next writer finds the stale lock of a dead
 * process and truncates the half-written message away before appending;
 * and while an append runs, a record names the mbox in <spool>/inflight/,
 * so that lmtpd repairs such a file as soon as it starts again
 * (deliver_mbox_recover()).
 * Body lines are quoted mboxrd-style (">*From " gains a '>'), or mboxo
 * ("From " only) when configured.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"

#define DOTLOCK_STALE_SECS 120
#define LOCK_POLL_US 50000
#define CHUNK (64 * 1024)
#define DOTLOCK_MAX 64  /* "<pid> <size>\n" */

static gboolean
fail (GError **error, int e, const char *what, const char *path)
{
  g_set_error (error, DELIVER_ERROR, e, "%s %s: %s", what, path, g_strerror (e));
  return FALSE;
}

/* Creates "<mbox>.lock"; breaks a stale one.  *repair_size is set to the
 * size a dead lmtpd recorded, or -1. */
static gboolean
dotlock_take (const char *lock, gint64 deadline, gint64 *repair_size, GError **error)
{
  *repair_size = -1;
  for (;;)
    {
      int fd = open (lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      struct stat st;

      if (fd >= 0)
        {
          char buf[32];
          int n = g_snprintf (buf, sizeof buf, "%d -1\n", (int) getpid ());
          if (write (fd, buf, n) != n)
            {
              /* a lock without content is still a lock */
            }
          close (fd);
          return TRUE;
        }
      if (errno != EEXIST)
        return fail (error, errno, "create", lock);
      if (lstat (lock, &st) == 0)
        {
          g_autofree char *text = NULL;
          int pid = 0;
          long long size = -1;
          gboolean dead = FALSE;

          if (deliver_mailfile_read (lock, DOTLOCK_MAX, &text, NULL, NULL) && sscanf (text, "%d %lld", &pid, &size) >= 1
              && pid > 0 && kill (pid, 0) < 0 && errno == ESRCH)
            dead = TRUE;
          if (dead || time (NULL) - st.st_mtime > DOTLOCK_STALE_SECS)
            {
              g_message ("removing stale lock %s (pid %d)", lock, pid);
              if (unlink (lock) == 0 && dead && size >= 0)
                *repair_size = size;
              continue;
            }
        }
      if (g_get_monotonic_time () > deadline)
        return fail (error, EAGAIN, "lock", lock);
      g_usleep (LOCK_POLL_US);
    }
}

static void
dotlock_note_size (const char *lock, goffset size)
{
  int fd = deliver_mailfile_open (lock, O_WRONLY | O_TRUNC, NULL);
  char buf[48];
  int n;

  if (fd < 0)
    return;
  n = g_snprintf (buf, sizeof buf, "%d %" G_GINT64_FORMAT "\n", (int) getpid (), (gint64) size);
  if (write (fd, buf, n) != n)
    {
      /* then no repair is possible; the lock still holds */
    }
  close (fd);
}

static gboolean
fcntl_lock (int fd, const char *path, gint64 deadline, GError **error)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

  while (fcntl (fd, F_SETLK, &fl) < 0)
    {
      if (errno != EAGAIN && errno != EACCES && errno != EINTR)
        return fail (error, errno, "fcntl lock", path);
      if (g_get_monotonic_time () > deadline)
        return fail (error, EAGAIN, "fcntl lock", path);
      g_usleep (LOCK_POLL_US);
    }
  return TRUE;
}

typedef struct {
  int fd;
  const char *path;
  char buf[CHUNK];
  gsize len;
} Out;

static gboolean
out_flush (Out *o, GError **error)
{
  gsize off = 0;
  while (off < o->len)
    {
      ssize_t n = write (o->fd, o->buf + off, o->len - off);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return fail (error, errno, "write", o->path);
      off += n;
    }
  o->len = 0;
  return TRUE;
}

static gboolean
out_put (Out *o, const char *p, gsize n, GError **error)
{
  while (n > 0)
    {
      gsize k = MIN (n, sizeof o->buf - o->len);
      memcpy (o->buf + o->len, p, k);
      o->len += k;
      p += k;
      n -= k;
      if (o->len == sizeof o->buf && !out_flush (o, error))
        return FALSE;
    }
  return TRUE;
}

/* Reads the content in order, across its segments. */
typedef struct {
  const DeliverContent *c;
  guint seg;
  guint64 off;
} Reader;

static gssize
reader_read (Reader *r, char *buf, gsize n)
{
  while (r->seg < r->c->n && r->off >= r->c->seg[r->seg].length)
    {
      r->seg++;
      r->off = 0;
    }
  if (r->seg >= r->c->n)
    return 0;
  {
    const DeliverSegment *s = &r->c->seg[r->seg];
    gssize k = pread (s->fd, buf, MIN (n, s->length - r->off), s->offset + r->off);
    if (k == 0)
      {
        errno = EIO;
        return -1;
      }
    if (k > 0)
      r->off += k;
    return k;
  }
}

/* The content with From-quoting; ends with exactly one blank line. */
static gboolean
write_body (Out *o, const DeliverContent *content, gboolean mboxo, GError **error)
{
  g_autofree char *buf = g_malloc (2 * CHUNK);
  guint64 size = deliver_content_size (content), off = 0;
  Reader rd = { content, 0, 0 };
  gsize carry = 0;
  gboolean bol = TRUE, last_nl = TRUE;

  while (off < size || carry > 0)
    {
      ssize_t n = 0;
      gboolean eof;
      const char *p, *end;

      if (off < size)
        {
          n = reader_read (&rd, buf + carry, CHUNK);
          if (n < 0 && errno == EINTR)
            continue;
          if (n <= 0)
            return fail (error, n < 0 ? errno : EIO, "read message for", o->path);
          off += n;
        }
      eof = off >= size;
      p = buf;
      end = buf + carry + n;
      carry = 0;
      while (p < end)
        {
          const char *nl;
          if (bol)
            {
              const char *q = p;
              while (q < end && *q == '>')
                q++;
              if (!eof && end - q < 5 && q - p < CHUNK / 2)
                {
                  carry = end - p; /* decide when more of the line is here */
                  memmove (buf, p, carry);
                  break;
                }
              if (end - q >= 5 && memcmp (q, "From ", 5) == 0 && (!mboxo || q == p)
                  && !out_put (o, ">", 1, error))
                return FALSE;
              bol = FALSE;
            }
          nl = memchr (p, '\n', end - p);
          if (!out_put (o, p, (nl ? nl + 1 : end) - p, error))
            return FALSE;
          last_nl = nl != NULL;
          bol = nl != NULL;
          p = nl ? nl + 1 : end;
        }
      if (n == 0 && eof)
        carry = 0;
    }
  if (size > 0 && !last_nl && !out_put (o, "\n", 1, error))
    return FALSE;
  return out_put (o, "\n", 1, error);
}

static gboolean
make_parent (const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  if (g_mkdir_with_parents (dir, 0700) < 0)
    return fail (error, errno, "mkdir", dir);
  return TRUE;
}

static gint inflight_counter;

/* "<dir>/mbox.<pid>.<n>" holding the mbox path, while an append runs. */
static char *
inflight_begin (const char *dir, const char *path)
{
  char *rec;

  if (dir == NULL || (g_mkdir_with_parents (dir, 0700) < 0 && errno != EEXIST))
    return NULL;
  rec = g_strdup_printf ("%s/mbox.%d.%d", dir, (int) getpid (), g_atomic_int_add (&inflight_counter, 1));
  if (!g_file_set_contents (rec, path, -1, NULL))
    g_clear_pointer (&rec, g_free);
  return rec;
}

/* Truncates an mbox back to the size a dead lmtpd recorded in its dotlock,
 * if that dotlock is still there (nobody else has written since). */
static void
repair_one (const char *path)
{
  g_autofree char *lock = g_strconcat (path, ".lock", NULL);
  g_autofree char *text = NULL;
  int pid = 0, fd;
  long long size = -1;
  struct stat st;
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
  g_autoptr (GError) error = NULL;

  if (!deliver_mailfile_read (lock, DOTLOCK_MAX, &text, NULL, NULL) || sscanf (text, "%d %lld", &pid, &size) != 2
      || pid <= 0 || size < 0 || kill (pid, 0) == 0 || errno != ESRCH)
    return;
  fd = deliver_mailfile_open (path, O_WRONLY, NULL);
  if (fd < 0)
    return;
  if (fcntl_lock (fd, path, deadline, &error) && fstat (fd, &st) == 0 && st.st_size > size)
    {
      g_message ("%s: removing %" G_GINT64_FORMAT " bytes of a delivery interrupted by a crash", path,
                 (gint64) (st.st_size - size));
      if (ftruncate (fd, size) < 0 || fsync (fd) < 0)
        g_warning ("%s: truncate: %s", path, g_strerror (errno));
    }
  close (fd);
  unlink (lock);
}

void
deliver_mbox_recover (const char *dir)
{
  g_autoptr (GDir) d = dir ? g_dir_open (dir, 0, NULL) : NULL;
  const char *name;

  while (d && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *rec = g_build_filename (dir, name, NULL);
      g_autofree char *path = NULL;
      int pid = 0;

      if (sscanf (name, "mbox.%d.", &pid) != 1 || pid <= 0 || (kill (pid, 0) == 0 || errno != ESRCH))
        continue;
      if (g_file_get_contents (rec, &path, NULL, NULL))
        repair_one (path);
      unlink (rec);
    }
}

gboolean
deliver_mbox_store (const char *path, const char *sender, gint64 received_us, const char *header,
                    const DeliverContent *content, gboolean mboxo, guint lock_timeout, gboolean do_fsync,
                    const char *inflight_dir, GError **error)
{
  g_autofree char *record = NULL;
  g_autofree char *lock = g_strconcat (path, ".lock", NULL);
  g_autofree Out *o = g_new0 (Out, 1);
  gint64 deadline = g_get_monotonic_time () + (gint64) lock_timeout * G_USEC_PER_SEC;
  gint64 repair = -1;
  gboolean dotlocked = FALSE, ok = FALSE;
  struct stat st, lst;
  char date[64];
  time_t t = received_us / G_USEC_PER_SEC;
  struct tm tm;
  int fd;

  if (!make_parent (path, error))
    return FALSE;
  fd = deliver_mailfile_open (path, O_WRONLY | O_APPEND | O_CREAT, error);
  if (fd < 0)
    return FALSE;
  if (!dotlock_take (lock, deadline, &repair, error))
    {
      /* no permission to lock in the directory: kernel locks alone */
      if (!g_error_matches (*error, DELIVER_ERROR, EACCES))
        goto out;
      g_clear_error (error);
    }
  else
    dotlocked = TRUE;
  if (!fcntl_lock (fd, path, deadline, error))
    goto out;
  /* still the file we opened, and not hard-linked elsewhere */
  if (fstat (fd, &st) < 0 || lstat (path, &lst) < 0 || st.st_ino != lst.st_ino
      || st.st_dev != lst.st_dev || st.st_nlink != 1)
    {
      fail (error, EAGAIN, "mailbox changed while locking:", path);
      goto out;
    }
  if (repair >= 0 && st.st_size > repair)
    {
      g_message ("%s: removing %" G_GINT64_FORMAT " bytes of an interrupted delivery", path,
                 (gint64) (st.st_size - repair));
      if (ftruncate (fd, repair) < 0 || fstat (fd, &st) < 0)
        {
          fail (error, errno, "truncate", path);
          goto out;
        }
    }
  if (dotlocked)
    {
      dotlock_note_size (lock, st.st_size);
      record = inflight_begin (inflight_dir, path);
    }

  o->fd = fd;
  o->path = path;
  gmtime_r (&t, &tm);
  strftime (date, sizeof date, "%a %b %e %H:%M:%S %Y", &tm);
  {
    g_autofree char *from = g_strdelimit (g_strdup (sender[0] ? sender : "MAILER-DAEMON"), " \t", '_');
    g_autofree char *line = g_strdup_printf ("From %s %s\n", from, date);
    ok = out_put (o, line, strlen (line), error) && out_put (o, header, strlen (header), error)
         && write_body (o, content, mboxo, error) && out_flush (o, error);
  }
  if (ok && do_fsync && fsync (fd) < 0)
    ok = fail (error, errno, "fsync", path);
  if (!ok)
    {
      /* no partial message may remain */
      if (ftruncate (fd, st.st_size) < 0 || (do_fsync && fsync (fd) < 0))
        g_warning ("%s: could not truncate back to %" G_GINT64_FORMAT " bytes: %s", path,
                   (gint64) st.st_size, g_strerror (errno));
    }
out:
  close (fd); /* releases the fcntl lock */
  if (dotlocked)
    unlink (lock);
  if (record)
    unlink (record);
  return ok;
}
