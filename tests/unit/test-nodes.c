/* test-nodes.c - lmtpd/lmtp-nodes.c: who owns a recipient, from [cluster]
 * nodes and from a node source with states and weights (the interface a
 * node registry plugs into). */
#include "config.h"

#include <string.h>

#include "lmtp-nodes.h"

static LmtpdConfig *
cluster_config (const char *self, const char *nodes)
{
  LmtpdConfig *c = lmtpd_config_new_default ();

  c->cluster_node_name = g_strdup (self);
  c->cluster_nodes = g_strdup (nodes);
  return c;
}

static const char *
owner_of (const LmtpdConfig *c, const char *address, const char *host)
{
  const LmtpNode *n = NULL;

  switch (lmtp_nodes_owner (c, address, host, &n))
    {
    case LMTP_OWNER_LOCAL:
      return "local";
    case LMTP_OWNER_UNKNOWN_HOST:
      return "unknown";
    case LMTP_OWNER_NO_LIST:
      return "no list";
    case LMTP_OWNER_REMOTE:
      return n->name;
    }
  return NULL;
}

/* Without [cluster]: every recipient is local, host= or not. */
static void
test_no_cluster (void)
{
  g_autoptr (LmtpdConfig) c = lmtpd_config_new_default ();

  g_assert_false (lmtp_nodes_enabled (c));
  g_assert_cmpstr (owner_of (c, "a@example.org", NULL), ==, "local");
  g_assert_cmpstr (owner_of (c, "a@example.org", "mx2"), ==, "local");
}

/* host= wins; a name not in the list is unknown; hashing is stable and
 * this node's own users are local. */
static void
test_from_config (void)
{
  g_autoptr (LmtpdConfig) c = cluster_config ("mx1", "mx1=inet:127.0.0.2:24;mx2=inet:127.0.0.3:24;mx3=unix:/x");
  guint local = 0, remote = 0;

  g_assert_cmpstr (owner_of (c, "a@example.org", "mx2"), ==, "mx2");
  g_assert_cmpstr (owner_of (c, "a@example.org", "mx1"), ==, "local");
  g_assert_cmpstr (owner_of (c, "a@example.org", "mx9"), ==, "unknown");
  for (guint i = 0; i < 300; i++)
    {
      g_autofree char *a = g_strdup_printf ("user%u@example.org", i);
      const char *o = owner_of (c, a, NULL);
      g_assert_cmpstr (o, ==, owner_of (c, a, NULL));
      if (strcmp (o, "local") == 0)
        local++;
      else
        remote++;
    }
  g_assert_cmpuint (local, >, 60);
  g_assert_cmpuint (remote, >, 150);
}

/* A source with states and weights, as a registry would give. */
static GPtrArray *source_nodes;

static const GPtrArray *
test_list (gpointer self, const LmtpdConfig *config)
{
  return self;
}

static const LmtpNodeSource test_source = { test_list };

static LmtpNode *
node (const char *name, LmtpNodeState state, guint weight)
{
  LmtpNode *n = g_new0 (LmtpNode, 1);

  n->name = g_strdup (name);
  n->address = g_strdup ("inet:127.0.0.9:24");
  n->state = state;
  n->weight = weight;
  return n;
}

static void
node_free (gpointer p)
{
  LmtpNode *n = p;

  g_free (n->name);
  g_free (n->address);
  g_free (n);
}

static guint
count_owned (const LmtpdConfig *c, const char *name, guint users)
{
  guint k = 0;

  for (guint i = 0; i < users; i++)
    {
      g_autofree char *a = g_strdup_printf ("user%u@example.org", i);
      k += strcmp (owner_of (c, a, NULL), name) == 0;
    }
  return k;
}

/* Hashing skips draining and down nodes (host= still names them); a node
 * of weight 2 takes about twice the users of one of weight 1. */
static void
test_states_and_weights (void)
{
  g_autoptr (LmtpdConfig) c = cluster_config ("mx1", "mx1=inet:127.0.0.2:24");
  guint w1, w2;

  source_nodes = g_ptr_array_new_with_free_func (node_free);
  g_ptr_array_add (source_nodes, node ("mx1", LMTP_NODE_UP, 1));
  g_ptr_array_add (source_nodes, node ("mx2", LMTP_NODE_DRAINING, 1));
  g_ptr_array_add (source_nodes, node ("mx3", LMTP_NODE_DOWN, 1));
  g_ptr_array_add (source_nodes, node ("mx4", LMTP_NODE_UP, 2));
  lmtp_nodes_set_source (&test_source, source_nodes);
  g_assert_cmpuint (count_owned (c, "mx2", 3000), ==, 0);
  g_assert_cmpuint (count_owned (c, "mx3", 3000), ==, 0);
  g_assert_cmpstr (owner_of (c, "a@example.org", "mx2"), ==, "mx2");
  g_assert_cmpstr (owner_of (c, "a@example.org", "mx3"), ==, "mx3");
  w1 = count_owned (c, "local", 3000);
  w2 = count_owned (c, "mx4", 3000);
  g_assert_cmpuint (w1 + w2, ==, 3000);
  g_assert_cmpuint (w2, >, w1 * 17 / 10);
  g_assert_cmpuint (w2, <, w1 * 23 / 10);
  lmtp_nodes_set_source (NULL, NULL);
  g_ptr_array_unref (source_nodes);
}

/* A source without a list yet (the nodes table not read): no owner,
 * neither hashed nor host=, rather than everything here. */
static void
test_no_list_yet (void)
{
  g_autoptr (LmtpdConfig) c = cluster_config ("mx1", "mx1=inet:127.0.0.2:24");

  lmtp_nodes_set_source (&test_source, NULL);
  g_assert_cmpstr (owner_of (c, "a@example.org", NULL), ==, "no list");
  g_assert_cmpstr (owner_of (c, "a@example.org", "mx1"), ==, "no list");
  lmtp_nodes_set_source (NULL, NULL);
  g_assert_cmpstr (owner_of (c, "a@example.org", NULL), ==, "local");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/nodes/no-cluster", test_no_cluster);
  g_test_add_func ("/nodes/from-config", test_from_config);
  g_test_add_func ("/nodes/states-and-weights", test_states_and_weights);
  g_test_add_func ("/nodes/no-list-yet", test_no_list_yet);
  return g_test_run ();
}
