/* ctl-time.c - the times lmtpctl's commands take (--since T): unix
 * seconds, an age ("30m", "2h", "1d": that long ago), ISO 8601 or a day
 * (YYYY-MM-DD, UTC).
 */
#include "config.h"

#include <string.h>

#include "admin.h"

/* @text as unix seconds; FALSE if it is none of the forms above. */
gboolean
admin_parse_since (const char *text, gint64 *out)
{
  char *end = NULL;
  gint64 n = g_ascii_strtoll (text, &end, 10);
  g_autoptr (GTimeZone) utc = g_time_zone_new_utc ();
  g_autoptr (GDateTime) dt = NULL;
  const char *units = "smhd";
  const gint64 seconds[] = { 1, 60, 3600, 86400 };

  if (end != text && *end == '\0' && n >= 0)
    {
      *out = n;
      return TRUE;
    }
  if (end != text && n >= 0 && end[0] && end[1] == '\0' && strchr (units, end[0]))
    {
      *out = g_get_real_time () / G_USEC_PER_SEC - n * seconds[strchr (units, end[0]) - units];
      return TRUE;
    }
  if ((dt = g_date_time_new_from_iso8601 (text, utc)) == NULL)
    {
      /* a day alone (YYYY-MM-DD): from its start, UTC */
      g_autofree char *day = strlen (text) == 10 ? g_strconcat (text, "T00:00:00Z", NULL) : NULL;
      if (day == NULL || (dt = g_date_time_new_from_iso8601 (day, utc)) == NULL)
        return FALSE;
    }
  *out = g_date_time_to_unix (dt);
  return TRUE;
}
