/* util-http.c - the metrics page: Prometheus text over plain HTTP/1.0 on a
 * threaded socket service, one request per connection.  Enough for a
 * scraper and curl; the admin web service that later issues bring will use
 * libsoup.
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"

#define HEAD_MAX 8192

typedef struct {
  UtilMetricsRender render;
} Page;

/* The request head, at most HEAD_MAX - 1 bytes within 5 seconds. */
static void
read_head (GSocket *sock, char *head)
{
  gsize len = 0;

  g_socket_set_timeout (sock, 5);
  head[0] = '\0';
  while (len < HEAD_MAX - 1)
    {
      gssize n = g_socket_receive (sock, head + len, HEAD_MAX - 1 - len, NULL, NULL);
      if (n <= 0)
        break;
      len += n;
      head[len] = '\0';
      if (strstr (head, "\r\n\r\n") || strstr (head, "\n\n"))
        break;
    }
}

/* GET or HEAD of /metrics or /: the page; any other method 405, any other
 * path 404. */
static char *
answer (const char *head, const Page *page, const char **status)
{
  const char *path;

  if (!g_str_has_prefix (head, "GET ") && !g_str_has_prefix (head, "HEAD "))
    {
      *status = "405 Method Not Allowed";
      return g_strdup ("only GET\n");
    }
  path = strchr (head, ' ') + 1;
  if (!g_str_has_prefix (path, "/metrics ") && !g_str_has_prefix (path, "/ "))
    {
      *status = "404 Not Found";
      return g_strdup ("try /metrics\n");
    }
  *status = "200 OK";
  return page->render ();
}

static gboolean
serve (GThreadedSocketService *service, GSocketConnection *conn, GObject *source, gpointer data)
{
  GOutputStream *os = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  char head[HEAD_MAX];
  const char *status;
  g_autofree char *body = NULL, *reply = NULL;

  (void) service;
  (void) source;
  read_head (g_socket_connection_get_socket (conn), head);
  body = answer (head, data, &status);
  reply = g_strdup_printf ("HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                           "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                           status, strlen (body), g_str_has_prefix (head, "HEAD ") ? "" : body);
  g_output_stream_write_all (os, reply, strlen (reply), NULL, NULL, NULL);
  g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
  return TRUE;
}

GSocketService *
util_metrics_http_new (GSocketAddress *addr, UtilMetricsRender render, GSocketAddress **bound, GError **error)
{
  g_autoptr (GSocketService) service = g_threaded_socket_service_new (2);
  Page *page = g_new0 (Page, 1);

  if (!g_socket_listener_add_address (G_SOCKET_LISTENER (service), addr, G_SOCKET_TYPE_STREAM,
                                      G_SOCKET_PROTOCOL_DEFAULT, NULL, bound, error))
    {
      g_free (page);
      return NULL;
    }
  page->render = render;
  g_signal_connect_data (service, "run", G_CALLBACK (serve), page, (GClosureNotify) (void (*) (void)) g_free, 0);
  g_socket_service_start (service);
  return g_steal_pointer (&service);
}
