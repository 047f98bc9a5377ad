/* journal.c - the duplicate journal a delivery uses: the shared one in
 * PostgreSQL ([state] backend = pgsql, state/) or the local file
 * (dedupe.c).  When PostgreSQL fails, [state] on_error decides: tempfail
 * answers the recipient 451 4.3.0 before any file appears (the MTA's retry
 * delivers it once); local carries on with the local journal, with a
 * warning, for this recipient's whole delivery (a retry to another node
 * may then deliver a second copy: the price of going on).  The shared
 * intent is a claim: two nodes delivering the same message to the same
 * recipient at once (an MTA that gave up on the first and retried on the
 * second) make one copy; the other answers 451 and its retry gets 250.
 */
#include "config.h"

#include "pipeline.h"

static StateAnswer
local_seen (Commit *c)
{
  if (c->dedupe == NULL)
    return STATE_NO;
  return deliver_dedupe_seen (c->dedupe, c->digest, c->sender, c->address) ? STATE_YES : STATE_NO;
}

StateAnswer
journal_seen (Commit *c, DeliverContext *ctx, guint window, const char *msg_id)
{
  StateAnswer a;

  c->state = window ? ctx->state : NULL;
  if (c->digest == NULL)
    return STATE_NO;
  if (c->state == NULL)
    return local_seen (c);
  if ((a = state_dup_seen (c->state, c->digest, c->sender, c->address)) != STATE_FAILED)
    return a;
  if (!state_store_fall_back (c->state))
    {
      c->state_failed = TRUE;
      return STATE_FAILED;
    }
  g_warning ("%s: <%s> shared state failing: the local duplicate journal is used", msg_id, c->address);
  c->state = NULL;
  return local_seen (c);
}

gboolean
journal_intend (Commit *c, const char *path)
{
  if (c->state == NULL)
    {
      if (c->dedupe)
        deliver_dedupe_intend (c->dedupe, c->digest, c->sender, c->address, path);
      return TRUE;
    }
  switch (state_dup_intend (c->state, c->digest, c->sender, c->address, path))
    {
    case STATE_YES:
      return TRUE;
    case STATE_NO:
      /* another node's copy is there or being made: not a second one */
      c->state_busy = TRUE;
      return FALSE;
    case STATE_FAILED:
      break;
    }
  if (state_store_fall_back (c->state))
    {
      g_warning ("<%s> shared state failing: the local duplicate journal is used", c->address);
      c->state = NULL;
      return journal_intend (c, path);
    }
  c->state_failed = TRUE;
  return FALSE;
}

/* After the file appeared, a failure costs no mail: the intent names the
 * file, and an intent whose file is there counts. */
void
journal_record (Commit *c)
{
  if (c->state == NULL)
    {
      if (c->dedupe)
        deliver_dedupe_record (c->dedupe, c->digest, c->sender, c->address);
    }
  else if (state_dup_record (c->state, c->digest, c->sender, c->address) == STATE_FAILED && c->dedupe)
    deliver_dedupe_record (c->dedupe, c->digest, c->sender, c->address);
}

void
journal_forget (Commit *c)
{
  if (c->state == NULL)
    {
      if (c->dedupe)
        deliver_dedupe_forget (c->dedupe, c->digest, c->sender, c->address);
    }
  else
    state_dup_forget (c->state, c->digest, c->sender, c->address);
}

void
journal_failed_status (const Commit *c, DeliverStatus *status, const DeliverRecipient *rcpt)
{
  if (c->state_busy)
    deliver_status_set (status, 451, "4.3.0", "<%s> Being delivered by another node, try again later",
                        rcpt->original);
  else if (c->state_failed)
    deliver_status_set (status, 451, "4.3.0", "<%s> Shared state unavailable, try again later", rcpt->original);
}
