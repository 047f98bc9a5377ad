/* test-sieve.c - sieve-lite, one case per command, test and extension.
 * Each case names the RFC section it checks and quotes what it says.
 */
#include "config.h"

#include <string.h>

#include <gmime/gmime.h>

#include "sieve.h"
#include "sieve-fake.h"

/* ---- a message made of plain values ---------------------------------------- */

typedef struct {
  const char *const *headers;   /* "Name: value", NULL-terminated */
  const char *body;
} Fake;

static const char *const default_headers[] = {
  "From: Alice <alice@example.com>",
  "To: bob@example.org, \"Carol\" <carol+lists@example.org>",
  "Cc: team@example.org",
  "Subject: Weekly report: all GREEN",
  "X-Count: 42",
  "X-Spam: yes",
  "X-Spam: maybe",
  NULL,
};

static char **
fake_header (const char *name, gpointer data)
{
  const Fake *f = data;

  return sieve_fake_header (f->headers, name);
}

static char *
fake_body (gpointer data)
{
  const Fake *f = data;
  return g_strdup (f->body ? f->body : "");
}

/* Runs @script; returns the actions as "kind[:arg][/flags][+copy]" joined
 * with "; ", or "compile error: ..." */
static char *
run_full (const char *script, const char *const *headers, const char *from, const char *to, guint64 size,
          const SieveCallout *callouts, guint n_callouts, int spamtest, int virustest, char **edits_out)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SieveScript) s = sieve_compile (script, strlen (script), &error);
  Fake f = { headers ? headers : default_headers, "Hello,\nthe numbers are in.\n" };
  SieveMessage m = { 0 };
  SieveResult r = { 0 };
  GString *out;

  if (s == NULL)
    return g_strdup_printf ("compile error: %s", error->message);
  m.envelope_from = from ? from : "alice@example.com";
  m.envelope_to = to ? to : "bob+work@example.org";
  m.delimiter = "+";
  m.size = size ? size : 2000;
  m.header = fake_header;
  m.body_text = fake_body;
  m.data = &f;
  m.spamtest = spamtest;
  m.spamtest_percent = spamtest > 0 ? (spamtest - 1) * 100 / 9 : 0;
  m.virustest = virustest;
  m.callouts = callouts;
  m.n_callouts = n_callouts;
  sieve_run (s, &m, &r);
  out = g_string_new (r.error ? "error: " : "");
  if (r.error)
    g_string_append_printf (out, "%s; ", r.error);
  for (guint i = 0; i < r.actions->len; i++)
    {
      const SieveAction *a = r.actions->pdata[i];
      g_string_append_printf (out, "%s%s%s%s%s%s%s", i ? "; " : "", sieve_action_name (a->kind),
                              a->argument ? ":" : "", a->argument ? a->argument : "", a->flags ? "/" : "",
                              a->flags ? a->flags : "", a->copy ? "+copy" : "");
    }
  if (edits_out)
    {
      GString *e = g_string_new (NULL);
      for (guint i = 0; i < r.edits->len; i++)
        {
          const SieveHeaderEdit *x = r.edits->pdata[i];
          g_string_append_printf (e, "%s%s %s%s%s%s", i ? "; " : "", x->value ? "add" : "delete", x->name,
                                  x->value ? "=" : "", x->value ? x->value : "", x->last ? " last" : "");
        }
      *edits_out = g_string_free (e, FALSE);
    }
  sieve_result_clear (&r);
  return g_string_free (out, FALSE);
}

static char *
run (const char *script)
{
  return run_full (script, NULL, NULL, NULL, 0, NULL, 0, 0, 0, NULL);
}

#define CHECK(script, expected)                     \
  do {                                              \
    g_autofree char *got_ = run (script);           \
    g_assert_cmpstr (got_, ==, expected);           \
  } while (0)

/* ---- RFC 5228 core ----------------------------------------------------------- */

/* 2.10.2: "if the script does not take any of these actions, an implicit
 * keep is performed" */
static void
test_implicit_keep (void)
{
  CHECK ("", "keep");
  CHECK ("# nothing\n/* at all */", "keep");
  CHECK ("if false { discard; }", "keep");
}

/* 4.3: "Discard is used to silently throw away the message" and it
 * cancels the implicit keep. */
static void
test_discard (void)
{
  CHECK ("discard;", "discard");
}

/* 4.2 redirect: "cancels the implicit keep"; 4.2 "the same address twice
 * is redirected once" (2.10.3 duplicate actions). */
static void
test_redirect (void)
{
  CHECK ("redirect \"x@example.net\";", "redirect:x@example.net");
  CHECK ("redirect \"x@example.net\"; redirect \"x@example.net\";", "redirect:x@example.net");
  CHECK ("redirect \"x@example.net\"; keep;", "redirect:x@example.net; keep");
  /* 4.2: "the address MUST be syntactically valid" */
  CHECK ("redirect \"nobody\";", "compile error: 1:1: redirect: 'nobody' is not a valid address");
}

/* 3.3 stop: "ends all processing"; the implicit keep still applies. */
static void
test_stop (void)
{
  CHECK ("stop; discard;", "keep");
  CHECK ("require \"fileinto\"; fileinto \"A\"; stop; fileinto \"B\";", "fileinto:A");
}

/* 3.1 if/elsif/else: "the first test that succeeds ... subsequent elsif
 * and else are not evaluated" */
static void
test_if_elsif_else (void)
{
  const char *s = "require \"fileinto\";\n"
                  "if header :is \"x-count\" \"1\" { fileinto \"One\"; }\n"
                  "elsif header :is \"x-count\" \"42\" { fileinto \"FortyTwo\"; }\n"
                  "elsif true { fileinto \"Never\"; }\n"
                  "else { fileinto \"Else\"; }";
  CHECK (s, "fileinto:FortyTwo");
  CHECK ("require \"fileinto\"; if false { fileinto \"A\"; } else { fileinto \"B\"; }", "fileinto:B");
}

/* 3.2 require: "unknown extension ... MUST fail" and must come first. */
static void
test_require (void)
{
  CHECK ("require \"nope\";", "compile error: 1:1: unsupported extension \"nope\"");
  CHECK ("fileinto \"A\";", "compile error: 1:1: 'fileinto' needs require \"fileinto\"");
  CHECK ("keep; require \"fileinto\";", "compile error: 1:7: require must come before other commands");
}

/* 2.x lexical: strings, escapes, text: blocks with dot-stuffing, comments,
 * numbers with K/M/G (2.4.1: "K ... 2^10, M ... 2^20, G ... 2^30"). */
static void
test_lexical (void)
{
  CHECK ("require \"fileinto\"; fileinto \"a\\\"b\\\\c\";", "fileinto:a\"b\\c");
  CHECK ("require \"fileinto\"; fileinto text:\r\nline\r\n..dot\r\n.\r\n;", "fileinto:line\r\n.dot\r\n");
  CHECK ("if size :over 1K { discard; }", "discard");
  CHECK ("if size :over 2K { discard; }", "keep");
  CHECK ("if size :under 1M { discard; }", "discard");
  CHECK ("keep", "compile error: 1:5: expected ';' or '{' after keep");
  CHECK ("/* open comment", "compile error: 1:1: unterminated comment");
}

/* 5.7 header: ":contains" and comparator "i;ascii-casemap" (default,
 * 2.7.3); 5.1 any of the values, any of the keys. */
static void
test_header (void)
{
  CHECK ("if header :contains \"subject\" \"REPORT\" { discard; }", "discard");
  CHECK ("if header :comparator \"i;octet\" :contains \"subject\" \"REPORT\" { discard; }", "keep");
  CHECK ("if header :is [\"x-spam\", \"x-none\"] [\"no\", \"maybe\"] { discard; }", "discard");
  /* 2.7.1 :matches: "*" any sequence, "?" one character, "\\" escapes */
  CHECK ("if header :matches \"subject\" \"Weekly*GREE?\" { discard; }", "discard");
  CHECK ("if header :matches \"subject\" \"\\\\*\" { discard; }", "keep");
}

/* 5.1 address with :all, :localpart, :domain (2.7.4). */
static void
test_address (void)
{
  CHECK ("if address :domain :is \"from\" \"EXAMPLE.com\" { discard; }", "discard");
  CHECK ("if address :localpart :is \"to\" \"carol+lists\" { discard; }", "discard");
  CHECK ("if address :all :is \"from\" \"alice@example.com\" { discard; }", "discard");
  CHECK ("if address :is \"from\" \"Alice\" { discard; }", "keep");
}

/* 5.4 envelope: "from" and "to" of the SMTP/LMTP transaction. */
static void
test_envelope (void)
{
  CHECK ("require \"envelope\"; if envelope :is \"from\" \"alice@example.com\" { discard; }", "discard");
  CHECK ("require \"envelope\"; if envelope :domain \"to\" \"example.org\" { discard; }", "discard");
  CHECK ("if envelope \"to\" \"x\" { discard; }", "compile error: 1:4: 'envelope' needs require \"envelope\"");
}

/* 5.5 exists: "true if the headers listed ... exist" (all of them). */
static void
test_exists (void)
{
  CHECK ("if exists [\"from\", \"x-count\"] { discard; }", "discard");
  CHECK ("if exists [\"from\", \"x-none\"] { discard; }", "keep");
}

/* 5.9 size: ":over" and ":under", neither is true for equality. */
static void
test_size (void)
{
  CHECK ("if size :over 2000 { discard; }", "keep");
  CHECK ("if size :under 2000 { discard; }", "keep");
  CHECK ("if size :over 1999 { discard; }", "discard");
}

/* 5.2/5.3/5.6/5.8/5.10 allof, anyof, not, true, false. */
static void
test_logic (void)
{
  CHECK ("if allof (true, not false) { discard; }", "discard");
  CHECK ("if allof (true, false) { discard; }", "keep");
  CHECK ("if anyof (false, true) { discard; }", "discard");
  CHECK ("if anyof (false, false) { discard; }", "keep");
  CHECK ("if not anyof (false) { discard; }", "discard");
}

/* 2.7.3 comparators: "i;ascii-numeric" compares numbers and needs its
 * capability. */
static void
test_numeric_comparator (void)
{
  CHECK ("require \"comparator-i;ascii-numeric\";"
         "if header :comparator \"i;ascii-numeric\" :is \"x-count\" \"042\" { discard; }", "discard");
  CHECK ("if header :comparator \"i;ascii-numeric\" :is \"x-count\" \"42\" { discard; }",
         "compile error: 1:4: header: i;ascii-numeric needs require \"comparator-i;ascii-numeric\"");
}

/* 2.10.6: "If an error occurs ... the implicit keep is performed". */
static void
test_runtime_error_keeps (void)
{
  CHECK ("redirect \"a@b.c\"; redirect \"b@b.c\"; redirect \"c@b.c\"; redirect \"d@b.c\"; redirect \"e@b.c\";",
         "error: too many redirects; keep");
}

/* ---- extensions ---------------------------------------------------------------- */

/* RFC 5228 4.1 fileinto; 2.10.3 "the same mailbox twice is stored once". */
static void
test_fileinto (void)
{
  CHECK ("require \"fileinto\"; fileinto \"Work\";", "fileinto:Work");
  CHECK ("require \"fileinto\"; fileinto \"Work\"; fileinto \"Work\";", "fileinto:Work");
}

/* RFC 3894 copy: ":copy ... the implicit keep is not cancelled". */
static void
test_copy (void)
{
  CHECK ("require [\"fileinto\", \"copy\"]; fileinto :copy \"A\";", "fileinto:A+copy; keep");
  CHECK ("require \"copy\"; redirect :copy \"x@y.z\";", "redirect:x@y.z+copy; keep");
  CHECK ("require \"fileinto\"; fileinto :copy \"A\";", "compile error: 1:21: fileinto: :copy needs require \"copy\"");
}

/* RFC 5490 mailbox: "fileinto :create" (3.2) and mailboxexists (3.1),
 * "true if all the named mailboxes exist". */
static gboolean
only_work (const char *name, gpointer data)
{
  return strcmp (name, "Work") == 0;
}

static void
test_mailbox (void)
{
  g_autoptr (GError) error = NULL;
  const char *text = "require [\"fileinto\", \"mailbox\"];"
                     "if mailboxexists \"Work\" { fileinto :create \"A\"; }"
                     "if mailboxexists [\"Work\", \"Other\"] { fileinto \"B\"; }";
  g_autoptr (SieveScript) s = sieve_compile (text, strlen (text), &error);
  Fake f = { default_headers, NULL };
  SieveMessage m = { .envelope_from = "a@b.c", .envelope_to = "b@x.y", .header = fake_header, .data = &f,
                     .mailbox_exists = only_work };
  SieveResult r = { 0 };
  const SieveAction *a;

  g_assert_no_error (error);
  sieve_run (s, &m, &r);
  g_assert_cmpuint (r.actions->len, ==, 1);
  a = r.actions->pdata[0];
  g_assert_cmpstr (a->argument, ==, "A");
  g_assert_true (a->create);
  sieve_result_clear (&r);
  CHECK ("require \"fileinto\"; fileinto :create \"A\";",
         "compile error: 1:21: fileinto: :create needs require \"mailbox\" and goes with fileinto");
}

/* RFC 5429 2.1 reject / 2.2 ereject: cancel the implicit keep. */
static void
test_reject (void)
{
  CHECK ("require \"reject\"; reject \"No thanks\";", "reject:No thanks");
  CHECK ("require \"ereject\"; ereject \"No\";", "ereject:No");
}

/* RFC 5232 imap4flags: the internal variable is used by keep/fileinto
 * without :flags (3.), ":flags" replaces it for that action (5.). */
static void
test_imap4flags (void)
{
  CHECK ("require [\"imap4flags\"]; setflag \"\\\\Seen\"; addflag [\"\\\\Flagged\", \"\\\\Seen\"]; "
         "removeflag \"\\\\Seen\";", "keep/\\Flagged");
  CHECK ("require [\"imap4flags\", \"fileinto\"]; addflag \"\\\\Seen\"; fileinto :flags \"\\\\Answered\" \"A\";",
         "fileinto:A/\\Answered");
  CHECK ("require [\"imap4flags\"]; addflag \"\\\\Seen\"; if hasflag \"\\\\seen\" { discard; }", "discard");
  {
    g_autofree char *letters = sieve_flags_to_maildir ("\\Seen \\Flagged $Label \\Answered");
    g_assert_cmpstr (letters, ==, "FRS");
  }
}

/* RFC 5233 subaddress: ":user" and ":detail" (4.). */
static void
test_subaddress (void)
{
  CHECK ("require [\"subaddress\", \"envelope\"]; if envelope :detail \"to\" \"work\" { discard; }", "discard");
  CHECK ("require [\"subaddress\", \"envelope\"]; if envelope :user \"to\" \"bob\" { discard; }", "discard");
  CHECK ("require \"subaddress\"; if address :detail \"to\" \"lists\" { discard; }", "discard");
}

/* RFC 5229 variables: match variables from :matches (3.2), set with
 * modifiers (4.), the string test (5.). */
static void
test_variables (void)
{
  CHECK ("require [\"variables\", \"fileinto\"]; if header :matches \"subject\" \"*: * *\" "
         "{ fileinto \"${1}-${3}\"; }", "fileinto:Weekly report-GREEN");
  CHECK ("require [\"variables\", \"fileinto\"]; set :upper \"a\" \"x\"; set :length \"n\" \"abc\"; "
         "fileinto \"${a}${n}${unknown}\";", "fileinto:X3");
  CHECK ("require \"variables\"; set \"a\" \"b\"; if string :is \"${a}\" \"b\" { discard; }", "discard");
}

/* RFC 5231 relational: ":count" and ":value" with the numeric comparator. */
static void
test_relational (void)
{
  CHECK ("require [\"relational\", \"comparator-i;ascii-numeric\"]; if header :count \"eq\" "
         ":comparator \"i;ascii-numeric\" \"x-spam\" \"2\" { discard; }", "discard");
  CHECK ("require [\"relational\", \"comparator-i;ascii-numeric\"]; if header :value \"gt\" "
         ":comparator \"i;ascii-numeric\" \"x-count\" \"41\" { discard; }", "discard");
  CHECK ("require [\"relational\", \"comparator-i;ascii-numeric\"]; if address :count \"ge\" "
         ":comparator \"i;ascii-numeric\" [\"to\", \"cc\"] \"3\" { discard; }", "discard");
}

/* RFC 5173 body: ":contains" over the text of the body. */
static void
test_body (void)
{
  CHECK ("require \"body\"; if body :contains \"numbers are in\" { discard; }", "discard");
  CHECK ("require \"body\"; if body :contains \"absent\" { discard; }", "keep");
}

/* RFC 5293 editheader: addheader at the top or :last (4.), deleteheader
 * by name and value (5.); "Received" and "Auto-Submitted" are never
 * touched (4.3, 5.1 "MUST NOT"). */
static void
test_editheader (void)
{
  g_autofree char *edits = NULL, *got = NULL;

  got = run_full ("require \"editheader\"; addheader \"X-A\" \"1\"; addheader :last \"X-B\" \"2\"; "
                  "deleteheader :contains \"X-Spam\" \"ay\"; deleteheader \"Received\";",
                  NULL, NULL, NULL, 0, NULL, 0, 0, 0, &edits);
  g_assert_cmpstr (got, ==, "keep");
  g_assert_cmpstr (edits, ==, "add X-A=1; add X-B=2 last; delete X-Spam");
}

/* RFC 5235 spamtest/virustest: 0 untested, 1..10 (spam) / 1..5 (virus). */
static void
test_spamtest_virustest (void)
{
  const char *s = "require [\"spamtest\", \"virustest\", \"relational\", \"comparator-i;ascii-numeric\"];"
                  "if spamtest :value \"ge\" :comparator \"i;ascii-numeric\" \"8\" { discard; }"
                  "if virustest :value \"eq\" :comparator \"i;ascii-numeric\" \"5\" { redirect \"av@x.y\"; }";
  g_autofree char *spam = run_full (s, NULL, NULL, NULL, 0, NULL, 0, 9, 1, NULL);
  g_autofree char *virus = run_full (s, NULL, NULL, NULL, 0, NULL, 0, 2, 5, NULL);
  g_autofree char *untested = run_full ("require \"spamtest\"; if spamtest \"0\" { discard; }",
                                        NULL, NULL, NULL, 0, NULL, 0, 0, 0, NULL);
  g_autofree char *pct = run_full ("require [\"spamtestplus\", \"relational\", \"comparator-i;ascii-numeric\"];"
                                   "if spamtest :percent :value \"gt\" :comparator \"i;ascii-numeric\" \"50\""
                                   "{ discard; }", NULL, NULL, NULL, 0, NULL, 0, 10, 0, NULL);
  g_assert_cmpstr (spam, ==, "discard");
  g_assert_cmpstr (virus, ==, "redirect:av@x.y");
  g_assert_cmpstr (untested, ==, "discard");
  g_assert_cmpstr (pct, ==, "discard");
}

/* RFC 5230 vacation: does not cancel the implicit keep (4.); :days
 * defaults to 7 and is at least 1 (4.1); one vacation per script. */
static void
test_vacation (void)
{
  g_autoptr (GError) error = NULL;
  const char *text = "require \"vacation\"; vacation :days 0 :subject \"Away\" "
                     ":addresses [\"b@x.y\"] \"Gone fishing\";";
  g_autoptr (SieveScript) s = sieve_compile (text, strlen (text), &error);
  Fake f = { default_headers, NULL };
  SieveMessage m = { .envelope_from = "a@b.c", .envelope_to = "b@x.y", .header = fake_header, .data = &f };
  SieveResult r = { 0 };
  const SieveAction *a;

  g_assert_no_error (error);
  sieve_run (s, &m, &r);
  g_assert_cmpuint (r.actions->len, ==, 2);
  a = r.actions->pdata[0];
  g_assert_cmpint (a->kind, ==, SIEVE_VACATION);
  g_assert_cmpstr (a->argument, ==, "Gone fishing");
  g_assert_cmpuint (a->vacation->days, ==, 1);
  g_assert_cmpstr (a->vacation->subject, ==, "Away");
  g_assert_cmpstr (a->vacation->addresses[0], ==, "b@x.y");
  g_assert_nonnull (a->vacation->handle);
  g_assert_cmpint (((SieveAction *) r.actions->pdata[1])->kind, ==, SIEVE_KEEP);
  g_assert_true (r.implicit_keep);
  sieve_result_clear (&r);
  CHECK ("require \"vacation\"; vacation \"a\"; vacation \"b\";", "error: more than one vacation action; keep");
}

/* Our own "vnd.opes-lmtpd.callout": a service's verdict, score and labels,
 * which no header can forge. */
static void
test_callout (void)
{
  const SieveCallout c[] = { { "spam", "modify", "7.5", "spam,bulk" }, { "av", "accept", NULL, "virus-scanned" } };
  const char *s = "require [\"vnd.opes-lmtpd.callout\", \"fileinto\", \"relational\", "
                  "\"comparator-i;ascii-numeric\"];"
                  "if callout :labels \"spam\" \"bulk\" { fileinto \"Bulk\"; }"
                  "if callout :score :value \"ge\" :comparator \"i;ascii-numeric\" \"spam\" \"7\" { fileinto \"Seven\"; }"
                  "if callout \"av\" \"accept\" { fileinto \"Clean\"; }"
                  "if callout \"absent\" \"accept\" { fileinto \"Never\"; }";
  g_autofree char *got = run_full (s, NULL, NULL, NULL, 0, c, G_N_ELEMENTS (c), 0, 0, NULL);
  g_assert_cmpstr (got, ==, "fileinto:Bulk; fileinto:Seven; fileinto:Clean");
}

/* Limits: "too many actions" is a runtime error, so keep (2.10.6). */
static void
test_limits (void)
{
  GString *s = g_string_new ("require \"fileinto\";");
  g_autofree char *got = NULL;
  for (int i = 0; i < 40; i++)
    g_string_append_printf (s, "fileinto \"F%d\";", i);
  got = run (s->str);
  g_assert_cmpstr (got, ==, "error: too many actions; keep");
  g_string_free (s, TRUE);
}

/* ---- hostile scripts and messages (issue 13) ----------------------------------- */

/* Runs @script on @headers with @m's limits; the outcome as run_full
 * gives it (error first). */
static char *
run_limited (const char *script, const char *const *headers, SieveMessage *m, char **edits_out)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SieveScript) s = sieve_compile (script, strlen (script), &error);
  Fake f = { headers ? headers : default_headers, NULL };
  SieveResult r = { 0 };
  GString *out;

  g_assert_no_error (error);
  m->envelope_from = "alice@example.com";
  m->envelope_to = "bob@example.org";
  m->header = fake_header;
  m->body_text = fake_body;
  m->data = &f;
  sieve_run (s, m, &r);
  out = g_string_new (NULL);
  if (r.error)
    g_string_append_printf (out, "error: %s; ", r.error);
  for (guint i = 0; i < r.actions->len; i++)
    {
      const SieveAction *a = r.actions->pdata[i];
      g_string_append_printf (out, "%s%s%s%s", i ? "; " : "", sieve_action_name (a->kind), a->argument ? ":" : "",
                              a->argument ? a->argument : "");
    }
  if (edits_out)
    {
      GString *e = g_string_new (NULL);
      for (guint i = 0; i < r.edits->len; i++)
        g_string_append_printf (e, "%s%s", i ? "; " : "", ((SieveHeaderEdit *) r.edits->pdata[i])->name);
      *edits_out = g_string_free (e, FALSE);
    }
  sieve_result_clear (&r);
  return g_string_free (out, FALSE);
}

/* RFC 5229 3 lets an implementation limit a variable; doubling a string
 * forty times must stop there, not in the allocator. */
static void
test_variable_size_limit (void)
{
  GString *s = g_string_new ("require \"variables\"; set \"a\" \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\";\n");
  SieveMessage m = { 0 };
  g_autofree char *got = NULL, *edge = NULL;

  for (int i = 0; i < 40; i++)
    g_string_append (s, "set \"a\" \"${a}${a}\";\n");
  g_string_append (s, "discard;\n");
  got = run_limited (s->str, NULL, &m, NULL);
  g_assert_cmpstr (got, ==, "error: a variable would be longer than 4096 bytes; keep");
  /* 32 doubled 7 times is 4096: allowed */
  g_string_assign (s, "require \"variables\"; set \"a\" \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\";\n");
  for (int i = 0; i < 7; i++)
    g_string_append (s, "set \"a\" \"${a}${a}\";\n");
  g_string_append (s, "discard;\n");
  edge = run_limited (s->str, NULL, &m, NULL);
  g_assert_cmpstr (edge, ==, "discard");
  g_string_free (s, TRUE);
}

/* Each variable within its limit, but one string naming it thousands of
 * times: the memory of the run is bounded too. */
static void
test_run_memory_limit (void)
{
  GString *s = g_string_new ("require [\"variables\", \"fileinto\"]; set \"a\" \"");
  SieveMessage m = { 0 };
  g_autofree char *got = NULL;

  for (int i = 0; i < 4000; i++)
    g_string_append_c (s, 'x');
  g_string_append (s, "\";\nif string :is \"");
  for (int i = 0; i < 5000; i++)
    g_string_append (s, "${a}");
  g_string_append (s, "\" \"\" { discard; }\n");
  got = run_limited (s->str, NULL, &m, NULL);
  g_assert_cmpstr (got, ==, "error: script used too much memory (variables); keep");
  g_string_free (s, TRUE);
}

/* A match variable longer than the limit is cut (at a character), not an
 * error: a long Subject against "*" is ordinary mail. */
static void
test_match_variable_cut (void)
{
  g_autofree char *ys = g_strnfill (4095, 'y');
  g_autofree char *subject = g_strdup_printf ("Subject: %s\xc3\xa9tail", ys);
  const char *const headers[] = { subject, NULL };
  SieveMessage m = { 0 };
  g_autofree char *got = run_limited ("require [\"variables\", \"fileinto\"];\n"
                                      "if header :matches \"Subject\" \"*\" { set :length \"n\" \"${1}\"; fileinto \"${n}\"; }\n",
                                      headers, &m, NULL);
  g_assert_cmpstr (got, ==, "fileinto:4095");
}

/* :matches on many long values with a pattern that fails slowly: the
 * deadline is checked inside matching, so the run ends as an error close
 * to the limit instead of running through every value. */
static void
test_matches_deadline (void)
{
  g_autofree char *as = g_strnfill (60000, 'a');
  g_autofree char *value = g_strdup_printf ("X-Long: %s", as);
  const char *headers[301];
  SieveMessage m = { 0 };
  g_autofree char *got = NULL;
  gint64 t0 = g_get_monotonic_time ();

  for (guint i = 0; i < 300; i++)
    headers[i] = value;
  headers[300] = NULL;
  m.max_time_ms = 50;
  got = run_limited ("if header :matches \"X-Long\" \"*a*a*a*a*b\" { discard; }\n", headers, &m, NULL);
  g_assert_true (g_str_has_prefix (got, "error: script ran too long"));
  /* bounded, with room for a loaded machine */
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 20 * G_USEC_PER_SEC);
}

/* A single value that needs more than the step budget (no deadline in
 * sight) is a run-time error too, never a silent "no match" that would
 * let a crafted header slip past a rule. */
static void
test_matches_budget (void)
{
  g_autofree char *as = g_strnfill (60000, 'a');
  g_autofree char *value = g_strdup_printf ("X-Long: %s", as);
  const char *headers[] = { value, NULL };
  SieveMessage m = { 0 };
  g_autofree char *got = NULL;

  m.max_time_ms = 600000;
  got = run_limited ("if header :matches \"X-Long\" \"*a*a*a*a*b\" { discard; } else { keep; }\n", headers, &m, NULL);
  g_assert_cmpstr (got, ==, "error: script ran too long (or a :matches was too complex); keep");
}

/* :matches works on offsets; what it matched is still right, and a
 * pattern longer than the stack could hold by recursion is fine. */
static void
test_matches_captures (void)
{
  g_autofree char *big = g_strnfill (200000, 'q');
  g_autofree char *script = g_strdup_printf ("require \"variables\";\n"
                                             "if string :matches \"%s\" \"%s\" { discard; }\n", big, big);
  SieveMessage m = { 0 };
  g_autofree char *got = run_limited (script, NULL, &m, NULL);
  g_autofree char *caps = run_limited ("require [\"variables\", \"fileinto\"];\n"
                                       "if header :matches \"Subject\" \"W?ekly *: \\\\* *\" { fileinto \"${1}|${2}|${3}\"; }\n"
                                       "elsif header :matches \"Subject\" \"W?ekly *: *\" { fileinto \"${1}|${2}|${3}\"; }\n",
                                       NULL, &m, NULL);

  g_assert_cmpstr (got, ==, "discard");
  g_assert_cmpstr (caps, ==, "fileinto:e|report|all GREEN");
}

/* RFC 5293 4.3/5.1 and issue 13: no edits of trace fields or of the
 * caller's protected ones; others go through. */
static void
test_editheader_protected (void)
{
  const char *const extra[] = { "X-Sieve-Redirected-From", NULL };
  SieveMessage m = { 0 };
  g_autofree char *edits = NULL;
  g_autofree char *got = NULL;

  m.protected_headers = extra;
  got = run_limited ("require \"editheader\";\n"
                     "addheader \"Return-Path\" \"<x@evil>\"; addheader \"delivered-to\" \"x@evil\";\n"
                     "deleteheader \"Received\"; deleteheader \"AUTO-SUBMITTED\";\n"
                     "deleteheader \"x-sieve-redirected-from\"; addheader \"X-Ok\" \"1\";\n", NULL, &m, &edits);
  g_assert_cmpstr (got, ==, "keep");
  g_assert_cmpstr (edits, ==, "X-Ok");
  g_assert_true (sieve_header_protected ("Delivered-To", NULL));
  g_assert_false (sieve_header_protected ("X-Sieve-Redirected-From", NULL));
}

/* An error that quotes the message keeps no control characters. */
static void
test_error_text_printable (void)
{
  const char *const headers[] = { "Subject: x\nlmtpd[1]: forged\x1b[31m", NULL };
  SieveMessage m = { 0 };
  g_autofree char *got = run_limited ("require \"variables\";\n"
                                      "if header :matches \"Subject\" \"*\" { redirect \"${1}\"; }\n", headers, &m, NULL);

  g_assert_cmpstr (got, ==, "error: redirect to an invalid address 'x?lmtpd[1]: forged?[31m'; keep");
}

/* Validation reads each command's and test's definition and parses the
 * arguments once; what a script that fails it is told stays as it was,
 * tag by tag (and deleteheader's two shapes keep their wording). */
static void
test_validation_messages (void)
{
#define R "require [\"editheader\",\"fileinto\",\"copy\",\"imap4flags\",\"mailbox\"]; "
  static const struct { const char *script, *error; } cases[] = {
    { R "deleteheader :u \"subject\" \"report\";", "1:66: deleteheader: unknown tag" },
    { R "deleteheader 5 \"x\";", "1:66: deleteheader: wrong number of arguments" },
    { R "deleteheader :count \"gt\" \"X\" \"5\";", "1:66: deleteheader: wrong number of arguments" },
    { R "deleteheader :count \"gt\" \"X\";", "1:66: deleteheader: :count/:value need require \"relational\"" },
    { "if header :count \"xx\" \"a\" \"b\" { keep; }",
      "1:4: header: relational operator must be gt, ge, lt, le, eq or ne" },
    { "if header :comparator [\"a\",\"b\"] \"a\" \"b\" { keep; }", "1:4: header: a tag is missing its value" },
    { "if header :is \"a\" { keep; }", "1:4: header: wrong number of arguments" },
    { "if size :over \"x\" { keep; }", "1:4: size: expected a number" },
    { "if allof \"x\" { keep; }", "1:4: allof needs tests" },
    { "if not true \"x\" { keep; }", "1:8: true: wrong number of arguments" },
    { "if header :comparator \"i;foo\" \"a\" \"b\" { keep; }", "1:4: header: unknown comparator" },
    { "if header :comparator \"i;ascii-numeric\" \"a\" \"b\" { keep; }",
      "1:4: header: i;ascii-numeric needs require \"comparator-i;ascii-numeric\"" },
    { "if address :user \"from\" \"a\" { keep; }", "1:4: address: :user/:detail need require \"subaddress\"" },
    { "keep :copy;", "1:1: keep: :copy needs require \"copy\"" },
    { "keep true;", "1:1: keep: wrong number of tests" },
    { R "keep :create;", "1:66: keep: :create needs require \"mailbox\" and goes with fileinto" },
    { "stop :index;", "1:1: stop: a tag is missing its value" },
    { "discard :bogus;", "1:1: discard: unknown tag" },
  };
#undef R

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (SieveScript) script = sieve_compile (cases[i].script, strlen (cases[i].script), &error);
      g_assert_null (script);
      g_assert_cmpstr (error->message, ==, cases[i].error);
    }
  /* every tag goes with every command, as it always did */
  CHECK ("keep :is :all :raw;", "keep");
}

/* sieve_capabilities() (ManageSieve's SIEVE capability) lists only what a
 * script may require, and what it may not is not in it. */
static void
test_capabilities_list (void)
{
  const char *const *caps = sieve_capabilities ();
  guint n = 0;

  for (; caps[n]; n++)
    {
      g_autofree char *text = g_strdup_printf ("require \"%s\";\nkeep;\n", caps[n]);
      g_autoptr (GError) error = NULL;
      g_autoptr (SieveScript) s = sieve_compile (text, strlen (text), &error);
      g_assert_no_error (error);
    }
  g_assert_cmpuint (n, >=, 20);
  g_assert_true (g_strv_contains (caps, "fileinto") && g_strv_contains (caps, "vacation"));
  g_assert_false (g_strv_contains (caps, "nosuchext"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_mime_init ();
  g_test_add_func ("/sieve/rfc5228/implicit-keep", test_implicit_keep);
  g_test_add_func ("/sieve/rfc5228/discard", test_discard);
  g_test_add_func ("/sieve/rfc5228/redirect", test_redirect);
  g_test_add_func ("/sieve/rfc5228/stop", test_stop);
  g_test_add_func ("/sieve/rfc5228/if-elsif-else", test_if_elsif_else);
  g_test_add_func ("/sieve/rfc5228/require", test_require);
  g_test_add_func ("/sieve/rfc5228/lexical", test_lexical);
  g_test_add_func ("/sieve/rfc5228/header", test_header);
  g_test_add_func ("/sieve/rfc5228/address", test_address);
  g_test_add_func ("/sieve/rfc5228/envelope", test_envelope);
  g_test_add_func ("/sieve/rfc5228/exists", test_exists);
  g_test_add_func ("/sieve/rfc5228/size", test_size);
  g_test_add_func ("/sieve/rfc5228/logic", test_logic);
  g_test_add_func ("/sieve/rfc5228/numeric-comparator", test_numeric_comparator);
  g_test_add_func ("/sieve/rfc5228/runtime-error-keeps", test_runtime_error_keeps);
  g_test_add_func ("/sieve/fileinto", test_fileinto);
  g_test_add_func ("/sieve/rfc3894/copy", test_copy);
  g_test_add_func ("/sieve/rfc5429/reject", test_reject);
  g_test_add_func ("/sieve/rfc5490/mailbox", test_mailbox);
  g_test_add_func ("/sieve/rfc5232/imap4flags", test_imap4flags);
  g_test_add_func ("/sieve/rfc5233/subaddress", test_subaddress);
  g_test_add_func ("/sieve/rfc5229/variables", test_variables);
  g_test_add_func ("/sieve/rfc5231/relational", test_relational);
  g_test_add_func ("/sieve/rfc5173/body", test_body);
  g_test_add_func ("/sieve/rfc5293/editheader", test_editheader);
  g_test_add_func ("/sieve/rfc5235/spamtest-virustest", test_spamtest_virustest);
  g_test_add_func ("/sieve/rfc5230/vacation", test_vacation);
  g_test_add_func ("/sieve/callout", test_callout);
  g_test_add_func ("/sieve/limits", test_limits);
  g_test_add_func ("/sieve/limits/variable-size", test_variable_size_limit);
  g_test_add_func ("/sieve/limits/run-memory", test_run_memory_limit);
  g_test_add_func ("/sieve/limits/match-variable-cut", test_match_variable_cut);
  g_test_add_func ("/sieve/limits/matches-deadline", test_matches_deadline);
  g_test_add_func ("/sieve/limits/matches-budget", test_matches_budget);
  g_test_add_func ("/sieve/matches-captures", test_matches_captures);
  g_test_add_func ("/sieve/rfc5293/protected", test_editheader_protected);
  g_test_add_func ("/sieve/error-text-printable", test_error_text_printable);
  g_test_add_func ("/sieve/validation-messages", test_validation_messages);
  g_test_add_func ("/sieve/capabilities-list", test_capabilities_list);
  return g_test_run ();
}
