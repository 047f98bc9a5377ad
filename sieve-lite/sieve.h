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
  /* The decoded text parts, or NULL (for the body test). */
  char *(*body_text) (gpointer data);
  gpointer data;
  int spamtest;                /* 0 = not tested, 1..10, or -1 unknown */
  int spamtest_percent;        /* 0..100 or -1 */
  int virustest;               /* 0 = not tested, 1..5, or -1 */
  const SieveCallout *callouts;  /* array */
  guint n_callouts;
} SieveMessage;

typedef enum {
  SIEVE_KEEP,
  SIEVE_FILEINTO,
  SIEVE_REDIRECT,
  SIEVE_DISCARD,
  SIEVE_REJECT,
  SIEVE_EREJECT,
} SieveActionKind;

typedef struct {
  SieveActionKind kind;
  char *argument;        /* mailbox, address or reason */
  char *flags;           /* space-separated IMAP flags for keep/fileinto, or NULL */
  gboolean copy;         /* :copy */
} SieveAction;

typedef struct {
  char *name;
  char *value;           /* NULL: delete */
  char **match;          /* deleteheader values (NULL: all) */
  gboolean last;
  int index;             /* deleteheader :index, 0 = any */
} SieveHeaderEdit;

typedef struct {
  GPtrArray *actions;          /* SieveAction*, in order; implicit keep added last */
  GPtrArray *edits;            /* SieveHeaderEdit* (editheader) */
  char *error;                 /* runtime error: actions then are just an implicit keep */
} SieveResult;

/* Runs @script for one message; always leaves a usable result. */
void sieve_run (const SieveScript *script, const SieveMessage *msg, SieveResult *out);
void sieve_result_clear (SieveResult *r);
const char *sieve_action_name (SieveActionKind kind);

/* Space-separated IMAP flags to Maildir letters ("\\Seen \\Flagged" -> "FS"). */
char *sieve_flags_to_maildir (const char *flags);

G_END_DECLS
