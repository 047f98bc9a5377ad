/* state-private.h - inside state/: what its files share. */
#pragma once

#include "lmtpd-state.h"
#include "util-pgsql.h"

/* The statements of state-sql.c, prepared on each connection. */
typedef enum {
  SQL_DUP_SEEN,
  SQL_DUP_INTEND,
  SQL_DUP_RECORD,
  SQL_DUP_FORGET,
  SQL_VAC_CLAIM,
  SQL_VAC_RELEASE,
  SQL_IDS_SEEN,
  SQL_IDS_RECORD,
  SQL_NODE_BEAT,
  SQL_NODES_READ,
  SQL_NODE_SET,
  SQL_N
} StateSql;

extern const UtilPgStatement state_statements[];

struct StateStore {
  UtilPgPool *pool;
  guint timeout_ms;
  guint window;               /* [delivery] duplicate_window */
  guint claim_timeout;        /* seconds an unconfirmed intent holds its key */
  gboolean fall_back;
  GMutex warn_lock;           /* state-exec.c: failures logged, not each one */
  guint failures;             /* since PostgreSQL last answered */
  gint64 warned;              /* monotonic */

  /* the nodes: the cached list, and the heartbeat thread */
  GMutex nodes_lock;
  GPtrArray *nodes;           /* StateNode*, or NULL */
  gint64 nodes_read;          /* monotonic, when */
  gboolean refreshing;        /* a caller is reading the table */
  guint node_timeout;
  GThread *heartbeat;
  GMutex beat_lock;
  GCond beat_stop;
  gboolean stopping;
  char *node_name;
  char *node_address;

  /* the confirmations, sent in batches by a thread of their own
   * (state-confirm.c) */
  GMutex confirm_lock;
  GCond confirm_wake;
  GPtrArray *confirm_queue;   /* char* keys, bounded by CONFIRM_MAX */
  GThread *confirmer;
  gboolean confirm_stopping;
};

/* One statement on the pool with @s's timeout; failures are logged here
 * (as "shared state: ...", rate-limited). */
PGresult *state_exec (StateStore *s, const char *sql, int n, const char *const *values, ExecStatusType want);
/* Likewise, one of state-sql.c's prepared statements. */
PGresult *state_run (StateStore *s, StateSql id, int n, const char *const *values, ExecStatusType want);
/* The connection string and password for [state] (else [users]'s). */
const char *state_conninfo (const LmtpdConfig *config, const char **password);
void state_nodes_stop (StateStore *s);
/* The duplicate key of a triple (as dedupe.c's). */
char *state_dup_key (const char *digest, const char *sender, const char *address);
/* Queues @key's confirmation (taken); FALSE when the queue is full. */
gboolean state_confirm_queue (StateStore *s, char *key);
/* Sends what is queued and stops the thread. */
void state_confirm_stop (StateStore *s);
