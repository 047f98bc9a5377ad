/* filter-site.c - what a script sees of the site and the user beyond the
 * message: the scripts it may include (RFC 6609; as Pigeonhole lays them
 * out: NAME.sieve in [sieve] dir and global_dir, compiled once through
 * the script cache), the folders with a special use (RFC 8579, [sieve]
 * special_use) and the environment items (RFC 5183: this host, the
 * client as XFORWARD or the connection gave it).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "filter.h"

/* Section 4 of RFC 6609: names that could reach outside the directory
 * were refused when the script was compiled; refused here again. */
static gboolean
safe_name (const char *name)
{
  return name[0] != '\0' && name[0] != '.' && strchr (name, '/') == NULL;
}

/* SieveMessage.include: personal scripts are the user's, never read
 * through a symlink the user planted; the site's are the admin's. */
static const SieveScript *
site_include (gboolean global, const char *name, char **error, gpointer data)
{
  FilterSite *site = data;
  const char *dir = global ? site->m->config->sieve_global_dir : site->personal_dir;
  g_autofree char *file = NULL, *path = NULL;
  FilterScript *c;

  if (dir == NULL || dir[0] == '\0' || !safe_name (name))
    return NULL;
  file = g_strconcat (name, ".sieve", NULL);
  path = g_build_filename (dir, file, NULL);
  c = filter_cache_open (site->m->ctx->scripts, site->m->config, path, global ? 0 : O_NOFOLLOW);
  if (c == NULL)
    {
      if (errno == ELOOP)
        *error = g_strdup_printf ("%s: a symbolic link (not followed)", path);
      else if (errno != ENOENT && errno != ENOTDIR)
        *error = g_strdup_printf ("%s: %s", path, g_strerror (errno));
      return NULL;
    }
  g_ptr_array_add (site->loaded, c);
  if (c->script == NULL)
    *error = g_strdup (c->error);
  return c->script;
}

/* SieveMessage.special_use: [sieve] special_use, "Junk=Spam" or
 * "\Junk=Spam"; IMAP flags are caseless. */
static const char *
site_special_use (const char *flag, gpointer data)
{
  FilterSite *site = data;
  char **map = site->m->config->sieve_special_use;
  const char *use = flag[0] == '\\' ? flag + 1 : flag;
  gsize n = strlen (use);

  for (guint i = 0; map && map[i]; i++)
    {
      const char *e = map[i][0] == '\\' ? map[i] + 1 : map[i];
      const char *eq = strchr (e, '=');
      if (eq && (gsize) (eq - e) == n && g_ascii_strncasecmp (e, use, n) == 0)
        return eq + 1;
    }
  return NULL;
}

/* remote-ip: RFC 5183 4.1 asks for RFC 2821 4.1.3's address literals,
 * "IPv6:" before an IPv6 address (XFORWARD may give it either way); a
 * UNIX socket's "local" is none. */
static char *
remote_ip (const char *addr)
{
  if (addr == NULL)
    return NULL;
  if (g_ascii_strncasecmp (addr, "IPv6:", 5) == 0)
    addr += 5;
  if (!g_hostname_is_ip_address (addr))
    return NULL;
  return strchr (addr, ':') ? g_strconcat ("IPv6:", addr, NULL) : g_strdup (addr);
}

void
filter_site_init (FilterSite *site, const FilterMessage *m, SieveMessage *sm)
{
  const LmtpdConfig *config = m->config;
  const char *host = config->hostname ? config->hostname : g_get_host_name ();
  const char *dot = strchr (host, '.');

  memset (site, 0, sizeof *site);
  site->m = m;
  site->loaded = g_ptr_array_new_with_free_func ((GDestroyNotify) filter_script_unref);
  if (config->sieve_dir && config->sieve_dir[0])
    site->personal_dir = filter_expand_path (config, m->rcpt, config->sieve_dir);
  /* RFC 5183 4.1: "usually but not always a proper suffix of the host
   * name" */
  site->domain = g_strdup (dot && dot[1] ? dot + 1 : host);
  site->remote_ip = remote_ip (m->msg->client_addr);
  sm->include = site_include;
  sm->special_use = site_special_use;
  sm->site_data = site;
  sm->env_host = host;
  sm->env_domain = site->domain;
  sm->env_remote_ip = site->remote_ip;
  sm->env_remote_host = m->msg->client_name;
}

void
filter_site_clear (FilterSite *site)
{
  g_clear_pointer (&site->loaded, g_ptr_array_unref);
  g_clear_pointer (&site->personal_dir, g_free);
  g_clear_pointer (&site->domain, g_free);
  g_clear_pointer (&site->remote_ip, g_free);
}
