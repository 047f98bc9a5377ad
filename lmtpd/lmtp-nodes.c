/* lmtp-nodes.c - the cluster's nodes ([cluster] nodes, or a source set by
 * lmtp_nodes_set_source) and the owner of a recipient.
 *
 * Ownership without a directory host= is weighted rendezvous (highest
 * random weight) hashing of the final address over the nodes that are up:
 * a node of weight w stands as w names "NAME#0".."NAME#w-1" (w at most
 * MAX_WEIGHT), each scores the hash of itself and the address, and the
 * node of the highest score owns the address.  It needs
 * no state shared between nodes, every node computes the same owner from
 * the same list, and a node that leaves (down, draining) moves only its
 * own users, spread over the others in proportion to their weights; a
 * node that comes back takes back exactly those.  Bounded loads in the
 * strict sense (no node over (1+eps) times the mean of the users placed
 * so far) needs the placement history, which a stateless hash has not:
 * rendezvous hashing keeps each node within a few percent of its weighted
 * share for thousands of users, and the weights are the lever for the
 * rest.  Draining nodes keep the users the directory gives them.
 */
#include "config.h"

#include <string.h>

#include "lmtp-nodes.h"

/* ---- the source from [cluster] nodes ------------------------------------- */

typedef struct {
  const LmtpdConfig *config;  /* the configuration parsed, compared by address */
  char *text;                 /* and its nodes text, in case the address is reused */
  GPtrArray *nodes;
} ConfigNodes;

static ConfigNodes config_nodes;

static void
node_free (gpointer p)
{
  LmtpNode *n = p;

  g_free (n->name);
  g_free (n->address);
  g_free (n);
}

/* The configuration checked the syntax (conf/settings.c). */
static GPtrArray *
nodes_parse (const char *text)
{
  GPtrArray *nodes = g_ptr_array_new_with_free_func (node_free);
  g_auto (GStrv) items = g_strsplit (text ? text : "", ";", -1);

  for (guint i = 0; items[i]; i++)
    {
      char *item = g_strstrip (items[i]), *eq = strchr (item, '=');
      LmtpNode *n;

      if (eq == NULL || eq == item)
        continue;
      n = g_new0 (LmtpNode, 1);
      n->name = g_strndup (item, eq - item);
      n->address = g_strdup (eq + 1);
      n->state = LMTP_NODE_UP;
      n->weight = 1;
      g_ptr_array_add (nodes, n);
    }
  return nodes;
}

static const GPtrArray *
config_list (gpointer self, const LmtpdConfig *config)
{
  ConfigNodes *c = self;

  if (c->nodes == NULL || c->config != config || g_strcmp0 (c->text, config->cluster_nodes) != 0)
    {
      g_clear_pointer (&c->nodes, g_ptr_array_unref);
      g_free (c->text);
      c->text = g_strdup (config->cluster_nodes);
      c->config = config;
      c->nodes = nodes_parse (config->cluster_nodes);
    }
  return c->nodes;
}

static const LmtpNodeSource config_source = { config_list };
static const LmtpNodeSource *source = &config_source;
static gpointer source_self = &config_nodes;

void
lmtp_nodes_set_source (const LmtpNodeSource *src, gpointer self)
{
  source = src ? src : &config_source;
  source_self = src ? self : &config_nodes;
}

gboolean
lmtp_nodes_enabled (const LmtpdConfig *config)
{
  return config->cluster_node_name != NULL && config->cluster_nodes != NULL;
}

/* ---- ownership ----------------------------------------------------------- */

#define MAX_WEIGHT 64

/* FNV-1a over the node's name, its replica, a NUL and the address, then
 * a 64-bit finaliser (splitmix64) so that near names spread. */
static guint64
node_hash (const char *node, guint replica, const char *address)
{
  guint64 h = 14695981039346656037ULL;

  for (const char *p = node; *p; p++)
    h = (h ^ (guchar) *p) * 1099511628211ULL;
  h = (h ^ '#') * 1099511628211ULL;
  h = (h ^ (replica & 0xFF)) * 1099511628211ULL;
  h = (h ^ 0) * 1099511628211ULL;
  for (const char *p = address; *p; p++)
    h = (h ^ (guchar) *p) * 1099511628211ULL;
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

static guint64
node_score (const LmtpNode *n, const char *address)
{
  guint weight = CLAMP (n->weight, 1, MAX_WEIGHT);
  guint64 best = 0;

  for (guint i = 0; i < weight; i++)
    best = MAX (best, node_hash (n->name, i, address));
  return best;
}

static const LmtpNode *
node_named (const GPtrArray *nodes, const char *name)
{
  for (guint i = 0; i < nodes->len; i++)
    if (strcmp (((const LmtpNode *) nodes->pdata[i])->name, name) == 0)
      return nodes->pdata[i];
  return NULL;
}

static const LmtpNode *
node_hashed (const GPtrArray *nodes, const char *address)
{
  const LmtpNode *best = NULL;
  guint64 best_score = 0;

  for (guint i = 0; i < nodes->len; i++)
    {
      const LmtpNode *n = nodes->pdata[i];
      guint64 score;
      if (n->state != LMTP_NODE_UP)
        continue;
      score = node_score (n, address);
      if (best == NULL || score > best_score)
        {
          best = n;
          best_score = score;
        }
    }
  return best;
}

LmtpOwner
lmtp_nodes_owner (const LmtpdConfig *config, const char *address, const char *host, const LmtpNode **node)
{
  const GPtrArray *nodes;
  const LmtpNode *n;

  *node = NULL;
  if (!lmtp_nodes_enabled (config))
    return LMTP_OWNER_LOCAL;
  nodes = source->list (source_self, config);
  /* delivered here, another node's user would land on the wrong disk */
  if (nodes == NULL)
    return LMTP_OWNER_NO_LIST;
  n = host ? node_named (nodes, host) : node_hashed (nodes, address);
  if (n == NULL && host)
    return LMTP_OWNER_UNKNOWN_HOST;
  /* no node up at all: this one takes it rather than nobody */
  if (n == NULL || strcmp (n->name, config->cluster_node_name) == 0)
    return LMTP_OWNER_LOCAL;
  *node = n;
  return LMTP_OWNER_REMOTE;
}
