/* lmtp-maps.c - serves the socketmap and the policy service to Postfix
 * ([server] socketmap_listen, policy_listen): a threaded socket service,
 * one worker thread per connection, because a lookup may wait for a
 * directory server and must never hold up the main loop.
 *
 * Bounds: at most MAPS_CONNECTIONS connections (more are closed at once),
 * an idle connection is closed after MAPS_IDLE seconds, a request must be
 * complete MAPS_REQUEST seconds after its first byte, a request is at most
 * LMTP_SOCKETMAP_MAX bytes (socketmap) or LMTP_POLICY_ATTRS_MAX lines of
 * LMTP_POLICY_LINE_MAX bytes (policy).  A malformed request closes the
 * connection (a socketmap client gets a PERM answer first).
 */
#include "config.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gio/gunixsocketaddress.h>

#include "deliver.h"
#include "lmtpd.h"

#define MAPS_CONNECTIONS 64
#define MAPS_IDLE 300      /* Postfix's policy client keeps one up to 300 s */
#define MAPS_REQUEST 10
#define MAPS_BUFFER (LMTP_SOCKETMAP_MAX + 16)

struct LmtpMaps {
  LmtpMapsKind kind;
  GSocketService *service;
  DeliverContext *ctx;
  GMutex lock;               /* guards config: a reload swaps it */
  LmtpdConfig *config;
  gint active;               /* connections open now */
  gint refs;                 /* the owner's and one per connection */
  gint64 warned;             /* when the limit was last logged (main loop only) */
};

/* One connection's input: what is buffered and when the request in it
 * must be complete. */
typedef struct {
  GSocket *sock;
  GOutputStream *out;
  char *buf;
  gsize len;
  gint64 deadline;           /* monotonic us; 0: no request begun */
} Conn;

static LmtpMaps *
maps_ref (LmtpMaps *maps)
{
  g_atomic_int_inc (&maps->refs);
  return maps;
}

static void
maps_unref (LmtpMaps *maps)
{
  if (!g_atomic_int_dec_and_test (&maps->refs))
    return;
  deliver_context_unref (maps->ctx);
  lmtpd_config_unref (maps->config);
  g_mutex_clear (&maps->lock);
  g_free (maps);
}

static LmtpdConfig *
maps_config (LmtpMaps *maps)
{
  LmtpdConfig *c;

  g_mutex_lock (&maps->lock);
  c = lmtpd_config_ref (maps->config);
  g_mutex_unlock (&maps->lock);
  return c;
}

void
lmtp_maps_set_config (LmtpMaps *maps, LmtpdConfig *config)
{
  LmtpdConfig *old;

  if (maps == NULL)
    return;
  g_mutex_lock (&maps->lock);
  old = maps->config;
  maps->config = lmtpd_config_ref (config);
  g_mutex_unlock (&maps->lock);
  lmtpd_config_unref (old);
}

/* Reads more into the buffer: waits up to MAPS_IDLE for a new request,
 * else until the request's deadline.  FALSE at EOF, error, timeout or a
 * full buffer. */
static gboolean
conn_fill (Conn *c)
{
  gint64 now = g_get_monotonic_time ();
  gssize n;

  if (c->len >= MAPS_BUFFER)
    return FALSE;
  if (c->len > 0 && c->deadline == 0)
    c->deadline = now + MAPS_REQUEST * G_USEC_PER_SEC;
  if (c->deadline && now >= c->deadline)
    return FALSE;
  g_socket_set_timeout (c->sock, c->deadline ? (guint) ((c->deadline - now) / G_USEC_PER_SEC) + 1 : MAPS_IDLE);
  n = g_socket_receive (c->sock, c->buf + c->len, MAPS_BUFFER - c->len, NULL, NULL);
  if (n <= 0)
    return FALSE;
  c->len += n;
  /* from the first byte, not from when the idle wait began */
  if (c->deadline == 0)
    c->deadline = g_get_monotonic_time () + MAPS_REQUEST * G_USEC_PER_SEC;
  return TRUE;
}

/* Drops the request just answered from the buffer. */
static void
conn_consume (Conn *c, gsize used)
{
  memmove (c->buf, c->buf + used, c->len - used);
  c->len -= used;
  c->deadline = 0;
}

static gboolean
conn_write (Conn *c, const char *data, gsize len)
{
  return g_output_stream_write_all (c->out, data, len, NULL, NULL, NULL);
}

/* Answers the request @payload, then drops it from the buffer. */
static gboolean
socketmap_reply (LmtpMaps *maps, Conn *c, const char *payload, gsize plen, gsize used)
{
  g_autoptr (LmtpdConfig) config = maps_config (maps);
  g_autofree char *answer = lmtp_socketmap_answer (maps->ctx, config, payload, plen);
  g_autoptr (GString) reply = g_string_new (NULL);

  lmtp_netstring_append (reply, answer, strlen (answer));
  conn_consume (c, used);
  return conn_write (c, reply->str, reply->len);
}

static void
serve_socketmap (LmtpMaps *maps, Conn *c)
{
  for (;;)
    {
      const char *payload;
      gsize plen, used;
      LmtpNetstring r = lmtp_netstring_decode (c->buf, c->len, LMTP_SOCKETMAP_MAX, &payload, &plen, &used);

      if (r == LMTP_NETSTRING_BAD)
        {
          static const char bad[] = "PERM malformed or oversized request";
          g_autoptr (GString) reply = g_string_new (NULL);
          lmtp_netstring_append (reply, bad, strlen (bad));
          conn_write (c, reply->str, reply->len);
          return;
        }
      if (r == LMTP_NETSTRING_MORE ? !conn_fill (c) : !socketmap_reply (maps, c, payload, plen, used))
        return;
    }
}

/* Feeds the complete lines in the buffer to @req.  Returns DONE when the
 * request is complete, MORE when a line is still partial, BAD. */
static LmtpPolicyLine
policy_lines (Conn *c, LmtpPolicyRequest *req)
{
  char *nl;

  while ((nl = memchr (c->buf, '\n', c->len)) != NULL)
    {
      gsize used = nl - c->buf + 1;
      LmtpPolicyLine r = lmtp_policy_feed (req, c->buf, used - 1);

      memmove (c->buf, c->buf + used, c->len - used);
      c->len -= used;
      if (r != LMTP_POLICY_MORE)
        return r;
    }
  return c->len >= LMTP_POLICY_LINE_MAX ? LMTP_POLICY_BAD : LMTP_POLICY_MORE;
}

/* Answers the request in @req and forgets it. */
static gboolean
policy_reply (LmtpMaps *maps, Conn *c, LmtpPolicyRequest *req)
{
  g_autoptr (LmtpdConfig) config = maps_config (maps);
  g_autofree char *action = lmtp_policy_answer (maps->ctx, config, req);
  g_autofree char *reply = g_strdup_printf ("%s\n\n", action);

  lmtp_policy_request_clear (req);
  c->deadline = 0;
  return conn_write (c, reply, strlen (reply));
}

static void
serve_policy (LmtpMaps *maps, Conn *c)
{
  LmtpPolicyRequest req = { 0 };

  for (;;)
    {
      LmtpPolicyLine r = policy_lines (c, &req);

      if (r == LMTP_POLICY_BAD || (r == LMTP_POLICY_MORE ? !conn_fill (c) : !policy_reply (maps, c, &req)))
        break;
    }
  lmtp_policy_request_clear (&req);
}

static gboolean
on_run (GThreadedSocketService *service, GSocketConnection *conn, GObject *source, gpointer data)
{
  LmtpMaps *maps = data;
  Conn c = { g_socket_connection_get_socket (conn), g_io_stream_get_output_stream (G_IO_STREAM (conn)),
             g_malloc (MAPS_BUFFER), 0, 0 };

  (void) service;
  (void) source;
  if (maps->kind == LMTP_MAPS_SOCKETMAP)
    serve_socketmap (maps, &c);
  else
    serve_policy (maps, &c);
  g_free (c.buf);
  g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
  g_atomic_int_dec_and_test (&maps->active);
  maps_unref (maps);
  return TRUE;
}

/* On the main loop, before a worker thread is given the connection: past
 * the limit it is closed at once rather than queued. */
static gboolean
on_incoming (GSocketService *service, GSocketConnection *conn, GObject *source, gpointer data)
{
  LmtpMaps *maps = data;
  gint64 now = g_get_monotonic_time ();

  (void) service;
  (void) source;
  if (g_atomic_int_add (&maps->active, 1) < MAPS_CONNECTIONS)
    {
      maps_ref (maps); /* released by on_run: a connection outlives lmtp_maps_free */
      return FALSE;    /* on to the threaded service's own handler */
    }
  g_atomic_int_dec_and_test (&maps->active);
  /* once a minute at most: a flood must not flood the log too */
  if (maps->warned == 0 || now - maps->warned >= 60 * G_USEC_PER_SEC)
    {
      g_warning ("%s: %d connections open: refusing another", maps->kind == LMTP_MAPS_SOCKETMAP ? "socketmap"
                 : "policy", MAPS_CONNECTIONS);
      maps->warned = now;
    }
  g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
  return TRUE;
}

/* Binds @l: a UNIX socket gets socket_mode from its creation (Postfix's
 * processes run as another user); any old socket file goes first.  An
 * INET port 0 is a free one: @l gets the port bound. */
static gboolean
maps_bind (GSocketListener *listener, LmtpdListen *l, guint mode, GError **error)
{
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GSocketAddress) addr = NULL;
  g_autoptr (GInetAddress) ip = NULL;
  mode_t old;
  gboolean ok;

  if (l->kind == LMTPD_LISTEN_UNIX)
    {
      g_autofree char *dir = g_path_get_dirname (l->path);
      g_mkdir_with_parents (dir, 0755);
      unlink (l->path);
      addr = g_unix_socket_address_new (l->path);
      old = umask (~mode & 0777);
      ok = g_socket_listener_add_address (listener, addr, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, NULL,
                                          NULL, error);
      umask (old);
      return ok;
    }
  ip = g_inet_address_new_from_string (l->host);
  if (ip == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "'%s' is not an address", l->host);
      return FALSE;
    }
  addr = g_inet_socket_address_new (ip, l->port);
  if (!g_socket_listener_add_address (listener, addr, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, NULL,
                                      &bound, error))
    return FALSE;
  l->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  return TRUE;
}

LmtpMaps *
lmtp_maps_listen (LmtpMapsKind kind, const char *spec, LmtpdConfig *config, DeliverContext *ctx, GError **error)
{
  LmtpdListen *l = lmtpd_listen_parse (spec, error);
  g_autofree char *where = NULL;
  LmtpMaps *maps;

  if (l == NULL)
    return NULL;
  maps = g_new0 (LmtpMaps, 1);
  maps->kind = kind;
  /* one thread more than connections: the threaded service stops accepting
   * when all its threads are busy, which would leave the connections past
   * the limit waiting in the backlog; on_incoming closes them instead */
  maps->service = g_threaded_socket_service_new (MAPS_CONNECTIONS + 1);
  if (!maps_bind (G_SOCKET_LISTENER (maps->service), l, config->socket_mode, error))
    {
      lmtpd_listen_free (l);
      g_object_unref (maps->service);
      g_free (maps);
      return NULL;
    }
  where = lmtpd_listen_to_string (l);
  lmtpd_listen_free (l);
  g_mutex_init (&maps->lock);
  maps->config = lmtpd_config_ref (config);
  maps->ctx = deliver_context_ref (ctx);
  maps->refs = 1;
  g_signal_connect (maps->service, "incoming", G_CALLBACK (on_incoming), maps);
  g_signal_connect (maps->service, "run", G_CALLBACK (on_run), maps);
  g_socket_service_start (maps->service);
  g_message ("%s on %s", kind == LMTP_MAPS_SOCKETMAP ? "socketmap" : "policy service", where);
  return maps;
}

/* Stops accepting.  A connection being served keeps what it uses (a
 * reference each) until it ends. */
void
lmtp_maps_free (LmtpMaps *maps)
{
  if (maps == NULL)
    return;
  g_socket_service_stop (maps->service);
  g_socket_listener_close (G_SOCKET_LISTENER (maps->service));
  g_clear_object (&maps->service);
  maps_unref (maps);
}
