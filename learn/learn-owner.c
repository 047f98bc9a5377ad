/* learn-owner.c - from a Maildir's path back to the user it belongs to,
 * by reading [delivery] mailbox backwards: each component of the template
 * is either literal text or exactly one of %d, %n, %u (the default
 * %d/%n/Maildir gives domain/local/Maildir).  Mailboxes named by the
 * users map or [mailboxes] per domain, and templates mixing %-codes with
 * text in one component, are not mapped back (docs/operations.md).
 */
#include "config.h"

#include <string.h>

#include "learn-private.h"

#define DEPTH_MAX 8

struct _LearnOwner {
  char **parts; /* the template's components: literal, or "%d" "%n" "%u" */
  guint depth;
};

static gboolean
part_is_code (const char *p)
{
  return strcmp (p, "%d") == 0 || strcmp (p, "%n") == 0 || strcmp (p, "%u") == 0;
}

/* The template without its maildir: prefix, or NULL (said in @error). */
static const char *
maildir_template (const char *t, GError **error)
{
  if (g_str_has_prefix (t, "mbox:"))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "[learn]: mailboxes are mbox files ([delivery] mailbox = %s): only Maildirs are watched", t);
      return NULL;
    }
  return g_str_has_prefix (t, "maildir:") ? t + 8 : t;
}

LearnOwner *
learn_owner_new (const LmtpdConfig *config, GError **error)
{
  const char *t = maildir_template (config->mailbox_template, error);
  g_autoptr (GPtrArray) parts = g_ptr_array_new_with_free_func (g_free);
  g_auto (GStrv) split = NULL;
  LearnOwner *o;

  if (t == NULL)
    return NULL;
  split = g_strsplit (t, "/", -1);
  for (guint i = 0; split[i]; i++)
    {
      if (split[i][0] == '\0' || strcmp (split[i], ".") == 0)
        continue;
      if (strchr (split[i], '%') && !part_is_code (split[i]))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                       "[learn]: [delivery] mailbox = %s: '%s' mixes %%-codes with text; learning needs each "
                       "of %%d, %%n, %%u as a whole path component", t, split[i]);
          return NULL;
        }
      g_ptr_array_add (parts, g_strdup (split[i]));
    }
  if (parts->len == 0 || parts->len > DEPTH_MAX)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "[learn]: [delivery] mailbox = %s: %u components "
                   "(1 to %d can be watched)", t, parts->len, DEPTH_MAX);
      return NULL;
    }
  o = g_new0 (LearnOwner, 1);
  o->depth = parts->len;
  g_ptr_array_add (parts, NULL);
  o->parts = (char **) g_ptr_array_free (g_steal_pointer (&parts), FALSE);
  return o;
}

void
learn_owner_free (LearnOwner *o)
{
  if (o == NULL)
    return;
  g_strfreev (o->parts);
  g_free (o);
}

guint
learn_owner_depth (const LearnOwner *o)
{
  return o->depth;
}

/* A user's name goes into spamd's User: header and the log: no spaces,
 * no control characters (a directory named so is not a mailbox). */
static gboolean
printable (const char *name)
{
  for (const guchar *p = (const guchar *) name; *p; p++)
    if (*p <= ' ' || *p == 0x7f)
      return FALSE;
  return TRUE;
}

gboolean
learn_owner_component_ok (const LearnOwner *o, guint level, const char *name)
{
  if (level >= o->depth)
    return FALSE;
  if (part_is_code (o->parts[level]))
    return name[0] != '.' && strlen (name) <= 255 && printable (name);
  return strcmp (o->parts[level], name) == 0;
}

char *
learn_owner_user (const LearnOwner *o, const char *const *components)
{
  const char *domain = NULL, *local = NULL;

  for (guint i = 0; i < o->depth; i++)
    {
      if (strcmp (o->parts[i], "%u") == 0)
        return g_ascii_strdown (components[i], -1);
      if (strcmp (o->parts[i], "%d") == 0)
        domain = components[i];
      else if (strcmp (o->parts[i], "%n") == 0)
        local = components[i];
    }
  g_autofree char *address = NULL;

  if (local == NULL)
    return NULL;
  address = domain ? g_strconcat (local, "@", domain, NULL) : g_strdup (local);
  return g_ascii_strdown (address, -1);
}

/* @folder is @name or one of its subfolders (Maildir++: "Junk.Sub"). */
static gboolean
folder_in (const char *folder, const char *name)
{
  gsize n = strlen (name);

  return g_ascii_strncasecmp (folder, name, n) == 0 && (folder[n] == '\0' || folder[n] == '.');
}

static gboolean
folder_listed (char **names, const char *folder)
{
  for (guint i = 0; names && names[i]; i++)
    if (names[i][0] && folder_in (folder, names[i]))
      return TRUE;
  return FALSE;
}

LearnFolderKind
learn_folder_kind (const LmtpdConfig *config, const char *folder)
{
  if (folder[0] == '\0')
    return LEARN_FOLDER_OTHER;
  if (folder_listed (config->learn_junk_folders, folder))
    return LEARN_FOLDER_JUNK;
  if (folder_listed (config->learn_trash_folders, folder))
    return LEARN_FOLDER_TRASH;
  return LEARN_FOLDER_OTHER;
}

const char *
learn_folder_display (const char *folder)
{
  return folder[0] ? folder : "INBOX";
}
