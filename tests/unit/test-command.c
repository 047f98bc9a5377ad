/* test-command.c - LMTP command line parsing, from case tables. */
#include "config.h"

#include <string.h>

#include "lmtpd.h"

static void
test_verbs (void)
{
  static const struct { const char *line; LmtpVerb verb; const char *args; } cases[] = {
    { "LHLO foo.example", LMTP_CMD_LHLO, "foo.example" },
    { "lhlo x", LMTP_CMD_LHLO, "x" },
    { "MAIL FROM:<a@b>", LMTP_CMD_MAIL, "FROM:<a@b>" },
    { "rcpt to:<a@b>", LMTP_CMD_RCPT, "to:<a@b>" },
    { "DATA", LMTP_CMD_DATA, "" },
    { "BDAT 10 LAST", LMTP_CMD_BDAT, "10 LAST" },
    { "RSET", LMTP_CMD_RSET, "" },
    { "NOOP", LMTP_CMD_NOOP, "" },
    { "QUIT", LMTP_CMD_QUIT, "" },
    { "VRFY bob", LMTP_CMD_VRFY, "bob" },
    { "HELP", LMTP_CMD_HELP, "" },
    { "HELO x", LMTP_CMD_HELO, "x" },
    { "EHLO x", LMTP_CMD_EHLO, "x" },
    { "DATAX", LMTP_CMD_UNKNOWN, "" },
    { "", LMTP_CMD_UNKNOWN, "" },
    { "XYZZY plugh", LMTP_CMD_UNKNOWN, "plugh" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const char *args = NULL;
      LmtpVerb v = lmtp_command_verb (cases[i].line, &args);
      g_assert_cmpint (v, ==, cases[i].verb);
      g_assert_cmpstr (args, ==, cases[i].args);
    }
}

static void
test_paths (void)
{
  static const struct {
    const char *args, *prefix;
    gboolean ok;
    const char *path;
    guint nparams;
  } cases[] = {
    { "FROM:<a@b.example>", "FROM:", TRUE, "a@b.example", 0 },
    { "from:<>", "FROM:", TRUE, "", 0 },
    { "FROM: <a@b>", "FROM:", TRUE, "a@b", 0 },
    { "FROM:<a@b> SIZE=100 BODY=8BITMIME", "FROM:", TRUE, "a@b", 2 },
    { "FROM:<a@b>  SIZE=100", "FROM:", TRUE, "a@b", 1 },
    { "FROM:<@r1,@r2:a@b>", "FROM:", TRUE, "a@b", 0 },
    { "TO:<\"x>y\"@b>", "TO:", TRUE, "\"x>y\"@b", 0 },
    { "TO:<a@b> ORCPT=rfc822;a+40b", "TO:", TRUE, "a@b", 1 },
    { "TO:<a@b> NOTIFY=NEVER SMTPUTF8", "TO:", TRUE, "a@b", 2 },
    { "TO:a@b", "TO:", FALSE, NULL, 0 },
    { "TO:<a@b", "TO:", FALSE, NULL, 0 },
    { "FROM:<a@b>", "TO:", FALSE, NULL, 0 },
    { "FROM:<a@b>SIZE=1", "FROM:", FALSE, NULL, 0 },
    { "FROM:<a@b> SIZE=", "FROM:", FALSE, NULL, 0 },
    { "FROM:<a@b> =1", "FROM:", FALSE, NULL, 0 },
    { "FROM:<a@b> SI_ZE=1", "FROM:", FALSE, NULL, 0 },
    { "FROM:<@r1a@b>", "FROM:", FALSE, NULL, 0 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      LmtpPathArgs a;
      const char *why = NULL;
      gboolean ok = lmtp_command_parse_path (cases[i].args, cases[i].prefix, &a, &why);

      g_test_message ("case %u: %s", i, cases[i].args);
      g_assert_cmpint (ok, ==, cases[i].ok);
      if (!ok)
        {
          g_assert_nonnull (why);
          continue;
        }
      g_assert_cmpstr (a.path, ==, cases[i].path);
      g_assert_cmpuint (a.params->len, ==, cases[i].nparams);
      lmtp_path_args_clear (&a);
    }
}

static void
test_params (void)
{
  LmtpPathArgs a;
  const char *why;
  const LmtpParam *p;

  g_assert_true (lmtp_command_parse_path ("FROM:<a@b> size=42 SMTPUTF8", "FROM:", &a, &why));
  p = lmtp_path_args_find (&a, "SIZE");
  g_assert_nonnull (p);
  g_assert_cmpstr (p->value, ==, "42");
  p = lmtp_path_args_find (&a, "SMTPUTF8");
  g_assert_nonnull (p);
  g_assert_null (p->value);
  g_assert_null (lmtp_path_args_find (&a, "BODY"));
  lmtp_path_args_clear (&a);
}

static void
test_bdat (void)
{
  static const struct { const char *args; gboolean ok; guint64 size; gboolean last; } cases[] = {
    { "0", TRUE, 0, FALSE },
    { "1024", TRUE, 1024, FALSE },
    { "12 LAST", TRUE, 12, TRUE },
    { "12 last", TRUE, 12, TRUE },
    { "0 LAST", TRUE, 0, TRUE },
    { "", FALSE, 0, FALSE },
    { "-1", FALSE, 0, FALSE },
    { "12 FIRST", FALSE, 0, FALSE },
    { "12x", FALSE, 0, FALSE },
    { "99999999999999999999999", FALSE, 0, FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      guint64 size = 0;
      gboolean last = FALSE;
      g_assert_cmpint (lmtp_command_parse_bdat (cases[i].args, &size, &last), ==, cases[i].ok);
      if (cases[i].ok)
        {
          g_assert_cmpuint (size, ==, cases[i].size);
          g_assert_cmpint (last, ==, cases[i].last);
        }
    }
}

static void
test_xtext (void)
{
  g_autofree char *a = lmtp_xtext_decode ("joe+2Bdetail@example.org");
  g_autofree char *b = lmtp_xtext_decode ("plain");
  g_assert_cmpstr (a, ==, "joe+detail@example.org");
  g_assert_cmpstr (b, ==, "plain");
  g_assert_null (lmtp_xtext_decode ("bad+2"));
  g_assert_null (lmtp_xtext_decode ("bad+ZZ"));
  g_assert_null (lmtp_xtext_decode ("nul+00"));
  g_assert_null (lmtp_xtext_decode ("sp ace"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/command/verbs", test_verbs);
  g_test_add_func ("/command/paths", test_paths);
  g_test_add_func ("/command/params", test_params);
  g_test_add_func ("/command/bdat", test_bdat);
  g_test_add_func ("/command/xtext", test_xtext);
  return g_test_run ();
}
