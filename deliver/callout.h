/* callout.h - inside deliver/: OPES callouts and their verdicts for the
 * pipeline (callout.c).  Not part of deliver.h's public interface.
 */
#pragma once

#include "deliver.h"
#include "ocp.h"
#include "sieve.h"

typedef struct CalloutOutcome CalloutOutcome;

/* What one service did for a recipient (or its group). */
struct CalloutOutcome {
  const LmtpdService *service;
  /* OUT_SHADOW: a shadow service answered; its would-be verdict is kept
   * in verdict, never applied */
  enum { OUT_APPLIED, OUT_SKIPPED, OUT_BYPASSED, OUT_FAILED, OUT_SHADOW } state;
  OcpVerdict verdict;
  char *why;
  char *server;             /* the endpoint that answered (or failed last), or NULL */
  gint64 elapsed_us;        /* the call's time */
};

/* "skipped", "bypassed", "failed", "shadow", else the verdict's word. */
const char *callout_outcome_word (const CalloutOutcome *o);
/* A service answered (applied or shadow): its verdict is there. */
gboolean callout_outcome_answered (const CalloutOutcome *o);

typedef struct {
  GPtrArray *outcomes;      /* CalloutOutcome*, in chain order */
} CalloutResult;

typedef enum {
  CALLOUT_ACCEPT,
  CALLOUT_QUARANTINE,
  CALLOUT_REDIRECT,
  CALLOUT_DISCARD,
  CALLOUT_TEMPFAIL,
  CALLOUT_REJECT,
} CalloutKind;

/* The combined verdict of a chain; pointers borrow from the result. */
typedef struct {
  CalloutKind kind;
  const CalloutOutcome *decider;
  const char *folder;       /* quarantine or delivery folder, or NULL */
  const char *redirect;
  GBytes *header;           /* adapted header part, or NULL */
  gboolean has_body;
  int body_fd;              /* adapted body part */
  guint64 body_len;
} CalloutDecision;

/* Runs the DATA-stage services for @rcpt (shared with the recipients of
 * the same group through @shared).  NULL if no service applies.  *owned
 * is set when the caller must free the result. */
const CalloutResult *callout_run (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                                  const DeliverRecipient *rcpt, DeliverShared *shared, CalloutResult **owned);
/* RCPT-stage services: FALSE with @status when they refuse the recipient.
 * @steps (or NULL) gets their lines of the decision trace. */
gboolean callout_rcpt_stage (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                             DeliverRecipient *rcpt, GString *steps, DeliverStatus *status);
void callout_result_free (CalloutResult *r);
/* The table of calls shared by the recipients of one transaction. */
GHashTable *callout_shared_table_new (void);
void callout_decide (const LmtpdConfig *config, const CalloutResult *r, const DeliverRecipient *rcpt,
                     CalloutDecision *d);
/* The decision is to quarantine into the store ([service] quarantine = store). */
gboolean callout_quarantines_to_store (const CalloutDecision *d);
/* The deciding service's name, and the reason it gave (its reply text or
 * folder), or NULL. */
const char *callout_decision_service (const CalloutDecision *d);
const char *callout_decision_reason (const CalloutDecision *d);
void callout_refusal (const LmtpdConfig *config, const CalloutDecision *d, const DeliverRecipient *rcpt,
                      DeliverStatus *status);
/* "OPES-System: ...\nOPES-Via: ...\n", or "" when no service is configured. */
char *callout_trace (const LmtpdConfig *config, const CalloutResult *r, const char *rcpt_trace);
gboolean callout_needs_new_header (const CalloutResult *r, const CalloutDecision *d);
char *callout_new_header (const DeliverMessage *msg, const CalloutResult *r, const CalloutDecision *d);
/* Flags the services asked for, normalized, or NULL.  Free with g_free. */
char *callout_flags (const CalloutResult *r);

/* The decision trace's lines of @r's calls, in chain order, each ending
 * in LF: "callout STAGE NAME server=ENDPOINT time=Nms verdict=V applied
 * reason=\"...\"", "... failed: on_failure=accept ...", "... bypassed". */
void callout_trace_steps (const CalloutResult *r, const char *stage, GString *out);

/* What the services said, as Sieve sees it (plain values, RFC 5235
 * spamtest/virustest and the callout test).  Strings borrow from @r or
 * are kept alive in @keep. */
void callout_for_sieve (const CalloutResult *r, SieveMessage *sm, GArray *callouts, GPtrArray *keep);

/* ---- shared with recording and replay (record.c, replay.c) ---- */
/* @sv's endpoints and limits for the OCP client; strings borrow from @sv. */
void callout_service_config (const LmtpdService *sv, OcpServiceConfig *out);
/* The verdict as traced: "accept", "modify" (accepted with changes),
 * "reject", "quarantine", ... */
const char *callout_verdict_word (const OcpVerdict *v);
/* The same for @address: its own section (profile 2), else the call's. */
const char *callout_rcpt_verdict_word (const OcpVerdict *v, const char *address);
