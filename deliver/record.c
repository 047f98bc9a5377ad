/* record.c - recording callout calls for lmtpctl replay (shadow mode).
 *
 * For the services [record] services names (by default those in mode =
 * shadow), each answered call is kept in lmtpd_calls: the envelope as the
 * call sent it, each recipient's verdict as the service answered, and the
 * message by reference to one copy in [record] dir: a range of the hour's
 * segment file, shared by the calls of one transaction (one per service
 * and group).  The row is posted only once its copy is written, so a
 * reader never sees half of one.  It is a cache, so no fsync, and the row
 * goes to the async writer: recording never waits on a disk flush.
 *
 * Bounded: the copies take at most [record] max_size bytes (when full,
 * recording pauses, logged once, until expiry frees room); rows and copies
 * older than [record] keep are removed at most once a minute.  Cheap when
 * off: record_wanted() is a string comparison per service and call.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context.h"
#include "callout.h"
#include "record.h"

#define EXPIRE_EVERY_US (60 * G_USEC_PER_SEC)
#define MAX_DIR_ENTRIES 200000 /* looked at per expiry pass */

struct DeliverRecorder {
  GMutex lock;
  guint64 used;        /* bytes of copies in the directory */
  gint64 last_expire;  /* monotonic; 0: the directory was never scanned */
  gboolean full;       /* max_size reached: logged once, recording paused */
  int seg_fd;          /* this hour's segment, or -1 */
  gint64 seg_hour;
  guint64 seg_end;     /* where the next copy goes */
  char *last_digest;   /* the last copy written, shared by the calls of */
  char *last_copy;     /* its transaction (one per service) */
  gint64 last_hour;
};

DeliverRecorder *
recorder_new (void)
{
  DeliverRecorder *r = g_new0 (DeliverRecorder, 1);

  g_mutex_init (&r->lock);
  r->seg_fd = -1;
  return r;
}

void
recorder_free (DeliverRecorder *r)
{
  if (r == NULL)
    return;
  if (r->seg_fd >= 0)
    close (r->seg_fd);
  g_free (r->last_digest);
  g_free (r->last_copy);
  g_mutex_clear (&r->lock);
  g_free (r);
}

gboolean
record_wanted (const LmtpdConfig *config, const LmtpdService *sv)
{
  char **names = config->record_services;

  if (config->record_max_size == 0)
    return FALSE;
  if (names == NULL || names[0] == NULL)
    return sv->shadow;
  if (strcmp (names[0], "none") == 0)
    return FALSE;
  for (guint i = 0; names[i]; i++)
    if (strcmp (names[i], sv->name) == 0)
      return TRUE;
  return FALSE;
}

int
record_dir_open (const LmtpdConfig *config, GError **error)
{
  int fd = open (config->record_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

  if (fd < 0 && errno == ENOENT && g_mkdir_with_parents (config->record_dir, 0700) == 0)
    fd = open (config->record_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (e), "%s: %s", config->record_dir, g_strerror (e));
    }
  return fd;
}

/* ---- the envelope ---------------------------------------------------------- */

#define ENVELOPE_TYPE "(smsmsmssmsmsmsasamsaa{ss}tt)"

static GVariant *
rcpt_data_variant (const OcpRequest *req)
{
  GVariantBuilder all;

  g_variant_builder_init (&all, G_VARIANT_TYPE ("aa{ss}"));
  for (guint i = 0; req->rcpt_data && req->rcpt_to[i]; i++)
    {
      GVariantBuilder one;
      GHashTableIter it;
      gpointer k, v;

      g_variant_builder_init (&one, G_VARIANT_TYPE ("a{ss}"));
      if (req->rcpt_data[i])
        {
          g_hash_table_iter_init (&it, req->rcpt_data[i]);
          while (g_hash_table_iter_next (&it, &k, &v))
            g_variant_builder_add (&one, "{ss}", k, v);
        }
      g_variant_builder_add_value (&all, g_variant_builder_end (&one));
    }
  return g_variant_builder_end (&all);
}

char *
record_envelope_text (const OcpRequest *req)
{
  GVariantBuilder orcpt;
  g_autoptr (GVariant) v = NULL;

  g_variant_builder_init (&orcpt, G_VARIANT_TYPE ("ams"));
  for (guint i = 0; req->rcpt_to[i]; i++)
    g_variant_builder_add (&orcpt, "ms", req->orcpt ? req->orcpt[i] : NULL);
  v = g_variant_ref_sink (g_variant_new ("(smsmsmssmsmsms^as@ams@aa{ss}tt)", req->stage, req->transaction_id,
                                         req->client_address, req->client_name,
                                         req->mail_from ? req->mail_from : "", req->mail_params, req->bypass,
                                         req->prior_verdicts, req->rcpt_to, g_variant_builder_end (&orcpt),
                                         rcpt_data_variant (req), (guint64) req->header_len,
                                         (guint64) req->message_size));
  return g_variant_print (v, FALSE);
}

static GHashTable *
rcpt_data_table (GVariant *dict)
{
  GHashTable *t = NULL;
  GVariantIter it;
  const char *k, *val;

  g_variant_iter_init (&it, dict);
  while (g_variant_iter_next (&it, "{&s&s}", &k, &val))
    {
      if (t == NULL)
        t = g_hash_table_new (g_str_hash, g_str_equal);
      g_hash_table_insert (t, (gpointer) k, (gpointer) val);
    }
  return t;
}

static void
data_unref (gpointer p)
{
  if (p)
    g_hash_table_unref (p);
}

/* The arrays of the envelope into @env: recipients, ORCPTs, their data. */
static void
envelope_arrays (RecordEnvelope *env, GVariant *rcpts, GVariant *orcpts, GVariant *datas)
{
  gboolean any_data = FALSE;
  gsize n = g_variant_n_children (rcpts);

  env->rcpt_to = g_ptr_array_new ();
  env->orcpt = g_ptr_array_new ();
  env->rcpt_data = g_ptr_array_new_with_free_func (data_unref);
  for (gsize i = 0; i < n; i++)
    {
      const char *addr = NULL, *o = NULL;
      g_autoptr (GVariant) d = i < g_variant_n_children (datas) ? g_variant_get_child_value (datas, i) : NULL;
      GHashTable *t = d ? rcpt_data_table (d) : NULL;

      g_variant_get_child (rcpts, i, "&s", &addr);
      if (i < g_variant_n_children (orcpts))
        g_variant_get_child (orcpts, i, "m&s", &o);
      g_ptr_array_add (env->rcpt_to, (gpointer) addr);
      g_ptr_array_add (env->orcpt, (gpointer) o);
      g_ptr_array_add (env->rcpt_data, t);
      any_data = any_data || t;
    }
  g_ptr_array_add (env->rcpt_to, NULL);
  g_ptr_array_add (env->orcpt, NULL);
  env->req.rcpt_to = (const char *const *) env->rcpt_to->pdata;
  env->req.orcpt = (const char *const *) env->orcpt->pdata;
  env->req.rcpt_data = any_data ? (GHashTable *const *) env->rcpt_data->pdata : NULL;
}

gboolean
record_envelope_parse (const char *text, RecordEnvelope *env, GError **error)
{
  g_autoptr (GVariant) rcpts = NULL, orcpts = NULL, datas = NULL;
  OcpRequest *req = &env->req;
  guint64 header_len, size;

  memset (env, 0, sizeof *env);
  env->v = g_variant_parse (G_VARIANT_TYPE (ENVELOPE_TYPE), text, NULL, NULL, error);
  if (env->v == NULL)
    return FALSE;
  g_variant_get (env->v, "(&sm&sm&sm&s&sm&sm&sm&s@as@ams@aa{ss}tt)", &req->stage, &req->transaction_id,
                 &req->client_address, &req->client_name, &req->mail_from, &req->mail_params, &req->bypass,
                 &req->prior_verdicts, &rcpts, &orcpts, &datas, &header_len, &size);
  req->header_len = header_len;
  req->message_size = size;
  req->fd = -1;
  envelope_arrays (env, rcpts, orcpts, datas);
  return TRUE;
}

void
record_envelope_clear (RecordEnvelope *env)
{
  g_clear_pointer (&env->rcpt_to, g_ptr_array_unref);
  g_clear_pointer (&env->orcpt, g_ptr_array_unref);
  g_clear_pointer (&env->rcpt_data, g_ptr_array_unref);
  g_clear_pointer (&env->v, g_variant_unref);
}

/* ---- the copies ------------------------------------------------------------ */

/* Segments: "seg-HOUR" (unix hour), appended to by every delivery thread
 * under the recorder's lock; a copy is "seg-HOUR:OFFSET" with the call's
 * size.  One file an hour instead of one a message: creating an inode a
 * message cost more than the rest of recording together.  A segment goes
 * whole once its hour is older than [record] keep. */
#define SEGMENT_PREFIX "seg-"

static gboolean
segment_hour (const char *name, gint64 *hour)
{
  char *end;

  if (!g_str_has_prefix (name, SEGMENT_PREFIX))
    return FALSE;
  *hour = g_ascii_strtoll (name + strlen (SEGMENT_PREFIX), &end, 10);
  return end != name + strlen (SEGMENT_PREFIX) && *end == '\0';
}

/* Removes the segments (and anything else that is no segment) of hours
 * before @cutoff; the bytes of those that stay. */
static guint64
scan_segments (int dfd, gint64 cutoff_hour)
{
  int fd = dup (dfd);
  DIR *dir = fd >= 0 ? fdopendir (fd) : NULL;
  struct dirent *de;
  guint64 kept = 0;
  guint seen = 0;

  if (dir == NULL)
    {
      if (fd >= 0)
        close (fd);
      return 0;
    }
  while ((de = readdir (dir)) != NULL && seen++ < MAX_DIR_ENTRIES)
    {
      struct stat st;
      gint64 hour = 0;
      if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || strcmp (de->d_name, "..") == 0))
        continue;
      if (fstatat (dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG (st.st_mode))
        continue;
      if ((!segment_hour (de->d_name, &hour) || hour < cutoff_hour) && unlinkat (dfd, de->d_name, 0) == 0)
        continue;
      kept += st.st_size;
    }
  closedir (dir);
  return kept;
}

/* At most once a minute (and first of all, which counts what is there):
 * rows and segments older than [record] keep go. */
static void
expire_maybe (DeliverContext *ctx, const LmtpdConfig *config, int dfd)
{
  DeliverRecorder *r = ctx->recorder;
  gint64 now = g_get_monotonic_time (), wall = g_get_real_time () / G_USEC_PER_SEC;
  g_autofree char *cutoff = g_strdup_printf ("%" G_GINT64_FORMAT, wall);
  const char *values[1] = { cutoff };
  gboolean due;
  guint64 kept;

  g_mutex_lock (&r->lock);
  due = r->last_expire == 0 || now - r->last_expire >= EXPIRE_EVERY_US;
  if (due)
    r->last_expire = now;
  g_mutex_unlock (&r->lock);
  if (!due)
    return;
  state_records_post (ctx->records, "DELETE FROM lmtpd_calls WHERE expires < $1", 1, values);
  kept = scan_segments (dfd, (wall - (gint64) config->record_keep) / 3600);
  g_mutex_lock (&r->lock);
  r->used = kept;
  if (r->full && kept < config->record_max_size)
    {
      r->full = FALSE;
      g_message ("record: dir=%s used=%" G_GUINT64_FORMAT " recording resumes", config->record_dir, kept);
    }
  g_mutex_unlock (&r->lock);
}

/* Room for @size more bytes of copies, or FALSE (logged once); with the
 * lock held. */
static gboolean
reserve_locked (DeliverRecorder *r, const LmtpdConfig *config, guint64 size)
{
  if (r->used + size <= config->record_max_size)
    {
      r->used += size;
      return TRUE;
    }
  if (!r->full)
    {
      r->full = TRUE;
      g_warning ("record: dir=%s used=%" G_GUINT64_FORMAT " max_size=%" G_GUINT64_FORMAT
                 " full, recording paused until older calls expire", config->record_dir, r->used,
                 config->record_max_size);
    }
  return FALSE;
}

/* The segment of this hour, open for appending (with the lock held):
 * *@end is where the next copy goes. */
static int
segment_open_locked (DeliverRecorder *r, int dfd, gint64 hour, guint64 *end)
{
  g_autofree char *name = NULL;
  struct stat st;

  if (r->seg_fd >= 0 && r->seg_hour == hour)
    {
      *end = r->seg_end;
      return r->seg_fd;
    }
  if (r->seg_fd >= 0)
    close (r->seg_fd);
  name = g_strdup_printf (SEGMENT_PREFIX "%" G_GINT64_FORMAT, hour);
  r->seg_fd = openat (dfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (r->seg_fd >= 0 && (fstat (r->seg_fd, &st) != 0 || !S_ISREG (st.st_mode)))
    {
      close (r->seg_fd);
      r->seg_fd = -1;
    }
  r->seg_hour = hour;
  r->seg_end = r->seg_fd >= 0 ? (guint64) st.st_size : 0;
  *end = r->seg_end;
  return r->seg_fd;
}

/* @size bytes of @src at the segment's end; the kernel copies (the
 * spool's own offset, which other recipients' threads use, stays). */
static gboolean
append_copy (int fd, guint64 at, int src, guint64 size)
{
  loff_t in = 0, out = (loff_t) at;

  while ((guint64) in < size)
    {
      ssize_t n = copy_file_range (src, &in, fd, &out, MIN (size - in, 1 << 20), 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
    }
  return TRUE;
}

/* The copy of the message @req sends, as "seg-HOUR:OFFSET": the one this
 * digest got last (the calls of a transaction share it), or a new one.
 * NULL when recording is paused or the copy cannot be written. */
static char *
keep_copy (DeliverContext *ctx, const LmtpdConfig *config, int dfd, const OcpRequest *req, const char *digest)
{
  DeliverRecorder *r = ctx->recorder;
  guint64 size = req->header_len + req->body_len, at = 0;
  gint64 hour = g_get_real_time () / G_USEC_PER_SEC / 3600;
  char *copy = NULL;
  int fd;

  g_mutex_lock (&r->lock);
  if (g_strcmp0 (r->last_digest, digest) == 0 && r->last_hour == hour)
    copy = g_strdup (r->last_copy);
  else if (reserve_locked (r, config, size) && (fd = segment_open_locked (r, dfd, hour, &at)) >= 0
           && append_copy (fd, at, req->fd, size))
    {
      r->seg_end = at + size;
      copy = g_strdup_printf (SEGMENT_PREFIX "%" G_GINT64_FORMAT ":%" G_GUINT64_FORMAT, hour, at);
      g_free (r->last_digest);
      g_free (r->last_copy);
      r->last_digest = g_strdup (digest);
      r->last_copy = g_strdup (copy);
      r->last_hour = hour;
    }
  else if (!r->full)
    g_warning ("record: dir=%s copy cannot be written: %s", config->record_dir, g_strerror (errno));
  g_mutex_unlock (&r->lock);
  return copy;
}

/* ---- the row ------------------------------------------------------------------ */

static char *
rcpt_verdicts (const OcpRequest *req, const OcpVerdict *verdict)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; req->rcpt_to[i]; i++)
    g_string_append_printf (s, "%s%s", i ? "\n" : "", callout_rcpt_verdict_word (verdict, req->rcpt_to[i]));
  return g_string_free (s, FALSE);
}

static const char insert_sql[] =
  "INSERT INTO lmtpd_calls (id, at, expires, service, txn, sender, recipients, copy, size, verdicts, envelope)"
  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

static void
post_call (DeliverContext *ctx, const LmtpdConfig *config, const LmtpdService *sv, const OcpRequest *req,
           const OcpVerdict *verdict, const char *copy)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  g_autofree char *id = state_records_new_id ();
  g_autofree char *at = g_strdup_printf ("%" G_GINT64_FORMAT, now);
  g_autofree char *expires = g_strdup_printf ("%" G_GINT64_FORMAT, now + config->record_keep);
  g_autofree char *rcpts = g_strjoinv ("\n", (char **) req->rcpt_to);
  g_autofree char *size = g_strdup_printf ("%" G_GUINT64_FORMAT, copy ? req->header_len + req->body_len : 0);
  g_autofree char *verdicts = rcpt_verdicts (req, verdict);
  g_autofree char *envelope = record_envelope_text (req);
  const char *values[11] = { id, at, expires, sv->name, req->transaction_id, req->mail_from, rcpts, copy, size,
                             verdicts, envelope };

  state_records_post (ctx->records, insert_sql, 11, values);
}

void
record_call (DeliverContext *ctx, const LmtpdConfig *config, const LmtpdService *sv, const OcpRequest *req,
             const OcpVerdict *verdict, const char *digest)
{
  g_autoptr (GError) error = NULL;
  gboolean with_copy = req->fd >= 0 && digest != NULL;
  g_autofree char *copy = NULL;
  int dfd;

  if (ctx->records == NULL)
    return;
  if ((dfd = record_dir_open (config, &error)) < 0)
    {
      g_warning ("record: service=%s %s", sv->name, error->message);
      return;
    }
  expire_maybe (ctx, config, dfd);
  if (!with_copy || (copy = keep_copy (ctx, config, dfd, req, digest)) != NULL)
    post_call (ctx, config, sv, req, verdict, copy);
  close (dfd);
}
