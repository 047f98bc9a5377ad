/* filter.h - inside deliver/: the Sieve step of the pipeline (filter.c).
 * Not part of deliver.h's public interface.
 */
#pragma once

#include "callout.h"
#include "deliver.h"
#include "sieve.h"

/* The message as this recipient would store it: @prefix, then @content. */
typedef struct FilterView FilterView;

typedef struct {
  SieveResult result;       /* merged over the before, user and after scripts */
  gboolean ran;             /* some script ran */
  char *user_script;        /* the user's script path (whether or not it exists) */
} FilterOutcome;

/* Runs the configured scripts for @rcpt.  Never fails: a script that does
 * not compile or fails at run time leaves an implicit keep, a log line and
 * a line in "<script>.log". */
void filter_run (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
                 const CalloutResult *callouts, const char *prefix, const DeliverContent *content,
                 FilterOutcome *out);
void filter_outcome_clear (FilterOutcome *out);

/* The header block @header (LF ends, ending with the empty line) with
 * the editheader edits applied. */
char *filter_edit_header (const char *header, const GPtrArray *edits);

/* redirect: sends the message on with loop protection.  FALSE if it was
 * not sent (the caller keeps the message instead). */
gboolean filter_redirect (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
                          const char *target, const char *prefix, const DeliverContent *content);

/* vacation: answers if RFC 5230 4.5/4.6 allow it and the reply log has
 * not seen this sender within :days. */
void filter_vacation (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
                      const SieveAction *action, const FilterOutcome *outcome, const char *prefix,
                      const DeliverContent *content);
