/* lmtp-data.c - message data into the spool: DATA (dot-unstuffed, lines
 * bounded) and BDAT chunks (counted, RFC 3030).  The bytes go straight
 * to the spool file as they come, so memory does not grow with the
 * message; a limit passed or a spool failure is remembered and answered
 * once all the data is in.
 */
#include "config.h"

#include <string.h>

#include "lmtp-session.h"

void
lmtp_data_start (LmtpSession *s)
{
  if (s->data_started_us == 0)
    {
      s->data_started_us = g_get_monotonic_time ();
      s->data_seen = 0;
    }
}

/* Message bytes (dot-unstuffed, CRLF line ends) for the spool. */
static void
data_append (LmtpSession *s, const char *p, gsize n, gboolean ends_line)
{
  Txn *t = s->txn;
  g_autoptr (GError) error = NULL;

  t->received += n;
  s->line_len += n;
  if (t->failure != FAIL_NONE || t->spool == NULL)
    return;
  if (t->config->max_message_size && t->received > t->config->max_message_size)
    t->failure = FAIL_TOO_BIG;
  else if (!t->bdat && s->line_len > t->config->max_data_line_length + 2)
    t->failure = FAIL_LINE_TOO_LONG;
  else if (!deliver_spool_write (t->spool, p, n, &error))
    {
      g_warning ("%s: %s: %s", s->log_id, t->id, error->message);
      t->failure = FAIL_SPOOL;
      t->spool_error = g_steal_pointer (&error);
    }
  if (ends_line)
    s->line_len = 0;
}

/* A line that starts with a dot, @avail bytes of it buffered: the end of
 * the data (TRUE), or a dot to remove (RFC 5321 4.5.2).  *wait: too few
 * bytes to tell yet. */
static gboolean
data_dot (LmtpSession *s, const char *p, gsize avail, gboolean *wait)
{
  *wait = FALSE;
  if (avail >= 2 && p[1] == '\n')
    {
      s->inpos += 2;
      return TRUE;
    }
  if (avail >= 3 && p[1] == '\r' && p[2] == '\n')
    {
      s->inpos += 3;
      return TRUE;
    }
  if (avail == 1 || (avail == 2 && p[1] == '\r'))
    {
      *wait = TRUE;
      return FALSE;
    }
  s->inpos++;
  s->data_bol = FALSE;
  return FALSE;
}

gboolean
lmtp_data_feed (LmtpSession *s)
{
  while (s->inpos < s->inlen)
    {
      const char *p = s->inbuf + s->inpos;
      gsize avail = s->inlen - s->inpos;
      const char *nl;
      gsize n;

      if (s->data_bol && p[0] == '.')
        {
          gboolean wait;
          if (data_dot (s, p, avail, &wait))
            return TRUE;
          if (wait)
            return FALSE;
          continue;
        }
      nl = memchr (p, '\n', avail);
      n = nl ? (gsize) (nl - p) + 1 : avail;
      data_append (s, p, n, nl != NULL);
      s->inpos += n;
      s->data_bol = nl != NULL;
    }
  return FALSE;
}

gboolean
lmtp_bdat_feed (LmtpSession *s)
{
  gsize n = MIN (s->bdat_left, s->inlen - s->inpos);

  if (n > 0 && s->bdat_error == NULL)
    data_append (s, s->inbuf + s->inpos, n, FALSE);
  s->inpos += n;
  s->bdat_left -= n;
  return s->bdat_left == 0;
}

void
lmtp_bdat_complete (LmtpSession *s)
{
  s->mode = MODE_COMMAND;
  if (s->bdat_last)
    s->data_started_us = 0;
  if (s->bdat_error)
    {
      lmtp_session_reply_error (s, "%s", s->bdat_error);
      s->bdat_error = NULL;
      return;
    }
  if (s->bdat_last)
    lmtp_delivery_data_complete (s);
  else if (s->txn->failure == FAIL_TOO_BIG)
    lmtp_session_reply (s, LMTP_REPLY_TOO_BIG);
  else if (s->txn->failure == FAIL_SPOOL)
    lmtp_session_reply (s, LMTP_REPLY_TEMP_FAILURE);
  else
    lmtp_session_reply (s, LMTP_REPLY_BDAT_OK, s->txn->received);
}
