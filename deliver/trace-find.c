/* trace-find.c - the decision traces read back (lmtpctl trace, the admin
 * web page): found by Message-ID, transaction id or the MTA's queue id,
 * and printed recipient by recipient, each step on its own line.
 * decision-trace.c writes them.
 */
#include "config.h"

#include <string.h>

#include "decision-trace.h"

#define MAX_TRACES "1000"

void
deliver_trace_free (DeliverTrace *t)
{
  if (t == NULL)
    return;
  g_free (t->txn);
  g_free (t->recipient);
  g_free (t->message_id);
  g_free (t->queue_id);
  g_free (t->sender);
  g_free (t->reply);
  g_free (t->folder);
  g_strfreev (t->steps);
  g_free (t);
}

/* Row @i of the SELECT below: its text columns in order, "at" (2) a number. */
static DeliverTrace *
trace_from_row (const StateRows *rows, guint i)
{
  DeliverTrace *t = g_new0 (DeliverTrace, 1);
  char **text[] = { &t->txn, &t->recipient, NULL, &t->message_id, &t->queue_id, &t->sender, &t->reply, &t->folder };
  const char *at = state_rows_get (rows, i, 2), *steps = state_rows_get (rows, i, 8);

  for (guint c = 0; c < G_N_ELEMENTS (text); c++)
    if (text[c])
      *text[c] = g_strdup (state_rows_get (rows, i, c));
  t->at = at ? g_ascii_strtoll (at, NULL, 10) : 0;
  t->steps = steps && steps[0] ? g_strsplit (steps, "\n", -1) : g_new0 (char *, 1);
  return t;
}

GPtrArray *
deliver_trace_find (DeliverContext *ctx, const char *id, GError **error)
{
  StateRecords *records = deliver_context_records (ctx);
  g_autofree char *message_id = decision_trace_message_id (id);
  g_autofree char *now = g_strdup_printf ("%" G_GINT64_FORMAT, g_get_real_time () / G_USEC_PER_SEC);
  const char *values[] = { message_id, id, now };
  g_autoptr (StateRows) rows = NULL;
  GPtrArray *traces;

  if (records == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED, "the records are not open");
      return NULL;
    }
  rows = state_records_query (records,
                              "SELECT txn, recipient, at, message_id, queue_id, sender, reply, folder, steps"
                              " FROM lmtpd_trace WHERE (message_id = $1 OR txn = $2 OR queue_id = $2)"
                              " AND expires >= $3 ORDER BY at, txn, recipient LIMIT " MAX_TRACES,
                              G_N_ELEMENTS (values), values, error);
  if (rows == NULL)
    return NULL;
  traces = g_ptr_array_new_with_free_func ((GDestroyNotify) deliver_trace_free);
  for (guint i = 0; i < rows->n_rows; i++)
    g_ptr_array_add (traces, trace_from_row (rows, i));
  return traces;
}

/* The message's line, when it differs from the one before. */
static void
format_message (GString *out, const DeliverTrace *t)
{
  g_string_append_printf (out, "transaction %s", t->txn);
  if (t->queue_id)
    g_string_append_printf (out, " queue_id=%s", t->queue_id);
  if (t->message_id)
    g_string_append_printf (out, " message_id=<%s>", t->message_id);
  if (t->sender)
    g_string_append_printf (out, " from=<%s>", t->sender);
  g_string_append_c (out, '\n');
}

static void
format_recipient (GString *out, const DeliverTrace *t)
{
  g_autoptr (GDateTime) at = g_date_time_new_from_unix_utc (t->at);
  g_autofree char *when = at ? g_date_time_format (at, "%Y-%m-%d %H:%M:%S UTC") : g_strdup ("?");
  guint n = 0;

  g_string_append_printf (out, "  <%s> at %s\n", t->recipient, when);
  for (guint i = 0; t->steps[i]; i++)
    if (t->steps[i][0])
      g_string_append_printf (out, "    %u. %s\n", ++n, t->steps[i]);
  g_string_append_printf (out, "    reply: %s\n", t->reply ? t->reply : "-");
  if (t->folder)
    g_string_append_printf (out, "    folder: %s\n", t->folder);
}

char *
deliver_trace_format (GPtrArray *traces)
{
  GString *out = g_string_new (NULL);
  const char *txn = NULL;

  for (guint i = 0; traces && i < traces->len; i++)
    {
      const DeliverTrace *t = traces->pdata[i];
      if (g_strcmp0 (txn, t->txn) != 0)
        format_message (out, t);
      txn = t->txn;
      format_recipient (out, t);
    }
  return g_string_free (out, FALSE);
}
