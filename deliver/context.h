/* context.h - inside deliver/: what a DeliverContext holds, for the files
 * of deliver/ that use a part of it (context.c builds it).  Not part of
 * deliver.h's public interface.
 */
#pragma once

#include "deliver.h"
#include "directory.h"
#include "lmtpd-state.h"
#include "ocp.h"

/* The compiled Sieve scripts, by path (script-cache.c). */
typedef struct FilterCache FilterCache;
FilterCache *filter_cache_new (void);
void filter_cache_free (FilterCache *cache);

/* Emptied spool files kept for the next transactions (spool.c). */
typedef struct DeliverSpoolPool DeliverSpoolPool;
DeliverSpoolPool *deliver_spool_pool_new (void);
void deliver_spool_pool_unref (DeliverSpoolPool *pool);


struct DeliverContext {
  gatomicrefcount ref;

  OcpClient *ocp;                  /* connections to the callout services */
  DeliverCalloutObserver observer; /* set before the first delivery, or NULL */
  DeliverDirectoryObserver directory_observer; /* likewise, for user lookups */
  DeliverSieveObserver sieve_observer; /* likewise, for failed Sieve scripts */
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

  /* the user directory of the configuration in force (resolve.c), made
   * again when a reload changes [users]; NULL until the first lookup */
  GMutex users_lock;
  Directory *users;

  /* [state] backend = pgsql: the state the nodes share (the duplicate
   * journal, the vacation log, the duplicate ids); NULL: the local files */
  StateStore *state;

  /* the records (issue 19): quarantine index, traces, recorded calls;
   * SQLite or PostgreSQL, opened with the journal */
  StateRecords *records;
  gint trace_posts;                /* decision traces posted (atomic): every 100th expires old ones */

  /* shadow mode and replay: verdict counts in memory (verdict-counts.c),
   * the recorder's budget (record.c), metrics of shadow verdicts */
  struct DeliverVerdictCounter *counts;
  struct DeliverRecorder *recorder;
  DeliverShadowObserver shadow_observer;
};
