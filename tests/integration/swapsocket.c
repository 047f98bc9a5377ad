/* swapsocket.c - LD_PRELOAD shim for test_security_files.py: right after
 * a UNIX socket is bound, puts a symlink to $SWAP_TARGET where the socket
 * is, as a mail user who owns the socket's directory could at that
 * moment.  Root's chmod/chown of the socket must not reach the target.
 * Built by the test with the system compiler. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int
bind (int fd, const struct sockaddr *addr, socklen_t len)
{
  static int (*real) (int, const struct sockaddr *, socklen_t);
  const char *target = getenv ("SWAP_TARGET");
  int r;

  if (real == NULL)
    real = (int (*) (int, const struct sockaddr *, socklen_t)) dlsym (RTLD_NEXT, "bind");
  r = real (fd, addr, len);
  if (r == 0 && target && addr->sa_family == AF_UNIX)
    {
      const char *path = ((const struct sockaddr_un *) addr)->sun_path;
      char tmp[sizeof ((struct sockaddr_un *) 0)->sun_path + 8];
      snprintf (tmp, sizeof tmp, "%s.swap", path);
      if (symlink (target, tmp) == 0 && rename (tmp, path) != 0)
        unlink (tmp);
    }
  return r;
}
