/* faultinject.c - LD_PRELOAD shim for test_faults.py: fsync() fails with
 * EIO for files under a directory named "eio", and takes FAULT_SLOW_MS
 * (default 2000) for files under one named "slow", as a dying or an
 * overloaded disk would.  Built by the test with the system compiler. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int
path_has (int fd, const char *component)
{
  char link[64], path[4096];
  ssize_t n;

  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink (link, path, sizeof path - 1);
  if (n < 0)
    return 0;
  path[n] = '\0';
  return strstr (path, component) != NULL;
}

int
fsync (int fd)
{
  static int (*real) (int);

  if (real == NULL)
    real = (int (*) (int)) dlsym (RTLD_NEXT, "fsync");
  if (path_has (fd, "/eio/"))
    {
      errno = EIO;
      return -1;
    }
  if (path_has (fd, "/slow/"))
    {
      const char *ms = getenv ("FAULT_SLOW_MS");
      long v = ms ? atol (ms) : 2000;
      struct timespec ts = { v / 1000, (v % 1000) * 1000000L };
      nanosleep (&ts, NULL);
    }
  return real (fd);
}

int
fdatasync (int fd)
{
  return fsync (fd);
}
