/* lmtp-socketmap.c - Postfix's socketmap protocol (socketmap_table(5)):
 * netstrings "NAME KEY" in, "OK value" / "NOTFOUND " / "TEMP reason" /
 * "PERM reason" out, answered from the same resolution as RCPT, so Postfix
 * refuses an unknown user at its own RCPT instead of bouncing later.
 *
 *   mailbox ADDRESS  OK with the final mailbox path (virtual_mailbox_maps)
 *   alias ADDRESS    OK with the final address (after rewrite and aliases)
 *
 * The codec is pure; the serving is in lmtp-maps.c.
 */
#include "config.h"

#include <string.h>

#include "deliver.h"
#include "lmtpd.h"

LmtpNetstring
lmtp_netstring_decode (const char *buf, gsize len, gsize max, const char **payload, gsize *plen, gsize *used)
{
  guint64 n = 0;
  gsize i = 0;

  /* "LEN:" with LEN decimal, no sign, no leading zero but "0" itself */
  while (i < len && g_ascii_isdigit (buf[i]))
    {
      if (i > 0 && buf[0] == '0')
        return LMTP_NETSTRING_BAD;
      n = n * 10 + (buf[i] - '0');
      if (n > max)
        return LMTP_NETSTRING_BAD;
      i++;
    }
  if (i == len)
    return LMTP_NETSTRING_MORE;
  if (i == 0 || buf[i] != ':')
    return LMTP_NETSTRING_BAD;
  i++;
  if (len - i < n + 1)
    return LMTP_NETSTRING_MORE;
  if (buf[i + n] != ',')
    return LMTP_NETSTRING_BAD;
  *payload = buf + i;
  *plen = n;
  *used = i + n + 1;
  return LMTP_NETSTRING_OK;
}

void
lmtp_netstring_append (GString *out, const char *data, gsize len)
{
  g_string_append_printf (out, "%" G_GSIZE_FORMAT ":", len);
  g_string_append_len (out, data, len);
  g_string_append_c (out, ',');
}

gboolean
lmtp_socketmap_split (const char *req, gsize len, char **name, char **key)
{
  const char *space = memchr (req, ' ', len);

  if (space == NULL || space == req || space + 1 == req + len || memchr (req, '\0', len) != NULL)
    return FALSE;
  *name = g_strndup (req, space - req);
  *key = g_strndup (space + 1, req + len - space - 1);
  return TRUE;
}

/* The recipient @key resolves to, or NULL with @status (5xx for an
 * address that is not one). */
static DeliverRecipient *
resolve_key (DeliverContext *ctx, const LmtpdConfig *config, const char *key, DeliverStatus *status)
{
  g_autofree char *local = NULL, *domain = NULL;
  const char *why;

  /* Postfix also asks for "@domain" and bare local parts: not users */
  if (!deliver_address_parse (key, TRUE, &local, &domain, &why) || domain == NULL)
    {
      deliver_status_set (status, 550, "5.1.3", "not an address");
      return NULL;
    }
  return deliver_resolve (ctx, config, local, domain, status);
}

char *
lmtp_socketmap_answer (DeliverContext *ctx, const LmtpdConfig *config, const char *req, gsize len)
{
  g_autofree char *name = NULL, *key = NULL;
  g_autoptr (DeliverRecipient) r = NULL;
  DeliverStatus st = { 0 };
  char *out;

  if (!lmtp_socketmap_split (req, len, &name, &key))
    return g_strdup ("PERM malformed request, expected NAME KEY");
  if (strcmp (name, "mailbox") != 0 && strcmp (name, "alias") != 0)
    return g_strdup ("PERM unknown map, try mailbox or alias");
  r = resolve_key (ctx, config, key, &st);
  if (r)
    out = g_strdup_printf ("OK %s", strcmp (name, "alias") == 0 ? r->address : r->mailbox);
  else if (st.code >= 400 && st.code < 500)
    out = g_strdup ("TEMP user lookup failed, try again later");
  else
    out = g_strdup ("NOTFOUND ");
  deliver_status_clear (&st);
  return out;
}
