/* resolve.c - from an envelope recipient to a mailbox path.
 *
 * The local part and domain end up in a file system path, so beyond RFC
 * 5321 syntax they must not contain '/', control characters or "..", nor
 * start with a dot: a recipient can never name a place outside the mail
 * root.
 */
#include "config.h"

#include <string.h>

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

void
deliver_recipient_free (DeliverRecipient *r)
{
  if (r == NULL)
    return;
  g_free (r->original);
  g_free (r->address);
  g_free (r->local);
  g_free (r->domain);
  g_free (r->mailbox);
  g_free (r->orcpt);
  g_free (r);
}

DeliverRecipient *
deliver_resolve (const LmtpdConfig *config, const char *local, const char *domain,
                 DeliverStatus *status)
{
  g_autofree char *lc_local = g_utf8_strdown (local, -1);
  g_autofree char *lc_domain = g_ascii_strdown (domain ? domain : config->hostname, -1);
  g_autofree char *address = NULL;
  g_autoptr (DeliverRecipient) r = g_new0 (DeliverRecipient, 1);
  const char *mailbox = NULL;
  const char *at;

  r->original = domain ? g_strdup_printf ("%s@%s", local, domain) : g_strdup (local);
  if (!path_component_safe (lc_local) || !path_component_safe (lc_domain))
    {
      deliver_status_set (status, 553, "5.1.3", "<%s> Recipient address not allowed here", r->original);
      return NULL;
    }
  address = g_strdup_printf ("%s@%s", lc_local, lc_domain);
  if (!lmtpd_config_lookup_user (config, address, &mailbox))
    {
      /* RFC 5321 4.5.1: postmaster must be accepted; it may be an alias. */
      if (g_ascii_strcasecmp (lc_local, "postmaster") == 0 && config->postmaster != NULL)
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
  if (mailbox && g_path_is_absolute (mailbox))
    r->mailbox = g_strdup (mailbox);
  else
    {
      g_autofree char *rel = mailbox ? g_strdup (mailbox)
                                     : expand_template (config->mailbox_template, r->local, r->domain);
      r->mailbox = g_build_filename (config->mail_root, rel, NULL);
    }
  return g_steal_pointer (&r);
}
