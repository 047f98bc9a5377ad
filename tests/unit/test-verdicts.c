/* test-verdicts.c - profile version 2 (docs/ocp-lmtp-profile.md section 5):
 * a verdict per recipient on the server's AMS and a recipient's own
 * settings on the processor's, byte for byte and back. */
#include "config.h"

#include <string.h>

#include "ocp.h"

static OcpMessage *
reparse (const OcpMessage *m, char **wire)
{
  g_autoptr (GError) error = NULL;
  GString *s = g_string_new (NULL);
  OcpMessage *out = NULL;
  gsize used = 0;

  ocp_message_write (m, s);
  g_assert_cmpint (ocp_message_parse (s->str, s->len, NULL, &out, &used, &error), ==, OCP_PARSE_OK);
  g_assert_no_error (error);
  g_assert_cmpuint (used, ==, s->len);
  *wire = g_string_free (s, FALSE);
  return out;
}

static OcpMessage *
parse_wire (const char *wire)
{
  g_autoptr (GError) error = NULL;
  OcpMessage *m = NULL;
  gsize used = 0;

  g_assert_cmpint (ocp_message_parse (wire, strlen (wire), NULL, &m, &used, &error), ==, OCP_PARSE_OK);
  g_assert_no_error (error);
  return m;
}

static void
test_recipient_verdicts_round_trip (void)
{
  OcpVerdict v, alice, boss, back;
  g_autoptr (OcpMessage) ams = ocp_message_add_uint (ocp_message_new ("AMS"), 3);
  g_autoptr (OcpMessage) again = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *wire = NULL;
  const OcpRecipientVerdict *rv;
  gsize n;

  ocp_verdict_init (&v);
  ocp_verdict_init (&alice);
  ocp_verdict_init (&boss);
  alice.verdict = OCP_VERDICT_QUARANTINE;
  alice.folder = g_strdup ("Junk");
  alice.flags = g_strdup ("S");
  alice.header = g_bytes_new_static ("X-Own: alice\nSubject: Hi\n\n", 26);
  boss.verdict = OCP_VERDICT_REJECT;
  boss.reply_code = 550;
  boss.reply_text = g_strdup ("5.7.1 Spam is refused here");
  ocp_verdict_add_recipient (&v, "alice@example.org", &alice);
  ocp_verdict_add_recipient (&v, "boss@example.org", &boss);
  ocp_verdict_to_message (&v, ams);
  ocp_verdict_recipients_to_message (&v, ams);
  again = reparse (ams, &wire);
  g_assert_cmpstr (wire, ==,
                   "AMS 3\r\nVerdict: accept\r\nRecipient-Verdicts: ({\"17:alice@example.org\"\r\n"
                   "Verdict: quarantine\r\nFolder: Junk\r\nFlags: (Seen)\r\n"
                   "Header: \"26:X-Own: alice\nSubject: Hi\n\n\"\r\n},"
                   "{\"16:boss@example.org\"\r\nVerdict: reject\r\nReply: {550 \"26:5.7.1 Spam is refused here\"}\r\n})"
                   "\r\n;\r\n");
  ocp_verdict_init (&back);
  g_assert_true (ocp_verdict_from_message (&back, again, &error));
  g_assert_no_error (error);
  g_assert_cmpint (back.verdict, ==, OCP_VERDICT_ACCEPT);
  g_assert_cmpuint (back.recipients->len, ==, 2);
  rv = ocp_verdict_for_recipient (&back, "Alice@Example.org");
  g_assert_nonnull (rv);
  g_assert_cmpint (rv->verdict.verdict, ==, OCP_VERDICT_QUARANTINE);
  g_assert_cmpstr (rv->verdict.folder, ==, "Junk");
  g_assert_cmpstr (rv->verdict.flags, ==, "S");
  {
    const char *h = g_bytes_get_data (rv->verdict.header, &n);
    g_assert_cmpmem (h, n, "X-Own: alice\nSubject: Hi\n\n", 26);
  }
  rv = ocp_verdict_for_recipient (&back, "boss@example.org");
  g_assert_cmpint (rv->verdict.verdict, ==, OCP_VERDICT_REJECT);
  g_assert_cmpuint (rv->verdict.reply_code, ==, 550);
  g_assert_null (rv->verdict.header);
  g_assert_null (ocp_verdict_for_recipient (&back, "carol@example.org"));
  ocp_verdict_clear (&back);
  ocp_verdict_clear (&alice);
  ocp_verdict_clear (&boss);
  ocp_verdict_clear (&v);
}

static void
test_recipient_verdicts_refused (void)
{
  /* each breaks the profile: the whole verdict is refused (service failed) */
  static const char *bad[] = {
    "AMS 1\r\nRecipient-Verdicts: {\"1:a\"}\r\n;\r\n",
    "AMS 1\r\nRecipient-Verdicts: (a)\r\n;\r\n",
    "AMS 1\r\nRecipient-Verdicts: ({\"3:a\rb\"\r\nVerdict: reject\r\n})\r\n;\r\n",
    "AMS 1\r\nRecipient-Verdicts: ({a\r\nVerdict: maybe\r\n})\r\n;\r\n",
    "AMS 1\r\nRecipient-Verdicts: ({a\r\nReply: {999 x}\r\n})\r\n;\r\n",
    "AMS 1\r\nRecipient-Verdicts: ({a\r\nSubject-Tag: \"3:a\nb\"\r\n})\r\n;\r\n",
    "AMS 1\r\nRecipient-Verdicts: ({a\r\nHeader: (x)\r\n})\r\n;\r\n",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (OcpMessage) m = parse_wire (bad[i]);
      g_autoptr (GError) error = NULL;
      OcpVerdict v;

      ocp_verdict_init (&v);
      g_assert_false (ocp_verdict_from_message (&v, m, &error));
      g_assert_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL);
      ocp_verdict_clear (&v);
    }
}

static void
test_recipient_data (void)
{
  const char *rcpts[] = { "alice@example.org", "Boss@example.org", NULL };
  g_autoptr (GHashTable) boss = g_hash_table_new (g_str_hash, g_str_equal);
  GHashTable *data[] = { NULL, boss };
  OcpRequest req = { .stage = "data", .rcpt_to = rcpts, .fd = -1, .rcpt_data = data };
  g_autoptr (OcpMessage) ams = ocp_message_add_uint (ocp_message_new ("AMS"), 1);
  g_autoptr (OcpMessage) again = NULL;
  g_autoptr (GHashTable) env = NULL;
  g_autofree char *wire = NULL, *key = NULL;

  g_hash_table_insert (boss, "Spam-Threshold", "2000");
  g_hash_table_insert (boss, "Spam-Actions", "tag [SPAM]");
  ocp_request_to_message (&req, ams);
  again = reparse (ams, &wire);
  g_assert_cmpstr (wire, ==,
                   "AMS 1\r\nStage: data\r\nMail-From: \"0:\"\r\nRcpt-To: (\"17:alice@example.org\",\"16:Boss@example.org\")"
                   "\r\nRecipient-Data: ({\"16:Boss@example.org\"\r\nSpam-Actions: \"10:tag [SPAM]\"\r\n"
                   "Spam-Threshold: 2000\r\n})\r\n;\r\n");
  env = ocp_envelope_from_message (again);
  key = ocp_recipient_data_key ("boss@EXAMPLE.org", "Spam-Threshold");
  g_assert_cmpstr (key, ==, "Recipient-Data:boss@example.org:Spam-Threshold");
  g_assert_cmpstr (g_hash_table_lookup (env, key), ==, "2000");
  g_assert_cmpstr (g_hash_table_lookup (env, "Rcpt-To"), ==, "alice@example.org, Boss@example.org");
  g_assert_false (g_hash_table_contains (env, "Recipient-Data"));
}

static void
test_no_recipient_data_no_parameter (void)
{
  const char *rcpts[] = { "alice@example.org", NULL };
  GHashTable *data[] = { NULL };
  OcpRequest req = { .stage = "rcpt", .rcpt_to = rcpts, .fd = -1, .rcpt_data = data };
  g_autoptr (OcpMessage) ams = ocp_message_add_uint (ocp_message_new ("AMS"), 1);

  ocp_request_to_message (&req, ams);
  g_assert_null (ocp_message_get (ams, "Recipient-Data"));
}

static void
test_versions (void)
{
  g_assert_cmpuint (ocp_profile_version ("urn:x-opes-lmtpd:ocp:lmtp:2"), ==, 2);
  g_assert_cmpuint (ocp_profile_version ("urn:x-opes-lmtpd:ocp:lmtp:1"), ==, 1);
  g_assert_cmpuint (ocp_profile_version ("urn:x-opes-lmtpd:ocp:lmtp:3"), ==, 0);
  g_assert_cmpuint (ocp_profile_version (NULL), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/verdicts/recipient-verdicts/round-trip", test_recipient_verdicts_round_trip);
  g_test_add_func ("/verdicts/recipient-verdicts/refused", test_recipient_verdicts_refused);
  g_test_add_func ("/verdicts/recipient-data", test_recipient_data);
  g_test_add_func ("/verdicts/recipient-data/none", test_no_recipient_data_no_parameter);
  g_test_add_func ("/verdicts/versions", test_versions);
  return g_test_run ();
}
