/* test-sieve-tools.c - what is around the Sieve language (issue 17): the
 * trace of a run (sieve-lite test --trace), a callout score as spamtest,
 * and the Sender Rewriting Scheme for redirects.
 */
#include "config.h"

#include <string.h>

#include "sieve.h"

static const char *const headers[] = { "Subject: hello there", "X-Spam: no", NULL };

static char **
fake_header (const char *name, gpointer data)
{
  GPtrArray *out = g_ptr_array_new ();
  gsize n = strlen (name);

  for (guint i = 0; headers[i]; i++)
    if (g_ascii_strncasecmp (headers[i], name, n) == 0 && headers[i][n] == ':')
      g_ptr_array_add (out, g_strdup (headers[i] + n + 2));
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

static void
collect (const char *line, gpointer data)
{
  g_string_append_printf (data, "%s\n", line);
}

/* The trace of @script, with at most @max lines (0: the default). */
static char *
trace_of (const char *script, guint max)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SieveScript) s = sieve_compile (script, strlen (script), &error);
  GString *out = g_string_new (NULL);
  SieveMessage m = { 0 };
  SieveResult r = { 0 };

  g_assert_no_error (error);
  m.envelope_from = "alice@example.com";
  m.envelope_to = "bob@example.org";
  m.header = fake_header;
  m.size = 100;
  m.trace = collect;
  m.trace_data = out;
  m.max_trace_lines = max;
  sieve_run (s, &m, &r);
  sieve_result_clear (&r);
  return g_string_free (out, FALSE);
}

/* Each command and test with its line and a test's result; the tests
 * inside anyof/not come after their parent's line, indented; a skipped
 * elsif and else leave no line. */
static void
test_trace_lines (void)
{
  g_autofree char *got = trace_of ("require \"fileinto\";\n"
                                   "if header :contains \"subject\" \"x\" {\n"
                                   "  discard;\n"
                                   "} elsif anyof (exists \"x-foo\", not size :over 1K) {\n"
                                   "  fileinto \"A\";\n"
                                   "} elsif true {\n"
                                   "  stop;\n"
                                   "} else {\n"
                                   "  keep;\n"
                                   "}\n",
                                   0);

  g_assert_cmpstr (got, ==,
                   "1: require \"fileinto\"\n"
                   "2: if header :contains \"subject\" \"x\" -> false\n"
                   "4: elsif anyof (exists, not) -> true\n"
                   "4:   exists \"x-foo\" -> false\n"
                   "4:   not (size) -> true\n"
                   "4:     size :over 1024 -> false\n"
                   "5:   fileinto \"A\"\n");
}

/* Untrusted scripts: strings cut and made printable, long lists cut, and
 * the number of lines capped with one line that says so. */
static void
test_trace_bounded (void)
{
  GString *script = g_string_new ("if header :is \"subject\" [");
  g_autofree char *got = NULL, *capped = NULL, *expected = NULL, *zs = NULL;
  g_auto (GStrv) lines = NULL;

  for (int i = 0; i < 20; i++)
    g_string_append_printf (script, "%s\"k%d\"", i ? ", " : "", i);
  g_string_append (script, "] { keep; }\nif header :is \"subject\" \"a\\\"b\x1b");
  for (int i = 0; i < 100; i++)
    g_string_append_c (script, 'z');
  g_string_append (script, "\" { keep; }\n");
  for (int i = 0; i < 30; i++)
    g_string_append (script, "if false { keep; }\n");
  got = trace_of (script->str, 0);
  lines = g_strsplit (got, "\n", -1);
  g_assert_cmpstr (lines[0], ==,
                   "1: if header :is \"subject\" [\"k0\", \"k1\", \"k2\", \"k3\", \"k4\", \"k5\", \"k6\", \"k7\", ... (20)]"
                   " -> false");
  g_assert_true (g_str_has_prefix (lines[1], "2: if header :is \"subject\" \"a\\\"b?zzz"));
  g_assert_true (g_str_has_suffix (lines[1], "zzz...\" -> false"));
  g_assert_cmpuint (g_strv_length (lines), ==, 33);
  capped = trace_of (script->str, 4);
  /* 60 characters of the string: a " b ESC and 56 z */
  expected = g_strdup_printf ("%s\n2: if header :is \"subject\" \"a\\\"b?%s...\" -> false\n"
                              "3: if false -> false\n4: if false -> false\n... (the trace stops here)\n",
                              lines[0], zs = g_strnfill (56, 'z'));
  g_assert_cmpstr (capped, ==, expected);
  g_string_free (script, TRUE);
}

/* The mapping deliver/callout.c and sieve-lite test --callout share:
 * the threshold is the middle of spamtest's 1..10 (RFC 5235 3.2). */
static void
test_spamtest_from_score (void)
{
  static const struct {
    const char *score, *threshold;
    int spamtest, percent;
  } cases[] = {
    { "0", "5", 1, 0 },     { "5", "5", 6, 50 },   { "8.5", "5", 9, 85 }, { "10", "5", 10, 100 },
    { "99", "5", 10, 100 }, { "-3", "5", 1, 0 },   { "1", NULL, 10, 100 }, { "0", NULL, 1, 0 },
    { "nan", "5", 1, 0 },   { "3.2", "6", 3, 27 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      int s = -1, p = -1;
      sieve_spamtest_from_score (cases[i].score, cases[i].threshold, &s, &p);
      g_assert_cmpint (s, ==, cases[i].spamtest);
      g_assert_cmpint (p, ==, cases[i].percent);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/sieve-tools/trace/lines", test_trace_lines);
  g_test_add_func ("/sieve-tools/trace/bounded", test_trace_bounded);
  g_test_add_func ("/sieve-tools/spamtest-from-score", test_spamtest_from_score);
  return g_test_run ();
}
