/* test-directory.c - the user directory: the file backend read again when
 * the map changes, and the cache in front of a server backend (positive,
 * negative, stale while the server is down, a slow server is a failure);
 * what the Postfix socketmap and policy service answer from it. */
#include "config.h"

#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "context.h"
#include "directory.h"
#include "lmtpd.h"

static char *
write_file (const char *dir, const char *name, const char *text)
{
  char *path = g_build_filename (dir, name, NULL);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  return path;
}

static LmtpdConfig *
config_with (const char *dir, const char *text)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *conf = write_file (dir, "lmtpd.conf", text);
  LmtpdConfig *c = lmtpd_config_load (conf, &error);

  g_assert_no_error (error);
  return c;
}

static DirectoryResult
find (Directory *d, const char *address, gboolean *cached)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DirectoryUser) u = NULL;
  DirectoryResult r = directory_lookup (d, address, &u, cached, &error);

  g_assert_true ((r == DIRECTORY_TEMPFAIL) == (error != NULL));
  g_assert_true ((r == DIRECTORY_FOUND) == (u != NULL));
  return r;
}

/* A user added to the map is found without a reload; a map that no longer
 * loads keeps the last good one. */
static void
test_file_reread (void)
{
  g_autofree char *dir = g_dir_make_tmp ("test-directory-XXXXXX", NULL);
  g_autofree char *map = write_file (dir, "users", "joe@example.org quota=1M\n");
  g_autofree char *text = g_strdup_printf ("[users]\nmap = %s\ndomains =\n", map);
  g_autoptr (LmtpdConfig) c = config_with (dir, text);
  g_autoptr (Directory) d = directory_new (c, NULL);
  g_autoptr (DirectoryUser) u = NULL;

  g_assert_cmpstr (directory_backend_name (d), ==, "file");
  g_assert_false (directory_is_remote (d));
  g_assert_cmpint (directory_lookup (d, "joe@example.org", &u, NULL, NULL), ==, DIRECTORY_FOUND);
  g_assert_cmpuint (u->quota_bytes, ==, 1024 * 1024);
  g_assert_cmpint (find (d, "ann@example.org", NULL), ==, DIRECTORY_UNKNOWN);
  g_usleep (1100 * 1000);
  g_free (write_file (dir, "users", "joe@example.org\nann@example.org\n"));
  g_assert_cmpint (find (d, "ann@example.org", NULL), ==, DIRECTORY_FOUND);
  g_usleep (1100 * 1000);
  g_free (write_file (dir, "users", "bob@example.org quota=lots\n"));
  /* the warning is what an administrator reads: let it through */
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  g_assert_cmpint (find (d, "ann@example.org", NULL), ==, DIRECTORY_FOUND);
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  g_assert_cmpint (find (d, "bob@example.org", NULL), ==, DIRECTORY_UNKNOWN);
  g_assert_true (directory_matches (d, c));
}

/* ---- a server backend of the test's own ------------------------------------ */

static struct {
  gint calls;
  gboolean down;
  guint delay_ms;
} server;

static gpointer
fake_open (const LmtpdConfig *config, GError **error)
{
  (void) config;
  (void) error;
  return &server;
}

static DirectoryResult
fake_lookup (gpointer backend, const char *address, guint timeout_ms, DirectoryUser **out, GError **error)
{
  (void) backend;
  (void) timeout_ms;
  g_atomic_int_inc (&server.calls);
  if (server.delay_ms)
    g_usleep (server.delay_ms * 1000);
  if (server.down)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED, "connection refused");
      return DIRECTORY_TEMPFAIL;
    }
  if (strcmp (address, "joe@example.org") != 0)
    return DIRECTORY_UNKNOWN;
  *out = g_new0 (DirectoryUser, 1);
  (*out)->address = g_strdup (address);
  (*out)->mailbox = g_strdup ("maildir:/srv/joe");
  return DIRECTORY_FOUND;
}

static void
fake_close (gpointer backend)
{
  (void) backend;
}

static const DirectoryBackend fake = { "fake", TRUE, fake_open, fake_lookup, fake_close };

static Directory *
fake_directory (const char *dir, const char *users)
{
  g_autoptr (LmtpdConfig) c = config_with (dir, users);
  memset (&server, 0, sizeof server);
  return directory_new_with (&fake, c, NULL);
}

static void
test_cache (void)
{
  g_autofree char *dir = g_dir_make_tmp ("test-directory-XXXXXX", NULL);
  g_autoptr (Directory) d = fake_directory (dir, "[users]\ncache_ttl = 60\nnegative_cache_ttl = 60\n");
  gboolean cached;
  DirectoryStats st;

  g_assert_true (directory_is_remote (d));
  g_assert_cmpint (find (d, "joe@example.org", &cached), ==, DIRECTORY_FOUND);
  g_assert_false (cached);
  g_assert_cmpint (find (d, "joe@example.org", &cached), ==, DIRECTORY_FOUND);
  g_assert_true (cached);
  g_assert_cmpint (find (d, "nobody@example.org", NULL), ==, DIRECTORY_UNKNOWN);
  g_assert_cmpint (find (d, "nobody@example.org", &cached), ==, DIRECTORY_UNKNOWN);
  g_assert_true (cached);
  g_assert_cmpint (server.calls, ==, 2);
  directory_get_stats (d, &st);
  g_assert_cmpuint (st.lookups, ==, 2);
  g_assert_cmpuint (st.cache_hits, ==, 2);
}

/* An outage answers TEMPFAIL for what the cache does not know, and still
 * serves what it knew once its time is up. */
static void
test_server_down (void)
{
  g_autofree char *dir = g_dir_make_tmp ("test-directory-XXXXXX", NULL);
  g_autoptr (Directory) d = fake_directory (dir, "[users]\ncache_ttl = 1\nnegative_cache_ttl = 1\n");
  gboolean cached;
  DirectoryStats st;

  g_assert_cmpint (find (d, "joe@example.org", NULL), ==, DIRECTORY_FOUND);
  server.down = TRUE;
  g_usleep (1100 * 1000);
  g_assert_cmpint (find (d, "joe@example.org", &cached), ==, DIRECTORY_FOUND);
  g_assert_true (cached);
  g_assert_cmpint (find (d, "ann@example.org", NULL), ==, DIRECTORY_TEMPFAIL);
  directory_get_stats (d, &st);
  g_assert_cmpuint (st.failures, ==, 2);
  server.down = FALSE;
  g_assert_cmpint (find (d, "ann@example.org", NULL), ==, DIRECTORY_UNKNOWN);
}

static void
test_slow_server (void)
{
  g_autofree char *dir = g_dir_make_tmp ("test-directory-XXXXXX", NULL);
  g_autoptr (Directory) d = fake_directory (dir, "[users]\nlookup_timeout = 100ms\n");

  server.delay_ms = 300;
  g_assert_cmpint (find (d, "joe@example.org", NULL), ==, DIRECTORY_TEMPFAIL);
  server.delay_ms = 0;
  g_assert_cmpint (find (d, "joe@example.org", NULL), ==, DIRECTORY_FOUND);
}

/* A reload that keeps [users] keeps a server backend's directory (and its
 * cache); one that changes it does not. */
static void
test_matches (void)
{
  g_autofree char *dir = g_dir_make_tmp ("test-directory-XXXXXX", NULL);
  g_autoptr (Directory) d = fake_directory (dir, "[users]\ncache_ttl = 30\n");
  g_autoptr (LmtpdConfig) same = config_with (dir, "[users]\ncache_ttl = 30\n[server]\nmax_sessions = 9\n");
  g_autoptr (LmtpdConfig) other = config_with (dir, "[users]\ncache_ttl = 31\n");

  g_assert_true (directory_matches (d, same));
  g_assert_false (directory_matches (d, other));
}

/* What Postfix is told (socketmap, policy service) follows the same
 * resolution as RCPT: a directory that cannot answer is TEMP and 451,
 * never NOTFOUND or 550. */
static void
test_postfix_answers (void)
{
  g_autofree char *dir = g_dir_make_tmp ("test-directory-XXXXXX", NULL);
  g_autoptr (LmtpdConfig) c = config_with (dir, "[users]\ndomains =\nnegative_cache_ttl = 0\n");
  g_autoptr (DeliverContext) ctx = deliver_context_new ();
  LmtpPolicyRequest req = { .protocol_state = (char *) "RCPT", .recipient = (char *) "ann@example.org" };
  static const struct {
    gboolean down;
    const char *request, *socketmap, *address, *action;
  } cases[] = {
    { FALSE, "mailbox joe@example.org", "OK /srv/joe", "joe@example.org", "action=DUNNO" },
    { FALSE, "alias joe@example.org", "OK joe@example.org", "joe@example.org", "action=DUNNO" },
    { FALSE, "mailbox ann@example.org", "NOTFOUND ", "ann@example.org",
      "action=550 5.1.1 <ann@example.org> User doesn't exist" },
    { TRUE, "mailbox ann@example.org", "TEMP user lookup failed, try again later", "ann@example.org",
      "action=451 4.3.0 <ann@example.org> User lookup failed, try again later" },
  };

  memset (&server, 0, sizeof server);
  ctx->users = directory_new_with (&fake, c, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *answer = NULL, *action = NULL;

      server.down = cases[i].down;
      /* a failing directory is logged as a warning by each resolution */
      g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL | (server.down ? 0 : G_LOG_LEVEL_WARNING));
      answer = lmtp_socketmap_answer (ctx, c, cases[i].request, strlen (cases[i].request));
      g_assert_cmpstr (answer, ==, cases[i].socketmap);
      req.recipient = (char *) cases[i].address;
      action = lmtp_policy_answer (ctx, c, &req);
      g_assert_cmpstr (action, ==, cases[i].action);
    }
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
}

/* Stored passwords as Dovecot's passdb writes them: crypt(3) schemes
 * through crypt_r, {PLAIN}; an unknown scheme is an error, not a match. */
static void
test_password_verify (void)
{
  static const char sha512[] = "$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/"
                               "cZ/1GM/O6IND4WQhG.";
  /* Openwall's crypt_blowfish test vector */
  static const char bcrypt[] = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
  g_autofree char *sha = g_strconcat ("{SHA512-CRYPT}", sha512, NULL);
  g_autofree char *blf = g_strconcat ("{BLF-CRYPT}", bcrypt, NULL);
  g_autoptr (GError) error = NULL;

  g_assert_true (directory_password_verify (sha, "secret", NULL));
  g_assert_false (directory_password_verify (sha, "Secret", NULL));
  g_assert_false (directory_password_verify (sha, "", NULL));
  g_assert_true (directory_password_verify (sha512, "secret", NULL)); /* a bare $6$ hash */
  g_assert_true (directory_password_verify (blf, "U*U", NULL));
  g_assert_false (directory_password_verify (blf, "U*V", NULL));
  g_assert_true (directory_password_verify ("{PLAIN}pw", "pw", NULL));
  g_assert_true (directory_password_verify ("{plain}pw", "pw", NULL));
  g_assert_false (directory_password_verify ("{PLAIN}pw", "pw2", NULL));
  g_assert_false (directory_password_verify ("{PLAIN}pw", "p", NULL));
  g_assert_false (directory_password_verify ("{CRYPT}", "", NULL));
  g_assert_false (directory_password_verify ("{CRYPT}*", "", NULL));
  g_assert_false (directory_password_verify ("{SSHA}abcd", "x", &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);
  g_assert_false (directory_password_verify ("pw", "pw", &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
}

/* password= in the users map: the file backend's logins; a disabled user,
 * an alias and a user without a password have none. */
static void
test_file_authenticate (void)
{
  g_autofree char *dir = g_dir_make_tmp ("test-directory-XXXXXX", NULL);
  g_autofree char *map = write_file (dir, "users", "joe@example.org password={PLAIN}pw\n"
                                     "off@example.org password={PLAIN}pw disabled=yes\n"
                                     "info@example.org password={PLAIN}pw alias=joe@example.org\n"
                                     "ann@example.org\n");
  g_autofree char *text = g_strdup_printf ("[users]\nmap = %s\ndomains =\n", map);
  g_autoptr (LmtpdConfig) c = config_with (dir, text);
  g_autoptr (Directory) d = directory_new (c, NULL);
  g_autofree char *bad_map = write_file (dir, "bad-users", "joe@example.org password=plain\n");
  g_autofree char *bad = g_strdup_printf ("[users]\nmap = %s\n", bad_map);
  g_autofree char *bad_conf = write_file (dir, "bad.conf", bad);
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) refused = lmtpd_config_load (bad_conf, &error);

  g_assert_true (directory_can_authenticate (d));
  g_assert_cmpint (directory_authenticate (d, "joe@example.org", "pw", NULL), ==, DIRECTORY_FOUND);
  g_assert_cmpint (directory_authenticate (d, "joe@example.org", "px", NULL), ==, DIRECTORY_UNKNOWN);
  g_assert_cmpint (directory_authenticate (d, "off@example.org", "pw", NULL), ==, DIRECTORY_UNKNOWN);
  g_assert_cmpint (directory_authenticate (d, "info@example.org", "pw", NULL), ==, DIRECTORY_UNKNOWN);
  g_assert_cmpint (directory_authenticate (d, "ann@example.org", "", NULL), ==, DIRECTORY_UNKNOWN);
  g_assert_cmpint (directory_authenticate (d, "nobody@example.org", "pw", NULL), ==, DIRECTORY_UNKNOWN);
  g_assert_null (refused);
  g_assert_nonnull (strstr (error->message, "'password=plain': a password is {SCHEME}hash"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/directory/file-reread", test_file_reread);
  g_test_add_func ("/directory/cache", test_cache);
  g_test_add_func ("/directory/server-down", test_server_down);
  g_test_add_func ("/directory/slow-server", test_slow_server);
  g_test_add_func ("/directory/matches", test_matches);
  g_test_add_func ("/directory/postfix-answers", test_postfix_answers);
  g_test_add_func ("/directory/password-verify", test_password_verify);
  g_test_add_func ("/directory/file-authenticate", test_file_authenticate);
  return g_test_run ();
}
