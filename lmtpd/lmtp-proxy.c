/* lmtp-proxy.c - per-recipient LMTP proxying: a recipient that another
 * node owns (lmtp-nodes.c) is sent there, over one client connection per
 * backend and transaction (lmtp-proxy-io.c), opened at the first RCPT
 * for that backend (or taken from the idle ones an earlier transaction
 * left, after a RSET): LHLO, XFORWARD (the original client, and IDENT marks
 * the transaction as proxied so that it is never proxied again), MAIL
 * FROM with its parameters as given, then each RCPT as it comes, whose
 * reply is the reply to our client's RCPT.  After the data each backend
 * gets the message from the spool (BDAT: no dot-stuffing, the size is
 * known) and its per-recipient replies go, through lmtp-delivery.c, into
 * their places in our reply list (RFC 2033 4.2).
 *
 * Every wait on a backend has a deadline ([cluster] proxy_command_timeout
 * for the connection and a RCPT, proxy_timeout for the data and its
 * replies); when one passes, or the backend fails, its recipients still
 * unanswered get 451 and the connection is closed, so nothing it says
 * later reaches our client.  Other backends and local recipients go on.
 */
#include "config.h"

#include <string.h>

#include "lmtp-proxy.h"

typedef enum {
  STEP_NEW,
  STEP_GREETING,
  STEP_LHLO,
  STEP_XFORWARD,
  STEP_MAIL,
  STEP_RCPT,
  STEP_IDLE,      /* between RCPTs, or before the data */
  STEP_DATA,
  STEP_FAILED,
  STEP_RSET,      /* a pooled connection: RSET, then XFORWARD */
} Step;

typedef struct {
  LmtpProxy *p;
  char *name, *address;
  ProxyIo *io;
  Step step;
  char *failure;            /* why it failed: its recipients get 451 */
  GPtrArray *accepted;      /* DeliverRecipient*, borrowed from the transaction, in RCPT order */
  guint answered;           /* of them, after the data */
  DeliverRecipient *pending; /* the RCPT waiting for the backend (ours until answered) */
  char *pending_params;
  GSource *timer;
} Backend;

struct LmtpProxy {
  LmtpSession *s;           /* the transaction's session; the proxy lives in its Txn */
  const LmtpProxyResults *results;
  GHashTable *backends;     /* name -> Backend* */
  GHashTable *owned;        /* DeliverRecipient* -> Backend*, the accepted ones */
};

static void
timer_stop (Backend *b)
{
  if (b->timer)
    {
      g_source_destroy (b->timer);
      g_clear_pointer (&b->timer, g_source_unref);
    }
}

static void
backend_free (gpointer data)
{
  Backend *b = data;

  timer_stop (b);
  /* in step (no command or reply outstanding): kept for the next transaction */
  if (b->io && (b->step == STEP_IDLE || (b->step == STEP_DATA && b->answered == b->accepted->len)))
    proxy_io_pool_put (b->io);
  else
    proxy_io_close (b->io);
  deliver_recipient_free (b->pending);
  g_free (b->pending_params);
  g_ptr_array_unref (b->accepted);
  g_free (b->failure);
  g_free (b->name);
  g_free (b->address);
  g_free (b);
}

void
lmtp_proxy_free (LmtpProxy *p)
{
  if (p == NULL)
    return;
  g_hash_table_unref (p->backends);
  g_hash_table_unref (p->owned);
  g_free (p);
}

gboolean
lmtp_proxy_owns (LmtpSession *s, const DeliverRecipient *r)
{
  LmtpProxy *p = s->txn ? s->txn->proxy : NULL;

  return p && g_hash_table_contains (p->owned, r);
}

/* ---- failures -------------------------------------------------------------- */

/* The recipients of @b still waiting for an answer get 451: the one at
 * RCPT, or every accepted one after the data.  Nothing of @b is touched
 * after the first answer (the last one may end the transaction). */
static void
backend_fail (Backend *b, const char *why)
{
  LmtpSession *s = b->p->s;
  DeliverStatus st = { 0 };
  DeliverRecipient *pending = g_steal_pointer (&b->pending);
  g_autoptr (GPtrArray) waiting = g_ptr_array_new ();
  g_autofree char *name = g_strdup (b->name);
  const LmtpProxyResults *results = b->p->results;

  g_message ("%s: %s: proxy to node %s failed: %s", s->log_id, s->txn->id, b->name, why);
  if (b->step == STEP_DATA)
    for (guint i = b->answered; i < b->accepted->len; i++)
      g_ptr_array_add (waiting, b->accepted->pdata[i]);
  timer_stop (b);
  g_clear_pointer (&b->io, proxy_io_close);
  b->step = STEP_FAILED;
  if (b->failure == NULL)
    b->failure = g_strdup (why);
  lmtp_session_ref (s);
  if (pending)
    {
      deliver_status_set (&st, 451, "4.4.1", "<%s> Node %s did not take it, try again later", pending->original,
                          name);
      b->p->results->refused (s, pending, &st);
    }
  for (guint i = 0; i < waiting->len; i++)
    {
      const DeliverRecipient *r = waiting->pdata[i];
      deliver_status_clear (&st);
      deliver_status_set (&st, 451, "4.4.2", "<%s> Node %s did not answer, try again later", r->original, name);
      results->delivered (s, r, &st, name);
    }
  deliver_status_clear (&st);
  lmtp_session_unref (s);
}

static gboolean
timer_fired (gpointer data)
{
  Backend *b = data;

  g_clear_pointer (&b->timer, g_source_unref);
  backend_fail (b, "timed out");
  return G_SOURCE_REMOVE;
}

static void
timer_start (Backend *b, guint seconds)
{
  timer_stop (b);
  b->timer = g_timeout_source_new (seconds * 1000); /* not _seconds: that one may fire a second late */
  g_source_set_callback (b->timer, timer_fired, b, NULL);
  g_source_attach (b->timer, NULL);
}

/* ---- the commands before the data ----------------------------------------- */

/* xtext (RFC 3461 4): '+', '=' and anything outside '!'..'~' as +HH. */
static void
append_xtext (GString *out, const char *v)
{
  for (const guchar *p = (const guchar *) v; *p; p++)
    if (*p < '!' || *p > '~' || *p == '+' || *p == '=')
      g_string_append_printf (out, "+%02X", *p);
    else
      g_string_append_c (out, *p);
}

static void
append_attr (GString *out, const char *name, const char *value)
{
  g_string_append_printf (out, " %s=", name);
  append_xtext (out, value && value[0] && strcmp (value, "local") != 0 ? value : "[UNAVAILABLE]");
}

/* The original client: the MTA's XFORWARD if it sent one, else ours. */
static char *
xforward_line (LmtpSession *s, const Backend *b)
{
  GString *line = g_string_new ("XFORWARD");
  g_autofree char *ident = g_strdup_printf (LMTP_PROXY_IDENT_PREFIX "%s:%s", s->txn->config->cluster_node_name,
                                            s->txn->id);

  append_attr (line, "NAME", s->xf.name ? s->xf.name : s->client_name);
  append_attr (line, "ADDR", s->xf.addr ? s->xf.addr : s->peer);
  append_attr (line, "PROTO", s->xf.addr || s->xf.helo ? "ESMTP" : "LMTP");
  append_attr (line, "HELO", s->xf.helo ? s->xf.helo : s->lhlo);
  append_attr (line, "IDENT", ident);
  return g_string_free (line, FALSE);
}

/* The recipient as a path: its local part quoted again (RFC 5321 4.1.2)
 * unless it is a dot-atom. */
static char *
rcpt_path (const DeliverRecipient *r)
{
  const char *at = strrchr (r->original, '@');
  g_autofree char *local = at ? g_strndup (r->original, at - r->original) : g_strdup (r->original);
  const char *atext = "!#$%&'*+-/=?^_`{|}~.";
  gboolean atom = local[0] != '.' && !g_str_has_suffix (local, ".") && !strstr (local, "..");
  GString *q;

  for (const char *p = local; *p && atom; p++)
    atom = g_ascii_isalnum (*p) || (guchar) *p >= 0x80 || strchr (atext, *p);
  if (atom)
    return g_strdup (r->original);
  q = g_string_new ("\"");
  for (const char *p = local; *p; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_c (q, '\\');
      g_string_append_c (q, *p);
    }
  g_string_append_printf (q, "\"%s", at ? at : "");
  return g_string_free (q, FALSE);
}

static void
send_rcpt (Backend *b)
{
  g_autofree char *path = rcpt_path (b->pending);
  g_autofree char *line = g_strdup_printf ("RCPT TO:<%s>%s%s", path, b->pending_params[0] ? " " : "",
                                           b->pending_params);

  b->step = STEP_RCPT;
  proxy_io_command (b->io, line);
}

/* The backend's answer to one of the commands before RCPT: the next one,
 * or the reason it cannot go on. */
static const char *
setup_next (Backend *b, const ProxyReply *reply)
{
  Txn *t = b->p->s->txn;
  g_autofree char *line = NULL;

  if (reply->code != (b->step == STEP_GREETING ? 220 : 250))
    return reply->text;
  switch (b->step)
    {
    case STEP_RSET:
      b->step = STEP_LHLO; /* as if LHLO had been answered, offering what lmtpd offers */
      line = xforward_line (b->p->s, b);
      break;
    case STEP_GREETING:
      line = g_strdup_printf ("LHLO %s", t->config->hostname);
      break;
    case STEP_LHLO:
      if (!reply->xforward || !reply->chunking)
        return "the node offers no XFORWARD (its [server] xforward_hosts) or no CHUNKING";
      line = xforward_line (b->p->s, b);
      break;
    case STEP_XFORWARD:
      line = g_strdup_printf ("MAIL FROM:<%s>%s%s", t->sender, t->mail_params[0] ? " " : "", t->mail_params);
      break;
    default:
      send_rcpt (b);
      return NULL;
    }
  b->step++;
  proxy_io_command (b->io, line);
  return NULL;
}

/* The backend's answer to a RCPT is our answer to it. */
static void
rcpt_answered (Backend *b, const ProxyReply *reply)
{
  LmtpSession *s = b->p->s;
  DeliverRecipient *r = g_steal_pointer (&b->pending);
  DeliverStatus st = { 0 };

  timer_stop (b);
  b->step = STEP_IDLE;
  g_clear_pointer (&b->pending_params, g_free);
  if (reply->code / 100 == 2)
    {
      g_ptr_array_add (b->accepted, r);
      g_hash_table_insert (b->p->owned, r, b);
      b->p->results->accepted (s, r, reply);
      return;
    }
  /* a 4xx or 5xx from the owner (no such user, over quota) is the
   * owner's word; anything else (3xx) is nonsense, and temporary */
  deliver_status_set (&st, reply->code / 100 == 3 ? 451 : reply->code,
                      reply->code / 100 == 3 ? "4.4.0" : reply->enhanced, "%s", reply->text);
  b->p->results->refused (s, r, &st);
  deliver_status_clear (&st);
}

/* ---- after the data --------------------------------------------------------- */

static void
data_answered (Backend *b, const ProxyReply *reply)
{
  LmtpSession *s = b->p->s;
  const DeliverRecipient *r = b->accepted->pdata[b->answered++];
  gboolean more = b->answered < b->accepted->len;
  DeliverStatus st = { 0 };
  g_autofree char *name = g_strdup (b->name);
  const LmtpProxyResults *results = b->p->results;

  if (!more)
    timer_stop (b);
  deliver_status_set (&st, reply->code / 100 == 3 ? 451 : reply->code,
                      reply->code / 100 == 3 ? "4.4.0" : reply->enhanced, "%s", reply->text);
  /* the transaction lasts while one of ours is unanswered, so @b too */
  results->delivered (s, r, &st, name);
  deliver_status_clear (&st);
  if (more)
    proxy_io_read_reply (b->io);
}

static void backend_reply (gpointer owner, const ProxyReply *reply, const char *why);

static void
backend_connect (Backend *b)
{
  b->step = STEP_GREETING;
  b->io = proxy_io_new (b->address, b->p->s->log_id, backend_reply, b);
  proxy_io_connect (b->io);
}

static void
backend_reply (gpointer owner, const ProxyReply *reply, const char *why)
{
  Backend *b = owner;
  LmtpSession *s = lmtp_session_ref (b->p->s);

  if (b->step == STEP_RSET && (reply == NULL || reply->code != 250))
    {
      /* the backend closed the idle connection meanwhile: a new one */
      g_clear_pointer (&b->io, proxy_io_close);
      backend_connect (b);
    }
  else if (reply == NULL)
    backend_fail (b, why);
  else if (b->step == STEP_RCPT)
    rcpt_answered (b, reply);
  else if (b->step == STEP_DATA)
    data_answered (b, reply);
  else if ((why = setup_next (b, reply)) != NULL)
    {
      g_autofree char *text = g_strdup_printf ("%u %s %s", reply->code, reply->enhanced, why);
      backend_fail (b, text);
    }
  lmtp_session_unref (s);
}

/* ---- RCPT -------------------------------------------------------------------- */

static Backend *
backend_get (LmtpSession *s, const LmtpNode *node, const LmtpProxyResults *results)
{
  Txn *t = s->txn;
  Backend *b;

  if (t->proxy == NULL)
    {
      t->proxy = g_new0 (LmtpProxy, 1);
      t->proxy->s = s;
      t->proxy->results = results;
      t->proxy->backends = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, backend_free);
      t->proxy->owned = g_hash_table_new (NULL, NULL);
    }
  b = g_hash_table_lookup (t->proxy->backends, node->name);
  if (b == NULL)
    {
      b = g_new0 (Backend, 1);
      b->p = t->proxy;
      b->name = g_strdup (node->name);
      b->address = g_strdup (node->address);
      b->accepted = g_ptr_array_new ();
      g_hash_table_insert (t->proxy->backends, b->name, b);
    }
  return b;
}

/* Refused here, without asking anyone: "<address> @why". */
static void
refuse (LmtpSession *s, DeliverRecipient *r, const LmtpProxyResults *results, const char *enhanced,
        const char *why)
{
  DeliverStatus st = { 0 };

  deliver_status_set (&st, 451, enhanced, "<%s> %s", r->original, why);
  results->refused (s, r, &st);
  deliver_status_clear (&st);
}

static void
rcpt_send (LmtpSession *s, Backend *b, DeliverRecipient *r, const char *params)
{
  b->pending = r;
  b->pending_params = g_strdup (params ? params : "");
  s->mode = MODE_BUSY;
  lmtp_session_rearm (s);
  lmtp_session_flush (s);
  timer_start (b, s->txn->config->cluster_proxy_command_timeout);
  if (b->step != STEP_NEW)
    send_rcpt (b);
  else if ((b->io = proxy_io_pool_take (b->address, backend_reply, b)) != NULL)
    {
      b->step = STEP_RSET;
      proxy_io_command (b->io, "RSET");
    }
  else
    backend_connect (b);
}

gboolean
lmtp_proxy_rcpt (LmtpSession *s, DeliverRecipient *r, const char *params, const LmtpProxyResults *results)
{
  const LmtpNode *node;
  Backend *b;
  g_autofree char *why = NULL;

  switch (lmtp_nodes_owner (s->txn->config, r->address, r->host, &node))
    {
    case LMTP_OWNER_LOCAL:
      return FALSE;
    case LMTP_OWNER_UNKNOWN_HOST:
      why = g_strdup_printf ("The directory names node %s, which is not in the cluster", r->host);
      refuse (s, r, results, "4.3.5", why);
      return TRUE;
    case LMTP_OWNER_NO_LIST:
      refuse (s, r, results, "4.3.0", "The cluster's node list is not known yet, try again later");
      return TRUE;
    case LMTP_OWNER_REMOTE:
      break;
    }
  if (s->xf.ident && g_str_has_prefix (s->xf.ident, LMTP_PROXY_IDENT_PREFIX))
    {
      why = g_strdup_printf ("Proxied here but owned by node %s: not proxied again (routing loop)", node->name);
      refuse (s, r, results, "4.4.6", why);
    }
  else if ((b = backend_get (s, node, results))->step == STEP_FAILED)
    {
      why = g_strdup_printf ("Node %s did not take it, try again later", node->name);
      refuse (s, r, results, "4.4.1", why);
    }
  else
    rcpt_send (s, b, r, params);
  return TRUE;
}

/* ---- the data ----------------------------------------------------------------- */

void
lmtp_proxy_data (LmtpSession *s)
{
  Txn *t = s->txn;
  LmtpProxy *p = t->proxy;
  GHashTableIter it;
  Backend *b;
  g_autoptr (GPtrArray) failed = g_ptr_array_new ();

  if (p == NULL)
    return;
  g_hash_table_iter_init (&it, p->backends);
  while (g_hash_table_iter_next (&it, NULL, (gpointer *) &b))
    {
      if (b->accepted->len == 0)
        continue;
      b->step = b->step == STEP_IDLE ? STEP_DATA : b->step;
      if (b->step != STEP_DATA)
        {
          g_ptr_array_add (failed, b);
          continue;
        }
      timer_start (b, t->config->cluster_proxy_timeout);
      proxy_io_send_spool (b->io, deliver_spool_fd (t->spool), deliver_spool_size (t->spool),
                           deliver_spool_lines (t->spool));
    }
  /* answered last: the last answer may end the transaction */
  for (guint i = 0; i < failed->len; i++)
    {
      b = failed->pdata[i];
      b->step = STEP_DATA;
      backend_fail (b, b->failure ? b->failure : "failed before the data");
    }
}
