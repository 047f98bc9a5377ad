/* sieve-date.c - date and currentdate (RFC 5260 4, 5) and the :index
 * argument (6).  A date-time comes from a header field (RFC 5322, read
 * by GMime, obsolete zones included; in a field like Received the part
 * after the last ';') or is the run's "now"; it is shifted to a zone and
 * the date-part asked for is matched against the keys.  A field that is
 * missing or holds no valid date makes the test false (4).
 */
#include "config.h"

#include <string.h>

#include <gmime/gmime.h>

#include "sieve-run.h"

static const char *const date_parts[] = {
  "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601", "std11", "zone",
  "weekday", NULL,
};

/* at most this much of a field is handed to the date parser */
#define MAX_DATE_TEXT 256

gboolean
sieve_date_part_known (const char *part)
{
  for (guint i = 0; date_parts[i]; i++)
    if (g_ascii_strcasecmp (date_parts[i], part) == 0)
      return TRUE;
  return FALSE;
}

/* RFC 5260 6: "Specifying :last without :index is an error." */
gboolean
sieve_check_index (const SieveNode *n, GError **error)
{
  if (n->parsed->last && n->parsed->index == 0)
    return sieve_node_fail (error, n, ":last needs :index");
  return TRUE;
}

/* 4.1: not both zones; currentdate has no original zone; a date-part
 * given as it is must be one of 4.2's */
gboolean
sieve_check_date (const SieveNode *n, GError **error)
{
  const SieveArgs *a = n->parsed;
  gboolean current = strcmp (n->name, "currentdate") == 0;
  const char *part = sieve_args_string (a, current ? 0 : 1);

  if (a->originalzone && (current || a->zone))
    return sieve_node_fail (error, n, current ? ":originalzone is for date" : ":zone and :originalzone together");
  if (a->index && current)
    return sieve_node_fail (error, n, ":index is for date");
  if (part && !strstr (part, "${") && !sieve_date_part_known (part))
    return sieve_node_fail (error, n, "unknown date-part \"%s\"", part);
  return sieve_check_index (n, error);
}

/* "+hhmm" or "-hhmm" (4.1), or NULL */
static GTimeZone *
zone_parse (const char *s)
{
  int h, m;

  if (s == NULL || strlen (s) != 5 || (s[0] != '+' && s[0] != '-'))
    return NULL;
  for (guint i = 1; i < 5; i++)
    if (!g_ascii_isdigit (s[i]))
      return NULL;
  h = (s[1] - '0') * 10 + (s[2] - '0');
  m = (s[3] - '0') * 10 + (s[4] - '0');
  if (m > 59)
    return NULL;
  return g_time_zone_new_offset ((s[0] == '-' ? -1 : 1) * (h * 3600 + m * 60));
}

/* :zone, else the caller's local zone, else the process's.  A :zone
 * that is no offset is taken as the local zone, as Pigeonhole does. */
static GTimeZone *
target_zone (SieveRun *run, const SieveArgs *a)
{
  GTimeZone *tz = NULL;

  if (a->zone)
    {
      g_autofree char *z = sieve_run_expand (run, a->zone);
      tz = zone_parse (z);
    }
  if (tz == NULL)
    tz = zone_parse (run->m->zone);
  return tz ? tz : g_time_zone_new_local ();
}

/* "+hhmm"; zero is "+0000" (4.2) */
static char *
zone_text (GDateTime *t, gboolean colon)
{
  gint64 off = g_date_time_get_utc_offset (t) / G_USEC_PER_SEC;
  gint64 abs = off < 0 ? -off : off;

  return g_strdup_printf ("%c%02d%s%02d", off < 0 ? '-' : '+', (int) (abs / 3600), colon ? ":" : "",
                          (int) (abs % 3600 / 60));
}

/* Days since 1858-11-17 (4.2 "julian") */
static int
modified_julian (GDateTime *t)
{
  GDate d, epoch;

  g_date_clear (&d, 1);
  g_date_clear (&epoch, 1);
  g_date_set_dmy (&d, g_date_time_get_day_of_month (t), g_date_time_get_month (t), g_date_time_get_year (t));
  g_date_set_dmy (&epoch, 17, G_DATE_NOVEMBER, 1858);
  return (int) g_date_get_julian (&d) - (int) g_date_get_julian (&epoch);
}

/* std11 (RFC 5322 3.3) in English whatever the locale */
static char *
std11 (GDateTime *t)
{
  static const char *const days[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
  static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
  g_autofree char *zone = zone_text (t, FALSE);

  return g_strdup_printf ("%s, %02d %s %04d %02d:%02d:%02d %s", days[g_date_time_get_day_of_week (t) - 1],
                          g_date_time_get_day_of_month (t), months[g_date_time_get_month (t) - 1],
                          g_date_time_get_year (t), g_date_time_get_hour (t), g_date_time_get_minute (t),
                          g_date_time_get_second (t), zone);
}

/* The ISO 8601 date-time of RFC 3339 5.6, "Z" for a zero offset (4.2) */
static char *
iso8601 (GDateTime *t)
{
  g_autofree char *zone = zone_text (t, TRUE);
  g_autofree char *s = g_date_time_format (t, "%Y-%m-%dT%H:%M:%S");

  return g_strconcat (s, g_date_time_get_utc_offset (t) == 0 ? "Z" : zone, NULL);
}

/* The date-part @part of @t, or NULL if there is no such part */
static char *
date_part (GDateTime *t, const char *part)
{
  static const char *const fmt[] = { "%Y", "%m", "%d", "%Y-%m-%d", NULL, "%H", "%M", "%S", "%H:%M:%S" };
  guint i;

  for (i = 0; date_parts[i] && g_ascii_strcasecmp (date_parts[i], part); i++)
    ;
  if (i < G_N_ELEMENTS (fmt) && fmt[i])
    return g_date_time_format (t, fmt[i]);
  if (!g_ascii_strcasecmp (part, "julian"))
    return g_strdup_printf ("%d", modified_julian (t));
  if (!g_ascii_strcasecmp (part, "iso8601"))
    return iso8601 (t);
  if (!g_ascii_strcasecmp (part, "std11"))
    return std11 (t);
  if (!g_ascii_strcasecmp (part, "zone"))
    return zone_text (t, FALSE);
  if (!g_ascii_strcasecmp (part, "weekday"))
    return g_strdup_printf ("%d", g_date_time_get_day_of_week (t) % 7);
  return NULL;
}

/* Matches the date-part of @t (shifted unless :originalzone) against the
 * keys; no date: nothing to match (a :count of 0, 4). */
static gboolean
match_date (SieveRun *run, const SieveArgs *a, GDateTime *t, guint part_arg)
{
  g_auto (GStrv) keys = sieve_run_expand_list (run, sieve_args_list (a, a->pos->len - 1));
  g_autofree char *part = sieve_run_expand (run, sieve_args_string (a, part_arg));
  g_autofree char *value = NULL;
  char *values[2] = { NULL, NULL };

  if (t && !a->originalzone)
    {
      g_autoptr (GTimeZone) tz = target_zone (run, a);
      g_autoptr (GDateTime) shifted = g_date_time_to_timezone (t, tz);
      value = shifted ? date_part (shifted, part) : NULL;
    }
  else if (t)
    value = date_part (t, part);
  values[0] = value;
  return sieve_run_match_any (run, a, values, keys);
}

/* A leap second (RFC 5322 3.3 allows second 60) as the second before:
 * a valid date-time, which GDateTime cannot hold (as Pigeonhole) */
static gboolean
leap_second_down (char *text)
{
  for (char *p = strstr (text, ":60"); p; p = strstr (p + 1, ":60"))
    if (p - text >= 3 && p[-3] == ':' && !g_ascii_isdigit (p[3]))
      {
        p[2] = '9';
        p[1] = '5';
        return TRUE;
      }
  return FALSE;
}

/* The date-time in a field: all of it, or what follows its last ';' */
static GDateTime *
field_date (const char *value)
{
  const char *semi = strrchr (value, ';');
  g_autofree char *text = g_strndup (semi ? semi + 1 : value, MAX_DATE_TEXT);
  GDateTime *t = g_mime_utils_header_decode_date (g_strstrip (text));

  if (t == NULL && leap_second_down (text))
    t = g_mime_utils_header_decode_date (text);
  return t;
}

gboolean
sieve_test_date (SieveRun *run, const SieveNode *t)
{
  const SieveArgs *a = t->parsed;
  g_autofree char *name = sieve_run_expand (run, sieve_args_string (a, 0));
  g_auto (GStrv) v = sieve_run_headers (run, name);
  g_autoptr (GPtrArray) fields = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GDateTime) when = NULL;

  /* 4: the first field, unless :index says which */
  for (guint i = 0; v[i]; i++)
    g_ptr_array_add (fields, g_steal_pointer (&v[i]));
  if (a->index)
    sieve_run_pick_index (a, fields);
  if (fields->len)
    when = field_date (fields->pdata[0]);
  return match_date (run, a, when, 1);
}

gboolean
sieve_test_currentdate (SieveRun *run, const SieveNode *t)
{
  g_autoptr (GDateTime) now = g_date_time_new_from_unix_utc (run->now);

  return match_date (run, t->parsed, now, 0);
}

void
sieve_run_pick_index (const SieveArgs *a, GPtrArray *fields)
{
  guint64 n = fields->len;
  guint64 at;

  if (a->index == 0)
    return;
  if (a->index > n)
    {
      g_ptr_array_set_size (fields, 0);
      return;
    }
  at = a->last ? n - a->index : a->index - 1;
  if (at + 1 < n)
    g_ptr_array_remove_range (fields, at + 1, n - at - 1);
  if (at > 0)
    g_ptr_array_remove_range (fields, 0, at);
}
