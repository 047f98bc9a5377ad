/* spool.c - the message as it arrives, in an unlinked temporary file.
 *
 * Wire data has CRLF line ends; the spool stores LF (as Maildir and mbox
 * readers expect) and counts lines so the CRLF size (Maildir ",W=") is
 * known without reading the file again.  A CR that ends one write may pair
 * with an LF that starts the next, so it is held back.  Memory is one
 * fixed buffer, whatever the size of the message.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <openssl/evp.h>

#include "context.h"

#define SPOOL_BUFSIZE (64 * 1024)

struct DeliverSpool {
  int fd;
  char *dir;         /* where the file was made, for reuse */
  DeliverSpoolPool *pool; /* a reference while in use; NULL: not pooled */
  guint64 size;      /* bytes written to the file or buffered */
  guint64 lines;
  gboolean held_cr;
  gboolean finished;
  EVP_MD_CTX *sum;  /* SHA-256 of the stored bytes (OpenSSL: SHA-NI, not GLib's C code) */
  char *digest;
  gboolean header_done;   /* the blank line after the header was seen */
  gboolean at_bol;
  guint64 header_len;
  guint64 header_lines;
  gsize buf_len;
  gboolean in_memory;     /* finished with a single flush: buf still holds it all */
  char buf[SPOOL_BUFSIZE];
};

static int
open_unlinked (const char *dir, GError **error)
{
  int fd;

#ifdef O_TMPFILE
  fd = open (dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0)
    return fd;
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
    goto fail;
#endif
  {
    g_autofree char *tmpl = g_build_filename (dir, "spool.XXXXXX", NULL);
    fd = g_mkstemp_full (tmpl, O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
      {
        unlink (tmpl);
        return fd;
      }
  }
fail:
  {
    int e = errno;
    g_set_error (error, DELIVER_ERROR, e, "cannot create spool file in %s: %s", dir, g_strerror (e));
  }
  return -1;
}

/* Spools of finished transactions, emptied, for the next ones: creating
 * and freeing an inode per transaction is the largest cost of a small
 * delivery on ext4 (the allocator scans past recently freed inodes).
 * Reference-counted apart from the context: a spool in use holds the
 * pool, one waiting in it does not. */
#define SPOOL_POOL_MAX 32

struct DeliverSpoolPool {
  gatomicrefcount ref;
  GMutex lock;
  GQueue idle;       /* DeliverSpool*, emptied */
};

static void spool_destroy (DeliverSpool *s);

DeliverSpoolPool *
deliver_spool_pool_new (void)
{
  DeliverSpoolPool *pool = g_new0 (DeliverSpoolPool, 1);

  g_atomic_ref_count_init (&pool->ref);
  g_mutex_init (&pool->lock);
  g_queue_init (&pool->idle);
  return pool;
}

static DeliverSpoolPool *
pool_ref (DeliverSpoolPool *pool)
{
  g_atomic_ref_count_inc (&pool->ref);
  return pool;
}

void
deliver_spool_pool_unref (DeliverSpoolPool *pool)
{
  DeliverSpool *s;

  if (pool == NULL || !g_atomic_ref_count_dec (&pool->ref))
    return;
  while ((s = g_queue_pop_head (&pool->idle)) != NULL)
    spool_destroy (s);
  g_mutex_clear (&pool->lock);
  g_free (pool);
}

static DeliverSpool *
pool_take (DeliverSpoolPool *pool, const char *dir)
{
  DeliverSpool *s = NULL;

  if (pool == NULL)
    return NULL;
  g_mutex_lock (&pool->lock);
  for (GList *l = pool->idle.head; l; l = l->next)
    if (strcmp (((DeliverSpool *) l->data)->dir, dir) == 0)
      {
        s = l->data;
        g_queue_delete_link (&pool->idle, l);
        break;
      }
  g_mutex_unlock (&pool->lock);
  return s;
}

/* TRUE if @s (emptied) went back into its pool. */
static gboolean
pool_give_back (DeliverSpool *s)
{
  DeliverSpoolPool *pool = s->pool;
  gboolean kept = FALSE;

  if (pool == NULL)
    return FALSE;
  s->pool = NULL;
  g_mutex_lock (&pool->lock);
  if (pool->idle.length < SPOOL_POOL_MAX)
    {
      g_queue_push_head (&pool->idle, s);
      kept = TRUE;
    }
  g_mutex_unlock (&pool->lock);
  deliver_spool_pool_unref (pool);
  return kept;
}

/* SHA-256 looked up once: with EVP_sha256 () OpenSSL 3 fetches the
 * implementation again at every init, which cost as much as hashing a
 * few KB. */
static const EVP_MD *
sha256 (void)
{
  static gsize md;

  if (g_once_init_enter (&md))
    {
      EVP_MD *fetched = EVP_MD_fetch (NULL, "SHA256", NULL);
      if (fetched == NULL)
        g_error ("OpenSSL has no SHA-256");
      g_once_init_leave (&md, (gsize) fetched);
    }
  return (const EVP_MD *) md;
}

DeliverSpool *
deliver_spool_new (DeliverContext *ctx, const char *dir, GError **error)
{
  DeliverSpoolPool *pool = ctx ? ctx->spools : NULL;
  DeliverSpool *s = pool_take (pool, dir);

  if (s)
    EVP_DigestInit_ex2 (s->sum, sha256 (), NULL);
  else
    {
      int fd = open_unlinked (dir, error);
      if (fd < 0)
        return NULL;
      s = g_new (DeliverSpool, 1);
      s->fd = fd;
      s->dir = g_strdup (dir);
      s->sum = EVP_MD_CTX_new ();
      if (s->sum == NULL || !EVP_DigestInit_ex2 (s->sum, sha256 (), NULL))
        g_error ("out of memory (SHA-256 context)");
    }
  s->pool = pool ? pool_ref (pool) : NULL;
  s->size = s->lines = 0;
  s->held_cr = s->finished = FALSE;
  s->digest = NULL;
  s->header_done = FALSE;
  s->at_bol = TRUE;
  s->header_len = s->header_lines = 0;
  s->buf_len = 0;
  s->in_memory = FALSE;
  return s;
}

static gboolean
spool_flush (DeliverSpool *s, GError **error)
{
  gsize off = 0;

  /* the digest in 64 KiB steps, not per line: far fewer calls */
  EVP_DigestUpdate (s->sum, s->buf, s->buf_len);

  while (off < s->buf_len)
    {
      ssize_t n = write (s->fd, s->buf + off, s->buf_len - off);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int e = errno;
          g_set_error (error, DELIVER_ERROR, e, "spool write: %s", g_strerror (e));
          return FALSE;
        }
      off += n;
    }
  s->buf_len = 0;
  return TRUE;
}

/* Finds the end of the header part: the first empty line.  @base is the
 * offset of @p in the stored message. */
static void
track_header (DeliverSpool *s, const char *p, gsize n, guint64 base)
{
  const char *start = p, *end = p + n;

  while (!s->header_done && p < end)
    {
      const char *nl = memchr (p, '\n', end - p);
      if (nl == NULL)
        {
          s->at_bol = FALSE;
          return;
        }
      s->header_lines++;
      if (s->at_bol && nl == p)
        {
          s->header_done = TRUE;
          s->header_len = base + (nl + 1 - start);
          return;
        }
      s->at_bol = TRUE;
      p = nl + 1;
    }
}

static gboolean
spool_put (DeliverSpool *s, const char *data, gsize len, GError **error)
{
  while (len > 0)
    {
      gsize n = MIN (len, SPOOL_BUFSIZE - s->buf_len);
      memcpy (s->buf + s->buf_len, data, n);
      if (!s->header_done)
        track_header (s, data, n, s->size);
      s->buf_len += n;
      s->size += n;
      data += n;
      len -= n;
      if (s->buf_len == SPOOL_BUFSIZE && !spool_flush (s, error))
        return FALSE;
    }
  return TRUE;
}

/* A body line and its LF in one copy, when both fit in the buffer without
 * a flush (the common case; the header is tracked by spool_put).  FALSE:
 * nothing done, spool_put it. */
static gboolean
spool_put_line (DeliverSpool *s, const char *line, gsize n)
{
  if (!s->header_done || s->buf_len + n + 1 >= SPOOL_BUFSIZE)
    return FALSE;
  memcpy (s->buf + s->buf_len, line, n);
  s->buf[s->buf_len + n] = '\n';
  s->buf_len += n + 1;
  s->size += n + 1;
  return TRUE;
}

gboolean
deliver_spool_write (DeliverSpool *s, const void *data, gsize len, GError **error)
{
  const char *p = data, *end = p + len;

  g_return_val_if_fail (!s->finished, FALSE);
  if (len == 0)
    return TRUE;
  if (s->held_cr)
    {
      s->held_cr = FALSE;
      if (*p != '\n' && !spool_put (s, "\r", 1, error))
        return FALSE;
    }
  while (p < end)
    {
      const char *nl = memchr (p, '\n', end - p);
      const char *stop = nl ? nl : end;
      gsize n = stop - p;

      if (nl == NULL && n > 0 && stop[-1] == '\r')
        {
          /* maybe the first half of a CRLF split across writes */
          s->held_cr = TRUE;
          n--;
        }
      else if (nl != NULL && n > 0 && stop[-1] == '\r')
        n--;
      if (nl == NULL)
        return spool_put (s, p, n, error);
      if (!spool_put_line (s, p, n) && (!spool_put (s, p, n, error) || !spool_put (s, "\n", 1, error)))
        return FALSE;
      s->lines++;
      p = nl + 1;
    }
  return TRUE;
}

gboolean
deliver_spool_finish (DeliverSpool *s, GError **error)
{
  if (s->finished)
    return TRUE;
  if (s->held_cr)
    {
      s->held_cr = FALSE;
      if (!spool_put (s, "\r", 1, error))
        return FALSE;
    }
  /* a message that fits the buffer is read back from it, not the file */
  s->in_memory = s->size == s->buf_len;
  if (!spool_flush (s, error))
    return FALSE;
  s->finished = TRUE;
  {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    EVP_DigestFinal_ex (s->sum, md, &len);
    s->digest = g_malloc (2 * len + 1);
    /* by hand: a formatted print per byte cost more than the digest */
    for (unsigned int i = 0; i < len; i++)
      {
        s->digest[2 * i] = "0123456789abcdef"[md[i] >> 4];
        s->digest[2 * i + 1] = "0123456789abcdef"[md[i] & 0xf];
      }
    s->digest[2 * len] = '\0';
  }
  if (!s->header_done)
    {
      /* no empty line: it is all header */
      s->header_len = s->size;
      s->header_lines = s->lines;
    }
  return TRUE;
}

guint64
deliver_spool_header_len (const DeliverSpool *s)
{
  return s->header_len;
}

guint64
deliver_spool_header_lines (const DeliverSpool *s)
{
  return s->header_lines;
}

/* Is @line (of @n bytes, no LF) the start of the field @name? */
static const char *
field_value_start (const char *line, gsize n, const char *name)
{
  gsize len = strlen (name);

  if (n <= len || g_ascii_strncasecmp (line, name, len) != 0)
    return NULL;
  for (line += len, n -= len; n > 0 && (*line == ' ' || *line == '\t'); line++, n--)
    ;
  return n > 0 && *line == ':' ? line + 1 : NULL;
}

/* The first @len bytes of the stored message: from memory when all of it
 * is still in the buffer (the header is read two or three times per
 * delivery: a pread each). */
static gssize
spool_read_start (const DeliverSpool *s, char *buf, gsize len)
{
  if (s->in_memory && len <= s->size)
    {
      memcpy (buf, s->buf, len);
      return (gssize) len;
    }
  return pread (s->fd, buf, len, 0);
}

/* Only the first SPOOL_BUFSIZE bytes of the header are looked at: the
 * value is for the log, and a field past 64 KiB of header is not worth a
 * second read.  Folded lines are joined with their leading white space. */
char *
deliver_spool_header_value (const DeliverSpool *s, const char *name)
{
  gsize want = (gsize) MIN (s->header_len, (guint64) SPOOL_BUFSIZE);
  g_autofree char *buf = g_malloc (want + 1);
  GString *value = NULL;
  ssize_t got = want ? spool_read_start (s, buf, want) : 0;
  gsize pos = 0;

  while (got > 0 && pos < (gsize) got)
    {
      const char *line = buf + pos, *nl = memchr (line, '\n', (gsize) got - pos);
      gsize n = nl ? (gsize) (nl - line) : (gsize) got - pos;
      const char *v;

      pos += n + 1;
      if (value && n > 0 && (line[0] == ' ' || line[0] == '\t'))
        g_string_append_len (value, line, (gssize) n);
      else if (value || n == 0)
        break;
      else if ((v = field_value_start (line, n, name)) != NULL)
        value = g_string_new_len (v, (gssize) (n - (gsize) (v - line)));
    }
  if (value == NULL)
    return NULL;
  return g_strstrip (g_string_free (value, FALSE));
}

char *
deliver_spool_read_header (const DeliverSpool *s, gsize *out_len)
{
  gsize len = (gsize) s->header_len;
  char *buf = g_malloc (len + 1);

  if (len && spool_read_start (s, buf, len) != (gssize) len)
    {
      g_free (buf);
      return NULL;
    }
  buf[len] = '\0';
  if (out_len)
    *out_len = len;
  return buf;
}

const char *
deliver_spool_digest (const DeliverSpool *s)
{
  return s->digest;
}

int
deliver_spool_fd (const DeliverSpool *s)
{
  return s->fd;
}

guint64
deliver_spool_size (const DeliverSpool *s)
{
  return s->size;
}

guint64
deliver_spool_lines (const DeliverSpool *s)
{
  return s->lines;
}

static void
spool_destroy (DeliverSpool *s)
{
  if (s->fd >= 0)
    close (s->fd);
  EVP_MD_CTX_free (s->sum);
  g_free (s->dir);
  g_free (s);
}

void
deliver_spool_free (DeliverSpool *s)
{
  if (s == NULL)
    return;
  g_clear_pointer (&s->digest, g_free);
  /* emptied (nothing of this message stays) and rewound for the next */
  if (s->fd >= 0 && ftruncate (s->fd, 0) == 0 && lseek (s->fd, 0, SEEK_SET) == 0 && pool_give_back (s))
    return;
  g_clear_pointer (&s->pool, deliver_spool_pool_unref);
  spool_destroy (s);
}

void
deliver_content_from_spool (DeliverContent *c, const DeliverSpool *s)
{
  c->n = 1;
  c->seg[0].fd = s->fd;
  c->seg[0].offset = 0;
  c->seg[0].length = s->size;
  c->seg[0].lines = s->lines;
}

guint64
deliver_content_size (const DeliverContent *c)
{
  guint64 n = 0;
  for (guint i = 0; i < c->n; i++)
    n += c->seg[i].length;
  return n;
}

guint64
deliver_content_lines (const DeliverContent *c)
{
  guint64 n = 0;
  for (guint i = 0; i < c->n; i++)
    n += c->seg[i].lines;
  return n;
}

gboolean
deliver_content_same (const DeliverContent *a, const DeliverContent *b)
{
  if (a->n != b->n)
    return FALSE;
  for (guint i = 0; i < a->n; i++)
    if (a->seg[i].fd != b->seg[i].fd || a->seg[i].offset != b->seg[i].offset
        || a->seg[i].length != b->seg[i].length)
      return FALSE;
  return TRUE;
}
