/* ocp-client-private.h - what the files of the processor side share,
 * inside ocp/ only.
 *
 *   ocp-client.c          the client: pools of connections, endpoints
 *                         marked down, one call with fail-over
 *   ocp-client-open.c     opening a connection: connect, TLS, CS/NO/NR, SGC
 *   ocp-client-io.c       one connection's bounded reads and writes
 *   ocp-client-reader.c   reading for every transaction (leader/follower),
 *                         connection-scope answers, the end of a connection
 *   ocp-client-txn.c      one transaction: send the original, one handler
 *                         per message received, take the adapted message
 *   ocp-client-adapted.c  the adapted message as it arrives (DUM, DUY)
 */
#pragma once

#include "ocp.h"
#include "lmtpd-util.h"

G_BEGIN_DECLS

#define OCP_CLIENT_CHUNK (64 * 1024)

/* One connection to a callout server, shared by up to a few transactions.
 * Reference-counted: the pool holds one, each transaction on it another. */
typedef struct {
  gint refs;
  GSocket *sock;
  UtilTls *tls;
  char *key;
  guint parts;
  guint version;        /* of our profile, as the server chose in NR */
  GMutex ssl_lock;      /* OpenSSL sessions are not for two threads at once */
  GMutex wlock;         /* one writer at a time: messages never interleave */
  GMutex lock;          /* what follows */
  GCond cond;
  guint64 next_xid;     /* the last xid used: each TS names a higher one */
  gboolean negotiated;  /* the server accepted our profile */
  gboolean te_silent;   /* the server once sent AME without its TE */
  guint active;         /* transactions in flight (under the client's lock) */
  gboolean reading;     /* some thread is reading for everyone */
  gboolean dead;
  char *dead_why;
  GHashTable *inbox;    /* xid -> GQueue of OcpMessage* */
  GByteArray *in;       /* read, not yet parsed (by the reader only) */
} OcpConn;

/* ocp-client-io.c: life and bounded I/O of one connection.  Every wait
 * ends at @deadline with OCP_ERROR_TIMEOUT. */
OcpConn *ocp_conn_new (const char *key);
OcpConn *ocp_conn_ref (OcpConn *c);
void ocp_conn_unref (OcpConn *c);
gboolean ocp_conn_wait_io (GSocket *sock, GIOCondition cond, gint64 deadline, GError **error);
gboolean ocp_conn_tls_wait (OcpConn *c, UtilTlsStatus st, gint64 deadline, GError **error);
gboolean ocp_conn_tls_failed (GError **error);
/* Writes whole messages; the caller holds wlock. */
gboolean ocp_conn_send_all (OcpConn *c, const char *p, gsize len, gint64 deadline, GError **error);
/* Small messages of one transaction go out in one write, through @out. */
gboolean ocp_conn_flush (OcpConn *c, GString *out, gint64 deadline, GError **error);
/* Appends @m (taken) to @out, flushing once a chunk is full. */
gboolean ocp_conn_queue (OcpConn *c, GString *out, OcpMessage *m, gint64 deadline, GError **error);
/* Sends @m (taken) at once. */
gboolean ocp_conn_send (OcpConn *c, OcpMessage *m, gint64 deadline, GError **error);
/* Reads one chunk into c->in (only the reader calls this). */
gboolean ocp_conn_read_some (OcpConn *c, gint64 deadline, gboolean nowait, GError **error);
/* The next complete message in c->in, or NULL (error set if invalid). */
OcpMessage *ocp_conn_parse_next (OcpConn *c, GError **error);
/* Before the connection is shared (negotiation): the next message. */
OcpMessage *ocp_conn_recv (OcpConn *c, gint64 deadline, GError **error);

/* ocp-client-reader.c: input for all transactions, and the end. */
/* Answers the messages any agent must answer at any time (PQ, AQ, NO,
 * CE).  FALSE when the connection is over. */
gboolean ocp_conn_answer_common (OcpConn *c, const OcpMessage *m, gint64 deadline, GError **error);
/* Ends the connection with CE @code: every transaction on it fails. */
void ocp_conn_end (OcpConn *c, guint code, const char *why);
/* The connection broke: CE 400. */
void ocp_conn_kill (OcpConn *c, const char *why);
/* The next message for transaction @xid, reading for everyone when nobody
 * else is.  NULL with @error on timeout or a dead connection. */
OcpMessage *ocp_conn_recv_for (OcpConn *c, guint64 xid, gint64 deadline, GError **error);
/* Reads whatever has arrived, without waiting, if nobody else is reading. */
void ocp_conn_pump (OcpConn *c);
/* The next message already in @xid's inbox, or NULL. */
OcpMessage *ocp_conn_inbox_pop (OcpConn *c, guint64 xid);
/* Takes a message named @name out of @xid's inbox, if there is one. */
gboolean ocp_conn_inbox_take (OcpConn *c, guint64 xid, const char *name, gboolean first_only);

/* ocp-client-open.c */
/* A new connection to @endpoint with our profile negotiated and the
 * service group of @svc created; NULL with @error. */
OcpConn *ocp_conn_open (const OcpServiceConfig *svc, const char *endpoint, const char *key, gint64 deadline,
                        GError **error);

/* ocp-client-txn.c */
/* One transaction on @c: the verdict and adapted parts into @out. */
gboolean ocp_conn_transact (OcpConn *c, const OcpServiceConfig *svc, const OcpRequest *req, OcpVerdict *out,
                            gint64 deadline, GError **error);

/* ocp-client-adapted.c: the adapted message as the server sends it back. */
typedef struct {
  const OcpRequest *req;
  guint64 org_header;   /* original flow: header at [0, org_header) */
  guint64 org_body;     /* body at [org_header, org_header + org_body) */
  GString *header;      /* adapted header, or NULL */
  int body_fd;          /* adapted body, or -1 */
  guint64 body_len;
  gboolean body_whole_duy; /* the adapted body is exactly the original one */
  gboolean body_data;      /* anything else was sent for the body */
} OcpAdapted;

void ocp_adapted_init (OcpAdapted *a, const OcpRequest *req);
void ocp_adapted_clear (OcpAdapted *a);
/* DUM data of the adapted header or body. */
gboolean ocp_adapted_header (OcpAdapted *a, const char *p, gsize n, GError **error);
gboolean ocp_adapted_body (OcpAdapted *a, const char *p, gsize n, GError **error);
/* DUY: original octets [off, off+n) of the original flow. */
gboolean ocp_adapted_duy (OcpAdapted *a, guint64 off, guint64 n, GError **error);
/* Moves the adapted parts into @out, none if they are an echo of the
 * original. */
void ocp_adapted_take (OcpAdapted *a, OcpVerdict *out);

G_END_DECLS
