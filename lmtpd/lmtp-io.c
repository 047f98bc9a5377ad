/* lmtp-io.c - one connection's input and output, plain or under TLS.
 *
 * The session asks for bytes and queues replies; this file owns the
 * sources on the socket, so the session never sees a TLS status code.
 * Reads go without blocking into a buffer the session names.  Writes go
 * out piece by piece, so progress can be seen: a client that stops
 * reading is found by the session's write deadline.  While more than
 * OUTBUF_HIGH bytes of replies are unsent, no input is read: a client
 * that does not read its replies cannot make us queue more of them
 * (LHLO answers 16 times its size).
 */
#include "config.h"

#include "lmtp-io.h"

#define OUTBUF_HIGH (256 * 1024) /* stop reading while this much is unsent */

struct LmtpIo {
  const LmtpIoHandler *h;
  gpointer owner;
  const char *log_id;
  GSocketConnection *conn;
  GPollableInputStream *in;
  GOutputStream *out;
  GCancellable *cancel;
  UtilTls *tls;             /* after STARTTLS: all I/O goes through it */
  GSource *read_source;
  GSource *wait_source;     /* a handshake or a write waiting for the socket */
  void (*wait_next) (LmtpIo *io); /* what goes on once the socket is ready */
  GString *outbuf;          /* queued replies */
  GString *wbuf;            /* being written */
  gsize wpos;               /* bytes of wbuf written */
  gboolean writing;
  gint64 write_progress_us;
  gboolean closed;
};

LmtpIo *
lmtp_io_new (GSocketConnection *conn, const char *log_id, const LmtpIoHandler *handler, gpointer owner)
{
  LmtpIo *io = g_new0 (LmtpIo, 1);

  io->h = handler;
  io->owner = owner;
  io->log_id = log_id;
  io->conn = g_object_ref (conn);
  io->in = G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (G_IO_STREAM (conn)));
  io->out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  io->cancel = g_cancellable_new ();
  io->outbuf = g_string_sized_new (512);
  io->wbuf = g_string_sized_new (512);
  return io;
}

static void
source_clear (GSource **source)
{
  if (*source == NULL)
    return;
  g_source_destroy (*source);
  g_clear_pointer (source, g_source_unref);
}

void
lmtp_io_close (LmtpIo *io)
{
  io->closed = TRUE;
  source_clear (&io->read_source);
  source_clear (&io->wait_source);
  g_cancellable_cancel (io->cancel);
  g_clear_pointer (&io->tls, util_tls_free);
  g_io_stream_close (G_IO_STREAM (io->conn), NULL, NULL);
}

void
lmtp_io_free (LmtpIo *io)
{
  g_clear_object (&io->conn);
  g_clear_object (&io->cancel);
  g_string_free (io->outbuf, TRUE);
  g_string_free (io->wbuf, TRUE);
  g_free (io);
}

/* A source's reference to the owner, dropped with the source. */
static void
owner_unref (gpointer data)
{
  LmtpIo *io = data;

  io->h->unref (io->owner);
}

static gboolean
socket_ready_cb (GSocket *sock, GIOCondition cond, gpointer data)
{
  LmtpIo *io = data;

  g_clear_pointer (&io->wait_source, g_source_unref);
  if (!io->closed)
    io->wait_next (io);
  return G_SOURCE_REMOVE;
}

/* A step that waits for the socket: @next runs once it is ready. */
static void
socket_wait (LmtpIo *io, GIOCondition cond, void (*next) (LmtpIo *io))
{
  io->wait_next = next;
  io->wait_source = g_socket_create_source (g_socket_connection_get_socket (io->conn), cond, io->cancel);
  io->h->ref (io->owner);
  g_source_set_callback (io->wait_source, (GSourceFunc) (void (*) (void)) socket_ready_cb, io, owner_unref);
  g_source_attach (io->wait_source, NULL);
}

/* ---- output -------------------------------------------------------------- */

GString *
lmtp_io_queue (LmtpIo *io)
{
  return io->outbuf;
}

gboolean
lmtp_io_writing (LmtpIo *io)
{
  return io->writing;
}

gsize
lmtp_io_pending (LmtpIo *io)
{
  return io->outbuf->len + (io->writing ? io->wbuf->len - io->wpos : 0);
}

gboolean
lmtp_io_output_full (LmtpIo *io)
{
  return lmtp_io_pending (io) > OUTBUF_HIGH;
}

gint64
lmtp_io_write_progress (LmtpIo *io)
{
  return io->write_progress_us;
}

/* The write is out (or the connection failed). */
static void
write_finished (LmtpIo *io, gboolean ok)
{
  io->writing = FALSE;
  if (ok && !io->closed)
    {
      g_string_truncate (io->wbuf, 0);
      io->wpos = 0;
    }
  io->h->write_done (io->owner, ok);
}

/* As much of wbuf as the socket takes now; waits for it otherwise, as
 * TLS does below.  The write is tried at once, not through
 * g_output_stream_write_async: that costs a GTask and a main loop
 * iteration per reply, most of the replying cost of a small delivery. */
static void
plain_write_some (LmtpIo *io)
{
  g_autoptr (GError) error = NULL;

  while (io->wpos < io->wbuf->len)
    {
      gssize n = g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (io->out),
                                                             io->wbuf->str + io->wpos, io->wbuf->len - io->wpos,
                                                             NULL, &error);
      if (n > 0)
        {
          io->wpos += n;
          io->write_progress_us = g_get_monotonic_time ();
          continue;
        }
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          socket_wait (io, G_IO_OUT, plain_write_some);
          return;
        }
      if (error)
        g_debug ("%s: write failed: %s", io->log_id, error->message);
      write_finished (io, FALSE);
      return;
    }
  write_finished (io, TRUE);
}

/* TLS: as much of wbuf as the socket takes; waits for it otherwise. */
static void
tls_write_some (LmtpIo *io)
{
  g_autoptr (GError) error = NULL;

  while (io->wpos < io->wbuf->len)
    {
      gsize n = 0;
      UtilTlsStatus st = util_tls_write (io->tls, io->wbuf->str + io->wpos, io->wbuf->len - io->wpos, &n, &error);
      if (st == UTIL_TLS_OK)
        {
          io->wpos += n;
          io->write_progress_us = g_get_monotonic_time ();
          continue;
        }
      if (st == UTIL_TLS_WANT_WRITE || st == UTIL_TLS_WANT_READ)
        {
          socket_wait (io, st == UTIL_TLS_WANT_WRITE ? G_IO_OUT : G_IO_IN, tls_write_some);
          return;
        }
      if (st == UTIL_TLS_ERROR)
        g_debug ("%s: %s", io->log_id, error->message);
      write_finished (io, FALSE);
      return;
    }
  write_finished (io, TRUE);
}

void
lmtp_io_flush (LmtpIo *io)
{
  GString *tmp = io->wbuf;

  io->wbuf = io->outbuf;
  io->outbuf = tmp;
  io->writing = TRUE;
  io->wpos = 0;
  io->write_progress_us = g_get_monotonic_time ();
  io->h->write_begun (io->owner);
  if (io->tls)
    tls_write_some (io);
  else
    plain_write_some (io);
}

/* ---- input --------------------------------------------------------------- */

gboolean
lmtp_io_reading (LmtpIo *io)
{
  return io->read_source != NULL;
}

void
lmtp_io_stop_reading (LmtpIo *io)
{
  source_clear (&io->read_source);
}

/* Where to read to, or NULL (and the watch is dropped) if not now. */
static char *
read_room (LmtpIo *io, gsize *room)
{
  char *buf = io->h->read_buffer (io->owner, room);

  if (buf == NULL || lmtp_io_output_full (io))
    {
      g_clear_pointer (&io->read_source, g_source_unref);
      return NULL;
    }
  return buf;
}

/* After a read of @n bytes (0: end of input). */
static gboolean
read_got (LmtpIo *io, gsize n)
{
  if (n == 0)
    g_clear_pointer (&io->read_source, g_source_unref);
  io->h->read_done (io->owner, n);
  return n == 0 ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static gboolean
read_cb (GSocket *sock, GIOCondition cond, gpointer data)
{
  LmtpIo *io = data;
  gpointer owner = io->owner;
  g_autoptr (GError) error = NULL;
  gsize room;
  char *buf = read_room (io, &room);
  gssize n;
  gboolean r;

  if (buf == NULL)
    return G_SOURCE_REMOVE;
  n = g_pollable_input_stream_read_nonblocking (io->in, buf, room, NULL, &error);
  if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return G_SOURCE_CONTINUE;
  if (n < 0)
    g_debug ("%s: read failed: %s", io->log_id, error->message);
  io->h->ref (owner);
  r = read_got (io, n > 0 ? (gsize) n : 0);
  io->h->unref (owner);
  return r;
}

/* The same over TLS: decrypted bytes may wait inside OpenSSL with nothing
 * on the socket, so the source is an idle one while any are pending. */
static gboolean
tls_read_cb (gpointer data)
{
  LmtpIo *io = data;
  gpointer owner = io->owner;
  g_autoptr (GError) error = NULL;
  gsize room, got = 0;
  char *buf = read_room (io, &room);
  UtilTlsStatus st;
  gboolean r;

  if (buf == NULL)
    return G_SOURCE_REMOVE;
  st = util_tls_read (io->tls, buf, room, &got, &error);
  if (st == UTIL_TLS_WANT_READ || st == UTIL_TLS_WANT_WRITE)
    return G_SOURCE_CONTINUE;
  if (st == UTIL_TLS_ERROR)
    g_message ("%s: %s", io->log_id, error->message);
  io->h->ref (owner); /* read_done may drop the last other reference */
  r = read_got (io, st == UTIL_TLS_OK ? got : 0);
  if (r == G_SOURCE_CONTINUE && io->read_source && !io->closed)
    {
      /* idle while OpenSSL holds decrypted bytes, the socket otherwise */
      source_clear (&io->read_source);
      lmtp_io_want_read (io);
      r = G_SOURCE_REMOVE;
    }
  io->h->unref (owner);
  return r;
}

static gboolean
tls_read_socket_cb (GSocket *sock, GIOCondition cond, gpointer data)
{
  return tls_read_cb (data);
}

void
lmtp_io_want_read (LmtpIo *io)
{
  if (io->read_source || io->closed || !io->h->may_read (io->owner) || lmtp_io_output_full (io))
    return;
  if (io->tls && util_tls_pending (io->tls))
    {
      io->read_source = g_idle_source_new ();
      g_source_set_callback (io->read_source, tls_read_cb, io, NULL);
    }
  else
    {
      /* the socket's own source, not the input stream's: that one wraps
       * it as a child, which is dispatched (and blocked) too */
      GSourceFunc cb = (GSourceFunc) (void (*) (void)) (io->tls ? tls_read_socket_cb : read_cb);
      io->read_source = g_socket_create_source (g_socket_connection_get_socket (io->conn), G_IO_IN, io->cancel);
      g_source_set_callback (io->read_source, cb, io, NULL);
    }
  /* GLib blocks a source while its callback runs unless it may recurse,
   * and blocking takes its fd out of the poll set and puts it back: two
   * writes to the context's wakeup fd and one more poll per read.  No
   * callback here runs the main loop, so there is nothing to block. */
  g_source_set_can_recurse (io->read_source, TRUE);
  g_source_attach (io->read_source, NULL);
}

/* ---- STARTTLS (RFC 3207) ------------------------------------------------- */

static void
tls_step (LmtpIo *io)
{
  g_autoptr (GError) error = NULL;
  UtilTlsStatus st = util_tls_handshake (io->tls, &error);

  if (st == UTIL_TLS_WANT_READ || st == UTIL_TLS_WANT_WRITE)
    socket_wait (io, st == UTIL_TLS_WANT_READ ? G_IO_IN : G_IO_OUT, tls_step);
  else if (st != UTIL_TLS_OK)
    io->h->handshake_done (io->owner, error ? error->message : "connection closed");
  else
    io->h->handshake_done (io->owner, NULL);
}

gboolean
lmtp_io_start_tls (LmtpIo *io, UtilTlsContext *ctx, GError **error)
{
  int fd = g_socket_get_fd (g_socket_connection_get_socket (io->conn));

  io->tls = ctx ? util_tls_server_new (ctx, fd, error) : NULL;
  if (io->tls == NULL)
    return FALSE;
  tls_step (io);
  return TRUE;
}

gboolean
lmtp_io_tls_active (LmtpIo *io)
{
  return io->tls != NULL;
}

char *
lmtp_io_tls_describe (LmtpIo *io)
{
  return util_tls_describe (io->tls);
}
