/* cli-callout.c - sieve-lite test --callout NAME=SPEC: what a callout
 * service would have answered, handed to the script as lmtpd does it
 * (deliver/callout.c): the callout test, spamtest and virustest.
 */
#include "config.h"

#include <string.h>

#include "cli.h"

#define MAX_CALLOUTS 32
#define MAX_CALLOUT_ITEMS 64

/* what deliver/callout.c can hand to Sieve (ocp_verdict_name) */
static const char *const verdicts[] = { "accept", "reject", "tempfail", "discard", "quarantine", "redirect", NULL };

typedef struct {
  SieveCallout c;
  const char *threshold;
} SimCallout;

static gboolean
is_number (const char *s)
{
  char *end;
  double d = g_ascii_strtod (s, &end);

  return end != s && *end == '\0' && d == d && d > -1e300 && d < 1e300;
}

static gboolean
callout_fail (GError **error, const char *arg, const char *why)
{
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--callout %s: %s", arg, why);
  return FALSE;
}

/* One item of SPEC into @c: "key=value", or a verdict or a score (first
 * item only), or one more label after labels=. */
static gboolean
callout_item (const char *item, guint i, gboolean *in_labels, GString *labels, SimCallout *c, const char **why)
{
  const char *eq = strchr (item, '=');
  g_autofree char *key = eq ? g_strndup (item, eq - item) : NULL;
  const char *val = eq ? eq + 1 : item;

  if (eq == NULL && *in_labels)
    key = g_strdup ("labels");
  else if (eq == NULL && i == 0)
    key = g_strdup (is_number (item) ? "score" : "verdict");
  *in_labels = key && !strcmp (key, "labels");
  if (key == NULL)
    *why = "an item without '=' only first (VERDICT or SCORE) or after labels=";
  else if (!strcmp (key, "verdict") && !g_strv_contains (verdicts, val))
    *why = "the verdict is not accept, reject, tempfail, discard, quarantine or redirect";
  else if ((!strcmp (key, "score") || !strcmp (key, "threshold")) && !is_number (val))
    *why = "score and threshold are decimal numbers";
  else if (*in_labels)
    g_string_append_printf (labels, "%s%s", labels->len ? "," : "", val);
  else if (!strcmp (key, "verdict") || !strcmp (key, "score") || !strcmp (key, "threshold"))
    *(key[0] == 'v' ? &c->c.verdict : key[0] == 's' ? &c->c.score : &c->threshold) = val;
  else
    *why = "keys are verdict, score, threshold and labels";
  return *why == NULL;
}

/* NAME=SPEC into @c; its strings stay in @keep. */
static gboolean
callout_parse (const char *arg, SimCallout *c, GPtrArray *keep, GError **error)
{
  const char *eq = strchr (arg, '=');
  g_autoptr (GString) labels = g_string_new (NULL);
  gboolean in_labels = FALSE;
  const char *why = NULL;
  char **items;

  if (eq == NULL || eq == arg || eq[1] == '\0')
    return callout_fail (error, arg, "give NAME=VERDICT or NAME=SCORE, then ,key=value items");
  memset (c, 0, sizeof *c);
  c->c.service = g_strndup (arg, eq - arg);
  g_ptr_array_add (keep, (gpointer) c->c.service);
  items = g_strsplit (eq + 1, ",", MAX_CALLOUT_ITEMS);
  for (guint i = 0; items[i]; i++)
    g_ptr_array_add (keep, items[i]); /* @c points into them */
  for (guint i = 0; items[i] && why == NULL; i++)
    callout_item (items[i], i, &in_labels, labels, c, &why);
  g_free (items);
  if (why)
    return callout_fail (error, arg, why);
  if (labels->len)
    {
      c->c.labels = g_strdup (labels->str);
      g_ptr_array_add (keep, (gpointer) c->c.labels);
    }
  if (c->c.verdict == NULL)
    c->c.verdict = "accept";
  if (c->c.score && c->threshold == NULL)
    c->threshold = "5"; /* the spam service's default */
  return TRUE;
}

/* As deliver/callout.c's callout_for_sieve: the first score with a
 * threshold is spamtest; the labels virus and virus-scanned virustest. */
static void
callouts_for_sieve (const SimCallout *sims, guint n, SieveMessage *sm, GArray *cs)
{
  sm->spamtest = sm->spamtest_percent = sm->virustest = 0;
  for (guint i = 0; i < n; i++)
    {
      g_auto (GStrv) labels = g_strsplit (sims[i].c.labels ? sims[i].c.labels : "", ",", -1);
      g_array_append_val (cs, sims[i].c);
      if (sims[i].c.score && sm->spamtest == 0)
        sieve_spamtest_from_score (sims[i].c.score, sims[i].threshold, &sm->spamtest, &sm->spamtest_percent);
      for (guint k = 0; labels[k]; k++)
        if (!strcmp (labels[k], "virus"))
          sm->virustest = 5;
        else if (!strcmp (labels[k], "virus-scanned") && sm->virustest == 0)
          sm->virustest = 1;
    }
  sm->callouts = (const SieveCallout *) (void *) cs->data;
  sm->n_callouts = cs->len;
}

gboolean
cli_callouts_apply (char **specs, SieveMessage *sm, GArray *cs, GPtrArray *keep, GError **error)
{
  SimCallout sims[MAX_CALLOUTS];
  guint n = specs ? g_strv_length (specs) : 0;

  if (n == 0)
    return TRUE;
  if (n > MAX_CALLOUTS)
    return callout_fail (error, specs[MAX_CALLOUTS], "too many callouts");
  for (guint i = 0; i < n; i++)
    if (!callout_parse (specs[i], &sims[i], keep, error))
      return FALSE;
  callouts_for_sieve (sims, n, sm, cs);
  return TRUE;
}
