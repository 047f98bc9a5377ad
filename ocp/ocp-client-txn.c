/* ocp-client-txn.c - one transaction on a processor connection.
 *
 * Send the original: TS, AMS with the envelope, DUMs of the header and
 * body parts read from the spool (Kept: the whole range, since the spool
 * keeps it), AME.  Then one handler per message the server sends: its AMS
 * (the verdict), DUM/DUY (adapted parts), AME and TE, and the progress and
 * data-flow requests (PA/PR, DWSS, DWP).  Finally take the adapted
 * message.  A timeout or refusal ends only this transaction; the
 * connection serves the others.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "ocp-client-private.h"

#define TE_GRACE_USEC (250 * 1000)

typedef struct {
  OcpConn *c;
  const OcpServiceConfig *svc;
  const OcpRequest *req;
  OcpVerdict *out;
  guint64 xid;
  gint64 deadline;         /* of the whole transaction */
  gint64 first_deadline;   /* for the server's first response */
  gint64 progress_at;      /* when to ask how it goes (PQ), or G_MAXINT64 */
  GString *o;              /* our messages not written yet */
  guint64 flow;            /* original octets sent so far */
  gboolean stopped;        /* the server wants no more of the original (DWSR) */
  gboolean have_ams;
  OcpAdapted a;
} Txn;

/* What a message received means for the transaction. */
typedef enum {
  STEP_ON,      /* wait for the next message */
  STEP_DONE,    /* the server's AME: the adapted message is complete */
  STEP_FAILED,  /* error set */
  STEP_BROKE,   /* the server broke the protocol: we end the transaction */
} Step;

static OcpMessage *
txn_message (const Txn *t, const char *name)
{
  return ocp_message_add_uint (ocp_message_new (name), t->xid);
}

/* ---- the original -------------------------------------------------------- */

/* Opens a transaction: TS and AMS.  The xid is taken and the TS written
 * under the write lock, so TSs leave in the order of their xids, each
 * higher than every earlier one on the connection (RFC 4037 10.2); a
 * writer that took a lower xid cannot overtake. */
static gboolean
txn_start (Txn *t, GError **error)
{
  g_autoptr (GString) out = g_string_new (NULL);
  OcpConn *c = t->c;
  OcpMessage *ts, *ams;
  gboolean ok;

  g_mutex_lock (&c->wlock);
  g_mutex_lock (&c->lock);
  t->xid = ++c->next_xid;
  g_hash_table_insert (c->inbox, g_memdup2 (&t->xid, sizeof t->xid), g_queue_new ());
  g_mutex_unlock (&c->lock);
  ts = ocp_message_add_uint (txn_message (t, "TS"), 1);
  ams = txn_message (t, "AMS");
  ocp_request_to_message (t->req, ams);
  ocp_message_write (ts, out);
  ocp_message_write (ams, out);
  ocp_message_free (ts);
  ocp_message_free (ams);
  ok = ocp_conn_send_all (c, out->str, out->len, t->deadline, error);
  g_mutex_unlock (&c->wlock);
  return ok;
}

/* A DUM of @n original octets at the current flow offset. */
static OcpMessage *
original_dum (const Txn *t, const char *part, const char *buf, gsize n)
{
  OcpMessage *dum = ocp_message_add_uint (txn_message (t, "DUM"), t->flow);
  OcpNamed *kept;

  /* Kept: everything so far, the spool has it (RFC 4037 7.1) */
  ocp_message_set (dum, "Kept", ocp_atom_new_uint (0));
  kept = dum->named->pdata[dum->named->len - 1];
  g_ptr_array_add (kept->values, ocp_atom_new_uint (t->flow + n));
  ocp_message_set (dum, "AM-Part", ocp_atom_new (part));
  ocp_message_set_payload (dum, g_bytes_new (buf, n));
  return dum;
}

/* Sends @len octets of the spool from @spool_off as DUMs of @part, unless
 * the server says it needs no more. */
static gboolean
send_part (Txn *t, const char *part, guint64 spool_off, guint64 len, GError **error)
{
  char buf[OCP_CLIENT_CHUNK];

  while (len > 0 && !t->stopped)
    {
      gssize n = pread (t->req->fd, buf, MIN (len, sizeof buf), spool_off);
      if (n <= 0)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "reading the spool failed");
          return FALSE;
        }
      if (!ocp_conn_queue (t->c, t->o, original_dum (t, part, buf, n), t->deadline, error))
        return FALSE;
      t->flow += n;
      spool_off += n;
      len -= n;
      /* RFC 4037 8.1: a server that needs no more says DWSR */
      if (len > 0 && t->o->len == 0)
        {
          ocp_conn_pump (t->c);
          if (ocp_conn_inbox_take (t->c, t->xid, "DWSR", FALSE))
            t->stopped = TRUE;
        }
    }
  return TRUE;
}

static gboolean
send_original (Txn *t, GError **error)
{
  OcpMessage *ame;

  if (!txn_start (t, error))
    return FALSE;
  if (t->req->fd >= 0 && (t->c->parts & OCP_PART_HEADER))
    {
      if (!send_part (t, "message-header", 0, t->req->header_len, error))
        return FALSE;
      t->a.org_header = t->flow;
    }
  if (t->req->fd >= 0 && (t->c->parts & OCP_PART_BODY))
    {
      if (!send_part (t, "message-body", t->req->header_len, t->req->body_len, error))
        return FALSE;
      t->a.org_body = t->flow - t->a.org_header;
    }
  /* the original ended early when the server asked: AME 206 (RFC 4037 8.1) */
  ame = txn_message (t, "AME");
  if (t->stopped)
    ocp_message_add (ame, ocp_result_new (206, "stopped at the server's request"));
  return ocp_conn_queue (t->c, t->o, ame, t->deadline, error) && ocp_conn_flush (t->c, t->o, t->deadline, error);
}

/* ---- the server's messages ----------------------------------------------- */

static gboolean
result_failed (const OcpMessage *m, guint idx, char **why)
{
  const OcpValue *r = ocp_message_anon (m, idx);
  guint64 code = 200;

  if (r == NULL)
    return FALSE;
  if (r->kind != OCP_STRUCT || r->items->len < 1 || !ocp_value_get_uint (r->items->pdata[0], &code))
    code = 400;
  if (code == 200 || code == 206)
    return FALSE;
  if (r->kind == OCP_STRUCT && r->items->len > 1)
    *why = g_strdup (ocp_value_get_atom (r->items->pdata[1]));
  return TRUE;
}

/* PA or PR: the server says it works on it, asked or not: it may take the
 * whole transaction deadline (RFC 4037 5). */
static Step
on_progress (Txn *t, const OcpMessage *m, GError **error)
{
  t->first_deadline = t->deadline;
  t->progress_at = G_MAXINT64;
  return STEP_ON;
}

/* The verdict. */
static Step
on_ams (Txn *t, const OcpMessage *m, GError **error)
{
  if (t->have_ams || !ocp_verdict_from_message (t->out, m, error))
    return STEP_BROKE;
  if (t->c->version < 2) /* not negotiated: not ours to honour */
    g_clear_pointer (&t->out->recipients, g_ptr_array_unref);
  t->have_ams = TRUE;
  return STEP_ON;
}

/* Adapted data of the header or the body. */
static Step
on_dum (Txn *t, const OcpMessage *m, GError **error)
{
  gsize len = 0;
  const char *p = m->payload ? g_bytes_get_data (m->payload, &len) : NULL;
  const char *part = ocp_value_get_atom (ocp_message_get (m, "AM-Part"));

  if (!t->have_ams)
    return STEP_BROKE;
  /* no data, only parameters such as Modp (a DUY-based server sends
   * that): nothing to store, and valid (RFC 4037 11.9) */
  if (len == 0 && part == NULL)
    return STEP_ON;
  if (part == NULL)
    return STEP_BROKE;
  if (strcmp (part, "message-header") == 0)
    return ocp_adapted_header (&t->a, p, len, error) ? STEP_ON : STEP_FAILED;
  if (strcmp (part, "message-body") == 0)
    return ocp_adapted_body (&t->a, p, len, error) ? STEP_ON : STEP_FAILED;
  return STEP_BROKE; /* a part the profile does not adapt */
}

/* Original octets the server uses unchanged. */
static Step
on_duy (Txn *t, const OcpMessage *m, GError **error)
{
  guint64 off, n;

  if (!t->have_ams || !ocp_message_anon_uint (m, 1, &off) || !ocp_message_anon_uint (m, 2, &n)
      || !ocp_adapted_duy (&t->a, off, n, error))
    return STEP_BROKE;
  return STEP_ON;
}

static Step
on_ame (Txn *t, const OcpMessage *m, GError **error)
{
  g_autofree char *why = NULL;

  if (result_failed (m, 1, &why))
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_REFUSED, "%s refused the message%s%s", t->svc->name,
                   why ? ": " : "", why ? why : "");
      return STEP_FAILED;
    }
  return t->have_ams ? STEP_DONE : STEP_BROKE;
}

static Step
on_te (Txn *t, const OcpMessage *m, GError **error)
{
  g_autofree char *why = NULL;

  result_failed (m, 1, &why);
  g_set_error (error, OCP_ERROR, OCP_ERROR_REFUSED, "%s ended the transaction%s%s", t->svc->name,
               why ? ": " : "", why ? why : "");
  return STEP_FAILED;
}

/* We keep the whole original: the server may stop adapting. */
static Step
on_dwss (Txn *t, const OcpMessage *m, GError **error)
{
  return ocp_conn_send (t->c, txn_message (t, "DSS"), t->deadline, error) ? STEP_ON : STEP_FAILED;
}

/* All our data is sent already: paused at once. */
static Step
on_dwp (Txn *t, const OcpMessage *m, GError **error)
{
  return ocp_conn_send (t->c, txn_message (t, "DPM"), t->deadline, error) ? STEP_ON : STEP_FAILED;
}

static const struct {
  const char *name;
  Step (*run) (Txn *t, const OcpMessage *m, GError **error);
} handlers[] = {
  { "PA", on_progress }, { "PR", on_progress }, { "AMS", on_ams },   { "DUM", on_dum },   { "DUY", on_duy },
  { "AME", on_ame },     { "TE", on_te },       { "DWSS", on_dwss }, { "DWP", on_dwp },
};

/* Halfway to the first-response deadline, ask how it goes (RFC 4037 5:
 * PQ before giving up). */
static Step
ask_progress (Txn *t, GError **error)
{
  g_clear_error (error);
  t->progress_at = G_MAXINT64;
  return ocp_conn_send (t->c, txn_message (t, "PQ"), t->deadline, error) ? STEP_ON : STEP_FAILED;
}

/* Waits for the server's next message and handles it. */
static Step
receive_one (Txn *t, GError **error)
{
  gint64 wait_until = t->have_ams ? t->deadline : MIN (t->first_deadline, t->progress_at);
  g_autoptr (OcpMessage) m = ocp_conn_recv_for (t->c, t->xid, wait_until, error);

  if (m == NULL && !t->have_ams && wait_until == t->progress_at && t->progress_at < t->first_deadline
      && g_error_matches (*error, OCP_ERROR, OCP_ERROR_TIMEOUT))
    return ask_progress (t, error);
  if (m == NULL)
    return STEP_FAILED;
  for (guint i = 0; i < G_N_ELEMENTS (handlers); i++)
    if (strcmp (m->name, handlers[i].name) == 0)
      return handlers[i].run (t, m, error);
  return STEP_ON; /* DPI, DWSR (too late), DPM, DWM: nothing to do */
}

/* ---- the end ------------------------------------------------------------- */

/* After the server's AME: whether its TE comes too.  Servers send AME and
 * TE together, but they may arrive in two reads; a short wait spares the
 * server a TE for a transaction it has already ended.  A server that once
 * left the TE to us is not waited for again. */
static gboolean
server_ended (Txn *t)
{
  OcpConn *c = t->c;
  gint64 until = MIN (t->deadline, g_get_monotonic_time () + (c->te_silent ? 0 : TE_GRACE_USEC));

  for (;;)
    {
      g_autoptr (GError) e = NULL;
      g_autoptr (OcpMessage) m = ocp_conn_inbox_pop (c, t->xid);
      if (m == NULL && until > g_get_monotonic_time ())
        m = ocp_conn_recv_for (c, t->xid, until, &e);
      if (m == NULL)
        {
          if (g_error_matches (e, OCP_ERROR, OCP_ERROR_TIMEOUT) || e == NULL)
            c->te_silent = TRUE;
          return FALSE;
        }
      if (strcmp (m->name, "TE") == 0)
        return TRUE;
    }
}

/* The transaction ends at the first TE (RFC 4037 4): if the server sent
 * one, ours would name an ended transaction. */
static gboolean
finish (Txn *t, GError **error)
{
  if (!server_ended (t) && !ocp_conn_send (t->c, txn_message (t, "TE"), t->deadline, error))
    return FALSE;
  ocp_adapted_take (&t->a, t->out);
  return TRUE;
}

/* An invalid message in transaction scope ends the transaction (RFC 4037
 * 2.7). */
static void
end_broken (Txn *t, GError **error)
{
  if (error && *error == NULL)
    g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "%s broke the protocol", t->svc->name);
  ocp_conn_send (t->c, ocp_message_add (txn_message (t, "TE"), ocp_result_new (400, NULL)),
                 MIN (t->deadline, g_get_monotonic_time () + G_USEC_PER_SEC), NULL);
}

/* After a timeout, give up on this transaction only; the connection
 * serves others. */
static void
end_late (Txn *t, GError **error)
{
  if (error && g_error_matches (*error, OCP_ERROR, OCP_ERROR_TIMEOUT))
    ocp_conn_send (t->c, ocp_message_add (txn_message (t, "TE"), ocp_result_new (400, "timed out")),
                   g_get_monotonic_time () + G_USEC_PER_SEC / 2, NULL);
}

gboolean
ocp_conn_transact (OcpConn *c, const OcpServiceConfig *svc, const OcpRequest *req, OcpVerdict *out,
                   gint64 deadline, GError **error)
{
  g_autoptr (GString) o = g_string_new (NULL);
  Txn t = { .c = c, .svc = svc, .req = req, .out = out, .deadline = deadline, .o = o };
  Step step = STEP_FAILED;

  ocp_adapted_init (&t.a, req);
  if (send_original (&t, error))
    {
      t.first_deadline = MIN (deadline, g_get_monotonic_time () + (gint64) svc->response_timeout_ms * 1000);
      /* a server that answers PA gets the whole transaction deadline */
      t.progress_at = g_get_monotonic_time () + (gint64) svc->response_timeout_ms * 500;
      do
        step = receive_one (&t, error);
      while (step == STEP_ON);
    }
  if (step == STEP_DONE && !finish (&t, error))
    step = STEP_FAILED;
  if (step == STEP_BROKE)
    end_broken (&t, error);
  if (step != STEP_DONE)
    end_late (&t, error);
  ocp_adapted_clear (&t.a);
  g_mutex_lock (&c->lock);
  g_hash_table_remove (c->inbox, &t.xid);
  g_mutex_unlock (&c->lock);
  return step == STEP_DONE;
}
