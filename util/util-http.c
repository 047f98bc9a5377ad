/* util-http.c - HTTP with libsoup 3: binding a listening socket (as root,
 * before privileges are dropped) and the metrics page, Prometheus text at
 * GET or HEAD /metrics (and /).  lmtpd's [server] metrics_listen and
 * ocp-services serve it on a server of their own, without authentication;
 * lmtpd's admin listener (admin/web-server.c) answers /metrics with the
 * same code after its own authentication.
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
  if (!soup_server_listen_socket (server, sock, 0, error))
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
  soup_server_disconnect (SOUP_SERVER (server));
  g_object_unref (server);
}
