/* pipeline.h - inside deliver/: one recipient's delivery as the steps of
 * the pipeline (pipeline.c), the stores (store.c) and the Sieve actions
 * (apply-sieve.c) share it.  Not part of deliver.h's public interface.
 */
#pragma once

#include "callout.h"
#include "context.h"
#include "decision-trace.h"
#include "filter.h"

/* The duplicate journal learns of a delivery the moment its first copy
 * becomes visible. */
typedef struct {
  DeliverDedupe *dedupe;
  const char *digest;
  const char *sender;
  const char *address;
  gboolean recorded;
  gboolean pending;         /* only the intent is written */
  gint64 deadline;          /* monotonic; past it nothing more is published */
  StateStore *state;        /* the shared journal, or NULL: @dedupe */
  gboolean state_failed;    /* PostgreSQL failed, on_error = tempfail: nothing more is published */
  gboolean state_busy;      /* another node holds the key: likewise */
} Commit;

/* One recipient's delivery, as its steps share it. */
typedef struct {
  DeliverContext *ctx;
  const LmtpdConfig *config;
  const DeliverMessage *msg;
  const DeliverRecipient *rcpt;   /* after a service's redirect, the recipient it named */
  DeliverShared *shared;          /* or NULL */
  Commit *commit;
  DeliverStatus *status;
  DecisionTrace *trace;           /* the steps so far (decision-trace.h) */
} Delivery;

typedef struct {
  const char *folder;
  gboolean folder_if_exists;
  gboolean create;          /* create the folder even without create_folders */
  const char *flags;
  const char *prefix;
  DeliverContent content;
  Commit *commit;
} Store;

/* ---- journal.c: the duplicate journal, shared or local ------------------- */

/* Fills @c for @ctx; STATE_YES: the recipient has this message already;
 * STATE_FAILED: PostgreSQL failed and on_error = tempfail (451 4.3.0).
 * With on_error = local, a failure falls back to the local journal. */
StateAnswer journal_seen (Commit *c, DeliverContext *ctx, guint window, const char *msg_id);
/* The intent before the file appears; FALSE: it must not appear. */
gboolean journal_intend (Commit *c, const char *path);
void journal_record (Commit *c);
void journal_forget (Commit *c);
/* Sets 451 4.3.0 when the shared state failed. */
void journal_failed_status (const Commit *c, DeliverStatus *status, const DeliverRecipient *rcpt);

/* ---- store.c ----------------------------------------------------------------- */

/* Stores @st for dv->rcpt; *@out_path gets the file written. */
gboolean store_copy (const Delivery *dv, const Store *st, char **out_path, GError **error);
/* The status of a store that failed with @error. */
void store_failed (const Delivery *dv, const GError *error);
/* "Mailbox is full", temporary or permanent as configured. */
void store_quota_status (const LmtpdConfig *config, DeliverStatus *status, const DeliverRecipient *rcpt);
/* Past the delivery's deadline (delivery_timeout)? */
gboolean store_past_deadline (const Commit *c);
void store_deadline_status (DeliverStatus *status, const DeliverRecipient *rcpt);
/* A DeliverCommitFunc (@data a Commit*, may be NULL): tells the
 * journal; FALSE before a file appears when past the deadline. */
gboolean store_commit_record (gpointer data, const char *path, gboolean visible);

/* ---- quarantine.c: the quarantine store --------------------------------- */

/* Stores @st (the copy as it would have been delivered) for dv->rcpt in
 * [quarantine] dir and indexes it; sets the status: 250 "quarantined as
 * ID" (*@out_path "quarantine:ID", for the log), or 451 (nothing visible
 * is left behind). */
void quarantine_store_copy (const Delivery *dv, const CalloutDecision *d, const Store *st, char **out_path);
/* "ID.journal": the duplicate journal of the release of ID. */
char *quarantine_journal_name (const char *id);
/* 16 lowercase hex digits (state_records_new_id): the only ids that name a file. */
gboolean quarantine_id_valid (const char *id);
/* "ID.msg" in [quarantine] dir. */
char *quarantine_file_name (const char *id);
/* [quarantine] dir, opened without following a symlink; -1 with @error. */
int quarantine_dir_open (const LmtpdConfig *config, GError **error);

/* ---- maildir.c -------------------------------------------------------------- */

/* Writes @header then @content to @fd (@path for errors). */
gboolean deliver_content_write (const char *header, const DeliverContent *content, int fd, const char *path,
                                GError **error);

/* ---- sieve-message.c -------------------------------------------------------- */

/* The message each Sieve action stores or sends: @header (the prefix and
 * the header part) and @body as received, with the edits (RFC 5293 7) and
 * the replace and enclose changes (RFC 5703) of @r made before it. */
typedef struct SieveMessages SieveMessages;
SieveMessages *sieve_messages_new (const Delivery *dv, const SieveResult *r, const char *header,
                                   const DeliverContent *body);
/* After @edits edits and @changes changes (@redirect: enclose left out,
 * RFC 5703 6); the header and files stay @m's.  FALSE if a new body could
 * not be written. */
gboolean sieve_messages_get (SieveMessages *m, guint edits, guint changes, gboolean redirect, const char **header,
                             DeliverContent *body, GError **error);
void sieve_messages_free (SieveMessages *m);

/* ---- apply-sieve.c ---------------------------------------------------------- */

/* Carries out @fo's result for dv->rcpt; @header_in_prefix: a service put
 * the header part into st->prefix already. */
void sieve_actions_apply (const Delivery *dv, Store *st, FilterOutcome *fo, gboolean header_in_prefix,
                          char **out_path, GError **error);
