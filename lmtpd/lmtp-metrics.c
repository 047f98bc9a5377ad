/* lmtp-metrics.c - counters and histograms in the Prometheus text format
 * (version 0.0.4), served over HTTP on [server] metrics_listen, and a
 * one-line summary for SIGUSR1.
 *
 * Counters are updated on the main loop and the delivery threads and
 * read on the main loop (libsoup, util/util-http.c): plain 64-bit
 * atomics, no locks.
 */
#include "config.h"

#include <string.h>
#include <gio/gunixsocketaddress.h>

#include "lmtpd.h"
#include "lmtpd-util.h"

/* the words callout.c traces a verdict with; anything else is "other" */
static const char *const verdict_names[] = { "accept", "modify", "reject", "tempfail", "discard", "quarantine",
                                             "redirect", "other" };
#define N_VERDICTS G_N_ELEMENTS (verdict_names)

#define N_BUCKETS 12
static const double bucket_le[N_BUCKETS] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10 };

typedef struct {
  guint64 count[N_BUCKETS + 1]; /* last: +Inf only */
  guint64 n;
  guint64 sum_us;
} Histogram;

static struct {
  guint64 sessions_total, sessions_active, refused[LMTP_REFUSED_N];
  guint64 transactions, bytes;
  guint64 deliveries[3]; /* 2xx, 4xx, 5xx */
  guint64 rcpt_refused[2]; /* 4xx, 5xx */
  Histogram delivery, callout;
  guint64 sieve_errors[2]; /* compile, runtime */
} m;

/* per callout service, from delivery threads */
typedef struct {
  Histogram latency;
  guint64 failures;
  guint64 verdicts[N_VERDICTS];
  guint64 shadow[N_VERDICTS];   /* a shadow service's would-be verdicts, per recipient */
} ServiceStats;

static GMutex services_lock;
static GHashTable *services; /* name -> ServiceStats* */

/* per user-directory backend, from delivery threads and the main loop */
typedef struct {
  Histogram latency;
  guint64 lookups, cache_hits, failures;
} BackendStats;

static GMutex directories_lock;
static GHashTable *directories; /* backend name -> BackendStats* */

#define ADD(var, v) __atomic_add_fetch (&(var), (v), __ATOMIC_RELAXED)
#define GET(var) __atomic_load_n (&(var), __ATOMIC_RELAXED)

static void
observe (Histogram *h, guint64 us)
{
  double s = us / 1e6;
  guint i = 0;

  while (i < N_BUCKETS && s > bucket_le[i])
    i++;
  ADD (h->count[i], 1);
  ADD (h->n, 1);
  ADD (h->sum_us, us);
}

static guint
verdict_index (const char *verdict)
{
  guint i = 0;

  while (i + 1 < N_VERDICTS && strcmp (verdict, verdict_names[i]) != 0)
    i++;
  return i;
}

/* @service's counters (made on first use; at most 1000 services), or NULL. */
static ServiceStats *
service_stats (const char *service)
{
  ServiceStats *st;

  g_mutex_lock (&services_lock);
  if (services == NULL)
    services = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  st = g_hash_table_lookup (services, service);
  if (st == NULL && g_hash_table_size (services) < 1000)
    g_hash_table_insert (services, g_strdup (service), st = g_new0 (ServiceStats, 1));
  g_mutex_unlock (&services_lock);
  return st;
}

void
lmtp_metrics_shadow (const char *service, const char *verdict)
{
  ServiceStats *st = service_stats (service);

  if (st)
    ADD (st->shadow[verdict_index (verdict)], 1);
}

void
lmtp_metrics_callout (const char *service, gint64 us, const char *verdict)
{
  ServiceStats *st = service_stats (service);

  if (st == NULL)
    return;
  observe (&st->latency, (guint64) MAX (us, 0));
  if (verdict == NULL)
    ADD (st->failures, 1);
  else
    ADD (st->verdicts[verdict_index (verdict)], 1);
}

void
lmtp_metrics_directory (const char *backend, gboolean cached, gboolean failed, gint64 us)
{
  BackendStats *st;

  g_mutex_lock (&directories_lock);
  if (directories == NULL)
    directories = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  st = g_hash_table_lookup (directories, backend);
  if (st == NULL)
    g_hash_table_insert (directories, g_strdup (backend), st = g_new0 (BackendStats, 1));
  g_mutex_unlock (&directories_lock);
  ADD (st->lookups, 1);
  if (cached)
    ADD (st->cache_hits, 1);
  if (failed)
    ADD (st->failures, 1);
  if (!cached)
    observe (&st->latency, (guint64) MAX (us, 0));
}

void
lmtp_metrics_sieve_error (const char *kind)
{
  ADD (m.sieve_errors[strcmp (kind, "compile") ? 1 : 0], 1);
}

void
lmtp_metrics_session (int delta)
{
  if (delta > 0)
    ADD (m.sessions_total, 1);
  ADD (m.sessions_active, (guint64) (gint64) delta);
}

void
lmtp_metrics_refused (LmtpRefused why)
{
  ADD (m.refused[why], 1);
}

void
lmtp_metrics_transaction (guint64 bytes)
{
  ADD (m.transactions, 1);
  ADD (m.bytes, bytes);
}

void
lmtp_metrics_rcpt_refused (guint code)
{
  ADD (m.rcpt_refused[code >= 500 ? 1 : 0], 1);
}

void
lmtp_metrics_delivery (guint code, guint64 delay_us, guint64 callout_us)
{
  ADD (m.deliveries[code >= 500 ? 2 : code >= 400 ? 1 : 0], 1);
  observe (&m.delivery, delay_us);
  if (callout_us)
    observe (&m.callout, callout_us);
}

/* @labels: "" or 'service="x",' (with the trailing comma) */
static void
histogram_series (GString *out, const char *name, const char *labels, Histogram *h)
{
  g_autofree char *bare = labels[0] ? g_strndup (labels, strlen (labels) - 1) : g_strdup ("");
  guint64 cum = 0;

  for (guint i = 0; i < N_BUCKETS; i++)
    {
      cum += GET (h->count[i]);
      g_string_append_printf (out, "%s_bucket{%sle=\"%g\"} %" G_GUINT64_FORMAT "\n", name, labels, bucket_le[i], cum);
    }
  cum += GET (h->count[N_BUCKETS]);
  g_string_append_printf (out, "%s_bucket{%sle=\"+Inf\"} %" G_GUINT64_FORMAT "\n", name, labels, cum);
  g_string_append_printf (out, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %" G_GUINT64_FORMAT "\n",
                          name, bare[0] ? "{" : "", bare, bare[0] ? "}" : "", GET (h->sum_us) / 1e6,
                          name, bare[0] ? "{" : "", bare, bare[0] ? "}" : "", GET (h->n));
}

static void
histogram (GString *out, const char *name, const char *help, Histogram *h)
{
  g_string_append_printf (out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  histogram_series (out, name, "", h);
}

/* a label value: backslash, quote and newline escaped */
static char *
label (const char *v)
{
  GString *s = g_string_new (NULL);
  for (const char *p = v; *p; p++)
    {
      if (*p == '\\' || *p == '"')
        g_string_append_c (s, '\\');
      if (*p == '\n')
        g_string_append (s, "\\n");
      else
        g_string_append_c (s, *p);
    }
  return g_string_free (s, FALSE);
}

static void
services_render (GString *out)
{
  GHashTableIter it;
  gpointer k, v;
  GString *fail = g_string_new (NULL), *verdicts = g_string_new (NULL);

  g_string_append (out, "# HELP lmtpd_service_callout_seconds Time each call to a callout service took.\n"
                        "# TYPE lmtpd_service_callout_seconds histogram\n");
  g_mutex_lock (&services_lock);
  if (services)
    {
      g_hash_table_iter_init (&it, services);
      while (g_hash_table_iter_next (&it, &k, &v))
        {
          g_autofree char *l = label (k);
          g_autofree char *labels = g_strdup_printf ("service=\"%s\",", l);
          ServiceStats *st = v;
          histogram_series (out, "lmtpd_service_callout_seconds", labels, &st->latency);
          g_string_append_printf (fail, "lmtpd_service_callout_failures_total{service=\"%s\"} %" G_GUINT64_FORMAT "\n",
                                  l, GET (st->failures));
          for (guint i = 0; i < N_VERDICTS; i++)
            g_string_append_printf (verdicts, "lmtpd_service_verdicts_total{service=\"%s\",verdict=\"%s\"} %"
                                    G_GUINT64_FORMAT "\n", l, verdict_names[i], GET (st->verdicts[i]));
        }
    }
  g_mutex_unlock (&services_lock);
  g_string_append (out, "# HELP lmtpd_service_callout_failures_total Calls to a callout service that failed.\n"
                        "# TYPE lmtpd_service_callout_failures_total counter\n");
  g_string_append_len (out, fail->str, fail->len);
  g_string_free (fail, TRUE);
  g_string_append (out, "# HELP lmtpd_service_verdicts_total Calls to a callout service, by the verdict it gave.\n"
                        "# TYPE lmtpd_service_verdicts_total counter\n");
  g_string_append_len (out, verdicts->str, verdicts->len);
  g_string_free (verdicts, TRUE);
}

/* lmtpd_shadow_verdicts_total: per recipient, what the services in mode
 * = shadow would have done (never applied); only services that have any. */
static void
shadow_render (GString *out)
{
  GHashTableIter it;
  gpointer k, v;

  g_string_append (out, "# HELP lmtpd_shadow_verdicts_total Would-be verdicts of shadow services, per recipient "
                        "(never applied).\n# TYPE lmtpd_shadow_verdicts_total counter\n");
  g_mutex_lock (&services_lock);
  if (services)
    {
      g_hash_table_iter_init (&it, services);
      while (g_hash_table_iter_next (&it, &k, &v))
        {
          ServiceStats *st = v;
          g_autofree char *l = label (k);
          guint64 any = 0;
          for (guint i = 0; i < N_VERDICTS; i++)
            any += GET (st->shadow[i]);
          for (guint i = 0; any && i < N_VERDICTS; i++)
            g_string_append_printf (out, "lmtpd_shadow_verdicts_total{service=\"%s\",verdict=\"%s\"} %"
                                    G_GUINT64_FORMAT "\n", l, verdict_names[i], GET (st->shadow[i]));
        }
    }
  g_mutex_unlock (&services_lock);
}

static void
directories_render (GString *out)
{
  GHashTableIter it;
  gpointer k, v;
  GString *counts = g_string_new (NULL);

  g_string_append (out, "# HELP lmtpd_directory_lookup_seconds Time a user lookup the cache did not answer took.\n"
                        "# TYPE lmtpd_directory_lookup_seconds histogram\n");
  g_mutex_lock (&directories_lock);
  if (directories)
    {
      g_hash_table_iter_init (&it, directories);
      while (g_hash_table_iter_next (&it, &k, &v))
        {
          g_autofree char *labels = g_strdup_printf ("backend=\"%s\",", (const char *) k);
          BackendStats *st = v;
          histogram_series (out, "lmtpd_directory_lookup_seconds", labels, &st->latency);
          g_string_append_printf (counts, "lmtpd_directory_lookups_total{backend=\"%s\",result=\"cached\"} %"
                                  G_GUINT64_FORMAT "\n", (const char *) k, GET (st->cache_hits));
          g_string_append_printf (counts, "lmtpd_directory_lookups_total{backend=\"%s\",result=\"failed\"} %"
                                  G_GUINT64_FORMAT "\n", (const char *) k, GET (st->failures));
          g_string_append_printf (counts, "lmtpd_directory_lookups_total{backend=\"%s\",result=\"all\"} %"
                                  G_GUINT64_FORMAT "\n", (const char *) k, GET (st->lookups));
        }
    }
  g_mutex_unlock (&directories_lock);
  g_string_append (out, "# HELP lmtpd_directory_lookups_total User lookups: all, answered by the cache, failed.\n"
                        "# TYPE lmtpd_directory_lookups_total counter\n");
  g_string_append_len (out, counts->str, counts->len);
  g_string_free (counts, TRUE);
}

static void
counter (GString *out, const char *name, const char *type, const char *help, guint64 v)
{
  g_string_append_printf (out, "# HELP %s %s\n# TYPE %s %s\n%s %" G_GUINT64_FORMAT "\n", name, help, name, type,
                          name, v);
}

char *
lmtp_metrics_render (void)
{
  static const char *const refused[LMTP_REFUSED_N] = { "sessions", "descriptors", "memory" };
  static const char *const classes[3] = { "2xx", "4xx", "5xx" };
  GString *out = g_string_new (NULL);

  counter (out, "lmtpd_sessions_total", "counter", "LMTP sessions accepted.", GET (m.sessions_total));
  counter (out, "lmtpd_sessions_active", "gauge", "LMTP sessions open now.", GET (m.sessions_active));
  g_string_append (out, "# HELP lmtpd_sessions_refused_total Sessions refused with 421, by reason.\n"
                        "# TYPE lmtpd_sessions_refused_total counter\n");
  for (guint i = 0; i < LMTP_REFUSED_N; i++)
    g_string_append_printf (out, "lmtpd_sessions_refused_total{reason=\"%s\"} %" G_GUINT64_FORMAT "\n", refused[i],
                            GET (m.refused[i]));
  counter (out, "lmtpd_transactions_total", "counter", "Transactions whose data was received.", GET (m.transactions));
  counter (out, "lmtpd_received_bytes_total", "counter", "Message bytes received.", GET (m.bytes));
  g_string_append (out, "# HELP lmtpd_deliveries_total Per-recipient results after the data, by reply class.\n"
                        "# TYPE lmtpd_deliveries_total counter\n");
  for (guint i = 0; i < 3; i++)
    g_string_append_printf (out, "lmtpd_deliveries_total{status=\"%s\"} %" G_GUINT64_FORMAT "\n", classes[i],
                            GET (m.deliveries[i]));
  g_string_append (out, "# HELP lmtpd_rcpt_refused_total Recipients refused at RCPT, by reply class.\n"
                        "# TYPE lmtpd_rcpt_refused_total counter\n");
  for (guint i = 0; i < 2; i++)
    g_string_append_printf (out, "lmtpd_rcpt_refused_total{status=\"%s\"} %" G_GUINT64_FORMAT "\n", classes[i + 1],
                            GET (m.rcpt_refused[i]));
  histogram (out, "lmtpd_delivery_seconds", "Time from MAIL to a recipient's reply.", &m.delivery);
  histogram (out, "lmtpd_callout_seconds", "Time a recipient's OPES callouts took.", &m.callout);
  services_render (out);
  shadow_render (out);
  directories_render (out);
  g_string_append_printf (out, "# HELP lmtpd_sieve_errors_total Sieve scripts that failed at delivery (the message "
                               "was kept), by kind.\n# TYPE lmtpd_sieve_errors_total counter\n"
                               "lmtpd_sieve_errors_total{kind=\"compile\"} %" G_GUINT64_FORMAT "\n"
                               "lmtpd_sieve_errors_total{kind=\"runtime\"} %" G_GUINT64_FORMAT "\n",
                          GET (m.sieve_errors[0]), GET (m.sieve_errors[1]));
  return g_string_free (out, FALSE);
}

char *
lmtp_metrics_summary (void)
{
  return g_strdup_printf ("stats: sessions=%" G_GUINT64_FORMAT " active=%" G_GUINT64_FORMAT
                          " refused=%" G_GUINT64_FORMAT " transactions=%" G_GUINT64_FORMAT
                          " delivered=%" G_GUINT64_FORMAT " tempfailed=%" G_GUINT64_FORMAT
                          " rejected=%" G_GUINT64_FORMAT " bytes=%" G_GUINT64_FORMAT,
                          GET (m.sessions_total), GET (m.sessions_active),
                          GET (m.refused[0]) + GET (m.refused[1]) + GET (m.refused[2]), GET (m.transactions),
                          GET (m.deliveries[0]), GET (m.deliveries[1]), GET (m.deliveries[2]), GET (m.bytes));
}

/* ---- HTTP ----------------------------------------------------------------- */

/* The address of a metrics_listen spec (inet:ADDRESS:PORT or unix:PATH). */
static GSocketAddress *
metrics_address (const LmtpdListen *l, GError **error)
{
  g_autoptr (GInetAddress) ip = NULL;

  if (l->kind == LMTPD_LISTEN_UNIX)
    {
      unlink (l->path);
      return g_unix_socket_address_new (l->path);
    }
  ip = g_inet_address_new_from_string (l->host);
  if (ip == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "metrics_listen: '%s' is not an address",
                   l->host);
      return NULL;
    }
  return g_inet_socket_address_new (ip, l->port);
}

GObject *
lmtp_metrics_listen (const char *spec, GError **error)
{
  g_autoptr (GSocketAddress) addr = NULL, bound = NULL;
  GObject *service = NULL;
  LmtpdListen *l = lmtpd_listen_parse (spec, error);

  if (l == NULL)
    return NULL;
  addr = metrics_address (l, error);
  if (addr)
    service = util_metrics_http_new (addr, lmtp_metrics_render, &bound, error);
  if (service && bound && G_IS_INET_SOCKET_ADDRESS (bound))
    g_message ("metrics on http://%s:%u/metrics", l->host,
               g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
  else if (service)
    g_message ("metrics on unix:%s", l->path);
  lmtpd_listen_free (l);
  return service;
}
