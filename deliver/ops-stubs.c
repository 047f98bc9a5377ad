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

/* ---- quarantine (owner: quarantine) ---- */

void
deliver_quarantined_free (DeliverQuarantined *q)
{
  g_free (q);
}

GPtrArray *
deliver_quarantine_list (DeliverContext *ctx, const DeliverQuarantineFilter *filter, GError **error)
{
  not_yet (error, "quarantine");
  return NULL;
}

DeliverQuarantined *
deliver_quarantine_get (DeliverContext *ctx, const char *id, GError **error)
{
  not_yet (error, "quarantine");
  return NULL;
}

int
deliver_quarantine_open_copy (DeliverContext *ctx, const LmtpdConfig *config, const char *id, GError **error)
{
  not_yet (error, "quarantine");
  return -1;
}

gboolean
deliver_quarantine_release (DeliverContext *ctx, const LmtpdConfig *config, const char *id, const char *to,
                            const char *who, DeliverStatus *status, GError **error)
{
  not_yet (error, "quarantine");
  return FALSE;
}

gboolean
deliver_quarantine_delete (DeliverContext *ctx, const LmtpdConfig *config, const char *id, const char *who,
                           GError **error)
{
  not_yet (error, "quarantine");
  return FALSE;
}

gint64
deliver_quarantine_expire (DeliverContext *ctx, const LmtpdConfig *config, GError **error)
{
  not_yet (error, "quarantine");
  return -1;
}
