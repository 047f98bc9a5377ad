/* record.h - inside deliver/: the verdict counts (verdict-counts.c) and
 * the recording of callout calls (record.c) that callout.c feeds, and the
 * envelope text replay.c reads back.  Not part of deliver.h.
 */
#pragma once

#include "deliver.h"
#include "ocp.h"

/* verdict-counts.c: one more @verdict of @service this hour, in memory;
 * posted to lmtpd_verdicts every few seconds.  Thread-safe, never blocks
 * on the database. */
typedef struct DeliverVerdictCounter DeliverVerdictCounter;
DeliverVerdictCounter *verdict_counter_new (void);
void verdict_counter_free (DeliverVerdictCounter *c);
void verdict_counts_add (DeliverContext *ctx, const char *service, const char *verdict, gboolean shadow);

/* record.c: the calls of the services [record] names (by default the
 * shadow ones), kept in lmtpd_calls with one copy per message in
 * [record] dir. */
typedef struct DeliverRecorder DeliverRecorder;
DeliverRecorder *recorder_new (void);
void recorder_free (DeliverRecorder *r);
/* TRUE when @sv's calls are to be recorded. */
gboolean record_wanted (const LmtpdConfig *config, const LmtpdService *sv);
/* Records one answered call: @req as sent (the spool as the message, whose
 * digest is @digest, or none at the rcpt stage) and @verdict as answered.
 * Never fails the delivery: a problem is logged. */
void record_call (DeliverContext *ctx, const LmtpdConfig *config, const LmtpdService *sv, const OcpRequest *req,
                  const OcpVerdict *verdict, const char *digest);

/* The envelope of @req as text (a GVariant), stored with the call. */
char *record_envelope_text (const OcpRequest *req);
/* That text back, as a request (fd -1) whose strings and arrays the
 * RecordEnvelope holds. */
typedef struct {
  OcpRequest req;
  GVariant *v;
  GPtrArray *rcpt_to, *orcpt; /* NULL-terminated, borrowing from v */
  GPtrArray *rcpt_data;       /* GHashTable* or NULL, parallel */
} RecordEnvelope;
gboolean record_envelope_parse (const char *text, RecordEnvelope *env, GError **error);
void record_envelope_clear (RecordEnvelope *env);
/* [record] dir, opened (created if missing); -1 with @error. */
int record_dir_open (const LmtpdConfig *config, GError **error);
