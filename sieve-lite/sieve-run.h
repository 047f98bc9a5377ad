/* sieve-run.h - the state of one run of a script, shared by the
 * interpreter (sieve-run.c), the commands (sieve-commands.c), the tests
 * (sieve-tests.c) and the actions (sieve-actions.c). */
#pragma once

#include "sieve-private.h"

#define SIEVE_MAX_ACTIONS 32
#define SIEVE_MAX_REDIRECTS 4
#define SIEVE_MAX_ERROR_TEXT 200
/* foreverypart (RFC 5703 3): nesting (the RFC asks for 2 at least) and
 * the parts all loops of a run may visit together */
#define SIEVE_MAX_LOOPS 8
#define SIEVE_MAX_PARTS_VISITED 10000

/* An enclosing foreverypart: the part it is at (an index into the
 * caller's parts).  The seam for replace inside foreverypart (RFC 5703
 * 5): the current part is loops[n_loops - 1].part, or the whole message
 * when n_loops is 0 (sieve_run_current_part). */
typedef struct {
  guint part;
  const char *name;         /* :name, or NULL */
  gboolean replaced;        /* replace changed this part: the loop skips its parts */
  const GPtrArray *parts;   /* the parts it walks (the message when it began) */
} SieveLoop;

struct SieveRun {
  const SieveScript *s;
  const SieveMessage *m;
  SieveResult *r;
  GHashTable *vars;
  char *mv[10];              /* match variables */
  GHashTable *flags;         /* the internal flag variable: set of flags */
  gboolean variables;        /* the script requires "variables" */
  gboolean imap4flags;       /* ... and "imap4flags" */
  gboolean implicit_keep;
  gboolean stopped;
  guint steps;
  guint redirects;
  gint64 deadline;           /* monotonic us */
  gsize mem_used, mem_max;   /* bytes of strings built by expansion */
  gsize var_max;             /* per variable */
  GError *error;
  /* the trace (sieve-trace.c), when SieveMessage.trace is set */
  guint trace_block;         /* blocks entered: the indentation */
  guint trace_depth;         /* tests running inside a test */
  guint trace_lines;         /* lines given so far */
  const SieveNode *trace_if; /* the if or elsif whose test runs next */
  const SieveNode *command;  /* the command running: its line goes with the actions it makes */
  GPtrArray *trace_wait;     /* lines of the tests running, in order */
  gint64 now;                /* currentdate: one point in time a run (RFC 5260 5) */
  /* include (RFC 6609): the running script's frame, and the run's */
  gboolean include;          /* the running script requires "include" */
  gboolean returned;         /* return: the running script ends */
  GHashTable *declared;      /* names it declared global, or NULL */
  GHashTable *globals;       /* the variables all scripts share */
  GPtrArray *chain;          /* "personal:NAME"... of the scripts being run */
  GHashTable *included;      /* of every script included so far (:once) */
  guint includes;
  /* the MIME structure, asked of the caller once; the loops (RFC 5703) */
  const GPtrArray *parts;
  gboolean parts_fetched;
  SieveLoop loops[SIEVE_MAX_LOOPS];
  guint n_loops;
  guint parts_visited;
  gboolean breaking;         /* a break is leaving loops down to break_level */
  guint break_level;
  int has_body;              /* 0 not asked yet, 1 yes, -1 a header alone */
  GPtrArray *made;           /* [i]: the parts after changes[i] of the whole message, or NULL */
};

/* sieve-base.c: failing a run, the clock, log-safe text (below too) */
void sieve_run_fail (SieveRun *run, int code, const char *what);
gboolean sieve_run_out_of_time (SieveRun *run);
char *sieve_printable (const char *s, gsize max);
void sieve_cut_utf8 (char *s, gsize max);

/* sieve-run.c: the variables, the flags, and running nodes */
gboolean sieve_run_test (SieveRun *run, const SieveNode *t);
void sieve_run_block (SieveRun *run, const GPtrArray *commands);
char *sieve_run_expand (SieveRun *run, const char *str);
char **sieve_run_expand_list (SieveRun *run, char **list);
void sieve_run_set_variable (SieveRun *run, char *name, char *value);
void sieve_run_set_match_variables (SieveRun *run, const char *value, GArray *caps);
void sieve_run_add_flags (SieveRun *run, char **list, gboolean remove, gboolean replace);
char *sieve_run_flags_string (SieveRun *run, char **explicit_flags);

/* sieve-actions.c: a new action of the running command (its line and
 * script, the edits and changes before it), not yet added */
SieveAction *sieve_run_new_action (SieveRun *run, SieveActionKind kind);

/* sieve-trace.c: a line for each command and test as it runs */
void sieve_trace_command (SieveRun *run, const SieveNode *c, gboolean if_taken);
gboolean sieve_trace_test (SieveRun *run, const SieveNode *t);
void sieve_trace_clear (SieveRun *run);
/* sieve-values.c: header values as the script sees them, the addresses in
 * them, and matching values against keys (setting match variables) */
char **sieve_run_headers (SieveRun *run, const char *name);
char **sieve_field_values (SieveRun *run, const SieveArgs *a, const char *name);
void sieve_add_addresses (SieveRun *run, GPtrArray *out, const char *value, SieveAddressPart part);
const char *sieve_run_delimiter (SieveRun *run);
char **sieve_expand_keys (SieveRun *run, const SieveArgs *a);
gboolean sieve_run_match_any (SieveRun *run, const SieveArgs *a, char **values, char **keys);
gboolean sieve_match_any_full (SieveRun *run, const SieveArgs *a, char **values, char **keys, gboolean set_vars);
gboolean sieve_match_keys (SieveRun *run, const SieveArgs *a, GPtrArray *values, char **keys);

/* sieve-date.c: date, currentdate (RFC 5260) and the :index checks;
 * sieve-duplicate.c: duplicate (RFC 7352) */
gboolean sieve_check_index (const SieveNode *n, GError **error);
/* :index N [:last] (RFC 5260 6): keeps only the chosen field of @fields
 * (char*, in order); none if there is no such field */
void sieve_run_pick_index (const SieveArgs *a, GPtrArray *fields);
gboolean sieve_check_date (const SieveNode *n, GError **error);
gboolean sieve_test_date (SieveRun *run, const SieveNode *t);
gboolean sieve_test_currentdate (SieveRun *run, const SieveNode *t);
gboolean sieve_check_duplicate (const SieveNode *n, GError **error);
gboolean sieve_test_duplicate (SieveRun *run, const SieveNode *t);
/* ${0}.. from the groups of a :regex (SieveGlobCap, group 0 first) */
void sieve_run_set_match_groups (SieveRun *run, const char *value, GArray *caps);

/* sieve-changed.c: the parts as received (asked of the caller once),
 * and the parts and the raw body as tests see them now, after replace or
 * enclose of the whole message (RFC 5703 6) */
const GPtrArray *sieve_run_mime_parts (SieveRun *run);
const GPtrArray *sieve_run_parts_now (SieveRun *run);
char *sieve_run_raw_now (SieveRun *run, gsize max);
gboolean sieve_run_changed_whole (SieveRun *run);
void sieve_changed_clear (SieveRun *run);
/* sieve-mime.c: the MIME structure (RFC 5173 body transforms, RFC 5703).
 * The index of the part the innermost foreverypart is at, or -1 */
int sieve_run_current_part (SieveRun *run);
/* RFC 5173 4: FALSE when the message is a header alone (not followed
 * by an empty line): every body test is then false */
gboolean sieve_run_has_body (SieveRun *run);
/* body :raw and :content: the strings to match, or NULL (no body) */
GPtrArray *sieve_mime_body_values (SieveRun *run, const SieveArgs *a);
/* header/address/exists :mime: the values of field @name of the parts
 * in scope (RFC 5703 4), :type/:subtype/:contenttype/:param applied;
 * NULL when the scope is the top-level header (the caller's, as
 * editheader left it), for the caller to apply sieve_mime_option to. */
GPtrArray *sieve_mime_header_values (SieveRun *run, const SieveArgs *a, const char *name);
void sieve_mime_option (const SieveArgs *a, const char *name, const char *value, GPtrArray *out);
void sieve_cmd_foreverypart (SieveRun *run, const SieveNode *c, gboolean *if_taken);
void sieve_cmd_break (SieveRun *run, const SieveNode *c, gboolean *if_taken);
void sieve_cmd_extracttext (SieveRun *run, const SieveNode *c, gboolean *if_taken);

/* sieve-actions.c: what a run decides */
void sieve_run_action (SieveRun *run, SieveActionKind kind, char *arg, char *flags, gboolean copy);
void sieve_run_vacation (SieveRun *run, const SieveArgs *a);
gboolean sieve_check_vacation (const SieveNode *n, GError **error);

/* sieve-base.c: the positional arguments as validation left them */
const char *sieve_args_string (const SieveArgs *a, guint i);
char **sieve_args_list (const SieveArgs *a, guint i);

/* sieve-run.c: the variables include (RFC 6609) shares across scripts.
 * The table variable @name lives in (the shared one for a global); *@name
 * loses a "global." prefix. */
void sieve_include_init (SieveRun *run);
void sieve_include_clear (SieveRun *run);
GHashTable *sieve_run_variables (SieveRun *run, const char **name);
/* sieve-include.c: include, return, global (RFC 6609) */
void sieve_cmd_include (SieveRun *run, const SieveNode *c, gboolean *if_taken);
void sieve_cmd_return (SieveRun *run, const SieveNode *c, gboolean *if_taken);
void sieve_cmd_global (SieveRun *run, const SieveNode *c, gboolean *if_taken);
gboolean sieve_check_include (const SieveNode *c, GError **error);
gboolean sieve_check_global (const SieveNode *c, GError **error);

/* sieve-env.c: ihave and error (RFC 5463), environment (RFC 5183),
 * specialuse_exists (RFC 8579) */
gboolean sieve_test_ihave (SieveRun *run, const SieveNode *t);
void sieve_cmd_error (SieveRun *run, const SieveNode *c, gboolean *if_taken);
gboolean sieve_test_environment (SieveRun *run, const SieveNode *t);
gboolean sieve_test_specialuse_exists (SieveRun *run, const SieveNode *t);
gboolean sieve_check_specialuse (const SieveNode *c, GError **error);
/* fileinto :specialuse: the folder to store into, or NULL after a runtime
 * error (takes @box) */
char *sieve_run_specialuse (SieveRun *run, const SieveArgs *a, char *box);
