/* learn-moves.c - one mailbox's file events made into the user's moves.
 *
 * A move is either a rename from one folder's cur/ or new/ into another's
 * (what most IMAP servers, POP clients and `mv` do), or what Dovecot 2.3's
 * IMAP MOVE does on Maildir: a hard link of the message into the
 * destination's tmp/, a rename from there into new/ (keeping the source's
 * base name when it can), then the unlink of the source.  The watcher may
 * read these events after all of them happened, so a file renamed in from
 * tmp/ is a candidate paired with an unlink that follows in another folder
 * of the same mailbox: out of Junk by inode (Junk folders are small: the
 * inodes of their messages are kept), into Junk by base name or by the
 * candidate's link count dropping.  lmtpd's own deliveries are a new file
 * under a name of its own renamed from tmp/, or (single instance, another
 * recipient's copy) a link made straight into new/: never half of a move.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "learn-private.h"
#include "lmtpd-util.h"

#define JUNK_FILES_MAX 100000    /* inodes kept per mailbox */
#define CANDIDATES_MAX 256       /* linked-in files waiting for their unlink */
#define SCAN_NAMES_MAX 200000    /* names read looking for a renamed message */
#define PAIR_WINDOW_US ((gint64) 120 * G_USEC_PER_SEC)

typedef struct {
  LearnPlace at;     /* owned copies */
  ino_t ino;
  nlink_t nlink;
  gint64 seen;
} Candidate;

struct _LearnMailbox {
  char *path;        /* the Maildir */
  char *user;
  GHashTable *junk;  /* "folder/sub/name" of a message in Junk -> its inode (boxed) */
  GHashTable *junk_inodes; /* the same inodes (boxed gint64) -> how many names have it */
  GQueue candidates; /* Candidate*, oldest first */
};

LearnPlace
learn_place_dup (const LearnPlace *p)
{
  return (LearnPlace) { g_strdup (p->folder), g_strdup (p->sub), g_strdup (p->name) };
}

void
learn_place_clear (LearnPlace *p)
{
  g_free ((char *) p->folder);
  g_free ((char *) p->sub);
  g_free ((char *) p->name);
  *p = (LearnPlace) { NULL, NULL, NULL };
}

static void
candidate_free (gpointer p)
{
  Candidate *c = p;
  learn_place_clear (&c->at);
  g_free (c);
}

LearnMailbox *
learn_mailbox_new (const char *path, const char *user)
{
  LearnMailbox *mb = g_new0 (LearnMailbox, 1);

  mb->path = g_strdup (path);
  mb->user = g_strdup (user);
  mb->junk = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  mb->junk_inodes = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  g_queue_init (&mb->candidates);
  return mb;
}

void
learn_mailbox_free (LearnMailbox *mb)
{
  if (mb == NULL)
    return;
  g_queue_clear_full (&mb->candidates, candidate_free);
  g_hash_table_unref (mb->junk);
  g_hash_table_unref (mb->junk_inodes);
  g_free (mb->path);
  g_free (mb->user);
  g_free (mb);
}

const char *
learn_mailbox_path (const LearnMailbox *mb)
{
  return mb->path;
}

static char *
place_path (const LearnMailbox *mb, const LearnPlace *at)
{
  g_autofree char *dir = at->folder[0] ? g_strconcat (".", at->folder, NULL) : g_strdup ("");

  return g_build_filename (mb->path, dir, at->sub, at->name, NULL);
}

static char *
place_key (const LearnPlace *at)
{
  return g_strconcat (at->folder, "/", at->sub, "/", at->name, NULL);
}

/* The file at @at, a regular file not reached through a symlink. */
static gboolean
place_stat (const LearnMailbox *mb, const LearnPlace *at, struct stat *st)
{
  g_autofree char *path = place_path (mb, at);

  return fstatat (AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG (st->st_mode);
}

/* Counts @ino as one more (@delta 1) or one less (-1) name in Junk. */
static void
junk_inode_count (LearnMailbox *mb, ino_t ino, int delta)
{
  gint64 key = (gint64) ino;
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (mb->junk_inodes, &key));

  if (n + delta == 0)
    g_hash_table_remove (mb->junk_inodes, &key);
  else
    g_hash_table_replace (mb->junk_inodes, g_memdup2 (&key, sizeof key), GUINT_TO_POINTER (n + delta));
}

/* Forgets a Junk message's name; its inode, or 0 if it was not known. */
static ino_t
junk_forget (LearnMailbox *mb, const LearnPlace *at)
{
  g_autofree char *key = place_key (at);
  ino_t *known = g_hash_table_lookup (mb->junk, key);
  ino_t ino = known ? *known : 0;

  if (known)
    junk_inode_count (mb, ino, -1);
  g_hash_table_remove (mb->junk, key);
  return ino;
}

static void
junk_remember (LearnMailbox *mb, const LearnPlace *at, ino_t ino)
{
  static gboolean warned;

  junk_forget (mb, at);
  if (g_hash_table_size (mb->junk) >= JUNK_FILES_MAX)
    {
      if (!warned)
        g_warning ("learn: user=%s more than %d messages in Junk: moves out of the others are not seen",
                   mb->user, JUNK_FILES_MAX);
      warned = TRUE;
      return;
    }
  g_hash_table_insert (mb->junk, place_key (at), g_memdup2 (&ino, sizeof ino));
  junk_inode_count (mb, ino, 1);
}

static gboolean
junk_has_inode (LearnMailbox *mb, ino_t ino)
{
  gint64 key = (gint64) ino;

  return g_hash_table_contains (mb->junk_inodes, &key);
}

void
learn_mailbox_scan (LearnMailbox *mb, LmtpdConfig *config, const char *folder, const char *sub)
{
  LearnPlace at = { folder, sub, NULL };
  g_autofree char *dir = NULL;
  g_autoptr (GDir) d = NULL;
  const char *name;

  if (learn_folder_kind (config, folder) != LEARN_FOLDER_JUNK)
    return;
  at.name = "";
  dir = place_path (mb, &at);
  if ((d = g_dir_open (dir, 0, NULL)) == NULL)
    return;
  while ((name = g_dir_read_name (d)) && g_hash_table_size (mb->junk) < JUNK_FILES_MAX)
    {
      struct stat st;
      at.name = name;
      if (name[0] != '.' && place_stat (mb, &at, &st))
        junk_remember (mb, &at, st.st_ino);
    }
}

/* What a move from a folder of kind @from into one of kind @to teaches:
 * 1 spam, 0 ham, -1 nothing (within Junk, into Trash, between others). */
static int
move_lesson (LearnFolderKind from, LearnFolderKind to)
{
  if (to == LEARN_FOLDER_JUNK && from != LEARN_FOLDER_JUNK)
    return 1;
  if (from == LEARN_FOLDER_JUNK && to == LEARN_FOLDER_OTHER)
    return 0;
  return -1;
}

/* The base of a Maildir name: what comes before the ":2," info. */
static gsize
base_len (const char *name)
{
  return strcspn (name, ":");
}

static gboolean
same_base (const char *a, const char *b)
{
  gsize n = base_len (a);

  return n == base_len (b) && strncmp (a, b, n) == 0;
}

/* The message of @at when the client has renamed it since (new/ to cur/,
 * or other flags): the file of the folder with the same base name, or -1.
 * Bounded: a folder is read up to SCAN_NAMES_MAX names. */
static int
open_renamed (const LearnMailbox *mb, const LearnPlace *at)
{
  static const char *const subs[] = { "cur", "new" };

  for (guint i = 0; i < G_N_ELEMENTS (subs); i++)
    {
      LearnPlace dir = { at->folder, subs[i], "" };
      g_autofree char *path = place_path (mb, &dir);
      g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
      const char *name;

      for (guint n = 0; d && (name = g_dir_read_name (d)) && n < SCAN_NAMES_MAX; n++)
        if (same_base (name, at->name))
          {
            g_autofree char *file = g_build_filename (path, name, NULL);
            return open (file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
          }
    }
  errno = ENOENT;
  return -1;
}

/* Queues the message now at @at, opened at once: it is learned even if
 * the client renames it again (new/ to cur/) before its turn comes. */
static void
teach (LearnMailbox *mb, LmtpdConfig *config, const char *from, const LearnPlace *at, LearnQueue *q)
{
  int lesson = move_lesson (learn_folder_kind (config, from), learn_folder_kind (config, at->folder));
  g_autofree char *path = NULL;
  LearnJob *job;
  int fd;

  if (lesson < 0)
    return;
  path = place_path (mb, at);
  fd = open (path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT)
    fd = open_renamed (mb, at);
  if (fd < 0)
    {
      g_autofree char *folder = util_sanitize (learn_folder_display (at->folder), 200);
      g_warning ("learn: user=%s folder=%s cannot open the moved message: %s", mb->user, folder,
                 g_strerror (errno));
      return;
    }
  job = g_new0 (LearnJob, 1);
  job->user = g_strdup (mb->user);
  job->folder = g_strdup (learn_folder_display (at->folder));
  job->from = g_strdup (learn_folder_display (from));
  job->spam = lesson == 1;
  job->fd = fd;
  learn_queue_push (q, job);
}

/* Keeps the candidates' names right when a client renames new/ to cur/. */
static void
candidates_renamed (LearnMailbox *mb, const LearnPlace *from, const LearnPlace *to)
{
  for (GList *l = mb->candidates.head; l; l = l->next)
    {
      Candidate *c = l->data;
      if (strcmp (c->at.folder, from->folder) == 0 && strcmp (c->at.sub, from->sub) == 0
          && strcmp (c->at.name, from->name) == 0)
        {
          learn_place_clear (&c->at);
          c->at = learn_place_dup (to);
        }
    }
}

void
learn_mailbox_renamed (LearnMailbox *mb, LmtpdConfig *config, const LearnPlace *from, const LearnPlace *to,
                       LearnQueue *q)
{
  gboolean same_folder = strcmp (from->folder, to->folder) == 0;
  struct stat st;

  if (learn_folder_kind (config, from->folder) == LEARN_FOLDER_JUNK)
    junk_forget (mb, from);
  if (learn_folder_kind (config, to->folder) == LEARN_FOLDER_JUNK && place_stat (mb, to, &st))
    junk_remember (mb, to, st.st_ino);
  candidates_renamed (mb, from, to);
  if (!same_folder) /* new/ to cur/ of one folder is the client reading it */
    teach (mb, config, from->folder, to, q);
}

/* Whether a file renamed in from outside the folders may be half of a
 * move: into Junk, any such file (the unlink of its source decides; it may
 * be done already, so the link count alone cannot tell); out of it, one
 * whose inode a Junk message has. */
static gboolean
may_be_moved (LearnMailbox *mb, LmtpdConfig *config, const LearnPlace *at, gboolean found, const struct stat *st)
{
  if (learn_folder_kind (config, at->folder) == LEARN_FOLDER_JUNK)
    return TRUE;
  return found && junk_has_inode (mb, st->st_ino);
}

void
learn_mailbox_arrived (LearnMailbox *mb, LmtpdConfig *config, const LearnPlace *at)
{
  struct stat st = { 0 };
  gboolean found = place_stat (mb, at, &st);
  Candidate *c;

  if (found && learn_folder_kind (config, at->folder) == LEARN_FOLDER_JUNK)
    junk_remember (mb, at, st.st_ino);
  if (!may_be_moved (mb, config, at, found, &st))
    return;
  if (g_queue_get_length (&mb->candidates) >= CANDIDATES_MAX)
    candidate_free (g_queue_pop_head (&mb->candidates));
  c = g_new0 (Candidate, 1);
  c->at = learn_place_dup (at);
  c->ino = found ? st.st_ino : 0;
  c->nlink = found ? st.st_nlink : 0;
  c->seen = g_get_monotonic_time ();
  g_queue_push_tail (&mb->candidates, c);
}

void
learn_mailbox_created (LearnMailbox *mb, LmtpdConfig *config, const LearnPlace *at)
{
  struct stat st;

  if (learn_folder_kind (config, at->folder) == LEARN_FOLDER_JUNK && place_stat (mb, at, &st))
    junk_remember (mb, at, st.st_ino);
}

/* Whether @c is the other half of the unlink of @gone (inode @ino, or 0
 * when not known).  Known: the same inode.  Not known (the source was
 * not in Junk, @c is in Junk): the same base name (Dovecot keeps it when
 * it can; lmtpd's deliveries have names of their own), or @c's link count
 * dropping from the two or more it had when it came in. */
static gboolean
candidate_pairs (LearnMailbox *mb, LmtpdConfig *config, const Candidate *c, const LearnPlace *gone, ino_t ino)
{
  struct stat st;

  if (ino)
    return c->ino == ino;
  if (learn_folder_kind (config, c->at.folder) != LEARN_FOLDER_JUNK)
    return FALSE;
  if (same_base (c->at.name, gone->name))
    return TRUE;
  return c->nlink >= 2 && place_stat (mb, &c->at, &st) && st.st_ino == c->ino && st.st_nlink < c->nlink;
}

void
learn_mailbox_gone (LearnMailbox *mb, LmtpdConfig *config, const LearnPlace *at, LearnQueue *q)
{
  ino_t ino = learn_folder_kind (config, at->folder) == LEARN_FOLDER_JUNK ? junk_forget (mb, at) : 0;

  for (GList *l = mb->candidates.head; l; l = l->next)
    {
      Candidate *c = l->data;

      if (strcmp (c->at.folder, at->folder) == 0 || !candidate_pairs (mb, config, c, at, ino))
        continue;
      teach (mb, config, at->folder, &c->at, q);
      g_queue_delete_link (&mb->candidates, l);
      candidate_free (c);
      return;
    }
}

void
learn_mailbox_expire (LearnMailbox *mb, gint64 now)
{
  Candidate *c;

  while ((c = g_queue_peek_head (&mb->candidates)) && now - c->seen > PAIR_WINDOW_US)
    candidate_free (g_queue_pop_head (&mb->candidates));
}
