/* sieve-private.h - what the parts of sieve-lite share: the syntax tree,
 * the command and test definitions resolved into it, and the arguments
 * parsed once into each node when the script is validated.
 *
 * The parts depend one way.  Compiling: sieve-validate.c (sieve_compile)
 * -> the parser (sieve-parse.c) -> the lexer (sieve-lexer.c), and -> the
 * lookups of sieve-defs.c -> the definition tables, which point at their
 * run functions (sieve-commands.c, sieve-tests.c, and the extensions'
 * files: sieve-date.c, -duplicate.c, -env.c, -include.c, -mime.c,
 * -notify.c, -replace.c); sieve-caps.c the capability list.  Running:
 * sieve_run (sieve-run.c, the variables) calls each node's run function
 * through its definition; the commands and tests use the run state
 * (sieve-run.h), the actions (sieve-actions.c), what a field's values are
 * now (sieve-changed.c) and how they compare (sieve-values.c,
 * sieve-match.c, sieve-regex.c).  At the bottom, calling nothing else:
 * sieve-base.c (failing a run, the clock, log-safe text, the arguments)
 * and sieve-result.c (the error domain, the result helpers).
 */
#pragma once

#include "sieve.h"

typedef enum {
  SIEVE_ARG_STRINGS,
  SIEVE_ARG_NUMBER,
  SIEVE_ARG_TAG,
} SieveArgKind;

typedef struct {
  SieveArgKind kind;
  char **strings;
  guint64 number;
  char *tag;          /* lowercased, without ':' */
} SieveArg;

/* Match types (RFC 5228 2.7.1, RFC 5231); the values are those of
 * SieveHeaderEdit.match_type. */
typedef enum {
  SIEVE_MATCH_IS,
  SIEVE_MATCH_CONTAINS,
  SIEVE_MATCH_MATCHES,
  SIEVE_MATCH_COUNT,
  SIEVE_MATCH_VALUE,
  SIEVE_MATCH_REGEX,        /* draft-ietf-sieve-regex, "regex" */
} SieveMatchType;

/* Address parts (RFC 5228 2.7.4, RFC 5233) */
typedef enum {
  SIEVE_ADDRESS_ALL,
  SIEVE_ADDRESS_LOCALPART,
  SIEVE_ADDRESS_DOMAIN,
  SIEVE_ADDRESS_USER,
  SIEVE_ADDRESS_DETAIL,
} SieveAddressPart;

typedef enum {
  SIEVE_COMPARATOR_ASCII_CASEMAP,
  SIEVE_COMPARATOR_OCTET,
  SIEVE_COMPARATOR_ASCII_NUMERIC,
} SieveComparator;

typedef enum {
  SIEVE_RELOP_GT,
  SIEVE_RELOP_GE,
  SIEVE_RELOP_LT,
  SIEVE_RELOP_LE,
  SIEVE_RELOP_EQ,
  SIEVE_RELOP_NE,
} SieveRelop;

/* How a key is compared with a value. */
typedef struct {
  SieveComparator comparator;
  SieveMatchType type;
  SieveRelop relop;         /* :count/:value */
  gboolean has_relop;
} SieveMatchSpec;

typedef enum {
  SIEVE_CALLOUT_VERDICT,
  SIEVE_CALLOUT_SCORE,
  SIEVE_CALLOUT_LABELS,
} SieveCalloutField;

typedef struct SieveModifierDef SieveModifierDef;

/* body's transform (RFC 5173 5) */
typedef enum {
  SIEVE_BODY_TEXT,
  SIEVE_BODY_RAW,
  SIEVE_BODY_CONTENT,
} SieveBodyTransform;

/* header :mime's option (RFC 5703 4.1) */
typedef enum {
  SIEVE_MIMEOPT_NONE,
  SIEVE_MIMEOPT_TYPE,
  SIEVE_MIMEOPT_SUBTYPE,
  SIEVE_MIMEOPT_CONTENTTYPE,
  SIEVE_MIMEOPT_PARAM,
} SieveMimeOpt;

/* A node's arguments, parsed once when the script is validated.  The
 * strings point into the node's SieveArgs. */
typedef struct {
  SieveMatchSpec match;
  const char *comparator;   /* as given; validation resolves it into match */
  SieveAddressPart address_part;
  gboolean copy, create, last, over, under, percent, mime;
  SieveCalloutField field;  /* callout :verdict (the default), :score, :labels */
  char **flags;             /* :flags, or NULL */
  guint64 index;            /* deleteheader :index, 0 = any */
  guint64 days;             /* vacation :days */
  gboolean has_days;
  const char *subject, *from, *handle;
  char **addresses;
  GPtrArray *modifiers;     /* set: const SieveModifierDef*, in order */
  const char *importance, *message;   /* notify (RFC 5435) */
  char **options;
  char **headers;           /* enclose :headers (RFC 5703 6) */
  GPtrArray *pos;           /* SieveArg*: strings and numbers in order */
  const char *zone;         /* date, currentdate :zone (RFC 5260 4.1), or NULL */
  gboolean originalzone;
  guint64 seconds;          /* vacation (RFC 6131), duplicate (RFC 7352) :seconds */
  gboolean has_seconds;
  const char *header, *uniqueid;  /* duplicate */
  /* include (RFC 6609 3.2); fileinto :specialuse (RFC 8579 4) */
  gboolean personal, global, once, optional;
  const char *specialuse;
  /* body :raw/:content (RFC 5173); :mime's options, :name, :first (RFC 5703) */
  SieveBodyTransform transform;
  char **content_types;
  gboolean anychild;
  SieveMimeOpt mime_opt;
  char **params;
  const char *loop_name;
  guint64 first;
  gboolean has_first;
} SieveArgs;

typedef struct SieveNode SieveNode;
typedef struct SieveRun SieveRun;

/* Runs a command; *if_taken: a branch of the if/elsif/else chain it
 * belongs to ran (set FALSE by any other command). */
typedef void (*SieveCommandFunc) (SieveRun *run, const SieveNode *c, gboolean *if_taken);
typedef gboolean (*SieveTestFunc) (SieveRun *run, const SieveNode *t);
/* A check of its own after the shape, or NULL */
typedef gboolean (*SieveCheckFunc) (const SieveNode *n, GError **error);

typedef enum {
  SIEVE_DEF_REQUIRE = 1 << 0,   /* takes a capability list, checked on its own */
  SIEVE_DEF_IF = 1 << 1,        /* if, elsif: one test and a block */
  SIEVE_DEF_ELSE = 1 << 2,      /* elsif, else: follows if or elsif */
  SIEVE_DEF_BLOCK = 1 << 3,     /* takes a block */
  SIEVE_DEF_CREATE = 1 << 4,    /* takes :create (RFC 5490) */
} SieveDefFlags;

#define SIEVE_TESTS_LIST G_MAXUINT  /* a test list of one or more */

typedef struct {
  const char *name;
  const char *cap;          /* the capability it needs, or NULL */
  /* positional arguments: 's' string list, 'n' number; a leading 'o'
   * makes the first one optional.  NULL: no shape check (require). */
  const char *shape;
  const char *alt_shape;    /* tried when @shape fails, or NULL */
  guint tests;              /* 0, 1 or SIEVE_TESTS_LIST */
  SieveDefFlags flags;
  SieveCheckFunc check;
  SieveCommandFunc command; /* one of these two */
  SieveTestFunc test;
} SieveDef;

struct SieveNode {
  char *name;         /* lowercased */
  GPtrArray *args;    /* SieveArg* */
  GPtrArray *tests;   /* SieveNode* */
  GPtrArray *block;   /* SieveNode* (commands), or NULL */
  int line, col;
  const SieveDef *def;      /* set by validation */
  SieveArgs *parsed;        /* set by validation, or NULL (require) */
  gboolean deferred;        /* ihave (RFC 5463 4): the block was not validated */
};

struct SieveScript {
  GPtrArray *commands;
  GHashTable *caps;   /* required capabilities */
  GPtrArray *loops;   /* while validating: the :name of each enclosing foreverypart ("" none) */
};

/* sieve-parse.c: the syntax tree of @text; NULL with "LINE:COL: message". */
GPtrArray *sieve_parse (const char *text, gsize len, GError **error);
void sieve_node_free (gpointer node);
/* sieve-result.c: a compile error of command or test @n, "LINE:COL: NAME:
 * message"; returns FALSE */
gboolean sieve_node_fail (GError **error, const SieveNode *n, const char *fmt, ...) G_GNUC_PRINTF (3, 4);
void sieve_args_free (SieveArgs *a);

/* sieve-commands.c, sieve-tests.c: the definitions, ending in { NULL } */
extern const SieveDef sieve_command_defs[];
extern const SieveDef sieve_test_defs[];

/* sieve-defs.c: the definitions, the tags and the capabilities */
const SieveDef *sieve_def_command (const char *name);
const SieveDef *sieve_def_test (const char *name);
/* NULL or a reason the tag (and its value @v, which it may take: then
 * *@took_value is TRUE) cannot be applied to @a */
const char *sieve_args_apply_tag (SieveArgs *a, const char *tag, const SieveArg *v, gboolean *took_value);
gboolean sieve_capability_known (const char *cap);
/* sieve-date.c: is @part a date-part (RFC 5260 4.2)? */
gboolean sieve_date_part_known (const char *part);

struct SieveModifierDef {
  const char *name;
  char *(*apply) (const char *value);
};

/* sieve-env.c: ihave (RFC 5463 4): TRUE if the block of if @c is not to
 * be validated (its ihave names an unknown extension); else what it names
 * is added to @s->caps. */
gboolean sieve_ihave_defers (SieveScript *s, const SieveNode *c);
/* sieve-include.c: NULL, or what is wrong with set's variable @name in
 * the "global." namespace (RFC 6609 3.4.2) */
const char *sieve_set_name_problem (const char *name, GHashTable *caps);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SieveArgs, sieve_args_free)

/* sieve-notify.c: enotify (RFC 5435) with the mailto method (RFC 5436) */
void sieve_cmd_notify (SieveRun *run, const SieveNode *c, gboolean *if_taken);
gboolean sieve_check_notify (const SieveNode *n, GError **error);
gboolean sieve_test_valid_notify_method (SieveRun *run, const SieveNode *t);
gboolean sieve_test_notify_method_capability (SieveRun *run, const SieveNode *t);
char *sieve_mod_encodeurl (const char *value);

/* sieve-replace.c: replace and enclose (RFC 5703 5, 6) */
void sieve_cmd_replace (SieveRun *run, const SieveNode *c, gboolean *if_taken);
void sieve_cmd_enclose (SieveRun *run, const SieveNode *c, gboolean *if_taken);
gboolean sieve_check_replace (const SieveNode *n, GError **error);
/* sieve-changed.c: the values of field @name (@values, before change
 * @index) as change @index leaves them */
void sieve_change_values (SieveRun *run, guint index, const char *name, GPtrArray *values);
/* The text the body test sees after the changes (takes @text, may be NULL). */
char *sieve_changed_body (SieveRun *run, char *text);
/* The values of field @name after the first @changes changes, edits
 * included (g_free'd strings) */
GPtrArray *sieve_header_values (SieveRun *run, const char *name, guint changes);
