/* test-records.c - the records (state/records*.c) on SQLite: durable
 * statements, rows, $n in any order, RETURNING, the writer queue, and the
 * same file seen by a second handle (as lmtpctl sees lmtpd's).
 */
#include "config.h"

#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmtpd-conf.h"
#include "lmtpd-state.h"

typedef struct {
  char *dir;
  LmtpdConfig *config;
  StateRecords *r;
} Fixture;

static void
setup (Fixture *f, gconstpointer data)
{
  f->dir = g_dir_make_tmp ("records-XXXXXX", NULL);
  f->config = lmtpd_config_new_default ();
  g_free (f->config->state_records_db);
  f->config->state_records_db = g_build_filename (f->dir, "sub", "records.db", NULL);
  f->r = state_records_open (f->config, NULL);
  g_assert_nonnull (f->r);
  /* addresses and subjects: the owner's only */
  {
    GStatBuf st;
    g_assert_cmpint (g_stat (f->config->state_records_db, &st), ==, 0);
    g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  }
}

static void
teardown (Fixture *f, gconstpointer data)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", f->dir);
  state_records_free (f->r);
  lmtpd_config_unref (f->config);
  g_assert_cmpint (system (cmd), ==, 0);
  g_free (f->dir);
}

static void
insert_trace (StateRecords *r, const char *txn, const char *rcpt, const char *steps)
{
  const char *v[] = { txn, rcpt, "100", "200", steps };
  g_autoptr (GError) error = NULL;
  guint64 changed = 0;

  /* $5 before $3: parameters are bound by name */
  g_assert_true (state_records_exec (r,
                                     "INSERT INTO lmtpd_trace (txn, recipient, steps, at, expires)"
                                     " VALUES ($1, $2, $5, $3, $4)", 5, v, &changed, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (changed, ==, 1);
}

static void
test_exec_query (Fixture *f, gconstpointer data)
{
  const char *v[] = { "150" };
  g_autoptr (StateRows) rows = NULL;

  insert_trace (f->r, "T1", "a@example.org", "line 1\nline 2");
  insert_trace (f->r, "T1", "b@example.org", NULL);
  rows = state_records_query (f->r, "SELECT recipient, steps FROM lmtpd_trace WHERE at < $1 ORDER BY recipient",
                              1, v, NULL);
  g_assert_nonnull (rows);
  g_assert_cmpuint (rows->n_rows, ==, 2);
  g_assert_cmpstr (state_rows_get (rows, 0, 0), ==, "a@example.org");
  g_assert_cmpstr (state_rows_get (rows, 0, 1), ==, "line 1\nline 2");
  g_assert_null (state_rows_get (rows, 1, 1));
  g_assert_null (state_rows_get (rows, 2, 0));
}

static void
test_returning_and_errors (Fixture *f, gconstpointer data)
{
  const char *v[] = { "q1", "held" };
  g_autoptr (GError) error = NULL;
  g_autoptr (StateRows) rows = NULL;

  g_assert_true (state_records_exec (f->r,
                                     "INSERT INTO lmtpd_quarantine (id, created, expires, recipient, sender, size,"
                                     " service, path, state) VALUES ($1, 1, 2, 'r', 's', 3, 'spam', 'p', $2)",
                                     2, v, NULL, NULL));
  /* a claim: exactly one caller moves held -> releasing */
  rows = state_records_query (f->r, "UPDATE lmtpd_quarantine SET state = 'releasing' WHERE id = $1"
                              " AND state = $2 RETURNING id", 2, v, NULL);
  g_assert_cmpuint (rows->n_rows, ==, 1);
  g_clear_pointer (&rows, state_rows_free);
  rows = state_records_query (f->r, "UPDATE lmtpd_quarantine SET state = 'releasing' WHERE id = $1"
                              " AND state = $2 RETURNING id", 2, v, NULL);
  g_assert_cmpuint (rows->n_rows, ==, 0);
  g_assert_false (state_records_exec (f->r, "INSERT INTO nowhere VALUES (1)", 0, NULL, NULL, &error));
  g_assert_nonnull (error);
  g_assert_true (strstr (error->message, "nowhere") != NULL);
}

static void
test_post_flush_and_second_handle (Fixture *f, gconstpointer data)
{
  g_autoptr (StateRows) rows = NULL;
  StateRecords *other;

  for (guint i = 0; i < 1200; i++)
    {
      g_autofree char *hour = g_strdup_printf ("%u", i % 3);
      const char *v[] = { hour, "spam", "reject" };
      state_records_post (f->r, "INSERT INTO lmtpd_verdicts (hour, service, verdict, shadow, n)"
                          " VALUES ($1, $2, $3, 0, 1) ON CONFLICT (hour, service, verdict, shadow)"
                          " DO UPDATE SET n = lmtpd_verdicts.n + excluded.n", 3, v);
    }
  state_records_flush (f->r);
  g_assert_cmpuint (state_records_dropped (f->r), ==, 0);
  other = state_records_open (f->config, NULL);
  rows = state_records_query (other, "SELECT hour, n FROM lmtpd_verdicts ORDER BY hour", 0, NULL, NULL);
  g_assert_cmpuint (rows->n_rows, ==, 3);
  g_assert_cmpstr (state_rows_get (rows, 0, 1), ==, "400");
  state_records_free (other);
  {
    g_autofree char *id = state_records_new_id ();
    g_assert_cmpuint (strlen (id), ==, 16);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/records/exec-query", Fixture, NULL, setup, test_exec_query, teardown);
  g_test_add ("/records/returning-errors", Fixture, NULL, setup, test_returning_and_errors, teardown);
  g_test_add ("/records/post-flush", Fixture, NULL, setup, test_post_flush_and_second_handle, teardown);
  return g_test_run ();
}
