/* dir-file.c - the "file" backend: the users map of [users] map, the
 * embedded default that needs no server.
 *
 * The map is read again when it changes (checked at most once a second by
 * stat: inode, size, modification and change times), so a user added to
 * it gets mail without a SIGHUP, as Postfix's hash tables and Dovecot's
 * passwd-file behave.  A map that no longer loads keeps the last good one
 * and says why once per change.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "directory.h"

#define RECHECK_US G_USEC_PER_SEC

typedef struct {
  LmtpdConfig *config;
  GMutex lock;
  GHashTable *users;      /* address -> LmtpdUser*, a reference */
  struct stat seen;       /* of the map as loaded (or as last refused) */
  gint64 checked;         /* monotonic time of the last stat */
} FileDirectory;

static gboolean
same_file (const struct stat *a, const struct stat *b)
{
  return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size
         && a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec
         && a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static gpointer
file_open (const LmtpdConfig *config, GError **error)
{
  FileDirectory *f = g_new0 (FileDirectory, 1);

  (void) error;
  f->config = lmtpd_config_ref ((LmtpdConfig *) config);
  g_mutex_init (&f->lock);
  /* the map as the configuration loaded it; the first lookup compares the
   * file with nothing, so a change since then is read at once */
  f->users = g_hash_table_ref (config->users);
  f->checked = G_MININT64 / 2;
  return f;
}

static void
file_close (gpointer backend)
{
  FileDirectory *f = backend;

  g_hash_table_unref (f->users);
  g_mutex_clear (&f->lock);
  lmtpd_config_unref (f->config);
  g_free (f);
}

/* Reads the map again if it changed since it was loaded; under lock. */
static void
reload_if_changed (FileDirectory *f)
{
  const char *path = f->config->users_map;
  g_autoptr (GError) error = NULL;
  struct stat st;
  GHashTable *users;

  if (g_get_monotonic_time () - f->checked < RECHECK_US)
    return;
  f->checked = g_get_monotonic_time ();
  if (stat (path, &st) < 0)
    memset (&st, 0, sizeof st);
  if (same_file (&st, &f->seen))
    return;
  f->seen = st;
  users = lmtpd_users_map_load (f->config, path, &error);
  if (users == NULL)
    {
      g_warning ("users map %s changed but does not load, keeping the last good one:\n%s", path,
                 error->message);
      return;
    }
  g_hash_table_unref (f->users);
  f->users = users;
  g_message ("users map %s read again: %u users", path, g_hash_table_size (users));
}

static DirectoryUser *
user_of (const LmtpdUser *u)
{
  DirectoryUser *d = g_new0 (DirectoryUser, 1);

  d->address = g_strdup (u->address);
  d->mailbox = g_strdup (u->mailbox);
  d->quota_bytes = u->quota_bytes;
  d->quota_messages = u->quota_messages;
  d->sieve_script = g_strdup (u->sieve);
  d->alias_of = g_strdup (u->alias_of);
  d->disabled = u->disabled;
  d->settings = g_strdupv (u->settings);
  d->host = g_strdup (u->host);
  return d;
}

static DirectoryResult
file_lookup (gpointer backend, const char *address, guint timeout_ms, DirectoryUser **out, GError **error)
{
  FileDirectory *f = backend;
  const LmtpdUser *u;

  (void) timeout_ms;
  (void) error;
  if (f->config->users_map == NULL)
    return DIRECTORY_UNKNOWN;
  g_mutex_lock (&f->lock);
  reload_if_changed (f);
  u = g_hash_table_lookup (f->users, address);
  if (u && out)
    *out = user_of (u);
  g_mutex_unlock (&f->lock);
  return u ? DIRECTORY_FOUND : DIRECTORY_UNKNOWN;
}

/* password= of the user's line; a disabled user or an alias logs in to
 * nothing. */
static DirectoryResult
file_authenticate (gpointer backend, const char *address, const char *password, guint timeout_ms,
                   GError **error)
{
  FileDirectory *f = backend;
  g_autofree char *stored = NULL;
  g_autoptr (GError) bad = NULL;
  const LmtpdUser *u;

  (void) timeout_ms;
  (void) error;
  if (f->config->users_map == NULL)
    return DIRECTORY_UNKNOWN;
  g_mutex_lock (&f->lock);
  reload_if_changed (f);
  u = g_hash_table_lookup (f->users, address);
  if (u && !u->disabled && u->alias_of == NULL)
    stored = g_strdup (u->password);
  g_mutex_unlock (&f->lock);
  if (stored == NULL)
    return DIRECTORY_UNKNOWN;
  if (directory_password_verify (stored, password, &bad))
    return DIRECTORY_FOUND;
  if (bad)
    g_warning ("users map, %s: %s", address, bad->message);
  return DIRECTORY_UNKNOWN;
}

const DirectoryBackend directory_backend_file = {
  "file", FALSE, file_open, file_lookup, file_close, file_authenticate,
};
