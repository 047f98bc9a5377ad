/* learn-watch.c - the watcher thread: inotify over the mail root.
 *
 * The directories between the mail root and a Maildir ([delivery]
 * mailbox, e.g. domain/local/Maildir) are watched for new subdirectories,
 * so a mailbox lmtpd creates on its first delivery is picked up; each
 * Maildir for new folders; each folder's cur/ and new/ for the files
 * coming and going, handed to learn-moves.c.  Every watch lists its
 * directory once it is in place, so what appeared in between is not
 * missed.  tmp/ is not watched: a file renamed in from it shows as an
 * arrival without its other half.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "learn-private.h"

#define WATCHES_MAX 200000
#define PENDING_FROM_MAX 4096
#define PENDING_FROM_US (G_USEC_PER_SEC / 2)
#define POLL_MS 500
#define SUB_EVENTS (IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_EXCL_UNLINK)
#define DIR_EVENTS (IN_CREATE | IN_MOVED_TO)

typedef enum {
  WATCH_LEVEL,   /* the mail root or a directory above the Maildirs */
  WATCH_MAILDIR, /* a Maildir: its folders appear here */
  WATCH_FOLDER,  /* a Maildir++ folder (.Name): its cur/ and new/ appear here */
  WATCH_SUB,     /* a folder's cur/ or new/: the messages */
} WatchKind;

typedef struct {
  WatchKind kind;
  guint level;        /* WATCH_LEVEL: components below the mail root */
  char *path;
  LearnMailbox *mb;   /* MAILDIR, FOLDER, SUB: the mailbox (borrowed) */
  char *folder;       /* FOLDER, SUB: "" for INBOX */
  char *sub;          /* SUB: "cur" or "new" */
} WatchDir;

typedef struct {
  LearnMailbox *mb;
  LearnPlace at;     /* owned copies */
  gint64 seen;
} PendingFrom;

struct _LearnWatch {
  LmtpdConfig *config;
  LearnOwner *owner;
  LearnQueue *queue;
  char *root;             /* the mail root's real path */
  int ifd, stop_fd;
  GThread *thread;
  GHashTable *dirs;       /* wd -> WatchDir */
  GHashTable *mailboxes;  /* Maildir path -> LearnMailbox */
  GHashTable *pending;    /* IN_MOVED_FROM cookie -> PendingFrom, until its IN_MOVED_TO */
  gboolean full_warned;
};

static void
watch_dir_free (gpointer p)
{
  WatchDir *d = p;
  g_free (d->path);
  g_free (d->folder);
  g_free (d->sub);
  g_free (d);
}

static void
pending_free (gpointer p)
{
  PendingFrom *f = p;
  learn_place_clear (&f->at);
  g_free (f);
}

static void scan_dir (LearnWatch *w, const WatchDir *d);

/* An IMAP RENAME of a folder: a directory already watched (same inode)
 * under a new name.  The folder and its cur/ and new/ take the new name,
 * so that a renamed Junk stops teaching spam (and a folder renamed to Junk
 * starts), and their Junk inodes are read again. */
static void
folder_renamed (LearnWatch *w, WatchDir *folder, const char *path, const char *name)
{
  g_autofree char *old = g_strdup (folder->folder);
  GHashTableIter it;
  gpointer value;

  g_hash_table_iter_init (&it, w->dirs);
  while (g_hash_table_iter_next (&it, NULL, &value))
    {
      WatchDir *d = value;
      if (d->mb != folder->mb || d->kind == WATCH_MAILDIR || strcmp (d->folder, old) != 0)
        continue;
      g_free (d->folder);
      d->folder = g_strdup (name);
      if (d->kind == WATCH_SUB)
        {
          g_free (d->path);
          d->path = g_build_filename (path, d->sub, NULL);
          learn_mailbox_scan (d->mb, w->config, d->folder, d->sub);
        }
    }
  g_free (folder->path);
  folder->path = g_strdup (path);
}

/* Watches @path as @tmpl says; the new WatchDir, or NULL (already
 * watched, gone, or out of watches: said once). */
static WatchDir *
add_watch (LearnWatch *w, const char *path, const WatchDir *tmpl)
{
  guint32 mask = (tmpl->kind == WATCH_SUB ? SUB_EVENTS : DIR_EVENTS) | IN_ONLYDIR | IN_DONT_FOLLOW;
  WatchDir *d;
  int wd;

  if (g_hash_table_size (w->dirs) >= WATCHES_MAX)
    errno = ENOSPC, wd = -1;
  else
    wd = inotify_add_watch (w->ifd, path, mask);
  if (wd < 0)
    {
      if (errno == ENOSPC && !w->full_warned)
        g_warning ("learn: out of inotify watches at %s (fs.inotify.max_user_watches): moves in "
                   "mailboxes not watched are not learned", path);
      w->full_warned |= errno == ENOSPC;
      return NULL;
    }
  if ((d = g_hash_table_lookup (w->dirs, GINT_TO_POINTER (wd))) != NULL)
    {
      if (d->kind == WATCH_FOLDER && strcmp (d->path, path) != 0)
        folder_renamed (w, d, path, tmpl->folder);
      return NULL;
    }
  d = g_new0 (WatchDir, 1);
  *d = *tmpl;
  d->path = g_strdup (path);
  d->folder = g_strdup (tmpl->folder);
  d->sub = g_strdup (tmpl->sub);
  g_hash_table_insert (w->dirs, GINT_TO_POINTER (wd), d);
  return d;
}

/* The mailbox at the Maildir @path, made when first seen. */
static LearnMailbox *
mailbox_at (LearnWatch *w, const char *path)
{
  LearnMailbox *mb = g_hash_table_lookup (w->mailboxes, path);
  g_auto (GStrv) parts = NULL;
  g_autofree char *user = NULL;

  if (mb)
    return mb;
  parts = g_strsplit (path + strlen (w->root) + 1, "/", -1);
  if (g_strv_length (parts) != learn_owner_depth (w->owner)
      || (user = learn_owner_user (w->owner, (const char *const *) parts)) == NULL)
    return NULL;
  mb = learn_mailbox_new (path, user);
  g_hash_table_insert (w->mailboxes, g_strdup (path), mb);
  return mb;
}

/* @name appeared in the directory @d watches: watch it if it matters. */
static void
dir_appeared (LearnWatch *w, const WatchDir *d, const char *name)
{
  g_autofree char *path = g_build_filename (d->path, name, NULL);
  WatchDir t = { 0 };
  WatchDir *added;

  if (d->kind == WATCH_LEVEL)
    {
      if (!learn_owner_component_ok (w->owner, d->level, name))
        return;
      t.level = d->level + 1;
      t.kind = t.level == learn_owner_depth (w->owner) ? WATCH_MAILDIR : WATCH_LEVEL;
      if (t.kind == WATCH_MAILDIR && (t.mb = mailbox_at (w, path)) == NULL)
        return;
      t.folder = (char *) "";
    }
  else if (d->kind == WATCH_MAILDIR && name[0] == '.' && name[1] && strcmp (name, "..") != 0)
    t = (WatchDir) { .kind = WATCH_FOLDER, .mb = d->mb, .folder = (char *) name + 1 };
  else if ((d->kind == WATCH_MAILDIR || d->kind == WATCH_FOLDER)
           && (strcmp (name, "cur") == 0 || strcmp (name, "new") == 0))
    t = (WatchDir) { .kind = WATCH_SUB, .mb = d->mb, .folder = d->folder, .sub = (char *) name };
  else
    return;
  if ((added = add_watch (w, path, &t)) != NULL)
    scan_dir (w, added);
}

/* What is already in a directory just watched. */
static void
scan_dir (LearnWatch *w, const WatchDir *d)
{
  g_autoptr (GDir) dir = NULL;
  const char *name;

  if (d->kind == WATCH_SUB)
    {
      learn_mailbox_scan (d->mb, w->config, d->folder, d->sub);
      return;
    }
  if ((dir = g_dir_open (d->path, 0, NULL)) == NULL)
    return;
  while ((name = g_dir_read_name (dir)))
    {
      g_autofree char *path = g_build_filename (d->path, name, NULL);
      if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
        dir_appeared (w, d, name);
    }
}

/* A rename out of the folders whose IN_MOVED_TO never came: gone. */
static void
flush_pending (LearnWatch *w, gboolean all)
{
  gint64 now = g_get_monotonic_time ();
  GHashTableIter it;
  gpointer value;

  g_hash_table_iter_init (&it, w->pending);
  while (g_hash_table_iter_next (&it, NULL, &value))
    {
      PendingFrom *f = value;
      if (!all && now - f->seen < PENDING_FROM_US)
        continue;
      learn_mailbox_gone (f->mb, w->config, &f->at, w->queue);
      g_hash_table_iter_remove (&it);
    }
}

static void
moved_from (LearnWatch *w, const WatchDir *d, const struct inotify_event *ev)
{
  PendingFrom *f = g_new0 (PendingFrom, 1);
  LearnPlace from = { d->folder, d->sub, ev->name };

  if (g_hash_table_size (w->pending) >= PENDING_FROM_MAX)
    flush_pending (w, TRUE);
  f->mb = d->mb;
  f->at = learn_place_dup (&from);
  f->seen = g_get_monotonic_time ();
  g_hash_table_replace (w->pending, GUINT_TO_POINTER (ev->cookie), f);
}

static void
moved_to (LearnWatch *w, const WatchDir *d, const struct inotify_event *ev)
{
  PendingFrom *f = g_hash_table_lookup (w->pending, GUINT_TO_POINTER (ev->cookie));
  LearnPlace to = { d->folder, d->sub, ev->name };

  if (f && f->mb == d->mb)
    {
      learn_mailbox_renamed (d->mb, w->config, &f->at, &to, w->queue);
      g_hash_table_remove (w->pending, GUINT_TO_POINTER (ev->cookie));
      return;
    }
  if (f)
    {
      learn_mailbox_gone (f->mb, w->config, &f->at, w->queue); /* another user's mailbox: no lesson */
      g_hash_table_remove (w->pending, GUINT_TO_POINTER (ev->cookie));
    }
  learn_mailbox_arrived (d->mb, w->config, &to);
}

static void
sub_event (LearnWatch *w, const WatchDir *d, const struct inotify_event *ev)
{
  LearnPlace at = { d->folder, d->sub, ev->name };

  if ((ev->mask & IN_ISDIR) || ev->name[0] == '.')
    return;
  if (ev->mask & IN_MOVED_FROM)
    moved_from (w, d, ev);
  else if (ev->mask & IN_MOVED_TO)
    moved_to (w, d, ev);
  else if (ev->mask & IN_CREATE)
    learn_mailbox_created (d->mb, w->config, &at);
  else if (ev->mask & IN_DELETE)
    learn_mailbox_gone (d->mb, w->config, &at, w->queue);
}

static void
one_event (LearnWatch *w, const struct inotify_event *ev)
{
  WatchDir *d = g_hash_table_lookup (w->dirs, GINT_TO_POINTER (ev->wd));

  if (ev->mask & IN_Q_OVERFLOW)
    g_warning ("learn: inotify queue overflow: some moves were not seen");
  if (d == NULL)
    return;
  if (ev->mask & IN_IGNORED)
    g_hash_table_remove (w->dirs, GINT_TO_POINTER (ev->wd));
  else if (ev->len == 0)
    return;
  else if (d->kind == WATCH_SUB)
    sub_event (w, d, ev);
  else if (ev->mask & IN_ISDIR)
    dir_appeared (w, d, ev->name);
}

/* Reads what inotify has; FALSE when it cannot be read any more. */
static gboolean
read_events (LearnWatch *w)
{
  char buf[64 * 1024] __attribute__ ((aligned (__alignof__ (struct inotify_event))));
  gssize n = read (w->ifd, buf, sizeof buf);

  if (n < 0)
    return errno == EINTR || errno == EAGAIN;
  for (char *p = buf; p < buf + n;)
    {
      const struct inotify_event *ev = (const struct inotify_event *) p;
      one_event (w, ev);
      p += sizeof *ev + ev->len;
    }
  return n > 0;
}

static void
expire_candidates (LearnWatch *w)
{
  gint64 now = g_get_monotonic_time ();
  GHashTableIter it;
  gpointer mb;

  g_hash_table_iter_init (&it, w->mailboxes);
  while (g_hash_table_iter_next (&it, NULL, &mb))
    learn_mailbox_expire (mb, now);
}

static gpointer
watcher_thread (gpointer data)
{
  LearnWatch *w = data;
  WatchDir root = { .kind = WATCH_LEVEL, .level = 0, .folder = (char *) "" };
  WatchDir *top = add_watch (w, w->root, &root);
  gint64 last_expire = g_get_monotonic_time ();

  if (top)
    scan_dir (w, top);
  g_message ("learn: watching %s (%u directories, %u mailboxes)", w->root, g_hash_table_size (w->dirs),
             g_hash_table_size (w->mailboxes));
  for (;;)
    {
      struct pollfd fds[2] = { { w->ifd, POLLIN, 0 }, { w->stop_fd, POLLIN, 0 } };
      if (poll (fds, 2, POLL_MS) < 0 && errno != EINTR)
        break;
      if (fds[1].revents || ((fds[0].revents & POLLIN) && !read_events (w)))
        break;
      flush_pending (w, FALSE);
      if (g_get_monotonic_time () - last_expire > G_USEC_PER_SEC)
        {
          expire_candidates (w);
          last_expire = g_get_monotonic_time ();
        }
    }
  return NULL;
}

LearnWatch *
learn_watch_start (LmtpdConfig *config, LearnOwner *owner, LearnQueue *queue, GError **error)
{
  g_autofree char *root = realpath (config->mail_root, NULL);
  LearnWatch *w;

  if (root == NULL)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "[learn]: mail_root %s: %s",
                   config->mail_root, g_strerror (errno));
      return NULL;
    }
  w = g_new0 (LearnWatch, 1);
  w->config = config;
  w->owner = owner;
  w->queue = queue;
  w->root = g_steal_pointer (&root);
  w->dirs = g_hash_table_new_full (NULL, NULL, NULL, watch_dir_free);
  w->mailboxes = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) learn_mailbox_free);
  w->pending = g_hash_table_new_full (NULL, NULL, NULL, pending_free);
  w->ifd = inotify_init1 (IN_NONBLOCK | IN_CLOEXEC);
  w->stop_fd = eventfd (0, EFD_CLOEXEC);
  if (w->ifd < 0 || w->stop_fd < 0
      || (w->thread = g_thread_try_new ("lmtpd-learn-watch", watcher_thread, w, error)) == NULL)
    {
      if (error && *error == NULL)
        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "[learn]: inotify: %s", g_strerror (errno));
      learn_watch_stop (w);
      return NULL;
    }
  return w;
}

void
learn_watch_stop (LearnWatch *w)
{
  guint64 one = 1;

  if (w == NULL)
    return;
  if (w->thread)
    {
      if (write (w->stop_fd, &one, sizeof one) < 0)
        g_warning ("learn: cannot stop the watcher: %s", g_strerror (errno));
      g_thread_join (w->thread);
    }
  if (w->ifd >= 0)
    close (w->ifd);
  if (w->stop_fd >= 0)
    close (w->stop_fd);
  g_hash_table_unref (w->pending);
  g_hash_table_unref (w->dirs);
  g_hash_table_unref (w->mailboxes);
  g_free (w->root);
  g_free (w);
}
