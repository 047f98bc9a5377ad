/* lmtpd.h - the LMTP server library: command parsing (pure, tested from
 * case tables) and the server that owns listeners and sessions.
 */
#pragma once

#include <gio/gio.h>

#include "lmtpd-conf.h"

G_BEGIN_DECLS

/* ---- commands (lmtp-command.c) ----------------------------------------- */

typedef enum {
  LMTP_CMD_UNKNOWN,
  LMTP_CMD_LHLO,
  LMTP_CMD_HELO,
  LMTP_CMD_EHLO,
  LMTP_CMD_MAIL,
  LMTP_CMD_RCPT,
  LMTP_CMD_DATA,
  LMTP_CMD_BDAT,
  LMTP_CMD_RSET,
  LMTP_CMD_NOOP,
  LMTP_CMD_QUIT,
  LMTP_CMD_VRFY,
  LMTP_CMD_HELP,
  LMTP_CMD_XFORWARD,
  LMTP_CMD_XCLIENT,
  LMTP_CMD_STARTTLS,
} LmtpVerb;

/* Identifies the verb of a command line (without CRLF) and points *args at
 * what follows the verb and its space ("" if nothing). */
LmtpVerb lmtp_command_verb (const char *line, const char **args);

typedef struct {
  char *keyword;  /* uppercased */
  char *value;    /* NULL if the parameter has no '=' */
} LmtpParam;

typedef struct {
  char *path;       /* between <>, source route removed; "" for <> */
  GPtrArray *params; /* of LmtpParam* */
} LmtpPathArgs;

/* Parses "FROM:<path> params" (prefix "FROM:") or "TO:<path> params".
 * A space after the colon is tolerated.  On error returns FALSE and sets
 * *why to a static reason. */
gboolean lmtp_command_parse_path (const char *args, const char *prefix,
                                  LmtpPathArgs *out, const char **why);
void lmtp_path_args_clear (LmtpPathArgs *a);
const LmtpParam *lmtp_path_args_find (const LmtpPathArgs *a, const char *keyword);

/* MAIL parameters (RFC 1870 SIZE, RFC 6152/3030 BODY, RFC 6531 SMTPUTF8,
 * RFC 3461 RET and ENVID). */
typedef struct {
  guint64 size;        /* SIZE=, 0 if not given */
  gboolean binarymime; /* BODY=BINARYMIME */
  gboolean smtputf8;
} LmtpMailParams;

/* Checks the parameters of a MAIL command in order: returns NULL, or the
 * reply line for the first bad one.  @max_size: 0 for no limit. */
const char *lmtp_command_mail_params (const LmtpPathArgs *a, guint64 max_size, LmtpMailParams *out);
/* The parameters as given, "KEY=value KEY", for the log and the services. */
char *lmtp_command_params_text (const LmtpPathArgs *a);

/* RCPT parameters: RFC 3461 ORCPT and NOTIFY, RFC 4902 OPES-BYPASS. */
typedef struct {
  char *orcpt;  /* ORCPT's address, decoded; NULL if none */
  char *bypass; /* OPES-BYPASS, decoded; NULL if none */
  char *text;   /* all of them as given, for a proxied RCPT; NULL if not set */
} LmtpRcptParams;

typedef enum {
  LMTP_PARAM_OK,
  LMTP_PARAM_INVALID,      /* a known keyword with a bad value */
  LMTP_PARAM_UNSUPPORTED,  /* an unknown keyword */
} LmtpParamResult;

/* Stops at the first bad parameter and points *bad at its keyword. */
LmtpParamResult lmtp_command_rcpt_params (const LmtpPathArgs *a, LmtpRcptParams *out, const char **bad);
void lmtp_rcpt_params_clear (LmtpRcptParams *p);

/* XFORWARD and XCLIENT attributes (Postfix's XFORWARD_README,
 * XCLIENT_README): the original client's name, address, HELO and the
 * MTA's queue id.  [UNAVAILABLE] and [TEMPUNAVAIL] unset one. */
typedef struct {
  char *name, *addr, *helo, *ident;
} LmtpForwarded;

/* Parses "ATTR=xtext ..." of @verb (LMTP_CMD_XFORWARD or LMTP_CMD_XCLIENT)
 * into @f, on top of what it holds; returns NULL or the error reply (what
 * was parsed before the error stays in @f). */
const char *lmtp_command_parse_forwarded (const char *args, LmtpVerb verb, LmtpForwarded *f);
void lmtp_forwarded_clear (LmtpForwarded *f);

/* "BDAT <size> [LAST]".  Returns FALSE for bad syntax. */
gboolean lmtp_command_parse_bdat (const char *args, guint64 *size, gboolean *last);

/* Decodes RFC 3461 xtext ("+2B" -> "+").  Returns NULL if malformed. */
char *lmtp_xtext_decode (const char *s);

/* ---- server (lmtp-server.c) -------------------------------------------- */

typedef struct LmtpServer LmtpServer;
struct DeliverContext;   /* deliver.h */

/* Takes a reference to @config and to the delivery context @ctx its
 * sessions deliver with.  Binds every listener in it or fails. */
LmtpServer *lmtp_server_new (LmtpdConfig *config, struct DeliverContext *ctx, GError **error);
/* Opens the duplicate journal (in the delivery context) and starts
 * accepting.  Called after privileges are dropped, so the journal belongs
 * to the mail user. */
gboolean lmtp_server_start (LmtpServer *server, GError **error);
/* Swaps in a new configuration for new transactions. */
void lmtp_server_set_config (LmtpServer *server, LmtpdConfig *config);
LmtpdConfig *lmtp_server_get_config (LmtpServer *server);
/* Stops accepting; open sessions finish their transaction (or are closed
 * after shutdown_timeout); @done runs once the last one is gone. */
void lmtp_server_shutdown (LmtpServer *server, GSourceFunc done, gpointer data);
gboolean lmtp_server_is_shutting_down (LmtpServer *server);
/* Serves a connection accepted elsewhere (inetd style, tests, the fuzz
 * target), with the same limits as one from a listener. */
void lmtp_server_adopt (LmtpServer *server, GSocketConnection *conn);
/* Sessions open now. */
guint lmtp_server_n_sessions (LmtpServer *server);
void lmtp_server_free (LmtpServer *server);

/* ---- metrics (lmtp-metrics.c) ------------------------------------------- */

typedef enum {
  LMTP_REFUSED_SESSIONS,
  LMTP_REFUSED_DESCRIPTORS,
  LMTP_REFUSED_MEMORY,
  LMTP_REFUSED_N
} LmtpRefused;

void lmtp_metrics_session (int delta);          /* +1 opened, -1 closed */
void lmtp_metrics_refused (LmtpRefused why);
void lmtp_metrics_transaction (guint64 bytes);  /* data received */
void lmtp_metrics_delivery (guint code, guint64 delay_us, guint64 callout_us);
/* A recipient refused at RCPT (by the user map, a quota or a service). */
void lmtp_metrics_rcpt_refused (guint code);
/* One call to a callout service (from any thread): its verdict, NULL if
 * the call failed. */
void lmtp_metrics_callout (const char *service, gint64 us, const char *verdict);
/* a shadow service's would-be verdict for one recipient */
void lmtp_metrics_shadow (const char *service, const char *verdict);
/* A user lookup (a DeliverDirectoryObserver). */
void lmtp_metrics_directory (const char *backend, gboolean cached, gboolean failed, gint64 us);
/* A Sieve script that failed at delivery (a DeliverSieveObserver). */
void lmtp_metrics_sieve_error (const char *kind);
/* Prometheus text format 0.0.4. */
char *lmtp_metrics_render (void);
/* One line for the log (SIGUSR1). */
char *lmtp_metrics_summary (void);
/* Serves GET /metrics over HTTP on @spec ("inet:HOST:PORT" or "unix:PATH"),
 * without authentication: a libsoup server (util_metrics_http_new). */
GObject *lmtp_metrics_listen (const char *spec, GError **error);

/* ---- Postfix lookups (lmtp-socketmap.c, lmtp-policy.c, lmtp-maps.c) ---- */

/* Postfix's socketmap_table(5): one request or reply is a netstring
 * "LEN:DATA,"; Postfix bounds both to 100000 bytes. */
#define LMTP_SOCKETMAP_MAX 100000

typedef enum {
  LMTP_NETSTRING_OK,    /* *payload, *plen and *used are set */
  LMTP_NETSTRING_MORE,  /* a netstring so far: read more */
  LMTP_NETSTRING_BAD,   /* malformed, or its length is over @max */
} LmtpNetstring;

/* Decodes the netstring at the start of @buf[0..@len). */
LmtpNetstring lmtp_netstring_decode (const char *buf, gsize len, gsize max, const char **payload, gsize *plen,
                                     gsize *used);
void lmtp_netstring_append (GString *out, const char *data, gsize len);
/* Splits a socketmap request "NAME KEY" (both non-empty, no NUL).  FALSE
 * if it is not one. */
gboolean lmtp_socketmap_split (const char *req, gsize len, char **name, char **key);
/* The reply payload ("OK value", "NOTFOUND ", "TEMP reason", "PERM
 * reason") for a request, from what delivery would do at RCPT. */
char *lmtp_socketmap_answer (struct DeliverContext *ctx, const LmtpdConfig *config, const char *req, gsize len);

/* Postfix's SMTPD_POLICY_README: "name=value" lines ending with an empty
 * line.  Only what lmtpd answers from is kept. */
#define LMTP_POLICY_LINE_MAX 4096
#define LMTP_POLICY_ATTRS_MAX 256

typedef struct {
  char *protocol_state, *recipient;
  guint64 size;
  guint n_attrs;
} LmtpPolicyRequest;

typedef enum {
  LMTP_POLICY_MORE,  /* an attribute taken */
  LMTP_POLICY_DONE,  /* the empty line: answer */
  LMTP_POLICY_BAD,   /* not "name=value", or too many */
} LmtpPolicyLine;

/* One line, without its "\n" (a trailing "\r" is ignored). */
LmtpPolicyLine lmtp_policy_feed (LmtpPolicyRequest *req, const char *line, gsize len);
void lmtp_policy_request_clear (LmtpPolicyRequest *req);
/* "action=CODE ENHANCED TEXT" (no newline) for a refusal, control
 * characters in @text replaced; "action=DUNNO" for code 0 or 2xx. */
char *lmtp_policy_action (guint code, const char *enhanced, const char *text);
/* The action for a whole request: resolution and quota at RCPT. */
char *lmtp_policy_answer (struct DeliverContext *ctx, const LmtpdConfig *config, const LmtpPolicyRequest *req);

/* A listener for one of them, answering from worker threads. */
typedef enum { LMTP_MAPS_SOCKETMAP, LMTP_MAPS_POLICY } LmtpMapsKind;
typedef struct LmtpMaps LmtpMaps;

/* Binds @spec ("inet:HOST:PORT" or "unix:PATH") and starts serving;
 * lookups use @ctx and @config (a reference to each is taken). */
LmtpMaps *lmtp_maps_listen (LmtpMapsKind kind, const char *spec, LmtpdConfig *config,
                            struct DeliverContext *ctx, GError **error);
/* A reload: new requests use @config. */
void lmtp_maps_set_config (LmtpMaps *maps, LmtpdConfig *config);
void lmtp_maps_free (LmtpMaps *maps);

G_END_DECLS
