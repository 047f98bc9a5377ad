/* lmtp-session.c - one LMTP connection: the RFC 2033 state machine.
 *
 * Input is read without blocking into a fixed buffer and parsed here:
 * command lines are bounded (an overlong line is skipped to its end and
 * answered 500 5.5.2); message data is dot-unstuffed (DATA) or counted
 * (BDAT) straight into the spool, so memory does not grow with the
 * message.  Replies are queued and flushed when the input runs dry, which
 * is what PIPELINING asks for; commands are handled strictly in order.
 *
 * After the end of data each accepted recipient is delivered in a worker
 * thread, one after the other, and its reply is sent as soon as it is
 * known (RFC 2033 4.2).  Input processing waits meanwhile.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "deliver.h"
#include "lmtp-private.h"

#define INBUF_MIN (64 * 1024)
#define OUTBUF_HIGH (256 * 1024) /* stop reading while this much is unsent */

typedef enum {
  MODE_COMMAND,
  MODE_DATA,
  MODE_BDAT,
  MODE_BUSY, /* delivering; input waits */
} SessionMode;

typedef enum {
  FAIL_NONE,
  FAIL_TOO_BIG,
  FAIL_LINE_TOO_LONG,
  FAIL_SPOOL,
} TxnFailure;

typedef struct {
  LmtpdConfig *config;      /* as of MAIL */
  char *id;
  char *sender;             /* "" for <> */
  gint64 started_us;
  gboolean smtputf8;
  gboolean binarymime;
  GPtrArray *rcpts;         /* of DeliverRecipient* */
  DeliverSpool *spool;
  guint64 received;         /* message bytes seen, CRLF counted */
  TxnFailure failure;
  GError *spool_error;      /* why the spool failed (FAIL_SPOOL) */
  gboolean bdat;            /* BDAT used in this transaction */
  guint delivered;          /* index of the next recipient to deliver */
  guint64 size_hint;        /* MAIL SIZE=, 0 if not given */
  char *mail_params;        /* MAIL parameters as given */
  char *message_id;         /* the Message-ID field, sanitised, for the log; NULL if none */
  DeliverShared shared;     /* single instance and shared callouts */
  GPtrArray *jobs;          /* deliveries in flight, in RCPT order */
} Txn;

struct LmtpSession {
  gint ref_count;
  LmtpServer *server;
  guint64 id;
  char *log_id;
  char *peer;
  char *lhlo;
  char *xf_name, *xf_addr, *xf_helo; /* XFORWARD, for the next transaction */
  char *xf_ident;           /* XFORWARD IDENT: the MTA's queue id, for the log */
  char *real_peer;          /* the connection's own peer, for authorization */
  char *client_name;        /* from XCLIENT NAME, or NULL */
  LmtpTls *tls;             /* after STARTTLS: all I/O goes through it */
  gboolean tls_starting;    /* 220 to STARTTLS queued: handshake once it is out */
  GSource *tls_source;      /* a handshake or a TLS write waiting for the socket */
  gsize wpos;               /* TLS: bytes of wbuf written */
  LmtpdConfig *config;      /* for limits outside a transaction */
  GSocketConnection *conn;
  GPollableInputStream *in;
  GOutputStream *out;
  GCancellable *cancel;
  GSource *read_source;
  GSource *idle_source;

  char *inbuf;
  gsize incap, inlen, inpos;
  gboolean skipping;        /* discarding the rest of an overlong line */
  gboolean eof;

  GString *outbuf;          /* queued replies */
  GString *wbuf;            /* being written */
  gboolean writing;
  gint64 write_progress_us; /* monotonic, when the write last moved (or began) */
  gboolean processing;      /* in session_process: a write done in it resumes nothing */
  gboolean resume;          /* output drained while processing: go round again */
  gboolean close_after_flush;
  gboolean closed;
  gboolean shutdown;

  SessionMode mode;
  guint errors;
  Txn *txn;
  gboolean data_bol;
  guint64 line_len;
  guint64 bdat_left;
  gboolean bdat_last;
  gint64 data_started_us;   /* monotonic, when DATA or the first BDAT came; 0 outside */
  gint64 deadline_us;       /* when the idle timer must fire, -1 = never (busy) */
  gint64 armed_us;          /* the idle source's ready time, -1 = not armed */
  guint64 data_seen;        /* bytes read since then */
  const char *bdat_error;   /* reply for a chunk that is only consumed */
};

static void session_process (LmtpSession *s);
static void session_flush (LmtpSession *s);
static void session_want_read (LmtpSession *s);
static void session_close (LmtpSession *s);

static guint64 txn_counter;

static LmtpSession *
session_ref (LmtpSession *s)
{
  g_atomic_int_inc (&s->ref_count);
  return s;
}

/* ---- transactions -------------------------------------------------------- */

static void
txn_free (Txn *t)
{
  if (t == NULL)
    return;
  lmtpd_config_unref (t->config);
  g_free (t->id);
  g_free (t->sender);
  g_ptr_array_unref (t->rcpts);
  if (t->jobs)
    g_ptr_array_unref (t->jobs);
  deliver_shared_clear (&t->shared);
  deliver_spool_free (t->spool);
  g_clear_error (&t->spool_error);
  g_free (t->mail_params);
  g_free (t->message_id);
  g_free (t);
}

static char *
txn_new_id (LmtpSession *s)
{
  /* unique per host: time, pid and a counter */
  return g_strdup_printf ("%" G_GINT64_MODIFIER "X%05X%" G_GINT64_MODIFIER "X",
                          g_get_real_time () / G_USEC_PER_SEC, (guint) getpid () & 0xFFFFF,
                          (guint64) ++txn_counter);
}

/* ---- output -------------------------------------------------------------- */

static void G_GNUC_PRINTF (2, 3)
reply (LmtpSession *s, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_string_append_vprintf (s->outbuf, fmt, ap);
  va_end (ap);
  g_string_append (s->outbuf, "\r\n");
}

static void
reply_status (LmtpSession *s, const DeliverStatus *st)
{
  reply (s, "%u %s %s", st->code, st->enhanced, st->text);
}

/* A recipient's reply after the data.  A success names the transaction
 * (as Dovecot's "250 2.0.0 <user> id Saved" does), so the MTA's log line
 * for it ("status=sent (250 ...)") leads to ours. */
static void
reply_delivered (LmtpSession *s, const DeliverStatus *st)
{
  if (st->code >= 400)
    reply_status (s, st);
  else
    reply (s, "%u %s %s id=%s", st->code, st->enhanced, st->text, s->txn->id);
}

/* A protocol error: counted, and too many of them end the session. */
static void G_GNUC_PRINTF (2, 3)
reply_error (LmtpSession *s, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_string_append_vprintf (s->outbuf, fmt, ap);
  va_end (ap);
  g_string_append (s->outbuf, "\r\n");
  if (++s->errors >= s->config->max_errors && !s->close_after_flush)
    {
      reply (s, "421 4.7.0 %s Too many errors, closing connection", s->config->hostname);
      g_message ("%s: too many errors from %s, disconnecting", s->log_id, s->peer);
      s->close_after_flush = TRUE;
    }
}

static void tls_begin (LmtpSession *s);
static void session_want_read (LmtpSession *s);

/* Replies waiting to go out, queued or being written. */
static gsize
output_pending (LmtpSession *s)
{
  return s->outbuf->len + (s->writing ? s->wbuf->len - s->wpos : 0);
}

/* Over the mark, input waits: a client that does not read its replies
 * cannot make us queue more of them (LHLO answers 16 times its size). */
static gboolean
output_full (LmtpSession *s)
{
  return output_pending (s) > OUTBUF_HIGH;
}

/* Output has drained below the mark: parse what is buffered, read more. */
static void
session_resume (LmtpSession *s)
{
  if (s->processing)
    s->resume = TRUE;
  else if (s->inlen > 0 && s->mode != MODE_BUSY)
    session_process (s);
  else
    session_want_read (s);
}

/* The queued replies are out (or the connection failed). */
static void
write_finished (LmtpSession *s, gboolean ok)
{
  s->writing = FALSE;
  if (!ok)
    session_close (s);
  else if (!s->closed)
    {
      g_string_truncate (s->wbuf, 0);
      s->wpos = 0;
      if (s->outbuf->len > 0)
        session_flush (s);
      else if (s->close_after_flush)
        session_close (s);
      else if (s->tls_starting)
        tls_begin (s);
      else
        session_resume (s);
    }
}

static void write_some (LmtpSession *s);

/* Plain writes go out piece by piece, so progress can be seen: a client
 * that stops reading is cut off after idle_timeout without any. */
static void
write_done (GObject *source, GAsyncResult *res, gpointer data)
{
  LmtpSession *s = data;
  g_autoptr (GError) error = NULL;
  gssize n = g_output_stream_write_finish (G_OUTPUT_STREAM (source), res, &error);

  if (n < 0 && !s->closed)
    g_debug ("%s: write failed: %s", s->log_id, error->message);
  if (n < 0 || s->closed)
    write_finished (s, FALSE);
  else
    {
      s->wpos += n;
      s->write_progress_us = g_get_monotonic_time ();
      if (s->wpos < s->wbuf->len)
        write_some (s);
      else
        write_finished (s, TRUE);
    }
  lmtp_session_unref (s);
}

static void
write_some (LmtpSession *s)
{
  g_output_stream_write_async (s->out, s->wbuf->str + s->wpos, s->wbuf->len - s->wpos, G_PRIORITY_DEFAULT,
                               s->cancel, write_done, session_ref (s));
}

/* TLS: as much of wbuf as the socket takes; waits for it otherwise. */
static gboolean tls_write_cb (GSocket *sock, GIOCondition cond, gpointer data);

static void
tls_write_some (LmtpSession *s)
{
  g_autoptr (GError) error = NULL;

  while (s->wpos < s->wbuf->len)
    {
      gsize n = 0;
      LmtpTlsStatus st = lmtp_tls_write (s->tls, s->wbuf->str + s->wpos, s->wbuf->len - s->wpos, &n, &error);
      if (st == LMTP_TLS_OK)
        {
          s->wpos += n;
          s->write_progress_us = g_get_monotonic_time ();
          continue;
        }
      if (st == LMTP_TLS_WANT_WRITE || st == LMTP_TLS_WANT_READ)
        {
          s->tls_source = g_socket_create_source (g_socket_connection_get_socket (s->conn),
                                                  st == LMTP_TLS_WANT_WRITE ? G_IO_OUT : G_IO_IN, s->cancel);
          g_source_set_callback (s->tls_source, (GSourceFunc) (void (*) (void)) tls_write_cb, session_ref (s),
                                 (GDestroyNotify) lmtp_session_unref);
          g_source_attach (s->tls_source, NULL);
          return;
        }
      if (st == LMTP_TLS_ERROR)
        g_debug ("%s: %s", s->log_id, error->message);
      write_finished (s, FALSE);
      return;
    }
  write_finished (s, TRUE);
}

static gboolean
tls_write_cb (GSocket *sock, GIOCondition cond, gpointer data)
{
  LmtpSession *s = data;

  g_clear_pointer (&s->tls_source, g_source_unref);
  if (!s->closed)
    tls_write_some (s);
  return G_SOURCE_REMOVE;
}

static void timer_update (LmtpSession *s);

static void
session_flush (LmtpSession *s)
{
  GString *tmp;

  if (s->closed || s->writing)
    return;
  if (s->outbuf->len == 0)
    {
      if (s->close_after_flush)
        session_close (s);
      return;
    }
  tmp = s->wbuf;
  s->wbuf = s->outbuf;
  s->outbuf = tmp;
  s->writing = TRUE;
  s->wpos = 0;
  s->write_progress_us = g_get_monotonic_time ();
  timer_update (s);
  if (s->tls)
    tls_write_some (s);
  else
    write_some (s);
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
  if (!s->writing)
    return -1;
  return s->write_progress_us + (gint64) s->config->idle_timeout * G_USEC_PER_SEC;
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

/* Arms the timer if its deadline came earlier (see idle_rearm). */
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
idle_expired (LmtpSession *s)
{
  if (s->data_started_us)
    {
      g_message ("%s: data timeout after %" G_GUINT64_FORMAT " bytes, disconnecting %s", s->log_id,
                 s->data_seen, s->peer);
      reply (s, "421 4.4.2 %s Timeout waiting for data, closing connection", s->config->hostname);
    }
  else
    {
      g_message ("%s: idle timeout, disconnecting %s", s->log_id, s->peer);
      reply (s, "421 4.4.2 %s Idle timeout, closing connection", s->config->hostname);
    }
  s->close_after_flush = TRUE;
  s->deadline_us = -1; /* only the write deadline is left */
  if (s->read_source)
    {
      g_source_destroy (s->read_source);
      g_clear_pointer (&s->read_source, g_source_unref);
    }
  session_flush (s);
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
  if (s->writing && now >= write_deadline (s))
    {
      g_message ("%s: write timeout, %" G_GSIZE_FORMAT " bytes unread, disconnecting %s", s->log_id,
                 output_pending (s), s->peer);
      session_close (s);
      return G_SOURCE_CONTINUE; /* session_close destroyed it */
    }
  if (s->tls_starting)
    {
      g_message ("%s: TLS handshake timeout, disconnecting %s", s->log_id, s->peer);
      session_close (s);
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
static void
idle_rearm (LmtpSession *s)
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

static void
data_phase_start (LmtpSession *s)
{
  if (s->data_started_us == 0)
    {
      s->data_started_us = g_get_monotonic_time ();
      s->data_seen = 0;
    }
}

/* ---- input --------------------------------------------------------------- */

/* After a read of @n bytes (0: end of input). */
static gboolean
read_got (LmtpSession *s, gssize n)
{
  if (n <= 0)
    {
      s->eof = TRUE;
      g_clear_pointer (&s->read_source, g_source_unref);
      session_ref (s);
      if (s->mode != MODE_BUSY)
        {
          if (s->txn)
            g_message ("%s: %s disconnected in a transaction, nothing delivered", s->log_id, s->peer);
          session_close (s);
        }
      lmtp_session_unref (s);
      return G_SOURCE_REMOVE;
    }
  s->inlen += n;
  if (s->data_started_us)
    {
      s->data_seen += n;
      idle_rearm (s);
    }
  session_ref (s);
  session_process (s);
  lmtp_session_unref (s);
  return G_SOURCE_CONTINUE;
}

static gboolean
read_cb (GObject *stream, gpointer data)
{
  LmtpSession *s = data;
  g_autoptr (GError) error = NULL;
  gssize n;

  if (s->closed || s->close_after_flush || s->inlen == s->incap || output_full (s))
    {
      g_clear_pointer (&s->read_source, g_source_unref);
      return G_SOURCE_REMOVE;
    }
  n = g_pollable_input_stream_read_nonblocking (s->in, s->inbuf + s->inlen, s->incap - s->inlen,
                                                NULL, &error);
  if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return G_SOURCE_CONTINUE;
  if (n < 0)
    g_debug ("%s: read failed: %s", s->log_id, error->message);
  return read_got (s, n);
}

/* The same over TLS: decrypted bytes may wait inside OpenSSL with nothing
 * on the socket, so the source is an idle one while any are pending. */
static void session_want_read (LmtpSession *s);

static gboolean
tls_read_cb (gpointer data)
{
  LmtpSession *s = data;
  g_autoptr (GError) error = NULL;
  gsize got = 0;
  LmtpTlsStatus st;
  gboolean r;

  if (s->closed || s->close_after_flush || s->inlen == s->incap || output_full (s))
    {
      g_clear_pointer (&s->read_source, g_source_unref);
      return G_SOURCE_REMOVE;
    }
  st = lmtp_tls_read (s->tls, s->inbuf + s->inlen, s->incap - s->inlen, &got, &error);
  if (st == LMTP_TLS_WANT_READ || st == LMTP_TLS_WANT_WRITE)
    return G_SOURCE_CONTINUE;
  if (st == LMTP_TLS_ERROR)
    g_message ("%s: %s", s->log_id, error->message);
  session_ref (s); /* read_got may drop the last other reference */
  r = read_got (s, st == LMTP_TLS_OK ? (gssize) got : 0);
  if (r == G_SOURCE_CONTINUE && s->read_source && !s->closed)
    {
      /* idle while OpenSSL holds decrypted bytes, the socket otherwise */
      g_source_destroy (s->read_source);
      g_clear_pointer (&s->read_source, g_source_unref);
      session_want_read (s);
      r = G_SOURCE_REMOVE;
    }
  lmtp_session_unref (s);
  return r;
}

static gboolean
tls_read_socket_cb (GSocket *sock, GIOCondition cond, gpointer data)
{
  return tls_read_cb (data);
}

static void
session_want_read (LmtpSession *s)
{
  if (s->read_source || s->closed || s->eof || s->close_after_flush || s->mode == MODE_BUSY
      || s->inlen == s->incap || output_full (s))
    return;
  if (s->tls_starting)
    return;
  if (s->tls)
    {
      if (lmtp_tls_pending (s->tls))
        {
          s->read_source = g_idle_source_new ();
          g_source_set_callback (s->read_source, tls_read_cb, s, NULL);
        }
      else
        {
          s->read_source = g_socket_create_source (g_socket_connection_get_socket (s->conn), G_IO_IN, s->cancel);
          g_source_set_callback (s->read_source, (GSourceFunc) (void (*) (void)) tls_read_socket_cb, s, NULL);
        }
    }
  else
    {
      s->read_source = g_pollable_input_stream_create_source (s->in, s->cancel);
      g_source_set_callback (s->read_source, (GSourceFunc) (void (*) (void)) read_cb, s, NULL);
    }
  g_source_attach (s->read_source, NULL);
}

/* ---- end of a transaction ----------------------------------------------- */

/* XFORWARD attributes last for one transaction (Postfix's smtpd too) */
static void
xforward_clear (LmtpSession *s)
{
  g_clear_pointer (&s->xf_name, g_free);
  g_clear_pointer (&s->xf_addr, g_free);
  g_clear_pointer (&s->xf_helo, g_free);
  g_clear_pointer (&s->xf_ident, g_free);
}

static void
txn_end (LmtpSession *s)
{
  g_clear_pointer (&s->txn, txn_free);
  s->mode = MODE_COMMAND;
  s->data_started_us = 0;
  xforward_clear (s);
  if (s->shutdown && !s->close_after_flush)
    {
      reply (s, "421 4.3.2 %s Service shutting down, closing connection", s->config->hostname);
      s->close_after_flush = TRUE;
    }
}

/* One recipient's result, as a line and as fields.  @mailbox is NULL for a
 * refusal at RCPT (nothing was stored, so neither size nor mailbox). */
typedef struct {
  const char *to, *orig, *mailbox;
  const DeliverStatus *st;
  guint64 callout_us;
} LogResult;

static void
log_result (LmtpSession *s, const LogResult *res)
{
  Txn *t = s->txn;
  gboolean rcpt = res->mailbox == NULL;
  g_autofree char *from = deliver_sanitize (t->sender, 256);
  g_autofree char *to = deliver_sanitize (res->to, 256);
  g_autofree char *orig = deliver_sanitize (res->orig, 256);
  g_autofree char *text = deliver_sanitize (res->st->text, 256);
  g_autofree char *mailbox = deliver_sanitize (rcpt ? "" : res->mailbox, 1024);
  const char *qid = s->xf_ident ? s->xf_ident : "", *msgid = t->message_id ? t->message_id : "";
  gint64 delay_ms = (g_get_real_time () - t->started_us) / 1000;
  gboolean failed = res->st->code >= 400, orig_differs = strcmp (orig, to) != 0;
  char callouts[48] = "", size[24], code[8], delay[24], cus[24];

  if (res->callout_us)
    g_snprintf (callouts, sizeof callouts, " callout_us=%" G_GUINT64_FORMAT, res->callout_us);
  g_snprintf (size, sizeof size, "%" G_GUINT64_FORMAT, rcpt ? 0 : t->received);
  g_snprintf (code, sizeof code, "%u", res->st->code);
  g_snprintf (delay, sizeof delay, "%" G_GINT64_FORMAT, delay_ms);
  g_snprintf (cus, sizeof cus, "%" G_GUINT64_FORMAT, res->callout_us);
  /* the same facts as fields, for the journal and log_format = json */
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_INFO,
                    "LMTPD_SESSION", s->log_id, "LMTPD_TXN", t->id, "LMTPD_RCPT", to,
                    "LMTPD_FROM", from, "LMTPD_ORIG_RCPT", orig, "LMTPD_MAILBOX", mailbox,
                    "LMTPD_SIZE", size, "LMTPD_STATUS", code, "LMTPD_DSN", res->st->enhanced,
                    "LMTPD_DELAY_MS", delay, "LMTPD_CALLOUT_US", cus,
                    "LMTPD_STAGE", rcpt ? "rcpt" : "data", "LMTPD_QUEUE_ID", qid, "LMTPD_MESSAGE_ID", msgid,
                    "LMTPD_REASON", failed ? text : "",
                    "MESSAGE", "%s: %s: %sfrom=<%s> to=<%s>%s%s%s%s%s%s%s status=%u %s delay_ms=%" G_GINT64_FORMAT
                    "%s%s%s%s%s%s%s",
                    s->log_id, t->id, rcpt ? "rejected at RCPT: " : "", from, to,
                    orig_differs ? " orig_to=<" : "", orig_differs ? orig : "", orig_differs ? ">" : "",
                    rcpt ? "" : " mailbox=", mailbox, rcpt ? "" : " size=", rcpt ? "" : size,
                    res->st->code, res->st->enhanced, delay_ms, callouts,
                    qid[0] ? " queue_id=" : "", qid, msgid[0] ? " message_id=" : "", msgid,
                    failed ? " reason=" : "", failed ? text : "");
}

static void
log_delivery (LmtpSession *s, const DeliverRecipient *r, const DeliverStatus *st,
              const char *path)
{
  LogResult res = { r->address, r->original, path ? path : r->mailbox, st, st->callout_us };

  lmtp_metrics_delivery (st->code, (guint64) MAX (g_get_real_time () - s->txn->started_us, 0), st->callout_us);
  log_result (s, &res);
}

/* A recipient refused at RCPT: logged and counted like a delivery. */
static void
log_rcpt_refusal (LmtpSession *s, const char *address, const DeliverStatus *st)
{
  LogResult res = { address, address, NULL, st, 0 };

  lmtp_metrics_rcpt_refused (st->code);
  log_result (s, &res);
}

/* ---- delivery ------------------------------------------------------------- */

/* Work for the delivery threads: a recipient's whole pipeline after the
 * data, or its checks at RCPT.  Results come back to the main loop; replies
 * go out in RCPT order as soon as each one and all before it are known. */
typedef struct {
  LmtpSession *s;
  Txn *t;
  gboolean rcpt_check;
  LmtpdConfig *config;
  DeliverContext *ctx;      /* a reference, for as long as the job runs */
  DeliverMessage msg;
  DeliverRecipient *rcpt;   /* borrowed from t->rcpts; owned for rcpt_check */
  guint64 size_hint;
  DeliverStatus status;
  char *path;
  gboolean ok;
  gboolean done;
  gpointer same_as;         /* Job* of the same recipient earlier in the transaction, or NULL */
} Job;

static GThreadPool *pool;

static void
job_free (Job *job)
{
  lmtpd_config_unref (job->config);
  deliver_context_unref (job->ctx);
  deliver_status_clear (&job->status);
  if (job->rcpt_check)
    deliver_recipient_free (job->rcpt);
  g_free (job->path);
  g_free (job);
}

static void deliver_replies (LmtpSession *s);
static void rcpt_checked (LmtpSession *s, Job *job);

static gboolean
job_finished (gpointer data)
{
  Job *job = data;
  LmtpSession *s = job->s;

  job->done = TRUE;
  if (job->rcpt_check)
    rcpt_checked (s, job);
  else
    deliver_replies (s);
  lmtp_session_unref (s);
  return G_SOURCE_REMOVE;
}

static void
job_run (gpointer data, gpointer unused)
{
  Job *job = data;

  if (job->rcpt_check)
    job->ok = deliver_rcpt_check (job->ctx, job->config, &job->msg, job->rcpt, job->size_hint, &job->status);
  else
    deliver_pipeline_run (job->ctx, job->config, &job->msg, job->rcpt, &job->t->shared, &job->status,
                          &job->path);
  g_main_context_invoke (NULL, job_finished, job);
}

static Job *
job_new (LmtpSession *s, Txn *t, DeliverRecipient *rcpt)
{
  Job *job = g_new0 (Job, 1);

  job->s = session_ref (s);
  job->t = t;
  job->config = lmtpd_config_ref (t->config);
  job->ctx = deliver_context_ref (lmtp_server_get_context (s->server));
  job->msg.id = t->id;
  job->msg.sender = t->sender;
  job->msg.helo = s->xf_helo ? s->xf_helo : s->lhlo;
  job->msg.client_addr = s->xf_addr ? s->xf_addr : s->peer;
  job->msg.client_name = s->xf_name ? s->xf_name : s->client_name;
  job->msg.protocol = "LMTP";
  job->msg.mail_params = t->mail_params;
  job->msg.received_us = t->started_us;
  job->msg.spool = t->spool;
  job->rcpt = rcpt;
  return job;
}

static void
job_push (Job *job)
{
  if (pool == NULL)
    pool = g_thread_pool_new (job_run, NULL, (gint) job->config->delivery_threads, FALSE, NULL);
  g_thread_pool_push (pool, job, NULL);
}

static void
deliver_replies (LmtpSession *s)
{
  Txn *t = s->txn;

  while (t->delivered < t->jobs->len)
    {
      Job *job = t->jobs->pdata[t->delivered];
      const Job *result = job->same_as ? job->same_as : job;
      if (!job->done)
        break;
      log_delivery (s, job->rcpt, &result->status, result->path);
      reply_delivered (s, &result->status);
      t->delivered++;
    }
  session_flush (s); /* RFC 2033 4.2: each reply as soon as it is known */
  if (t->delivered < t->jobs->len)
    return;
  txn_end (s);
  if (s->eof)
    {
      session_close (s);
      return;
    }
  idle_rearm (s);
  session_process (s); /* pipelined input waiting behind the data */
}

/* The job of an earlier recipient with the same address as @r's, as the
 * client wrote it (case aside), or NULL. */
static Job *
job_same_recipient (GPtrArray *jobs, const DeliverRecipient *r)
{
  for (guint i = 0; i < jobs->len; i++)
    {
      Job *other = jobs->pdata[i];
      if (other->same_as == NULL && g_ascii_strcasecmp (other->rcpt->original, r->original) == 0)
        return other;
    }
  return NULL;
}

/* The same recipient twice is stored once, as Dovecot does, and answered
 * twice with the first one's reply: two copies in one mailbox are never
 * what the sender meant, and RFC 2033 wants a reply per RCPT. */
static void
deliver_all (LmtpSession *s)
{
  Txn *t = s->txn;
  g_autoptr (GPtrArray) distinct = g_ptr_array_new ();

  t->jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) job_free);
  for (guint i = 0; i < t->rcpts->len; i++)
    {
      Job *job = job_new (s, t, t->rcpts->pdata[i]);
      job->same_as = job_same_recipient (t->jobs, job->rcpt);
      if (job->same_as)
        {
          job->done = TRUE;
          g_clear_pointer (&job->s, lmtp_session_unref); /* it never runs */
        }
      else
        g_ptr_array_add (distinct, job->rcpt);
      g_ptr_array_add (t->jobs, job);
    }
  deliver_shared_init (&t->shared, distinct);
  for (guint i = 0; i < t->jobs->len; i++)
    if (((Job *) t->jobs->pdata[i])->same_as == NULL)
      job_push (t->jobs->pdata[i]);
}

/* The Message-ID as the log shows it: sanitised (it comes from the
 * sender) and cut to a length a log line can carry. */
static char *
message_id_for_log (const DeliverSpool *spool)
{
  g_autofree char *raw = deliver_spool_header_value (spool, "Message-ID");

  if (raw == NULL || raw[0] == '\0')
    return NULL;
  return deliver_sanitize (raw, 256);
}

/* All data is in: answer every recipient (RFC 2033 4.2). */
static void
data_complete (LmtpSession *s)
{
  Txn *t = s->txn;
  g_autoptr (GError) error = NULL;
  DeliverStatus st = { 0 };

  lmtp_metrics_transaction (t->received);
  if (t->failure == FAIL_NONE && !deliver_spool_finish (t->spool, &error))
    {
      g_warning ("%s: %s: %s", s->log_id, t->id, error->message);
      t->failure = FAIL_SPOOL;
      t->spool_error = g_steal_pointer (&error);
    }
  if (t->failure == FAIL_NONE)
    t->message_id = message_id_for_log (t->spool);
  switch (t->failure)
    {
    case FAIL_NONE:
      s->mode = MODE_BUSY;
      idle_rearm (s);
      session_flush (s);
      deliver_all (s);
      return;
    case FAIL_TOO_BIG:
      deliver_status_set (&st, 552, "5.3.4", "Message too big for system");
      break;
    case FAIL_LINE_TOO_LONG:
      deliver_status_set (&st, 500, "5.5.2", "Message line too long");
      break;
    case FAIL_SPOOL:
      /* disk full is 452 4.3.1, anything else 451 4.3.0 */
      deliver_status_from_error (&st, t->spool_error);
      break;
    }
  for (guint i = 0; i < t->rcpts->len; i++)
    {
      log_delivery (s, t->rcpts->pdata[i], &st, NULL);
      reply_status (s, &st);
    }
  deliver_status_clear (&st);
  txn_end (s);
}

/* Message bytes (dot-unstuffed, CRLF line ends) for the spool. */
static void
data_append (LmtpSession *s, const char *p, gsize n, gboolean ends_line)
{
  Txn *t = s->txn;
  g_autoptr (GError) error = NULL;

  t->received += n;
  s->line_len += n;
  if (t->failure != FAIL_NONE || t->spool == NULL)
    return;
  if (t->config->max_message_size && t->received > t->config->max_message_size)
    t->failure = FAIL_TOO_BIG;
  else if (!t->bdat && s->line_len > t->config->max_data_line_length + 2)
    t->failure = FAIL_LINE_TOO_LONG;
  else if (!deliver_spool_write (t->spool, p, n, &error))
    {
      g_warning ("%s: %s: %s", s->log_id, t->id, error->message);
      t->failure = FAIL_SPOOL;
      t->spool_error = g_steal_pointer (&error);
    }
  if (ends_line)
    s->line_len = 0;
}

/* DATA: returns TRUE at the terminating "." line. */
static gboolean
data_feed (LmtpSession *s)
{
  while (s->inpos < s->inlen)
    {
      const char *p = s->inbuf + s->inpos;
      gsize avail = s->inlen - s->inpos;
      const char *nl;
      gsize n;

      if (s->data_bol && p[0] == '.')
        {
          if (avail >= 2 && p[1] == '\n')
            {
              s->inpos += 2;
              return TRUE;
            }
          if (avail >= 3 && p[1] == '\r' && p[2] == '\n')
            {
              s->inpos += 3;
              return TRUE;
            }
          if (avail == 1 || (avail == 2 && p[1] == '\r'))
            return FALSE; /* cannot tell yet */
          s->inpos++;  /* RFC 5321 4.5.2: remove one leading dot */
          s->data_bol = FALSE;
          continue;
        }
      nl = memchr (p, '\n', avail);
      n = nl ? (gsize) (nl - p) + 1 : avail;
      data_append (s, p, n, nl != NULL);
      s->inpos += n;
      s->data_bol = nl != NULL;
    }
  return FALSE;
}

static gboolean
bdat_feed (LmtpSession *s)
{
  gsize n = MIN (s->bdat_left, s->inlen - s->inpos);

  if (n > 0 && s->bdat_error == NULL)
    data_append (s, s->inbuf + s->inpos, n, FALSE);
  s->inpos += n;
  s->bdat_left -= n;
  return s->bdat_left == 0;
}

static void
bdat_complete (LmtpSession *s)
{
  s->mode = MODE_COMMAND;
  if (s->bdat_last)
    s->data_started_us = 0;
  if (s->bdat_error)
    {
      reply_error (s, "%s", s->bdat_error);
      s->bdat_error = NULL;
      return;
    }
  if (s->bdat_last)
    {
      data_complete (s);
      return;
    }
  if (s->txn->failure == FAIL_TOO_BIG)
    reply (s, "552 5.3.4 Message too big for system");
  else if (s->txn->failure == FAIL_SPOOL)
    reply (s, "451 4.3.0 Temporary internal error");
  else
    reply (s, "250 2.0.0 %" G_GUINT64_FORMAT " octets received", s->txn->received);
}

/* ---- commands ------------------------------------------------------------ */

/* New transactions use the configuration in force when they begin. */
static void
session_refresh_config (LmtpSession *s)
{
  LmtpdConfig *current = lmtp_server_get_config (s->server);

  if (current != s->config)
    {
      lmtpd_config_unref (s->config);
      s->config = lmtpd_config_ref (current);
    }
}

static void
cmd_lhlo (LmtpSession *s, const char *args)
{
  LmtpdConfig *c;

  session_refresh_config (s);
  c = s->config;

  if (*args == '\0' || strchr (args, ' '))
    {
      reply_error (s, "501 5.5.4 Syntax: LHLO hostname");
      return;
    }
  g_free (s->lhlo);
  s->lhlo = deliver_sanitize (args, 255);
  g_clear_pointer (&s->txn, txn_free);
  xforward_clear (s);
  reply (s, "250-%s", c->hostname);
  reply (s, "250-PIPELINING");
  reply (s, "250-ENHANCEDSTATUSCODES");
  reply (s, "250-8BITMIME");
  reply (s, "250-SIZE %" G_GUINT64_FORMAT, c->max_message_size);
  reply (s, "250-CHUNKING");
  reply (s, "250-BINARYMIME");
  if (lmtp_server_get_tls (s->server) && s->tls == NULL)
    reply (s, "250-STARTTLS");
  if (lmtpd_config_xforward_allowed (c, s->real_peer))
    {
      reply (s, "250-XFORWARD NAME ADDR PROTO HELO SOURCE IDENT PORT");
      reply (s, "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT");
    }
  reply (s, "250 SMTPUTF8");
}

/* Checks MAIL parameters; returns a reply for the first bad one or NULL. */
static const char *
mail_params (LmtpSession *s, const LmtpPathArgs *a, Txn *t)
{
  for (guint i = 0; i < a->params->len; i++)
    {
      const LmtpParam *p = a->params->pdata[i];
      const char *v = p->value;

      if (strcmp (p->keyword, "SIZE") == 0)
        {
          char *end = NULL;
          guint64 n;
          if (v == NULL || !g_ascii_isdigit (*v) || (n = g_ascii_strtoull (v, &end, 10), *end))
            return "501 5.5.4 Invalid SIZE parameter";
          if (t->config->max_message_size && n > t->config->max_message_size)
            return "552 5.3.4 Message size exceeds fixed maximum message size";
          t->size_hint = n;
        }
      else if (strcmp (p->keyword, "BODY") == 0)
        {
          if (v && g_ascii_strcasecmp (v, "BINARYMIME") == 0)
            t->binarymime = TRUE;
          else if (v == NULL || (g_ascii_strcasecmp (v, "7BIT") && g_ascii_strcasecmp (v, "8BITMIME")))
            return "501 5.5.4 Invalid BODY parameter";
        }
      else if (strcmp (p->keyword, "SMTPUTF8") == 0)
        {
          if (v != NULL)
            return "501 5.5.4 SMTPUTF8 takes no value";
          t->smtputf8 = TRUE;
        }
      else if (strcmp (p->keyword, "RET") == 0)
        {
          if (v == NULL || (g_ascii_strcasecmp (v, "FULL") && g_ascii_strcasecmp (v, "HDRS")))
            return "501 5.5.4 Invalid RET parameter";
        }
      else if (strcmp (p->keyword, "ENVID") == 0)
        {
          g_autofree char *d = v ? lmtp_xtext_decode (v) : NULL;
          if (d == NULL)
            return "501 5.5.4 Invalid ENVID parameter";
        }
      else
        return "555 5.5.4 Unsupported parameter";
    }
  return NULL;
}

static void
cmd_mail (LmtpSession *s, const char *args)
{
  LmtpPathArgs a;
  const char *why, *err;
  Txn *t;

  if (s->lhlo == NULL)
    return reply_error (s, "503 5.5.1 Send LHLO first");
  if (s->txn)
    return reply_error (s, "503 5.5.1 Nested MAIL command");
  if (!lmtp_command_parse_path (args, "FROM:", &a, &why))
    return reply_error (s, "501 5.5.4 %s", why);
  session_refresh_config (s);
  t = g_new0 (Txn, 1);
  t->config = lmtpd_config_ref (s->config);
  t->rcpts = g_ptr_array_new_with_free_func ((GDestroyNotify) deliver_recipient_free);
  if ((err = mail_params (s, &a, t)) != NULL)
    {
      reply_error (s, "%s", err);
      goto out;
    }
  if (a.path[0] != '\0')
    {
      g_autofree char *local = NULL, *domain = NULL;
      guint code;
      why = NULL;
      if (!deliver_address_parse (a.path, t->smtputf8, &local, &domain, &why) || domain == NULL)
        {
          const char *dsn = deliver_address_status (why, TRUE, &code);
          reply_error (s, "%u %s Invalid sender address: %s", code, dsn, why ? why : "no domain");
          goto out;
        }
    }
  t->sender = g_steal_pointer (&a.path);
  {
    GString *ps = g_string_new (NULL);
    for (guint i = 0; i < a.params->len; i++)
      {
        const LmtpParam *p = a.params->pdata[i];
        g_string_append_printf (ps, "%s%s%s%s", i ? " " : "", p->keyword, p->value ? "=" : "",
                                p->value ? p->value : "");
      }
    t->mail_params = g_string_free (ps, FALSE);
  }
  t->id = txn_new_id (s);
  t->started_us = g_get_real_time ();
  s->txn = g_steal_pointer (&t);
  reply (s, "250 2.1.0 OK");
out:
  txn_free (t);
  lmtp_path_args_clear (&a);
}

/* Is there anything to check for @r before answering RCPT: a quota, or a
 * service that runs at RCPT?  (Both may block, so they go to a thread.) */
static gboolean
rcpt_needs_check (const LmtpdConfig *c, const DeliverRecipient *r)
{
  const LmtpdRule *rule;

  if (r->quota_bytes || r->quota_messages)
    return TRUE;
  rule = lmtpd_config_match_rule (c, r->address);
  for (guint i = 0; rule && i < rule->services->len; i++)
    if (((const LmtpdService *) rule->services->pdata[i])->rcpt_stage)
      return TRUE;
  return FALSE;
}

static void
rcpt_accept (LmtpSession *s, DeliverRecipient *r)
{
  g_ptr_array_add (s->txn->rcpts, r);
  reply (s, "250 2.1.5 OK");
}

static void
rcpt_refuse (LmtpSession *s, const DeliverRecipient *r, const DeliverStatus *st)
{
  log_rcpt_refusal (s, r ? r->address : "", st);
  reply_status (s, st);
}

/* Back on the main loop from a RCPT check. */
static void
rcpt_checked (LmtpSession *s, Job *job)
{
  if (s->txn == job->t && !s->closed)
    {
      if (job->ok)
        {
          rcpt_accept (s, job->rcpt);
          job->rcpt = NULL;
        }
      else
        rcpt_refuse (s, job->rcpt, &job->status);
    }
  job->rcpt_check = job->rcpt != NULL; /* job_free frees it only if still ours */
  job_free (job);
  if (s->closed)
    return;
  s->mode = MODE_COMMAND;
  if (s->eof)
    {
      session_close (s);
      return;
    }
  idle_rearm (s);
  session_process (s);
}

static void
cmd_rcpt (LmtpSession *s, const char *args)
{
  Txn *t = s->txn;
  LmtpPathArgs a;
  const char *why;
  g_autofree char *local = NULL, *domain = NULL, *orcpt = NULL, *bypass = NULL;
  DeliverRecipient *r;
  DeliverStatus st = { 0 };

  if (t == NULL)
    return reply_error (s, "503 5.5.1 MAIL needed first");
  if (t->bdat)
    return reply_error (s, "503 5.5.1 RCPT not allowed after BDAT");
  if (!lmtp_command_parse_path (args, "TO:", &a, &why))
    return reply_error (s, "501 5.5.4 %s", why);
  for (guint i = 0; i < a.params->len; i++)
    {
      const LmtpParam *p = a.params->pdata[i];
      if (strcmp (p->keyword, "ORCPT") == 0 && p->value && strchr (p->value, ';')
          && (orcpt = lmtp_xtext_decode (strchr (p->value, ';') + 1)) != NULL)
        continue;
      if (strcmp (p->keyword, "NOTIFY") == 0 && p->value)
        continue;
      /* RFC 4902 3.2: bypass asked for in the dialog; policy decides */
      if (strcmp (p->keyword, "OPES-BYPASS") == 0 && p->value && (bypass = lmtp_xtext_decode (p->value)))
        continue;
      if (strcmp (p->keyword, "ORCPT") && strcmp (p->keyword, "NOTIFY") && strcmp (p->keyword, "OPES-BYPASS"))
        reply_error (s, "555 5.5.4 Unsupported parameter %s", p->keyword);
      else
        reply_error (s, "501 5.5.4 Invalid %s parameter", p->keyword);
      goto out;
    }
  if (t->rcpts->len >= t->config->max_recipients)
    {
      reply (s, "452 4.5.3 Too many recipients");
      goto out;
    }
  if (!deliver_address_parse (a.path, t->smtputf8, &local, &domain, &why))
    {
      guint code;
      const char *dsn = deliver_address_status (why, FALSE, &code);
      if (a.path[0])
        reply_error (s, "%u %s Invalid recipient address: %s", code, dsn, why);
      else
        reply_error (s, "501 5.1.3 Empty recipient address");
      goto out;
    }
  r = deliver_resolve (lmtp_server_get_context (s->server), t->config, local, domain, &st);
  if (r == NULL)
    {
      log_rcpt_refusal (s, a.path, &st);
      reply_status (s, &st);
      deliver_status_clear (&st);
      goto out;
    }
  r->orcpt = g_steal_pointer (&orcpt);
  r->bypass = g_steal_pointer (&bypass);
  if (rcpt_needs_check (t->config, r))
    {
      Job *job = job_new (s, t, r);
      job->rcpt_check = TRUE;
      job->msg.spool = NULL;
      job->size_hint = t->size_hint;
      s->mode = MODE_BUSY;
      idle_rearm (s);
      session_flush (s);
      job_push (job);
      goto out;
    }
  rcpt_accept (s, r);
out:
  lmtp_path_args_clear (&a);
}

static gboolean
data_can_start (LmtpSession *s, const char **err)
{
  if (s->txn == NULL)
    *err = "503 5.5.1 MAIL needed first";
  else if (s->txn->rcpts->len == 0)
    *err = "503 5.5.1 No valid recipients";
  else
    return TRUE;
  return FALSE;
}

static gboolean
txn_open_spool (LmtpSession *s)
{
  g_autoptr (GError) error = NULL;

  if (s->txn->spool)
    return TRUE;
  s->txn->spool = deliver_spool_new (lmtp_server_get_context (s->server), s->txn->config->spool_dir, &error);
  if (s->txn->spool == NULL)
    {
      g_warning ("%s: %s", s->log_id, error->message);
      return FALSE;
    }
  return TRUE;
}

static void
cmd_data (LmtpSession *s, const char *args)
{
  const char *err;

  if (*args)
    return reply_error (s, "501 5.5.4 DATA takes no arguments");
  if (!data_can_start (s, &err))
    return reply_error (s, "%s", err);
  if (s->txn->binarymime)
    return reply_error (s, "503 5.5.1 DATA cannot be used with BODY=BINARYMIME");
  if (s->txn->bdat)
    return reply_error (s, "503 5.5.1 DATA not allowed after BDAT");
  if (!txn_open_spool (s))
    return reply (s, "451 4.3.0 Temporary internal error");
  s->mode = MODE_DATA;
  data_phase_start (s);
  s->data_bol = TRUE;
  s->line_len = 0;
  reply (s, "354 Start mail input; end with <CRLF>.<CRLF>");
}

static void
cmd_bdat (LmtpSession *s, const char *args)
{
  guint64 size;
  gboolean last;
  const char *err = NULL;

  if (!lmtp_command_parse_bdat (args, &size, &last))
    {
      /* The chunk size is unknown, so the input cannot be followed. */
      reply (s, "501 5.5.4 Syntax: BDAT size [LAST]");
      reply (s, "421 4.5.0 %s Closing connection", s->config->hostname);
      s->close_after_flush = TRUE;
      return;
    }
  s->mode = MODE_BDAT;
  data_phase_start (s);
  s->bdat_left = size;
  s->bdat_last = last;
  s->bdat_error = NULL;
  if (!data_can_start (s, &err))
    s->bdat_error = err;
  else if (!txn_open_spool (s))
    s->bdat_error = "451 4.3.0 Temporary internal error";
  else
    s->txn->bdat = TRUE;
  if (s->bdat_error && last)
    g_clear_pointer (&s->txn, txn_free);
}

static void
cmd_rset (LmtpSession *s, const char *args)
{
  if (*args)
    return reply_error (s, "501 5.5.4 RSET takes no arguments");
  g_clear_pointer (&s->txn, txn_free);
  reply (s, "250 2.0.0 OK");
  txn_end (s);
}

/* XFORWARD and XCLIENT (Postfix's XFORWARD_README, XCLIENT_README): the
 * MTA passes on the original client's name, address and HELO, which go
 * into the Received header and to the callout services.  Only from
 * [server] xforward_hosts (checked against the real peer). */
typedef struct {
  char *name, *addr, *helo, *ident;
} Forwarded;

static void
forwarded_clear (Forwarded *f)
{
  g_clear_pointer (&f->name, g_free);
  g_clear_pointer (&f->addr, g_free);
  g_clear_pointer (&f->helo, g_free);
  g_clear_pointer (&f->ident, g_free);
}

/* Parses "ATTR=xtext ..." into @f; returns NULL or the error reply. */
static const char *
forwarded_parse (const char *args, const char *const *attrs, Forwarded *f)
{
  g_auto (GStrv) items = g_strsplit (args, " ", -1);
  gboolean any = FALSE;

  for (guint i = 0; items[i]; i++)
    {
      char *eq = strchr (items[i], '=');
      g_autofree char *value = NULL;
      gboolean known = FALSE, unavailable;
      char **slot = NULL;

      if (items[i][0] == '\0')
        continue;
      if (eq == NULL || eq == items[i])
        return "501 5.5.4 Syntax: attribute=value...";
      *eq = '\0';
      for (guint k = 0; attrs[k]; k++)
        known |= g_ascii_strcasecmp (items[i], attrs[k]) == 0;
      if (!known)
        return "501 5.5.4 Bad attribute name";
      value = lmtp_xtext_decode (eq + 1);
      if (value == NULL || value[0] == '\0')
        return "501 5.5.4 Bad attribute value";
      any = TRUE;
      unavailable = strcmp (value, "[UNAVAILABLE]") == 0 || strcmp (value, "[TEMPUNAVAIL]") == 0;
      if (g_ascii_strcasecmp (items[i], "ADDR") == 0)
        {
          const char *a = g_ascii_strncasecmp (value, "IPV6:", 5) == 0 ? value + 5 : value;
          g_autoptr (GInetAddress) ip = unavailable ? NULL : g_inet_address_new_from_string (a);
          if (!unavailable && ip == NULL)
            return "501 5.5.4 Bad address";
          g_free (f->addr);
          f->addr = ip ? g_inet_address_to_string (ip) : NULL;
          continue;
        }
      if (g_ascii_strcasecmp (items[i], "NAME") == 0)
        slot = &f->name;
      else if (g_ascii_strcasecmp (items[i], "HELO") == 0)
        slot = &f->helo;
      else if (g_ascii_strcasecmp (items[i], "IDENT") == 0)
        slot = &f->ident;
      if (slot)
        {
          g_free (*slot);
          *slot = unavailable ? NULL : deliver_sanitize (value, 255);
        }
    }
  return any ? NULL : "501 5.5.4 Syntax: attribute=value...";
}

static const char *const xforward_attrs[] = { "NAME", "ADDR", "PROTO", "HELO", "SOURCE", "IDENT", "PORT", NULL };
static const char *const xclient_attrs[] = { "NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR",
                                             "DESTPORT", NULL };

static void
cmd_xforward (LmtpSession *s, const char *args)
{
  Forwarded f = { s->xf_name, s->xf_addr, s->xf_helo, s->xf_ident };
  const char *err;

  if (!lmtpd_config_xforward_allowed (s->config, s->real_peer))
    return reply_error (s, "550 5.7.0 Error: insufficient authorization");
  if (s->txn)
    return reply_error (s, "503 5.5.1 Error: MAIL transaction in progress");
  s->xf_name = s->xf_addr = s->xf_helo = s->xf_ident = NULL;
  err = forwarded_parse (args, xforward_attrs, &f);
  s->xf_name = f.name, s->xf_addr = f.addr, s->xf_helo = f.helo, s->xf_ident = f.ident;
  if (err)
    return reply_error (s, "%s", err);
  reply (s, "250 2.0.0 Ok");
}

/* XCLIENT replaces the session's client for good and starts over with a
 * new greeting (the client sends LHLO again). */
static void
cmd_xclient (LmtpSession *s, const char *args)
{
  Forwarded f = { 0 };
  const char *err;

  if (!lmtpd_config_xforward_allowed (s->config, s->real_peer))
    return reply_error (s, "550 5.7.0 Error: insufficient authorization");
  if (s->txn)
    return reply_error (s, "503 5.5.1 Error: MAIL transaction in progress");
  err = forwarded_parse (args, xclient_attrs, &f);
  if (err)
    {
      forwarded_clear (&f);
      return reply_error (s, "%s", err);
    }
  if (f.addr)
    {
      g_free (s->peer);
      s->peer = g_steal_pointer (&f.addr);
    }
  g_free (s->client_name);
  s->client_name = g_steal_pointer (&f.name);
  g_free (s->lhlo);
  s->lhlo = g_steal_pointer (&f.helo);
  xforward_clear (s);
  forwarded_clear (&f);
  g_message ("%s: XCLIENT: client is now %s", s->log_id, s->peer);
  reply (s, "220 %s LMTP opes-lmtpd ready", s->config->hostname);
}

/* ---- STARTTLS (RFC 3207) --------------------------------------------------- */

static gboolean tls_handshake_cb (GSocket *sock, GIOCondition cond, gpointer data);

static void
tls_step (LmtpSession *s)
{
  g_autoptr (GError) error = NULL;
  LmtpTlsStatus st = lmtp_tls_handshake (s->tls, &error);

  if (st == LMTP_TLS_WANT_READ || st == LMTP_TLS_WANT_WRITE)
    {
      s->tls_source = g_socket_create_source (g_socket_connection_get_socket (s->conn),
                                              st == LMTP_TLS_WANT_READ ? G_IO_IN : G_IO_OUT, s->cancel);
      g_source_set_callback (s->tls_source, (GSourceFunc) (void (*) (void)) tls_handshake_cb, session_ref (s),
                             (GDestroyNotify) lmtp_session_unref);
      g_source_attach (s->tls_source, NULL);
      return;
    }
  if (st != LMTP_TLS_OK)
    {
      g_message ("%s: TLS handshake with %s failed: %s", s->log_id, s->peer,
                 error ? error->message : "connection closed");
      session_close (s);
      return;
    }
  {
    g_autofree char *how = lmtp_tls_describe (s->tls);
    g_message ("%s: TLS established with %s: %s", s->log_id, s->peer, how);
  }
  /* RFC 3207 4.2: everything learnt before is forgotten */
  s->tls_starting = FALSE;
  g_clear_pointer (&s->lhlo, g_free);
  g_clear_pointer (&s->txn, txn_free);
  xforward_clear (s);
  idle_rearm (s);
  session_want_read (s);
}

static gboolean
tls_handshake_cb (GSocket *sock, GIOCondition cond, gpointer data)
{
  LmtpSession *s = data;

  g_clear_pointer (&s->tls_source, g_source_unref);
  if (!s->closed)
    tls_step (s);
  return G_SOURCE_REMOVE;
}

/* Called once the 220 is on the wire. */
static void
tls_begin (LmtpSession *s)
{
  g_autoptr (GError) error = NULL;
  LmtpTlsContext *ctx = lmtp_server_get_tls (s->server);
  int fd = g_socket_get_fd (g_socket_connection_get_socket (s->conn));

  s->tls = ctx ? lmtp_tls_new (ctx, fd, &error) : NULL;
  if (s->tls == NULL)
    {
      g_warning ("%s: TLS: %s", s->log_id, error ? error->message : "no context");
      session_close (s);
      return;
    }
  tls_step (s);
}

static void
cmd_starttls (LmtpSession *s, const char *args)
{
  if (lmtp_server_get_tls (s->server) == NULL)
    return reply_error (s, "502 5.5.1 STARTTLS is not configured");
  if (*args)
    return reply_error (s, "501 5.5.4 Syntax: STARTTLS");
  if (s->tls)
    return reply_error (s, "503 5.5.1 TLS is already active");
  if (s->txn)
    return reply_error (s, "503 5.5.1 STARTTLS not allowed in a transaction");
  reply (s, "220 2.0.0 Ready to start TLS");
  /* commands pipelined behind STARTTLS are plaintext a man in the middle
   * could have added: they are dropped (CVE-2011-0411) */
  s->tls_starting = TRUE;
  /* from now on the socket's bytes are the handshake's */
  if (s->read_source)
    {
      g_source_destroy (s->read_source);
      g_clear_pointer (&s->read_source, g_source_unref);
    }
}

static void
session_command (LmtpSession *s, char *line)
{
  const char *args;
  LmtpVerb verb = lmtp_command_verb (line, &args);

  switch (verb)
    {
    case LMTP_CMD_LHLO: cmd_lhlo (s, args); break;
    case LMTP_CMD_MAIL: cmd_mail (s, args); break;
    case LMTP_CMD_RCPT: cmd_rcpt (s, args); break;
    case LMTP_CMD_DATA: cmd_data (s, args); break;
    case LMTP_CMD_BDAT: cmd_bdat (s, args); break;
    case LMTP_CMD_RSET: cmd_rset (s, args); break;
    case LMTP_CMD_NOOP: reply (s, "250 2.0.0 OK"); break;
    case LMTP_CMD_QUIT:
      reply (s, "221 2.0.0 %s Closing connection", s->config->hostname);
      s->close_after_flush = TRUE;
      break;
    case LMTP_CMD_VRFY:
      if (*args == '\0')
        reply_error (s, "501 5.5.4 Syntax: VRFY address");
      else
        reply (s, "252 2.3.3 Try RCPT instead");
      break;
    case LMTP_CMD_HELP:
      reply (s, "214 2.0.0 Commands: LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP");
      break;
    case LMTP_CMD_XFORWARD: cmd_xforward (s, args); break;
    case LMTP_CMD_XCLIENT: cmd_xclient (s, args); break;
    case LMTP_CMD_STARTTLS: cmd_starttls (s, args); break;
    case LMTP_CMD_HELO:
    case LMTP_CMD_EHLO:
      reply_error (s, "500 5.5.1 This is LMTP: use LHLO");
      break;
    case LMTP_CMD_UNKNOWN:
      reply_error (s, "500 5.5.1 Unknown command");
      break;
    }
}

/* One command line from the buffer; FALSE if more input is needed. */
static gboolean
command_feed (LmtpSession *s)
{
  char *p = s->inbuf + s->inpos;
  gsize avail = s->inlen - s->inpos;
  char *nl = memchr (p, '\n', avail);
  gsize len;

  if (nl == NULL)
    {
      if (avail > s->config->max_line_length)
        {
          s->skipping = TRUE;
          s->inpos = s->inlen;
        }
      return FALSE;
    }
  s->inpos += nl - p + 1;
  if (s->skipping || (gsize) (nl - p + 1) > s->config->max_line_length)
    {
      s->skipping = FALSE;
      reply_error (s, "500 5.5.2 Line too long");
      return TRUE;
    }
  len = nl - p;
  if (len > 0 && p[len - 1] == '\r')
    len--;
  p[len] = '\0';
  if (memchr (p, '\0', len) || memchr (p, '\r', len))
    {
      reply_error (s, "500 5.5.2 Invalid characters in command");
      return TRUE;
    }
  session_command (s, p);
  idle_rearm (s);
  return TRUE;
}

/* Parses buffered input until it runs dry, a delivery starts or the
 * replies waiting for the client pass the mark. */
static void
session_parse (LmtpSession *s)
{
  gboolean more = TRUE;

  while (more && !s->closed && !s->close_after_flush && s->mode != MODE_BUSY && !s->tls_starting
         && !output_full (s))
    {
      switch (s->mode)
        {
        case MODE_COMMAND:
          if (s->inpos == s->inlen)
            more = FALSE;
          else
            more = command_feed (s);
          break;
        case MODE_DATA:
          if (data_feed (s))
            {
              s->mode = MODE_COMMAND;
              s->data_started_us = 0;
              data_complete (s);
            }
          else
            more = FALSE;
          break;
        case MODE_BDAT:
          if (bdat_feed (s))
            bdat_complete (s);
          else
            more = FALSE;
          break;
        case MODE_BUSY:
          break;
        }
    }
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

static void
session_process (LmtpSession *s)
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
        session_flush (s); /* over TLS this may finish at once and ask to resume */
    }
  while (s->resume && !s->closed && s->inlen > 0);
  s->processing = FALSE;
  if (!s->closed)
    session_want_read (s);
}

/* ---- life cycle ---------------------------------------------------------- */

LmtpSession *
lmtp_session_new (LmtpServer *server, GSocketConnection *conn, guint64 id, const char *peer)
{
  LmtpSession *s = g_new0 (LmtpSession, 1);

  s->ref_count = 1;
  s->server = server;
  s->id = id;
  s->log_id = g_strdup_printf ("s%" G_GUINT64_FORMAT, id);
  s->peer = g_strdup (peer);
  s->real_peer = g_strdup (peer);
  s->config = lmtpd_config_ref (lmtp_server_get_config (server));
  s->conn = g_object_ref (conn);
  s->in = G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (G_IO_STREAM (conn)));
  s->out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  s->cancel = g_cancellable_new ();
  s->incap = MAX (INBUF_MIN, s->config->max_line_length + 1);
  s->inbuf = g_malloc (s->incap);
  s->outbuf = g_string_sized_new (512);
  s->wbuf = g_string_sized_new (512);
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
  idle_rearm (s);
  reply (s, "220 %s LMTP opes-lmtpd ready", s->config->hostname);
  session_flush (s);
  session_want_read (s);
}

static void
session_close (LmtpSession *s)
{
  if (s->closed)
    return;
  s->closed = TRUE;
  g_debug ("%s: disconnect %s", s->log_id, s->peer);
  if (s->read_source)
    {
      g_source_destroy (s->read_source);
      g_clear_pointer (&s->read_source, g_source_unref);
    }
  if (s->idle_source)
    {
      g_source_destroy (s->idle_source);
      g_clear_pointer (&s->idle_source, g_source_unref);
    }
  if (s->tls_source)
    {
      g_source_destroy (s->tls_source);
      g_clear_pointer (&s->tls_source, g_source_unref);
    }
  g_cancellable_cancel (s->cancel);
  g_clear_pointer (&s->tls, lmtp_tls_free);
  g_io_stream_close (G_IO_STREAM (s->conn), NULL, NULL);
  lmtp_server_session_closed (s->server, s);
}

void
lmtp_session_shutdown (LmtpSession *s)
{
  s->shutdown = TRUE;
  if (s->closed || s->close_after_flush)
    return;
  if (s->txn == NULL && s->mode == MODE_COMMAND)
    {
      reply (s, "421 4.3.2 %s Service shutting down, closing connection", s->config->hostname);
      s->close_after_flush = TRUE;
      session_flush (s);
    }
}

gsize
lmtp_session_backlog (LmtpSession *s)
{
  return s->closed ? 0 : output_pending (s);
}

void
lmtp_session_abort (LmtpSession *s)
{
  session_close (s);
}

void
lmtp_session_unref (LmtpSession *s)
{
  if (!g_atomic_int_dec_and_test (&s->ref_count))
    return;
  g_assert_true (s->closed || s->read_source == NULL);
  txn_free (s->txn);
  g_clear_object (&s->conn);
  g_clear_object (&s->cancel);
  lmtpd_config_unref (s->config);
  g_string_free (s->outbuf, TRUE);
  g_string_free (s->wbuf, TRUE);
  g_free (s->inbuf);
  g_free (s->log_id);
  g_free (s->peer);
  g_free (s->real_peer);
  g_free (s->client_name);
  g_free (s->lhlo);
  xforward_clear (s);
  g_free (s);
}
