/* sieve-lexer.h - the tokens of a Sieve script (RFC 5228 section 8.1):
 * white space and comments, identifiers, tags, numbers and strings. */
#pragma once

#include <glib.h>

typedef struct {
  const char *p, *end;
  int line, col;
  GError **error;
  gboolean failed;    /* the first error stays: later ones are its echoes */
} SieveLexer;

void sieve_lexer_init (SieveLexer *lx, const char *text, gsize len, GError **error);
/* Sets "LINE:COL: message" at the current position; returns FALSE. */
gboolean sieve_lexer_fail (SieveLexer *lx, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
void sieve_lexer_advance (SieveLexer *lx, gsize n);
/* Skips white space and comments; FALSE on an unterminated comment. */
gboolean sieve_lexer_skip (SieveLexer *lx);
gboolean sieve_lexer_at_end (SieveLexer *lx);
/* Is the next token character @c?  sieve_lexer_eat also takes it. */
gboolean sieve_lexer_peek (SieveLexer *lx, char c);
gboolean sieve_lexer_eat (SieveLexer *lx, char c);
/* Lowercased, or NULL if no identifier starts here. */
char *sieve_lexer_identifier (SieveLexer *lx);
/* Does a quoted string or a text: block start here? */
gboolean sieve_lexer_at_string (SieveLexer *lx);
/* A quoted string or a text: block, or NULL. */
char *sieve_lexer_string (SieveLexer *lx);
/* A number with an optional K, M or G; at a digit. */
gboolean sieve_lexer_number (SieveLexer *lx, guint64 *out);
