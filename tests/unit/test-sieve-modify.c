/* test-sieve-modify.c - sieve-lite's actions that change or send the
 * message (issue 17): editheader in order with the actions (RFC 5293 7),
 * the same mailbox twice (RFC 5228 2.10.3, RFC 5232 3), enotify by mailto
 * (RFC 5435, RFC 5436), replace and enclose (RFC 5703 5, 6).  Each case
 * names the RFC section it checks.
 */
#include "config.h"

#include <string.h>

#include <gmime/gmime.h>

#include "sieve.h"
#include "sieve-fake.h"

/* ---- a message made of plain values ---------------------------------------- */

typedef struct {
  const char *const *headers;   /* "Name: value", NULL-terminated */
} Fake;

static const char *const default_headers[] = {
  "From: Alice <alice@example.com>",
  "To: bob@example.org, \"Carol\" <carol+lists@example.org>",
  "Subject: Weekly report: all GREEN",
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
  return g_strdup ("Hello.\n");
}

/* Runs @script on the fake message into @r; FALSE (with the error in
 * @out) if it does not compile.  A run-time error starts @out. */
static gboolean
run_script (const char *script, const char *const *headers, SieveResult *r, GString *out)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SieveScript) s = sieve_compile (script, strlen (script), &error);
  Fake f = { headers ? headers : default_headers };
  SieveMessage m = { 0 };

  if (s == NULL)
    {
      g_string_append_printf (out, "compile error: %s", error->message);
      return FALSE;
    }
  m.envelope_from = "alice@example.com";
  m.envelope_to = "bob@example.org";
  m.header = fake_header;
  m.body_text = fake_body;
  m.data = &f;
  sieve_run (s, &m, r);
  if (r->error)
    g_string_append_printf (out, "error: %s; ", r->error);
  return TRUE;
}

/* The actions as "kind[:arg][/flags][+copy]" joined with "; " */
static char *
run (const char *script)
{
  SieveResult r = { 0 };
  GString *out = g_string_new (NULL);

  if (run_script (script, NULL, &r, out))
    for (guint i = 0; i < r.actions->len; i++)
      {
        const SieveAction *a = r.actions->pdata[i];
        g_string_append_printf (out, "%s%s%s%s%s%s%s", i ? "; " : "", sieve_action_name (a->kind),
                                a->argument ? ":" : "", a->argument ? a->argument : "", a->flags ? "/" : "",
                                a->flags ? a->flags : "", a->copy ? "+copy" : "");
      }
  sieve_result_clear (&r);
  return g_string_free (out, FALSE);
}

#define CHECK(script, expected)                     \
  do {                                              \
    g_autofree char *got_ = run (script);           \
    g_assert_cmpstr (got_, ==, expected);           \
  } while (0)

/* ---- editheader, duplicates --------------------------------------------------- */

/* The actions as "kind[:arg][/flags]@edits_before" */
static char *
run_edits_before (const char *script)
{
  SieveResult r = { 0 };
  GString *out = g_string_new (NULL);

  g_assert_true (run_script (script, NULL, &r, out));
  for (guint i = 0; i < r.actions->len; i++)
    {
      const SieveAction *a = r.actions->pdata[i];
      g_string_append_printf (out, "%s%s%s%s%s%s@%u", i ? "; " : "", sieve_action_name (a->kind),
                              a->argument ? ":" : "", a->argument ? a->argument : "", a->flags ? "/" : "",
                              a->flags ? a->flags : "", a->edits_before);
    }
  sieve_result_clear (&r);
  return g_string_free (out, FALSE);
}

/* RFC 5293 7: keep, fileinto and redirect see the edits made before
 * them, the implicit keep all of them; after a run-time error, none. */
static void
test_editheader_order (void)
{
  g_autofree char *a = run_edits_before ("require [\"editheader\", \"fileinto\", \"copy\"];\n"
                                         "fileinto :copy \"A\"; addheader \"X-1\" \"1\"; redirect :copy \"r@x.org\";\n"
                                         "addheader \"X-2\" \"2\"; deleteheader \"X-1\";");
  g_autofree char *b = run_edits_before ("require [\"editheader\", \"fileinto\"];\n"
                                         "addheader \"X-1\" \"1\"; keep; addheader \"X-2\" \"2\"; fileinto \"B\";");
  g_autofree char *c = run_edits_before ("require [\"editheader\", \"fileinto\", \"variables\"];\n"
                                         "addheader \"X-1\" \"1\"; fileinto \"B\"; set \"a\" \"no\"; redirect \"${a}\";");

  g_assert_cmpstr (a, ==, "fileinto:A@0; redirect:r@x.org@1; keep@3");
  g_assert_cmpstr (b, ==, "keep@1; fileinto:B@2");
  g_assert_cmpstr (c, ==, "error: redirect to an invalid address 'no'; keep@0");
}

/* RFC 5228 2.10.3: the same mailbox twice is one store; RFC 5232 3:
 * "the last flag list value MUST win" (keep and fileinto "INBOX" alike).
 * The implicit keep is listed as it is; deliver merges it likewise. */
static void
test_duplicate_store_flags (void)
{
  CHECK ("require [\"fileinto\", \"imap4flags\"]; fileinto :flags \"\\\\Seen\" \"A\"; "
         "fileinto :flags \"\\\\Flagged\" \"A\";", "fileinto:A/\\Flagged");
  CHECK ("require [\"fileinto\", \"imap4flags\"]; fileinto :flags \"\\\\Seen\" \"A\"; fileinto \"A\";",
         "fileinto:A");
  CHECK ("require [\"fileinto\", \"imap4flags\"]; keep :flags \"\\\\Seen\"; "
         "fileinto :flags \"\\\\Deleted\" \"inbox\";", "keep/\\Deleted");
  CHECK ("require [\"fileinto\", \"imap4flags\", \"copy\"]; fileinto :copy :flags \"\\\\Seen\" \"INBOX\"; "
         "addflag \"\\\\Answered\";", "fileinto:INBOX/\\Seen+copy; keep/\\Answered");
}

/* The notify actions as "to,...|importance|message|subject|body"; other
 * actions by name; a run-time error as "error: ..." */
static char *
run_notify (const char *script, const char *const *headers)
{
  SieveResult r = { 0 };
  GString *out = g_string_new (NULL);
  gboolean compiled = run_script (script, headers, &r, out);

  for (guint i = 0; compiled && i < r.actions->len; i++)
    {
      const SieveAction *a = r.actions->pdata[i];
      const SieveNotify *n = a->notify;
      g_autofree char *to = n ? g_strjoinv (",", n->recipients) : NULL;
      if (n)
        g_string_append_printf (out, "%s%s|%d|%s|%s|%s", i ? "; " : "", to, n->importance,
                                n->message ? n->message : "-", n->subject ? n->subject : "-",
                                n->body ? n->body : "-");
      else
        g_string_append_printf (out, "%s%s%s%s", i ? "; " : "", sieve_action_name (a->kind),
                                a->argument ? ":" : "", a->argument ? a->argument : "");
    }
  sieve_result_clear (&r);
  return g_string_free (out, FALSE);
}

#define CHECK_NOTIFY(script, headers, expected)          \
  do {                                                   \
    g_autofree char *got_ = run_notify (script, headers); \
    g_assert_cmpstr (got_, ==, expected);                \
  } while (0)

/* RFC 5435 9, the examples (the mailto ones; xmpp: and tel: are methods
 * we do not have: a run-time error, 3.8) */
static void
test_enotify_examples (void)
{
  static const char *const boss[] = { "From: boss@example.org", "Subject: Budget", NULL };
  static const char *const list[] = { "From: Al <al@x.example.org>", "To: sievemailinglist@example.org",
                                      "Subject: Wow", NULL };
  static const char *const plain[] = { "From: al@x.example.org", "Subject: Wow", NULL };

  CHECK_NOTIFY ("require [\"enotify\", \"fileinto\", \"variables\"];\n"
                "if header :contains \"from\" \"boss@example.org\" {\n"
                "  notify :importance \"1\" :message \"This is probably very important\" \"mailto:alm@example.com\";\n"
                "  stop;\n}\n"
                "if header :contains \"to\" \"sievemailinglist@example.org\" {\n"
                "  if header :matches \"Subject\" \"*\" { set \"subject\" \"${1}\"; }\n"
                "  if header :matches \"From\" \"*\" { set \"from\" \"${1}\"; }\n"
                "  notify :importance \"3\" :message \"[SIEVE] ${from}: ${subject}\" \"mailto:alm@example.com\";\n"
                "  fileinto \"INBOX.sieve\";\n}\n", boss,
                "alm@example.com|1|This is probably very important|-|-; keep");
  CHECK_NOTIFY ("require [\"enotify\", \"fileinto\", \"variables\"];\n"
                "if header :contains \"to\" \"sievemailinglist@example.org\" {\n"
                "  if header :matches \"Subject\" \"*\" { set \"subject\" \"${1}\"; }\n"
                "  if header :matches \"From\" \"*\" { set \"from\" \"${1}\"; }\n"
                "  notify :importance \"3\" :message \"[SIEVE] ${from}: ${subject}\" \"mailto:alm@example.com\";\n"
                "  fileinto \"INBOX.sieve\";\n}\n", list,
                "alm@example.com|3|[SIEVE] Al <al@x.example.org>: Wow|-|-; fileinto:INBOX.sieve");
  CHECK_NOTIFY ("require [\"enotify\", \"variables\", \"envelope\"];\n"
                "if header :matches \"from\" \"*@*.example.org\" {\n"
                "  if envelope :all :matches \"from\" \"*\" { set \"env_from\" \" [really: ${1}]\"; }\n"
                "  if header :matches \"Subject\" \"*\" { set \"subject\" \"${1}\"; }\n"
                "  if address :matches :all \"from\" \"*\" { set \"from_addr\" \"${1}\"; }\n"
                "  notify :message \"${from_addr}${env_from}: ${subject}\" \"mailto:alm@example.com\";\n}\n", plain,
                "alm@example.com|2|al@x.example.org [really: alice@example.com]: Wow|-|-; keep");
  CHECK_NOTIFY ("require [\"enotify\", \"variables\"];\n"
                "set \"notif_method\" \"xmpp:tim@example.com?message;subject=SIEVE;body=You%20got%20mail\";\n"
                "if not string :is \"${notif_method}\" \"\" { notify \"${notif_method}\"; }\n", NULL,
                "error: notify 'xmpp:tim@example.com?message;subject=SIEVE;body=You%20got%20mail': "
                "unsupported notification method; keep");
  /* 6: :encodeurl keeps a value from adding URI fields */
  CHECK_NOTIFY ("require [\"enotify\", \"variables\"];\n"
                "set :encodeurl \"body_param\" \"Safe body&evil=evilbody\";\n"
                "notify \"mailto:tim@example.com?body=${body_param}\";\n", NULL,
                "tim@example.com|2|-|-|Safe body&evil=evilbody; keep");
}

/* RFC 5435 4, 5 and RFC 5436 2.2; the checks and limits of ours */
static void
test_enotify_tests_and_limits (void)
{
  CHECK ("require \"enotify\"; if valid_notify_method [\"mailto:a@b.c\", \"mailto:?to=x@y.z&subject=Hi%20there\"] "
         "{ discard; }", "discard");
  CHECK ("require \"enotify\"; if valid_notify_method [\"mailto:a@b.c\", \"tel:+1\"] { discard; }", "keep");
  CHECK ("require \"enotify\"; if valid_notify_method \"mailto:a@b.c?subject=%0D%0ABcc:x@y.z\" { discard; }", "keep");
  /* no line break or bracket smuggled into an envelope address or a field name */
  CHECK ("require \"enotify\"; if anyof (valid_notify_method \"mailto:a%0D%0AX@b.c\", valid_notify_method "
         "\"mailto:a%3E@b.c\", valid_notify_method \"mailto:a@b.c?X-A%0A=1\") { discard; }", "keep");
  CHECK ("require \"enotify\"; if notify_method_capability \"mailto:a@b.c\" \"Online\" \"maybe\" { discard; }",
         "discard");
  CHECK ("require \"enotify\"; if notify_method_capability \"mailto:a@b.c\" \"online\" [\"yes\", \"no\"] "
         "{ discard; }", "keep");
  CHECK ("require \"enotify\"; if notify_method_capability \"xmpp:a@b.c\" \"online\" \"maybe\" { discard; }", "keep");
  CHECK ("require \"enotify\"; notify :importance \"4\" \"mailto:a@b.c\";",
         "compile error: 1:20: notify: :importance must be \"1\", \"2\" or \"3\"");
  CHECK ("require \"enotify\"; notify \"mailto:not-an-address\";",
         "compile error: 1:20: notify: invalid mailto URI");
  CHECK ("require \"variables\"; set :encodeurl \"a\" \"b\";",
         "compile error: 1:22: set: :encodeurl needs require \"enotify\"");
  /* RFC 5429 2.1 does not name notify among what reject does not go with */
  CHECK_NOTIFY ("require [\"enotify\", \"reject\"]; notify \"mailto:a@b.c\"; reject \"no\";", NULL,
                "a@b.c|2|-|-|-; reject:no");
  /* RFC 5436 2.7: an address once per run; unsafe URI fields left out */
  CHECK_NOTIFY ("require \"enotify\"; notify \"mailto:a@b.c\"; notify \"mailto:A@b.c?cc=d@e.f\";"
                "notify \"mailto:d@e.f\";", NULL, "a@b.c|2|-|-|-; d@e.f|2|-|-|-; keep");
  CHECK_NOTIFY ("require \"enotify\"; notify \"mailto:a1@b.c\"; notify \"mailto:a2@b.c\"; notify \"mailto:a3@b.c\";"
                "notify \"mailto:a4@b.c\"; notify \"mailto:a5@b.c\";", NULL,
                "error: notify 'mailto:a5@b.c': too many notifications; keep");
  CHECK_NOTIFY ("require \"enotify\"; notify \"mailto:a1@b.c?cc=a2@b.c,a3@b.c,a4@b.c,a5@b.c,a6@b.c,a7@b.c,"
                "a8@b.c,a9@b.c\";", NULL,
                "compile error: 1:20: notify: too many recipients in a mailto URI");
}

/* The changes as "kind@edits_before[/subject]" and the actions as
 * "kind@changes_before" */
static char *
run_changes (const char *script)
{
  SieveResult r = { 0 };
  GString *out = g_string_new (NULL);

  if (run_script (script, NULL, &r, out))
    {
      for (guint i = 0; i < r.changes->len; i++)
        {
          const SieveChange *c = r.changes->pdata[i];
          g_string_append_printf (out, "%s@%u%s%s; ", c->kind == SIEVE_CHANGE_ENCLOSE ? "enclose" : "replace",
                                  c->edits_before, c->subject ? "/" : "", c->subject ? c->subject : "");
        }
      for (guint i = 0; i < r.actions->len; i++)
        {
          const SieveAction *a = r.actions->pdata[i];
          g_string_append_printf (out, "%s%s@%u", i ? "; " : "", sieve_action_name (a->kind), a->changes_before);
        }
    }
  sieve_result_clear (&r);
  return g_string_free (out, FALSE);
}

#define CHECK_CHANGES(script, expected)                 \
  do {                                                  \
    g_autofree char *got_ = run_changes (script);       \
    g_assert_cmpstr (got_, ==, expected);               \
  } while (0)

/* RFC 5703 5, 6: replace and enclose change what later stores keep, in
 * order with the header edits; after a run-time error nothing changes. */
static void
test_replace_enclose (void)
{
  CHECK_CHANGES ("require [\"enclose\", \"replace\", \"fileinto\", \"copy\", \"editheader\"];\n"
                 "fileinto :copy \"A\"; addheader \"X\" \"1\"; enclose :subject \"S\" \"text\";\n"
                 "fileinto :copy \"B\"; replace \"new\"; redirect :copy \"r@x.org\";",
                 "enclose@1/S; replace@1; fileinto@0; fileinto@1; redirect@2; keep@2");
  CHECK_CHANGES ("require [\"replace\", \"variables\"];\nset \"f\" \"not an address\";\n"
                 "replace :from \"${f}\" \"x\";",
                 "error: replace :from 'not an address' is not a mailbox list; keep@0");
  CHECK_CHANGES ("require [\"replace\"];\nreplace :from \"Me <me@example.org>, you@example.org\" \"x\";",
                 "replace@0; keep@1");
  CHECK_CHANGES ("require \"replace\";\nreplace :mime :subject \"s\" \"Content-Type: text/plain\n\nx\";",
                 "compile error: 2:1: replace: :mime goes with neither :subject nor :from");
  CHECK_CHANGES ("enclose \"x\";", "compile error: 1:1: 'enclose' needs require \"enclose\"");
  CHECK_CHANGES ("require \"enclose\";\nenclose \"1\"; enclose \"2\"; enclose \"3\"; enclose \"4\"; enclose \"5\";\n"
                 "enclose \"6\"; enclose \"7\"; enclose \"8\"; enclose \"9\";",
                 "error: too many replace and enclose actions; keep@0");
}

/* RFC 5703 6: after enclose, "tests operating on the MIME structure or
 * accessing MIME header fields use the newly created message"; after
 * replace, the fields it changed (5). */
static void
test_tests_see_changes (void)
{
  CHECK ("require [\"enclose\", \"fileinto\", \"editheader\", \"copy\"];\naddheader \"X-Old\" \"1\";\n"
         "enclose :subject \"Wrapped\" \"t\";\naddheader \"X-New\" \"1\";\n"
         "if header :is \"subject\" \"Wrapped\" { fileinto :copy \"A\"; }\n"
         "if not exists \"to\" { if not exists \"x-old\" { fileinto :copy \"B\"; } }\n"
         "if header :contains \"content-type\" \"multipart/mixed\" { fileinto :copy \"C\"; }\n"
         "if address :is \"from\" \"bob@example.org\" { fileinto :copy \"D\"; }\n"
         "if exists \"x-new\" { fileinto :copy \"E\"; }",
         "fileinto:A+copy; fileinto:B+copy; fileinto:C+copy; fileinto:D+copy; fileinto:E+copy; keep");
  CHECK ("require [\"enclose\", \"fileinto\"];\nenclose :headers \"TO\" \"t\";\n"
         "if allof (exists \"to\", header :is \"subject\" \"Weekly report: all GREEN\") { fileinto \"F\"; }",
         "fileinto:F");
  CHECK ("require [\"replace\", \"fileinto\", \"copy\"];\nreplace :subject \"New\" :from \"me@example.org\" \"x\";\n"
         "if header :is \"original-subject\" \"Weekly report: all GREEN\" { fileinto :copy \"G\"; }\n"
         "if header :is \"subject\" \"New\" { fileinto :copy \"H\"; }\n"
         "if address :is \"original-from\" \"alice@example.com\" { fileinto :copy \"I\"; }\n"
         "if header :is \"content-type\" \"text/plain; charset=utf-8\" { fileinto :copy \"J\"; }",
         "fileinto:G+copy; fileinto:H+copy; fileinto:I+copy; fileinto:J+copy; keep");
  CHECK ("require [\"replace\", \"fileinto\"];\nreplace :mime \"Content-Type: text/html\n\n<p>\";\n"
         "if header :is \"content-type\" \"text/html\" { fileinto \"K\"; }", "fileinto:K");
  /* the body test too */
  CHECK ("require [\"replace\", \"enclose\", \"fileinto\", \"body\", \"copy\"];\n"
         "if body :contains \"Hello\" { fileinto :copy \"L\"; }\nreplace \"Goodbye\";\n"
         "if body :contains \"Hello\" { fileinto :copy \"M\"; }\nenclose \"Wrapped up\";\n"
         "if body :contains \"Wrapped\" { if body :contains \"Goodbye\" { fileinto :copy \"N\"; } }",
         "fileinto:L+copy; fileinto:N+copy; keep");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_mime_init ();
  g_test_add_func ("/sieve/rfc5293/order", test_editheader_order);
  g_test_add_func ("/sieve/rfc5232/duplicate-store-flags", test_duplicate_store_flags);
  g_test_add_func ("/sieve/rfc5435/examples", test_enotify_examples);
  g_test_add_func ("/sieve/rfc5435/tests-and-limits", test_enotify_tests_and_limits);
  g_test_add_func ("/sieve/rfc5703/replace-enclose", test_replace_enclose);
  g_test_add_func ("/sieve/rfc5703/tests-see-changes", test_tests_see_changes);
  return g_test_run ();
}
