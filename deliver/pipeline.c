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
#include "context.h"
#include "filter.h"
#include "header-edit.h"

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
deliver_rcpt_check (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                    DeliverRecipient *rcpt, guint64 size_hint, DeliverStatus *status)
{
  return deliver_precheck (config, rcpt, size_hint, status)
         && callout_rcpt_stage (ctx, config, msg, rcpt, status);
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

/* One recipient's delivery, as its steps share it. */
typedef struct {
  DeliverContext *ctx;
  const LmtpdConfig *config;
  const DeliverMessage *msg;
  const DeliverRecipient *rcpt;   /* after a service's redirect, the recipient it named */
  DeliverShared *shared;          /* or NULL */
  Commit *commit;
  DeliverStatus *status;
} Delivery;

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
                             config->fsync, commit_record, st->commit, dv->ctx };

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
  if (past_deadline (st->commit))
    return deadline_error (error, *out_path);
  ms.path = *out_path;
  ms.lock_timeout = lock_timeout (config, st->commit);
  if (deliver_mbox_store (&ms, error))
    return TRUE;
  /* the lock wait was cut short by the deadline: say so */
  if (g_error_matches (*error, DELIVER_ERROR, EAGAIN) && past_deadline (st->commit))
    {
      g_clear_error (error);
      return deadline_error (error, *out_path);
    }
  return FALSE;
}

static gboolean
store (const Delivery *dv, const Store *st, char **out_path, GError **error)
{
  if (dv->rcpt->format == DELIVER_MAILDIR)
    return store_maildir (dv, st, out_path, error);
  return store_mbox (dv, st, out_path, error);
}

/* The status of a store that failed with @error. */
static void
store_failed (const Delivery *dv, const GError *error)
{
  if (g_error_matches (error, DELIVER_ERROR, EDQUOT))
    quota_status (dv->config, dv->status, dv->rcpt);
  else
    deliver_status_from_error (dv->status, error);
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
store_all (const Delivery *dv, GArray *stores, GPtrArray *stored, GError **error)
{
  const DeliverRecipient *rcpt = dv->rcpt;
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
      if (!store (dv, one, &path, error))
        {
          g_free (path);
          if (rcpt->format != DELIVER_MAILDIR && stored->len > before)
            {
              /* an mbox append cannot be taken back once another process
               * may have appended after it: keep what was stored rather
               * than have the MTA retry and store it twice */
              g_autofree char *why = deliver_sanitize ((*error)->message, 300);
              g_warning ("%s: <%s> sieve: a store failed after another succeeded: %s", dv->msg->id, rcpt->address,
                         why);
              g_clear_error (error);
              return TRUE;
            }
          /* all or nothing: the MTA will try again */
          for (guint k = before; k < stored->len; k++)
            if (rcpt->format == DELIVER_MAILDIR)
              unlink (stored->pdata[k]);
          store_failed (dv, *error);
          return FALSE;
        }
      g_ptr_array_add (stored, path);
    }
  return TRUE;
}

/* RFC 5429 2.1/2.2: a reject refuses the message for this recipient, in
 * the protocol.  TRUE (with the status set) if the result has one. */
static gboolean
sieve_rejects (const Delivery *dv, const SieveResult *r)
{
  for (guint i = 0; i < r->actions->len; i++)
    {
      const SieveAction *a = r->actions->pdata[i];
      if (a->kind == SIEVE_REJECT || a->kind == SIEVE_EREJECT)
        {
          g_autofree char *why = deliver_sanitize (a->argument && a->argument[0] ? a->argument : "Rejected", 200);
          g_message ("%s: <%s> sieve: %s", dv->msg->id, dv->rcpt->address, sieve_action_name (a->kind));
          deliver_status_set (dv->status, 550, "5.7.1", "<%s> %s", dv->rcpt->original, why);
          return TRUE;
        }
    }
  return FALSE;
}

/* editheader: the header goes into the prefix (read from the spool unless
 * a service put it there already) with the edits applied; *@edited owns
 * the new prefix.  FALSE (status set) if the header cannot be read. */
static gboolean
edit_header (const Delivery *dv, Store *st, const GPtrArray *edits, gboolean header_in_prefix, char **edited)
{
  const DeliverSpool *spool = dv->msg->spool;
  g_autofree char *header = NULL;

  if (header_in_prefix)
    header = g_strdup (st->prefix);
  else
    {
      gsize hlen;
      g_autofree char *orig = deliver_spool_read_header (spool, &hlen);
      if (orig == NULL)
        {
          deliver_status_set (dv->status, 451, "4.3.0", "<%s> Could not read the message", dv->rcpt->original);
          return FALSE;
        }
      header = g_strconcat (st->prefix, orig, NULL);
      st->content.seg[0].offset += hlen;
      st->content.seg[0].length -= hlen;
      st->content.seg[0].lines -= deliver_spool_header_lines (spool);
    }
  *edited = header_edit_sieve (header, edits, filter_protected_fields);
  st->prefix = *edited;
  return TRUE;
}

/* What a Sieve result asks for besides a reject. */
typedef struct {
  GArray *stores;           /* Store */
  GPtrArray *flags;         /* the stores' flags, owned */
  GPtrArray *redirects;     /* const SieveAction* */
  const SieveAction *vacation;
} SievePlan;

/* fileinto: the folder it names, or INBOX if the name is unusable. */
static void
fileinto_folder (const Delivery *dv, const SieveAction *a, Store *one)
{
  const char *why;

  if (!deliver_folder_valid (a->argument, &why))
    {
      g_autofree char *shown = deliver_sanitize (a->argument, 300);
      g_warning ("%s: <%s> sieve: fileinto \"%s\": %s; kept in INBOX instead", dv->msg->id, dv->rcpt->address,
                 shown, why);
      one->folder = NULL;
    }
  else
    one->folder = deliver_folder_is_inbox (a->argument) ? NULL : a->argument;
  one->folder_if_exists = FALSE;
  one->create = a->create;
}

static void
plan_actions (const Delivery *dv, const SieveResult *r, const Store *st, SievePlan *plan)
{
  for (guint i = 0; i < r->actions->len; i++)
    {
      const SieveAction *a = r->actions->pdata[i];
      Store one = *st;
      switch (a->kind)
        {
        case SIEVE_FILEINTO:
          fileinto_folder (dv, a, &one);
          /* fall through */
        case SIEVE_KEEP:
          one.flags = a->flags ? merge_flags (st->flags, a->flags) : g_strdup (st->flags);
          g_ptr_array_add (plan->flags, (char *) one.flags);
          g_array_append_val (plan->stores, one);
          break;
        case SIEVE_REDIRECT:
          g_ptr_array_add (plan->redirects, (gpointer) a);
          break;
        case SIEVE_VACATION:
          plan->vacation = a;
          break;
        default:
          break;
        }
    }
}

/* The redirects, after the stores; *@keep_instead when one that failed
 * asks for the message to be kept.  Returns how many went out. */
static guint
send_redirects (const FilterMessage *fm, const GPtrArray *redirects, gboolean *keep_instead)
{
  guint redirected = 0;

  for (guint i = 0; i < redirects->len; i++)
    {
      const SieveAction *a = redirects->pdata[i];
      if (filter_redirect (fm, a->argument))
        redirected++;
      else if (!a->copy)
        *keep_instead = TRUE;
    }
  return redirected;
}

static void
sieve_status (const Delivery *dv, const GPtrArray *stored, guint redirected, char **out_path)
{
  const char *original = dv->rcpt->original;

  if (stored->len)
    {
      deliver_status_set (dv->status, 250, "2.0.0", "<%s> Saved", original);
      *out_path = g_strdup (stored->pdata[0]);
    }
  else if (redirected)
    deliver_status_set (dv->status, 250, "2.0.0", "<%s> Redirected by Sieve filter", original);
  else
    {
      g_message ("%s: <%s> discarded by Sieve", dv->msg->id, dv->rcpt->address);
      deliver_status_set (dv->status, 250, "2.0.0", "<%s> Discarded by Sieve filter", original);
    }
}

/* Carries out a Sieve result (RFC 5228 2.10): reject refuses, header
 * edits change the stored header, keep/fileinto store (all or none),
 * redirect sends on (a failed one keeps instead), vacation answers
 * after the stores. */
static void
apply_sieve (const Delivery *dv, Store *st, FilterOutcome *fo, gboolean header_in_prefix, char **out_path,
             GError **error)
{
  const SieveResult *r = &fo->result;
  g_autofree char *edited = NULL;
  g_autoptr (GPtrArray) stored = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) flags = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) stores = g_array_new (FALSE, TRUE, sizeof (Store));
  g_autoptr (GPtrArray) redirects = g_ptr_array_new ();
  SievePlan plan = { stores, flags, redirects, NULL };
  FilterMessage fm = { dv->ctx, dv->config, dv->msg, dv->rcpt, NULL, NULL };
  guint redirected;
  gboolean keep_instead = FALSE;

  if (sieve_rejects (dv, r))
    return;
  if (r->edits->len && !edit_header (dv, st, r->edits, header_in_prefix, &edited))
    return;
  plan_actions (dv, r, st, &plan);
  /* stores first: a store that fails sends nothing on */
  if (!store_all (dv, stores, stored, error))
    return;
  fm.prefix = st->prefix;
  fm.content = &st->content;
  redirected = send_redirects (&fm, redirects, &keep_instead);
  if (keep_instead && stored->len == 0)
    {
      g_array_set_size (stores, 0);
      g_array_append_val (stores, *st);
      if (!store_all (dv, stores, stored, error))
        return;
    }
  if (plan.vacation)
    filter_vacation (&fm, plan.vacation, fo);
  sieve_status (dv, stored, redirected, out_path);
}

/* An adapted body is normalized to LF through a spool of its own. */
static DeliverSpool *
adapted_body (const Delivery *dv, int fd, GError **error)
{
  g_autoptr (DeliverSpool) s = deliver_spool_new (dv->ctx, dv->config->spool_dir, error);
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

/* A service's redirect: the recipient it names, resolved (*@redirected),
 * keeping the original address.  FALSE with the status set if it is not
 * one of ours. */
static gboolean
verdict_redirect (Delivery *dv, const CalloutDecision *d, DeliverRecipient **redirected)
{
  g_autofree char *local = NULL, *domain = NULL;
  const char *why;

  if (d->redirect == NULL || !deliver_address_parse (d->redirect, TRUE, &local, &domain, &why) || domain == NULL
      || (*redirected = deliver_resolve (dv->ctx, dv->config, local, domain, dv->status)) == NULL)
    {
      deliver_status_clear (dv->status);
      deliver_status_set (dv->status, 451, "4.3.5", "<%s> Content filter redirected to an unknown recipient",
                          dv->rcpt->original);
      return FALSE;
    }
  g_free ((*redirected)->original);
  (*redirected)->original = g_strdup (dv->rcpt->original);
  dv->rcpt = *redirected;
  return TRUE;
}

/* What the services' verdict does before anything is stored: refuse,
 * discard, redirect (dv->rcpt becomes the new recipient, owned by
 * *@redirected).  FALSE when the delivery ends here (status set). */
static gboolean
apply_verdict (Delivery *dv, const CalloutDecision *d, DeliverRecipient **redirected)
{
  switch (d->kind)
    {
    case CALLOUT_REJECT:
    case CALLOUT_TEMPFAIL:
      callout_refusal (dv->config, d, dv->rcpt, dv->status);
      return FALSE;
    case CALLOUT_DISCARD:
      g_message ("%s: <%s> discarded by a content filter", dv->msg->id, dv->rcpt->address);
      deliver_status_set (dv->status, 250, "2.0.0", "<%s> Discarded by content filter", dv->rcpt->original);
      return FALSE;
    case CALLOUT_REDIRECT:
      return verdict_redirect (dv, d, redirected);
    case CALLOUT_QUARANTINE:
    case CALLOUT_ACCEPT:
      break;
    }
  return TRUE;
}

/* The folder: the recipient's, or the one a service named (quarantine or
 * delivery folder).  FALSE with the status set if that one is unusable. */
static gboolean
verdict_folder (const Delivery *dv, const CalloutDecision *d, Store *st)
{
  const char *why;

  st->folder = dv->rcpt->folder;
  st->folder_if_exists = dv->rcpt->folder_if_exists;
  if (d->folder == NULL)
    return TRUE;
  if (!deliver_folder_valid (d->folder, &why))
    {
      deliver_status_set (dv->status, 451, "4.3.5", "<%s> Content filter named a bad folder", dv->rcpt->original);
      return FALSE;
    }
  st->folder = deliver_folder_is_inbox (d->folder) ? NULL : d->folder;
  st->folder_if_exists = FALSE;
  return TRUE;
}

/* The services' changes to the stored message: a new header part
 * (*@new_header) and the content after it (the spool's body, or an
 * adapted body in *@body).  FALSE with the status set on failure. */
static gboolean
adapted_content (const Delivery *dv, const CalloutResult *result, const CalloutDecision *d, Store *st,
                 char **new_header, DeliverSpool **body, GError **error)
{
  const DeliverSpool *spool = dv->msg->spool;

  deliver_content_from_spool (&st->content, spool);
  if (!callout_needs_new_header (result, d) && !d->has_body)
    return TRUE;
  *new_header = callout_new_header (dv->msg, result, d);
  if (*new_header == NULL)
    {
      deliver_status_set (dv->status, 451, "4.3.0", "<%s> Adapted header could not be parsed", dv->rcpt->original);
      return FALSE;
    }
  if (!d->has_body)
    {
      guint64 hlen = deliver_spool_header_len (spool);
      st->content.seg[0].offset = hlen;
      st->content.seg[0].length -= hlen;
      st->content.seg[0].lines -= deliver_spool_header_lines (spool);
      return TRUE;
    }
  *body = adapted_body (dv, d->body_fd, error);
  if (*body == NULL)
    {
      deliver_status_from_error (dv->status, *error);
      return FALSE;
    }
  deliver_content_from_spool (&st->content, *body);
  return TRUE;
}

/* Sieve sees the message as it would be stored, after the services.
 * TRUE if a script ran (and its result was carried out). */
static gboolean
run_sieve (const Delivery *dv, const CalloutResult *result, Store *st, gboolean header_in_prefix, char **out_path,
           GError **error)
{
  FilterMessage fm = { dv->ctx, dv->config, dv->msg, dv->rcpt, st->prefix, &st->content };
  FilterOutcome fo;
  gboolean ran;

  filter_run (&fm, result, &fo);
  ran = fo.ran;
  if (ran && past_deadline (dv->commit))
    deadline_status (dv->status, dv->rcpt);
  else if (ran)
    apply_sieve (dv, st, &fo, header_in_prefix, out_path, error);
  filter_outcome_clear (&fo);
  return ran;
}

/* After the callouts: the verdict, the stored message, Sieve, the store. */
static void
deliver_decided (Delivery *dv, const CalloutResult *result, char **out_path, GError **error)
{
  g_autoptr (DeliverRecipient) redirected = NULL;
  g_autoptr (DeliverSpool) body = NULL;
  g_autofree char *trace = NULL, *opes = NULL, *new_header = NULL, *prefix = NULL, *flags = NULL;
  g_autofree char *path = NULL;
  const DeliverShared *shared = dv->shared;
  gboolean per_recipient = !dv->config->single_instance || shared == NULL || shared->n_recipients <= 1;
  CalloutDecision d;
  Store st = { 0 };

  callout_decide (dv->config, result, dv->rcpt, &d);
  if (!apply_verdict (dv, &d, &redirected))
    return;
  st.commit = dv->commit;
  if (!verdict_folder (dv, &d, &st))
    return;
  flags = callout_flags (result);
  st.flags = flags;
  trace = deliver_trace_headers (dv->config, dv->msg, dv->rcpt, per_recipient);
  opes = callout_trace (dv->config, result, dv->rcpt->rcpt_trace);
  if (!adapted_content (dv, result, &d, &st, &new_header, &body, error))
    return;
  prefix = g_strconcat (trace, opes, new_header ? new_header : "", NULL);
  st.prefix = prefix;
  if (d.kind == CALLOUT_ACCEPT && run_sieve (dv, result, &st, new_header != NULL, out_path, error))
    return;
  if (!store (dv, &st, &path, error))
    {
      store_failed (dv, *error);
      return;
    }
  deliver_status_set (dv->status, 250, "2.0.0", "<%s> Saved", dv->rcpt->original);
  *out_path = g_steal_pointer (&path);
}

/* Everything after the duplicate check; fills the status. */
static void
run (Delivery *dv, char **out_path, GError **error)
{
  CalloutResult *owned = NULL;
  gint64 t0 = g_get_monotonic_time ();
  const CalloutResult *result = callout_run (dv->ctx, dv->config, dv->msg, dv->rcpt, dv->shared, &owned);
  guint64 callout_us = result ? (guint64) (g_get_monotonic_time () - t0) : 0;

  if (past_deadline (dv->commit))
    deadline_status (dv->status, dv->rcpt);
  else
    deliver_decided (dv, result, out_path, error);
  dv->status->callout_us = callout_us;
  callout_result_free (owned);
}

void
deliver_pipeline_run (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                      const DeliverRecipient *rcpt, DeliverShared *shared, DeliverStatus *status,
                      char **out_path)
{
  DeliverDedupe *dedupe = ctx->journal;
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
  Delivery dv = { ctx, config, msg, rcpt, shared, &commit, status };

  run (&dv, &path, &error);
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
