/* deliver.h - the per-recipient delivery pipeline, shared by lmtpd and the
 * LDA command: address checks, recipient resolution, the message spool,
 * trace headers and the Maildir writer.
 *
 * Everything here is blocking and thread-safe, so the daemon runs it in
 * worker threads.  What deliveries share lives in one DeliverContext that
 * the caller builds and passes down; there is no other shared mutable
 * state but the atomic counters that make file names unique.  Results are
 * a DeliverStatus: an SMTP reply code, an enhanced status code (RFC 3463)
 * and a text.  The mapping from an errno to a status happens in exactly one
 * place, deliver_status_from_error().
 */
#pragma once

#include <glib.h>
#include <sys/types.h>

#include "lmtpd-conf.h"
#include "lmtpd-state.h"
#include "lmtpd-util.h"

G_BEGIN_DECLS

#define DELIVER_ERROR (deliver_error_quark ())
GQuark deliver_error_quark (void);
/* DELIVER_ERROR codes are errno values. */

/* ---- status ------------------------------------------------------------ */

typedef struct {
  guint code;          /* 250, 451, 550 ... */
  char enhanced[16];   /* "2.0.0" */
  char *text;          /* without code; never contains CR or LF */
  guint64 callout_us;  /* time spent in OPES callouts for this delivery */
} DeliverStatus;

void deliver_status_set (DeliverStatus *st, guint code, const char *enhanced,
                         const char *fmt, ...) G_GNUC_PRINTF (4, 5);
void deliver_status_clear (DeliverStatus *st);
/* Maps a DELIVER_ERROR (errno) to the reply a recipient gets. */
void deliver_status_from_error (DeliverStatus *st, const GError *error);

/* ---- the delivery context (context.c) --------------------------------- */

/* What deliveries share across transactions, in one reference-counted
 * object that lmtpd and the deliver command build and pass to the
 * pipeline: the OCP client and its connections, the compiled-script
 * cache, the spool pool, the duplicate journal, the callout observer, and
 * two small caches (the mail root's real path, when each Maildir's tmp/
 * was last cleaned).  It also has the seams where a user directory and a
 * state store shared by a cluster will plug in (context.h).
 *
 * It holds no configuration: every call takes the one of its transaction.
 * So a reload (SIGHUP) leaves the context as it is and still takes
 * effect: the OCP client gets each service's settings with every call,
 * and a cached script is used only while its file is unchanged.  The
 * journal is opened once, with the configuration of the start. */
typedef struct DeliverContext DeliverContext;

DeliverContext *deliver_context_new (void);
DeliverContext *deliver_context_ref (DeliverContext *ctx);
void deliver_context_unref (DeliverContext *ctx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DeliverContext, deliver_context_unref)
/* Opens the duplicate journal when @config asks for one (duplicate_window
 * > 0).  Called once privileges are dropped, so the journal belongs to the
 * mail user. */
gboolean deliver_context_open_journal (DeliverContext *ctx, const LmtpdConfig *config, GError **error);
/* The shared state ([state] backend = pgsql) that open_journal opened, or
 * NULL: for the heartbeat and the nodes list (lmtpd-state.h). */
StateStore *deliver_context_state (DeliverContext *ctx);
/* Opens the records (quarantine index, traces, recorded calls, verdict
 * counts; lmtpd-state.h): lmtpd and lmtpctl at start, once privileges are
 * dropped.  The LDA tries, and goes without when it cannot (run as the
 * recipient, it may not write the operator's records). */
gboolean deliver_context_open_records (DeliverContext *ctx, const LmtpdConfig *config, GError **error);
/* The records, or NULL when they were not opened: then no trace is kept
 * and a quarantine into the store answers 4xx. */
StateRecords *deliver_context_records (DeliverContext *ctx);
/* The user directory of @config ([users] backend), a new reference: the
 * context keeps one and makes it again when a reload changes [users].
 * @ctx may be NULL (a directory of its own, without a cache kept). */
struct Directory *deliver_context_directory (DeliverContext *ctx, const LmtpdConfig *config, GError **error);

/* ---- addresses --------------------------------------------------------- */

/* Splits and checks an RFC 5321 mailbox "local@domain" (local part may be a
 * quoted string; it is returned unquoted).  @allow_utf8: accept non-ASCII
 * (SMTPUTF8).  A bare "postmaster" is accepted with *out_domain NULL.
 * On failure returns FALSE and a static reason in *why. */
gboolean deliver_address_parse (const char *s, gboolean allow_utf8,
                                char **out_local, char **out_domain, const char **why);

/* The reply for an address deliver_address_parse() refused with @why (NULL:
 * a bare name where a domain is needed): sets @code (501, or 553 for
 * non-ASCII without SMTPUTF8) and returns the enhanced code: 5.1.7 bad
 * sender syntax, 5.1.3 bad recipient syntax, 5.6.7 non-ASCII. */
const char *deliver_address_status (const char *why, gboolean sender, guint *code);

/* ---- recipients -------------------------------------------------------- */

typedef enum {
  DELIVER_MAILDIR,
  DELIVER_MBOX,
} DeliverFormat;

typedef struct {
  char *original;      /* as the client gave it: local@domain */
  char *address;       /* final, lowercased local@domain (after rewrite, without detail) */
  char *local;
  char *domain;
  char *detail;        /* subaddress after the delimiter, or NULL */
  char *folder;        /* folder the detail selects, or NULL for INBOX */
  gboolean folder_if_exists; /* deliver to @folder only if it exists */
  DeliverFormat format;
  char *mailbox;       /* Maildir root, or the mbox folder directory */
  char *inbox;         /* mbox INBOX file (DELIVER_MBOX) */
  guint64 quota_bytes;
  guint64 quota_messages;
  char *orcpt;         /* ORCPT= address or NULL */
  char *bypass;        /* OPES bypass asked for on RCPT (service names/URIs or "*"), or NULL */
  char *rcpt_trace;    /* "URI ; verdict=..." of the services that ran at RCPT, or NULL */
  char *sieve_script;  /* the user's script from the directory, or NULL: [sieve] script */
  char **settings;     /* the user's settings for the callout services ("Name: value"), or NULL */
  char *host;          /* the cluster node that holds the mailbox (directory), or NULL */
  char *skip_service;  /* a quarantine release: the [service] that quarantined it is not
                          called again (only it), or NULL */
  char *trace_steps;   /* the decision trace's lines of the RCPT stage (LF-ended), or NULL */
} DeliverRecipient;

/* Resolves a recipient: rewrite map, subaddress, users, mailbox.  Returns
 * NULL and sets @status (550 5.1.1 unknown user, 553 5.1.3 unsafe
 * address ...) if it cannot be delivered to.  @domain may be NULL for a
 * bare postmaster.  @ctx may be NULL. */
DeliverRecipient *deliver_resolve (DeliverContext *ctx, const LmtpdConfig *config, const char *local,
                                   const char *domain, DeliverStatus *status);
/* What delivery would do for @address (as an MTA would give it at RCPT),
 * as text for people: the final address, the mailbox, quota and usage, the
 * Sieve script, the services that would run, which directory answered and
 * how fast (lmtpd --lookup, like doveadm user and postmap -q).  Returns
 * the reply RCPT would get (250, 550, 451...). */
guint deliver_explain (DeliverContext *ctx, const LmtpdConfig *config, const char *address, GString *out);

/* deliver_resolve() from what needs no directory server (its cache):
 * *@would_block TRUE (and NULL, @status untouched) when a server must be
 * asked: then run deliver_resolve() off the main loop. */
DeliverRecipient *deliver_resolve_cached (DeliverContext *ctx, const LmtpdConfig *config, const char *local,
                                          const char *domain, DeliverStatus *status, gboolean *would_block);
/* Resolving may wait for a directory server: run deliver_resolve() off
 * the main loop. */
gboolean deliver_resolve_may_block (DeliverContext *ctx, const LmtpdConfig *config);
void deliver_recipient_free (DeliverRecipient *rcpt);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DeliverRecipient, deliver_recipient_free)

/* Checks that @path (which may not exist yet) stays inside the mail root
 * once symlinks are followed: its deepest existing ancestor must resolve
 * below the resolved mail root.  A path the configuration itself puts
 * outside the mail root (an absolute mailbox template) is checked against
 * nothing.  Fails with ELOOP in DELIVER_ERROR.  @ctx (may be NULL: no
 * cache) remembers the resolved mail root. */
gboolean deliver_path_contained (DeliverContext *ctx, const LmtpdConfig *config, const char *path,
                                 GError **error);

/* ---- folders (folder.c) ------------------------------------------------ */

/* Checks a folder name from untrusted input ("Lists/ietf", "Junk").
 * Hierarchy separators are '/' and '.'.  Returns FALSE with a static
 * reason if it could escape the mailbox or is otherwise unusable. */
gboolean deliver_folder_valid (const char *name, const char **why);
/* TRUE if @name means INBOX itself. */
gboolean deliver_folder_is_inbox (const char *name);
/* IMAP modified UTF-7 (RFC 3501 5.1.3) of one name component. */
char *deliver_folder_mutf7 (const char *utf8);
/* The Maildir++ directory of a folder below @maildir (".Lists.ietf"). */
char *deliver_folder_maildir_path (const char *maildir, const char *name);
/* The mbox file of a folder below the mbox directory ("Lists/ietf"). */
char *deliver_folder_mbox_path (const char *dir, const char *name);
/* Adds @name to the Maildir's "subscriptions" file if it is not there. */
gboolean deliver_folder_subscribe (const char *maildir, const char *name, GError **error);
/* Maildir info flags in ASCII order from a flag string ("SF" -> "FS"),
 * keeping only D F P R S T.  Free with g_free. */
char *deliver_flags_normalize (const char *flags);

/* ---- spool ------------------------------------------------------------- */

/* The message as received, in an unlinked temporary file, with CRLF line
 * ends turned into LF as it is written.  Memory use is one fixed buffer. */
typedef struct DeliverSpool DeliverSpool;

/* With @ctx, an emptied spool file of an earlier transaction in @dir is
 * used again, and the spool goes back to @ctx's pool when freed; with
 * NULL, the file is made and closed. */
DeliverSpool *deliver_spool_new (DeliverContext *ctx, const char *dir, GError **error);
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

/* The header part: bytes up to and including the first empty line (all
 * of it if there is none), and its line count.  Valid after finish. */
guint64 deliver_spool_header_len (const DeliverSpool *spool);
guint64 deliver_spool_header_lines (const DeliverSpool *spool);

/* The first @name field's value (unfolded, trimmed), or NULL; looks at the
 * first 64 KiB of the header.  Valid after finish.  Free with g_free. */
char *deliver_spool_header_value (const DeliverSpool *spool, const char *name);

/* The header part (deliver_spool_header_len() bytes), NUL-terminated, its
 * length in *out_len (may be NULL); NULL if it cannot be read.  Valid
 * after finish.  Free with g_free. */
char *deliver_spool_read_header (const DeliverSpool *spool, gsize *out_len);

/* Hex SHA-256 of what was stored (after CRLF -> LF), valid after finish. */
const char *deliver_spool_digest (const DeliverSpool *spool);

/* ---- content ----------------------------------------------------------- */

/* What a delivery stores after its prefix headers: ranges of files (the
 * spool, a part of it, or an adapted body), in order. */
typedef struct {
  int fd;
  guint64 offset;
  guint64 length;
  guint64 lines;        /* LF count in the range */
} DeliverSegment;

typedef struct {
  DeliverSegment seg[2];
  guint n;
} DeliverContent;

/* The whole spool as content. */
void deliver_content_from_spool (DeliverContent *content, const DeliverSpool *spool);
guint64 deliver_content_size (const DeliverContent *content);
guint64 deliver_content_lines (const DeliverContent *content);
/* TRUE if both name the very same bytes (same files and ranges). */
gboolean deliver_content_same (const DeliverContent *a, const DeliverContent *b);

/* ---- observing callouts ------------------------------------------------- */

/* Called from delivery threads after each call to a callout service: its
 * name, how long it took, and its verdict as traced ("accept", "modify",
 * "reject", ...), or NULL if the call failed (metrics). */
typedef void (*DeliverCalloutObserver) (const char *service, gint64 us, const char *verdict);
/* Set before the first delivery. */
void deliver_context_set_callout_observer (DeliverContext *ctx, DeliverCalloutObserver observer);
/* Told of every user lookup (from any thread): the directory's backend,
 * whether the cache answered, whether it failed, how long it took. */
typedef void (*DeliverDirectoryObserver) (const char *backend, gboolean cached, gboolean failed, gint64 us);
void deliver_context_set_directory_observer (DeliverContext *ctx, DeliverDirectoryObserver observer);
/* Told of each Sieve script that failed at delivery (from any thread):
 * "compile" (it did not compile, could not be read or is too large) or
 * "runtime" (an error or a limit while it ran); the message was kept. */
typedef void (*DeliverSieveObserver) (const char *kind);
void deliver_context_set_sieve_observer (DeliverContext *ctx, DeliverSieveObserver observer);
/* Ends the callout connections with CE (RFC 4037) before the process exits. */
void deliver_context_close_callouts (DeliverContext *ctx);

/* ---- messages ---------------------------------------------------------- */

typedef struct {
  const char *id;           /* transaction id */
  const char *sender;       /* reverse-path without <>; "" for the null sender */
  const char *helo;         /* LHLO name or NULL */
  const char *client_addr;  /* peer address or NULL */
  const char *client_name;  /* the peer's host name (XFORWARD NAME) or NULL */
  const char *protocol;     /* "LMTP", "local" ... */
  const char *mail_params;  /* MAIL FROM parameters as given, or NULL */
  gint64 received_us;       /* g_get_real_time() at MAIL */
  DeliverSpool *spool;      /* finished */
  const char *released;     /* a quarantine release: the stored copy has its trace headers
                               already, so this header line (LF-ended) replaces them; or NULL */
  struct DeliverDedupe *journal; /* a quarantine release: the duplicate journal of the store
                               (exactly once per id), instead of the context's; or NULL */
  const char *queue_id;     /* the MTA's queue id (XFORWARD IDENT) or NULL, for the decision trace */
  const char *message_id;   /* the Message-ID field or NULL: the trace reads it from @spool */
} DeliverMessage;

/* The headers prepended for one recipient: Return-Path, Delivered-To,
 * X-Original-To (if the address was rewritten), Received (RFC 5321 4.4),
 * LF line ends.  With @per_recipient FALSE (single instance of a
 * multi-recipient transaction), Delivered-To and "for <rcpt>" are left
 * out so every recipient gets the same bytes. */
char *deliver_trace_headers (const LmtpdConfig *config, const DeliverMessage *msg,
                             const DeliverRecipient *rcpt, gboolean per_recipient);

/* ---- Maildir ----------------------------------------------------------- */

/* A new unique base name "<secs>.M<usecs>P<pid>Q<n>.<host>" (host with '/'
 * and ':' escaped as \057 and \072).  Free with g_free. */
char *deliver_maildir_unique (const char *hostname);

/* Creates a Maildir (tmp, new, cur) and its parents if missing; fsyncs the
 * parents of what it creates. */
gboolean deliver_maildir_create (const char *maildir, gboolean do_fsync, GError **error);
/* TRUE when the file system of the directory @dirfd makes a new file, its
 * data and its name in that directory durable with one fsync of the file
 * (ext4 with a journal in data=ordered or data=journal mode: fs-sync.c).
 * The answer is logged the first time and when it changes. */
gboolean deliver_fs_one_commit (int dirfd);
/* Removes files in tmp/ not touched for @max_age seconds (36 hours by the
 * Maildir rules; stores do this once an hour per Maildir).  Returns how
 * many went. */
guint deliver_maildir_clean_tmp (const char *maildir, gint64 max_age);

/* @visible FALSE: just before the rename or link that makes @path appear;
 * TRUE: right after it.  Returning FALSE before the rename or link (the
 * delivery is past its deadline) stops the store: nothing appears,
 * ETIMEDOUT. */
typedef gboolean (*DeliverCommitFunc) (gpointer data, const char *path, gboolean visible);

/* One Maildir store: what to write and where. */
typedef struct {
  const char *maildir;
  const char *hostname;            /* for the unique name */
  const char *header;              /* written before @content */
  const DeliverContent *content;
  const char *flags;               /* not empty: into cur/ with ":2,<flags>" */
  const char *link_from;           /* a delivered file with exactly these bytes, or NULL */
  gboolean do_fsync;
  DeliverCommitFunc committed;     /* or NULL */
  gpointer data;                   /* for @committed */
  DeliverContext *ctx;             /* remembers when tmp/ was cleaned; NULL: it is not */
  gboolean one_commit;             /* with @do_fsync: one journal commit where the file system
                                    * carries it (deliver_fs_one_commit), else file and directory */
} DeliverMaildirStore;

/* Writes @st->header then the content into tmp/, fsyncs it (if do_fsync),
 * renames it into new/ (or cur/ with ":2,<flags>" when flags is not empty)
 * with ",S=<size>,W=<crlf size>" and fsyncs that directory, calling
 * committed the moment the file becomes visible (after the rename or
 * link, before the directory fsync).  Creates the Maildir if missing.
 * With link_from it hard-links instead of writing, falling back to a
 * copy.  Nothing is visible in new/ or cur/ unless all of it is.  tmp/,
 * new/ and cur/ are opened relative to the Maildir and never through a
 * symlink (then it fails: ELOOP or ENOTDIR).  *out_path (may be NULL)
 * receives the final path; *out_size (may be NULL) the file size.  With
 * a context, tmp/ is cleaned of stale files once an hour. */
gboolean deliver_maildir_store (const DeliverMaildirStore *st, char **out_path, guint64 *out_size,
                                GError **error);

/* ---- mbox (mbox.c) ----------------------------------------------------- */

/* Appends one message to an mbox file: open O_APPEND|O_NOFOLLOW, dotlock,
 * fcntl lock (waiting at most @lock_timeout s: then EAGAIN), check it is
 * the same regular file, write the From_ line, @header and the spool with
 * mboxrd (or mboxo) quoting and a blank line, fsync; on any error the file
 * is truncated back to its old size. */
typedef struct {
  const char *path;
  const char *sender;              /* for the From_ line; "" for the null sender */
  gint64 received_us;              /* its date */
  const char *header;              /* written before @content */
  const DeliverContent *content;
  gboolean mboxo;                  /* mboxo quoting, else mboxrd */
  guint lock_timeout;              /* seconds */
  gboolean do_fsync;
  const char *inflight_dir;        /* the records of appends under way, or NULL */
} DeliverMboxStore;
gboolean deliver_mbox_store (const DeliverMboxStore *st, GError **error);
/* Repairs mboxes whose append a dead process left half done, from the
 * records in @inflight_dir. */
void deliver_mbox_recover (const char *inflight_dir);
/* The inflight directory for a configuration: <spool_dir>/inflight. */
char *deliver_inflight_dir (const LmtpdConfig *config);

/* ---- files inside a mailbox (mailfile.c) ------------------------------ */

/* Opens a file inside a mailbox (maildirsize, subscriptions, a dotlock, a
 * vacation log): never through a symlink, never blocking (a FIFO), and
 * only a regular file (else ELOOP).  @flags as for open(); created 0600.
 * Returns the descriptor or -1 with @error set. */
int deliver_mailfile_open (const char *path, int flags, GError **error);
/* Reads all of @fd, at most @max bytes (else EFBIG).  *out is NUL-terminated. */
gboolean deliver_mailfile_read_fd (int fd, const char *path, gsize max, char **out, gsize *out_len,
                                   GError **error);
/* deliver_mailfile_open() then deliver_mailfile_read_fd(). */
gboolean deliver_mailfile_read (const char *path, gsize max, char **out, gsize *out_len, GError **error);
/* An exclusive flock(), waiting at most @timeout_s seconds (then EAGAIN). */
gboolean deliver_mailfile_lock (int fd, const char *path, guint timeout_s, GError **error);

/* ---- quota (quota.c) --------------------------------------------------- */

/* Maildir++ quota ("maildirsize", shared with Dovecot and Courier).
 * Returns FALSE with DELIVER_ERROR EDQUOT if @size more bytes (and one more
 * message) would exceed it; recalculates maildirsize when missing, stale
 * or of another quota. */
gboolean deliver_quota_check (const char *maildir, guint64 quota_bytes, guint64 quota_messages,
                              guint64 size, GError **error);
/* The byte quota of an mbox user: FALSE with EDQUOT if the mbox file
 * @path (its size from lstat, 0 when missing) cannot take @size more. */
gboolean deliver_quota_check_mbox (const char *path, guint64 quota_bytes, guint64 size, GError **error);
/* What the Maildir holds now, as the quota counts it (maildirsize,
 * recalculated when needed). */
void deliver_quota_usage (const char *maildir, guint64 quota_bytes, guint64 quota_messages, guint64 *bytes,
                          guint64 *messages);
/* Records one delivered message of @size bytes in maildirsize. */
void deliver_quota_add (const char *maildir, guint64 quota_bytes, guint64 quota_messages,
                        guint64 size);

/* ---- duplicates (dedupe.c) --------------------------------------------- */

/* A journal of (message digest, envelope sender, recipient) keys delivered
 * within a window,
 * so a transaction the MTA retries after a lost reply is not delivered
 * twice.  Thread-safe.  The file is appended to and compacted when it has
 * grown to twice the live entries. */
typedef struct DeliverDedupe DeliverDedupe;
DeliverDedupe *deliver_dedupe_open (const char *path, guint window, GError **error);
gboolean deliver_dedupe_seen (DeliverDedupe *d, const char *digest, const char *sender, const char *address);
void deliver_dedupe_record (DeliverDedupe *d, const char *digest, const char *sender, const char *address);
/* Records a delivery about to become visible as @path (a Maildir file);
 * deliver_dedupe_record() confirms it after the rename.  Unconfirmed, it
 * counts after a restart only if the file exists. */
void deliver_dedupe_intend (DeliverDedupe *d, const char *digest, const char *sender, const char *address,
                            const char *path);
/* Takes a record back (the delivery it announced failed after all). */
void deliver_dedupe_forget (DeliverDedupe *d, const char *digest, const char *sender, const char *address);
void deliver_dedupe_free (DeliverDedupe *d);

/* ---- privileges (privs.c) ---------------------------------------------- */

/* Creates spool_dir, mail_root, the duplicate journal's directory and the
 * journal with deliver_make_dir_for_user(): running as root, only what it
 * creates goes to the configured user. */
gboolean deliver_prepare_dirs (const LmtpdConfig *config, GError **error);
/* Creates the directory @path (the last level @mode) where missing, never through a symlink the
 * mail user could have planted, and (running as root, @user set) gives
 * @user the directories it created; an existing one keeps its owner. */
gboolean deliver_make_dir_for_user (const char *path, mode_t mode, const char *user, GError **error);
/* chown @path (never through a symlink) to @user, if running as root and
 * @user is set. */
gboolean deliver_chown_to_user (const char *path, const char *user, GError **error);

/* ---- sending (submit.c) ------------------------------------------------- */

/* Sends @prefix then @content (LF line ends) from @sender ("" = null) to
 * @rcpt through [sieve] submission (SMTP) or sendmail.  Blocks. */
gboolean deliver_submit (const LmtpdConfig *config, const char *sender, const char *rcpt,
                         const char *prefix, const DeliverContent *content, GError **error);

/* ---- the pipeline ------------------------------------------------------ */

/* What the recipients of one transaction share: every distinct file
 * written, so that identical copies become hard links (single instance)
 * even when recipients' verdicts make several different ones. */
typedef struct {
  guint n_recipients;
  GPtrArray *rcpts;     /* DeliverRecipient* of the transaction (borrowed), or NULL */
  GMutex lock;          /* stores and callouts of one transaction */
  GCond cond;
  GHashTable *callouts; /* group key -> shared callout result */
  GPtrArray *copies;    /* DeliverSharedCopy*, or NULL */
} DeliverShared;

/* One file written for the transaction: its prefix, flags and content. */
typedef struct {
  char *header;
  char *flags;
  DeliverContent content;
  char *path;
} DeliverSharedCopy;
void deliver_shared_init (DeliverShared *shared, GPtrArray *rcpts);
void deliver_shared_clear (DeliverShared *shared);

/* Delivers @msg to one recipient: duplicate check (with @ctx's journal),
 * callouts, verdict, headers, Sieve, folder, quota, store.  Blocking.
 * Always fills @status; @out_path gets the file written (may be NULL).
 * @ctx may not be NULL; @shared may be. */
void deliver_pipeline_run (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                           const DeliverRecipient *rcpt, DeliverShared *shared, DeliverStatus *status,
                           char **out_path);

/* The checks at RCPT: quota from the SIZE= hint (0 = unknown), then the
 * services that run at RCPT with metadata only (access control, RFC 4496
 * 4.4 and 4.8).  Blocking.  Returns FALSE and sets @status (the quota or
 * the service's reply) when the recipient is refused. */
gboolean deliver_rcpt_check (DeliverContext *ctx, const LmtpdConfig *config, const DeliverMessage *msg,
                             DeliverRecipient *rcpt, guint64 size_hint, DeliverStatus *status);
/* Quota check before data, from the SIZE= hint (0 = unknown).  Returns
 * FALSE and sets @status when the recipient is over quota. */
gboolean deliver_precheck (const LmtpdConfig *config, const DeliverRecipient *rcpt,
                           guint64 size_hint, DeliverStatus *status);

/* ---- the operator's tools (issue 19) -----------------------------------
 * The quarantine store, the decision traces and the verdict counts, as
 * lmtpctl (admin/ctl-*.c) and the admin web page (admin/web-*.c) use them.
 * All of them read and write deliver_context_records(); the context must
 * have been opened (deliver_context_open_journal). */

/* One message in the quarantine store (lmtpd_quarantine). */
typedef struct {
  char *id;
  gint64 created, expires;    /* unix seconds */
  char *recipient;            /* final address */
  char *original_recipient;   /* as the client gave it, or NULL */
  char *sender;               /* "" for the null sender */
  char *subject, *message_id; /* or NULL */
  guint64 size;
  char *service, *reason;     /* who quarantined it and why (reason may be NULL) */
  char *state;                /* "held", "releasing", "released", "deleted" */
  char *released_by, *released_to; /* or NULL */
  gint64 released_at;         /* or 0 */
} DeliverQuarantined;
void deliver_quarantined_free (DeliverQuarantined *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DeliverQuarantined, deliver_quarantined_free)

/* What to list; NULL / 0 members match everything. */
typedef struct {
  const char *recipient;      /* exact final address */
  const char *sender;
  const char *service;
  const char *text;           /* a substring of recipient, sender or subject */
  gint64 since;               /* created at or after (unix seconds) */
  gboolean all_states;        /* FALSE: only "held" */
  guint limit;                /* 0: 1000 */
} DeliverQuarantineFilter;

/* Newest first; DeliverQuarantined*.  NULL with @error when the records
 * fail. */
GPtrArray *deliver_quarantine_list (DeliverContext *ctx, const DeliverQuarantineFilter *filter, GError **error);
/* NULL with G_IO_ERROR_NOT_FOUND when there is no such id. */
DeliverQuarantined *deliver_quarantine_get (DeliverContext *ctx, const char *id, GError **error);
/* The stored copy, as it would have been delivered, read-only (O_NOFOLLOW,
 * a regular file); -1 with @error. */
int deliver_quarantine_open_copy (DeliverContext *ctx, const LmtpdConfig *config, const char *id, GError **error);
/* Delivers the copy through the pipeline to its recipient (or @to),
 * skipping the service that quarantined it (and only it), exactly once,
 * with a trace header and a log line naming @who.  FALSE with @error:
 * G_IO_ERROR_NOT_FOUND (no such id), G_IO_ERROR_EXISTS (released or
 * deleted already), else the delivery's failure (*@status says which
 * reply, may be NULL). */
gboolean deliver_quarantine_release (DeliverContext *ctx, const LmtpdConfig *config, const char *id,
                                     const char *to, const char *who, DeliverStatus *status, GError **error);
/* Removes the copy, keeps the row as "deleted". */
gboolean deliver_quarantine_delete (DeliverContext *ctx, const LmtpdConfig *config, const char *id,
                                    const char *who, GError **error);
/* Deletes what has expired (copies and rows; not a row left "releasing":
 * run deliver_quarantine_recover first); the number, or -1 with @error. */
gint64 deliver_quarantine_expire (DeliverContext *ctx, const LmtpdConfig *config, GError **error);
/* Completes the releases a crash interrupted (rows left "releasing" for
 * longer than delivery_timeout, and claimed before @claimed_before unix
 * seconds if not 0), at most 100; how many were completed.  Blocking (it
 * delivers): lmtpd runs it in a thread after its start for the claims
 * older than itself; expire runs it for all. */
guint deliver_quarantine_recover (DeliverContext *ctx, const LmtpdConfig *config, gint64 claimed_before);

/* One recipient's decision trace (lmtpd_trace). */
typedef struct {
  char *txn, *recipient;
  gint64 at;
  char *message_id, *queue_id, *sender; /* or NULL */
  char *reply;                /* "250 2.0.0 ..." */
  char *folder;               /* where it went, or NULL */
  char **steps;               /* one line per step, in order */
} DeliverTrace;
void deliver_trace_free (DeliverTrace *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DeliverTrace, deliver_trace_free)
/* The traces whose Message-ID, transaction id or queue id is @id (a
 * Message-ID with or without <>), oldest first; DeliverTrace*.  Empty when
 * none; NULL with @error when the records fail. */
GPtrArray *deliver_trace_find (DeliverContext *ctx, const char *id, GError **error);
/* The traces as lmtpctl trace prints them. */
char *deliver_trace_format (GPtrArray *traces);

/* Verdict counts per service and hour (lmtpd_verdicts), oldest first. */
typedef struct {
  gint64 hour;                /* unix seconds, a multiple of 3600 */
  char *service, *verdict;
  gboolean shadow;            /* a shadow service's would-be verdict */
  guint64 n;
} DeliverVerdictCount;
void deliver_verdict_count_free (DeliverVerdictCount *c);
/* Since @since (unix seconds; the hour that holds it on);
 * DeliverVerdictCount*, or NULL with @error.  What this process counted
 * is written first.  Verdict words: accept, modify, reject, tempfail,
 * discard, quarantine, redirect, and failed (the call failed). */
GPtrArray *deliver_verdict_counts (DeliverContext *ctx, gint64 since, GError **error);
/* Posts what was counted in memory to the records (lmtpd calls it every
 * few seconds and at the end; the context's last unref does too). */
void deliver_verdict_counts_flush (DeliverContext *ctx);

/* A callout call kept for replay (lmtpd_calls): the services [record]
 * services names, by default the shadow ones. */
typedef struct {
  char *id;
  gint64 at;                  /* unix seconds */
  char *service, *txn, *sender;
  char **recipients;          /* as the call named them */
  char **verdicts;            /* parallel: each one's verdict as the service answered */
  char *copy;                 /* the kept message's name (its digest), or NULL (rcpt stage) */
  guint64 size;
  char *envelope;             /* the rest of the request, as replay reads it */
} DeliverRecordedCall;
void deliver_recorded_call_free (DeliverRecordedCall *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DeliverRecordedCall, deliver_recorded_call_free)
/* The recorded calls of @service at or after @since, oldest first, at most
 * @limit (0: 1000); DeliverRecordedCall*, or NULL with @error. */
GPtrArray *deliver_recorded_calls (DeliverContext *ctx, const char *service, gint64 since, guint limit,
                                   GError **error);
/* Makes @call again, with its envelope and kept message, against @server
 * ("inet:HOST:PORT", "unix:PATH") or the service's configured servers
 * when NULL; nothing is delivered.  The verdicts, parallel to
 * call->recipients (free with g_strfreev), or NULL with @error:
 * G_IO_ERROR_NOT_FOUND (no such service, or the copy expired), else the
 * OCP client's (the server cannot be reached, ...). */
char **deliver_replay_call (DeliverContext *ctx, const LmtpdConfig *config, const DeliverRecordedCall *call,
                            const char *server, GError **error);

/* A shadow service's would-be verdict for one recipient (metrics). */
typedef void (*DeliverShadowObserver) (const char *service, const char *verdict);
/* Set before the first delivery. */
void deliver_context_set_shadow_observer (DeliverContext *ctx, DeliverShadowObserver observer);

G_END_DECLS
