/* test-sieve-tools.c - what is around the Sieve language (issue 17): the
 * trace of a run (sieve-lite test --trace), a callout score as spamtest,
 * and the Sender Rewriting Scheme for redirects.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sieve.h"
#include "sieve-fake.h"
#include "srs.h"

static const char *const headers[] = { "Subject: hello there", "X-Spam: no", NULL };

static char **
fake_header (const char *name, gpointer data)
{
  return sieve_fake_header (headers, name);
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
  {
    /* a line stays short however many tests or long strings a node has */
    GString *wide = g_string_new ("if anyof (false");
    g_autofree char *t = NULL;
    for (int i = 0; i < 500; i++)
      g_string_append (wide, ", false");
    g_string_append (wide, ") { keep; }\n");
    t = trace_of (wide->str, 1);
    g_assert_true (g_str_has_prefix (t, "1: if anyof (false, false, "));
    g_assert_cmpuint (strlen (t), <, 300);
    g_assert_nonnull (strstr (t, "... -> false\n"));
    g_string_free (wide, TRUE);
  }
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

/* ---- SRS ------------------------------------------------------------------- */

/* libsrs2's hash, written again here from postsrsd's srs2.c so that the
 * test does not check the code with itself. */
static gboolean
hash_ok (const char *secret, const char *hash, const char *a, const char *b, const char *c)
{
  g_autofree char *joined = g_strconcat (a, b, c, NULL);
  g_autofree char *data = g_ascii_strdown (joined, -1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  g_autofree char *b64 = NULL;

  HMAC (EVP_sha1 (), secret, (int) strlen (secret), (unsigned char *) data, strlen (data), md, &n);
  b64 = g_base64_encode (md, n);
  return strlen (hash) == 4 && g_ascii_strncasecmp (hash, b64, 4) == 0;
}

/* The reverse of an SRS address, as postsrsd's srs_reverse (without the
 * age check): SRS0 -> the original sender, SRS1 -> the SRS0 address at
 * the first forwarder; NULL if the hash is wrong. */
static char *
srs_reverse (const char *secret, const char *address)
{
  g_autofree char *local = g_strndup (address, strrchr (address, '@') - address);
  g_auto (GStrv) f = NULL;

  if (g_str_has_prefix (local, "SRS0="))
    {
      f = g_strsplit (local + 5, "=", 4); /* hash, stamp, host, user */
      if (g_strv_length (f) != 4 || !hash_ok (secret, f[0], f[1], f[2], f[3]))
        return NULL;
      return g_strdup_printf ("%s@%s", f[3], f[2]);
    }
  f = g_strsplit (local + 5, "=", 3); /* hash, host, rest */
  if (!g_str_has_prefix (local, "SRS1=") || g_strv_length (f) != 3 || !hash_ok (secret, f[0], f[1], f[2], ""))
    return NULL;
  return g_strdup_printf ("SRS0%s@%s", f[2], f[1]); /* f[2] starts with "=" */
}

/* postsrsd's own vector (tests/unit/test_srs2.c: secret "tops3cr3t",
 * 2020-01-01 00:01:00 UTC), and vectors made with Python's hmac on the
 * same recipe (HMAC-SHA1 over stamp + domain + local, lowercased; base64;
 * four characters; the day mod 1024 in base32), both ways. */
static void
test_srs_vectors (void)
{
  static const struct {
    const char *secret, *domain, *sender;
    gint64 now;
    const char *srs, *back;
  } cases[] = {
    { "tops3cr3t", "example.com", "test@otherdomain.com", 1577836860,
      "SRS0=vmyz=2W=otherdomain.com=test@example.com", "test@otherdomain.com" },
    /* the case of the address stays; the hash is over it lowercased */
    { "tops3cret", "forward.example", "Alice@Example.COM", 1765000000,
      "SRS0=1QyO=6M=Example.COM=Alice@forward.example", "Alice@Example.COM" },
    /* another forwarder's SRS0 becomes SRS1 */
    { "tops3cret", "forward.example", "SRS0=abcd=XY=orig.example=bob@other.example", 1765000000,
      "SRS1=5vhq=other.example==abcd=XY=orig.example=bob@forward.example",
      "SRS0=abcd=XY=orig.example=bob@other.example" },
    /* an SRS1 keeps its first forwarder and gets our hash */
    { "tops3cret", "forward.example", "SRS1=zzzz=first.example==abcd=XY=orig.example=bob@third.example", 1765000000,
      "SRS1=m8Dh=first.example==abcd=XY=orig.example=bob@forward.example",
      "SRS0=abcd=XY=orig.example=bob@first.example" },
    /* at the forwarding domain already: as it is */
    { "tops3cr3t", "example.com", "test@Example.com", 1577836860, "test@Example.com", NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *srs = deliver_srs_forward (cases[i].secret, cases[i].domain, cases[i].sender, cases[i].now);
      g_autofree char *back = cases[i].back ? srs_reverse (cases[i].secret, srs) : NULL;
      g_assert_cmpstr (srs, ==, cases[i].srs);
      g_assert_cmpstr (back, ==, cases[i].back);
    }
  g_assert_null (deliver_srs_forward ("s", "example.com", "foo", 0));
  g_assert_null (deliver_srs_forward ("s", "example.com", "foo@", 0));
  /* another secret: the hash does not verify */
  g_assert_null (srs_reverse ("other", "SRS0=vmyz=2W=otherdomain.com=test@example.com"));
}

static void
test_srs_secret_file (void)
{
  g_autofree char *path = NULL, *secret = NULL;
  g_autoptr (GError) error = NULL;
  int fd = g_file_open_tmp ("srs-XXXXXX", &path, NULL);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, "s3cret\r\nolder\n", 15), ==, 15);
  close (fd);
  secret = deliver_srs_read_secret (path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (secret, ==, "s3cret");
  g_assert_true (g_file_set_contents (path, "\nsecond\n", -1, NULL));
  g_assert_null (deliver_srs_read_secret (path, &error));
  g_assert_nonnull (error);
  unlink (path);
}

/* [sieve] redirect_sender as Pigeonhole's sieve_redirect_envelope_from;
 * the null sender stays null whatever it says (RFC 5228 4.2). */
static void
test_redirect_sender (void)
{
  static const struct {
    const char *how, *sender, *want;
  } cases[] = {
    { NULL, "s@example.net", "s@example.net" },
    { "sender", "s@example.net", "s@example.net" },
    { "recipient", "s@example.net", "alice@example.org" },
    { "user_email", "s@example.net", "alice@example.org" },
    { "orig_recipient", "s@example.net", "Alice+x@Example.org" },
    { "postmaster", "s@example.net", "postmaster@example.org" },
    { "<>", "s@example.net", "" },
    { "<fwd@example.org>", "s@example.net", "fwd@example.org" },
    { "fwd@example.org", "s@example.net", "fwd@example.org" },
    { "recipient", "", "" },
    { "<fwd@example.org>", "", "" },
    { "srs", "", "" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      LmtpdConfig c = { 0 };
      g_autoptr (GError) error = NULL;
      g_autofree char *got = NULL;
      c.redirect_sender = (char *) cases[i].how;
      got = deliver_redirect_sender (&c, cases[i].sender, "alice@example.org", "Alice+x@Example.org", "example.org",
                                     &error);
      g_assert_no_error (error);
      g_assert_cmpstr (got, ==, cases[i].want);
    }
}

static void
test_redirect_sender_srs (void)
{
  g_autofree char *path = NULL, *got = NULL, *back = NULL;
  g_autoptr (GError) error = NULL;
  int fd = g_file_open_tmp ("srs-XXXXXX", &path, NULL);
  LmtpdConfig c = { 0 };

  g_assert_cmpint (write (fd, "tops3cr3t\n", 10), ==, 10);
  close (fd);
  c.redirect_sender = (char *) "srs";
  c.srs_domain = (char *) "fwd.example";
  c.srs_secret_file = path;
  got = deliver_redirect_sender (&c, "test@otherdomain.com", "a@example.org", "a@example.org", "example.org", &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_prefix (got, "SRS0="));
  g_assert_true (g_str_has_suffix (got, "=otherdomain.com=test@fwd.example"));
  back = srs_reverse ("tops3cr3t", got);
  g_assert_cmpstr (back, ==, "test@otherdomain.com");
  /* no secret: no rewriting, an error (the message is kept instead) */
  unlink (path);
  g_clear_pointer (&got, g_free);
  got = deliver_redirect_sender (&c, "test@otherdomain.com", "a@example.org", "a@example.org", "example.org", &error);
  g_assert_null (got);
  g_assert_nonnull (error);
}

/* The settings are checked when the file is loaded. */
static void
test_redirect_sender_config (void)
{
  static const struct {
    const char *text, *problem;
  } cases[] = {
    { "redirect_sender = recipient\n", NULL },
    { "redirect_sender = <fwd@example.org>\n", NULL },
    { "redirect_sender = <>\n", NULL },
    { "redirect_sender = bogus\n", "[sieve] redirect_sender: 'bogus' is not sender" },
    { "redirect_sender = srs\n", "redirect_sender = srs needs srs_domain and srs_secret_file" },
    { "redirect_sender = srs\nsrs_domain = fwd.example\nsrs_secret_file = /nonexistent\n",
      "'/nonexistent' is not a readable file whose first line is the secret" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = NULL, *text = g_strconcat ("[sieve]\n", cases[i].text, NULL);
      g_autoptr (GError) error = NULL;
      LmtpdConfig *c;
      int fd = g_file_open_tmp ("conf-XXXXXX", &path, NULL);

      close (fd);
      g_assert_true (g_file_set_contents (path, text, -1, NULL));
      c = lmtpd_config_load (path, &error);
      if (cases[i].problem)
        {
          g_assert_null (c);
          g_assert_nonnull (strstr (error->message, cases[i].problem));
        }
      else
        {
          g_assert_no_error (error);
          lmtpd_config_unref (c);
        }
      unlink (path);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/sieve-tools/trace/lines", test_trace_lines);
  g_test_add_func ("/sieve-tools/trace/bounded", test_trace_bounded);
  g_test_add_func ("/sieve-tools/spamtest-from-score", test_spamtest_from_score);
  g_test_add_func ("/sieve-tools/srs/vectors", test_srs_vectors);
  g_test_add_func ("/sieve-tools/srs/secret-file", test_srs_secret_file);
  g_test_add_func ("/sieve-tools/redirect-sender", test_redirect_sender);
  g_test_add_func ("/sieve-tools/redirect-sender/srs", test_redirect_sender_srs);
  g_test_add_func ("/sieve-tools/redirect-sender/config", test_redirect_sender_config);
  return g_test_run ();
}
