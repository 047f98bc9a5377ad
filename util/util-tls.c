/* util-tls.c - TLS with OpenSSL on a non-blocking descriptor, for both
 * sides: lmtpd's STARTTLS (server) and the connections to callout servers
 * (client).
 *
 * One rule for OpenSSL's thread-local error queue, as OpenSMTPD's ssl.c
 * keeps it: cleared before every call, so SSL_get_error() judges only
 * that call, and drained into the GError after a failure, so nothing
 * stale is left for the next session on this thread.
 */
#include "config.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lmtpd-util.h"

struct UtilTlsContext {
  SSL_CTX *ctx;
};

struct UtilTls {
  SSL *ssl;
};

G_DEFINE_QUARK (util-error-quark, util_error)

/* "@what: first error: second error" from everything in the queue. */
static void
set_ssl_error (GError **error, const char *what)
{
  GString *s = g_string_new (what);
  unsigned long e;
  char buf[256];
  gboolean any = FALSE;

  while ((e = ERR_get_error ()) != 0)
    {
      ERR_error_string_n (e, buf, sizeof buf);
      g_string_append_printf (s, ": %s", buf);
      any = TRUE;
    }
  if (!any)
    g_string_append (s, ": failed");
  g_set_error_literal (error, UTIL_ERROR, 0, s->str);
  g_string_free (s, TRUE);
}

static UtilTlsContext *
context_fail (UtilTlsContext *c, const char *what, GError **error)
{
  set_ssl_error (error, what);
  util_tls_context_free (c);
  return NULL;
}

static UtilTlsContext *
context_new (const SSL_METHOD *method, GError **error)
{
  UtilTlsContext *c = g_new0 (UtilTlsContext, 1);

  ERR_clear_error ();
  c->ctx = SSL_CTX_new (method);
  if (c->ctx == NULL)
    return context_fail (c, "TLS setup failed", error);
  SSL_CTX_set_min_proto_version (c->ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode (c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return c;
}

UtilTlsContext *
util_tls_server_context_new (const char *cert_file, const char *key_file, const char *client_ca_file,
                             GError **error)
{
  UtilTlsContext *c = context_new (TLS_server_method (), error);

  if (c == NULL)
    return NULL;
  SSL_CTX_set_options (c->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file (c->ctx, cert_file) != 1)
    return context_fail (c, cert_file, error);
  if (SSL_CTX_use_PrivateKey_file (c->ctx, key_file, SSL_FILETYPE_PEM) != 1
      || SSL_CTX_check_private_key (c->ctx) != 1)
    return context_fail (c, key_file, error);
  if (client_ca_file)
    {
      /* ask for a client certificate and verify one that is sent */
      if (SSL_CTX_load_verify_locations (c->ctx, client_ca_file, NULL) != 1)
        return context_fail (c, client_ca_file, error);
      SSL_CTX_set_verify (c->ctx, SSL_VERIFY_PEER, NULL);
    }
  return c;
}

UtilTlsContext *
util_tls_client_context_new (const char *ca_file, const char *cert_file, const char *key_file, GError **error)
{
  UtilTlsContext *c = context_new (TLS_client_method (), error);
  gboolean trust_loaded;

  if (c == NULL)
    return NULL;
  SSL_CTX_set_verify (c->ctx, SSL_VERIFY_PEER, NULL);
  trust_loaded = ca_file ? SSL_CTX_load_verify_locations (c->ctx, ca_file, NULL) == 1
                         : SSL_CTX_set_default_verify_paths (c->ctx) == 1;
  if (!trust_loaded)
    return context_fail (c, "TLS setup failed", error);
  if (cert_file == NULL)
    return c;
  if (SSL_CTX_use_certificate_chain_file (c->ctx, cert_file) != 1
      || SSL_CTX_use_PrivateKey_file (c->ctx, key_file ? key_file : cert_file, SSL_FILETYPE_PEM) != 1
      || SSL_CTX_check_private_key (c->ctx) != 1)
    return context_fail (c, "TLS setup failed", error);
  return c;
}

void
util_tls_context_free (UtilTlsContext *c)
{
  if (c == NULL)
    return;
  SSL_CTX_free (c->ctx);
  g_free (c);
}

/* SSL_new takes its own reference to the context. */
static UtilTls *
session_new (UtilTlsContext *c, int fd, GError **error)
{
  UtilTls *t = g_new0 (UtilTls, 1);

  ERR_clear_error ();
  t->ssl = SSL_new (c->ctx);
  if (t->ssl == NULL || SSL_set_fd (t->ssl, fd) != 1)
    {
      set_ssl_error (error, "TLS setup failed");
      util_tls_free (t);
      return NULL;
    }
  return t;
}

UtilTls *
util_tls_server_new (UtilTlsContext *c, int fd, GError **error)
{
  UtilTls *t = session_new (c, fd, error);

  if (t)
    SSL_set_accept_state (t->ssl);
  return t;
}

UtilTls *
util_tls_client_new (UtilTlsContext *c, int fd, const char *server_name, GError **error)
{
  UtilTls *t = session_new (c, fd, error);
  gboolean named;

  if (t == NULL)
    return NULL;
  if (g_hostname_is_ip_address (server_name))
    named = X509_VERIFY_PARAM_set1_ip_asc (SSL_get0_param (t->ssl), server_name) == 1;
  else
    named = SSL_set1_host (t->ssl, server_name) == 1 && SSL_set_tlsext_host_name (t->ssl, server_name) == 1;
  if (!named)
    {
      set_ssl_error (error, "TLS setup failed");
      util_tls_free (t);
      return NULL;
    }
  SSL_set_connect_state (t->ssl);
  return t;
}

/* What the failed call @r means; the queue is left empty in every case. */
static UtilTlsStatus
status_of (UtilTls *t, int r, const char *what, GError **error)
{
  long verify;

  switch (SSL_get_error (t->ssl, r))
    {
    case SSL_ERROR_WANT_READ: ERR_clear_error (); return UTIL_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: ERR_clear_error (); return UTIL_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: ERR_clear_error (); return UTIL_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error () == 0)
        return UTIL_TLS_CLOSED;
      break;
    default:
      break;
    }
  verify = SSL_get_verify_result (t->ssl);
  if (verify != X509_V_OK)
    {
      g_set_error (error, UTIL_ERROR, 0, "%s: certificate: %s", what, X509_verify_cert_error_string (verify));
      ERR_clear_error ();
    }
  else
    set_ssl_error (error, what);
  return UTIL_TLS_ERROR;
}

UtilTlsStatus
util_tls_handshake (UtilTls *t, GError **error)
{
  int r;

  ERR_clear_error ();
  r = SSL_do_handshake (t->ssl);
  return r == 1 ? UTIL_TLS_OK : status_of (t, r, "TLS handshake failed", error);
}

UtilTlsStatus
util_tls_read (UtilTls *t, void *buf, gsize len, gsize *got, GError **error)
{
  size_t n = 0;
  int r;

  ERR_clear_error ();
  r = SSL_read_ex (t->ssl, buf, len, &n);
  *got = n;
  return r == 1 ? UTIL_TLS_OK : status_of (t, r, "TLS read failed", error);
}

UtilTlsStatus
util_tls_write (UtilTls *t, const void *buf, gsize len, gsize *written, GError **error)
{
  size_t n = 0;
  int r;

  ERR_clear_error ();
  r = SSL_write_ex (t->ssl, buf, len, &n);
  *written = n;
  return r == 1 ? UTIL_TLS_OK : status_of (t, r, "TLS write failed", error);
}

gboolean
util_tls_pending (UtilTls *t)
{
  return SSL_pending (t->ssl) > 0;
}

char *
util_tls_describe (UtilTls *t)
{
  X509 *peer = SSL_get1_peer_certificate (t->ssl);
  char cn[256] = "";
  char *out;

  if (peer == NULL)
    return g_strdup_printf ("%s %s", SSL_get_version (t->ssl), SSL_get_cipher_name (t->ssl));
  X509_NAME_get_text_by_NID (X509_get_subject_name (peer), NID_commonName, cn, sizeof cn);
  out = g_strdup_printf ("%s %s, client certificate CN=%s (%s)", SSL_get_version (t->ssl),
                         SSL_get_cipher_name (t->ssl), cn,
                         SSL_get_verify_result (t->ssl) == X509_V_OK ? "verified" : "not verified");
  X509_free (peer);
  return out;
}

void
util_tls_free (UtilTls *t)
{
  if (t == NULL)
    return;
  if (t->ssl)
    {
      ERR_clear_error ();
      SSL_shutdown (t->ssl); /* best effort close_notify; never waits */
      SSL_free (t->ssl);
      ERR_clear_error ();
    }
  g_free (t);
}
