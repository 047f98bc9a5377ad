/* sieve-lite.c - the command line: check a script, or show what it would
 * do with a message, without delivering anything.
 *
 *   sieve-lite check SCRIPT
 *   sieve-lite test SCRIPT MESSAGE [--from ADDR] [--to ADDR]
 *                   [--callout NAME=SPEC]... [--trace] [--date ISO8601]
 *                   [--duplicate ID]... [--dir DIR] [--global-dir DIR]
 *                   [--remote-ip IP] [--remote-host NAME]
 *
 * --callout gives what a callout service would have answered, turned into
 * spamtest, virustest and the callout test as lmtpd does it
 * (deliver/callout.c); --trace prints each command and test as it runs;
 * --date sets the run's "now" and local zone; each --duplicate is an id
 * the duplicate test has seen; --dir and --global-dir are where include
 * finds scripts, --remote-ip and --remote-host what environment says.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* --date: the run's "now", and its offset as the local zone */
static gboolean
set_now (SieveMessage *sm, const char *date, char *zone, gsize zone_size)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_iso8601 (date, NULL);
  gint64 off;

  if (t == NULL)
    return FALSE;
  off = g_date_time_get_utc_offset (t) / G_USEC_PER_SEC;
  sm->now = g_date_time_to_unix (t);
  g_snprintf (zone, zone_size, "%c%02d%02d", off < 0 ? '-' : '+', (int) (ABS (off) / 3600), (int) (ABS (off) % 3600 / 60));
  sm->zone = zone;
  return TRUE;
}

static void
print_trace (const char *line, gpointer data)
{
  printf ("%s\n", line);
}

typedef struct {
  const char *from, *to;
  char **callouts;      /* NAME=SPEC, or NULL */
  gboolean trace;
  const char *date;     /* --date, or NULL */
  char **seen;          /* --duplicate ids, or NULL */
} TestOptions;

/* The envelope, the callouts and the trace as the options give them. */
static gboolean
test_setup (const TestOptions *o, SieveMessage *sm, GArray *cs, GPtrArray *keep, char *zone, gsize zone_size,
            GError **error)
{
  sm->envelope_from = o->from ? o->from : "";
  sm->envelope_to = o->to ? o->to : "";
  sm->delimiter = "+";
  sm->spamtest = sm->spamtest_percent = sm->virustest = -1;
  if (o->trace)
    sm->trace = print_trace;
  if (o->date && !set_now (sm, o->date, zone, zone_size))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--date %s: not an ISO 8601 date-time", o->date);
      return FALSE;
    }
  return cli_callouts_apply (o->callouts, sm, cs, keep, error);
}

/* sieve-lite test: runs @script on the message in @path and prints what
 * it would do; the exit status as main's. */
static int
test_message (const SieveScript *script, const char *path, const TestOptions *o)
{
  char zone[8];
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) cs = g_array_new (FALSE, TRUE, sizeof (SieveCallout));
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  CliMessage m = { NULL };
  CliSite site = { 0 };
  SieveMessage sm = { 0 };
  SieveResult r = { 0 };
  int status;

  if (!test_setup (o, &sm, cs, keep, zone, sizeof zone, &error))
    {
      fprintf (stderr, "sieve-lite: %s\n", error->message);
      return 64;
    }
  if ((status = cli_message_open (&m, path, &sm)) != 0)
    return status;
  m.seen = o->seen;
  cli_site_init (&site, &sm);
  sieve_run (script, &sm, &r);
  cli_print_result (&r);
  sieve_result_clear (&r);
  cli_site_clear (&site);
  cli_message_clear (&m);
  return 0;
}

#define USAGE "usage: sieve-lite check SCRIPT | sieve-lite test SCRIPT MESSAGE [--from A] [--to A] " \
              "[--callout NAME=SPEC]... [--trace] [--date ISO8601] [--duplicate ID]... [--dir DIR] "\
              "[--global-dir DIR] [--remote-ip IP] [--remote-host NAME]\n"

#define HELP_TEXT \
  "--callout NAME=SPEC says what callout service NAME answered, as lmtpd hands it to the\n" \
  "script (repeat it for more services).  SPEC is comma-separated: first a verdict\n" \
  "(accept, reject, tempfail, discard, quarantine, redirect; default accept) or a score,\n" \
  "then any of verdict=V, score=S, threshold=T (default 5), labels=L1,L2,...\n" \
  "The first score becomes spamtest (1 + 9 x score / (2 x threshold)) and spamtestplus;\n" \
  "the labels virus and virus-scanned make virustest 5 and 1.  Examples:\n" \
  "  --callout spam=8.5   --callout av=reject,labels=virus\n" \
  "  --callout spam=accept,score=3.2,threshold=6,labels=ham\n" \
  "--trace prints each command and test as it runs, with its line and a test's\n" \
  "result (\"3: if header :contains \\\"subject\\\" \\\"x\\\" -> false\"), at most 1000 lines.\n"

int
main (int argc, char **argv)
{
  g_autofree char *from = NULL, *to = NULL, *date = NULL;
  g_auto (GStrv) callouts = NULL, seen = NULL;
  gboolean trace = FALSE;
  g_autoptr (GOptionContext) ctx = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  g_autoptr (SieveScript) script = NULL;
  gsize len;
  GOptionEntry entries[] = {
    { "from", 'f', 0, G_OPTION_ARG_STRING, &from, "Envelope sender", "ADDR" },
    { "to", 't', 0, G_OPTION_ARG_STRING, &to, "Envelope recipient", "ADDR" },
    { "callout", 'c', 0, G_OPTION_ARG_STRING_ARRAY, &callouts, "A callout service's result (below)", "NAME=SPEC" },
    { "trace", 0, 0, G_OPTION_ARG_NONE, &trace, "Print each command and test as it runs", NULL },
    { "date", 0, 0, G_OPTION_ARG_STRING, &date, "The time of the run, and its offset as the local zone",
      "2026-12-07T10:00:00+01:00" },
    { "duplicate", 0, 0, G_OPTION_ARG_STRING_ARRAY, &seen, "An id the duplicate test has seen", "ID" },
    { NULL }
  };

  ctx = g_option_context_new ("check SCRIPT | test SCRIPT MESSAGE - check or try a Sieve script");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx, HELP_TEXT);
  g_option_context_add_main_entries (ctx, cli_site_entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc < 3
      || (strcmp (argv[1], "check") && strcmp (argv[1], "test")) || (!strcmp (argv[1], "test") && argc < 4))
    {
      fprintf (stderr, USAGE);
      return 64;
    }
  if (!g_file_get_contents (argv[2], &text, &len, &error))
    {
      fprintf (stderr, "sieve-lite: %s\n", error->message);
      return 66;
    }
  g_mime_init ();
  script = sieve_compile (text, len, &error);
  if (script == NULL)
    {
      fprintf (stderr, "%s:%s\n", argv[2], error->message);
      return 65;
    }
  if (!strcmp (argv[1], "check"))
    {
      printf ("%s: OK\n", argv[2]);
      return 0;
    }
  return test_message (script, argv[3], &(TestOptions) { from, to, callouts, trace, date, seen });
}

