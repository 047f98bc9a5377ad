/* records-private.h - inside state/: the records' two backends (SQLite,
 * PostgreSQL) behind one small table of functions, and the writer queue
 * (records.c) in front of them.
 */
#pragma once

#include "lmtpd-state.h"

/* One statement with its values, as posted. */
typedef struct {
  char *sql;
  guint n;
  char **values;   /* n entries, NULL for SQL NULL */
} RecordsStatement;

typedef struct {
  /* @rows NULL: no rows wanted (*@changed, may be NULL, gets the count) */
  gboolean (*run) (StateRecords *r, const char *sql, guint n, const char *const *values, guint64 *changed,
                   StateRows **rows, GError **error);
  /* @stmts (RecordsStatement*) in one transaction where the backend can */
  gboolean (*batch) (StateRecords *r, GPtrArray *stmts, GError **error);
  void (*close) (StateRecords *r);
} RecordsBackend;

struct StateRecords {
  const RecordsBackend *backend;
  gpointer db;                /* the backend's */
  guint timeout_ms;
  gboolean shared;            /* PostgreSQL */

  /* the writer thread and its bounded queue */
  GMutex lock;
  GCond wake;                 /* the writer: work, or stop */
  GCond done;                 /* flushers: a batch was written */
  GPtrArray *queue;           /* RecordsStatement* */
  guint64 posted, written;    /* counts, for flush */
  guint64 dropped;
  gboolean stopping;
  GThread *writer;
};

extern const char *const records_schema[];

/* The backends: they fill r->backend and r->db. */
gboolean records_sqlite_open (StateRecords *r, const char *path, GError **error);
gboolean records_pgsql_open (StateRecords *r, const LmtpdConfig *config, GError **error);

/* Rows built by a backend. */
StateRows *records_rows_new (guint n_cols);
void records_rows_add (StateRows *rows, char **cells);
void records_statement_free (gpointer p);
