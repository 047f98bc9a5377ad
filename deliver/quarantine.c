/* quarantine.c - the quarantine store (issue 19): a copy a service
 * quarantined with [service] quarantine = store, kept outside the user's
 * mailbox in [quarantine] dir and indexed in the records
 * (lmtpd_quarantine).
 *
 * A copy is written as it would have been delivered (trace headers, the
 * other services' edits) to tmp.ID.msg, fsynced, renamed to ID.msg and the
 * directory fsynced; only then is it indexed, and only once indexed does
 * the recipient get its 250.  A records failure takes the file back and
 * answers 451.  Every file is opened relative to the directory, never
 * through a symlink.  Listing, deleting and expiry are here; the release
 * is quarantine-release.c.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline.h"

#define Q_COLUMNS                                                                                        \
  "id, created, expires, recipient, original_recipient, sender, subject, message_id, size, service, reason, " \
  "state, released_by, released_at, released_to"
#define EXPIRE_BATCH 1000 /* rows (and copies) one expire call removes at most */
#define TMP_MAX_AGE (24 * 3600)

static gboolean
errno_error (GError **error, const char *what, const char *name)
{
  int e = errno;

  g_set_error (error, DELIVER_ERROR, e, "quarantine %s %s: %s", what, name, g_strerror (e));
  return FALSE;
}

/* ---- ids and files ------------------------------------------------------ */

/* An id as state_records_new_id() makes them: 16 lowercase hex digits.
 * Nothing else ever becomes a file name. */
gboolean
quarantine_id_valid (const char *id)
{
  return id && strlen (id) == 16 && strspn (id, "0123456789abcdef") == 16;
}

char *
quarantine_file_name (const char *id)
{
  return g_strconcat (id, ".msg", NULL);
}

char *
quarantine_journal_name (const char *id)
{
  return g_strconcat (id, ".journal", NULL);
}

int
quarantine_dir_open (const LmtpdConfig *config, GError **error)
{
  int fd = open (config->quarantine_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

  if (fd < 0)
    errno_error (error, "dir", config->quarantine_dir);
  return fd;
}

/* Removes the copy @id and its release journal (gone already is fine),
 * durably. */
static void
remove_copy (const LmtpdConfig *config, const char *id)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *file = quarantine_file_name (id), *journal = quarantine_journal_name (id);
  int dirfd = quarantine_dir_open (config, &error);

  if (dirfd >= 0)
    unlinkat (dirfd, journal, 0);
  if (dirfd < 0 || (unlinkat (dirfd, file, 0) < 0 && errno != ENOENT && !errno_error (&error, "remove", file)))
    g_warning ("quarantine: id=%s copy not removed: %s", id, error->message);
  else if (config->fsync)
    fsync (dirfd);
  if (dirfd >= 0)
    close (dirfd);
}

/* tmp.FILE written and fsynced, renamed to FILE, the directory fsynced;
 * nothing is left behind on failure. */
static gboolean
write_copy (int dirfd, const char *file, const Store *st, gboolean do_fsync, GError **error)
{
  g_autofree char *tmp = g_strconcat ("tmp.", file, NULL);
  int fd = openat (dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  gboolean ok;

  if (fd < 0)
    return errno_error (error, "create", tmp);
  ok = deliver_content_write (st->prefix, &st->content, fd, tmp, error)
       && (!do_fsync || fsync (fd) == 0 || errno_error (error, "fsync", tmp));
  if (close (fd) < 0 && ok)
    ok = errno_error (error, "close", tmp);
  if (ok && renameat (dirfd, tmp, dirfd, file) < 0)
    ok = errno_error (error, "rename", file);
  else if (ok && do_fsync && fsync (dirfd) < 0)
    {
      ok = errno_error (error, "fsync dir for", file);
      unlinkat (dirfd, file, 0);
    }
  if (!ok)
    unlinkat (dirfd, tmp, 0);
  return ok;
}

/* A header of the message for the index: decoded, sanitized, or NULL. */
static char *
index_header (const DeliverSpool *spool, const char *name)
{
  g_autofree char *raw = deliver_spool_header_value (spool, name);
  g_autofree char *decoded = raw ? g_mime_utils_header_decode_text (NULL, raw) : NULL;

  return decoded ? util_sanitize (decoded, 256) : NULL;
}

static gboolean
index_copy (const Delivery *dv, const CalloutDecision *d, const char *id, guint64 size, GError **error)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  g_autofree char *created = g_strdup_printf ("%" G_GINT64_FORMAT, now);
  g_autofree char *expires = g_strdup_printf ("%" G_GINT64_FORMAT, now + dv->config->quarantine_keep);
  g_autofree char *size_text = g_strdup_printf ("%" G_GUINT64_FORMAT, size);
  g_autofree char *subject = index_header (dv->msg->spool, "Subject");
  g_autofree char *message_id = index_header (dv->msg->spool, "Message-ID");
  g_autofree char *reason = callout_decision_reason (d) ? util_sanitize (callout_decision_reason (d), 256) : NULL;
  g_autofree char *file = quarantine_file_name (id);
  const char *values[] = { id, created, expires, dv->rcpt->address, dv->rcpt->original, dv->msg->sender,
                           subject, message_id, size_text, callout_decision_service (d), reason, file,
                           dv->config->cluster_node_name, dv->msg->id };

  return state_records_exec (deliver_context_records (dv->ctx),
                             "INSERT INTO lmtpd_quarantine (id, created, expires, recipient, original_recipient,"
                             " sender, subject, message_id, size, service, reason, path, node, txn, state)"
                             " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'held')",
                             G_N_ELEMENTS (values), values, NULL, error);
}

static void
store_failed_451 (const Delivery *dv, const char *id, const GError *error)
{
  g_autofree char *why = util_sanitize (error->message, 256);

  g_warning ("%s: <%s> quarantine id=%s failed: %s", dv->msg->id, dv->rcpt->address, id, why);
  deliver_status_set (dv->status, 451, "4.3.0", "<%s> Quarantine store failed, try again later",
                      dv->rcpt->original);
}

void
quarantine_store_copy (const Delivery *dv, const CalloutDecision *d, const Store *st, char **out_path)
{
  const LmtpdConfig *config = dv->config;
  g_autoptr (GError) error = NULL;
  g_autofree char *id = state_records_new_id ();
  g_autofree char *file = quarantine_file_name (id);
  guint64 size = strlen (st->prefix) + deliver_content_size (&st->content);
  guint64 max = config->quarantine_max_size ? config->quarantine_max_size : config->max_message_size;
  int dirfd = -1;

  if (store_past_deadline (st->commit))
    {
      store_deadline_status (dv->status, dv->rcpt);
      return;
    }
  if (deliver_context_records (dv->ctx) == NULL)
    g_set_error (&error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED, "the records are not open");
  else if (max && size > max)
    g_set_error (&error, DELIVER_ERROR, EFBIG, "%" G_GUINT64_FORMAT " bytes is over max_size", size);
  else if ((dirfd = quarantine_dir_open (config, &error)) >= 0 && write_copy (dirfd, file, st, config->fsync, &error)
           && !index_copy (dv, d, id, size, &error))
    {
      /* not indexed: no copy that nobody could ever see or release */
      unlinkat (dirfd, file, 0);
      if (config->fsync)
        fsync (dirfd);
    }
  if (dirfd >= 0)
    close (dirfd);
  if (error)
    {
      store_failed_451 (dv, id, error);
      return;
    }
  g_message ("%s: <%s> quarantined id=%s service=%s size=%" G_GUINT64_FORMAT, dv->msg->id, dv->rcpt->address, id,
             callout_decision_service (d), size);
  deliver_status_set (dv->status, 250, "2.0.0", "<%s> quarantined as %s", dv->rcpt->original, id);
  *out_path = g_strconcat ("quarantine:", id, NULL);
  decision_trace_folder (dv->trace, *out_path);
}

/* ---- the index ---------------------------------------------------------- */

void
deliver_quarantined_free (DeliverQuarantined *q)
{
  if (q == NULL)
    return;
  g_free (q->id);
  g_free (q->recipient);
  g_free (q->original_recipient);
  g_free (q->sender);
  g_free (q->subject);
  g_free (q->message_id);
  g_free (q->service);
  g_free (q->reason);
  g_free (q->state);
  g_free (q->released_by);
  g_free (q->released_to);
  g_free (q);
}

static gint64
cell_int (const StateRows *rows, guint row, guint col)
{
  const char *v = state_rows_get (rows, row, col);

  return v ? g_ascii_strtoll (v, NULL, 10) : 0;
}

/* Row @i of a SELECT Q_COLUMNS. */
static DeliverQuarantined *
row_to_quarantined (const StateRows *rows, guint i)
{
  DeliverQuarantined *q = g_new0 (DeliverQuarantined, 1);

  q->id = g_strdup (state_rows_get (rows, i, 0));
  q->created = cell_int (rows, i, 1);
  q->expires = cell_int (rows, i, 2);
  q->recipient = g_strdup (state_rows_get (rows, i, 3));
  q->original_recipient = g_strdup (state_rows_get (rows, i, 4));
  q->sender = g_strdup (state_rows_get (rows, i, 5) ? state_rows_get (rows, i, 5) : "");
  q->subject = g_strdup (state_rows_get (rows, i, 6));
  q->message_id = g_strdup (state_rows_get (rows, i, 7));
  q->size = (guint64) cell_int (rows, i, 8);
  q->service = g_strdup (state_rows_get (rows, i, 9));
  q->reason = g_strdup (state_rows_get (rows, i, 10));
  q->state = g_strdup (state_rows_get (rows, i, 11));
  q->released_by = g_strdup (state_rows_get (rows, i, 12));
  q->released_at = cell_int (rows, i, 13);
  q->released_to = g_strdup (state_rows_get (rows, i, 14));
  return q;
}

static gboolean
records_open (DeliverContext *ctx, GError **error)
{
  if (deliver_context_records (ctx))
    return TRUE;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED, "the records are not open");
  return FALSE;
}

/* " AND <cond with $n>" with @value as the nth parameter, when given. */
static void
add_condition (GString *sql, GPtrArray *values, const char *cond, const char *value)
{
  g_autofree char *n = NULL;
  g_auto (GStrv) pieces = NULL;
  g_autofree char *text = NULL;

  if (value == NULL)
    return;
  g_ptr_array_add (values, g_strdup (value));
  n = g_strdup_printf ("$%u", values->len);
  pieces = g_strsplit (cond, "$n", -1);
  text = g_strjoinv (n, pieces);
  g_string_append_printf (sql, " AND %s", text);
}

GPtrArray *
deliver_quarantine_list (DeliverContext *ctx, const DeliverQuarantineFilter *f, GError **error)
{
  g_autoptr (GString) sql = g_string_new ("SELECT " Q_COLUMNS " FROM lmtpd_quarantine WHERE 1 = 1");
  g_autoptr (GPtrArray) values = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *since = f->since ? g_strdup_printf ("%" G_GINT64_FORMAT, f->since) : NULL;
  g_autofree char *like = f->text ? g_strdup_printf ("%%%s%%", f->text) : NULL;
  g_autoptr (StateRows) rows = NULL;
  GPtrArray *out;

  if (!records_open (ctx, error))
    return NULL;
  add_condition (sql, values, "recipient = $n", f->recipient);
  add_condition (sql, values, "sender = $n", f->sender);
  add_condition (sql, values, "service = $n", f->service);
  add_condition (sql, values, "created >= $n", since);
  add_condition (sql, values, "(recipient LIKE $n OR sender LIKE $n OR subject LIKE $n)", like);
  if (!f->all_states)
    g_string_append (sql, " AND state = 'held'");
  g_string_append_printf (sql, " ORDER BY created DESC, id LIMIT %u", f->limit ? MIN (f->limit, 100000) : 1000);
  rows = state_records_query (deliver_context_records (ctx), sql->str, values->len,
                              (const char *const *) values->pdata, error);
  if (rows == NULL)
    return NULL;
  out = g_ptr_array_new_with_free_func ((GDestroyNotify) deliver_quarantined_free);
  for (guint i = 0; i < rows->n_rows; i++)
    g_ptr_array_add (out, row_to_quarantined (rows, i));
  return out;
}

DeliverQuarantined *
deliver_quarantine_get (DeliverContext *ctx, const char *id, GError **error)
{
  const char *values[] = { id };
  g_autoptr (StateRows) rows = NULL;

  if (!records_open (ctx, error))
    return NULL;
  if (!quarantine_id_valid (id))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: no such quarantined message", id ? id : "");
      return NULL;
    }
  rows = state_records_query (deliver_context_records (ctx),
                              "SELECT " Q_COLUMNS " FROM lmtpd_quarantine WHERE id = $1", 1, values, error);
  if (rows == NULL)
    return NULL;
  if (rows->n_rows == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: no such quarantined message", id);
      return NULL;
    }
  return row_to_quarantined (rows, 0);
}

int
deliver_quarantine_open_copy (DeliverContext *ctx, const LmtpdConfig *config, const char *id, GError **error)
{
  g_autoptr (DeliverQuarantined) q = deliver_quarantine_get (ctx, id, error);
  g_autofree char *file = NULL;
  struct stat sb;
  int dirfd, fd;

  if (q == NULL)
    return -1;
  if (strcmp (q->state, "deleted") == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: deleted", id);
      return -1;
    }
  if ((dirfd = quarantine_dir_open (config, error)) < 0)
    return -1;
  file = quarantine_file_name (id);
  fd = openat (dirfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    errno_error (error, "open", file);
  else if (fstat (fd, &sb) < 0 || !S_ISREG (sb.st_mode))
    {
      errno = ELOOP;
      errno_error (error, "open", file);
      close (fd);
      fd = -1;
    }
  close (dirfd);
  return fd;
}

/* ---- delete and expire -------------------------------------------------- */

gboolean
deliver_quarantine_delete (DeliverContext *ctx, const LmtpdConfig *config, const char *id, const char *who,
                           GError **error)
{
  g_autoptr (DeliverQuarantined) q = deliver_quarantine_get (ctx, id, error);
  g_autofree char *now = g_strdup_printf ("%" G_GINT64_FORMAT, g_get_real_time () / G_USEC_PER_SEC);
  g_autofree char *by = util_sanitize (who ? who : "", 64);
  const char *values[] = { id, by, now };
  guint64 changed = 0;

  if (q == NULL)
    return FALSE;
  if (!state_records_exec (deliver_context_records (ctx),
                           "UPDATE lmtpd_quarantine SET state = 'deleted', released_by = $2, released_at = $3"
                           " WHERE id = $1 AND state = 'held'",
                           G_N_ELEMENTS (values), values, &changed, error))
    return FALSE;
  if (changed == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS, "%s is %s: not deleted", id, q->state);
      return FALSE;
    }
  remove_copy (config, id);
  g_message ("quarantine: id=%s deleted by=%s rcpt=<%s>", id, by, q->recipient);
  return TRUE;
}

/* Removes tmp.* files a crash left (older than a day), at most
 * EXPIRE_BATCH looked at. */
static void
sweep_tmp (const LmtpdConfig *config)
{
  int dirfd = quarantine_dir_open (config, NULL);
  DIR *dir = dirfd >= 0 ? fdopendir (dirfd) : NULL;
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  struct dirent *e;
  struct stat sb;

  if (dir == NULL)
    {
      if (dirfd >= 0)
        close (dirfd);
      return;
    }
  for (guint n = 0; n < EXPIRE_BATCH && (e = readdir (dir)) != NULL; n++)
    if (g_str_has_prefix (e->d_name, "tmp.") && fstatat (dirfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0
        && now - sb.st_mtime > TMP_MAX_AGE)
      unlinkat (dirfd, e->d_name, 0);
  closedir (dir);
}

gint64
deliver_quarantine_expire (DeliverContext *ctx, const LmtpdConfig *config, GError **error)
{
  g_autofree char *now = g_strdup_printf ("%" G_GINT64_FORMAT, g_get_real_time () / G_USEC_PER_SEC);
  const char *values[] = { now };
  g_autoptr (StateRows) rows = NULL;
  gint64 n = 0;

  if (!records_open (ctx, error))
    return -1;
  rows = state_records_query (deliver_context_records (ctx),
                              "SELECT id FROM lmtpd_quarantine WHERE expires < $1 AND state <> 'releasing'"
                              " ORDER BY expires LIMIT " G_STRINGIFY (EXPIRE_BATCH), 1, values, error);
  if (rows == NULL)
    return -1;
  for (guint i = 0; i < rows->n_rows; i++)
    {
      const char *id[] = { state_rows_get (rows, i, 0) };
      if (!quarantine_id_valid (id[0]))
        continue;
      /* the copy first: a row never names a file that is gone while it is held */
      remove_copy (config, id[0]);
      if (!state_records_exec (deliver_context_records (ctx), "DELETE FROM lmtpd_quarantine WHERE id = $1", 1, id,
                               NULL, error))
        return -1;
      g_message ("quarantine: id=%s expired", id[0]);
      n++;
    }
  sweep_tmp (config);
  return n;
}
