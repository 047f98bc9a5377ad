/* filter.h - inside deliver/: the Sieve step of the pipeline: running the
 * scripts (filter.c), their cache (script-cache.c), the message as they
 * see it (filter-view.c), redirect (filter.c) and vacation (vacation.c).
 * Not part of deliver.h's public interface.
 */
#pragma once

#include <gmime/gmime.h>

#include "callout.h"
#include "context.h"
#include "sieve.h"

/* Our loop mark on redirected messages. */
#define FILTER_REDIRECT_HEADER "X-Sieve-Redirected-From"

/* Fields editheader leaves alone besides sieve-lite's trace fields. */
extern const char *const filter_protected_fields[];

/* One recipient's message as it would be stored: @prefix, then @content. */
typedef struct {
  DeliverContext *ctx;
  const LmtpdConfig *config;
  const DeliverMessage *msg;
  const DeliverRecipient *rcpt;
  const char *prefix;
  const DeliverContent *content;
} FilterMessage;

/* ---- compiled scripts (script-cache.c) ---------------------------------- */

typedef struct {
  gatomicrefcount ref;
  dev_t dev;
  ino_t ino;
  gint64 mtime_ns;
  off_t size;
  SieveScript *script;    /* NULL: did not compile */
  char *error;            /* why */
} FilterScript;

/* The compiled script at @path (a reference), or NULL if there is no such
 * file.  Compiled again when the file changed. */
FilterScript *filter_cache_get (FilterCache *cache, const LmtpdConfig *config, const char *path);
/* The same, opened with @flags added (O_NOFOLLOW); NULL with errno set. */
FilterScript *filter_cache_open (FilterCache *cache, const LmtpdConfig *config, const char *path, int flags);
void filter_script_unref (FilterScript *script);

/* ---- the message as Sieve sees it (filter-view.c) ------------------------ */

typedef struct {
  const FilterMessage *m;   /* whose view this is (for the duplicate ids) */
  const DeliverRecipient *rcpt;
  const char *prefix;
  const DeliverContent *content;
  GMimeMessage *mime;       /* parsed on first use */
  gboolean failed;
  GPtrArray *parts;         /* SieveMimePart*, built on first use */
  char *raw;                /* body :raw, read on first use (NULL: no body) */
  gsize raw_max;
  gboolean raw_read;
} FilterView;

void filter_view_init (FilterView *v, const FilterMessage *m);
void filter_view_clear (FilterView *v);
/* The parsed message, or NULL if it does not parse. */
GMimeMessage *filter_view_message (FilterView *v);
/* SieveMessage callbacks; @view is a FilterView. */
char **filter_view_header (const char *name, gpointer view);
char *filter_view_body (gpointer view);
gboolean filter_view_mailbox_exists (const char *name, gpointer view);
char *filter_view_raw_body (gsize max, gpointer view);
/* @prefix then @content as one stream, of its own (its own file offsets,
 * safe beside other threads), that GMime parses as the filter view does */
GMimeStream *filter_message_stream (const char *prefix, const DeliverContent *content);
const GPtrArray *filter_view_mime_parts (gpointer view);

/* ---- running the scripts (filter.c) --------------------------------------- */

/* The user's script for @rcpt: the directory's path, else [sieve] script,
 * with %u %n %d %h expanded, under the mail root when relative. */
char *filter_user_script_path (const LmtpdConfig *config, const DeliverRecipient *rcpt);

typedef struct {
  SieveResult result;       /* merged over the before, user and after scripts */
  gboolean ran;             /* some script ran */
  char *user_script;        /* the user's script path (whether or not it exists) */
} FilterOutcome;

/* Runs the configured scripts for @m.  Never fails: a script that does
 * not compile or fails at run time leaves an implicit keep, a log line and
 * a line in "<script>.log". */
void filter_run (const FilterMessage *m, const CalloutResult *callouts, FilterOutcome *out);
void filter_outcome_clear (FilterOutcome *out);

/* Was the message here before: a Delivered-To, X-Loop or redirect mark
 * naming @rcpt in the header as received (loops for redirect and
 * vacation). */
gboolean filter_been_here (const DeliverMessage *msg, const DeliverRecipient *rcpt);

/* redirect: sends the message on with loop protection.  FALSE if it was
 * not sent (the caller keeps the message instead). */
gboolean filter_redirect (const FilterMessage *m, const char *target);

/* ---- the duplicate test's ids (filter-duplicate.c) ------------------------ */

/* SieveMessage.duplicate; @view is a FilterView. */
gboolean filter_duplicate_seen (const char *handle, const char *id, gpointer view);
/* Records the ids of @r (RFC 7352 3): once its actions were carried out. */
void filter_duplicate_record (const FilterMessage *m, const SieveResult *r);
/* ---- the script's surroundings (filter-site.c) ---------------------------- */

/* What include (RFC 6609), special-use (RFC 8579) and environment
 * (RFC 5183) see of the site and the user; the scripts it loaded stay
 * with it until filter_site_clear. */
typedef struct {
  const FilterMessage *m;
  GPtrArray *loaded;        /* FilterScript* */
  char *personal_dir;       /* or NULL */
  char *domain;
  char *remote_ip;
} FilterSite;

void filter_site_init (FilterSite *site, const FilterMessage *m, SieveMessage *sm);
void filter_site_clear (FilterSite *site);
/* A path template (%u %n %d %h) for @rcpt, under mail_root when relative. */
char *filter_expand_path (const LmtpdConfig *config, const DeliverRecipient *rcpt, const char *tmpl);

/* ---- vacation.c ------------------------------------------------------------ */

/* vacation: answers if RFC 5230 4.5/4.6 allow it and the reply log has
 * not seen this sender within :days. */
void filter_vacation (const FilterMessage *m, const SieveAction *action, const FilterOutcome *outcome);

/* ---- notify.c -------------------------------------------------------------- */

/* notify by mailto: sends unless RFC 5436 2.7 forbids it (automatic mail). */
void filter_notify (const FilterMessage *m, const SieveAction *action);
/* @s with CR LF (and a lone CR) as LF: a script's text as we store it. */
char *filter_to_lf (const char *s);
