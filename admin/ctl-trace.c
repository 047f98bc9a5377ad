/* ctl-trace.c - lmtpctl trace: what happened to a message, recipient by
 * recipient (the decision traces, deliver/trace-find.c).
 *
 *   lmtpctl [-c FILE] trace MESSAGE-ID|TRANSACTION-ID|QUEUE-ID
 *
 * Exit 66 when no trace is found, 75 when the records fail.
 */
#include "config.h"

#include <stdio.h>

#include "admin.h"
#include "deliver.h"

static int
trace_run (const LmtpdConfig *config, int argc, char **argv)
{
  g_autoptr (DeliverContext) ctx = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) traces = NULL;
  g_autofree char *text = NULL;

  if (argc != 2 || argv[1][0] == '\0')
    return ADMIN_EXIT_USAGE;
  ctx = deliver_context_new ();
  if (!deliver_context_open_records (ctx, config, &error)
      || (traces = deliver_trace_find (ctx, argv[1], &error)) == NULL)
    {
      fprintf (stderr, "lmtpctl: trace: %s\n", error->message);
      return ADMIN_EXIT_TEMPFAIL;
    }
  if (traces->len == 0)
    {
      fprintf (stderr, "lmtpctl: trace: nothing found for %s\n", argv[1]);
      return ADMIN_EXIT_NOINPUT;
    }
  text = deliver_trace_format (traces);
  fputs (text, stdout);
  return ADMIN_EXIT_OK;
}

const AdminCommand admin_trace_command = {
  "trace", "trace MESSAGE-ID|TRANSACTION-ID|QUEUE-ID", trace_run,
};
