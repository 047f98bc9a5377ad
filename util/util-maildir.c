/* util-maildir.c - whether a Maildir file named by an intent (the
 * duplicate journal's, local or shared) is there.
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"

/* A Maildir file, by the name it was renamed to: still in new/ (or cur/),
 * or moved to cur/ by a reader, which appends ":2,FLAGS". */
gboolean
util_maildir_file_exists (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *top = g_path_get_dirname (dir);
  char *colon = strchr (base, ':');
  static const char *const subs[] = { "new", "cur" };

  if (g_file_test (path, G_FILE_TEST_EXISTS))
    return TRUE;
  if (colon)
    *colon = '\0';
  for (guint i = 0; i < G_N_ELEMENTS (subs); i++)
    {
      g_autofree char *sub = g_build_filename (top, subs[i], NULL);
      GDir *dh = g_dir_open (sub, 0, NULL);
      const char *name;
      gboolean found = FALSE;
      gsize n = strlen (base);
      if (dh == NULL)
        continue;
      while (!found && (name = g_dir_read_name (dh)))
        found = strncmp (name, base, n) == 0 && (name[n] == '\0' || name[n] == ':');
      g_dir_close (dh);
      if (found)
        return TRUE;
    }
  return FALSE;
}
