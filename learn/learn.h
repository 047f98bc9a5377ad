/* learn.h - learning from the user (issue 19): a message the user moves
 * into a Junk folder is taught to the spam filter as spam, one moved out of
 * it (not into Trash) as ham, whatever client moved it.
 *
 * lmtpd starts a Learner after dropping privileges: a watcher thread reads
 * inotify events of every mailbox's folders under [delivery] mail_root and
 * pairs them into moves; a learner thread takes them from a bounded queue
 * and tells spamd (TELL), rspamd's controller or the builtin Bayes file.
 * Neither ever blocks a delivery.
 *
 * The builtin Bayes file (learn-bayes.c) is written here and read by the
 * builtin scorer of ocp-services (services/svc-spam.c, bayes_db).
 */
#pragma once

#include <gio/gio.h>

#include "lmtpd-conf.h"

G_BEGIN_DECLS

typedef struct _Learner Learner;

/* Starts watching and learning as [learn] of @config says.  Returns NULL
 * with @error set when the watch cannot start (no inotify, no mail root);
 * with [learn] enabled = false, NULL and no error. */
Learner *learner_start (LmtpdConfig *config, GError **error);
/* Stops both threads (what is still queued is dropped) and frees. */
void learner_stop (Learner *learner);

/* ---- the builtin Bayes file (learn-bayes.c) ------------------------------ */

typedef struct _LearnBayes LearnBayes;

/* Opens (creating if @writable) the SQLite file at @path. */
LearnBayes *learn_bayes_open (const char *path, gboolean writable, GError **error);
void learn_bayes_close (LearnBayes *db);
/* Adds the tokens of @msg (@len bytes) to @user's counts as spam or ham. */
gboolean learn_bayes_learn (LearnBayes *db, const char *user, gboolean spam, const char *msg, gsize len,
                            GError **error);
/* Robinson's combined probability that @msg is spam for @user, in [0, 1];
 * FALSE (and no error) when @user has learned nothing yet.  *out_tokens:
 * how many tokens took part. */
gboolean learn_bayes_classify (LearnBayes *db, const char *user, const char *msg, gsize len, double *out_prob,
                               guint *out_tokens, GError **error);
/* How many tokens @user has, and the messages learned (-1 on error). */
gint64 learn_bayes_token_count (LearnBayes *db, const char *user, gint64 *out_spam, gint64 *out_ham);

G_END_DECLS
