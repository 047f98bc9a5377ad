/* callout-outcome.c - what a service did, in words: a verdict's word,
 * an outcome's, and the decision trace's lines of a callout result.  The
 * words callout.c, the trace and the recorded calls share; below all
 * three, calling none of them.
 */
#include "config.h"

#include "callout.h"
#include "lmtpd-util.h"

/* ---- words ------------------------------------------------------------------ */

const char *
callout_verdict_word (const OcpVerdict *v)
{
  if (v->verdict == OCP_VERDICT_ACCEPT
      && (v->header || v->body_fd >= 0 || v->add_headers || v->remove_headers || v->subject_tag || v->flags
          || v->folder))
    return "modify";
  return ocp_verdict_name (v->verdict);
}

const char *
callout_rcpt_verdict_word (const OcpVerdict *v, const char *address)
{
  const OcpRecipientVerdict *rv = ocp_verdict_for_recipient (v, address);

  return callout_verdict_word (rv ? &rv->verdict : v);
}

const char *
callout_outcome_word (const CalloutOutcome *o)
{
  switch (o->state)
    {
    case OUT_SKIPPED: return "skipped";
    case OUT_BYPASSED: return "bypassed";
    case OUT_FAILED: return "failed";
    case OUT_SHADOW: return "shadow";
    default: break;
    }
  return callout_verdict_word (&o->verdict);
}

gboolean
callout_outcome_answered (const CalloutOutcome *o)
{
  return o->state == OUT_APPLIED || o->state == OUT_SHADOW;
}

/* ---- a CalloutResult's lines -------------------------------------------- */

static const char *
on_failure_name (LmtpdFailPolicy policy)
{
  switch (policy)
    {
    case LMTPD_FAIL_ACCEPT: return "accept";
    case LMTPD_FAIL_REJECT: return "reject";
    default: return "tempfail";
    }
}

/* " name=\"value\"" for a value from a service or an error: one line, bounded. */
static void
append_quoted (GString *out, const char *name, const char *value)
{
  g_autofree char *shown = NULL;

  if (value == NULL || value[0] == '\0')
    return;
  shown = util_sanitize (value, 200);
  g_string_append_printf (out, " %s=\"%s\"", name, shown);
}

/* How the outcome counted: applied, failed and by which policy, or the
 * outcome's own word (bypassed, shadow...). */
static void
append_disposition (GString *out, const CalloutOutcome *o)
{
  if (o->state == OUT_APPLIED)
    g_string_append (out, " applied");
  else if ((o->state == OUT_FAILED || o->state == OUT_SKIPPED) && o->service->shadow)
    g_string_append (out, " failed: shadow");
  else if (o->state == OUT_FAILED || o->state == OUT_SKIPPED)
    g_string_append_printf (out, " failed: on_failure=%s", on_failure_name (o->service->on_failure));
  else
    g_string_append_printf (out, " %s", callout_outcome_word (o));
}

void
callout_trace_steps (const CalloutResult *r, const char *stage, GString *out)
{
  for (guint i = 0; r && i < r->outcomes->len; i++)
    {
      const CalloutOutcome *o = r->outcomes->pdata[i];
      gboolean got = callout_outcome_answered (o);   /* applied or shadow: a verdict to show */

      g_string_append_printf (out, "callout %s %s", stage, o->service->name);
      if (o->state != OUT_BYPASSED)
        g_string_append_printf (out, " server=%s time=%" G_GINT64_FORMAT "ms", o->server ? o->server : "-",
                                o->elapsed_us / 1000);
      if (got)
        g_string_append_printf (out, " verdict=%s", callout_verdict_word (&o->verdict));
      append_disposition (out, o);
      append_quoted (out, "reason", got ? o->verdict.reply_text : o->why);
      if (got)
        {
          append_quoted (out, "score", o->verdict.score);
          append_quoted (out, "folder", o->verdict.folder);
          append_quoted (out, "redirect", o->verdict.redirect);
        }
      g_string_append_c (out, '\n');
    }
}
