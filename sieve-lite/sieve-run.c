/* sieve-run.c - the argument grammar of each command and test, and the
 * interpreter: match types (RFC 5228 2.7.1, RFC 5231), comparators (2.7.3),
 * address parts (2.7.4, RFC 5233), implicit keep (2.10.2), runtime errors
 * (2.10.6: stop, and keep), and the extensions listed in sieve.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "gmime-cleanup.h"
#include "sieve-private.h"

#define MAX_ACTIONS 32
#define MAX_REDIRECTS 4
#define MAX_STEPS 100000
#define MAX_TIME_MS 2000
#define MAX_VARIABLE_SIZE 4096
#define MAX_MEMORY (4 * 1024 * 1024)
#define MAX_HEADER_SIZE (1024 * 1024) /* like the body: a folded field can be longer */
#define MAX_BODY_SIZE (1024 * 1024)
#define MAX_ERROR_TEXT 200

enum { M_IS, M_CONTAINS, M_MATCHES, M_COUNT, M_VALUE };
enum { A_ALL, A_LOCALPART, A_DOMAIN, A_USER, A_DETAIL };

typedef struct {
  const char *comparator;
  int match;
  const char *relop;
  int addrpart;
  gboolean copy, last, over, under, percent, create;
  const char *field;        /* callout :verdict/:score/:labels */
  char **flags;             /* :flags */
  guint64 index;
  guint64 days;             /* vacation */
  gboolean has_days, mime;
  const char *subject, *from, *handle;
  char **addresses;
  GPtrArray *modifiers;     /* set */
  GPtrArray *pos;           /* SieveArg*: strings and numbers in order */
} Args;

static const char *const value_tags[] = { "comparator", "count", "value", "index", "flags", "content", "days",
                                          "subject", "from", "addresses", "handle", NULL };

static void
args_clear (Args *a)
{
  g_clear_pointer (&a->modifiers, g_ptr_array_unref);
  g_clear_pointer (&a->pos, g_ptr_array_unref);
}

/* local@domain, each part non-empty, nothing a mail address cannot hold
 * outside a quoted local part */
static gboolean
address_ok (const char *a)
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

/* Splits a node's arguments; FALSE with @why for a tag without its value
 * or an unknown tag. */
static gboolean
get_args (const SieveNode *n, Args *a, const char **why)
{
  memset (a, 0, sizeof *a);
  a->comparator = "i;ascii-casemap";
  a->pos = g_ptr_array_new ();
  a->modifiers = g_ptr_array_new ();
  for (guint i = 0; i < n->args->len; i++)
    {
      const SieveArg *x = n->args->pdata[i];
      const SieveArg *v = i + 1 < n->args->len ? n->args->pdata[i + 1] : NULL;
      const char *t = x->tag;

      if (x->kind != SIEVE_ARG_TAG)
        {
          g_ptr_array_add (a->pos, (gpointer) x);
          continue;
        }
      if (g_strv_contains (value_tags, t))
        {
          gboolean want_num = strcmp (t, "index") == 0 || strcmp (t, "days") == 0;
          if (v == NULL || v->kind != (want_num ? SIEVE_ARG_NUMBER : SIEVE_ARG_STRINGS)
              || (!want_num && strcmp (t, "flags") && strcmp (t, "content") && strcmp (t, "addresses")
                  && v->strings[1]))
            return (*why = "a tag is missing its value", FALSE);
          i++;
          if (strcmp (t, "comparator") == 0)
            a->comparator = v->strings[0];
          else if (strcmp (t, "count") == 0 || strcmp (t, "value") == 0)
            {
              a->match = t[0] == 'c' ? M_COUNT : M_VALUE;
              static const char *const ops[] = { "gt", "ge", "lt", "le", "eq", "ne", NULL };
              a->relop = v->strings[0];
              if (!g_strv_contains (ops, a->relop))
                return (*why = "relational operator must be gt, ge, lt, le, eq or ne", FALSE);
            }
          else if (strcmp (t, "index") == 0)
            a->index = v->number;
          else if (strcmp (t, "flags") == 0)
            a->flags = v->strings;
          else if (strcmp (t, "days") == 0)
            a->days = v->number, a->has_days = TRUE;
          else if (strcmp (t, "subject") == 0)
            a->subject = v->strings[0];
          else if (strcmp (t, "from") == 0)
            a->from = v->strings[0];
          else if (strcmp (t, "handle") == 0)
            a->handle = v->strings[0];
          else if (strcmp (t, "addresses") == 0)
            a->addresses = v->strings;
          continue;
        }
      if (strcmp (t, "is") == 0) a->match = M_IS;
      else if (strcmp (t, "contains") == 0) a->match = M_CONTAINS;
      else if (strcmp (t, "matches") == 0) a->match = M_MATCHES;
      else if (strcmp (t, "all") == 0) a->addrpart = A_ALL;
      else if (strcmp (t, "localpart") == 0) a->addrpart = A_LOCALPART;
      else if (strcmp (t, "domain") == 0) a->addrpart = A_DOMAIN;
      else if (strcmp (t, "user") == 0) a->addrpart = A_USER;
      else if (strcmp (t, "detail") == 0) a->addrpart = A_DETAIL;
      else if (strcmp (t, "copy") == 0) a->copy = TRUE;
      else if (strcmp (t, "create") == 0) a->create = TRUE;
      else if (strcmp (t, "last") == 0) a->last = TRUE;
      else if (strcmp (t, "over") == 0) a->over = TRUE;
      else if (strcmp (t, "under") == 0) a->under = TRUE;
      else if (strcmp (t, "percent") == 0) a->percent = TRUE;
      else if (strcmp (t, "mime") == 0) a->mime = TRUE;
      else if (strcmp (t, "raw") == 0 || strcmp (t, "text") == 0) ;
      else if (strcmp (t, "verdict") == 0 || strcmp (t, "score") == 0 || strcmp (t, "labels") == 0)
        a->field = t;
      else if (strcmp (t, "lower") == 0 || strcmp (t, "upper") == 0 || strcmp (t, "lowerfirst") == 0
               || strcmp (t, "upperfirst") == 0 || strcmp (t, "quotewildcard") == 0 || strcmp (t, "length") == 0)
        g_ptr_array_add (a->modifiers, (gpointer) t);
      else
        return (*why = "unknown tag", FALSE);
    }
  return TRUE;
}

/* ---- validation of argument shapes --------------------------------------------- */

static gboolean
check_shape (GError **error, const SieveScript *s, const SieveNode *n, const char *shape, guint tests)
{
  Args a;
  const char *why = NULL;
  gboolean ok = get_args (n, &a, &why);
  guint want = strlen (shape), opt = 0;

  /* shape: 's' string list, 'n' number, lower-case optional prefix 'o' */
  if (ok && shape[0] == 'o')
    {
      opt = 1;
      shape++;
      want--;
    }
  if (ok && !(a.pos->len == want || (opt && a.pos->len + 1 == want)))
    ok = (why = "wrong number of arguments", FALSE);
  for (guint i = 0; ok && i < a.pos->len; i++)
    {
      const SieveArg *x = a.pos->pdata[i];
      char k = shape[want - a.pos->len + i];
      if ((k == 'n') != (x->kind == SIEVE_ARG_NUMBER))
        ok = (why = k == 'n' ? "expected a number" : "expected a string", FALSE);
    }
  if (ok && n->tests->len != tests && tests != G_MAXUINT)
    ok = (why = "wrong number of tests", FALSE);
  if (ok && (a.match == M_COUNT || a.match == M_VALUE) && !g_hash_table_contains (s->caps, "relational"))
    ok = (why = ":count/:value need require \"relational\"", FALSE);
  if (ok && (a.addrpart == A_USER || a.addrpart == A_DETAIL) && !g_hash_table_contains (s->caps, "subaddress"))
    ok = (why = ":user/:detail need require \"subaddress\"", FALSE);
  if (ok && a.create && (strcmp (n->name, "fileinto") || !g_hash_table_contains (s->caps, "mailbox")))
    ok = (why = ":create needs require \"mailbox\" and goes with fileinto", FALSE);
  if (ok && a.copy && !g_hash_table_contains (s->caps, "copy"))
    ok = (why = ":copy needs require \"copy\"", FALSE);
  if (ok && a.flags && !g_hash_table_contains (s->caps, "imap4flags"))
    ok = (why = ":flags needs require \"imap4flags\"", FALSE);
  if (ok && a.percent && !g_hash_table_contains (s->caps, "spamtestplus"))
    ok = (why = ":percent needs require \"spamtestplus\"", FALSE);
  if (ok && strcmp (a.comparator, "i;ascii-casemap") && strcmp (a.comparator, "i;octet"))
    {
      g_autofree char *cap = g_strconcat ("comparator-", a.comparator, NULL);
      if (strcmp (a.comparator, "i;ascii-numeric"))
        ok = (why = "unknown comparator", FALSE);
      else if (!g_hash_table_contains (s->caps, cap))
        ok = (why = "i;ascii-numeric needs require \"comparator-i;ascii-numeric\"", FALSE);
    }
  args_clear (&a);
  if (!ok)
    g_set_error (error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "%d:%d: %s: %s", n->line, n->col, n->name, why);
  return ok;
}

gboolean
sieve_validate_test (GError **error, const SieveScript *s, const SieveNode *t)
{
  const char *cap = NULL;
  const char *n = t->name;

  if (!sieve_known_test (n, &cap))
    {
      g_set_error (error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "%d:%d: unknown test '%s'", t->line, t->col, n);
      return FALSE;
    }
  if (cap && !g_hash_table_contains (s->caps, cap))
    {
      g_set_error (error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "%d:%d: '%s' needs require \"%s\"", t->line, t->col, n, cap);
      return FALSE;
    }
  for (guint i = 0; i < t->tests->len; i++)
    if (!sieve_validate_test (error, s, t->tests->pdata[i]))
      return FALSE;
  if (!strcmp (n, "address") || !strcmp (n, "envelope") || !strcmp (n, "header") || !strcmp (n, "string")
      || !strcmp (n, "callout"))
    return check_shape (error, s, t, "ss", 0);
  if (!strcmp (n, "exists") || !strcmp (n, "body") || !strcmp (n, "spamtest") || !strcmp (n, "virustest"))
    return check_shape (error, s, t, "s", 0);
  if (!strcmp (n, "hasflag"))
    return check_shape (error, s, t, "oss", 0);
  if (!strcmp (n, "mailboxexists"))
    return check_shape (error, s, t, "s", 0);
  if (!strcmp (n, "size"))
    return check_shape (error, s, t, "n", 0);
  if (!strcmp (n, "not"))
    return check_shape (error, s, t, "", 1);
  if (!strcmp (n, "allof") || !strcmp (n, "anyof"))
    {
      if (t->tests->len == 0)
        {
          g_set_error (error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "%d:%d: %s needs tests", t->line, t->col, n);
          return FALSE;
        }
      return check_shape (error, s, t, "", G_MAXUINT);
    }
  return check_shape (error, s, t, "", 0); /* true, false */
}

gboolean
sieve_validate_command (GError **error, const SieveScript *s, const SieveNode *c)
{
  const char *n = c->name;

  if (!strcmp (n, "require"))
    return TRUE;
  if (!strcmp (n, "if") || !strcmp (n, "elsif"))
    return check_shape (error, s, c, "", 1);
  if (!strcmp (n, "else") || !strcmp (n, "stop") || !strcmp (n, "keep") || !strcmp (n, "discard"))
    return check_shape (error, s, c, "", 0);
  if (!strcmp (n, "redirect"))
    {
      const SieveArg *x = c->args->len ? c->args->pdata[c->args->len - 1] : NULL;
      if (!check_shape (error, s, c, "s", 0))
        return FALSE;
      if (x && x->kind == SIEVE_ARG_STRINGS && !strstr (x->strings[0], "${") && !address_ok (x->strings[0]))
        {
          g_set_error (error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "%d:%d: redirect: '%s' is not a valid address",
                       c->line, c->col, x->strings[0]);
          return FALSE;
        }
      return TRUE;
    }
  if (!strcmp (n, "fileinto") || !strcmp (n, "reject") || !strcmp (n, "ereject") || !strcmp (n, "vacation"))
    return check_shape (error, s, c, "s", 0);
  if (!strcmp (n, "setflag") || !strcmp (n, "addflag") || !strcmp (n, "removeflag"))
    return check_shape (error, s, c, "oss", 0);
  if (!strcmp (n, "set") || !strcmp (n, "addheader"))
    return check_shape (error, s, c, "ss", 0);
  if (!strcmp (n, "deleteheader"))
    return check_shape (error, s, c, "oss", 0) || (g_clear_error (error), check_shape (error, s, c, "s", 0));
  return TRUE;
}

/* ---- running ---------------------------------------------------------------- */

typedef struct {
  const SieveScript *s;
  const SieveMessage *m;
  SieveResult *r;
  GHashTable *vars;
  char *mv[10];              /* match variables */
  GHashTable *flags;         /* the internal flag variable: set of flags */
  gboolean implicit_keep;
  gboolean stopped;
  guint steps;
  guint redirects;
  gint64 deadline;           /* monotonic us */
  gsize mem_used, mem_max;   /* bytes of strings built by expansion */
  gsize var_max;             /* per variable */
  GError *error;
} Run;

/* Limits are runtime errors (RFC 5228 2.10.6); the first one counts. */
static void
run_fail (Run *run, int code, const char *what)
{
  if (run->error == NULL)
    g_set_error_literal (&run->error, SIEVE_ERROR, code, what);
}

/* Checked where the work is done (each command and test, inside matching
 * and expansion), so one costly step cannot run far past the limit. */
static gboolean
out_of_time (Run *run)
{
  if (run->error)
    return TRUE;
  if (g_get_monotonic_time () <= run->deadline)
    return FALSE;
  run_fail (run, SIEVE_ERROR_LIMIT, "script ran too long");
  return TRUE;
}

/* A copy of @s fit for a log line: control characters become '?' (a
 * header decoded into a string may hold LF or ESC), at most @max bytes. */
static char *
printable (const char *s, gsize max)
{
  GString *out = g_string_new (NULL);
  const char *p = s;

  while (*p && out->len < max)
    {
      gunichar c = g_utf8_get_char_validated (p, -1);
      gboolean invalid = c == (gunichar) -1 || c == (gunichar) -2;
      const char *next = invalid ? p + 1 : g_utf8_next_char (p);
      if (invalid || c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0))
        g_string_append_c (out, '?');
      else
        g_string_append_len (out, p, next - p);
      p = next;
    }
  return g_string_free (out, FALSE);
}

/* Cuts @s to at most @max bytes on a UTF-8 character boundary. */
static void
cut_utf8 (char *s, gsize max)
{
  gsize n = strlen (s);

  if (n <= max)
    return;
  n = max;
  while (n > 0 && ((guchar) s[n] & 0xc0) == 0x80)
    n--;
  s[n] = '\0';
}

static gboolean
has_cap (Run *run, const char *cap)
{
  return g_hash_table_contains (run->s->caps, cap);
}

/* ${name} and ${N} (RFC 5229 3), when variables is required.  What it
 * builds counts against the run's memory (a string may name a 4 KB
 * variable thousands of times); over it, the run fails and the result is
 * cut short. */
static char *
expand (Run *run, const char *str)
{
  GString *out;
  gsize room;

  if (!has_cap (run, "variables") || !strstr (str, "${"))
    return g_strdup (str);
  room = run->mem_max - run->mem_used;
  out = g_string_new (NULL);
  for (const char *p = str; *p;)
    {
      if (out->len > room)
        {
          run_fail (run, SIEVE_ERROR_LIMIT, "script used too much memory (variables)");
          break;
        }
      const char *close;
      if (p[0] == '$' && p[1] == '{' && (close = strchr (p + 2, '}')) != NULL)
        {
          g_autofree char *name = g_ascii_strdown (p + 2, close - p - 2);
          gboolean ok = name[0] != '\0';
          for (const char *q = name; *q && ok; q++)
            ok = g_ascii_isalnum (*q) || *q == '_' || *q == '.';
          if (ok)
            {
              const char *v = NULL;
              if (g_ascii_isdigit (name[0]))
                {
                  guint64 k = g_ascii_strtoull (name, NULL, 10);
                  v = k < 10 ? run->mv[k] : NULL;
                }
              else
                v = g_hash_table_lookup (run->vars, name);
              g_string_append (out, v ? v : "");
              p = close + 1;
              continue;
            }
        }
      g_string_append_c (out, *p++);
    }
  run->mem_used += MIN (out->len, room);
  return g_string_free (out, FALSE);
}

/* RFC 5229 3: an implementation may limit the size of a variable; a
 * script that sets a longer one fails (the doubling of a string would
 * otherwise reach gigabytes in forty lines).  Takes @value. */
static void
set_variable (Run *run, char *name, char *value)
{
  if (strlen (value) > run->var_max)
    {
      g_autofree char *why = g_strdup_printf ("a variable would be longer than %" G_GSIZE_FORMAT " bytes",
                                              run->var_max);
      run_fail (run, SIEVE_ERROR_LIMIT, why);
      g_free (name);
      g_free (value);
      return;
    }
  g_hash_table_replace (run->vars, name, value);
}

/* A match variable: as a variable, but cut to the limit rather than
 * failing (a long Subject against "*" is ordinary mail). */
static char *
match_value (Run *run, const char *s, gsize len)
{
  char *v = g_strndup (s, len);
  cut_utf8 (v, run->var_max);
  return v;
}

static char **
expand_list (Run *run, char **list)
{
  guint n = list ? g_strv_length (list) : 0;
  char **out = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++)
    out[i] = expand (run, list[i]);
  return out;
}

/* i;ascii-numeric: the leading digits, or "infinity" (RFC 4790 9.1) */
static int
numeric_cmp (const char *a, const char *b)
{
  gboolean da = g_ascii_isdigit (a[0]), db = g_ascii_isdigit (b[0]);
  if (!da || !db)
    return da ? -1 : db ? 1 : 0;
  while (*a == '0' && g_ascii_isdigit (a[1]))
    a++;
  while (*b == '0' && g_ascii_isdigit (b[1]))
    b++;
  {
    gsize la = strspn (a, "0123456789"), lb = strspn (b, "0123456789");
    if (la != lb)
      return la < lb ? -1 : 1;
    return strncmp (a, b, la);
  }
}

static int
compare (const char *cmp, const char *a, const char *b)
{
  if (strcmp (cmp, "i;octet") == 0)
    return strcmp (a, b);
  if (strcmp (cmp, "i;ascii-numeric") == 0)
    return numeric_cmp (a, b);
  return g_ascii_strcasecmp (a, b);
}

static gboolean
relop (const char *op, int c)
{
  if (!strcmp (op, "gt")) return c > 0;
  if (!strcmp (op, "ge")) return c >= 0;
  if (!strcmp (op, "lt")) return c < 0;
  if (!strcmp (op, "le")) return c <= 0;
  if (!strcmp (op, "eq")) return c == 0;
  return c != 0;
}

static gboolean
char_eq (const char *cmp, char a, char b)
{
  return strcmp (cmp, "i;octet") == 0 ? a == b : g_ascii_tolower (a) == g_ascii_tolower (b);
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
  gsize start, len;
} GlobCap;

typedef struct {
  const char *cmp, *pat, *str;
  gsize plen, slen;
  guint8 *failed;           /* bit per (pattern, string) position, or NULL */
  guint64 steps;
  guint depth;              /* nested stars */
  gint64 deadline;          /* monotonic us, or 0: none */
  gboolean timed_out;
  GArray *caps;             /* GlobCap */
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

static gboolean glob_at (Glob *g, gsize pi, gsize si);

/* The pattern is at a star: the shortest match first (as before). */
static gboolean
glob_star (Glob *g, gsize pi, gsize si)
{
  if (++g->depth > GLOB_MAX_DEPTH)
    return FALSE;
  for (gsize s = si;; s++)
    {
      GlobCap c = { si, s - si };
      guint mark = g->caps->len;
      g_array_append_val (g->caps, c);
      if (glob_at (g, pi + 1, s))
        return TRUE;
      g_array_set_size (g->caps, mark);
      if (s == g->slen || g->steps > GLOB_MAX_STEPS || g->timed_out)
        break;
    }
  g->depth--;
  return FALSE;
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
  /* literals and '?' in a loop, not a call each: the depth stays the
   * number of stars however long the pattern */
  while (pi < g->plen && g->pat[pi] != '*' && glob_step (g))
    {
      if (si == g->slen)
        break;
      if (g->pat[pi] == '?')
        {
          GlobCap c = { si, g_utf8_next_char (g->str + si) - (g->str + si) };
          c.len = MIN (c.len, g->slen - si);
          g_array_append_val (g->caps, c);
          si += c.len;
          pi++;
          continue;
        }
      gsize lit = g->pat[pi] == '\\' && pi + 1 < g->plen ? pi + 1 : pi;
      if (!char_eq (g->cmp, g->pat[lit], g->str[si]))
        break;
      pi = lit + 1;
      si++;
    }
  if (g->steps > GLOB_MAX_STEPS || g->timed_out)
    ok = FALSE;
  else if (pi < g->plen && g->pat[pi] != '*')
    ok = FALSE;       /* a literal or '?' that did not match */
  else if (pi == g->plen)
    ok = si == g->slen;
  else if (g->pat[pi] == '*')
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

/* TRUE if @str matches @pat; what the wildcards matched goes to @caps
 * (GlobCap offsets into @str).  *@timed_out: @deadline passed or the
 * step budget ran out, the answer is none. */
static gboolean
glob (const char *cmp, const char *pat, const char *str, GArray *caps, gint64 deadline, gboolean *timed_out)
{
  Glob g = { cmp, pat, str, strlen (pat), strlen (str), NULL, 0, 0, deadline, FALSE, caps };
  guint64 bits = (guint64) (g.plen + 1) * (g.slen + 1);
  gboolean ok;

  if (bits <= GLOB_MAX_MEMO)
    g.failed = g_malloc0 (bits / 8 + 1);
  ok = glob_at (&g, 0, 0);
  g_free (g.failed);
  if (timed_out)
    *timed_out = g.timed_out || g.steps > GLOB_MAX_STEPS;
  return ok;
}

/* i;octet uses strstr (linear); the case-insensitive scan checks the
 * deadline as it goes. */
static gboolean
contains (const char *cmp, const char *hay, const char *needle, gint64 deadline, gboolean *timed_out)
{
  gsize n = strlen (needle);
  if (strcmp (cmp, "i;octet") == 0)
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

/* Does any value match any key?  Sets match variables on :matches. */
static gboolean
match_any (Run *run, const Args *a, char **values, char **keys)
{
  if (a->match == M_COUNT)
    {
      g_autofree char *count = g_strdup_printf ("%u", values ? g_strv_length (values) : 0);
      for (guint k = 0; keys[k]; k++)
        if (relop (a->relop, compare ("i;ascii-numeric", count, keys[k])))
          return TRUE;
      return FALSE;
    }
  for (guint v = 0; values && values[v] && !out_of_time (run); v++)
    for (guint k = 0; keys[k]; k++)
      {
        const char *val = values[v], *key = keys[k];
        gboolean late = FALSE;
        switch (a->match)
          {
          case M_IS:
            if (compare (a->comparator, val, key) == 0)
              return TRUE;
            break;
          case M_CONTAINS:
            if (contains (a->comparator, val, key, run->deadline, &late))
              return TRUE;
            break;
          case M_VALUE:
            if (relop (a->relop, compare (a->comparator, val, key)))
              return TRUE;
            break;
          case M_MATCHES:
            {
              g_autoptr (GArray) caps = g_array_new (FALSE, FALSE, sizeof (GlobCap));
              if (glob (a->comparator, key, val, caps, run->deadline, &late))
                {
                  if (has_cap (run, "variables"))
                    {
                      for (guint i = 0; i < 10; i++)
                        g_clear_pointer (&run->mv[i], g_free);
                      run->mv[0] = match_value (run, val, strlen (val));
                      for (guint i = 0; i < caps->len && i < 9; i++)
                        {
                          GlobCap *c = &g_array_index (caps, GlobCap, i);
                          run->mv[i + 1] = match_value (run, val + c->start, c->len);
                        }
                    }
                  return TRUE;
                }
            }
            break;
          }
        if (late)
          {
            run_fail (run, SIEVE_ERROR_LIMIT, "script ran too long (or a :matches was too complex)");
            return FALSE;
          }
      }
  return FALSE;
}

/* The address part of one address (RFC 5228 2.7.4, RFC 5233). */
static char *
address_part (Run *run, const char *addr, int part)
{
  const char *at = strrchr (addr, '@');
  g_autofree char *local = at ? g_strndup (addr, at - addr) : g_strdup (addr);
  const char *delim = run->m->delimiter && run->m->delimiter[0] ? run->m->delimiter : "+";
  gsize n;

  switch (part)
    {
    case A_LOCALPART:
      return g_steal_pointer (&local);
    case A_DOMAIN:
      return g_strdup (at ? at + 1 : "");
    case A_USER:
      n = strcspn (local, delim);
      return g_strndup (local, n);
    case A_DETAIL:
      n = strcspn (local, delim);
      return local[n] ? g_strdup (local + n + 1) : NULL; /* no detail: never matches */
    default:
      return g_strdup (addr);
    }
}

static void
add_addresses (Run *run, GPtrArray *out, const char *value, int part)
{
  InternetAddressList *list = internet_address_list_parse (NULL, value);
  for (int i = 0; list && i < internet_address_list_length (list); i++)
    {
      InternetAddress *ia = internet_address_list_get_address (list, i);
      if (INTERNET_ADDRESS_IS_GROUP (ia))
        {
          InternetAddressList *members = internet_address_group_get_members (INTERNET_ADDRESS_GROUP (ia));
          for (int k = 0; members && k < internet_address_list_length (members); k++)
            {
              InternetAddress *m = internet_address_list_get_address (members, k);
              if (INTERNET_ADDRESS_IS_MAILBOX (m))
                {
                  char *p = address_part (run, internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (m)), part);
                  if (p)
                    g_ptr_array_add (out, p);
                }
            }
        }
      else if (INTERNET_ADDRESS_IS_MAILBOX (ia))
        {
          char *p = address_part (run, internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia)), part);
          if (p)
            g_ptr_array_add (out, p);
        }
    }
  if (list)
    g_object_unref (list);
}

/* Header values as the script sees them, editheader changes included. */
static char **
headers (Run *run, const char *name)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  char **orig = run->m->header ? run->m->header (name, run->m->data) : NULL;

  /* tests see at most max_header_size of a value (a Subject folded over
   * megabytes is no more spam for its tail) */
  for (guint i = 0; orig && orig[i]; i++)
    {
      cut_utf8 (orig[i], run->m->max_header_size ? run->m->max_header_size : MAX_HEADER_SIZE);
      g_ptr_array_add (out, g_steal_pointer (&orig[i]));
    }
  g_free (orig);
  /* RFC 5293 3: later tests see the edits so far, in order, as they
   * will be applied to the message */
  for (guint i = 0; run->r->edits && i < run->r->edits->len; i++)
    {
      SieveHeaderEdit *e = run->r->edits->pdata[i];
      guint n = out->len, occurrence = 0;
      if (g_ascii_strcasecmp (e->name, name) != 0)
        continue;
      if (e->value)
        {
          g_ptr_array_insert (out, e->last ? -1 : 0, g_strdup (e->value));
          continue;
        }
      for (guint k = 0; k < out->len;)
        {
          guint at;
          occurrence++;
          at = e->last ? n - occurrence + 1 : occurrence;
          if ((e->index == 0 || (guint) e->index == at) && sieve_header_edit_matches (e, out->pdata[k]))
            g_ptr_array_remove_index (out, k);
          else
            k++;
        }
    }
  g_ptr_array_add (out, NULL);
  g_ptr_array_set_free_func (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

static const char *
pos_string (const Args *a, guint i)
{
  const SieveArg *x = i < a->pos->len ? a->pos->pdata[i] : NULL;
  return x && x->kind == SIEVE_ARG_STRINGS ? x->strings[0] : NULL;
}

static char **
pos_list (const Args *a, guint i)
{
  const SieveArg *x = i < a->pos->len ? a->pos->pdata[i] : NULL;
  return x && x->kind == SIEVE_ARG_STRINGS ? x->strings : NULL;
}

static gboolean test (Run *run, const SieveNode *t);

static gboolean
test_inner (Run *run, const SieveNode *t, const Args *a)
{
  const char *n = t->name;
  g_auto (GStrv) keys = NULL;

  if (!strcmp (n, "true"))
    return TRUE;
  if (!strcmp (n, "false"))
    return FALSE;
  if (!strcmp (n, "not"))
    return !test (run, t->tests->pdata[0]);
  if (!strcmp (n, "allof") || !strcmp (n, "anyof"))
    {
      gboolean all = n[1] == 'l';
      for (guint i = 0; i < t->tests->len; i++)
        if (test (run, t->tests->pdata[i]) != all)
          return !all;
      return all;
    }
  if (!strcmp (n, "size"))
    {
      guint64 limit = ((SieveArg *) a->pos->pdata[0])->number;
      return a->over ? run->m->size > limit : run->m->size < limit;
    }
  if (!strcmp (n, "exists"))
    {
      g_auto (GStrv) names = expand_list (run, pos_list (a, 0));
      for (guint i = 0; names[i]; i++)
        {
          g_auto (GStrv) v = headers (run, names[i]);
          if (v[0] == NULL)
            return FALSE;
        }
      return TRUE;
    }
  keys = expand_list (run, pos_list (a, a->pos->len - 1));
  if (!strcmp (n, "header") || !strcmp (n, "address"))
    {
      g_auto (GStrv) names = expand_list (run, pos_list (a, 0));
      g_autoptr (GPtrArray) values = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; names[i]; i++)
        {
          g_auto (GStrv) v = headers (run, names[i]);
          for (guint k = 0; v[k]; k++)
            if (n[0] == 'h')
              g_ptr_array_add (values, g_strdup (v[k]));
            else
              add_addresses (run, values, v[k], a->addrpart);
        }
      g_ptr_array_add (values, NULL);
      return match_any (run, a, (char **) values->pdata, keys);
    }
  if (!strcmp (n, "envelope"))
    {
      g_auto (GStrv) parts = expand_list (run, pos_list (a, 0));
      g_autoptr (GPtrArray) values = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; parts[i]; i++)
        {
          const char *addr = !g_ascii_strcasecmp (parts[i], "from") ? run->m->envelope_from
                             : !g_ascii_strcasecmp (parts[i], "to") ? run->m->envelope_to : NULL;
          char *p;
          if (addr == NULL)
            continue;
          /* the null reverse-path is "" for every part */
          p = addr[0] ? address_part (run, addr, a->addrpart) : g_strdup ("");
          if (p)
            g_ptr_array_add (values, p);
        }
      g_ptr_array_add (values, NULL);
      return match_any (run, a, (char **) values->pdata, keys);
    }
  if (!strcmp (n, "string"))
    {
      g_auto (GStrv) values = expand_list (run, pos_list (a, 0));
      return match_any (run, a, values, keys);
    }
  if (!strcmp (n, "body"))
    {
      g_autofree char *text = run->m->body_text ? run->m->body_text (run->m->data) : NULL;
      char *values[2] = { text ? text : "", NULL };
      if (text)
        cut_utf8 (text, run->m->max_body_size ? run->m->max_body_size : MAX_BODY_SIZE);
      return match_any (run, a, values, keys);
    }
  if (!strcmp (n, "mailboxexists"))
    {
      /* RFC 5490 3.1: true if all the mailboxes exist */
      char **names = expand_list (run, pos_list (a, 0));
      gboolean all = run->m->mailbox_exists != NULL;
      for (guint i = 0; all && names[i]; i++)
        all = run->m->mailbox_exists (names[i], run->m->data);
      g_strfreev (names);
      return all;
    }
  if (!strcmp (n, "hasflag"))
    {
      g_autoptr (GPtrArray) values = g_ptr_array_new_with_free_func (g_free);
      GHashTableIter it;
      gpointer f;
      g_hash_table_iter_init (&it, run->flags);
      while (g_hash_table_iter_next (&it, &f, NULL))
        g_ptr_array_add (values, g_strdup (f));
      g_ptr_array_add (values, NULL);
      return match_any (run, a, (char **) values->pdata, keys);
    }
  if (!strcmp (n, "spamtest") || !strcmp (n, "virustest"))
    {
      int v = n[0] == 's' ? (a->percent ? run->m->spamtest_percent : run->m->spamtest) : run->m->virustest;
      g_autofree char *s = g_strdup_printf ("%d", v < 0 ? 0 : v);
      char *values[2] = { s, NULL };
      return match_any (run, a, values, keys);
    }
  if (!strcmp (n, "callout"))
    {
      g_autofree char *service = expand (run, pos_string (a, 0));
      for (guint i = 0; i < run->m->n_callouts; i++)
        {
          const SieveCallout *c = &run->m->callouts[i];
          const char *field = a->field ? a->field : "verdict";
          const char *v;
          g_auto (GStrv) values = NULL;
          if (g_ascii_strcasecmp (c->service, service) != 0)
            continue;
          v = !strcmp (field, "score") ? c->score : !strcmp (field, "labels") ? c->labels : c->verdict;
          values = !strcmp (field, "labels") ? g_strsplit (v ? v : "", ",", -1) : g_strsplit (v ? v : "", "\1", 1);
          if (v == NULL)
            return FALSE;
          return match_any (run, a, values, keys);
        }
      return FALSE;
    }
  return FALSE;
}

static gboolean
test (Run *run, const SieveNode *t)
{
  Args a;
  const char *why;
  gboolean result;

  if (out_of_time (run))
    return FALSE;
  get_args (t, &a, &why);
  result = test_inner (run, t, &a);
  args_clear (&a);
  return result;
}

/* ---- actions ------------------------------------------------------------------- */

static void
add_flags (Run *run, char **list, gboolean remove, gboolean replace)
{
  if (replace)
    g_hash_table_remove_all (run->flags);
  for (guint i = 0; list && list[i]; i++)
    {
      g_autofree char *x = expand (run, list[i]);
      g_auto (GStrv) words = g_strsplit_set (x, " ", -1);
      for (guint k = 0; words[k]; k++)
        {
          if (words[k][0] == '\0')
            continue;
          if (remove)
            g_hash_table_remove (run->flags, words[k]);
          else
            g_hash_table_add (run->flags, g_strdup (words[k]));
        }
    }
}

static char *
flags_string (Run *run, char **explicit_flags)
{
  g_autoptr (GString) s = g_string_new (NULL);
  GHashTableIter it;
  gpointer f;

  if (!has_cap (run, "imap4flags"))
    return NULL;
  if (explicit_flags)
    {
      for (guint i = 0; explicit_flags[i]; i++)
        {
          g_autofree char *x = expand (run, explicit_flags[i]);
          g_string_append_printf (s, "%s%s", s->len ? " " : "", x);
        }
    }
  else
    {
      g_hash_table_iter_init (&it, run->flags);
      while (g_hash_table_iter_next (&it, &f, NULL))
        g_string_append_printf (s, "%s%s", s->len ? " " : "", (char *) f);
    }
  return s->len ? g_strdup (s->str) : NULL;
}

static void
action (Run *run, SieveActionKind kind, char *arg, char *flags, gboolean copy)
{
  SieveAction *x;

  /* an expansion of the arguments may have failed the run */
  if (run->error || run->r->actions->len >= (run->m->max_actions ? run->m->max_actions : MAX_ACTIONS))
    {
      run_fail (run, SIEVE_ERROR_LIMIT, "too many actions");
      g_free (arg);
      g_free (flags);
      return;
    }
  /* RFC 5429 2.1: reject does not go with anything that delivers or
   * answers the message (a runtime error, as in Pigeonhole) */
  for (guint i = 0; i < run->r->actions->len; i++)
    {
      SieveActionKind o = ((SieveAction *) run->r->actions->pdata[i])->kind;
      gboolean new_rej = kind == SIEVE_REJECT || kind == SIEVE_EREJECT;
      gboolean old_rej = o == SIEVE_REJECT || o == SIEVE_EREJECT;
      if ((new_rej && old_rej) || (new_rej && o != SIEVE_DISCARD) || (old_rej && kind != SIEVE_DISCARD))
        {
          g_set_error (&run->error, SIEVE_ERROR, SIEVE_ERROR_RUNTIME, "%s conflicts with %s",
                       sieve_action_name (kind), sieve_action_name (o));
          g_free (arg);
          g_free (flags);
          return;
        }
    }
  /* the same mailbox twice is stored once (RFC 5228 2.10.3) */
  for (guint i = 0; i < run->r->actions->len; i++)
    {
      SieveAction *o = run->r->actions->pdata[i];
      if (o->kind == kind && g_strcmp0 (o->argument, arg) == 0 && (kind == SIEVE_FILEINTO || kind == SIEVE_KEEP
                                                                    || kind == SIEVE_REDIRECT))
        {
          g_free (arg);
          g_free (flags);
          return;
        }
    }
  x = g_new0 (SieveAction, 1);
  x->kind = kind;
  x->argument = arg;
  x->flags = flags;
  x->copy = copy;
  g_ptr_array_add (run->r->actions, x);
}

/* RFC 5230 4: one vacation per run; it leaves the implicit keep alone. */
static void
vacation (Run *run, Args *a)
{
  SieveVacation *v;
  SieveAction *x;

  for (guint i = 0; i < run->r->actions->len; i++)
    {
      SieveActionKind o = ((SieveAction *) run->r->actions->pdata[i])->kind;
      if (o == SIEVE_VACATION || o == SIEVE_REJECT || o == SIEVE_EREJECT)
        {
          g_set_error (&run->error, SIEVE_ERROR, SIEVE_ERROR_RUNTIME, o == SIEVE_VACATION
                       ? "more than one vacation action" : "vacation conflicts with reject");
          return;
        }
    }
  v = g_new0 (SieveVacation, 1);
  v->days = a->has_days ? (guint) MIN (MAX (a->days, 1), 365) : 7;
  v->subject = a->subject ? expand (run, a->subject) : NULL;
  v->from = a->from ? expand (run, a->from) : NULL;
  v->addresses = a->addresses ? expand_list (run, a->addresses) : NULL;
  v->mime = a->mime;
  x = g_new0 (SieveAction, 1);
  x->kind = SIEVE_VACATION;
  x->argument = expand (run, pos_string (a, 0));
  x->vacation = v;
  if (a->handle)
    v->handle = expand (run, a->handle);
  else
    {
      /* 4.2: the same arguments are the same vacation */
      g_autoptr (GChecksum) h = g_checksum_new (G_CHECKSUM_SHA256);
      g_checksum_update (h, (const guchar *) x->argument, -1);
      g_checksum_update (h, (const guchar *) "\n", 1);
      if (v->subject)
        g_checksum_update (h, (const guchar *) v->subject, -1);
      g_checksum_update (h, (const guchar *) "\n", 1);
      if (v->from)
        g_checksum_update (h, (const guchar *) v->from, -1);
      g_checksum_update (h, (const guchar *) (v->mime ? "\nmime" : "\n"), -1);
      v->handle = g_strndup (g_checksum_get_string (h), 32);
    }
  if (run->r->actions->len >= (run->m->max_actions ? run->m->max_actions : MAX_ACTIONS))
    run_fail (run, SIEVE_ERROR_LIMIT, "too many actions");
  g_ptr_array_add (run->r->actions, x);
}

static gboolean
command (Run *run, const SieveNode *c, gboolean *if_taken)
{
  Args a;
  const char *why;
  const char *n = c->name;

  if (run->error || run->stopped)
    return FALSE;
  if (++run->steps > MAX_STEPS)
    run_fail (run, SIEVE_ERROR_LIMIT, "script ran too long");
  if (out_of_time (run))
    return FALSE;
  get_args (c, &a, &why);
  if (!strcmp (n, "require"))
    ;
  else if (!strcmp (n, "if") || !strcmp (n, "elsif") || !strcmp (n, "else"))
    {
      /* *if_taken: a branch of this if/elsif/else chain ran already */
      if (!strcmp (n, "if") || !*if_taken)
        {
          gboolean go = !strcmp (n, "else") ? TRUE : test (run, c->tests->pdata[0]);
          *if_taken = go;
          if (go)
            {
              gboolean inner = FALSE;
              for (guint i = 0; i < c->block->len && !run->stopped && !run->error; i++)
                command (run, c->block->pdata[i], &inner);
            }
        }
      args_clear (&a);
      return TRUE;
    }
  else if (!strcmp (n, "stop"))
    run->stopped = TRUE;
  else if (!strcmp (n, "keep"))
    {
      action (run, SIEVE_KEEP, NULL, flags_string (run, a.flags), FALSE);
      run->implicit_keep = FALSE;
    }
  else if (!strcmp (n, "discard"))
    {
      action (run, SIEVE_DISCARD, NULL, NULL, FALSE);
      run->implicit_keep = FALSE;
    }
  else if (!strcmp (n, "fileinto"))
    {
      g_autofree char *box = expand (run, pos_string (&a, 0));
      action (run, SIEVE_FILEINTO, g_strdup (box), flags_string (run, a.flags), a.copy);
      for (guint i = 0; a.create && i < run->r->actions->len; i++)
        {
          SieveAction *x = run->r->actions->pdata[i];
          if (x->kind == SIEVE_FILEINTO && g_strcmp0 (x->argument, box) == 0)
            x->create = TRUE;
        }
      if (!a.copy)
        run->implicit_keep = FALSE;
    }
  else if (!strcmp (n, "redirect"))
    {
      if (++run->redirects > (run->m->max_redirects ? run->m->max_redirects : MAX_REDIRECTS))
        g_set_error (&run->error, SIEVE_ERROR, SIEVE_ERROR_LIMIT, "too many redirects");
      else
        {
          char *to = expand (run, pos_string (&a, 0));
          if (run->error)
            g_free (to);
          else if (!address_ok (to))
            {
              /* RFC 5228 4.2: a bad address is an error */
              g_autofree char *shown = printable (to, MAX_ERROR_TEXT);
              g_set_error (&run->error, SIEVE_ERROR, SIEVE_ERROR_RUNTIME, "redirect to an invalid address '%s'",
                           shown);
              g_free (to);
            }
          else
            {
              action (run, SIEVE_REDIRECT, to, NULL, a.copy);
              if (!a.copy)
                run->implicit_keep = FALSE;
            }
        }
    }
  else if (!strcmp (n, "vacation"))
    vacation (run, &a);
  else if (!strcmp (n, "reject") || !strcmp (n, "ereject"))
    {
      action (run, n[0] == 'r' ? SIEVE_REJECT : SIEVE_EREJECT, expand (run, pos_string (&a, 0)), NULL, FALSE);
      run->implicit_keep = FALSE;
    }
  else if (!strcmp (n, "setflag") || !strcmp (n, "addflag") || !strcmp (n, "removeflag"))
    {
      char **list = pos_list (&a, a.pos->len - 1);
      if (a.pos->len == 2)
        {
          /* a named flag variable */
          g_autofree char *var = g_ascii_strdown (pos_string (&a, 0), -1);
          g_autoptr (GHashTable) saved = run->flags;
          const char *cur = g_hash_table_lookup (run->vars, var);
          g_auto (GStrv) curv = g_strsplit (cur ? cur : "", " ", -1);
          run->flags = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
          add_flags (run, curv, FALSE, FALSE);
          add_flags (run, list, n[0] == 'r', n[0] == 's');
          char *value = flags_string (run, NULL);
          set_variable (run, g_steal_pointer (&var), value ? value : g_strdup (""));
          g_hash_table_unref (run->flags);
          run->flags = g_steal_pointer (&saved);
        }
      else
        add_flags (run, list, n[0] == 'r', n[0] == 's');
    }
  else if (!strcmp (n, "set"))
    {
      g_autofree char *name = g_ascii_strdown (pos_string (&a, 0), -1);
      char *value = expand (run, pos_string (&a, 1));
      for (guint i = 0; i < a.modifiers->len; i++)
        {
          const char *m = a.modifiers->pdata[i];
          char *v = NULL;
          if (!strcmp (m, "lower"))
            v = g_utf8_strdown (value, -1);
          else if (!strcmp (m, "upper"))
            v = g_utf8_strup (value, -1);
          else if (!strcmp (m, "lowerfirst") || !strcmp (m, "upperfirst"))
            {
              v = g_strdup (value);
              if (v[0])
                v[0] = m[0] == 'l' ? g_ascii_tolower (v[0]) : g_ascii_toupper (v[0]);
            }
          else if (!strcmp (m, "quotewildcard"))
            {
              GString *q = g_string_new (NULL);
              for (const char *p = value; *p; p++)
                {
                  if (strchr ("*?\\", *p))
                    g_string_append_c (q, '\\');
                  g_string_append_c (q, *p);
                }
              v = g_string_free (q, FALSE);
            }
          else if (!strcmp (m, "length"))
            v = g_strdup_printf ("%ld", g_utf8_strlen (value, -1));
          if (v)
            {
              g_free (value);
              value = v;
            }
        }
      set_variable (run, g_steal_pointer (&name), value);
    }
  else if (!strcmp (n, "addheader") || !strcmp (n, "deleteheader"))
    {
      g_autofree char *name = expand (run, pos_string (&a, 0));
      /* the trace fields and the caller's own (a loop mark) stay as they
       * are: the edit is ignored, as before for Received */
      if (!sieve_header_protected (name, run->m->protected_headers))
        {
          SieveHeaderEdit *e = g_new0 (SieveHeaderEdit, 1);
          e->name = g_steal_pointer (&name);
          e->last = a.last;
          e->index = (int) a.index;
          if (n[0] == 'a')
            e->value = expand (run, pos_string (&a, 1));
          else if (a.pos->len == 2)
            {
              e->match = expand_list (run, pos_list (&a, 1));
              e->match_type = a.match;
              e->comparator = g_strdup (a.comparator);
              e->relop = g_strdup (a.relop);
            }
          g_ptr_array_add (run->r->edits, e);
        }
    }
  args_clear (&a);
  *if_taken = FALSE;
  return TRUE;
}

void
sieve_action_free (gpointer p)
{
  SieveAction *a = p;
  if (a == NULL)
    return;
  g_free (a->argument);
  g_free (a->flags);
  if (a->vacation)
    {
      g_free (a->vacation->subject);
      g_free (a->vacation->from);
      g_strfreev (a->vacation->addresses);
      g_free (a->vacation->handle);
      g_free (a->vacation);
    }
  g_free (a);
}

void
sieve_header_edit_free (gpointer p)
{
  SieveHeaderEdit *e = p;
  if (e == NULL)
    return;
  g_free (e->comparator);
  g_free (e->relop);
  g_free (e->name);
  g_free (e->value);
  g_strfreev (e->match);
  g_free (e);
}

void
sieve_result_clear (SieveResult *r)
{
  g_clear_pointer (&r->actions, g_ptr_array_unref);
  g_clear_pointer (&r->edits, g_ptr_array_unref);
  g_clear_pointer (&r->error, g_free);
}

void
sieve_run (const SieveScript *script, const SieveMessage *msg, SieveResult *out)
{
  Run run = { script, msg, out };
  gboolean taken = FALSE;

  out->actions = g_ptr_array_new_with_free_func (sieve_action_free);
  out->edits = g_ptr_array_new_with_free_func (sieve_header_edit_free);
  out->error = NULL;
  run.vars = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  run.flags = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  run.implicit_keep = TRUE;
  run.deadline = g_get_monotonic_time () + 1000 * (gint64) (msg->max_time_ms ? msg->max_time_ms : MAX_TIME_MS);
  run.mem_max = msg->max_memory ? msg->max_memory : MAX_MEMORY;
  run.var_max = msg->max_variable_size ? msg->max_variable_size : MAX_VARIABLE_SIZE;
  for (guint i = 0; i < script->commands->len && !run.stopped && !run.error; i++)
    command (&run, script->commands->pdata[i], &taken);
  if (run.error)
    {
      /* RFC 5228 2.10.6: stop, say so, keep */
      out->error = g_strdup (run.error->message);
      g_ptr_array_set_size (out->actions, 0);
      g_ptr_array_set_size (out->edits, 0);
      run.implicit_keep = TRUE;
      g_hash_table_remove_all (run.flags);
      g_error_free (run.error);
    }
  out->implicit_keep = run.implicit_keep;
  if (run.implicit_keep)
    {
      SieveAction *k = g_new0 (SieveAction, 1);
      k->kind = SIEVE_KEEP;
      k->flags = flags_string (&run, NULL);
      g_ptr_array_add (out->actions, k);
    }
  for (guint i = 0; i < 10; i++)
    g_free (run.mv[i]);
  g_hash_table_unref (run.vars);
  g_hash_table_unref (run.flags);
}

gboolean
sieve_header_protected (const char *name, const char *const *extra)
{
  /* RFC 5293 4.3, 5.1: Received and Auto-Submitted; Return-Path and
   * Delivered-To are trace fields too: one above the real ones would be
   * read as the real one */
  static const char *const trace[] = { "Received", "Auto-Submitted", "Return-Path", "Delivered-To", NULL };
  g_autofree char *bare = g_strstrip (g_strdup (name));

  for (guint i = 0; trace[i]; i++)
    if (g_ascii_strcasecmp (bare, trace[i]) == 0)
      return TRUE;
  for (guint i = 0; extra && extra[i]; i++)
    if (g_ascii_strcasecmp (bare, extra[i]) == 0)
      return TRUE;
  return FALSE;
}

gboolean
sieve_header_edit_matches (const SieveHeaderEdit *e, const char *value)
{
  const char *cmp = e->comparator ? e->comparator : "i;ascii-casemap";

  if (e->match == NULL)
    return TRUE;
  for (guint k = 0; e->match[k]; k++)
    {
      const char *key = e->match[k];
      g_autoptr (GArray) caps = g_array_new (FALSE, FALSE, sizeof (GlobCap));
      switch (e->match_type)
        {
        case M_CONTAINS:
          if (contains (cmp, value, key, 0, NULL))
            return TRUE;
          break;
        case M_MATCHES:
          if (glob (cmp, key, value, caps, 0, NULL))
            return TRUE;
          break;
        case M_VALUE:
          if (e->relop && relop (e->relop, compare (cmp, value, key)))
            return TRUE;
          break;
        default:
          if (compare (cmp, value, key) == 0)
            return TRUE;
          break;
        }
    }
  return FALSE;
}

const char *
sieve_action_name (SieveActionKind kind)
{
  static const char *const names[] = { "keep", "fileinto", "redirect", "discard", "reject", "ereject",
                                       "vacation" };
  return kind < G_N_ELEMENTS (names) ? names[kind] : "?";
}

char *
sieve_flags_to_maildir (const char *flags)
{
  static const struct { const char *imap; char letter; } map[] = {
    { "\\draft", 'D' }, { "\\flagged", 'F' }, { "\\answered", 'R' }, { "\\seen", 'S' }, { "\\deleted", 'T' },
  };
  g_auto (GStrv) words = g_strsplit (flags ? flags : "", " ", -1);
  GString *s = g_string_new (NULL);

  for (guint k = 0; k < G_N_ELEMENTS (map); k++)
    for (guint i = 0; words[i]; i++)
      if (g_ascii_strcasecmp (words[i], map[k].imap) == 0)
        {
          g_string_append_c (s, map[k].letter);
          break;
        }
  return g_string_free (s, FALSE);
}
