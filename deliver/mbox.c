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

/* From-quoting across the reads of a body. */
typedef struct {
  gboolean mboxo;
  gboolean bol;       /* the next byte starts a line */
  gboolean last_nl;   /* the last byte written was an LF */
} Quote;

/* Writes @buf up to @end with From-quoting.  A line start that cannot be
 * judged before more of the line is read (not @eof) is moved to the start
 * of @buf and its length left in *@carry. */
static gboolean
quote_lines (Out *o, Quote *q, char *buf, const char *end, gboolean eof, gsize *carry, GError **error)
{
  const char *p = buf;

  *carry = 0;
  while (p < end)
    {
      const char *nl;
      if (q->bol)
        {
          const char *g = p;
          while (g < end && *g == '>')
            g++;
          if (!eof && end - g < 5 && g - p < CHUNK / 2)
            {
              *carry = end - p; /* decide when more of the line is here */
              memmove (buf, p, *carry);
              return TRUE;
            }
          if (end - g >= 5 && memcmp (g, "From ", 5) == 0 && (!q->mboxo || g == p) && !out_put (o, ">", 1, error))
            return FALSE;
          q->bol = FALSE;
        }
      nl = memchr (p, '\n', end - p);
      if (!out_put (o, p, (nl ? nl + 1 : end) - p, error))
        return FALSE;
      q->last_nl = nl != NULL;
      q->bol = nl != NULL;
      p = nl ? nl + 1 : end;
    }
  return TRUE;
}

/* The content with From-quoting; ends with exactly one blank line. */
static gboolean
write_body (Out *o, const DeliverContent *content, gboolean mboxo, GError **error)
{
  g_autofree char *buf = g_malloc (2 * CHUNK);
  guint64 size = deliver_content_size (content), off = 0;
  Reader rd = { content, 0, 0 };
  Quote q = { mboxo, TRUE, TRUE };
  gsize carry = 0;

  while (off < size || carry > 0)
    {
      ssize_t n = 0;
      gboolean eof;

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
      if (!quote_lines (o, &q, buf, buf + carry + n, eof, &carry, error))
        return FALSE;
      if (n == 0 && eof)
        carry = 0;
    }
  if (size > 0 && !q.last_nl && !out_put (o, "\n", 1, error))
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

/* Process-wide on purpose, like Maildir's: with the pid it makes the
 * names of this process's inflight records unique, whatever context or
 * thread appends. */
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

char *
deliver_inflight_dir (const LmtpdConfig *config)
{
  return g_build_filename (config->spool_dir, "inflight", NULL);
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

/* One append under way. */
typedef struct {
  const DeliverMboxStore *st;
  const char *lock;       /* the dotlock's path */
  gint64 deadline;        /* for the locks */
  int fd;
  gboolean dotlocked;
  struct stat before;     /* the file as locked: its size is what an error goes back to */
} Append;

/* The dotlock (unless the directory does not allow it), the fcntl lock,
 * and the checks that the file is still the one opened. */
static gboolean
lock_mailbox (Append *a, GError **error)
{
  const char *path = a->st->path;
  gint64 repair = -1;
  struct stat lst;

  if (!dotlock_take (a->lock, a->deadline, &repair, error))
    {
      /* no permission to lock in the directory: kernel locks alone */
      if (!g_error_matches (*error, DELIVER_ERROR, EACCES))
        return FALSE;
      g_clear_error (error);
    }
  else
    a->dotlocked = TRUE;
  if (!fcntl_lock (a->fd, path, a->deadline, error))
    return FALSE;
  /* still the file we opened, and not hard-linked elsewhere */
  if (fstat (a->fd, &a->before) < 0 || lstat (path, &lst) < 0 || a->before.st_ino != lst.st_ino
      || a->before.st_dev != lst.st_dev || a->before.st_nlink != 1)
    return fail (error, EAGAIN, "mailbox changed while locking:", path);
  if (repair >= 0 && a->before.st_size > repair)
    {
      g_message ("%s: removing %" G_GINT64_FORMAT " bytes of an interrupted delivery", path,
                 (gint64) (a->before.st_size - repair));
      if (ftruncate (a->fd, repair) < 0 || fstat (a->fd, &a->before) < 0)
        return fail (error, errno, "truncate", path);
    }
  return TRUE;
}

/* The From_ line, the header and the quoted body, durably; on failure
 * the file goes back to its size before. */
static gboolean
append_message (const Append *a, GError **error)
{
  const DeliverMboxStore *st = a->st;
  g_autofree Out *o = g_new0 (Out, 1);
  time_t t = st->received_us / G_USEC_PER_SEC;
  char date[64];
  struct tm tm;
  gboolean ok;

  o->fd = a->fd;
  o->path = st->path;
  gmtime_r (&t, &tm);
  strftime (date, sizeof date, "%a %b %e %H:%M:%S %Y", &tm);
  {
    g_autofree char *from = g_strdelimit (g_strdup (st->sender[0] ? st->sender : "MAILER-DAEMON"), " \t", '_');
    g_autofree char *line = g_strdup_printf ("From %s %s\n", from, date);
    ok = out_put (o, line, strlen (line), error) && out_put (o, st->header, strlen (st->header), error)
         && write_body (o, st->content, st->mboxo, error) && out_flush (o, error);
  }
  if (ok && st->do_fsync && fsync (a->fd) < 0)
    ok = fail (error, errno, "fsync", st->path);
  if (!ok)
    {
      /* no partial message may remain */
      if (ftruncate (a->fd, a->before.st_size) < 0 || (st->do_fsync && fsync (a->fd) < 0))
        g_warning ("%s: could not truncate back to %" G_GINT64_FORMAT " bytes: %s", st->path,
                   (gint64) a->before.st_size, g_strerror (errno));
    }
  return ok;
}

gboolean
deliver_mbox_store (const DeliverMboxStore *st, GError **error)
{
  g_autofree char *record = NULL;
  g_autofree char *lock = g_strconcat (st->path, ".lock", NULL);
  Append a = { st, lock, g_get_monotonic_time () + (gint64) st->lock_timeout * G_USEC_PER_SEC, -1, FALSE };
  gboolean ok = FALSE;

  if (!make_parent (st->path, error))
    return FALSE;
  a.fd = deliver_mailfile_open (st->path, O_WRONLY | O_APPEND | O_CREAT, error);
  if (a.fd < 0)
    return FALSE;
  if (lock_mailbox (&a, error))
    {
      if (a.dotlocked)
        {
          dotlock_note_size (lock, a.before.st_size);
          record = inflight_begin (st->inflight_dir, st->path);
        }
      ok = append_message (&a, error);
    }
  close (a.fd); /* releases the fcntl lock */
  if (a.dotlocked)
    unlink (lock);
  if (record)
    unlink (record);
  return ok;
}
