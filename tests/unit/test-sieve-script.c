/* test-sieve-script.c - sieve-lite's script structure and surroundings:
 * include, return and global (RFC 6609), ihave and error (RFC 5463),
 * environment (RFC 5183), special-use (RFC 8579).  Each case names the
 * section it checks.
 */
#include "config.h"

#include <string.h>

#include <gmime/gmime.h>

#include "sieve.h"
#include "sieve-fake.h"

/* ---- a message, a script store and a site of plain values ------------------- */

typedef struct {
  const char *const *headers;          /* "Name: value" */
  const char *const *personal;         /* "name", "text", ..., NULL */
  const char *const *global;
  GHashTable *compiled;                /* "p:name" -> SieveScript* */
  guint loads;
} Site;

static const char *const default_headers[] = {
  "From: money@example.com", "Subject: Make money fast", "List-ID: sieve.ietf.org", NULL,
};

static char **
site_header (const char *name, gpointer data)
{
  const Site *site = data;

  return sieve_fake_header (site->headers, name);
}

static gboolean
site_mailbox_exists (const char *name, gpointer data)
{
  return strcmp (name, "INBOX") == 0 || strcmp (name, "Spam") == 0;
}

static const SieveScript *
site_include (gboolean global, const char *name, char **error, gpointer data)
{
  Site *site = data;
  const char *const *store = global ? site->global : site->personal;
  g_autofree char *key = g_strconcat (global ? "g:" : "p:", name, NULL);
  g_autoptr (GError) e = NULL;
  SieveScript *s;

  site->loads++;
  if ((s = g_hash_table_lookup (site->compiled, key)) != NULL)
    return s;
  for (guint i = 0; store && store[i]; i += 2)
    if (strcmp (store[i], name) == 0)
      {
        s = sieve_compile (store[i + 1], strlen (store[i + 1]), &e);
        if (s == NULL)
          {
            *error = g_strdup (e->message);
            return NULL;
          }
        g_hash_table_insert (site->compiled, g_steal_pointer (&key), s);
        return s;
      }
  return NULL;
}

static const char *
site_special_use (const char *flag, gpointer data)
{
  if (g_ascii_strcasecmp (flag, "\\Junk") == 0)
    return "Spam";
  return g_ascii_strcasecmp (flag, "\\Trash") == 0 ? "Deleted" : NULL;
}

/* Runs @script in @site (NULL: none) into @r; NULL, or the compile error. */
static char *
run_into (Site *site, const char *script, const char *remote_ip, SieveResult *r)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SieveScript) s = sieve_compile (script, strlen (script), &error);
  Site empty = { NULL };
  SieveMessage m = { 0 };

  if (s == NULL)
    return g_strdup_printf ("compile error: %s", error->message);
  if (site == NULL)
    site = &empty;
  if (site->headers == NULL)
    site->headers = default_headers;
  if (site->compiled == NULL)
    site->compiled = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) sieve_script_free);
  m.envelope_from = "money@example.com";
  m.envelope_to = "bob@example.org";
  m.header = site_header;
  m.mailbox_exists = site_mailbox_exists;
  m.data = m.site_data = site;
  m.include = site_include;
  m.special_use = site_special_use;
  m.env_host = "mx1.example.org";
  m.env_domain = "example.org";
  m.env_remote_ip = remote_ip;
  sieve_run (s, &m, r);
  if (site == &empty)
    g_hash_table_unref (empty.compiled);
  return NULL;
}

/* Runs @script in @site (NULL: none); "kind:arg; ..." or "compile error:
 * ..." or "error: ...; keep" */
static char *
run_in (Site *site, const char *script, const char *remote_ip)
{
  SieveResult r = { 0 };
  char *failed = run_into (site, script, remote_ip, &r);
  GString *out;

  if (failed)
    return failed;
  out = g_string_new (NULL);
  if (r.error)
    g_string_append_printf (out, "error: %s; ", r.error);
  for (guint i = 0; i < r.actions->len; i++)
    {
      const SieveAction *a = r.actions->pdata[i];
      g_string_append_printf (out, "%s%s%s%s", i ? "; " : "", sieve_action_name (a->kind), a->argument ? ":" : "",
                              a->argument ? a->argument : "");
    }
  sieve_result_clear (&r);
  return g_string_free (out, FALSE);
}

#define CHECK_IN(site, script, expected)               \
  do {                                                 \
    g_autofree char *got_ = run_in (site, script, NULL); \
    g_assert_cmpstr (got_, ==, expected);              \
  } while (0)

static void
site_clear (Site *site)
{
  g_clear_pointer (&site->compiled, g_hash_table_unref);
}

/* ---- include (RFC 6609) --------------------------------------------------------- */

static const char *const rfc_personal[] = {
  "always_allow", "if address :is \"from\" \"boss@example.com\"\n{\n    keep;\n}\n"
                  "elsif address :is \"from\" \"ceo@example.com\"\n{\n    keep;\n}\n",
  "spam_tests", "require [\"reject\"];\nif header :contains \"Subject\" \"XXXX\"\n{\n"
                "    reject \"Subject XXXX is unacceptable.\";\n}\nelsif address :is \"from\" \"money@example.com\"\n"
                "{\n    reject \"Mail from this sender is unwelcome.\";\n}\n",
  "mailing_lists", "require [\"fileinto\"];\nif header :is \"List-ID\" \"sieve.ietf.org\"\n{\n"
                   "    fileinto \"lists.sieve\";\n}\nelsif header :is \"List-ID\" \"ietf-imapext.imc.org\"\n{\n"
                   "    fileinto \"lists.imapext\";\n}\n",
  "subject_tests", "require [\"include\", \"variables\"];\nglobal [\"test\", \"test_mailbox\"];\n\n"
                   "if header :contains \"Subject\" \"${test}\"\n{\n    set \"test_mailbox\" \"spam-${test}\";\n}\n",
  "self", "require \"include\";\ninclude \"self\";",
  "a", "require \"include\";\ninclude \"b\";",
  "b", "require \"include\";\ninclude \"a\";",
  "ret", "require [\"include\", \"fileinto\"];\nfileinto \"R\";\nif true { return; }\nfileinto \"NotR\";",
  "stopper", "require [\"include\", \"fileinto\"];\nfileinto \"S\";\nstop;",
  "count", "require [\"include\", \"variables\"];\nglobal \"n\";\nset \"n\" \"${n}x\";",
  "local", "require [\"variables\", \"fileinto\"];\nfileinto \"in-${x}\";\nset \"x\" \"inner\";",
  "broken", "require \"fileinto\";\nfileinto;",
  "once_self", "require \"include\";\ninclude :once \"once_self\";",
  NULL,
};

static const char *const rfc_global[] = {
  "spam_tests", "require [\"reject\"];\nif anyof (header :contains \"Subject\" \"$$\",\n"
                "          header :contains \"Subject\" \"Make money\")\n{\n    reject \"No thank you.\";\n}\n",
  NULL,
};

/* 3.2's example: the site's spam_tests rejects ("Make money"), the
 * user's rejects too: two rejects conflict (RFC 5429 2.1). */
static void
test_include_rfc_example (void)
{
  Site site = { NULL, rfc_personal, rfc_global };
  const char *script = "require [\"include\"];\ninclude :personal \"always_allow\";\n"
                       "include :global \"spam_tests\";\ninclude :personal \"spam_tests\";\n"
                       "include :personal \"mailing_lists\";";
  static const char *const boss[] = { "From: boss@example.com", "Subject: hi", "List-ID: sieve.ietf.org", NULL };

  CHECK_IN (&site, script, "error: reject conflicts with reject; keep");
  site.headers = boss;
  CHECK_IN (&site, script, "keep; fileinto:lists.sieve");
  site_clear (&site);
}

/* Each action knows where it came from, for the decision trace: its
 * command's line, and the include that ran it (NULL: the script run). */
static void
test_action_origin (void)
{
  Site site = { NULL, rfc_personal, rfc_global };
  const char *script = "require [\"include\", \"fileinto\", \"imap4flags\"];\n# a comment\nif true {\n"
                       "  fileinto :flags \"\\\\Seen\" \"Work\";\n}\ninclude :personal \"mailing_lists\";\nfileinto \"Work\";\n";
  SieveResult r = { 0 };
  g_autofree char *failed = run_into (&site, script, NULL, &r);
  const SieveAction *a;

  g_assert_null (failed);
  g_assert_null (r.error);
  g_assert_cmpuint (r.actions->len, ==, 2);
  /* line 4's fileinto; line 7's names the same folder and is merged into it (RFC 5228 2.10.3) */
  a = r.actions->pdata[0];
  g_assert_cmpstr (a->argument, ==, "Work");
  g_assert_cmpuint (a->line, ==, 4);
  g_assert_null (a->script);
  /* the include's action: its own line 4 in "mailing_lists" */
  a = r.actions->pdata[1];
  g_assert_cmpstr (a->argument, ==, "lists.sieve");
  g_assert_cmpuint (a->line, ==, 4);
  g_assert_cmpstr (a->script, ==, "personal:mailing_lists");
  g_assert_false (r.implicit_keep);
  sieve_result_clear (&r);
  site_clear (&site);
}

/* 3.4.1's example: the included script sets the global test_mailbox */
static void
test_include_global_example (void)
{
  Site site = { NULL, rfc_personal, rfc_global };
  const char *script = "require [\"fileinto\", \"include\", \"variables\", \"relational\"];\n"
                       "global \"test\";\nglobal \"test_mailbox\";\n\nset \"test\" \"$$\";\ninclude \"subject_tests\";\n\n"
                       "set \"test\" \"Make money\";\ninclude \"subject_tests\";\n\n"
                       "if string :count \"eq\" \"${test_mailbox}\" \"1\"\n{\n    fileinto \"${test_mailbox}\";\n    stop;\n}\n";
  static const char *const clean[] = { "Subject: hello", NULL };

  CHECK_IN (&site, script, "fileinto:spam-Make money");
  /* no test matched: "the message will be implicitly kept" */
  site.headers = clean;
  CHECK_IN (&site, script, "keep");
  site_clear (&site);
}

/* 3.4.2: global "x" and ${global.x} are one and the same; 3.4: a
 * variable not declared global is the script's own. */
static void
test_include_global_namespace (void)
{
  Site site = { NULL, rfc_personal, NULL };

  CHECK_IN (&site, "require [\"variables\", \"include\", \"fileinto\"];\nglobal \"i_am_on_vacation\";\n"
                   "set \"global.i_am_on_vacation\" \"1\";\n"
                   "if string :is \"${i_am_on_vacation}\" \"1\" { fileinto \"Away\"; }", "fileinto:Away");
  CHECK_IN (&site, "require [\"variables\", \"include\", \"fileinto\"];\nset \"x\" \"outer\";\ninclude \"local\";\n"
                   "fileinto \"out-${x}\";", "fileinto:in-; fileinto:out-outer");
  /* 3.4.1: "If a "global" command is given the name of a variable that has
   * previously been defined in the immediate script with "set", an error
   * MUST be generated" */
  CHECK_IN (&site, "require [\"variables\", \"include\"];\nset \"x\" \"1\";\nglobal \"x\";",
            "error: global: 'x' was set before as a local variable; keep");
  /* 3.4.2: "references to the "global" namespace without a prior require
   * statement for the "include" extension MUST cause an error"; "the
   * variable-name part MUST be a valid identifier" */
  CHECK_IN (&site, "require [\"variables\", \"fileinto\"];\nset \"global.x\" \"1\";",
            "compile error: 2:1: set: the global namespace needs require \"include\"");
  CHECK_IN (&site, "require [\"variables\", \"fileinto\"];\nfileinto \"${global.x}\";",
            "error: the global namespace needs require \"include\"; keep");
  CHECK_IN (&site, "require [\"variables\", \"include\"];\nset \"global.12\" \"value\";",
            "compile error: 2:1: set: not a variable name in the global namespace");
  site_clear (&site);
}

/* 3.3: return ends the included script only; in the main one it is stop.
 * 3.2: "A "stop" command in an included script MUST stop all script
 * processing" */
static void
test_include_return_stop (void)
{
  Site site = { NULL, rfc_personal, NULL };

  CHECK_IN (&site, "require [\"include\", \"fileinto\"];\ninclude \"ret\";\nfileinto \"After\";",
            "fileinto:R; fileinto:After");
  CHECK_IN (&site, "require [\"include\", \"fileinto\"];\nreturn;\nfileinto \"Never\";", "keep");
  CHECK_IN (&site, "require [\"include\", \"fileinto\"];\ninclude \"stopper\";\nfileinto \"Never\";", "fileinto:S");
  site_clear (&site);
}

/* 3.2: :once, :optional; "the script MUST be considered previously
 * included" when :once names a recursive one */
static void
test_include_once_optional (void)
{
  Site site = { NULL, rfc_personal, NULL };

  CHECK_IN (&site, "require [\"include\", \"variables\", \"fileinto\"];\nglobal \"n\";\ninclude :once \"count\";\n"
                   "include :once \"count\";\ninclude \"count\";\nfileinto \"n-${n}\";", "fileinto:n-xx");
  CHECK_IN (&site, "require [\"include\", \"fileinto\"];\ninclude :optional \"nothing\";\n"
                   "include :optional :global \"nothing\";\nfileinto \"Went-on\";", "fileinto:Went-on");
  CHECK_IN (&site, "require \"include\";\ninclude \"once_self\";", "keep");
  /* an optional script that is there but broken is still an error */
  CHECK_IN (&site, "require \"include\";\ninclude :optional \"broken\";",
            "error: include: personal script 'broken': 2:1: fileinto: wrong number of arguments; keep");
  site_clear (&site);
}

/* 3.1: recursion and a missing script are errors at execution time (and
 * never when compiled), answered by the implicit keep */
static void
test_include_errors (void)
{
  Site site = { NULL, rfc_personal, NULL };

  CHECK_IN (&site, "require \"include\";\ninclude \"nothing\";",
            "error: include: personal script 'nothing' does not exist; keep");
  CHECK_IN (&site, "require \"include\";\ninclude :global \"nothing\";",
            "error: include: global script 'nothing' does not exist; keep");
  CHECK_IN (&site, "require \"include\";\ninclude \"self\";",
            "error: include: a script includes itself (recursion); keep");
  CHECK_IN (&site, "require [\"include\", \"fileinto\"];\nfileinto \"X\";\ninclude \"a\";",
            "error: include: a script includes itself (recursion); keep");
  CHECK_IN (NULL, "require \"include\";\ninclude \"x\";", "error: include: personal script 'x' does not exist; keep");
  site_clear (&site);
}

/* Bounds: 10 deep (the RFC asks for at least 3), 255 includes a run */
static void
test_include_bounds (void)
{
  const char *chain[2 * 12 + 1];
  char *names[12], *texts[12];
  Site site = { NULL, chain, NULL };
  GString *many = g_string_new ("require [\"include\", \"variables\"];\nglobal \"n\";\n");

  for (guint i = 0; i < 12; i++)
    {
      names[i] = g_strdup_printf ("d%u", i);
      texts[i] = g_strdup_printf ("require \"include\";\ninclude \"d%u\";", i + 1);
      chain[2 * i] = names[i];
      chain[2 * i + 1] = i == 11 ? "keep;" : texts[i];
    }
  chain[24] = NULL;
  CHECK_IN (&site, "require \"include\";\ninclude \"d2\";", "keep");  /* d2..d11: 10 deep */
  CHECK_IN (&site, "require \"include\";\ninclude \"d1\";", "error: include: nested too deep; keep");
  site_clear (&site);
  site.personal = rfc_personal;
  site.loads = 0;
  for (guint i = 0; i < 256; i++)
    g_string_append (many, "include \"count\";\n");
  CHECK_IN (&site, many->str, "error: include: too many includes; keep");
  g_assert_cmpuint (site.loads, ==, 255);
  g_string_free (many, TRUE);
  site_clear (&site);
  for (guint i = 0; i < 12; i++)
    {
      g_free (names[i]);
      g_free (texts[i]);
    }
}

/* 3.2: names restricted as RFC 5804 1.6; section 4: "./../..//etc/passwd"
 * is hostile; a location once; the tags go with include only; 3.4.1:
 * global needs variables and takes variable names */
static void
test_include_compile_checks (void)
{
  CHECK_IN (NULL, "require \"include\";\ninclude \"./../..//etc/passwd\";",
            "compile error: 2:1: include: the script name './../..//etc/passwd' starts with '.'");
  CHECK_IN (NULL, "require \"include\";\ninclude \"a/b\";", "compile error: 2:1: include: the script name 'a/b' contains '/'");
  CHECK_IN (NULL, "require \"include\";\ninclude \"a\tb\";",
            "compile error: 2:1: include: the script name 'a?b' contains a control character");
  CHECK_IN (NULL, "require \"include\";\ninclude \"\";", "compile error: 2:1: include: the script name '' is empty");
  CHECK_IN (NULL, "require \"include\";\ninclude :personal :global \"a\";",
            "compile error: 2:1: include: :personal and :global together");
  CHECK_IN (NULL, "include \"a\";", "compile error: 1:1: 'include' needs require \"include\"");
  CHECK_IN (NULL, "require \"include\";\nkeep :once;",
            "compile error: 2:1: keep: :personal, :global, :once and :optional go with include");
  CHECK_IN (NULL, "require \"include\";\nglobal \"x\";",
            "compile error: 2:1: global: global needs require \"variables\" (RFC 6609 3.4.1)");
  CHECK_IN (NULL, "require [\"include\", \"variables\"];\nglobal \"1\";",
            "compile error: 2:1: global: '1' is not a variable name");
  CHECK_IN (NULL, "require [\"include\", \"variables\"];\nglobal \"a.b\";",
            "compile error: 2:1: global: 'a.b' is not a variable name");
}

/* ---- ihave, error (RFC 5463) ------------------------------------------------------ */

static void
test_ihave (void)
{
  /* 4: true iff all are available; a block under an unknown one is not
   * checked ("disables parse-time checking of extension use") */
  CHECK_IN (NULL, "require [\"ihave\", \"fileinto\"];\nif ihave \"fileinto\" { fileinto \"Have\"; }", "fileinto:Have");
  CHECK_IN (NULL, "require [\"ihave\", \"fileinto\"];\nif ihave \"nosuch\" { nosuch :x 1; fileinto \"No\"; }\n"
                  "else { fileinto \"Else\"; }", "fileinto:Else");
  CHECK_IN (NULL, "require [\"ihave\", \"fileinto\"];\nif ihave [\"copy\", \"nosuch\"] { fileinto :copy \"No\"; }", "keep");
  /* 4.1: what it tested may be used "even outside the block" */
  CHECK_IN (NULL, "require \"ihave\";\nif ihave \"fileinto\" { keep; }\nfileinto \"Later\";", "keep; fileinto:Later");
  /* 4: "MUST NOT allow it to be used with ... variables" */
  CHECK_IN (NULL, "require [\"ihave\", \"fileinto\"];\nif ihave \"variables\" { fileinto \"No\"; }", "keep");
  CHECK_IN (NULL, "if ihave \"fileinto\" { keep; }", "compile error: 1:4: 'ihave' needs require \"ihave\"");
  /* a block that does not even parse is still an error */
  CHECK_IN (NULL, "require \"ihave\";\nif ihave \"nosuch\" { nosuch }",
            "compile error: 2:28: expected ';' or '{' after nosuch");
}

/* 5: "error" ends the run with a runtime error: the implicit keep */
static void
test_error (void)
{
  CHECK_IN (NULL, "require [\"ihave\", \"fileinto\"];\nfileinto \"A\";\nerror \"giving up\";",
            "error: error command: giving up; keep");
  CHECK_IN (NULL, "error \"x\";", "compile error: 1:1: 'error' needs require \"ihave\"");
}

/* ---- environment (RFC 5183) ------------------------------------------------------- */

static void
test_environment (void)
{
  const char *items = "require [\"environment\", \"fileinto\", \"variables\"];\n"
                      "if environment :matches \"location\" \"*\" { fileinto \"${1}\"; }\n"
                      "if environment :is \"phase\" \"during\" { fileinto \"during\"; }\n"
                      "if environment :is \"name\" \"" PACKAGE_NAME "\" { fileinto \"name\"; }\n"
                      "if environment :is \"version\" \"" PACKAGE_VERSION "\" { fileinto \"version\"; }\n"
                      "if environment :matches \"host\" \"*\" { fileinto \"${1}\"; }\n"
                      "if environment :matches \"domain\" \"*\" { fileinto \"${1}\"; }\n"
                      "if environment :matches \"remote-ip\" \"*\" { fileinto \"ip=${1}\"; }\n"
                      "if environment :contains \"remote-host\" \"\" { fileinto \"remote-host\"; }\n";
  g_autofree char *got = run_in (NULL, items, "192.0.2.7");
  g_autofree char *unknown = run_in (NULL, items, NULL);

  g_assert_cmpstr (got, ==, "fileinto:MDA; fileinto:during; fileinto:name; fileinto:version; fileinto:mx1.example.org; "
                            "fileinto:example.org; fileinto:ip=192.0.2.7; fileinto:remote-host");
  /* 4.1: remote-host is "" when unknown, remote-ip does not exist; 4: "The
   * environment test MUST fail unconditionally if the specified
   * information item does not exist" */
  g_assert_cmpstr (unknown, ==, "fileinto:MDA; fileinto:during; fileinto:name; fileinto:version; "
                                "fileinto:mx1.example.org; fileinto:example.org; fileinto:remote-host");
  CHECK_IN (NULL, "require [\"environment\", \"fileinto\"];\nif environment :contains \"item\" \"\" { fileinto \"X\"; }",
            "keep");
  /* 4: "The count of an environment test is 0 if the environment
   * information returned is the empty string, or 1 otherwise." */
  CHECK_IN (NULL, "require [\"environment\", \"fileinto\", \"relational\", \"comparator-i;ascii-numeric\"];\n"
                  "if environment :count \"eq\" :comparator \"i;ascii-numeric\" \"remote-host\" \"0\" { fileinto \"0\"; }\n"
                  "if environment :count \"eq\" :comparator \"i;ascii-numeric\" \"host\" \"1\" { fileinto \"1\"; }",
            "fileinto:0; fileinto:1");
}

/* ---- special-use (RFC 8579) ------------------------------------------------------- */

static void
test_special_use (void)
{
  /* 4: into the folder with the special use, else the one named */
  CHECK_IN (NULL, "require [\"special-use\", \"fileinto\"];\nfileinto :specialuse \"\\\\Junk\" \"Junk\";",
            "fileinto:Spam");
  CHECK_IN (NULL, "require [\"special-use\", \"fileinto\"];\nfileinto :specialuse \"\\\\Archive\" \"Old\";",
            "fileinto:Old");
  CHECK_IN (NULL, "require [\"special-use\", \"fileinto\", \"variables\"];\nset \"u\" \"Trash\";\n"
                  "fileinto :specialuse \"\\\\${u}\" \"Bin\";", "fileinto:Deleted");
  CHECK_IN (NULL, "require [\"special-use\", \"fileinto\", \"variables\"];\nset \"u\" \"Trash\";\n"
                  "fileinto :specialuse \"${u}\" \"Bin\";", "error: fileinto: 'Trash' is not a special-use flag; keep");
  CHECK_IN (NULL, "require [\"special-use\", \"fileinto\"];\nfileinto :specialuse \"Junk\" \"Spam\";",
            "compile error: 2:1: fileinto: 'Junk' is not a special-use flag");
  CHECK_IN (NULL, "require \"fileinto\";\nfileinto :specialuse \"\\\\Junk\" \"Spam\";",
            "compile error: 2:1: fileinto: :specialuse needs require \"special-use\" and goes with fileinto");
  CHECK_IN (NULL, "require \"special-use\";\nkeep :specialuse \"\\\\Junk\";",
            "compile error: 2:1: keep: :specialuse needs require \"special-use\" and goes with fileinto");
}

/* 5: specialuse_exists [mailbox] flags: a folder exists with each (and
 * it is the one named) */
static void
test_specialuse_exists (void)
{
  const char *head = "require [\"special-use\", \"fileinto\"];\n";
  g_autofree char *a = g_strconcat (head, "if specialuse_exists \"\\\\Junk\" { fileinto \"Y\"; }", NULL);
  g_autofree char *b = g_strconcat (head, "if specialuse_exists \"\\\\Trash\" { fileinto \"Y\"; }", NULL);
  g_autofree char *c = g_strconcat (head, "if specialuse_exists \"Spam\" [\"\\\\Junk\"] { fileinto \"Y\"; }", NULL);
  g_autofree char *d = g_strconcat (head, "if specialuse_exists \"INBOX\" \"\\\\Junk\" { fileinto \"Y\"; }", NULL);
  g_autofree char *e = g_strconcat (head, "if specialuse_exists [\"\\\\Junk\", \"\\\\Drafts\"] { fileinto \"Y\"; }",
                                    NULL);

  CHECK_IN (NULL, a, "fileinto:Y");
  CHECK_IN (NULL, b, "keep");  /* its folder does not exist */
  CHECK_IN (NULL, c, "fileinto:Y");
  CHECK_IN (NULL, d, "keep");
  CHECK_IN (NULL, e, "keep");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_mime_init ();
  g_test_add_func ("/sieve/rfc6609/example", test_include_rfc_example);
  g_test_add_func ("/sieve/action-origin", test_action_origin);
  g_test_add_func ("/sieve/rfc6609/global-example", test_include_global_example);
  g_test_add_func ("/sieve/rfc6609/global-namespace", test_include_global_namespace);
  g_test_add_func ("/sieve/rfc6609/return-stop", test_include_return_stop);
  g_test_add_func ("/sieve/rfc6609/once-optional", test_include_once_optional);
  g_test_add_func ("/sieve/rfc6609/errors", test_include_errors);
  g_test_add_func ("/sieve/rfc6609/bounds", test_include_bounds);
  g_test_add_func ("/sieve/rfc6609/compile-checks", test_include_compile_checks);
  g_test_add_func ("/sieve/rfc5463/ihave", test_ihave);
  g_test_add_func ("/sieve/rfc5463/error", test_error);
  g_test_add_func ("/sieve/rfc5183/environment", test_environment);
  g_test_add_func ("/sieve/rfc8579/fileinto", test_special_use);
  g_test_add_func ("/sieve/rfc8579/specialuse-exists", test_specialuse_exists);
  return g_test_run ();
}
