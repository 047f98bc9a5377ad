/* services-metrics.c - ocp-services' counters in the Prometheus text
 * format (0.0.4), served over HTTP on [server] metrics_listen, as lmtpd
 * serves its own.
 *
 * Counters are bumped by the calls and read by the scrape (libsoup, on
 * the main loop: util/util-http.c), both under one mutex: a scrape is
 * rare, a decision is cheap.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>
#include <gio/gunixsocketaddress.h>

#include "services.h"

/* the words a decision is logged with; see verdict_word() in services-call.c */
static const char *const verdict_names[] = { "accept", "modify", "junk", "reject", "tempfail", "discard",
                                             "quarantine", "redirect" };
#define N_VERDICTS G_N_ELEMENTS (verdict_names)

typedef struct {
  guint64 verdicts[N_VERDICTS];
  guint64 transactions;
  guint64 check_us;
} ServiceCounters;

static GMutex lock;
static GHashTable *counters; /* service name -> ServiceCounters* */
static guint64 reloads[2];   /* applied, failed */

static ServiceCounters *
counters_for (const char *service)
{
  ServiceCounters *c;

  if (counters == NULL)
    counters = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  c = g_hash_table_lookup (counters, service);
  if (c == NULL)
    g_hash_table_insert (counters, g_strdup (service), c = g_new0 (ServiceCounters, 1));
  return c;
}

void
service_metrics_decision (const char *service, const char *verdict, guint n_rcpts, gint64 check_us)
{
  ServiceCounters *c;
  guint i = 0;

  while (i + 1 < N_VERDICTS && strcmp (verdict, verdict_names[i]) != 0)
    i++;
  g_mutex_lock (&lock);
  c = counters_for (service);
  c->verdicts[i] += MAX (n_rcpts, 1);
  if (check_us >= 0) /* < 0: another recipient of a call already counted */
    {
      c->transactions++;
      c->check_us += (guint64) check_us;
    }
  g_mutex_unlock (&lock);
}

void
service_metrics_reload (gboolean ok)
{
  g_mutex_lock (&lock);
  reloads[ok ? 0 : 1]++;
  g_mutex_unlock (&lock);
}

static void
render_service (GString *v, GString *t, const char *name, const ServiceCounters *c)
{
  for (guint i = 0; i < N_VERDICTS; i++)
    g_string_append_printf (v, "ocp_services_verdicts_total{service=\"%s\",verdict=\"%s\"} %" G_GUINT64_FORMAT "\n",
                            name, verdict_names[i], c->verdicts[i]);
  g_string_append_printf (t, "ocp_services_transactions_total{service=\"%s\"} %" G_GUINT64_FORMAT "\n"
                             "ocp_services_check_seconds_total{service=\"%s\"} %.6f\n",
                          name, c->transactions, name, c->check_us / 1e6);
}

static char *
render (void)
{
  GString *out = g_string_new (NULL), *v = g_string_new (NULL), *t = g_string_new (NULL);
  GHashTableIter it;
  gpointer k, val;

  g_mutex_lock (&lock);
  if (counters)
    {
      g_hash_table_iter_init (&it, counters);
      while (g_hash_table_iter_next (&it, &k, &val))
        render_service (v, t, k, val); /* service names are group names: no quote or newline */
    }
  g_string_append (out, "# HELP ocp_services_verdicts_total Recipients decided, by service and verdict.\n"
                        "# TYPE ocp_services_verdicts_total counter\n");
  g_string_append_len (out, v->str, v->len);
  g_string_append (out, "# HELP ocp_services_transactions_total OCP transactions answered, by service.\n"
                        "# TYPE ocp_services_transactions_total counter\n");
  g_string_append_len (out, t->str, t->len);
  g_string_append_printf (out, "# HELP ocp_services_reloads_total SIGHUP reloads, by result.\n"
                               "# TYPE ocp_services_reloads_total counter\n"
                               "ocp_services_reloads_total{result=\"applied\"} %" G_GUINT64_FORMAT "\n"
                               "ocp_services_reloads_total{result=\"failed\"} %" G_GUINT64_FORMAT "\n",
                          reloads[0], reloads[1]);
  g_mutex_unlock (&lock);
  g_string_free (v, TRUE);
  g_string_free (t, TRUE);
  return g_string_free (out, FALSE);
}

static GSocketAddress *
metrics_address (const char *spec, GError **error)
{
  const char *colon;
  g_autofree char *host = NULL;
  g_autoptr (GInetAddress) ip = NULL;

  if (g_str_has_prefix (spec, "unix:") && spec[5])
    {
      unlink (spec + 5);
      return g_unix_socket_address_new (spec + 5);
    }
  colon = strrchr (spec, ':');
  if (g_str_has_prefix (spec, "inet:") && colon > spec + 5)
    {
      host = g_strndup (spec + 5, colon - spec - 5);
      if (host[0] == '[' && host[strlen (host) - 1] == ']')
        {
          memmove (host, host + 1, strlen (host));
          host[strlen (host) - 1] = '\0';
        }
      ip = g_inet_address_new_from_string (host);
    }
  if (ip == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "[server] metrics_listen: '%s' is not inet:ADDRESS:PORT or unix:PATH", spec);
      return NULL;
    }
  return g_inet_socket_address_new (ip, (guint16) g_ascii_strtoull (colon + 1, NULL, 10));
}

GObject *
service_metrics_listen (const char *spec, GError **error)
{
  g_autoptr (GSocketAddress) addr = metrics_address (spec, error), bound = NULL;
  GObject *service;

  if (addr == NULL)
    return NULL;
  service = util_metrics_http_new (addr, render, &bound, error);
  if (service == NULL)
    {
      g_prefix_error (error, "[server] metrics_listen %s: ", spec);
      return NULL;
    }
  if (G_IS_INET_SOCKET_ADDRESS (bound))
    {
      g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (bound)));
      g_printerr ("ocp-services: metrics on http://%s:%u/metrics\n", ip,
                  g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
    }
  else
    g_printerr ("ocp-services: metrics on %s\n", spec);
  return service;
}
