/* state-nodes.c - the nodes table: each lmtpd with [cluster] node_name
 * says it is alive every HEARTBEAT seconds from a thread of its own (the
 * main loop never waits on PostgreSQL), and reads the node list there
 * too; the proxy takes that cached list (at most a heartbeat old) without
 * waiting, lmtpctl reads the table, and sets a node's state.  A node
 * whose heartbeat is older than [cluster] node_timeout counts as down
 * whatever its state says.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "state-private.h"

#define HEARTBEAT 3             /* seconds */
#define EXPIRE_EVERY 60         /* seconds between two expiries of old rows */
#define CACHE_US G_USEC_PER_SEC

static const char *const state_names[] = { "up", "draining", "down" };

const char *
state_node_state_name (StateNodeState st)
{
  return (guint) st < G_N_ELEMENTS (state_names) ? state_names[st] : "down";
}

static StateNodeState
state_from_name (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (state_names); i++)
    if (!strcmp (name, state_names[i]))
      return (StateNodeState) i;
  return STATE_NODE_DOWN;
}

void
state_node_free (StateNode *n)
{
  if (n == NULL)
    return;
  g_free (n->name);
  g_free (n->address);
  g_free (n);
}

/* ---- the heartbeat ----------------------------------------------------- */

static void
beat (StateStore *s)
{
  const char *values[2] = { s->node_name, s->node_address };
  PGresult *r = state_run (s, SQL_NODE_BEAT, 2, values, PGRES_COMMAND_OK);
  PQclear (r);
}

static gpointer
heartbeat_thread (gpointer data)
{
  StateStore *s = data;
  gint64 next_expiry = g_get_monotonic_time ();
  g_autoptr (GPtrArray) fresh = NULL;

  g_mutex_lock (&s->beat_lock);
  while (!s->stopping)
    {
      g_mutex_unlock (&s->beat_lock);
      if (s->node_name)
        {
          beat (s);
          /* the proxy reads the list from the main loop (state_nodes_cached):
           * it is read here, off that loop */
          g_clear_pointer (&fresh, g_ptr_array_unref);
          fresh = state_nodes_list (s, NULL);
        }
      if (g_get_monotonic_time () >= next_expiry)
        {
          state_expire (s);
          next_expiry = g_get_monotonic_time () + EXPIRE_EVERY * G_USEC_PER_SEC;
        }
      g_mutex_lock (&s->beat_lock);
      if (!s->stopping)
        g_cond_wait_until (&s->beat_stop, &s->beat_lock, g_get_monotonic_time () + HEARTBEAT * G_USEC_PER_SEC);
    }
  g_mutex_unlock (&s->beat_lock);
  return NULL;
}

/* Without node_name the thread still expires old rows. */
void
state_heartbeat_start (StateStore *s, const LmtpdConfig *config)
{
  if (s == NULL || s->heartbeat)
    return;
  if (config->cluster_node_name && config->cluster_node_name[0])
    {
      s->node_name = g_strdup (config->cluster_node_name);
      s->node_address = g_strdup (config->cluster_lmtp_address ? config->cluster_lmtp_address : "");
    }
  s->heartbeat = g_thread_new ("state-heartbeat", heartbeat_thread, s);
}

void
state_nodes_stop (StateStore *s)
{
  if (s->heartbeat == NULL)
    return;
  g_mutex_lock (&s->beat_lock);
  s->stopping = TRUE;
  g_cond_signal (&s->beat_stop);
  g_mutex_unlock (&s->beat_lock);
  g_thread_join (s->heartbeat);
  s->heartbeat = NULL;
}

/* ---- reading and setting ------------------------------------------------- */

static GPtrArray *
nodes_read (StateStore *s)
{
  PGresult *r = state_run (s, SQL_NODES_READ, 0, NULL, PGRES_TUPLES_OK);
  GPtrArray *nodes;

  if (r == NULL)
    return NULL;
  nodes = g_ptr_array_new_with_free_func ((GDestroyNotify) state_node_free);
  for (int i = 0; PQnfields (r) == 4 && i < PQntuples (r); i++)
    {
      StateNode *n = g_new0 (StateNode, 1);
      n->name = g_strdup (PQgetvalue (r, i, 0));
      n->address = g_strdup (PQgetvalue (r, i, 1));
      n->set = state_from_name (PQgetvalue (r, i, 2));
      n->heartbeat_age = g_ascii_strtoll (PQgetvalue (r, i, 3), NULL, 10);
      n->state = n->heartbeat_age < 0 || n->heartbeat_age > (gint64) s->node_timeout ? STATE_NODE_DOWN : n->set;
      g_ptr_array_add (nodes, n);
    }
  PQclear (r);
  return nodes;
}

static GPtrArray *
nodes_copy (GPtrArray *nodes)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) state_node_free);

  for (guint i = 0; i < nodes->len; i++)
    {
      StateNode *n = g_memdup2 (nodes->pdata[i], sizeof (StateNode));
      n->name = g_strdup (n->name);
      n->address = g_strdup (n->address);
      g_ptr_array_add (out, n);
    }
  return out;
}

/* One reader refreshes at a time, outside the lock; the others get the
 * cached copy meanwhile, so a slow PostgreSQL holds up one caller, not
 * all of them. */
GPtrArray *
state_nodes_list (StateStore *s, GError **error)
{
  GPtrArray *fresh = NULL, *out = NULL;
  gboolean refresh;

  g_mutex_lock (&s->nodes_lock);
  refresh = !s->refreshing && (s->nodes == NULL || g_get_monotonic_time () - s->nodes_read >= CACHE_US);
  s->refreshing |= refresh;
  g_mutex_unlock (&s->nodes_lock);
  if (refresh)
    fresh = nodes_read (s);
  g_mutex_lock (&s->nodes_lock);
  if (refresh)
    {
      s->refreshing = FALSE;
      s->nodes_read = g_get_monotonic_time ();
      if (fresh)
        {
          g_clear_pointer (&s->nodes, g_ptr_array_unref);
          s->nodes = fresh;
        }
    }
  if (s->nodes)
    out = nodes_copy (s->nodes);
  else
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "shared state: the nodes table cannot be read");
  g_mutex_unlock (&s->nodes_lock);
  return out;
}

GPtrArray *
state_nodes_cached (StateStore *s)
{
  GPtrArray *out = NULL;

  g_mutex_lock (&s->nodes_lock);
  if (s->nodes)
    out = nodes_copy (s->nodes);
  g_mutex_unlock (&s->nodes_lock);
  return out;
}

gboolean
state_node_set (StateStore *s, const char *name, StateNodeState st, GError **error)
{
  const char *values[2] = { name, state_node_state_name (st) };
  PGresult *r = state_run (s, SQL_NODE_SET, 2, values, PGRES_COMMAND_OK);
  gboolean found;

  if (r == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "PostgreSQL did not answer (see above)");
      return FALSE;
    }
  found = strcmp (PQcmdTuples (r), "0") != 0;
  PQclear (r);
  if (!found)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no node named %s", name);
  return found;
}
