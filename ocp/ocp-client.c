/* ocp-client.c - the OPES processor side of OCP.
 *
 * Called from the delivery worker threads, so it is blocking and
 * thread-safe; every wait is bounded by the transaction's deadline (RFC
 * 4037 2.7: no agent may wait forever).  Connections are pooled per
 * service and endpoint; a connection carries one transaction at a time
 * and goes back to the pool afterwards.  An endpoint that cannot be
 * reached is skipped for a while and the next one (stand-by) is used.
 *
 * Per connection: CS, NO offering our profile with the parts this service
 * may receive, NR (the server picks the parts it wants), SGC 1 with the
 * service URI.  Per transaction: TS, AMS with the envelope, DUMs of the
 * header and body parts read from the spool (Kept: the whole range, since
 * the spool keeps it), AME; then the server's AMS (verdict), DUM/DUY
 * (adapted parts), AME, and our TE.
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <gio/gunixsocketaddress.h>

#include "ocp.h"
#include "ocp-tls.h"

#define CHUNK (64 * 1024)
#define HEADER_MAX (1024 * 1024)
#define DOWN_USEC (5 * G_USEC_PER_SEC)

typedef struct {
  GSocket *sock;
  char *key;
  GByteArray *in;
  GString *out;         /* messages not sent yet (queue_msg / flush_out) */
  OcpTls *tls;          /* or NULL */
  GQueue pending;       /* messages read ahead while we were still sending */
  guint64 next_xid;
  guint parts;
} Conn;

struct OcpClient {
  GMutex lock;
  GCond cond;
  GHashTable *idle;     /* key -> GQueue of Conn* */
  GHashTable *open;     /* key -> count of open connections */
  GHashTable *down;     /* endpoint -> gint64 until */
};

static void
conn_free (Conn *c)
{
  if (c == NULL)
    return;
  g_queue_clear_full (&c->pending, (GDestroyNotify) ocp_message_free);
  ocp_tls_free (c->tls);
  if (c->sock)
    {
      g_socket_close (c->sock, NULL);
      g_object_unref (c->sock);
    }
  g_byte_array_unref (c->in);
  if (c->out)
    g_string_free (c->out, TRUE);
  g_free (c->key);
  g_free (c);
}

OcpClient *
ocp_client_new (void)
{
  OcpClient *cl = g_new0 (OcpClient, 1);
  g_mutex_init (&cl->lock);
  g_cond_init (&cl->cond);
  cl->idle = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  cl->open = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  cl->down = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return cl;
}

void
ocp_client_free (OcpClient *cl)
{
  GHashTableIter it;
  gpointer k, v;

  if (cl == NULL)
    return;
  g_hash_table_iter_init (&it, cl->idle);
  while (g_hash_table_iter_next (&it, &k, &v))
    g_queue_free_full (v, (GDestroyNotify) conn_free);
  g_hash_table_unref (cl->idle);
  g_hash_table_unref (cl->open);
  g_hash_table_unref (cl->down);
  g_mutex_clear (&cl->lock);
  g_cond_clear (&cl->cond);
  g_free (cl);
}

/* ---- bounded I/O --------------------------------------------------------- */

static gboolean
wait_io (GSocket *sock, GIOCondition cond, gint64 deadline, GError **error)
{
  gint64 left = deadline - g_get_monotonic_time ();
  g_autoptr (GError) e = NULL;

  if (left <= 0 || !g_socket_condition_timed_wait (sock, cond, left, NULL, &e))
    {
      if (e && !g_error_matches (e, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
        {
          g_propagate_error (error, g_steal_pointer (&e));
          return FALSE;
        }
      g_set_error (error, OCP_ERROR, OCP_ERROR_TIMEOUT, "callout server timed out");
      return FALSE;
    }
  return TRUE;
}

/* Waits as TLS asks; FALSE (with @error) when the session is over. */
static gboolean
tls_wait (Conn *c, OcpTlsStatus st, gint64 deadline, GError **error)
{
  if (st == OCP_TLS_WANT_READ)
    return wait_io (c->sock, G_IO_IN, deadline, error);
  if (st == OCP_TLS_WANT_WRITE)
    return wait_io (c->sock, G_IO_OUT, deadline, error);
  if (error && *error == NULL)
    g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "callout server closed the TLS session");
  return FALSE;
}

static gboolean
send_all (Conn *c, const char *p, gsize len, gint64 deadline, GError **error)
{
  while (len > 0 && c->tls)
    {
      gsize n = 0;
      OcpTlsStatus st = ocp_tls_write (c->tls, p, len, &n, error);
      if (st == OCP_TLS_OK)
        {
          p += n;
          len -= n;
        }
      else if (!tls_wait (c, st, deadline, error))
        return FALSE;
    }
  while (len > 0)
    {
      g_autoptr (GError) e = NULL;
      gssize n = g_socket_send (c->sock, p, len, NULL, &e);
      if (n < 0)
        {
          if (!g_error_matches (e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            {
              g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "send: %s", e->message);
              return FALSE;
            }
          if (!wait_io (c->sock, G_IO_OUT, deadline, error))
            return FALSE;
          continue;
        }
      p += n;
      len -= n;
    }
  return TRUE;
}

/* Small messages of one transaction go out in one write. */
static gboolean
flush_out (Conn *c, gint64 deadline, GError **error)
{
  gboolean ok;
  if (c->out == NULL || c->out->len == 0)
    return TRUE;
  ok = send_all (c, c->out->str, c->out->len, deadline, error);
  g_string_truncate (c->out, 0);
  return ok;
}

static gboolean
queue_msg (Conn *c, OcpMessage *m, gint64 deadline, GError **error)
{
  if (c->out == NULL)
    c->out = g_string_sized_new (4096);
  ocp_message_write (m, c->out);
  ocp_message_free (m);
  return c->out->len < CHUNK || flush_out (c, deadline, error);
}

static gboolean
send_msg (Conn *c, OcpMessage *m, gint64 deadline, GError **error)
{
  return queue_msg (c, m, deadline, error) && flush_out (c, deadline, error);
}

static OcpMessage *
recv_msg (Conn *c, gint64 deadline, GError **error)
{
  if (!g_queue_is_empty (&c->pending))
    return g_queue_pop_head (&c->pending);
  for (;;)
    {
      OcpMessage *m = NULL;
      gsize used = 0;
      char buf[CHUNK];
      gssize n;
      g_autoptr (GError) e = NULL;

      if (c->in->len > 0)
        switch (ocp_message_parse ((const char *) c->in->data, c->in->len, NULL, &m, &used, error))
          {
          case OCP_PARSE_OK:
            g_byte_array_remove_range (c->in, 0, used);
            return m;
          case OCP_PARSE_ERROR:
            return NULL;
          case OCP_PARSE_MORE:
            break;
          }
      if (c->tls)
        {
          gsize got = 0;
          OcpTlsStatus st = ocp_tls_pending (c->tls) ? OCP_TLS_OK : OCP_TLS_WANT_READ;
          if (st == OCP_TLS_WANT_READ && !wait_io (c->sock, G_IO_IN, deadline, error))
            return NULL;
          st = ocp_tls_read (c->tls, buf, sizeof buf, &got, error);
          if (st == OCP_TLS_OK)
            g_byte_array_append (c->in, (guint8 *) buf, got);
          else if (st == OCP_TLS_WANT_WRITE && !wait_io (c->sock, G_IO_OUT, deadline, error))
            return NULL;
          else if (st == OCP_TLS_CLOSED || st == OCP_TLS_ERROR)
            {
              if (error && *error == NULL)
                g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "callout server closed the TLS session");
              return NULL;
            }
          continue;
        }
      if (!wait_io (c->sock, G_IO_IN, deadline, error))
        return NULL;
      n = g_socket_receive (c->sock, buf, sizeof buf, NULL, &e);
      if (n < 0 && g_error_matches (e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        continue;
      if (n <= 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "callout server closed the connection%s%s",
                       e ? ": " : "", e ? e->message : "");
          return NULL;
        }
      g_byte_array_append (c->in, (guint8 *) buf, n);
    }
}

/* Answers the messages any agent must answer at any time. */
static gboolean
answer_common (Conn *c, const OcpMessage *m, gint64 deadline, GError **error)
{
  if (strcmp (m->name, "PQ") == 0)
    {
      OcpMessage *pa = ocp_message_new ("PA");
      return send_msg (c, pa, deadline, error);
    }
  if (strcmp (m->name, "AQ") == 0)
    {
      OcpMessage *aa = ocp_message_add (ocp_message_new ("AA"), ocp_atom_new ("false"));
      return send_msg (c, aa, deadline, error);
    }
  if (strcmp (m->name, "NO") == 0)
    return send_msg (c, ocp_message_new ("NR"), deadline, error); /* we accept nothing offered */
  if (strcmp (m->name, "CE") == 0)
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "callout server ended the connection");
      return FALSE;
    }
  return TRUE;
}

/* ---- connections ------------------------------------------------------- */

static GSocketAddress *
endpoint_address (const char *endpoint, GError **error)
{
  if (g_str_has_prefix (endpoint, "unix:"))
    return g_unix_socket_address_new (endpoint + 5);
  if (g_str_has_prefix (endpoint, "inet:"))
    {
      const char *hp = endpoint + 5, *colon = strrchr (hp, ':');
      g_autofree char *host = colon ? g_strndup (hp, colon - hp) : NULL;
      g_autoptr (GInetAddress) ip = NULL;
      guint64 port = colon ? g_ascii_strtoull (colon + 1, NULL, 10) : 0;

      if (host && host[0] == '[')
        {
          char *h = g_strndup (host + 1, strlen (host) - 2);
          g_free (host);
          host = h;
        }
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

static Conn *
conn_open (const OcpServiceConfig *svc, const char *endpoint, const char *key, gint64 deadline,
           GError **error)
{
  g_autoptr (GSocketAddress) addr = endpoint_address (endpoint, error);
  g_autoptr (GError) e = NULL;
  gint64 cdeadline = MIN (deadline, g_get_monotonic_time () + (gint64) svc->connect_timeout_ms * 1000);
  Conn *c;
  OcpMessage *no;
  OcpValue *feature, *list;
  gboolean have_cs = FALSE;

  if (addr == NULL)
    return NULL;
  c = g_new0 (Conn, 1);
  c->key = g_strdup (key);
  c->in = g_byte_array_new ();
  c->sock = g_socket_new (g_socket_address_get_family (addr), G_SOCKET_TYPE_STREAM,
                          G_SOCKET_PROTOCOL_DEFAULT, error);
  if (c->sock == NULL)
    goto fail;
  g_socket_set_blocking (c->sock, FALSE);
  if (g_socket_get_family (c->sock) != G_SOCKET_FAMILY_UNIX)
    g_socket_set_option (c->sock, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  if (!g_socket_connect (c->sock, addr, NULL, &e))
    {
      if (!g_error_matches (e, G_IO_ERROR, G_IO_ERROR_PENDING))
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "%s: %s", endpoint, e->message);
          goto fail;
        }
      g_clear_error (&e);
      if (!wait_io (c->sock, G_IO_OUT, cdeadline, error))
        goto fail;
      if (!g_socket_check_connect_result (c->sock, &e))
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "%s: %s", endpoint, e->message);
          goto fail;
        }
    }
  if (svc->tls)
    {
      g_autofree char *host = NULL;
      const char *name = svc->tls_server_name;
      OcpTlsStatus st;
      if (name == NULL && g_str_has_prefix (endpoint, "inet:"))
        {
          const char *hp = endpoint + 5, *colon = strrchr (hp, ':');
          host = g_strndup (hp, colon - hp);
          if (host[0] == '[')
            {
              char *h = g_strndup (host + 1, strlen (host) - 2);
              g_free (host);
              host = h;
            }
          name = host;
        }
      c->tls = ocp_tls_new (g_socket_get_fd (c->sock), name ? name : "localhost", svc->tls_ca_file,
                            svc->tls_cert_file, svc->tls_key_file, error);
      if (c->tls == NULL)
        goto fail;
      while ((st = ocp_tls_handshake (c->tls, error)) != OCP_TLS_OK)
        if (st == OCP_TLS_ERROR || st == OCP_TLS_CLOSED || !tls_wait (c, st, cdeadline, error))
          {
            if (error && *error == NULL)
              g_set_error (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "%s: TLS handshake failed", endpoint);
            else if (error)
              (*error)->code = OCP_ERROR_UNAVAILABLE;
            goto fail;
          }
    }
  /* bootstrap: CS, then our offer at once (RFC 4037 6.1) */
  feature = ocp_struct_new ();
  ocp_value_add (feature, ocp_atom_new (OCP_LMTP_PROFILE));
  ocp_value_add_named (feature, "Parts", ocp_parts_to_value (svc->parts));
  list = ocp_value_add (ocp_list_new (), feature);
  no = ocp_message_add (ocp_message_new ("NO"), list);
  if (!queue_msg (c, ocp_message_new ("CS"), cdeadline, error) || !queue_msg (c, no, cdeadline, error)
      || !flush_out (c, cdeadline, error))
    goto fail;
  for (;;)
    {
      g_autoptr (OcpMessage) m = recv_msg (c, cdeadline, error);
      const OcpValue *f;
      if (m == NULL)
        goto fail;
      if (!have_cs)
        {
          if (strcmp (m->name, "CS") != 0)
            {
              g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "%s: first message is not CS", endpoint);
              goto fail;
            }
          have_cs = TRUE;
          continue;
        }
      if (strcmp (m->name, "NR") != 0)
        {
          if (!answer_common (c, m, cdeadline, error))
            goto fail;
          continue;
        }
      f = ocp_message_anon (m, 0);
      if (f == NULL || f->kind != OCP_STRUCT || f->items->len < 1
          || g_strcmp0 (ocp_value_get_atom (f->items->pdata[0]), OCP_LMTP_PROFILE) != 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "%s does not speak the LMTP profile", endpoint);
          goto fail;
        }
      c->parts = ocp_value_get_named (f, "Parts") ? ocp_parts_from_value (ocp_value_get_named (f, "Parts"))
                                                  : svc->parts;
      c->parts &= svc->parts;
      c->parts |= OCP_PART_ENVELOPE;
      break;
    }
  {
    OcpValue *services = ocp_list_new ();
    OcpValue *service = ocp_struct_new ();
    ocp_value_add (service, ocp_atom_new (svc->uri));
    ocp_value_add (services, service);
    /* goes out with the first transaction */
    if (!queue_msg (c, ocp_message_add (ocp_message_add_uint (ocp_message_new ("SGC"), 1), services),
                    cdeadline, error))
      goto fail;
  }
  return c;
fail:
  conn_free (c);
  return NULL;
}

/* ---- one transaction ----------------------------------------------------- */

typedef struct {
  const OcpRequest *req;
  guint64 org_header;   /* original flow: header at [0, org_header) */
  guint64 org_body;     /* body at [org_header, org_header + org_body) */
  GString *header;      /* adapted header, or NULL */
  int body_fd;          /* adapted body, or -1 */
  guint64 body_len;
  gboolean body_whole_duy; /* the adapted body is exactly the original one */
  gboolean body_data;      /* anything else was sent for the body */
} Adapted;

static gboolean
body_write (Adapted *a, const char *p, gsize n, GError **error)
{
  if (a->body_fd < 0)
    {
      g_autofree char *path = NULL;
      a->body_fd = g_file_open_tmp ("ocp-body-XXXXXX", &path, error);
      if (a->body_fd < 0)
        return FALSE;
      g_unlink (path);
    }
  while (n > 0)
    {
      gssize w = write (a->body_fd, p, n);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "adapted body: %s", g_strerror (errno));
          return FALSE;
        }
      p += w;
      n -= w;
      a->body_len += w;
    }
  return TRUE;
}

static gboolean
header_append (Adapted *a, const char *p, gsize n, GError **error)
{
  if (a->header == NULL)
    a->header = g_string_new (NULL);
  if (a->header->len + n > HEADER_MAX)
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_LIMIT, "adapted header too large");
      return FALSE;
    }
  g_string_append_len (a->header, p, n);
  return TRUE;
}

/* Copies original octets [off, off+n) of the spool into the adapted parts. */
static gboolean
copy_original (Adapted *a, guint64 off, guint64 n, GError **error)
{
  char buf[CHUNK];
  /* original flow offset -> spool offset: header first, then body */
  while (n > 0)
    {
      gboolean in_header = off < a->org_header;
      guint64 spool_off = in_header ? off : a->req->header_len + (off - a->org_header);
      guint64 k = MIN (n, in_header ? a->org_header - off : a->org_header + a->org_body - off);
      gssize r;

      if (k == 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "DUY beyond the original data");
          return FALSE;
        }
      r = pread (a->req->fd, buf, MIN (k, sizeof buf), spool_off);
      if (r <= 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "reading preserved data failed");
          return FALSE;
        }
      if (in_header ? !header_append (a, buf, r, error) : !body_write (a, buf, r, error))
        return FALSE;
      off += r;
      n -= r;
    }
  return TRUE;
}

static gboolean
on_duy (Adapted *a, guint64 off, guint64 n, GError **error)
{
  guint64 end = off + n;

  if (end < off || end > a->org_header + a->org_body)
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "DUY of data never kept");
      return FALSE;
    }
  /* the common case: the whole body, unchanged: nothing to copy */
  if (off <= a->org_header && end == a->org_header + a->org_body && !a->body_data && a->org_body > 0)
    {
      if (off < a->org_header && !copy_original (a, off, a->org_header - off, error))
        return FALSE;
      a->body_whole_duy = TRUE;
      return TRUE;
    }
  if (end > a->org_header)
    {
      a->body_data = TRUE;
      if (a->body_whole_duy)
        {
          /* materialize the earlier whole-body reference first */
          a->body_whole_duy = FALSE;
          if (!copy_original (a, a->org_header, a->org_body, error))
            return FALSE;
        }
    }
  return copy_original (a, off, n, error);
}

static gboolean
xid_of (const OcpMessage *m, guint64 want)
{
  guint64 x;
  return ocp_message_anon_uint (m, 0, &x) && x == want;
}

/* Reads what the server sent while we are still sending, without
 * waiting.  TRUE if it asked us to stop sending (DWSR for @xid). */
static gboolean
server_wants_stop (Conn *c, guint64 xid)
{
  char buf[CHUNK];
  gboolean stop = FALSE;

  if (c->tls)
    return FALSE; /* read-ahead is for plain connections only */
  while (g_socket_condition_check (c->sock, G_IO_IN))
    {
      gssize n = g_socket_receive (c->sock, buf, sizeof buf, NULL, NULL);
      if (n <= 0)
        break; /* the receive loop will see it */
      g_byte_array_append (c->in, (guint8 *) buf, n);
    }
  for (;;)
    {
      OcpMessage *m = NULL;
      gsize used = 0;
      if (c->in->len == 0
          || ocp_message_parse ((const char *) c->in->data, c->in->len, NULL, &m, &used, NULL) != OCP_PARSE_OK)
        break;
      g_byte_array_remove_range (c->in, 0, used);
      if (strcmp (m->name, "DWSR") == 0 && xid_of (m, xid))
        stop = TRUE;
      g_queue_push_tail (&c->pending, m);
    }
  return stop;
}

/* TRUE (and the TE consumed) if the server's TE for @xid is already read. */
static gboolean
server_sent_te (Conn *c, guint64 xid)
{
  OcpMessage *m = NULL;
  gsize used = 0;

  if (!g_queue_is_empty (&c->pending))
    {
      m = g_queue_peek_head (&c->pending);
      if (strcmp (m->name, "TE") == 0 && xid_of (m, xid))
        {
          ocp_message_free (g_queue_pop_head (&c->pending));
          return TRUE;
        }
      return FALSE;
    }
  if (c->in->len == 0
      || ocp_message_parse ((const char *) c->in->data, c->in->len, NULL, &m, &used, NULL) != OCP_PARSE_OK)
    return FALSE;
  if (strcmp (m->name, "TE") == 0 && xid_of (m, xid))
    {
      g_byte_array_remove_range (c->in, 0, used);
      ocp_message_free (m);
      return TRUE;
    }
  ocp_message_free (m);
  return FALSE;
}

static gboolean
send_part (Conn *c, guint64 xid, const OcpRequest *req, const char *part, guint64 spool_off,
           guint64 len, guint64 *flow_off, gint64 deadline, gboolean *stopped, GError **error)
{
  char buf[CHUNK];

  while (len > 0 && !*stopped)
    {
      gssize n = pread (req->fd, buf, MIN (len, sizeof buf), spool_off);
      OcpMessage *dum;
      OcpNamed *kept;

      if (n <= 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "reading the spool failed");
          return FALSE;
        }
      dum = ocp_message_add_uint (ocp_message_add_uint (ocp_message_new ("DUM"), xid), *flow_off);
      /* Kept: everything so far, the spool has it (RFC 4037 7.1) */
      ocp_message_set (dum, "Kept", ocp_atom_new_uint (0));
      kept = dum->named->pdata[dum->named->len - 1];
      g_ptr_array_add (kept->values, ocp_atom_new_uint (*flow_off + n));
      ocp_message_set (dum, "AM-Part", ocp_atom_new (part));
      ocp_message_set_payload (dum, g_bytes_new (buf, n));
      if (!queue_msg (c, dum, deadline, error))
        return FALSE;
      *flow_off += n;
      spool_off += n;
      len -= n;
      /* RFC 4037 8.1: a server that needs no more says DWSR */
      if (len > 0 && server_wants_stop (c, xid))
        *stopped = TRUE;
    }
  return TRUE;
}

static gboolean
result_failed (const OcpMessage *m, guint idx, char **why)
{
  const OcpValue *r = ocp_message_anon (m, idx);
  guint64 code = 200;

  if (r == NULL)
    return FALSE;
  if (r->kind != OCP_STRUCT || r->items->len < 1 || !ocp_value_get_uint (r->items->pdata[0], &code))
    code = 400;
  if (code == 200 || code == 206)
    return FALSE;
  if (r->kind == OCP_STRUCT && r->items->len > 1)
    *why = g_strdup (ocp_value_get_atom (r->items->pdata[1]));
  return TRUE;
}

static gboolean
conn_transact (Conn *c, const OcpServiceConfig *svc, const OcpRequest *req, OcpVerdict *out,
               gint64 deadline, GError **error)
{
  guint64 xid = ++c->next_xid, flow = 0;
  gboolean have_ams = FALSE, done = FALSE, stopped = FALSE;
  Adapted a = { req, 0, 0, NULL, -1, 0, FALSE, FALSE };
  gint64 first_deadline, progress_at;
  OcpMessage *ams;

  if (!queue_msg (c, ocp_message_add_uint (ocp_message_add_uint (ocp_message_new ("TS"), xid), 1),
                  deadline, error))
    goto fail;
  ams = ocp_message_add_uint (ocp_message_new ("AMS"), xid);
  ocp_request_to_message (req, ams);
  if (!queue_msg (c, ams, deadline, error))
    goto fail;
  if (req->fd >= 0 && (c->parts & OCP_PART_HEADER))
    {
      if (!send_part (c, xid, req, "message-header", 0, req->header_len, &flow, deadline, &stopped, error))
        goto fail;
      a.org_header = flow;
    }
  if (req->fd >= 0 && (c->parts & OCP_PART_BODY))
    {
      if (!send_part (c, xid, req, "message-body", req->header_len, req->body_len, &flow, deadline, &stopped,
                      error))
        goto fail;
      a.org_body = flow - a.org_header;
    }
  {
    /* the original ended early when the server asked: AME 206 (RFC 4037 8.1) */
    OcpMessage *ame = ocp_message_add_uint (ocp_message_new ("AME"), xid);
    if (stopped)
      {
        OcpValue *r = ocp_struct_new ();
        ocp_value_add (r, ocp_atom_new_uint (206));
        ocp_value_add (r, ocp_atom_new ("stopped at the server's request"));
        ocp_message_add (ame, r);
      }
    if (!queue_msg (c, ame, deadline, error) || !flush_out (c, deadline, error))
      goto fail;
  }

  first_deadline = MIN (deadline, g_get_monotonic_time () + (gint64) svc->response_timeout_ms * 1000);
  /* halfway to the first-response deadline, ask how it goes (RFC 4037
   * 5: PQ before giving up); a server that answers PA gets the whole
   * transaction deadline */
  progress_at = g_get_monotonic_time () + (gint64) svc->response_timeout_ms * 500;
  while (!done)
    {
      g_autoptr (OcpMessage) m = NULL;
      g_autofree char *why = NULL;
      const char *part;
      guint64 off, n;
      gint64 wait_until = have_ams ? deadline : MIN (first_deadline, progress_at);

      m = recv_msg (c, wait_until, error);
      if (m == NULL && !have_ams && wait_until == progress_at && progress_at < first_deadline
          && g_error_matches (*error, OCP_ERROR, OCP_ERROR_TIMEOUT))
        {
          g_clear_error (error);
          progress_at = G_MAXINT64;
          if (!send_msg (c, ocp_message_add_uint (ocp_message_new ("PQ"), xid), deadline, error))
            goto fail;
          continue;
        }
      if (m == NULL)
        goto fail;
      if (strcmp (m->name, "PA") == 0 && progress_at == G_MAXINT64)
        {
          first_deadline = deadline; /* alive: it may take its time */
          continue;
        }
      if (strcmp (m->name, "AMS") == 0 && xid_of (m, xid))
        {
          if (have_ams || !ocp_verdict_from_message (out, m, error))
            goto proto;
          have_ams = TRUE;
        }
      else if (strcmp (m->name, "DUM") == 0 && xid_of (m, xid))
        {
          gsize len = 0;
          const char *p = m->payload ? g_bytes_get_data (m->payload, &len) : NULL;
          part = ocp_value_get_atom (ocp_message_get (m, "AM-Part"));
          if (!have_ams || m->payload == NULL || part == NULL)
            goto proto;
          if (strcmp (part, "message-header") == 0)
            {
              if (!header_append (&a, p, len, error))
                goto fail;
            }
          else if (strcmp (part, "message-body") == 0)
            {
              if (a.body_whole_duy)
                {
                  a.body_whole_duy = FALSE;
                  if (!copy_original (&a, a.org_header, a.org_body, error))
                    goto fail;
                }
              a.body_data = TRUE;
              if (!body_write (&a, p, len, error))
                goto fail;
            }
          else
            goto proto; /* a part the profile does not adapt */
        }
      else if (strcmp (m->name, "DUY") == 0 && xid_of (m, xid))
        {
          if (!have_ams || !ocp_message_anon_uint (m, 1, &off) || !ocp_message_anon_uint (m, 2, &n)
              || !on_duy (&a, off, n, error))
            goto proto;
        }
      else if (strcmp (m->name, "AME") == 0 && xid_of (m, xid))
        {
          if (result_failed (m, 1, &why))
            {
              g_set_error (error, OCP_ERROR, OCP_ERROR_REFUSED, "%s refused the message%s%s", svc->name,
                           why ? ": " : "", why ? why : "");
              goto fail;
            }
          if (!have_ams)
            goto proto;
          done = TRUE;
        }
      else if (strcmp (m->name, "TE") == 0 && xid_of (m, xid))
        {
          result_failed (m, 1, &why);
          g_set_error (error, OCP_ERROR, OCP_ERROR_REFUSED, "%s ended the transaction%s%s", svc->name,
                       why ? ": " : "", why ? why : "");
          goto fail;
        }
      else if (strcmp (m->name, "DWSS") == 0 && xid_of (m, xid))
        {
          /* we keep the whole original: the server may stop adapting */
          if (!send_msg (c, ocp_message_add_uint (ocp_message_new ("DSS"), xid), deadline, error))
            goto fail;
        }
      else if (strcmp (m->name, "DWP") == 0 && xid_of (m, xid))
        {
          /* all our data is sent already: paused at once */
          if (!send_msg (c, ocp_message_add_uint (ocp_message_new ("DPM"), xid), deadline, error))
            goto fail;
        }
      else if (!answer_common (c, m, deadline, error))
        goto fail;
    }
  /* The transaction ends at the first TE (RFC 4037 4): if the server's
   * is already here, ours would name an ended transaction. */
  if (!server_sent_te (c, xid)
      && !send_msg (c, ocp_message_add_uint (ocp_message_new ("TE"), xid), deadline, error))
    goto fail;
  if (a.header)
    out->header = g_string_free_to_bytes (g_steal_pointer (&a.header));
  if (a.body_fd >= 0)
    {
      lseek (a.body_fd, 0, SEEK_SET);
      out->body_fd = a.body_fd;
      out->body_len = a.body_len;
      a.body_fd = -1;
    }
  return TRUE;

proto:
  if (error && *error == NULL)
    g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "%s broke the protocol", svc->name);
fail:
  if (a.header)
    g_string_free (a.header, TRUE);
  if (a.body_fd >= 0)
    close (a.body_fd);
  return FALSE;
}

/* ---- the pool ------------------------------------------------------------ */

/* An idle connection may hold the server's TE (sent after its AME), a
 * progress report, or news that it is gone.  Returns FALSE if it is gone. */
static gboolean
conn_drain (Conn *c)
{
  char buf[4096];

  while (c->tls && (ocp_tls_pending (c->tls) || g_socket_condition_check (c->sock, G_IO_IN | G_IO_HUP | G_IO_ERR)))
    {
      gsize got = 0;
      OcpTlsStatus st = ocp_tls_read (c->tls, buf, sizeof buf, &got, NULL);
      if (st == OCP_TLS_OK)
        g_byte_array_append (c->in, (guint8 *) buf, got);
      else if (st == OCP_TLS_WANT_READ || st == OCP_TLS_WANT_WRITE)
        break; /* a TLS record with no data for us (a session ticket) */
      else
        return FALSE;
    }
  while (!c->tls && g_socket_condition_check (c->sock, G_IO_IN | G_IO_HUP | G_IO_ERR))
    {
      gssize n = g_socket_receive (c->sock, buf, sizeof buf, NULL, NULL);
      if (n <= 0)
        return FALSE;
      g_byte_array_append (c->in, (guint8 *) buf, n);
    }
  for (;;)
    {
      OcpMessage *m = NULL;
      gsize used = 0;
      OcpParseResult r = c->in->len ? ocp_message_parse ((const char *) c->in->data, c->in->len, NULL,
                                                         &m, &used, NULL)
                                    : OCP_PARSE_MORE;
      gboolean bad;
      if (r == OCP_PARSE_ERROR)
        return FALSE;
      if (r == OCP_PARSE_MORE)
        return TRUE;
      g_byte_array_remove_range (c->in, 0, used);
      bad = strcmp (m->name, "CE") == 0
            || (strcmp (m->name, "PQ") == 0
                && !send_msg (c, ocp_message_new ("PA"), g_get_monotonic_time () + G_USEC_PER_SEC, NULL));
      ocp_message_free (m);
      if (bad)
        return FALSE;
    }
}

static Conn *
pool_take (OcpClient *cl, const char *key, guint max, gint64 deadline, gboolean *may_open)
{
  Conn *c = NULL;

  g_mutex_lock (&cl->lock);
  for (;;)
    {
      GQueue *q = g_hash_table_lookup (cl->idle, key);
      guint open = GPOINTER_TO_UINT (g_hash_table_lookup (cl->open, key));
      while (q && (c = g_queue_pop_head (q)) != NULL)
        {
          if (conn_drain (c))
            break;
          conn_free (c);
          c = NULL;
          open--;
          g_hash_table_replace (cl->open, g_strdup (key), GUINT_TO_POINTER (open));
        }
      if (c)
        break;
      if (open < max)
        {
          g_hash_table_replace (cl->open, g_strdup (key), GUINT_TO_POINTER (open + 1));
          *may_open = TRUE;
          break;
        }
      if (!g_cond_wait_until (&cl->cond, &cl->lock, deadline))
        break;
    }
  g_mutex_unlock (&cl->lock);
  return c;
}

static void
pool_put (OcpClient *cl, const char *key, Conn *c, gboolean reusable)
{
  g_mutex_lock (&cl->lock);
  if (reusable && c)
    {
      GQueue *q = g_hash_table_lookup (cl->idle, key);
      if (q == NULL)
        {
          q = g_queue_new ();
          g_hash_table_insert (cl->idle, g_strdup (key), q);
        }
      g_queue_push_head (q, c);
    }
  else
    {
      guint open = GPOINTER_TO_UINT (g_hash_table_lookup (cl->open, key));
      g_hash_table_replace (cl->open, g_strdup (key), GUINT_TO_POINTER (open ? open - 1 : 0));
      conn_free (c);
    }
  g_cond_signal (&cl->cond);
  g_mutex_unlock (&cl->lock);
}

static gboolean
endpoint_down (OcpClient *cl, const char *endpoint)
{
  gboolean down;
  g_mutex_lock (&cl->lock);
  down = GPOINTER_TO_SIZE (g_hash_table_lookup (cl->down, endpoint)) > (gsize) g_get_monotonic_time ();
  g_mutex_unlock (&cl->lock);
  return down;
}

static void
mark_down (OcpClient *cl, const char *endpoint)
{
  g_mutex_lock (&cl->lock);
  g_hash_table_replace (cl->down, g_strdup (endpoint),
                        GSIZE_TO_POINTER ((gsize) (g_get_monotonic_time () + DOWN_USEC)));
  g_mutex_unlock (&cl->lock);
}

gboolean
ocp_client_call (OcpClient *cl, const OcpServiceConfig *svc, const OcpRequest *req, OcpVerdict *out,
                 GError **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) svc->timeout_ms * 1000;
  g_autoptr (GError) last = NULL;
  guint n = svc->servers ? g_strv_length (svc->servers) : 0;

  ocp_verdict_init (out);
  /* endpoints that are up first, in order; then the ones marked down */
  for (guint pass = 0; pass < 2; pass++)
    for (guint i = 0; i < n; i++)
      {
        const char *ep = svc->servers[i];
        g_autofree char *key = g_strdup_printf ("%s\n%s", svc->name, ep);
        gboolean may_open = FALSE;
        Conn *c;

        if (endpoint_down (cl, ep) != (pass == 1))
          continue;
        for (guint attempt = 0; attempt < 2; attempt++)
          {
            gboolean reused;
            g_clear_error (&last);
            c = pool_take (cl, key, MAX (svc->max_connections, 1), deadline, &may_open);
            reused = c != NULL;
            if (c == NULL && may_open)
              {
                c = conn_open (svc, ep, key, deadline, &last);
                if (c == NULL)
                  {
                    pool_put (cl, key, NULL, FALSE);
                    if (g_error_matches (last, OCP_ERROR, OCP_ERROR_UNAVAILABLE)
                        || g_error_matches (last, OCP_ERROR, OCP_ERROR_TIMEOUT))
                      mark_down (cl, ep);
                    break;
                  }
              }
            if (c == NULL)
              {
                g_set_error (&last, OCP_ERROR, OCP_ERROR_TIMEOUT, "%s: no free connection", svc->name);
                break;
              }
            if (conn_transact (c, svc, req, out, deadline, &last))
              {
                pool_put (cl, key, c, TRUE);
                return TRUE;
              }
            pool_put (cl, key, c, FALSE);
            ocp_verdict_clear (out);
            /* a pooled connection the server had closed: one fresh try */
            if (!(reused && g_error_matches (last, OCP_ERROR, OCP_ERROR_CLOSED)))
              break;
          }
        if (g_get_monotonic_time () >= deadline || g_error_matches (last, OCP_ERROR, OCP_ERROR_REFUSED)
            || g_error_matches (last, OCP_ERROR, OCP_ERROR_PROTOCOL)
            || g_error_matches (last, OCP_ERROR, OCP_ERROR_PARSE))
          goto out;
      }
out:
  if (last == NULL)
    g_set_error (&last, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "%s: no callout server configured", svc->name);
  g_propagate_error (error, g_steal_pointer (&last));
  return FALSE;
}
