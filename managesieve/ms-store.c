/* ms-store.c - a user's scripts on disk, in Pigeonhole's layout: each
 * script NAME in [sieve] dir as NAME.sieve, the active one named by a
 * symlink at the path lmtpd reads ([sieve] script, default
 * %d/%n/.dovecot.sieve -> sieve/NAME.sieve).
 *
 * Both paths must stay under mail_root.  Every directory is reached by an
 * openat() walk from the mail root with O_NOFOLLOW, and every file is
 * opened relative to its directory with O_NOFOLLOW, so a symlink the user
 * planted is never followed; the only link read or written is the active
 * one, and only ever as a link (a regular file there, from before, is
 * kept as dovecot.orig, as Pigeonhole does).  Writes go to a hidden temporary file,
 * fsync, rename over the script, fsync of the directory: a delivery sees
 * the old script or the new one, never a part.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "managesieve.h"

#define MAX_ENTRIES 10000 /* directory entries looked at in one listing */
#define RESCUE_MAX (64 * 1024 * 1024) /* the largest [sieve] max_script_size */
#define RESCUE_NAME "dovecot.orig"

struct MsStore {
  int root_fd;
  char **sieve_dir;       /* components under the mail root */
  char **link_dir;        /* the active link's directory */
  char *link_name;
  char *target_prefix;    /* the link's target up to the script's name: "sieve/" */
};

static MsStoreStatus
sys_fail (GError **error, const char *what, const char *name)
{
  int e = errno;

  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (e), "%s %s: %s", what, name, g_strerror (e));
  return MS_STORE_TRYLATER;
}

/* The directory of @parts under the mail root, made (0700) if missing. */
static int
walk (MsStore *s, char **parts, GError **error)
{
  int fd = dup (s->root_fd);

  for (guint i = 0; fd >= 0 && parts[i]; i++)
    {
      int next = openat (fd, parts[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0 && errno == ENOENT && (mkdirat (fd, parts[i], 0700) == 0 || errno == EEXIST))
        next = openat (fd, parts[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0)
        sys_fail (error, "cannot open directory", parts[i]);
      close (fd);
      fd = next;
    }
  return fd;
}

gboolean
ms_store_name_valid (const char *name, gsize len)
{
  const char *end = name + len;

  if (len == 0 || len > MS_MAX_NAME || name[0] == '.' || !g_utf8_validate (name, len, NULL))
    return FALSE;
  for (const char *p = name; p < end; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      /* RFC 5804 1.6: no control characters, no line or paragraph separator */
      if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029 || c == '/')
        return FALSE;
    }
  return TRUE;
}

static char *
file_of (const char *name)
{
  return g_strconcat (name, ".sieve", NULL);
}

/* Is NAME.sieve a regular file in @dfd? */
static MsStoreStatus
exists (int dfd, const char *name, GError **error)
{
  g_autofree char *file = file_of (name);
  struct stat st;

  if (fstatat (dfd, file, &st, AT_SYMLINK_NOFOLLOW) == 0)
    return S_ISREG (st.st_mode) ? MS_STORE_OK : MS_STORE_NONEXISTENT;
  return errno == ENOENT ? MS_STORE_NONEXISTENT : sys_fail (error, "cannot stat", file);
}

/* The active script's name (NULL: none), from the link alone. */
static MsStoreStatus
active_name (MsStore *s, int ldfd, char **out, GError **error)
{
  char target[4096];
  ssize_t n = readlinkat (ldfd, s->link_name, target, sizeof target - 1);
  gsize plen = strlen (s->target_prefix);

  *out = NULL;
  if (n < 0)
    return errno == ENOENT || errno == EINVAL ? MS_STORE_OK : sys_fail (error, "cannot read", s->link_name);
  target[n] = '\0';
  if ((gsize) n > plen + 6 && strncmp (target, s->target_prefix, plen) == 0 && g_str_has_suffix (target, ".sieve")
      && ms_store_name_valid (target + plen, n - plen - 6))
    *out = g_strndup (target + plen, n - plen - 6);
  return MS_STORE_OK;
}

static gboolean
want_entry (int dfd, const char *file)
{
  struct stat st;

  return file[0] != '.' && g_str_has_suffix (file, ".sieve") && ms_store_name_valid (file, strlen (file) - 6)
         && fstatat (dfd, file, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG (st.st_mode);
}

static int
by_name (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static MsStoreStatus
names_in (int dfd, GPtrArray *names, GError **error)
{
  int fd = dup (dfd);
  DIR *d = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *e;
  guint seen = 0;

  if (d == NULL)
    {
      if (fd >= 0)
        close (fd);
      return sys_fail (error, "cannot list", "the script directory");
    }
  while ((e = readdir (d)) && seen++ < MAX_ENTRIES)
    if (want_entry (dfd, e->d_name))
      g_ptr_array_add (names, g_strndup (e->d_name, strlen (e->d_name) - 6));
  closedir (d);
  g_ptr_array_sort (names, by_name);
  return MS_STORE_OK;
}

MsStoreStatus
ms_store_list (MsStore *s, GPtrArray **names, char **active, GError **error)
{
  int dfd = walk (s, s->sieve_dir, error), ldfd = dfd >= 0 ? walk (s, s->link_dir, error) : -1;
  MsStoreStatus r = MS_STORE_TRYLATER;

  *names = g_ptr_array_new_with_free_func (g_free);
  *active = NULL;
  if (ldfd >= 0)
    r = names_in (dfd, *names, error);
  if (r == MS_STORE_OK)
    r = active_name (s, ldfd, active, error);
  if (dfd >= 0)
    close (dfd);
  if (ldfd >= 0)
    close (ldfd);
  return r;
}

MsStoreStatus
ms_store_get (MsStore *s, const char *name, gsize max, GString *out, GError **error)
{
  g_autofree char *file = file_of (name);
  int dfd = walk (s, s->sieve_dir, error), fd;
  MsStoreStatus r = MS_STORE_OK;
  struct stat st;
  char buf[16384];
  gssize n;

  if (dfd < 0)
    return MS_STORE_TRYLATER;
  fd = openat (dfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  close (dfd);
  if (fd < 0)
    return errno == ENOENT || errno == ELOOP ? MS_STORE_NONEXISTENT : sys_fail (error, "cannot open", file);
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode))
    r = MS_STORE_NONEXISTENT;
  while (r == MS_STORE_OK && (n = read (fd, buf, sizeof buf)) != 0)
    {
      if (n < 0 || out->len + n > max)
        r = n < 0 ? sys_fail (error, "cannot read", file) : MS_STORE_TRYLATER;
      else
        g_string_append_len (out, buf, n);
    }
  if (r == MS_STORE_TRYLATER && error && *error == NULL)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s is larger than max_script_size", file);
  close (fd);
  return r;
}

/* ---- writing ---------------------------------------------------------------- */

static char *
tmp_name (void)
{
  return g_strdup_printf (".tmp-%d-%08x", (int) getpid (), g_random_int ());
}

static gboolean
write_all (int fd, const char *data, gsize len)
{
  while (len > 0)
    {
      gssize n = write (fd, data, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      data += n;
      len -= n;
    }
  return TRUE;
}

/* @data as NAME.sieve in @dfd: a new file, fsynced, renamed over it. */
static MsStoreStatus
replace_file (int dfd, const char *name, const char *data, gsize len, GError **error)
{
  g_autofree char *tmp = tmp_name (), *file = file_of (name);
  int fd = openat (dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

  if (fd < 0)
    return sys_fail (error, "cannot create", tmp);
  if (!write_all (fd, data, len) || fsync (fd) < 0)
    {
      sys_fail (error, "cannot write", tmp);
      close (fd);
      unlinkat (dfd, tmp, 0);
      return MS_STORE_TRYLATER;
    }
  close (fd);
  if (renameat (dfd, tmp, dfd, file) < 0)
    {
      sys_fail (error, "cannot rename to", file);
      unlinkat (dfd, tmp, 0);
      return MS_STORE_TRYLATER;
    }
  return fsync (dfd) < 0 ? sys_fail (error, "cannot fsync", "the script directory") : MS_STORE_OK;
}

static MsStoreStatus
count_allows (int dfd, const char *name, guint max_scripts, GError **error)
{
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  MsStoreStatus r = exists (dfd, name, error);

  if (r != MS_STORE_NONEXISTENT)
    return r;
  r = names_in (dfd, names, error);
  if (r == MS_STORE_OK && names->len >= max_scripts)
    r = MS_STORE_MAXSCRIPTS;
  return r;
}

MsStoreStatus
ms_store_count_allows (MsStore *s, const char *name, guint max_scripts, GError **error)
{
  int dfd = walk (s, s->sieve_dir, error);
  MsStoreStatus r;

  if (dfd < 0)
    return MS_STORE_TRYLATER;
  r = count_allows (dfd, name, max_scripts, error);
  close (dfd);
  return r;
}

MsStoreStatus
ms_store_put (MsStore *s, const char *name, const char *data, gsize len, guint max_scripts, GError **error)
{
  int dfd = walk (s, s->sieve_dir, error);
  MsStoreStatus r;

  if (dfd < 0)
    return MS_STORE_TRYLATER;
  r = count_allows (dfd, name, max_scripts, error);
  if (r == MS_STORE_OK)
    r = replace_file (dfd, name, data, len, error);
  close (dfd);
  return r;
}

/* Pigeonhole's rescue of a script that was there before ManageSieve: a
 * regular file at the active path is copied into the script directory as
 * "dovecot.orig" before the link replaces it (never over one already
 * there: that needs a person). */
static MsStoreStatus
rescue_regular (MsStore *s, int dfd, int ldfd, GError **error)
{
  g_autoptr (GString) data = g_string_new (NULL);
  int fd = openat (ldfd, s->link_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  MsStoreStatus r = fd < 0 ? sys_fail (error, "cannot open", s->link_name) : MS_STORE_OK;
  struct stat st;
  char buf[16384];
  gssize n;

  if (r == MS_STORE_OK && (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) || st.st_size > RESCUE_MAX))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s is not a script to keep", s->link_name);
      r = MS_STORE_TRYLATER;
    }
  while (r == MS_STORE_OK && (n = read (fd, buf, sizeof buf)) != 0)
    if (n < 0 || data->len + n > RESCUE_MAX)
      r = sys_fail (error, "cannot read", s->link_name);
    else
      g_string_append_len (data, buf, n);
  if (fd >= 0)
    close (fd);
  if (r == MS_STORE_OK && exists (dfd, RESCUE_NAME, error) != MS_STORE_NONEXISTENT)
    {
      if (error && *error == NULL)
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS, "%s is a regular file and %s.sieve exists already",
                     s->link_name, RESCUE_NAME);
      r = MS_STORE_TRYLATER;
    }
  if (r == MS_STORE_OK)
    r = replace_file (dfd, RESCUE_NAME, data->str, data->len, error);
  if (r == MS_STORE_OK)
    g_message ("%s was a regular file: kept as %s.sieve", s->link_name, RESCUE_NAME);
  return r;
}

/* Points the active link at @name (NULL: removes it): a new link renamed
 * over the old one, so a delivery finds one script or the other. */
static MsStoreStatus
relink (MsStore *s, int dfd, int ldfd, const char *name, GError **error)
{
  g_autofree char *tmp = tmp_name ();
  g_autofree char *target = name ? g_strconcat (s->target_prefix, name, ".sieve", NULL) : NULL;
  struct stat st;
  MsStoreStatus r;

  if (fstatat (ldfd, s->link_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK (st.st_mode)
      && (r = rescue_regular (s, dfd, ldfd, error)) != MS_STORE_OK)
    return r;
  if (name == NULL)
    {
      if (unlinkat (ldfd, s->link_name, 0) < 0 && errno != ENOENT)
        return sys_fail (error, "cannot remove", s->link_name);
    }
  else if (symlinkat (target, ldfd, tmp) < 0)
    return sys_fail (error, "cannot create", tmp);
  else if (renameat (ldfd, tmp, ldfd, s->link_name) < 0)
    {
      sys_fail (error, "cannot rename to", s->link_name);
      unlinkat (ldfd, tmp, 0);
      return MS_STORE_TRYLATER;
    }
  return fsync (ldfd) < 0 ? sys_fail (error, "cannot fsync", "the active script's directory") : MS_STORE_OK;
}

MsStoreStatus
ms_store_set_active (MsStore *s, const char *name, GError **error)
{
  int dfd = walk (s, s->sieve_dir, error), ldfd = dfd >= 0 ? walk (s, s->link_dir, error) : -1;
  MsStoreStatus r = ldfd < 0 ? MS_STORE_TRYLATER : MS_STORE_OK;

  if (r == MS_STORE_OK && name[0])
    r = exists (dfd, name, error);
  if (r == MS_STORE_OK)
    r = relink (s, dfd, ldfd, name[0] ? name : NULL, error);
  if (dfd >= 0)
    close (dfd);
  if (ldfd >= 0)
    close (ldfd);
  return r;
}

/* Runs @op with both directories open and the active script's name. */
typedef MsStoreStatus (*WithDirs) (MsStore *s, int dfd, int ldfd, const char *active, gconstpointer a,
                                   gconstpointer b, GError **error);

static MsStoreStatus
with_dirs (MsStore *s, WithDirs op, gconstpointer a, gconstpointer b, GError **error)
{
  int dfd = walk (s, s->sieve_dir, error), ldfd = dfd >= 0 ? walk (s, s->link_dir, error) : -1;
  g_autofree char *active = NULL;
  MsStoreStatus r = ldfd < 0 ? MS_STORE_TRYLATER : active_name (s, ldfd, &active, error);

  if (r == MS_STORE_OK)
    r = op (s, dfd, ldfd, active, a, b, error);
  if (dfd >= 0)
    close (dfd);
  if (ldfd >= 0)
    close (ldfd);
  return r;
}

static MsStoreStatus
delete_op (MsStore *s, int dfd, int ldfd, const char *active, gconstpointer a, gconstpointer b, GError **error)
{
  const char *name = a;
  g_autofree char *file = file_of (name);
  MsStoreStatus r = exists (dfd, name, error);

  if (r != MS_STORE_OK)
    return r;
  if (active && strcmp (active, name) == 0)
    return MS_STORE_ACTIVE; /* RFC 5804 2.10: the active script cannot be deleted */
  if (unlinkat (dfd, file, 0) < 0)
    return errno == ENOENT ? MS_STORE_NONEXISTENT : sys_fail (error, "cannot remove", file);
  return fsync (dfd) < 0 ? sys_fail (error, "cannot fsync", "the script directory") : MS_STORE_OK;
}

MsStoreStatus
ms_store_delete (MsStore *s, const char *name, GError **error)
{
  return with_dirs (s, delete_op, name, NULL, error);
}

/* A second name first (link, which never replaces), the active link moved
 * to it, then the old name removed: a delivery always finds the script. */
static MsStoreStatus
rename_op (MsStore *s, int dfd, int ldfd, const char *active, gconstpointer a, gconstpointer b, GError **error)
{
  g_autofree char *from = file_of (a), *to = file_of (b);
  MsStoreStatus r = exists (dfd, a, error);

  if (r == MS_STORE_OK)
    r = exists (dfd, b, error) == MS_STORE_OK ? MS_STORE_ALREADYEXISTS : MS_STORE_OK;
  if (r != MS_STORE_OK)
    return r;
  if (linkat (dfd, from, dfd, to, 0) < 0)
    return errno == EEXIST ? MS_STORE_ALREADYEXISTS : sys_fail (error, "cannot link to", to);
  if (active && strcmp (active, a) == 0 && (r = relink (s, dfd, ldfd, b, error)) != MS_STORE_OK)
    {
      unlinkat (dfd, to, 0);
      return r;
    }
  if (unlinkat (dfd, from, 0) < 0)
    return sys_fail (error, "cannot remove", from);
  return fsync (dfd) < 0 ? sys_fail (error, "cannot fsync", "the script directory") : MS_STORE_OK;
}

MsStoreStatus
ms_store_rename (MsStore *s, const char *from, const char *to, GError **error)
{
  return with_dirs (s, rename_op, from, to, error);
}

/* ---- where a user's scripts are ---------------------------------------------- */

/* The path the mailbox spec names, for %h: "maildir:" or "mbox:" and
 * ":INBOX=..." left out. */
static char *
home_of (const char *spec)
{
  const char *p = g_str_has_prefix (spec, "maildir:") ? spec + 8 : g_str_has_prefix (spec, "mbox:") ? spec + 5 : spec;
  const char *inbox = strstr (p, ":INBOX=");

  return inbox ? g_strndup (p, inbox - p) : g_strdup (p);
}

static char *
expand (const char *tmpl, const char *address, const char *home)
{
  const char *at = strrchr (address, '@');
  GString *s = g_string_new (NULL);

  for (const char *p = tmpl; *p; p++)
    {
      if (*p != '%' || p[1] == '\0')
        {
          g_string_append_c (s, *p);
          continue;
        }
      switch (*++p)
        {
        case 'u': g_string_append (s, address); break;
        case 'n': g_string_append_len (s, address, at - address); break;
        case 'd': g_string_append (s, at + 1); break;
        case 'h': g_string_append (s, home); break;
        default: g_string_append_c (s, *p); break;
        }
    }
  return g_string_free (s, FALSE);
}

/* @path's components under @root (relative, or absolute below it); NULL
 * if it leaves the root or has empty, "." or ".." parts. */
static char **
parts_under (const char *root, const char *path)
{
  g_autofree char *prefix = g_str_has_suffix (root, "/") ? g_strdup (root) : g_strconcat (root, "/", NULL);
  g_auto (GStrv) parts = NULL;

  if (g_path_is_absolute (path))
    {
      if (!g_str_has_prefix (path, prefix))
        return NULL;
      path += strlen (prefix);
    }
  parts = g_strsplit (path, "/", -1);
  for (guint i = 0; parts[i]; i++)
    if (!parts[i][0] || strcmp (parts[i], ".") == 0 || strcmp (parts[i], "..") == 0)
      return NULL;
  return parts[0] ? g_steal_pointer (&parts) : NULL;
}

/* "../" up from the link's directory to the common part, then down. */
static char *
target_prefix (char **link_dir, char **sieve_dir)
{
  GString *t = g_string_new (NULL);
  guint k = 0;

  while (link_dir[k] && sieve_dir[k] && strcmp (link_dir[k], sieve_dir[k]) == 0)
    k++;
  for (guint i = k; link_dir[i]; i++)
    g_string_append (t, "../");
  for (guint i = k; sieve_dir[i]; i++)
    g_string_append_printf (t, "%s/", sieve_dir[i]);
  return g_string_free (t, FALSE);
}

/* The store of @user's paths; FALSE with @error if they leave the root. */
static gboolean
store_paths (MsStore *s, const LmtpdConfig *config, const DirectoryUser *user, const char *address,
             GError **error)
{
  const char *at = strrchr (address, '@');
  const char *mailbox = user->mailbox ? user->mailbox : lmtpd_config_mailbox_template (config, at + 1);
  g_autofree char *spec = expand (mailbox, address, ""), *home = home_of (spec);
  g_autofree char *dir = expand (config->sieve_dir, address, home);
  g_autofree char *script = expand (user->sieve_script ? user->sieve_script : config->sieve_script, address, home);
  g_auto (GStrv) link_parts = parts_under (config->mail_root, script);
  guint n;

  s->sieve_dir = parts_under (config->mail_root, dir);
  if (s->sieve_dir == NULL || link_parts == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME,
                   "the script directory '%s' or active script '%s' is not under mail_root", dir, script);
      return FALSE;
    }
  n = g_strv_length (link_parts);
  s->link_name = g_strdup (link_parts[n - 1]);
  s->link_dir = g_new0 (char *, n);
  for (guint i = 0; i + 1 < n; i++)
    s->link_dir[i] = g_strdup (link_parts[i]);
  s->target_prefix = target_prefix (s->link_dir, s->sieve_dir);
  return TRUE;
}

MsStore *
ms_store_new (const LmtpdConfig *config, Directory *dir, const char *address, GError **error)
{
  g_autoptr (DirectoryUser) user = NULL;
  MsStore *s;

  if (directory_lookup (dir, address, &user, NULL, error) != DIRECTORY_FOUND)
    {
      if (error && *error == NULL)
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s is not in the user directory", address);
      return NULL;
    }
  if (user->disabled || user->alias_of)
    {
      /* whatever the password source says, the directory has no mailbox here */
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, "%s is %s", address,
                   user->disabled ? "disabled" : "an alias");
      return NULL;
    }
  s = g_new0 (MsStore, 1);
  s->root_fd = -1;
  if (store_paths (s, config, user, address, error))
    s->root_fd = open (config->mail_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->root_fd < 0)
    {
      if (error && *error == NULL)
        sys_fail (error, "cannot open", config->mail_root);
      ms_store_free (s);
      return NULL;
    }
  return s;
}

void
ms_store_free (MsStore *s)
{
  if (s->root_fd >= 0)
    close (s->root_fd);
  g_strfreev (s->sieve_dir);
  g_strfreev (s->link_dir);
  g_free (s->link_name);
  g_free (s->target_prefix);
  g_free (s);
}
