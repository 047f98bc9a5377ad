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

/* Three pieces in a row: the headers are made for every delivery, and a
 * format string parsed each time cost more than the rest of them. */
static void
append3 (GString *h, const char *a, const char *b, const char *c)
{
  g_string_append (h, a);
  g_string_append (h, b);
  g_string_append (h, c);
}

/* " from HELO (NAME [ADDR])" or " from HELO (ADDR)", then the fold */
static void
append_from (GString *h, const DeliverMessage *msg)
{
  g_autofree char *helo = header_token (msg->helo ? msg->helo : "unknown", 255);
  g_autofree char *addr = header_token (msg->client_addr ? msg->client_addr : "unknown", 255);

  append3 (h, " from ", helo, " (");
  if (msg->client_name)
    {
      g_autofree char *name = header_token (msg->client_name, 255);
      append3 (h, name, " [", addr);
      g_string_append (h, "])\n\t");
    }
  else
    append3 (h, addr, ")\n\t", "");
}

char *
deliver_trace_headers (const LmtpdConfig *config, const DeliverMessage *msg,
                       const DeliverRecipient *rcpt, gboolean per_recipient)
{
  GString *h = g_string_sized_new (256);
  char date[64];

  rfc5322_date (msg->received_us / G_USEC_PER_SEC, date, sizeof date);

  append3 (h, "Return-Path: <", msg->sender, ">\n");
  if (per_recipient)
    append3 (h, "Delivered-To: ", rcpt->address, "\n");
  if (g_ascii_strcasecmp (rcpt->original, rcpt->address) != 0)
    append3 (h, "X-Original-To: ", rcpt->original, "\n");
  g_string_append (h, "Received:");
  if (msg->helo || msg->client_addr)
    append_from (h, msg);
  else
    g_string_append_c (h, ' ');
  append3 (h, "by ", config->hostname, " with ");
  append3 (h, msg->protocol, " id ", msg->id);
  if (per_recipient)
    append3 (h, "\n\tfor <", rcpt->original, ">");
  append3 (h, "; ", date, "\n");
  return g_string_free (h, FALSE);
}
