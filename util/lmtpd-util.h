/* lmtpd-util.h - the generic library under every part: TLS over a
 * non-blocking descriptor (server and client side), dropping root, making
 * outside strings safe for a log line, and the GMime helpers the parts
 * share.
 *
 * Nothing here knows about mail delivery, LMTP or OCP: like Postfix's
 * src/util beside src/global, this is what any of the daemons would need.
 * No OpenSSL type leaves util/.
 */
#pragma once

#include <gio/gio.h>
#include <gmime/gmime.h>

G_BEGIN_DECLS

#define UTIL_ERROR (util_error_quark ())
GQuark util_error_quark (void);

/* ---- TLS (util-tls.c) ---- */

typedef struct UtilTlsContext UtilTlsContext;
typedef struct UtilTls UtilTls;

typedef enum {
  UTIL_TLS_OK,
  UTIL_TLS_WANT_READ,
  UTIL_TLS_WANT_WRITE,
  UTIL_TLS_CLOSED,
  UTIL_TLS_ERROR,
} UtilTlsStatus;

/* A server context: TLS 1.2 or later, no compression or renegotiation, the
 * server's cipher order.  With @client_ca_file, a client certificate is
 * asked for and one that is sent must verify against it. */
UtilTlsContext *util_tls_server_context_new (const char *cert_file, const char *key_file,
                                             const char *client_ca_file, GError **error);
/* A client context: TLS 1.2 or later, the peer verified against @ca_file
 * (or the system store); @cert_file/@key_file: an optional client
 * certificate (the key defaults to @cert_file). */
UtilTlsContext *util_tls_client_context_new (const char *ca_file, const char *cert_file,
                                             const char *key_file, GError **error);
void util_tls_context_free (UtilTlsContext *ctx);

/* A session on a connected non-blocking socket.  Each session holds its
 * own reference to the context, which may be freed right after. */
UtilTls *util_tls_server_new (UtilTlsContext *ctx, int fd, GError **error);
/* @server_name: the host name or IP address the certificate must name. */
UtilTls *util_tls_client_new (UtilTlsContext *ctx, int fd, const char *server_name, GError **error);

/* One step of the handshake; then reads and writes.  WANT_READ and
 * WANT_WRITE say which readiness of the socket to wait for. */
UtilTlsStatus util_tls_handshake (UtilTls *tls, GError **error);
UtilTlsStatus util_tls_read (UtilTls *tls, void *buf, gsize len, gsize *got, GError **error);
UtilTlsStatus util_tls_write (UtilTls *tls, const void *buf, gsize len, gsize *written, GError **error);
/* Decrypted bytes buffered and ready to read without the socket. */
gboolean util_tls_pending (UtilTls *tls);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384[, client certificate CN=x (verified)]" */
char *util_tls_describe (UtilTls *tls);
/* Sends close_notify if it can without waiting, then frees. */
void util_tls_free (UtilTls *tls);

/* ---- privileges (util-privs.c) ---- */

/* Switches for good to @user when running as root (groups, gid, uid) and
 * checks root cannot be regained.  Refuses root itself and a NULL @user
 * while root; does nothing when not root. */
gboolean util_drop_privileges (const char *user, GError **error);

/* getpid (), asked of the kernel once per process (glibc no longer caches
 * it, and a delivery named the process three times: its log line, its
 * transaction id, its Maildir file name).  A forked child asks again. */
int util_pid (void);

/* ---- strings from outside (util-sanitize.c) ---- */

/* At most @max bytes of @s (then "...") with every control character
 * (C0, DEL, C1) and every invalid UTF-8 byte as '?': safe for one log
 * line.  NULL gives "". */
char *util_sanitize (const char *s, gsize max);
/* The same without a length bound, keeping line feeds and tabs: for a
 * multi-line record such as a user's script log. */
char *util_sanitize_record (const char *s);

/* ---- HTTP (util-http.c, libsoup 3) ---- */

/* A listening stream socket bound to @addr (bind it as root, serve it
 * after dropping privileges); NULL with @error. */
GSocket *util_http_bind (GSocketAddress *addr, GError **error);

/* How a server is served (util_http_serve). */
typedef struct {
  guint max_connections;      /* open at once; one more gets 503 and is closed */
  guint timeout;              /* seconds a client may stop sending */
  GTlsCertificate *cert;      /* HTTPS with this certificate, or NULL */
  GTlsDatabase *client_ca;    /* with cert: client certificates requested (any
                               * passes the handshake: the server judges them) */
} UtilHttpLimits;

/* Serves @server (a SoupServer) on the listening @sock (from
 * util_http_bind): connections are accepted here, bounded, timed out and
 * wrapped in TLS, then handed to the server.  Stops with
 * util_http_server_free. */
gboolean util_http_serve (GObject *server, GSocket *sock, const UtilHttpLimits *limits, GError **error);
/* The client certificate of the TLS connection from @remote (a request's
 * remote address) to @server, or NULL. */
GTlsCertificate *util_http_peer_certificate (GObject *server, GSocketAddress *remote);

/* The page's text, newly allocated; called on the main loop. */
typedef char *(*UtilMetricsRender) (void);

/* A libsoup server (a SoupServer, handed out as a GObject so that this
 * header needs no libsoup) serving render()'s Prometheus text at GET (or
 * HEAD) /metrics and / on @addr, without authentication; other methods
 * get 405, other paths 404.  *@bound (may be NULL) gets the address
 * bound, with the port chosen. */
GObject *util_metrics_http_new (GSocketAddress *addr, UtilMetricsRender render, GSocketAddress **bound,
                                GError **error);
/* Answers @msg (a SoupServerMessage *) with render()'s text, or 405: for
 * a server that authenticated the request itself. */
void util_metrics_http_answer (gpointer msg, UtilMetricsRender render);
/* Stops listening, closes the connections and drops @server (may be NULL). */
void util_http_server_free (GObject *server);

/* ---- GMime (util-gmime.c) ---- */

/* Parses a message header (no body needed) held in @header; NULL if GMime
 * finds no message in it or @header is NULL. */
GMimeMessage *util_gmime_parse_header (GBytes *header);
/* The message's readable text as UTF-8, at most about @max bytes: its
 * text/plain parts, and its text/html parts turned into text (tags,
 * scripts and styles dropped), attachments skipped.  Never markup to
 * render: the caller escapes it. */
char *util_gmime_text_view (GMimeMessage *message, gsize max);

/* the g_autoptr cleanups GMime 3 does not declare (every GMime object is a
 * GObject, so g_object_unref frees it) */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeStream, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeParser, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeMessage, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeObject, g_object_unref)
/* A Maildir file by the name it was renamed to: still there, or moved
 * between new/ and cur/ by a reader (which appends ":2,FLAGS"). */
gboolean util_maildir_file_exists (const char *path);

/* A GSocketClient that asks no proxy resolver (util-net.c). */
GSocketClient *util_socket_client_new (void);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeFormatOptions, g_mime_format_options_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeParserOptions, g_mime_parser_options_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (InternetAddressList, g_object_unref)

G_END_DECLS
