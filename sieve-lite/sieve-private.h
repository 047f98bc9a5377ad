/* sieve-private.h - the syntax tree shared by the parser and the interpreter. */
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

typedef struct SieveNode {
  char *name;         /* lowercased */
  GPtrArray *args;    /* SieveArg* */
  GPtrArray *tests;   /* SieveNode* */
  GPtrArray *block;   /* SieveNode* (commands), or NULL */
  int line, col;
} SieveNode;

struct SieveScript {
  GPtrArray *commands;
  GHashTable *caps;   /* required capabilities */
};

void sieve_node_free (gpointer node);
gboolean sieve_known_test (const char *name, const char **cap);
/* Argument checks, in sieve-run.c where the argument grammar lives. */
gboolean sieve_validate_test (GError **error, const SieveScript *s, const SieveNode *t);
gboolean sieve_validate_command (GError **error, const SieveScript *s, const SieveNode *c);
