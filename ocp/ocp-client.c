/* ocp-client.c - the OPES processor side of OCP: the client, its pools of
 * connections, and one call with fail-over.
 *
 * Called from the delivery worker threads, so it is blocking and
 * thread-safe; every wait is bounded by the transaction's deadline (RFC
 * 4037 2.7: no agent may wait forever).  Connections are pooled per
 * service and endpoint and carry many transactions at once (RFC 4037 2.6).
 * An endpoint that cannot be reached is skipped for a while and the next
 * one (stand-by) is used.
 *
 * The connection itself lives in the files ocp-client-private.h lists:
 * opening it (ocp-client-open.c), its I/O (ocp-client-io.c), the shared
 * reader (ocp-client-reader.c), one transaction (ocp-client-txn.c) and
 * the adapted message (ocp-client-adapted.c).
 */
#include "config.h"

#include "ocp-client-private.h"

#define DOWN_USEC (5 * G_USEC_PER_SEC)
#define TXNS_PER_CONN 16

typedef struct {
  GPtrArray *conns;     /* OcpConn*, open connections to one endpoint */
  guint opening;
} Pool;

struct OcpClient {
  GMutex lock;
  GCond cond;
  GHashTable *pools;    /* key -> Pool* */
  GHashTable *down;     /* endpoint -> gint64 until */
};

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
      ocp_conn_end (((Pool *) pool)->conns->pdata[i], 200, NULL);
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

/* ---- the pool ------------------------------------------------------------ */

/* The pool for @key, made on first use; the caller holds cl->lock. */
static Pool *
pool_get (OcpClient *cl, const char *key)
{
  Pool *pool = g_hash_table_lookup (cl->pools, key);

  if (pool == NULL)
    {
      pool = g_new0 (Pool, 1);
      pool->conns = g_ptr_array_new_with_free_func ((GDestroyNotify) ocp_conn_unref);
      g_hash_table_insert (cl->pools, g_strdup (key), pool);
    }
  return pool;
}

/* Drops idle connections that are dead and returns the least busy live one
 * with room for one more transaction, or NULL. */
static OcpConn *
pool_least_busy (Pool *pool)
{
  OcpConn *best = NULL;

  for (guint i = 0; i < pool->conns->len;)
    {
      OcpConn *c = pool->conns->pdata[i];
      gboolean dead;
      if (c->active == 0)
        ocp_conn_pump (c); /* an idle connection may have been closed by the server */
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
  return best;
}

/* A connection with room for one more transaction, or permission to open
 * one (*may_open), or NULL after @deadline. */
static OcpConn *
pool_take (OcpClient *cl, const char *key, guint max, gint64 deadline, gboolean *may_open)
{
  OcpConn *best = NULL;

  g_mutex_lock (&cl->lock);
  for (;;)
    {
      Pool *pool = pool_get (cl, key);
      best = pool_least_busy (pool);
      /* a free connection; or a new one while under the limit and all are busy */
      if (best && (best->active == 0 || pool->conns->len + pool->opening >= max))
        {
          best->active++;
          ocp_conn_ref (best);
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
pool_opened (OcpClient *cl, const char *key, OcpConn *c)
{
  Pool *pool;

  g_mutex_lock (&cl->lock);
  pool = g_hash_table_lookup (cl->pools, key);
  pool->opening--;
  if (c)
    {
      c->active = 1;
      g_ptr_array_add (pool->conns, ocp_conn_ref (c));
    }
  g_cond_broadcast (&cl->cond);
  g_mutex_unlock (&cl->lock);
}

static void
pool_release (OcpClient *cl, OcpConn *c, gboolean broken)
{
  if (broken)
    ocp_conn_kill (c, "transaction failed");
  g_mutex_lock (&cl->lock);
  c->active--;
  g_cond_broadcast (&cl->cond);
  g_mutex_unlock (&cl->lock);
  ocp_conn_unref (c);
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

/* ---- one call ------------------------------------------------------------ */

typedef struct {
  OcpClient *cl;
  const OcpServiceConfig *svc;
  const OcpRequest *req;
  OcpVerdict *out;
  gint64 deadline;
} Call;

/* A pooled connection to @ep (*reused) or a new one; an endpoint that
 * cannot be reached is marked down. */
static OcpConn *
conn_for (const Call *call, const char *ep, const char *key, gboolean *reused, GError **error)
{
  gboolean may_open = FALSE;
  OcpConn *c = pool_take (call->cl, key, MAX (call->svc->max_connections, 1), call->deadline, &may_open);

  *reused = c != NULL;
  if (c == NULL && may_open)
    {
      c = ocp_conn_open (call->svc, ep, key, call->deadline, error);
      pool_opened (call->cl, key, c);
      if (c == NULL
          && (g_error_matches (*error, OCP_ERROR, OCP_ERROR_UNAVAILABLE)
              || g_error_matches (*error, OCP_ERROR, OCP_ERROR_TIMEOUT)))
        mark_down (call->cl, ep);
      return c;
    }
  if (c == NULL)
    g_set_error (error, OCP_ERROR, OCP_ERROR_TIMEOUT, "%s: no free connection", call->svc->name);
  return c;
}

/* The transaction through @ep.  A timeout or refusal ends only the
 * transaction; anything else (closed, invalid input) the connection, and a
 * pooled connection the server had closed gets one fresh try.  @error is
 * cleared before each try. */
static gboolean
call_endpoint (const Call *call, const char *ep, GError **error)
{
  g_autofree char *key = g_strdup_printf ("%s\n%s", call->svc->name, ep);

  for (guint attempt = 0; attempt < 2; attempt++)
    {
      gboolean reused, broken;
      OcpConn *c;

      g_clear_error (error);
      c = conn_for (call, ep, key, &reused, error);
      if (c == NULL)
        return FALSE;
      if (ocp_conn_transact (c, call->svc, call->req, call->out, call->deadline, error))
        {
          pool_release (call->cl, c, FALSE);
          return TRUE;
        }
      broken = !g_error_matches (*error, OCP_ERROR, OCP_ERROR_REFUSED)
               && !g_error_matches (*error, OCP_ERROR, OCP_ERROR_TIMEOUT);
      pool_release (call->cl, c, broken);
      ocp_verdict_clear (call->out);
      if (!(reused && g_error_matches (*error, OCP_ERROR, OCP_ERROR_CLOSED)))
        return FALSE;
    }
  return FALSE;
}

/* Whether the next endpoint could do better: not after the deadline, nor
 * when the server answered and refused or broke the protocol. */
static gboolean
worth_failing_over (const Call *call, const GError *last)
{
  return g_get_monotonic_time () < call->deadline && !g_error_matches (last, OCP_ERROR, OCP_ERROR_REFUSED)
         && !g_error_matches (last, OCP_ERROR, OCP_ERROR_PROTOCOL)
         && !g_error_matches (last, OCP_ERROR, OCP_ERROR_PARSE);
}

gboolean
ocp_client_call (OcpClient *cl, const OcpServiceConfig *svc, const OcpRequest *req, OcpVerdict *out,
                 GError **error)
{
  Call call = { cl, svc, req, out, g_get_monotonic_time () + (gint64) svc->timeout_ms * 1000 };
  g_autoptr (GError) last = NULL;
  guint n = svc->servers ? g_strv_length (svc->servers) : 0;
  gboolean go_on = TRUE;
  const char *tried = NULL;

  ocp_verdict_init (out);
  /* endpoints that are up first, in order; then the ones marked down */
  for (guint pass = 0; pass < 2 && go_on; pass++)
    for (guint i = 0; i < n && go_on; i++)
      {
        if (endpoint_down (cl, svc->servers[i]) != (pass == 1))
          continue;
        tried = svc->servers[i];
        if (call_endpoint (&call, tried, &last))
          {
            out->server = g_strdup (tried);
            return TRUE;
          }
        go_on = worth_failing_over (&call, last);
      }
  out->server = g_strdup (tried); /* call_endpoint cleared @out: who failed, for the trace */
  if (last == NULL)
    g_set_error (&last, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "%s: no callout server configured", svc->name);
  g_propagate_error (error, g_steal_pointer (&last));
  return FALSE;
}
