/* ocp-client-open.c - opening a processor connection.
 *
 * Connect (bounded by the service's connect timeout), TLS if configured,
 * then the OCP bootstrap: CS, NO offering our profile with the parts this
 * service may receive, the server's CS and NR (it picks the parts it
 * wants), and SGC 1 with the service URI.
 */
#include "config.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <gio/gunixsocketaddress.h>

#include "ocp-client-private.h"

/* The host of "inet:HOST:PORT" without IPv6 brackets, or NULL. */
static char *
inet_host (const char *endpoint)
{
  const char *hp = endpoint + 5, *colon = strrchr (hp, ':');
  char *host = colon ? g_strndup (hp, colon - hp) : NULL;

  if (host && host[0] == '[')
    {
      char *h = g_strndup (host + 1, strlen (host) - 2);
      g_free (host);
      host = h;
    }
  return host;
}

static GSocketAddress *
endpoint_address (const char *endpoint, GError **error)
{
  if (g_str_has_prefix (endpoint, "unix:"))
    return g_unix_socket_address_new (endpoint + 5);
  if (g_str_has_prefix (endpoint, "inet:"))
    {
      const char *colon = strrchr (endpoint + 5, ':');
      g_autofree char *host = inet_host (endpoint);
      g_autoptr (GInetAddress) ip = NULL;
      guint64 port = colon ? g_ascii_strtoull (colon + 1, NULL, 10) : 0;

      ip = host ? g_inet_address_new_from_string (host) : NULL;
      if (ip == NULL && host)
        {
          GList *l = g_resolver_lookup_by_name (g_resolver_get_default (), host, NULL, NULL);
          if (l)
            ip = g_object_ref (l->data);
          g_resolver_free_addresses (l);
        }
      if (ip && port > 0 && port < 65536)
        return g_inet_socket_address_new (ip, (guint16) port);
    }
  g_set_error (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "bad callout endpoint '%s'", endpoint);
  return NULL;
}

/* A non-blocking connect, waited for until @deadline. */
static gboolean
conn_connect (OcpConn *c, GSocketAddress *addr, const char *endpoint, gint64 deadline, GError **error)
{
  g_autoptr (GError) e = NULL;

  c->sock = g_socket_new (g_socket_address_get_family (addr), G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT,
                          error);
  if (c->sock == NULL)
    return FALSE;
  g_socket_set_blocking (c->sock, FALSE);
  if (g_socket_get_family (c->sock) != G_SOCKET_FAMILY_UNIX)
    g_socket_set_option (c->sock, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  if (g_socket_connect (c->sock, addr, NULL, &e))
    return TRUE;
  if (!g_error_matches (e, G_IO_ERROR, G_IO_ERROR_PENDING))
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "%s: %s", endpoint, e->message);
      return FALSE;
    }
  g_clear_error (&e);
  if (!ocp_conn_wait_io (c->sock, G_IO_OUT, deadline, error))
    return FALSE;
  if (!g_socket_check_connect_result (c->sock, &e))
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "%s: %s", endpoint, e->message);
      return FALSE;
    }
  return TRUE;
}

/* The TLS client session and its handshake; a failure makes the endpoint
 * unavailable. */
static gboolean
conn_start_tls (OcpConn *c, const OcpServiceConfig *svc, const char *endpoint, gint64 deadline,
                GError **error)
{
  g_autofree char *host = NULL;
  const char *name = svc->tls_server_name;
  UtilTlsContext *ctx;
  UtilTlsStatus st;

  if (name == NULL && g_str_has_prefix (endpoint, "inet:"))
    {
      host = inet_host (endpoint);
      name = host;
    }
  ctx = util_tls_client_context_new (svc->tls_ca_file, svc->tls_cert_file, svc->tls_key_file, error);
  if (ctx == NULL)
    return ocp_conn_tls_failed (error);
  c->tls = util_tls_client_new (ctx, g_socket_get_fd (c->sock), name ? name : "localhost", error);
  util_tls_context_free (ctx); /* the session holds its own reference */
  if (c->tls == NULL)
    return ocp_conn_tls_failed (error);
  while ((st = util_tls_handshake (c->tls, error)) != UTIL_TLS_OK)
    if (st == UTIL_TLS_ERROR || st == UTIL_TLS_CLOSED || !ocp_conn_tls_wait (c, st, deadline, error))
      {
        if (error && *error == NULL)
          g_set_error (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "%s: TLS handshake failed", endpoint);
        return ocp_conn_tls_failed (error);
      }
  return TRUE;
}

/* The bootstrap: CS, then our offer at once (RFC 4037 6.1): version 2 of
 * the profile, then version 1 for a server that knows only that one. */
static gboolean
send_offer (OcpConn *c, const OcpServiceConfig *svc, gint64 deadline, GError **error)
{
  g_autoptr (GString) out = g_string_new (NULL);
  OcpValue *list = ocp_list_new ();
  OcpMessage *no;

  for (guint v = 2; v >= 1; v--)
    {
      OcpValue *feature = ocp_struct_new ();
      ocp_value_add (feature, ocp_atom_new (v == 2 ? OCP_LMTP_PROFILE_2 : OCP_LMTP_PROFILE));
      ocp_value_add_named (feature, "Parts", ocp_parts_to_value (svc->parts));
      ocp_value_add (list, feature);
    }
  no = ocp_message_add (ocp_message_new ("NO"), list);
  return ocp_conn_queue (c, out, ocp_message_new ("CS"), deadline, error)
         && ocp_conn_queue (c, out, no, deadline, error) && ocp_conn_flush (c, out, deadline, error);
}

/* The server's NR: the version of our profile it chose, and the parts. */
static gboolean
accept_nr (OcpConn *c, const OcpServiceConfig *svc, const OcpMessage *nr, const char *endpoint,
           GError **error)
{
  const OcpValue *f = ocp_message_anon (nr, 0);

  if (f == NULL || f->kind != OCP_STRUCT || f->items->len < 1
      || (c->version = ocp_profile_version (ocp_value_get_atom (f->items->pdata[0]))) == 0)
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "%s does not speak the LMTP profile", endpoint);
      return FALSE;
    }
  c->parts = ocp_value_get_named (f, "Parts") ? ocp_parts_from_value (ocp_value_get_named (f, "Parts"))
                                              : svc->parts;
  c->parts &= svc->parts;
  c->parts |= OCP_PART_ENVELOPE;
  c->negotiated = TRUE;
  return TRUE;
}

/* The server's CS first, then its NR; whatever else comes meanwhile is
 * answered as at any time. */
static gboolean
await_nr (OcpConn *c, const OcpServiceConfig *svc, const char *endpoint, gint64 deadline, GError **error)
{
  gboolean have_cs = FALSE;

  for (;;)
    {
      g_autoptr (OcpMessage) m = ocp_conn_recv (c, deadline, error);
      if (m == NULL)
        return FALSE;
      if (!have_cs)
        {
          if (strcmp (m->name, "CS") != 0)
            {
              g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "%s: first message is not CS", endpoint);
              return FALSE;
            }
          have_cs = TRUE;
          continue;
        }
      if (strcmp (m->name, "NR") == 0)
        return accept_nr (c, svc, m, endpoint, error);
      if (!ocp_conn_answer_common (c, m, deadline, error))
        return FALSE;
    }
}

/* SGC 1 with the service URI: every transaction runs in group 1. */
static gboolean
join_service (OcpConn *c, const OcpServiceConfig *svc, gint64 deadline, GError **error)
{
  OcpValue *services = ocp_list_new ();
  OcpValue *service = ocp_struct_new ();

  ocp_value_add (service, ocp_atom_new (svc->uri));
  ocp_value_add (services, service);
  return ocp_conn_send (c, ocp_message_add (ocp_message_add_uint (ocp_message_new ("SGC"), 1), services),
                        deadline, error);
}

OcpConn *
ocp_conn_open (const OcpServiceConfig *svc, const char *endpoint, const char *key, gint64 deadline,
               GError **error)
{
  g_autoptr (GSocketAddress) addr = endpoint_address (endpoint, error);
  gint64 cdeadline = MIN (deadline, g_get_monotonic_time () + (gint64) svc->connect_timeout_ms * 1000);
  OcpConn *c;

  if (addr == NULL)
    return NULL;
  c = ocp_conn_new (key);
  if (conn_connect (c, addr, endpoint, cdeadline, error)
      && (!svc->tls || conn_start_tls (c, svc, endpoint, cdeadline, error))
      && send_offer (c, svc, cdeadline, error)
      && await_nr (c, svc, endpoint, cdeadline, error)
      && join_service (c, svc, cdeadline, error))
    return c;
  ocp_conn_unref (c);
  return NULL;
}
