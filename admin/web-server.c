/* web-server.c - the admin listener: a libsoup server on [admin] listen
 * (plain HTTP or HTTPS, with client certificates from [admin]
 * tls_client_ca_file), its limits, the routes, and the worker threads
 * the pages run in.
 *
 * Everything on the wire happens on the main loop; a page, which may wait
 * on the records or deliver a released message, renders in a GTask
 * worker while its request is paused.  Limits (util_http_serve): [admin]
 * max_connections connections (one more is answered 503 and closed), one
 * request each, WEB_IO_TIMEOUT seconds for a client that stops sending;
 * here: request heads
 * libsoup's 64 KiB, bodies WEB_BODY_MAX (413), fields WEB_FIELD_MAX.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>
#include <gio/gunixsocketaddress.h>

#include "lmtpd-util.h"
#include "web-private.h"

typedef struct {
  const char *prefix;         /* a path, or a prefix ending in '/' */
  gboolean admin;             /* FALSE: the users' signed links */
  WebPageFunc page;
} WebRoute;

static const WebRoute routes[] = {
  { "/quarantine", TRUE, web_quarantine_list },
  { "/quarantine/", TRUE, web_quarantine_page },
  { "/trace", TRUE, web_trace_page },
  { "/services", TRUE, web_services_page },
  { "/u/release", FALSE, web_link_page },
};

static void
admin_web_destroy (gpointer data)
{
  AdminWeb *web = data;

  g_clear_pointer (&web->auth, web_auth_free);
  g_clear_pointer (&web->link_secret, g_bytes_unref);
  deliver_context_unref (web->ctx);
  lmtpd_config_unref ((LmtpdConfig *) web->config);
  g_free (web);
}

void
web_reply_free (WebReply *r)
{
  g_free (r->content_type);
  if (r->body)
    g_string_free (r->body, TRUE);
  g_free (r->location);
  g_free (r->set_cookie);
  g_free (r);
}

static void
web_request_free (WebRequest *req)
{
  g_free (req->method);
  g_free (req->path);
  g_clear_pointer (&req->query, g_hash_table_unref);
  g_clear_pointer (&req->form, g_hash_table_unref);
  web_principal_clear (&req->who);
  g_free (req);
}

/* ---- the reply ------------------------------------------------------------ */

static void
send_reply (SoupServerMessage *msg, WebReply *r)
{
  SoupMessageHeaders *h = soup_server_message_get_response_headers (msg);
  gsize len = r->body->len;

  /* no script, no outside resource, no framing: a page is only itself */
  soup_message_headers_replace (h, "Content-Security-Policy",
                                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
  soup_message_headers_replace (h, "X-Content-Type-Options", "nosniff");
  soup_message_headers_replace (h, "Referrer-Policy", "no-referrer");
  soup_message_headers_replace (h, "Cache-Control", "no-store");
  if (r->location)
    soup_message_headers_replace (h, "Location", r->location);
  if (r->set_cookie)
    soup_message_headers_append (h, "Set-Cookie", r->set_cookie);
  soup_server_message_set_status (msg, r->status, NULL);
  soup_server_message_set_response (msg, r->content_type ? r->content_type : "text/html; charset=utf-8",
                                    SOUP_MEMORY_TAKE, g_string_free (g_steal_pointer (&r->body), FALSE), len);
}

static void
page_done (GObject *source, GAsyncResult *res, gpointer data)
{
  SoupServerMessage *msg = data;
  WebReply *r = g_task_propagate_pointer (G_TASK (res), NULL);

  (void) source;
  send_reply (msg, r);
  web_reply_free (r);
  soup_server_message_unpause (msg);
  g_object_unref (msg);
}

static void
page_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancel)
{
  WebRequest *req = data;
  const WebRoute *route = g_object_get_data (G_OBJECT (task), "route");
  WebReply *r = g_new0 (WebReply, 1);

  (void) source;
  (void) cancel;
  r->status = SOUP_STATUS_OK;
  r->body = g_string_sized_new (8192);
  route->page (req, r);
  g_task_return_pointer (task, r, (GDestroyNotify) web_reply_free);
}

/* ---- the request ---------------------------------------------------------- */

static gboolean
fields_bounded (GHashTable *fields)
{
  GHashTableIter it;
  gpointer k, v;

  if (fields == NULL)
    return TRUE;
  if (g_hash_table_size (fields) > 32)
    return FALSE;
  g_hash_table_iter_init (&it, fields);
  while (g_hash_table_iter_next (&it, &k, &v))
    if (v == NULL || strlen (v) > WEB_FIELD_MAX || !g_utf8_validate (v, -1, NULL))
      return FALSE;
  return TRUE;
}

static GHashTable *
request_form (SoupServerMessage *msg)
{
  SoupMessageBody *body = soup_server_message_get_request_body (msg);
  const char *type = soup_message_headers_get_content_type (soup_server_message_get_request_headers (msg), NULL);
  g_autoptr (GBytes) bytes = NULL;
  g_autofree char *text = NULL;

  if (type == NULL || g_ascii_strcasecmp (type, "application/x-www-form-urlencoded") != 0)
    return NULL;
  bytes = soup_message_body_flatten (body);
  text = g_strndup (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
  return soup_form_decode (text);
}

static const WebRoute *
route_of (const char *path)
{
  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    {
      gsize n = strlen (routes[i].prefix);
      if (strcmp (path, routes[i].prefix) == 0
          || (routes[i].prefix[n - 1] == '/' && g_str_has_prefix (path, routes[i].prefix) && path[n]))
        return &routes[i];
    }
  return NULL;
}

static void
plain_reply (SoupServerMessage *msg, guint status, const char *text)
{
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "text/plain; charset=utf-8", SOUP_MEMORY_COPY, text, strlen (text));
}

/* 401 without credentials (with the way in), 403 with wrong ones */
static void
refuse (SoupServerMessage *msg, const WebPrincipal *who)
{
  if (who->refused)
    {
      plain_reply (msg, SOUP_STATUS_FORBIDDEN, "403 forbidden: wrong token, session or certificate\n");
      return;
    }
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "WWW-Authenticate",
                                "Bearer realm=\"lmtpd admin\"");
  plain_reply (msg, SOUP_STATUS_UNAUTHORIZED,
               "401 unauthorized: send Authorization: Bearer TOKEN, open /login?token=TOKEN once, "
               "or present a client certificate\n");
}

/* The page in a worker; the task holds the server (and so the AdminWeb
 * the page reads) until the page is done. */
static void
start_page (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query, const WebRoute *route,
            WebPrincipal *who)
{
  AdminWeb *web = g_object_get_data (G_OBJECT (server), "admin-web");
  WebRequest *req = g_new0 (WebRequest, 1);
  g_autoptr (GTask) task = g_task_new (server, NULL, page_done, g_object_ref (msg));

  req->web = web;
  req->method = g_strdup (soup_server_message_get_method (msg));
  req->path = g_strdup (path);
  req->query = query ? g_hash_table_ref (query) : NULL;
  req->form = strcmp (req->method, "POST") == 0 ? request_form (msg) : NULL;
  req->who = *who;
  memset (who, 0, sizeof *who);
  if (!fields_bounded (req->query) || !fields_bounded (req->form))
    {
      web_request_free (req);
      plain_reply (msg, SOUP_STATUS_BAD_REQUEST, "400 bad request: too many or too long fields\n");
      g_object_unref (msg);
      return;
    }
  g_object_set_data (G_OBJECT (task), "route", (gpointer) route);
  g_task_set_task_data (task, req, (GDestroyNotify) web_request_free);
  soup_server_message_pause (msg);
  g_task_run_in_thread (task, page_thread);
}

static void
handle (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer data)
{
  AdminWeb *web = data;
  const char *method = soup_server_message_get_method (msg);
  const WebRoute *route = route_of (path);
  WebPrincipal who = { 0 };

  if (strcmp (method, "GET") != 0 && strcmp (method, "HEAD") != 0 && strcmp (method, "POST") != 0)
    {
      plain_reply (msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "405 method not allowed\n");
      return;
    }
  if (strcmp (path, "/login") == 0)
    {
      web_auth_login (web->auth, msg, query);
      return;
    }
  if (route && !route->admin)
    {
      start_page (server, msg, path, query, route, &who);
      return;
    }
  if (!web_auth_check (web->auth, server, msg, &who))
    refuse (msg, &who);
  else if (strcmp (path, "/metrics") == 0)
    util_metrics_http_answer (msg, web->metrics);
  else if (strcmp (path, "/") == 0)
    {
      soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Location", "/quarantine");
      plain_reply (msg, SOUP_STATUS_SEE_OTHER, "see /quarantine\n");
    }
  else if (route == NULL)
    plain_reply (msg, SOUP_STATUS_NOT_FOUND, "404 not found\n");
  else
    start_page (server, msg, path, query, route, &who);
  web_principal_clear (&who);
}

/* ---- limits --------------------------------------------------------------- */

/* A body over WEB_BODY_MAX, or of unknown length, is refused before it is
 * read. */
static void
got_headers (SoupServerMessage *msg, gpointer data)
{
  SoupMessageHeaders *h = soup_server_message_get_request_headers (msg);
  SoupEncoding enc = soup_message_headers_get_encoding (h);

  (void) data;
  if (enc == SOUP_ENCODING_CHUNKED || enc == SOUP_ENCODING_EOF
      || (enc == SOUP_ENCODING_CONTENT_LENGTH && soup_message_headers_get_content_length (h) > WEB_BODY_MAX))
    {
      plain_reply (msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "413 request too large\n");
    }
}

/* Every answer closes its connection: a page is one request, and the
 * count of connections util_http_serve bounds is then the count of
 * requests in progress. */
static void
request_started (SoupServer *server, SoupServerMessage *msg, gpointer data)
{
  (void) server;
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Connection", "close");
  g_signal_connect (msg, "got-headers", G_CALLBACK (got_headers), data);
}

/* ---- the server ----------------------------------------------------------- */

static gboolean
load_certificate (const LmtpdConfig *config, GTlsCertificate **cert, GError **error)
{
  if (config->admin_tls_cert_file == NULL)
    return TRUE;
  *cert = g_tls_certificate_new_from_files (config->admin_tls_cert_file, config->admin_tls_key_file, error);
  if (*cert == NULL)
    g_prefix_error (error, "[admin] tls_cert_file: ");
  return *cert != NULL;
}

static GSocketAddress *
listen_address (const LmtpdConfig *config, GError **error)
{
  LmtpdListen *l = lmtpd_listen_parse (config->admin_listen, error);
  g_autoptr (GInetAddress) ip = NULL;
  GSocketAddress *addr = NULL;

  if (l == NULL)
    return NULL;
  if (l->kind == LMTPD_LISTEN_UNIX)
    {
      unlink (l->path);
      addr = g_unix_socket_address_new (l->path);
    }
  else if ((ip = g_inet_address_new_from_string (l->host)) != NULL)
    addr = g_inet_socket_address_new (ip, l->port);
  else
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "[admin] listen: '%s' is not an address", l->host);
  lmtpd_listen_free (l);
  return addr;
}

static gboolean
web_listen (SoupServer *server, AdminWeb *web, GError **error)
{
  const LmtpdConfig *config = web->config;
  g_autoptr (GSocketAddress) addr = listen_address (config, error), bound = NULL;
  g_autoptr (GSocket) sock = addr ? util_http_bind (addr, error) : NULL;
  g_autoptr (GTlsCertificate) cert = NULL;
  g_autofree char *shown = NULL;
  UtilHttpLimits limits = { config->admin_max_connections, WEB_IO_TIMEOUT, NULL, web_auth_client_ca (web->auth) };
  gboolean ok = sock && load_certificate (config, &cert, error);

  limits.cert = cert;
  if (!ok || !util_http_serve (G_OBJECT (server), sock, &limits, error))
    {
      g_prefix_error (error, "[admin] listen %s: ", config->admin_listen);
      return FALSE;
    }
  bound = g_socket_get_local_address (sock, NULL);
  if (bound && G_IS_INET_SOCKET_ADDRESS (bound))
    {
      g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (bound)));
      shown = g_strdup_printf ("%s://%s:%u/", config->admin_tls_cert_file ? "https" : "http", ip,
                               g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
    }
  g_message ("admin web page on %s", shown ? shown : config->admin_listen);
  return TRUE;
}

GObject *
admin_web_new (const LmtpdConfig *config, DeliverContext *ctx, AdminMetricsRender metrics, GError **error)
{
  g_autoptr (SoupServer) server = soup_server_new ("server-header", NULL, NULL);
  AdminWeb *web = g_new0 (AdminWeb, 1);

  web->config = lmtpd_config_ref ((LmtpdConfig *) config);
  web->ctx = deliver_context_ref (ctx);
  web->metrics = metrics;
  g_object_set_data_full (G_OBJECT (server), "admin-web", web, admin_web_destroy);
  if ((web->auth = web_auth_new (config, error)) == NULL)
    return NULL;
  if (config->admin_link_secret_file && (web->link_secret = admin_link_secret (config, error)) == NULL)
    return NULL;
  soup_server_add_handler (server, NULL, handle, web, NULL);
  g_signal_connect (server, "request-started", G_CALLBACK (request_started), web);
  if (!web_listen (server, web, error))
    return NULL;
  return G_OBJECT (g_steal_pointer (&server));
}

void
admin_web_free (GObject *web)
{
  util_http_server_free (web);
}
