/* trace.c - the headers a final delivery prepends (RFC 5321 4.4):
 * Return-Path, Delivered-To and Received.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deliver.h"

/* A client-supplied token for a header comment: printable ASCII only, no
 * parentheses or backslashes that could end or escape the comment. */
/* RFC 5322 3.3 date in local time, English names whatever the locale;
 * localtime_r reads the zone once (a GDateTime looked it up each time). */
static void
rfc5322_date (gint64 secs, char *out, gsize len)
{
  static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
  static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
  time_t t = (time_t) secs;
  struct tm tm;
  long off;

  localtime_r (&t, &tm);
  off = tm.tm_gmtoff / 60;
  g_snprintf (out, len, "%s, %02d %s %d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday], tm.tm_mday,
              months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
              off < 0 ? '-' : '+', labs (off) / 60, labs (off) % 60);
}

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
  char date[64];

  rfc5322_date (msg->received_us / G_USEC_PER_SEC, date, sizeof date);

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
      if (msg->client_name)
        {
          g_autofree char *name = header_token (msg->client_name, 255);
          g_string_append_printf (h, " from %s (%s [%s])\n\t", helo, name, addr);
        }
      else
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
