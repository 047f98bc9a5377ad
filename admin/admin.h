/* admin.h - the operator's tools (admin/): lmtpctl's commands and the
 * admin web listener lmtpd serves.  They sit on deliver/ (the quarantine
 * and its release through the pipeline, the decision traces, replaying
 * recorded calls) and state/ (the records, the nodes); the web page and
 * lmtpctl call the same functions, so every action of the page is also a
 * command.
 */
#pragma once

#include <gio/gio.h>

#include "lmtpd-conf.h"
#include "deliver.h"

G_BEGIN_DECLS

/* Exit codes of lmtpctl (sysexits.h) */
enum {
  ADMIN_EXIT_OK = 0,
  ADMIN_EXIT_USAGE = 64,     /* a bad command line */
  ADMIN_EXIT_DATAERR = 65,   /* refused: e.g. released already */
  ADMIN_EXIT_NOINPUT = 66,   /* no such message, trace or node */
  ADMIN_EXIT_UNAVAILABLE = 69,
  ADMIN_EXIT_SOFTWARE = 70,
  ADMIN_EXIT_TEMPFAIL = 75,  /* the database does not answer: try again */
  ADMIN_EXIT_CONFIG = 78,    /* a bad configuration */
};

/* One noun of lmtpctl: "lmtpctl [-c FILE] NOUN ARGS...".  @run gets the
 * arguments after the noun (argv[0] is the noun) and returns an exit code;
 * it prints its own errors as "lmtpctl: ...". */
typedef struct {
  const char *noun;
  const char *usage;      /* one or more lines, each without "lmtpctl " */
  int (*run) (const LmtpdConfig *config, int argc, char **argv);
  /* TRUE: @run needs root for a start (making directories, reading a key)
   * and drops to [server] user itself; else lmtpctl drops before @run, so
   * that nothing it opens (the SQLite records) is created as root. */
  gboolean drops_itself;
} AdminCommand;

extern const AdminCommand admin_node_command;
extern const AdminCommand admin_quarantine_link_command; /* "quarantine link" (ctl-link.c) */
extern const AdminCommand admin_quarantine_digest_command; /* "quarantine digest" (ctl-digest.c) */

/* ---- the admin web listener (web-*.c) ---- */

/* The page text of /metrics, newly allocated; called on the main loop. */
typedef char *(*AdminMetricsRender) (void);

/* Binds [admin] listen (call it as root, before dropping privileges) and
 * serves the admin pages and /metrics on the thread-default main context,
 * reading the records of @ctx in worker threads.  Reads [admin]
 * token_file and link_secret_file now: NULL with @error if the token file
 * is missing, empty or readable by others. */
GObject *admin_web_new (const LmtpdConfig *config, DeliverContext *ctx, AdminMetricsRender metrics,
                        GError **error);
/* Stops listening and drops the server (may be NULL). */
void admin_web_free (GObject *web);

/* The key of the users' signed links, from [admin] link_secret_file (read
 * it as root, before dropping privileges); NULL with @error when it is not
 * set, missing, empty or readable by others. */
GBytes *admin_link_secret (const LmtpdConfig *config, GError **error);
/* A user's signed link to release quarantined message @id (the digest's
 * links), valid until @expires (unix seconds; 0: now + [admin]
 * link_lifetime): "http(s)://HOST:PORT/u/release?id=..&exp=..&sig=..". */
char *admin_link_url (const LmtpdConfig *config, GBytes *secret, const char *id, gint64 expires);
extern const AdminCommand admin_trace_command;
extern const AdminCommand admin_replay_command;
extern const AdminCommand admin_verdicts_command;

/* --since T: unix seconds, an age (30m, 2h, 1d: that long ago) or an ISO
 * 8601 time (UTC unless it says otherwise) into *@out; FALSE if neither. */
gboolean admin_parse_since (const char *text, gint64 *out);
extern const AdminCommand admin_quarantine_command;

G_END_DECLS
