/* lmtp-nodes-registry.c - the node list from PostgreSQL's nodes table
 * (state/, [cluster] node_name without [cluster] nodes): the list the
 * heartbeat thread last read, as LmtpNode, taken on the main loop without
 * waiting on the database.  Before the first read (PostgreSQL down when
 * lmtpd started, or not answered yet) there is no list and no owner: 451.
 * A node the table does not show yet is simply not there.
 * Hashing follows the state lmtpctl set (drain, down), not the heartbeat.
 */
#include "config.h"

#include "deliver.h"
#include "lmtp-nodes.h"

#define REBUILD_US (G_USEC_PER_SEC / 2)

typedef struct {
  StateStore *state;
  GPtrArray *nodes;      /* LmtpNode* */
  gint64 built;          /* monotonic us */
} RegistryNodes;

static RegistryNodes registry;

static void
node_free (gpointer p)
{
  LmtpNode *n = p;

  g_free (n->name);
  g_free (n->address);
  g_free (n);
}

static LmtpNode *
node_from_state (const StateNode *s)
{
  LmtpNode *n = g_new0 (LmtpNode, 1);

  n->name = g_strdup (s->name);
  n->address = g_strconcat ("inet:", s->address, NULL);
  /* the state lmtpctl set, not the heartbeat's: a node that stopped
   * beating keeps its users (their mail waits, 451, until it is back: its
   * disk holds their mailboxes); one drained or set down gives them up */
  n->state = s->set == STATE_NODE_UP ? LMTP_NODE_UP : s->set == STATE_NODE_DRAINING ? LMTP_NODE_DRAINING
                                                                                     : LMTP_NODE_DOWN;
  n->weight = 1;
  return n;
}

static const GPtrArray *
registry_list (gpointer self, const LmtpdConfig *config)
{
  RegistryNodes *r = self;
  gint64 now = g_get_monotonic_time ();
  g_autoptr (GPtrArray) cached = NULL;

  if (r->nodes && now - r->built < REBUILD_US)
    return r->nodes;
  cached = state_nodes_cached (r->state);
  if (cached == NULL && r->nodes == NULL)
    return NULL;
  if (cached)
    {
      g_clear_pointer (&r->nodes, g_ptr_array_unref);
      r->nodes = g_ptr_array_new_with_free_func (node_free);
      for (guint i = 0; cached && i < cached->len; i++)
        g_ptr_array_add (r->nodes, node_from_state (cached->pdata[i]));
    }
  r->built = now;
  return r->nodes;
}

static const LmtpNodeSource registry_source = { registry_list };

void
lmtp_nodes_use_registry (StateStore *state)
{
  registry.state = state;
  lmtp_nodes_set_source (state ? &registry_source : NULL, &registry);
}
