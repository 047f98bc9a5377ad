/* lmtp-handback.c - the delivery threads hand their finished jobs back to
 * the main loop.
 *
 * g_main_context_invoke from a thread takes the main context's lock (which
 * the main loop holds whenever it is not in poll: a futex wait and wake
 * when they meet), makes, attaches and destroys a GSource, and wakes the
 * loop once per result.  Here a thread appends its job to one queue under
 * its own lock and writes the eventfd only when the queue was empty; the
 * main loop reads the eventfd and takes the whole queue at once, so
 * results that finish together cost one wakeup.
 */
#include "config.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <glib-unix.h>

#include "lmtp-private.h"

struct LmtpHandback {
  GMutex lock;
  GPtrArray *items;   /* handed back, not yet taken by the main loop */
  GPtrArray *spare;   /* the main loop's: empty, swapped with items */
  int fd;             /* eventfd: readable while items were handed back */
  void (*run) (gpointer item);
};

/* The whole queue, taken under the lock and run outside it: @run may push
 * new jobs to the threads, which may hand them back at once. */
static gboolean
handback_ready (gint fd, GIOCondition cond, gpointer data)
{
  LmtpHandback *h = data;
  GPtrArray *taken;
  guint64 count;

  (void) cond;
  while (read (fd, &count, sizeof count) < 0 && errno == EINTR)
    ;
  g_mutex_lock (&h->lock);
  taken = h->items;
  h->items = h->spare;
  g_mutex_unlock (&h->lock);
  for (guint i = 0; i < taken->len; i++)
    h->run (taken->pdata[i]);
  g_ptr_array_set_size (taken, 0);
  h->spare = taken;
  return G_SOURCE_CONTINUE;
}

/* On the main thread: @run is called there with each handed back item. */
LmtpHandback *
lmtp_handback_new (void (*run) (gpointer item))
{
  LmtpHandback *h = g_new0 (LmtpHandback, 1);
  GSource *source;

  h->fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (h->fd < 0)
    g_error ("eventfd: %s", g_strerror (errno));
  g_mutex_init (&h->lock);
  h->items = g_ptr_array_new ();
  h->spare = g_ptr_array_new ();
  h->run = run;
  source = g_unix_fd_source_new (h->fd, G_IO_IN);
  /* GLib blocks a source that cannot recurse while it is dispatched, and
   * blocking one with a poll fd signals the loop's own eventfd twice */
  g_source_set_can_recurse (source, TRUE);
  g_source_set_callback (source, (GSourceFunc) (void (*) (void)) handback_ready, h, NULL);
  g_source_attach (source, NULL);
  g_source_unref (source);
  return h;
}

/* From any thread.  Only the first item of a batch wakes the main loop: a
 * non-empty queue means a wakeup is already pending. */
void
lmtp_handback_push (LmtpHandback *h, gpointer item)
{
  static const guint64 one = 1;
  gboolean first;

  g_mutex_lock (&h->lock);
  first = h->items->len == 0;
  g_ptr_array_add (h->items, item);
  g_mutex_unlock (&h->lock);
  if (first)
    while (write (h->fd, &one, sizeof one) < 0 && errno == EINTR)
      ;
}
