/* pipeline.c - one message to one recipient: the steps every delivery
 * takes, whether it came over LMTP or from the LDA command.
 *
 *   duplicate check ▸ callouts ▸ verdict ▸ trace headers ▸ folder ▸ quota
 *   ▸ store ▸ journal
 *
 * The stored message is a prefix (trace headers, and the header part when
 * a service changed it) followed by ranges of files: the whole spool, its
 * body part, or an adapted body.  Maildir stores hard-link an identical
 * copy already written in the same transaction (single instance).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "callout.h"
#include "deliver.h"
#include "filter.h"

char *
deliver_inflight_dir (const LmtpdConfig *config)
{
  return g_build_filename (config->spool_dir, "inflight", NULL);
}

void
deliver_shared_init (DeliverShared *shared, GPtrArray *rcpts)
{
  memset (shared, 0, sizeof *shared);
  g_mutex_init (&shared->lock);
  g_cond_init (&shared->cond);
  shared->rcpts = rcpts ? g_ptr_array_ref (rcpts) : NULL;
  shared->n_recipients = rcpts ? rcpts->len : 1;
  shared->callouts = callout_shared_table_new ();
}

void
deliver_shared_clear (DeliverShared *shared)
{
  if (shared->callouts)
    {
      g_hash_table_unref (shared->callouts);
      shared->callouts = NULL;
      g_mutex_clear (&shared->lock);
      g_cond_clear (&shared->cond);
    }
  g_clear_pointer (&shared->rcpts, g_ptr_array_unref);
  g_clear_pointer (&shared->copies, g_ptr_array_unref);
}

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

  if (rcpt->quota_bytes == 0 && rcpt->quota_messages == 0)
    return TRUE;
  if (rcpt->format == DELIVER_MAILDIR
      ? deliver_quota_check (rcpt->mailbox, rcpt->quota_bytes, rcpt->quota_messages, size_hint, &error)
      : deliver_quota_check_mbox (rcpt->inbox, rcpt->quota_bytes, size_hint, &error))
    return TRUE;
  quota_status (config, status, rcpt);
  return FALSE;
}

gboolean
deliver_rcpt_check (const LmtpdConfig *config, const DeliverMessage *msg, DeliverRecipient *rcpt,
                    guint64 size_hint, DeliverStatus *status)
{
  return deliver_precheck (config, rcpt, size_hint, status) && callout_rcpt_stage (config, msg, rcpt, status);
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

/* The duplicate journal learns of a delivery the moment its first copy
 * becomes visible. */
typedef struct {
  DeliverDedupe *dedupe;
  const char *digest;
  const char *sender;
  const char *address;
  gboolean recorded;
  gboolean pending;         /* only the intent is written */
  gint64 deadline;          /* monotonic; past it nothing more is published */
} Commit;

static gboolean
past_deadline (const Commit *c)
{
  return c && c->deadline && g_get_monotonic_time () > c->deadline;
}

static void
deadline_status (DeliverStatus *status, const DeliverRecipient *rcpt)
{
  deliver_status_set (status, 451, "4.4.7", "<%s> Delivery took too long, try again later", rcpt->original);
}

/* FALSE (before a file appears) when the delivery is past its deadline:
 * then it must not appear at all. */
static gboolean
commit_record (gpointer data, const char *path, gboolean visible)
{
  Commit *c = data;

  if (!visible && past_deadline (c))
    return FALSE;
  if (c == NULL || c->dedupe == NULL || c->digest == NULL)
    return TRUE;
  if (!visible)
    {
      /* the intent, naming the file, just before it appears */
      if (!c->recorded && path)
        {
          deliver_dedupe_intend (c->dedupe, c->digest, c->sender, c->address, path);
          c->recorded = c->pending = TRUE;
        }
      return TRUE;
    }
  if (!c->recorded || c->pending)
    {
      deliver_dedupe_record (c->dedupe, c->digest, c->sender, c->address);
      c->recorded = TRUE;
      c->pending = FALSE;
    }
  return TRUE;
}

typedef struct {
  const char *folder;
  gboolean folder_if_exists;
  gboolean create;          /* create the folder even without create_folders */
  const char *flags;
  const char *prefix;
  DeliverContent content;
  Commit *commit;
} Store;

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

  if (!commit_record (p->commit, path, visible))
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

static gboolean
store_maildir (const LmtpdConfig *config, const DeliverRecipient *rcpt, DeliverShared *shared,
               const Store *st, char **out_path, GError **error)
{
  g_autofree char *target = st->folder ? deliver_folder_maildir_path (rcpt->mailbox, st->folder)
                                        : g_strdup (rcpt->mailbox);
  g_autofree char *dir = NULL;
  g_autofree char *path = NULL;
  g_autofree char *link_from = NULL;
  guint64 size = strlen (st->prefix) + deliver_content_size (&st->content);
  gboolean single = config->single_instance && shared && shared->n_recipients > 1;
  gboolean writer = FALSE, ok;
  Publish pub;

  /* nothing is created, let alone written, through a symlink that leads
   * out of the mail root */
  if (!deliver_path_contained (config, target, error))
    return FALSE;
  dir = maildir_folder (config, rcpt, st->folder, st->folder_if_exists, st->create, error);
  if (dir == NULL)
    return FALSE;
  if (!deliver_quota_check (rcpt->mailbox, rcpt->quota_bytes, rcpt->quota_messages, size, error))
    return FALSE;
  if (single)
    {
      const DeliverSharedCopy *same;
      g_mutex_lock (&shared->lock);
      same = shared_copy_find (shared, st->prefix, st->flags, &st->content);
      if (same == NULL)
        writer = TRUE; /* the lock is kept until this copy is visible: the others wait, then link */
      else
        {
          link_from = g_strdup (same->path);
          g_mutex_unlock (&shared->lock);
        }
    }
  pub = (Publish) { st->commit, shared, st, FALSE, NULL };
  ok = deliver_maildir_store_full (dir, config->hostname, st->prefix, &st->content, st->flags, link_from,
                                   config->fsync, writer ? publish : commit_record, writer ? (gpointer) &pub
                                   : (gpointer) st->commit, &path, &size, error);
  if (writer && !pub.published)
    g_mutex_unlock (&shared->lock); /* failed before it was visible: the next one writes */
  else if (writer && !ok)
    {
      /* visible, then taken back (directory fsync failed): nobody may link to it */
      g_mutex_lock (&shared->lock);
      for (guint i = 0; shared->copies && i < shared->copies->len; i++)
        if (g_strcmp0 (((DeliverSharedCopy *) shared->copies->pdata[i])->path, pub.path) == 0)
          g_ptr_array_remove_index (shared->copies, i--);
      g_mutex_unlock (&shared->lock);
    }
  g_free (pub.path);
  if (!ok)
    return FALSE;
  deliver_quota_add (rcpt->mailbox, rcpt->quota_bytes, rcpt->quota_messages, size);
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
store (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
       DeliverShared *shared, const Store *st, char **out_path, GError **error)
{
  g_autofree char *inflight = NULL;
  guint64 size = strlen (st->prefix) + deliver_content_size (&st->content);

  if (rcpt->format == DELIVER_MAILDIR)
    return store_maildir (config, rcpt, shared, st, out_path, error);
  inflight = deliver_inflight_dir (config);
  *out_path = mbox_folder (config, rcpt, st->folder, st->folder_if_exists, st->create);
  if (!deliver_path_contained (config, *out_path, error)
      || !deliver_quota_check_mbox (*out_path, rcpt->quota_bytes, size, error))
    return FALSE;
  if (past_deadline (st->commit))
    return deadline_error (error, *out_path);
  if (deliver_mbox_store (*out_path, msg->sender, msg->received_us, st->prefix, &st->content,
                          config->mbox_mboxo, lock_timeout (config, st->commit), config->fsync, inflight, error))
    return TRUE;
  /* the lock wait was cut short by the deadline: say so */
  if (g_error_matches (*error, DELIVER_ERROR, EAGAIN) && past_deadline (st->commit))
    {
      g_clear_error (error);
      return deadline_error (error, *out_path);
    }
  return FALSE;
}

/* Flags of a Sieve keep/fileinto on top of the services' (Maildir letters). */
static char *
merge_flags (const char *callout_flags, const char *sieve_flags)
{
  g_autofree char *letters = sieve_flags_to_maildir (sieve_flags);
  g_autofree char *all = g_strconcat (callout_flags ? callout_flags : "", letters, NULL);
  return all[0] ? deliver_flags_normalize (all) : NULL;
}

/* The stores of a Sieve result, all or none (paths into @stored). */
static gboolean
store_all (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
           DeliverShared *shared, GArray *stores, GPtrArray *stored, DeliverStatus *status, GError **error)
{
  guint before = stored->len;

  for (guint i = 0; i < stores->len; i++)
    {
      char *path = NULL;
      const Store *one = &g_array_index (stores, Store, i);
      gboolean dup = FALSE;
      /* the same folder twice is one copy (RFC 5228 2.10.3) */
      for (guint k = 0; k < i; k++)
        dup |= g_strcmp0 (g_array_index (stores, Store, k).folder, one->folder) == 0;
      if (dup)
        continue;
      if (!store (config, msg, rcpt, shared, one, &path, error))
        {
          if (rcpt->format != DELIVER_MAILDIR && stored->len > before)
            {
              /* an mbox append cannot be taken back once another process
               * may have appended after it: keep what was stored rather
               * than have the MTA retry and store it twice */
              g_autofree char *why = deliver_sanitize ((*error)->message, 300);
              g_warning ("%s: <%s> sieve: a store failed after another succeeded: %s", msg->id, rcpt->address, why);
              g_clear_error (error);
              g_free (path);
              return TRUE;
            }
          /* all or nothing: the MTA will try again */
          for (guint k = before; k < stored->len; k++)
            if (rcpt->format == DELIVER_MAILDIR)
              unlink (stored->pdata[k]);
          g_free (path);
          if (g_error_matches (*error, DELIVER_ERROR, EDQUOT))
            quota_status (config, status, rcpt);
          else
            deliver_status_from_error (status, *error);
          return FALSE;
        }
      g_ptr_array_add (stored, path);
    }
  return TRUE;
}

/* Carries out a Sieve result (RFC 5228 2.10): reject refuses, header
 * edits change the stored header, keep/fileinto store (all or none),
 * redirect sends on (a failed one keeps instead), vacation answers
 * after the stores. */
static void
apply_sieve (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
             DeliverShared *shared, Store *st, FilterOutcome *fo, gboolean header_in_prefix,
             DeliverStatus *status, char **out_path, GError **error)
{
  const SieveResult *r = &fo->result;
  g_autofree char *edited = NULL;
  g_autoptr (GPtrArray) stored = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) flags = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) stores = g_array_new (FALSE, TRUE, sizeof (Store));
  const SieveAction *vacation = NULL;
  g_autoptr (GPtrArray) redirects = g_ptr_array_new ();
  guint redirected = 0;
  gboolean keep_instead = FALSE;

  for (guint i = 0; i < r->actions->len; i++)
    {
      const SieveAction *a = r->actions->pdata[i];
      if (a->kind == SIEVE_REJECT || a->kind == SIEVE_EREJECT)
        {
          /* RFC 5429 2.1/2.2: refused for this recipient, in the protocol */
          g_autofree char *why = deliver_sanitize (a->argument && a->argument[0] ? a->argument : "Rejected", 200);
          g_message ("%s: <%s> sieve: %s", msg->id, rcpt->address, sieve_action_name (a->kind));
          deliver_status_set (status, 550, "5.7.1", "<%s> %s", rcpt->original, why);
          return;
        }
    }
  if (r->edits->len)
    {
      g_autofree char *header = NULL;
      if (header_in_prefix)
        header = g_strdup (st->prefix);
      else
        {
          guint64 hlen = deliver_spool_header_len (msg->spool);
          g_autofree char *orig = g_malloc (hlen + 1);
          if (pread (deliver_spool_fd (msg->spool), orig, hlen, 0) != (gssize) hlen)
            {
              deliver_status_set (status, 451, "4.3.0", "<%s> Could not read the message", rcpt->original);
              return;
            }
          orig[hlen] = '\0';
          header = g_strconcat (st->prefix, orig, NULL);
          st->content.seg[0].offset += hlen;
          st->content.seg[0].length -= hlen;
          st->content.seg[0].lines -= deliver_spool_header_lines (msg->spool);
        }
      edited = filter_edit_header (header, r->edits);
      st->prefix = edited;
    }
  for (guint i = 0; i < r->actions->len; i++)
    {
      const SieveAction *a = r->actions->pdata[i];
      Store one = *st;
      switch (a->kind)
        {
        case SIEVE_FILEINTO:
          {
            const char *why;
            if (!deliver_folder_valid (a->argument, &why))
              {
                g_autofree char *shown = deliver_sanitize (a->argument, 300);
                g_warning ("%s: <%s> sieve: fileinto \"%s\": %s; kept in INBOX instead", msg->id, rcpt->address,
                           shown, why);
                one.folder = NULL;
              }
            else
              one.folder = deliver_folder_is_inbox (a->argument) ? NULL : a->argument;
            one.folder_if_exists = FALSE;
            one.create = a->create;
          }
          /* fall through */
        case SIEVE_KEEP:
          one.flags = a->flags ? merge_flags (st->flags, a->flags) : g_strdup (st->flags);
          g_ptr_array_add (flags, (char *) one.flags);
          g_array_append_val (stores, one);
          break;
        case SIEVE_REDIRECT:
          g_ptr_array_add (redirects, (gpointer) a);
          break;
        case SIEVE_VACATION:
          vacation = a;
          break;
        default:
          break;
        }
    }
  /* stores first: a store that fails sends nothing on */
  if (!store_all (config, msg, rcpt, shared, stores, stored, status, error))
    return;
  for (guint i = 0; i < redirects->len; i++)
    {
      const SieveAction *a = redirects->pdata[i];
      if (filter_redirect (config, msg, rcpt, a->argument, st->prefix, &st->content))
        redirected++;
      else if (!a->copy)
        keep_instead = TRUE;
    }
  if (keep_instead && stored->len == 0)
    {
      g_array_set_size (stores, 0);
      g_array_append_val (stores, *st);
      if (!store_all (config, msg, rcpt, shared, stores, stored, status, error))
        return;
    }
  if (vacation)
    filter_vacation (config, msg, rcpt, vacation, fo, st->prefix, &st->content);
  if (stored->len)
    {
      deliver_status_set (status, 250, "2.0.0", "<%s> Saved", rcpt->original);
      *out_path = g_strdup (stored->pdata[0]);
    }
  else if (redirected)
    deliver_status_set (status, 250, "2.0.0", "<%s> Redirected by Sieve filter", rcpt->original);
  else
    {
      g_message ("%s: <%s> discarded by Sieve", msg->id, rcpt->address);
      deliver_status_set (status, 250, "2.0.0", "<%s> Discarded by Sieve filter", rcpt->original);
    }
}

/* An adapted body is normalized to LF through a spool of its own. */
static DeliverSpool *
adapted_body (const LmtpdConfig *config, int fd, GError **error)
{
  g_autoptr (DeliverSpool) s = deliver_spool_new (config->spool_dir, error);
  char buf[64 * 1024];
  guint64 off = 0;
  gssize n;

  if (s == NULL)
    return NULL;
  while ((n = pread (fd, buf, sizeof buf, off)) > 0)
    {
      if (!deliver_spool_write (s, buf, n, error))
        return NULL;
      off += n;
    }
  if (n < 0)
    {
      g_set_error (error, DELIVER_ERROR, errno, "adapted body: %s", g_strerror (errno));
      return NULL;
    }
  if (!deliver_spool_finish (s, error))
    return NULL;
  return g_steal_pointer (&s);
}

/* Everything after the duplicate check; fills @status. */
static void
run (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
     DeliverShared *shared, Commit *commit, DeliverStatus *status, char **out_path, GError **error)
{
  CalloutResult *owned = NULL;
  gint64 t0 = g_get_monotonic_time ();
  const CalloutResult *result = callout_run (config, msg, rcpt, shared, &owned);
  guint64 callout_us = result ? (guint64) (g_get_monotonic_time () - t0) : 0;
  g_autoptr (DeliverRecipient) redirected = NULL;
  g_autoptr (DeliverSpool) body = NULL;
  g_autofree char *trace = NULL, *opes = NULL, *new_header = NULL, *prefix = NULL, *flags = NULL;
  g_autofree char *path = NULL;
  gboolean per_recipient = !config->single_instance || shared == NULL || shared->n_recipients <= 1;
  CalloutDecision d;
  Store st = { 0 };

  if (past_deadline (commit))
    {
      deadline_status (status, rcpt);
      goto out;
    }
  callout_decide (config, result, rcpt, &d);
  switch (d.kind)
    {
    case CALLOUT_REJECT:
    case CALLOUT_TEMPFAIL:
      callout_refusal (config, &d, rcpt, status);
      goto out;
    case CALLOUT_DISCARD:
      g_message ("%s: <%s> discarded by a content filter", msg->id, rcpt->address);
      deliver_status_set (status, 250, "2.0.0", "<%s> Discarded by content filter", rcpt->original);
      goto out;
    case CALLOUT_REDIRECT:
      {
        g_autofree char *local = NULL, *domain = NULL;
        const char *why;
        if (d.redirect == NULL || !deliver_address_parse (d.redirect, TRUE, &local, &domain, &why)
            || domain == NULL
            || (redirected = deliver_resolve (config, local, domain, status)) == NULL)
          {
            deliver_status_clear (status);
            deliver_status_set (status, 451, "4.3.5", "<%s> Content filter redirected to an unknown recipient",
                                rcpt->original);
            goto out;
          }
        g_free (redirected->original);
        redirected->original = g_strdup (rcpt->original);
        rcpt = redirected;
      }
      break;
    case CALLOUT_QUARANTINE:
    case CALLOUT_ACCEPT:
      break;
    }

  st.commit = commit;
  st.folder = rcpt->folder;
  st.folder_if_exists = rcpt->folder_if_exists;
  if (d.folder)
    {
      const char *why;
      if (!deliver_folder_valid (d.folder, &why))
        {
          deliver_status_set (status, 451, "4.3.5", "<%s> Content filter named a bad folder", rcpt->original);
          goto out;
        }
      st.folder = deliver_folder_is_inbox (d.folder) ? NULL : d.folder;
      st.folder_if_exists = FALSE;
    }
  flags = callout_flags (result);
  st.flags = flags;

  trace = deliver_trace_headers (config, msg, rcpt, per_recipient);
  opes = callout_trace (config, result, rcpt->rcpt_trace);
  deliver_content_from_spool (&st.content, msg->spool);
  if (callout_needs_new_header (result, &d) || d.has_body)
    {
      guint64 hlen = deliver_spool_header_len (msg->spool);
      guint64 hlines = deliver_spool_header_lines (msg->spool);
      new_header = callout_new_header (msg, result, &d);
      if (new_header == NULL)
        {
          deliver_status_set (status, 451, "4.3.0", "<%s> Adapted header could not be parsed", rcpt->original);
          goto out;
        }
      if (d.has_body)
        {
          body = adapted_body (config, d.body_fd, error);
          if (body == NULL)
            {
              deliver_status_from_error (status, *error);
              goto out;
            }
          deliver_content_from_spool (&st.content, body);
        }
      else
        {
          st.content.seg[0].offset = hlen;
          st.content.seg[0].length -= hlen;
          st.content.seg[0].lines -= hlines;
        }
    }
  prefix = g_strconcat (trace, opes, new_header ? new_header : "", NULL);
  st.prefix = prefix;

  if (d.kind == CALLOUT_ACCEPT)
    {
      /* Sieve sees the message as it would be stored, after the services */
      FilterOutcome fo;
      filter_run (config, msg, rcpt, result, prefix, &st.content, &fo);
      if (fo.ran)
        {
          if (past_deadline (commit))
            deadline_status (status, rcpt);
          else
            apply_sieve (config, msg, rcpt, shared, &st, &fo, new_header != NULL, status, out_path, error);
          filter_outcome_clear (&fo);
          goto out;
        }
      filter_outcome_clear (&fo);
    }

  if (!store (config, msg, rcpt, shared, &st, &path, error))
    {
      if (g_error_matches (*error, DELIVER_ERROR, EDQUOT))
        quota_status (config, status, rcpt);
      else
        deliver_status_from_error (status, *error);
      goto out;
    }
  deliver_status_set (status, 250, "2.0.0", "<%s> Saved", rcpt->original);
  *out_path = g_steal_pointer (&path);
out:
  status->callout_us = callout_us;
  callout_result_free (owned);
}

void
deliver_pipeline_run (const LmtpdConfig *config, DeliverDedupe *dedupe, const DeliverMessage *msg,
                      const DeliverRecipient *rcpt, DeliverShared *shared, DeliverStatus *status,
                      char **out_path)
{
  const char *digest = deliver_spool_digest (msg->spool);
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;

  if (dedupe && digest && deliver_dedupe_seen (dedupe, digest, msg->sender, rcpt->address))
    {
      g_message ("%s: <%s> has this message already: duplicate not delivered", msg->id, rcpt->address);
      deliver_status_set (status, 250, "2.0.0", "<%s> Saved (duplicate)", rcpt->original);
      return;
    }
  Commit commit = { dedupe, digest, msg->sender, rcpt->address, FALSE, FALSE,
                    g_get_monotonic_time () + (gint64) config->delivery_timeout * G_USEC_PER_SEC };

  run (config, msg, rcpt, shared, &commit, status, &path, &error);
  if (error)
    {
      g_autofree char *why = deliver_sanitize (error->message, 512);
      g_warning ("%s: delivery to <%s> failed: %s", msg->id, rcpt->address, why);
    }
  if (status->code / 100 == 2)
    commit_record (&commit, NULL, TRUE);
  else if (commit.recorded)
    deliver_dedupe_forget (dedupe, digest, msg->sender, rcpt->address);
  if (out_path)
    *out_path = g_steal_pointer (&path);
}
