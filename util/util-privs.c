/* util-privs.c - never run as root longer than needed.  A daemon binds
 * its sockets and opens what only root may open, then switches for good to
 * its configured user; a root that cannot be given up is an error, never a
 * warning.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
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
