/* directory.c - the directory: a backend, and for backends that ask a
 * server a cache in front of it.
 *
 * The cache keeps found users for cache_ttl and unknown addresses for
 * negative_cache_ttl.  When the server cannot answer, an expired entry
 * still serves (a user who got mail a minute ago still exists while LDAP
 * restarts); an address with no entry at all gets TEMPFAIL, so the MTA
 * keeps the mail.  A lookup slower than lookup_timeout is a failure too.
 */
#include "config.h"

#include <string.h>

#include "directory.h"

static const DirectoryBackend *const backends[] = {
  [LMTPD_USERS_FILE] = &directory_backend_file,
  [LMTPD_USERS_LDAP] = &directory_backend_ldap,
  [LMTPD_USERS_PGSQL] = &directory_backend_pgsql,
  [LMTPD_USERS_DOVECOT] = &directory_backend_dovecot,
};

typedef struct {
  DirectoryUser *user;    /* NULL: known not to exist */
  gint64 expires;         /* monotonic microseconds */
} CacheEntry;

struct Directory {
  gatomicrefcount ref;
  const DirectoryBackend *backend;
  gpointer state;
  char *settings;         /* the [users] settings it was made from */
  LmtpdConfig *config;    /* the configuration it was made from */
  guint cache_ttl, negative_ttl, timeout_ms;

  GMutex lock;
  GHashTable *cache;      /* address -> CacheEntry* */
  DirectoryStats stats;
};

/* Beyond this many entries the cache is emptied rather than grown. */
#define CACHE_MAX 100000

static void
cache_entry_free (gpointer p)
{
  CacheEntry *e = p;
  directory_user_free (e->user);
  g_free (e);
}

/* The ldap backend's settings, for settings_of(). */
static void
append_ldap_settings (GString *s, const LmtpdConfig *c)
{
  const char *fields[] = { c->ldap_uris, c->ldap_base, c->ldap_bind_dn, c->ldap_bind_password_file,
                           c->ldap_tls_ca_file, c->ldap_filter, c->ldap_mailbox_attribute,
                           c->ldap_quota_attribute, c->ldap_quota_messages_attribute, c->ldap_sieve_attribute,
                           c->ldap_enabled_attribute, c->ldap_enabled_value, c->ldap_alias_attribute,
                           c->ldap_settings_attribute, c->ldap_host_attribute };

  g_string_append_printf (s, "\n%d\n%d", (int) c->ldap_scope, c->ldap_starttls);
  for (guint i = 0; i < G_N_ELEMENTS (fields); i++)
    g_string_append_printf (s, "\n%s", fields[i] ? fields[i] : "\001");
}

/* What identifies a directory: the [users] settings that make it. */
static char *
settings_of (const LmtpdConfig *config)
{
  GString *s = g_string_new (NULL);

  g_string_printf (s, "%d\n%u\n%u\n%u\n%s", (int) config->users_backend_kind, config->users_cache_ttl,
                   config->users_negative_ttl, config->users_lookup_timeout_ms,
                   config->users_map ? config->users_map : "");
  append_ldap_settings (s, config);
  g_string_append_printf (s, "\n%s\n%s\n%s", config->users_pgsql_conninfo ? config->users_pgsql_conninfo : "",
                          config->users_pgsql_password ? config->users_pgsql_password : "",
                          config->users_pgsql_query ? config->users_pgsql_query : "");
  g_string_append_printf (s, "\n%s\n%s\n%d\n%s\n%s", config->users_dovecot_socket ? config->users_dovecot_socket : "",
                          config->users_dovecot_service ? config->users_dovecot_service : "",
                          (int) config->users_dovecot_local,
                          config->users_dovecot_sieve_field ? config->users_dovecot_sieve_field : "",
                          config->users_dovecot_settings_prefix ? config->users_dovecot_settings_prefix : "");
  return g_string_free (s, FALSE);
}

Directory *
directory_new (const LmtpdConfig *config, GError **error)
{
  return directory_new_with (backends[config->users_backend_kind], config, error);
}

Directory *
directory_new_with (const DirectoryBackend *backend, const LmtpdConfig *config, GError **error)
{
  gpointer state = backend->open (config, error);
  Directory *dir;

  if (state == NULL)
    return NULL;
  dir = g_new0 (Directory, 1);
  g_atomic_ref_count_init (&dir->ref);
  dir->backend = backend;
  dir->state = state;
  dir->settings = settings_of (config);
  dir->config = lmtpd_config_ref ((LmtpdConfig *) config);
  dir->cache_ttl = config->users_cache_ttl;
  dir->negative_ttl = config->users_negative_ttl;
  dir->timeout_ms = config->users_lookup_timeout_ms;
  g_mutex_init (&dir->lock);
  dir->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, cache_entry_free);
  return dir;
}

Directory *
directory_ref (Directory *dir)
{
  g_atomic_ref_count_inc (&dir->ref);
  return dir;
}

void
directory_unref (Directory *dir)
{
  if (dir == NULL || !g_atomic_ref_count_dec (&dir->ref))
    return;
  dir->backend->close (dir->state);
  g_hash_table_unref (dir->cache);
  g_mutex_clear (&dir->lock);
  g_free (dir->settings);
  lmtpd_config_unref (dir->config);
  g_free (dir);
}

const char *
directory_backend_name (const Directory *dir)
{
  return dir->backend->name;
}

gboolean
directory_is_remote (const Directory *dir)
{
  return dir->backend->remote;
}

/* A server backend with the same settings keeps its cache across a
 * reload; the file backend follows each configuration (the reload has read
 * the map again). */
gboolean
directory_matches (const Directory *dir, const LmtpdConfig *config)
{
  g_autofree char *s = NULL;

  /* asked for every recipient: the configuration it was made from needs
   * no comparison */
  if (dir->config == config || !dir->backend->remote)
    return dir->config == config;
  s = settings_of (config);
  return strcmp (s, dir->settings) == 0;
}

void
directory_get_stats (const Directory *dir, DirectoryStats *out)
{
  g_mutex_lock ((GMutex *) &dir->lock);
  *out = dir->stats;
  g_mutex_unlock ((GMutex *) &dir->lock);
}

/* ---- the cache ------------------------------------------------------------- */

/* The entry for @address, fresh or (with @stale_ok) expired; under lock. */
static CacheEntry *
cache_get (Directory *dir, const char *address, gboolean stale_ok)
{
  CacheEntry *e = g_hash_table_lookup (dir->cache, address);

  if (e == NULL || (!stale_ok && e->expires <= g_get_monotonic_time ()))
    return NULL;
  return e;
}

/* Remembers the backend's answer; under lock. */
static void
cache_put (Directory *dir, const char *address, const DirectoryUser *user)
{
  guint ttl = user ? dir->cache_ttl : dir->negative_ttl;
  CacheEntry *e;

  if (ttl == 0)
    return;
  if (g_hash_table_size (dir->cache) >= CACHE_MAX)
    g_hash_table_remove_all (dir->cache);
  e = g_new0 (CacheEntry, 1);
  e->user = user ? directory_user_copy (user) : NULL;
  e->expires = g_get_monotonic_time () + (gint64) ttl * G_USEC_PER_SEC;
  g_hash_table_replace (dir->cache, g_strdup (address), e);
}

/* An answer from the cache: fresh, or (@stale_ok, the backend failed) any. */
static gboolean
answer_from_cache (Directory *dir, const char *address, gboolean stale_ok, DirectoryResult *result,
                   DirectoryUser **out)
{
  CacheEntry *e;

  g_mutex_lock (&dir->lock);
  e = cache_get (dir, address, stale_ok);
  if (e)
    {
      dir->stats.cache_hits++;
      *result = e->user ? DIRECTORY_FOUND : DIRECTORY_UNKNOWN;
      if (e->user && out)
        *out = directory_user_copy (e->user);
    }
  g_mutex_unlock (&dir->lock);
  return e != NULL;
}

/* ---- lookups --------------------------------------------------------------- */

/* The backend itself, timed and counted; a slow answer is a failure. */
static DirectoryResult
ask_backend (Directory *dir, const char *address, DirectoryUser **out, GError **error)
{
  gint64 start = g_get_monotonic_time (), took;
  DirectoryResult r = dir->backend->lookup (dir->state, address, dir->timeout_ms, out, error);

  took = g_get_monotonic_time () - start;
  if (r != DIRECTORY_TEMPFAIL && dir->backend->remote && took > (gint64) dir->timeout_ms * 1000)
    {
      g_clear_pointer (out, directory_user_free);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "%s lookup took %" G_GINT64_FORMAT " ms",
                   dir->backend->name, took / 1000);
      r = DIRECTORY_TEMPFAIL;
    }
  g_mutex_lock (&dir->lock);
  dir->stats.lookups++;
  dir->stats.latency_us_total += took;
  if (r == DIRECTORY_TEMPFAIL)
    dir->stats.failures++;
  else if (dir->backend->remote)
    cache_put (dir, address, r == DIRECTORY_FOUND ? *out : NULL);
  g_mutex_unlock (&dir->lock);
  return r;
}

DirectoryResult
directory_lookup (Directory *dir, const char *address, DirectoryUser **out, gboolean *cached, GError **error)
{
  g_autoptr (GError) failure = NULL;
  DirectoryUser *user = NULL;
  DirectoryResult r;

  if (cached)
    *cached = TRUE;
  if (dir->backend->remote && answer_from_cache (dir, address, FALSE, &r, out))
    return r;
  if (cached)
    *cached = FALSE;
  r = ask_backend (dir, address, &user, &failure);
  if (r == DIRECTORY_TEMPFAIL && answer_from_cache (dir, address, TRUE, &r, out))
    {
      if (cached)
        *cached = TRUE;
      return r; /* the server is down: what it said last still holds */
    }
  if (r == DIRECTORY_TEMPFAIL)
    g_propagate_error (error, g_steal_pointer (&failure));
  if (out)
    *out = user;
  else
    directory_user_free (user);
  return r;
}

gboolean
directory_lookup_cached (Directory *dir, const char *address, DirectoryResult *result, DirectoryUser **out)
{
  if (!dir->backend->remote)
    {
      *result = directory_lookup (dir, address, out, NULL, NULL);
      return TRUE;
    }
  return answer_from_cache (dir, address, FALSE, result, out);
}

/* ---- logins (ManageSieve) -------------------------------------------------- */

gboolean
directory_can_authenticate (const Directory *dir)
{
  /* pgsql checks logins only with the query that finds the hash */
  if (dir->backend == &directory_backend_pgsql && dir->config->users_pgsql_password_query == NULL)
    return FALSE;
  /* dovecot only through its auth-client socket */
  if (dir->backend == &directory_backend_dovecot && dir->config->users_dovecot_auth_socket == NULL)
    return FALSE;
  return dir->backend->authenticate != NULL;
}

DirectoryResult
directory_authenticate (Directory *dir, const char *address, const char *password, GError **error)
{
  DirectoryResult r;

  if (dir->backend->authenticate == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "the %s backend cannot check passwords",
                   dir->backend->name);
      return DIRECTORY_TEMPFAIL;
    }
  r = dir->backend->authenticate (dir->state, address, password, dir->timeout_ms, error);
  g_mutex_lock (&dir->lock);
  if (r == DIRECTORY_TEMPFAIL)
    dir->stats.failures++;
  g_mutex_unlock (&dir->lock);
  return r;
}
