/* privs.c - what root prepares for the mail user before it switches to
 * that user for good (util_drop_privileges): the directories and the
 * journal lmtpd itself creates, handed over without following a symlink
 * the mail user could have planted, and nothing that already existed.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver.h"
#include "record.h"

static gboolean
lookup (const char *user, struct passwd **out, GError **error)
{
  errno = 0;
  *out = getpwnam (user);
  if (*out == NULL)
    {
      g_set_error (error, DELIVER_ERROR, errno ? errno : ENOENT, "no such user '%s'", user);
      return FALSE;
    }
  return TRUE;
}

gboolean
deliver_chown_to_user (const char *path, const char *user, GError **error)
{
  struct passwd *pw;
  int fd;

  if (geteuid () != 0 || user == NULL)
    return TRUE;
  if (!lookup (user, &pw, error))
    return FALSE;
  /* never through a symlink: root would hand its target over */
  fd = open (path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 || fchown (fd, pw->pw_uid, pw->pw_gid) < 0)
    {
      int e = errno;
      if (fd >= 0)
        close (fd);
      g_set_error (error, DELIVER_ERROR, e, "chown %s: %s", path, g_strerror (e));
      return FALSE;
    }
  close (fd);
  return TRUE;
}

/* A symlink root may follow: root's own, in a directory only root can
 * change (as /var/mail -> spool/mail).  Anything the mail user could have
 * planted is refused. */
static gboolean
trusted_symlink (int dirfd, const char *name)
{
  struct stat link, dir;

  return fstatat (dirfd, name, &link, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK (link.st_mode)
         && link.st_uid == 0 && fstat (dirfd, &dir) == 0 && dir.st_uid == 0
         && (dir.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* One step of a walk: the directory @name below @dirfd, made with @mode
 * when missing (*made then TRUE). */
static int
walk_step (int dirfd, const char *name, mode_t mode, gboolean *made)
{
  int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  int fd = openat (dirfd, name, flags);

  *made = FALSE;
  if (fd >= 0)
    return fd;
  if (errno == ENOENT)
    {
      if (mkdirat (dirfd, name, mode) == 0)
        *made = TRUE;
      else if (errno != EEXIST)
        return -1;
      return openat (dirfd, name, flags);
    }
  if (errno == ELOOP || errno == ENOTDIR)
    {
      int e = errno;
      if (trusted_symlink (dirfd, name))
        return openat (dirfd, name, flags & ~O_NOFOLLOW);
      errno = e;
    }
  return -1;
}

/* Opens the directory @path, creating what is missing (parents 0755, the
 * last @mode), component by component with openat(): no symlink is
 * followed unless trusted_symlink().  *created: the last was made here. */
static int
walk_dirs (const char *path, mode_t mode, gboolean *created, GError **error)
{
  g_auto (GStrv) parts = g_strsplit (path, "/", -1);
  int fd = open (g_path_is_absolute (path) ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  guint last = 0;

  *created = FALSE;
  for (guint i = 0; parts[i]; i++)
    if (parts[i][0] && strcmp (parts[i], ".") != 0)
      last = i;
  for (guint i = 0; fd >= 0 && parts[i]; i++)
    {
      int next, e;
      if (parts[i][0] == '\0' || strcmp (parts[i], ".") == 0)
        continue;
      next = walk_step (fd, parts[i], i == last ? mode : 0755, created);
      e = errno;
      close (fd);
      fd = next;
      errno = e;
    }
  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, DELIVER_ERROR, e, "mkdir %s: %s", path, g_strerror (e));
    }
  return fd;
}

static gboolean
fchown_to (int fd, const struct passwd *pw, const char *path, GError **error)
{
  if (fchown (fd, pw->pw_uid, pw->pw_gid) < 0)
    {
      int e = errno;
      g_set_error (error, DELIVER_ERROR, e, "chown %s: %s", path, g_strerror (e));
      return FALSE;
    }
  return TRUE;
}

/* Creates the directory @path as needed and, running as root, gives what
 * it created to @user.  A directory that was there keeps its owner: lmtpd
 * hands over only what it made itself.  *out_fd (may be NULL) keeps the
 * directory open. */
static gboolean
make_dir_for (const char *path, mode_t mode, const struct passwd *pw, int *out_fd, GError **error)
{
  gboolean created, ok = TRUE;
  struct stat st;
  int fd = walk_dirs (path, mode, &created, error);

  if (fd < 0)
    return FALSE;
  if (pw && created)
    ok = fchown_to (fd, pw, path, error);
  else if (pw && fstat (fd, &st) == 0 && st.st_uid != pw->pw_uid)
    g_warning ("%s exists and is not owned by %s: left as it is", path, pw->pw_name);
  if (ok && out_fd)
    *out_fd = fd;
  else
    close (fd);
  return ok;
}

gboolean
deliver_make_dir_for_user (const char *path, mode_t mode, const char *user, GError **error)
{
  struct passwd *pw = NULL;

  if (geteuid () == 0 && user && !lookup (user, &pw, error))
    return FALSE;
  return make_dir_for (path, mode, pw, NULL, error);
}

/* The duplicate journal: created (and handed over) here only if missing,
 * so the mail user can write it even in a directory that is root's. */
static gboolean
make_journal (const char *path, const struct passwd *pw, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *name = g_path_get_basename (path);
  int dfd = -1, fd;
  gboolean ok;

  if (!make_dir_for (dir, 0700, pw, &dfd, error))
    return FALSE;
  fd = pw ? openat (dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;
  ok = fd < 0 || fchown_to (fd, pw, path, error);
  if (fd >= 0)
    close (fd);
  close (dfd);
  return ok;
}

/* [record] dir, when some service's calls are recorded. */
static gboolean
make_record_dir (const LmtpdConfig *c, const struct passwd *pw, GError **error)
{
  for (guint i = 0; i < c->services->len; i++)
    if (record_wanted (c, c->services->pdata[i]))
      return make_dir_for (c->record_dir, 0700, pw, NULL, error);
  return TRUE;
}

/* Some [service] has quarantine = store: the store's directory is needed. */
static gboolean
quarantine_store_used (const LmtpdConfig *c)
{
  for (guint i = 0; c->services && i < c->services->len; i++)
    if (((const LmtpdService *) c->services->pdata[i])->quarantine_store)
      return TRUE;
  return FALSE;
}

gboolean
deliver_prepare_dirs (const LmtpdConfig *c, GError **error)
{
  const char *dirs[] = { c->spool_dir, c->mail_root };
  struct passwd *pw = NULL;

  if (geteuid () == 0 && c->user && !lookup (c->user, &pw, error))
    return FALSE;
  g_autofree char *records_dir = g_path_get_dirname (c->state_records_db);

  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++)
    if (!make_dir_for (dirs[i], 0700, pw, NULL, error))
      return FALSE;
  if (c->duplicate_window && !make_journal (c->duplicate_db, pw, error))
    return FALSE;
  /* SQLite makes its -wal and -shm files next to the database; the
   * recorded calls and the quarantine store (often below it) after it, so
   * that their parent is the mail user's too */
  if (c->state_backend != LMTPD_STATE_PGSQL && !make_dir_for (records_dir, 0700, pw, NULL, error))
    return FALSE;
  if (!make_record_dir (c, pw, error))
    return FALSE;
  return !quarantine_store_used (c) || make_dir_for (c->quarantine_dir, 0700, pw, NULL, error);
}
