/* prefill.c - a Maildir that already holds COUNT messages, for the
 * mailbox-size workload of issue 20 (4k-x1-x4-100k): run by the harness
 * target's command before it execs lmtpd, so the time it takes is not in
 * the measured run (the harness starts its clock once the server answers
 * LHLO).  Built and run by bench/run only; never installed.
 *
 *   prefill MAILDIR COUNT [QUOTA]
 *
 * Makes MAILDIR and its cur/, new/ and tmp/ (mode 0700, parents too, as
 * lmtpd would), then COUNT small messages in cur/ named as Dovecot and
 * lmtpd name them, seen ("<secs>.M<usecs>P<pid>Q<n>.prefill,S=<size>,
 * W=<vsize>:2,S"): read mail, as in a mailbox of that size.  With QUOTA
 * (the Maildir++ quota line lmtpd will expect, e.g. "10737418240S") also
 * the maildirsize a quota'd mailbox that size has: that line and the
 * total, as if recalculated just now; without it none (lmtpd reads one
 * only for a user with a quota).  Ends with
 * syncfs(), so that the writeback of these files does not fall into the
 * measured run.  COUNT 0 makes the empty Maildir (and syncs) only.  The
 * reference target (an empty mailbox) writes as many messages into
 * another user's Maildir, so that both runs start after the same writing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COUNT_MAX 10000000L

static const char message[] =
  "Return-Path: <sender@example.test>\n"
  "Delivered-To: bench@example.test\n"
  "From: sender@example.test\n"
  "To: bench@example.test\n"
  "Subject: an old message\n"
  "Message-ID: <prefill@example.test>\n"
  "\n"
  "A message that was delivered and read long ago.\n";

static void
die (const char *what, const char *path)
{
  fprintf (stderr, "prefill: %s %s: %s\n", what, path, strerror (errno));
  exit (1);
}

/* mkdir -p with mode 0700, as lmtpd makes a new mailbox's directories */
static void
make_dirs (char *path)
{
  for (char *p = path + 1; *p; p++)
    {
      if (*p != '/')
        continue;
      *p = '\0';
      if (mkdir (path, 0700) < 0 && errno != EEXIST)
        die ("mkdir", path);
      *p = '/';
    }
  if (mkdir (path, 0700) < 0 && errno != EEXIST)
    die ("mkdir", path);
}

static int
open_subdirs (const char *maildir)
{
  static const char *const subdirs[] = { "cur", "new", "tmp" };
  int dir = open (maildir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), cur;

  if (dir < 0)
    die ("open", maildir);
  for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++)
    if (mkdirat (dir, subdirs[i], 0700) < 0 && errno != EEXIST)
      die ("mkdir", subdirs[i]);
  cur = openat (dir, "cur", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (cur < 0)
    die ("open", "cur");
  close (dir);
  return cur;
}

/* COUNT files in cur/, one second apart going back from now */
static void
write_messages (int cur, long count)
{
  size_t size = sizeof message - 1, lines = 0;
  time_t now = time (NULL);
  char name[128];

  for (const char *p = message; *p; p++)
    lines += *p == '\n';
  for (long n = 0; n < count; n++)
    {
      int fd;
      snprintf (name, sizeof name, "%lld.M%ldP%dQ%ld.prefill,S=%zu,W=%zu:2,S",
                (long long) (now - count + n), n % 1000000, (int) getpid (), n, size, size + lines);
      fd = openat (cur, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0)
        die ("create", name);
      if (write (fd, message, size) != (ssize_t) size)
        die ("write", name);
      if (close (fd) < 0)
        die ("close", name);
    }
}

/* maildirsize as a recalculation leaves it: the quota, then one line
 * with the bytes and messages of the Maildir */
static void
write_maildirsize (const char *maildir, const char *quota, long count)
{
  char path[4096], text[256];
  int fd, n;

  snprintf (path, sizeof path, "%s/maildirsize", maildir);
  n = snprintf (text, sizeof text, "%s\n%zu %ld\n", quota, count * (sizeof message - 1), count);
  if (n < 0 || (size_t) n >= sizeof text)
    {
      fprintf (stderr, "prefill: QUOTA too long\n");
      exit (64);
    }
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    die ("create", path);
  if (write (fd, text, n) != n || close (fd) < 0)
    die ("write", path);
}

int
main (int argc, char **argv)
{
  char *end, *maildir;
  long count;
  int cur;

  if (argc != 3 && argc != 4)
    {
      fprintf (stderr, "usage: prefill MAILDIR COUNT [QUOTA]\n");
      return 64;
    }
  count = strtol (argv[2], &end, 10);
  if (*argv[2] == '\0' || *end != '\0' || count < 0 || count > COUNT_MAX)
    {
      fprintf (stderr, "prefill: COUNT must be 0 to %ld\n", COUNT_MAX);
      return 64;
    }
  maildir = strdup (argv[1]);
  if (maildir == NULL || maildir[0] != '/')
    {
      fprintf (stderr, "prefill: MAILDIR must be an absolute path\n");
      return 64;
    }
  make_dirs (maildir);
  cur = open_subdirs (maildir);
  write_messages (cur, count);
  if (argc == 4)
    write_maildirsize (maildir, argv[3], count);
  if (syncfs (cur) < 0)
    die ("syncfs", maildir);
  close (cur);
  free (maildir);
  return 0;
}
