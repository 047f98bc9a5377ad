/* ctl-verdicts.c - lmtpctl verdicts: how many verdicts each callout
 * service gave per hour (lmtpd_verdicts), a shadow service's would-be
 * ones marked as such.
 *
 *   lmtpctl [-c FILE] verdicts [--since T]
 *
 * One line per hour, service and verdict: "HOUR SERVICE VERDICT N", with
 * " shadow" after a shadow service's.  T as for replay (default: 1d).
 * Exit 75 when the records do not answer.
 */
#include "config.h"

#include <stdio.h>

#include "admin.h"
#include "deliver.h"

static int
print_counts (const LmtpdConfig *config, gint64 since)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) counts = NULL;
  DeliverContext *ctx = deliver_context_new ();

  if (deliver_context_open_records (ctx, config, &error))
    counts = deliver_verdict_counts (ctx, since, &error);
  deliver_context_unref (ctx);
  if (counts == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return ADMIN_EXIT_TEMPFAIL;
    }
  for (guint i = 0; i < counts->len; i++)
    {
      const DeliverVerdictCount *c = counts->pdata[i];
      g_autoptr (GDateTime) hour = g_date_time_new_from_unix_utc (c->hour);
      g_autofree char *when = g_date_time_format (hour, "%Y-%m-%dT%H:00Z");
      printf ("%s %s %s %" G_GUINT64_FORMAT "%s\n", when, c->service, c->verdict, c->n, c->shadow ? " shadow" : "");
    }
  return ADMIN_EXIT_OK;
}

static int
verdicts_run (const LmtpdConfig *config, int argc, char **argv)
{
  g_autofree char *since_text = NULL;
  GOptionEntry entries[] = {
    { "since", 0, 0, G_OPTION_ARG_STRING, &since_text, "counts from the hour of T on", "T" },
    { NULL }
  };
  g_autoptr (GOptionContext) opts = g_option_context_new (NULL);
  g_autoptr (GError) error = NULL;
  gint64 since = g_get_real_time () / G_USEC_PER_SEC - 86400;

  g_option_context_add_main_entries (opts, entries, NULL);
  g_option_context_set_help_enabled (opts, FALSE);
  if (!g_option_context_parse (opts, &argc, &argv, &error) || argc != 1)
    {
      fprintf (stderr, "lmtpctl: verdicts: %s\n", error ? error->message : "no arguments besides --since");
      return ADMIN_EXIT_USAGE;
    }
  if (since_text && !admin_parse_since (since_text, &since))
    {
      fprintf (stderr, "lmtpctl: verdicts: --since %s: not unix seconds, an age (2h) or ISO 8601\n", since_text);
      return ADMIN_EXIT_USAGE;
    }
  return print_counts (config, since);
}

const AdminCommand admin_verdicts_command = {
  "verdicts", "verdicts [--since T]", verdicts_run,
};
