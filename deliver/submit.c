/* submit.c - sending mail out, for Sieve's redirect and vacation: SMTP to
 * the configured submission address, or a sendmail-compatible command.
 * Runs on a delivery worker thread, so it may block (with timeouts).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>

#include "deliver.h"

#define SUBMIT_TIMEOUT 30
#define MAX_REPLY_LINE 1000

/* One SMTP reply, all its lines; returns the code or 0 with @error. */
static guint
read_reply (GBufferedInputStream *in, GString *text, GError **error)
{
  g_string_truncate (text, 0);
  for (int lines = 0; lines < 100; lines++)
    {
      GString *line = g_string_new (NULL);
      gboolean last;
      guint code;
      int c;

      while ((c = g_buffered_input_stream_read_byte (in, NULL, error)) >= 0 && c != '\n')
        {
          if (line->len >= MAX_REPLY_LINE)
            {
              g_set_error (error, DELIVER_ERROR, EPROTO, "SMTP reply line too long");
              g_string_free (line, TRUE);
              return 0;
            }
          if (c != '\r')
            g_string_append_c (line, (char) c);
        }
      if (c < 0)
        {
          if (error && *error == NULL)
            g_set_error (error, DELIVER_ERROR, EPIPE, "SMTP server closed the connection");
          g_string_free (line, TRUE);
          return 0;
        }
      if (line->len < 3 || !g_ascii_isdigit (line->str[0]) || !g_ascii_isdigit (line->str[1])
          || !g_ascii_isdigit (line->str[2]) || (line->len > 3 && line->str[3] != ' ' && line->str[3] != '-'))
        {
          g_set_error (error, DELIVER_ERROR, EPROTO, "bad SMTP reply");
          g_string_free (line, TRUE);
          return 0;
        }
      code = (guint) atoi (line->str);
      last = line->len == 3 || line->str[3] == ' ';
      g_string_append_printf (text, "%s%s", text->len ? " / " : "", line->str);
      g_string_free (line, TRUE);
      if (last)
        return code;
    }
  g_set_error (error, DELIVER_ERROR, EPROTO, "SMTP reply too long");
  return 0;
}

static gboolean
command (GOutputStream *out, GBufferedInputStream *in, guint want, GError **error, const char *fmt, ...)
  G_GNUC_PRINTF (5, 6);

static gboolean
command (GOutputStream *out, GBufferedInputStream *in, guint want, GError **error, const char *fmt, ...)
{
  g_autoptr (GString) reply = g_string_new (NULL);
  guint code;

  if (fmt)
    {
      va_list ap;
      g_autofree char *line = NULL;
      va_start (ap, fmt);
      line = g_strdup_vprintf (fmt, ap);
      va_end (ap);
      if (!g_output_stream_write_all (out, line, strlen (line), NULL, NULL, error))
        return FALSE;
    }
  code = read_reply (in, reply, error);
  if (code == 0)
    return FALSE;
  if (code / 100 != want / 100)
    {
      g_autofree char *why = util_sanitize (reply->str, 300);
      g_set_error (error, DELIVER_ERROR, code / 100 == 5 ? EPERM : EAGAIN, "submission server said: %s", why);
      return FALSE;
    }
  return TRUE;
}

/* The message on its way out, buffered; @smtp: CRLF and dot-stuffing. */
typedef struct {
  GOutputStream *out;
  GString *buf;
  gboolean smtp;
  gboolean bol;         /* the next byte starts a line */
} Writer;

static gboolean
writer_put (Writer *w, const char *data, gsize n, GError **error)
{
  for (gsize i = 0; i < n; i++)
    {
      char c = data[i];
      if (w->smtp && w->bol && c == '.')
        g_string_append_c (w->buf, '.');
      if (w->smtp && c == '\n')
        g_string_append_c (w->buf, '\r');
      if (w->smtp && c == '\r')
        {
          /* no bare CR in DATA */
          g_string_append_c (w->buf, '\r');
          c = '\n';
        }
      g_string_append_c (w->buf, c);
      w->bol = c == '\n';
    }
  if (w->buf->len >= 64 * 1024)
    {
      if (!g_output_stream_write_all (w->out, w->buf->str, w->buf->len, NULL, NULL, error))
        return FALSE;
      g_string_truncate (w->buf, 0);
    }
  return TRUE;
}

static gboolean
writer_put_segment (Writer *w, const DeliverSegment *seg, GError **error)
{
  char chunk[32 * 1024];
  guint64 off = seg->offset, left = seg->length;

  while (left > 0)
    {
      gssize n = pread (seg->fd, chunk, MIN (left, sizeof chunk), off);
      if (n <= 0)
        {
          g_set_error (error, DELIVER_ERROR, n < 0 ? errno : EIO, "reading the message: %s",
                       n < 0 ? g_strerror (errno) : "short read");
          return FALSE;
        }
      if (!writer_put (w, chunk, n, error))
        return FALSE;
      off += n;
      left -= n;
    }
  return TRUE;
}

/* Writes @prefix and @content; @smtp: CRLF and dot-stuffing. */
static gboolean
write_message (GOutputStream *out, const char *prefix, const DeliverContent *content, gboolean smtp,
               GError **error)
{
  g_autoptr (GString) buf = g_string_sized_new (64 * 1024 + 1024);
  Writer w = { out, buf, smtp, TRUE };

  if (!writer_put (&w, prefix, strlen (prefix), error))
    return FALSE;
  for (guint s = 0; content && s < content->n; s++)
    if (!writer_put_segment (&w, &content->seg[s], error))
      return FALSE;
  if (!w.bol)
    g_string_append (buf, smtp ? "\r\n" : "\n");
  return g_output_stream_write_all (out, buf->str, buf->len, NULL, NULL, error);
}

static gboolean
submit_smtp (const LmtpdConfig *config, const char *sender, const char *rcpt, const char *prefix,
             const DeliverContent *content, GError **error)
{
  LmtpdListen *l = NULL;
  g_autoptr (GSocketClient) client = util_socket_client_new ();
  g_autoptr (GSocketConnection) conn = NULL;
  g_autoptr (GInputStream) in = NULL;
  GOutputStream *out;

  l = lmtpd_listen_parse (config->submission, error);
  if (l == NULL)
    return FALSE;
  g_socket_client_set_timeout (client, SUBMIT_TIMEOUT);
  if (l->kind == LMTPD_LISTEN_UNIX)
    {
      g_autoptr (GSocketAddress) a = g_unix_socket_address_new (l->path);
      conn = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (a), NULL, error);
    }
  else
    conn = g_socket_client_connect_to_host (client, l->host, l->port, NULL, error);
  lmtpd_listen_free (l);
  if (conn == NULL)
    return FALSE;
  in = g_buffered_input_stream_new (g_io_stream_get_input_stream (G_IO_STREAM (conn)));
  out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  if (!command (out, G_BUFFERED_INPUT_STREAM (in), 220, error, NULL)
      || !command (out, G_BUFFERED_INPUT_STREAM (in), 250, error, "EHLO %s\r\n", config->hostname)
      || !command (out, G_BUFFERED_INPUT_STREAM (in), 250, error, "MAIL FROM:<%s>\r\n", sender)
      || !command (out, G_BUFFERED_INPUT_STREAM (in), 250, error, "RCPT TO:<%s>\r\n", rcpt)
      || !command (out, G_BUFFERED_INPUT_STREAM (in), 354, error, "DATA\r\n")
      || !write_message (out, prefix, content, TRUE, error)
      || !command (out, G_BUFFERED_INPUT_STREAM (in), 250, error, ".\r\n"))
    return FALSE;
  command (out, G_BUFFERED_INPUT_STREAM (in), 221, NULL, "QUIT\r\n");
  return TRUE;
}

/* What the helper prints is read back from a file once it has exited, at
 * most this much, and logged through the sanitiser: inherited, its stdout
 * and stderr went into our log raw (escapes, forged lines); a pipe we did
 * not drain while writing its input could fill and hang it. */
#define HELPER_OUTPUT_MAX 500

static int
helper_output_file (GError **error)
{
  g_autofree char *path = NULL;
  int fd = g_file_open_tmp ("lmtpd-sendmail-XXXXXX", &path, error);

  if (fd >= 0)
    unlink (path);
  return fd;
}

static void
log_helper_output (int fd, const char *name)
{
  char buf[HELPER_OUTPUT_MAX + 4];
  ssize_t n = pread (fd, buf, sizeof buf - 1, 0);
  g_autofree char *said = NULL;

  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  if (n <= 0)
    return;
  buf[n] = '\0';
  said = util_sanitize (buf, HELPER_OUTPUT_MAX);
  g_message ("%s said: %s", name, said);
}

/* Writes the message to the running helper and waits for it, bounded. */
static gboolean
feed_helper (GSubprocess *p, const char *name, const char *prefix, const DeliverContent *content,
             GError **error)
{
  GOutputStream *in = g_subprocess_get_stdin_pipe (p);

  if (!write_message (in, prefix, content, FALSE, error) || !g_output_stream_close (in, NULL, error))
    {
      g_subprocess_force_exit (p);
      g_subprocess_wait (p, NULL, NULL);
      return FALSE;
    }
  /* bounded: a hung command must not hold a delivery thread for ever */
  for (int i = 0; i < SUBMIT_TIMEOUT * 20 && g_subprocess_get_identifier (p) != NULL; i++)
    g_usleep (G_USEC_PER_SEC / 20);
  if (g_subprocess_get_identifier (p) != NULL)
    {
      g_subprocess_force_exit (p);
      g_subprocess_wait (p, NULL, NULL);
      g_set_error (error, DELIVER_ERROR, ETIMEDOUT, "%s did not finish in %d s", name, SUBMIT_TIMEOUT);
      return FALSE;
    }
  return g_subprocess_wait_check (p, NULL, error);
}

static gboolean
submit_command (const LmtpdConfig *config, const char *sender, const char *rcpt, const char *prefix,
                const DeliverContent *content, GError **error)
{
  g_auto (GStrv) words = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autoptr (GSubprocess) p = NULL;
  gboolean ok;
  int out;

  if (!g_shell_parse_argv (config->sendmail, NULL, &words, error))
    return FALSE;
  for (guint i = 0; words[i]; i++)
    g_ptr_array_add (argv, words[i]);
  g_ptr_array_add (argv, (gpointer) "-i");
  g_ptr_array_add (argv, (gpointer) "-f");
  g_ptr_array_add (argv, (gpointer) (sender[0] ? sender : "<>"));
  g_ptr_array_add (argv, (gpointer) "--");
  g_ptr_array_add (argv, (gpointer) rcpt);
  g_ptr_array_add (argv, NULL);
  if ((out = helper_output_file (error)) < 0)
    return FALSE;
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_PIPE);
  g_subprocess_launcher_take_stdout_fd (launcher, dup (out));
  g_subprocess_launcher_take_stderr_fd (launcher, dup (out));
  p = g_subprocess_launcher_spawnv (launcher, (const char *const *) argv->pdata, error);
  ok = p != NULL && feed_helper (p, words[0], prefix, content, error);
  log_helper_output (out, words[0]);
  close (out);
  return ok;
}

gboolean
deliver_submit (const LmtpdConfig *config, const char *sender, const char *rcpt, const char *prefix,
                const DeliverContent *content, GError **error)
{
  if (strpbrk (sender, "\r\n<>") || strpbrk (rcpt, "\r\n<>") || rcpt[0] == '-')
    {
      g_set_error (error, DELIVER_ERROR, EINVAL, "unsafe address");
      return FALSE;
    }
  if (config->submission)
    return submit_smtp (config, sender, rcpt, prefix, content, error);
  if (config->sendmail)
    return submit_command (config, sender, rcpt, prefix, content, error);
  g_set_error (error, DELIVER_ERROR, ENOSYS, "no [sieve] submission or sendmail configured");
  return FALSE;
}
