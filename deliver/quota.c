/* quota.c - Maildir++ quota: the "maildirsize" file that Courier and
 * Dovecot also keep.  Its first line is the quota ("<bytes>S,<count>C"),
 * each further line a change "<bytes> <count>".  It is recalculated from
 * the file names (",S=") when missing, of another quota, or over 5120
 * bytes, as the Maildir++ rules say.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver.h"

#define MAILDIRSIZE_MAX 5120              /* recalculated above this, as Maildir++ says */
#define MAILDIRSIZE_READ_MAX (64 * 1024)  /* summed up to this while another thread recalculates */

/* The Maildirs whose maildirsize a thread of this process is recalculating
 * now.  A recalculation reads every file name in the mailbox (100,000 in a
 * big one); when maildirsize grows over 5120 bytes, every delivery thread
 * reading it would start one at the same time (issue 20: four scans of
 * 100,000 names instead of one).  The others use the sums of the long file
 * meanwhile: they are the usage, the length only says it is time to
 * compact.  At most one entry per delivery thread. */
static GMutex recalc_lock;
static GHashTable *recalculating;

static gboolean
recalc_claim (const char *maildir)
{
  gboolean mine;

  g_mutex_lock (&recalc_lock);
  if (recalculating == NULL)
    recalculating = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  mine = !g_hash_table_contains (recalculating, maildir);
  if (mine)
    g_hash_table_add (recalculating, g_strdup (maildir));
  g_mutex_unlock (&recalc_lock);
  return mine;
}

static void
recalc_release (const char *maildir)
{
  g_mutex_lock (&recalc_lock);
  g_hash_table_remove (recalculating, maildir);
  g_mutex_unlock (&recalc_lock);
}

static char *
quota_line (guint64 bytes, guint64 messages)
{
  GString *s = g_string_new (NULL);
  if (bytes)
    g_string_append_printf (s, "%" G_GUINT64_FORMAT "S", bytes);
  if (messages)
    g_string_append_printf (s, "%s%" G_GUINT64_FORMAT "C", bytes ? "," : "", messages);
  return g_string_free (s, FALSE);
}

/* File names are the mail user's: a ",S=" of twenty digits must not wrap
 * the total round to a small number. */
static guint64
add_saturated (guint64 a, guint64 b)
{
  return a > G_MAXUINT64 - b ? G_MAXUINT64 : a + b;
}

static void
count_dir (const char *dir, guint64 *bytes, guint64 *count)
{
  DIR *d = opendir (dir);
  struct dirent *e;

  if (d == NULL)
    return;
  while ((e = readdir (d)) != NULL)
    {
      const char *s;
      if (e->d_name[0] == '.')
        continue;
      s = strstr (e->d_name, ",S=");
      if (s)
        *bytes = add_saturated (*bytes, g_ascii_strtoull (s + 3, NULL, 10));
      else
        {
          g_autofree char *p = g_build_filename (dir, e->d_name, NULL);
          struct stat st;
          if (stat (p, &st) == 0)
            *bytes = add_saturated (*bytes, st.st_size);
        }
      (*count)++;
    }
  closedir (d);
}

static void
count_maildir (const char *maildir, guint64 *bytes, guint64 *count)
{
  DIR *d;
  struct dirent *e;

  for (int i = 0; i < 2; i++)
    {
      g_autofree char *sub = g_build_filename (maildir, i ? "cur" : "new", NULL);
      count_dir (sub, bytes, count);
    }
  d = opendir (maildir);
  if (d == NULL)
    return;
  while ((e = readdir (d)) != NULL)
    {
      /* Maildir++ folders; Trash does not count, as in Courier */
      if (e->d_name[0] != '.' || strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0
          || strcmp (e->d_name, ".Trash") == 0)
        continue;
      for (int i = 0; i < 2; i++)
        {
          g_autofree char *sub = g_build_filename (maildir, e->d_name, i ? "cur" : "new", NULL);
          count_dir (sub, bytes, count);
        }
    }
  closedir (d);
}

static void
recalculate (const char *maildir, const char *path, const char *qline, guint64 *bytes, guint64 *count)
{
  g_autofree char *tmp = g_strdup_printf ("%s.%d.tmp", path, (int) getpid ());
  g_autofree char *text = NULL;

  *bytes = *count = 0;
  count_maildir (maildir, bytes, count);
  text = g_strdup_printf ("%s\n%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT "\n", qline, *bytes, *count);
  if (g_file_set_contents (tmp, text, -1, NULL))
    {
      if (rename (tmp, path) < 0)
        unlink (tmp);
    }
}

/* Sums the change lines of maildirsize.  FALSE if a sum leaves the range
 * of gint64 (lines written by the mail user, or corrupt): then the file
 * cannot be trusted and is recalculated. */
static gboolean
sum_lines (char **lines, guint64 *bytes, guint64 *count)
{
  gint64 b = 0, c = 0;

  for (guint i = 1; lines[i]; i++)
    {
      char *end1, *end2;
      gint64 lb, lc;

      /* g_ascii_strtoll: an out-of-range number is ERANGE, not undefined as with sscanf */
      errno = 0;
      lb = g_ascii_strtoll (lines[i], &end1, 10);
      lc = g_ascii_strtoll (end1, &end2, 10);
      if (end1 == lines[i] || end2 == end1)
        continue;
      if (errno == ERANGE || __builtin_add_overflow (b, lb, &b) || __builtin_add_overflow (c, lc, &c))
        return FALSE;
    }
  *bytes = b > 0 ? (guint64) b : 0;
  *count = c > 0 ? (guint64) c : 0;
  return TRUE;
}

/* TRUE with the sums of maildirsize and its length if it is of this quota
 * and can be trusted.  A FIFO, a symlink or a file over the read bound is
 * not read (and will be replaced). */
static gboolean
read_sums (const char *path, const char *qline, guint64 *bytes, guint64 *count, gsize *len)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  if (!deliver_mailfile_read (path, MAILDIRSIZE_READ_MAX, &text, len, NULL))
    return FALSE;
  lines = g_strsplit (text, "\n", -1);
  return lines[0] != NULL && strcmp (lines[0], qline) == 0 && sum_lines (lines, bytes, count);
}

/* Usage from maildirsize, recalculating when needed: when it is missing,
 * of another quota or untrustworthy, always; when it is only over 5120
 * bytes, unless another thread is already at it. */
static void
usage (const char *maildir, guint64 quota_bytes, guint64 quota_messages, guint64 *bytes, guint64 *count)
{
  g_autofree char *path = g_build_filename (maildir, "maildirsize", NULL);
  g_autofree char *qline = quota_line (quota_bytes, quota_messages);
  gsize len = 0;
  gboolean valid = read_sums (path, qline, bytes, count, &len), mine;

  if (valid && len <= MAILDIRSIZE_MAX)
    return;
  mine = recalc_claim (maildir);
  if (valid && !mine)
    return;
  recalculate (maildir, path, qline, bytes, count);
  if (mine)
    recalc_release (maildir);
}

gboolean
deliver_quota_check (const char *maildir, guint64 quota_bytes, guint64 quota_messages,
                     guint64 size, GError **error)
{
  guint64 bytes, count;

  if (quota_bytes == 0 && quota_messages == 0)
    return TRUE;
  usage (maildir, quota_bytes, quota_messages, &bytes, &count);
  if ((quota_bytes && (size > quota_bytes || bytes > quota_bytes - size))
      || (quota_messages && count >= quota_messages))
    {
      g_set_error (error, DELIVER_ERROR, EDQUOT, "%s: over quota (%" G_GUINT64_FORMAT
                   " bytes in %" G_GUINT64_FORMAT " messages)", maildir, bytes, count);
      return FALSE;
    }
  return TRUE;
}

void
deliver_quota_add (const char *maildir, guint64 quota_bytes, guint64 quota_messages, guint64 size)
{
  g_autofree char *path = g_build_filename (maildir, "maildirsize", NULL);
  g_autofree char *line = g_strdup_printf ("%" G_GUINT64_FORMAT " 1\n", size);
  int fd;

  if (quota_bytes == 0 && quota_messages == 0)
    return;
  fd = deliver_mailfile_open (path, O_WRONLY | O_APPEND, NULL);
  if (fd < 0)
    {
      /* first delivery to a new Maildir: count what is there now */
      g_autofree char *qline = quota_line (quota_bytes, quota_messages);
      guint64 bytes, count;
      recalculate (maildir, path, qline, &bytes, &count);
      return;
    }
  if (write (fd, line, strlen (line)) < 0)
    g_debug ("maildirsize %s: %s", path, g_strerror (errno));
  close (fd);
}

gboolean
deliver_quota_check_mbox (const char *path, guint64 quota_bytes, guint64 size, GError **error)
{
  struct stat st;
  guint64 used = 0;

  if (quota_bytes == 0)
    return TRUE;
  /* lstat: the append refuses anything but a regular file anyway */
  if (lstat (path, &st) == 0 && S_ISREG (st.st_mode))
    used = st.st_size;
  if (size > quota_bytes || used > quota_bytes - size)
    {
      g_set_error (error, DELIVER_ERROR, EDQUOT, "%s: over quota (%" G_GUINT64_FORMAT " bytes)", path, used);
      return FALSE;
    }
  return TRUE;
}

void
deliver_quota_usage (const char *maildir, guint64 quota_bytes, guint64 quota_messages, guint64 *bytes,
                     guint64 *messages)
{
  *bytes = *messages = 0;
  usage (maildir, quota_bytes, quota_messages, bytes, messages);
}
