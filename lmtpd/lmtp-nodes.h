/* lmtp-nodes.h - the cluster's nodes and who owns a recipient
 * (lmtp-nodes.c).  The node list comes through LmtpNodeSource: for now
 * from [cluster] nodes; a registry with heartbeats plugs in the same way.
 * Main loop only.  Not installed.
 */
#pragma once

#include "lmtpd-conf.h"

typedef enum {
  LMTP_NODE_UP,
  LMTP_NODE_DRAINING,  /* delivers what it owns by the directory; hashing skips it for new mail */
  LMTP_NODE_DOWN,      /* hashing skips it; a host= that names it gets 451 from the proxy */
} LmtpNodeState;

typedef struct {
  char *name;
  char *address;       /* its LMTP listener: inet:HOST:PORT or unix:PATH */
  LmtpNodeState state;
  guint weight;        /* share of the hashed users, relative; 0 counts as 1 */
} LmtpNode;

/* Where the nodes come from.  list() is called for every proxied RCPT,
 * so it must answer from memory: the nodes in a stable order (any), this
 * node among them, borrowed until control returns to the main loop;
 * NULL while the source has no list yet (the nodes table not read). */
typedef struct {
  const GPtrArray *(*list) (gpointer self, const LmtpdConfig *config);
} LmtpNodeSource;

/* Replaces the source ([cluster] nodes by default); @src NULL restores it. */
void lmtp_nodes_set_source (const LmtpNodeSource *src, gpointer self);

/* lmtp-nodes-registry.c: the nodes table of the shared state, for
 * [cluster] nodes = pgsql (@state NULL: back to [cluster] nodes). */
typedef struct StateStore StateStore;
void lmtp_nodes_use_registry (StateStore *state);

/* Whether @config makes this node part of a cluster ([cluster] node_name
 * and nodes). */
gboolean lmtp_nodes_enabled (const LmtpdConfig *config);

typedef enum {
  LMTP_OWNER_LOCAL,        /* deliver here */
  LMTP_OWNER_REMOTE,       /* proxy to *node */
  LMTP_OWNER_UNKNOWN_HOST, /* the directory names a node not in the list: 451 */
  LMTP_OWNER_NO_LIST,      /* no node list yet, so no owner known: 451 */
} LmtpOwner;

/* The owner of @address: the directory's @host if not NULL, else
 * rendezvous hashing of @address over the nodes that are up. */
LmtpOwner lmtp_nodes_owner (const LmtpdConfig *config, const char *address, const char *host,
                            const LmtpNode **node);
