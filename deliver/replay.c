/* replay.c - the recorded callout calls (record.c) read back, and one of
 * them made again for lmtpctl replay: the same request (envelope and the
 * kept copy of the message) through the same OCP client and service
 * settings as callout.c, against the service's servers or another one.
 * Nothing is delivered: only the verdicts come back, per recipient, as
 * callout.c words them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "callout.h"
#include "context.h"
#include "record.h"

void
deliver_recorded_call_free (DeliverRecordedCall *c)
{
  if (c == NULL)
    return;
  g_free (c->id);
  g_free (c->service);
  g_free (c->txn);
  g_free (c->sender);
  g_strfreev (c->recipients);
  g_strfreev (c->verdicts);
  g_free (c->copy);
  g_free (c->envelope);
  g_free (c);
}

static DeliverRecordedCall *
call_from_row (const StateRows *rows, guint i)
{
  DeliverRecordedCall *c = g_new0 (DeliverRecordedCall, 1);

  c->id = g_strdup (state_rows_get (rows, i, 0));
  c->at = g_ascii_strtoll (state_rows_get (rows, i, 1) ?: "0", NULL, 10);
  c->service = g_strdup (state_rows_get (rows, i, 2));
  c->txn = g_strdup (state_rows_get (rows, i, 3));
  c->sender = g_strdup (state_rows_get (rows, i, 4));
  c->recipients = g_strsplit (state_rows_get (rows, i, 5) ?: "", "\n", -1);
  c->verdicts = g_strsplit (state_rows_get (rows, i, 6) ?: "", "\n", -1);
  c->copy = g_strdup (state_rows_get (rows, i, 7));
  c->size = g_ascii_strtoull (state_rows_get (rows, i, 8) ?: "0", NULL, 10);
  c->envelope = g_strdup (state_rows_get (rows, i, 9));
  return c;
}

GPtrArray *
deliver_recorded_calls (DeliverContext *ctx, const char *service, gint64 since, guint limit, GError **error)
{
  g_autofree char *from = g_strdup_printf ("%" G_GINT64_FORMAT, since);
  g_autofree char *most = g_strdup_printf ("%u", limit ? limit : 1000);
  const char *values[3] = { service, from, most };
  g_autoptr (StateRows) rows = NULL;
  GPtrArray *out;

  if (ctx->records == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED, "the records are not open");
      return NULL;
    }
  rows = state_records_query (ctx->records,
                              "SELECT id, at, service, txn, sender, recipients, verdicts, copy, size, envelope"
                              " FROM lmtpd_calls WHERE service = $1 AND at >= $2 ORDER BY at, id LIMIT CAST ($3 AS BIGINT)",
                              3, values, error);
  if (rows == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) deliver_recorded_call_free);
  for (guint i = 0; i < rows->n_rows; i++)
    g_ptr_array_add (out, call_from_row (rows, i));
  return out;
}

static const LmtpdService *
service_named (const LmtpdConfig *config, const char *name, GError **error)
{
  for (guint i = 0; i < config->services->len; i++)
    if (strcmp (((LmtpdService *) config->services->pdata[i])->name, name) == 0)
      return config->services->pdata[i];
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no [service %s] in the configuration", name);
  return NULL;
}

/* "seg-HOUR:OFFSET" into the segment's name and the offset. */
static gboolean
copy_location (const char *copy, char **segment, guint64 *offset)
{
  const char *colon = strchr (copy, ':');
  char *end;

  if (colon == NULL || !g_str_has_prefix (copy, "seg-") || colon == copy + 4
      || strspn (copy + 4, "0123456789") != (gsize) (colon - copy - 4))
    return FALSE;
  *offset = g_ascii_strtoull (colon + 1, &end, 10);
  if (end == colon + 1 || *end != '\0')
    return FALSE;
  *segment = g_strndup (copy, colon - copy);
  return TRUE;
}

/* The kept copy of @call's message: its range of the segment, copied
 * into an unlinked file of its own (the OCP client reads a whole file from
 * its start); -1 with @error. */
static int
open_copy (const LmtpdConfig *config, const DeliverRecordedCall *call, GError **error)
{
  g_autofree char *segment = NULL;
  guint64 offset = 0;
  loff_t in, out = 0;
  int dfd, fd = -1, tmp = -1;
  struct stat st;

  if (!copy_location (call->copy, &segment, &offset))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "call %s: bad copy name", call->id);
      return -1;
    }
  if ((dfd = record_dir_open (config, error)) < 0)
    return -1;
  fd = openat (dfd, segment, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0 && fstat (fd, &st) == 0 && S_ISREG (st.st_mode) && offset + call->size <= (guint64) st.st_size)
    tmp = openat (dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  close (dfd);
  for (in = (loff_t) offset; tmp >= 0 && out < (loff_t) call->size;)
    {
      ssize_t n = copy_file_range (fd, &in, tmp, &out, call->size - out, 0);
      if (n > 0 || (n < 0 && errno == EINTR))
        continue;
      close (tmp);
      tmp = -1;
    }
  if (fd >= 0)
    close (fd);
  if (tmp >= 0)
    return tmp;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "call %s: its copy of the message has expired", call->id);
  return -1;
}

static char **
verdicts_for (const DeliverRecordedCall *call, const OcpVerdict *v)
{
  guint n = g_strv_length (call->recipients);
  char **out = g_new0 (char *, n + 1);

  for (guint i = 0; i < n; i++)
    out[i] = g_strdup (callout_rcpt_verdict_word (v, call->recipients[i]));
  return out;
}

char **
deliver_replay_call (DeliverContext *ctx, const LmtpdConfig *config, const DeliverRecordedCall *call,
                     const char *server, GError **error)
{
  const LmtpdService *sv = service_named (config, call->service, error);
  char *servers[2] = { (char *) server, NULL };
  RecordEnvelope env;
  OcpServiceConfig sc;
  OcpVerdict v;
  char **out = NULL;

  if (sv == NULL || !record_envelope_parse (call->envelope ?: "", &env, error))
    return NULL;
  callout_service_config (sv, &sc);
  if (server)
    sc.servers = servers;
  if (call->copy && (env.req.fd = open_copy (config, call, error)) < 0)
    {
      record_envelope_clear (&env);
      return NULL;
    }
  env.req.body_len = call->copy ? call->size - MIN (env.req.header_len, call->size) : 0;
  ocp_verdict_init (&v);
  if (ocp_client_call (ctx->ocp, &sc, &env.req, &v, error))
    out = verdicts_for (call, &v);
  ocp_verdict_clear (&v);
  if (env.req.fd >= 0)
    close (env.req.fd);
  record_envelope_clear (&env);
  return out;
}
