/* context.h - inside deliver/: what a DeliverContext holds, for the files
 * of deliver/ that use a part of it (context.c builds it).  Not part of
 * deliver.h's public interface.
 */
#pragma once

#include "deliver.h"
#include "ocp.h"

/* The compiled Sieve scripts, by path (script-cache.c). */
typedef struct FilterCache FilterCache;
FilterCache *filter_cache_new (void);
void filter_cache_free (FilterCache *cache);

/* Emptied spool files kept for the next transactions (spool.c). */
typedef struct DeliverSpoolPool DeliverSpoolPool;
DeliverSpoolPool *deliver_spool_pool_new (void);
void deliver_spool_pool_unref (DeliverSpoolPool *pool);

/* Seam: a user directory (LDAP, SQL, a userdb socket) that
 * deliver_resolve() will ask for a user's mailbox and quota before the
 * [users] of the configuration.  Defined by its first backend. */
typedef struct DeliverUserDirectory DeliverUserDirectory;

/* Seam: a state store shared by the nodes of a cluster (the duplicate
 * journal, the vacation reply log, a quarantine), in place of the local
 * files.  Defined by its first backend. */
typedef struct DeliverStateStore DeliverStateStore;

struct DeliverContext {
  gatomicrefcount ref;

  OcpClient *ocp;                  /* connections to the callout services */
  DeliverCalloutObserver observer; /* set before the first delivery, or NULL */
  FilterCache *scripts;            /* compiled Sieve scripts */
  DeliverSpoolPool *spools;        /* emptied spool files */
  DeliverDedupe *journal;          /* the duplicate journal, or NULL (off) */

  /* Maildir: when this process last cleaned each tmp/ (maildir.c) */
  GMutex tmp_lock;
  GHashTable *tmp_cleaned;         /* maildir -> monotonic seconds */

  /* the mail root's real path, remembered per configured path (resolve.c) */
  GMutex root_lock;
  char *root_configured;
  char *root_resolved;

  /* Seams, NULL until a backend plugs in: resolve.c and dedupe use the
   * configuration and the local files meanwhile. */
  DeliverUserDirectory *users;
  DeliverStateStore *state;
};
