/* sieve.h - sieve-lite: a Sieve (RFC 5228) interpreter for per-user
 * filtering at delivery.  Knows nothing of LMTP, mailboxes or OCP: the
 * message comes in through callbacks and plain values (callout results
 * included), the actions go out as plain values.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define SIEVE_ERROR (sieve_error_quark ())
GQuark sieve_error_quark (void);

typedef enum {
  SIEVE_ERROR_SYNTAX,     /* "line:col: message" */
  SIEVE_ERROR_RUNTIME,
  SIEVE_ERROR_LIMIT,
} SieveErrorCode;

typedef struct SieveScript SieveScript;

/* Compiles @text.  On error returns NULL with "LINE:COL: message". */
SieveScript *sieve_compile (const char *text, gsize len, GError **error);
void sieve_script_free (SieveScript *script);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SieveScript, sieve_script_free)

/* A callout service's result as the script sees it (own extension
 * "vnd.opes-lmtpd.callout"): not a header, so a sender cannot forge it. */
typedef struct {
  const char *service;    /* service name */
  const char *verdict;    /* accept, modify, reject, ... */
  const char *score;      /* decimal or NULL */
  const char *labels;     /* comma-separated or NULL */
} SieveCallout;

typedef struct {
  const char *envelope_from;   /* "" for the null sender */
  const char *envelope_to;     /* this recipient, final address */
  const char *delimiter;       /* subaddress separators, e.g. "+" */
  guint64 size;
  /* All values of header @name (decoded, unfolded), NULL-terminated, or NULL. */
  char **(*header) (const char *name, gpointer data);
  /* mailboxexists (RFC 5490): does the user's folder exist?  NULL: no. */
  gboolean (*mailbox_exists) (const char *name, gpointer data);
  /* The decoded text parts, or NULL (for the body test). */
  char *(*body_text) (gpointer data);
  gpointer data;
  int spamtest;                /* 0 = not tested, 1..10, or -1 unknown */
  int spamtest_percent;        /* 0..100 or -1 */
  int virustest;               /* 0 = not tested, 1..5, or -1 */
  const SieveCallout *callouts;  /* array */
  guint n_callouts;
  /* limits; 0 = the defaults (32 actions, 4 redirects, 2000 ms) */
  guint max_actions;
  guint max_redirects;
  guint max_time_ms;
  /* 0 = the defaults: 4 KB per variable (as Pigeonhole; RFC 5229 3 lets
   * an implementation limit it), 4 MB of strings built in one run, 64 KB
   * of each header value and 1 MB of body text as tests see them.  Over a
   * size limit is a runtime error (a match variable is cut instead). */
  gsize max_variable_size;
  gsize max_memory;
  gsize max_header_size;
  gsize max_body_size;
  /* Fields editheader leaves alone besides the trace fields (Received,
   * Auto-Submitted, Return-Path, Delivered-To), NULL-terminated, or NULL. */
  const char *const *protected_headers;
} SieveMessage;

typedef enum {
  SIEVE_KEEP,
  SIEVE_FILEINTO,
  SIEVE_REDIRECT,
  SIEVE_DISCARD,
  SIEVE_REJECT,
  SIEVE_EREJECT,
  SIEVE_VACATION,
  SIEVE_NOTIFY,
} SieveActionKind;

/* vacation (RFC 5230): whether to answer is the caller's decision (4.5,
 * 4.6: the sender, the headers and the reply log). */
typedef struct {
  guint days;            /* 1 or more */
  char *subject;         /* or NULL */
  char *from;            /* or NULL */
  char **addresses;      /* the user's other addresses, or NULL */
  char *handle;          /* given, or derived from the arguments (4.2) */
  gboolean mime;         /* the reason is a MIME entity */
} SieveVacation;

/* notify (RFC 5435) by the mailto method (RFC 5436): the URI (the
 * action's argument) as sieve-lite parsed and checked it; sending, and
 * whether to, is the caller's (RFC 5436 2.7). */
typedef struct {
  char *from;            /* :from, or NULL */
  int importance;        /* :importance 1 (high), 2 (normal, the default), 3 (low) */
  char **options;        /* :options, or NULL */
  char *message;         /* :message, or NULL */
  char **recipients;     /* the URI's addresses and its to= and cc= fields, not yet notified in the run */
  char *to, *cc;         /* the To and Cc fields as the URI gives them, or NULL */
  char *subject, *body;  /* the URI's subject= and body=, or NULL */
  char **headers;        /* its other fields, "Name: value", unsafe ones left out (RFC 5436 2.7) */
} SieveNotify;

typedef struct {
  SieveActionKind kind;
  char *argument;        /* mailbox, address or reason */
  char *flags;           /* space-separated IMAP flags for keep/fileinto, or NULL */
  gboolean copy;         /* :copy */
  gboolean create;       /* fileinto :create (RFC 5490) */
  SieveVacation *vacation;  /* SIEVE_VACATION: argument is the reason */
  /* RFC 5293 7: keep, fileinto and redirect take the header as edited up
   * to them: how many of SieveResult.edits came before (the implicit
   * keep: all of them) */
  guint edits_before;
  SieveNotify *notify;   /* SIEVE_NOTIFY: argument is the method URI */
  /* RFC 5703 5, 6: how many of SieveResult.changes came before (the
   * implicit keep: all of them) */
  guint changes_before;
} SieveAction;

/* replace and enclose (RFC 5703 5, 6): what keep, fileinto and the
 * implicit keep store after them (enclose leaves redirect alone, 6). */
typedef enum {
  SIEVE_CHANGE_REPLACE,
  SIEVE_CHANGE_ENCLOSE,
} SieveChangeKind;

typedef struct {
  SieveChangeKind kind;
  guint edits_before;    /* the header edits made before it apply to the message it changes */
  guint part;            /* the part replaced: 0, the whole message (foreverypart may name one) */
  char *text;            /* the replacement, or enclose's text part */
  gboolean mime;         /* replace :mime: @text is a MIME entity (header fields, empty line, body) */
  char *subject;         /* :subject, or NULL */
  char *from;            /* replace :from (a mailbox list), or NULL */
  char **headers;        /* enclose :headers: fields copied from the enclosed message, or NULL */
} SieveChange;

typedef struct {
  char *name;
  char *value;           /* NULL: delete */
  char **match;          /* deleteheader values (NULL: all) */
  gboolean last;
  int index;             /* deleteheader :index, 0 = any */
  int match_type;        /* private: see sieve_header_edit_matches */
  char *comparator, *relop;
} SieveHeaderEdit;

/* TRUE if editheader may not add or delete field @name: a trace field
 * (RFC 5293 4.3, 5.1; Return-Path and Delivered-To alike) or one of
 * @extra (NULL-terminated, or NULL). */
gboolean sieve_header_protected (const char *name, const char *const *extra);

/* deleteheader: TRUE if a (decoded) value of the field is to go (no
 * value patterns: every value). */
gboolean sieve_header_edit_matches (const SieveHeaderEdit *e, const char *value);

typedef struct {
  GPtrArray *actions;          /* SieveAction*, in order; implicit keep added last */
  GPtrArray *edits;            /* SieveHeaderEdit* (editheader) */
  char *error;                 /* runtime error: actions then are just an implicit keep */
  gboolean implicit_keep;      /* the last action is the implicit keep (2.10.2) */
  GPtrArray *changes;          /* SieveChange* (replace, enclose), in order */
} SieveResult;

/* Runs @script for one message; always leaves a usable result. */
void sieve_run (const SieveScript *script, const SieveMessage *msg, SieveResult *out);
void sieve_result_clear (SieveResult *r);
/* For callers that move actions and edits out of a result (NULL is fine). */
void sieve_action_free (gpointer action);
void sieve_notify_free (SieveNotify *notify);
void sieve_change_free (gpointer change);
void sieve_header_edit_free (gpointer edit);
const char *sieve_action_name (SieveActionKind kind);

/* Space-separated IMAP flags to Maildir letters ("\\Seen \\Flagged" -> "FS"). */
char *sieve_flags_to_maildir (const char *flags);

G_END_DECLS
