/* lmtpd-state.h - the state the nodes of a cluster share (state/): the
 * duplicate journal, the Sieve vacation reply log, the ids of the Sieve
 * duplicate test, and the nodes table (docs/cluster.md "Shared state").
 *
 * [state] backend = file keeps all of it in the local files deliver/ has
 * always used (dedupe.c, vacation.c, filter-duplicate.c): then there is no
 * StateStore at all (state_store_open() returns NULL without an error) and
 * nothing changes.  backend = pgsql keeps it in PostgreSQL through
 * util-pgsql.c's pool.  Each call answers STATE_FAILED when PostgreSQL does
 * not answer within [state] pgsql_timeout; the caller applies [state]
 * on_error (state_store_fall_back()): 451 4.3.0, or the local files.
 *
 * The records (issue 19: the quarantine index, decision traces, recorded
 * callout calls, verdict counts) are a second handle, StateRecords, that
 * always exists: SQLite in [state] records_db on one node, the same tables
 * in PostgreSQL when [state] backend = pgsql.
 */
#pragma once

#include <gio/gio.h>

#include "lmtpd-conf.h"

G_BEGIN_DECLS

typedef enum {
  STATE_NO,       /* not seen, not claimed */
  STATE_YES,      /* seen, or claimed by this call */
  STATE_FAILED,   /* PostgreSQL failed or was too slow: [state] on_error */
} StateAnswer;

typedef struct StateStore StateStore;

/* The store @config asks for: NULL without @error for backend = file;
 * NULL with @error for a bad configuration.  Connects lazily: a database
 * that is down is no error here. */
StateStore *state_store_open (const LmtpdConfig *config, GError **error);
void state_store_free (StateStore *s);
/* TRUE: on STATE_FAILED, use the local files (with a warning); FALSE:
 * answer 451 4.3.0. */
gboolean state_store_fall_back (const StateStore *s);

/* ---- the duplicate journal (deliver/dedupe.c's semantics) ---------------
 * Keys are (message digest, envelope sender, recipient), kept for
 * [delivery] duplicate_window seconds.  intend() names the file just
 * before it appears and claims the key: STATE_NO when another node's copy
 * is there or being made (the file must then not appear); record()
 * confirms it.  An unconfirmed intent (a node killed between the
 * two) counts as seen only while its file is there. */
StateAnswer state_dup_seen (StateStore *s, const char *digest, const char *sender, const char *address);
StateAnswer state_dup_intend (StateStore *s, const char *digest, const char *sender, const char *address,
                              const char *path);
StateAnswer state_dup_record (StateStore *s, const char *digest, const char *sender, const char *address);
StateAnswer state_dup_forget (StateStore *s, const char *digest, const char *sender, const char *address);

/* ---- the vacation reply log ----------------------------------------------
 * STATE_YES: this call claimed the reply to @sender for (@user, @handle)
 * for @period seconds, and the caller sends it; STATE_NO: answered
 * already.  A reply that then fails to go out is given back. */
StateAnswer state_vacation_claim (StateStore *s, const char *user, const char *handle, const char *sender,
                                  guint64 period);
void state_vacation_release (StateStore *s, const char *user, const char *handle, const char *sender);

/* ---- the Sieve duplicate test's ids (RFC 7352) --------------------------- */
StateAnswer state_ids_seen (StateStore *s, const char *user, const char *key);
/* Keeps @key for @seconds: from now with @last, else from when it was
 * first recorded (3.3). */
StateAnswer state_ids_record (StateStore *s, const char *user, const char *key, guint64 seconds, gboolean last);

/* ---- housekeeping ---------------------------------------------------------- */

/* Creates or migrates the schema (idempotent), with a clear @error when
 * the database cannot be reached. */
gboolean state_init_db (const LmtpdConfig *config, GError **error);
/* Deletes expired rows, at most a bounded number per table a call. */
void state_expire (StateStore *s);

/* ---- the nodes of the cluster --------------------------------------------- */

typedef enum {
  STATE_NODE_UP,
  STATE_NODE_DRAINING,
  STATE_NODE_DOWN,
} StateNodeState;

typedef struct {
  char *name;
  char *address;          /* HOST:PORT, LMTP */
  StateNodeState state;   /* DOWN too when the heartbeat is older than node_timeout */
  StateNodeState set;     /* the state as set (lmtpctl) */
  gint64 heartbeat_age;   /* seconds, -1 never */
} StateNode;

void state_node_free (StateNode *n);
const char *state_node_state_name (StateNodeState st);

/* Starts the heartbeat thread when [cluster] node_name is set: every few
 * seconds it upserts this node, and expires old rows now and then.  It
 * never blocks the caller; stopped by state_store_free(). */
void state_heartbeat_start (StateStore *s, const LmtpdConfig *config);

/* The nodes (StateNode*), at most a second old: the table is read again
 * only when the cached copy is older.  NULL with @error when PostgreSQL
 * fails and nothing was read yet.  Free with g_ptr_array_unref. */
GPtrArray *state_nodes_list (StateStore *s, GError **error);
/* The list as the heartbeat thread last read it (at most a heartbeat
 * old), or NULL: never waits on PostgreSQL, for the main loop. */
GPtrArray *state_nodes_cached (StateStore *s);
/* lmtpctl: sets NAME's state; FALSE with @error if there is no such node. */
gboolean state_node_set (StateStore *s, const char *name, StateNodeState st, GError **error);

/* ---- the records (issue 19) ------------------------------------------------
 * What the operator's tools read: the quarantine index, the decision trace
 * of each recipient, the recorded callout calls (shadow mode and replay),
 * verdict counts per hour.  Always available: SQLite in [state] records_db
 * (WAL, one connection behind a lock; lmtpctl opens the same file), or
 * PostgreSQL when [state] backend = pgsql (the same pool settings as the
 * shared state, so every node sees every record).
 *
 * SQL is written once for both: parameters $1..$n (text values, NULL for
 * SQL NULL), column types TEXT and BIGINT only, ids are text the caller
 * makes (state_records_new_id), times are unix seconds; INSERT ... ON
 * CONFLICT and RETURNING may be used.  The tables are in state/records-
 * schema.c, created when the SQLite file is opened and by lmtpd --init-db
 * for PostgreSQL.  Each part expires its own rows. */

typedef struct StateRecords StateRecords;

/* Rows of a query: row-major cells, NULL for SQL NULL. */
typedef struct {
  guint n_rows;
  guint n_cols;
  char **cells;
} StateRows;

/* The records @config asks for; NULL with @error when the SQLite file
 * cannot be opened or created, or the configuration is bad.  A
 * PostgreSQL that is down is no error here. */
StateRecords *state_records_open (const LmtpdConfig *config, GError **error);
/* Writes what is queued, then closes. */
void state_records_free (StateRecords *r);
/* TRUE when the records live in PostgreSQL, shared by the nodes. */
gboolean state_records_shared (const StateRecords *r);

/* One statement, committed on return (SQLite: synchronous = FULL, so on
 * stable storage).  *@changed (may be NULL): rows changed.  FALSE with
 * @error when the database fails or is slower than [state] pgsql_timeout
 * (SQLite: busy for as long). */
gboolean state_records_exec (StateRecords *r, const char *sql, guint n, const char *const *values, guint64 *changed,
                             GError **error);
/* The rows of one statement; NULL with @error as above. */
StateRows *state_records_query (StateRecords *r, const char *sql, guint n, const char *const *values,
                                GError **error);
/* The cell, or NULL (SQL NULL, or out of range). */
const char *state_rows_get (const StateRows *rows, guint row, guint col);
void state_rows_free (StateRows *rows);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (StateRows, state_rows_free)

/* Queued for the writer thread, which commits what is queued in one
 * transaction at a time, in the order posted.  Never blocks: when the
 * queue is full (bounded) the statement is dropped and counted.  For what
 * may be lost in a crash (traces, counts), never for the quarantine. */
void state_records_post (StateRecords *r, const char *sql, guint n, const char *const *values);
/* Returns once everything posted before the call is written (or failed). */
void state_records_flush (StateRecords *r);
/* Statements dropped (queue full) or failed in the writer, since open. */
guint64 state_records_dropped (const StateRecords *r);
/* A new random id: 16 lowercase hex digits. */
char *state_records_new_id (void);

G_END_DECLS
