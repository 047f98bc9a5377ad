/* fs-sync.c - may a Maildir delivery on this file system be made durable
 * with one journal commit instead of two?
 *
 * The two-step sequence (fsync the file, rename it into new/, fsync new/)
 * is durable on any file system that honours fsync, and waits for two
 * journal commits.  On ext4 with a journal in data=ordered or data=journal
 * mode one commit carries all of it (sync_mode = one-commit, maildir.c):
 *
 *   - sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER) before the rename makes
 *     ext4 allocate the blocks and set the on-disk size in the running
 *     transaction (delayed allocation happens at writeback) and waits for
 *     the data to reach the device;
 *   - the rename is in that transaction or a later one, and it also stamps
 *     the file's inode (ctime), so fsync(file) waits for the commit that
 *     holds the rename (ext4_sync_file commits up to the inode's i_sync_tid);
 *   - jbd2 commits transactions in order and flushes the device cache
 *     before each commit block, so once any commit holding the rename is
 *     on stable storage, so are the data, the size and the name.
 *
 * Without a journal (ext2, ext4 with ^has_journal), in data=writeback mode
 * or on any other file system none of this holds, and the directory is
 * fsynced as before.  The answer is read from /proc/fs/ext4/DEV/options
 * (which lists data= only when there is a journal) and kept per device
 * for a minute, so a remount is noticed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "pipeline.h"

#define FS_CHECK_INTERVAL (60 * G_USEC_PER_SEC)
#define FS_CACHE_MAX 256

typedef struct {
  gboolean one_commit;
  gint64 checked;   /* monotonic time of the check */
} FsAnswer;

static GMutex fs_lock;
static GHashTable *fs_answers; /* dev_t -> FsAnswer */

/* "loop0" for the device @dev, from /sys/dev/block/MAJ:MIN. */
static char *
block_device_name (dev_t dev)
{
  g_autofree char *link = g_strdup_printf ("/sys/dev/block/%u:%u", major (dev), minor (dev));
  g_autofree char *target = g_file_read_link (link, NULL);

  return target ? g_path_get_basename (target) : NULL;
}

/* TRUE when ext4 mounted the device with a journal in ordered or journal
 * data mode. */
static gboolean
ext4_journal_orders_data (dev_t dev)
{
  g_autofree char *name = block_device_name (dev);
  g_autofree char *path = NULL, *options = NULL;
  g_auto (GStrv) lines = NULL;

  if (name == NULL || strchr (name, '/') != NULL)
    return FALSE;
  path = g_build_filename ("/proc/fs/ext4", name, "options", NULL);
  if (!g_file_get_contents (path, &options, NULL, NULL))
    return FALSE;
  lines = g_strsplit (options, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    if (strcmp (lines[i], "data=ordered") == 0 || strcmp (lines[i], "data=journal") == 0)
      return TRUE;
  return FALSE;
}

static gboolean
fs_one_commit_check (int dirfd, dev_t dev)
{
  struct statfs sfs;

  if (fstatfs (dirfd, &sfs) < 0 || sfs.f_type != EXT4_SUPER_MAGIC)
    return FALSE;
  return ext4_journal_orders_data (dev);
}

static void
fs_log_answer (dev_t dev, gboolean one_commit)
{
  g_message ("file system %u:%u: %s", major (dev), minor (dev),
             one_commit ? "ext4 with an ordered journal: one commit per Maildir delivery (sync_mode = one-commit)"
                        : "not ext4 with an ordered journal: Maildir deliveries fsync the file and the directory");
}

gboolean
deliver_fs_one_commit (int dirfd)
{
  struct stat st;
  gint64 now = g_get_monotonic_time ();
  FsAnswer *a;
  gboolean one, known, changed;

  if (fstat (dirfd, &st) < 0)
    return FALSE;
  g_mutex_lock (&fs_lock);
  if (fs_answers == NULL || g_hash_table_size (fs_answers) > FS_CACHE_MAX)
    g_clear_pointer (&fs_answers, g_hash_table_unref);
  if (fs_answers == NULL)
    fs_answers = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  a = g_hash_table_lookup (fs_answers, &(gint64) { (gint64) st.st_dev });
  known = a && now - a->checked < FS_CHECK_INTERVAL;
  one = known && a->one_commit;
  g_mutex_unlock (&fs_lock);
  if (known)
    return one;

  /* checked outside the lock: two threads may both look, harmlessly */
  one = fs_one_commit_check (dirfd, st.st_dev);
  g_mutex_lock (&fs_lock);
  a = g_hash_table_lookup (fs_answers, &(gint64) { (gint64) st.st_dev });
  changed = a == NULL || a->one_commit != one;
  if (a == NULL)
    {
      a = g_new0 (FsAnswer, 1);
      g_hash_table_insert (fs_answers, g_memdup2 (&(gint64) { (gint64) st.st_dev }, sizeof (gint64)), a);
    }
  *a = (FsAnswer) { one, now };
  g_mutex_unlock (&fs_lock);
  if (changed)
    fs_log_answer (st.st_dev, one);
  return one;
}
