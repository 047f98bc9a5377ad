/* dir-user.c - what a directory knows of a user, as a value: copied into
 * and out of the cache, freed by whoever holds it.  The backends make
 * users and the cache keeps them; both depend on this file and on nothing
 * else of directory/.
 */
#include "config.h"

#include "directory.h"

DirectoryUser *
directory_user_copy (const DirectoryUser *u)
{
  DirectoryUser *c = g_new0 (DirectoryUser, 1);

  c->address = g_strdup (u->address);
  c->mailbox = g_strdup (u->mailbox);
  c->quota_bytes = u->quota_bytes;
  c->quota_messages = u->quota_messages;
  c->sieve_script = g_strdup (u->sieve_script);
  c->disabled = u->disabled;
  c->alias_of = g_strdup (u->alias_of);
  c->settings = g_strdupv (u->settings);
  c->host = g_strdup (u->host);
  return c;
}

void
directory_user_free (DirectoryUser *u)
{
  if (u == NULL)
    return;
  g_free (u->address);
  g_free (u->mailbox);
  g_free (u->sieve_script);
  g_free (u->alias_of);
  g_strfreev (u->settings);
  g_free (u->host);
  g_free (u);
}
