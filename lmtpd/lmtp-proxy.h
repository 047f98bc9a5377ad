/* lmtp-proxy.h - per-recipient LMTP proxying to the node that owns a
 * recipient (lmtp-proxy.c over the client connection of
 * lmtp-proxy-io.c).  Main loop only.  Not installed.
 */
#pragma once

#include "lmtp-session.h"
#include "lmtp-nodes.h"

/* The XFORWARD IDENT a proxying node sends: "lmtpd-proxy:NODE:TXNID".  A
 * transaction that carries it came from another node and is never
 * proxied again. */
#define LMTP_PROXY_IDENT_PREFIX "lmtpd-proxy:"

/* ---- lmtp-proxy-io.c: one LMTP client connection ---- */
typedef struct ProxyIo ProxyIo;

typedef struct {
  guint code;              /* 200..599 */
  char enhanced[16];       /* "2.1.5", or made up from the code */
  char *text;              /* the last line's text, sanitised */
  gboolean chunking;       /* an LHLO reply that offers CHUNKING */
  gboolean xforward;       /* ... and XFORWARD */
} ProxyReply;

/* @reply NULL: the connection failed (@why says how); called on the main
 * loop, never after proxy_io_close. */
typedef void (*ProxyIoDone) (gpointer owner, const ProxyReply *reply, const char *why);

ProxyIo *proxy_io_new (const char *address, const char *log_id, ProxyIoDone done, gpointer owner);
/* Connects and reads the greeting. */
void proxy_io_connect (ProxyIo *io);
/* Sends @line (CRLF added) and reads one reply. */
void proxy_io_command (ProxyIo *io, const char *line);
/* Reads one more reply (LMTP: one per recipient after the data). */
void proxy_io_read_reply (ProxyIo *io);
/* Sends "BDAT n LAST" and the spool's bytes (LF as CRLF), read from @fd
 * a piece at a time, then reads the first reply. */
void proxy_io_send_spool (ProxyIo *io, int fd, guint64 stored, guint64 lines);
/* Stops: nothing is called back any more. */
void proxy_io_close (ProxyIo *io);
/* An idle connection to @address from an earlier transaction (the caller
 * sends RSET and, if that fails, connects anew), or NULL. */
ProxyIo *proxy_io_pool_take (const char *address, ProxyIoDone done, gpointer owner);
/* Keeps @io, between transactions and in step, for the next one (at most
 * a few per backend, for 30 s); takes it. */
void proxy_io_pool_put (ProxyIo *io);

/* ---- lmtp-proxy.c: the transaction's side ---- */
typedef struct LmtpProxy LmtpProxy;

/* Where the proxy's answers go (lmtp-delivery.c gives them, so that the
 * two files do not call each other in a loop). */
typedef struct {
  /* a backend took the RCPT: @r joins the transaction */
  void (*accepted) (LmtpSession *s, DeliverRecipient *r, const ProxyReply *reply);
  /* refused at RCPT (by the backend or here); @r is freed */
  void (*refused) (LmtpSession *s, DeliverRecipient *r, const DeliverStatus *st);
  /* an accepted one's result after the data, once each */
  void (*delivered) (LmtpSession *s, const DeliverRecipient *r, const DeliverStatus *st, const char *node);
} LmtpProxyResults;

void lmtp_proxy_free (LmtpProxy *p);

/* A recipient resolved at RCPT: TRUE if it is not this node's, and then
 * the proxy answers the RCPT through @results (maybe later: the session
 * waits, busy) and takes @r. */
gboolean lmtp_proxy_rcpt (LmtpSession *s, DeliverRecipient *r, const char *params,
                          const LmtpProxyResults *results);
/* Whether @r was accepted by a backend (the proxy delivers it). */
gboolean lmtp_proxy_owns (LmtpSession *s, const DeliverRecipient *r);
/* All data is in: sends it to each backend; every proxied recipient is
 * answered through results->delivered, each once. */
void lmtp_proxy_data (LmtpSession *s);
