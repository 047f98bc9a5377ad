/* resolve.c - from an envelope recipient to a mailbox.
 *
 * Steps: lowercase; refuse anything that could become an unsafe path
 * component ('/', '\', control characters, "..", a leading dot); apply the
 * rewrite map (RFC 4496 4.7); split off a subaddress detail; look the user
 * up (users map, catch-all domains, postmaster alias); expand the mailbox
 * template: "[maildir:|mbox:]PATH[:INBOX=FILE]" with %u %d %n.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "context.h"
#include "directory.h"

static gboolean
path_component_safe (const char *s)
{
  if (s[0] == '\0' || s[0] == '.' || strstr (s, "..") != NULL)
    return FALSE;
  for (const guchar *p = (const guchar *) s; *p; p++)
    if (*p < 0x20 || *p == 0x7f || *p == '/' || *p == '\\')
      return FALSE;
  return TRUE;
}

static gboolean
address_safe (const char *address)
{
  const char *at = strrchr (address, '@');
  g_autofree char *local = NULL;

  if (at == NULL)
    return FALSE;
  local = g_strndup (address, at - address);
  return path_component_safe (local) && path_component_safe (at + 1);
}

static char *
expand_template (const char *tmpl, const char *local, const char *domain)
{
  GString *out = g_string_new (NULL);

  for (const char *p = tmpl; *p; p++)
    {
      if (*p != '%' || p[1] == '\0')
        {
          g_string_append_c (out, *p);
          continue;
        }
      switch (*++p)
        {
        case 'u': g_string_append_printf (out, "%s@%s", local, domain); break;
        case 'n': g_string_append (out, local); break;
        case 'd': g_string_append (out, domain); break;
        default: g_string_append_c (out, *p); break;
        }
    }
  return g_string_free (out, FALSE);
}

static char *
under_root (const LmtpdConfig *config, const char *path)
{
  return g_path_is_absolute (path) ? g_strdup (path) : g_build_filename (config->mail_root, path, NULL);
}

/* The resolved mail root, remembered in the context per configured path
 * (realpath costs a readlink per component); without a context, resolved
 * each time. */
static char *
real_root (DeliverContext *ctx, const char *mail_root)
{
  char *out;

  if (ctx == NULL)
    {
      char *r = realpath (mail_root, NULL);
      out = g_strdup (r);
      free (r);
      return out;
    }
  g_mutex_lock (&ctx->root_lock);
  if (ctx->root_configured == NULL || strcmp (ctx->root_configured, mail_root) != 0 || ctx->root_resolved == NULL)
    {
      g_free (ctx->root_configured);
      free (ctx->root_resolved);
      ctx->root_configured = g_strdup (mail_root);
      ctx->root_resolved = realpath (mail_root, NULL);
    }
  out = g_strdup (ctx->root_resolved);
  g_mutex_unlock (&ctx->root_lock);
  return out;
}

static gboolean
under (const char *real, const char *root)
{
  gsize rlen = strlen (root);
  return strcmp (real, root) == 0 || (strncmp (real, root, rlen) == 0 && (real[rlen] == '/' || rlen == 1));
}

/* FALSE with @error if the symlink @probe leads outside @root. */
static gboolean
link_inside (const char *probe, const char *root, GError **error)
{
  char *real = realpath (probe, NULL);
  gboolean ok;

  if (real == NULL)
    {
      int e = errno;
      g_set_error (error, DELIVER_ERROR, e == ENOENT ? ELOOP : e, "%s: %s", probe, g_strerror (e));
      return FALSE;
    }
  ok = under (real, root);
  if (!ok)
    g_set_error (error, DELIVER_ERROR, ELOOP, "%s leads outside the mail root (to %s)", probe, real);
  free (real);
  return ok;
}

gboolean
deliver_path_contained (DeliverContext *ctx, const LmtpdConfig *config, const char *path, GError **error)
{
  g_autofree char *root = NULL, *probe = NULL;
  gsize mlen = strlen (config->mail_root);
  char *p;

  if (mlen == 0 || strncmp (path, config->mail_root, mlen) != 0
      || (path[mlen] != '/' && config->mail_root[mlen - 1] != '/'))
    return TRUE; /* placed outside by the configuration */
  root = real_root (ctx, config->mail_root);
  if (root == NULL)
    return TRUE; /* no root yet: nothing below it either */
  /* the usual case costs one lstat per component below the root: only a
   * symlink among them needs resolving */
  probe = g_strdup (path);
  for (p = probe + mlen; *p; )
    {
      struct stat st;
      char *slash;

      while (*p == '/')
        p++;
      if (*p == '\0')
        break;
      slash = strchr (p, '/');
      if (slash)
        *slash = '\0';
      if (lstat (probe, &st) < 0)
        {
          int e = errno;
          if (e == ENOENT)
            return TRUE; /* the rest will be created as real directories */
          g_set_error (error, DELIVER_ERROR, e, "%s: %s", probe, g_strerror (e));
          return FALSE;
        }
      if (S_ISLNK (st.st_mode) && !link_inside (probe, root, error))
        return FALSE;
      if (slash == NULL)
        break;
      *slash = '/';
      p = slash + 1;
    }
  return TRUE;
}

/* Fills format, mailbox and inbox from a mailbox spec. */
static void
set_mailbox (const LmtpdConfig *config, DeliverRecipient *r, const char *spec)
{
  g_autofree char *expanded = expand_template (spec, r->local, r->domain);
  const char *path = expanded;
  char *inbox;

  r->format = DELIVER_MAILDIR;
  if (g_str_has_prefix (expanded, "maildir:"))
    path += 8;
  else if (g_str_has_prefix (expanded, "mbox:"))
    {
      r->format = DELIVER_MBOX;
      path += 5;
    }
  inbox = strstr (path, ":INBOX=");
  if (r->format == DELIVER_MBOX && inbox)
    {
      r->inbox = under_root (config, inbox + 7);
      *inbox = '\0';
    }
  r->mailbox = under_root (config, path);
  if (r->format == DELIVER_MBOX && r->inbox == NULL)
    r->inbox = g_build_filename (r->mailbox, "inbox", NULL);
}

void
deliver_recipient_free (DeliverRecipient *r)
{
  if (r == NULL)
    return;
  g_free (r->original);
  g_free (r->address);
  g_free (r->local);
  g_free (r->domain);
  g_free (r->detail);
  g_free (r->folder);
  g_free (r->mailbox);
  g_free (r->inbox);
  g_free (r->orcpt);
  g_free (r->bypass);
  g_free (r->rcpt_trace);
  g_free (r->trace_steps);
  g_free (r->sieve_script);
  g_free (r->host);
  g_free (r->skip_service);
  g_strfreev (r->settings);
  g_free (r);
}

/* Splits "user+detail" at the first delimiter character. */
static char *
split_detail (const LmtpdConfig *config, char *local)
{
  gsize n;

  if (config->recipient_delimiter == NULL || config->recipient_delimiter[0] == '\0')
    return NULL;
  n = strcspn (local, config->recipient_delimiter);
  if (local[n] == '\0' || n == 0)
    return NULL;
  local[n] = '\0';
  return g_strdup (local + n + 1);
}

/* Who the users are for one resolution: the directory, and whether it
 * failed (then the recipient gets 451, never 550). */
typedef struct {
  Directory *dir;
  DeliverDirectoryObserver observer;
  gboolean cache_only;      /* answer only what needs no server ... */
  gboolean would_block;     /* ... and note when that was not enough */
  GError *error;
  /* the last answer: one resolution asks about the same address up to
   * three times (is the whole address a user? its detail? the user), and
   * without a cache each would be a round trip to the server */
  char *last_address;
  DirectoryResult last_result;
  DirectoryUser *last_user;
} Users;

static void
users_clear (Users *us)
{
  g_clear_error (&us->error);
  g_clear_pointer (&us->last_address, g_free);
  g_clear_pointer (&us->last_user, directory_user_free);
  g_clear_pointer (&us->dir, directory_unref);
}

/* The last answer again, if it was for @address. */
static gboolean
users_again (Users *us, const char *address, DirectoryResult *r, DirectoryUser **out)
{
  if (us->last_address == NULL || strcmp (us->last_address, address) != 0)
    return FALSE;
  *r = us->last_result;
  if (out && us->last_user)
    *out = directory_user_copy (us->last_user);
  return TRUE;
}

static void
users_remember (Users *us, const char *address, DirectoryResult r, const DirectoryUser *user)
{
  g_free (us->last_address);
  us->last_address = g_strdup (address);
  us->last_result = r;
  g_clear_pointer (&us->last_user, directory_user_free);
  us->last_user = user ? directory_user_copy (user) : NULL;
}

static DirectoryResult
users_find (Users *us, const char *address, DirectoryUser **out)
{
  gint64 start = g_get_monotonic_time ();
  gboolean cached = FALSE;
  DirectoryUser *user = NULL;
  DirectoryResult r;

  if (us->error)
    return DIRECTORY_TEMPFAIL;
  if (users_again (us, address, &r, out))
    return r;
  if (us->cache_only && !directory_lookup_cached (us->dir, address, &r, &user))
    {
      us->would_block = TRUE;
      g_set_error_literal (&us->error, DELIVER_ERROR, EAGAIN, "the directory must be asked");
      return DIRECTORY_TEMPFAIL;
    }
  cached = us->cache_only;
  if (!us->cache_only)
    r = directory_lookup (us->dir, address, &user, &cached, &us->error);
  if (us->observer)
    us->observer (directory_backend_name (us->dir), cached, r == DIRECTORY_TEMPFAIL,
                  g_get_monotonic_time () - start);
  users_remember (us, address, r, user);
  if (out)
    *out = user;
  else
    directory_user_free (user);
  if (r == DIRECTORY_TEMPFAIL && us->error == NULL)
    g_set_error_literal (&us->error, DELIVER_ERROR, EIO, "user directory failed");
  return r;
}

static gboolean
users_has (Users *us, const char *address)
{
  return users_find (us, address, NULL) == DIRECTORY_FOUND;
}

/* The rewrite map's answer for @address, or NULL: the whole address
 * first; else the address without its detail, which keeps the detail
 * (joe+x@old -> joe+x@new). */
static char *
rewrite_address (const LmtpdConfig *config, Users *us, const char *address)
{
  char *rewritten = lmtpd_config_rewrite (config, address);
  g_autofree char *base = NULL, *detail = NULL, *base_addr = NULL, *base_rw = NULL;
  char *bat, *rat;

  if (rewritten || users_has (us, address))
    return rewritten;
  base = g_strdup (address);
  bat = strrchr (base, '@');
  *bat = '\0';
  detail = split_detail (config, base);
  if (detail == NULL)
    return NULL;
  base_addr = g_strdup_printf ("%s@%s", base, bat + 1);
  base_rw = lmtpd_config_rewrite (config, base_addr);
  rat = base_rw ? strrchr (base_rw, '@') : NULL;
  if (rat == NULL)
    return NULL;
  return g_strdup_printf ("%.*s%c%s%s", (int) (rat - base_rw), base_rw, config->recipient_delimiter[0], detail,
                          rat);
}

/* user+detail: the detail is split off *@address unless the full address
 * is a user.  Returns it, or NULL. */
static char *
take_detail (const LmtpdConfig *config, Users *us, char **address)
{
  char *at, *detail;

  if (users_has (us, *address))
    return NULL;
  at = strrchr (*address, '@');
  *at = '\0';
  detail = split_detail (config, *address);
  if (detail)
    {
      char *joined = g_strdup_printf ("%s@%s", *address, at + 1);
      g_free (*address);
      *address = joined;
    }
  else
    *at = '@';
  return detail;
}

/* Any local part of a [users] domains entry is a user with the template. */
static gboolean
catch_all (const LmtpdConfig *config, const char *address)
{
  const char *at = strrchr (address, '@');

  for (guint i = 0; at && config->domains && config->domains[i]; i++)
    if (strcmp (config->domains[i], "*") == 0 || g_ascii_strcasecmp (config->domains[i], at + 1) == 0)
      return TRUE;
  return FALSE;
}

static gboolean
is_postmaster (const char *address)
{
  const char *at = strrchr (address, '@');
  return at && (gsize) (at - address) == 10 && g_ascii_strncasecmp (address, "postmaster", 10) == 0;
}

/* Finds the user: *@user gets what the directory knows (NULL for a
 * catch-all address).  An alias replaces *@address with its target (up to
 * a few hops).  RFC 5321 4.5.1: postmaster must be accepted; it may be an
 * alias too.  UNKNOWN: no such user. */
static DirectoryResult
lookup_user (const LmtpdConfig *config, Users *us, char **address, DirectoryUser **user)
{
  for (guint hop = 0; hop < 8; hop++)
    {
      DirectoryResult r = users_find (us, *address, user);
      if (r != DIRECTORY_FOUND)
        break;
      if ((*user)->alias_of == NULL)
        return DIRECTORY_FOUND;
      g_free (*address);
      *address = g_ascii_strdown ((*user)->alias_of, -1);
      g_clear_pointer (user, directory_user_free);
    }
  if (us->error)
    return DIRECTORY_TEMPFAIL;
  if (*user)
    return DIRECTORY_UNKNOWN; /* an alias loop */
  if (catch_all (config, *address))
    return DIRECTORY_FOUND;
  if (!is_postmaster (*address) || config->postmaster == NULL)
    return DIRECTORY_UNKNOWN;
  g_free (*address);
  *address = g_strdup (config->postmaster);
  if (users_find (us, *address, user) == DIRECTORY_TEMPFAIL)
    return DIRECTORY_TEMPFAIL;
  return DIRECTORY_FOUND;
}

/* The detail (owned) as the client gave it, and the folder it selects. */
static void
set_detail (const LmtpdConfig *config, DeliverRecipient *r, const char *local, char *detail)
{
  const char *why;
  gsize n = strcspn (local, config->recipient_delimiter);
  g_autofree char *given = local[n] ? g_utf8_strdown (local + n + 1, -1) : NULL;

  /* the detail keeps the case the client gave it: folders are named so */
  if (given && strcmp (given, detail) == 0)
    {
      g_free (detail);
      detail = g_strdup (local + n + 1);
    }
  r->detail = detail;
  if (config->detail_folder != LMTPD_DETAIL_NO && deliver_folder_valid (r->detail, &why)
      && !deliver_folder_is_inbox (r->detail))
    {
      r->folder = g_strdup (r->detail);
      r->folder_if_exists = config->detail_folder == LMTPD_DETAIL_IF_EXISTS;
    }
}

/* What the recipient's address leads to, after rewriting and the detail:
 * the final address and the user, or a refusal in @status. */
static gboolean
resolve_address (const LmtpdConfig *config, Users *us, DeliverRecipient *r, char **address, char **detail,
                 DirectoryUser **user, DeliverStatus *status)
{
  g_autofree char *rewritten = rewrite_address (config, us, *address);
  DirectoryResult found;

  if (rewritten && !address_safe (rewritten))
    {
      deliver_status_set (status, 553, "5.1.3", "<%s> Rewritten address not allowed here", r->original);
      return FALSE;
    }
  if (rewritten)
    {
      g_free (*address);
      *address = g_steal_pointer (&rewritten);
    }
  *detail = take_detail (config, us, address);
  found = lookup_user (config, us, address, user);
  if (found == DIRECTORY_TEMPFAIL || us->error)
    deliver_status_set (status, 451, "4.3.0", "<%s> User lookup failed, try again later", r->original);
  else if (found == DIRECTORY_UNKNOWN || !address_safe (*address))
    deliver_status_set (status, 550, "5.1.1", "<%s> User doesn't exist", r->original);
  else if (*user && (*user)->disabled)
    deliver_status_set (status, 550, "5.2.1", "<%s> Mailbox disabled, not accepting messages", r->original);
  else
    return TRUE;
  return FALSE;
}

/* The user's attributes onto the recipient. */
static void
take_user (const LmtpdConfig *config, DeliverRecipient *r, const DirectoryUser *user)
{
  const char *mailbox = user ? user->mailbox : NULL;

  if (user)
    {
      r->quota_bytes = user->quota_bytes;
      r->quota_messages = user->quota_messages;
      r->sieve_script = g_strdup (user->sieve_script);
      r->settings = g_strdupv (user->settings);
      r->host = g_strdup (user->host);
    }
  set_mailbox (config, r, mailbox ? mailbox : lmtpd_config_mailbox_template (config, r->domain));
}

/* The users come from the context's directory (the [users] backend);
 * with @us->cache_only, only from what needs no server. */
static DeliverRecipient *
resolve_with (DeliverContext *ctx, const LmtpdConfig *config, const char *local, const char *domain, Users *users,
              DeliverStatus *status)
{
  g_autofree char *lc_local = g_utf8_strdown (local, -1);
  g_autofree char *lc_domain = g_ascii_strdown (domain ? domain : config->hostname, -1);
  g_autofree char *address = NULL, *detail = NULL;
  g_autoptr (DeliverRecipient) r = g_new0 (DeliverRecipient, 1);
  g_autoptr (DirectoryUser) user = NULL;
  Users us = *users;
  gboolean ok;
  char *at;

  r->original = domain ? g_strdup_printf ("%s@%s", local, domain) : g_strdup (local);
  if (!path_component_safe (lc_local) || !path_component_safe (lc_domain))
    {
      deliver_status_set (status, 553, "5.1.3", "<%s> Recipient address not allowed here", r->original);
      return NULL;
    }
  address = g_strdup_printf ("%s@%s", lc_local, lc_domain);
  us.dir = deliver_context_directory (ctx, config, &us.error);
  ok = us.dir && resolve_address (config, &us, r, &address, &detail, &user, status);
  if (us.dir == NULL)
    deliver_status_set (status, 451, "4.3.0", "<%s> User lookup failed, try again later", r->original);
  if (us.error && !us.would_block)
    g_warning ("user directory: %s: %s", r->original, us.error->message);
  users->would_block = us.would_block;
  users_clear (&us);
  if (!ok)
    return NULL;
  at = strrchr (address, '@');
  r->local = g_strndup (address, at - address);
  r->domain = g_strdup (at + 1);
  r->address = g_steal_pointer (&address);
  take_user (config, r, user);
  if (detail && detail[0])
    set_detail (config, r, local, g_steal_pointer (&detail));
  return g_steal_pointer (&r);
}

DeliverRecipient *
deliver_resolve (DeliverContext *ctx, const LmtpdConfig *config, const char *local, const char *domain,
                 DeliverStatus *status)
{
  Users us = { NULL, ctx ? ctx->directory_observer : NULL, FALSE, FALSE, NULL, NULL, DIRECTORY_UNKNOWN, NULL };

  return resolve_with (ctx, config, local, domain, &us, status);
}

DeliverRecipient *
deliver_resolve_cached (DeliverContext *ctx, const LmtpdConfig *config, const char *local, const char *domain,
                        DeliverStatus *status, gboolean *would_block)
{
  Users us = { NULL, ctx ? ctx->directory_observer : NULL, TRUE, FALSE, NULL, NULL, DIRECTORY_UNKNOWN, NULL };
  DeliverRecipient *r = resolve_with (ctx, config, local, domain, &us, status);

  *would_block = us.would_block;
  if (us.would_block)
    deliver_status_clear (status);
  return r;
}

gboolean
deliver_resolve_may_block (DeliverContext *ctx, const LmtpdConfig *config)
{
  g_autoptr (Directory) dir = deliver_context_directory (ctx, config, NULL);
  return dir && directory_is_remote (dir);
}
