/* lmtp-io.h - one connection's bytes, plain or under TLS, behind one
 * read/write interface (lmtp-io.c).  Not installed.
 */
#pragma once

#include <gio/gio.h>

#include "lmtp-private.h"

typedef struct LmtpIo LmtpIo;

/* What the connection's owner (the session) is called back for.  Every
 * call is made on the main loop, with a reference to the owner held. */
typedef struct {
  /* Where the next bytes read go and how many fit there; NULL stops
   * reading until lmtp_io_want_read is called again. */
  char *(*read_buffer) (gpointer owner, gsize *room);
  /* @n bytes went into that buffer; 0 means the input ended (or failed). */
  void (*read_done) (gpointer owner, gsize n);
  /* Whether input is wanted now; lmtp_io_want_read asks. */
  gboolean (*may_read) (gpointer owner);
  /* A write of the queued output began: its deadline starts. */
  void (*write_begun) (gpointer owner);
  /* The write is over: all of it out (@ok) or the connection failed. */
  void (*write_done) (gpointer owner, gboolean ok);
  /* STARTTLS: the handshake is over; @why is NULL if it succeeded. */
  void (*handshake_done) (gpointer owner, const char *why);
  gpointer (*ref) (gpointer owner);
  void (*unref) (gpointer owner);
} LmtpIoHandler;

/* Takes a reference to @conn; @log_id is borrowed for the log lines. */
LmtpIo *lmtp_io_new (GSocketConnection *conn, const char *log_id, const LmtpIoHandler *handler,
                     gpointer owner);
void lmtp_io_free (LmtpIo *io);
/* Stops everything in flight and closes the connection. */
void lmtp_io_close (LmtpIo *io);

/* ---- input */
/* Watches for input if the owner wants some and there is no watch yet. */
void lmtp_io_want_read (LmtpIo *io);
void lmtp_io_stop_reading (LmtpIo *io);
gboolean lmtp_io_reading (LmtpIo *io);

/* ---- output */
/* Where replies are queued until lmtp_io_flush. */
GString *lmtp_io_queue (LmtpIo *io);
/* Writes the queue out, piece by piece; write_done says when it is.
 * Only when nothing is being written and the queue is not empty. */
void lmtp_io_flush (LmtpIo *io);
gboolean lmtp_io_writing (LmtpIo *io);
/* Bytes queued or being written. */
gsize lmtp_io_pending (LmtpIo *io);
/* Over the high-water mark: input waits until the client reads. */
gboolean lmtp_io_output_full (LmtpIo *io);
/* Monotonic time the current write last moved (or began). */
gint64 lmtp_io_write_progress (LmtpIo *io);

/* ---- TLS */
/* Starts the server side handshake on the connection; handshake_done
 * follows (maybe at once).  FALSE if TLS cannot even begin. */
gboolean lmtp_io_start_tls (LmtpIo *io, UtilTlsContext *ctx, GError **error);
gboolean lmtp_io_tls_active (LmtpIo *io);
char *lmtp_io_tls_describe (LmtpIo *io);
