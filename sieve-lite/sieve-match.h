/* sieve-match.h - comparators (RFC 4790), match types (RFC 5228 2.7.1,
 * RFC 5231 relational) and addresses (RFC 5228 2.7.4, RFC 5233): pure
 * functions of their arguments, bounded by a deadline and a step budget. */
#pragma once

#include "sieve-private.h"

/* A wildcard's match as offsets into the value (RFC 5229 3.2) */
typedef struct {
  gsize start, len;
} SieveGlobCap;

gboolean sieve_comparator_lookup (const char *name, SieveComparator *out);
const char *sieve_comparator_name (SieveComparator cmp);
gboolean sieve_relop_lookup (const char *name, SieveRelop *out);
const char *sieve_relop_name (SieveRelop op);

int sieve_compare (SieveComparator cmp, const char *a, const char *b);
gboolean sieve_relop_holds (SieveRelop op, int c);

/* Does @value match @key as @m says (:count is the caller's: it counts
 * values)?  :matches records what the wildcards matched in @caps
 * (SieveGlobCap, or NULL).  *@timed_out (may be NULL when @deadline is
 * 0): @deadline (monotonic us, 0 none) passed or the step budget of a
 * :matches ran out; the answer is then "no". */
gboolean sieve_match_one (const SieveMatchSpec *m, const char *value, const char *key, GArray *caps,
                          gint64 deadline, gboolean *timed_out);
/* :count: does the number of values stand in m->relop to any key? */
gboolean sieve_match_count (const SieveMatchSpec *m, guint count, char *const *keys);

/* local@domain, each part non-empty, nothing a mail address cannot hold
 * outside a quoted local part */
gboolean sieve_address_ok (const char *a);
/* The part of one address, or NULL (a :detail that is not there never
 * matches); @delimiter: the subaddress separators. */
char *sieve_address_part (const char *addr, SieveAddressPart part, const char *delimiter);

/* sieve-regex.c: :regex (draft-ietf-sieve-regex 3), POSIX extended
 * syntax as GRegex reads it, on octets; caseless under i;ascii-casemap.
 * @caps gets each group as a SieveGlobCap, group 0 (the whole match)
 * first, or may be NULL.  *@failed (may be NULL): the pattern did not
 * compile or the match ran over PCRE2's match limit; the answer is then
 * "no". */
gboolean sieve_regex_match (SieveComparator cmp, const char *pattern, const char *value, GArray *caps,
                            gboolean *failed);
/* NULL if @pattern compiles, else why not */
const char *sieve_regex_check (const char *pattern);
