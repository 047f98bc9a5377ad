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

/* The rewrite map's answer for @address, or NULL: the whole address
 * first; else the address without its detail, which keeps the detail
 * (joe+x@old -> joe+x@new). */
static char *
rewrite_address (const LmtpdConfig *config, const char *address)
{
  char *rewritten = lmtpd_config_rewrite (config, address);
  g_autofree char *base = NULL, *detail = NULL, *base_addr = NULL, *base_rw = NULL;
  char *bat, *rat;

  if (rewritten || lmtpd_config_get_user (config, address))
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
take_detail (const LmtpdConfig *config, char **address)
{
  char *at, *detail;

  if (lmtpd_config_get_user (config, *address))
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

/* Finds the user: *@mailbox gets its mailbox spec (NULL: the template).
 * RFC 5321 4.5.1: postmaster must be accepted; it may be an alias, which
 * then replaces *@address.  FALSE: no such user. */
static gboolean
lookup_user (const LmtpdConfig *config, char **address, const char **mailbox)
{
  const char *at;

  if (lmtpd_config_lookup_user (config, *address, mailbox))
    return TRUE;
  at = strrchr (*address, '@');
  if (!at || (gsize) (at - *address) != 10 || g_ascii_strncasecmp (*address, "postmaster", 10) != 0
      || config->postmaster == NULL)
    return FALSE;
  g_free (*address);
  *address = g_strdup (config->postmaster);
  lmtpd_config_lookup_user (config, *address, mailbox);
  return TRUE;
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

/* @ctx carries the seam of a user directory (ctx->users); until one
 * plugs in, users come from the configuration alone. */
DeliverRecipient *
deliver_resolve (DeliverContext *ctx, const LmtpdConfig *config, const char *local, const char *domain,
                 DeliverStatus *status)
{
  g_autofree char *lc_local = g_utf8_strdown (local, -1);
  g_autofree char *lc_domain = g_ascii_strdown (domain ? domain : config->hostname, -1);
  g_autofree char *address = NULL, *rewritten = NULL, *detail = NULL;
  g_autoptr (DeliverRecipient) r = g_new0 (DeliverRecipient, 1);
  const LmtpdUser *user;
  const char *mailbox = NULL;
  char *at;

  r->original = domain ? g_strdup_printf ("%s@%s", local, domain) : g_strdup (local);
  if (!path_component_safe (lc_local) || !path_component_safe (lc_domain))
    {
      deliver_status_set (status, 553, "5.1.3", "<%s> Recipient address not allowed here", r->original);
      return NULL;
    }
  address = g_strdup_printf ("%s@%s", lc_local, lc_domain);
  rewritten = rewrite_address (config, address);
  if (rewritten)
    {
      if (!address_safe (rewritten))
        {
          deliver_status_set (status, 553, "5.1.3", "<%s> Rewritten address not allowed here", r->original);
          return NULL;
        }
      g_free (address);
      address = g_steal_pointer (&rewritten);
    }
  detail = take_detail (config, &address);
  if (!lookup_user (config, &address, &mailbox))
    {
      deliver_status_set (status, 550, "5.1.1", "<%s> User doesn't exist", r->original);
      return NULL;
    }
  at = strrchr (address, '@');
  r->local = g_strndup (address, at - address);
  r->domain = g_strdup (at + 1);
  r->address = g_steal_pointer (&address);
  user = lmtpd_config_get_user (config, r->address);
  if (user)
    {
      r->quota_bytes = user->quota_bytes;
      r->quota_messages = user->quota_messages;
    }
  set_mailbox (config, r, mailbox ? mailbox : lmtpd_config_mailbox_template (config, r->domain));
  if (detail && detail[0])
    set_detail (config, r, local, g_steal_pointer (&detail));
  return g_steal_pointer (&r);
}
