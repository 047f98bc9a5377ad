/* learn.c - the learner as lmtpd sees it: the owner map, the queue with
 * its thread, the watcher with its thread; started after privileges are
 * dropped (everything is read as the mail user), stopped at shutdown.
 */
#include "config.h"

#include "learn-private.h"

struct _Learner {
  LearnOwner *owner;
  LearnQueue *queue;
  LearnWatch *watch;
};

Learner *
learner_start (LmtpdConfig *config, GError **error)
{
  Learner *l;

  if (!config->learn_enabled)
    return NULL;
  l = g_new0 (Learner, 1);
  if ((l->owner = learn_owner_new (config, error)) == NULL || (l->queue = learn_queue_new (config, error)) == NULL
      || (l->watch = learn_watch_start (config, l->owner, l->queue, error)) == NULL)
    {
      learner_stop (l);
      return NULL;
    }
  return l;
}

void
learner_stop (Learner *l)
{
  if (l == NULL)
    return;
  learn_watch_stop (l->watch); /* first: it pushes into the queue */
  learn_queue_free (l->queue);
  learn_owner_free (l->owner);
  g_free (l);
}
