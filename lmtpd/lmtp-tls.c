/* lmtp-tls.c - STARTTLS (RFC 3207) for LMTP sessions with OpenSSL.
 *
 * The session keeps its non-blocking GSocket; once STARTTLS is answered,
 * an SSL object runs on the socket's descriptor and the session reads and
 * writes through these calls instead of the GIO streams.  No OpenSSL type
 * leaves this file.
 */
#include "config.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lmtp-private.h"

struct LmtpTlsContext {
  SSL_CTX *ctx;
};

struct LmtpTls {
  SSL *ssl;
};

static void
set_ssl_error (GError **error, const char *what)
{
  unsigned long e = ERR_get_error ();
  char buf[256];

  ERR_error_string_n (e, buf, sizeof buf);
  ERR_clear_error ();
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s", what, e ? buf : "failed");
}

LmtpTlsContext *
lmtp_tls_context_new (const char *cert_file, const char *key_file, const char *client_ca_file, GError **error)
{
  LmtpTlsContext *c = g_new0 (LmtpTlsContext, 1);

  c->ctx = SSL_CTX_new (TLS_server_method ());
  if (c->ctx == NULL)
    {
      set_ssl_error (error, "TLS");
      g_free (c);
      return NULL;
    }
  /* modern defaults: TLS 1.2 or later, OpenSSL's default ciphers, no
   * renegotiation, no compression, server's cipher order */
  SSL_CTX_set_min_proto_version (c->ctx, TLS1_2_VERSION);
  SSL_CTX_set_options (c->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode (c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file (c->ctx, cert_file) != 1)
    {
      set_ssl_error (error, cert_file);
      lmtp_tls_context_free (c);
      return NULL;
    }
  if (SSL_CTX_use_PrivateKey_file (c->ctx, key_file, SSL_FILETYPE_PEM) != 1
      || SSL_CTX_check_private_key (c->ctx) != 1)
    {
      set_ssl_error (error, key_file);
      lmtp_tls_context_free (c);
      return NULL;
    }
  if (client_ca_file)
    {
      /* ask for a client certificate and verify one that is sent */
      if (SSL_CTX_load_verify_locations (c->ctx, client_ca_file, NULL) != 1)
        {
          set_ssl_error (error, client_ca_file);
          lmtp_tls_context_free (c);
          return NULL;
        }
      SSL_CTX_set_verify (c->ctx, SSL_VERIFY_PEER, NULL);
    }
  return c;
}

void
lmtp_tls_context_free (LmtpTlsContext *c)
{
  if (c == NULL)
    return;
  SSL_CTX_free (c->ctx);
  g_free (c);
}

LmtpTls *
lmtp_tls_new (LmtpTlsContext *c, int fd, GError **error)
{
  LmtpTls *t = g_new0 (LmtpTls, 1);

  t->ssl = SSL_new (c->ctx);
  if (t->ssl == NULL || SSL_set_fd (t->ssl, fd) != 1)
    {
      set_ssl_error (error, "TLS");
      lmtp_tls_free (t);
      return NULL;
    }
  SSL_set_accept_state (t->ssl);
  return t;
}

static LmtpTlsStatus
status_of (LmtpTls *t, int r, const char *what, GError **error)
{
  switch (SSL_get_error (t->ssl, r))
    {
    case SSL_ERROR_WANT_READ: return LMTP_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return LMTP_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return LMTP_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error () == 0)
        return LMTP_TLS_CLOSED;
      G_GNUC_FALLTHROUGH;
    default:
      set_ssl_error (error, what);
      return LMTP_TLS_ERROR;
    }
}

LmtpTlsStatus
lmtp_tls_handshake (LmtpTls *t, GError **error)
{
  int r = SSL_do_handshake (t->ssl);
  return r == 1 ? LMTP_TLS_OK : status_of (t, r, "TLS handshake", error);
}

LmtpTlsStatus
lmtp_tls_read (LmtpTls *t, void *buf, gsize len, gsize *got, GError **error)
{
  size_t n = 0;
  int r = SSL_read_ex (t->ssl, buf, len, &n);

  *got = n;
  return r == 1 ? LMTP_TLS_OK : status_of (t, r, "TLS read", error);
}

LmtpTlsStatus
lmtp_tls_write (LmtpTls *t, const void *buf, gsize len, gsize *written, GError **error)
{
  size_t n = 0;
  int r = SSL_write_ex (t->ssl, buf, len, &n);

  *written = n;
  return r == 1 ? LMTP_TLS_OK : status_of (t, r, "TLS write", error);
}

gboolean
lmtp_tls_pending (LmtpTls *t)
{
  return SSL_pending (t->ssl) > 0;
}

char *
lmtp_tls_describe (LmtpTls *t)
{
  X509 *peer = SSL_get1_peer_certificate (t->ssl);
  char *out;

  if (peer)
    {
      char cn[256] = "";
      X509_NAME_get_text_by_NID (X509_get_subject_name (peer), NID_commonName, cn, sizeof cn);
      out = g_strdup_printf ("%s %s, client certificate CN=%s (%s)", SSL_get_version (t->ssl),
                             SSL_get_cipher_name (t->ssl), cn,
                             SSL_get_verify_result (t->ssl) == X509_V_OK ? "verified" : "not verified");
      X509_free (peer);
    }
  else
    out = g_strdup_printf ("%s %s", SSL_get_version (t->ssl), SSL_get_cipher_name (t->ssl));
  return out;
}

void
lmtp_tls_free (LmtpTls *t)
{
  if (t == NULL)
    return;
  if (t->ssl)
    {
      SSL_shutdown (t->ssl); /* best effort close_notify; never waits */
      SSL_free (t->ssl);
    }
  g_free (t);
}
