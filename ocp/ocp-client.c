/* ocp-client.c - the OPES processor side of OCP.
 *
 * Called from the delivery worker threads, so it is blocking and
 * thread-safe; every wait is bounded by the transaction's deadline (RFC
 * 4037 2.7: no agent may wait forever).  Connections are pooled per
 * service and endpoint and carry many transactions at once (RFC 4037 2.6):
 * each thread writes whole messages under the connection's write lock, and
 * whichever thread waits for input reads for all (leader/follower),
 * handing each message to the transaction it names.  An endpoint that
 * cannot be reached is skipped for a while and the next one (stand-by) is
 * used.
 *
 * Per connection: CS, NO offering our profile with the parts this service
 * may receive, NR (the server picks the parts it wants), SGC 1 with the
 * service URI.  Per transaction: TS, AMS with the envelope, DUMs of the
 * header and body parts read from the spool (Kept: the whole range, since
 * the spool keeps it), AME; then the server's AMS (verdict), DUM/DUY
 * (adapted parts), AME, and TE.
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
#define TXNS_PER_CONN 16
#define TE_GRACE_USEC (250 * 1000)

typedef struct {
  gint refs;
  GSocket *sock;
  OcpTls *tls;
  char *key;
  guint parts;
  guint version;        /* of our profile, as the server chose in NR */
  GMutex ssl_lock;      /* OpenSSL sessions are not for two threads at once */
  GMutex wlock;         /* one writer at a time: messages never interleave */
  GMutex lock;          /* what follows */
  GCond cond;
  guint64 next_xid;     /* the last xid used: each TS names a higher one */
  gboolean negotiated;  /* the server accepted our profile */
  gboolean te_silent;   /* the server once sent AME without its TE */
  guint active;         /* transactions in flight */
  gboolean reading;     /* some thread is reading for everyone */
  gboolean dead;
  char *dead_why;
  GHashTable *inbox;    /* xid -> GQueue of OcpMessage* */
  GByteArray *in;       /* read, not yet parsed (by the reader only) */
} Conn;

typedef struct {
  GPtrArray *conns;     /* Conn*, open connections to one endpoint */
  guint opening;
} Pool;

struct OcpClient {
  GMutex lock;
  GCond cond;
  GHashTable *pools;    /* key -> Pool* */
  GHashTable *down;     /* endpoint -> gint64 until */
};

static void conn_end (Conn *c, guint code, const char *why);

static void
inbox_free (gpointer q)
{
  g_queue_free_full (q, (GDestroyNotify) ocp_message_free);
}

static Conn *
conn_ref (Conn *c)
{
  g_atomic_int_inc (&c->refs);
  return c;
}

static void
conn_unref (Conn *c)
{
  if (c == NULL || !g_atomic_int_dec_and_test (&c->refs))
    return;
  if (c->tls)
    ocp_tls_free (c->tls);
  if (c->sock)
    {
      g_socket_close (c->sock, NULL);
      g_object_unref (c->sock);
    }
  g_hash_table_unref (c->inbox);
  g_byte_array_unref (c->in);
  g_mutex_clear (&c->ssl_lock);
  g_mutex_clear (&c->wlock);
  g_mutex_clear (&c->lock);
  g_cond_clear (&c->cond);
  g_free (c->dead_why);
  g_free (c->key);
  g_free (c);
}

static Conn *
conn_new (const char *key)
{
  Conn *c = g_new0 (Conn, 1);
  c->refs = 1;
  c->key = g_strdup (key);
  c->in = g_byte_array_new ();
  c->inbox = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, inbox_free);
  g_mutex_init (&c->ssl_lock);
  g_mutex_init (&c->wlock);
  g_mutex_init (&c->lock);
  g_cond_init (&c->cond);
  return c;
}

static void
pool_free (gpointer p)
{
  Pool *pool = p;
  g_ptr_array_unref (pool->conns);
  g_free (pool);
}

OcpClient *
ocp_client_new (void)
{
  OcpClient *cl = g_new0 (OcpClient, 1);
  g_mutex_init (&cl->lock);
  g_cond_init (&cl->cond);
  cl->pools = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, pool_free);
  cl->down = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return cl;
}

void
ocp_client_close (OcpClient *cl)
{
  GHashTableIter it;
  gpointer pool;

  g_mutex_lock (&cl->lock);
  g_hash_table_iter_init (&it, cl->pools);
  while (g_hash_table_iter_next (&it, NULL, &pool))
    for (guint i = 0; i < ((Pool *) pool)->conns->len; i++)
      conn_end (((Pool *) pool)->conns->pdata[i], 200, NULL);
  g_mutex_unlock (&cl->lock);
}

void
ocp_client_free (OcpClient *cl)
{
  if (cl == NULL)
    return;
  ocp_client_close (cl);
  g_hash_table_unref (cl->pools);
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
          g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "%s", e->message);
          return FALSE;
        }
      g_set_error (error, OCP_ERROR, OCP_ERROR_TIMEOUT, "callout server timed out");
      return FALSE;
    }
  return TRUE;
}

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

/* Writes whole messages; the caller holds wlock. */
static gboolean
send_all (Conn *c, const char *p, gsize len, gint64 deadline, GError **error)
{
  while (len > 0 && c->tls)
    {
      gsize n = 0;
      OcpTlsStatus st;
      g_mutex_lock (&c->ssl_lock);
      st = ocp_tls_write (c->tls, p, len, &n, error);
      g_mutex_unlock (&c->ssl_lock);
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

/* Small messages of one transaction go out in one write, through @out. */
static gboolean
flush_out (Conn *c, GString *out, gint64 deadline, GError **error)
{
  gboolean ok;

  if (out->len == 0)
    return TRUE;
  g_mutex_lock (&c->wlock);
  ok = send_all (c, out->str, out->len, deadline, error);
  g_mutex_unlock (&c->wlock);
  g_string_truncate (out, 0);
  return ok;
}

static gboolean
queue_msg (Conn *c, GString *out, OcpMessage *m, gint64 deadline, GError **error)
{
  ocp_message_write (m, out);
  ocp_message_free (m);
  return out->len < CHUNK || flush_out (c, out, deadline, error);
}

static gboolean
send_msg (Conn *c, OcpMessage *m, gint64 deadline, GError **error)
{
  g_autoptr (GString) out = g_string_new (NULL);
  return queue_msg (c, out, m, deadline, error) && flush_out (c, out, deadline, error);
}

/* Reads one chunk (waiting until @deadline unless @nowait) into c->in.
 * Only the reader calls this. */
static gboolean
read_some (Conn *c, gint64 deadline, gboolean nowait, GError **error)
{
  char buf[CHUNK];

  if (c->tls)
    {
      for (;;)
        {
          gsize got = 0;
          gboolean pending;
          OcpTlsStatus st;
          g_mutex_lock (&c->ssl_lock);
          pending = ocp_tls_pending (c->tls);
          g_mutex_unlock (&c->ssl_lock);
          if (!pending)
            {
              if (nowait && !g_socket_condition_check (c->sock, G_IO_IN | G_IO_HUP | G_IO_ERR))
                return TRUE;
              if (!nowait && !wait_io (c->sock, G_IO_IN, deadline, error))
                return FALSE;
            }
          g_mutex_lock (&c->ssl_lock);
          st = ocp_tls_read (c->tls, buf, sizeof buf, &got, error);
          g_mutex_unlock (&c->ssl_lock);
          if (st == OCP_TLS_OK)
            {
              g_byte_array_append (c->in, (guint8 *) buf, got);
              return TRUE;
            }
          if (st == OCP_TLS_WANT_READ && nowait)
            return TRUE; /* a record without data for us (a session ticket) */
          if (st == OCP_TLS_WANT_READ || st == OCP_TLS_WANT_WRITE)
            {
              if (!tls_wait (c, st, deadline, error))
                return FALSE;
              continue;
            }
          if (error && *error == NULL)
            g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "callout server closed the TLS session");
          return FALSE;
        }
    }
  for (;;)
    {
      g_autoptr (GError) e = NULL;
      gssize n;
      if (nowait && !g_socket_condition_check (c->sock, G_IO_IN | G_IO_HUP | G_IO_ERR))
        return TRUE;
      if (!nowait && !wait_io (c->sock, G_IO_IN, deadline, error))
        return FALSE;
      n = g_socket_receive (c->sock, buf, sizeof buf, NULL, &e);
      if (n < 0 && g_error_matches (e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        continue;
      if (n <= 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "callout server closed the connection%s%s",
                       e ? ": " : "", e ? e->message : "");
          return FALSE;
        }
      g_byte_array_append (c->in, (guint8 *) buf, n);
      return TRUE;
    }
}

/* The next complete message in c->in, or NULL (error set if invalid). */
static OcpMessage *
parse_next (Conn *c, GError **error)
{
  OcpMessage *m = NULL;
  gsize used = 0;

  if (c->in->len == 0)
    return NULL;
  switch (ocp_message_parse ((const char *) c->in->data, c->in->len, NULL, &m, &used, error))
    {
    case OCP_PARSE_OK:
      g_byte_array_remove_range (c->in, 0, used);
      return m;
    case OCP_PARSE_MORE:
    case OCP_PARSE_ERROR:
      break;
    }
  return NULL;
}

/* Before the connection is shared (negotiation): the next message. */
static OcpMessage *
recv_msg (Conn *c, gint64 deadline, GError **error)
{
  for (;;)
    {
      OcpMessage *m = parse_next (c, error);
      if (m || (error && *error))
        return m;
      if (!read_some (c, deadline, FALSE, error))
        return NULL;
    }
}

/* AQ asks whether a feature is supported now (RFC 4037 11.23): only the
 * version of our profile the server's NR accepted on this connection. */
static gboolean
ability (Conn *c, const OcpMessage *m)
{
  const OcpValue *f = ocp_message_anon (m, 0);

  return c->negotiated && f && f->kind == OCP_STRUCT && f->items->len >= 1
         && ocp_profile_version (ocp_value_get_atom (f->items->pdata[0])) == c->version;
}

/* PQ is answered at once, even for an unknown xid; the PA names the xid
 * only while we still work on it (RFC 4037 11.22). */
static OcpMessage *
progress_answer (Conn *c, const OcpMessage *m)
{
  OcpMessage *pa = ocp_message_new ("PA");
  guint64 xid;
  gboolean live;

  if (!ocp_message_anon_uint (m, 0, &xid))
    return pa;
  g_mutex_lock (&c->lock);
  live = g_hash_table_contains (c->inbox, &xid);
  g_mutex_unlock (&c->lock);
  return live ? ocp_message_add_uint (pa, xid) : pa;
}

/* Answers the messages any agent must answer at any time.  FALSE when the
 * connection is over. */
static gboolean
answer_common (Conn *c, const OcpMessage *m, gint64 deadline, GError **error)
{
  if (strcmp (m->name, "PQ") == 0)
    return send_msg (c, progress_answer (c, m), deadline, error);
  if (strcmp (m->name, "AQ") == 0)
    return send_msg (c, ocp_message_add (ocp_message_new ("AA"), ocp_atom_new (ability (c, m) ? "true" : "false")),
                     deadline, error);
  if (strcmp (m->name, "NO") == 0)
    return send_msg (c, ocp_message_new ("NR"), deadline, error); /* we accept nothing offered */
  if (strcmp (m->name, "CE") == 0)
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "callout server ended the connection");
      return FALSE;
    }
  return TRUE;
}

/* Tells the server the connection ends (RFC 4037 11.4: CE with a result,
 * 400 for a failure).  Best effort and bounded: a thread in the middle of
 * writing a message holds the write lock, and then the connection only
 * closes, as it would after a crash. */
static void
send_ce (Conn *c, guint code, const char *why)
{
  g_autoptr (GString) out = g_string_new (NULL);
  OcpMessage *ce = ocp_message_new ("CE");

  if (!g_mutex_trylock (&c->wlock))
    {
      ocp_message_free (ce);
      return;
    }
  if (code != 200)
    {
      OcpValue *r = ocp_struct_new ();
      ocp_value_add (r, ocp_atom_new_uint (code));
      if (why)
        ocp_value_add (r, ocp_atom_new (why));
      ocp_message_add (ce, r);
    }
  ocp_message_write (ce, out);
  ocp_message_free (ce);
  send_all (c, out->str, out->len, g_get_monotonic_time () + G_USEC_PER_SEC / 2, NULL);
  g_mutex_unlock (&c->wlock);
}

/* Ends the connection with CE @code: every transaction on it fails. */
static void
conn_end (Conn *c, guint code, const char *why)
{
  gboolean first;

  g_mutex_lock (&c->lock);
  first = !c->dead;
  if (first)
    {
      c->dead = TRUE;
      c->dead_why = g_strdup (why);
    }
  g_cond_broadcast (&c->cond);
  g_mutex_unlock (&c->lock);
  if (first)
    {
      send_ce (c, code, why);
      g_socket_shutdown (c->sock, TRUE, TRUE, NULL);
    }
}

/* The connection broke. */
static void
conn_kill (Conn *c, const char *why)
{
  conn_end (c, 400, why);
}

/* Whether @m goes to the inbox of a transaction.  PQ and AQ are answered
 * for the connection; PA and PR with an xid tell the transaction the server
 * is alive. */
static gboolean
for_transaction (const OcpMessage *m, guint64 *xid)
{
  return ocp_message_anon_uint (m, 0, xid) && strcmp (m->name, "PQ") != 0 && strcmp (m->name, "AQ") != 0;
}

/* Hands parsed messages to their transactions; the reader calls this.  All
 * messages of one read are routed under one hold of the lock, so a
 * transaction that sees the server's AME also sees a TE sent with it. */
static gboolean
dispatch (Conn *c, gint64 deadline, GError **error)
{
  g_autoptr (GPtrArray) rest = g_ptr_array_new_with_free_func ((GDestroyNotify) ocp_message_free);
  g_autoptr (GError) perr = NULL;
  OcpMessage *m;

  g_mutex_lock (&c->lock);
  while ((m = parse_next (c, &perr)) != NULL)
    {
      guint64 xid;
      GQueue *q = for_transaction (m, &xid) ? g_hash_table_lookup (c->inbox, &xid) : NULL;
      if (q)
        g_queue_push_tail (q, m);
      else
        g_ptr_array_add (rest, m); /* connection scope, or a transaction that is over (a late TE) */
    }
  g_cond_broadcast (&c->cond);
  g_mutex_unlock (&c->lock);
  for (guint i = 0; i < rest->len; i++)
    if (!answer_common (c, rest->pdata[i], deadline, error))
      return FALSE;
  if (perr)
    {
      g_propagate_error (error, g_steal_pointer (&perr));
      return FALSE;
    }
  return TRUE;
}

/* One round of reading for everybody.  The caller holds c->lock and has
 * set c->reading; the lock is released while reading. */
static void
lead (Conn *c, gint64 deadline, gboolean nowait, GError **error)
{
  gboolean ok;
  g_autoptr (GError) e = NULL;

  g_mutex_unlock (&c->lock);
  ok = read_some (c, deadline, nowait, &e) && dispatch (c, deadline, &e);
  if (!ok && !g_error_matches (e, OCP_ERROR, OCP_ERROR_TIMEOUT))
    conn_kill (c, e->message);
  g_mutex_lock (&c->lock);
  c->reading = FALSE;
  g_cond_broadcast (&c->cond);
  if (e)
    g_propagate_error (error, g_steal_pointer (&e));
}

/* The next message for transaction @xid, reading for everyone when nobody
 * else is.  NULL with @error on timeout or a dead connection. */
static OcpMessage *
recv_for (Conn *c, guint64 xid, gint64 deadline, GError **error)
{
  OcpMessage *m = NULL;

  g_mutex_lock (&c->lock);
  for (;;)
    {
      GQueue *q = g_hash_table_lookup (c->inbox, &xid);
      if (q && (m = g_queue_pop_head (q)) != NULL)
        break;
      if (c->dead)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "%s", c->dead_why ? c->dead_why : "connection lost");
          break;
        }
      if (!c->reading)
        {
          GError *e = NULL;
          c->reading = TRUE;
          lead (c, deadline, FALSE, &e);
          if (e && g_error_matches (e, OCP_ERROR, OCP_ERROR_TIMEOUT))
            {
              g_propagate_error (error, e);
              break;
            }
          g_clear_error (&e);
          continue;
        }
      if (!g_cond_wait_until (&c->cond, &c->lock, deadline))
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_TIMEOUT, "callout server timed out");
          break;
        }
    }
  g_mutex_unlock (&c->lock);
  return m;
}

/* Reads whatever has arrived, without waiting, if nobody else is reading. */
static void
pump (Conn *c)
{
  g_mutex_lock (&c->lock);
  if (!c->reading && !c->dead)
    {
      c->reading = TRUE;
      lead (c, g_get_monotonic_time () + G_USEC_PER_SEC, TRUE, NULL);
    }
  g_mutex_unlock (&c->lock);
}

/* The next message already in @xid's inbox, or NULL. */
static OcpMessage *
inbox_pop (Conn *c, guint64 xid)
{
  OcpMessage *m;
  GQueue *q;

  g_mutex_lock (&c->lock);
  q = g_hash_table_lookup (c->inbox, &xid);
  m = q ? g_queue_pop_head (q) : NULL;
  g_mutex_unlock (&c->lock);
  return m;
}

/* Looks at @xid's inbox for a message named @name and takes it out. */
static gboolean
inbox_take (Conn *c, guint64 xid, const char *name, gboolean first_only)
{
  gboolean found = FALSE;
  GQueue *q;

  g_mutex_lock (&c->lock);
  q = g_hash_table_lookup (c->inbox, &xid);
  for (GList *l = q ? q->head : NULL; l && !found; l = first_only ? NULL : l->next)
    {
      OcpMessage *m = l->data;
      if (strcmp (m->name, name) == 0)
        {
          g_queue_delete_link (q, l);
          ocp_message_free (m);
          found = TRUE;
        }
    }
  g_mutex_unlock (&c->lock);
  return found;
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
  g_autoptr (GString) out = g_string_new (NULL);
  Conn *c;
  OcpMessage *no;
  OcpValue *feature, *list;
  gboolean have_cs = FALSE;

  if (addr == NULL)
    return NULL;
  c = conn_new (key);
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
  /* bootstrap: CS, then our offer at once (RFC 4037 6.1): version 2 of
   * the profile, then version 1 for a server that knows only that one */
  list = ocp_list_new ();
  for (guint v = 2; v >= 1; v--)
    {
      feature = ocp_struct_new ();
      ocp_value_add (feature, ocp_atom_new (v == 2 ? OCP_LMTP_PROFILE_2 : OCP_LMTP_PROFILE));
      ocp_value_add_named (feature, "Parts", ocp_parts_to_value (svc->parts));
      ocp_value_add (list, feature);
    }
  no = ocp_message_add (ocp_message_new ("NO"), list);
  if (!queue_msg (c, out, ocp_message_new ("CS"), cdeadline, error) || !queue_msg (c, out, no, cdeadline, error)
      || !flush_out (c, out, cdeadline, error))
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
          || (c->version = ocp_profile_version (ocp_value_get_atom (f->items->pdata[0]))) == 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "%s does not speak the LMTP profile", endpoint);
          goto fail;
        }
      c->parts = ocp_value_get_named (f, "Parts") ? ocp_parts_from_value (ocp_value_get_named (f, "Parts"))
                                                  : svc->parts;
      c->parts &= svc->parts;
      c->parts |= OCP_PART_ENVELOPE;
      c->negotiated = TRUE;
      break;
    }
  {
    OcpValue *services = ocp_list_new ();
    OcpValue *service = ocp_struct_new ();
    ocp_value_add (service, ocp_atom_new (svc->uri));
    ocp_value_add (services, service);
    if (!send_msg (c, ocp_message_add (ocp_message_add_uint (ocp_message_new ("SGC"), 1), services),
                   cdeadline, error))
      goto fail;
  }
  return c;
fail:
  conn_unref (c);
  return NULL;
}

/* ---- one transaction ----------------------------------------------------- */
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
send_part (Conn *c, GString *out, guint64 xid, const OcpRequest *req, const char *part, guint64 spool_off,
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
      if (!queue_msg (c, out, dum, deadline, error))
        return FALSE;
      *flow_off += n;
      spool_off += n;
      len -= n;
      /* RFC 4037 8.1: a server that needs no more says DWSR */
      if (len > 0 && out->len == 0)
        {
          pump (c);
          if (inbox_take (c, xid, "DWSR", FALSE))
            *stopped = TRUE;
        }
    }
  return TRUE;
}

/* After the server's AME: whether its TE comes too.  Servers send AME and
 * TE together, but they may arrive in two reads; a short wait spares the
 * server a TE for a transaction it has already ended.  A server that once
 * left the TE to us is not waited for again. */
static gboolean
server_ended (Conn *c, guint64 xid, gint64 deadline)
{
  gint64 until = MIN (deadline, g_get_monotonic_time () + (c->te_silent ? 0 : TE_GRACE_USEC));

  for (;;)
    {
      g_autoptr (GError) e = NULL;
      g_autoptr (OcpMessage) m = inbox_pop (c, xid);
      if (m == NULL && until > g_get_monotonic_time ())
        m = recv_for (c, xid, until, &e);
      if (m == NULL)
        {
          if (g_error_matches (e, OCP_ERROR, OCP_ERROR_TIMEOUT) || e == NULL)
            c->te_silent = TRUE;
          return FALSE;
        }
      if (strcmp (m->name, "TE") == 0)
        return TRUE;
    }
}

/* Whether @n octets of @p (or, if NULL, of @fd from its start) are the
 * spool's from @spool_off. */
static gboolean
same_octets (const OcpRequest *req, guint64 spool_off, const char *p, int fd, guint64 n)
{
  char a[CHUNK], b[CHUNK];
  guint64 off = 0;

  while (off < n)
    {
      gsize k = MIN (n - off, sizeof a);
      if (pread (req->fd, a, k, spool_off + off) != (gssize) k)
        return FALSE;
      if (p == NULL && pread (fd, b, k, off) != (gssize) k)
        return FALSE;
      if (memcmp (a, p ? p + off : b, k) != 0)
        return FALSE;
      off += k;
    }
  return TRUE;
}

/* Whether the adapted message is the original octet for octet (a part not
 * sent back is the original part). */
static gboolean
adapted_is_original (const Adapted *a)
{
  const OcpRequest *req = a->req;
  guint64 hlen = a->header ? a->header->len : req->header_len;
  guint64 blen = a->body_fd >= 0 ? a->body_len : req->body_len;

  if (req->fd < 0 || (a->header == NULL && a->body_fd < 0))
    return FALSE;
  if (hlen + blen != req->header_len + req->body_len)
    return FALSE;
  if (a->header && !same_octets (req, 0, a->header->str, -1, hlen))
    return FALSE;
  return a->body_fd < 0 || same_octets (req, hlen, NULL, a->body_fd, blen);
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

/* Opens a transaction: TS and AMS.  The xid is taken and the TS written
 * under the write lock, so TSs leave in the order of their xids, each
 * higher than every earlier one on the connection (RFC 4037 10.2); a
 * writer that took a lower xid cannot overtake.  *xid is 0 on failure
 * before the xid was taken. */
static gboolean
txn_start (Conn *c, const OcpRequest *req, guint64 *xid, gint64 deadline, GError **error)
{
  g_autoptr (GString) out = g_string_new (NULL);
  OcpMessage *ts, *ams;
  gboolean ok;

  g_mutex_lock (&c->wlock);
  g_mutex_lock (&c->lock);
  *xid = ++c->next_xid;
  g_hash_table_insert (c->inbox, g_memdup2 (xid, sizeof *xid), g_queue_new ());
  g_mutex_unlock (&c->lock);
  ts = ocp_message_add_uint (ocp_message_add_uint (ocp_message_new ("TS"), *xid), 1);
  ams = ocp_message_add_uint (ocp_message_new ("AMS"), *xid);
  ocp_request_to_message (req, ams);
  ocp_message_write (ts, out);
  ocp_message_write (ams, out);
  ocp_message_free (ts);
  ocp_message_free (ams);
  ok = send_all (c, out->str, out->len, deadline, error);
  g_mutex_unlock (&c->wlock);
  return ok;
}

static gboolean
conn_transact (Conn *c, const OcpServiceConfig *svc, const OcpRequest *req, OcpVerdict *out,
               gint64 deadline, GError **error)
{
  guint64 xid, flow = 0;
  gboolean have_ams = FALSE, done = FALSE, stopped = FALSE, ok = FALSE;
  Adapted a = { req, 0, 0, NULL, -1, 0, FALSE, FALSE };
  gint64 first_deadline, progress_at;
  g_autoptr (GString) o = g_string_new (NULL);

  if (!txn_start (c, req, &xid, deadline, error))
    goto fail;
  if (req->fd >= 0 && (c->parts & OCP_PART_HEADER))
    {
      if (!send_part (c, o, xid, req, "message-header", 0, req->header_len, &flow, deadline, &stopped, error))
        goto fail;
      a.org_header = flow;
    }
  if (req->fd >= 0 && (c->parts & OCP_PART_BODY))
    {
      if (!send_part (c, o, xid, req, "message-body", req->header_len, req->body_len, &flow, deadline,
                      &stopped, error))
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
    if (!queue_msg (c, o, ame, deadline, error) || !flush_out (c, o, deadline, error))
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

      m = recv_for (c, xid, wait_until, error);
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
      if (strcmp (m->name, "PA") == 0 || strcmp (m->name, "PR") == 0)
        {
          /* the server says it works on it, asked or not: it may take
           * the whole transaction deadline (RFC 4037 5) */
          first_deadline = deadline;
          progress_at = G_MAXINT64;
          continue;
        }
      if (strcmp (m->name, "AMS") == 0)
        {
          if (have_ams || !ocp_verdict_from_message (out, m, error))
            goto proto;
          if (c->version < 2) /* not negotiated: not ours to honour */
            g_clear_pointer (&out->recipients, g_ptr_array_unref);
          have_ams = TRUE;
        }
      else if (strcmp (m->name, "DUM") == 0)
        {
          gsize len = 0;
          const char *p = m->payload ? g_bytes_get_data (m->payload, &len) : NULL;
          part = ocp_value_get_atom (ocp_message_get (m, "AM-Part"));
          if (!have_ams)
            goto proto;
          /* no data, only parameters such as Modp (a DUY-based server
           * sends that): nothing to store, and valid (RFC 4037 11.9) */
          if (len == 0 && part == NULL)
            continue;
          if (part == NULL)
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
      else if (strcmp (m->name, "DUY") == 0)
        {
          if (!have_ams || !ocp_message_anon_uint (m, 1, &off) || !ocp_message_anon_uint (m, 2, &n)
              || !on_duy (&a, off, n, error))
            goto proto;
        }
      else if (strcmp (m->name, "AME") == 0)
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
      else if (strcmp (m->name, "TE") == 0)
        {
          result_failed (m, 1, &why);
          g_set_error (error, OCP_ERROR, OCP_ERROR_REFUSED, "%s ended the transaction%s%s", svc->name,
                       why ? ": " : "", why ? why : "");
          goto fail;
        }
      else if (strcmp (m->name, "DWSS") == 0)
        {
          /* we keep the whole original: the server may stop adapting */
          if (!send_msg (c, ocp_message_add_uint (ocp_message_new ("DSS"), xid), deadline, error))
            goto fail;
        }
      else if (strcmp (m->name, "DWP") == 0)
        {
          /* all our data is sent already: paused at once */
          if (!send_msg (c, ocp_message_add_uint (ocp_message_new ("DPM"), xid), deadline, error))
            goto fail;
        }
      /* DPI, DWSR (too late), DPM, DWM, PR: nothing to do */
    }
  /* The transaction ends at the first TE (RFC 4037 4): if the server
   * sent one, ours would name an ended transaction. */
  if (!server_ended (c, xid, deadline)
      && !send_msg (c, ocp_message_add_uint (ocp_message_new ("TE"), xid), deadline, error))
    goto fail;
  if (adapted_is_original (&a))
    {
      /* an echo: as if nothing had been adapted (stored and traced so) */
      if (a.header)
        g_string_free (a.header, TRUE);
      a.header = NULL;
      if (a.body_fd >= 0)
        close (a.body_fd);
      a.body_fd = -1;
    }
  if (a.header)
    out->header = g_string_free_to_bytes (g_steal_pointer (&a.header));
  if (a.body_fd >= 0)
    {
      lseek (a.body_fd, 0, SEEK_SET);
      out->body_fd = a.body_fd;
      out->body_len = a.body_len;
      a.body_fd = -1;
    }
  ok = TRUE;
  goto out;

proto:
  if (error && *error == NULL)
    g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "%s broke the protocol", svc->name);
  /* an invalid message in transaction scope ends the transaction (RFC 4037 2.7) */
  {
    OcpMessage *te = ocp_message_add_uint (ocp_message_new ("TE"), xid);
    OcpValue *r = ocp_struct_new ();
    ocp_value_add (r, ocp_atom_new_uint (400));
    ocp_message_add (te, r);
    send_msg (c, te, MIN (deadline, g_get_monotonic_time () + G_USEC_PER_SEC), NULL);
  }
fail:
  if (error && g_error_matches (*error, OCP_ERROR, OCP_ERROR_TIMEOUT))
    {
      /* give up on this transaction only; the connection serves others */
      OcpMessage *te = ocp_message_add_uint (ocp_message_new ("TE"), xid);
      OcpValue *r = ocp_struct_new ();
      ocp_value_add (r, ocp_atom_new_uint (400));
      ocp_value_add (r, ocp_atom_new ("timed out"));
      ocp_message_add (te, r);
      send_msg (c, te, g_get_monotonic_time () + G_USEC_PER_SEC / 2, NULL);
    }
  if (a.header)
    g_string_free (a.header, TRUE);
  if (a.body_fd >= 0)
    close (a.body_fd);
out:
  g_mutex_lock (&c->lock);
  g_hash_table_remove (c->inbox, &xid);
  g_mutex_unlock (&c->lock);
  return ok;
}

/* ---- the pool ------------------------------------------------------------ */

/* A connection with room for one more transaction, or permission to open
 * one (*may_open), or NULL after @deadline. */
static Conn *
pool_take (OcpClient *cl, const char *key, guint max, gint64 deadline, gboolean *may_open)
{
  Conn *best = NULL;

  g_mutex_lock (&cl->lock);
  for (;;)
    {
      Pool *pool = g_hash_table_lookup (cl->pools, key);
      if (pool == NULL)
        {
          pool = g_new0 (Pool, 1);
          pool->conns = g_ptr_array_new_with_free_func ((GDestroyNotify) conn_unref);
          g_hash_table_insert (cl->pools, g_strdup (key), pool);
        }
      for (guint i = 0; i < pool->conns->len;)
        {
          Conn *c = pool->conns->pdata[i];
          gboolean dead;
          if (c->active == 0)
            pump (c); /* an idle connection may have been closed by the server */
          g_mutex_lock (&c->lock);
          dead = c->dead;
          g_mutex_unlock (&c->lock);
          if (dead && c->active == 0)
            {
              g_ptr_array_remove_index_fast (pool->conns, i);
              continue;
            }
          if (!dead && c->active < TXNS_PER_CONN && (best == NULL || c->active < best->active))
            best = c;
          i++;
        }
      /* a free connection; or a new one while under the limit and all are busy */
      if (best && (best->active == 0 || pool->conns->len + pool->opening >= max))
        {
          best->active++;
          conn_ref (best);
          break;
        }
      best = NULL;
      if (pool->conns->len + pool->opening < max)
        {
          pool->opening++;
          *may_open = TRUE;
          break;
        }
      if (!g_cond_wait_until (&cl->cond, &cl->lock, deadline))
        break;
    }
  g_mutex_unlock (&cl->lock);
  return best;
}

/* Adds a newly opened connection (or gives back the right to open one). */
static void
pool_opened (OcpClient *cl, const char *key, Conn *c)
{
  Pool *pool;

  g_mutex_lock (&cl->lock);
  pool = g_hash_table_lookup (cl->pools, key);
  pool->opening--;
  if (c)
    {
      c->active = 1;
      g_ptr_array_add (pool->conns, conn_ref (c));
    }
  g_cond_broadcast (&cl->cond);
  g_mutex_unlock (&cl->lock);
}

static void
pool_release (OcpClient *cl, Conn *c, gboolean broken)
{
  if (broken)
    conn_kill (c, "transaction failed");
  g_mutex_lock (&cl->lock);
  c->active--;
  g_cond_broadcast (&cl->cond);
  g_mutex_unlock (&cl->lock);
  conn_unref (c);
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

        if (endpoint_down (cl, ep) != (pass == 1))
          continue;
        for (guint attempt = 0; attempt < 2; attempt++)
          {
            gboolean may_open = FALSE, reused, broken;
            Conn *c;

            g_clear_error (&last);
            c = pool_take (cl, key, MAX (svc->max_connections, 1), deadline, &may_open);
            reused = c != NULL;
            if (c == NULL && may_open)
              {
                c = conn_open (svc, ep, key, deadline, &last);
                pool_opened (cl, key, c);
                if (c == NULL)
                  {
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
                pool_release (cl, c, FALSE);
                return TRUE;
              }
            /* a timeout or refusal ends only this transaction; anything
             * else (closed, invalid input) the connection */
            broken = !g_error_matches (last, OCP_ERROR, OCP_ERROR_REFUSED)
                     && !g_error_matches (last, OCP_ERROR, OCP_ERROR_TIMEOUT);
            pool_release (cl, c, broken);
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
