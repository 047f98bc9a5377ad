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

/* ---- strings from outside (util-sanitize.c) ---- */

/* At most @max bytes of @s (then "...") with every control character
 * (C0, DEL, C1) and every invalid UTF-8 byte as '?': safe for one log
 * line.  NULL gives "". */
char *util_sanitize (const char *s, gsize max);
/* The same without a length bound, keeping line feeds and tabs: for a
 * multi-line record such as a user's script log. */
char *util_sanitize_record (const char *s);

/* ---- the metrics page (util-http.c) ---- */

/* The page's text, newly allocated; called from a worker thread. */
typedef char *(*UtilMetricsRender) (void);

/* Serves render()'s Prometheus text at GET (or HEAD) /metrics and / on
 * @addr, one request per connection in a worker thread (a request head of
 * at most 8 KiB within 5 s); other methods get 405, other paths 404.
 * *@bound (may be NULL) gets the address bound, with the port chosen. */
GSocketService *util_metrics_http_new (GSocketAddress *addr, UtilMetricsRender render, GSocketAddress **bound,
                                       GError **error);

/* ---- GMime (util-gmime.c) ---- */

/* Parses a message header (no body needed) held in @header; NULL if GMime
 * finds no message in it or @header is NULL. */
GMimeMessage *util_gmime_parse_header (GBytes *header);

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
