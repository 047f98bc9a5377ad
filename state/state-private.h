/* state-private.h - inside state/: what its files share. */
#pragma once

#include "lmtpd-state.h"
#include "util-pgsql.h"

struct StateStore {
  UtilPgPool *pool;
  guint timeout_ms;
  guint window;               /* [delivery] duplicate_window */
  guint claim_timeout;        /* seconds an unconfirmed intent holds its key */
  gboolean fall_back;

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
};

/* One statement on the pool with @s's timeout; failures are logged once
 * here (as "shared state: ..."). */
PGresult *state_exec (StateStore *s, const char *sql, int n, const char *const *values, ExecStatusType want);
/* The connection string and password for [state] (else [users]'s). */
const char *state_conninfo (const LmtpdConfig *config, const char **password);
void state_nodes_stop (StateStore *s);
