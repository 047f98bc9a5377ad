/* conf-report.c - where a key sits in a key file, and problems that say so.
 *
 * Every problem is collected, not just the first, and each is reported as
 * "file:line: [group] key: problem" so that --check-config tells the
 * administrator everything in one run.  GKeyFile does not expose line
 * numbers, so a small pre-scan maps group/key to the line it sits on.
 */
#include "config.h"

#include <string.h>

#include "conf-private.h"

/* "group\n" (no key): where the group first starts */
static void
note_group (GHashTable *lines, const char *group, guint line)
{
  char *k = g_strdup_printf ("%s\n", group);

  if (!g_hash_table_contains (lines, k))
    g_hash_table_insert (lines, k, GUINT_TO_POINTER (line));
  else
    g_free (k);
}

GHashTable *
conf_scan_lines (const char *text)
{
  GHashTable *lines = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_auto (GStrv) v = g_strsplit (text, "\n", -1);
  g_autofree char *group = g_strdup ("");

  for (guint i = 0; v[i] != NULL; i++)
    {
      char *s = g_strstrip (v[i]);
      if (*s == '[')
        {
          char *end = strchr (s, ']');
          g_free (group);
          group = g_strndup (s + 1, end ? (gsize) (end - s - 1) : strlen (s + 1));
          note_group (lines, group, i + 1);
        }
      else if (*s != '#' && *s != '\0' && strchr (s, '='))
        {
          g_autofree char *key = g_strndup (s, strchr (s, '=') - s);
          g_strstrip (key);
          g_hash_table_insert (lines, g_strdup_printf ("%s\n%s", group, key), GUINT_TO_POINTER (i + 1));
        }
    }
  return lines;
}

/* The first line GKeyFile would refuse (not blank, a comment, a group or
 * a key=value pair), 1-based, or 0: its own error names no line. */
guint
lmtpd_keyfile_bad_line (const char *text)
{
  g_auto (GStrv) v = g_strsplit (text, "\n", -1);

  for (guint i = 0; v[i] != NULL; i++)
    {
      const char *s = v[i];
      while (g_ascii_isspace (*s))
        s++;
      if (*s == '\0' || *s == '#')
        continue;
      if (*s == '[' ? strchr (s, ']') == NULL : (strchr (s, '=') == NULL || *s == '='))
        return i + 1;
    }
  return 0;
}

guint
lmtpd_keyfile_group_line (const char *text, const char *group)
{
  g_autoptr (GHashTable) lines = conf_scan_lines (text);
  g_autofree char *k = g_strdup_printf ("%s\n", group);

  return GPOINTER_TO_UINT (g_hash_table_lookup (lines, k));
}

void
conf_problem (ConfLoader *ld, const char *group, const char *key, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  guint line = 0;

  if (group && ld->lines)
    {
      g_autofree char *k = g_strdup_printf ("%s\n%s", group, key ? key : "");
      line = GPOINTER_TO_UINT (g_hash_table_lookup (ld->lines, k));
    }
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (ld->errors->len)
    g_string_append_c (ld->errors, '\n');
  if (line)
    g_string_append_printf (ld->errors, "%s:%u: ", ld->file, line);
  else
    g_string_append_printf (ld->errors, "%s: ", ld->file);
  if (group && key)
    g_string_append_printf (ld->errors, "[%s] %s: ", group, key);
  else if (group)
    g_string_append_printf (ld->errors, "[%s]: ", group);
  g_string_append (ld->errors, msg);
}

void
conf_file_problem (ConfLoader *ld, const char *file, guint line, const char *fmt, ...)
{
  va_list ap;

  if (ld->errors->len)
    g_string_append_c (ld->errors, '\n');
  g_string_append_printf (ld->errors, "%s:%u: ", file, line);
  va_start (ap, fmt);
  g_string_append_vprintf (ld->errors, fmt, ap);
  va_end (ap);
}
