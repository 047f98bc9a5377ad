/* quarantine-release.c - a quarantined copy delivered after all, exactly
 * once, through the normal pipeline.
 *
 *   claim (held -> releasing, one UPDATE ... RETURNING) ▸ resolve the
 *   recipient (or --to) ▸ the stored copy as the spool ▸ the pipeline,
 *   without the service that quarantined it and without a second
 *   Return-Path/Delivered-To, with X-Quarantine-Released ▸ released
 *
 * The pipeline's duplicate journal for a release is one of its own
 * (ID.journal in [quarantine] dir, so no other release or process shares
 * it), keyed by the copy's digest and the recipient: its intent names the
 * file before the rename and is confirmed after it.  A release a crash interrupted leaves the row
 * "releasing"; once older than delivery_timeout, a new release (lmtpctl
 * quarantine release or expire) claims it again, and the journal turns a
 * copy that was already made into "Saved (duplicate)": no loss, no second
 * copy.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipeline.h"

#define RECOVER_BATCH 100 /* interrupted releases one call completes at most */

static char *
now_text (gint64 offset)
{
  return g_strdup_printf ("%" G_GINT64_FORMAT, g_get_real_time () / G_USEC_PER_SEC + offset);
}

/* Tests only: LMTPD_TEST_QUARANTINE_PAUSE=claimed|delivered stops the
 * release there for a minute, so a test can kill it at that point. */
static void
test_pause (const char *point)
{
  const char *want = g_getenv ("LMTPD_TEST_QUARANTINE_PAUSE");

  if (want == NULL || strcmp (want, point) != 0)
    return;
  fprintf (stderr, "quarantine release paused: %s\n", point);
  fflush (stderr);
  g_usleep (60 * G_USEC_PER_SEC);
}

/* held -> releasing, or a "releasing" row older than delivery_timeout (an
 * interrupted release) claimed again with its first releaser and address.
 * Fills q->released_by/to from the row.  G_IO_ERROR_EXISTS when refused. */
static gboolean
claim (DeliverContext *ctx, const LmtpdConfig *config, DeliverQuarantined *q, const char *to, const char *who,
       GError **error)
{
  g_autofree char *now = now_text (0), *stale = now_text (-(gint64) config->delivery_timeout);
  const char *values[] = { q->id, who, to, now, stale };
  g_autoptr (StateRows) rows = NULL;

  rows = state_records_query (deliver_context_records (ctx),
                              "UPDATE lmtpd_quarantine SET state = 'releasing',"
                              " released_by = CASE WHEN state = 'held' THEN $2 ELSE released_by END,"
                              " released_to = CASE WHEN state = 'held' THEN $3 ELSE released_to END,"
                              " released_at = $4"
                              " WHERE id = $1 AND (state = 'held' OR (state = 'releasing' AND released_at < $5))"
                              " RETURNING released_by, released_to",
                              G_N_ELEMENTS (values), values, error);
  if (rows == NULL)
    return FALSE;
  if (rows->n_rows == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS, "%s is %s%s: not released", q->id, q->state,
                   strcmp (q->state, "releasing") == 0 ? " (under way)" : " already");
      return FALSE;
    }
  g_free (q->released_by);
  g_free (q->released_to);
  q->released_by = g_strdup (state_rows_get (rows, 0, 0));
  q->released_to = g_strdup (state_rows_get (rows, 0, 1));
  return TRUE;
}

/* releasing -> released (@ok) or back to held. */
static gboolean
finish (DeliverContext *ctx, const DeliverQuarantined *q, gboolean ok, GError **error)
{
  g_autofree char *now = now_text (0);
  const char *values[] = { q->id, now };

  if (ok)
    return state_records_exec (deliver_context_records (ctx),
                               "UPDATE lmtpd_quarantine SET state = 'released', released_at = $2"
                               " WHERE id = $1 AND state = 'releasing'",
                               2, values, NULL, error);
  return state_records_exec (deliver_context_records (ctx),
                             "UPDATE lmtpd_quarantine SET state = 'held', released_by = NULL, released_to = NULL,"
                             " released_at = NULL WHERE id = $1 AND state = 'releasing'",
                             1, values, NULL, error);
}

static DeliverRecipient *
resolve_target (DeliverContext *ctx, const LmtpdConfig *config, const char *address, DeliverStatus *status)
{
  g_autofree char *local = NULL, *domain = NULL;
  const char *why;

  if (!deliver_address_parse (address, TRUE, &local, &domain, &why) || domain == NULL)
    {
      deliver_status_set (status, 553, "5.1.3", "<%s> bad address", address);
      return NULL;
    }
  return deliver_resolve (ctx, config, local, domain, status);
}

/* The stored copy as a finished spool. */
static DeliverSpool *
spool_from_copy (DeliverContext *ctx, const LmtpdConfig *config, const char *id, GError **error)
{
  g_autoptr (DeliverSpool) spool = NULL;
  int fd = deliver_quarantine_open_copy (ctx, config, id, error);
  char buf[64 * 1024];
  gssize n = 0;

  if (fd < 0 || (spool = deliver_spool_new (ctx, config->spool_dir, error)) == NULL)
    {
      if (fd >= 0)
        close (fd);
      return NULL;
    }
  while ((n = read (fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0 && !deliver_spool_write (spool, buf, n, error))
      break;
  if (n < 0)
    g_set_error (error, DELIVER_ERROR, errno, "quarantine copy %s: %s", id, g_strerror (errno));
  close (fd);
  if ((error && *error) || !deliver_spool_finish (spool, error))
    return NULL;
  return g_steal_pointer (&spool);
}

static char *
released_header (const DeliverQuarantined *q)
{
  g_autoptr (GDateTime) t = g_date_time_new_now_local ();
  g_autofree char *date = g_date_time_format (t, "%a, %d %b %Y %H:%M:%S %z");
  g_autofree char *by = util_sanitize (q->released_by ? q->released_by : "unknown", 64);

  return g_strdup_printf ("X-Quarantine-Released: %s by %s at %s\n", q->id, by, date);
}

/* The claimed copy through the pipeline; TRUE when @status is 2xx. */
static gboolean
deliver_claimed (DeliverContext *ctx, const LmtpdConfig *config, const DeliverQuarantined *q,
                 DeliverStatus *status, GError **error)
{
  const char *address = q->released_to ? q->released_to : q->recipient;
  g_autoptr (DeliverRecipient) rcpt = resolve_target (ctx, config, address, status);
  g_autoptr (DeliverSpool) spool = NULL;
  g_autofree char *journal_name = quarantine_journal_name (q->id);
  g_autofree char *journal_path = g_build_filename (config->quarantine_dir, journal_name, NULL);
  g_autofree char *header = released_header (q), *path = NULL;
  DeliverMessage msg = { 0 };

  if (rcpt == NULL || (spool = spool_from_copy (ctx, config, q->id, error)) == NULL)
    return FALSE;
  msg.journal = deliver_dedupe_open (journal_path, MAX (config->quarantine_keep, 86400), error);
  if (msg.journal == NULL)
    return FALSE;
  rcpt->skip_service = g_strdup (q->service);
  msg.id = q->id;
  msg.sender = q->sender;
  msg.protocol = "local";
  msg.received_us = g_get_real_time ();
  msg.spool = spool;
  msg.released = header;
  deliver_pipeline_run (ctx, config, &msg, rcpt, NULL, status, &path);
  deliver_dedupe_free (msg.journal);
  g_message ("quarantine: id=%s released by=%s rcpt=<%s> mailbox=%s status=%u %s", q->id,
             q->released_by ? q->released_by : "", rcpt->address, path ? path : rcpt->mailbox, status->code,
             status->enhanced);
  return status->code / 100 == 2;
}

gboolean
deliver_quarantine_release (DeliverContext *ctx, const LmtpdConfig *config, const char *id, const char *to,
                            const char *who, DeliverStatus *status, GError **error)
{
  g_autoptr (DeliverQuarantined) q = deliver_quarantine_get (ctx, id, error);
  g_autofree char *by = util_sanitize (who ? who : "unknown", 64);
  DeliverStatus own = { 0 };
  DeliverStatus *st = status ? status : &own;
  g_autoptr (GError) local = NULL;
  gboolean ok;

  if (q == NULL || !claim (ctx, config, q, to, by, error))
    return FALSE;
  test_pause ("claimed");
  ok = deliver_claimed (ctx, config, q, st, &local);
  test_pause ("delivered");
  if (!ok && local == NULL)
    g_set_error (&local, G_IO_ERROR, G_IO_ERROR_FAILED, "%u %s %s", st->code, st->enhanced,
                 st->text ? st->text : "");
  if (!finish (ctx, q, ok, error))
    ok = FALSE; /* delivered, not marked: the next release completes it */
  else if (!ok)
    g_propagate_error (error, g_steal_pointer (&local));
  deliver_status_clear (&own);
  return ok;
}

guint
deliver_quarantine_recover (DeliverContext *ctx, const LmtpdConfig *config, gint64 claimed_before)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC, limit = now - (gint64) config->delivery_timeout;
  g_autofree char *stale = g_strdup_printf ("%" G_GINT64_FORMAT, claimed_before ? MIN (limit, claimed_before)
                                                                                 : limit);
  const char *values[] = { stale };
  g_autoptr (StateRows) rows = NULL;
  guint done = 0;

  if (deliver_context_records (ctx) == NULL)
    return 0;
  rows = state_records_query (deliver_context_records (ctx),
                              "SELECT id, released_by FROM lmtpd_quarantine WHERE state = 'releasing'"
                              " AND released_at < $1 LIMIT " G_STRINGIFY (RECOVER_BATCH), 1, values, NULL);
  for (guint i = 0; rows && i < rows->n_rows; i++)
    {
      g_autoptr (GError) error = NULL;
      const char *id = state_rows_get (rows, i, 0);
      g_message ("quarantine: id=%s completing an interrupted release", id);
      if (deliver_quarantine_release (ctx, config, id, NULL, state_rows_get (rows, i, 1), NULL, &error))
        done++;
      else
        g_warning ("quarantine: id=%s interrupted release not completed: %s", id, error->message);
    }
  return done;
}
