/* ocp-server.c - the callout server side of OCP, on the GLib main loop.
 *
 * Any number of connections, each with any number of concurrent
 * transactions (RFC 4037 2.6).  The server sends CS on accept, answers the
 * processor's NO with our profile and the parts its service wants, keeps
 * the service groups, collects each transaction's envelope (AMS) and parts
 * (DUM), and hands the complete original message to the service.  Invalid
 * input ends the transaction (TE 400) or, when it cannot be tied to one,
 * the connection (CE 400).  Unknown messages and parameters are ignored.
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <gio/gunixsocketaddress.h>

#include "ocp.h"

#define READ_CHUNK (64 * 1024)
#define HEADER_MAX (1024 * 1024)
#define MAX_TXNS 1024
/* A body up to this size is held in memory (most mail: no temp file, no
 * syscalls to read it back); a larger one goes to an unlinked temp file as
 * it arrives, so what a peer can make us hold stays bounded. */
#define BODY_MEMORY_MAX (64 * 1024)
/* a connection costs about 66 KB (its read buffer): bounded by default */
#define DEFAULT_MAX_CONNECTIONS 1024
#define DEFAULT_HANDSHAKE_TIMEOUT 30
#define DEFAULT_IDLE_TIMEOUT 600

typedef struct SConn SConn;

struct OcpServerTxn {
  gint ref_count;
  SConn *conn;              /* NULL once the connection is gone */
  guint64 xid;
  char *service;
  OcpMessage *ams;
  GHashTable *env;
  GByteArray *header;
  gboolean header_sent;
  GByteArray *body_mem;     /* the body while it is small, during collection */
  GBytes *body;             /* ... and once complete (AME) */
  int body_fd;              /* or the body in a file, once it grew too large */
  guint64 body_len;
  gboolean body_sent;
  guint64 next_offset;
  guint64 kept_end;         /* processor keeps [0, kept_end) */
  gboolean complete;
  gboolean responded;
};

struct SConn {
  gint ref_count;
  OcpServer *server;
  GSocketConnection *conn;
  GCancellable *cancel;
  GByteArray *in;
  GString *out;
  GString *wbuf;            /* being written */
  gboolean writing;
  gboolean hold;            /* collecting a burst of messages: flush later */
  gboolean closing;
  gboolean closed;
  gboolean got_cs;
  gboolean got_no;          /* the processor's first offer: negotiation began */
  gboolean negotiated;      /* our profile was accepted for the connection */
  guint version;            /* of our profile, as negotiated (2: verdicts per recipient) */
  guint64 last_xid;         /* each TS must name a higher one (RFC 4037 10.2) */
  gboolean any_xid;
  gint64 last_input;        /* monotonic time of the last read */
  guint timer;              /* handshake and idle timeouts */
  GHashTable *groups;       /* sg-id -> uri */
  GHashTable *txns;         /* xid -> OcpServerTxn* */
  char buf[READ_CHUNK];
};

struct OcpServer {
  GSocketService *service;
  guint parts;
  OcpServerHandler handler;
  gpointer user_data;
  GPtrArray *unix_paths;
  guint64 bytes_sent;
  guint connections;        /* open now */
  GHashTable *conns;        /* SConn* open now, closed when the server goes */
  guint max_connections;
  guint handshake_timeout;  /* seconds from accept to CS and NO */
  guint idle_timeout;       /* seconds without input or transactions */
};

static void conn_read (SConn *c);
static void conn_flush (SConn *c);

static SConn *
sconn_ref (SConn *c)
{
  c->ref_count++;
  return c;
}

static void
sconn_unref (SConn *c)
{
  if (--c->ref_count > 0)
    return;
  g_byte_array_unref (c->in);
  g_string_free (c->out, TRUE);
  g_string_free (c->wbuf, TRUE);
  g_hash_table_unref (c->groups);
  g_hash_table_unref (c->txns);
  g_object_unref (c->cancel);
  g_object_unref (c->conn);
  g_free (c);
}

OcpServerTxn *
ocp_server_txn_ref (OcpServerTxn *t)
{
  t->ref_count++;
  return t;
}

void
ocp_server_txn_unref (OcpServerTxn *t)
{
  if (--t->ref_count > 0)
    return;
  g_free (t->service);
  ocp_message_free (t->ams);
  if (t->env)
    g_hash_table_unref (t->env);
  g_byte_array_unref (t->header);
  if (t->body_mem)
    g_byte_array_unref (t->body_mem);
  if (t->body)
    g_bytes_unref (t->body);
  if (t->body_fd >= 0)
    close (t->body_fd);
  g_free (t);
}

static void
txn_detach (gpointer p)
{
  OcpServerTxn *t = p;
  t->conn = NULL;
  ocp_server_txn_unref (t);
}

/* ---- output -------------------------------------------------------------- */

static void
send_msg (SConn *c, OcpMessage *m)
{
  if (!c->closed)
    ocp_message_write (m, c->out);
  ocp_message_free (m);
  if (!c->hold)
    conn_flush (c);
}

static void
conn_close (SConn *c)
{
  if (c->closed)
    return;
  c->closed = TRUE;
  c->server->connections--;
  g_hash_table_remove (c->server->conns, c);
  if (c->timer)
    g_source_remove (c->timer);
  c->timer = 0;
  g_cancellable_cancel (c->cancel);
  g_io_stream_close (G_IO_STREAM (c->conn), NULL, NULL);
  g_hash_table_remove_all (c->txns);
  sconn_unref (c); /* the reference the accept took */
}

static void
write_done (GObject *src, GAsyncResult *res, gpointer data)
{
  SConn *c = data;

  c->writing = FALSE;
  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (src), res, NULL, NULL))
    conn_close (c);
  g_string_truncate (c->wbuf, 0);
  if (!c->closed)
    {
      if (c->out->len)
        conn_flush (c);
      else if (c->closing)
        conn_close (c);
    }
  sconn_unref (c);
}

static void
conn_flush (SConn *c)
{
  GString *s;
  GOutputStream *out;

  if (c->closed || c->writing || c->out->len == 0)
    return;
  s = c->out;
  c->out = c->wbuf;
  c->wbuf = s;
  out = g_io_stream_get_output_stream (G_IO_STREAM (c->conn));
  c->server->bytes_sent += s->len;
  c->writing = TRUE;
  g_output_stream_write_all_async (out, s->str, s->len, G_PRIORITY_DEFAULT, c->cancel, write_done,
                                   sconn_ref (c));
}

static void
conn_fail (SConn *c, const char *why)
{
  send_msg (c, ocp_message_add (ocp_message_new ("CE"), ocp_result_new (400, why)));
  c->closing = TRUE;
  if (!c->writing)
    conn_close (c);
}

static void
txn_fail (SConn *c, guint64 xid, const char *why)
{
  g_hash_table_remove (c->txns, &xid);
  send_msg (c, ocp_message_add (ocp_message_add_uint (ocp_message_new ("TE"), xid), ocp_result_new (400, why)));
}

/* ---- input --------------------------------------------------------------- */

static void
on_no (SConn *c, OcpMessage *m)
{
  const OcpValue *features = ocp_message_anon (m, 0);
  const OcpValue *sg = ocp_message_get (m, "SG");
  OcpMessage *nr = ocp_message_new ("NR");
  const OcpValue *chosen = NULL;

  c->got_no = TRUE;
  /* the highest version of our profile that the processor offers */
  for (guint i = 0; features && features->kind == OCP_LIST && i < features->items->len; i++)
    {
      const OcpValue *f = features->items->pdata[i];
      guint version = f->kind == OCP_STRUCT && f->items->len >= 1
                      ? ocp_profile_version (ocp_value_get_atom (f->items->pdata[0])) : 0;
      if (version > c->version)
        {
          c->version = version;
          chosen = f;
        }
    }
  if (chosen)
    {
      const OcpValue *offered = ocp_value_get_named (chosen, "Parts");
      c->negotiated = TRUE;
      guint parts = offered ? ocp_parts_from_value (offered) : OCP_PARTS_ALL;
      OcpValue *answer = ocp_struct_new ();
      ocp_value_add (answer, ocp_atom_new (c->version == 2 ? OCP_LMTP_PROFILE_2 : OCP_LMTP_PROFILE));
      ocp_value_add_named (answer, "Parts", ocp_parts_to_value ((parts & c->server->parts) | OCP_PART_ENVELOPE));
      ocp_message_add (nr, answer);
    }
  if (sg)
    ocp_message_set (nr, "SG", ocp_atom_new (sg->atom));
  send_msg (c, nr);
}

static OcpServerTxn *
txn_of (SConn *c, const OcpMessage *m, guint64 *xid)
{
  if (!ocp_message_anon_uint (m, 0, xid))
    return NULL;
  return g_hash_table_lookup (c->txns, xid);
}

/* A transaction that was started and is over: messages for it that cross
 * our TE on the wire are dropped, not answered with a second TE (RFC 4037
 * 4: a transaction ends at the first TE).  xids only grow, so an unknown
 * one at or below the last is such a transaction. */
static gboolean
txn_ended (SConn *c, guint64 xid)
{
  return c->any_xid && xid <= c->last_xid && !g_hash_table_contains (c->txns, &xid);
}

/* Ends transaction @xid for invalid input, unless it has ended already. */
static void
txn_refuse (SConn *c, guint64 xid, const char *why)
{
  if (!txn_ended (c, xid))
    txn_fail (c, xid, why);
}

/* AQ: supported now means the version of our profile negotiated on this
 * connection. */
static void
on_aq (SConn *c, OcpMessage *m)
{
  const OcpValue *f = ocp_message_anon (m, 0);
  gboolean yes = c->negotiated && f && f->kind == OCP_STRUCT && f->items->len >= 1
                 && ocp_profile_version (ocp_value_get_atom (f->items->pdata[0])) == c->version;

  send_msg (c, ocp_message_add (ocp_message_new ("AA"), ocp_atom_new (yes ? "true" : "false")));
}

static void
on_ts (SConn *c, OcpMessage *m)
{
  guint64 xid, sg;
  const char *uri;
  OcpServerTxn *t;

  if (!ocp_message_anon_uint (m, 0, &xid) || !ocp_message_anon_uint (m, 1, &sg))
    {
      conn_fail (c, "bad TS");
      return;
    }
  /* a reused or lower xid cannot be told from an earlier transaction */
  if (c->any_xid && xid <= c->last_xid)
    {
      conn_fail (c, "transaction id not higher than an earlier one");
      return;
    }
  c->any_xid = TRUE;
  c->last_xid = xid;
  if ((uri = g_hash_table_lookup (c->groups, &sg)) == NULL || g_hash_table_size (c->txns) >= MAX_TXNS)
    {
      txn_fail (c, xid, "unknown service group or too many transactions");
      return;
    }
  t = g_new0 (OcpServerTxn, 1);
  t->ref_count = 1;
  t->conn = c;
  t->xid = xid;
  t->service = g_strdup (uri);
  t->header = g_byte_array_new ();
  t->body_fd = -1;
  g_hash_table_insert (c->txns, g_memdup2 (&xid, sizeof xid), t);
}

static gboolean
write_all (int fd, const guint8 *p, gsize n)
{
  while (n > 0)
    {
      gssize w = write (fd, p, n);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return FALSE;
      p += w;
      n -= w;
    }
  return TRUE;
}

/* Moves the body held in memory (@p, @n) to an unlinked temp file. */
static gboolean
body_spill (OcpServerTxn *t, const guint8 *p, gsize n)
{
  g_autofree char *path = NULL;

  t->body_fd = g_file_open_tmp ("ocp-server-XXXXXX", &path, NULL);
  if (t->body_fd < 0)
    return FALSE;
  g_unlink (path);
  return write_all (t->body_fd, p, n);
}

static gboolean
body_append (OcpServerTxn *t, const char *p, gsize n)
{
  if (t->body_fd < 0 && t->body_len + n <= BODY_MEMORY_MAX)
    {
      if (t->body_mem == NULL)
        t->body_mem = g_byte_array_new ();
      g_byte_array_append (t->body_mem, (const guint8 *) p, n);
      t->body_len += n;
      return TRUE;
    }
  if (t->body_fd < 0)
    {
      gboolean ok = body_spill (t, t->body_mem ? t->body_mem->data : NULL, t->body_mem ? t->body_mem->len : 0);
      g_clear_pointer (&t->body_mem, g_byte_array_unref);
      if (!ok)
        return FALSE;
    }
  if (!write_all (t->body_fd, (const guint8 *) p, n))
    return FALSE;
  t->body_len += n;
  return TRUE;
}

/* Kept: 0 size: the processor keeps [0, size) of the original. */
static void
note_kept (OcpServerTxn *t, const OcpMessage *m)
{
  const OcpNamed *kept = ocp_message_named (m, "Kept");
  guint64 kept_off, kept_size;

  if (kept && kept->values->len == 2 && ocp_value_get_uint (kept->values->pdata[0], &kept_off)
      && ocp_value_get_uint (kept->values->pdata[1], &kept_size) && kept_off == 0)
    t->kept_end = MAX (t->kept_end, kept_size);
}

/* Stores a DUM's data in its part: NULL, or why it cannot. */
static const char *
store_part (OcpServerTxn *t, const char *part, const char *p, gsize len)
{
  if (g_strcmp0 (part, "message-header") == 0 && !t->body_sent)
    {
      if (t->header->len + len > HEADER_MAX)
        return "header too large";
      g_byte_array_append (t->header, (const guint8 *) p, len);
      t->header_sent = TRUE;
      return NULL;
    }
  if (g_strcmp0 (part, "message-body") == 0)
    {
      t->body_sent = TRUE;
      return body_append (t, p, len) ? NULL : "cannot store the body";
    }
  return "unknown or out-of-order AM-Part";
}

static void
on_dum (SConn *c, OcpMessage *m)
{
  guint64 xid, off;
  OcpServerTxn *t = txn_of (c, m, &xid);
  gsize len = 0;
  const char *p, *why;

  if (t == NULL)
    {
      if (ocp_message_anon_uint (m, 0, &xid))
        txn_refuse (c, xid, "unknown transaction");
      return;
    }
  if (t->ams == NULL || t->complete || !ocp_message_anon_uint (m, 1, &off) || off != t->next_offset
      || m->payload == NULL)
    {
      txn_fail (c, xid, "bad DUM");
      return;
    }
  p = g_bytes_get_data (m->payload, &len);
  note_kept (t, m);
  why = store_part (t, ocp_value_get_atom (ocp_message_get (m, "AM-Part")), p, len);
  if (why)
    {
      txn_fail (c, xid, why);
      return;
    }
  t->next_offset += len;
}

/* SGC sg-id ({uri}): a service group */
static void
on_sgc (SConn *c, OcpMessage *m)
{
  const OcpValue *services = ocp_message_anon (m, 1);
  const OcpValue *first = services && services->kind == OCP_LIST && services->items->len
                          ? services->items->pdata[0] : NULL;
  const char *uri = first && first->kind == OCP_STRUCT && first->items->len
                    ? ocp_value_get_atom (first->items->pdata[0]) : NULL;
  guint64 sg;

  if (!ocp_message_anon_uint (m, 0, &sg) || uri == NULL)
    conn_fail (c, "bad SGC");
  else
    g_hash_table_replace (c->groups, g_memdup2 (&sg, sizeof sg), g_strdup (uri));
}

static void
on_sgd (SConn *c, OcpMessage *m)
{
  guint64 sg;

  if (ocp_message_anon_uint (m, 0, &sg))
    g_hash_table_remove (c->groups, &sg);
}

/* The envelope: the AMS keeps only its named parameters (taken from @m). */
static void
on_ams (SConn *c, OcpMessage *m)
{
  guint64 xid = 0;
  OcpServerTxn *t = txn_of (c, m, &xid);

  if (t == NULL || t->ams)
    {
      txn_refuse (c, xid, "bad AMS");
      return;
    }
  t->ams = ocp_message_new ("AMS");
  g_ptr_array_extend_and_steal (t->ams->named, g_steal_pointer (&m->named));
  m->named = g_ptr_array_new ();
  t->env = ocp_envelope_from_message (t->ams);
}

/* The original is complete: the service's turn. */
static void
on_ame (SConn *c, OcpMessage *m)
{
  guint64 xid = 0;
  OcpServerTxn *t = txn_of (c, m, &xid);

  if (t == NULL || t->ams == NULL || t->complete)
    {
      txn_refuse (c, xid, "bad AME");
      return;
    }
  t->complete = TRUE;
  if (t->body_fd >= 0)
    lseek (t->body_fd, 0, SEEK_SET);
  if (t->body_mem)
    t->body = g_byte_array_free_to_bytes (g_steal_pointer (&t->body_mem));
  ocp_server_txn_ref (t);
  c->server->handler (t, c->server->user_data);
  ocp_server_txn_unref (t);
}

static void
on_te (SConn *c, OcpMessage *m)
{
  guint64 xid;

  if (ocp_message_anon_uint (m, 0, &xid))
    g_hash_table_remove (c->txns, &xid);
}

/* PQ: PA names the xid only while the transaction lives. */
static void
on_pq (SConn *c, OcpMessage *m)
{
  OcpMessage *pa = ocp_message_new ("PA");
  guint64 xid;

  if (ocp_message_anon_uint (m, 0, &xid) && g_hash_table_contains (c->txns, &xid))
    ocp_message_add_uint (pa, xid);
  send_msg (c, pa);
}

static void
on_ce (SConn *c, OcpMessage *m)
{
  c->closing = TRUE;
  if (!c->writing)
    conn_close (c);
}

/* One handler per message name; a handler may take what it keeps out of
 * the message (AMS takes its named parameters). */
static const struct {
  const char *name;
  void (*run) (SConn *c, OcpMessage *m);
} handlers[] = {
  { "NO", on_no },   { "SGC", on_sgc }, { "SGD", on_sgd }, { "TS", on_ts }, { "AMS", on_ams },
  { "DUM", on_dum }, { "AME", on_ame }, { "TE", on_te },   { "PQ", on_pq }, { "AQ", on_aq },
  { "CE", on_ce },
};

static void
on_message (SConn *c, OcpMessage *m)
{
  if (!c->got_cs)
    {
      if (strcmp (m->name, "CS") != 0)
        conn_fail (c, "the first message must be CS");
      else
        c->got_cs = TRUE;
      return;
    }
  for (guint i = 0; i < G_N_ELEMENTS (handlers); i++)
    if (strcmp (m->name, handlers[i].name) == 0)
      {
        handlers[i].run (c, m);
        return;
      }
  /* anything else: ignored (RFC 4037 11) */
}

static void
read_done (GObject *src, GAsyncResult *res, gpointer data)
{
  SConn *c = data;
  g_autoptr (GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (src), res, &error);

  if (c->closed || n <= 0)
    {
      conn_close (c);
      sconn_unref (c);
      return;
    }
  g_byte_array_append (c->in, (guint8 *) c->buf, n);
  c->last_input = g_get_monotonic_time ();
  while (!c->closed && !c->closing && c->in->len)
    {
      OcpMessage *m = NULL;
      gsize used = 0;
      g_autoptr (GError) perr = NULL;
      OcpParseResult r = ocp_message_parse ((const char *) c->in->data, c->in->len, NULL, &m, &used, &perr);
      if (r == OCP_PARSE_MORE)
        break;
      if (r == OCP_PARSE_ERROR)
        {
          conn_fail (c, perr->message);
          break;
        }
      g_byte_array_remove_range (c->in, 0, used);
      on_message (c, m);
      ocp_message_free (m);
    }
  if (!c->closed && !c->closing)
    conn_read (c);
  sconn_unref (c);
}

static void
conn_read (SConn *c)
{
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (c->conn));
  g_input_stream_read_async (in, c->buf, sizeof c->buf, G_PRIORITY_DEFAULT, c->cancel, read_done,
                             sconn_ref (c));
}

/* Once a second: a connection that has not finished its handshake (CS
 * and NO) in time, or has had no input and no transaction for too long,
 * is ended (RFC 4037 2.7: no agent waits forever). */
static gboolean
conn_tick (gpointer data)
{
  SConn *c = data;
  OcpServer *s = c->server;
  gint64 quiet = (g_get_monotonic_time () - c->last_input) / G_USEC_PER_SEC;

  if (c->closed || c->closing)
    return G_SOURCE_CONTINUE;
  if (!(c->got_cs && c->got_no) && s->handshake_timeout && quiet >= s->handshake_timeout)
    conn_fail (c, "no handshake in time");
  else if (c->got_cs && g_hash_table_size (c->txns) == 0 && s->idle_timeout && quiet >= s->idle_timeout)
    {
      send_msg (c, ocp_message_add (ocp_message_new ("CE"), ocp_result_new (200, "idle")));
      c->closing = TRUE;
      if (!c->writing)
        conn_close (c);
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
incoming (GSocketService *service, GSocketConnection *conn, GObject *src, gpointer data)
{
  SConn *c = g_new0 (SConn, 1);
  GSocket *sock = g_socket_connection_get_socket (conn);
  OcpServer *s = data;

  if (g_socket_get_family (sock) != G_SOCKET_FAMILY_UNIX)
    g_socket_set_option (sock, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  c->ref_count = 1; /* dropped by conn_close */
  c->server = data;
  c->conn = g_object_ref (conn);
  c->cancel = g_cancellable_new ();
  c->in = g_byte_array_new ();
  c->out = g_string_new (NULL);
  c->wbuf = g_string_new (NULL);
  c->groups = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  c->txns = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, txn_detach);
  c->last_input = g_get_monotonic_time ();
  s->connections++;
  g_hash_table_add (s->conns, c);
  send_msg (c, ocp_message_new ("CS"));
  if (s->max_connections && s->connections > s->max_connections)
    {
      conn_fail (c, "too many connections");
      return TRUE;
    }
  c->timer = g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, 1, conn_tick, sconn_ref (c),
                                         (GDestroyNotify) sconn_unref);
  conn_read (c);
  return TRUE;
}

/* ---- responding ---------------------------------------------------------- */

GHashTable *
ocp_server_txn_envelope (OcpServerTxn *t)
{
  return t->env;
}

const char *
ocp_server_txn_service (OcpServerTxn *t)
{
  return t->service;
}

GBytes *
ocp_server_txn_header (OcpServerTxn *t)
{
  return t->header_sent ? g_bytes_new (t->header->data, t->header->len) : NULL;
}

GBytes *
ocp_server_txn_body (OcpServerTxn *t)
{
  return t->body ? g_bytes_ref (t->body) : NULL;
}

/* A body held in memory goes to a file for a caller that wants one. */
int
ocp_server_txn_body_fd (OcpServerTxn *t, guint64 *out_len)
{
  if (out_len)
    *out_len = t->body_len;
  if (t->body && t->body_fd < 0)
    {
      gsize n;
      const guint8 *p = g_bytes_get_data (t->body, &n);
      if (body_spill (t, p, n))
        lseek (t->body_fd, 0, SEEK_SET);
      else if (t->body_fd >= 0)
        {
          close (t->body_fd);
          t->body_fd = -1;
        }
    }
  return t->body_sent ? t->body_fd : -1;
}

static void
send_dum (SConn *c, guint64 xid, guint64 *off, const char *part, const char *p, gsize n)
{
  OcpMessage *dum = ocp_message_add_uint (ocp_message_add_uint (ocp_message_new ("DUM"), xid), *off);
  ocp_message_set (dum, "AM-Part", ocp_atom_new (part));
  ocp_message_set_payload (dum, g_bytes_new (p, n));
  send_msg (c, dum);
  *off += n;
}

void
ocp_server_txn_respond (OcpServerTxn *t, const OcpVerdict *v, GBytes *new_header, int new_body_fd)
{
  SConn *c = t->conn;
  OcpMessage *ams;
  guint64 off = 0, hlen = t->header_sent ? t->header->len : 0;

  if (c == NULL || c->closed || t->responded)
    return;
  t->responded = TRUE;
  c->hold = TRUE; /* one write for the whole answer */
  ams = ocp_message_add_uint (ocp_message_new ("AMS"), t->xid);
  ocp_verdict_to_message (v, ams);
  if (c->version >= 2)
    ocp_verdict_recipients_to_message (v, ams);
  send_msg (c, ams);
  if (new_header)
    {
      gsize n;
      const char *p = g_bytes_get_data (new_header, &n);
      send_dum (c, t->xid, &off, "message-header", p, n);
    }
  if (new_body_fd >= 0)
    {
      char buf[READ_CHUNK];
      gssize n;
      while ((n = read (new_body_fd, buf, sizeof buf)) > 0)
        send_dum (c, t->xid, &off, "message-body", buf, n);
      conn_flush (c);
    }
  else if (new_header && t->body_sent && t->kept_end >= hlen + t->body_len)
    {
      /* the body is unchanged and the processor kept it: point at it */
      OcpMessage *duy = ocp_message_add_uint (ocp_message_new ("DUY"), t->xid);
      ocp_message_add_uint (ocp_message_add_uint (duy, hlen), t->body_len);
      send_msg (c, duy);
    }
  send_msg (c, ocp_message_add_uint (ocp_message_new ("AME"), t->xid));
  send_msg (c, ocp_message_add_uint (ocp_message_new ("TE"), t->xid));
  c->hold = FALSE;
  conn_flush (c);
  g_hash_table_remove (c->txns, &t->xid);
}

void
ocp_server_txn_abort_connection (OcpServerTxn *t)
{
  if (t->conn)
    conn_close (t->conn);
}

void
ocp_server_txn_send_raw (OcpServerTxn *t, const char *bytes, gsize len)
{
  if (t->conn && !t->conn->closed)
    {
      g_string_append_len (t->conn->out, bytes, len);
      conn_flush (t->conn);
    }
}

/* ---- the server ---------------------------------------------------------- */

OcpServer *
ocp_server_new (guint parts, OcpServerHandler handler, gpointer user_data)
{
  OcpServer *s = g_new0 (OcpServer, 1);
  s->service = g_socket_service_new ();
  s->parts = parts | OCP_PART_ENVELOPE;
  s->handler = handler;
  s->user_data = user_data;
  s->unix_paths = g_ptr_array_new_with_free_func (g_free);
  s->conns = g_hash_table_new (NULL, NULL);
  s->max_connections = DEFAULT_MAX_CONNECTIONS;
  s->handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT;
  s->idle_timeout = DEFAULT_IDLE_TIMEOUT;
  g_signal_connect (s->service, "incoming", G_CALLBACK (incoming), s);
  return s;
}

gboolean
ocp_server_listen (OcpServer *s, const char *endpoint, guint16 *out_port, GError **error)
{
  g_autoptr (GSocketAddress) addr = NULL;
  g_autoptr (GSocketAddress) bound = NULL;

  if (g_str_has_prefix (endpoint, "unix:"))
    {
      g_unlink (endpoint + 5);
      addr = g_unix_socket_address_new (endpoint + 5);
      g_ptr_array_add (s->unix_paths, g_strdup (endpoint + 5));
    }
  else if (g_str_has_prefix (endpoint, "inet:"))
    {
      const char *hp = endpoint + 5, *colon = strrchr (hp, ':');
      g_autofree char *host = colon ? g_strndup (hp, colon - hp) : NULL;
      g_autoptr (GInetAddress) ip = host ? g_inet_address_new_from_string (host) : NULL;
      if (ip)
        addr = g_inet_socket_address_new (ip, (guint16) g_ascii_strtoull (colon + 1, NULL, 10));
    }
  if (addr == NULL)
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_UNAVAILABLE, "bad endpoint '%s'", endpoint);
      return FALSE;
    }
  if (!g_socket_listener_add_address (G_SOCKET_LISTENER (s->service), addr, G_SOCKET_TYPE_STREAM,
                                      G_SOCKET_PROTOCOL_DEFAULT, NULL, &bound, error))
    return FALSE;
  if (out_port && G_IS_INET_SOCKET_ADDRESS (bound))
    *out_port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  g_socket_service_start (s->service);
  return TRUE;
}

void
ocp_server_free (OcpServer *s)
{
  if (s == NULL)
    return;
  g_socket_service_stop (s->service);
  g_socket_listener_close (G_SOCKET_LISTENER (s->service));
  for (guint i = 0; i < s->unix_paths->len; i++)
    g_unlink (s->unix_paths->pdata[i]);
  g_ptr_array_unref (s->unix_paths);
  /* connections still open would call back into a freed server (a reload
   * frees the old one while the main loop runs): they end with it */
  {
    GList *open = g_hash_table_get_keys (s->conns);
    for (GList *i = open; i; i = i->next)
      conn_close (i->data);
    g_list_free (open);
  }
  g_hash_table_unref (s->conns);
  g_object_unref (s->service);
  g_free (s);
}

void
ocp_server_set_limits (OcpServer *s, guint max_connections, guint handshake_timeout, guint idle_timeout)
{
  s->max_connections = max_connections;
  s->handshake_timeout = handshake_timeout;
  s->idle_timeout = idle_timeout;
}

guint64
ocp_server_bytes_sent (OcpServer *s)
{
  return s->bytes_sent;
}
