/* learn-tell.c - teaching the external filters, from the learner thread
 * (blocking, with timeouts).
 *
 * spamd: SPAMC/1.5 TELL (spamd runs with --allow-tell):
 *   TELL SPAMC/1.5 / Message-class: spam|ham / Set: local / User: USER /
 *   Content-length: N / (blank) / the message; it answers
 *   "SPAMD/1.1 0 EX_OK" and "DidSet: local" when it learned something.
 * rspamd: POST /learnspam or /learnham on the controller, with the
 *   Password header if one is configured and the user as Deliver-To (for
 *   per-user statistics); 200 is learned, 208 already known.
 */
#include "config.h"

#include <libsoup/soup.h>
#include <string.h>

#include "learn-private.h"
#include "learn-tell.h"
#include "lmtpd-util.h"

#define TELL_TIMEOUT_S 30
#define ANSWER_MAX 4096

static GSocketConnection *
spamd_connect (const char *endpoint, GError **error)
{
  g_autoptr (GSocketClient) client = util_socket_client_new (); /* no proxy resolver */
  g_autoptr (GSocketAddress) addr = NULL;

  g_socket_client_set_timeout (client, TELL_TIMEOUT_S);
  if (g_str_has_prefix (endpoint, "unix:"))
    {
      addr = g_unix_socket_address_new (endpoint + 5);
      return g_socket_client_connect (client, G_SOCKET_CONNECTABLE (addr), NULL, error);
    }
  return g_socket_client_connect_to_host (client, endpoint + 5, 783, NULL, error);
}

/* spamd's answer, up to its end or ANSWER_MAX bytes. */
static char *
spamd_answer (GSocketConnection *conn, GError **error)
{
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (conn));
  GString *s = g_string_new (NULL);
  char buf[1024];
  gssize n = 0;

  while (s->len < ANSWER_MAX && (n = g_input_stream_read (in, buf, sizeof buf, NULL, error)) > 0)
    g_string_append_len (s, buf, n);
  if (n < 0 && s->len == 0)
    {
      g_string_free (s, TRUE);
      return NULL;
    }
  g_clear_error (error);
  return g_string_free (s, FALSE);
}

/* "ok" when spamd set the class, "unchanged" when it knew it already. */
static gboolean
spamd_result (const char *answer, char **result, GError **error)
{
  g_autofree char *first = g_strndup (answer, strcspn (answer, "\r\n"));

  if (!g_str_has_prefix (first, "SPAMD/") || strstr (first, " 0 ") == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "spamd answered '%s'", first);
      return FALSE;
    }
  *result = g_strdup (g_regex_match_simple ("(?mi)^DidSet:\\s*local", answer, 0, 0) ? "ok" : "unchanged");
  return TRUE;
}

gboolean
learn_tell_spamd (const char *endpoint, const char *user, gboolean spam, GBytes *msg, char **result,
                  GError **error)
{
  g_autoptr (GSocketConnection) conn = spamd_connect (endpoint, error);
  g_autofree char *head = NULL, *answer = NULL;
  GOutputStream *out;
  gsize len;
  const char *data = g_bytes_get_data (msg, &len);

  if (conn == NULL)
    return FALSE;
  head = g_strdup_printf ("TELL SPAMC/1.5\r\nMessage-class: %s\r\nSet: local\r\nUser: %s\r\n"
                          "Content-length: %" G_GSIZE_FORMAT "\r\n\r\n", spam ? "spam" : "ham", user, len);
  out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  if (!g_output_stream_write_all (out, head, strlen (head), NULL, NULL, error)
      || !g_output_stream_write_all (out, data, len, NULL, NULL, error))
    return FALSE;
  /* spamd reads Content-length bytes; half-closing says we are done */
  g_socket_shutdown (g_socket_connection_get_socket (conn), FALSE, TRUE, NULL);
  if ((answer = spamd_answer (conn, error)) == NULL)
    return FALSE;
  return spamd_result (answer, result, error);
}

SoupSession *
learn_rspamd_session (void)
{
  /* the controller is configured: straight to it, no system proxy (nor its
   * resolver plugins, which would read the desktop settings of the mail user) */
  return soup_session_new_with_options ("timeout", TELL_TIMEOUT_S, "idle-timeout", 60, "proxy-resolver", NULL, NULL);
}

gboolean
learn_tell_rspamd (SoupSession *session, const LmtpdConfig *config, const char *user, gboolean spam, GBytes *msg,
                   char **result, GError **error)
{
  g_autofree char *url = g_strconcat (config->learn_rspamd, g_str_has_suffix (config->learn_rspamd, "/") ? "" : "/",
                                      spam ? "learnspam" : "learnham", NULL);
  g_autoptr (SoupMessage) m = soup_message_new ("POST", url);
  g_autoptr (GBytes) answer = NULL;
  const char *body;
  gsize body_len;
  guint status;

  if (m == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "rspamd: '%s' is not a URL", url);
      return FALSE;
    }
  if (config->learn_rspamd_password)
    soup_message_headers_append (soup_message_get_request_headers (m), "Password", config->learn_rspamd_password);
  soup_message_headers_append (soup_message_get_request_headers (m), "Deliver-To", user);
  soup_message_set_request_body_from_bytes (m, "message/rfc822", msg);
  if ((answer = soup_session_send_and_read (session, m, NULL, error)) == NULL)
    return FALSE;
  status = soup_message_get_status (m);
  if (status == 200 || status == 208)
    {
      *result = g_strdup (status == 200 ? "ok" : "unchanged");
      return TRUE;
    }
  body = g_bytes_get_data (answer, &body_len);
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "rspamd answered %u %.*s", status, (int) MIN (body_len, 200),
               body ? body : "");
  return FALSE;
}
