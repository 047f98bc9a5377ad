/* sieve-regex.c - the :regex match type (draft-ietf-sieve-regex, as
 * Pigeonhole's "regex" extension): POSIX extended regular expressions,
 * matched with GRegex (PCRE2) on octets, as the comparators compare
 * octets: '.' is one octet, as '?' of :matches is.
 *
 * Bounds: GRegex has no step budget of its own, so a pattern is at most
 * MAX_PATTERN bytes, a value at most MAX_SUBJECT bytes (longer ones are
 * matched on their start), and no JIT is asked for, so PCRE2's own match
 * and heap limits (10 million steps, 20 MB by default) stop a
 * backtracking pattern; GRegex then reports an error, which is a run-time
 * error of the script here, not "no match".  The run's deadline is
 * checked between values by the caller.
 */
#include "config.h"

#include <string.h>

#include "sieve-match.h"

#define MAX_PATTERN 1024
#define MAX_SUBJECT (1024 * 1024)

/* POSIX: '.' matches a newline too and '$' only the end */
static GRegex *
compile (SieveComparator cmp, const char *pattern, GError **error)
{
  GRegexCompileFlags f = G_REGEX_RAW | G_REGEX_DOTALL | G_REGEX_DOLLAR_ENDONLY;

  if (strlen (pattern) > MAX_PATTERN)
    {
      g_set_error (error, G_REGEX_ERROR, G_REGEX_ERROR_COMPILE, "regular expression too long");
      return NULL;
    }
  if (cmp != SIEVE_COMPARATOR_OCTET)
    f |= G_REGEX_CASELESS;
  return g_regex_new (pattern, f, 0, error);
}

const char *
sieve_regex_check (const char *pattern)
{
  g_autoptr (GError) error = NULL;
  GRegex *re = compile (SIEVE_COMPARATOR_OCTET, pattern, &error);

  if (re == NULL)
    return strlen (pattern) > MAX_PATTERN ? "regular expression too long" : "invalid regular expression";
  g_regex_unref (re);
  return NULL;
}

/* Group @i as offsets into the subject; an unset group is empty */
static void
add_group (GArray *caps, GMatchInfo *mi, int i)
{
  SieveGlobCap c = { 0, 0 };
  int start, end;

  if (g_match_info_fetch_pos (mi, i, &start, &end) && start >= 0 && end >= start)
    {
      c.start = start;
      c.len = end - start;
    }
  g_array_append_val (caps, c);
}

gboolean
sieve_regex_match (SieveComparator cmp, const char *pattern, const char *value, GArray *caps,
                   gboolean *failed)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GRegex) re = compile (cmp, pattern, &error);
  g_autoptr (GMatchInfo) mi = NULL;
  gboolean ok;

  if (re == NULL)
    {
      if (failed)
        *failed = TRUE;
      return FALSE;
    }
  ok = g_regex_match_full (re, value, MIN (strlen (value), MAX_SUBJECT), 0, 0, &mi, &error);
  if (error)
    {
      if (failed)
        *failed = TRUE;
      return FALSE;
    }
  for (int i = 0; ok && caps && i < g_match_info_get_match_count (mi) && i < 10; i++)
    add_group (caps, mi, i);
  return ok;
}
