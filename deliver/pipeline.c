/* pipeline.c - one message to one recipient: the steps every delivery
 * takes, whether it came over LMTP or from the LDA command.
 *
 *   duplicate check ▸ trace headers ▸ folder ▸ quota ▸ store ▸ journal
 *
 * Callouts, their verdicts and Sieve will slot in before the store.  The
 * store is Maildir (hard-linking an identical copy already delivered in
 * this transaction) or mbox.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "deliver.h"

char *
deliver_inflight_dir (const LmtpdConfig *config)
{
  return g_build_filename (config->spool_dir, "inflight", NULL);
}

void
deliver_shared_clear (DeliverShared *shared)
{
  g_clear_pointer (&shared->header, g_free);
  g_clear_pointer (&shared->flags, g_free);
  g_clear_pointer (&shared->path, g_free);
}

static void
quota_status (const LmtpdConfig *config, DeliverStatus *status, const DeliverRecipient *rcpt)
{
  if (config->quota_full_tempfail)
    deliver_status_set (status, 452, "4.2.2", "<%s> Mailbox is full", rcpt->original);
  else
    deliver_status_set (status, 552, "5.2.2", "<%s> Mailbox is full", rcpt->original);
}

gboolean
deliver_precheck (const LmtpdConfig *config, const DeliverRecipient *rcpt, guint64 size_hint,
                  DeliverStatus *status)
{
  g_autoptr (GError) error = NULL;

  if (rcpt->format != DELIVER_MAILDIR || (rcpt->quota_bytes == 0 && rcpt->quota_messages == 0))
    return TRUE;
  if (deliver_quota_check (rcpt->mailbox, rcpt->quota_bytes, rcpt->quota_messages, size_hint, &error))
    return TRUE;
  quota_status (config, status, rcpt);
  return FALSE;
}

/* The Maildir a folder delivery goes to; INBOX when the folder is missing
 * and may not be created. */
static char *
maildir_folder (const LmtpdConfig *config, const DeliverRecipient *rcpt, GError **error)
{
  g_autofree char *dir = NULL, *cur = NULL, *marker = NULL;
  int fd;

  if (rcpt->folder == NULL)
    return g_strdup (rcpt->mailbox);
  dir = deliver_folder_maildir_path (rcpt->mailbox, rcpt->folder);
  cur = g_build_filename (dir, "cur", NULL);
  if (g_file_test (cur, G_FILE_TEST_IS_DIR))
    return g_steal_pointer (&dir);
  if (rcpt->folder_if_exists || !config->create_folders)
    return g_strdup (rcpt->mailbox);
  if (!deliver_maildir_create (rcpt->mailbox, config->fsync, error)
      || !deliver_maildir_create (dir, config->fsync, error))
    return NULL;
  marker = g_build_filename (dir, "maildirfolder", NULL);
  fd = open (marker, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0)
    close (fd);
  if (!deliver_folder_subscribe (rcpt->mailbox, rcpt->folder, error))
    return NULL;
  return g_steal_pointer (&dir);
}

static char *
mbox_folder (const LmtpdConfig *config, const DeliverRecipient *rcpt)
{
  g_autofree char *file = NULL;

  if (rcpt->folder == NULL)
    return g_strdup (rcpt->inbox);
  file = deliver_folder_mbox_path (rcpt->mailbox, rcpt->folder);
  if (!g_file_test (file, G_FILE_TEST_EXISTS) && (rcpt->folder_if_exists || !config->create_folders))
    return g_strdup (rcpt->inbox);
  return g_steal_pointer (&file);
}

static gboolean
store_maildir (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
               DeliverShared *shared, const char *header, char **out_path, GError **error)
{
  g_autofree char *dir = maildir_folder (config, rcpt, error);
  g_autofree char *path = NULL;
  const char *link_from = NULL;
  guint64 size = strlen (header) + deliver_spool_size (msg->spool);

  if (dir == NULL)
    return FALSE;
  if (!deliver_quota_check (rcpt->mailbox, rcpt->quota_bytes, rcpt->quota_messages, size, error))
    return FALSE;
  if (config->single_instance && shared && shared->path && g_strcmp0 (shared->header, header) == 0
      && shared->flags == NULL)
    link_from = shared->path;
  if (!deliver_maildir_store (dir, config->hostname, header, msg->spool, NULL, link_from,
                              config->fsync, &path, &size, error))
    return FALSE;
  deliver_quota_add (rcpt->mailbox, rcpt->quota_bytes, rcpt->quota_messages, size);
  if (shared && config->single_instance)
    {
      deliver_shared_clear (shared);
      shared->header = g_strdup (header);
      shared->path = g_strdup (path);
    }
  *out_path = g_steal_pointer (&path);
  return TRUE;
}

void
deliver_pipeline_run (const LmtpdConfig *config, DeliverDedupe *dedupe, const DeliverMessage *msg,
                      const DeliverRecipient *rcpt, DeliverShared *shared, DeliverStatus *status,
                      char **out_path)
{
  const char *digest = deliver_spool_digest (msg->spool);
  gboolean per_recipient = !config->single_instance || shared == NULL || shared->n_recipients <= 1;
  g_autofree char *header = NULL, *path = NULL;
  g_autoptr (GError) error = NULL;
  gboolean ok;

  if (dedupe && digest && deliver_dedupe_seen (dedupe, digest, rcpt->address))
    {
      g_message ("%s: <%s> has this message already: duplicate not delivered", msg->id, rcpt->address);
      deliver_status_set (status, 250, "2.0.0", "<%s> Saved (duplicate)", rcpt->original);
      return;
    }
  header = deliver_trace_headers (config, msg, rcpt, per_recipient);
  if (rcpt->format == DELIVER_MAILDIR)
    ok = store_maildir (config, msg, rcpt, shared, header, &path, &error);
  else
    {
      g_autofree char *inflight = deliver_inflight_dir (config);
      path = mbox_folder (config, rcpt);
      ok = deliver_mbox_store (path, msg->sender, msg->received_us, header, msg->spool,
                               config->mbox_mboxo, config->mbox_lock_timeout, config->fsync,
                               inflight, &error);
    }
  if (!ok)
    {
      g_autofree char *why = deliver_sanitize (error->message, 512);
      g_warning ("%s: delivery to <%s> failed: %s", msg->id, rcpt->address, why);
      if (g_error_matches (error, DELIVER_ERROR, EDQUOT))
        quota_status (config, status, rcpt);
      else
        deliver_status_from_error (status, error);
      return;
    }
  if (dedupe && digest)
    deliver_dedupe_record (dedupe, digest, rcpt->address);
  deliver_status_set (status, 250, "2.0.0", "<%s> Saved", rcpt->original);
  if (out_path)
    *out_path = g_steal_pointer (&path);
}
