/* ctl-replay.c - lmtpctl replay: the recorded calls of a service made
 * again against its servers or another one, and the verdicts that differ.
 *
 *   lmtpctl [-c FILE] replay --service NAME [--since T] [--server ADDR] [--limit N]
 *
 * T: unix seconds, an age (30m, 2h, 1d) or an ISO 8601 time.  One line per
 * recipient whose verdict differs ("CALLID rcpt: was reject, now accept"),
 * then "N calls, M recipients, K differ".  Nothing is delivered.  Exit 0
 * (differences or not), 66 when nothing is recorded, 69 when the server
 * cannot be reached, 75 when the records do not answer.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "deliver.h"
#include "ocp.h"

typedef struct {
  char *service, *since, *server;
  int limit;
} ReplayArgs;

/* Prints the recipients of @call whose verdict now differs; their number. */
static guint
print_differences (const DeliverRecordedCall *call, char **now)
{
  guint k = 0;

  for (guint i = 0; call->recipients[i] && now[i]; i++)
    {
      const char *was = call->verdicts && i < g_strv_length (call->verdicts) ? call->verdicts[i] : "?";
      if (strcmp (was, now[i]) == 0)
        continue;
      printf ("%s %s: was %s, now %s\n", call->id, call->recipients[i], was, now[i]);
      k++;
    }
  return k;
}

/* Replays @calls; the exit code.  Stops at a server that cannot be
 * reached; a call that fails otherwise (its copy expired) is reported. */
static int
replay_all (DeliverContext *ctx, const LmtpdConfig *config, GPtrArray *calls, const char *server)
{
  guint rcpts = 0, differ = 0, failed = 0;

  for (guint i = 0; i < calls->len; i++)
    {
      const DeliverRecordedCall *call = calls->pdata[i];
      g_autoptr (GError) error = NULL;
      g_auto (GStrv) now = deliver_replay_call (ctx, config, call, server, &error);
      if (now == NULL && g_error_matches (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE))
        {
          fprintf (stderr, "lmtpctl: replay: %s\n", error->message);
          return ADMIN_EXIT_UNAVAILABLE;
        }
      if (now == NULL)
        {
          printf ("%s: not replayed: %s\n", call->id, error->message);
          failed++;
          continue;
        }
      rcpts += g_strv_length (call->recipients);
      differ += print_differences (call, now);
    }
  printf ("%u calls, %u recipients, %u differ", calls->len - failed, rcpts, differ);
  if (failed)
    printf (", %u not replayed", failed);
  printf ("\n");
  return ADMIN_EXIT_OK;
}

static int
replay_run_args (const LmtpdConfig *config, const ReplayArgs *a, gint64 since)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) calls = NULL;
  DeliverContext *ctx = deliver_context_new ();
  int code;

  if (!deliver_context_open_records (ctx, config, &error)
      || (calls = deliver_recorded_calls (ctx, a->service, since, a->limit, &error)) == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      deliver_context_unref (ctx);
      return ADMIN_EXIT_TEMPFAIL;
    }
  if (calls->len == 0)
    {
      fprintf (stderr, "lmtpctl: no recorded calls of service %s\n", a->service);
      code = ADMIN_EXIT_NOINPUT;
    }
  else
    code = replay_all (ctx, config, calls, a->server);
  deliver_context_close_callouts (ctx);
  deliver_context_unref (ctx);
  return code;
}

static gboolean
service_known (const LmtpdConfig *config, const char *name)
{
  for (guint i = 0; i < config->services->len; i++)
    if (strcmp (((LmtpdService *) config->services->pdata[i])->name, name) == 0)
      return TRUE;
  return FALSE;
}

static int
replay_run (const LmtpdConfig *config, int argc, char **argv)
{
  ReplayArgs a = { 0 };
  GOptionEntry entries[] = {
    { "service", 0, 0, G_OPTION_ARG_STRING, &a.service, "the recorded service", "NAME" },
    { "since", 0, 0, G_OPTION_ARG_STRING, &a.since, "calls at or after T (unix seconds, 2h, ISO 8601)", "T" },
    { "server", 0, 0, G_OPTION_ARG_STRING, &a.server, "call this server instead", "ADDR" },
    { "limit", 0, 0, G_OPTION_ARG_INT, &a.limit, "at most N calls (default 1000)", "N" },
    { NULL }
  };
  g_autoptr (GOptionContext) opts = g_option_context_new (NULL);
  g_autoptr (GError) error = NULL;
  gint64 since = 0;
  int code = ADMIN_EXIT_USAGE;

  g_option_context_add_main_entries (opts, entries, NULL);
  g_option_context_set_help_enabled (opts, FALSE);
  if (!g_option_context_parse (opts, &argc, &argv, &error) || argc != 1 || a.service == NULL || a.limit < 0)
    fprintf (stderr, "lmtpctl: replay: %s\n", error ? error->message : "--service NAME is needed");
  else if (a.since && !admin_parse_since (a.since, &since))
    fprintf (stderr, "lmtpctl: replay: --since %s: not unix seconds, an age (2h) or ISO 8601\n", a.since);
  else if (!service_known (config, a.service))
    {
      fprintf (stderr, "lmtpctl: replay: no [service %s] in the configuration\n", a.service);
      code = ADMIN_EXIT_CONFIG;
    }
  else
    code = replay_run_args (config, &a, since);
  g_free (a.service);
  g_free (a.since);
  g_free (a.server);
  return code;
}

const AdminCommand admin_replay_command = {
  "replay", "replay --service NAME [--since T] [--server ADDR] [--limit N]", replay_run,
};
