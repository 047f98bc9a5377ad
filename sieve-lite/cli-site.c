/* cli-site.c - sieve-lite test: what a script sees around it, as the
 * options say: the scripts include finds (--dir, --global-dir), the
 * special-use folders (Dovecot's defaults), the environment (this host,
 * --remote-ip, --remote-host).
 */
#include "config.h"

#include <string.h>

#include "cli.h"

#define MAX_INCLUDED_SIZE (1024 * 1024)

static const SieveScript *
include_script (gboolean global, const char *name, char **error, gpointer data)
{
  CliSite *site = data;
  const char *dir = global ? site->global_dir : site->dir;
  g_autofree char *file = g_strconcat (name, ".sieve", NULL), *path = NULL, *text = NULL;
  g_autoptr (GError) e = NULL;
  SieveScript *s;
  gsize len;

  if (dir == NULL || strchr (name, '/') || name[0] == '.')
    return NULL;
  path = g_build_filename (dir, file, NULL);
  if ((s = g_hash_table_lookup (site->scripts, path)) != NULL)
    return s;
  if (!g_file_get_contents (path, &text, &len, &e))
    {
      if (!g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        *error = g_strdup (e->message);
      return NULL;
    }
  if (len > MAX_INCLUDED_SIZE || (s = sieve_compile (text, len, &e)) == NULL)
    {
      *error = g_strdup_printf ("%s:%s", path, e ? e->message : " too large");
      return NULL;
    }
  g_hash_table_insert (site->scripts, g_steal_pointer (&path), s);
  return s;
}

/* Dovecot's default namespace (conf.d/15-mailboxes.conf), as lmtpd's
 * [sieve] special_use default */
static const char *
special_use (const char *flag, gpointer data)
{
  static const char *const map[][2] = {
    { "\\Drafts", "Drafts" }, { "\\Junk", "Junk" }, { "\\Trash", "Trash" }, { "\\Sent", "Sent" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (map); i++)
    if (g_ascii_strcasecmp (flag, map[i][0]) == 0)
      return map[i][1];
  return NULL;
}

/* --dir, --global-dir (include), --remote-ip, --remote-host (environment) */
static char *opt_dir, *opt_global_dir, *opt_remote_ip, *opt_remote_host;
const GOptionEntry cli_site_entries[] = {
  { "dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_dir, "Personal scripts for include", "DIR" },
  { "global-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_global_dir, "Global scripts for include :global", "DIR" },
  { "remote-ip", 0, 0, G_OPTION_ARG_STRING, &opt_remote_ip, "environment \"remote-ip\"", "IP" },
  { "remote-host", 0, 0, G_OPTION_ARG_STRING, &opt_remote_host, "environment \"remote-host\"", "NAME" },
  { NULL }
};

/* What include, special-use and environment see; the host is this one. */
void
cli_site_init (CliSite *site, SieveMessage *sm)
{
  const char *host = g_get_host_name ();
  const char *dot = strchr (host, '.');

  site->dir = opt_dir;
  site->global_dir = opt_global_dir;
  site->scripts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) sieve_script_free);
  sm->include = include_script;
  sm->special_use = special_use;
  sm->site_data = site;
  sm->env_host = host;
  sm->env_domain = dot && dot[1] ? dot + 1 : host;
  sm->env_remote_ip = opt_remote_ip;
  sm->env_remote_host = opt_remote_host;
}

void
cli_site_clear (CliSite *site)
{
  g_clear_pointer (&site->scripts, g_hash_table_unref);
}
