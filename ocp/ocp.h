/* ocp.h - the OPES Callout Protocol (OCP Core, RFC 4037) and our LMTP
 * profile: the message codec, the processor side (client), and the callout
 * server side.  Knows nothing of LMTP sessions, mailboxes or Sieve: the
 * envelope goes in as plain strings, the verdict comes out as plain values.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define OCP_ERROR (ocp_error_quark ())
GQuark ocp_error_quark (void);

typedef enum {
  OCP_ERROR_PARSE,       /* invalid OCP syntax (result 400) */
  OCP_ERROR_LIMIT,       /* a size or nesting limit was exceeded */
  OCP_ERROR_PROTOCOL,    /* a valid message that breaks the rules */
  OCP_ERROR_TIMEOUT,     /* connect, negotiation, response or transaction deadline */
  OCP_ERROR_UNAVAILABLE, /* no callout server could be reached */
  OCP_ERROR_CLOSED,      /* the peer closed the connection or sent CE */
  OCP_ERROR_REFUSED,     /* the server refused the transaction (TE/AME 400) */
} OcpErrorCode;

/* Our profile: the feature URIs negotiated with NO/NR (docs/ocp-lmtp-profile.md).
 * Version 2 adds a verdict per recipient; the processor offers both, so a
 * server that knows only version 1 still works as before. */
#define OCP_LMTP_PROFILE "urn:x-opes-lmtpd:ocp:lmtp:1"
#define OCP_LMTP_PROFILE_2 "urn:x-opes-lmtpd:ocp:lmtp:2"

/* 2, 1, or 0 for a URI that is not our profile. */
guint ocp_profile_version (const char *uri);

/* ---- values and messages (ocp-codec.c) --------------------------------- */

typedef enum {
  OCP_ATOM,
  OCP_LIST,
  OCP_STRUCT,
} OcpValueKind;

typedef struct OcpValue OcpValue;
typedef struct OcpNamed OcpNamed;

struct OcpValue {
  OcpValueKind kind;
  char *atom;          /* OCP_ATOM: the octets, NUL-terminated for convenience */
  gsize atom_len;
  GPtrArray *items;    /* OCP_LIST items, OCP_STRUCT anonymous members (OcpValue*) */
  GPtrArray *named;    /* OCP_STRUCT named members (OcpNamed*) */
};

struct OcpNamed {
  char *name;
  GPtrArray *values;   /* OcpValue*; one, except "Kept: offset size" */
};

typedef struct {
  char *name;
  GPtrArray *anon;     /* OcpValue* */
  GPtrArray *named;    /* OcpNamed* */
  GBytes *payload;     /* NULL if none */
} OcpMessage;

OcpValue *ocp_atom_new (const char *s);
OcpValue *ocp_atom_new_len (const char *s, gsize len);
OcpValue *ocp_atom_new_uint (guint64 v);
OcpValue *ocp_list_new (void);
OcpValue *ocp_struct_new (void);
void ocp_value_free (OcpValue *v);
/* Appends @item (owned) to a list's items or a structure's anonymous members. */
OcpValue *ocp_value_add (OcpValue *container, OcpValue *item);
/* Adds a named member (owned value) to a structure. */
OcpValue *ocp_value_add_named (OcpValue *structure, const char *name, OcpValue *value);
/* A structure's named member, or NULL. */
const OcpValue *ocp_value_get_named (const OcpValue *structure, const char *name);
/* An atom as a number; FALSE if not a valid dec-number. */
gboolean ocp_value_get_uint (const OcpValue *v, guint64 *out);
const char *ocp_value_get_atom (const OcpValue *v);
/* A result, {code} or {code reason} (RFC 4037 3.5), as CE, AME and TE carry. */
OcpValue *ocp_result_new (guint code, const char *reason);

OcpMessage *ocp_message_new (const char *name);
void ocp_message_free (OcpMessage *m);
OcpMessage *ocp_message_add (OcpMessage *m, OcpValue *anon);
OcpMessage *ocp_message_add_uint (OcpMessage *m, guint64 v);
OcpMessage *ocp_message_set (OcpMessage *m, const char *name, OcpValue *value);
OcpMessage *ocp_message_set_payload (OcpMessage *m, GBytes *payload);
const OcpValue *ocp_message_anon (const OcpMessage *m, guint i);
const OcpNamed *ocp_message_named (const OcpMessage *m, const char *name);
const OcpValue *ocp_message_get (const OcpMessage *m, const char *name);
gboolean ocp_message_anon_uint (const OcpMessage *m, guint i, guint64 *out);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OcpMessage, ocp_message_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OcpValue, ocp_value_free)

/* Serializes per RFC 4037 3.1 (atoms bare when they can be, else quoted). */
void ocp_message_write (const OcpMessage *m, GString *out);
GBytes *ocp_message_to_bytes (const OcpMessage *m);

typedef struct {
  gsize max_depth;        /* nesting of lists and structures */
  gsize max_value;        /* one atom */
  gsize max_payload;      /* one DUM payload */
  gsize max_message;      /* a whole message without payload */
} OcpLimits;

extern const OcpLimits ocp_default_limits;

typedef enum {
  OCP_PARSE_OK,
  OCP_PARSE_MORE,         /* incomplete: feed more bytes */
  OCP_PARSE_ERROR,
} OcpParseResult;

/* Parses one message from the front of @buf.  On OK sets *out and
 * *consumed.  On MORE, *consumed is a hint of the bytes needed in total
 * (0 if unknown).  On ERROR sets @error (OCP_ERROR_PARSE or _LIMIT). */
OcpParseResult ocp_message_parse (const char *buf, gsize len, const OcpLimits *limits,
                                  OcpMessage **out, gsize *consumed, GError **error);

G_END_DECLS

G_BEGIN_DECLS

/* ---- the LMTP profile (ocp-profile.c, docs/ocp-lmtp-profile.md) -------- */

typedef enum {
  OCP_PART_ENVELOPE = 1 << 0,   /* metadata only, on AMS named parameters */
  OCP_PART_HEADER = 1 << 1,     /* AM-Part: message-header */
  OCP_PART_BODY = 1 << 2,       /* AM-Part: message-body */
  OCP_PARTS_ALL = 7,
} OcpParts;

/* "envelope,message-header" <-> bits; FALSE on an unknown name. */
gboolean ocp_parts_parse (const char *list, guint *out);
OcpValue *ocp_parts_to_value (guint parts);
guint ocp_parts_from_value (const OcpValue *list);

/* What the processor sends: the envelope as plain strings, the content as
 * ranges of a spool file (read, never loaded whole). */
typedef struct {
  const char *stage;            /* "rcpt" (metadata only) or "data" */
  const char *transaction_id;
  const char *client_address;
  const char *client_name;      /* LHLO */
  const char *mail_from;        /* without <>; "" = null sender */
  const char *mail_params;      /* e.g. "SIZE=123 BODY=8BITMIME" or NULL */
  const char *const *rcpt_to;   /* NULL-terminated: several when shared */
  const char *const *orcpt;     /* NULL or parallel to rcpt_to (may hold NULLs) */
  guint64 message_size;         /* 0 = unknown */
  const char *bypass;           /* bypass request (service URIs or "*"), or NULL */
  const char *prior_verdicts;   /* "URI=verdict, ..." of services run before, or NULL */
  int fd;                       /* spool, or -1 at the rcpt stage */
  guint64 header_len;           /* bytes 0..header_len of fd: the header, blank line included */
  guint64 body_len;             /* then the body */
  GHashTable *const *rcpt_data; /* NULL or parallel to rcpt_to: a recipient's settings, name -> value
                                 * (a user directory's spam threshold ...), sent as Recipient-Data */
} OcpRequest;

typedef enum {
  OCP_VERDICT_ACCEPT,
  OCP_VERDICT_REJECT,
  OCP_VERDICT_TEMPFAIL,
  OCP_VERDICT_DISCARD,
  OCP_VERDICT_QUARANTINE,
  OCP_VERDICT_REDIRECT,
} OcpVerdictKind;

const char *ocp_verdict_name (OcpVerdictKind v);
gboolean ocp_verdict_parse (const char *name, OcpVerdictKind *out);

/* What the callout server decided, as plain values. */
typedef struct {
  OcpVerdictKind verdict;
  guint reply_code;             /* reject/tempfail: the service's reply, or 0 */
  char *reply_text;             /* "5.7.1 text" or NULL */
  char *folder;                 /* quarantine (or a delivery folder) */
  char *redirect;               /* new recipient address */
  GPtrArray *add_headers;       /* "Name: value" strings */
  GPtrArray *remove_headers;    /* header names */
  char *subject_tag;
  char *flags;                  /* Maildir flag letters, e.g. "FS" */
  char *service_id;             /* for the trace, or NULL */
  char *score;                  /* a classifier's score, decimal, or NULL */
  char *threshold;              /* the score from which it counts as positive */
  GPtrArray *labels;            /* classifications ("spam", "virus", "virus-scanned"), or NULL */
  GBytes *header;               /* adapted header part, or NULL if unchanged */
  int body_fd;                  /* adapted body part in an unlinked file, or -1 if unchanged */
  guint64 body_len;
  GPtrArray *recipients;        /* OcpRecipientVerdict*: profile 2's verdict per recipient, or NULL */
  char *server;                 /* ocp_client_call: the endpoint that answered, or for a failed
                                 * call the last one tried; NULL if none was */
} OcpVerdict;

/* One recipient's own verdict (profile 2): a whole verdict, which replaces
 * the transaction's one for that recipient.  verdict.header is its own
 * adapted header (NULL: the transaction's); the body is always the
 * transaction's, so verdict.body_fd stays -1. */
typedef struct {
  char *address;
  OcpVerdict verdict;
} OcpRecipientVerdict;

void ocp_verdict_init (OcpVerdict *v);
void ocp_verdict_clear (OcpVerdict *v);
/* Reads the verdict parameters of a server's AMS into @v. */
gboolean ocp_verdict_from_message (OcpVerdict *v, const OcpMessage *ams, GError **error);
/* Writes @v's verdict parameters onto an AMS (not the per-recipient ones). */
void ocp_verdict_to_message (const OcpVerdict *v, OcpMessage *ams);
/* Writes @v's per-recipient verdicts as Recipient-Verdicts (profile 2 only). */
void ocp_verdict_recipients_to_message (const OcpVerdict *v, OcpMessage *ams);
/* A deep copy of @src into @dst (descriptors duplicated); sections too. */
void ocp_verdict_copy (OcpVerdict *dst, const OcpVerdict *src);
/* The section of @v for @address (case-insensitive), or NULL. */
const OcpRecipientVerdict *ocp_verdict_for_recipient (const OcpVerdict *v, const char *address);
/* Adds a section for @address (a copy of @rv's parameters and header). */
void ocp_verdict_add_recipient (OcpVerdict *v, const char *address, const OcpVerdict *rv);

/* Envelope metadata as AMS named parameters, and back. */
void ocp_request_to_message (const OcpRequest *r, OcpMessage *ams);
/* name -> value (strings; Rcpt-To joined with ", "; a recipient's
 * Recipient-Data as ocp_recipient_data_key() -> value) */
GHashTable *ocp_envelope_from_message (const OcpMessage *ams);
/* "Recipient-Data:ADDRESS:NAME" with the address in lower case. */
char *ocp_recipient_data_key (const char *address, const char *name);

/* ---- the processor side (ocp-client.c) --------------------------------- */

typedef struct {
  char *name;                   /* for logs and the trace */
  char *uri;                    /* service URI sent in SGC */
  char **servers;               /* endpoints "inet:HOST:PORT" or "unix:PATH", primary first */
  guint parts;                  /* parts offered (OcpParts) */
  guint connect_timeout_ms;
  guint response_timeout_ms;    /* first response after our AME */
  guint timeout_ms;             /* whole transaction, connecting included */
  guint max_connections;        /* per endpoint */
  gboolean tls;                 /* TLS (OpenSSL) to the callout server */
  char *tls_ca_file;            /* CA to verify the server with; NULL: system store */
  char *tls_cert_file;          /* client certificate (PEM), or NULL */
  char *tls_key_file;           /* its key (PEM); NULL: in the certificate file */
  char *tls_server_name;        /* name to verify; NULL: the endpoint's host */
} OcpServiceConfig;

typedef struct OcpClient OcpClient;

OcpClient *ocp_client_new (void);
/* Ends every pooled connection with CE (at shutdown); the client stays
 * usable and opens new connections when called again. */
void ocp_client_close (OcpClient *client);
void ocp_client_free (OcpClient *client);
/* One transaction with a callout server: picks a pooled connection (or
 * opens one, failing over to the next endpoint), negotiates the profile,
 * sends the request, and returns the verdict and adapted parts.  Blocking,
 * thread-safe; never takes longer than @service->timeout_ms.  Clear @out
 * after a failure too (it names the server that failed). */
gboolean ocp_client_call (OcpClient *client, const OcpServiceConfig *service,
                          const OcpRequest *request, OcpVerdict *out, GError **error);

G_END_DECLS

G_BEGIN_DECLS

/* ---- the callout server side (ocp-server.c) ----------------------------- */

typedef struct OcpServer OcpServer;
typedef struct OcpServerTxn OcpServerTxn;

/* Called on the server's main context once a transaction's original
 * message is complete (AME received).  The handler answers now or later
 * with ocp_server_txn_respond(); it holds a reference until then. */
typedef void (*OcpServerHandler) (OcpServerTxn *txn, gpointer user_data);

/* @parts: what this service wants (the envelope always comes). */
OcpServer *ocp_server_new (guint parts, OcpServerHandler handler, gpointer user_data);
/* "inet:HOST:PORT" (port 0: any; *out_port gets it) or "unix:PATH". */
gboolean ocp_server_listen (OcpServer *server, const char *endpoint, guint16 *out_port, GError **error);
/* Connections beyond @max_connections get CE 400 at once; one that has not
 * sent CS and NO after @handshake_timeout seconds, or has been idle (no
 * input, no transaction) for @idle_timeout seconds, is ended.  0 = no
 * limit.  Defaults: 1024 connections, 30 s, 600 s. */
void ocp_server_set_limits (OcpServer *server, guint max_connections, guint handshake_timeout,
                            guint idle_timeout);
void ocp_server_free (OcpServer *server);
/* Octets sent to processors so far, on all connections. */
guint64 ocp_server_bytes_sent (OcpServer *server);

OcpServerTxn *ocp_server_txn_ref (OcpServerTxn *txn);
void ocp_server_txn_unref (OcpServerTxn *txn);
/* name -> value of the envelope (Rcpt-To and Orcpt joined with ", ") */
GHashTable *ocp_server_txn_envelope (OcpServerTxn *txn);
/* The URI of the service group the transaction runs in. */
const char *ocp_server_txn_service (OcpServerTxn *txn);
/* The original header part, or NULL if it was not sent. */
GBytes *ocp_server_txn_header (OcpServerTxn *txn);
/* The original body part when it was small enough to be held in memory
 * (up to 64 KB), or NULL: not sent, or in a file (ocp_server_txn_body_fd). */
GBytes *ocp_server_txn_body (OcpServerTxn *txn);
/* The original body part in an unlinked file (-1 if not sent), and its size.
 * A body held in memory is written to a file for this call. */
int ocp_server_txn_body_fd (OcpServerTxn *txn, guint64 *out_len);
/* Sends the verdict (AMS), the adapted parts and AME, then TE.  A part
 * given is sent by DUM; a kept part not given is echoed by DUY, so an
 * unchanged body never crosses the wire back.  @new_body_fd (or -1) is
 * read from its current offset to its end.  Does nothing if the
 * connection is gone. */
void ocp_server_txn_respond (OcpServerTxn *txn, const OcpVerdict *verdict, GBytes *new_header,
                             int new_body_fd);
/* Drops the connection the transaction came on, without a word (tests). */
void ocp_server_txn_abort_connection (OcpServerTxn *txn);
/* Sends raw bytes on the transaction's connection (tests of bad input). */
void ocp_server_txn_send_raw (OcpServerTxn *txn, const char *bytes, gsize len);

G_END_DECLS
