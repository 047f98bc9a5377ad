/* web-quarantine.c - /quarantine (search), /quarantine/ID (the index row,
 * the stored copy's header and a safe text view) and its actions,
 * POST /quarantine/ID/release (optional "to") and /quarantine/ID/delete,
 * each with the session's CSRF token: the same deliver_quarantine_*
 * calls as lmtpctl quarantine.
 *
 * The stored message is never rendered: its header fields and its text
 * (text/plain parts, HTML as text) are escaped, and at most COPY_READ_MAX
 * bytes of it are read.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "lmtpd-util.h"
#include "web-private.h"

#define COPY_READ_MAX (2 * 1024 * 1024)
#define TEXT_VIEW_MAX (64 * 1024)
#define HEADER_FIELDS_MAX 200

/* ---- the list ------------------------------------------------------------- */

/* "since": a date (YYYY-MM-DD), or hours back ("24h") */
static gint64
parse_since (const char *text)
{
  g_autoptr (GDateTime) dt = NULL;
  g_autofree char *iso = NULL;
  char *end = NULL;
  gint64 hours;

  if (text == NULL || *text == '\0')
    return 0;
  hours = g_ascii_strtoll (text, &end, 10);
  if (end != text && g_ascii_strcasecmp (end, "h") == 0 && hours >= 0)
    return g_get_real_time () / G_USEC_PER_SEC - hours * 3600;
  iso = g_strdup_printf ("%sT00:00:00Z", text);
  dt = g_date_time_new_from_iso8601 (iso, NULL);
  return dt ? g_date_time_to_unix (dt) : -1;
}

/* a search field, NULL when empty */
static const char *
nonempty_field (const WebRequest *req, const char *name)
{
  const char *v = web_request_field (req, name);
  return v && *v ? v : NULL;
}

static const char *
field_or_empty (const WebRequest *req, const char *name)
{
  const char *v = web_request_field (req, name);
  return v ? v : "";
}

static void
search_form (GString *out, const WebRequest *req)
{
  web_append_escaped (out,
                      "<form method=\"get\" action=\"/quarantine\">"
                      "<label>Recipient <input name=\"rcpt\" value=\"%s\"></label> "
                      "<label>Sender <input name=\"sender\" value=\"%s\"></label> "
                      "<label>Service <input name=\"service\" value=\"%s\"></label> "
                      "<label>Text <input name=\"text\" value=\"%s\"></label> "
                      "<label>Since <input name=\"since\" size=\"10\" placeholder=\"YYYY-MM-DD or 24h\" "
                      "value=\"%s\"></label> "
                      "<label><input type=\"checkbox\" name=\"all\" value=\"1\"%s> released and deleted too</label> "
                      "<button type=\"submit\">Search</button></form>\n",
                      field_or_empty (req, "rcpt"), field_or_empty (req, "sender"), field_or_empty (req, "service"),
                      field_or_empty (req, "text"), field_or_empty (req, "since"),
                      web_request_field (req, "all") ? " checked" : "");
}

static void
list_row (GString *out, const DeliverQuarantined *q)
{
  g_autofree char *when = web_format_time (q->created);
  g_autofree char *href = g_uri_escape_string (q->id, NULL, FALSE);

  web_append_escaped (out,
                      "<tr><td><a href=\"/quarantine/%s\">%s</a></td><td>%s</td><td>%s</td><td>%s</td>"
                      "<td>%s</td><td>%" G_GUINT64_FORMAT "</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
                      href, q->id, when, q->recipient, q->sender[0] ? q->sender : "<>",
                      q->subject ? q->subject : "", q->size, q->service, q->reason ? q->reason : "", q->state);
}

void
web_quarantine_list (const WebRequest *req, WebReply *reply)
{
  DeliverQuarantineFilter filter = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) rows = NULL;

  filter.recipient = nonempty_field (req, "rcpt");
  filter.sender = nonempty_field (req, "sender");
  filter.service = nonempty_field (req, "service");
  filter.text = nonempty_field (req, "text");
  filter.all_states = web_request_field (req, "all") != NULL;
  filter.limit = 500;
  if ((filter.since = parse_since (web_request_field (req, "since"))) < 0)
    return web_page_error (reply, req, SOUP_STATUS_BAD_REQUEST, "since: a date YYYY-MM-DD or hours back (24h)");
  if ((rows = deliver_quarantine_list (web_context (req->web), &filter, &error)) == NULL)
    return web_page_error (reply, req, web_status_of_error (error), error->message);
  web_page_begin (reply->body, "Quarantine", req);
  search_form (reply->body, req);
  g_string_append_printf (reply->body, "<p>%u message%s%s</p>\n", rows->len, rows->len == 1 ? "" : "s",
                          rows->len == filter.limit ? " (the newest 500: narrow the search)" : "");
  g_string_append (reply->body, "<table id=\"quarantine\"><tr><th>ID</th><th>Quarantined</th><th>Recipient</th>"
                                "<th>Sender</th><th>Subject</th><th>Size</th><th>Service</th><th>Reason</th>"
                                "<th>State</th></tr>\n");
  for (guint i = 0; i < rows->len; i++)
    list_row (reply->body, rows->pdata[i]);
  g_string_append (reply->body, "</table>\n");
  web_page_end (reply->body);
}

/* ---- one message ---------------------------------------------------------- */

static void
summary_table (GString *out, const DeliverQuarantined *q)
{
  g_autofree char *created = web_format_time (q->created), *expires = web_format_time (q->expires);
  g_autofree char *size = g_strdup_printf ("%" G_GUINT64_FORMAT, q->size);
  g_autofree char *at = web_format_time (q->released_at);
  g_autofree char *released = q->released_by ? g_strdup_printf ("%s by %s to %s", at, q->released_by,
                                                                 q->released_to ? q->released_to : q->recipient)
                                             : NULL;
  const char *const fields[] = {
    "ID", q->id, "State", q->state, "Recipient", q->recipient, "Original recipient", q->original_recipient,
    "Sender", q->sender[0] ? q->sender : "<>", "Subject", q->subject, "Message-ID", q->message_id,
    "Size", size, "Service", q->service, "Reason", q->reason, "Quarantined", created, "Expires", expires,
    "Released", released,
  };

  web_append_fields (out, "summary", fields, released ? G_N_ELEMENTS (fields) : G_N_ELEMENTS (fields) - 2);
}

/* At most COPY_READ_MAX bytes of the stored copy, parsed; NULL if none. */
static GMimeMessage *
stored_copy (const WebRequest *req, const char *id, gboolean *cut)
{
  g_autoptr (GError) error = NULL;
  int fd = deliver_quarantine_open_copy (web_context (req->web), web_config (req->web), id, &error);
  g_autoptr (GByteArray) bytes = NULL;
  g_autoptr (GMimeStream) stream = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  guint8 buf[65536];
  gssize n = 0;

  if (fd < 0)
    return NULL;
  bytes = g_byte_array_new ();
  while (bytes->len < COPY_READ_MAX && (n = read (fd, buf, MIN (sizeof buf, COPY_READ_MAX - bytes->len))) > 0)
    g_byte_array_append (bytes, buf, n);
  *cut = bytes->len >= COPY_READ_MAX;
  close (fd);
  stream = g_mime_stream_mem_new_with_byte_array (g_steal_pointer (&bytes));
  parser = g_mime_parser_new_with_stream (stream);
  return g_mime_parser_construct_message (parser, NULL);
}

static void
header_table (GString *out, GMimeMessage *message)
{
  GMimeHeaderList *list = g_mime_object_get_header_list (GMIME_OBJECT (message));
  int n = g_mime_header_list_get_count (list);

  g_string_append (out, "<h2>Header</h2><table id=\"header\">\n");
  for (int i = 0; i < MIN (n, HEADER_FIELDS_MAX); i++)
    {
      GMimeHeader *h = g_mime_header_list_get_header_at (list, i);
      g_autofree char *name = g_utf8_make_valid (g_mime_header_get_name (h), -1);
      g_autofree char *value = g_utf8_make_valid (g_mime_header_get_value (h) ? g_mime_header_get_value (h) : "", -1);
      web_append_escaped (out, "<tr><th>%s</th><td>%s</td></tr>\n", name, value);
    }
  g_string_append (out, "</table>\n");
  if (n > HEADER_FIELDS_MAX)
    g_string_append_printf (out, "<p>(%d more fields not shown)</p>\n", n - HEADER_FIELDS_MAX);
}

static void
message_view (GString *out, const WebRequest *req, const char *id)
{
  gboolean cut = FALSE;
  g_autoptr (GMimeMessage) message = stored_copy (req, id, &cut);
  g_autofree char *text = NULL;

  if (message == NULL)
    {
      g_string_append (out, "<p>(the stored copy is gone: released, deleted or expired)</p>\n");
      return;
    }
  header_table (out, message);
  text = util_gmime_text_view (message, TEXT_VIEW_MAX);
  web_append_escaped (out, "<h2>Text</h2><p>Text parts only; HTML shown as text.%s</p><pre id=\"text\">%s</pre>\n",
                      cut || strlen (text) >= TEXT_VIEW_MAX ? " (cut short)" : "", text);
}

static void
action_forms (GString *out, const WebRequest *req, const DeliverQuarantined *q)
{
  g_autofree char *href = g_uri_escape_string (q->id, NULL, FALSE);

  if (strcmp (q->state, "held") != 0)
    return;
  web_append_escaped (out, "<form class=\"inline\" method=\"post\" action=\"/quarantine/%s/release\">", href);
  web_append_csrf (out, req);
  g_string_append (out, "<label>to <input name=\"to\" placeholder=\"(the recipient)\"></label> "
                        "<button type=\"submit\" id=\"release\">Release</button></form>");
  web_append_escaped (out, "<form class=\"inline\" method=\"post\" action=\"/quarantine/%s/delete\">", href);
  web_append_csrf (out, req);
  g_string_append (out, "<button type=\"submit\" id=\"delete\">Delete</button></form>\n");
}

static void
show_message (const WebRequest *req, WebReply *reply, const char *id, const char *note)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverQuarantined) q = deliver_quarantine_get (web_context (req->web), id, &error);

  if (q == NULL)
    return web_page_error (reply, req, web_status_of_error (error), error->message);
  web_page_begin (reply->body, "Quarantined message", req);
  if (note)
    web_append_escaped (reply->body, "<p class=\"note\" id=\"note\">%s</p>\n", note);
  summary_table (reply->body, q);
  action_forms (reply->body, req, q);
  message_view (reply->body, req, id);
  web_page_end (reply->body);
}

/* ---- actions -------------------------------------------------------------- */

static char *
release (const WebRequest *req, const char *id, GError **error)
{
  const char *to = web_request_field (req, "to");
  DeliverStatus status = { 0 };
  g_autofree char *log_to = NULL;
  gboolean ok;

  if (to && *to == '\0')
    to = NULL;
  ok = deliver_quarantine_release (web_context (req->web), web_config (req->web), id, to, req->who.who, &status,
                                   error);
  deliver_status_clear (&status);
  if (!ok)
    return NULL;
  log_to = util_sanitize (to ? to : "(recipient)", 200);
  g_message ("admin web action=release id=%s who=%s to=%s", id, req->who.who, log_to);
  return g_strdup_printf ("Released to %s.", to ? to : "its recipient");
}

static char *
delete (const WebRequest *req, const char *id, GError **error)
{
  if (!deliver_quarantine_delete (web_context (req->web), web_config (req->web), id, req->who.who, error))
    return NULL;
  g_message ("admin web action=delete id=%s who=%s", id, req->who.who);
  return g_strdup ("Deleted.");
}

static void
act (const WebRequest *req, WebReply *reply, const char *id, const char *verb)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *note = NULL;

  if (strcmp (req->method, "POST") != 0)
    return web_page_error (reply, req, SOUP_STATUS_METHOD_NOT_ALLOWED, "actions are POST forms");
  if (!web_auth_csrf_ok (&req->who, web_request_field (req, "csrf")))
    return web_page_error (reply, req, SOUP_STATUS_FORBIDDEN, "the form's CSRF token is not this session's");
  note = strcmp (verb, "release") == 0 ? release (req, id, &error) : delete (req, id, &error);
  if (note == NULL)
    return web_page_error (reply, req, web_status_of_error (error), error->message);
  show_message (req, reply, id, note);
}

/* an id as the store makes them (letters, digits, '-', '_'): anything
 * else is no page, and never reaches the store */
static gboolean
id_plausible (const char *id)
{
  gsize n = strlen (id);

  if (n == 0 || n > 64)
    return FALSE;
  for (gsize i = 0; i < n; i++)
    if (!g_ascii_isalnum (id[i]) && id[i] != '-' && id[i] != '_')
      return FALSE;
  return TRUE;
}

/* /quarantine/ID, /quarantine/ID/release, /quarantine/ID/delete */
void
web_quarantine_page (const WebRequest *req, WebReply *reply)
{
  g_auto (GStrv) parts = g_strsplit (req->path + strlen ("/quarantine/"), "/", 3);
  guint n = g_strv_length (parts);

  if (n == 0 || !id_plausible (parts[0]))
    web_page_error (reply, req, SOUP_STATUS_NOT_FOUND, "no such message");
  else if (n == 1)
    show_message (req, reply, parts[0], NULL);
  else if (n == 2 && (strcmp (parts[1], "release") == 0 || strcmp (parts[1], "delete") == 0))
    act (req, reply, parts[0], parts[1]);
  else
    web_page_error (reply, req, SOUP_STATUS_NOT_FOUND, "no such page");
}
