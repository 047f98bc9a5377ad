/* learn-private.h - what the files of learn/ share:
 *
 *   learn.c        learner_start/stop: the two threads and what they share
 *   learn-watch.c  the watcher thread: inotify watches over the mail root
 *   learn-moves.c  pairs a mailbox's events into moves (renames and
 *                  Dovecot's link+unlink), keeps the inodes of its Junk
 *   learn-owner.c  a Maildir path back to its user; what a folder is
 *   learn-queue.c  the bounded queue, the learner thread, the rate limit
 *   learn-tell.c   spamd's TELL and rspamd's controller
 *   learn-bayes.c  the builtin scorer's token counts (public: learn.h)
 */
#pragma once

#include <sys/types.h>

#include "learn.h"

G_BEGIN_DECLS

/* ---- mailboxes and folders (learn-owner.c) ------------------------------- */

typedef struct _LearnOwner LearnOwner;

/* From [delivery] mailbox (and mail_root); NULL with @error when the
 * template cannot be read backwards (mbox, or %-codes mixed with text). */
LearnOwner *learn_owner_new (const LmtpdConfig *config, GError **error);
void learn_owner_free (LearnOwner *o);
/* How many directories below the mail root a Maildir is. */
guint learn_owner_depth (const LearnOwner *o);
/* Whether @name can be the component at @level (0-based) of a Maildir path. */
gboolean learn_owner_component_ok (const LearnOwner *o, guint level, const char *name);
/* The user owning the Maildir at @components (depth of them), or NULL. */
char *learn_owner_user (const LearnOwner *o, const char *const *components);

typedef enum {
  LEARN_FOLDER_OTHER,
  LEARN_FOLDER_JUNK,
  LEARN_FOLDER_TRASH,
} LearnFolderKind;

/* What a Maildir++ folder ("" is INBOX, "Junk.Sub") is to learning. */
LearnFolderKind learn_folder_kind (const LmtpdConfig *config, const char *folder);
/* "INBOX" for "", else @folder. */
const char *learn_folder_display (const char *folder);

/* ---- what is taught (learn-queue.c) -------------------------------------- */

typedef struct {
  char *user;
  char *folder;     /* where it went, for the log */
  char *from;       /* where it came from */
  gboolean spam;
  int fd;           /* the message, opened when the move was seen */
} LearnJob;

void learn_job_free (LearnJob *job);

typedef struct _LearnQueue LearnQueue;

/* Starts the learner thread. */
LearnQueue *learn_queue_new (LmtpdConfig *config, GError **error);
/* Takes @job; drops it (logged) when the queue is full or the user is
 * over [learn] rate.  Never blocks. */
void learn_queue_push (LearnQueue *q, LearnJob *job);
void learn_queue_free (LearnQueue *q);

/* ---- the watcher (learn-watch.c) ----------------------------------------- */

typedef struct _LearnWatch LearnWatch;

LearnWatch *learn_watch_start (LmtpdConfig *config, LearnOwner *owner, LearnQueue *queue, GError **error);
void learn_watch_stop (LearnWatch *w);

/* ---- one mailbox's moves (learn-moves.c) --------------------------------- */

typedef struct _LearnMailbox LearnMailbox;

/* A mailbox at @path (a Maildir) owned by @user. */
LearnMailbox *learn_mailbox_new (const char *path, const char *user);
void learn_mailbox_free (LearnMailbox *mb);
const char *learn_mailbox_path (const LearnMailbox *mb);
/* A folder's cur/ or new/ being watched: remembers the inodes if it is Junk. */
void learn_mailbox_scan (LearnMailbox *mb, LmtpdConfig *config, const char *folder, const char *sub);

/* One side of an event, in a folder's cur/ or new/ */
typedef struct {
  const char *folder;   /* Maildir++ name, "" for INBOX */
  const char *sub;      /* "cur" or "new" */
  const char *name;
} LearnPlace;

/* A place whose strings are copies of @p's, and the freeing of them. */
LearnPlace learn_place_dup (const LearnPlace *p);
void learn_place_clear (LearnPlace *p);

/* A rename inside the mailbox from @from to @to. */
void learn_mailbox_renamed (LearnMailbox *mb, LmtpdConfig *config, const LearnPlace *from, const LearnPlace *to,
                            LearnQueue *q);
/* A file renamed in from elsewhere (tmp/: a delivery, or Dovecot's MOVE). */
void learn_mailbox_arrived (LearnMailbox *mb, LmtpdConfig *config, const LearnPlace *at);
/* A file created in place (lmtpd's single-instance link): never a move. */
void learn_mailbox_created (LearnMailbox *mb, LmtpdConfig *config, const LearnPlace *at);
/* A file gone (unlinked or renamed out of the watched folders). */
void learn_mailbox_gone (LearnMailbox *mb, LmtpdConfig *config, const LearnPlace *at, LearnQueue *q);
/* Forgets link candidates older than the pairing window. */
void learn_mailbox_expire (LearnMailbox *mb, gint64 now);

G_END_DECLS
