/* lmtp-null.c - the floor of issue 20: a do-nothing LMTP responder that
 * answers the dialog smtp-source -L speaks (banner, LHLO, MAIL, RCPT, DATA
 * and its dot, RSET, NOOP, QUIT) and throws every message away.  One
 * thread, epoll, non-blocking sockets: the least CPU a server can spend
 * per delivery on the protocol alone.  Built and run by bench/run only;
 * never installed.
 *
 *   lmtp-null HOST:PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

struct conn
{
  int fd;
  int in_data;     /* inside DATA: discard up to the lone dot */
  int rcpts;       /* RCPTs of the current transaction */
  size_t len;      /* bytes in buf */
  char buf[BUF];
};

static void
say (struct conn *c, const char *s, size_t n)
{
  /* replies are tiny; a short write on loopback would mean a dead peer */
  if (write (c->fd, s, n) < 0)
    return;
}

#define SAY(c, lit) say ((c), (lit), sizeof (lit) - 1)

/* One line (without CRLF).  Returns -1 to close the connection. */
static int
line (struct conn *c, char *l, size_t n)
{
  if (c->in_data)
    {
      if (n == 1 && l[0] == '.')
        {
          static const char ok[] = "250 2.0.0 ok\r\n";
          char out[sizeof ok * 64];
          size_t o = 0;
          int k = c->rcpts > 64 ? 64 : c->rcpts;

          for (int i = 0; i < k; i++, o += sizeof ok - 1)
            memcpy (out + o, ok, sizeof ok - 1);
          say (c, out, o);
          c->in_data = 0;
          c->rcpts = 0;
        }
      return 0;
    }
  if (n >= 4 && strncasecmp (l, "LHLO", 4) == 0)
    SAY (c, "250-null\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n");
  else if (n >= 4 && strncasecmp (l, "MAIL", 4) == 0)
    {
      c->rcpts = 0;
      SAY (c, "250 2.1.0 ok\r\n");
    }
  else if (n >= 4 && strncasecmp (l, "RCPT", 4) == 0)
    {
      c->rcpts++;
      SAY (c, "250 2.1.5 ok\r\n");
    }
  else if (n >= 4 && strncasecmp (l, "DATA", 4) == 0)
    {
      if (c->rcpts == 0)
        SAY (c, "503 5.5.1 no valid recipients\r\n");
      else
        {
          c->in_data = 1;
          SAY (c, "354 go ahead\r\n");
        }
    }
  else if (n >= 4 && strncasecmp (l, "RSET", 4) == 0)
    {
      c->rcpts = 0;
      SAY (c, "250 2.0.0 ok\r\n");
    }
  else if (n >= 4 && strncasecmp (l, "NOOP", 4) == 0)
    SAY (c, "250 2.0.0 ok\r\n");
  else if (n >= 4 && strncasecmp (l, "QUIT", 4) == 0)
    {
      SAY (c, "221 2.0.0 bye\r\n");
      return -1;
    }
  else
    SAY (c, "500 5.5.2 unknown command\r\n");
  return 0;
}

/* Reads what is there; returns -1 when the connection is to be closed. */
static int
readable (struct conn *c)
{
  for (;;)
    {
      ssize_t r = read (c->fd, c->buf + c->len, BUF - c->len);
      size_t start = 0;

      if (r == 0)
        return -1;
      if (r < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
      c->len += r;
      for (size_t i = 0; i < c->len; i++)
        if (c->buf[i] == '\n')
          {
            size_t n = i - start;

            if (n > 0 && c->buf[start + n - 1] == '\r')
              n--;
            if (line (c, c->buf + start, n) < 0)
              return -1;
            start = i + 1;
          }
      if (start == 0 && c->len == BUF)
        start = c->len; /* an overlong line: drop it (only inside DATA) */
      memmove (c->buf, c->buf + start, c->len - start);
      c->len -= start;
    }
}

int
main (int argc, char **argv)
{
  struct sockaddr_in sin = { .sin_family = AF_INET };
  char host[64], *colon;
  int lfd, ep, one = 1;

  if (argc != 2 || strlen (argv[1]) >= sizeof host || !(colon = strrchr (argv[1], ':')))
    {
      fprintf (stderr, "usage: lmtp-null HOST:PORT\n");
      return 64;
    }
  memcpy (host, argv[1], colon - argv[1]);
  host[colon - argv[1]] = '\0';
  sin.sin_port = htons (atoi (colon + 1));
  if (inet_pton (AF_INET, host, &sin.sin_addr) != 1)
    {
      fprintf (stderr, "lmtp-null: not an IPv4 address: %s\n", host);
      return 64;
    }
  signal (SIGPIPE, SIG_IGN);
  lfd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  setsockopt (lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (lfd < 0 || bind (lfd, (struct sockaddr *) &sin, sizeof sin) < 0 || listen (lfd, 1024) < 0)
    {
      perror ("lmtp-null: listen");
      return 1;
    }
  ep = epoll_create1 (EPOLL_CLOEXEC);
  epoll_ctl (ep, EPOLL_CTL_ADD, lfd, &(struct epoll_event) { .events = EPOLLIN, .data.ptr = NULL });
  for (;;)
    {
      struct epoll_event ev[64];
      int n = epoll_wait (ep, ev, 64, -1);

      for (int i = 0; i < n; i++)
        {
          struct conn *c = ev[i].data.ptr;

          if (c == NULL)
            {
              int fd;

              while ((fd = accept4 (lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
                {
                  c = calloc (1, sizeof *c);
                  if (c == NULL)
                    {
                      close (fd);
                      continue;
                    }
                  c->fd = fd;
                  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                  epoll_ctl (ep, EPOLL_CTL_ADD, fd, &(struct epoll_event) { .events = EPOLLIN, .data.ptr = c });
                  SAY (c, "220 null LMTP\r\n");
                }
              continue;
            }
          if (readable (c) < 0)
            {
              close (c->fd); /* also leaves the epoll set */
              free (c);
            }
        }
    }
}
