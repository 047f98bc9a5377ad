/* store.c - one copy of a message into a recipient's mailbox: the folder
 * (created when allowed), containment in the mail root, quota, the
 * Maildir or mbox writer, single instance (identical copies of one
 * transaction become hard links), and the duplicate journal told the
 * moment a copy becomes visible.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "pipeline.h"

static void
shared_copy_free (gpointer p)
{
  DeliverSharedCopy *c = p;

  g_free (c->header);
  g_free (c->flags);
  g_free (c->path);
  g_free (c);
}

/* A copy already written with the same bytes as @st would store, or NULL.
 * Called with shared->lock held. */
static const DeliverSharedCopy *
shared_copy_find (const DeliverShared *shared, const char *prefix, const char *flags,
                  const DeliverContent *content)
{
  for (guint i = 0; shared->copies && i < shared->copies->len; i++)
    {
      const DeliverSharedCopy *c = shared->copies->pdata[i];
      if (g_strcmp0 (c->header, prefix) == 0 && g_strcmp0 (c->flags, flags) == 0
          && deliver_content_same (&c->content, content))
        return c;
    }
  return NULL;
}

void
store_quota_status (const LmtpdConfig *config, DeliverStatus *status, const DeliverRecipient *rcpt)
{
  if (config->quota_full_tempfail)
    deliver_status_set (status, 452, "4.2.2", "<%s> Mailbox is full", rcpt->original);
  else
    deliver_status_set (status, 552, "5.2.2", "<%s> Mailbox is full", rcpt->original);
}

/* The Maildir a folder delivery goes to; INBOX when the folder is missing
 * and may not be created. */
static char *
maildir_folder (const LmtpdConfig *config, const DeliverRecipient *rcpt, const char *folder,
                gboolean if_exists, gboolean create, GError **error)
{
  g_autofree char *dir = NULL, *cur = NULL, *marker = NULL;
  int fd;

  if (folder == NULL)
    return g_strdup (rcpt->mailbox);
  dir = deliver_folder_maildir_path (rcpt->mailbox, folder);
  cur = g_build_filename (dir, "cur", NULL);
  if (g_file_test (cur, G_FILE_TEST_IS_DIR))
    return g_steal_pointer (&dir);
  if (if_exists || !(config->create_folders || create))
    return g_strdup (rcpt->mailbox);
  if (!deliver_maildir_create (rcpt->mailbox, config->fsync, error)
      || !deliver_maildir_create (dir, config->fsync, error))
    return NULL;
  marker = g_build_filename (dir, "maildirfolder", NULL);
  fd = deliver_mailfile_open (marker, O_WRONLY | O_CREAT, NULL); /* a planted FIFO must not block */
  if (fd >= 0)
    close (fd);
  if (!deliver_folder_subscribe (rcpt->mailbox, folder, error))
    return NULL;
  return g_steal_pointer (&dir);
}

static char *
mbox_folder (const LmtpdConfig *config, const DeliverRecipient *rcpt, const char *folder, gboolean if_exists,
             gboolean create)
{
  g_autofree char *file = NULL;

  if (folder == NULL)
    return g_strdup (rcpt->inbox);
  file = deliver_folder_mbox_path (rcpt->mailbox, folder);
  if (!g_file_test (file, G_FILE_TEST_EXISTS) && (if_exists || !(config->create_folders || create)))
    return g_strdup (rcpt->inbox);
  return g_steal_pointer (&file);
}


gboolean
store_past_deadline (const Commit *c)
{
  /* the shared journal failing (on_error = tempfail) stops it as well */
  return c && ((c->deadline && g_get_monotonic_time () > c->deadline) || c->state_failed || c->state_busy);
}

void
store_deadline_status (DeliverStatus *status, const DeliverRecipient *rcpt)
{
  deliver_status_set (status, 451, "4.4.7", "<%s> Delivery took too long, try again later", rcpt->original);
}

/* FALSE (before a file appears) when the delivery is past its deadline:
 * then it must not appear at all. */
gboolean
store_commit_record (gpointer data, const char *path, gboolean visible)
{
  Commit *c = data;

  if (!visible && store_past_deadline (c))
    return FALSE;
  if (c == NULL || (c->dedupe == NULL && c->state == NULL) || c->digest == NULL)
    return TRUE;
  if (!visible)
    {
      /* the intent, naming the file, just before it appears */
      if (!c->recorded && path)
        {
          if (!journal_intend (c, path))
            return FALSE;
          c->recorded = c->pending = TRUE;
        }
      return TRUE;
    }
  if (!c->recorded || c->pending)
    {
      journal_record (c);
      c->recorded = TRUE;
      c->pending = FALSE;
    }
  return TRUE;
}

/* Single instance: the first copy of a transaction is published (and the
 * lock its writer holds let go) the moment it is visible, before the
 * directory fsync, so the other recipients link to it in parallel. */
typedef struct {
  Commit *commit;
  DeliverShared *shared;
  const Store *st;
  gboolean published;
  char *path;
} Publish;

static gboolean
publish (gpointer data, const char *path, gboolean visible)
{
  Publish *p = data;
  DeliverShared *shared = p->shared;
  DeliverSharedCopy *copy;

  if (!store_commit_record (p->commit, path, visible))
    return FALSE;
  if (!visible)
    return TRUE;
  copy = g_new0 (DeliverSharedCopy, 1);
  copy->header = g_strdup (p->st->prefix);
  copy->flags = g_strdup (p->st->flags);
  copy->path = g_strdup (path);
  copy->content = p->st->content;
  if (shared->copies == NULL)
    shared->copies = g_ptr_array_new_with_free_func (shared_copy_free);
  g_ptr_array_add (shared->copies, copy);
  p->path = g_strdup (path);
  p->published = TRUE;
  g_mutex_unlock (&shared->lock);
  return TRUE;
}

/* Single instance: TRUE if this store writes the copy (shared->lock is
 * then held until it is visible: the others wait, then link); FALSE with
 * *@link_from the identical copy to link to. */
static gboolean
single_instance_writer (DeliverShared *shared, const Store *st, char **link_from)
{
  const DeliverSharedCopy *same;

  g_mutex_lock (&shared->lock);
  same = shared_copy_find (shared, st->prefix, st->flags, &st->content);
  if (same == NULL)
    return TRUE;
  *link_from = g_strdup (same->path);
  g_mutex_unlock (&shared->lock);
  return FALSE;
}

/* After a writer's store: lets the others go on if it failed before the
 * copy was visible (the next one writes), or takes back a copy that was
 * visible and then removed (directory fsync failed): nobody may link to it. */
static void
single_instance_done (DeliverShared *shared, const Publish *pub, gboolean ok)
{
  if (!pub->published)
    {
      g_mutex_unlock (&shared->lock);
      return;
    }
  if (ok)
    return;
  g_mutex_lock (&shared->lock);
  for (guint i = 0; shared->copies && i < shared->copies->len; i++)
    if (g_strcmp0 (((DeliverSharedCopy *) shared->copies->pdata[i])->path, pub->path) == 0)
      g_ptr_array_remove_index (shared->copies, i--);
  g_mutex_unlock (&shared->lock);
}

static gboolean
store_maildir (const Delivery *dv, const Store *st, char **out_path, GError **error)
{
  const LmtpdConfig *config = dv->config;
  const DeliverRecipient *rcpt = dv->rcpt;
  DeliverShared *shared = dv->shared;
  g_autofree char *target = st->folder ? deliver_folder_maildir_path (rcpt->mailbox, st->folder)
                                        : g_strdup (rcpt->mailbox);
  g_autofree char *dir = NULL, *path = NULL, *link_from = NULL;
  guint64 size = strlen (st->prefix) + deliver_content_size (&st->content);
  gboolean single = config->single_instance && shared && shared->n_recipients > 1;
  gboolean writer, ok;
  Publish pub = { st->commit, shared, st, FALSE, NULL };
  DeliverMaildirStore ms = { NULL, config->hostname, st->prefix, &st->content, st->flags, NULL,
                             config->fsync, store_commit_record, st->commit, dv->ctx,
                             config->sync_mode == LMTPD_SYNC_ONE_COMMIT };

  /* nothing is created, let alone written, through a symlink that leads
   * out of the mail root */
  if (!deliver_path_contained (dv->ctx, config, target, error))
    return FALSE;
  dir = maildir_folder (config, rcpt, st->folder, st->folder_if_exists, st->create, error);
  if (dir == NULL || !deliver_quota_check (rcpt->mailbox, rcpt->quota_bytes, rcpt->quota_messages, size, error))
    return FALSE;
  writer = single && single_instance_writer (shared, st, &link_from);
  ms.maildir = dir;
  ms.link_from = link_from;
  if (writer)
    {
      ms.committed = publish;
      ms.data = &pub;
    }
  ok = deliver_maildir_store (&ms, &path, &size, error);
  if (writer)
    single_instance_done (shared, &pub, ok);
  g_free (pub.path);
  if (!ok)
    return FALSE;
  deliver_quota_add (rcpt->mailbox, rcpt->quota_bytes, rcpt->quota_messages, size);
  decision_trace_folder (dv->trace, strcmp (dir, rcpt->mailbox) == 0 ? "INBOX" : st->folder);
  *out_path = g_steal_pointer (&path);
  return TRUE;
}

static gboolean
deadline_error (GError **error, const char *path)
{
  g_set_error (error, DELIVER_ERROR, ETIMEDOUT, "%s: delivery deadline passed", path);
  return FALSE;
}

/* The mbox lock wait ends at the delivery's deadline, if that is sooner. */
static guint
lock_timeout (const LmtpdConfig *config, const Commit *commit)
{
  gint64 left;

  if (commit == NULL || commit->deadline == 0)
    return config->mbox_lock_timeout;
  left = (commit->deadline - g_get_monotonic_time () + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC;
  return (guint) CLAMP (left, 1, (gint64) config->mbox_lock_timeout);
}

static gboolean
store_mbox (const Delivery *dv, const Store *st, char **out_path, GError **error)
{
  const LmtpdConfig *config = dv->config;
  const DeliverRecipient *rcpt = dv->rcpt;
  g_autofree char *inflight = deliver_inflight_dir (config);
  guint64 size = strlen (st->prefix) + deliver_content_size (&st->content);
  DeliverMboxStore ms = { NULL, dv->msg->sender, dv->msg->received_us, st->prefix, &st->content,
                          config->mbox_mboxo, 0, config->fsync, inflight };

  *out_path = mbox_folder (config, rcpt, st->folder, st->folder_if_exists, st->create);
  if (!deliver_path_contained (dv->ctx, config, *out_path, error)
      || !deliver_quota_check_mbox (*out_path, rcpt->quota_bytes, size, error))
    return FALSE;
  if (store_past_deadline (st->commit))
    return deadline_error (error, *out_path);
  ms.path = *out_path;
  ms.lock_timeout = lock_timeout (config, st->commit);
  if (deliver_mbox_store (&ms, error))
    {
      decision_trace_folder (dv->trace, strcmp (*out_path, rcpt->inbox) == 0 ? "INBOX" : st->folder);
      return TRUE;
    }
  /* the lock wait was cut short by the deadline: say so */
  if (g_error_matches (*error, DELIVER_ERROR, EAGAIN) && store_past_deadline (st->commit))
    {
      g_clear_error (error);
      return deadline_error (error, *out_path);
    }
  return FALSE;
}

gboolean
store_copy (const Delivery *dv, const Store *st, char **out_path, GError **error)
{
  if (dv->rcpt->format == DELIVER_MAILDIR)
    return store_maildir (dv, st, out_path, error);
  return store_mbox (dv, st, out_path, error);
}

/* The status of a store that failed with @error. */
void
store_failed (const Delivery *dv, const GError *error)
{
  if (g_error_matches (error, DELIVER_ERROR, EDQUOT))
    store_quota_status (dv->config, dv->status, dv->rcpt);
  else
    deliver_status_from_error (dv->status, error);
}

