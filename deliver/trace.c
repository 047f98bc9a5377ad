/* trace.c - the headers a final delivery prepends (RFC 5321 4.4):
 * Return-Path, Delivered-To and Received.
 */
#include "config.h"

#include <string.h>

#include "deliver.h"

/* A client-supplied token for a header comment: printable ASCII only, no
 * parentheses or backslashes that could end or escape the comment. */
static char *
header_token (const char *s, gsize max)
{
  GString *out = g_string_new (NULL);

  for (const char *p = s; *p && out->len < max; p++)
    {
      guchar c = *p;
      g_string_append_c (out, (c > 0x20 && c < 0x7f && !strchr ("()\\", c)) ? c : '?');
    }
  return g_string_free (out, FALSE);
}

char *
deliver_trace_headers (const LmtpdConfig *config, const DeliverMessage *msg,
                       const DeliverRecipient *rcpt, gboolean per_recipient)
{
  GString *h = g_string_new (NULL);
  g_autoptr (GDateTime) when = g_date_time_new_from_unix_local (msg->received_us / G_USEC_PER_SEC);
  g_autofree char *date = g_date_time_format (when, "%a, %d %b %Y %H:%M:%S %z");

  g_string_append_printf (h, "Return-Path: <%s>\n", msg->sender);
  if (per_recipient)
    g_string_append_printf (h, "Delivered-To: %s\n", rcpt->address);
  if (g_ascii_strcasecmp (rcpt->original, rcpt->address) != 0)
    g_string_append_printf (h, "X-Original-To: %s\n", rcpt->original);
  g_string_append (h, "Received:");
  if (msg->helo || msg->client_addr)
    {
      g_autofree char *helo = header_token (msg->helo ? msg->helo : "unknown", 255);
      g_autofree char *addr = header_token (msg->client_addr ? msg->client_addr : "unknown", 255);
      g_string_append_printf (h, " from %s (%s)\n\t", helo, addr);
    }
  else
    g_string_append_c (h, ' ');
  g_string_append_printf (h, "by %s with %s id %s", config->hostname, msg->protocol, msg->id);
  if (per_recipient)
    g_string_append_printf (h, "\n\tfor <%s>", rcpt->original);
  g_string_append_printf (h, "; %s\n", date);
  return g_string_free (h, FALSE);
}
