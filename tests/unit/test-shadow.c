/* test-shadow.c - shadow mode's parts that need no server: [service] mode
 * and [record] in the configuration, the recorded envelope written and
 * read back (every field, NULLs and a recipient's data), a text that is
 * no envelope, and the verdict counts summed in memory and in the records.
 */
#include "config.h"

#include <string.h>
#include <glib/gstdio.h>

#include "context.h"
#include "lmtpd-conf.h"
#include "record.h"

static LmtpdConfig *
load (const char *text, GError **error)
{
  g_autofree char *dir = g_dir_make_tmp ("shadow-conf-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "lmtpd.conf", NULL);
  LmtpdConfig *c;

  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  c = lmtpd_config_load (path, error);
  g_unlink (path);
  g_rmdir (dir);
  return c;
}

static void
test_config (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) c = load ("[service a]\nservers = inet:127.0.0.1:1\nmode = shadow\n"
                                    "[service b]\nservers = inet:127.0.0.1:2\n", &error);
  g_autoptr (LmtpdConfig) listed = NULL, off = NULL, bad = NULL;

  g_assert_no_error (error);
  g_assert_true (((LmtpdService *) c->services->pdata[0])->shadow);
  g_assert_false (((LmtpdService *) c->services->pdata[1])->shadow);
  /* the defaults: the shadow services are recorded, 48 hours, 1G */
  g_assert_true (record_wanted (c, c->services->pdata[0]));
  g_assert_false (record_wanted (c, c->services->pdata[1]));
  g_assert_cmpstr (c->record_dir, ==, "./var/lib/recorded");
  g_assert_cmpuint (c->record_keep, ==, 48 * 3600);
  g_assert_cmpuint (c->record_max_size, ==, 1024 * 1024 * 1024);
  listed = load ("[service b]\nservers = inet:127.0.0.1:2\n[record]\nservices = b\nkeep = 2h\nmax_size = 10M\n", NULL);
  g_assert_true (record_wanted (listed, listed->services->pdata[0]));
  g_assert_cmpuint (listed->record_keep, ==, 7200);
  off = load ("[service a]\nservers = inet:127.0.0.1:1\nmode = shadow\n[record]\nservices = none\n", NULL);
  g_assert_false (record_wanted (off, off->services->pdata[0]));
  bad = load ("[service a]\nservers = inet:127.0.0.1:1\nmode = sometimes\n", &error);
  g_assert_null (bad);
  g_assert_nonnull (strstr (error->message, "lmtpd.conf:3: [service a] mode"));
  g_assert_nonnull (strstr (error->message, "normal or shadow"));
}

static void
test_envelope_round_trip (void)
{
  const char *rcpts[] = { "alice@example.org", "bob@example.org", NULL };
  const char *orcpts[] = { NULL, "rfc822;Bob@Example.ORG", NULL };
  g_autoptr (GHashTable) alice = g_hash_table_new (g_str_hash, g_str_equal);
  GHashTable *datas[] = { alice, NULL };
  OcpRequest req = { .stage = "data", .transaction_id = "t1", .client_address = "192.0.2.1",
                     .client_name = "it's \"quoted\" \xc3\xa9", .mail_from = "", .mail_params = NULL,
                     .rcpt_to = rcpts, .orcpt = orcpts, .bypass = "*", .prior_verdicts = NULL,
                     .fd = 7, .header_len = 123, .body_len = 333, .message_size = 456, .rcpt_data = datas };
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;
  RecordEnvelope env;

  g_hash_table_insert (alice, "Spam-Threshold", "5.0");
  text = record_envelope_text (&req);
  g_assert_true (record_envelope_parse (text, &env, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (env.req.stage, ==, "data");
  g_assert_cmpstr (env.req.transaction_id, ==, "t1");
  g_assert_cmpstr (env.req.client_address, ==, "192.0.2.1");
  g_assert_cmpstr (env.req.client_name, ==, req.client_name);
  g_assert_cmpstr (env.req.mail_from, ==, "");
  g_assert_null (env.req.mail_params);
  g_assert_cmpstr (env.req.bypass, ==, "*");
  g_assert_null (env.req.prior_verdicts);
  g_assert_cmpstr (env.req.rcpt_to[0], ==, rcpts[0]);
  g_assert_cmpstr (env.req.rcpt_to[1], ==, rcpts[1]);
  g_assert_null (env.req.rcpt_to[2]);
  g_assert_null (env.req.orcpt[0]);
  g_assert_cmpstr (env.req.orcpt[1], ==, orcpts[1]);
  g_assert_nonnull (env.req.rcpt_data);
  g_assert_cmpstr (g_hash_table_lookup (env.req.rcpt_data[0], "Spam-Threshold"), ==, "5.0");
  g_assert_null (env.req.rcpt_data[1]);
  g_assert_cmpuint (env.req.header_len, ==, 123);
  g_assert_cmpuint (env.req.message_size, ==, 456);
  g_assert_cmpint (env.req.fd, ==, -1); /* the copy is opened by replay, not named here */
  record_envelope_clear (&env);
}

static void
test_envelope_refused (void)
{
  const char *texts[] = { "", "garbage", "('data', 1)", "[1, 2, 3]" };

  for (guint i = 0; i < G_N_ELEMENTS (texts); i++)
    {
      g_autoptr (GError) error = NULL;
      RecordEnvelope env;
      g_assert_false (record_envelope_parse (texts[i], &env, &error));
      g_assert_nonnull (error);
      record_envelope_clear (&env);
    }
}

static guint64
count_of (GPtrArray *counts, const char *service, const char *verdict, gboolean shadow)
{
  for (guint i = 0; i < counts->len; i++)
    {
      const DeliverVerdictCount *c = counts->pdata[i];
      if (!strcmp (c->service, service) && !strcmp (c->verdict, verdict) && c->shadow == shadow)
        return c->n;
    }
  return 0;
}

static void
test_counts_sum (void)
{
  g_autofree char *dir = g_dir_make_tmp ("shadow-counts-XXXXXX", NULL);
  g_autoptr (LmtpdConfig) c = lmtpd_config_new_default ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) first = NULL, second = NULL;
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", dir);
  DeliverContext *ctx = deliver_context_new ();

  g_free (c->state_records_db);
  c->state_records_db = g_build_filename (dir, "records.db", NULL);
  g_assert_true (deliver_context_open_records (ctx, c, &error));
  for (guint i = 0; i < 3; i++)
    verdict_counts_add (ctx, "judge", "reject", TRUE);
  verdict_counts_add (ctx, "judge", "reject", FALSE);
  verdict_counts_add (ctx, "tagger", "modify", FALSE);
  first = deliver_verdict_counts (ctx, g_get_real_time () / G_USEC_PER_SEC, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (count_of (first, "judge", "reject", TRUE), ==, 3);
  g_assert_cmpuint (count_of (first, "judge", "reject", FALSE), ==, 1);
  g_assert_cmpuint (count_of (first, "tagger", "modify", FALSE), ==, 1);
  /* a second flush adds to the row (n = n + excluded.n) */
  verdict_counts_add (ctx, "judge", "reject", TRUE);
  second = deliver_verdict_counts (ctx, 0, &error);
  g_assert_cmpuint (count_of (second, "judge", "reject", TRUE), ==, 4);
  g_assert_cmpuint (second->len, ==, 3);
  deliver_context_unref (ctx);
  g_assert_cmpint (system (cmd), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/shadow/config", test_config);
  g_test_add_func ("/shadow/envelope-round-trip", test_envelope_round_trip);
  g_test_add_func ("/shadow/envelope-refused", test_envelope_refused);
  g_test_add_func ("/shadow/counts-sum", test_counts_sum);
  return g_test_run ();
}
