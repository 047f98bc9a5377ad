/* lmtp-proxy-io.c - one LMTP client connection to a backend node, for
 * the proxy: connect, a command and its reply, the message from the
 * spool, a reply at a time.  GIO async on the main loop, one operation
 * at a time, every buffer bounded; the deadlines are the owner's, which
 * closes the connection when one passes (proxy_io_close: nothing is
 * called back after it, whatever GIO still has in flight).
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "lmtp-proxy.h"

#define REPLY_MAX (16 * 1024)   /* bytes of one reply, all its lines */
#define PIECE (32 * 1024)       /* spool bytes read at a time (out: at most twice that) */
#define POOL_MAX 16             /* idle connections kept per backend */
#define POOL_AGE_US (30 * G_USEC_PER_SEC) /* and for how long */

struct ProxyIo {
  gint ref;
  gboolean closed;
  char *address, *log_id;
  ProxyIoDone done;
  gpointer owner;
  GCancellable *cancel;
  GSocketConnection *conn;
  GString *in;              /* received, not yet a whole reply */
  char buf[4096];
  GString *out;             /* being written */
  int fd;                   /* the spool being sent, or -1 */
  guint64 offset, stored;
  gint64 pooled_us;         /* monotonic, when it went into the pool */
};

static ProxyIo *
io_ref (ProxyIo *io)
{
  io->ref++;
  return io;
}

static void
io_unref (ProxyIo *io)
{
  if (--io->ref > 0)
    return;
  g_clear_object (&io->conn);
  g_object_unref (io->cancel);
  g_string_free (io->in, TRUE);
  g_string_free (io->out, TRUE);
  g_free (io->address);
  g_free (io->log_id);
  g_free (io);
}

ProxyIo *
proxy_io_new (const char *address, const char *log_id, ProxyIoDone done, gpointer owner)
{
  ProxyIo *io = g_new0 (ProxyIo, 1);

  io->ref = 1;
  io->address = g_strdup (address);
  io->log_id = g_strdup (log_id);
  io->done = done;
  io->owner = owner;
  io->cancel = g_cancellable_new ();
  io->in = g_string_new (NULL);
  io->out = g_string_new (NULL);
  io->fd = -1;
  return io;
}

void
proxy_io_close (ProxyIo *io)
{
  if (io == NULL)
    return;
  io->closed = TRUE;
  g_cancellable_cancel (io->cancel);
  if (io->conn)
    g_io_stream_close (G_IO_STREAM (io->conn), NULL, NULL);
  io_unref (io);
}

static void
io_fail (ProxyIo *io, const char *why)
{
  if (!io->closed)
    io->done (io->owner, NULL, why);
}

/* ---- replies ------------------------------------------------------------- */

static void
reply_keyword (ProxyReply *r, const char *text)
{
  if (g_ascii_strcasecmp (text, "CHUNKING") == 0)
    r->chunking = TRUE;
  else if (g_ascii_strncasecmp (text, "XFORWARD", 8) == 0 && (text[8] == ' ' || text[8] == '\0'))
    r->xforward = TRUE;
}

/* "X.Y.Z text" with X the code's class, or one made up from the code. */
static void
reply_set_text (ProxyReply *r, const char *text)
{
  gsize n = strspn (text, "0123456789.");

  if (n >= 5 && n < sizeof r->enhanced && (guint) (text[0] - '0') == r->code / 100 && text[1] == '.'
      && (text[n] == ' ' || text[n] == '\0'))
    {
      memcpy (r->enhanced, text, n);
      r->enhanced[n] = '\0';
      text += n;
      text += *text == ' ';
    }
  else
    g_snprintf (r->enhanced, sizeof r->enhanced, "%u.0.0", r->code / 100);
  g_free (r->text);
  r->text = util_sanitize (text, 400);
}

/* One line "DDD-text" or "DDD text"; FALSE if it is not a reply line or
 * its code differs from the first line's. */
static gboolean
reply_line (ProxyReply *r, const char *line, gboolean *last)
{
  guint code;

  if (strlen (line) < 3 || !g_ascii_isdigit (line[0]) || !g_ascii_isdigit (line[1]) || !g_ascii_isdigit (line[2])
      || (line[3] != '\0' && line[3] != ' ' && line[3] != '-'))
    return FALSE;
  code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (code < 200 || code > 599 || (r->code && code != r->code))
    return FALSE;
  if (r->code)
    reply_keyword (r, line[3] ? line + 4 : "");
  r->code = code;
  *last = line[3] != '-';
  if (*last)
    reply_set_text (r, line[3] ? line + 4 : "");
  return TRUE;
}

/* A whole reply from the front of io->in: 1, 0 if more is needed, -1 if
 * the peer speaks nonsense. */
static int
reply_parse (ProxyIo *io, ProxyReply *r)
{
  gsize pos = 0;

  memset (r, 0, sizeof *r);
  for (;;)
    {
      char *nl = memchr (io->in->str + pos, '\n', io->in->len - pos);
      g_autofree char *line = NULL;
      gboolean last = FALSE;

      if (nl == NULL)
        return io->in->len > REPLY_MAX ? -1 : 0;
      line = g_strndup (io->in->str + pos, nl - (io->in->str + pos));
      g_strchomp (line);
      pos = nl - io->in->str + 1;
      if (!reply_line (r, line, &last))
        return -1;
      if (last)
        {
          g_string_erase (io->in, 0, pos);
          return 1;
        }
    }
}

static void read_done (GObject *src, GAsyncResult *res, gpointer data);

void
proxy_io_read_reply (ProxyIo *io)
{
  ProxyReply r;
  int got = reply_parse (io, &r);

  if (got < 0)
    {
      g_free (r.text);
      io_fail (io, "the backend's reply is not LMTP");
      return;
    }
  if (got > 0)
    {
      io_ref (io);
      if (!io->closed)
        io->done (io->owner, &r, NULL);
      g_free (r.text);
      io_unref (io);
      return;
    }
  g_free (r.text);
  g_input_stream_read_async (g_io_stream_get_input_stream (G_IO_STREAM (io->conn)), io->buf, sizeof io->buf,
                             G_PRIORITY_DEFAULT, io->cancel, read_done, io_ref (io));
}

static void
read_done (GObject *src, GAsyncResult *res, gpointer data)
{
  ProxyIo *io = data;
  g_autoptr (GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (src), res, &error);

  if (!io->closed && n <= 0)
    io_fail (io, n == 0 ? "the backend closed the connection" : error->message);
  else if (!io->closed)
    {
      g_string_append_len (io->in, io->buf, n);
      proxy_io_read_reply (io);
    }
  io_unref (io);
}

/* ---- connect, commands -------------------------------------------------- */

static void
connect_done (GObject *src, GAsyncResult *res, gpointer data)
{
  ProxyIo *io = data;
  g_autoptr (GError) error = NULL;
  GSocketConnection *conn = g_socket_client_connect_finish (G_SOCKET_CLIENT (src), res, &error);

  if (io->closed)
    g_clear_object (&conn);
  else if (conn == NULL)
    io_fail (io, error->message);
  else
    {
      io->conn = conn;
      /* commands wait for their replies: Nagle would hold the data behind
       * the BDAT line until the backend's delayed ACK */
      if (G_IS_TCP_CONNECTION (conn))
        g_socket_set_option (g_socket_connection_get_socket (conn), IPPROTO_TCP, TCP_NODELAY, 1, NULL);
      proxy_io_read_reply (io);
    }
  io_unref (io);
}

void
proxy_io_connect (ProxyIo *io)
{
  g_autoptr (GSocketClient) client = util_socket_client_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketConnectable) where = NULL;
  LmtpdListen *l = lmtpd_listen_parse (io->address, &error);

  if (l == NULL)
    {
      io_fail (io, error->message);
      return;
    }
  if (l->kind == LMTPD_LISTEN_UNIX)
    where = G_SOCKET_CONNECTABLE (g_unix_socket_address_new (l->path));
  else
    where = g_network_address_new (l->host, l->port);
  lmtpd_listen_free (l);
  g_socket_client_connect_async (client, where, io->cancel, connect_done, io_ref (io));
}

static void write_done (GObject *src, GAsyncResult *res, gpointer data);

static void
io_write (ProxyIo *io)
{
  g_output_stream_write_all_async (g_io_stream_get_output_stream (G_IO_STREAM (io->conn)), io->out->str,
                                   io->out->len, G_PRIORITY_DEFAULT, io->cancel, write_done, io_ref (io));
}

void
proxy_io_command (ProxyIo *io, const char *line)
{
  g_string_assign (io->out, line);
  g_string_append (io->out, "\r\n");
  io->fd = -1;
  io_write (io);
}

/* The next piece of the spool onto io->out, each LF as CRLF; FALSE if
 * the spool cannot be read. */
static gboolean
spool_piece (ProxyIo *io)
{
  char piece[PIECE];
  gsize want = (gsize) MIN ((guint64) PIECE, io->stored - io->offset);
  gssize n;

  do
    n = pread (io->fd, piece, want, (off_t) io->offset);
  while (n < 0 && errno == EINTR);
  if (n <= 0)
    return FALSE;
  io->offset += n;
  for (const char *p = piece, *end = piece + n; p < end;)
    {
      const char *nl = memchr (p, '\n', end - p);
      if (nl == NULL)
        {
          g_string_append_len (io->out, p, end - p);
          break;
        }
      g_string_append_len (io->out, p, nl - p);
      g_string_append_len (io->out, "\r\n", 2);
      p = nl + 1;
    }
  return TRUE;
}

static void
write_done (GObject *src, GAsyncResult *res, gpointer data)
{
  ProxyIo *io = data;
  g_autoptr (GError) error = NULL;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (src), res, NULL, &error))
    io_fail (io, error->message);
  else if (io->closed)
    ;
  else if (io->fd < 0 || io->offset >= io->stored)
    proxy_io_read_reply (io);
  else
    {
      g_string_truncate (io->out, 0);
      if (spool_piece (io))
        io_write (io);
      else
        io_fail (io, "the spool cannot be read");
    }
  io_unref (io);
}

void
proxy_io_send_spool (ProxyIo *io, int fd, guint64 stored, guint64 lines)
{
  io->fd = fd;
  io->offset = 0;
  io->stored = stored;
  g_string_printf (io->out, "BDAT %" G_GUINT64_FORMAT " LAST\r\n", stored + lines);
  /* the command and the first piece in one write; a spool that cannot be
   * read fails after the write (never while the caller is still in its
   * loop over the backends) */
  if (stored > 0 && !spool_piece (io))
    io->offset = 0;
  io_write (io);
}

/* ---- idle connections, for the next transaction ------------------------ */

/* address -> GQueue of ProxyIo*, newest first; main loop only */
static GHashTable *pool;

static void
pool_queue_free (gpointer q)
{
  g_queue_free_full (q, (GDestroyNotify) proxy_io_close);
}

ProxyIo *
proxy_io_pool_take (const char *address, ProxyIoDone done, gpointer owner)
{
  GQueue *q = pool ? g_hash_table_lookup (pool, address) : NULL;
  ProxyIo *io;

  while (q && (io = g_queue_pop_head (q)) != NULL)
    {
      if (g_get_monotonic_time () - io->pooled_us > POOL_AGE_US)
        {
          proxy_io_close (io);
          continue;
        }
      io->done = done;
      io->owner = owner;
      return io;
    }
  return NULL;
}

void
proxy_io_pool_put (ProxyIo *io)
{
  GQueue *q;

  /* unread bytes would answer the next command: out of step, not kept */
  if (io->conn == NULL || io->in->len > 0 || io->closed)
    {
      proxy_io_close (io);
      return;
    }
  if (pool == NULL)
    pool = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, pool_queue_free);
  q = g_hash_table_lookup (pool, io->address);
  if (q == NULL)
    g_hash_table_insert (pool, g_strdup (io->address), q = g_queue_new ());
  if (q->length >= POOL_MAX)
    proxy_io_close (g_queue_pop_tail (q));
  io->done = NULL;
  io->owner = NULL;
  io->fd = -1;
  io->pooled_us = g_get_monotonic_time ();
  g_queue_push_head (q, io);
}
