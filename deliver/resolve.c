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

#include "deliver.h"

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

/* The resolved mail root, remembered per configured path (realpath costs
 * a readlink per component). */
static char *
real_root (const char *mail_root)
{
  static GMutex lock;
  static char *configured, *resolved;
  char *out;

  g_mutex_lock (&lock);
  if (configured == NULL || strcmp (configured, mail_root) != 0 || resolved == NULL)
    {
      g_free (configured);
      free (resolved);
      configured = g_strdup (mail_root);
      resolved = realpath (mail_root, NULL);
    }
  out = resolved ? g_strdup (resolved) : NULL;
  g_mutex_unlock (&lock);
  return out;
}

static gboolean
under (const char *real, const char *root)
{
  gsize rlen = strlen (root);
  return strcmp (real, root) == 0 || (strncmp (real, root, rlen) == 0 && (real[rlen] == '/' || rlen == 1));
}

gboolean
deliver_path_contained (const LmtpdConfig *config, const char *path, GError **error)
{
  g_autofree char *root = NULL, *probe = NULL, *real = NULL;
  gsize mlen = strlen (config->mail_root);
  char *p;

  if (mlen == 0 || strncmp (path, config->mail_root, mlen) != 0
      || (path[mlen] != '/' && config->mail_root[mlen - 1] != '/'))
    return TRUE; /* placed outside by the configuration */
  root = real_root (config->mail_root);
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
      if (S_ISLNK (st.st_mode))
        {
          real = realpath (probe, NULL);
          if (real == NULL)
            {
              int e = errno;
              g_set_error (error, DELIVER_ERROR, e == ENOENT ? ELOOP : e, "%s: %s", probe, g_strerror (e));
              return FALSE;
            }
          if (!under (real, root))
            {
              g_set_error (error, DELIVER_ERROR, ELOOP, "%s leads outside the mail root (to %s)", probe, real);
              return FALSE;
            }
          g_clear_pointer (&real, free);
        }
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

DeliverRecipient *
deliver_resolve (const LmtpdConfig *config, const char *local, const char *domain,
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

  /* The whole address first; else the address without its detail, which
   * keeps the detail (joe+x@old -> joe+x@new). */
  rewritten = lmtpd_config_rewrite (config, address);
  if (rewritten == NULL && !lmtpd_config_get_user (config, address))
    {
      g_autofree char *base = g_strdup (address);
      char *bat = strrchr (base, '@');
      *bat = '\0';
      detail = split_detail (config, base);
      if (detail)
        {
          g_autofree char *base_addr = g_strdup_printf ("%s@%s", base, bat + 1);
          g_autofree char *base_rw = lmtpd_config_rewrite (config, base_addr);
          if (base_rw)
            {
              char *rat = strrchr (base_rw, '@');
              rewritten = rat ? g_strdup_printf ("%.*s%c%s%s", (int) (rat - base_rw), base_rw,
                                                 config->recipient_delimiter[0], detail, rat)
                              : NULL;
            }
          g_clear_pointer (&detail, g_free);
        }
    }
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

  /* user+detail: the detail is split off unless the full address is a user */
  if (!lmtpd_config_get_user (config, address))
    {
      at = strrchr (address, '@');
      *at = '\0';
      detail = split_detail (config, address);
      if (detail)
        {
          char *joined = g_strdup_printf ("%s@%s", address, at + 1);
          g_free (address);
          address = joined;
        }
      else
        *at = '@';
    }

  if (!lmtpd_config_lookup_user (config, address, &mailbox))
    {
      /* RFC 5321 4.5.1: postmaster must be accepted; it may be an alias. */
      at = strrchr (address, '@');
      if (at && (gsize) (at - address) == 10 && g_ascii_strncasecmp (address, "postmaster", 10) == 0
          && config->postmaster != NULL)
        {
          g_free (address);
          address = g_strdup (config->postmaster);
          lmtpd_config_lookup_user (config, address, &mailbox);
        }
      else
        {
          deliver_status_set (status, 550, "5.1.1", "<%s> User doesn't exist", r->original);
          return NULL;
        }
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
      r->detail = g_steal_pointer (&detail);
      if (config->detail_folder != LMTPD_DETAIL_NO && deliver_folder_valid (r->detail, &why)
          && !deliver_folder_is_inbox (r->detail))
        {
          r->folder = g_strdup (r->detail);
          r->folder_if_exists = config->detail_folder == LMTPD_DETAIL_IF_EXISTS;
        }
    }
  return g_steal_pointer (&r);
}
