/* lmtp-session.c - one LMTP connection: its modes, timers and life cycle.
 *
 * Input is read (lmtp-io.c) into a fixed buffer and handed, in the
 * session's mode, to the protocol (LmtpSessionProtocol: command lines to
 * the command table in lmtp-commands.c, message data to lmtp-data.c,
 * which dot-unstuffs or counts it straight into the spool, so memory
 * does not grow with the message).  This file calls the protocol only
 * through that table, and the protocol's files call this one: the
 * dependency goes one way.
 * Replies are queued and flushed when the input runs dry, which is what
 * PIPELINING asks for; commands are handled strictly in order.
 *
 * After the end of data each accepted recipient is delivered in a worker
 * thread (lmtp-delivery.c) and its reply is sent as soon as it is known
 * (RFC 2033 4.2).  Input processing waits meanwhile (MODE_BUSY).
 */
#include "config.h"

#include <string.h>

#include "lmtp-session.h"

#define INBUF_MIN (64 * 1024)

LmtpSession *
lmtp_session_ref (LmtpSession *s)
{
  g_atomic_int_inc (&s->ref_count);
  return s;
}

/* ---- transactions -------------------------------------------------------- */

/* XFORWARD attributes last for one transaction (Postfix's smtpd too). */
void
lmtp_session_txn_end (LmtpSession *s)
{
  g_clear_pointer (&s->txn, s->host->protocol->txn_free);
  s->mode = MODE_COMMAND;
  s->data_started_us = 0;
  lmtp_forwarded_clear (&s->xf);
  if (s->shutdown && !s->close_after_flush)
    {
      lmtp_session_reply (s, LMTP_REPLY_SHUTTING_DOWN, s->config->hostname);
      s->close_after_flush = TRUE;
    }
}

void
lmtp_session_refresh_config (LmtpSession *s)
{
  LmtpdConfig *current = s->host->config (s->server);

  if (current != s->config)
    {
      lmtpd_config_unref (s->config);
      s->config = lmtpd_config_ref (current);
    }
}

/* ---- output -------------------------------------------------------------- */

static void G_GNUC_PRINTF (2, 0)
queue_line (LmtpSession *s, const char *fmt, va_list ap)
{
  GString *out = lmtp_io_queue (s->io);

  g_string_append_vprintf (out, fmt, ap);
  g_string_append (out, "\r\n");
}

void
lmtp_session_reply (LmtpSession *s, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  queue_line (s, fmt, ap);
  va_end (ap);
}

void
lmtp_session_reply_error (LmtpSession *s, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  queue_line (s, fmt, ap);
  va_end (ap);
  if (++s->errors >= s->config->max_errors && !s->close_after_flush)
    {
      lmtp_session_reply (s, LMTP_REPLY_TOO_MANY_ERRORS, s->config->hostname);
      g_message ("%s: too many errors from %s, disconnecting", s->log_id, s->peer);
      s->close_after_flush = TRUE;
    }
}

/* Output has drained below the mark: parse what is buffered, read more. */
static void
session_resume (LmtpSession *s)
{
  if (s->processing)
    s->resume = TRUE;
  else if (s->inlen > 0 && s->mode != MODE_BUSY)
    lmtp_session_process (s);
  else
    lmtp_session_want_read (s);
}

/* The queued replies are out (or the connection failed). */
static void
io_write_done (gpointer owner, gboolean ok)
{
  LmtpSession *s = owner;

  if (!ok)
    lmtp_session_close (s);
  else if (s->closed)
    return;
  else if (lmtp_io_queue (s->io)->len > 0)
    lmtp_session_flush (s);
  else if (s->close_after_flush)
    lmtp_session_close (s);
  else if (s->tls_starting)
    s->host->protocol->tls_begin (s);
  else
    session_resume (s);
}

void
lmtp_session_flush (LmtpSession *s)
{
  if (s->closed || lmtp_io_writing (s->io))
    return;
  if (lmtp_io_queue (s->io)->len == 0)
    {
      if (s->close_after_flush)
        lmtp_session_close (s);
      return;
    }
  lmtp_io_flush (s->io);
}

/* ---- timers -------------------------------------------------------------- */

/* a source with only a ready time */
static gboolean
idle_dispatch (GSource *source, GSourceFunc callback, gpointer data)
{
  return callback (data);
}

static GSourceFuncs idle_funcs = { NULL, NULL, idle_dispatch, NULL, NULL, NULL };

/* A write that has made no progress for idle_timeout: the client does
 * not read.  Nothing more can reach it, so the session just ends. */
static gint64
write_deadline (LmtpSession *s)
{
  if (!lmtp_io_writing (s->io))
    return -1;
  return lmtp_io_write_progress (s->io) + (gint64) s->config->idle_timeout * G_USEC_PER_SEC;
}

/* The earlier of the read deadline and the write deadline, -1 = none. */
static gint64
timer_deadline (LmtpSession *s)
{
  gint64 w = write_deadline (s);

  if (s->deadline_us < 0)
    return w;
  return w < 0 ? s->deadline_us : MIN (w, s->deadline_us);
}

/* Arms the timer if its deadline came earlier (see lmtp_session_rearm). */
static void
timer_update (LmtpSession *s)
{
  gint64 deadline = timer_deadline (s);

  if (s->idle_source == NULL || deadline < 0)
    return;
  if (s->armed_us < 0 || deadline < s->armed_us)
    {
      s->armed_us = deadline;
      g_source_set_ready_time (s->idle_source, deadline);
    }
}

static void
io_write_begun (gpointer owner)
{
  timer_update (owner);
}

static void
idle_expired (LmtpSession *s)
{
  if (s->data_started_us)
    {
      g_message ("%s: data timeout after %" G_GUINT64_FORMAT " bytes, disconnecting %s", s->log_id,
                 s->data_seen, s->peer);
      lmtp_session_reply (s, LMTP_REPLY_DATA_TIMEOUT, s->config->hostname);
    }
  else
    {
      g_message ("%s: idle timeout, disconnecting %s", s->log_id, s->peer);
      lmtp_session_reply (s, LMTP_REPLY_IDLE_TIMEOUT, s->config->hostname);
    }
  s->close_after_flush = TRUE;
  s->deadline_us = -1; /* only the write deadline is left */
  lmtp_io_stop_reading (s->io);
  lmtp_session_flush (s);
}

static gboolean
idle_timeout_cb (gpointer data)
{
  LmtpSession *s = data;
  gint64 now = g_get_monotonic_time ();
  gint64 deadline = timer_deadline (s);

  if (deadline < 0 || now < deadline)
    {
      /* moved since it was armed: sleep again until the real deadline */
      s->armed_us = deadline;
      g_source_set_ready_time (s->idle_source, deadline);
      return G_SOURCE_CONTINUE;
    }
  s->armed_us = -1;
  g_source_set_ready_time (s->idle_source, -1);
  if (lmtp_io_writing (s->io) && now >= write_deadline (s))
    {
      g_message ("%s: write timeout, %" G_GSIZE_FORMAT " bytes unread, disconnecting %s", s->log_id,
                 lmtp_io_pending (s->io), s->peer);
      lmtp_session_close (s);
      return G_SOURCE_CONTINUE; /* lmtp_session_close destroyed it */
    }
  if (s->tls_starting)
    {
      g_message ("%s: TLS handshake timeout, disconnecting %s", s->log_id, s->peer);
      lmtp_session_close (s);
      return G_SOURCE_CONTINUE;
    }
  idle_expired (s);
  timer_update (s);
  return G_SOURCE_CONTINUE;
}

/* The timer is pushed back only by progress: a whole command, or message
 * data arriving at least at min_data_rate (Postfix's smtpd_min_data_rate)
 * on top of one idle_timeout.  A client trickling a byte at a time is cut
 * off however often it writes.
 *
 * Moving a GSource's ready time wakes the main context up (an eventfd
 * write and read), so the source is only re-armed when the deadline comes
 * earlier; a later one is picked up when the source fires. */
void
lmtp_session_rearm (LmtpSession *s)
{
  gint64 now = g_get_monotonic_time ();
  gint64 idle = (gint64) s->config->idle_timeout * G_USEC_PER_SEC;
  gint64 deadline = now + idle;

  if (s->idle_source == NULL)
    return;
  if (s->mode == MODE_BUSY || s->close_after_flush)
    {
      s->deadline_us = -1; /* the source finds this when it fires */
      timer_update (s);    /* a stalled write still ends the session */
      return;
    }
  if (s->data_started_us && s->config->min_data_rate)
    deadline = MIN (deadline, s->data_started_us + idle
                              + (gint64) (s->data_seen * G_USEC_PER_SEC / s->config->min_data_rate));
  s->deadline_us = deadline;
  timer_update (s);
}

/* ---- input --------------------------------------------------------------- */

static char *
io_read_buffer (gpointer owner, gsize *room)
{
  LmtpSession *s = owner;

  if (s->closed || s->close_after_flush || s->inlen == s->incap)
    return NULL;
  *room = s->incap - s->inlen;
  return s->inbuf + s->inlen;
}

static gboolean
io_may_read (gpointer owner)
{
  LmtpSession *s = owner;

  return !s->closed && !s->eof && !s->close_after_flush && s->mode != MODE_BUSY && s->inlen < s->incap
         && !s->tls_starting;
}

/* After a read of @n bytes (0: end of input). */
static void
io_read_done (gpointer owner, gsize n)
{
  LmtpSession *s = owner;

  if (n == 0)
    {
      s->eof = TRUE;
      if (s->mode != MODE_BUSY)
        {
          if (s->txn)
            g_message ("%s: %s disconnected in a transaction, nothing delivered", s->log_id, s->peer);
          lmtp_session_close (s);
        }
      return;
    }
  s->inlen += n;
  if (s->data_started_us)
    {
      s->data_seen += n;
      lmtp_session_rearm (s);
    }
  lmtp_session_process (s);
}

void
lmtp_session_want_read (LmtpSession *s)
{
  lmtp_io_want_read (s->io);
}

/* One step in the current mode; FALSE if more input is needed. */
static gboolean
parse_step (LmtpSession *s)
{
  switch (s->mode)
    {
    case MODE_COMMAND:
      return s->inpos < s->inlen && s->host->protocol->command_feed (s);
    case MODE_DATA:
      if (!s->host->protocol->data_feed (s))
        return FALSE;
      s->mode = MODE_COMMAND;
      s->data_started_us = 0;
      s->host->protocol->data_end (s);
      return TRUE;
    case MODE_BDAT:
      if (!s->host->protocol->bdat_feed (s))
        return FALSE;
      s->host->protocol->bdat_end (s);
      return TRUE;
    case MODE_BUSY:
      break;
    }
  return TRUE;
}

/* Parses buffered input until it runs dry, a delivery starts or the
 * replies waiting for the client pass the mark. */
static void
session_parse (LmtpSession *s)
{
  gboolean more = TRUE;

  while (more && !s->closed && !s->close_after_flush && s->mode != MODE_BUSY && !s->tls_starting
         && !lmtp_io_output_full (s->io))
    more = parse_step (s);
  if (s->tls_starting)
    s->inpos = s->inlen; /* pipelined after STARTTLS: dropped */
  /* keep what is unparsed at the front of the buffer */
  if (s->inpos > 0)
    {
      memmove (s->inbuf, s->inbuf + s->inpos, s->inlen - s->inpos);
      s->inlen -= s->inpos;
      s->inpos = 0;
    }
}

void
lmtp_session_process (LmtpSession *s)
{
  if (s->processing)
    {
      s->resume = TRUE;
      return;
    }
  s->processing = TRUE;
  do
    {
      s->resume = FALSE;
      session_parse (s);
      if (!s->closed && s->mode != MODE_BUSY)
        lmtp_session_flush (s); /* over TLS this may finish at once and ask to resume */
    }
  while (s->resume && !s->closed && s->inlen > 0);
  s->processing = FALSE;
  if (!s->closed)
    lmtp_session_want_read (s);
}

void
lmtp_session_resume_commands (LmtpSession *s)
{
  if (s->eof)
    {
      lmtp_session_close (s);
      return;
    }
  lmtp_session_rearm (s);
  lmtp_session_process (s); /* pipelined input waiting behind the data */
}

/* ---- life cycle ---------------------------------------------------------- */

static gpointer
io_ref (gpointer owner)
{
  return lmtp_session_ref (owner);
}

static void
io_unref (gpointer owner)
{
  lmtp_session_unref (owner);
}

static void
io_handshake_done (gpointer owner, const char *why)
{
  LmtpSession *s = owner;

  s->host->protocol->tls_done (s, why);
}

static const LmtpIoHandler io_handler = {
  io_read_buffer, io_read_done, io_may_read, io_write_begun, io_write_done, io_handshake_done,
  io_ref, io_unref,
};

LmtpSession *
lmtp_session_new (const LmtpSessionHost *host, gpointer server, GSocketConnection *conn, guint64 id,
                  const char *peer)
{
  LmtpSession *s = g_new0 (LmtpSession, 1);

  s->ref_count = 1;
  s->host = host;
  s->server = server;
  s->id = id;
  s->log_id = g_strdup_printf ("s%" G_GUINT64_FORMAT, id);
  s->peer = g_strdup (peer);
  s->real_peer = g_strdup (peer);
  s->config = lmtpd_config_ref (host->config (server));
  s->io = lmtp_io_new (conn, s->log_id, &io_handler, s);
  s->incap = MAX (INBUF_MIN, s->config->max_line_length + 1);
  s->inbuf = g_malloc (s->incap);
  return s;
}

void
lmtp_session_start (LmtpSession *s)
{
  g_debug ("%s: connect from %s", s->log_id, s->peer);
  s->idle_source = g_source_new (&idle_funcs, sizeof (GSource));
  g_source_set_callback (s->idle_source, idle_timeout_cb, s, NULL);
  s->armed_us = -1;
  g_source_attach (s->idle_source, NULL);
  lmtp_session_rearm (s);
  lmtp_session_reply (s, LMTP_REPLY_GREETING, s->config->hostname);
  lmtp_session_flush (s);
  lmtp_session_want_read (s);
}

/* The host lets go of a closed session on the next turn of the main loop,
 * not at once: a reply is written as soon as it is queued, so a failed
 * write (a peer that reset) or an expired timer closes the session in the
 * middle of whatever queued that reply, and its caller may still look at
 * the session when the flush returns (it sees s->closed). */
static void
let_go_now (LmtpSession *s)
{
  s->let_go_id = 0;
  s->host->closed (s->server, s);
  lmtp_session_unref (s); /* the idle's reference */
}

static gboolean
host_let_go (gpointer data)
{
  let_go_now (data);
  return G_SOURCE_REMOVE;
}

void
lmtp_session_close (LmtpSession *s)
{
  if (s->closed)
    return;
  s->closed = TRUE;
  g_debug ("%s: disconnect %s", s->log_id, s->peer);
  if (s->idle_source)
    {
      g_source_destroy (s->idle_source);
      g_clear_pointer (&s->idle_source, g_source_unref);
    }
  lmtp_io_close (s->io);
  /* default priority: a busy loop must not put it off indefinitely */
  s->let_go_id = g_idle_add_full (G_PRIORITY_DEFAULT, host_let_go, lmtp_session_ref (s), NULL);
}

void
lmtp_session_shutdown (LmtpSession *s)
{
  s->shutdown = TRUE;
  if (s->closed || s->close_after_flush)
    return;
  if (s->txn == NULL && s->mode == MODE_COMMAND)
    {
      lmtp_session_reply (s, LMTP_REPLY_SHUTTING_DOWN, s->config->hostname);
      s->close_after_flush = TRUE;
      lmtp_session_flush (s);
    }
}

gsize
lmtp_session_backlog (LmtpSession *s)
{
  return s->closed ? 0 : lmtp_io_pending (s->io);
}

/* The host is going away (lmtp_server_free): closed and handed back now,
 * with no idle left behind to call a freed host.  @s may be gone after. */
void
lmtp_session_abort (LmtpSession *s)
{
  lmtp_session_close (s);
  if (s->let_go_id)
    {
      g_source_remove (s->let_go_id);
      let_go_now (s);
    }
}

void
lmtp_session_unref (LmtpSession *s)
{
  if (!g_atomic_int_dec_and_test (&s->ref_count))
    return;
  g_assert_true (s->closed || !lmtp_io_reading (s->io));
  s->host->protocol->txn_free (s->txn);
  lmtp_io_free (s->io);
  lmtpd_config_unref (s->config);
  g_free (s->inbuf);
  g_free (s->log_id);
  g_free (s->peer);
  g_free (s->real_peer);
  g_free (s->client_name);
  g_free (s->lhlo);
  lmtp_forwarded_clear (&s->xf);
  g_free (s);
}
