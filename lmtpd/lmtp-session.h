/* lmtp-session.h - inside one LMTP session: the state that its files
 * share.  lmtp-session.c (modes, timers, input, life cycle) at the
 * bottom; above it lmtp-delivery.c (recipients, the delivery threads,
 * their replies), lmtp-data.c (message data) and lmtp-commands.c (the
 * command table), each calling only the files below it.
 * Not installed.
 */
#pragma once

#include "deliver.h"
#include "lmtp-io.h"
#include "lmtp-private.h"
#include "lmtp-reply.h"

typedef enum {
  MODE_COMMAND,
  MODE_DATA,
  MODE_BDAT,
  MODE_BUSY, /* delivering or checking a recipient; input waits */
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
  struct LmtpProxy *proxy;  /* recipients other nodes own (lmtp-proxy.c), or NULL */
} Txn;

struct LmtpSession {
  gint ref_count;
  const LmtpSessionHost *host;
  gpointer server;
  guint64 id;
  char *log_id;
  char *peer;
  char *lhlo;
  LmtpForwarded xf;         /* XFORWARD, for the next transaction */
  char *real_peer;          /* the connection's own peer, for authorization */
  char *client_name;        /* from XCLIENT NAME, or NULL */
  gboolean tls_starting;    /* 220 to STARTTLS queued: handshake once it is out */
  LmtpdConfig *config;      /* for limits outside a transaction */
  LmtpIo *io;
  GSource *idle_source;

  char *inbuf;
  gsize incap, inlen, inpos;
  gboolean skipping;        /* discarding the rest of an overlong line */
  gboolean eof;

  gboolean processing;      /* in session_process: a write done in it resumes nothing */
  gboolean resume;          /* output drained while processing: go round again */
  gboolean close_after_flush;
  gboolean closed;
  guint let_go_id;            /* the idle that hands a closed session back to the host */
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

/* ---- lmtp-session.c */
LmtpSession *lmtp_session_ref (LmtpSession *s);
void lmtp_session_reply (LmtpSession *s, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
/* A protocol error: counted, and too many of them end the session. */
void lmtp_session_reply_error (LmtpSession *s, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
void lmtp_session_flush (LmtpSession *s);
/* Parses what is buffered, flushes replies, reads more. */
void lmtp_session_process (LmtpSession *s);
void lmtp_session_want_read (LmtpSession *s);
void lmtp_session_close (LmtpSession *s);
/* Pushes the idle timer back after progress (or stops it while busy). */
void lmtp_session_rearm (LmtpSession *s);
/* A delivery or a RCPT check is over: commands go on (or the session
 * ends, if the client went away meanwhile). */
void lmtp_session_resume_commands (LmtpSession *s);
/* New transactions use the configuration in force when they begin. */
void lmtp_session_refresh_config (LmtpSession *s);
/* The transaction is over: back to commands, XFORWARD forgotten. */
void lmtp_session_txn_end (LmtpSession *s);

/* ---- the protocol the session speaks (lmtp_protocol, lmtp-commands.c);
 * lmtp-session.c calls it only through this table */
struct LmtpSessionProtocol {
  /* input in the session's mode; each returns FALSE if more is needed */
  gboolean (*command_feed) (LmtpSession *s); /* one command line */
  gboolean (*data_feed) (LmtpSession *s);    /* TRUE at the end of the data */
  gboolean (*bdat_feed) (LmtpSession *s);    /* TRUE at the end of the chunk */
  void (*data_end) (LmtpSession *s);
  void (*bdat_end) (LmtpSession *s);
  /* STARTTLS: the 220 is on the wire; then the handshake's end */
  void (*tls_begin) (LmtpSession *s);
  void (*tls_done) (LmtpSession *s, const char *why);
  /* the protocol's transaction state; NULL is fine */
  void (*txn_free) (Txn *t);
};

/* ---- lmtp-data.c */
void lmtp_data_start (LmtpSession *s);
/* TRUE at the end of the data (DATA) or of the chunk (BDAT). */
gboolean lmtp_data_feed (LmtpSession *s);
gboolean lmtp_bdat_feed (LmtpSession *s);
void lmtp_bdat_complete (LmtpSession *s);

/* ---- lmtp-delivery.c: every call into the deliver/ pipeline */
void lmtp_delivery_txn_free (Txn *t);
/* Opens the transaction's spool; FALSE (logged) if it cannot be. */
gboolean lmtp_delivery_open_spool (LmtpSession *s);
/* All data is in: answer every recipient (RFC 2033 4.2). */
void lmtp_delivery_data_complete (LmtpSession *s);
/* A recipient address that parsed: resolve it, check it, answer RCPT. */
void lmtp_delivery_rcpt (LmtpSession *s, const char *path, const char *local, const char *domain,
                         LmtpRcptParams *params);
