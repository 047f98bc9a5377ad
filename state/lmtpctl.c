/* lmtpctl.c - the nodes of a cluster, from the command line:
 *
 *   lmtpctl [-c FILE] node list
 *   lmtpctl [-c FILE] node drain|up|down NAME
 *
 * It reads lmtpd's configuration file for [state] (the PostgreSQL the
 * nodes share) and [cluster] node_timeout.  Exit 0, 64 for a bad command
 * line, 67 for no such node, 75 when PostgreSQL does not answer, 78 for a
 * bad configuration.
 */
#include "config.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "lmtpd-conf.h"
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
usage (void)
{
  fprintf (stderr, "usage: lmtpctl [-c FILE] node list | node drain|up|down NAME\n");
  return 64;
}

int
main (int argc, char **argv)
{
  g_autofree char *path = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GOptionContext) ctx = g_option_context_new ("node list | node drain|up|down NAME");
  g_autoptr (LmtpdConfig) config = NULL;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &path, "lmtpd's configuration file", "FILE" },
    { NULL }
  };
  StateStore *s;
  int code;

  setlocale (LC_ALL, "C");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return 64;
    }
  if (argc < 3 || strcmp (argv[1], "node") != 0 || (strcmp (argv[2], "list") == 0 ? argc != 3
                                                     : !is_set_verb (argv[2]) || argc != 4))
    return usage ();
  config = path ? lmtpd_config_load (path, &error) : lmtpd_config_new_default ();
  if (config == NULL || config->state_backend != LMTPD_STATE_PGSQL)
    {
      fprintf (stderr, "lmtpctl: %s\n", config ? "[state] backend is not pgsql: there are no nodes" : error->message);
      return 78;
    }
  if ((s = state_store_open (config, &error)) == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return 78;
    }
  code = argc == 3 ? node_list (s) : node_set (s, argv[2], argv[3]);
  state_store_free (s);
  return code;
}
