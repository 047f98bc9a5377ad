/* ocp-client-reader.c - input on a shared processor connection, and its
 * end.
 *
 * Connections carry many transactions at once (RFC 4037 2.6): whichever
 * thread waits for input reads for all (leader/follower), hands each
 * message to the inbox of the transaction it names, and answers the
 * connection-scope messages (PQ, AQ, NO, CE) itself.  A connection ends
 * with CE, and then every transaction on it fails.
 */
#include "config.h"

#include <string.h>

#include "ocp-client-private.h"

/* AQ asks whether a feature is supported now (RFC 4037 11.23): only the
 * version of our profile the server's NR accepted on this connection. */
static gboolean
ability (OcpConn *c, const OcpMessage *m)
{
  const OcpValue *f = ocp_message_anon (m, 0);

  return c->negotiated && f && f->kind == OCP_STRUCT && f->items->len >= 1
         && ocp_profile_version (ocp_value_get_atom (f->items->pdata[0])) == c->version;
}

/* PQ is answered at once, even for an unknown xid; the PA names the xid
 * only while we still work on it (RFC 4037 11.22). */
static OcpMessage *
progress_answer (OcpConn *c, const OcpMessage *m)
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

gboolean
ocp_conn_answer_common (OcpConn *c, const OcpMessage *m, gint64 deadline, GError **error)
{
  if (strcmp (m->name, "PQ") == 0)
    return ocp_conn_send (c, progress_answer (c, m), deadline, error);
  if (strcmp (m->name, "AQ") == 0)
    return ocp_conn_send (c, ocp_message_add (ocp_message_new ("AA"), ocp_atom_new (ability (c, m) ? "true" : "false")),
                          deadline, error);
  if (strcmp (m->name, "NO") == 0)
    return ocp_conn_send (c, ocp_message_new ("NR"), deadline, error); /* we accept nothing offered */
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
send_ce (OcpConn *c, guint code, const char *why)
{
  g_autoptr (GString) out = g_string_new (NULL);
  OcpMessage *ce = ocp_message_new ("CE");

  if (!g_mutex_trylock (&c->wlock))
    {
      ocp_message_free (ce);
      return;
    }
  if (code != 200)
    ocp_message_add (ce, ocp_result_new (code, why));
  ocp_message_write (ce, out);
  ocp_message_free (ce);
  ocp_conn_send_all (c, out->str, out->len, g_get_monotonic_time () + G_USEC_PER_SEC / 2, NULL);
  g_mutex_unlock (&c->wlock);
}

void
ocp_conn_end (OcpConn *c, guint code, const char *why)
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

void
ocp_conn_kill (OcpConn *c, const char *why)
{
  ocp_conn_end (c, 400, why);
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
dispatch (OcpConn *c, gint64 deadline, GError **error)
{
  g_autoptr (GPtrArray) rest = g_ptr_array_new_with_free_func ((GDestroyNotify) ocp_message_free);
  g_autoptr (GError) perr = NULL;
  OcpMessage *m;

  g_mutex_lock (&c->lock);
  while ((m = ocp_conn_parse_next (c, &perr)) != NULL)
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
    if (!ocp_conn_answer_common (c, rest->pdata[i], deadline, error))
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
lead (OcpConn *c, gint64 deadline, gboolean nowait, GError **error)
{
  gboolean ok;
  g_autoptr (GError) e = NULL;

  g_mutex_unlock (&c->lock);
  ok = ocp_conn_read_some (c, deadline, nowait, &e) && dispatch (c, deadline, &e);
  if (!ok && !g_error_matches (e, OCP_ERROR, OCP_ERROR_TIMEOUT))
    ocp_conn_kill (c, e->message);
  g_mutex_lock (&c->lock);
  c->reading = FALSE;
  g_cond_broadcast (&c->cond);
  if (e)
    g_propagate_error (error, g_steal_pointer (&e));
}

OcpMessage *
ocp_conn_recv_for (OcpConn *c, guint64 xid, gint64 deadline, GError **error)
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

void
ocp_conn_pump (OcpConn *c)
{
  g_mutex_lock (&c->lock);
  if (!c->reading && !c->dead)
    {
      c->reading = TRUE;
      lead (c, g_get_monotonic_time () + G_USEC_PER_SEC, TRUE, NULL);
    }
  g_mutex_unlock (&c->lock);
}

OcpMessage *
ocp_conn_inbox_pop (OcpConn *c, guint64 xid)
{
  OcpMessage *m;
  GQueue *q;

  g_mutex_lock (&c->lock);
  q = g_hash_table_lookup (c->inbox, &xid);
  m = q ? g_queue_pop_head (q) : NULL;
  g_mutex_unlock (&c->lock);
  return m;
}

gboolean
ocp_conn_inbox_take (OcpConn *c, guint64 xid, const char *name, gboolean first_only)
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
