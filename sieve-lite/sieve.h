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

typedef struct {
  SieveActionKind kind;
  char *argument;        /* mailbox, address or reason */
  char *flags;           /* space-separated IMAP flags for keep/fileinto, or NULL */
  gboolean copy;         /* :copy */
  gboolean create;       /* fileinto :create (RFC 5490) */
  SieveVacation *vacation;  /* SIEVE_VACATION: argument is the reason */
} SieveAction;

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
} SieveResult;

/* Runs @script for one message; always leaves a usable result. */
void sieve_run (const SieveScript *script, const SieveMessage *msg, SieveResult *out);
void sieve_result_clear (SieveResult *r);
/* For callers that move actions and edits out of a result (NULL is fine). */
void sieve_action_free (gpointer action);
void sieve_header_edit_free (gpointer edit);
const char *sieve_action_name (SieveActionKind kind);

/* The capability strings a script may require, NULL-terminated, in the
 * order of the table (ManageSieve's SIEVE capability, sieve-lite --help):
 * grows with every extension added, so what is advertised is what runs. */
const char *const *sieve_capabilities (void);

/* Space-separated IMAP flags to Maildir letters ("\\Seen \\Flagged" -> "FS"). */
char *sieve_flags_to_maildir (const char *flags);

G_END_DECLS
