/* fuzz-managesieve.c - libFuzzer target: a ManageSieve session (the
 * managesieve/ library, as managesieved runs it) fed raw bytes.  Each
 * input is one client connection over a socketpair: the bytes are
 * written, the write side is shut, and the session runs until it ends,
 * through the parser (atoms, quoted strings, literals), logins against a
 * users map (joe@example.org, password "pw"), and every script command on
 * a scratch mail root.  A reader thread drains the replies, which must
 * start with the greeting's capabilities.
 */
#include "config.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "managesieve.h"

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

#define INPUT_MAX (128 * 1024) /* what the socket buffer takes at once */

static MsSessionSetup setup;
static char *dir;   /* the scratch mail root, for the whole run */

static GLogWriterOutput
quiet (GLogLevelFlags level, const GLogField *fields, gsize n, gpointer data)
{
  if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR))
    return g_log_writer_standard_streams (level, fields, n, data);
  return G_LOG_WRITER_HANDLED;
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  char *users, *conf, *text;
  GError *error = NULL;

  dir = g_dir_make_tmp ("fuzz-managesieve-XXXXXX", NULL);
  users = g_build_filename (dir, "users", NULL);
  conf = g_build_filename (dir, "lmtpd.conf", NULL);
  text = g_strdup_printf ("[delivery]\nmail_root = %s\n[users]\nmap = %s\ndomains =\n"
                          "[sieve]\nmax_script_size = 64k\n[managesieve]\nidle_timeout = 1\n"
                          "max_scripts = 5\n", dir, users);
  g_log_set_writer_func (quiet, NULL, NULL);
  g_assert_true (g_file_set_contents (users, "joe@example.org password={PLAIN}pw\n", -1, NULL));
  g_assert_true (g_file_set_contents (conf, text, -1, NULL));
  setup.config = lmtpd_config_load (conf, &error);
  g_assert_no_error (error);
  setup.directory = directory_new (setup.config, &error);
  g_assert_no_error (error);
  setup.plaintext_ok = TRUE;
  setup.peer = "fuzz";
  setup.auth_delay_ms = 0;
  g_free (text);
  g_free (conf);
  g_free (users);
  return 0;
}

/* The replies, to EOF. */
static gpointer
drain (gpointer data)
{
  int fd = GPOINTER_TO_INT (data);
  GString *out = g_string_new (NULL);
  char buf[65536];
  gssize n;

  while ((n = read (fd, buf, sizeof buf)) > 0)
    if (out->len < 64 * 1024)
      g_string_append_len (out, buf, n);
  return out;
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  int sv[2], big = 4 * INPUT_MAX;
  GThread *reader;
  GString *replies;

  g_assert_true (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  setsockopt (sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  setsockopt (sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  size = MIN (size, INPUT_MAX);
  g_assert_true (write (sv[0], data, size) == (gssize) size);
  shutdown (sv[0], SHUT_WR);
  reader = g_thread_new ("drain", drain, GINT_TO_POINTER (sv[0]));
  ms_session_run (&setup, sv[1]);
  close (sv[1]);
  replies = g_thread_join (reader);
  close (sv[0]);
  g_assert_true (g_str_has_prefix (replies->str, "\"IMPLEMENTATION\" "));
  g_string_free (replies, TRUE);
  return 0;
}
