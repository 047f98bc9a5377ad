/* ms-io.c - one connection's bytes, plain or under TLS, each wait bounded.
 *
 * The socket is non-blocking; every read and write that cannot go on at
 * once waits in poll() for at most the idle timeout, so a client that is
 * silent, or that stops reading what it is sent, ends its connection
 * after idle_timeout and holds no more than one reply.  Input is buffered
 * in one 16 KiB buffer; lines and literals are bounded by the caller.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "managesieve.h"

#define INBUF 16384

struct MsConn {
  int fd;
  int timeout_ms;
  UtilTls *tls;
  char in[INBUF];
  gsize in_pos, in_len;
  GString *out;
  gboolean timed_out;
};

MsConn *
ms_conn_new (int fd, guint timeout_s)
{
  MsConn *c = g_new0 (MsConn, 1);

  c->fd = fd;
  c->timeout_ms = (int) MIN (timeout_s, 86400u) * 1000;
  c->out = g_string_sized_new (1024);
  fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
  return c;
}

void
ms_conn_free (MsConn *c)
{
  g_clear_pointer (&c->tls, util_tls_free);
  g_string_free (c->out, TRUE);
  g_free (c);
}

gboolean
ms_conn_timed_out (MsConn *c)
{
  return c->timed_out;
}

gboolean
ms_conn_is_tls (MsConn *c)
{
  return c->tls != NULL;
}

/* Waits for @events on the socket; FALSE at the deadline or an error. */
static gboolean
wait_for (MsConn *c, short events)
{
  struct pollfd p = { .fd = c->fd, .events = events };
  int n;

  do
    n = poll (&p, 1, c->timeout_ms);
  while (n < 0 && errno == EINTR);
  if (n == 0)
    c->timed_out = TRUE;
  return n > 0;
}

/* Some bytes into the empty buffer; FALSE on EOF, error or the deadline. */
static gboolean
fill (MsConn *c)
{
  c->in_pos = c->in_len = 0;
  for (;;)
    {
      if (c->tls)
        {
          gsize got = 0;
          UtilTlsStatus st = util_tls_read (c->tls, c->in, INBUF, &got, NULL);
          if (st == UTIL_TLS_OK)
            return (c->in_len = got) > 0;
          if (st != UTIL_TLS_WANT_READ && st != UTIL_TLS_WANT_WRITE)
            return FALSE;
          if (!wait_for (c, st == UTIL_TLS_WANT_READ ? POLLIN : POLLOUT))
            return FALSE;
          continue;
        }
      gssize n = read (c->fd, c->in, INBUF);
      if (n > 0)
        return (c->in_len = n) > 0;
      if (n == 0 || (errno != EAGAIN && errno != EINTR))
        return FALSE;
      if (!wait_for (c, POLLIN))
        return FALSE;
    }
}

gboolean
ms_conn_read_line (MsConn *c, gsize max, GString *out, gboolean *too_long)
{
  g_string_truncate (out, 0);
  *too_long = FALSE;
  for (;;)
    {
      if (c->in_pos == c->in_len && !fill (c))
        return FALSE;
      const char *start = c->in + c->in_pos;
      const char *nl = memchr (start, '\n', c->in_len - c->in_pos);
      gsize take = nl ? (gsize) (nl - start) : c->in_len - c->in_pos;

      if (out->len + take > max)
        {
          *too_long = TRUE;
          return FALSE;
        }
      g_string_append_len (out, start, take);
      c->in_pos += take + (nl != NULL);
      if (nl)
        break;
    }
  if (out->len && out->str[out->len - 1] == '\r')
    g_string_truncate (out, out->len - 1);
  return TRUE;
}

gboolean
ms_conn_read_bytes (MsConn *c, gsize n, GString *out)
{
  while (n > 0)
    {
      if (c->in_pos == c->in_len && !fill (c))
        return FALSE;
      gsize take = MIN (n, c->in_len - c->in_pos);
      if (out)
        g_string_append_len (out, c->in + c->in_pos, take);
      c->in_pos += take;
      n -= take;
    }
  return TRUE;
}

void
ms_conn_write (MsConn *c, const char *data, gsize len)
{
  g_string_append_len (c->out, data, len);
}

void
ms_conn_printf (MsConn *c, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  g_string_append_vprintf (c->out, fmt, ap);
  va_end (ap);
}

/* Some of @p out: bytes written, 0 to wait, -1 for a dead connection. */
static gssize
write_some (MsConn *c, const char *p, gsize len, short *wait)
{
  if (c->tls)
    {
      gsize done = 0;
      UtilTlsStatus st = util_tls_write (c->tls, p, len, &done, NULL);
      if (st == UTIL_TLS_OK)
        return (gssize) done;
      *wait = st == UTIL_TLS_WANT_READ ? POLLIN : POLLOUT;
      return st == UTIL_TLS_WANT_READ || st == UTIL_TLS_WANT_WRITE ? 0 : -1;
    }
  gssize n = send (c->fd, p, len, MSG_NOSIGNAL);
  *wait = POLLOUT;
  if (n < 0)
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
  return n;
}

gboolean
ms_conn_flush (MsConn *c)
{
  gsize pos = 0;
  gboolean ok = TRUE;

  while (ok && pos < c->out->len)
    {
      short wait = POLLOUT;
      gssize n = write_some (c, c->out->str + pos, c->out->len - pos, &wait);
      if (n < 0)
        ok = FALSE;
      else if (n > 0)
        pos += n;
      else
        ok = wait_for (c, wait); /* no progress within the deadline: the client does not read */
    }
  g_string_truncate (c->out, 0);
  return ok;
}

gboolean
ms_conn_starttls (MsConn *c, UtilTlsContext *ctx, GError **error)
{
  if (c->in_pos != c->in_len)
    {
      /* what came before the handshake would count as sent under TLS */
      g_set_error (error, UTIL_ERROR, 0, "input pipelined after STARTTLS");
      return FALSE;
    }
  c->tls = util_tls_server_new (ctx, c->fd, error);
  if (c->tls == NULL)
    return FALSE;
  for (;;)
    {
      UtilTlsStatus st = util_tls_handshake (c->tls, error);
      if (st == UTIL_TLS_OK)
        return TRUE;
      if (st != UTIL_TLS_WANT_READ && st != UTIL_TLS_WANT_WRITE)
        return FALSE;
      if (!wait_for (c, st == UTIL_TLS_WANT_READ ? POLLIN : POLLOUT))
        {
          g_set_error (error, UTIL_ERROR, 0, "TLS handshake timed out");
          return FALSE;
        }
    }
}
