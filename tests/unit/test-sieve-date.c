/* test-sieve-date.c - sieve-lite's time and memory: date, currentdate and
 * index (RFC 5260), duplicate (RFC 7352) and vacation :seconds (RFC
 * 6131).  Each case names the section it checks.
 */
#include "config.h"

#include <string.h>

#include <gmime/gmime.h>

#include "sieve.h"
#include "sieve-fake.h"

typedef struct {
  const char *const *headers;   /* "Name: value", NULL-terminated */
  const char *const *seen;      /* ids an earlier run recorded, "handle/id" */
  guint asked;                  /* duplicate questions */
} Fake;

/* Thu 2026-02-26 14:30:45 -0500 = 19:30:45 UTC */
static const char *const msg_headers[] = {
  "From: boss@example.com",
  "Date: Thu, 26 Feb 2026 14:30:45 -0500",
  "Received: from a.example by mx.example.org; Sat, 28 Feb 2026 23:10:00 +0100",
  "Received: from b.example by a.example; Fri, 27 Feb 2026 08:00:00 +0000",
  "Received: from c.example by b.example (no date here)",
  "X-Bad-Date: Thu, 32 Jan 2026 10:00:00 +0000",
  "X-Leap: Sun, 29 Feb 2025 10:00:00 +0000",
  "X-Obsolete: Thu, 26 Feb 2026 14:30:45 EST",
  "X-Leap-Second: Wed, 31 Dec 2008 23:59:60 +0000",
  "Message-ID: <id1@example.com>",
  "X-Spam: yes",
  "X-Spam: maybe",
  "To: a@example.org",
  "Cc: b@example.org, c@example.org",
  NULL,
};

static char **
fake_header (const char *name, gpointer data)
{
  const Fake *f = data;

  return sieve_fake_header (f->headers, name);
}

static gboolean
fake_duplicate (const char *handle, const char *id, gpointer data)
{
  Fake *f = data;
  g_autofree char *key = g_strconcat (handle, "/", id, NULL);

  f->asked++;
  return f->seen && g_strv_contains (f->seen, key);
}

/* Runs @script at 2026-12-07 10:00:00 +0100 (a Monday) in zone +0100;
 * returns the actions (and the ids to record) joined with "; " */
static char *
run_at (const char *script, const char *const *headers, const char *const *seen, const char *zone)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SieveScript) s = sieve_compile (script, strlen (script), &error);
  Fake f = { headers ? headers : msg_headers, seen, 0 };
  SieveMessage m = { 0 };
  SieveResult r = { 0 };
  GString *out;

  if (s == NULL)
    return g_strdup_printf ("compile error: %s", error->message);
  m.envelope_from = "boss@example.com";
  m.envelope_to = "a@example.org";
  m.header = fake_header;
  m.data = &f;
  m.duplicate = fake_duplicate;
  m.now = 1796634000; /* 2026-12-07T09:00:00Z */
  m.zone = zone ? zone : "+0100";
  sieve_run (s, &m, &r);
  out = g_string_new (NULL);
  if (r.error)
    g_string_append_printf (out, "error: %s; ", r.error);
  for (guint i = 0; i < r.actions->len; i++)
    {
      const SieveAction *a = r.actions->pdata[i];
      g_string_append_printf (out, "%s%s%s%s", i ? "; " : "", sieve_action_name (a->kind), a->argument ? ":" : "",
                              a->argument ? a->argument : "");
      if (a->vacation)
        g_string_append_printf (out, "/%u/%u", a->vacation->days, a->vacation->seconds);
      if (a->flags)
        g_string_append_printf (out, "+%s", a->flags);
    }
  for (guint i = 0; i < r.duplicates->len; i++)
    {
      const SieveDuplicate *d = r.duplicates->pdata[i];
      g_string_append_printf (out, "; record %s/%s/%" G_GUINT64_FORMAT "%s", d->handle, d->id, d->seconds,
                              d->last ? "/last" : "");
    }
  sieve_result_clear (&r);
  return g_string_free (out, FALSE);
}

#define CHECK(script, expected)                                    \
  do {                                                             \
    g_autofree char *got_ = run_at (script, NULL, NULL, NULL);     \
    g_assert_cmpstr (got_, ==, expected);                          \
  } while (0)

#define REQ "require [\"date\", \"relational\", \"fileinto\", \"variables\", \"index\", \"comparator-i;ascii-numeric\"];\n"

/* 4.2: each date-part of the Date field, shifted to :zone */
static void
test_date_parts (void)
{
  static const char *const want[][2] = {
    { "year", "2026" }, { "month", "02" }, { "day", "26" }, { "date", "2026-02-26" }, { "julian", "61097" },
    { "hour", "21" }, { "minute", "00" }, { "second", "45" }, { "time", "21:00:45" },
    { "iso8601", "2026-02-26T21:00:45+01:30" }, { "std11", "Thu, 26 Feb 2026 21:00:45 +0130" },
    { "zone", "+0130" }, { "weekday", "4" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    {
      g_autofree char *s = g_strdup_printf (REQ "if date :zone \"+0130\" :matches \"date\" \"%s\" \"*\" "
                                            "{ fileinto \"${0}\"; }", want[i][0]);
      g_autofree char *expected = g_strdup_printf ("fileinto:%s", want[i][1]);
      CHECK (s, expected);
    }
  /* "the date-part argument ... Possible case-insensitive values" */
  CHECK (REQ "if date :zone \"+0000\" \"date\" \"YEAR\" \"2026\" { fileinto \"Y\"; }", "fileinto:Y");
  /* "a time zone offset of zero MUST be represented by "Z""; "An offset
   * of 0 (Zulu) always has a positive sign" */
  CHECK (REQ "if date :zone \"-0000\" :matches \"date\" \"iso8601\" \"*\" { fileinto \"${0}\"; }",
         "fileinto:2026-02-26T19:30:45Z");
  CHECK (REQ "if date :zone \"-0000\" :matches \"date\" \"zone\" \"*\" { fileinto \"${0}\"; }", "fileinto:+0000");
}

/* 4.1: :originalzone keeps the field's zone; neither: "the local time
 * zone MUST be used" (here the caller's +0100); an obsolete zone (RFC
 * 5322 4.3: EST is -0500) reads as its offset */
static void
test_date_zones (void)
{
  CHECK (REQ "if date :originalzone :matches \"date\" \"iso8601\" \"*\" { fileinto \"${0}\"; }",
         "fileinto:2026-02-26T14:30:45-05:00");
  CHECK (REQ "if date :matches \"date\" \"iso8601\" \"*\" { fileinto \"${0}\"; }",
         "fileinto:2026-02-26T20:30:45+01:00");
  CHECK (REQ "if date :originalzone :matches \"x-obsolete\" \"zone\" \"*\" { fileinto \"${0}\"; }", "fileinto:-0500");
  /* a :zone that is no offset: the local zone, as Pigeonhole */
  CHECK (REQ "if date :zone \"Europe/Paris\" :matches \"date\" \"zone\" \"*\" { fileinto \"${0}\"; }",
         "fileinto:+0100");
}

/* 4: "returns false unconditionally if the specified header field does
 * not exist, the field exists but does not contain a syntactically valid
 * date-time ... or the date-time isn't valid according to the rules of
 * the calendar system"; "The count of a date test is 1 if the specified
 * field exists and contains a valid date; 0, otherwise." */
static void
test_date_invalid (void)
{
  CHECK (REQ "if date :matches \"x-bad-date\" \"year\" \"*\" { fileinto \"Y\"; }", "keep");
  CHECK (REQ "if date :matches \"x-leap\" \"year\" \"*\" { fileinto \"Y\"; }", "keep");
  CHECK (REQ "if date :matches \"x-none\" \"year\" \"*\" { fileinto \"Y\"; }", "keep");
  CHECK (REQ "if date :matches \"subject\" \"year\" \"*\" { fileinto \"Y\"; }", "keep");
  /* RFC 5322 3.3: a second may be 60: a valid date (read as :59, as
   * Pigeonhole) */
  CHECK (REQ "if date :originalzone :matches \"x-leap-second\" \"time\" \"*\" { fileinto \"${0}\"; }",
         "fileinto:23:59:59");
  CHECK (REQ "if date :count \"eq\" :comparator \"i;ascii-numeric\" \"x-leap\" \"year\" \"0\" { fileinto \"Zero\"; }",
         "fileinto:Zero");
  CHECK (REQ "if date :count \"eq\" :comparator \"i;ascii-numeric\" \"date\" \"year\" \"1\" { fileinto \"One\"; }",
         "fileinto:One");
  /* "If multiple header fields with the same name are present, only the
   * first field that is found is used"; in Received, the part after the
   * semicolon */
  CHECK (REQ "if date :originalzone :matches \"received\" \"date\" \"*\" { fileinto \"${0}\"; }",
         "fileinto:2026-02-28");
}

/* 4.4's examples */
static void
test_date_examples (void)
{
  const char *boss = "require [\"date\", \"relational\", \"fileinto\"];\n"
                     "if allof(header :is \"from\" \"boss@example.com\",\n"
                     "         date :value \"ge\" :originalzone \"date\" \"hour\" \"09\",\n"
                     "         date :value \"lt\" :originalzone \"date\" \"hour\" \"17\")\n"
                     "{ fileinto \"urgent\"; }";
  const char *weekend = "require [\"date\", \"relational\", \"fileinto\"];\n"
                        "if anyof(date :is \"received\" \"weekday\" \"0\",\n"
                        "         date :is \"received\" \"weekday\" \"6\")\n"
                        "{ fileinto \"weekend\"; }";

  CHECK (boss, "fileinto:urgent");
  /* Sat 23:10 +0100: a Saturday here (+0100) and at -1200 */
  CHECK (weekend, "fileinto:weekend");
  {
    g_autofree char *got = run_at (weekend, NULL, NULL, "-1200");
    g_assert_cmpstr (got, ==, "fileinto:weekend");
  }
}

/* 5: currentdate on the run's "now" (2026-12-07 10:00 +0100, a Monday);
 * 5.1's examples; "All currentdate tests in a single Sieve script MUST
 * refer to the same point in time"; "The :count value of a currentdate
 * test is always 1." */
static void
test_currentdate (void)
{
  const char *pager = "require [\"date\", \"relational\"];\n"
                      "if anyof(currentdate :is \"weekday\" \"0\",\n"
                      "         currentdate :is \"weekday\" \"6\",\n"
                      "         currentdate :value \"lt\" \"hour\" \"09\",\n"
                      "         currentdate :value \"ge\" \"hour\" \"17\")\n"
                      "{ redirect \"pager@example.com\"; }";
  const char *month = "require [\"date\", \"variables\", \"fileinto\"];\n"
                      "if currentdate :matches \"month\" \"*\" { set \"month\" \"${1}\"; }\n"
                      "if currentdate :matches \"year\"  \"*\" { set \"year\"  \"${1}\"; }\n"
                      "fileinto \"${month}-${year}\";";

  CHECK (pager, "keep");
  {
    g_autofree char *got = run_at (pager, NULL, NULL, "-0200"); /* 07:00 there */
    g_assert_cmpstr (got, ==, "redirect:pager@example.com");
  }
  CHECK (month, "fileinto:12-2026");
  CHECK (REQ "if currentdate :matches \"iso8601\" \"*\" { fileinto \"${0}\"; }", "fileinto:2026-12-07T10:00:00+01:00");
  CHECK (REQ "if currentdate :zone \"+0000\" :matches \"std11\" \"*\" { fileinto \"${0}\"; }",
         "fileinto:Mon, 07 Dec 2026 09:00:00 +0000");
  CHECK (REQ "if currentdate :count \"eq\" :comparator \"i;ascii-numeric\" \"julian\" \"1\" { fileinto \"C\"; }",
         "fileinto:C");
  CHECK (REQ "if currentdate :value \"eq\" :comparator \"i;ascii-numeric\" \"julian\" \"61381\" { fileinto \"J\"; }",
         "fileinto:J");
}

/* The vacation with a date range as Roundcube writes it (RFC 5260 5.1) */
static void
test_currentdate_vacation_range (void)
{
#define RANGE(from, to)                                                      \
  "require [\"date\", \"relational\", \"vacation\"];\n"                      \
  "if allof(currentdate :value \"ge\" \"iso8601\" \"" from "\",\n"             \
  "         currentdate :value \"le\" \"iso8601\" \"" to "\")\n"               \
  "{ vacation :days 7 \"I'm away.\"; }"
  const char *inside = RANGE ("2026-12-01T00:00:00+01:00", "2026-12-24T00:00:00+01:00");
  const char *after = RANGE ("2026-11-01T00:00:00+01:00", "2026-12-07T09:59:59+01:00");
  g_autofree char *dates = g_strdup ("require [\"date\", \"relational\", \"vacation\"];\n"
                                     "if allof(currentdate :value \"ge\" \"date\" \"2026-12-07\",\n"
                                     "         currentdate :value \"le\" \"date\" \"2026-12-07\")\n"
                                     "{ vacation \"Away today\"; }");

  CHECK (inside, "vacation:I'm away./7/604800; keep");
  CHECK (after, "keep");
  CHECK (dates, "vacation:Away today/7/604800; keep");
}

/* 6: ":index <fieldno>" counts the named fields from 1, ":last"
 * backwards; over several names, in the order of the list; "Specifying
 * :last without :index is an error." */
static void
test_index (void)
{
  CHECK (REQ "if header :index 2 :is \"x-spam\" \"maybe\" { fileinto \"Two\"; }", "fileinto:Two");
  CHECK (REQ "if header :index 1 :is \"x-spam\" \"maybe\" { fileinto \"One\"; }", "keep");
  CHECK (REQ "if header :index 1 :last :is \"x-spam\" \"maybe\" { fileinto \"Last\"; }", "fileinto:Last");
  CHECK (REQ "if header :index 3 :matches \"x-spam\" \"*\" { fileinto \"Three\"; }", "keep");
  CHECK (REQ "if address :index 2 :is [\"to\", \"cc\"] \"c@example.org\" { fileinto \"Cc\"; }", "fileinto:Cc");
  CHECK (REQ "if address :index 1 :is [\"to\", \"cc\"] \"c@example.org\" { fileinto \"No\"; }", "keep");
  CHECK (REQ "if date :index 2 :originalzone :is \"received\" \"date\" \"2026-02-27\" { fileinto \"R2\"; }",
         "fileinto:R2");
  CHECK (REQ "if date :index 1 :last :count \"eq\" :comparator \"i;ascii-numeric\" \"received\" \"date\" \"0\" "
         "{ fileinto \"NoDate\"; }", "fileinto:NoDate");
  CHECK (REQ "if header :last \"x-spam\" \"yes\" { keep; }", "compile error: 2:4: header: :last needs :index");
  CHECK ("require \"fileinto\";\nif header :index 1 \"x-spam\" \"yes\" { keep; }",
         "compile error: 2:4: header: :index needs require \"index\"");
  /* 6.1's example (a stray comma removed) */
  CHECK ("require [\"date\", \"relational\", \"index\"];\n"
         "if date :value \"gt\" :index 2 :zone \"-0500\" \"received\"\n"
         "        \"iso8601\" \"2007-02-26T09:00:00-05:00\"\n"
         "{ redirect \"aftercutoff@example.org\"; }", "redirect:aftercutoff@example.org");
}

static void
test_date_validation (void)
{
  CHECK (REQ "if date :zone \"+0100\" :originalzone \"date\" \"year\" \"2026\" { keep; }",
         "compile error: 2:4: date: :zone and :originalzone together");
  CHECK (REQ "if currentdate :originalzone \"year\" \"2026\" { keep; }",
         "compile error: 2:4: currentdate: :originalzone is for date");
  CHECK (REQ "if date \"date\" \"century\" \"21\" { keep; }", "compile error: 2:4: date: unknown date-part \"century\"");
  CHECK ("if currentdate \"year\" \"2026\" { keep; }", "compile error: 1:4: 'currentdate' needs require \"date\"");
  CHECK (REQ "if header :zone \"+0100\" \"subject\" \"x\" { keep; }",
         "compile error: 2:4: header: :zone/:originalzone are for date and currentdate");
  CHECK ("require [\"duplicate\", \"fileinto\"];\nfileinto :uniqueid \"x\" \"A\";",
         "compile error: 2:1: fileinto: :header/:uniqueid are for duplicate");
  CHECK ("require \"vacation-seconds\";\nif size :seconds 5 :over 1 { keep; }",
         "compile error: 2:4: size: :seconds is for vacation and duplicate");
  /* a date-part from a variable that is none: the test is false */
  CHECK (REQ "set \"p\" \"century\"; if date :matches \"date\" \"${p}\" \"*\" { fileinto \"X\"; }", "keep");
}

/* RFC 7352 3: true if an earlier run recorded the id; the ids of this
 * run go to the caller, who records them once it carried the actions
 * out; "MUST only update ... when the Sieve script execution finishes
 * successfully" */
static void
test_duplicate (void)
{
  static const char *const seen[] = { "/<id1@example.com>", "h/boss@example.com", NULL };
  const char *basic = "require [\"duplicate\", \"fileinto\"];\nif duplicate { fileinto \"Dup\"; }";
  g_autofree char *first = run_at (basic, NULL, NULL, NULL);
  g_autofree char *again = run_at (basic, NULL, seen, NULL);
  g_autofree char *failed = run_at ("require [\"duplicate\", \"fileinto\"];\nif duplicate { fileinto \"Dup\"; }\n"
                                    "redirect \"a@x.org\"; redirect \"b@x.org\"; redirect \"c@x.org\";\n"
                                    "redirect \"d@x.org\"; redirect \"e@x.org\";", NULL, NULL, NULL);

  g_assert_cmpstr (first, ==, "keep; record /<id1@example.com>/604800");
  g_assert_cmpstr (again, ==, "fileinto:Dup; record /<id1@example.com>/604800");
  g_assert_true (g_str_has_prefix (failed, "error: too many redirects; keep"));
  g_assert_null (strstr (failed, "record"));
  {
    g_autofree char *h = run_at ("require \"duplicate\";\nif duplicate :handle \"h\" :header \"from\" :seconds 60 :last "
                                 "{ discard; }", NULL, seen, NULL);
    g_assert_cmpstr (h, ==, "discard; record h/boss@example.com/60/last");
  }
}

/* 3.2: "The following three examples are equivalent and match the same
 * entry"; section 4's examples */
static void
test_duplicate_examples (void)
{
  static const char *const seen[] = { "/<id1@example.com>", "/disk full", NULL };
  static const char *const alert[] = { "Subject: ALERT: disk full", NULL };
  const char *forms[] = {
    "require \"duplicate\";\nif duplicate {\n  discard;\n}",
    "require \"duplicate\";\nif duplicate :header \"message-id\" {\n  discard;\n}",
    "require [\"duplicate\", \"variables\"];\nif header :matches \"message-id\" \"*\" {\n"
    "  if duplicate :uniqueid \"${0}\" {\n    discard;\n  }\n}",
  };
  const char *alerts = "require [\"duplicate\", \"variables\", \"imap4flags\", \"fileinto\"];\n"
                       "if header :matches \"subject\" \"ALERT: *\" {\n"
                       "  if duplicate :seconds 60 :uniqueid \"${1}\" {\n    setflag \"\\\\seen\";\n  }\n"
                       "  fileinto \"Alerts\";\n}";

  for (guint i = 0; i < G_N_ELEMENTS (forms); i++)
    {
      g_autofree char *got = run_at (forms[i], NULL, seen, NULL);
      g_assert_cmpstr (got, ==, "discard; record /<id1@example.com>/604800");
    }
  CHECK ("require [\"duplicate\", \"fileinto\", \"mailbox\"];\nif duplicate {\n  fileinto :create \"Trash/Duplicate\";\n}",
         "keep; record /<id1@example.com>/604800");
  {
    g_autofree char *first = run_at (alerts, alert, NULL, NULL);
    g_autofree char *again = run_at (alerts, alert, seen, NULL);
    g_assert_cmpstr (first, ==, "fileinto:Alerts; record /disk full/60");
    g_assert_cmpstr (again, ==, "fileinto:Alerts+\\seen; record /disk full/60");
  }
}

/* 3.1 and 3.3: no field (or an invalid name): false and nothing
 * recorded; :seconds 0: false; over the cap: the cap, silently;
 * :uniqueid as given; 3.1: ":header" and ":uniqueid" ... MUST trigger an
 * error */
static void
test_duplicate_arguments (void)
{
  static const char *const no_id[] = { "Subject: x", NULL };
  g_autofree char *none = run_at ("require \"duplicate\";\nif duplicate { discard; }", no_id, NULL, NULL);

  g_assert_cmpstr (none, ==, "keep");
  CHECK ("require \"duplicate\";\nif duplicate :header \"bad name\" { discard; }", "keep");
  CHECK ("require \"duplicate\";\nif duplicate :seconds 0 { discard; }", "keep");
  CHECK ("require \"duplicate\";\nif duplicate :seconds 99999999 { discard; }", "keep; record /<id1@example.com>/604800");
  CHECK ("require [\"duplicate\", \"variables\"];\nif header :matches \"x-spam\" \"*\" {\n"
         "if duplicate :uniqueid \"${0}\" { discard; } }", "keep; record /yes/604800");
  /* the same id twice in a run: one record, the last test's arguments */
  CHECK ("require \"duplicate\";\nif duplicate { keep; }\nif duplicate :seconds 30 :last { keep; }",
         "keep; record /<id1@example.com>/30/last");
  CHECK ("require \"duplicate\";\nif duplicate :header \"x\" :uniqueid \"y\" { discard; }",
         "compile error: 2:4: duplicate: :header and :uniqueid together");
  CHECK ("require [\"duplicate\", \"index\"];\nif duplicate :index 1 { discard; }",
         "compile error: 2:4: duplicate: :index is not for duplicate");
}

/* RFC 6131 2: :seconds in place of :days; "use of both parameters ...
 * MUST result in a Sieve processing error"; "vacation-seconds" implies
 * "vacation"; RFC 5230 4.1: :days 0 is raised to the minimum, 1 */
static void
test_vacation_seconds (void)
{
  CHECK ("require \"vacation-seconds\";\nvacation :seconds 1800 \"In a meeting.\";", "vacation:In a meeting./0/1800; keep");
  CHECK ("require \"vacation-seconds\";\nvacation :handle \"auto-resp\" :seconds 0 \"Received.\";",
         "vacation:Received./0/0; keep");
  CHECK ("require \"vacation-seconds\";\nvacation :seconds 99999999999 \"x\";", "vacation:x/0/2147483647; keep");
  CHECK ("require \"vacation\";\nvacation :days 0 \"x\";", "vacation:x/1/86400; keep");
  CHECK ("require \"vacation-seconds\";\nvacation :days 1 :seconds 10 \"x\";",
         "compile error: 2:1: vacation: :days and :seconds together");
  CHECK ("require \"vacation\";\nvacation :seconds 10 \"x\";",
         "compile error: 2:1: vacation: :seconds needs require \"vacation-seconds\"");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_mime_init ();
  g_test_add_func ("/sieve/rfc5260/date-parts", test_date_parts);
  g_test_add_func ("/sieve/rfc5260/date-zones", test_date_zones);
  g_test_add_func ("/sieve/rfc5260/date-invalid", test_date_invalid);
  g_test_add_func ("/sieve/rfc5260/date-examples", test_date_examples);
  g_test_add_func ("/sieve/rfc5260/currentdate", test_currentdate);
  g_test_add_func ("/sieve/rfc5260/currentdate-vacation-range", test_currentdate_vacation_range);
  g_test_add_func ("/sieve/rfc5260/index", test_index);
  g_test_add_func ("/sieve/rfc5260/validation", test_date_validation);
  g_test_add_func ("/sieve/rfc7352/duplicate", test_duplicate);
  g_test_add_func ("/sieve/rfc7352/arguments", test_duplicate_arguments);
  g_test_add_func ("/sieve/rfc7352/examples", test_duplicate_examples);
  g_test_add_func ("/sieve/rfc6131/vacation-seconds", test_vacation_seconds);
  return g_test_run ();
}
