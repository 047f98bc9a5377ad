/* dedupe.c - the duplicate journal.
 *
 * When the connection drops after the final dot, the MTA has no replies and
 * sends the whole transaction again.  A recipient whose copy was already
 * stored must not get a second one.  Each delivery appends a line
 * "<unix time> <key>" to a journal, the key a SHA-256 of the message
 * digest, the envelope sender and the recipient: the same bytes from
 * another sender are another message (keys of the older format, without
 * the sender, still load and simply never match again).  Entries older
 * than the window are dropped when the journal is loaded and when it is
 * compacted (rewritten and renamed over) after growing to twice its live
 * size.  A delivery is recorded the moment its Maildir copy becomes
 * visible (before the directory fsync), and taken back with a "-KEY" line
 * if it fails after all.  Just before the rename, an intent line names the
 * file ("<time> <key> <path>"); the line after the rename confirms it.  An
 * intent without its confirmation (lmtpd was killed in between) counts
 * when the journal is loaded only if the file is there, so a kill at any
 * moment neither lets a retried copy through nor suppresses a lost one.  Appends are not fsynced: after a power loss, at worst one
 * retried copy gets through.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "deliver.h"
#include "lmtpd-util.h"

#define COMPACT_MIN 1024

struct DeliverDedupe {
  GMutex lock;
  char *path;
  guint window;
  int fd;
  GHashTable *seen;     /* key -> gint64 time */
  GHashTable *pending;  /* key -> path: recorded before the rename, not yet confirmed */
  guint lines;          /* lines in the file */
  guint compacted;      /* live entries at the last compaction */
};

/* The last key this thread made and what it was made of: one delivery
 * asks for the same key three times (seen, intend, record), each a
 * SHA-256 in GLib's C code. */
typedef struct {
  char *digest, *sender, *address, *key;
} KeyMemo;

static void
key_memo_free (gpointer data)
{
  KeyMemo *m = data;

  g_free (m->digest);
  g_free (m->sender);
  g_free (m->address);
  g_free (m->key);
  g_free (m);
}

static GPrivate key_memo = G_PRIVATE_INIT (key_memo_free);

/* NUL-separated: neither a digest nor an address holds a NUL, so no two
 * triples give the same input. */
static char *
make_key (const char *digest, const char *sender, const char *address)
{
  KeyMemo *m = g_private_get (&key_memo);
  g_autoptr (GChecksum) sum = NULL;

  if (m && strcmp (m->digest, digest) == 0 && strcmp (m->sender, sender) == 0
      && strcmp (m->address, address) == 0)
    return g_strdup (m->key);
  sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (sum, (const guchar *) "v2", 3);
  g_checksum_update (sum, (const guchar *) digest, strlen (digest) + 1);
  g_checksum_update (sum, (const guchar *) sender, strlen (sender) + 1);
  g_checksum_update (sum, (const guchar *) address, strlen (address));
  m = g_new (KeyMemo, 1);
  m->digest = g_strdup (digest);
  m->sender = g_strdup (sender);
  m->address = g_strdup (address);
  m->key = g_strdup (g_checksum_get_string (sum));
  g_private_replace (&key_memo, m);
  return g_strdup (m->key);
}

/* One journal line: a record, an intent (into @intents) or a record
 * taken back. */
static void
load_line (DeliverDedupe *d, GHashTable *intents, const char *line, gint64 now)
{
  long long t;
  char key[66];
  int end = 0;

  if (sscanf (line, "%lld %65s%n", &t, key, &end) != 2)
    return;
  if (key[0] == '-' && strlen (key) == 65)
    {
      /* a record taken back */
      g_hash_table_remove (d->seen, key + 1);
      g_hash_table_remove (intents, key + 1);
      d->lines++;
      return;
    }
  if (strlen (key) != 64)
    return;
  d->lines++;
  if (now - t > d->window)
    return;
  if (line[end] == ' ' && line[end + 1])
    {
      /* an intent: "<time> <key> <path>" */
      g_hash_table_replace (intents, g_strdup (key), g_strdup_printf ("%lld %s", t, line + end + 1));
      return;
    }
  g_hash_table_remove (intents, key);
  g_hash_table_replace (d->seen, g_strdup (key), GSIZE_TO_POINTER ((gsize) t));
}

static void
load (DeliverDedupe *d)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;

  g_autoptr (GHashTable) intents = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  GHashTableIter it;
  gpointer k, v;

  if (!g_file_get_contents (d->path, &text, NULL, NULL))
    return;
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    load_line (d, intents, lines[i], now);
  /* intents without a confirmation: the kill came between the intent and
   * the confirmation; the copy counts if it became visible */
  g_hash_table_iter_init (&it, intents);
  while (g_hash_table_iter_next (&it, &k, &v))
    {
      char *path = strchr (v, ' ') + 1;
      if (!g_hash_table_contains (d->seen, k) && util_maildir_file_exists (path))
        g_hash_table_replace (d->seen, g_strdup (k),
                              GSIZE_TO_POINTER ((gsize) g_ascii_strtoll (v, NULL, 10)));
    }
}

DeliverDedupe *
deliver_dedupe_open (const char *path, guint window, GError **error)
{
  DeliverDedupe *d;
  g_autofree char *dir = g_path_get_dirname (path);

  if (g_mkdir_with_parents (dir, 0700) < 0)
    {
      int e = errno;
      g_set_error (error, DELIVER_ERROR, e, "mkdir %s: %s", dir, g_strerror (e));
      return NULL;
    }
  d = g_new0 (DeliverDedupe, 1);
  g_mutex_init (&d->lock);
  d->path = g_strdup (path);
  d->window = window;
  d->seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  d->pending = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  load (d);
  d->compacted = g_hash_table_size (d->seen);
  d->fd = open (path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (d->fd < 0)
    {
      int e = errno;
      g_set_error (error, DELIVER_ERROR, e, "open %s: %s", path, g_strerror (e));
      deliver_dedupe_free (d);
      return NULL;
    }
  return d;
}

gboolean
deliver_dedupe_seen (DeliverDedupe *d, const char *digest, const char *sender, const char *address)
{
  g_autofree char *key = make_key (digest, sender, address);
  gboolean seen;

  g_mutex_lock (&d->lock);
  seen = g_hash_table_contains (d->seen, key);
  g_mutex_unlock (&d->lock);
  return seen;
}

/* Rewrites the journal with the live entries.  Called with the lock held. */
static void
compact (DeliverDedupe *d)
{
  g_autofree char *tmp = g_strconcat (d->path, ".tmp", NULL);
  g_autoptr (GString) text = g_string_new (NULL);
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  GHashTableIter it;
  gpointer key, value;
  int fd;

  g_hash_table_iter_init (&it, d->seen);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      gint64 t = (gint64) GPOINTER_TO_SIZE (value);
      if (now - t > d->window)
        {
          g_hash_table_iter_remove (&it);
          continue;
        }
      if (g_hash_table_contains (d->pending, key))
        g_string_append_printf (text, "%" G_GINT64_FORMAT " %s %s\n", t, (char *) key,
                                (char *) g_hash_table_lookup (d->pending, key));
      else
        g_string_append_printf (text, "%" G_GINT64_FORMAT " %s\n", t, (char *) key);
    }
  if (!g_file_set_contents (tmp, text->str, text->len, NULL) || rename (tmp, d->path) < 0)
    {
      unlink (tmp);
      return;
    }
  fd = open (d->path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0)
    {
      close (d->fd);
      d->fd = fd;
      d->lines = g_hash_table_size (d->seen);
      d->compacted = d->lines;
    }
}

void
deliver_dedupe_intend (DeliverDedupe *d, const char *digest, const char *sender, const char *address,
                       const char *path)
{
  g_autofree char *key = make_key (digest, sender, address);
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  g_autofree char *line = NULL;

  if (strchr (path, '\n'))
    {
      deliver_dedupe_record (d, digest, sender, address); /* cannot be named on a line */
      return;
    }
  line = g_strdup_printf ("%" G_GINT64_FORMAT " %s %s\n", now, key, path);
  g_mutex_lock (&d->lock);
  if (write (d->fd, line, strlen (line)) < 0)
    g_warning ("duplicate journal %s: %s", d->path, g_strerror (errno));
  d->lines++;
  g_hash_table_replace (d->pending, g_strdup (key), g_strdup (path));
  g_hash_table_replace (d->seen, g_steal_pointer (&key), GSIZE_TO_POINTER ((gsize) now));
  g_mutex_unlock (&d->lock);
}

void
deliver_dedupe_record (DeliverDedupe *d, const char *digest, const char *sender, const char *address)
{
  g_autofree char *key = make_key (digest, sender, address);
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  g_autofree char *line = g_strdup_printf ("%" G_GINT64_FORMAT " %s\n", now, key);

  g_mutex_lock (&d->lock);
  if (write (d->fd, line, strlen (line)) < 0)
    g_warning ("duplicate journal %s: %s", d->path, g_strerror (errno));
  d->lines++;
  g_hash_table_remove (d->pending, key);
  g_hash_table_replace (d->seen, g_steal_pointer (&key), GSIZE_TO_POINTER ((gsize) now));
  if (d->lines > COMPACT_MIN && d->lines > 2 * d->compacted)
    compact (d);
  g_mutex_unlock (&d->lock);
}

void
deliver_dedupe_forget (DeliverDedupe *d, const char *digest, const char *sender, const char *address)
{
  g_autofree char *key = make_key (digest, sender, address);
  g_autofree char *line = g_strdup_printf ("%" G_GINT64_FORMAT " -%s\n", g_get_real_time () / G_USEC_PER_SEC, key);

  g_mutex_lock (&d->lock);
  g_hash_table_remove (d->pending, key);
  if (g_hash_table_remove (d->seen, key) && write (d->fd, line, strlen (line)) < 0)
    g_warning ("duplicate journal %s: %s", d->path, g_strerror (errno));
  d->lines++;
  g_mutex_unlock (&d->lock);
}

void
deliver_dedupe_free (DeliverDedupe *d)
{
  if (d == NULL)
    return;
  if (d->fd >= 0)
    close (d->fd);
  g_hash_table_unref (d->seen);
  g_hash_table_unref (d->pending);
  g_mutex_clear (&d->lock);
  g_free (d->path);
  g_free (d);
}
