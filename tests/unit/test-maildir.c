/* test-maildir.c - spool line-end handling, Maildir names and the bytes a
 * delivery leaves on disk. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "deliver.h"

/* deliver_maildir_store() with the fields as arguments, as the tests
 * used to call it. */
static gboolean
store_maildir (const char *maildir, const char *hostname, const char *header, const DeliverContent *content,
               const char *flags, const char *link_from, gboolean do_fsync, char **out_path, guint64 *out_size,
               GError **error)
{
  DeliverMaildirStore st = { maildir, hostname, header, content, flags, link_from, do_fsync, NULL, NULL, NULL };
  return deliver_maildir_store (&st, out_path, out_size, error);
}

static const DeliverContent *
content_of (DeliverSpool *s)
{
  static DeliverContent c;
  deliver_content_from_spool (&c, s);
  return &c;
}

static char *
spool_contents (DeliverSpool *s)
{
  guint64 size = deliver_spool_size (s);
  char *buf = g_malloc0 (size + 1);
  g_assert_cmpint (pread (deliver_spool_fd (s), buf, size, 0), ==, (gssize) size);
  return buf;
}

static void
test_spool_crlf (void)
{
  static const struct { const char *chunks[4]; const char *want; guint64 lines; } cases[] = {
    { { "a\r\nb\r\n", NULL }, "a\nb\n", 2 },
    { { "a\r", "\nb\r\n", NULL }, "a\nb\n", 2 },
    { { "a\r", "b\r\n", NULL }, "a\rb\n", 1 },
    { { "bare\nlf\n", NULL }, "bare\nlf\n", 2 },
    { { "cr at end\r", NULL }, "cr at end\r", 0 },
    { { "x", "\r", "\r", "\n" }, "x\r\n", 1 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (DeliverSpool) s = deliver_spool_new (NULL, g_get_tmp_dir (), &error);
      g_autofree char *got = NULL;

      g_assert_no_error (error);
      for (guint j = 0; j < 4 && cases[i].chunks[j]; j++)
        g_assert_true (deliver_spool_write (s, cases[i].chunks[j], strlen (cases[i].chunks[j]), &error));
      g_assert_true (deliver_spool_finish (s, &error));
      got = spool_contents (s);
      g_assert_cmpstr (got, ==, cases[i].want);
      g_assert_cmpuint (deliver_spool_size (s), ==, strlen (cases[i].want));
      g_assert_cmpuint (deliver_spool_lines (s), ==, cases[i].lines);
    }
}

static void
test_spool_large (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverSpool) s = deliver_spool_new (NULL, g_get_tmp_dir (), &error);
  char line[1000];

  memset (line, 'x', sizeof line - 2);
  line[998] = '\r';
  line[999] = '\n';
  for (int i = 0; i < 1000; i++)
    g_assert_true (deliver_spool_write (s, line, sizeof line, &error));
  g_assert_true (deliver_spool_finish (s, &error));
  g_assert_cmpuint (deliver_spool_size (s), ==, 999 * 1000);
  g_assert_cmpuint (deliver_spool_lines (s), ==, 1000);
}

static void
test_unique (void)
{
  g_autofree char *a = deliver_maildir_unique ("mx/1:b,c");
  g_autofree char *b = deliver_maildir_unique ("mx/1:b,c");
  g_autoptr (GRegex) re = g_regex_new ("^[0-9]+\\.M[0-9]{6}P[0-9]+Q[0-9]+\\.mx\\\\0571\\\\072b\\\\054c$",
                                       0, 0, NULL);
  g_assert_true (g_regex_match (re, a, 0, NULL));
  g_assert_cmpstr (a, !=, b);
}

static void
test_store (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverSpool) s = deliver_spool_new (NULL, g_get_tmp_dir (), &error);
  g_autofree char *maildir = g_build_filename (g_get_tmp_dir (), "a", "b", "Maildir", NULL);
  g_autofree char *path = NULL, *contents = NULL, *base = NULL, *want_suffix = NULL;
  const char *body = "Subject: hi\r\n\r\nbody\r\n";
  const char *header = "Return-Path: <a@b>\n";
  struct stat st;
  gsize len;

  g_assert_true (deliver_spool_write (s, body, strlen (body), &error));
  g_assert_true (deliver_spool_finish (s, &error));
  g_assert_true (store_maildir (maildir, "host", header, content_of (s), NULL, NULL, TRUE, &path, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &contents, &len, NULL));
  g_assert_cmpstr (contents, ==, "Return-Path: <a@b>\nSubject: hi\n\nbody\n");
  /* ,S= is the file size, ,W= the size with CRLF line ends */
  want_suffix = g_strdup_printf (",S=%zu,W=%zu", len, len + 4);
  base = g_path_get_basename (path);
  g_assert_true (g_str_has_suffix (base, want_suffix));
  g_assert_true (strstr (path, "/Maildir/new/") != NULL);
  /* tmp/ is empty again, cur/ exists, permissions are private */
  {
    g_autofree char *tmp = g_build_filename (maildir, "tmp", NULL);
    g_autofree char *cur = g_build_filename (maildir, "cur", NULL);
    g_autoptr (GDir) d = g_dir_open (tmp, 0, NULL);
    g_assert_nonnull (d);
    g_assert_null (g_dir_read_name (d));
    g_assert_true (g_file_test (cur, G_FILE_TEST_IS_DIR));
    g_assert_cmpint (stat (maildir, &st), ==, 0);
    g_assert_cmpint (st.st_mode & 0777, ==, 0700);
    g_assert_cmpint (stat (path, &st), ==, 0);
    g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  }
}

static void
test_store_fails_cleanly (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverSpool) s = deliver_spool_new (NULL, g_get_tmp_dir (), &error);
  g_autofree char *file = g_build_filename (g_get_tmp_dir (), "notadir", NULL);
  g_autofree char *maildir = g_build_filename (file, "Maildir", NULL);
  DeliverStatus st = { 0 };

  g_assert_true (g_file_set_contents (file, "x", 1, NULL));
  g_assert_true (deliver_spool_finish (s, &error));
  g_assert_false (store_maildir (maildir, "host", "", content_of (s), NULL, NULL, TRUE, NULL, NULL, &error));
  g_assert_error (error, DELIVER_ERROR, ENOTDIR);
  deliver_status_from_error (&st, error);
  g_assert_cmpuint (st.code / 100, ==, 4);
  deliver_status_clear (&st);
}

static gboolean
refuse_commit (gpointer data, const char *path, gboolean visible)
{
  guint *calls = data;
  (*calls)++;
  g_assert_false (visible); /* refused: it never becomes visible */
  return FALSE;
}

static guint
count_entries (const char *maildir, const char *sub)
{
  g_autofree char *path = g_build_filename (maildir, sub, NULL);
  g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
  guint n = 0;

  while (d && g_dir_read_name (d))
    n++;
  return n;
}

/* A delivery past its deadline: the commit callback refuses just before
 * the rename, and nothing is left in new/ or tmp/. */
static void
test_store_commit_refused (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverSpool) s = deliver_spool_new (NULL, g_get_tmp_dir (), &error);
  g_autofree char *root = g_dir_make_tmp ("test-maildir-XXXXXX", NULL);
  g_autofree char *maildir = g_build_filename (root, "Maildir", NULL);
  guint calls = 0;

  g_assert_true (deliver_spool_write (s, "a\n", 2, &error) && deliver_spool_finish (s, &error));
  {
    DeliverMaildirStore st = { maildir, "host", "", content_of (s), NULL, NULL, FALSE, refuse_commit, &calls, NULL };
    g_assert_false (deliver_maildir_store (&st, NULL, NULL, &error));
  }
  g_assert_error (error, DELIVER_ERROR, ETIMEDOUT);
  g_assert_cmpuint (calls, ==, 1);
  g_assert_cmpuint (count_entries (maildir, "new"), ==, 0);
  g_assert_cmpuint (count_entries (maildir, "tmp"), ==, 0);
}

/* new/ or tmp/ as a symlink: the store fails and nothing is written
 * where it points. */
static void
test_store_symlinked_subdir (void)
{
  static const char *const subs[] = { "new", "tmp", "cur" };

  for (guint i = 0; i < G_N_ELEMENTS (subs); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (DeliverSpool) s = deliver_spool_new (NULL, g_get_tmp_dir (), &error);
      g_autofree char *root = g_dir_make_tmp ("test-maildir-XXXXXX", NULL);
      g_autofree char *maildir = g_build_filename (root, "Maildir", NULL);
      g_autofree char *elsewhere = g_build_filename (root, "elsewhere", NULL);
      g_autofree char *link = g_build_filename (maildir, subs[i], NULL);
      const char *flags = strcmp (subs[i], "cur") == 0 ? "S" : NULL;

      g_assert_true (deliver_spool_write (s, "a\n", 2, &error) && deliver_spool_finish (s, &error));
      g_assert_true (deliver_maildir_create (maildir, FALSE, &error));
      g_assert_cmpint (g_mkdir (elsewhere, 0700), ==, 0);
      g_assert_cmpint (rmdir (link), ==, 0);
      g_assert_cmpint (symlink (elsewhere, link), ==, 0);
      g_assert_false (store_maildir (maildir, "host", "", content_of (s), flags, NULL, FALSE, NULL, NULL,
                                             &error));
      g_assert_nonnull (error);
      g_assert_cmpuint (count_entries (root, "elsewhere"), ==, 0);
    }
}

/* Valid names must fit NAME_MAX once encoded. */
static void
test_folder_fits (void)
{
  g_autofree char *x255 = g_strnfill (255, 'x');
  g_autofree char *x200 = g_strnfill (200, 'x');
  GString *emoji = g_string_new (NULL), *levels = g_string_new (NULL);
  const char *why = NULL;

  for (int i = 0; i < 60; i++)
    g_string_append (emoji, "\xf0\x9f\x98\x80");
  for (int i = 0; i < 127; i++)
    g_string_append (levels, i ? "/&" : "&");
  g_assert_false (deliver_folder_valid (x255, &why));
  g_assert_false (deliver_folder_valid (emoji->str, &why));
  g_assert_false (deliver_folder_valid (levels->str, &why));
  g_assert_true (deliver_folder_valid (x200, &why));
  g_assert_true (deliver_folder_valid ("Lists/ietf", &why));
  g_string_free (emoji, TRUE);
  g_string_free (levels, TRUE);
}

static void
test_trace (void)
{
  g_autoptr (LmtpdConfig) c = lmtpd_config_new_default ();
  DeliverRecipient r = { .original = "Joe@Example.org", .address = "joe@example.org" };
  DeliverMessage m = { .id = "TID1", .sender = "s@x.org", .helo = "mx(evil)\\",
                       .client_addr = "127.0.0.1", .protocol = "LMTP", .received_us = 0 };
  g_autofree char *h = NULL;
  g_auto (GStrv) lines = NULL;

  g_free (c->hostname);
  c->hostname = g_strdup ("mail.example.org");
  h = deliver_trace_headers (c, &m, &r, TRUE);
  lines = g_strsplit (h, "\n", -1);
  g_assert_cmpstr (lines[0], ==, "Return-Path: <s@x.org>");
  g_assert_cmpstr (lines[1], ==, "Delivered-To: joe@example.org");
  g_assert_cmpstr (lines[2], ==, "Received: from mx?evil?? (127.0.0.1)");
  g_assert_cmpstr (lines[3], ==, "\tby mail.example.org with LMTP id TID1");
  g_assert_true (g_str_has_prefix (lines[4], "\tfor <Joe@Example.org>; "));
  g_assert_cmpstr (lines[5], ==, "");
  g_strfreev (lines);
  g_free (h);
  /* single instance: nothing per recipient, but X-Original-To when rewritten */
  r.original = "old@example.org";
  h = deliver_trace_headers (c, &m, &r, FALSE);
  lines = g_strsplit (h, "\n", -1);
  g_assert_cmpstr (lines[1], ==, "X-Original-To: old@example.org");
  g_assert_true (g_str_has_prefix (lines[2], "Received: "));
  g_assert_true (g_str_has_prefix (lines[3], "\tby mail.example.org with LMTP id TID1; "));
  g_assert_null (strstr (h, "Delivered-To"));
}

/* Maildir rules: tmp/ files untouched for 36 hours go; fresh ones (a
 * delivery in progress) and other directories stay. */
static void
test_clean_tmp (void)
{
  g_autofree char *md = g_build_filename (g_get_tmp_dir (), "clean", "Maildir", NULL);
  g_autofree char *old = g_build_filename (md, "tmp", "1.M1P1Q1.old", NULL);
  g_autofree char *fresh = g_build_filename (md, "tmp", "2.M2P2Q2.fresh", NULL);
  g_autofree char *sub = g_build_filename (md, "tmp", "adir", NULL);
  gint64 t = g_get_real_time () / G_USEC_PER_SEC - 37 * 3600;
  struct timespec times[2] = { { t, 0 }, { t, 0 } };
  g_autoptr (GError) error = NULL;

  g_assert_true (deliver_maildir_create (md, FALSE, &error));
  g_assert_true (g_file_set_contents (old, "half", -1, NULL));
  g_assert_true (g_file_set_contents (fresh, "being written", -1, NULL));
  g_assert_cmpint (g_mkdir (sub, 0700), ==, 0);
  g_assert_cmpint (utimensat (AT_FDCWD, old, times, 0), ==, 0);
  g_assert_cmpint (utimensat (AT_FDCWD, fresh, times, 0), ==, 0);
  /* a set-back mtime alone does not make a file stale: its ctime is new */
  g_assert_cmpuint (deliver_maildir_clean_tmp (md, 36 * 3600), ==, 0);
  g_assert_cmpuint (deliver_maildir_clean_tmp (md, 0), ==, 0);
  sleep (1);
  g_assert_cmpuint (deliver_maildir_clean_tmp (md, 0), ==, 2);
  g_assert_false (g_file_test (old, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (sub, G_FILE_TEST_IS_DIR));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/spool/crlf", test_spool_crlf);
  g_test_add_func ("/spool/large", test_spool_large);
  g_test_add_func ("/maildir/unique", test_unique);
  g_test_add_func ("/maildir/store", test_store);
  g_test_add_func ("/maildir/store-fails-cleanly", test_store_fails_cleanly);
  g_test_add_func ("/maildir/clean-tmp", test_clean_tmp);
  g_test_add_func ("/maildir/store-commit-refused", test_store_commit_refused);
  g_test_add_func ("/maildir/store-symlinked-subdir", test_store_symlinked_subdir);
  g_test_add_func ("/folder/fits", test_folder_fits);
  g_test_add_func ("/trace/headers", test_trace);
  return g_test_run ();
}
