/* records-sqlite.c - the records in one SQLite file: one connection
 * behind a lock (deliveries are many threads, writes are short), WAL so
 * that lmtpctl reads while lmtpd writes, synchronous = FULL so that what
 * state_records_exec() returned from is on stable storage.  Statements
 * are prepared once and kept by their text.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sqlite3.h>
#include <string.h>

#include "records-private.h"

#define CACHE_MAX 64        /* prepared statements kept */

typedef struct {
  sqlite3 *db;
  GMutex lock;
  GHashTable *prepared;     /* SQL -> sqlite3_stmt* */
} Sqlite;

static void
finalize (gpointer st)
{
  sqlite3_finalize (st);
}

static void
set_error (GError **error, sqlite3 *db, const char *what)
{
  int code = sqlite3_errcode (db);
  gboolean busy = code == SQLITE_BUSY || code == SQLITE_LOCKED;

  g_set_error (error, G_IO_ERROR, busy ? G_IO_ERROR_TIMED_OUT : G_IO_ERROR_FAILED, "sqlite: %s: %s", what,
               sqlite3_errmsg (db));
}

static sqlite3_stmt *
prepared (Sqlite *q, const char *sql, GError **error)
{
  sqlite3_stmt *st = g_hash_table_lookup (q->prepared, sql);

  if (st)
    return st;
  if (sqlite3_prepare_v3 (q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
    {
      set_error (error, q->db, "prepare");
      return NULL;
    }
  if (g_hash_table_size (q->prepared) >= CACHE_MAX)
    g_hash_table_remove_all (q->prepared);
  g_hash_table_insert (q->prepared, g_strdup (sql), st);
  return st;
}

/* $1..$n by name: a statement may use them in any order, or not all.
 * Each of the statement's parameters is read back by its name ("$7" takes
 * values[6]), not each value looked up by a formatted name: a row of ten
 * values cost ten g_snprintf and ten linear name searches.  The values
 * are bound without a copy (SQLITE_STATIC): run_locked resets the
 * statement and clears them before it returns to the caller who owns them. */
static void
bind_values (sqlite3_stmt *st, guint n, const char *const *values)
{
  int count = sqlite3_bind_parameter_count (st);

  for (int at = 1; at <= count; at++)
    {
      const char *name = sqlite3_bind_parameter_name (st, at);
      guint64 i;

      if (name == NULL || name[0] != '$' || name[1] == '0'
          || !g_ascii_string_to_unsigned (name + 1, 10, 1, n, &i, NULL))
        continue;
      if (values[i - 1])
        sqlite3_bind_text (st, at, values[i - 1], -1, SQLITE_STATIC);
      else
        sqlite3_bind_null (st, at);
    }
}

static void
collect_row (sqlite3_stmt *st, StateRows *rows)
{
  g_autofree char **cells = g_new0 (char *, rows->n_cols);

  for (guint c = 0; c < rows->n_cols; c++)
    {
      const unsigned char *t = sqlite3_column_text (st, (int) c);
      cells[c] = t ? g_strdup ((const char *) t) : NULL;
    }
  records_rows_add (rows, cells);
}

static gboolean
step_all (Sqlite *q, sqlite3_stmt *st, StateRows **rows, GError **error)
{
  int rc;

  if (rows)
    *rows = records_rows_new ((guint) sqlite3_column_count (st));
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    if (rows)
      collect_row (st, *rows);
  if (rc == SQLITE_DONE)
    return TRUE;
  set_error (error, q->db, "step");
  if (rows)
    g_clear_pointer (rows, state_rows_free);
  return FALSE;
}

static gboolean
run_locked (Sqlite *q, const char *sql, guint n, const char *const *values, guint64 *changed, StateRows **rows,
            GError **error)
{
  sqlite3_stmt *st = prepared (q, sql, error);
  gboolean ok;

  if (st == NULL)
    return FALSE;
  bind_values (st, n, values);
  ok = step_all (q, st, rows, error);
  if (ok && changed)
    *changed = (guint64) sqlite3_changes64 (q->db);
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  return ok;
}

static gboolean
sqlite_run (StateRecords *r, const char *sql, guint n, const char *const *values, guint64 *changed,
            StateRows **rows, GError **error)
{
  Sqlite *q = r->db;
  gboolean ok;

  g_mutex_lock (&q->lock);
  ok = run_locked (q, sql, n, values, changed, rows, error);
  g_mutex_unlock (&q->lock);
  return ok;
}

static gboolean
sqlite_batch (StateRecords *r, GPtrArray *stmts, GError **error)
{
  Sqlite *q = r->db;
  gboolean ok;

  g_mutex_lock (&q->lock);
  ok = run_locked (q, "BEGIN IMMEDIATE", 0, NULL, NULL, NULL, error);
  for (guint i = 0; ok && i < stmts->len; i++)
    {
      const RecordsStatement *s = stmts->pdata[i];
      g_autoptr (GError) one = NULL;
      /* one bad statement costs itself, not the batch */
      if (!run_locked (q, s->sql, s->n, (const char *const *) s->values, NULL, NULL, &one))
        g_warning ("records: %s", one->message);
    }
  if (ok)
    ok = run_locked (q, "COMMIT", 0, NULL, NULL, NULL, error);
  if (!ok)
    sqlite3_exec (q->db, "ROLLBACK", NULL, NULL, NULL);
  g_mutex_unlock (&q->lock);
  return ok;
}

static void
sqlite_close (StateRecords *r)
{
  Sqlite *q = r->db;

  g_hash_table_unref (q->prepared);   /* finalizes the statements */
  sqlite3_close (q->db);
  g_mutex_clear (&q->lock);
  g_free (q);
}

static const RecordsBackend sqlite_backend = { sqlite_run, sqlite_batch, sqlite_close };

static gboolean
set_up (sqlite3 *db, guint timeout_ms, GError **error)
{
  sqlite3_busy_timeout (db, (int) MAX (timeout_ms, 1000));
  if (sqlite3_exec (db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON",
                    NULL, NULL, NULL) != SQLITE_OK)
    {
      set_error (error, db, "settings");
      return FALSE;
    }
  for (guint i = 0; records_schema[i]; i++)
    if (sqlite3_exec (db, records_schema[i], NULL, NULL, NULL) != SQLITE_OK)
      {
        set_error (error, db, "schema");
        return FALSE;
      }
  return TRUE;
}

static gboolean
make_parent (const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);

  if (g_mkdir_with_parents (dir, 0750) == 0)
    return TRUE;
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "records: %s: %s", dir, g_strerror (errno));
  return FALSE;
}

/* The file made first, 0600 (SQLite would take the umask's mode, and
 * gives its -wal and -shm files the database's): the records hold
 * addresses and subjects. */
static gboolean
make_private (const char *path, GError **error)
{
  int fd = open (path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  struct stat st;
  gboolean ok = fd >= 0 && fstat (fd, &st) == 0 && S_ISREG (st.st_mode);

  if (!ok)
    g_set_error (error, G_IO_ERROR, fd < 0 ? g_io_error_from_errno (errno) : G_IO_ERROR_NOT_REGULAR_FILE,
                 "records: %s: %s", path, fd < 0 ? g_strerror (errno) : "not a regular file");
  if (fd >= 0)
    close (fd);
  return ok;
}

gboolean
records_sqlite_open (StateRecords *r, const char *path, GError **error)
{
  Sqlite *q;
  sqlite3 *db = NULL;

  if (!make_parent (path, error) || !make_private (path, error))
    return FALSE;
  if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                       NULL) != SQLITE_OK
      || !set_up (db, r->timeout_ms, error))
    {
      if (error && *error == NULL)
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "records: %s: %s", path, db ? sqlite3_errmsg (db)
                                                                                       : "out of memory");
      else if (error)
        g_prefix_error (error, "records: %s: ", path);
      sqlite3_close (db);
      return FALSE;
    }
  q = g_new0 (Sqlite, 1);
  q->db = db;
  g_mutex_init (&q->lock);
  q->prepared = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, finalize);
  r->backend = &sqlite_backend;
  r->db = q;
  return TRUE;
}
