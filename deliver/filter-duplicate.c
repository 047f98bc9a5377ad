/* filter-duplicate.c - the ids of the Sieve duplicate test (RFC 7352) for
 * each user: did a script of an earlier delivery record this id, and
 * recording this delivery's ids once its actions were carried out (3: a
 * failed run or a delivery that failed records nothing, so a retry is
 * never taken for a duplicate).
 *
 * The local backend is a file per user, next to the user's script (else
 * in the spool), of "EXPIRES KEY" lines, KEY a digest of the handle and
 * the id (an id is whatever a sender wrote), rewritten under an exclusive
 * lock.  It holds at most MAX_ENTRIES: to make room for a run's ids, the
 * entries that expire first go.  With [state] backend = pgsql the ids
 * live in PostgreSQL (state/), shared by the nodes; the file is then only
 * the fallback of on_error = local.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "filter.h"

#define MAX_ENTRIES 10000
#define MAX_FILE_SIZE (1024 * 1024)
#define LOCK_TIMEOUT 30 /* seconds */

/* Where one user's ids live: @user is the recipient's address, @path
 * the local file. */
typedef struct {
  gboolean (*seen) (const char *user, const char *path, const char *key, gint64 now);
  void (*record) (const char *user, const char *path, const SieveResult *r, gint64 now);
} DuplicateBackend;

static char *
entry_key (const char *handle, const char *id)
{
  g_autoptr (GChecksum) h = g_checksum_new (G_CHECKSUM_SHA256);

  g_checksum_update (h, (const guchar *) handle, strlen (handle) + 1);
  g_checksum_update (h, (const guchar *) id, strlen (id));
  return g_strndup (g_checksum_get_string (h), 32);
}

/* key -> expiry (gint64 in a pointer), the unexpired entries of @text */
static GHashTable *
entries_parse (const char *text, gint64 now)
{
  GHashTable *t = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_auto (GStrv) lines = g_strsplit (text, "\n", MAX_ENTRIES * 2);

  for (guint i = 0; lines[i]; i++)
    {
      char key[33];
      long long expires;
      if (sscanf (lines[i], "%lld %32s", &expires, key) == 2 && expires > now && strlen (key) == 32)
        g_hash_table_replace (t, g_strdup (key), GSIZE_TO_POINTER ((gsize) expires));
    }
  return t;
}

static gboolean
file_seen (const char *user, const char *path, const char *key, gint64 now)
{
  g_autofree char *text = NULL;
  g_autoptr (GHashTable) t = NULL;

  if (!deliver_mailfile_read (path, MAX_FILE_SIZE, &text, NULL, NULL))
    return FALSE;  /* no file, or none we can use: nothing was seen */
  t = entries_parse (text, now);
  return g_hash_table_contains (t, key);
}

static gint
by_expiry (gconstpointer a, gconstpointer b, gpointer t)
{
  gint64 x = (gint64) GPOINTER_TO_SIZE (g_hash_table_lookup (t, *(char **) a));
  gint64 y = (gint64) GPOINTER_TO_SIZE (g_hash_table_lookup (t, *(char **) b));

  return x < y ? 1 : x > y ? -1 : 0;
}

/* Makes room for @room more entries within MAX_ENTRIES: the entries
 * that expire first go */
static void
entries_trim (GHashTable *t, guint room)
{
  g_autoptr (GPtrArray) keys = NULL;
  guint keep = MAX_ENTRIES - MIN (room, MAX_ENTRIES);
  GHashTableIter it;
  gpointer k;

  if (g_hash_table_size (t) <= keep)
    return;
  keys = g_ptr_array_new_with_free_func (g_free);
  g_hash_table_iter_init (&it, t);
  while (g_hash_table_iter_next (&it, &k, NULL))
    g_ptr_array_add (keys, g_strdup (k));
  g_ptr_array_sort_with_data (keys, by_expiry, t);
  for (guint i = keep; i < keys->len; i++)
    g_hash_table_remove (t, keys->pdata[i]);
}

static GString *
entries_text (GHashTable *t)
{
  GString *s = g_string_new (NULL);
  GHashTableIter it;
  gpointer k, v;

  g_hash_table_iter_init (&it, t);
  while (g_hash_table_iter_next (&it, &k, &v))
    g_string_append_printf (s, "%" G_GSIZE_FORMAT " %s\n", GPOINTER_TO_SIZE (v), (char *) k);
  return s;
}

/* 3.3: without :last an entry expires counted from when it was first
 * recorded; with :last, from this run */
static void
entries_add (GHashTable *t, const SieveResult *r, gint64 now)
{
  for (guint i = 0; i < r->duplicates->len; i++)
    {
      const SieveDuplicate *d = r->duplicates->pdata[i];
      char *key = entry_key (d->handle, d->id);
      if (!d->last && g_hash_table_contains (t, key))
        {
          g_free (key);
          continue;
        }
      g_hash_table_replace (t, key, GSIZE_TO_POINTER ((gsize) (now + (gint64) d->seconds)));
    }
}

static void
file_record (const char *user, const char *path, const SieveResult *r, gint64 now)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  g_autoptr (GHashTable) t = NULL;
  g_autoptr (GString) out = NULL;
  int fd = deliver_mailfile_open (path, O_RDWR | O_CREAT, &error);

  if (fd < 0 || !deliver_mailfile_lock (fd, path, LOCK_TIMEOUT, &error)
      || !deliver_mailfile_read_fd (fd, path, MAX_FILE_SIZE, &text, NULL, &error))
    {
      g_warning ("<%s> sieve duplicate ids: %s", user, error->message);
      if (fd >= 0)
        close (fd);
      return;
    }
  t = entries_parse (text, now);
  entries_trim (t, r->duplicates->len);
  entries_add (t, r, now);
  out = entries_text (t);
  if (lseek (fd, 0, SEEK_SET) < 0 || ftruncate (fd, 0) < 0 || write (fd, out->str, out->len) != (gssize) out->len)
    g_warning ("<%s> sieve duplicate ids %s: %s", user, path, g_strerror (errno));
  close (fd);
}

static const DuplicateBackend file_backend = { file_seen, file_record };

/* The shared ids ([state] backend = pgsql): STATE_FAILED when PostgreSQL
 * fails and on_error = local sends the caller to the file. */
static StateAnswer
shared_seen (StateStore *state, const char *user, const char *key)
{
  StateAnswer a = state_ids_seen (state, user, key);

  if (a != STATE_FAILED || state_store_fall_back (state))
    return a;
  /* tempfail cannot be said from inside a test: not a duplicate is the
   * answer that loses nothing */
  g_warning ("<%s> sieve duplicate: shared state failing: taken as not seen", user);
  return STATE_NO;
}

static StateAnswer
shared_record (StateStore *state, const char *user, const SieveResult *r)
{
  for (guint i = 0; i < r->duplicates->len; i++)
    {
      const SieveDuplicate *d = r->duplicates->pdata[i];
      g_autofree char *key = entry_key (d->handle, d->id);
      if (state_ids_record (state, user, key, d->seconds, d->last) == STATE_FAILED)
        {
          if (state_store_fall_back (state))
            return STATE_FAILED;
          g_warning ("<%s> sieve duplicate ids: shared state failing: not recorded", user);
        }
    }
  return STATE_YES;
}

/* Next to the user's script if its directory is there, else in the
 * spool (as the vacation log). */
static char *
ids_path (const LmtpdConfig *config, const DeliverRecipient *rcpt)
{
  g_autofree char *script = NULL;
  g_autofree char *dir = NULL, *name = NULL;

  if (rcpt->sieve_script || (config->sieve_script && config->sieve_script[0]))
    {
      g_autofree char *sdir = NULL;
      script = filter_user_script_path (config, rcpt);
      sdir = g_path_get_dirname (script);
      if (g_file_test (sdir, G_FILE_TEST_IS_DIR))
        return g_strconcat (script, ".duplicate", NULL);
    }
  dir = g_build_filename (config->spool_dir, "duplicate", NULL);
  name = g_strconcat (rcpt->address, ".log", NULL);
  if (g_mkdir_with_parents (dir, 0700) < 0)
    g_warning ("%s: %s", dir, g_strerror (errno));
  return g_build_filename (dir, name, NULL);
}

gboolean
filter_duplicate_seen (const char *handle, const char *id, gpointer view)
{
  FilterView *v = view;
  g_autofree char *path = NULL;
  g_autofree char *key = entry_key (handle, id);
  StateStore *state = v->m->ctx ? v->m->ctx->state : NULL;
  StateAnswer a = state ? shared_seen (state, v->rcpt->address, key) : STATE_FAILED;

  if (a != STATE_FAILED)
    return a == STATE_YES;
  path = ids_path (v->m->config, v->rcpt);
  return file_backend.seen (v->rcpt->address, path, key, g_get_real_time () / G_USEC_PER_SEC);
}

void
filter_duplicate_record (const FilterMessage *m, const SieveResult *r)
{
  g_autofree char *path = NULL;

  if (r->duplicates == NULL || r->duplicates->len == 0)
    return;
  if (m->ctx && m->ctx->state && shared_record (m->ctx->state, m->rcpt->address, r) != STATE_FAILED)
    return;
  path = ids_path (m->config, m->rcpt);
  file_backend.record (m->rcpt->address, path, r, g_get_real_time () / G_USEC_PER_SEC);
}
