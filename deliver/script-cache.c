/* script-cache.c - compiled Sieve scripts, cached by path in the delivery
 * context until the file changes (device, inode, size, mtime), so a
 * script is compiled once however many deliveries run it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context.h"
#include "filter.h"

struct FilterCache {
  GMutex lock;
  GHashTable *scripts;  /* path -> FilterScript* */
};

void
filter_script_unref (FilterScript *c)
{
  if (c && g_atomic_ref_count_dec (&c->ref))
    {
      if (c->script)
        sieve_script_free (c->script);
      g_free (c->error);
      g_free (c);
    }
}

FilterCache *
filter_cache_new (void)
{
  FilterCache *cache = g_new0 (FilterCache, 1);

  g_mutex_init (&cache->lock);
  cache->scripts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) filter_script_unref);
  return cache;
}

void
filter_cache_free (FilterCache *cache)
{
  if (cache == NULL)
    return;
  g_hash_table_unref (cache->scripts);
  g_mutex_clear (&cache->lock);
  g_free (cache);
}

static gint64
mtime_ns (const struct stat *st)
{
  return (gint64) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* The cached script, with a reference, if it is of the file @st. */
static FilterScript *
cached (FilterCache *cache, const char *path, const struct stat *st)
{
  FilterScript *c;

  g_mutex_lock (&cache->lock);
  c = g_hash_table_lookup (cache->scripts, path);
  if (c && c->dev == st->st_dev && c->ino == st->st_ino && c->size == st->st_size && c->mtime_ns == mtime_ns (st))
    g_atomic_ref_count_inc (&c->ref);
  else
    c = NULL;
  g_mutex_unlock (&cache->lock);
  return c;
}

/* Reads and compiles the script open as @fd (closes it). */
static FilterScript *
compile (const LmtpdConfig *config, const char *path, int fd, const struct stat *st)
{
  FilterScript *c = g_new0 (FilterScript, 1);
  guint64 max = config->sieve_max_script_size;
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;
  gsize len = 0;

  g_atomic_ref_count_init (&c->ref);
  c->dev = st->st_dev;
  c->ino = st->st_ino;
  c->size = st->st_size;
  c->mtime_ns = mtime_ns (st);
  if ((guint64) st->st_size <= max)
    {
      gssize n = 0;
      text = g_malloc (max + 1);
      while (len <= max && (n = read (fd, text + len, max + 1 - len)) > 0)
        len += n;
      if (n < 0)
        c->error = g_strdup_printf ("%s: %s", path, g_strerror (errno));
    }
  close (fd);
  if (c->error)
    ;
  else if ((guint64) st->st_size > max || len > max)
    c->error = g_strdup_printf ("script is larger than max_script_size (%" G_GUINT64_FORMAT " bytes)", max);
  else if ((c->script = sieve_compile (text, len, &error)) == NULL)
    c->error = g_strdup_printf ("%s:%s", path, error->message);
  return c;
}

FilterScript *
filter_cache_get (FilterCache *cache, const LmtpdConfig *config, const char *path)
{
  return filter_cache_open (cache, config, path, 0);
}

FilterScript *
filter_cache_open (FilterCache *cache, const LmtpdConfig *config, const char *path, int flags)
{
  struct stat st;
  FilterScript *c;
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags);

  /* one open file for the checks and the read */
  if (fd < 0)
    return NULL;
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode))
    {
      close (fd);
      errno = EINVAL;
      return NULL;
    }
  c = cached (cache, path, &st);
  if (c)
    {
      close (fd);
      return c;
    }
  c = compile (config, path, fd, &st);
  g_mutex_lock (&cache->lock);
  g_atomic_ref_count_inc (&c->ref);
  g_hash_table_replace (cache->scripts, g_strdup (path), c);
  g_mutex_unlock (&cache->lock);
  return c;
}
