/* disk-ceiling.c - what the disk allows: lmtpd's exact sequences for one
 * Maildir delivery done by THREADS writers into one Maildir, COUNT times in
 * all.  SEQUENCE is
 *
 *   two-step    create in tmp/, write, fsync, close, rename into new/,
 *               open new/, fsync it, close (sync_mode = two-step: two
 *               journal commits per delivery);
 *   one-commit  create in tmp/, write, sync_file_range(WAIT_BEFORE|WRITE|
 *               WAIT_AFTER), rename into new/, fsync the file, close
 *               (sync_mode = one-commit on ext4 with an ordered journal).
 *
 * Prints deliveries per second and the CPU it used per delivery in
 * milliseconds (user + system, all threads).  DIR must not exist yet:
 * bench/run gives every run a fresh one and deletes nothing between runs
 * (issue 20: freed inodes slow the next run's allocations).
 *
 *   disk-ceiling DIR THREADS COUNT SIZE [two-step|one-commit]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static int count, size;
static int next;
static int one_commit;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void
die (const char *what)
{
  perror (what);
  exit (1);
}

static void *
writer (void *arg)
{
  char *buf = malloc (size), tmp[4096], final[4096], newdir[4096];

  (void) arg;

  memset (buf, 'x', size);
  snprintf (newdir, sizeof newdir, "%s/new", dir);
  for (;;)
    {
      int i, fd;

      pthread_mutex_lock (&lock);
      i = next++;
      pthread_mutex_unlock (&lock);
      if (i >= count)
        break;
      snprintf (tmp, sizeof tmp, "%s/tmp/%d.%ld", dir, i, (long) getpid ());
      snprintf (final, sizeof final, "%s/new/%d.%ld", dir, i, (long) getpid ());
      fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0)
        die ("open");
      if (write (fd, buf, size) != size)
        die ("write");
      if (one_commit)
        {
          if (sync_file_range (fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE
                                           | SYNC_FILE_RANGE_WAIT_AFTER) < 0)
            die ("sync_file_range");
          if (rename (tmp, final) < 0)
            die ("rename");
          if (fsync (fd) < 0 || close (fd) < 0)
            die ("fsync/close");
          continue;
        }
      if (fsync (fd) < 0 || close (fd) < 0)
        die ("fsync/close");
      if (rename (tmp, final) < 0)
        die ("rename");
      fd = open (newdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0 || fsync (fd) < 0 || close (fd) < 0)
        die ("fsync dir");
    }
  free (buf);
  return NULL;
}

int
main (int argc, char **argv)
{
  int threads;
  pthread_t t[256];
  struct timespec a, b;
  char path[4096];
  double secs, cpu;
  struct rusage ru;

  if (argc != 5 && !(argc == 6 && (strcmp (argv[5], "two-step") == 0 || strcmp (argv[5], "one-commit") == 0)))
    {
      fprintf (stderr, "usage: disk-ceiling DIR THREADS COUNT SIZE [two-step|one-commit]\n");
      return 64;
    }
  one_commit = argc == 6 && strcmp (argv[5], "one-commit") == 0;
  dir = argv[1];
  threads = atoi (argv[2]);
  count = atoi (argv[3]);
  size = atoi (argv[4]);
  if (threads < 1 || threads > 256 || count < 1 || size < 1)
    return 64;
  if (mkdir (dir, 0700) < 0)
    die ("mkdir (DIR must be new)");
  snprintf (path, sizeof path, "%s/tmp", dir);
  mkdir (path, 0700);
  snprintf (path, sizeof path, "%s/new", dir);
  mkdir (path, 0700);
  clock_gettime (CLOCK_MONOTONIC, &a);
  for (int i = 0; i < threads; i++)
    pthread_create (&t[i], NULL, writer, NULL);
  for (int i = 0; i < threads; i++)
    pthread_join (t[i], NULL);
  clock_gettime (CLOCK_MONOTONIC, &b);
  secs = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
  getrusage (RUSAGE_SELF, &ru);
  cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  printf ("%.0f %.3f\n", count / secs, cpu * 1000 / count);
  return 0;
}
