/* apply-sieve.c - carrying out a Sieve result for one recipient
 * (RFC 5228 2.10): reject refuses, header edits change the stored header,
 * keep and fileinto store (all or none), redirect sends on, vacation
 * answers after the stores.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "header-edit.h"
#include "pipeline.h"

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
      if (!store_copy (dv, one, &path, error))
        {
          g_free (path);
          if (rcpt->format != DELIVER_MAILDIR && stored->len > before)
            {
              /* an mbox append cannot be taken back once another process
               * may have appended after it: keep what was stored rather
               * than have the MTA retry and store it twice */
              g_autofree char *why = util_sanitize ((*error)->message, 300);
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
          g_autofree char *why = util_sanitize (a->argument && a->argument[0] ? a->argument : "Rejected", 200);
          g_message ("%s: <%s> sieve: %s", dv->msg->id, dv->rcpt->address, sieve_action_name (a->kind));
          deliver_status_set (dv->status, 550, "5.7.1", "<%s> %s", dv->rcpt->original, why);
          return TRUE;
        }
    }
  return FALSE;
}

/* The message as received for the actions' versions of it (RFC 5293 7,
 * RFC 5703): the header goes into the prefix (read from the spool unless
 * a service put it there already), st->content becomes the body.  NULL
 * (status set) if the header cannot be read. */
static SieveMessages *
messages_new (const Delivery *dv, Store *st, const SieveResult *r, gboolean header_in_prefix)
{
  const DeliverSpool *spool = dv->msg->spool;
  gsize hlen;
  g_autofree char *orig = NULL, *base = NULL;

  if (header_in_prefix)
    return sieve_messages_new (dv, r, st->prefix, &st->content);
  orig = deliver_spool_read_header (spool, &hlen);
  if (orig == NULL)
    {
      deliver_status_set (dv->status, 451, "4.3.0", "<%s> Could not read the message", dv->rcpt->original);
      return NULL;
    }
  base = g_strconcat (st->prefix, orig, NULL);
  st->content.seg[0].offset += hlen;
  st->content.seg[0].length -= hlen;
  st->content.seg[0].lines -= deliver_spool_header_lines (spool);
  return sieve_messages_new (dv, r, base, &st->content);
}

/* What a Sieve result asks for besides a reject. */
typedef struct {
  GArray *stores;           /* Store */
  GPtrArray *flags;         /* the stores' flags, owned */
  GPtrArray *redirects;     /* const SieveAction* */
  const SieveAction *vacation;
  SieveMessages *messages;  /* NULL: no header edits, replace or enclose */
  GPtrArray *notifies;      /* const SieveAction* */
} SievePlan;

/* The message action @a stores or sends into @one's prefix and content. */
static gboolean
plan_message (const SievePlan *plan, const SieveAction *a, Store *one, GError **error)
{
  if (plan->messages == NULL)
    return TRUE;
  return sieve_messages_get (plan->messages, a->edits_before, a->changes_before, a->kind == SIEVE_REDIRECT,
                             &one->prefix, &one->content, error);
}

/* The same folder twice is one copy (RFC 5228 2.10.3), sieve-lite's rule
 * across scripts too: the first store's header, the last one's flags
 * (RFC 5232 3).  TRUE if @one was merged into an earlier store. */
static gboolean
merge_store (SievePlan *plan, const Store *one)
{
  for (guint k = 0; k < plan->stores->len; k++)
    {
      Store *o = &g_array_index (plan->stores, Store, k);
      if (g_strcmp0 (o->folder, one->folder) == 0)
        {
          o->flags = one->flags;
          o->create |= one->create;
          return TRUE;
        }
    }
  return FALSE;
}

/* fileinto: the folder it names, or INBOX if the name is unusable. */
static void
fileinto_folder (const Delivery *dv, const SieveAction *a, Store *one)
{
  const char *why;

  if (!deliver_folder_valid (a->argument, &why))
    {
      g_autofree char *shown = util_sanitize (a->argument, 300);
      g_warning ("%s: <%s> sieve: fileinto \"%s\": %s; kept in INBOX instead", dv->msg->id, dv->rcpt->address,
                 shown, why);
      one->folder = NULL;
    }
  else
    one->folder = deliver_folder_is_inbox (a->argument) ? NULL : a->argument;
  one->folder_if_exists = FALSE;
  one->create = a->create;
}

static gboolean
plan_actions (const Delivery *dv, const SieveResult *r, const Store *st, SievePlan *plan, GError **error)
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
          if (!plan_message (plan, a, &one, error))
            return FALSE;
          if (!merge_store (plan, &one))
            g_array_append_val (plan->stores, one);
          break;
        case SIEVE_REDIRECT:
          g_ptr_array_add (plan->redirects, (gpointer) a);
          break;
        case SIEVE_VACATION:
          plan->vacation = a;
          break;
        case SIEVE_NOTIFY:
          g_ptr_array_add (plan->notifies, (gpointer) a);
          break;
        default:
          break;
        }
    }
  return TRUE;
}

/* The redirects, after the stores; *@keep_instead when one that failed
 * asks for the message to be kept.  Returns how many went out. */
static guint
send_redirects (const FilterMessage *fm, const SievePlan *plan, const Store *st, DecisionTrace *trace,
                gboolean *keep_instead)
{
  guint redirected = 0;

  for (guint i = 0; i < plan->redirects->len; i++)
    {
      const SieveAction *a = plan->redirects->pdata[i];
      g_autoptr (GError) error = NULL;
      FilterMessage one = *fm;
      Store version = *st;
      if (!plan_message (plan, a, &version, &error))
        {
          g_autofree char *why = util_sanitize (error->message, 300);
          g_warning ("%s: <%s> sieve: redirect: %s", fm->msg->id, fm->rcpt->address, why);
        }
      one.prefix = version.prefix;
      one.content = &version.content;
      if (error == NULL && filter_redirect (&one, a->argument))
        {
          g_autofree char *to = util_sanitize (a->argument, 300);
          g_autofree char *where = g_strconcat ("redirect ", to, NULL);
          decision_trace_folder (trace, where);
          redirected++;
        }
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
      decision_trace_folder (dv->trace, "discard");
      deliver_status_set (dv->status, 250, "2.0.0", "<%s> Discarded by Sieve filter", original);
    }
}

/* The stores, then the redirects (a failed one keeps instead), then
 * vacation.  @st: the message with all the edits (the implicit keep's). */
static void
carry_out (const Delivery *dv, const Store *st, FilterOutcome *fo, SievePlan *plan, char **out_path,
           GError **error)
{
  g_autoptr (GPtrArray) stored = g_ptr_array_new_with_free_func (g_free);
  FilterMessage fm = { dv->ctx, dv->config, dv->msg, dv->rcpt, st->prefix, &st->content };
  guint redirected;
  gboolean keep_instead = FALSE;

  if (!plan_actions (dv, &fo->result, st, plan, error))
    {
      store_failed (dv, *error);
      return;
    }
  /* stores first: a store that fails sends nothing on */
  if (!store_all (dv, plan->stores, stored, error))
    return;
  redirected = send_redirects (&fm, plan, st, dv->trace, &keep_instead);
  if (keep_instead && stored->len == 0)
    {
      g_array_set_size (plan->stores, 0);
      g_array_append_val (plan->stores, *st);
      if (!store_all (dv, plan->stores, stored, error))
        return;
    }
  if (plan->vacation)
    filter_vacation (&fm, plan->vacation, fo);
  for (guint i = 0; i < plan->notifies->len; i++)
    filter_notify (&fm, plan->notifies->pdata[i]);
  filter_duplicate_record (&fm, &fo->result);
  sieve_status (dv, stored, redirected, out_path);
}

/* A notification goes with a reject (RFC 5429 2.1 does not forbid it):
 * about the message as received. */
static void
notify_rejected (const Delivery *dv, const Store *st, const SieveResult *r)
{
  FilterMessage fm = { dv->ctx, dv->config, dv->msg, dv->rcpt, st->prefix, &st->content };

  for (guint i = 0; i < r->actions->len; i++)
    if (((const SieveAction *) r->actions->pdata[i])->kind == SIEVE_NOTIFY)
      filter_notify (&fm, r->actions->pdata[i]);
}

/* Carries out a Sieve result (RFC 5228 2.10): reject refuses, header
 * edits, replace and enclose change what is stored (RFC 5293 7, RFC 5703
 * 5, 6: as far as each action saw them), keep/fileinto store (all or
 * none), redirect sends on, vacation answers and notify notifies after
 * the stores. */
void
sieve_actions_apply (const Delivery *dv, Store *st, FilterOutcome *fo, gboolean header_in_prefix, char **out_path,
                     GError **error)
{
  const SieveResult *r = &fo->result;
  g_autoptr (GPtrArray) flags = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) stores = g_array_new (FALSE, TRUE, sizeof (Store));
  g_autoptr (GPtrArray) redirects = g_ptr_array_new ();
  g_autoptr (GPtrArray) notifies = g_ptr_array_new ();
  SievePlan plan = { stores, flags, redirects, NULL, NULL, notifies };

  if (sieve_rejects (dv, r))
    {
      FilterMessage fm = { dv->ctx, dv->config, dv->msg, dv->rcpt, st->prefix, &st->content };
      notify_rejected (dv, st, r);
      filter_duplicate_record (&fm, r); /* the script ran to its end (RFC 7352 3) */
      return;
    }
  if (r->edits->len || r->changes->len)
    {
      if ((plan.messages = messages_new (dv, st, r, header_in_prefix)) == NULL)
        return;
      /* the implicit keep's: every edit and change */
      if (!sieve_messages_get (plan.messages, r->edits->len, r->changes->len, FALSE, &st->prefix, &st->content,
                               error))
        {
          store_failed (dv, *error);
          sieve_messages_free (plan.messages);
          return;
        }
    }
  carry_out (dv, st, fo, &plan, out_path, error);
  sieve_messages_free (plan.messages);
}
