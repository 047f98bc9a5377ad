/* web-auth.c - who is asking the admin listener.
 *
 * An admin is whoever sends "Authorization: Bearer TOKEN" with the token
 * of [admin] token_file, holds the session cookie /login?token=TOKEN gave
 * (HttpOnly, SameSite=Strict, 12 hours), or presents a client certificate
 * that [admin] tls_client_ca_file signed.  Tokens and signatures are
 * compared in constant time.  Sessions are stateless: the cookie is
 * NONCE.EXPIRES.HMAC under a key drawn at start, so a restart ends them.
 * A form's CSRF token is the HMAC of the session (or of the certificate's
 * subject) under that key: a page of another site can neither read it nor
 * guess it.
 */
#include "config.h"

#include <string.h>
#include <sys/random.h>

#include "lmtpd-util.h"
#include "web-private.h"

#define COOKIE_NAME "lmtpd_admin"

struct _WebAuth {
  char *token;                /* or NULL: no token, certificates only */
  GTlsDatabase *ca_db;        /* [admin] tls_client_ca_file, or NULL */
  GTlsCertificate *ca;
  gboolean https;
  guint8 key[32];             /* sessions and CSRF tokens, this process only */
};

static gboolean
client_ca_load (WebAuth *auth, const char *file, GError **error)
{
  /* GTlsFileDatabase wants an absolute path; lmtpd's paths are relative
   * to where it runs */
  g_autofree char *path = g_canonicalize_filename (file, NULL);

  if ((auth->ca_db = g_tls_file_database_new (path, error)) == NULL
      || (auth->ca = g_tls_certificate_new_from_file (path, error)) == NULL)
    {
      g_prefix_error (error, "[admin] tls_client_ca_file %s: ", path);
      return FALSE;
    }
  return TRUE;
}

WebAuth *
web_auth_new (const LmtpdConfig *config, GError **error)
{
  WebAuth *auth = g_new0 (WebAuth, 1);
  g_autoptr (GBytes) token = NULL;

  auth->https = config->admin_tls_cert_file != NULL;
  if (getrandom (auth->key, sizeof auth->key, 0) != sizeof auth->key)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "no random bytes for the admin sessions");
      web_auth_free (auth);
      return NULL;
    }
  if (config->admin_token_file
      && (token = admin_secret_file_read (config->admin_token_file, "[admin] token_file", error)) == NULL)
    {
      web_auth_free (auth);
      return NULL;
    }
  if (token)
    auth->token = g_strndup (g_bytes_get_data (token, NULL), g_bytes_get_size (token));
  if (config->admin_tls_client_ca_file && !client_ca_load (auth, config->admin_tls_client_ca_file, error))
    {
      web_auth_free (auth);
      return NULL;
    }
  return auth;
}

void
web_auth_free (WebAuth *auth)
{
  if (auth == NULL)
    return;
  if (auth->token)
    memset (auth->token, 0, strlen (auth->token));
  g_free (auth->token);
  g_clear_object (&auth->ca_db);
  g_clear_object (&auth->ca);
  memset (auth->key, 0, sizeof auth->key);
  g_free (auth);
}

GTlsDatabase *
web_auth_client_ca (WebAuth *auth)
{
  return auth->ca_db;
}

static char *
keyed (WebAuth *auth, const char *what)
{
  return g_compute_hmac_for_string (G_CHECKSUM_SHA256, auth->key, sizeof auth->key, what, -1);
}

static void
admit (WebAuth *auth, WebPrincipal *p, const char *who, const char *session)
{
  g_autofree char *what = g_strdup_printf ("csrf\n%s", session);

  p->admin = TRUE;
  p->who = g_strdup (who);
  p->csrf = keyed (auth, what);
}

/* ---- the three ways in ---------------------------------------------------- */

static gboolean
token_ok (WebAuth *auth, const char *given)
{
  return auth->token && given && admin_secret_equal (auth->token, given);
}

static void
check_bearer (WebAuth *auth, const char *header, WebPrincipal *p)
{
  if (g_ascii_strncasecmp (header, "Bearer ", 7) == 0 && token_ok (auth, header + 7))
    admit (auth, p, "web:admin", "bearer");
  else
    p->refused = TRUE;
}

/* NONCE.EXPIRES.SIG, signed and not expired */
static void
check_cookie (WebAuth *auth, const char *value, WebPrincipal *p)
{
  g_auto (GStrv) parts = g_strsplit (value, ".", 4);
  g_autofree char *signed_text = NULL, *want = NULL, *session = NULL;

  p->refused = TRUE;
  if (g_strv_length (parts) != 3)
    return;
  signed_text = g_strdup_printf ("session\n%s\n%s", parts[0], parts[1]);
  want = keyed (auth, signed_text);
  if (!admin_secret_equal (want, parts[2]) || g_ascii_strtoll (parts[1], NULL, 10) <= g_get_real_time () / G_USEC_PER_SEC)
    return;
  p->refused = FALSE;
  session = g_strdup_printf ("session:%s", parts[0]);
  admit (auth, p, "web:admin", session);
}

gboolean
web_auth_certificate_ok (WebAuth *auth, GTlsCertificate *peer)
{
  return auth->ca && g_tls_certificate_verify (peer, NULL, auth->ca) == 0;
}

static void
check_certificate (WebAuth *auth, GTlsCertificate *peer, WebPrincipal *p)
{
  g_autofree char *raw = NULL, *subject = NULL, *session = NULL;

  if (!web_auth_certificate_ok (auth, peer))
    {
      p->refused = TRUE;
      return;
    }
  /* the subject names who acted, in the log and the released message's
   * header: one line, bounded */
  raw = g_tls_certificate_get_subject_name (peer);
  subject = util_sanitize (raw, 200);
  session = g_strdup_printf ("cert:%s", subject);
  admit (auth, p, subject[0] ? subject : "web:certificate", session);
}

static char *
session_cookie (SoupServerMessage *msg)
{
  const char *header = soup_message_headers_get_list (soup_server_message_get_request_headers (msg), "Cookie");
  GHashTable *cookies;
  char *value;

  if (header == NULL || strlen (header) > 8192)
    return NULL;
  cookies = soup_header_parse_semi_param_list (header);
  value = g_strdup (g_hash_table_lookup (cookies, COOKIE_NAME));
  soup_header_free_param_list (cookies);
  return value;
}

gboolean
web_auth_check (WebAuth *auth, SoupServer *server, SoupServerMessage *msg, WebPrincipal *p)
{
  const char *header = soup_message_headers_get_one (soup_server_message_get_request_headers (msg), "Authorization");
  g_autofree char *cookie = session_cookie (msg);
  GTlsCertificate *peer = util_http_peer_certificate (G_OBJECT (server), soup_server_message_get_remote_address (msg));

  memset (p, 0, sizeof *p);
  if (header)
    check_bearer (auth, header, p);
  else if (cookie)
    check_cookie (auth, cookie, p);
  else if (peer)
    check_certificate (auth, peer, p);
  return p->admin;
}

gboolean
web_auth_csrf_ok (const WebPrincipal *p, const char *csrf)
{
  return p->admin && p->csrf && csrf && admin_secret_equal (p->csrf, csrf);
}

/* ---- /login --------------------------------------------------------------- */

static char *
new_session (WebAuth *auth)
{
  guint8 nonce[16];
  g_autofree char *hex = NULL, *signed_text = NULL, *sig = NULL;
  gint64 expires = g_get_real_time () / G_USEC_PER_SEC + WEB_SESSION_LIFETIME;

  if (getrandom (nonce, sizeof nonce, 0) != sizeof nonce)
    return NULL;
  hex = g_compute_checksum_for_data (G_CHECKSUM_SHA256, nonce, sizeof nonce);
  hex[32] = '\0';
  signed_text = g_strdup_printf ("session\n%s\n%" G_GINT64_FORMAT, hex, expires);
  sig = keyed (auth, signed_text);
  return g_strdup_printf ("%s.%" G_GINT64_FORMAT ".%s", hex, expires, sig);
}

void
web_auth_login (WebAuth *auth, SoupServerMessage *msg, GHashTable *query)
{
  const char *given = query ? g_hash_table_lookup (query, "token") : NULL;
  SoupMessageHeaders *h = soup_server_message_get_response_headers (msg);
  g_autofree char *session = NULL, *cookie = NULL;
  const char *text;

  if (!token_ok (auth, given) || (session = new_session (auth)) == NULL)
    {
      g_message ("admin web login=refused reason=wrong-token");
      text = "403 forbidden: wrong token\n";
      soup_server_message_set_status (msg, SOUP_STATUS_FORBIDDEN, NULL);
      soup_server_message_set_response (msg, "text/plain; charset=utf-8", SOUP_MEMORY_STATIC, text, strlen (text));
      return;
    }
  cookie = g_strdup_printf (COOKIE_NAME "=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s", session,
                            WEB_SESSION_LIFETIME, auth->https ? "; Secure" : "");
  soup_message_headers_append (h, "Set-Cookie", cookie);
  soup_message_headers_replace (h, "Location", "/quarantine");
  soup_message_headers_replace (h, "Cache-Control", "no-store");
  text = "logged in: see /quarantine\n";
  soup_server_message_set_status (msg, SOUP_STATUS_SEE_OTHER, NULL);
  soup_server_message_set_response (msg, "text/plain; charset=utf-8", SOUP_MEMORY_STATIC, text, strlen (text));
}
