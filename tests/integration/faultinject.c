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

/* FAULT_BIND_SWAP=VICTIM: right after a UNIX socket is bound, its name is
 * replaced by a symlink to VICTIM, as a mail user who can write in the
 * socket's directory could do before the server sets mode and owner. */
#include <sys/socket.h>
#include <sys/un.h>

int
bind (int fd, const struct sockaddr *addr, socklen_t len)
{
  static int (*real) (int, const struct sockaddr *, socklen_t);
  const char *victim = getenv ("FAULT_BIND_SWAP");
  int r;

  if (real == NULL)
    real = (int (*) (int, const struct sockaddr *, socklen_t)) dlsym (RTLD_NEXT, "bind");
  r = real (fd, addr, len);
  if (r == 0 && victim && addr->sa_family == AF_UNIX)
    {
      const char *path = ((const struct sockaddr_un *) addr)->sun_path;
      char moved[sizeof ((struct sockaddr_un *) 0)->sun_path + 8];
      snprintf (moved, sizeof moved, "%s.moved", path);
      if (rename (path, moved) == 0)
        symlink (victim, path);
    }
  return r;
}
