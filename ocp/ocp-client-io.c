/* ocp-client-io.c - one processor connection: its life (reference
 * counted) and its bounded reads and writes, in clear or through TLS.
 *
 * Called from the delivery worker threads, so everything here blocks, and
 * every wait is bounded by a deadline (RFC 4037 2.7: no agent may wait
 * forever).  Writers hold the connection's write lock around whole
 * messages; OpenSSL calls are serialised by the ssl lock, since a session
 * is not for two threads at once.
 */
#include "config.h"

#include <string.h>

#include "ocp-client-private.h"

static void
inbox_free (gpointer q)
{
  g_queue_free_full (q, (GDestroyNotify) ocp_message_free);
}

OcpConn *
ocp_conn_new (const char *key)
{
  OcpConn *c = g_new0 (OcpConn, 1);
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

OcpConn *
ocp_conn_ref (OcpConn *c)
{
  g_atomic_int_inc (&c->refs);
  return c;
}

void
ocp_conn_unref (OcpConn *c)
{
  if (c == NULL || !g_atomic_int_dec_and_test (&c->refs))
    return;
  if (c->tls)
    util_tls_free (c->tls);
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

/* ---- waiting ------------------------------------------------------------- */

gboolean
ocp_conn_wait_io (GSocket *sock, GIOCondition cond, gint64 deadline, GError **error)
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

gboolean
ocp_conn_tls_wait (OcpConn *c, UtilTlsStatus st, gint64 deadline, GError **error)
{
  if (st == UTIL_TLS_WANT_READ)
    return ocp_conn_wait_io (c->sock, G_IO_IN, deadline, error);
  if (st == UTIL_TLS_WANT_WRITE)
    return ocp_conn_wait_io (c->sock, G_IO_OUT, deadline, error);
  if (error && *error == NULL)
    g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "callout server closed the TLS session");
  return ocp_conn_tls_failed (error);
}

/* A TLS failure makes the endpoint unavailable: util/ says why, ocp/'s
 * callers decide by OCP_ERROR codes. */
gboolean
ocp_conn_tls_failed (GError **error)
{
  if (error && *error && (*error)->domain == UTIL_ERROR)
    {
      (*error)->domain = OCP_ERROR;
      (*error)->code = OCP_ERROR_UNAVAILABLE;
    }
  return FALSE;
}

typedef enum {
  INPUT_READY,
  INPUT_NONE,      /* nothing yet, and the caller does not wait */
  INPUT_FAILED,    /* the deadline passed or the socket failed */
} InputState;

/* Whether there is input (or the end of it) to read: without waiting when
 * @nowait, else until @deadline. */
static InputState
await_input (OcpConn *c, gint64 deadline, gboolean nowait, GError **error)
{
  if (nowait)
    return g_socket_condition_check (c->sock, G_IO_IN | G_IO_HUP | G_IO_ERR) ? INPUT_READY : INPUT_NONE;
  return ocp_conn_wait_io (c->sock, G_IO_IN, deadline, error) ? INPUT_READY : INPUT_FAILED;
}

/* ---- writing ------------------------------------------------------------- */

static gboolean
send_tls (OcpConn *c, const char *p, gsize len, gint64 deadline, GError **error)
{
  while (len > 0)
    {
      gsize n = 0;
      UtilTlsStatus st;
      g_mutex_lock (&c->ssl_lock);
      st = util_tls_write (c->tls, p, len, &n, error);
      g_mutex_unlock (&c->ssl_lock);
      if (st == UTIL_TLS_OK)
        {
          p += n;
          len -= n;
        }
      else if (!ocp_conn_tls_wait (c, st, deadline, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
send_plain (OcpConn *c, const char *p, gsize len, gint64 deadline, GError **error)
{
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
          if (!ocp_conn_wait_io (c->sock, G_IO_OUT, deadline, error))
            return FALSE;
          continue;
        }
      p += n;
      len -= n;
    }
  return TRUE;
}

gboolean
ocp_conn_send_all (OcpConn *c, const char *p, gsize len, gint64 deadline, GError **error)
{
  if (c->tls)
    return send_tls (c, p, len, deadline, error);
  return send_plain (c, p, len, deadline, error);
}

gboolean
ocp_conn_flush (OcpConn *c, GString *out, gint64 deadline, GError **error)
{
  gboolean ok;

  if (out->len == 0)
    return TRUE;
  g_mutex_lock (&c->wlock);
  ok = ocp_conn_send_all (c, out->str, out->len, deadline, error);
  g_mutex_unlock (&c->wlock);
  g_string_truncate (out, 0);
  return ok;
}

gboolean
ocp_conn_queue (OcpConn *c, GString *out, OcpMessage *m, gint64 deadline, GError **error)
{
  ocp_message_write (m, out);
  ocp_message_free (m);
  return out->len < OCP_CLIENT_CHUNK || ocp_conn_flush (c, out, deadline, error);
}

gboolean
ocp_conn_send (OcpConn *c, OcpMessage *m, gint64 deadline, GError **error)
{
  g_autoptr (GString) out = g_string_new (NULL);
  return ocp_conn_queue (c, out, m, deadline, error) && ocp_conn_flush (c, out, deadline, error);
}

/* ---- reading ------------------------------------------------------------- */

static gboolean
tls_pending (OcpConn *c)
{
  gboolean pending;

  g_mutex_lock (&c->ssl_lock);
  pending = util_tls_pending (c->tls);
  g_mutex_unlock (&c->ssl_lock);
  return pending;
}

static gboolean
read_tls (OcpConn *c, char *buf, gsize size, gint64 deadline, gboolean nowait, GError **error)
{
  for (;;)
    {
      gsize got = 0;
      UtilTlsStatus st;
      InputState in = tls_pending (c) ? INPUT_READY : await_input (c, deadline, nowait, error);
      if (in != INPUT_READY)
        return in == INPUT_NONE;
      g_mutex_lock (&c->ssl_lock);
      st = util_tls_read (c->tls, buf, size, &got, error);
      g_mutex_unlock (&c->ssl_lock);
      if (st == UTIL_TLS_OK)
        {
          g_byte_array_append (c->in, (guint8 *) buf, got);
          return TRUE;
        }
      if (st == UTIL_TLS_WANT_READ && nowait)
        return TRUE; /* a record without data for us (a session ticket) */
      if (st == UTIL_TLS_WANT_READ || st == UTIL_TLS_WANT_WRITE)
        {
          if (!ocp_conn_tls_wait (c, st, deadline, error))
            return FALSE;
          continue;
        }
      if (error && *error == NULL)
        g_set_error (error, OCP_ERROR, OCP_ERROR_CLOSED, "callout server closed the TLS session");
      return ocp_conn_tls_failed (error);
    }
}

static gboolean
read_plain (OcpConn *c, char *buf, gsize size, gint64 deadline, gboolean nowait, GError **error)
{
  for (;;)
    {
      g_autoptr (GError) e = NULL;
      gssize n;
      InputState in = await_input (c, deadline, nowait, error);
      if (in != INPUT_READY)
        return in == INPUT_NONE;
      n = g_socket_receive (c->sock, buf, size, NULL, &e);
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

gboolean
ocp_conn_read_some (OcpConn *c, gint64 deadline, gboolean nowait, GError **error)
{
  char buf[OCP_CLIENT_CHUNK];

  if (c->tls)
    return read_tls (c, buf, sizeof buf, deadline, nowait, error);
  return read_plain (c, buf, sizeof buf, deadline, nowait, error);
}

OcpMessage *
ocp_conn_parse_next (OcpConn *c, GError **error)
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

OcpMessage *
ocp_conn_recv (OcpConn *c, gint64 deadline, GError **error)
{
  for (;;)
    {
      OcpMessage *m = ocp_conn_parse_next (c, error);
      if (m || (error && *error))
        return m;
      if (!ocp_conn_read_some (c, deadline, FALSE, error))
        return NULL;
    }
}
