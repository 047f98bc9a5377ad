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
} AdminCommand;

extern const AdminCommand admin_node_command;
extern const AdminCommand admin_trace_command;
extern const AdminCommand admin_replay_command;
extern const AdminCommand admin_verdicts_command;

/* --since T: unix seconds, an age (30m, 2h, 1d: that long ago) or an ISO
 * 8601 time (UTC unless it says otherwise) into *@out; FALSE if neither. */
gboolean admin_parse_since (const char *text, gint64 *out);
extern const AdminCommand admin_quarantine_command;

G_END_DECLS
