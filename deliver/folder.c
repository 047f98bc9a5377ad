/* folder.c - folders and flags at delivery.
 *
 * Folder names come from untrusted places (a subaddress detail, Sieve, a
 * callout verdict), so they are checked before they touch the file system.
 * '/' and '.' both separate hierarchy levels.  On disk a Maildir folder is
 * the Maildir++ directory ".A.B" below the Maildir (Dovecot's default
 * layout) and an mbox folder is the file "A/B" below the mbox directory;
 * each level is stored in IMAP modified UTF-7 (RFC 3501 5.1.3), as Dovecot
 * does unless told to use UTF-8.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "deliver.h"

#define FOLDER_MAX 255
#define SUBSCRIPTIONS_MAX (1024 * 1024)
#define LOCK_SUFFIX_LEN 5 /* ".lock" of an mbox dotlock */

static char **folder_levels (const char *name);

/* A valid name must fit the file system once encoded: the Maildir++
 * directory ".A.B" is one name, and an mbox level gains ".lock" for its
 * dotlock.  Else every delivery to it would fail (and be retried)
 * forever; refused here, it goes to INBOX instead. */
static gboolean
folder_fits (const char *name)
{
  g_auto (GStrv) levels = folder_levels (name);
  gsize total = 0;

  for (guint i = 0; levels[i]; i++)
    {
      gsize n = strlen (levels[i]);
      if (n + LOCK_SUFFIX_LEN > NAME_MAX)
        return FALSE;
      total += n + 1; /* the leading '.' or a separator */
    }
  return total <= NAME_MAX;
}

gboolean
deliver_folder_valid (const char *name, const char **why)
{
  gsize len = strlen (name);
  const char *p;

  if (len == 0 || len > FOLDER_MAX)
    return (*why = "folder name empty or too long", FALSE);
  if (!g_utf8_validate (name, len, NULL))
    return (*why = "folder name is not UTF-8", FALSE);
  for (p = name; *p; p++)
    {
      guchar c = *p;
      if (c < 0x20 || c == 0x7f || c == '\\' || c == '*' || c == '%' || c == '~')
        return (*why = "invalid character in folder name", FALSE);
      if ((c == '/' || c == '.') && (p == name || p[1] == '\0' || p[1] == '/' || p[1] == '.'))
        return (*why = "empty level in folder name", FALSE);
    }
  if (!folder_fits (name))
    return (*why = "folder name too long once encoded", FALSE);
  return TRUE;
}

gboolean
deliver_folder_is_inbox (const char *name)
{
  return g_ascii_strcasecmp (name, "INBOX") == 0;
}

/* Appends "&<base64 of UTF-16BE>-" for the run of characters outside
 * printable ASCII at @p; returns where the run ends. */
static const char *
append_mutf7_run (GString *out, const char *p)
{
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
  guint32 bits = 0;
  int nbits = 0;

  g_string_append_c (out, '&');
  while (*p)
    {
      gunichar u = g_utf8_get_char (p);
      gunichar2 units[2];
      int n = 1;
      if (u >= 0x20 && u <= 0x7e)
        break;
      if (u > 0xffff)
        {
          u -= 0x10000;
          units[0] = 0xd800 + (u >> 10);
          units[1] = 0xdc00 + (u & 0x3ff);
          n = 2;
        }
      else
        units[0] = u;
      for (int i = 0; i < n; i++)
        {
          bits = (bits << 16) | units[i];
          nbits += 16;
          while (nbits >= 6)
            {
              nbits -= 6;
              g_string_append_c (out, b64[(bits >> nbits) & 0x3f]);
            }
        }
      p = g_utf8_next_char (p);
    }
  if (nbits > 0)
    g_string_append_c (out, b64[(bits << (6 - nbits)) & 0x3f]);
  g_string_append_c (out, '-');
  return p;
}

char *
deliver_folder_mutf7 (const char *utf8)
{
  GString *out = g_string_new (NULL);
  const char *p = utf8;

  while (*p)
    {
      gunichar c = g_utf8_get_char (p);
      if (c >= 0x20 && c <= 0x7e)
        {
          g_string_append (out, c == '&' ? "&-" : (char[]) { (char) c, 0 });
          p++;
          continue;
        }
      /* a run of non-printable-ASCII characters as UTF-16BE, base64 */
      p = append_mutf7_run (out, p);
    }
  return g_string_free (out, FALSE);
}

/* The levels of a valid folder name, each in modified UTF-7. */
static char **
folder_levels (const char *name)
{
  g_auto (GStrv) levels = g_regex_split_simple ("[/.]", name, 0, 0);
  guint n = g_strv_length (levels);
  char **out = g_new0 (char *, n + 1);

  for (guint i = 0; i < n; i++)
    out[i] = deliver_folder_mutf7 (levels[i]);
  return out;
}

char *
deliver_folder_maildir_path (const char *maildir, const char *name)
{
  g_auto (GStrv) levels = folder_levels (name);
  g_autofree char *joined = g_strjoinv (".", levels);
  g_autofree char *dir = g_strconcat (".", joined, NULL);
  return g_build_filename (maildir, dir, NULL);
}

char *
deliver_folder_mbox_path (const char *dir, const char *name)
{
  g_auto (GStrv) levels = folder_levels (name);
  g_autofree char *joined = g_strjoinv ("/", levels);
  return g_build_filename (dir, joined, NULL);
}

gboolean
deliver_folder_subscribe (const char *maildir, const char *name, GError **error)
{
  g_autofree char *path = g_build_filename (maildir, "subscriptions", NULL);
  g_autofree char *text = NULL;
  g_auto (GStrv) levels = folder_levels (name);
  g_autofree char *entry = g_strjoinv (".", levels);
  g_autofree char *line = g_strconcat (entry, "\n", NULL);
  int fd;

  /* the file is the mail user's: not followed, not a FIFO, bounded */
  if (deliver_mailfile_read (path, SUBSCRIPTIONS_MAX, &text, NULL, NULL))
    {
      g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
      for (guint i = 0; lines[i]; i++)
        if (strcmp (lines[i], entry) == 0)
          return TRUE;
    }
  fd = deliver_mailfile_open (path, O_WRONLY | O_APPEND | O_CREAT, error);
  if (fd < 0)
    return FALSE;
  if (write (fd, line, strlen (line)) != (gssize) strlen (line))
    {
      int e = errno;
      close (fd);
      g_set_error (error, DELIVER_ERROR, e, "update %s: %s", path, g_strerror (e));
      return FALSE;
    }
  close (fd);
  return TRUE;
}

char *
deliver_flags_normalize (const char *flags)
{
  static const char order[] = "DFPRST";
  GString *out = g_string_new (NULL);

  for (const char *o = order; *o; o++)
    if (flags && strchr (flags, *o))
      g_string_append_c (out, *o);
  return g_string_free (out, FALSE);
}
