/* deliver.h - the per-recipient delivery pipeline, shared by lmtpd and the
 * LDA command: address checks, recipient resolution, the message spool,
 * trace headers and the Maildir writer.
 *
 * Everything here is blocking and thread-safe (no shared mutable state but
 * an atomic counter), so the daemon runs it in worker threads.  Results are
 * a DeliverStatus: an SMTP reply code, an enhanced status code (RFC 3463)
 * and a text.  The mapping from an errno to a status happens in exactly one
 * place, deliver_status_from_error().
 */
#pragma once

#include <glib.h>
#include <sys/types.h>

#include "lmtpd-conf.h"

G_BEGIN_DECLS

#define DELIVER_ERROR (deliver_error_quark ())
GQuark deliver_error_quark (void);
/* DELIVER_ERROR codes are errno values. */

/* ---- status ------------------------------------------------------------ */

typedef struct {
  guint code;          /* 250, 451, 550 ... */
  char enhanced[16];   /* "2.0.0" */
  char *text;          /* without code; never contains CR or LF */
} DeliverStatus;

void deliver_status_set (DeliverStatus *st, guint code, const char *enhanced,
                         const char *fmt, ...) G_GNUC_PRINTF (4, 5);
void deliver_status_clear (DeliverStatus *st);
/* Maps a DELIVER_ERROR (errno) to the reply a recipient gets. */
void deliver_status_from_error (DeliverStatus *st, const GError *error);

/* ---- addresses --------------------------------------------------------- */

/* Splits and checks an RFC 5321 mailbox "local@domain" (local part may be a
 * quoted string; it is returned unquoted).  @allow_utf8: accept non-ASCII
 * (SMTPUTF8).  A bare "postmaster" is accepted with *out_domain NULL.
 * On failure returns FALSE and a static reason in *why. */
gboolean deliver_address_parse (const char *s, gboolean allow_utf8,
                                char **out_local, char **out_domain, const char **why);

/* Copies @s for a log line: control and non-UTF-8 bytes become '?', and
 * anything past @max bytes is cut with "...". */
char *deliver_sanitize (const char *s, gsize max);

/* ---- recipients -------------------------------------------------------- */

typedef struct {
  char *original;      /* as the client gave it: local@domain */
  char *address;       /* final, lowercased local@domain */
  char *local;
  char *domain;
  char *mailbox;       /* path of the Maildir */
  char *orcpt;         /* ORCPT= parameter (xtext decoded is not applied) or NULL */
} DeliverRecipient;

/* Resolves a recipient to a mailbox.  Returns NULL and sets @status (550
 * 5.1.1 unknown user, 550 5.1.3 unsafe address ...) if it cannot be
 * delivered to.  @domain may be NULL for a bare postmaster. */
DeliverRecipient *deliver_resolve (const LmtpdConfig *config, const char *local,
                                   const char *domain, DeliverStatus *status);
void deliver_recipient_free (DeliverRecipient *rcpt);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DeliverRecipient, deliver_recipient_free)

/* ---- spool ------------------------------------------------------------- */

/* The message as received, in an unlinked temporary file, with CRLF line
 * ends turned into LF as it is written.  Memory use is one fixed buffer. */
typedef struct DeliverSpool DeliverSpool;

DeliverSpool *deliver_spool_new (const char *dir, GError **error);
/* Appends wire bytes (CRLF or LF line ends; a CR at the end of one call and
 * an LF at the start of the next are joined). */
gboolean deliver_spool_write (DeliverSpool *spool, const void *data, gsize len, GError **error);
/* Flushes; after this the spool is read-only and may be shared by threads. */
gboolean deliver_spool_finish (DeliverSpool *spool, GError **error);
int deliver_spool_fd (const DeliverSpool *spool);
guint64 deliver_spool_size (const DeliverSpool *spool);   /* bytes stored (LF ends) */
guint64 deliver_spool_lines (const DeliverSpool *spool);  /* LF count */
void deliver_spool_free (DeliverSpool *spool);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DeliverSpool, deliver_spool_free)

/* ---- messages ---------------------------------------------------------- */

typedef struct {
  const char *id;           /* transaction id */
  const char *sender;       /* reverse-path without <>; "" for the null sender */
  const char *helo;         /* LHLO name or NULL */
  const char *client_addr;  /* peer address or NULL */
  const char *protocol;     /* "LMTP", "local" ... */
  gint64 received_us;       /* g_get_real_time() at MAIL */
  DeliverSpool *spool;      /* finished */
} DeliverMessage;

/* The trace headers prepended for one recipient: Return-Path, Delivered-To,
 * Received (RFC 5321 4.4), LF line ends. */
char *deliver_trace_headers (const LmtpdConfig *config, const DeliverMessage *msg,
                             const DeliverRecipient *rcpt);

/* ---- Maildir ----------------------------------------------------------- */

/* A new unique base name "<secs>.M<usecs>P<pid>Q<n>.<host>" (host with '/'
 * and ':' escaped as \057 and \072).  Free with g_free. */
char *deliver_maildir_unique (const char *hostname);

/* Writes @header then the spool into tmp/, fsyncs it (if @do_fsync), renames
 * it into new/ with ",S=<size>,W=<crlf size>" and fsyncs new/.  Creates the
 * Maildir if missing.  Nothing is visible in new/ unless all of it is.
 * *out_path (may be NULL) receives the final path. */
gboolean deliver_maildir_store (const char *maildir, const char *hostname,
                                const char *header, DeliverSpool *spool,
                                gboolean do_fsync, char **out_path, GError **error);

/* ---- the pipeline ------------------------------------------------------ */

/* Delivers @msg to one recipient: (later: callouts, verdict, sieve), then
 * store.  Blocking.  Always fills @status; @out_path gets the file written
 * (may be NULL). */
void deliver_pipeline_run (const LmtpdConfig *config, const DeliverMessage *msg,
                           const DeliverRecipient *rcpt, DeliverStatus *status,
                           char **out_path);

G_END_DECLS
