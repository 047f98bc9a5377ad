/* ctl-nodes.c - lmtpctl node: the nodes of a cluster.
 *
 *   lmtpctl [-c FILE] node list
 *   lmtpctl [-c FILE] node drain|up|down NAME
 *
 * From [state] (the PostgreSQL the nodes share) and [cluster]
 * node_timeout.  Exit 67 for no such node, 75 when PostgreSQL does not
 * answer, 78 when [state] backend is not pgsql.
 */
#include "config.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "lmtpd-state.h"

static int
node_list (StateStore *s)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) nodes = state_nodes_list (s, &error);

  if (nodes == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return 75;
    }
  printf ("%-20s %-28s %-9s %-9s %s\n", "NAME", "ADDRESS", "STATE", "SET", "HEARTBEAT");
  for (guint i = 0; i < nodes->len; i++)
    {
      const StateNode *n = nodes->pdata[i];
      g_autofree char *age = n->heartbeat_age < 0 ? g_strdup ("never")
                                                  : g_strdup_printf ("%" G_GINT64_FORMAT "s ago", n->heartbeat_age);
      printf ("%-20s %-28s %-9s %-9s %s\n", n->name, n->address, state_node_state_name (n->state),
              state_node_state_name (n->set), age);
    }
  return 0;
}

static int
node_set (StateStore *s, const char *verb, const char *name)
{
  g_autoptr (GError) error = NULL;
  StateNodeState st = !strcmp (verb, "drain") ? STATE_NODE_DRAINING : !strcmp (verb, "up") ? STATE_NODE_UP
                                                                                            : STATE_NODE_DOWN;

  if (!state_node_set (s, name, st, &error))
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ? 67 : 75;
    }
  printf ("%s: %s\n", name, state_node_state_name (st));
  return 0;
}

static gboolean
is_set_verb (const char *verb)
{
  return !strcmp (verb, "drain") || !strcmp (verb, "up") || !strcmp (verb, "down");
}

static int
node_run (const LmtpdConfig *config, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  StateStore *s;
  int code;

  if (argc < 2 || (strcmp (argv[1], "list") == 0 ? argc != 2 : !is_set_verb (argv[1]) || argc != 3))
    return ADMIN_EXIT_USAGE;
  if (config->state_backend != LMTPD_STATE_PGSQL)
    {
      fprintf (stderr, "lmtpctl: [state] backend is not pgsql: there are no nodes\n");
      return ADMIN_EXIT_CONFIG;
    }
  if ((s = state_store_open (config, &error)) == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return ADMIN_EXIT_CONFIG;
    }
  code = argc == 2 ? node_list (s) : node_set (s, argv[1], argv[2]);
  state_store_free (s);
  return code;
}

const AdminCommand admin_node_command = {
  "node", "node list\nnode drain|up|down NAME", node_run,
};
