/* lmtp-private.h - between the server (listeners, session registry, the
 * delivery threads) and the sessions it owns.
 * Not installed, not for the tests.
 */
#pragma once

#include "lmtpd.h"
#include "lmtpd-util.h"

typedef struct LmtpSession LmtpSession;
struct DeliverContext;
struct LmtpSessionProtocol;

/* The LMTP protocol (lmtp-commands.c) that sessions speak. */
extern const struct LmtpSessionProtocol lmtp_protocol;

/* What a session needs from the server that owns it: the server calls
 * the session, the session only calls back through this, so the two
 * files do not depend on each other in a loop. */
typedef struct {
  /* the configuration in force now (new transactions take it) */
  LmtpdConfig *(*config) (gpointer server);
  /* STARTTLS, or NULL when no certificate is set */
  UtilTlsContext *(*tls) (gpointer server);
  /* the delivery context (journal, callouts, caches) sessions deliver with */
  struct DeliverContext *(*context) (gpointer server);
  /* the delivery threads; they run lmtp_delivery_run */
  GThreadPool *(*pool) (gpointer server);
  /* the session's connection is closed */
  void (*closed) (gpointer server, LmtpSession *s);
  /* what the session speaks: &lmtp_protocol */
  const struct LmtpSessionProtocol *protocol;
} LmtpSessionHost;

/* Takes a reference to @conn.  @peer: "192.0.2.1" or "local". */
LmtpSession *lmtp_session_new (const LmtpSessionHost *host, gpointer server, GSocketConnection *conn,
                               guint64 id, const char *peer);
void lmtp_session_start (LmtpSession *s);
/* Graceful: 421 once the current transaction is over. */
void lmtp_session_shutdown (LmtpSession *s);
/* Now: close the connection, deliveries in flight finish first. */
void lmtp_session_abort (LmtpSession *s);
void lmtp_session_unref (LmtpSession *s);
/* Bytes of replies queued or being written to the client. */
gsize lmtp_session_backlog (LmtpSession *s);

/* The delivery threads' work function (lmtp-delivery.c), for the pool
 * the server makes. */
void lmtp_delivery_run (gpointer job, gpointer unused);

/* Finished jobs back from the delivery threads to the main loop
 * (lmtp-handback.c): one queue and one eventfd, one wakeup per batch. */
typedef struct LmtpHandback LmtpHandback;
LmtpHandback *lmtp_handback_new (void (*run) (gpointer item));
void lmtp_handback_push (LmtpHandback *h, gpointer item);
