/* maildir.c - deliver one message into a Maildir, durably.
 *
 * The file is written under tmp/, fsynced and closed (each step checked),
 * then renamed into new/ and new/ is fsynced: a reader sees the whole
 * message or nothing, and once this returns TRUE the message survives a
 * crash.  Where the file system allows (sync_mode = one-commit, fs-sync.c)
 * the file's data is written back instead of fsynced before the rename,
 * and the file is fsynced after it: one journal commit instead of two.  Names follow Dovecot's "<secs>.M<usecs>P<pid>Q<n>.<host>" with
 * ",S=" (file size) and ",W=" (size with CRLF line ends).  rename() rather
 * than link()+unlink(): the name is unique, and rename works on file
 * systems without hard links.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "context.h"
#include "pipeline.h"

/* Process-wide on purpose: it makes the names of this process unique
 * (with the pid and the time), whatever context or thread stores. */
static gint unique_counter;

#define TMP_MAX_AGE (36 * 60 * 60)   /* the Maildir rule for stale tmp/ files */
#define TMP_SCAN_INTERVAL (60 * 60)  /* per Maildir and process */

guint
deliver_maildir_clean_tmp (const char *maildir, gint64 max_age)
{
  g_autofree char *path = g_build_filename (maildir, "tmp", NULL);
  int dfd = open (path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  guint removed = 0;
  DIR *dir;
  struct dirent *e;

  if (dfd < 0 || (dir = fdopendir (dfd)) == NULL)
    {
      if (dfd >= 0)
        close (dfd);
      return 0;
    }
  while ((e = readdir (dir)) != NULL)
    {
      struct stat st;

      if (e->d_name[0] == '.')
        continue;
      /* ctime too: a file whose mtime was set back is not stale */
      if (fstatat (dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR (st.st_mode)
          && st.st_mtime < now - max_age && st.st_ctime < now - max_age
          && unlinkat (dfd, e->d_name, 0) == 0)
        {
          g_message ("%s: removed stale tmp/%s", maildir, e->d_name);
          removed++;
        }
    }
  closedir (dir);
  return removed;
}

/* Each Maildir's tmp/ is looked at once an hour by the context's
 * deliveries, after a delivery into it, so a crash's leftovers go in time. */
static void
maybe_clean_tmp (DeliverContext *ctx, const char *maildir)
{
  GHashTable *scanned = ctx->tmp_cleaned; /* maildir -> time of the last scan */
  gint64 now = g_get_monotonic_time () / G_USEC_PER_SEC;
  gboolean due;

  g_mutex_lock (&ctx->tmp_lock);
  if (g_hash_table_size (scanned) > 100000)
    g_hash_table_remove_all (scanned);
  due = !g_hash_table_contains (scanned, maildir)
        || now - GPOINTER_TO_SIZE (g_hash_table_lookup (scanned, maildir)) >= TMP_SCAN_INTERVAL;
  if (due)
    g_hash_table_insert (scanned, g_strdup (maildir), GSIZE_TO_POINTER ((gsize) now));
  g_mutex_unlock (&ctx->tmp_lock);
  if (due)
    deliver_maildir_clean_tmp (maildir, TMP_MAX_AGE);
}

static gboolean
set_errno_error (GError **error, const char *what, const char *path)
{
  int e = errno;
  g_set_error (error, DELIVER_ERROR, e, "%s %s: %s", what, path, g_strerror (e));
  return FALSE;
}

char *
deliver_maildir_unique (const char *hostname)
{
  gint64 now = g_get_real_time ();
  GString *s = g_string_new (NULL);

  g_string_printf (s, "%" G_GINT64_FORMAT ".M%06dP%dQ%u.", now / G_USEC_PER_SEC,
                   (int) (now % G_USEC_PER_SEC), util_pid (),
                   (guint) g_atomic_int_add (&unique_counter, 1) + 1);
  for (const char *p = hostname; *p; p++)
    {
      if (*p == '/')
        g_string_append (s, "\\057");
      else if (*p == ':')
        g_string_append (s, "\\072");
      else if (*p == ',')
        g_string_append (s, "\\054");
      else
        g_string_append_c (s, *p);
    }
  return g_string_free (s, FALSE);
}

static gboolean
fsync_dir (const char *path, GError **error)
{
  int fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return set_errno_error (error, "open", path);
  if (fsync (fd) < 0 && errno != EINVAL)
    {
      set_errno_error (error, "fsync", path);
      close (fd);
      return FALSE;
    }
  close (fd);
  return TRUE;
}

/* mkdir -p that fsyncs the parent of every directory it creates, so a new
 * mailbox is as durable as the message in it. */
static gboolean
make_dirs (const char *path, gboolean do_fsync, GError **error)
{
  g_autofree char *parent = NULL;

  if (mkdir (path, 0700) == 0)
    goto created;
  if (errno == EEXIST)
    return TRUE;
  if (errno != ENOENT)
    return set_errno_error (error, "mkdir", path);
  parent = g_path_get_dirname (path);
  if (strcmp (parent, path) == 0 || !make_dirs (parent, do_fsync, error))
    return FALSE;
  if (mkdir (path, 0700) < 0 && errno != EEXIST)
    return set_errno_error (error, "mkdir", path);
created:
  if (parent == NULL)
    parent = g_path_get_dirname (path);
  return !do_fsync || fsync_dir (parent, error);
}

gboolean
deliver_maildir_create (const char *maildir, gboolean do_fsync, GError **error)
{
  static const char *const subdirs[] = { "cur", "new", "tmp" };

  if (!make_dirs (maildir, do_fsync, error))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (subdirs); i++)
    {
      g_autofree char *d = g_build_filename (maildir, subdirs[i], NULL);
      if (mkdir (d, 0700) < 0 && errno != EEXIST)
        return set_errno_error (error, "mkdir", d);
    }
  return !do_fsync || fsync_dir (maildir, error);
}

static gboolean
write_all (int fd, const char *data, gsize len, const char *path, GError **error)
{
  while (len > 0)
    {
      ssize_t n = write (fd, data, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return set_errno_error (error, "write", path);
      data += n;
      len -= n;
    }
  return TRUE;
}

static gboolean
copy_range (int in, guint64 start, guint64 size, int out, const char *path, GError **error)
{
  loff_t off = start;
  char buf[64 * 1024];

  size += start;
  while ((guint64) off < size)
    {
      ssize_t n = copy_file_range (in, &off, out, NULL, size - off, 0);
      if (n > 0)
        continue;
      if (n == 0)
        break;
      if (errno == EINTR)
        continue;
      if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
        return set_errno_error (error, "write", path);
      break; /* fall back to plain reads and writes */
    }
  while ((guint64) off < size)
    {
      ssize_t n = pread (in, buf, MIN (sizeof buf, size - off), off);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          if (n == 0)
            errno = EIO;
          return set_errno_error (error, "read spool for", path);
        }
      if (!write_all (out, buf, n, path, error))
        return FALSE;
      off += n;
    }
  return TRUE;
}

/* The directories one store goes through, each opened once: the Maildir
 * (its own path was checked against the mail root by the caller), then
 * tmp/ and new/ or cur/ relative to it, never through a symlink: a
 * "new -> /elsewhere" planted by the mail user fails the store (ELOOP)
 * instead of putting the message outside the mail root. */
typedef struct {
  int maildir;
  int tmp;
  int dest;
} MaildirDirs;

static void
dirs_close (MaildirDirs *d)
{
  if (d->maildir >= 0)
    close (d->maildir);
  if (d->tmp >= 0)
    close (d->tmp);
  if (d->dest >= 0)
    close (d->dest);
}

static gboolean
dirs_try_open (const char *maildir, const char *dest, MaildirDirs *d)
{
  dirs_close (d);
  d->tmp = d->dest = -1;
  d->maildir = open (maildir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d->maildir < 0)
    return FALSE;
  /* tmp/ is only a place for names: O_PATH is enough for openat/renameat */
  d->tmp = openat (d->maildir, "tmp", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (d->tmp < 0)
    return FALSE;
  /* new/ or cur/ is fsynced: a real descriptor */
  d->dest = openat (d->maildir, dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  return d->dest >= 0;
}

static gboolean
dirs_open (const char *maildir, const char *dest, gboolean do_fsync, MaildirDirs *d, GError **error)
{
  *d = (MaildirDirs) { -1, -1, -1 };
  if (dirs_try_open (maildir, dest, d))
    return TRUE;
  if (errno == ENOENT)
    {
      /* the Maildir, or a part of it, is missing: create what is */
      if (!deliver_maildir_create (maildir, do_fsync, error))
        {
          dirs_close (d);
          return FALSE;
        }
      if (dirs_try_open (maildir, dest, d))
        return TRUE;
    }
  /* a symlink as tmp/ or new/ gives ELOOP (or ENOTDIR with O_PATH) */
  set_errno_error (error, "open", maildir);
  dirs_close (d);
  return FALSE;
}

/* The final file name in new/, or in cur/ with ":2,FLAGS" when flags are set */
static char *
final_leaf (const char *base, guint64 size, guint64 vsize, const char *flags)
{
  gboolean cur = flags && flags[0];

  return g_strdup_printf ("%s,S=%" G_GUINT64_FORMAT ",W=%" G_GUINT64_FORMAT "%s%s", base, size, vsize,
                          cur ? ":2," : "", cur ? flags : "");
}

static gboolean
fsync_dest (const MaildirDirs *d, const char *final, GError **error)
{
  if (fsync (d->dest) < 0 && errno != EINVAL)
    return set_errno_error (error, "fsync directory of", final);
  return TRUE;
}

static gboolean
too_late (GError **error, const char *final)
{
  g_set_error (error, DELIVER_ERROR, ETIMEDOUT, "%s: delivery deadline passed", final);
  return FALSE;
}

/* Single instance: a hard link to a copy already delivered.  FALSE with
 * @error unset: the caller copies instead. */
static gboolean
store_link (const MaildirDirs *d, const DeliverMaildirStore *st, const char *leaf, const char *final,
            GError **error)
{
  if (st->committed && !st->committed (st->data, final, FALSE))
    return too_late (error, final);
  if (linkat (AT_FDCWD, st->link_from, d->dest, leaf, 0) < 0)
    return FALSE; /* the source may have moved */
  if (st->committed)
    st->committed (st->data, final, TRUE);
  if (st->do_fsync && !fsync_dest (d, final, error))
    {
      unlinkat (d->dest, leaf, 0);
      return FALSE;
    }
  return TRUE;
}

gboolean
deliver_content_write (const char *header, const DeliverContent *content, int out, const char *path,
                       GError **error)
{
  if (!write_all (out, header, strlen (header), path, error))
    return FALSE;
  for (guint i = 0; i < content->n; i++)
    if (!copy_range (content->seg[i].fd, content->seg[i].offset, content->seg[i].length, out, path, error))
      return FALSE;
  return TRUE;
}

/* How a store is made durable (fs-sync.c says why one commit can do). */
typedef enum {
  SYNC_NONE,        /* fsync = false */
  SYNC_TWO_STEP,    /* fsync the file, rename, fsync the directory */
  SYNC_ONE_COMMIT,  /* write back the data, rename, fsync the file */
} SyncSeq;

static SyncSeq
sync_seq (const DeliverMaildirStore *st, const MaildirDirs *d)
{
  if (!st->do_fsync)
    return SYNC_NONE;
  return st->one_commit && deliver_fs_one_commit (d->dest) ? SYNC_ONE_COMMIT : SYNC_TWO_STEP;
}

/* Before the rename: two-step fsyncs the file; one-commit has its data
 * written (blocks allocated, size set) in the running transaction, so no
 * commit can hold the name without them. */
static gboolean
sync_tmp (int fd, SyncSeq seq, const char *tmp, GError **error)
{
  if (seq == SYNC_TWO_STEP && fsync (fd) < 0)
    return set_errno_error (error, "fsync", tmp);
  if (seq == SYNC_ONE_COMMIT
      && sync_file_range (fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE
                                      | SYNC_FILE_RANGE_WAIT_AFTER) < 0)
    return set_errno_error (error, "write back", tmp);
  return TRUE;
}

/* Writes tmp/<base> as @seq asks; unlinks it on failure.  One-commit keeps
 * the file open in *@keep_fd for its fsync after the rename; otherwise
 * it is closed here (close checked: NFS reports a failed write there). */
static gboolean
write_tmp (const MaildirDirs *d, const DeliverMaildirStore *st, SyncSeq seq, const char *base,
           const char *tmp, int *keep_fd, GError **error)
{
  int fd = openat (d->tmp, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

  *keep_fd = -1;
  if (fd < 0)
    return set_errno_error (error, "create", tmp);
  if (!deliver_content_write (st->header, st->content, fd, tmp, error) || !sync_tmp (fd, seq, tmp, error))
    {
      close (fd);
      unlinkat (d->tmp, base, 0);
      return FALSE;
    }
  if (seq == SYNC_ONE_COMMIT)
    {
      *keep_fd = fd;
      return TRUE;
    }
  if (close (fd) < 0)
    {
      set_errno_error (error, "close", tmp);
      unlinkat (d->tmp, base, 0);
      return FALSE;
    }
  return TRUE;
}

/* After the rename: the name (and with one-commit the file) on stable
 * storage.  Closes @fd (one-commit's file) whatever happens. */
static gboolean
sync_published (const MaildirDirs *d, SyncSeq seq, int fd, const char *final, GError **error)
{
  gboolean ok = TRUE;

  if (seq == SYNC_TWO_STEP)
    ok = fsync_dest (d, final, error);
  else if (seq == SYNC_ONE_COMMIT && fsync (fd) < 0)
    ok = set_errno_error (error, "fsync", final);
  if (fd >= 0 && close (fd) < 0 && ok)
    ok = set_errno_error (error, "close", final);
  return ok;
}

/* tmp/<base> becomes <dest>/<leaf>, then is made durable (sync_published). */
static gboolean
publish_tmp (const MaildirDirs *d, const DeliverMaildirStore *st, SyncSeq seq, int fd, const char *base,
             const char *leaf, const char *final, GError **error)
{
  if (st->committed && !st->committed (st->data, final, FALSE))
    {
      if (fd >= 0)
        close (fd);
      unlinkat (d->tmp, base, 0);
      return too_late (error, final);
    }
  if (renameat (d->tmp, base, d->dest, leaf) < 0)
    {
      set_errno_error (error, "rename", final);
      if (fd >= 0)
        close (fd);
      unlinkat (d->tmp, base, 0);
      return FALSE;
    }
  /* visible now: whoever must know it (the duplicate journal) learns it
   * before the slow sync, so a kill cannot fall in between */
  if (st->committed)
    st->committed (st->data, final, TRUE);
  if (!sync_published (d, seq, fd, final, error))
    {
      /* Not known to be durable: take it back, so the client's retry does
       * not leave a second copy. */
      unlinkat (d->dest, leaf, 0);
      return FALSE;
    }
  return TRUE;
}

gboolean
deliver_maildir_store (const DeliverMaildirStore *st, char **out_path, guint64 *out_size, GError **error)
{
  g_autofree char *base = deliver_maildir_unique (st->hostname);
  g_autofree char *tmp = g_build_filename (st->maildir, "tmp", base, NULL);
  g_autofree char *leaf = NULL, *final = NULL;
  const char *sub = st->flags && st->flags[0] ? "cur" : "new";
  guint64 hlines = 0, size, vsize;
  MaildirDirs d;
  gboolean ok;

  for (const char *p = st->header; *p; p++)
    hlines += *p == '\n';
  size = strlen (st->header) + deliver_content_size (st->content);
  vsize = size + hlines + deliver_content_lines (st->content);
  leaf = final_leaf (base, size, vsize, st->flags);
  final = g_build_filename (st->maildir, sub, leaf, NULL);
  if (out_size)
    *out_size = size;
  if (!dirs_open (st->maildir, sub, st->do_fsync, &d, error))
    return FALSE;

  ok = st->link_from && store_link (&d, st, leaf, final, error);
  if (!ok && !(error && *error))
    {
      SyncSeq seq = sync_seq (st, &d);
      int fd;

      ok = write_tmp (&d, st, seq, base, tmp, &fd, error) && publish_tmp (&d, st, seq, fd, base, leaf, final, error);
    }
  dirs_close (&d);
  if (!ok)
    return FALSE;
  if (st->ctx)
    maybe_clean_tmp (st->ctx, st->maildir);
  if (out_path)
    *out_path = g_steal_pointer (&final);
  return TRUE;
}
