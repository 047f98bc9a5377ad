/* sieve-actions.c - what a run decides: actions with their conflicts
 * (RFC 5429 2.1) and duplicates (RFC 5228 2.10.3), and vacation
 * (RFC 5230).
 */
#include "config.h"

#include <string.h>

#include "sieve-run.h"

static guint
max_actions (SieveRun *run)
{
  return run->m->max_actions ? run->m->max_actions : SIEVE_MAX_ACTIONS;
}

static gboolean
is_reject (SieveActionKind kind)
{
  return kind == SIEVE_REJECT || kind == SIEVE_EREJECT;
}

/* Neither delivers nor answers the message: goes with reject (RFC 5429
 * 2.1 names keep, fileinto, redirect and vacation; a notification is
 * about the message, as Pigeonhole has it). */
static gboolean
goes_with_reject (SieveActionKind kind)
{
  return kind == SIEVE_DISCARD || kind == SIEVE_NOTIFY;
}

/* RFC 5429 2.1: reject does not go with anything that delivers or
 * answers the message (a runtime error, as in Pigeonhole) */
static gboolean
conflicts (SieveRun *run, SieveActionKind kind)
{
  for (guint i = 0; i < run->r->actions->len; i++)
    {
      SieveActionKind o = ((SieveAction *) run->r->actions->pdata[i])->kind;
      if ((is_reject (kind) && !goes_with_reject (o)) || (is_reject (o) && !goes_with_reject (kind)))
        {
          g_set_error (&run->error, SIEVE_ERROR, SIEVE_ERROR_RUNTIME, "%s conflicts with %s",
                       sieve_action_name (kind), sieve_action_name (o));
          return TRUE;
        }
    }
  return FALSE;
}

/* The mailbox keep or fileinto stores into; NULL for other actions. */
static const char *
store_target (SieveActionKind kind, const char *arg)
{
  if (kind == SIEVE_KEEP || (kind == SIEVE_FILEINTO && g_ascii_strcasecmp (arg, "INBOX") == 0))
    return "INBOX";
  return kind == SIEVE_FILEINTO ? arg : NULL;
}

/* The same mailbox twice is stored once (RFC 5228 2.10.3), with the last
 * flag list (RFC 5232 3: "the last flag list value MUST win"; takes
 * @flags then) and the header of the first (as Pigeonhole: the copy is
 * the one the first action made).  The same address twice is sent once. */
static gboolean
duplicate (SieveRun *run, SieveActionKind kind, const char *arg, char **flags)
{
  const char *target = store_target (kind, arg);

  for (guint i = 0; i < run->r->actions->len; i++)
    {
      SieveAction *o = run->r->actions->pdata[i];
      if (kind == SIEVE_REDIRECT && o->kind == kind && g_strcmp0 (o->argument, arg) == 0)
        return TRUE;
      if (target && g_strcmp0 (store_target (o->kind, o->argument), target) == 0)
        {
          g_free (o->flags);
          o->flags = g_steal_pointer (flags);
          return TRUE;
        }
    }
  return FALSE;
}

SieveAction *
sieve_run_new_action (SieveRun *run, SieveActionKind kind)
{
  SieveAction *x = g_new0 (SieveAction, 1);

  x->kind = kind;
  x->line = run->command ? (guint) run->command->line : 0;
  /* the innermost include running, if any (sieve-include.c's chain) */
  x->script = run->chain && run->chain->len ? g_strdup (run->chain->pdata[run->chain->len - 1]) : NULL;
  x->edits_before = run->r->edits->len;
  x->changes_before = run->r->changes ? run->r->changes->len : 0;
  return x;
}

/* Takes @arg and @flags. */
void
sieve_run_action (SieveRun *run, SieveActionKind kind, char *arg, char *flags, gboolean copy)
{
  SieveAction *x;

  /* an expansion of the arguments may have failed the run */
  if (run->error || run->r->actions->len >= max_actions (run))
    sieve_run_fail (run, SIEVE_ERROR_LIMIT, "too many actions");
  if (run->error || conflicts (run, kind) || duplicate (run, kind, arg, &flags))
    {
      g_free (arg);
      g_free (flags);
      return;
    }
  x = sieve_run_new_action (run, kind);
  x->argument = arg;
  x->flags = flags;
  x->copy = copy;
  g_ptr_array_add (run->r->actions, x);
}

/* 4.2: the same arguments are the same vacation */
static char *
vacation_handle (const SieveVacation *v, const char *reason)
{
  g_autoptr (GChecksum) h = g_checksum_new (G_CHECKSUM_SHA256);

  g_checksum_update (h, (const guchar *) reason, -1);
  g_checksum_update (h, (const guchar *) "\n", 1);
  if (v->subject)
    g_checksum_update (h, (const guchar *) v->subject, -1);
  g_checksum_update (h, (const guchar *) "\n", 1);
  if (v->from)
    g_checksum_update (h, (const guchar *) v->from, -1);
  g_checksum_update (h, (const guchar *) (v->mime ? "\nmime" : "\n"), -1);
  return g_strndup (g_checksum_get_string (h), 32);
}

/* RFC 5230 4: one vacation per run; it leaves the implicit keep alone. */
void
sieve_run_vacation (SieveRun *run, const SieveArgs *a)
{
  SieveVacation *v;
  SieveAction *x;

  for (guint i = 0; i < run->r->actions->len; i++)
    {
      SieveActionKind o = ((SieveAction *) run->r->actions->pdata[i])->kind;
      if (o == SIEVE_VACATION || is_reject (o))
        {
          g_set_error (&run->error, SIEVE_ERROR, SIEVE_ERROR_RUNTIME, o == SIEVE_VACATION
                       ? "more than one vacation action" : "vacation conflicts with reject");
          return;
        }
    }
  v = g_new0 (SieveVacation, 1);
  /* RFC 5230 4.1: :days under the minimum (1) is the minimum; RFC 6131 2:
   * :seconds from 0 to 2^31, the caller's bounds applied later */
  v->days = a->has_seconds ? 0 : a->has_days ? (guint) MIN (MAX (a->days, 1), 365) : 7;
  v->seconds = a->has_seconds ? (guint) MIN (a->seconds, G_MAXINT32) : v->days * 86400;
  v->subject = a->subject ? sieve_run_expand (run, a->subject) : NULL;
  v->from = a->from ? sieve_run_expand (run, a->from) : NULL;
  v->addresses = a->addresses ? sieve_run_expand_list (run, a->addresses) : NULL;
  v->mime = a->mime;
  x = sieve_run_new_action (run, SIEVE_VACATION);
  x->argument = sieve_run_expand (run, sieve_args_string (a, 0));
  x->vacation = v;
  v->handle = a->handle ? sieve_run_expand (run, a->handle) : vacation_handle (v, x->argument);
  if (run->r->actions->len >= max_actions (run))
    sieve_run_fail (run, SIEVE_ERROR_LIMIT, "too many actions");
  g_ptr_array_add (run->r->actions, x);
}

/* RFC 6131 2: "use of both parameters in the same vacation action MUST
 * result in a Sieve processing error" */
gboolean
sieve_check_vacation (const SieveNode *n, GError **error)
{
  if (n->parsed->has_days && n->parsed->has_seconds)
    {
      sieve_node_fail (error, n, ":days and :seconds together");
      return FALSE;
    }
  return TRUE;
}
