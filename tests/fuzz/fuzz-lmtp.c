/* fuzz-lmtp.c - libFuzzer target: the LMTP session state machine fed raw
 * bytes.  Each input is one client connection (a socketpair adopted by a
 * real LmtpServer on the default main context): the bytes are written,
 * the write side is shut, and the session runs until it closes, through
 * commands, pipelining, DATA/BDAT, the per-recipient pipeline and Maildir
 * delivery (fsync off).  Replies are read and checked for shape: each
 * line is "DDD" followed by ' ' or '-', CRLF-terminated.
 *
 * With FUZZ_LMTP_DEAF=1 the client never reads while it writes (tiny
 * socket buffers, replies read only once all input is out or refused):
 * the server must stop reading instead of queueing replies, and end a
 * write that makes no progress (idle_timeout is 1 s in this mode). */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "deliver.h"
#include "lmtpd.h"

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static LmtpServer *server;
static char *dir, *mail;
static guint runs;
static gboolean deaf;

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
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) config = NULL;
  g_autofree char *conf = NULL, *text = NULL;

  g_log_set_writer_func (quiet, NULL, NULL);
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR);
  deaf = g_strcmp0 (g_getenv ("FUZZ_LMTP_DEAF"), "1") == 0;
  dir = g_dir_make_tmp ("fuzz-lmtp-XXXXXX", NULL);
  mail = g_build_filename (dir, "mail", NULL);
  conf = g_build_filename (dir, "lmtpd.conf", NULL);
  text = g_strdup_printf ("[server]\nlisten = unix:%s/sock\nhostname = fuzz.test\nspool_dir = %s/spool\n"
                          "idle_timeout = %d\n"
                          "[limits]\nmax_message_size = 64k\nmax_recipients = 8\nmax_line_length = 512\n"
                          "max_data_line_length = 2000\nmax_errors = 50\n"
                          "[delivery]\nmail_root = %s\nfsync = false\nduplicate_window = 0\n"
                          "recipient_delimiter = +\n"
                          "[users]\ndomains = *\n", dir, dir, deaf ? 1 : 5, mail);
  g_assert_true (g_file_set_contents (conf, text, -1, NULL));
  g_mkdir_with_parents (mail, 0700);
  config = lmtpd_config_load (conf, &error);
  g_assert_no_error (error);
  {
    g_autoptr (DeliverContext) ctx = deliver_context_new ();
    server = lmtp_server_new (config, ctx, &error);
  }
  g_assert_no_error (error);
  g_assert_true (lmtp_server_start (server, &error));
  return 0;
}

typedef struct {
  int fd;
  const guint8 *data;
  size_t size;
  GString *replies;
  GMutex lock;
  GCond cond;
  gboolean written;     /* the writer is done: a deaf reader may start */
} Peer;

static gpointer
writer (gpointer p)
{
  Peer *peer = p;
  size_t off = 0;

  while (off < peer->size)
    {
      ssize_t n = write (peer->fd, peer->data + off, peer->size - off);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break; /* the server hung up */
      off += n;
    }
  shutdown (peer->fd, SHUT_WR);
  g_mutex_lock (&peer->lock);
  peer->written = TRUE;
  g_cond_signal (&peer->cond);
  g_mutex_unlock (&peer->lock);
  return NULL;
}

static gpointer
reader (gpointer p)
{
  Peer *peer = p;
  char buf[4096];
  ssize_t n;

  g_mutex_lock (&peer->lock);
  while (deaf && !peer->written)
    g_cond_wait (&peer->cond, &peer->lock);
  g_mutex_unlock (&peer->lock);
  while ((n = read (peer->fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0 && peer->replies->len < (1 << 20))
      g_string_append_len (peer->replies, buf, n);
  return NULL;
}

static void
check_replies (const GString *r)
{
  const char *p = r->str, *end = r->str + r->len;

  g_assert_true (r->len >= 6 && g_str_has_prefix (r->str, "220 "));
  while (p < end)
    {
      const char *nl = memchr (p, '\n', end - p);
      if (nl == NULL)
        break; /* cut by the 1 MB cap */
      g_assert_true (nl - p >= 5 && nl[-1] == '\r');
      g_assert_true (g_ascii_isdigit (p[0]) && g_ascii_isdigit (p[1]) && g_ascii_isdigit (p[2]));
      g_assert_true (p[3] == ' ' || p[3] == '-');
      g_assert_true (p[0] >= '2' && p[0] <= '5');
      for (const char *q = p; q < nl - 1; q++)
        g_assert_true (*q != '\r' && *q != '\0');
      p = nl + 1;
    }
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  int sv[2];
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocket) sock = NULL;
  g_autoptr (GSocketConnection) conn = NULL;
  Peer peer = { 0 };
  GThread *w, *r;

  if (size > 256 * 1024)
    return 0;
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
  sock = g_socket_new_from_fd (sv[0], &error);
  g_assert_no_error (error);
  conn = g_socket_connection_factory_create_connection (sock);
  peer = (Peer) { sv[1], data, size, g_string_new (NULL), { 0 }, { 0 }, FALSE };
  if (deaf)
    {
      int small = 1024; /* the kernel doubles it and keeps a minimum */
      setsockopt (sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
      setsockopt (sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    }
  lmtp_server_adopt (server, conn);
  w = g_thread_new ("writer", writer, &peer);
  r = g_thread_new ("reader", reader, &peer);
  while (lmtp_server_n_sessions (server) > 0)
    g_main_context_iteration (NULL, TRUE);
  g_clear_object (&conn);
  g_thread_join (w);
  g_thread_join (r);
  close (sv[1]);
  check_replies (peer.replies);
  g_string_free (peer.replies, TRUE);
  /* what was delivered is not kept */
  if (++runs % 500 == 0)
    {
      g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'/*", mail);
      g_assert_cmpint (system (cmd), ==, 0);
    }
  return 0;
}
