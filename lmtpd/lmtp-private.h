/* lmtp-private.h - between the server (listeners, session registry) and
 * the sessions it owns.  Not installed, not for the tests.
 */
#pragma once

#include "lmtpd.h"

typedef struct LmtpSession LmtpSession;

/* Takes a reference to @conn.  @peer: "192.0.2.1" or "local". */
LmtpSession *lmtp_session_new (LmtpServer *server, GSocketConnection *conn,
                               guint64 id, const char *peer);
void lmtp_session_start (LmtpSession *s);
/* Graceful: 421 once the current transaction is over. */
void lmtp_session_shutdown (LmtpSession *s);
/* Now: close the connection, deliveries in flight finish first. */
void lmtp_session_abort (LmtpSession *s);
void lmtp_session_unref (LmtpSession *s);
/* Bytes of replies queued or being written to the client. */
gsize lmtp_session_backlog (LmtpSession *s);

/* Called by a session once its connection is closed. */
void lmtp_server_session_closed (LmtpServer *server, LmtpSession *s);
/* The delivery context the sessions deliver with. */
struct DeliverContext *lmtp_server_get_context (LmtpServer *server);

/* STARTTLS (lmtp-tls.c) */
typedef struct LmtpTlsContext LmtpTlsContext;
typedef struct LmtpTls LmtpTls;
typedef enum {
  LMTP_TLS_OK,
  LMTP_TLS_WANT_READ,
  LMTP_TLS_WANT_WRITE,
  LMTP_TLS_CLOSED,
  LMTP_TLS_ERROR,
} LmtpTlsStatus;

LmtpTlsContext *lmtp_tls_context_new (const char *cert_file, const char *key_file, const char *client_ca_file,
                                      GError **error);
void lmtp_tls_context_free (LmtpTlsContext *c);
LmtpTls *lmtp_tls_new (LmtpTlsContext *c, int fd, GError **error);
LmtpTlsStatus lmtp_tls_handshake (LmtpTls *t, GError **error);
LmtpTlsStatus lmtp_tls_read (LmtpTls *t, void *buf, gsize len, gsize *got, GError **error);
LmtpTlsStatus lmtp_tls_write (LmtpTls *t, const void *buf, gsize len, gsize *written, GError **error);
gboolean lmtp_tls_pending (LmtpTls *t);
char *lmtp_tls_describe (LmtpTls *t);
void lmtp_tls_free (LmtpTls *t);
/* The server's TLS context for STARTTLS, or NULL when no certificate is set. */
LmtpTlsContext *lmtp_server_get_tls (LmtpServer *server);
