/* util-http.c - HTTP with libsoup 3: binding a listening socket (as root,
 * before privileges are dropped), serving a SoupServer on it, and the
 * metrics page, Prometheus text at GET or HEAD /metrics (and /).  lmtpd's
 * [server] metrics_listen and ocp-services serve it on a server of their
 * own, without authentication; lmtpd's admin listener
 * (admin/web-server.c) answers /metrics with the same code after its own
 * authentication.
 *
 * Connections are accepted here, not by libsoup's own listener: libsoup
 * 3.2 (Debian 12) loses the socket of every connection its listener
 * accepted (fixed in 3.3), and accepting them here is also where their
 * number is bounded, a silent client timed out and TLS put on.
 */
#include "config.h"

#include <string.h>
#include <libsoup/soup.h>

#include "lmtpd-util.h"

GSocket *
util_http_bind (GSocketAddress *addr, GError **error)
{
  g_autoptr (GSocket) sock = g_socket_new (g_socket_address_get_family (addr), G_SOCKET_TYPE_STREAM,
                                           G_SOCKET_PROTOCOL_DEFAULT, error);

  if (sock == NULL)
    return NULL;
  if (!g_socket_bind (sock, addr, TRUE, error))
    return NULL;
  g_socket_set_listen_backlog (sock, 64);
  if (!g_socket_listen (sock, error))
    return NULL;
  return g_steal_pointer (&sock);
}

/* ---- serving ---------------------------------------------------------------- */

typedef struct {
  SoupServer *server;         /* not a reference: the server owns this */
  GSocketService *service;
  UtilHttpLimits limits;
  GTlsCertificate *cert;      /* HTTPS, or NULL */
  GTlsDatabase *client_ca;    /* client certificates requested, or NULL */
  guint *live;                /* connections open now; each holds a reference to the box */
  GHashTable *tls_by_peer;    /* "address:port" -> GTlsConnection (a reference), until it is closed */
} HttpServe;

static void
http_serve_free (gpointer data)
{
  HttpServe *hs = data;

  g_socket_service_stop (hs->service);
  g_socket_listener_close (G_SOCKET_LISTENER (hs->service));
  g_object_unref (hs->service);
  g_clear_object (&hs->cert);
  g_clear_object (&hs->client_ca);
  g_rc_box_release (hs->live);
  g_hash_table_destroy (hs->tls_by_peer);
  g_free (hs);
}

static void
connection_gone (gpointer data, GObject *conn)
{
  guint *live = data;

  (void) conn;
  (*live)--;
  g_rc_box_release (live);
}

/* Any client certificate passes the handshake (its owner proved to hold
 * the key); whether it is trusted is the pages' to judge. */
static gboolean
accept_any_certificate (GTlsConnection *conn, GTlsCertificate *peer, GTlsCertificateFlags errors, gpointer data)
{
  (void) conn;
  (void) peer;
  (void) errors;
  (void) data;
  return TRUE;
}

/* @conn as libsoup gets it: itself, or wrapped in TLS */
static GIOStream *
http_stream (HttpServe *hs, GSocketConnection *conn)
{
  GIOStream *tls;

  if (hs->cert == NULL)
    return G_IO_STREAM (g_object_ref (conn));
  tls = G_IO_STREAM (g_tls_server_connection_new (G_IO_STREAM (conn), hs->cert, NULL));
  if (tls && hs->client_ca)
    {
      g_object_set (tls, "authentication-mode", G_TLS_AUTHENTICATION_REQUESTED, "database", hs->client_ca, NULL);
      g_signal_connect (tls, "accept-certificate", G_CALLBACK (accept_any_certificate), NULL);
    }
  return tls;
}

/* Forgets the TLS connections libsoup has closed. */
static void
forget_closed (HttpServe *hs)
{
  GHashTableIter it;
  gpointer tls;

  g_hash_table_iter_init (&it, hs->tls_by_peer);
  while (g_hash_table_iter_next (&it, NULL, &tls))
    if (g_io_stream_is_closed (tls))
      g_hash_table_iter_remove (&it);
}

static void
remember_tls (HttpServe *hs, GSocketAddress *remote, GIOStream *tls)
{
  char *key = remote ? g_socket_connectable_to_string (G_SOCKET_CONNECTABLE (remote)) : NULL;

  forget_closed (hs);
  if (key)
    g_hash_table_replace (hs->tls_by_peer, key, g_object_ref (tls));
}

GTlsCertificate *
util_http_peer_certificate (GObject *server, GSocketAddress *remote)
{
  HttpServe *hs = g_object_get_data (server, "util-http-serve");
  g_autofree char *key = remote ? g_socket_connectable_to_string (G_SOCKET_CONNECTABLE (remote)) : NULL;
  GTlsConnection *tls;

  if (hs == NULL || key == NULL)
    return NULL;
  forget_closed (hs);
  tls = g_hash_table_lookup (hs->tls_by_peer, key);
  return tls ? g_tls_connection_get_peer_certificate (tls) : NULL;
}

static gboolean
incoming (GSocketService *service, GSocketConnection *conn, GObject *source, gpointer data)
{
  static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
  HttpServe *hs = data;
  GSocket *sock = g_socket_connection_get_socket (conn);
  g_autoptr (GSocketAddress) local = g_socket_get_local_address (sock, NULL);
  g_autoptr (GSocketAddress) remote = g_socket_get_remote_address (sock, NULL);
  g_autoptr (GIOStream) stream = NULL;

  (void) service;
  (void) source;
  if (*hs->live >= hs->limits.max_connections)
    {
      /* best effort, and closed at once: a client that sent its request
       * already may see a reset instead */
      g_socket_send (sock, busy, sizeof busy - 1, NULL, NULL);
      g_socket_shutdown (sock, FALSE, TRUE, NULL);
      g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
      return TRUE;
    }
  g_socket_set_timeout (sock, hs->limits.timeout);
  if ((stream = http_stream (hs, conn)) == NULL)
    return TRUE;
  if (hs->cert)
    remember_tls (hs, remote, stream);
  (*hs->live)++;
  g_object_weak_ref (G_OBJECT (conn), connection_gone, g_rc_box_acquire (hs->live));
  soup_server_accept_iostream (hs->server, stream, local, remote, NULL);
  return TRUE;
}

gboolean
util_http_serve (GObject *server, GSocket *sock, const UtilHttpLimits *limits, GError **error)
{
  HttpServe *hs = g_new0 (HttpServe, 1);

  hs->server = SOUP_SERVER (server);
  hs->service = g_socket_service_new ();
  hs->limits = *limits;
  hs->cert = limits->cert ? g_object_ref (limits->cert) : NULL;
  hs->client_ca = limits->client_ca ? g_object_ref (limits->client_ca) : NULL;
  hs->limits.cert = NULL;
  hs->limits.client_ca = NULL;
  hs->live = g_rc_box_new0 (guint);
  hs->tls_by_peer = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  g_object_set_data_full (server, "util-http-serve", hs, http_serve_free);
  if (!g_socket_listener_add_socket (G_SOCKET_LISTENER (hs->service), sock, NULL, error))
    return FALSE;
  g_signal_connect (hs->service, "incoming", G_CALLBACK (incoming), hs);
  g_socket_service_start (hs->service);
  return TRUE;
}

/* ---- the metrics page ------------------------------------------------------- */

void
util_metrics_http_answer (gpointer message, UtilMetricsRender render)
{
  SoupServerMessage *msg = message;
  const char *method = soup_server_message_get_method (msg);
  char *body;

  if (strcmp (method, "GET") != 0 && strcmp (method, "HEAD") != 0)
    {
      soup_server_message_set_status (msg, SOUP_STATUS_METHOD_NOT_ALLOWED, NULL);
      soup_message_headers_append (soup_server_message_get_response_headers (msg), "Allow", "GET, HEAD");
      soup_server_message_set_response (msg, "text/plain; charset=utf-8", SOUP_MEMORY_STATIC, "only GET\n", 9);
      return;
    }
  body = render ();
  /* as scrapers have always had it: HTTP/1.0, one request a connection */
  soup_server_message_set_http_version (msg, SOUP_HTTP_1_0);
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Connection", "close");
  soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
  soup_server_message_set_response (msg, "text/plain; version=0.0.4; charset=utf-8", SOUP_MEMORY_TAKE, body,
                                    strlen (body));
}

static void
metrics_handler (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query, gpointer data)
{
  (void) server;
  (void) query;
  if (strcmp (path, "/metrics") != 0 && strcmp (path, "/") != 0)
    {
      soup_server_message_set_status (msg, SOUP_STATUS_NOT_FOUND, NULL);
      soup_server_message_set_response (msg, "text/plain; charset=utf-8", SOUP_MEMORY_STATIC, "try /metrics\n", 13);
      return;
    }
  util_metrics_http_answer (msg, (UtilMetricsRender) data);
}

/* a scraper or two */
static const UtilHttpLimits metrics_limits = { .max_connections = 8, .timeout = 10 };

GObject *
util_metrics_http_new (GSocketAddress *addr, UtilMetricsRender render, GSocketAddress **bound, GError **error)
{
  g_autoptr (GSocket) sock = util_http_bind (addr, error);
  g_autoptr (SoupServer) server = NULL;

  if (sock == NULL)
    return NULL;
  /* no Server: header: nothing for a scanner to match versions on */
  server = soup_server_new ("server-header", NULL, NULL);
  soup_server_add_handler (server, NULL, metrics_handler, (gpointer) render, NULL);
  if (!util_http_serve (G_OBJECT (server), sock, &metrics_limits, error))
    return NULL;
  if (bound)
    *bound = g_socket_get_local_address (sock, NULL);
  return G_OBJECT (g_steal_pointer (&server));
}

void
util_http_server_free (GObject *server)
{
  if (server == NULL)
    return;
  g_object_set_data (server, "util-http-serve", NULL);
  soup_server_disconnect (SOUP_SERVER (server));
  g_object_unref (server);
}
