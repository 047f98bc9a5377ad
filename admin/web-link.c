/* web-link.c - /u/release?id=..&exp=..&sig=..: a user's signed link (the
 * digest's release links; lmtpctl quarantine link prints one).  GET shows
 * that one message's summary and a Release button; POST (the same three
 * fields) releases it to its recipient, once.  A forged, altered or
 * expired link gets 403 and nothing else: not even whether the id exists.
 */
#include "config.h"

#include <string.h>

#include "web-private.h"

static void
summary (GString *out, const DeliverQuarantined *q)
{
  g_autofree char *created = web_format_time (q->created);
  g_autofree char *size = g_strdup_printf ("%" G_GUINT64_FORMAT, q->size);
  g_autofree char *why = g_strdup_printf ("%s%s%s", q->service, q->reason ? ": " : "", q->reason ? q->reason : "");
  const char *const fields[] = {
    "To", q->recipient, "From", q->sender[0] ? q->sender : "<>", "Subject", q->subject,
    "Held since", created, "Size", size, "Why", why,
  };

  web_append_fields (out, "summary", fields, G_N_ELEMENTS (fields));
}

static void
release_form (GString *out, const WebRequest *req)
{
  web_append_escaped (out,
                      "<form method=\"post\" action=\"/u/release\"><input type=\"hidden\" name=\"id\" value=\"%s\">"
                      "<input type=\"hidden\" name=\"exp\" value=\"%s\"><input type=\"hidden\" name=\"sig\" "
                      "value=\"%s\"><button type=\"submit\" id=\"release\">Release to my mailbox</button></form>\n",
                      web_request_field (req, "id"), web_request_field (req, "exp"), web_request_field (req, "sig"));
}

static void
release (const WebRequest *req, WebReply *reply, const DeliverQuarantined *q)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *who = g_strdup_printf ("link:%s", q->recipient);
  DeliverStatus status = { 0 };
  gboolean ok = deliver_quarantine_release (web_context (req->web), web_config (req->web), q->id, NULL, who,
                                            &status, &error);

  deliver_status_clear (&status);
  if (!ok)
    {
      web_page_error (reply, req, web_status_of_error (error), error->message);
      return;
    }
  g_message ("admin web action=release id=%s who=%s", q->id, who);
  web_page_begin (reply->body, "Released", req);
  web_append_escaped (reply->body, "<p class=\"note\" id=\"note\">Released to %s.</p>\n", q->recipient);
  web_page_end (reply->body);
}

void
web_link_page (const WebRequest *req, WebReply *reply)
{
  const char *id = web_request_field (req, "id");
  const char *why = admin_link_refusal (web_link_secret (req->web), id, web_request_field (req, "exp"),
                                        web_request_field (req, "sig"));
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverQuarantined) q = NULL;

  if (why)
    {
      web_page_error (reply, req, SOUP_STATUS_FORBIDDEN, why);
      return;
    }
  if ((q = deliver_quarantine_get (web_context (req->web), id, &error)) == NULL)
    {
      web_page_error (reply, req, web_status_of_error (error), error->message);
      return;
    }
  if (strcmp (req->method, "POST") == 0)
    {
      release (req, reply, q);
      return;
    }
  web_page_begin (reply->body, "A message held for you", req);
  summary (reply->body, q);
  if (strcmp (q->state, "held") == 0)
    release_form (reply->body, req);
  else
    web_append_escaped (reply->body, "<p>This message was %s.</p>\n", q->state);
  web_page_end (reply->body);
}
