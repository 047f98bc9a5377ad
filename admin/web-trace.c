/* web-trace.c - /trace?id=X: the decision traces of a Message-ID,
 * transaction id or queue id (deliver_trace_find, as lmtpctl trace), one
 * table per recipient with its steps in order.
 */
#include "config.h"

#include "web-private.h"

static void
trace_table (GString *out, const DeliverTrace *t)
{
  g_autofree char *at = web_format_time (t->at);
  const char *const fields[] = {
    "Transaction", t->txn, "Time", at, "Sender", t->sender, "Message-ID", t->message_id,
    "Queue id", t->queue_id, "Reply", t->reply, "Folder", t->folder,
  };

  web_append_escaped (out, "<h2>%s</h2>", t->recipient);
  web_append_fields (out, NULL, fields, G_N_ELEMENTS (fields));
  g_string_append (out, "<table class=\"steps\"><tr><th>#</th><th>Step</th></tr>\n");
  for (guint i = 0; t->steps && t->steps[i]; i++)
    web_append_escaped (out, "<tr><td>%u</td><td>%s</td></tr>\n", i + 1, t->steps[i]);
  g_string_append (out, "</table>\n");
}

void
web_trace_page (const WebRequest *req, WebReply *reply)
{
  const char *id = web_request_field (req, "id");
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) traces = NULL;

  if (id && *id && (traces = deliver_trace_find (web_context (req->web), id, &error)) == NULL)
    {
      web_page_error (reply, req, web_status_of_error (error), error->message);
      return;
    }
  web_page_begin (reply->body, "Decision trace", req);
  web_append_escaped (reply->body,
                      "<form method=\"get\" action=\"/trace\"><label>Message-ID, transaction or queue id "
                      "<input name=\"id\" size=\"50\" value=\"%s\"></label> <button type=\"submit\">Show</button>"
                      "</form>\n",
                      id ? id : "");
  if (traces && traces->len == 0)
    g_string_append (reply->body, "<p>No trace for this id (or it has expired).</p>\n");
  for (guint i = 0; traces && i < traces->len; i++)
    trace_table (reply->body, traces->pdata[i]);
  web_page_end (reply->body);
}
