/* test-util.c - the generic library: TLS both sides over a socket pair,
 * the error-queue rule, the sanitiser and the GMime header parse. */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/err.h>

#include "lmtpd-util.h"

typedef struct {
  char *dir, *cert, *key;
  int fds[2];
  UtilTls *server, *client;
} Pair;

/* A throw-away self-signed certificate for "localhost" made by openssl(1). */
static void
pair_setup (Pair *p, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  int status = -1;

  (void) data;
  p->dir = g_dir_make_tmp ("test-util-XXXXXX", &error);
  g_assert_no_error (error);
  p->cert = g_build_filename (p->dir, "cert.pem", NULL);
  p->key = g_build_filename (p->dir, "key.pem", NULL);
  {
    const char *argv[] = { "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                           "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                           "-keyout", p->key, "-out", p->cert, NULL };
    g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL
                  | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, &status, &error);
  }
  g_assert_no_error (error);
  g_assert_cmpint (status, ==, 0);
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, p->fds), ==, 0);
  for (int i = 0; i < 2; i++)
    fcntl (p->fds[i], F_SETFL, fcntl (p->fds[i], F_GETFL) | O_NONBLOCK);
}

static void
pair_teardown (Pair *p, gconstpointer data)
{
  (void) data;
  util_tls_free (p->server);
  util_tls_free (p->client);
  close (p->fds[0]);
  close (p->fds[1]);
  unlink (p->cert);
  unlink (p->key);
  rmdir (p->dir);
  g_free (p->cert);
  g_free (p->key);
  g_free (p->dir);
}

/* Both sides of the pair with the given client trust and name. */
static void
pair_sessions (Pair *p, const char *ca_file, const char *name)
{
  g_autoptr (GError) error = NULL;
  UtilTlsContext *s = util_tls_server_context_new (p->cert, p->key, NULL, &error);
  UtilTlsContext *c;

  g_assert_no_error (error);
  c = util_tls_client_context_new (ca_file, NULL, NULL, &error);
  g_assert_no_error (error);
  p->server = util_tls_server_new (s, p->fds[0], &error);
  g_assert_no_error (error);
  p->client = util_tls_client_new (c, p->fds[1], name, &error);
  g_assert_no_error (error);
  /* the sessions hold their own references */
  util_tls_context_free (s);
  util_tls_context_free (c);
}

/* Steps both handshakes until each is done or one fails. */
static gboolean
pair_handshake (Pair *p, GError **client_error)
{
  UtilTlsStatus cs = UTIL_TLS_WANT_READ, ss = UTIL_TLS_WANT_READ;

  for (int round = 0; round < 100; round++)
    {
      if (cs != UTIL_TLS_OK)
        cs = util_tls_handshake (p->client, client_error);
      if (ss != UTIL_TLS_OK && ss != UTIL_TLS_ERROR)
        ss = util_tls_handshake (p->server, NULL);
      if (cs == UTIL_TLS_ERROR)
        return FALSE;
      if (cs == UTIL_TLS_OK && ss == UTIL_TLS_OK)
        return TRUE;
    }
  g_assert_not_reached ();
}

static void
test_tls_round_trip (Pair *p, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *desc = NULL;
  char buf[64];
  gsize n = 0;

  (void) data;
  pair_sessions (p, p->cert, "localhost");
  g_assert_true (pair_handshake (p, &error));
  g_assert_no_error (error);
  g_assert_cmpint (util_tls_write (p->client, "hello", 5, &n, &error), ==, UTIL_TLS_OK);
  g_assert_cmpuint (n, ==, 5);
  g_assert_cmpint (util_tls_read (p->server, buf, sizeof buf, &n, &error), ==, UTIL_TLS_OK);
  g_assert_cmpmem (buf, n, "hello", 5);
  /* nothing more yet: the server must wait for the socket */
  g_assert_cmpint (util_tls_read (p->server, buf, sizeof buf, &n, &error), ==, UTIL_TLS_WANT_READ);
  g_assert_no_error (error);
  desc = util_tls_describe (p->server);
  g_assert_true (g_str_has_prefix (desc, "TLSv1."));
  /* the client closes: the server reads the end */
  util_tls_free (p->client);
  p->client = NULL;
  g_assert_cmpint (util_tls_read (p->server, buf, sizeof buf, &n, &error), ==, UTIL_TLS_CLOSED);
}

/* A certificate for another name fails with a reason, and leaves nothing in
 * OpenSSL's error queue for the next connection on this thread. */
static void
test_tls_wrong_name (Pair *p, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  (void) data;
  pair_sessions (p, p->cert, "mx.example.org");
  g_assert_false (pair_handshake (p, &error));
  g_assert_error (error, UTIL_ERROR, 0);
  g_assert_nonnull (strstr (error->message, "TLS handshake failed: certificate:"));
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
}

/* An untrusted certificate (the system store does not know it). */
static void
test_tls_untrusted (Pair *p, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  (void) data;
  pair_sessions (p, NULL, "localhost");
  g_assert_false (pair_handshake (p, &error));
  g_assert_nonnull (strstr (error->message, "certificate"));
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
}

static void
test_tls_bad_files (void)
{
  g_autoptr (GError) error = NULL;

  g_assert_null (util_tls_server_context_new ("/nonexistent/cert.pem", "/nonexistent/key.pem", NULL, &error));
  g_assert_error (error, UTIL_ERROR, 0);
  g_assert_true (g_str_has_prefix (error->message, "/nonexistent/cert.pem: "));
  g_assert_cmpuint (ERR_peek_error (), ==, 0);
  g_clear_error (&error);
  g_assert_null (util_tls_client_context_new ("/nonexistent/ca.pem", NULL, NULL, &error));
  g_assert_true (g_str_has_prefix (error->message, "TLS setup failed: "));
}

static void
test_sanitize (void)
{
  g_autofree char *a = util_sanitize ("ok text", 100);
  g_autofree char *b = util_sanitize ("bad\r\ninject\x01", 100);
  g_autofree char *c = util_sanitize ("abcdefgh", 4);
  g_autofree char *d = util_sanitize ("\xff\xfe ok", 100);
  g_autofree char *e = util_sanitize (NULL, 10);
  g_assert_cmpstr (a, ==, "ok text");
  g_assert_cmpstr (b, ==, "bad??inject?");
  g_assert_cmpstr (c, ==, "abcd...");
  g_assert_cmpstr (d, ==, "?? ok");
  g_assert_cmpstr (e, ==, "");
}

/* C1 controls (U+009B is a one-character CSI) and ESC are replaced like
 * C0; the record form keeps the caller's line breaks */
static void
test_sanitize_c1 (void)
{
  g_autofree char *a = util_sanitize ("a\xc2\x9b" "31mb\xc2\x85" "c\x1b[0m", 100);
  g_autofree char *b = util_sanitize_record ("one\ntwo\t\xc2\x9b\x1b\r\xc2\xa0");
  g_assert_cmpstr (a, ==, "a?31mb?c?[0m");
  g_assert_cmpstr (b, ==, "one\ntwo\t???\xc2\xa0");
}

/* Runs of plain ASCII are copied whole: the limit still cuts inside a run,
 * and what follows a run (a control, a multibyte character) is still seen */
static void
test_sanitize_runs (void)
{
  g_autofree char *a = util_sanitize ("abc\x01" "defgh", 5);
  g_autofree char *b = util_sanitize ("ab\xc3\xa9" "cdef", 4);
  g_autofree char *c = util_sanitize ("ab\xc3\xa9" "cdef", 3);
  g_autofree char *d = util_sanitize ("\x7f" "x\x80" "y", 100);
  g_autofree char *e = util_sanitize ("exact", 5);
  g_assert_cmpstr (a, ==, "abc?d...");
  g_assert_cmpstr (b, ==, "ab\xc3\xa9...");
  g_assert_cmpstr (c, ==, "ab\xc3\xa9...");
  g_assert_cmpstr (d, ==, "?x?y");
  g_assert_cmpstr (e, ==, "exact");
}

static char *
text_view_of (const char *message, gsize max)
{
  g_autoptr (GMimeStream) stream = g_mime_stream_mem_new_with_buffer (message, strlen (message));
  g_autoptr (GMimeParser) parser = g_mime_parser_new_with_stream (stream);
  g_autoptr (GMimeMessage) m = g_mime_parser_construct_message (parser, NULL);

  g_assert_nonnull (m);
  return util_gmime_text_view (m, max);
}

/* text/plain as it is; HTML as text (tags, scripts, styles gone, entities
 * decoded); attachments and other types skipped; bounded */
static void
test_gmime_text_view (void)
{
  static const struct {
    const char *message;
    const char *want;
  } cases[] = {
    { "Subject: x\n\nplain body\n", "plain body\n" },
    { "Content-Type: text/html\n\n<html><head><style>p{x}</style><SCRIPT>evil()</SCRIPT></head>"
      "<body><p>a &lt;b&gt; &amp; c</p><img src=\"http://x/\"></body></html>", "a <b> & c" },
    { "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\none\n"
      "--b\nContent-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n\nsecret\n"
      "--b\nContent-Type: application/octet-stream\n\nbinary\n--b--\n", "one" },
    { "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9\n",
      "caf\xc3\xa9\n" },
    { "Content-Type: text/html\n\n<p>unclosed <script>never shown", "unclosed " },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *got = text_view_of (cases[i].message, 4096);
      g_assert_cmpstr (got, ==, cases[i].want);
    }
  g_autofree char *big = g_strnfill (100000, 'x');
  g_autofree char *message = g_strdup_printf ("Subject: big\n\n%s\n", big);
  g_autofree char *cut = text_view_of (message, 1000);
  g_assert_cmpuint (strlen (cut), ==, 1000);
}

static void
test_gmime_parse_header (void)
{
  static const char text[] = "Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\nX-Tag: one\n\n";
  g_autoptr (GBytes) h = g_bytes_new_static (text, sizeof text - 1);
  g_autoptr (GMimeMessage) m = util_gmime_parse_header (h);

  g_assert_nonnull (m);
  g_assert_cmpstr (g_mime_message_get_subject (m), ==, "gr\xc3\xbc\xc3\x9f" "e");
  g_assert_cmpstr (g_mime_object_get_header (GMIME_OBJECT (m), "X-Tag"), ==, "one");
  g_assert_null (util_gmime_parse_header (NULL));
}

static void
test_drop_privileges_unprivileged (void)
{
  g_autoptr (GError) error = NULL;

  if (geteuid () == 0)
    {
      /* root without a user to become is refused, not kept */
      g_assert_false (util_drop_privileges (NULL, &error));
      g_assert_nonnull (strstr (error->message, "refusing to run as root"));
      g_clear_error (&error);
      g_assert_false (util_drop_privileges ("root", &error));
      g_assert_nonnull (strstr (error->message, "is root"));
      g_clear_error (&error);
      g_assert_false (util_drop_privileges ("no-such-user-here", &error));
      g_assert_nonnull (strstr (error->message, "no such user"));
      return;
    }
  g_assert_true (util_drop_privileges (NULL, &error));
  g_assert_no_error (error);
}

static char *
render_page (void)
{
  return g_strdup ("up 1\n");
}

typedef struct {
  guint16 port;
  const char *request;
  char *response;
  gboolean done;
} HttpClient;

/* One request from a thread, as a scraper would send it. */
static gpointer
http_client (gpointer data)
{
  HttpClient *c = data;
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn = g_socket_client_connect_to_host (client, "127.0.0.1", c->port, NULL, NULL);
  GString *out = g_string_new (NULL);
  char buf[1024];
  gssize n;

  g_assert_nonnull (conn);
  g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (conn)), c->request,
                             strlen (c->request), NULL, NULL, NULL);
  while ((n = g_input_stream_read (g_io_stream_get_input_stream (G_IO_STREAM (conn)), buf, sizeof buf, NULL,
                                   NULL)) > 0)
    g_string_append_len (out, buf, n);
  c->response = g_string_free (out, FALSE);
  g_atomic_int_set (&c->done, TRUE);
  return NULL;
}

static char *
http_ask (guint16 port, const char *request)
{
  HttpClient c = { port, request, NULL, FALSE };
  GThread *t = g_thread_new ("client", http_client, &c);

  while (!g_atomic_int_get (&c.done))
    g_main_context_iteration (NULL, FALSE);
  g_thread_join (t);
  return c.response;
}

static void
test_metrics_http (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0), bound = NULL;
  GObject *server = util_metrics_http_new (addr, render_page, &bound, &error);
  guint16 port;
  g_autofree char *get = NULL, *head = NULL, *post = NULL, *other = NULL;

  g_assert_no_error (error);
  port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  /* HTTP/1.0 and closed after the answer, even to a 1.1 request */
  get = http_ask (port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  g_assert_true (g_str_has_prefix (get, "HTTP/1.0 200 OK\r\n"));
  g_assert_nonnull (strstr (get, "Content-Length: 5\r\n"));
  g_assert_nonnull (strstr (get, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
  g_assert_true (g_str_has_suffix (get, "\r\n\r\nup 1\n"));
  head = http_ask (port, "HEAD / HTTP/1.0\r\n\r\n");
  g_assert_true (g_str_has_prefix (head, "HTTP/1.0 200 OK\r\n"));
  g_assert_true (g_str_has_suffix (head, "\r\n\r\n"));
  post = http_ask (port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
  g_assert_true (g_str_has_prefix (post, "HTTP/1.0 405 "));
  other = http_ask (port, "GET /etc/passwd HTTP/1.0\r\n\r\n");
  g_assert_true (g_str_has_prefix (other, "HTTP/1.0 404 "));
  util_http_server_free (server);
}

/* util_pid is asked once, and asked again in a forked child (the child's
 * log lines and Maildir names carry its own pid, not its parent's). */
static void
test_pid_after_fork (void)
{
  int status = 0;
  pid_t child;

  g_assert_cmpint (util_pid (), ==, getpid ());
  g_assert_cmpint (util_pid (), ==, getpid ());
  child = fork ();
  g_assert_cmpint (child, >=, 0);
  if (child == 0)
    _exit (util_pid () == getpid () ? 0 : 1);
  g_assert_cmpint (waitpid (child, &status, 0), ==, child);
  g_assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  g_assert_cmpint (util_pid (), ==, getpid ());
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_mime_init ();
  g_test_add ("/util/tls/round-trip", Pair, NULL, pair_setup, test_tls_round_trip, pair_teardown);
  g_test_add ("/util/tls/wrong-name", Pair, NULL, pair_setup, test_tls_wrong_name, pair_teardown);
  g_test_add ("/util/tls/untrusted", Pair, NULL, pair_setup, test_tls_untrusted, pair_teardown);
  g_test_add_func ("/util/tls/bad-files", test_tls_bad_files);
  g_test_add_func ("/util/sanitize", test_sanitize);
  g_test_add_func ("/util/sanitize-c1", test_sanitize_c1);
  g_test_add_func ("/util/sanitize-runs", test_sanitize_runs);
  g_test_add_func ("/util/gmime/parse-header", test_gmime_parse_header);
  g_test_add_func ("/util/gmime/text-view", test_gmime_text_view);
  g_test_add_func ("/util/drop-privileges", test_drop_privileges_unprivileged);
  g_test_add_func ("/util/pid-after-fork", test_pid_after_fork);
  g_test_add_func ("/util/metrics-http", test_metrics_http);
  return g_test_run ();
}
