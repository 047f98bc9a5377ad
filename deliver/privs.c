/* privs.c - never deliver mail as root.  Both lmtpd and the LDA refuse to
 * run as root unless a user to switch to is configured; they switch after
 * binding sockets and opening what only root may open.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include "deliver.h"

static gboolean
lookup (const char *user, struct passwd **out, GError **error)
{
  errno = 0;
  *out = getpwnam (user);
  if (*out == NULL)
    {
      g_set_error (error, DELIVER_ERROR, errno ? errno : ENOENT, "no such user '%s'", user);
      return FALSE;
    }
  return TRUE;
}

gboolean
deliver_drop_privileges (const char *user, GError **error)
{
  struct passwd *pw;

  if (geteuid () != 0)
    return TRUE; /* already unprivileged: deliver as ourselves */
  if (user == NULL)
    {
      g_set_error (error, DELIVER_ERROR, EPERM,
                   "refusing to run as root: set [server] user to the account that owns the mail");
      return FALSE;
    }
  if (!lookup (user, &pw, error))
    return FALSE;
  if (pw->pw_uid == 0)
    {
      g_set_error (error, DELIVER_ERROR, EPERM, "[server] user '%s' is root", user);
      return FALSE;
    }
  if (initgroups (pw->pw_name, pw->pw_gid) < 0 || setgid (pw->pw_gid) < 0 || setuid (pw->pw_uid) < 0)
    {
      int e = errno;
      g_set_error (error, DELIVER_ERROR, e, "cannot switch to user '%s': %s", user, g_strerror (e));
      return FALSE;
    }
  if (setuid (0) == 0)
    {
      g_set_error (error, DELIVER_ERROR, EPERM, "could regain root after switching to '%s'", user);
      return FALSE;
    }
  return TRUE;
}

gboolean
deliver_chown_to_user (const char *path, const char *user, GError **error)
{
  struct passwd *pw;

  if (geteuid () != 0 || user == NULL)
    return TRUE;
  if (!lookup (user, &pw, error))
    return FALSE;
  if (chown (path, pw->pw_uid, pw->pw_gid) < 0)
    {
      int e = errno;
      g_set_error (error, DELIVER_ERROR, e, "chown %s: %s", path, g_strerror (e));
      return FALSE;
    }
  return TRUE;
}

gboolean
deliver_prepare_dirs (const LmtpdConfig *c, GError **error)
{
  g_autofree char *dupdir = g_path_get_dirname (c->duplicate_db);
  const char *dirs[] = { c->spool_dir, c->mail_root, c->duplicate_window ? dupdir : NULL };

  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++)
    {
      if (dirs[i] == NULL)
        continue;
      g_autofree char *parent = g_path_get_dirname (dirs[i]);
      /* parents must let the mail user through; the leaf is private */
      if (g_mkdir_with_parents (parent, 0755) < 0 || g_mkdir_with_parents (dirs[i], 0700) < 0)
        {
          int e = errno;
          g_set_error (error, DELIVER_ERROR, e, "mkdir %s: %s", dirs[i], g_strerror (e));
          return FALSE;
        }
      if (!deliver_chown_to_user (dirs[i], c->user, error))
        return FALSE;
    }
  if (c->duplicate_window && g_file_test (c->duplicate_db, G_FILE_TEST_EXISTS)
      && !deliver_chown_to_user (c->duplicate_db, c->user, error))
    return FALSE;
  return TRUE;
}
