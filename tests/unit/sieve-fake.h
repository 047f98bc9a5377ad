/* sieve-fake.h - what the Sieve unit tests share: the values of a header
 * field among "Name: value" lines, as SieveMessage.header gives them
 * (the spaces after the colon dropped). */
#pragma once

#include <string.h>

#include <glib.h>

static inline char **
sieve_fake_header (const char *const *lines, const char *name)
{
  GPtrArray *out = g_ptr_array_new ();
  gsize n = strlen (name);

  for (guint i = 0; lines[i]; i++)
    if (g_ascii_strncasecmp (lines[i], name, n) == 0 && lines[i][n] == ':')
      g_ptr_array_add (out, g_strdup (lines[i] + n + 1 + strspn (lines[i] + n + 1, " ")));
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}
