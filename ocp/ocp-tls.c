/* ocp-tls.c - TLS to callout servers with OpenSSL.
 *
 * Safe defaults: TLS 1.2 or later, the peer certificate verified against
 * the configured CA file (or the system store) and the configured server
 * name (host name or IP address).  Every failure drains OpenSSL's error
 * queue into the GError, as OpenSMTPD's ssl.c does.
 */
#include "config.h"

#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ocp.h"
#include "ocp-tls.h"

struct OcpTls {
  SSL_CTX *ctx;
  SSL *ssl;
};

static void
set_ssl_error (GError **error, const char *what)
{
  GString *s = g_string_new (what);
  unsigned long e;
  char buf[256];

  while ((e = ERR_get_error ()) != 0)
    {
      ERR_error_string_n (e, buf, sizeof buf);
      g_string_append_printf (s, ": %s", buf);
    }
  g_set_error_literal (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE, s->str);
  g_string_free (s, TRUE);
}

void
ocp_tls_free (OcpTls *t)
{
  if (t == NULL)
    return;
  if (t->ssl)
    {
      SSL_shutdown (t->ssl); /* best effort close_notify */
      SSL_free (t->ssl);
    }
  SSL_CTX_free (t->ctx);
  g_free (t);
}

OcpTls *
ocp_tls_new (int fd, const char *server_name, const char *ca_file, const char *cert_file,
             const char *key_file, GError **error)
{
  OcpTls *t = g_new0 (OcpTls, 1);
  X509_VERIFY_PARAM *param;
  gboolean is_ip;

  ERR_clear_error ();
  t->ctx = SSL_CTX_new (TLS_client_method ());
  if (t->ctx == NULL)
    goto fail;
  SSL_CTX_set_min_proto_version (t->ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify (t->ctx, SSL_VERIFY_PEER, NULL);
  if (ca_file ? SSL_CTX_load_verify_locations (t->ctx, ca_file, NULL) != 1
              : SSL_CTX_set_default_verify_paths (t->ctx) != 1)
    goto fail;
  if (cert_file && (SSL_CTX_use_certificate_chain_file (t->ctx, cert_file) != 1
                    || SSL_CTX_use_PrivateKey_file (t->ctx, key_file ? key_file : cert_file, SSL_FILETYPE_PEM) != 1
                    || SSL_CTX_check_private_key (t->ctx) != 1))
    goto fail;
  t->ssl = SSL_new (t->ctx);
  if (t->ssl == NULL || SSL_set_fd (t->ssl, fd) != 1)
    goto fail;
  param = SSL_get0_param (t->ssl);
  is_ip = g_hostname_is_ip_address (server_name);
  if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc (param, server_name) != 1
            : (SSL_set1_host (t->ssl, server_name) != 1 || SSL_set_tlsext_host_name (t->ssl, server_name) != 1))
    goto fail;
  return t;
fail:
  set_ssl_error (error, "TLS setup failed");
  ocp_tls_free (t);
  return NULL;
}

static OcpTlsStatus
status_of (OcpTls *t, int r, const char *what, GError **error)
{
  switch (SSL_get_error (t->ssl, r))
    {
    case SSL_ERROR_WANT_READ: return OCP_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return OCP_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return OCP_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error () == 0)
        return OCP_TLS_CLOSED;
      G_GNUC_FALLTHROUGH;
    default:
      {
        long v = SSL_get_verify_result (t->ssl);
        if (v != X509_V_OK)
          {
            g_set_error (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "%s: certificate: %s", what,
                         X509_verify_cert_error_string (v));
            ERR_clear_error ();
          }
        else
          set_ssl_error (error, what);
        return OCP_TLS_ERROR;
      }
    }
}

OcpTlsStatus
ocp_tls_handshake (OcpTls *t, GError **error)
{
  int r;
  ERR_clear_error ();
  r = SSL_connect (t->ssl);
  return r == 1 ? OCP_TLS_OK : status_of (t, r, "TLS handshake failed", error);
}

OcpTlsStatus
ocp_tls_write (OcpTls *t, const void *buf, gsize len, gsize *written, GError **error)
{
  size_t n = 0;
  ERR_clear_error ();
  if (SSL_write_ex (t->ssl, buf, len, &n) == 1)
    {
      *written = n;
      return OCP_TLS_OK;
    }
  return status_of (t, 0, "TLS write failed", error);
}

OcpTlsStatus
ocp_tls_read (OcpTls *t, void *buf, gsize len, gsize *got, GError **error)
{
  size_t n = 0;
  ERR_clear_error ();
  if (SSL_read_ex (t->ssl, buf, len, &n) == 1)
    {
      *got = n;
      return OCP_TLS_OK;
    }
  return status_of (t, 0, "TLS read failed", error);
}

gboolean
ocp_tls_pending (OcpTls *t)
{
  return SSL_pending (t->ssl) > 0;
}
