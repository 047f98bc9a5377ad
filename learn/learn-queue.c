/* learn-queue.c - the learner thread and what feeds it: a bounded queue
 * (a full queue drops the new job, logged: the watcher never waits) and a
 * per-user hourly rate, counted by the one thread that pushes (the
 * watcher), so it needs no lock.  Each job is logged in one line:
 *   learn: user=U class=spam folder=Junk from=INBOX backend=spamd result=ok
 */
#include "config.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "learn-private.h"
#include "learn-tell.h"
#include "lmtpd-util.h"

#define QUEUE_MAX 256
#define RATE_USERS_MAX 10000
#define RATE_WINDOW_US ((gint64) 3600 * G_USEC_PER_SEC)

typedef struct {
  gint64 since;  /* the start of the user's current hour */
  guint count;
} Rate;

struct _LearnQueue {
  LmtpdConfig *config;
  GAsyncQueue *jobs;     /* LearnJob*; the queue itself as the stop mark */
  GThread *thread;
  GHashTable *rates;     /* user -> Rate, the watcher thread's own */
  SoupSession *rspamd;   /* the learner thread's */
  LearnBayes *bayes;     /* the learner thread's */
};

static const char *const backend_names[] = { "spamd", "rspamd", "builtin" };

void
learn_job_free (LearnJob *job)
{
  if (job == NULL)
    return;
  if (job->fd >= 0)
    close (job->fd);
  g_free (job->user);
  g_free (job->folder);
  g_free (job->from);
  g_free (job);
}

static void
log_job (const LearnQueue *q, const LearnJob *job, const char *result, const char *why)
{
  g_autofree char *user = util_sanitize (job->user, 320);
  g_autofree char *folder = util_sanitize (job->folder, 200);
  g_autofree char *from = util_sanitize (job->from, 200);
  g_autofree char *error = why ? util_sanitize (why, 300) : NULL;

  g_message ("learn: user=%s class=%s folder=%s from=%s backend=%s result=%s%s%s", user, job->spam ? "spam" : "ham",
             folder, from, backend_names[q->config->learn_backend], result, error ? " error=" : "",
             error ? error : "");
}

/* The message behind @fd, or NULL (too big: *skipped; unreadable: @error). */
static GBytes *
read_message (int fd, guint64 max, gboolean *skipped, GError **error)
{
  struct stat st;
  g_autofree char *buf = NULL;
  gsize got = 0;

  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "not a readable file");
      return NULL;
    }
  if ((*skipped = (guint64) st.st_size > max))
    return NULL;
  buf = g_malloc (st.st_size + 1);
  while (got < (gsize) st.st_size)
    {
      gssize n = pread (fd, buf + got, st.st_size - got, got);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      got += n;
    }
  return g_bytes_new_take (g_steal_pointer (&buf), got);
}

/* Teaches the backend; its result word ("ok", "unchanged"), or NULL. */
static char *
tell (LearnQueue *q, const LearnJob *job, GBytes *msg, GError **error)
{
  const LmtpdConfig *c = q->config;
  char *result = NULL;
  gsize len;
  const char *data = g_bytes_get_data (msg, &len);

  switch (c->learn_backend)
    {
    case LMTPD_LEARN_SPAMD:
      learn_tell_spamd (c->learn_spamd, job->user, job->spam, msg, &result, error);
      break;
    case LMTPD_LEARN_RSPAMD:
      if (q->rspamd == NULL)
        q->rspamd = learn_rspamd_session ();
      learn_tell_rspamd (q->rspamd, c, job->user, job->spam, msg, &result, error);
      break;
    default:
      if (q->bayes == NULL)
        q->bayes = learn_bayes_open (c->learn_bayes_db, TRUE, error);
      if (q->bayes && learn_bayes_learn (q->bayes, job->user, job->spam, data ? data : "", len, error))
        result = g_strdup ("ok");
      break;
    }
  return result;
}

static void
learn_one (LearnQueue *q, LearnJob *job)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) msg = NULL;
  g_autofree char *result = NULL;
  gboolean skipped = FALSE;

  msg = read_message (job->fd, q->config->learn_max_size, &skipped, &error);
  if (skipped)
    log_job (q, job, "skipped-size", NULL);
  else if (msg == NULL)
    log_job (q, job, "failed", error->message);
  else if ((result = tell (q, job, msg, &error)) == NULL)
    log_job (q, job, "failed", error ? error->message : "unknown");
  else
    log_job (q, job, result, NULL);
}

static gpointer
learner_thread (gpointer data)
{
  LearnQueue *q = data;
  gpointer job;

  while ((job = g_async_queue_pop (q->jobs)) != q)
    {
      learn_one (q, job);
      learn_job_free (job);
    }
  g_clear_object (&q->rspamd);
  g_clear_pointer (&q->bayes, learn_bayes_close);
  return NULL;
}

LearnQueue *
learn_queue_new (LmtpdConfig *config, GError **error)
{
  LearnQueue *q = g_new0 (LearnQueue, 1);

  q->config = lmtpd_config_ref (config);
  q->jobs = g_async_queue_new ();
  q->rates = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  q->thread = g_thread_try_new ("lmtpd-learn", learner_thread, q, error);
  if (q->thread == NULL)
    {
      learn_queue_free (q);
      return NULL;
    }
  return q;
}

/* Counts a learn for @user; FALSE when the user is over [learn] rate. */
static gboolean
rate_allows (LearnQueue *q, const char *user)
{
  gint64 now = g_get_monotonic_time ();
  Rate *r = g_hash_table_lookup (q->rates, user);

  if (r == NULL)
    {
      if (g_hash_table_size (q->rates) >= RATE_USERS_MAX)
        g_hash_table_remove_all (q->rates); /* forgetting is lenient, never unbounded */
      r = g_new0 (Rate, 1);
      r->since = now;
      g_hash_table_insert (q->rates, g_strdup (user), r);
    }
  if (now - r->since >= RATE_WINDOW_US)
    {
      r->since = now;
      r->count = 0;
    }
  return ++r->count <= q->config->learn_rate;
}

void
learn_queue_push (LearnQueue *q, LearnJob *job)
{
  if (!rate_allows (q, job->user))
    {
      log_job (q, job, "dropped-rate", NULL);
      learn_job_free (job);
    }
  else if (g_async_queue_length (q->jobs) >= QUEUE_MAX)
    {
      log_job (q, job, "dropped-queue-full", NULL);
      learn_job_free (job);
    }
  else
    g_async_queue_push (q->jobs, job);
}

void
learn_queue_free (LearnQueue *q)
{
  gpointer job;

  if (q == NULL)
    return;
  while ((job = g_async_queue_try_pop (q->jobs)))
    learn_job_free (job);
  if (q->thread)
    {
      g_async_queue_push (q->jobs, q);
      g_thread_join (q->thread);
    }
  g_async_queue_unref (q->jobs);
  g_hash_table_unref (q->rates);
  lmtpd_config_unref (q->config);
  g_free (q);
}
