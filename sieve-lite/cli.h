/* cli.h - what the parts of the sieve-lite command share: the message
 * file as a script sees it and the printed result (cli-message.c), the
 * simulated callout results (cli-callout.c) and the site around a script:
 * included scripts, special-use folders, environment (cli-site.c). */
#pragma once

#include "lmtpd-util.h"   /* GMime, and its autoptr cleanups */

#include "sieve.h"

typedef struct {
  GMimeMessage *msg;
  char **seen;              /* --duplicate: ids earlier runs recorded */
  const char *path;
  GPtrArray *parts;         /* built on first use */
} CliMessage;

/* Reads the message in @path into @m and points @sm's message callbacks
 * at it.  Returns the exit status: 0, or 66/65 (said on stderr). */
int cli_message_open (CliMessage *m, const char *path, SieveMessage *sm);
void cli_message_clear (CliMessage *m);
/* What a run decided, one action or change a line (the tests read it) */
void cli_print_result (const SieveResult *r);

/* --callout NAME=SPEC...: the results into @sm (spamtest, virustest, the
 * callout test); @cs and @keep hold what @sm points to. */
gboolean cli_callouts_apply (char **specs, SieveMessage *sm, GArray *cs, GPtrArray *keep, GError **error);

/* Where include finds scripts (NAME.sieve), and those it compiled. */
typedef struct {
  const char *dir, *global_dir;
  GHashTable *scripts;  /* path -> SieveScript* */
} CliSite;

/* --dir, --global-dir, --remote-ip, --remote-host */
extern const GOptionEntry cli_site_entries[];
void cli_site_init (CliSite *site, SieveMessage *sm);
void cli_site_clear (CliSite *site);
