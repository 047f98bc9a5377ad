/* filter.c - the Sieve step of the pipeline: find the scripts of a
 * recipient, run them (compiled once: script-cache.c) on the message as it
 * would be stored (filter-view.c) with the callouts' results as plain
 * values, merge their results, and redirect.  Header edits are the header
 * editor's (header-edit.c), vacation is vacation.c's; stores, discard and
 * reject stay with the pipeline.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "header-edit.h"
#include "pipeline.h"
#include "srs.h"

#define MAX_REDIRECT_HOPS 5
/* the duplicate journal's "sender" for redirects: no real sender is this */
#define REDIRECT_JOURNAL_SENDER "<sieve redirect>"

/* Fields editheader leaves alone besides sieve-lite's trace fields: the
 * loop mark (deleting it let two scripts bounce a message for ever), the
 * rest of what deliver_trace_headers writes, and what replace keeps of
 * the original (RFC 5703 5: "cannot be modified or removed"). */
const char *const filter_protected_fields[] = { FILTER_REDIRECT_HEADER, "X-Original-To", "Original-Subject",
                                                "Original-From", NULL };

/* ---- scripts ------------------------------------------------------------------ */

/* The per-user log next to the script: what the user can read to learn
 * why the script did not run. */
static void
user_log (const char *script, const char *what)
{
  g_autofree char *path = g_strconcat (script, ".log", NULL);
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y-%m-%d %H:%M:%S");
  g_autofree char *line = g_strdup_printf ("%s: %s\n", stamp, what);
  int fd = deliver_mailfile_open (path, O_WRONLY | O_CREAT | O_APPEND, NULL); /* a FIFO must not block */

  if (fd < 0)
    return;
  if (write (fd, line, strlen (line)) < 0)
    g_debug ("%s: %s", path, g_strerror (errno));
  close (fd);
}

/* RFC 5429 2.1 across the scripts of a sequence: a reject in one and a
 * delivery or answer in another. */
static gboolean
rejects_with_others (const SieveResult *so_far, const SieveResult *next)
{
  gboolean rej = FALSE, other = FALSE;
  const SieveResult *both[] = { so_far, next };

  for (guint k = 0; k < 2; k++)
    for (guint i = 0; i < both[k]->actions->len - (k == 1 && next->implicit_keep ? 1 : 0); i++)
      {
        SieveActionKind kind = ((SieveAction *) both[k]->actions->pdata[i])->kind;
        if (kind == SIEVE_REJECT || kind == SIEVE_EREJECT)
          rej = TRUE;
        else if (kind != SIEVE_DISCARD && kind != SIEVE_NOTIFY)
          other = TRUE;
      }
  return rej && other;
}

/* Moves @from's actions and edits over; its implicit keep goes to
 * *pending, as only the last script's counts.  An action of the script
 * itself (not of an include) is named by @path, for the decision trace. */
static void
merge (SieveResult *into, SieveResult *from, const char *path, SieveAction **pending)
{
  guint n = from->actions->len - (from->implicit_keep ? 1 : 0);
  for (guint i = 0; i < n; i++)
    {
      SieveAction *a = g_steal_pointer (&from->actions->pdata[i]);
      if (a->script == NULL)
        a->script = g_strdup (path);
      /* the earlier scripts' edits and changes come first (RFC 5293 7,
       * RFC 5703 5, 6 across the sequence) */
      a->edits_before += into->edits->len;
      a->changes_before += into->changes->len;
      g_ptr_array_add (into->actions, a);
    }
  for (guint i = 0; i < from->changes->len; i++)
    {
      SieveChange *c = g_steal_pointer (&from->changes->pdata[i]);
      c->edits_before += into->edits->len;
      g_ptr_array_add (into->changes, c);
    }
  for (guint i = 0; i < from->edits->len; i++)
    g_ptr_array_add (into->edits, g_steal_pointer (&from->edits->pdata[i]));
  for (guint i = 0; i < from->duplicates->len; i++)
    g_ptr_array_add (into->duplicates, g_steal_pointer (&from->duplicates->pdata[i]));
  sieve_action_free (*pending);
  *pending = from->implicit_keep ? g_steal_pointer (&from->actions->pdata[n]) : NULL;
  into->implicit_keep = from->implicit_keep;
}

/* The scripts to run, in order: before, the user's, after.  *user_index:
 * the user's place, or G_MAXUINT. */
static GPtrArray *
script_list (const LmtpdConfig *config, const char *user_script, guint *user_index)
{
  GPtrArray *scripts = g_ptr_array_new_with_free_func (g_free);

  *user_index = G_MAXUINT;
  for (guint i = 0; config->sieve_before[i]; i++)
    g_ptr_array_add (scripts, g_strdup (config->sieve_before[i]));
  if (user_script)
    {
      *user_index = scripts->len;
      g_ptr_array_add (scripts, g_strdup (user_script));
    }
  for (guint i = 0; config->sieve_after[i]; i++)
    g_ptr_array_add (scripts, g_strdup (config->sieve_after[i]));
  return scripts;
}

/* What the scripts see of the envelope and the message, and their limits. */
static void
sieve_message (const FilterMessage *m, FilterView *view, SieveMessage *sm)
{
  const LmtpdConfig *config = m->config;

  sm->envelope_from = m->msg->sender;
  sm->envelope_to = m->rcpt->original;
  sm->delimiter = config->recipient_delimiter;
  sm->size = strlen (m->prefix) + deliver_content_size (m->content);
  sm->header = filter_view_header;
  sm->body_text = filter_view_body;
  sm->mailbox_exists = filter_view_mailbox_exists;
  sm->raw_body = filter_view_raw_body;
  sm->mime_parts = filter_view_mime_parts;
  sm->data = view;
  sm->max_actions = config->sieve_max_actions;
  sm->max_redirects = config->sieve_max_redirects ? config->sieve_max_redirects : 1;
  sm->max_time_ms = config->sieve_max_run_time_ms;
  sm->protected_headers = filter_protected_fields;
  sm->duplicate = filter_duplicate_seen;
}

/* Runs @c into @r; returns why it failed (borrowed from @c or @r), or NULL. */
static const char *
run_script (const FilterMessage *m, const FilterScript *c, const SieveMessage *sm, const SieveResult *so_far,
            SieveResult *r)
{
  const char *why = NULL;

  if (c->script == NULL)
    return c->error;
  sieve_run (c->script, sm, r);
  if (r->error)
    why = r->error;
  else if (m->config->sieve_max_redirects == 0)
    for (guint k = 0; k < r->actions->len; k++)
      if (((SieveAction *) r->actions->pdata[k])->kind == SIEVE_REDIRECT)
        why = "redirect is not allowed here";
  if (why == NULL && rejects_with_others (so_far, r))
    why = "reject conflicts with an action of an earlier script";
  return why;
}

/* RFC 5228 2.10.6: a failed script keeps the message, and whoever owns
 * the script hears of it: "FILE:LINE:COL: message" for one that did not
 * compile (@compile), "FILE: message" otherwise; the metrics count it. */
static void
script_failed (const FilterMessage *m, const char *path, const char *why, gboolean compile, gboolean users,
               FilterOutcome *out, SieveAction **pending)
{
  g_autofree char *what = NULL;
  gboolean located = g_str_has_prefix (why, path) && why[strlen (path)] == ':';

  {
    /* the error may quote the message (a decoded header through ${1}):
     * one sanitiser for the log and the user's log */
    g_autofree char *shown = util_sanitize (why, 400);
    what = g_strdup_printf ("%s%s%s; message kept in INBOX", located ? "" : path, located ? "" : ": ", shown);
  }
  if (m->ctx && m->ctx->sieve_observer)
    m->ctx->sieve_observer (compile ? "compile" : "runtime");
  g_warning ("%s: <%s> sieve: %s", m->msg->id, m->rcpt->address, what);
  if (users)
    user_log (path, what);
  g_ptr_array_set_size (out->result.actions, 0);
  g_clear_pointer (pending, sieve_action_free);
  g_ptr_array_set_size (out->result.edits, 0);
  g_ptr_array_set_size (out->result.duplicates, 0); /* RFC 7352 3: a failed run records nothing */
  g_ptr_array_set_size (out->result.changes, 0);
  out->result.implicit_keep = TRUE;
  out->result.error = g_steal_pointer (&what);
}

static void
outcome_init (FilterOutcome *out)
{
  memset (out, 0, sizeof *out);
  out->result.actions = g_ptr_array_new_with_free_func (sieve_action_free);
  out->result.edits = g_ptr_array_new_with_free_func (sieve_header_edit_free);
  out->result.duplicates = g_ptr_array_new_with_free_func (sieve_duplicate_free);
  out->result.changes = g_ptr_array_new_with_free_func (sieve_change_free);
  out->result.implicit_keep = TRUE;
}

/* The implicit keep, if it stands: the last script's (@pending, with its
 * flags) unless a script failed.  Takes @pending. */
static void
add_implicit_keep (FilterOutcome *out, SieveAction *pending)
{
  if (out->result.implicit_keep)
    {
      SieveAction *k = pending && !out->result.error ? g_steal_pointer (&pending) : g_new0 (SieveAction, 1);
      k->kind = SIEVE_KEEP;
      k->edits_before = out->result.edits->len;   /* RFC 5293 7: it sees them all */
      k->changes_before = out->result.changes->len;
      g_ptr_array_add (out->result.actions, k);
    }
  sieve_action_free (pending);
}

void
filter_run (const FilterMessage *m, const CalloutResult *callouts, FilterOutcome *out)
{
  const LmtpdConfig *config = m->config;
  FilterView view;
  g_autoptr (GPtrArray) scripts = NULL;
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) cs = g_array_new (FALSE, TRUE, sizeof (SieveCallout));
  SieveMessage sm = { 0 };
  guint user_index;
  SieveAction *pending = NULL;
  FilterSite site;

  filter_view_init (&view, m);
  outcome_init (out);
  if (m->rcpt->sieve_script || (config->sieve_script && config->sieve_script[0]))
    out->user_script = filter_user_script_path (config, m->rcpt);
  scripts = script_list (config, out->user_script, &user_index);
  sieve_message (m, &view, &sm);
  filter_site_init (&site, m, &sm);
  callout_for_sieve (callouts, &sm, cs, keep);

  for (guint i = 0; i < scripts->len; i++)
    {
      const char *path = scripts->pdata[i];
      FilterScript *c = filter_cache_get (m->ctx->scripts, config, path);
      SieveResult r = { 0 };
      const char *why;

      if (c == NULL)
        continue;
      out->ran = TRUE;
      why = run_script (m, c, &sm, &out->result, &r);
      if (why)
        script_failed (m, path, why, c->script == NULL, i == user_index, out, &pending);
      else
        merge (&out->result, &r, path, &pending);
      sieve_result_clear (&r);
      filter_script_unref (c);
      /* the sequence goes on only while the message is still kept (as
       * Pigeonhole's multiscript does) */
      if (why || !out->result.implicit_keep)
        break;
    }
  add_implicit_keep (out, pending);
  filter_site_clear (&site);
  filter_view_clear (&view);
}

void
filter_outcome_clear (FilterOutcome *out)
{
  sieve_result_clear (&out->result);
  g_clear_pointer (&out->user_script, g_free);
}

/* ---- redirect ------------------------------------------------------------------ */

/* The header as lmtpd received it, before trace fields, services and
 * editheader: the delivered-to chain no script can change. */
static char *
received_header (const DeliverMessage *msg)
{
  char *h = msg->spool ? deliver_spool_read_header (msg->spool, NULL) : NULL;

  return h ? h : g_strdup ("");
}

static gboolean
names_recipient (const char *value, const DeliverRecipient *rcpt)
{
  g_autofree char *v = g_strstrip (g_strdup (value));
  return g_ascii_strcasecmp (v, rcpt->address) == 0 || g_ascii_strcasecmp (v, rcpt->original) == 0;
}

/* Was the message here before?  A Delivered-To (RFC 9228; as Postfix
 * local and Pigeonhole read it), an X-Loop (procmail's and many list
 * managers' mark) or our redirect mark naming this recipient in the
 * header as received. */
gboolean
filter_been_here (const DeliverMessage *msg, const DeliverRecipient *rcpt)
{
  g_autofree char *header = received_header (msg);
  g_autoptr (GPtrArray) fields = header_fields (header);

  for (guint i = 0; i < fields->len; i++)
    {
      g_autofree char *name = header_field_name (fields->pdata[i]);
      g_autofree char *value = NULL;
      if (g_ascii_strcasecmp (name, "Delivered-To") && g_ascii_strcasecmp (name, "X-Loop")
          && g_ascii_strcasecmp (name, FILTER_REDIRECT_HEADER))
        continue;
      value = header_field_value (fields->pdata[i]);
      if (names_recipient (value, rcpt))
        return TRUE;
    }
  return FALSE;
}

/* Loops: delivered here before, our own mark, too many hops, or back to
 * ourselves (editheader cannot remove the mark or Delivered-To). */
static gboolean
redirect_loops (const FilterMessage *m, const char *target)
{
  const DeliverRecipient *rcpt = m->rcpt;
  FilterView view;
  g_auto (GStrv) hops = NULL;
  gboolean loop = filter_been_here (m->msg, rcpt);

  filter_view_init (&view, m);
  hops = filter_view_header (FILTER_REDIRECT_HEADER, &view);
  for (guint i = 0; hops[i]; i++)
    loop |= names_recipient (hops[i], rcpt);
  filter_view_clear (&view);
  return loop || g_strv_length (hops) >= MAX_REDIRECT_HOPS || g_ascii_strcasecmp (target, rcpt->address) == 0
         || g_ascii_strcasecmp (target, rcpt->original) == 0;
}

/* Pigeonhole's duplicate check of redirects: the same message (by its
 * Message-ID, and if resent or from a list, by Resent-Message-ID or
 * Resent-From and List-Id) redirected by this recipient to this target
 * goes once within the duplicate window, however it came in again.  The
 * key for the duplicate journal, or NULL without a Message-ID. */
static char *
redirect_key (const FilterMessage *m, const char *target)
{
  FilterView view;
  g_auto (GStrv) id = NULL, resent = NULL, from = NULL, list = NULL;
  g_autofree char *key = NULL;

  filter_view_init (&view, m);
  id = filter_view_header ("Message-ID", &view);
  resent = filter_view_header ("Resent-Message-ID", &view);
  from = filter_view_header ("Resent-From", &view);
  list = filter_view_header ("List-Id", &view);
  filter_view_clear (&view);
  if (id[0] == NULL)
    return NULL;
  key = g_strdup_printf ("%s-%s-%s-%s-%s", g_strstrip (id[0]), m->rcpt->original, target,
                         resent[0] ? resent[0] : from[0] ? from[0] : "", list[0] ? list[0] : "");
  return g_compute_checksum_for_string (G_CHECKSUM_SHA256, key, -1);
}

/* Sends @head and the content from the sender [sieve] redirect_sender
 * names; FALSE with @error. */
static gboolean
redirect_send (const FilterMessage *m, const char *target, const char *head, GError **error)
{
  const DeliverRecipient *rcpt = m->rcpt;
  g_autofree char *sender = deliver_redirect_sender (m->config, m->msg->sender, rcpt->address,
                                                     rcpt->orcpt ? rcpt->orcpt : rcpt->original,
                                                     rcpt->domain ? rcpt->domain : "", error);

  return sender && deliver_submit (m->config, sender, target, head, m->content, error);
}

/* TRUE (logged) when the journal knows this redirect, or (shared and
 * failing) cannot tell: keeping is the copy that cannot be a second one. */
static gboolean
redirected_before (const FilterMessage *m, Commit *c, const char *shown)
{
  StateAnswer seen = journal_seen (c, m->ctx, m->config->duplicate_window, m->msg->id);

  if (seen == STATE_YES)
    g_message ("%s: <%s> sieve: redirected to <%s> before: not again; kept instead", m->msg->id, m->rcpt->address,
               shown);
  else if (seen != STATE_NO)
    g_message ("%s: <%s> sieve: the shared journal cannot tell whether <%s> had it: no redirect; kept instead",
               m->msg->id, m->rcpt->address, shown);
  return seen != STATE_NO;
}

gboolean
filter_redirect (const FilterMessage *m, const char *target)
{
  const DeliverMessage *msg = m->msg;
  const DeliverRecipient *rcpt = m->rcpt;
  g_autofree char *local = NULL, *domain = NULL, *head = NULL;
  g_autoptr (GError) error = NULL;
  const char *why = NULL, *rest = m->prefix;
  g_autofree char *shown = util_sanitize (target, 330);
  g_autofree char *key = NULL;
  Commit c = { m->ctx ? m->ctx->journal : NULL, NULL, REDIRECT_JOURNAL_SENDER, target,
               FALSE, FALSE, 0, NULL, FALSE, FALSE };

  if (!deliver_address_parse (target, TRUE, &local, &domain, &why) || domain == NULL)
    {
      g_warning ("%s: <%s> sieve: redirect to a bad address: %s", msg->id, rcpt->address, why ? why : "no domain");
      return FALSE;
    }
  if (redirect_loops (m, target))
    {
      g_warning ("%s: <%s> sieve: redirect to <%s> would loop; kept instead", msg->id, rcpt->address, shown);
      return FALSE;
    }
  /* Return-Path belongs to the final delivery only */
  if (g_ascii_strncasecmp (rest, "Return-Path:", 12) == 0)
    {
      const char *nl = strchr (rest, '\n');
      rest = nl ? nl + 1 : "";
    }
  head = g_strdup_printf ("%s: %s\n%s", FILTER_REDIRECT_HEADER, rcpt->address, rest);
  c.digest = key = m->ctx && (m->ctx->journal || m->ctx->state) ? redirect_key (m, target) : NULL;
  if (key && redirected_before (m, &c, shown))
    return FALSE;
  if (!redirect_send (m, target, head, &error))
    {
      g_autofree char *w = util_sanitize (error->message, 300);
      g_warning ("%s: <%s> sieve: redirect to <%s> failed: %s; kept instead", msg->id, rcpt->address, shown, w);
      return FALSE;
    }
  if (key)
    journal_record (&c);
  g_message ("%s: <%s> sieve: redirected to <%s>", msg->id, rcpt->address, shown);
  return TRUE;
}
