/* sieve-match.c - how keys meet values: the comparators i;octet,
 * i;ascii-casemap and i;ascii-numeric (RFC 4790), the match types :is,
 * :contains, :matches (RFC 5228 2.7.1) and :count/:value (RFC 5231), and
 * address parts (RFC 5228 2.7.4, RFC 5233).  Nothing here knows of a run:
 * the deadline comes in as a value.
 */
#include "config.h"

#include <string.h>

#include "sieve-match.h"

static const char *const comparator_names[] = { "i;ascii-casemap", "i;octet", "i;ascii-numeric" };
static const char *const relop_names[] = { "gt", "ge", "lt", "le", "eq", "ne" };

/* The index of @name in @names (of @n), the value of its enum */
static gboolean
lookup (const char *const *names, guint n, const char *name, guint *out)
{
  for (guint i = 0; i < n; i++)
    if (strcmp (name, names[i]) == 0)
      {
        *out = i;
        return TRUE;
      }
  return FALSE;
}

gboolean
sieve_comparator_lookup (const char *name, SieveComparator *out)
{
  guint i;

  if (!lookup (comparator_names, G_N_ELEMENTS (comparator_names), name, &i))
    return FALSE;
  *out = i;
  return TRUE;
}

const char *
sieve_comparator_name (SieveComparator cmp)
{
  return comparator_names[cmp];
}

gboolean
sieve_relop_lookup (const char *name, SieveRelop *out)
{
  guint i;

  if (!lookup (relop_names, G_N_ELEMENTS (relop_names), name, &i))
    return FALSE;
  *out = i;
  return TRUE;
}

const char *
sieve_relop_name (SieveRelop op)
{
  return relop_names[op];
}

/* i;ascii-numeric: the leading digits, or "infinity" (RFC 4790 9.1) */
static int
numeric_cmp (const char *a, const char *b)
{
  gboolean da = g_ascii_isdigit (a[0]), db = g_ascii_isdigit (b[0]);
  gsize la, lb;

  if (!da || !db)
    return da ? -1 : db ? 1 : 0;
  while (*a == '0' && g_ascii_isdigit (a[1]))
    a++;
  while (*b == '0' && g_ascii_isdigit (b[1]))
    b++;
  la = strspn (a, "0123456789");
  lb = strspn (b, "0123456789");
  if (la != lb)
    return la < lb ? -1 : 1;
  return strncmp (a, b, la);
}

int
sieve_compare (SieveComparator cmp, const char *a, const char *b)
{
  switch (cmp)
    {
    case SIEVE_COMPARATOR_OCTET:
      return strcmp (a, b);
    case SIEVE_COMPARATOR_ASCII_NUMERIC:
      return numeric_cmp (a, b);
    default:
      return g_ascii_strcasecmp (a, b);
    }
}

gboolean
sieve_relop_holds (SieveRelop op, int c)
{
  switch (op)
    {
    case SIEVE_RELOP_GT: return c > 0;
    case SIEVE_RELOP_GE: return c >= 0;
    case SIEVE_RELOP_LT: return c < 0;
    case SIEVE_RELOP_LE: return c <= 0;
    case SIEVE_RELOP_EQ: return c == 0;
    default: return c != 0;
    }
}

/* :contains and :matches compare characters: i;octet exactly, the other
 * two without case */
static gboolean
char_eq (SieveComparator cmp, char a, char b)
{
  return cmp == SIEVE_COMPARATOR_OCTET ? a == b : g_ascii_tolower (a) == g_ascii_tolower (b);
}

/* :matches with * and ? (and \ escapes), recording what the wildcards
 * matched as offsets into the string (RFC 5229 3.2): nothing is copied
 * while matching, so a long value is not quadratic.  Backtracking, but a
 * (pattern, string) position that failed once fails again whatever was
 * captured, so failures are remembered: polynomial, not exponential, in
 * the number of stars; a step budget bounds the rest and the run's
 * deadline is checked as it goes.  Over either, the test is a run-time
 * error, not "no match": a crafted value must not slip past a rule. */
typedef struct {
  SieveComparator cmp;
  const char *pat, *str;
  gsize plen, slen;
  guint8 *failed;           /* bit per (pattern, string) position, or NULL */
  guint64 steps;
  guint depth;              /* nested stars */
  gint64 deadline;          /* monotonic us, or 0: none */
  gboolean timed_out;
  GArray *caps;             /* SieveGlobCap */
} Glob;

#define GLOB_MAX_STEPS 2000000
#define GLOB_MAX_MEMO (64u * 1024 * 1024) /* bits */
#define GLOB_MAX_DEPTH 4096

static gboolean
glob_step (Glob *g)
{
  if (++g->steps > GLOB_MAX_STEPS || g->timed_out)
    return FALSE;
  if (g->deadline && (g->steps & 1023) == 0 && g_get_monotonic_time () > g->deadline)
    g->timed_out = TRUE;
  return !g->timed_out;
}

static gboolean
glob_over (const Glob *g)
{
  return g->steps > GLOB_MAX_STEPS || g->timed_out;
}

static gboolean glob_at (Glob *g, gsize pi, gsize si);

/* The pattern is at a star: the shortest match first (as before). */
static gboolean
glob_star (Glob *g, gsize pi, gsize si)
{
  if (++g->depth > GLOB_MAX_DEPTH)
    return FALSE;
  for (gsize s = si;; s++)
    {
      SieveGlobCap c = { si, s - si };
      guint mark = g->caps->len;
      g_array_append_val (g->caps, c);
      if (glob_at (g, pi + 1, s))
        return TRUE;
      g_array_set_size (g->caps, mark);
      if (s == g->slen || glob_over (g))
        break;
    }
  g->depth--;
  return FALSE;
}

/* Literals and '?' in a loop, not a call each: the depth stays the
 * number of stars however long the pattern.  Moves *@pi and *@si up to
 * the next star, the end, or the first character that does not match. */
static void
glob_literals (Glob *g, gsize *pi, gsize *si)
{
  while (*pi < g->plen && g->pat[*pi] != '*' && glob_step (g))
    {
      gsize lit;
      if (*si == g->slen)
        break;
      if (g->pat[*pi] == '?')
        {
          /* one octet under i;octet and i;ascii-casemap, not one UTF-8
           * character: both compare octets (RFC 5228 2.7.1, RFC 4790 9) */
          SieveGlobCap c = { *si, 1 };
          g_array_append_val (g->caps, c);
          *si += c.len;
          (*pi)++;
          continue;
        }
      lit = g->pat[*pi] == '\\' && *pi + 1 < g->plen ? *pi + 1 : *pi;
      if (!char_eq (g->cmp, g->pat[lit], g->str[*si]))
        break;
      *pi = lit + 1;
      (*si)++;
    }
}

static gboolean
glob_at (Glob *g, gsize pi, gsize si)
{
  gsize pi0 = pi, si0 = si, bit = pi * (g->slen + 1) + si;
  guint mark = g->caps->len;
  gboolean ok = FALSE;

  /* a step even when the memo answers: the budget bounds the loop of
   * every star above */
  if (!glob_step (g) || (g->failed && (g->failed[bit / 8] & (1 << (bit % 8)))))
    return FALSE;
  glob_literals (g, &pi, &si);
  if (glob_over (g))
    ok = FALSE;
  else if (pi < g->plen && g->pat[pi] != '*')
    ok = FALSE;       /* a literal or '?' that did not match */
  else if (pi == g->plen)
    ok = si == g->slen;
  else
    ok = glob_star (g, pi, si);
  if (!ok)
    {
      g_array_set_size (g->caps, mark);
      if (g->failed)
        {
          bit = pi0 * (g->slen + 1) + si0;
          g->failed[bit / 8] |= 1 << (bit % 8);
        }
    }
  return ok;
}

/* TRUE if @str matches @pat; what the wildcards matched goes to @caps.
 * *@timed_out: @deadline passed or the step budget ran out. */
static gboolean
glob (SieveComparator cmp, const char *pat, const char *str, GArray *caps, gint64 deadline,
      gboolean *timed_out)
{
  Glob g = { cmp, pat, str, strlen (pat), strlen (str), NULL, 0, 0, deadline, FALSE, caps };
  guint64 bits = (guint64) (g.plen + 1) * (g.slen + 1);
  gboolean ok;

  if (bits <= GLOB_MAX_MEMO)
    g.failed = g_malloc0 (bits / 8 + 1);
  ok = glob_at (&g, 0, 0);
  g_free (g.failed);
  if (timed_out)
    *timed_out = glob_over (&g);
  return ok;
}

/* i;octet uses strstr (linear); the case-insensitive scan checks the
 * deadline as it goes. */
static gboolean
contains (SieveComparator cmp, const char *hay, const char *needle, gint64 deadline, gboolean *timed_out)
{
  gsize n = strlen (needle);

  if (cmp == SIEVE_COMPARATOR_OCTET)
    return strstr (hay, needle) != NULL;
  for (const char *p = hay; *p; p++)
    {
      if (deadline && ((p - hay) & 0xffff) == 0xffff && g_get_monotonic_time () > deadline)
        {
          *timed_out = TRUE;
          return FALSE;
        }
      if (g_ascii_tolower (*p) == g_ascii_tolower (needle[0]) && g_ascii_strncasecmp (p, needle, n) == 0)
        return TRUE;
    }
  return n == 0;
}

gboolean
sieve_match_one (const SieveMatchSpec *m, const char *value, const char *key, GArray *caps, gint64 deadline,
                 gboolean *timed_out)
{
  switch (m->type)
    {
    case SIEVE_MATCH_CONTAINS:
      return contains (m->comparator, value, key, deadline, timed_out);
    case SIEVE_MATCH_MATCHES:
      {
        g_autoptr (GArray) own = caps ? NULL : g_array_new (FALSE, FALSE, sizeof (SieveGlobCap));
        return glob (m->comparator, key, value, caps ? caps : own, deadline, timed_out);
      }
    case SIEVE_MATCH_REGEX:
      return sieve_regex_match (m->comparator, key, value, caps, timed_out);
    case SIEVE_MATCH_VALUE:
      return sieve_relop_holds (m->relop, sieve_compare (m->comparator, value, key));
    default:
      return sieve_compare (m->comparator, value, key) == 0;
    }
}

gboolean
sieve_match_count (const SieveMatchSpec *m, guint count, char *const *keys)
{
  g_autofree char *n = g_strdup_printf ("%u", count);

  for (guint k = 0; keys[k]; k++)
    if (sieve_relop_holds (m->relop, sieve_compare (SIEVE_COMPARATOR_ASCII_NUMERIC, n, keys[k])))
      return TRUE;
  return FALSE;
}

gboolean
sieve_header_edit_matches (const SieveHeaderEdit *e, const char *value)
{
  SieveMatchSpec m = { SIEVE_COMPARATOR_ASCII_CASEMAP, e->match_type, SIEVE_RELOP_NE, e->relop != NULL };

  if (e->match == NULL)
    return TRUE;
  if (e->comparator)
    sieve_comparator_lookup (e->comparator, &m.comparator);
  if (e->relop)
    sieve_relop_lookup (e->relop, &m.relop);
  /* the count of values is no value: :count compares as :is here */
  if (m.type == SIEVE_MATCH_COUNT)
    m.type = SIEVE_MATCH_IS;
  for (guint k = 0; e->match[k]; k++)
    {
      if (m.type == SIEVE_MATCH_VALUE && !m.has_relop)
        continue;
      if (sieve_match_one (&m, value, e->match[k], NULL, 0, NULL))
        return TRUE;
    }
  return FALSE;
}

gboolean
sieve_address_ok (const char *a)
{
  const char *at = strrchr (a, '@');

  if (at == NULL || at == a || at[1] == '\0' || strlen (a) > 320)
    return FALSE;
  for (const char *p = a; *p; p++)
    if ((guchar) *p <= ' ' || strchr ("<>()[],;:\\", *p))
      {
        if (p < at && a[0] == '"')
          continue;
        return FALSE;
      }
  return TRUE;
}

char *
sieve_address_part (const char *addr, SieveAddressPart part, const char *delimiter)
{
  const char *at = strrchr (addr, '@');
  g_autofree char *local = at ? g_strndup (addr, at - addr) : g_strdup (addr);
  gsize n;

  switch (part)
    {
    case SIEVE_ADDRESS_LOCALPART:
      return g_steal_pointer (&local);
    case SIEVE_ADDRESS_DOMAIN:
      return g_strdup (at ? at + 1 : "");
    case SIEVE_ADDRESS_USER:
      n = strcspn (local, delimiter);
      return g_strndup (local, n);
    case SIEVE_ADDRESS_DETAIL:
      n = strcspn (local, delimiter);
      return local[n] ? g_strdup (local + n + 1) : NULL; /* no detail: never matches */
    default:
      return g_strdup (addr);
    }
}
