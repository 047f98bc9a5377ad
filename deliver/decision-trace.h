/* decision-trace.h - inside deliver/: the decision trace of one recipient
 * as the pipeline collects it (decision-trace.c) and the records keep it
 * (lmtpd_trace; read back by trace-find.c).  Not part of deliver.h's
 * public interface.
 */
#pragma once

#include "deliver.h"
#include "sieve.h"

/* What happened to one recipient, a line per step, in order.  Every
 * function takes NULL (or a trace without steps): tracing is off. */
typedef struct {
  GString *steps;      /* lines, each ending in LF; NULL: not traced */
  GString *folders;    /* where it went: "Junk", "INBOX, Work", "discard", "redirect a@b" */
} DecisionTrace;

/* Steps are collected when [trace] enabled and the records are open. */
void decision_trace_init (DecisionTrace *t, DeliverContext *ctx, const LmtpdConfig *config);
void decision_trace_clear (DecisionTrace *t);
/* One step: the formatted line, with any line break in it made a space. */
void decision_trace_add (DecisionTrace *t, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
/* Lines made elsewhere (callout_trace_steps), each ending in LF. */
void decision_trace_add_lines (DecisionTrace *t, const char *lines);
/* A place the message went (a folder, "discard", "redirect ADDRESS"). */
void decision_trace_folder (DecisionTrace *t, const char *where);
/* The actions of a Sieve result, each with its script and line:
 * "sieve /home/u/.dovecot.sieve:7 fileinto \"Junk\"". */
void decision_trace_sieve (DecisionTrace *t, const SieveResult *r);
/* Queues the row of @recipient (state_records_post: never waits), and
 * now and then a bounded delete of expired rows. */
void decision_trace_post (DecisionTrace *t, DeliverContext *ctx, const LmtpdConfig *config,
                          const DeliverMessage *msg, const char *recipient, const DeliverStatus *status);
/* The Message-ID without <> and blanks, as traces are found by it. */
char *decision_trace_message_id (const char *value);
