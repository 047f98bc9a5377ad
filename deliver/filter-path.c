/* filter-path.c - where a recipient's Sieve files are: the path
 * templates of [sieve] script and dir (%u %n %d %h), under mail_root
 * when relative.  Asked by the Sieve step, include and the duplicate
 * test's ids alike.
 */
#include "config.h"

#include "filter.h"

/* The user's script: the directory's path for the user, else [sieve]
 * script; either may use %u %n %d %h. */
char *
filter_user_script_path (const LmtpdConfig *config, const DeliverRecipient *rcpt)
{
  return filter_expand_path (config, rcpt, rcpt->sieve_script ? rcpt->sieve_script : config->sieve_script);
}

char *
filter_expand_path (const LmtpdConfig *config, const DeliverRecipient *rcpt, const char *tmpl)
{
  GString *s = g_string_new (NULL);
  char *path;

  for (const char *p = tmpl; *p; p++)
    {
      if (*p != '%' || p[1] == '\0')
        {
          g_string_append_c (s, *p);
          continue;
        }
      switch (*++p)
        {
        case 'u': g_string_append (s, rcpt->address); break;
        case 'n': g_string_append (s, rcpt->local); break;
        case 'd': g_string_append (s, rcpt->domain ? rcpt->domain : ""); break;
        case 'h': g_string_append (s, rcpt->mailbox); break;
        default: g_string_append_c (s, *p); break;
        }
    }
  if (g_path_is_absolute (s->str))
    return g_string_free (s, FALSE);
  path = g_build_filename (config->mail_root, s->str, NULL);
  g_string_free (s, TRUE);
  return path;
}
