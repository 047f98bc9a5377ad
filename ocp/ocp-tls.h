/* ocp-tls.h - TLS for processor connections (OpenSSL), inside ocp/ only.
 * No OpenSSL type escapes this header.
 */
#pragma once

#include <glib.h>

typedef struct OcpTls OcpTls;

typedef enum {
  OCP_TLS_OK,
  OCP_TLS_WANT_READ,
  OCP_TLS_WANT_WRITE,
  OCP_TLS_CLOSED,
  OCP_TLS_ERROR,
} OcpTlsStatus;

/* Starts a client session on a connected non-blocking socket.  The server
 * certificate is verified against @ca_file (or the system store) and
 * @server_name (a host name or an IP address).  @cert_file/@key_file: an
 * optional client certificate. */
OcpTls *ocp_tls_new (int fd, const char *server_name, const char *ca_file, const char *cert_file,
                     const char *key_file, GError **error);
/* One step of the handshake. */
OcpTlsStatus ocp_tls_handshake (OcpTls *tls, GError **error);
OcpTlsStatus ocp_tls_write (OcpTls *tls, const void *buf, gsize len, gsize *written, GError **error);
OcpTlsStatus ocp_tls_read (OcpTls *tls, void *buf, gsize len, gsize *got, GError **error);
/* Decrypted bytes buffered and ready to read. */
gboolean ocp_tls_pending (OcpTls *tls);
void ocp_tls_free (OcpTls *tls);
