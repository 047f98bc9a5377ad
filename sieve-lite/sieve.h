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

/* One MIME part as a script sees it (RFC 5173 5.2, RFC 5703), in the
 * message's depth-first order, the top part first.  The enclosed message
 * of a message/rfc822 part is its one child, whose fields are that
 * message's header. */
typedef struct {
  guint depth;              /* 0: the top part */
  guint n_descendants;      /* the parts after this one that lie inside it */
  char *type, *subtype;     /* lowercase (text/plain when not given) */
  char **names, **values;   /* the part's own fields in order, values decoded */
  char *content;            /* a leaf: transfer encoding undone, text in UTF-8; or NULL */
  char *prologue, *epilogue;  /* a multipart's, as they are, or NULL */
  char *message_header;     /* message/rfc822: the enclosed header as text, or NULL */
} SieveMimePart;

/* Frees a part of sieve_mime_parts_new's list (its free function). */
void sieve_mime_part_free (gpointer part);

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
  /* sieve-lite test --trace: told of each command and test as it runs
   * ("LINE: if header :contains \"subject\" \"x\" -> false"), at most
   * max_trace_lines lines (0 = 1000).  NULL: no trace, and no cost. */
  void (*trace) (const char *line, gpointer trace_data);
  gpointer trace_data;
  guint max_trace_lines;
  /* date, currentdate (RFC 5260): the run's "now" in Unix seconds (0:
   * the clock when the run starts) and the local zone as "+hhmm" (NULL:
   * the process's zone). */
  gint64 now;
  const char *zone;
  /* duplicate (RFC 7352): did an earlier run record @id under @handle
   * ("" when none) and has that not expired?  NULL: nothing was seen. */
  gboolean (*duplicate) (const char *handle, const char *id, gpointer data);
  guint64 max_duplicate_seconds;  /* cap on :seconds; 0 = 7 days */
  /* ---- the script's surroundings (RFC 6609 include, RFC 5183
   * environment, RFC 8579 special-use); @site_data is theirs ---- */
  /* include: the compiled script @name (checked as RFC 5804 1.6 asks) of
   * the user's (@global FALSE) or the site's scripts, valid until the run
   * ends.  NULL with *@error NULL: no such script; NULL with *@error set
   * (g_free): it could not be read or compiled.  NULL callback: none. */
  const SieveScript *(*include) (gboolean global, const char *name, char **error, gpointer site_data);
  /* special-use: the folder that has special-use @flag ("\\Junk"), or NULL */
  const char *(*special_use) (const char *flag, gpointer site_data);
  gpointer site_data;
  /* environment items; NULL: not known (the test fails) */
  const char *env_domain;       /* "domain" */
  const char *env_host;         /* "host" */
  const char *env_remote_host;  /* "remote-host" ("" when NULL, 4.1) */
  const char *env_remote_ip;    /* "remote-ip", an IPv6 one as "IPv6:..." */
  /* ---- the MIME structure: body :raw and :content (RFC 5173), mime,
   * foreverypart, extracttext (RFC 5703).  Asked for only when a script
   * needs them; NULL: not available. */
  /* The body after the header's empty line as it is, at most @max bytes;
   * NULL when the message is a header alone (RFC 5173 4). */
  char *(*raw_body) (gsize max, gpointer data);
  /* The parts (SieveMimePart*), the caller's until the run ends. */
  const GPtrArray *(*mime_parts) (gpointer data);
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
  guint days;            /* 1 or more; 0 when :seconds was given */
  char *subject;         /* or NULL */
  char *from;            /* or NULL */
  char **addresses;      /* the user's other addresses, or NULL */
  char *handle;          /* given, or derived from the arguments (4.2) */
  gboolean mime;         /* the reason is a MIME entity */
  guint seconds;         /* the period: :seconds (RFC 6131, 0 or more), else days * 86400 */
} SieveVacation;

/* duplicate (RFC 7352 3): an id the caller records once the run's
 * actions are carried out (never after a failed run). */
typedef struct {
  char *handle;          /* "" when none */
  char *id;
  guint64 seconds;       /* until it expires, capped */
  gboolean last;         /* :last: the expiry counts from this run */
} SieveDuplicate;
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
  /* where the action came from, for a decision trace: the line of the
   * command in its script (0: the implicit keep), and the script when an
   * include (RFC 6609) ran it: "personal:NAME" or "global:NAME"; NULL for
   * the script the caller ran */
  guint line;
  char *script;
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
  /* replace inside foreverypart: the part replaced, as an index into
   * SieveMessage.mime_parts of the message as received (0, the top part,
   * is the whole message; so is 0 outside a loop).  A part index never
   * lies inside a part an earlier change replaced, nor follows a change
   * of the whole message (the run fails instead), so the caller finds it
   * in the message as received. */
  guint part;
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
  GPtrArray *duplicates;       /* SieveDuplicate*: ids to record if the result is carried out */
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
void sieve_duplicate_free (gpointer dup);
const char *sieve_action_name (SieveActionKind kind);

/* spamtest and spamtestplus (RFC 5235) from a service's score and its
 * threshold (decimal strings): 1 + 9 * score / (2 * threshold), so the
 * threshold is the middle of the scale; *@percent is 100 * score / (2 *
 * threshold).  Both clamped; no threshold: anything over 0 is 10. */
void sieve_spamtest_from_score (const char *score, const char *threshold, int *spamtest, int *percent);
/* The capability strings a script may require, NULL-terminated, in the
 * order of the table (ManageSieve's SIEVE capability, sieve-lite --help):
 * grows with every extension added, so what is advertised is what runs. */
const char *const *sieve_capabilities (void);

/* Space-separated IMAP flags to Maildir letters ("\\Seen \\Flagged" -> "FS"). */
char *sieve_flags_to_maildir (const char *flags);

/* For callers that parse with GMime (sieve-gmime.c).  The parts of
 * @message (a GMimeMessage) as SieveMessage.mime_parts gives them: at most
 * SIEVE_MIME_MAX_PARTS parts SIEVE_MIME_MAX_DEPTH deep, the contents
 * together at most @max_bytes (0: 1 MB). */
#define SIEVE_MIME_MAX_PARTS 500
#define SIEVE_MIME_MAX_DEPTH 32
struct _GMimeMessage;
struct _GMimeStream;
GPtrArray *sieve_mime_parts_new (struct _GMimeMessage *message, gsize max_bytes);
/* Where part @index (as sieve_mime_parts_new numbers them) of @message,
 * parsed from the seekable @stream, lies in it: from its first field to
 * the end of its body, before the line end of the next delimiter of a
 * multipart holding it (or the stream's end); a leaf without fields
 * from its empty line.  *@part is the part, *@enclosed the enclosed
 * message whose top part it is, or NULL.  FALSE: no such part, or
 * nothing to find it by (a multipart or message without fields). */
struct _GMimeObject;
gboolean sieve_mime_part_range (struct _GMimeMessage *message, struct _GMimeStream *stream, guint index,
                                struct _GMimeObject **part, struct _GMimeMessage **enclosed, gint64 *start,
                                gint64 *end);
/* The body in @stream (a whole message) after the header's empty line,
 * at most @max bytes, or NULL when there is none. */
char *sieve_raw_body_read (struct _GMimeStream *stream, gsize max);

G_END_DECLS
