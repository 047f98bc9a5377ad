/* ops-stubs.c - placeholders for the issue-19 functions of deliver.h
 * until their owners implement them (each owner deletes its section).
 * Every stub fails with G_IO_ERROR_NOT_SUPPORTED: nothing pretends.
 */
#include "config.h"

#include "deliver.h"

static void
not_yet (GError **error, const char *what)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "%s: not built yet", what);
}

/* ---- traces (owner: trace) ---- */

void
deliver_trace_free (DeliverTrace *t)
{
  g_free (t);
}

GPtrArray *
deliver_trace_find (DeliverContext *ctx, const char *id, GError **error)
{
  not_yet (error, "trace");
  return NULL;
}

char *
deliver_trace_format (GPtrArray *traces)
{
  return g_strdup ("");
}
