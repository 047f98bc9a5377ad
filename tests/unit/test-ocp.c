/* test-ocp.c - the OCP codec against byte-exact vectors built from the
 * RFC 4037 ABNF (the RFC's printed examples have wrong sizes), the
 * profile's verdict encoding, and the client against the server library
 * over a real socket. */
#include "config.h"

#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "ocp.h"

static OcpMessage *
parse_one (const char *wire, gsize len)
{
  g_autoptr (GError) error = NULL;
  OcpMessage *m = NULL;
  gsize used = 0;

  g_assert_cmpint (ocp_message_parse (wire, len, NULL, &m, &used, &error), ==, OCP_PARSE_OK);
  g_assert_no_error (error);
  g_assert_cmpuint (used, ==, len);
  return m;
}

static char *
write_one (const OcpMessage *m)
{
  GString *s = g_string_new (NULL);
  ocp_message_write (m, s);
  return g_string_free (s, FALSE);
}

static void
test_vectors (void)
{
  /* each parses and serializes back to exactly the same bytes */
  static const char *vectors[] = {
    "CS;\r\n",
    "TS 7 1;\r\n",
    "NR\r\nOffer-Pending: true\r\n;\r\n",
    "DUM 7 0\r\n5:hello\r\n;\r\n",
    "DUM 7 5\r\nModp: 0\r\n\r\n3:abc\r\n;\r\n",
    "NO ({\"53:http://www.iana.org/assignments/opes/ocp/http/request\"})\r\nSG: 11\r\n;\r\n",
    "AME 10 {200 OK};\r\n",
    "TE 55 {400 \"33:lack of VolStore protocol support\"};\r\n",
    "DUM 88 65\r\nKept: 65 64\r\nAM-Part: request-header\r\n\r\n3:x\ny\r\n;\r\n",
    "NR {\"27:urn:x-opes-lmtpd:ocp:lmtp:1\"\r\nParts: (envelope,message-header)\r\n};\r\n",
    "SGC 1 ({\"8:urn:test\"},{x\r\nA: b\r\n});\r\n",
    "NO ();\r\n",
    "AMS 1\r\nEmpty: \"0:\"\r\n;\r\n",
    "DUM 1 0\r\n0:\r\n;\r\n",
  };

  for (guint i = 0; i < G_N_ELEMENTS (vectors); i++)
    {
      g_autoptr (OcpMessage) m = parse_one (vectors[i], strlen (vectors[i]));
      g_autofree char *back = write_one (m);
      g_test_message ("vector %u", i);
      g_assert_cmpstr (back, ==, vectors[i]);
    }
}

static void
test_structure (void)
{
  const char *wire = "DUM 88 65\r\nKept: 65 64\r\nAM-Part: request-header\r\n\r\n3:abc\r\n;\r\n";
  g_autoptr (OcpMessage) m = parse_one (wire, strlen (wire));
  const OcpNamed *kept = ocp_message_named (m, "Kept");
  guint64 v;
  gsize n;

  g_assert_cmpstr (m->name, ==, "DUM");
  g_assert_true (ocp_message_anon_uint (m, 0, &v) && v == 88);
  g_assert_true (ocp_message_anon_uint (m, 1, &v) && v == 65);
  g_assert_cmpuint (kept->values->len, ==, 2);
  g_assert_cmpstr (ocp_value_get_atom (ocp_message_get (m, "AM-Part")), ==, "request-header");
  g_assert_cmpmem (g_bytes_get_data (m->payload, &n), 3, "abc", 3);
  /* a bare value and the same value quoted are the same */
  {
    g_autoptr (OcpMessage) a = parse_one ("TS 1234 1;\r\n", 12);
    g_autoptr (OcpMessage) b = parse_one ("TS \"4:1234\" 1;\r\n", 16);
    g_assert_cmpstr (ocp_value_get_atom (ocp_message_anon (a, 0)), ==,
                     ocp_value_get_atom (ocp_message_anon (b, 0)));
  }
  /* quoted values may hold anything, CRLF and quotes included */
  {
    const char *q = "X \"6:a\"\r\n;b\";\r\n";
    g_autoptr (OcpMessage) x = parse_one (q, strlen (q));
    g_assert_cmpstr (ocp_value_get_atom (ocp_message_anon (x, 0)), ==, "a\"\r\n;b");
  }
}

static void
test_incremental (void)
{
  const char *wire = "DUM 7 5\r\nModp: 0\r\n\r\n10:0123456789\r\n;\r\nTS 8 1;\r\n";
  gsize first = strlen ("DUM 7 5\r\nModp: 0\r\n\r\n10:0123456789\r\n;\r\n");

  for (gsize cut = 0; cut < first; cut++)
    {
      OcpMessage *m = NULL;
      gsize used = 0;
      g_autoptr (GError) error = NULL;
      g_assert_cmpint (ocp_message_parse (wire, cut, NULL, &m, &used, &error), ==, OCP_PARSE_MORE);
      g_assert_null (m);
    }
  {
    OcpMessage *m = NULL;
    gsize used = 0;
    g_assert_cmpint (ocp_message_parse (wire, strlen (wire), NULL, &m, &used, NULL), ==, OCP_PARSE_OK);
    g_assert_cmpuint (used, ==, first);
    ocp_message_free (m);
  }
}

static void
test_invalid (void)
{
  static const char *bad[] = {
    "cs ;\r\n",                    /* no implied whitespace */
    "1CS;\r\n",                    /* names start with a letter */
    "X \"05:abcde\";\r\n",         /* sizes have no leading zeros */
    "X \"2147483648:a\";\r\n",     /* sizes stop at 2147483647 */
    "X \"5:abc\";\r\n",            /* quoted size lies */
    "X (a,b;\r\n",                 /* unterminated list */
    "X\r\nA: 1\r\nA: 2\r\n;\r\n",  /* a name repeated */
    "X { 200 OK };\r\n",           /* spaces inside a structure */
    "X;\n",                        /* bare LF */
    "X\r\nbad\r\n;\r\n",           /* named without ': ' */
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      OcpMessage *m = NULL;
      gsize used;
      g_autoptr (GError) error = NULL;
      g_test_message ("bad %u", i);
      g_assert_cmpint (ocp_message_parse (bad[i], strlen (bad[i]), NULL, &m, &used, &error), ==,
                       OCP_PARSE_ERROR);
      g_assert_nonnull (error);
    }
}

static void
test_numbers (void)
{
  /* "07" is a fine atom, but not a dec-number: an xid must be one */
  g_autoptr (OcpMessage) a = parse_one ("TS 07 1;\r\n", 10);
  g_autoptr (OcpMessage) b = parse_one ("TS 2147483648 1;\r\n", 18);
  g_autoptr (OcpMessage) c = parse_one ("TS 2147483647 0;\r\n", 18);
  guint64 v;
  g_assert_false (ocp_message_anon_uint (a, 0, &v));
  g_assert_false (ocp_message_anon_uint (b, 0, &v));
  g_assert_true (ocp_message_anon_uint (c, 0, &v) && v == 2147483647);
  g_assert_true (ocp_message_anon_uint (c, 1, &v) && v == 0);
}

/* CE, AME and TE carry a result: {code} or {code reason} (RFC 4037 3.5) */
static void
test_result (void)
{
  static const struct {
    guint code;
    const char *reason;
    const char *wire;
  } cases[] = {
    { 400, NULL, "TE 1 {400};\r\n" },
    { 206, "stopped at the server's request", "TE 1 {206 \"31:stopped at the server's request\"};\r\n" },
    { 400, "timed out", "TE 1 {400 \"9:timed out\"};\r\n" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (OcpMessage) m = ocp_message_add (ocp_message_add_uint (ocp_message_new ("TE"), 1),
                                                  ocp_result_new (cases[i].code, cases[i].reason));
      g_autoptr (GString) out = g_string_new (NULL);
      ocp_message_write (m, out);
      g_assert_cmpstr (out->str, ==, cases[i].wire);
    }
}

static void
test_limits (void)
{
  GString *deep = g_string_new ("X ");
  OcpLimits small = ocp_default_limits;
  OcpMessage *m = NULL;
  gsize used;
  g_autoptr (GError) error = NULL;

  for (int i = 0; i < 100; i++)
    g_string_append_c (deep, '(');
  for (int i = 0; i < 100; i++)
    g_string_append_c (deep, ')');
  g_string_append (deep, ";\r\n");
  g_assert_cmpint (ocp_message_parse (deep->str, deep->len, NULL, &m, &used, &error), ==, OCP_PARSE_ERROR);
  g_assert_error (error, OCP_ERROR, OCP_ERROR_LIMIT);
  g_clear_error (&error);
  g_string_free (deep, TRUE);
  small.max_payload = 4;
  g_assert_cmpint (ocp_message_parse ("DUM 1 0\r\n5:hello\r\n;\r\n", 21, &small, &m, &used, &error), ==,
                   OCP_PARSE_ERROR);
  g_assert_error (error, OCP_ERROR, OCP_ERROR_LIMIT);
}

static void
test_verdict_roundtrip (void)
{
  OcpVerdict v, w;
  g_autoptr (OcpMessage) ams = ocp_message_add_uint (ocp_message_new ("AMS"), 3);
  g_autofree char *wire = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (OcpMessage) back = NULL;

  ocp_verdict_init (&v);
  v.verdict = OCP_VERDICT_REJECT;
  v.reply_code = 550;
  v.reply_text = g_strdup ("5.7.1 No thanks");
  v.subject_tag = g_strdup ("[SPAM] ");
  v.add_headers = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (v.add_headers, g_strdup ("X-Spam: yes"));
  v.flags = g_strdup ("FS");
  ocp_verdict_to_message (&v, ams);
  wire = write_one (ams);
  back = parse_one (wire, strlen (wire));
  ocp_verdict_init (&w);
  g_assert_true (ocp_verdict_from_message (&w, back, &error));
  g_assert_cmpint (w.verdict, ==, OCP_VERDICT_REJECT);
  g_assert_cmpuint (w.reply_code, ==, 550);
  g_assert_cmpstr (w.reply_text, ==, "5.7.1 No thanks");
  g_assert_cmpstr (w.subject_tag, ==, "[SPAM] ");
  g_assert_cmpstr (w.add_headers->pdata[0], ==, "X-Spam: yes");
  g_assert_cmpstr (w.flags, ==, "FS");
  ocp_verdict_clear (&v);
  ocp_verdict_clear (&w);
  /* header injection through a verdict is refused */
  {
    const char *evil = "AMS 1\r\nAdd-Headers: (\"12:X: a\r\nBcc: x\")\r\n;\r\n";
    g_autoptr (OcpMessage) e = parse_one (evil, strlen (evil));
    ocp_verdict_init (&w);
    g_assert_false (ocp_verdict_from_message (&w, e, &error));
    ocp_verdict_clear (&w);
  }
}

/* ---- client against server --------------------------------------------- */

typedef struct {
  GMainContext *ctx;
  GMainLoop *loop;
  OcpServer *server;
  guint16 port;
  GMutex lock;
  GCond cond;
  gboolean ready;
  guint64 body_seen;
  gboolean body_in_memory;  /* the last call's body was held in memory */
  GByteArray *body;         /* the last call's body, as its file gives it */
} Peer;

/* What the handler sees of the body: in memory when small (and then the
 * file made for ocp_server_txn_body_fd holds the same bytes), in a file
 * when large. */
static void
note_body (Peer *p, OcpServerTxn *t)
{
  g_autoptr (GBytes) mem = ocp_server_txn_body (t);
  guint64 len = 0, off = 0;
  int fd = ocp_server_txn_body_fd (t, &len);
  char buf[65536];
  gssize n;

  p->body_seen += len;
  p->body_in_memory = mem != NULL;
  g_byte_array_set_size (p->body, 0);
  while (fd >= 0 && (n = pread (fd, buf, sizeof buf, off)) > 0)
    {
      g_byte_array_append (p->body, (guint8 *) buf, n);
      off += n;
    }
  g_assert_cmpuint (p->body->len, ==, len);
  if (mem)
    g_assert_cmpmem (g_bytes_get_data (mem, NULL), g_bytes_get_size (mem), p->body->data, p->body->len);
}

static gboolean
respond_later (gpointer data)
{
  OcpServerTxn *t = data;
  OcpVerdict v;
  ocp_verdict_init (&v);
  ocp_server_txn_respond (t, &v, NULL, -1);
  ocp_server_txn_unref (t);
  return G_SOURCE_REMOVE;
}

static void
peer_handle (OcpServerTxn *t, gpointer data)
{
  Peer *p = data;
  GHashTable *env = ocp_server_txn_envelope (t);
  const char *rcpt = g_hash_table_lookup (env, "Rcpt-To");
  OcpVerdict v;

  note_body (p, t);
  ocp_verdict_init (&v);
  if (g_str_has_prefix (rcpt, "slow@"))
    {
      GSource *src = g_timeout_source_new (300);
      g_source_set_callback (src, respond_later, ocp_server_txn_ref (t), NULL);
      g_source_attach (src, g_main_context_get_thread_default ());
      g_source_unref (src);
      return;
    }
  if (g_str_has_prefix (rcpt, "reject@"))
    {
      v.verdict = OCP_VERDICT_REJECT;
      v.reply_code = 554;
      v.reply_text = g_strdup ("5.7.1 go away");
      ocp_server_txn_respond (t, &v, NULL, -1);
    }
  else if (g_str_has_prefix (rcpt, "header@"))
    {
      g_autoptr (GBytes) h = g_bytes_new_static ("X-Adapted: yes\nSubject: s\n\n", 27);
      ocp_server_txn_respond (t, &v, h, -1);
    }
  else
    ocp_server_txn_respond (t, &v, NULL, -1);
  ocp_verdict_clear (&v);
}

static gpointer
peer_thread (gpointer data)
{
  Peer *p = data;
  g_main_context_push_thread_default (p->ctx);
  p->server = ocp_server_new (OCP_PARTS_ALL, peer_handle, p);
  g_assert_true (ocp_server_listen (p->server, "inet:127.0.0.1:0", &p->port, NULL));
  g_mutex_lock (&p->lock);
  p->ready = TRUE;
  g_cond_signal (&p->cond);
  g_mutex_unlock (&p->lock);
  g_main_loop_run (p->loop);
  ocp_server_free (p->server);
  g_main_context_pop_thread_default (p->ctx);
  return NULL;
}

typedef struct {
  OcpClient *cl;
  const OcpServiceConfig *svc;
  const OcpRequest *req;
} CallArgs;

static gpointer
call_thread (gpointer data)
{
  CallArgs *ca = data;
  OcpVerdict v;
  gboolean ok = ocp_client_call (ca->cl, ca->svc, ca->req, &v, NULL);
  ocp_verdict_clear (&v);
  g_free (ca);
  return GINT_TO_POINTER (ok);
}

static void
ignore_txn (OcpServerTxn *t, gpointer data)
{
}

/* A server freed (as ocp-services' reload does) while a connection is
 * open: the connection ends with it, nothing calls back into the freed
 * server when the peer writes afterwards (ASan saw a use after free). */
static void
test_server_free_with_open_connection (void)
{
  OcpServer *server = ocp_server_new (OCP_PARTS_ALL, ignore_txn, NULL);
  guint16 port = 0;
  g_autoptr (GSocketClient) sc = g_socket_client_new ();
  g_autoptr (GSocketConnection) conn = NULL;
  g_autofree char *addr = NULL;
  GOutputStream *out;
  gint64 until;

  g_assert_true (ocp_server_listen (server, "inet:127.0.0.1:0", &port, NULL));
  addr = g_strdup_printf ("127.0.0.1:%u", port);
  conn = g_socket_client_connect_to_host (sc, addr, 0, NULL, NULL);
  g_assert_nonnull (conn);
  until = g_get_monotonic_time () + G_USEC_PER_SEC / 5;
  while (g_get_monotonic_time () < until)
    g_main_context_iteration (NULL, FALSE); /* accepted, CS sent */
  ocp_server_free (server);
  out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  g_output_stream_write_all (out, "CS;\nNO ( \"x\" );\n", 17, NULL, NULL, NULL);
  until = g_get_monotonic_time () + G_USEC_PER_SEC / 5;
  while (g_get_monotonic_time () < until)
    g_main_context_iteration (NULL, FALSE);
}

/* A small body is held in memory, byte for byte. */
static void
small_body_in_memory (OcpClient *cl, const OcpServiceConfig *svc, Peer *p)
{
  const char *msg = "Subject: s\n\nsmall body\r\n.. dots\n";
  const char *rcpts[2] = { "ok@example.org", NULL };
  OcpRequest req = { "data", "T2", "127.0.0.1", "mx", "a@b.example", NULL, rcpts, NULL, 0, NULL };
  g_autofree char *path = NULL;
  OcpVerdict v;
  int fd = g_file_open_tmp ("ocp-test-XXXXXX", &path, NULL);

  g_unlink (path);
  g_assert_cmpint (write (fd, msg, strlen (msg)), ==, (gssize) strlen (msg));
  req.fd = fd;
  req.header_len = 12;
  req.body_len = strlen (msg) - 12;
  g_assert_true (ocp_client_call (cl, svc, &req, &v, NULL));
  ocp_verdict_clear (&v);
  g_assert_true (p->body_in_memory);
  g_assert_cmpmem (p->body->data, p->body->len, msg + 12, strlen (msg) - 12);
  close (fd);
}

static void
test_client_server (void)
{
  Peer p = { 0 };
  GThread *th;
  g_autofree char *endpoint = NULL, *spool = NULL;
  char *servers[2] = { NULL, NULL };
  OcpServiceConfig svc = { "test", "urn:test:svc", servers, OCP_PARTS_ALL, 1000, 2000, 5000, 2 };
  const char *header = "Subject: s\n\n";
  GString *body = g_string_new (NULL);
  const char *rcpts[2] = { NULL, NULL };
  OcpRequest req = { "data", "T1", "127.0.0.1", "mx", "a@b.example", NULL, rcpts, NULL, 0, NULL };
  OcpClient *cl = ocp_client_new ();
  OcpVerdict v;
  g_autoptr (GError) error = NULL;
  int fd;

  p.body = g_byte_array_new ();
  p.ctx = g_main_context_new ();
  p.loop = g_main_loop_new (p.ctx, FALSE);
  g_mutex_init (&p.lock);
  g_cond_init (&p.cond);
  th = g_thread_new ("peer", peer_thread, &p);
  g_mutex_lock (&p.lock);
  while (!p.ready)
    g_cond_wait (&p.cond, &p.lock);
  g_mutex_unlock (&p.lock);
  endpoint = g_strdup_printf ("inet:127.0.0.1:%u", p.port);
  servers[0] = endpoint;

  for (int i = 0; i < 20000; i++)
    g_string_append (body, "0123456789012345678901234567890123456789012345678901234567890123456789\n");
  fd = g_file_open_tmp ("ocp-test-XXXXXX", &spool, NULL);
  g_unlink (spool);
  g_assert_cmpint (write (fd, header, strlen (header)), ==, (gssize) strlen (header));
  g_assert_cmpint (write (fd, body->str, body->len), ==, (gssize) body->len);
  req.fd = fd;
  req.header_len = strlen (header);
  req.body_len = body->len;

  rcpts[0] = "ok@example.org";
  g_assert_true (ocp_client_call (cl, &svc, &req, &v, &error));
  g_assert_no_error (error);
  g_assert_cmpint (v.verdict, ==, OCP_VERDICT_ACCEPT);
  g_assert_null (v.header);
  g_assert_cmpint (v.body_fd, ==, -1);
  ocp_verdict_clear (&v);
  /* 1.4 MB: in a file, not in memory */
  g_assert_false (p.body_in_memory);
  g_assert_cmpmem (p.body->data, p.body->len, body->str, body->len);

  rcpts[0] = "reject@example.org";
  g_assert_true (ocp_client_call (cl, &svc, &req, &v, &error));
  g_assert_cmpint (v.verdict, ==, OCP_VERDICT_REJECT);
  g_assert_cmpuint (v.reply_code, ==, 554);
  g_assert_cmpstr (v.reply_text, ==, "5.7.1 go away");
  ocp_verdict_clear (&v);

  /* a new header, and the body back by DUY without being copied */
  rcpts[0] = "header@example.org";
  g_assert_true (ocp_client_call (cl, &svc, &req, &v, &error));
  g_assert_nonnull (v.header);
  g_assert_cmpmem (g_bytes_get_data (v.header, NULL), g_bytes_get_size (v.header),
                   "X-Adapted: yes\nSubject: s\n\n", 27);
  g_assert_cmpint (v.body_fd, ==, -1);
  ocp_verdict_clear (&v);
  g_assert_cmpuint (p.body_seen, ==, 3 * body->len);
  small_body_in_memory (cl, &svc, &p);

  /* nobody listening: UNAVAILABLE, quickly */
  {
    char *dead[2] = { "inet:127.0.0.1:1", NULL };
    OcpServiceConfig down = svc;
    gint64 t0 = g_get_monotonic_time ();
    down.name = "down";
    down.servers = dead;
    g_assert_false (ocp_client_call (cl, &down, &req, &v, &error));
    g_assert_error (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE);
    g_assert_cmpint (g_get_monotonic_time () - t0, <, 2 * G_USEC_PER_SEC);
    g_clear_error (&error);
    g_assert_cmpstr (v.server, ==, "inet:127.0.0.1:1"); /* who failed, for the trace */
    ocp_verdict_clear (&v);
    /* and a stand-by server takes over */
    dead[1] = NULL;
    {
      char *two[3] = { "inet:127.0.0.1:1", endpoint, NULL };
      down.servers = two;
      rcpts[0] = "ok@example.org";
      g_assert_true (ocp_client_call (cl, &down, &req, &v, &error));
      ocp_verdict_clear (&v);
    }
  }

  /* eight transactions at once on a single connection */
  {
    GThread *threads[8];
    gint64 t0 = g_get_monotonic_time ();
    OcpServiceConfig one = svc;
    one.name = "one";
    one.max_connections = 1;
    rcpts[0] = "slow@example.org";
    for (int i = 0; i < 8; i++)
      {
        CallArgs *ca = g_new0 (CallArgs, 1);
        ca->cl = cl;
        ca->svc = &one;
        ca->req = &req;
        threads[i] = g_thread_new ("call", call_thread, ca);
      }
    for (int i = 0; i < 8; i++)
      g_assert_true (GPOINTER_TO_INT (g_thread_join (threads[i])));
    g_assert_cmpint (g_get_monotonic_time () - t0, <, 1200 * 1000);
  }

  ocp_client_free (cl);
  g_main_loop_quit (p.loop);
  g_main_context_wakeup (p.ctx);
  g_thread_join (th);
  g_main_loop_unref (p.loop);
  g_main_context_unref (p.ctx);
  g_string_free (body, TRUE);
  g_byte_array_unref (p.body);
  close (fd);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ocp/codec/vectors", test_vectors);
  g_test_add_func ("/ocp/codec/structure", test_structure);
  g_test_add_func ("/ocp/codec/incremental", test_incremental);
  g_test_add_func ("/ocp/codec/invalid", test_invalid);
  g_test_add_func ("/ocp/codec/numbers", test_numbers);
  g_test_add_func ("/ocp/codec/limits", test_limits);
  g_test_add_func ("/ocp/codec/result", test_result);
  g_test_add_func ("/ocp/profile/verdict", test_verdict_roundtrip);
  g_test_add_func ("/ocp/client-server", test_client_server);
  g_test_add_func ("/ocp/server-free-with-open-connection", test_server_free_with_open_connection);
  return g_test_run ();
}
