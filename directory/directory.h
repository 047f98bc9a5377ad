/* directory.h - who the users are: the site's user directory behind one
 * interface, for the delivery pipeline (deliver/resolve.c), the lookup
 * command and, later, Postfix's socketmap and policy service.
 *
 * A backend answers one question: does this address (final, after
 * rewriting and without its subaddress detail) belong to a user, and with
 * which attributes.  The directory puts a cache in front of the backends
 * that ask a server (positive and negative entries with their own TTLs; an
 * expired entry still serves while the server is down), and turns a server
 * that is down or slow into DIRECTORY_TEMPFAIL: an outage answers 451,
 * never 550.
 *
 * Backends: "file" (the users map, the embedded default, re-read when the
 * file changes), and those that talk to a server (Dovecot's auth-userdb,
 * LDAP, PostgreSQL) as they are added.  Lookups may run in any thread.
 */
#pragma once

#include <gio/gio.h>

#include "lmtpd-conf.h"

G_BEGIN_DECLS

typedef enum {
  DIRECTORY_FOUND,
  DIRECTORY_UNKNOWN,   /* no such user: 550 */
  DIRECTORY_TEMPFAIL,  /* the directory could not answer: 451 */
} DirectoryResult;

/* What a directory knows of a user. */
typedef struct {
  char *address;          /* the address that was looked up */
  char *mailbox;          /* a mailbox spec ("maildir:/x", "mbox:/y"), or NULL: the template */
  guint64 quota_bytes;    /* 0 = none */
  guint64 quota_messages; /* 0 = none */
  char *sieve_script;     /* the user's script, or NULL: [sieve] script */
  gboolean disabled;      /* exists but takes no mail (550 5.2.1) */
  char *alias_of;         /* an alias: deliver to this address instead, or NULL */
  char **settings;        /* "Name: value" for the callout services (Recipient-Data), or NULL */
  char *host;             /* the node that holds the mailbox (cluster), or NULL */
} DirectoryUser;

DirectoryUser *directory_user_copy (const DirectoryUser *u);
void directory_user_free (DirectoryUser *u);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DirectoryUser, directory_user_free)

/* One kind of directory.  open() reads the backend's own settings from
 * @config; lookup() may block up to @timeout_ms and runs in any thread. */
typedef struct {
  const char *name;       /* the [users] backend value */
  gboolean remote;        /* asks a server: cached, and looked up off the main loop */
  gpointer (*open) (const LmtpdConfig *config, GError **error);
  DirectoryResult (*lookup) (gpointer backend, const char *address, guint timeout_ms, DirectoryUser **out,
                             GError **error);
  void (*close) (gpointer backend);
  /* A login's password (ManageSieve), or NULL: this backend cannot check
   * one.  FOUND: right; UNKNOWN: no such user, no password stored or a
   * wrong one; TEMPFAIL: the server could not answer (@error says why). */
  DirectoryResult (*authenticate) (gpointer backend, const char *address, const char *password,
                                   guint timeout_ms, GError **error);
} DirectoryBackend;

typedef struct Directory Directory;

/* The directory [users] backend names, with its cache.  Fails for an
 * unknown backend or one that cannot start (a bad map). */
Directory *directory_new (const LmtpdConfig *config, GError **error);
/* The same with a backend of the caller's (tests, a backend outside the
 * table); @config gives the cache settings and the backend's own. */
Directory *directory_new_with (const DirectoryBackend *backend, const LmtpdConfig *config, GError **error);
Directory *directory_ref (Directory *dir);
void directory_unref (Directory *dir);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Directory, directory_unref)

/* Looks @address up (lowercased local@domain).  FOUND: *@out gets a copy
 * of the user.  TEMPFAIL: @error says why.  *@cached (may be NULL): the
 * answer came from the cache. */
DirectoryResult directory_lookup (Directory *dir, const char *address, DirectoryUser **out, gboolean *cached,
                                  GError **error);
/* The answer if it can be given without waiting for a server: from a
 * fresh cache entry, or from a backend that asks none.  FALSE: a lookup
 * would have to wait (run directory_lookup() off the main loop). */
gboolean directory_lookup_cached (Directory *dir, const char *address, DirectoryResult *result,
                                  DirectoryUser **out);
/* The backend's name ("file", "ldap", ...). */
const char *directory_backend_name (const Directory *dir);
/* TRUE if a lookup may wait for a server (run it off the main loop). */
gboolean directory_is_remote (const Directory *dir);
/* This directory serves @config: for a server backend, the [users]
 * settings are the same (a reload that changes none of them keeps the
 * directory and its cache); the file backend follows each configuration. */
gboolean directory_matches (const Directory *dir, const LmtpdConfig *config);

/* TRUE if the backend can check a login's password. */
gboolean directory_can_authenticate (const Directory *dir);
/* Checks @password for @address (lowercased local@domain), never from the
 * cache.  FOUND: the password is right; UNKNOWN: wrong, no such user or
 * none stored; TEMPFAIL: the directory could not answer (not "wrong"). */
DirectoryResult directory_authenticate (Directory *dir, const char *address, const char *password,
                                        GError **error);
/* @password against a stored {SCHEME}hash as Dovecot's passdb writes it
 * (SHA512-CRYPT, SHA256-CRYPT, MD5-CRYPT, BLF-CRYPT, CRYPT through
 * crypt_r; PLAIN), or a bare $id$ crypt hash; compared in constant time.
 * An unknown scheme is FALSE with @error set. */
gboolean directory_password_verify (const char *stored, const char *password, GError **error);

/* Counters for the metrics page, per backend. */
typedef struct {
  guint64 lookups;
  guint64 cache_hits;
  guint64 failures;
  guint64 latency_us_total;
} DirectoryStats;
void directory_get_stats (const Directory *dir, DirectoryStats *out);

/* The backends (dir-file.c, ...). */
extern const DirectoryBackend directory_backend_file;
extern const DirectoryBackend directory_backend_ldap;
extern const DirectoryBackend directory_backend_pgsql;
extern const DirectoryBackend directory_backend_dovecot;

G_END_DECLS
