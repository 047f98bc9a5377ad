/* managesieve.h - managesieved, a ManageSieve server (RFC 5804) for sites
 * without Dovecot's: what the files of managesieve/ share.
 *
 *   ms-main.c     options, configuration, listeners, one thread a connection
 *   ms-session.c  the command table and the states of a connection
 *   ms-parse.c    a command off the wire: atoms, quoted strings, literals
 *   ms-io.c       bytes in and out of a socket, plain or TLS, with deadlines
 *   ms-auth.c     SASL PLAIN against the user directory
 *   ms-store.c    a user's scripts on disk, in Pigeonhole's layout
 *
 * Depends on sieve-lite/ (CHECKSCRIPT, PUTSCRIPT), directory/ (who the
 * users are, their passwords), conf/ and util/ (TLS, privileges); nothing
 * depends on it.  A connection is served by its own thread with blocking
 * reads and writes that each have a deadline, so every wait is bounded
 * and a client that does not read holds nothing past idle_timeout.
 */
#pragma once

#include <gio/gio.h>

#include "directory.h"
#include "lmtpd-conf.h"
#include "lmtpd-util.h"

G_BEGIN_DECLS

#define MS_MAX_LINE 8192          /* a command line, literals aside */
#define MS_MAX_ARGS 4             /* no command takes more than two */
#define MS_MAX_COMMANDS 10000     /* a connection, then BYE */
#define MS_MAX_NAME 128           /* bytes of a script name */

/* ---- ms-io.c ---- */

typedef struct MsConn MsConn;

MsConn *ms_conn_new (int fd, guint timeout_s);
void ms_conn_free (MsConn *c);
/* One line without its CRLF (or LF) into @out.  FALSE on EOF, a read
 * error, the deadline, or a line longer than @max (*@too_long set). */
gboolean ms_conn_read_line (MsConn *c, gsize max, GString *out, gboolean *too_long);
/* Exactly @n bytes appended to @out (NULL: read and dropped). */
gboolean ms_conn_read_bytes (MsConn *c, gsize n, GString *out);
/* Queues bytes; flush writes them, FALSE if the client does not take
 * them within the deadline (then the connection is done). */
void ms_conn_write (MsConn *c, const char *data, gsize len);
void ms_conn_printf (MsConn *c, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
gboolean ms_conn_flush (MsConn *c);
/* Starts TLS: refused (FALSE) if the client already sent more input. */
gboolean ms_conn_starttls (MsConn *c, UtilTlsContext *ctx, GError **error);
gboolean ms_conn_is_tls (MsConn *c);
/* A wait ran into the deadline (idle client, or one that does not read). */
gboolean ms_conn_timed_out (MsConn *c);

/* ---- ms-parse.c ---- */

typedef enum {
  MS_PARSE_OK,
  MS_PARSE_SYNTAX,        /* answered NO, the connection goes on */
  MS_PARSE_TOO_BIG,       /* a literal over the limit, read and dropped: NO (QUOTA/MAXSIZE) */
  MS_PARSE_FATAL,         /* EOF, timeout, a line too long: BYE or just close */
} MsParseResult;

typedef struct {
  char *verb;             /* uppercased */
  GString *args[MS_MAX_ARGS];
  gboolean is_string[MS_MAX_ARGS]; /* quoted or literal, not an atom */
  guint n_args;
  char *why;              /* MS_PARSE_SYNTAX, FATAL: what was wrong */
} MsCommand;

/* One command; literals up to @max_literal bytes ({N+} and {N} alike,
 * neither answered with a continuation: RFC 5804 4). */
MsParseResult ms_read_command (MsConn *c, gsize max_literal, MsCommand *cmd);
/* One string alone on a line (an AUTHENTICATE continuation). */
MsParseResult ms_read_string (MsConn *c, gsize max_literal, GString *out, char **why);
void ms_command_clear (MsCommand *cmd);
/* @s as a quoted string, or a literal when it cannot be one. */
void ms_append_string (GString *out, const char *s, gsize len);

/* ---- ms-auth.c ---- */

typedef enum {
  MS_AUTH_OK,
  MS_AUTH_FAILED,         /* wrong, unknown, malformed: NO */
  MS_AUTH_TRYLATER,       /* the directory could not answer: NO (TRYLATER) */
} MsAuthResult;

/* A decoded SASL PLAIN response (authzid NUL authcid NUL password):
 * *@user gets the lowercased address on MS_AUTH_OK. */
MsAuthResult ms_auth_plain (Directory *dir, const char *b64, char **user, char **why);

/* ---- ms-store.c ---- */

typedef enum {
  MS_STORE_OK,
  MS_STORE_NONEXISTENT,
  MS_STORE_ALREADYEXISTS,
  MS_STORE_ACTIVE,
  MS_STORE_MAXSCRIPTS,
  MS_STORE_BADNAME,
  MS_STORE_TRYLATER,      /* the file system failed: @error says why */
} MsStoreStatus;

typedef struct MsStore MsStore;

/* A user's scripts: [sieve] dir and the active link ([sieve] script or
 * the directory's own path) under mail_root.  NULL if the paths leave the
 * mail root or the directory failed; G_IO_ERROR_PERMISSION_DENIED for a
 * user the directory has disabled, or an alias. */
MsStore *ms_store_new (const LmtpdConfig *config, Directory *dir, const char *address, GError **error);
void ms_store_free (MsStore *s);
gboolean ms_store_name_valid (const char *name, gsize len);
/* Names sorted, and which is active (NULL: none). */
MsStoreStatus ms_store_list (MsStore *s, GPtrArray **names, char **active, GError **error);
MsStoreStatus ms_store_get (MsStore *s, const char *name, gsize max, GString *out, GError **error);
/* Writes (tmp, fsync, rename, fsync dir); a new name counts against
 * @max_scripts. */
MsStoreStatus ms_store_put (MsStore *s, const char *name, const char *data, gsize len, guint max_scripts,
                            GError **error);
MsStoreStatus ms_store_count_allows (MsStore *s, const char *name, guint max_scripts, GError **error);
MsStoreStatus ms_store_delete (MsStore *s, const char *name, GError **error);
MsStoreStatus ms_store_rename (MsStore *s, const char *from, const char *to, GError **error);
/* "" deactivates. */
MsStoreStatus ms_store_set_active (MsStore *s, const char *name, GError **error);

/* ---- ms-session.c ---- */

typedef struct {
  LmtpdConfig *config;
  Directory *directory;
  UtilTlsContext *tls;    /* NULL: no STARTTLS */
  gboolean plaintext_ok;  /* this connection may log in without TLS */
  const char *peer;       /* for the log */
  guint auth_delay_ms;    /* the delay of a first failed login (then 2x, 3x, ... up to 5x) */
} MsSessionSetup;

/* Serves one connection until LOGOUT, BYE or the client goes; closes
 * nothing (the caller owns @fd). */
void ms_session_run (const MsSessionSetup *setup, int fd);

G_END_DECLS
