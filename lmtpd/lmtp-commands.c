/* lmtp-commands.c - the LMTP commands: a table of { verb, check,
 * proceed } (as OpenSMTPD's smtp_session.c has), and lmtp_protocol, what
 * the session calls for its input in each mode.  The check says, from
 * the session's state alone, why a command cannot run now (a counted
 * protocol error); proceed does the command.  Arguments are parsed by
 * the pure parser (lmtp-command.c); recipients go to lmtp-delivery.c.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "lmtp-session.h"

typedef struct {
  LmtpVerb verb;
  /* NULL, or the reply for a command that cannot run in this state */
  const char *(*check) (LmtpSession *s, const char *args);
  void (*proceed) (LmtpSession *s, const char *args);
} LmtpCommandDef;

static guint64 txn_counter;

static char *
txn_new_id (void)
{
  /* unique per host: time, pid and a counter */
  return g_strdup_printf ("%" G_GINT64_MODIFIER "X%05X%" G_GINT64_MODIFIER "X",
                          g_get_real_time () / G_USEC_PER_SEC, (guint) util_pid () & 0xFFFFF,
                          (guint64) ++txn_counter);
}

/* ---- LHLO, MAIL, RCPT ------------------------------------------------------ */

static void
cmd_lhlo (LmtpSession *s, const char *args)
{
  LmtpdConfig *c;

  lmtp_session_refresh_config (s);
  c = s->config;
  if (*args == '\0' || strchr (args, ' '))
    {
      lmtp_session_reply_error (s, LMTP_REPLY_LHLO_SYNTAX);
      return;
    }
  g_free (s->lhlo);
  s->lhlo = util_sanitize (args, 255);
  g_clear_pointer (&s->txn, lmtp_delivery_txn_free);
  lmtp_forwarded_clear (&s->xf);
  lmtp_session_reply (s, LMTP_REPLY_LHLO_FIRST, c->hostname);
  lmtp_session_reply (s, LMTP_REPLY_LHLO_PIPELINING);
  lmtp_session_reply (s, LMTP_REPLY_LHLO_ENHANCEDSTATUSCODES);
  lmtp_session_reply (s, LMTP_REPLY_LHLO_8BITMIME);
  lmtp_session_reply (s, LMTP_REPLY_LHLO_SIZE, c->max_message_size);
  lmtp_session_reply (s, LMTP_REPLY_LHLO_CHUNKING);
  lmtp_session_reply (s, LMTP_REPLY_LHLO_BINARYMIME);
  if (s->host->tls (s->server) && !lmtp_io_tls_active (s->io))
    lmtp_session_reply (s, LMTP_REPLY_LHLO_STARTTLS);
  if (lmtpd_config_xforward_allowed (c, s->real_peer))
    {
      lmtp_session_reply (s, LMTP_REPLY_LHLO_XFORWARD);
      lmtp_session_reply (s, LMTP_REPLY_LHLO_XCLIENT);
    }
  lmtp_session_reply (s, LMTP_REPLY_LHLO_LAST);
}

static const char *
check_mail (LmtpSession *s, const char *args)
{
  if (s->lhlo == NULL)
    return LMTP_REPLY_LHLO_NEEDED;
  if (s->txn)
    return LMTP_REPLY_NESTED_MAIL;
  return NULL;
}

/* The sender, unless it is <>, must be an address with a domain. */
static gboolean
mail_sender_ok (LmtpSession *s, const char *path, gboolean smtputf8)
{
  g_autofree char *local = NULL, *domain = NULL;
  const char *why = NULL, *dsn;
  guint code;

  if (path[0] == '\0' || (deliver_address_parse (path, smtputf8, &local, &domain, &why) && domain))
    return TRUE;
  dsn = deliver_address_status (why, TRUE, &code);
  lmtp_session_reply_error (s, LMTP_REPLY_BAD_SENDER, code, dsn, why ? why : "no domain");
  return FALSE;
}

static void
cmd_mail (LmtpSession *s, const char *args)
{
  LmtpPathArgs a;
  LmtpMailParams mp;
  const char *why, *err;
  Txn *t;

  if (!lmtp_command_parse_path (args, "FROM:", &a, &why))
    {
      lmtp_session_reply_error (s, LMTP_REPLY_SYNTAX, why);
      return;
    }
  lmtp_session_refresh_config (s);
  err = lmtp_command_mail_params (&a, s->config->max_message_size, &mp);
  if (err)
    lmtp_session_reply_error (s, "%s", err);
  if (err || !mail_sender_ok (s, a.path, mp.smtputf8))
    {
      lmtp_path_args_clear (&a);
      return;
    }
  t = g_new0 (Txn, 1);
  t->config = lmtpd_config_ref (s->config);
  t->rcpts = g_ptr_array_new_with_free_func ((GDestroyNotify) deliver_recipient_free);
  t->size_hint = mp.size;
  t->smtputf8 = mp.smtputf8;
  t->binarymime = mp.binarymime;
  t->sender = g_steal_pointer (&a.path);
  t->mail_params = lmtp_command_params_text (&a);
  t->id = txn_new_id ();
  t->started_us = g_get_real_time ();
  s->txn = t;
  lmtp_session_reply (s, LMTP_REPLY_MAIL_OK);
  lmtp_path_args_clear (&a);
}

static const char *
check_rcpt (LmtpSession *s, const char *args)
{
  if (s->txn == NULL)
    return LMTP_REPLY_MAIL_NEEDED;
  if (s->txn->bdat)
    return LMTP_REPLY_RCPT_AFTER_BDAT;
  return NULL;
}

/* Checks what the parser can; FALSE once the error is answered. */
static gboolean
rcpt_params_ok (LmtpSession *s, const LmtpPathArgs *a, LmtpRcptParams *rp)
{
  const char *bad = NULL;

  switch (lmtp_command_rcpt_params (a, rp, &bad))
    {
    case LMTP_PARAM_OK:
      return TRUE;
    case LMTP_PARAM_UNSUPPORTED:
      lmtp_session_reply_error (s, LMTP_REPLY_UNSUPPORTED_PARAM_NAMED, bad);
      return FALSE;
    case LMTP_PARAM_INVALID:
      lmtp_session_reply_error (s, LMTP_REPLY_BAD_PARAM_NAMED, bad);
      return FALSE;
    }
  return FALSE;
}

static void
rcpt_bad_address (LmtpSession *s, const char *path, const char *why)
{
  guint code;
  const char *dsn = deliver_address_status (why, FALSE, &code);

  if (path[0])
    lmtp_session_reply_error (s, LMTP_REPLY_BAD_RCPT, code, dsn, why);
  else
    lmtp_session_reply_error (s, LMTP_REPLY_EMPTY_RCPT);
}

static void
cmd_rcpt (LmtpSession *s, const char *args)
{
  Txn *t = s->txn;
  LmtpPathArgs a;
  LmtpRcptParams rp = { 0 };
  const char *why;
  g_autofree char *local = NULL, *domain = NULL;

  if (!lmtp_command_parse_path (args, "TO:", &a, &why))
    {
      lmtp_session_reply_error (s, LMTP_REPLY_SYNTAX, why);
      return;
    }
  if (!rcpt_params_ok (s, &a, &rp))
    goto out;
  rp.text = lmtp_command_params_text (&a);
  if (t->rcpts->len >= t->config->max_recipients)
    lmtp_session_reply (s, LMTP_REPLY_TOO_MANY_RCPTS);
  else if (!deliver_address_parse (a.path, t->smtputf8, &local, &domain, &why))
    rcpt_bad_address (s, a.path, why);
  else
    lmtp_delivery_rcpt (s, a.path, local, domain, &rp);
out:
  lmtp_rcpt_params_clear (&rp);
  lmtp_path_args_clear (&a);
}

/* ---- DATA, BDAT, RSET ------------------------------------------------------ */

static const char *
data_can_start (LmtpSession *s)
{
  if (s->txn == NULL)
    return LMTP_REPLY_MAIL_NEEDED;
  if (s->txn->rcpts->len == 0)
    return LMTP_REPLY_NO_RCPTS;
  return NULL;
}

static const char *
check_data (LmtpSession *s, const char *args)
{
  const char *err;

  if (*args)
    return LMTP_REPLY_DATA_SYNTAX;
  if ((err = data_can_start (s)) != NULL)
    return err;
  if (s->txn->binarymime)
    return LMTP_REPLY_DATA_BINARYMIME;
  if (s->txn->bdat)
    return LMTP_REPLY_DATA_AFTER_BDAT;
  return NULL;
}

static void
cmd_data (LmtpSession *s, const char *args)
{
  if (!lmtp_delivery_open_spool (s))
    {
      lmtp_session_reply (s, LMTP_REPLY_TEMP_FAILURE);
      return;
    }
  s->mode = MODE_DATA;
  lmtp_data_start (s);
  s->data_bol = TRUE;
  s->line_len = 0;
  lmtp_session_reply (s, LMTP_REPLY_DATA_GO);
}

/* A chunk that cannot be stored is still read (its size says where the
 * next command starts) and answered with bdat_error at its end. */
static void
cmd_bdat (LmtpSession *s, const char *args)
{
  guint64 size;
  gboolean last;

  if (!lmtp_command_parse_bdat (args, &size, &last))
    {
      /* The chunk size is unknown, so the input cannot be followed. */
      lmtp_session_reply (s, LMTP_REPLY_BDAT_SYNTAX);
      lmtp_session_reply (s, LMTP_REPLY_LOST_SYNC, s->config->hostname);
      s->close_after_flush = TRUE;
      return;
    }
  s->mode = MODE_BDAT;
  lmtp_data_start (s);
  s->bdat_left = size;
  s->bdat_last = last;
  s->bdat_error = data_can_start (s);
  if (s->bdat_error == NULL && !lmtp_delivery_open_spool (s))
    s->bdat_error = LMTP_REPLY_TEMP_FAILURE;
  else if (s->bdat_error == NULL)
    s->txn->bdat = TRUE;
  if (s->bdat_error && last)
    g_clear_pointer (&s->txn, lmtp_delivery_txn_free);
}

static const char *
check_no_args (LmtpSession *s, const char *args)
{
  return *args ? LMTP_REPLY_RSET_SYNTAX : NULL;
}

static void
cmd_rset (LmtpSession *s, const char *args)
{
  g_clear_pointer (&s->txn, lmtp_delivery_txn_free);
  lmtp_session_reply (s, LMTP_REPLY_OK);
  lmtp_session_txn_end (s);
}

/* ---- XFORWARD, XCLIENT ----------------------------------------------------- */

/* The MTA passes on the original client's name, address and HELO, which
 * go into the Received header and to the callout services.  Only from
 * [server] xforward_hosts (checked against the real peer). */
static const char *
check_forward (LmtpSession *s, const char *args)
{
  if (!lmtpd_config_xforward_allowed (s->config, s->real_peer))
    return LMTP_REPLY_NOT_AUTHORIZED;
  if (s->txn)
    return LMTP_REPLY_IN_TRANSACTION;
  return NULL;
}

static void
cmd_xforward (LmtpSession *s, const char *args)
{
  const char *err = lmtp_command_parse_forwarded (args, LMTP_CMD_XFORWARD, &s->xf);

  if (err)
    lmtp_session_reply_error (s, "%s", err);
  else
    lmtp_session_reply (s, LMTP_REPLY_OK_FORWARD);
}

/* XCLIENT replaces the session's client for good and starts over with a
 * new greeting (the client sends LHLO again). */
static void
cmd_xclient (LmtpSession *s, const char *args)
{
  LmtpForwarded f = { 0 };
  const char *err = lmtp_command_parse_forwarded (args, LMTP_CMD_XCLIENT, &f);

  if (err)
    {
      lmtp_forwarded_clear (&f);
      lmtp_session_reply_error (s, "%s", err);
      return;
    }
  if (f.addr)
    {
      g_free (s->peer);
      s->peer = g_steal_pointer (&f.addr);
    }
  g_free (s->client_name);
  s->client_name = g_steal_pointer (&f.name);
  g_free (s->lhlo);
  s->lhlo = g_steal_pointer (&f.helo);
  lmtp_forwarded_clear (&s->xf);
  lmtp_forwarded_clear (&f);
  g_message ("%s: XCLIENT: client is now %s", s->log_id, s->peer);
  lmtp_session_reply (s, LMTP_REPLY_GREETING, s->config->hostname);
}

/* ---- STARTTLS (RFC 3207) --------------------------------------------------- */

static const char *
check_starttls (LmtpSession *s, const char *args)
{
  if (s->host->tls (s->server) == NULL)
    return LMTP_REPLY_TLS_UNCONFIGURED;
  if (*args)
    return LMTP_REPLY_TLS_SYNTAX;
  if (lmtp_io_tls_active (s->io))
    return LMTP_REPLY_TLS_ACTIVE;
  if (s->txn)
    return LMTP_REPLY_TLS_IN_TRANSACTION;
  return NULL;
}

static void
cmd_starttls (LmtpSession *s, const char *args)
{
  lmtp_session_reply (s, LMTP_REPLY_TLS_GO);
  /* commands pipelined behind STARTTLS are plaintext a man in the middle
   * could have added: they are dropped (CVE-2011-0411) */
  s->tls_starting = TRUE;
  /* from now on the socket's bytes are the handshake's */
  lmtp_io_stop_reading (s->io);
}

static void
tls_begin (LmtpSession *s)
{
  g_autoptr (GError) error = NULL;

  if (!lmtp_io_start_tls (s->io, s->host->tls (s->server), &error))
    {
      g_warning ("%s: TLS: %s", s->log_id, error ? error->message : "no context");
      lmtp_session_close (s);
    }
}

static void
tls_done (LmtpSession *s, const char *why)
{
  g_autofree char *how = NULL;

  if (why)
    {
      g_message ("%s: TLS handshake with %s failed: %s", s->log_id, s->peer, why);
      lmtp_session_close (s);
      return;
    }
  how = lmtp_io_tls_describe (s->io);
  g_message ("%s: TLS established with %s: %s", s->log_id, s->peer, how);
  /* RFC 3207 4.2: everything learnt before is forgotten */
  s->tls_starting = FALSE;
  g_clear_pointer (&s->lhlo, g_free);
  g_clear_pointer (&s->txn, lmtp_delivery_txn_free);
  lmtp_forwarded_clear (&s->xf);
  lmtp_session_rearm (s);
  lmtp_session_want_read (s);
}

/* ---- the rest, and the table ---------------------------------------------- */

static void
cmd_noop (LmtpSession *s, const char *args)
{
  lmtp_session_reply (s, LMTP_REPLY_OK);
}

static void
cmd_quit (LmtpSession *s, const char *args)
{
  lmtp_session_reply (s, LMTP_REPLY_BYE, s->config->hostname);
  s->close_after_flush = TRUE;
}

static const char *
check_vrfy (LmtpSession *s, const char *args)
{
  return *args == '\0' ? LMTP_REPLY_VRFY_SYNTAX : NULL;
}

static void
cmd_vrfy (LmtpSession *s, const char *args)
{
  lmtp_session_reply (s, LMTP_REPLY_VRFY);
}

static void
cmd_help (LmtpSession *s, const char *args)
{
  lmtp_session_reply (s, LMTP_REPLY_HELP);
}

static const char *
check_lmtp (LmtpSession *s, const char *args)
{
  return LMTP_REPLY_USE_LHLO;
}

static const char *
check_unknown (LmtpSession *s, const char *args)
{
  return LMTP_REPLY_UNKNOWN_COMMAND;
}

static const LmtpCommandDef commands[] = {
  { LMTP_CMD_LHLO, NULL, cmd_lhlo },
  { LMTP_CMD_MAIL, check_mail, cmd_mail },
  { LMTP_CMD_RCPT, check_rcpt, cmd_rcpt },
  { LMTP_CMD_DATA, check_data, cmd_data },
  { LMTP_CMD_BDAT, NULL, cmd_bdat },
  { LMTP_CMD_RSET, check_no_args, cmd_rset },
  { LMTP_CMD_NOOP, NULL, cmd_noop },
  { LMTP_CMD_QUIT, NULL, cmd_quit },
  { LMTP_CMD_VRFY, check_vrfy, cmd_vrfy },
  { LMTP_CMD_HELP, NULL, cmd_help },
  { LMTP_CMD_XFORWARD, check_forward, cmd_xforward },
  { LMTP_CMD_XCLIENT, check_forward, cmd_xclient },
  { LMTP_CMD_STARTTLS, check_starttls, cmd_starttls },
  { LMTP_CMD_HELO, check_lmtp, NULL },
  { LMTP_CMD_EHLO, check_lmtp, NULL },
  { LMTP_CMD_UNKNOWN, check_unknown, NULL },
};

static void
session_command (LmtpSession *s, char *line)
{
  const char *args, *err;
  LmtpVerb verb = lmtp_command_verb (line, &args);

  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      const LmtpCommandDef *c = &commands[i];
      if (c->verb != verb)
        continue;
      if (c->check && (err = c->check (s, args)) != NULL)
        lmtp_session_reply_error (s, "%s", err);
      else if (c->proceed)
        c->proceed (s, args);
      return;
    }
}

/* One command line from the buffer; FALSE if more input is needed. */
static gboolean
command_feed (LmtpSession *s)
{
  char *p = s->inbuf + s->inpos;
  gsize avail = s->inlen - s->inpos;
  char *nl = memchr (p, '\n', avail);
  gsize len;

  if (nl == NULL)
    {
      if (avail > s->config->max_line_length)
        {
          s->skipping = TRUE;
          s->inpos = s->inlen;
        }
      return FALSE;
    }
  s->inpos += nl - p + 1;
  if (s->skipping || (gsize) (nl - p + 1) > s->config->max_line_length)
    {
      s->skipping = FALSE;
      lmtp_session_reply_error (s, LMTP_REPLY_LINE_TOO_LONG);
      return TRUE;
    }
  len = nl - p;
  if (len > 0 && p[len - 1] == '\r')
    len--;
  p[len] = '\0';
  if (memchr (p, '\0', len) || memchr (p, '\r', len))
    {
      lmtp_session_reply_error (s, LMTP_REPLY_BAD_CHARACTERS);
      return TRUE;
    }
  session_command (s, p);
  lmtp_session_rearm (s);
  return TRUE;
}

const struct LmtpSessionProtocol lmtp_protocol = {
  command_feed, lmtp_data_feed, lmtp_bdat_feed, lmtp_delivery_data_complete, lmtp_bdat_complete,
  tls_begin, tls_done, lmtp_delivery_txn_free,
};
