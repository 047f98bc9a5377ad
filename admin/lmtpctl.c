/* lmtpctl.c - the operator's command line: one noun per AdminCommand.
 *
 *   lmtpctl [-c FILE] NOUN ARGS...
 *
 * It reads lmtpd's configuration file (default: the built-in defaults, as
 * lmtpd without -c).  Exit codes are sysexits.h's (admin.h).
 */
#include "config.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "lmtpd-util.h"

static const AdminCommand *const commands[] = {
  &admin_node_command,
  &admin_quarantine_link_command,
  &admin_quarantine_digest_command,
  &admin_trace_command,
  &admin_replay_command,
  &admin_verdicts_command,
  &admin_quarantine_command,
};

static int
usage (void)
{
  fprintf (stderr, "usage:\n");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      g_auto (GStrv) lines = g_strsplit (commands[i]->usage, "\n", -1);
      for (guint k = 0; lines[k]; k++)
        fprintf (stderr, "  lmtpctl [-c FILE] %s\n", lines[k]);
    }
  return ADMIN_EXIT_USAGE;
}

/* "NOUN VERB" first (a verb a file of its own adds to a noun, as
 * "quarantine link"), then "NOUN". */
static const AdminCommand *
command_named (int argc, char **argv)
{
  g_autofree char *two = argc >= 3 ? g_strdup_printf ("%s %s", argv[1], argv[2]) : NULL;

  for (guint i = 0; two && i < G_N_ELEMENTS (commands); i++)
    if (strcmp (commands[i]->noun, two) == 0)
      return commands[i];
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (strcmp (commands[i]->noun, argv[1]) == 0)
      return commands[i];
  return NULL;
}

int
main (int argc, char **argv)
{
  g_autofree char *path = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GOptionContext) ctx = g_option_context_new ("NOUN ARGS...");
  g_autoptr (LmtpdConfig) config = NULL;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &path, "lmtpd's configuration file", "FILE" },
    { NULL }
  };
  const AdminCommand *cmd;
  int code;

  setlocale (LC_ALL, "C");
  g_option_context_add_main_entries (ctx, entries, NULL);
  /* the commands' own --options follow the noun */
  g_option_context_set_strict_posix (ctx, TRUE);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return ADMIN_EXIT_USAGE;
    }
  if (argc < 2 || (cmd = command_named (argc, argv)) == NULL)
    return usage ();
  config = path ? lmtpd_config_load (path, &error) : lmtpd_config_new_default ();
  if (config == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return ADMIN_EXIT_CONFIG;
    }
  if (!cmd->drops_itself && geteuid () == 0 && config->user && !util_drop_privileges (config->user, &error))
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return ADMIN_EXIT_CONFIG;
    }
  code = cmd->run (config, argc - 1, argv + 1);
  return code == ADMIN_EXIT_USAGE ? usage () : code;
}
