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

/* Called by a session once its connection is closed. */
void lmtp_server_session_closed (LmtpServer *server, LmtpSession *s);
/* The duplicate journal, or NULL when disabled. */
struct DeliverDedupe *lmtp_server_get_dedupe (LmtpServer *server);
