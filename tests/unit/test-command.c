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

/* MAIL parameters: the reply for the first bad one, in order. */
static void
test_mail_params (void)
{
  static const struct {
    const char *args;
    guint64 max;
    const char *err;
    guint64 size;
    gboolean binarymime, smtputf8;
  } cases[] = {
    { "FROM:<a@b>", 0, NULL, 0, FALSE, FALSE },
    { "FROM:<a@b> SIZE=100", 0, NULL, 100, FALSE, FALSE },
    { "FROM:<a@b> SIZE=100", 100, NULL, 100, FALSE, FALSE },
    { "FROM:<a@b> SIZE=101", 100, "552 5.3.4 Message size exceeds fixed maximum message size", 0, FALSE, FALSE },
    { "FROM:<a@b> SIZE", 0, "501 5.5.4 Invalid SIZE parameter", 0, FALSE, FALSE },
    { "FROM:<a@b> SIZE=-1", 0, "501 5.5.4 Invalid SIZE parameter", 0, FALSE, FALSE },
    { "FROM:<a@b> SIZE=12k", 0, "501 5.5.4 Invalid SIZE parameter", 0, FALSE, FALSE },
    { "FROM:<a@b> BODY=7BIT", 0, NULL, 0, FALSE, FALSE },
    { "FROM:<a@b> BODY=8bitmime", 0, NULL, 0, FALSE, FALSE },
    { "FROM:<a@b> BODY=BINARYMIME", 0, NULL, 0, TRUE, FALSE },
    { "FROM:<a@b> BODY=9BIT", 0, "501 5.5.4 Invalid BODY parameter", 0, FALSE, FALSE },
    { "FROM:<a@b> BODY", 0, "501 5.5.4 Invalid BODY parameter", 0, FALSE, FALSE },
    { "FROM:<a@b> SMTPUTF8", 0, NULL, 0, FALSE, TRUE },
    { "FROM:<a@b> SMTPUTF8=yes", 0, "501 5.5.4 SMTPUTF8 takes no value", 0, FALSE, FALSE },
    { "FROM:<a@b> RET=FULL", 0, NULL, 0, FALSE, FALSE },
    { "FROM:<a@b> RET=hdrs", 0, NULL, 0, FALSE, FALSE },
    { "FROM:<a@b> RET=ALL", 0, "501 5.5.4 Invalid RET parameter", 0, FALSE, FALSE },
    { "FROM:<a@b> ENVID=abc+2Bdef", 0, NULL, 0, FALSE, FALSE },
    { "FROM:<a@b> ENVID=bad+ZZ", 0, "501 5.5.4 Invalid ENVID parameter", 0, FALSE, FALSE },
    { "FROM:<a@b> ENVID", 0, "501 5.5.4 Invalid ENVID parameter", 0, FALSE, FALSE },
    { "FROM:<a@b> AUTH=<>", 0, "555 5.5.4 Unsupported parameter", 0, FALSE, FALSE },
    { "FROM:<a@b> SIZE=5 BODY=BINARYMIME SMTPUTF8", 0, NULL, 5, TRUE, TRUE },
    /* the first bad one is answered */
    { "FROM:<a@b> RET=ALL SIZE=x", 0, "501 5.5.4 Invalid RET parameter", 0, FALSE, FALSE },
    { "FROM:<a@b> SIZE=x RET=ALL", 0, "501 5.5.4 Invalid SIZE parameter", 0, FALSE, FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      LmtpPathArgs a;
      LmtpMailParams mp;
      const char *why = NULL, *err;

      g_assert_true (lmtp_command_parse_path (cases[i].args, "FROM:", &a, &why));
      err = lmtp_command_mail_params (&a, cases[i].max, &mp);
      g_assert_cmpstr (err, ==, cases[i].err);
      if (err == NULL)
        {
          g_assert_cmpuint (mp.size, ==, cases[i].size);
          g_assert_cmpint (mp.binarymime, ==, cases[i].binarymime);
          g_assert_cmpint (mp.smtputf8, ==, cases[i].smtputf8);
        }
      lmtp_path_args_clear (&a);
    }
}

static void
test_params_text (void)
{
  LmtpPathArgs a;
  const char *why;
  g_autofree char *text = NULL, *none = NULL;

  g_assert_true (lmtp_command_parse_path ("FROM:<a@b> size=42  SMTPUTF8 ENVID=x+2By", "FROM:", &a, &why));
  text = lmtp_command_params_text (&a);
  g_assert_cmpstr (text, ==, "SIZE=42 SMTPUTF8 ENVID=x+2By");
  lmtp_path_args_clear (&a);
  g_assert_true (lmtp_command_parse_path ("FROM:<>", "FROM:", &a, &why));
  none = lmtp_command_params_text (&a);
  g_assert_cmpstr (none, ==, "");
  lmtp_path_args_clear (&a);
}

/* RCPT parameters: ORCPT and OPES-BYPASS decoded, NOTIFY taken as it is. */
static void
test_rcpt_params (void)
{
  static const struct {
    const char *args;
    LmtpParamResult result;
    const char *bad, *orcpt, *bypass;
  } cases[] = {
    { "TO:<a@b>", LMTP_PARAM_OK, NULL, NULL, NULL },
    { "TO:<a@b> ORCPT=rfc822;joe+2Bx@b", LMTP_PARAM_OK, NULL, "joe+x@b", NULL },
    { "TO:<a@b> ORCPT=rfc822;x@b ORCPT=rfc822;y@b", LMTP_PARAM_OK, NULL, "y@b", NULL },
    { "TO:<a@b> ORCPT=rfc822", LMTP_PARAM_INVALID, "ORCPT", NULL, NULL },
    { "TO:<a@b> ORCPT=rfc822;bad+ZZ", LMTP_PARAM_INVALID, "ORCPT", NULL, NULL },
    { "TO:<a@b> ORCPT", LMTP_PARAM_INVALID, "ORCPT", NULL, NULL },
    { "TO:<a@b> NOTIFY=SUCCESS,FAILURE", LMTP_PARAM_OK, NULL, NULL, NULL },
    { "TO:<a@b> notify=NEVER", LMTP_PARAM_OK, NULL, NULL, NULL },
    { "TO:<a@b> NOTIFY", LMTP_PARAM_INVALID, "NOTIFY", NULL, NULL },
    { "TO:<a@b> OPES-BYPASS=spam+2Cvirus", LMTP_PARAM_OK, NULL, NULL, "spam,virus" },
    { "TO:<a@b> OPES-BYPASS", LMTP_PARAM_INVALID, "OPES-BYPASS", NULL, NULL },
    { "TO:<a@b> OPES-BYPASS=a+", LMTP_PARAM_INVALID, "OPES-BYPASS", NULL, NULL },
    { "TO:<a@b> SIZE=1", LMTP_PARAM_UNSUPPORTED, "SIZE", NULL, NULL },
    { "TO:<a@b> NOTIFY=NEVER FOO=1 ORCPT", LMTP_PARAM_UNSUPPORTED, "FOO", NULL, NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      LmtpPathArgs a;
      LmtpRcptParams rp;
      const char *why = NULL, *bad = NULL;

      g_assert_true (lmtp_command_parse_path (cases[i].args, "TO:", &a, &why));
      g_assert_cmpint (lmtp_command_rcpt_params (&a, &rp, &bad), ==, cases[i].result);
      g_assert_cmpstr (bad, ==, cases[i].bad);
      if (cases[i].result == LMTP_PARAM_OK)
        {
          g_assert_cmpstr (rp.orcpt, ==, cases[i].orcpt);
          g_assert_cmpstr (rp.bypass, ==, cases[i].bypass);
        }
      lmtp_rcpt_params_clear (&rp);
      lmtp_path_args_clear (&a);
    }
}

/* XFORWARD and XCLIENT attributes, on top of what was given before. */
static void
test_forwarded (void)
{
  static const struct {
    LmtpVerb verb;
    const char *args;
    const char *err;
    const char *name, *addr, *helo, *ident;
  } cases[] = {
    { LMTP_CMD_XFORWARD, "NAME=mx.example.net ADDR=192.0.2.7 HELO=mx IDENT=4XyZ", NULL,
      "mx.example.net", "192.0.2.7", "mx", "4XyZ" },
    { LMTP_CMD_XFORWARD, "addr=IPV6:2001:DB8::1 proto=ESMTP source=REMOTE port=25", NULL,
      NULL, "2001:db8::1", NULL, NULL },
    { LMTP_CMD_XFORWARD, "NAME=[UNAVAILABLE] ADDR=[TEMPUNAVAIL]", NULL, NULL, NULL, NULL, NULL },
    { LMTP_CMD_XFORWARD, "NAME=a+2Bb", NULL, "a+b", NULL, NULL, NULL },
    { LMTP_CMD_XFORWARD, "  NAME=x  ", NULL, "x", NULL, NULL, NULL },
    { LMTP_CMD_XFORWARD, "", "501 5.5.4 Syntax: attribute=value...", NULL, NULL, NULL, NULL },
    { LMTP_CMD_XFORWARD, "NAME", "501 5.5.4 Syntax: attribute=value...", NULL, NULL, NULL, NULL },
    { LMTP_CMD_XFORWARD, "=x", "501 5.5.4 Syntax: attribute=value...", NULL, NULL, NULL, NULL },
    { LMTP_CMD_XFORWARD, "LOGIN=joe", "501 5.5.4 Bad attribute name", NULL, NULL, NULL, NULL },
    { LMTP_CMD_XFORWARD, "NAME=", "501 5.5.4 Bad attribute value", NULL, NULL, NULL, NULL },
    { LMTP_CMD_XFORWARD, "NAME=bad+ZZ", "501 5.5.4 Bad attribute value", NULL, NULL, NULL, NULL },
    { LMTP_CMD_XFORWARD, "ADDR=not.an.ip", "501 5.5.4 Bad address", NULL, NULL, NULL, NULL },
    /* what came before the error stays */
    { LMTP_CMD_XFORWARD, "HELO=h ADDR=x", "501 5.5.4 Bad address", NULL, NULL, "h", NULL },
    { LMTP_CMD_XCLIENT, "NAME=c.example ADDR=192.0.2.9 LOGIN=joe DESTPORT=24", NULL,
      "c.example", "192.0.2.9", NULL, NULL },
    { LMTP_CMD_XCLIENT, "IDENT=x", "501 5.5.4 Bad attribute name", NULL, NULL, NULL, NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      LmtpForwarded f = { 0 };

      g_assert_cmpstr (lmtp_command_parse_forwarded (cases[i].args, cases[i].verb, &f), ==, cases[i].err);
      g_assert_cmpstr (f.name, ==, cases[i].name);
      g_assert_cmpstr (f.addr, ==, cases[i].addr);
      g_assert_cmpstr (f.helo, ==, cases[i].helo);
      g_assert_cmpstr (f.ident, ==, cases[i].ident);
      lmtp_forwarded_clear (&f);
    }
}

static void
test_forwarded_accumulates (void)
{
  LmtpForwarded f = { 0 };

  g_assert_null (lmtp_command_parse_forwarded ("NAME=a.example ADDR=192.0.2.1", LMTP_CMD_XFORWARD, &f));
  g_assert_null (lmtp_command_parse_forwarded ("HELO=h NAME=[UNAVAILABLE]", LMTP_CMD_XFORWARD, &f));
  g_assert_null (f.name);
  g_assert_cmpstr (f.addr, ==, "192.0.2.1");
  g_assert_cmpstr (f.helo, ==, "h");
  lmtp_forwarded_clear (&f);
}

/* ---- Postfix socketmap and policy codecs ---------------------------------- */

typedef struct {
  const char *in;
  LmtpNetstring r;
  const char *payload;
  gsize used;
} NetstringCase;

static const NetstringCase netstring_cases[] = {
  { "3:abc,", LMTP_NETSTRING_OK, "abc", 6 },
  { "0:,", LMTP_NETSTRING_OK, "", 3 },
  { "3:abc,4:more", LMTP_NETSTRING_OK, "abc", 6 },   /* pipelined: one at a time */
  { "", LMTP_NETSTRING_MORE, NULL, 0 },
  { "12", LMTP_NETSTRING_MORE, NULL, 0 },
  { "3:ab", LMTP_NETSTRING_MORE, NULL, 0 },
  { "3:abc", LMTP_NETSTRING_MORE, NULL, 0 },
  { "3:abcd", LMTP_NETSTRING_BAD, NULL, 0 },         /* no comma after the data */
  { ":abc,", LMTP_NETSTRING_BAD, NULL, 0 },
  { "x:abc,", LMTP_NETSTRING_BAD, NULL, 0 },
  { "-1:,", LMTP_NETSTRING_BAD, NULL, 0 },
  { "03:abc,", LMTP_NETSTRING_BAD, NULL, 0 },        /* leading zero */
  { "100001:", LMTP_NETSTRING_BAD, NULL, 0 },        /* over the bound, before any data */
  { "99999999999999999999999:", LMTP_NETSTRING_BAD, NULL, 0 }, /* no overflow */
  { "100000", LMTP_NETSTRING_MORE, NULL, 0 },
};

static void
test_netstring (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (netstring_cases); i++)
    {
      const NetstringCase *c = &netstring_cases[i];
      const char *payload = NULL;
      gsize plen = 0, used = 0;
      LmtpNetstring r = lmtp_netstring_decode (c->in, strlen (c->in), LMTP_SOCKETMAP_MAX, &payload, &plen, &used);
      g_assert_cmpint (r, ==, c->r);
      if (r != LMTP_NETSTRING_OK)
        continue;
      g_assert_cmpuint (plen, ==, strlen (c->payload));
      g_assert_true (memcmp (payload, c->payload, plen) == 0);
      g_assert_cmpuint (used, ==, c->used);
    }
}

static void
test_netstring_append_split (void)
{
  g_autoptr (GString) out = g_string_new (NULL);
  char *name = NULL, *key = NULL;

  lmtp_netstring_append (out, "OK /m/joe", 9);
  lmtp_netstring_append (out, "", 0);
  g_assert_cmpstr (out->str, ==, "9:OK /m/joe,0:,");
  g_assert_true (lmtp_socketmap_split ("mailbox joe@example.org", 23, &name, &key));
  g_assert_cmpstr (name, ==, "mailbox");
  g_assert_cmpstr (key, ==, "joe@example.org");
  g_free (name);
  g_free (key);
  g_assert_false (lmtp_socketmap_split ("mailbox", 7, &name, &key));
  g_assert_false (lmtp_socketmap_split (" joe", 4, &name, &key));
  g_assert_false (lmtp_socketmap_split ("mailbox ", 8, &name, &key));
  g_assert_false (lmtp_socketmap_split ("mailbox a\0b", 11, &name, &key));
}

static void
test_policy_request (void)
{
  LmtpPolicyRequest req = { 0 };
  g_autofree char *big = g_strnfill (LMTP_POLICY_LINE_MAX, 'x');

  g_assert_cmpint (lmtp_policy_feed (&req, "request=smtpd_access_policy", 27), ==, LMTP_POLICY_MORE);
  g_assert_cmpint (lmtp_policy_feed (&req, "protocol_state=RCPT\r", 20), ==, LMTP_POLICY_MORE);
  g_assert_cmpint (lmtp_policy_feed (&req, "recipient=joe@example.org", 25), ==, LMTP_POLICY_MORE);
  g_assert_cmpint (lmtp_policy_feed (&req, "size=12345", 10), ==, LMTP_POLICY_MORE);
  g_assert_cmpint (lmtp_policy_feed (&req, "sasl_username=", 14), ==, LMTP_POLICY_MORE);
  g_assert_cmpint (lmtp_policy_feed (&req, "", 0), ==, LMTP_POLICY_DONE);
  g_assert_cmpstr (req.protocol_state, ==, "RCPT");
  g_assert_cmpstr (req.recipient, ==, "joe@example.org");
  g_assert_cmpuint (req.size, ==, 12345);
  lmtp_policy_request_clear (&req);
  g_assert_null (req.recipient);
  /* a bad size counts as unknown; malformed lines and too much are refused */
  g_assert_cmpint (lmtp_policy_feed (&req, "size=-5", 7), ==, LMTP_POLICY_MORE);
  g_assert_cmpint (lmtp_policy_feed (&req, "size=12x", 8), ==, LMTP_POLICY_MORE);
  g_assert_cmpuint (req.size, ==, 0);
  g_assert_cmpint (lmtp_policy_feed (&req, "no equals sign", 14), ==, LMTP_POLICY_BAD);
  g_assert_cmpint (lmtp_policy_feed (&req, "=value", 6), ==, LMTP_POLICY_BAD);
  g_assert_cmpint (lmtp_policy_feed (&req, big, strlen (big)), ==, LMTP_POLICY_BAD);
  lmtp_policy_request_clear (&req);
  for (guint i = 0; i < LMTP_POLICY_ATTRS_MAX; i++)
    g_assert_cmpint (lmtp_policy_feed (&req, "a=b", 3), ==, LMTP_POLICY_MORE);
  g_assert_cmpint (lmtp_policy_feed (&req, "a=b", 3), ==, LMTP_POLICY_BAD);
  lmtp_policy_request_clear (&req);
}

static void
test_policy_action (void)
{
  g_autofree char *dunno = lmtp_policy_action (0, "", NULL);
  g_autofree char *ok = lmtp_policy_action (250, "2.1.5", "OK");
  g_autofree char *unknown = lmtp_policy_action (550, "5.1.1", "<x@example.org> User doesn't exist");
  g_autofree char *ctl = lmtp_policy_action (452, "4.2.2", "<a\rb@x> Mailbox is full");

  g_assert_cmpstr (dunno, ==, "action=DUNNO");
  g_assert_cmpstr (ok, ==, "action=DUNNO");
  g_assert_cmpstr (unknown, ==, "action=550 5.1.1 <x@example.org> User doesn't exist");
  g_assert_cmpstr (ctl, ==, "action=452 4.2.2 <a?b@x> Mailbox is full");
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
  g_test_add_func ("/command/mail-params", test_mail_params);
  g_test_add_func ("/command/params-text", test_params_text);
  g_test_add_func ("/command/rcpt-params", test_rcpt_params);
  g_test_add_func ("/command/forwarded", test_forwarded);
  g_test_add_func ("/command/forwarded-accumulates", test_forwarded_accumulates);
  g_test_add_func ("/postfix/netstring", test_netstring);
  g_test_add_func ("/postfix/netstring-append-split", test_netstring_append_split);
  g_test_add_func ("/postfix/policy-request", test_policy_request);
  g_test_add_func ("/postfix/policy-action", test_policy_action);
  return g_test_run ();
}
