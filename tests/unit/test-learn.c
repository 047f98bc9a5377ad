/* test-learn.c - learn/: a Maildir path back to its user, what a folder
 * is to learning, and the builtin Bayes file (learned spam and ham pull a
 * similar message's probability their way; bounds hold). */
#include "config.h"

#include <glib/gstdio.h>
#include <string.h>

#include "learn-private.h"

static LmtpdConfig *
config_with_template (const char *template)
{
  LmtpdConfig *c = lmtpd_config_new_default ();

  g_free (c->mailbox_template);
  c->mailbox_template = g_strdup (template);
  return c;
}

static void
test_owner_default_template (void)
{
  g_autoptr (LmtpdConfig) c = config_with_template ("%d/%n/Maildir");
  g_autoptr (GError) error = NULL;
  LearnOwner *o = learn_owner_new (c, &error);
  const char *parts[] = { "Example.ORG", "Ann", "Maildir", NULL };
  g_autofree char *user = NULL;

  g_assert_no_error (error);
  g_assert_cmpuint (learn_owner_depth (o), ==, 3);
  g_assert_true (learn_owner_component_ok (o, 0, "example.org"));
  g_assert_false (learn_owner_component_ok (o, 0, ".hidden"));
  g_assert_false (learn_owner_component_ok (o, 1, "ann\nUser: root"));
  g_assert_false (learn_owner_component_ok (o, 1, "two words"));
  g_assert_true (learn_owner_component_ok (o, 2, "Maildir"));
  g_assert_false (learn_owner_component_ok (o, 2, "maildir"));
  g_assert_false (learn_owner_component_ok (o, 3, "cur"));
  user = learn_owner_user (o, parts);
  g_assert_cmpstr (user, ==, "ann@example.org");
  learn_owner_free (o);
}

static void
test_owner_other_templates (void)
{
  g_autoptr (LmtpdConfig) u = config_with_template ("maildir:users/%u");
  g_autoptr (LmtpdConfig) mixed = config_with_template ("%d/%n.maildir");
  g_autoptr (LmtpdConfig) mbox = config_with_template ("mbox:%d/%n");
  g_autoptr (GError) error = NULL;
  LearnOwner *o = learn_owner_new (u, &error);
  const char *parts[] = { "users", "Bob@Example.net", NULL };
  g_autofree char *user = NULL;

  g_assert_no_error (error);
  g_assert_cmpuint (learn_owner_depth (o), ==, 2);
  user = learn_owner_user (o, parts);
  g_assert_cmpstr (user, ==, "bob@example.net");
  learn_owner_free (o);
  g_assert_null (learn_owner_new (mixed, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  g_assert_nonnull (strstr (error->message, "%n.maildir"));
  g_clear_error (&error);
  g_assert_null (learn_owner_new (mbox, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
}

static void
test_folder_kinds (void)
{
  g_autoptr (LmtpdConfig) c = lmtpd_config_new_default ();

  g_assert_cmpint (learn_folder_kind (c, ""), ==, LEARN_FOLDER_OTHER);
  g_assert_cmpint (learn_folder_kind (c, "Junk"), ==, LEARN_FOLDER_JUNK);
  g_assert_cmpint (learn_folder_kind (c, "junk"), ==, LEARN_FOLDER_JUNK);
  g_assert_cmpint (learn_folder_kind (c, "Junk.Phishing"), ==, LEARN_FOLDER_JUNK);
  g_assert_cmpint (learn_folder_kind (c, "Spam"), ==, LEARN_FOLDER_JUNK);
  g_assert_cmpint (learn_folder_kind (c, "Junkyard"), ==, LEARN_FOLDER_OTHER);
  g_assert_cmpint (learn_folder_kind (c, "Trash"), ==, LEARN_FOLDER_TRASH);
  g_assert_cmpint (learn_folder_kind (c, "Deleted Messages"), ==, LEARN_FOLDER_TRASH);
  g_assert_cmpint (learn_folder_kind (c, "Archive.Junk"), ==, LEARN_FOLDER_OTHER);
  g_assert_cmpstr (learn_folder_display (""), ==, "INBOX");
}

/* The file, its WAL companions if any, and the directory. */
static void
remove_db (const char *dir, const char *path)
{
  g_autofree char *wal = g_strconcat (path, "-wal", NULL);
  g_autofree char *shm = g_strconcat (path, "-shm", NULL);

  g_unlink (wal);
  g_unlink (shm);
  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static const char spam_msg[] = "From: deals@pills.example\nSubject: cheap pills offer\n\n"
                               "buy cheap pills viagra pharmacy discount order today\n";
static const char ham_msg[] = "From: boss@work.example\nSubject: meeting agenda tomorrow\n\n"
                              "the quarterly report draft is attached please review before the meeting\n";

static double
classify (LearnBayes *db, const char *user, const char *msg)
{
  g_autoptr (GError) error = NULL;
  double p = -1;
  guint n = 0;

  g_assert_true (learn_bayes_classify (db, user, msg, strlen (msg), &p, &n, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (n, >, 0);
  return p;
}

static void
test_bayes_learns (void)
{
  g_autofree char *dir = g_dir_make_tmp ("learn-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "bayes.db", NULL);
  g_autoptr (GError) error = NULL;
  LearnBayes *db = learn_bayes_open (path, TRUE, &error);
  gint64 nspam = 0, nham = 0;
  double p;
  guint n;

  g_assert_no_error (error);
  /* nothing learned: no opinion, no error */
  g_assert_false (learn_bayes_classify (db, "ann@example.org", spam_msg, strlen (spam_msg), &p, &n, &error));
  g_assert_no_error (error);
  g_assert_true (learn_bayes_learn (db, "ann@example.org", TRUE, spam_msg, strlen (spam_msg), &error));
  g_assert_true (learn_bayes_learn (db, "ann@example.org", FALSE, ham_msg, strlen (ham_msg), &error));
  g_assert_no_error (error);
  g_assert_cmpint (learn_bayes_token_count (db, "ann@example.org", &nspam, &nham), >, 10);
  g_assert_cmpint (nspam, ==, 1);
  g_assert_cmpint (nham, ==, 1);
  g_assert_cmpfloat (classify (db, "ann@example.org", "Subject: pills\n\ncheap viagra pharmacy offer\n"), >, 0.8);
  g_assert_cmpfloat (classify (db, "ann@example.org", "Subject: agenda\n\nreport draft meeting review\n"), <, 0.2);
  /* another user's lessons are not ann's */
  g_assert_false (learn_bayes_classify (db, "bob@example.org", spam_msg, strlen (spam_msg), &p, &n, &error));
  learn_bayes_close (db);
  /* the reader sees what the writer wrote */
  db = learn_bayes_open (path, FALSE, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (classify (db, "ann@example.org", spam_msg), >, 0.9);
  learn_bayes_close (db);
  remove_db (dir, path);
}

static void
test_bayes_bounds (void)
{
  g_autofree char *dir = g_dir_make_tmp ("learn-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "bayes.db", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GString) big = g_string_new ("Subject: many words\n\n");
  LearnBayes *db = learn_bayes_open (path, TRUE, &error);
  gint64 nspam, nham;

  for (guint i = 0; i < 5000; i++)
    g_string_append_printf (big, "word%05u ", i);
  g_assert_true (learn_bayes_learn (db, "ann@example.org", TRUE, big->str, big->len, &error));
  g_assert_no_error (error);
  /* 1500 distinct tokens of a message at most */
  g_assert_cmpint (learn_bayes_token_count (db, "ann@example.org", &nspam, &nham), ==, 1500);
  learn_bayes_close (db);
  remove_db (dir, path);
}

/* [learn] enabled needs what its backend talks to; the defaults. */
static void
test_settings (void)
{
  g_autofree char *dir = g_dir_make_tmp ("learn-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "lmtpd.conf", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) def = lmtpd_config_new_default ();
  LmtpdConfig *c;

  g_assert_false (def->learn_enabled);
  g_assert_cmpuint (def->learn_rate, ==, 100);
  g_assert_cmpstr (def->learn_junk_folders[1], ==, "Spam");
  g_assert_cmpstr (def->learn_trash_folders[1], ==, "Deleted Messages");
  g_assert_true (g_file_set_contents (path, "[learn]\nenabled = true\nbackend = rspamd\nrspamd = localhost\n", -1,
                                      NULL));
  g_assert_null (lmtpd_config_load (path, &error));
  g_assert_nonnull (strstr (error->message, "[learn] rspamd: backend rspamd needs rspamd = the controller's"));
  g_clear_error (&error);
  g_assert_true (g_file_set_contents (path, "[learn]\nenabled = true\nspamd = unix:/run/spamd.sock\n"
                                      "max_size = 2M\nrate = 5\n", -1, NULL));
  c = lmtpd_config_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (c->learn_backend, ==, LMTPD_LEARN_SPAMD);
  g_assert_cmpuint (c->learn_max_size, ==, 2 * 1024 * 1024);
  g_assert_cmpuint (c->learn_rate, ==, 5);
  lmtpd_config_unref (c);
  g_assert_cmpint (g_unlink (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/learn/owner/default", test_owner_default_template);
  g_test_add_func ("/learn/owner/other", test_owner_other_templates);
  g_test_add_func ("/learn/folders", test_folder_kinds);
  g_test_add_func ("/learn/settings", test_settings);
  g_test_add_func ("/learn/bayes/learns", test_bayes_learns);
  g_test_add_func ("/learn/bayes/bounds", test_bayes_bounds);
  return g_test_run ();
}
