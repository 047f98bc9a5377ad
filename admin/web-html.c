/* web-html.c - what every admin page shares: the page around it (one
 * small inline style sheet, no script, no outside resource), escaping
 * (every value goes through g_markup_escape_text, by way of
 * g_markup_vprintf_escaped), forms' CSRF field and error pages.
 */
#include "config.h"

#include <string.h>

#include "web-private.h"

static const char style[] =
  "body{font:14px/1.4 sans-serif;margin:0;color:#222;background:#fafafa}"
  "header{background:#24405c;color:#fff;padding:8px 16px}header a{color:#fff;margin-right:16px}"
  "main{padding:12px 16px}table{border-collapse:collapse;margin:8px 0}"
  "th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#eee}"
  "pre{background:#fff;border:1px solid #ccc;padding:8px;white-space:pre-wrap;max-width:100em}"
  "form.inline{display:inline-block;margin-right:12px}input,button{font:inherit}"
  ".note{background:#e8f4e8;border:1px solid #8c8;padding:6px}.err{background:#fbe9e9;border:1px solid #c88;padding:6px}";

void
web_append_escaped (GString *out, const char *format, ...)
{
  va_list args;
  g_autofree char *text = NULL;

  va_start (args, format);
  text = g_markup_vprintf_escaped (format, args);
  va_end (args);
  g_string_append (out, text);
}

void
web_page_begin (GString *out, const char *title, const WebRequest *req)
{
  web_append_escaped (out,
                      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                      "<meta name=\"viewport\" content=\"width=device-width\"><title>%s - lmtpd</title>",
                      title);
  g_string_append_printf (out, "<style>%s</style></head><body><header><b>lmtpd</b> &nbsp; ", style);
  if (req->who.admin)
    g_string_append (out, "<a href=\"/quarantine\">Quarantine</a><a href=\"/trace\">Trace</a>"
                          "<a href=\"/services\">Services</a>");
  web_append_escaped (out, "</header><main><h1>%s</h1>\n", title);
}

void
web_page_end (GString *out)
{
  g_string_append (out, "</main></body></html>\n");
}

void
web_page_error (WebReply *reply, const WebRequest *req, guint status, const char *text)
{
  g_autofree char *title = g_strdup_printf ("%u %s", status, soup_status_get_phrase (status));

  reply->status = status;
  g_string_truncate (reply->body, 0);
  web_page_begin (reply->body, title, req);
  web_append_escaped (reply->body, "<p class=\"err\">%s</p>", text);
  web_page_end (reply->body);
}

void
web_append_fields (GString *out, const char *id, const char *const *fields, guint n)
{
  if (id)
    web_append_escaped (out, "<table id=\"%s\">", id);
  else
    g_string_append (out, "<table class=\"fields\">");
  for (guint i = 0; i + 1 < n; i += 2)
    web_append_escaped (out, "<tr><th>%s</th><td>%s</td></tr>", fields[i], fields[i + 1] ? fields[i + 1] : "");
  g_string_append (out, "</table>\n");
}

void
web_append_csrf (GString *out, const WebRequest *req)
{
  web_append_escaped (out, "<input type=\"hidden\" name=\"csrf\" value=\"%s\">", req->who.csrf ? req->who.csrf : "");
}

char *
web_format_time (gint64 t)
{
  g_autoptr (GDateTime) dt = t > 0 ? g_date_time_new_from_unix_utc (t) : NULL;

  return dt ? g_date_time_format (dt, "%Y-%m-%d %H:%M:%S UTC") : g_strdup ("-");
}

guint
web_status_of_error (const GError *error)
{
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
    return SOUP_STATUS_NOT_FOUND;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_EXISTS))
    return SOUP_STATUS_CONFLICT;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED))
    return SOUP_STATUS_NOT_IMPLEMENTED;
  /* the records do not answer: try again later */
  return SOUP_STATUS_SERVICE_UNAVAILABLE;
}
