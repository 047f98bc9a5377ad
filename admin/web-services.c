/* web-services.c - /services: each callout service's verdicts per hour
 * over the last HOURS hours (deliver_verdict_counts), drawn on the server
 * as a small inline SVG of stacked bars, and a table setting a shadow
 * service's would-be verdicts next to the verdicts applied.
 */
#include "config.h"

#include <string.h>

#include "web-private.h"

#define HOURS 48
#define BAR_W 10
#define CHART_H 100
#define SERVICES_MAX 50

static const struct {
  const char *verdict;
  const char *colour;
} verdicts[] = {
  { "accept", "#5a9e5a" }, { "modify", "#4a78b8" }, { "reject", "#c0392b" }, { "tempfail", "#999" },
  { "discard", "#8e44ad" }, { "quarantine", "#e67e22" }, { "redirect", "#16a085" }, { "other", "#333" },
};
#define N_VERDICTS G_N_ELEMENTS (verdicts)

typedef struct {
  guint64 hourly[2][HOURS][N_VERDICTS]; /* [0] applied, [1] shadow (would-be) */
  guint64 applied[N_VERDICTS], shadow[N_VERDICTS];
  guint64 peak;                       /* the highest hour charted */
} Series;

static guint
verdict_index (const char *v)
{
  guint i = 0;

  while (i + 1 < N_VERDICTS && strcmp (v, verdicts[i].verdict) != 0)
    i++;
  return i;
}

static GHashTable *
series_of (GPtrArray *counts, gint64 first_hour)
{
  GHashTable *all = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  for (guint i = 0; i < counts->len; i++)
    {
      const DeliverVerdictCount *c = counts->pdata[i];
      Series *s = g_hash_table_lookup (all, c->service);
      gint64 h = (c->hour - first_hour) / 3600;
      guint v = verdict_index (c->verdict);

      if (s == NULL && g_hash_table_size (all) >= SERVICES_MAX)
        continue;
      if (s == NULL)
        g_hash_table_insert (all, g_strdup (c->service), s = g_new0 (Series, 1));
      if (c->shadow)
        s->shadow[v] += c->n;
      else
        s->applied[v] += c->n;
      if (h >= 0 && h < HOURS)
        s->hourly[c->shadow ? 1 : 0][h][v] += c->n;
    }
  return all;
}

static void
chart_bar (GString *out, const Series *s, guint kind, guint h)
{
  double y = CHART_H;
  guint64 total = 0;

  for (guint v = 0; v < N_VERDICTS; v++)
    {
      guint64 n = s->hourly[kind][h][v];
      double height = s->peak ? (double) n * (CHART_H - 5) / s->peak : 0;
      total += n;
      if (n == 0)
        continue;
      y -= height;
      g_string_append_printf (out, "<rect x=\"%u\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"/>",
                              40 + h * BAR_W, y, BAR_W - 2, height, verdicts[v].colour);
    }
  if (total)
    g_string_append_printf (out, "<title>%" G_GUINT64_FORMAT "</title>", total);
}

static gboolean
has_applied (const Series *s)
{
  for (guint v = 0; v < N_VERDICTS; v++)
    if (s->applied[v])
      return TRUE;
  return FALSE;
}

/* the applied verdicts; a service that has only shadow verdicts (one in
 * shadow mode) gets those, said so */
static void
chart (GString *out, const char *service, Series *s)
{
  guint kind = has_applied (s) ? 0 : 1;
  for (guint h = 0; h < HOURS; h++)
    {
      guint64 t = 0;
      for (guint v = 0; v < N_VERDICTS; v++)
        t += s->hourly[kind][h][v];
      s->peak = MAX (s->peak, t);
    }
  web_append_escaped (out, "<h2>%s%s</h2>", service, kind ? " (shadow mode: would-be verdicts)" : "");
  g_string_append_printf (out,
                          "<svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">"
                          "<text x=\"0\" y=\"12\" font-size=\"11\">%" G_GUINT64_FORMAT "/h</text>"
                          "<text x=\"0\" y=\"%d\" font-size=\"11\">0</text>"
                          "<line x1=\"38\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>",
                          40 + HOURS * BAR_W, CHART_H + 16, 40 + HOURS * BAR_W, CHART_H + 16, s->peak, CHART_H,
                          CHART_H, 40 + HOURS * BAR_W, CHART_H);
  for (guint h = 0; h < HOURS; h++)
    chart_bar (out, s, kind, h);
  g_string_append_printf (out, "<text x=\"40\" y=\"%d\" font-size=\"11\">%d hours ago</text>"
                               "<text x=\"%d\" y=\"%d\" font-size=\"11\">now</text></svg>\n",
                          CHART_H + 14, HOURS, 40 + HOURS * BAR_W - 30, CHART_H + 14);
}

static void
legend (GString *out)
{
  g_string_append (out, "<p>");
  for (guint v = 0; v < N_VERDICTS; v++)
    g_string_append_printf (out, "<svg width=\"10\" height=\"10\"><rect width=\"10\" height=\"10\" fill=\"%s\"/>"
                                 "</svg> %s &nbsp; ", verdicts[v].colour, verdicts[v].verdict);
  g_string_append (out, "</p>\n");
}

/* per service and verdict: applied, and would-be (shadow) */
static void
comparison (GString *out, GHashTable *all, GList *names)
{
  g_string_append (out, "<h2>Applied and shadow verdicts</h2><p>A service in shadow mode is called but its verdict "
                        "is only recorded: its would-be verdicts stand next to the applied ones.</p>"
                        "<table id=\"shadow\"><tr><th>Service</th><th>Verdict</th><th>Applied</th>"
                        "<th>Shadow (would-be)</th></tr>\n");
  for (GList *l = names; l; l = l->next)
    {
      const Series *s = g_hash_table_lookup (all, l->data);
      for (guint i = 0; i < N_VERDICTS; i++)
        if (s->applied[i] || s->shadow[i])
          web_append_escaped (out, "<tr><td>%s</td><td>%s</td><td>%" G_GUINT64_FORMAT "</td><td>%" G_GUINT64_FORMAT
                              "</td></tr>\n", (const char *) l->data, verdicts[i].verdict, s->applied[i], s->shadow[i]);
    }
  g_string_append (out, "</table>\n");
}

void
web_services_page (const WebRequest *req, WebReply *reply)
{
  gint64 now_hour = g_get_real_time () / G_USEC_PER_SEC / 3600 * 3600;
  gint64 first = now_hour - (HOURS - 1) * 3600;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) counts = deliver_verdict_counts (web_context (req->web), first, &error);
  g_autoptr (GHashTable) all = NULL;
  GList *names;

  if (counts == NULL)
    {
      web_page_error (reply, req, web_status_of_error (error), error->message);
      return;
    }
  all = series_of (counts, first);
  web_page_begin (reply->body, "Services", req);
  g_string_append_printf (reply->body, "<p>Verdicts applied per hour, the last %d hours.</p>\n", HOURS);
  legend (reply->body);
  names = g_list_sort (g_hash_table_get_keys (all), (GCompareFunc) strcmp);
  for (GList *l = names; l; l = l->next)
    chart (reply->body, l->data, g_hash_table_lookup (all, l->data));
  if (g_hash_table_size (all) == 0)
    g_string_append (reply->body, "<p>No verdicts recorded yet.</p>\n");
  comparison (reply->body, all, names);
  g_list_free (names);
  web_page_end (reply->body);
}
