/* util-privs.c - never run as root longer than needed.  A daemon binds
 * its sockets and opens what only root may open, then switches for good to
 * its configured user; a root that cannot be given up is an error, never a
 * warning.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <unistd.h>

#include "lmtpd-util.h"

static gboolean
switch_to (const struct passwd *pw, const char *user, GError **error)
{
  if (initgroups (pw->pw_name, pw->pw_gid) < 0 || setgid (pw->pw_gid) < 0 || setuid (pw->pw_uid) < 0)
    {
      int e = errno;
      g_set_error (error, UTIL_ERROR, e, "cannot switch to user '%s': %s", user, g_strerror (e));
      return FALSE;
    }
  if (setuid (0) == 0)
    {
      g_set_error (error, UTIL_ERROR, EPERM, "could regain root after switching to '%s'", user);
      return FALSE;
    }
  return TRUE;
}

gboolean
util_drop_privileges (const char *user, GError **error)
{
  struct passwd *pw;

  if (geteuid () != 0)
    return TRUE; /* already unprivileged: run as ourselves */
  if (user == NULL)
    {
      g_set_error (error, UTIL_ERROR, EPERM,
                   "refusing to run as root: set [server] user to the account that owns the mail");
      return FALSE;
    }
  errno = 0;
  pw = getpwnam (user);
  if (pw == NULL)
    {
      g_set_error (error, UTIL_ERROR, errno ? errno : ENOENT, "no such user '%s'", user);
      return FALSE;
    }
  if (pw->pw_uid == 0)
    {
      g_set_error (error, UTIL_ERROR, EPERM, "[server] user '%s' is root", user);
      return FALSE;
    }
  return switch_to (pw, user, error);
}

static int cached_pid; /* 0: not asked yet, or forked since */

static void
forget_pid (void)
{
  g_atomic_int_set (&cached_pid, 0);
}

int
util_pid (void)
{
  static gsize registered;
  int pid = g_atomic_int_get (&cached_pid);

  if (pid != 0)
    return pid;
  if (g_once_init_enter (&registered))
    {
      pthread_atfork (NULL, NULL, forget_pid);
      g_once_init_leave (&registered, 1);
    }
  pid = (int) getpid ();
  g_atomic_int_set (&cached_pid, pid);
  return pid;
}
