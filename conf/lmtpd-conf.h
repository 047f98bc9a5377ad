/* lmtpd-conf.h - configuration of opes-lmtpd, loaded from a GKeyFile.
 *
 * A configuration is immutable once loaded and reference counted: the
 * daemon holds the current one, each transaction takes a reference when it
 * starts, and SIGHUP swaps in a new one without disturbing transactions in
 * flight.  Loading validates everything and reports every problem with
 * file:line and the key at fault.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define LMTPD_CONF_ERROR (lmtpd_conf_error_quark ())
GQuark lmtpd_conf_error_quark (void);

typedef enum {
  LMTPD_CONF_ERROR_INVALID, /* one or more problems; message lists them */
} LmtpdConfError;

typedef enum {
  LMTPD_LISTEN_INET,
  LMTPD_LISTEN_UNIX,
} LmtpdListenKind;

#define LMTPD_CLUSTER_NODES_PGSQL "pgsql"   /* [cluster] nodes: the nodes table */

typedef struct {
  LmtpdListenKind kind;
  char *host;      /* INET: address or name to bind */
  guint16 port;    /* INET */
  char *path;      /* UNIX: socket path */
} LmtpdListen;

/* [users] backend: where users come from (directory/). */
typedef enum {
  LMTPD_USERS_FILE,       /* the users map (and catch-all domains) */
  LMTPD_USERS_LDAP,       /* an LDAP server (dir-ldap.c) */
  LMTPD_USERS_PGSQL,      /* a PostgreSQL query (directory/dir-pgsql.c) */
  LMTPD_USERS_DOVECOT,    /* Dovecot's auth-userdb socket (dir-dovecot.c) */
} LmtpdUsersBackend;

/* [state] backend: where the duplicate journal and the vacation log live
 * (state/). */
typedef enum {
  LMTPD_STATE_FILE,       /* local files, one node */
  LMTPD_STATE_PGSQL,      /* PostgreSQL, shared by the nodes */
} LmtpdStateBackend;

/* [users] ldap_scope */
typedef enum {
  LMTPD_LDAP_SCOPE_SUB,
  LMTPD_LDAP_SCOPE_ONE,
  LMTPD_LDAP_SCOPE_BASE,
} LmtpdLdapScope;

/* [learn] backend: who is taught */
typedef enum {
  LMTPD_LEARN_SPAMD,
  LMTPD_LEARN_RSPAMD,
  LMTPD_LEARN_BUILTIN,
} LmtpdLearnBackend;

/* One entry of the users map. */
typedef struct {
  char *address;          /* lowercased local@domain */
  char *mailbox;          /* mailbox spec, NULL: use the template */
  guint64 quota_bytes;    /* 0 = none */
  guint64 quota_messages; /* 0 = none */
  char *sieve;            /* sieve=: the user's script, or NULL */
  char *host;             /* host=: the cluster node that holds the mailbox, or NULL */
  char *alias_of;         /* alias=: mail goes to this address instead, or NULL */
  gboolean disabled;      /* disabled=yes: the user takes no mail (550 5.2.1) */
  char **settings;        /* setting=Name:value, for the callout services, or NULL */
  char *password;         /* password={SCHEME}hash (ManageSieve logins), or NULL */
} LmtpdUser;

typedef enum {
  LMTPD_REWRITE_EXACT,    /* joe@example.org */
  LMTPD_REWRITE_DOMAIN,   /* @example.org */
  LMTPD_REWRITE_REGEX,    /* /pattern/ */
} LmtpdRewriteKind;

/* One line of the rewrite map (RFC 4496 4.7 address rewriting). */
typedef struct {
  LmtpdRewriteKind kind;
  char *from;             /* lowercased address or @domain */
  GRegex *regex;          /* REGEX, case-insensitive */
  char *to;               /* address, @domain, or replacement with \1 */
} LmtpdRewrite;

typedef enum {
  LMTPD_FAIL_TEMPFAIL,    /* 451 4.3.0: the MTA keeps the message and retries */
  LMTPD_FAIL_ACCEPT,      /* deliver unadapted; the trace says the service was skipped */
  LMTPD_FAIL_REJECT,      /* 550 5.7.1 */
} LmtpdFailPolicy;

/* An OPES callout service: [service NAME] (plain values; ocp/ is not seen here). */
typedef struct {
  char *name;
  char *uri;              /* service URI (SGC, trace, bypass) */
  char **servers;         /* endpoints, primary first */
  gboolean rcpt_stage;    /* at RCPT, metadata only (else after DATA) */
  char *parts;            /* "envelope,message-header,message-body" */
  LmtpdFailPolicy on_failure;
  guint connect_timeout_ms;
  guint response_timeout_ms;
  guint timeout_ms;
  guint max_connections;
  gboolean bypassable;
  gboolean tls;
  char *tls_ca_file;
  char *tls_cert_file;
  char *tls_key_file;
  char *tls_server_name;
  gboolean shadow;        /* mode = shadow: called, its verdict recorded, never applied */
  gboolean quarantine_store;  /* quarantine = store: its quarantine verdict goes to the
                                 quarantine store ([quarantine]), not a folder of the mailbox */
} LmtpdService;

/* [rule NAME]: which services run for which recipients, first match wins. */
typedef struct {
  char *name;
  char **match;           /* user@domain, @domain, *@domain globs, /regex/, or * */
  GPtrArray *regexes;     /* compiled /regex/ entries */
  GPtrArray *services;    /* LmtpdService*, not owned, in order */
} LmtpdRule;

typedef enum {
  LMTPD_BYPASS_NONE = 0,
  LMTPD_BYPASS_HEADER = 1,     /* OPES-Bypass: header in the message */
  LMTPD_BYPASS_PARAMETER = 2,  /* RCPT TO:<...> OPES-BYPASS=... */
} LmtpdBypass;

/* How a Maildir delivery is made durable when fsync is on. */
typedef enum {
  LMTPD_SYNC_TWO_STEP,    /* fsync the file, rename, fsync the directory: any file system */
  LMTPD_SYNC_ONE_COMMIT,  /* one journal commit where the file system carries it, else two-step */
} LmtpdSyncMode;

typedef enum {
  LMTPD_DETAIL_NO,        /* user+detail goes to INBOX */
  LMTPD_DETAIL_YES,       /* into folder "detail", created if needed */
  LMTPD_DETAIL_IF_EXISTS, /* into folder "detail" only if it exists */
} LmtpdDetailFolder;

typedef struct {
  gatomicrefcount ref_count; /* private */

  /* [server] */
  GPtrArray *listen;          /* of LmtpdListen* */
  guint socket_mode;          /* for unix sockets */
  char *socket_owner;         /* user[:group] or NULL */
  char *hostname;
  char *spool_dir;
  guint max_sessions;
  guint idle_timeout;         /* seconds */
  guint shutdown_timeout;     /* seconds */
  char *user;                 /* switch to this user after binding, or NULL */
  guint delivery_threads;     /* worker threads for deliveries and callouts */
  guint64 max_memory;         /* resident bytes above which new sessions get 421, 0 = no limit */
  GPtrArray *xforward_hosts;  /* GInetAddressMask* allowed to send XFORWARD, or NULL */
  gboolean xforward_local;    /* UNIX socket peers may send XFORWARD */
  gboolean log_json;          /* log_format = json: one JSON object per line */
  char *tls_cert_file;        /* STARTTLS certificate chain (PEM), or NULL */
  char *tls_key_file;         /* its key */
  char *tls_client_ca_file;   /* verify client certificates against these, or NULL */
  char *metrics_listen;       /* "inet:HOST:PORT" / "unix:PATH" for GET /metrics, or NULL */
  char *socketmap_listen;     /* the same for Postfix's socketmap lookups, or NULL */
  char *policy_listen;        /* the same for the Postfix policy service, or NULL */

  /* [limits] */
  gsize max_line_length;      /* command line, including CRLF */
  gsize max_data_line_length; /* one line of message data */
  guint64 max_message_size;   /* bytes, 0 = unlimited */
  guint max_recipients;       /* per transaction */
  guint max_errors;           /* per session */
  guint64 min_data_rate;      /* bytes/s a client must keep up in DATA/BDAT, 0 = no minimum */

  /* [delivery] */
  char *mail_root;
  char *mailbox_template;     /* [maildir:|mbox:]PATH, relative to mail_root; %u %d %n %% */
  GHashTable *domain_mailbox; /* [mailboxes] domain -> template */
  gboolean fsync;
  LmtpdSyncMode sync_mode;    /* how a Maildir delivery is made durable */
  gboolean create_folders;    /* create a missing folder a delivery names */
  char *recipient_delimiter;  /* characters that start a detail, "" = none */
  LmtpdDetailFolder detail_folder;
  gboolean quota_full_tempfail; /* 452 4.2.2 instead of 552 5.2.2 */
  gboolean single_instance;   /* hard-link identical copies of one transaction */
  guint duplicate_window;     /* seconds, 0 = no duplicate suppression */
  char *duplicate_db;         /* journal path */
  gboolean mbox_mboxo;        /* quote only "From " (default mboxrd) */
  guint mbox_lock_timeout;    /* seconds */
  guint delivery_timeout;     /* seconds one recipient's delivery may take (then 451 4.4.7) */

  /* [users] */
  LmtpdUsersBackend users_backend_kind; /* where users come from */
  guint users_cache_ttl;      /* seconds a found user is remembered (server backends) */
  guint users_negative_ttl;   /* seconds an unknown address is remembered (server backends) */
  guint users_lookup_timeout_ms; /* a lookup slower than this tempfails (451) */
  char *users_map;            /* path or NULL */
  char *users_pgsql_conninfo; /* libpq connection string or URI */
  char *users_pgsql_password_file; /* path or NULL */
  char *users_pgsql_password; /* read from it at load, or NULL */
  char *users_pgsql_query;    /* one query: $1 address, $2 local part, $3 domain */
  GHashTable *users;          /* address -> LmtpdUser*, from users_map */
  char *users_dovecot_socket; /* Dovecot's auth-userdb socket path, or NULL */
  char *users_dovecot_service; /* service= of the USER lookup ("lmtp") */
  gboolean users_dovecot_local; /* look up the local part, not the whole address */
  char *users_dovecot_sieve_field; /* userdb field with the Sieve script ("sieve") */
  char *users_dovecot_settings_prefix; /* userdb fields that are per-recipient settings */
  char **domains;             /* any local part of these; "*" = any domain */
  char *postmaster;           /* where bare <postmaster> goes, or NULL */
  char *rewrite_map;          /* path or NULL */
  GPtrArray *rewrites;        /* of LmtpdRewrite*, in lookup order */
  /* [users] ldap_*: the ldap backend (directory/dir-ldap.c) */
  char *ldap_uris;            /* "ldap://a ldaps://b", tried in order */
  char *ldap_base;
  LmtpdLdapScope ldap_scope;
  char *ldap_bind_dn;         /* NULL: anonymous */
  char *ldap_bind_password_file;
  gboolean ldap_starttls;
  char *ldap_tls_ca_file;
  char *ldap_filter;          /* with %u %n %d, each escaped (RFC 4515) */
  char *ldap_mailbox_attribute; /* the attribute names; NULL: not read */
  char *ldap_quota_attribute;
  char *ldap_quota_messages_attribute;
  char *ldap_sieve_attribute;
  char *ldap_enabled_attribute;
  char *ldap_enabled_value;
  char *ldap_alias_attribute;
  char *ldap_settings_attribute;
  char *ldap_host_attribute;

  /* [opes], [service NAME], [rule NAME] */
  char *opes_system;          /* URI naming this OPES system in traces */
  guint opes_bypass;          /* LmtpdBypass bits honoured */
  GPtrArray *services;        /* LmtpdService* */
  GPtrArray *rules;           /* LmtpdRule* */

  /* [sieve] */
  char *sieve_script;         /* per-user script template (%u %n %d %h %%), relative to
                                 mail_root; "" = none */
  char **sieve_before;        /* global scripts run first, in order */
  char **sieve_after;         /* global scripts run last */
  guint64 sieve_max_script_size;
  guint sieve_max_actions;
  guint sieve_max_redirects;
  guint sieve_max_run_time_ms;
  char *submission;           /* "inet:HOST:PORT" SMTP for redirect and vacation, or NULL */
  char *sendmail;             /* or a sendmail-compatible command line, or NULL */
  guint vacation_max_days;    /* cap on :days */
  guint vacation_min_period;  /* floor on :days/:seconds, seconds (RFC 6131 2) */
  char **vacation_never_reply; /* sender globs never answered (besides RFC 5230 4.6's) */
  char *redirect_sender;      /* envelope sender of redirects: sender, recipient, orig_recipient,
                                 user_email, postmaster, <>, <ADDRESS> or srs */
  char *srs_domain;           /* redirect_sender = srs: the domain of the SRS addresses */
  char *srs_secret_file;      /* ... and the file whose first line is the HMAC secret */
  char *sieve_dir;            /* personal scripts (include :personal), a template as sieve_script */
  char *sieve_global_dir;     /* site scripts (include :global), or NULL */
  char **sieve_special_use;   /* "Junk=Junk": special use (without '\\') = folder */

  /* [managesieve] (managesieve/: managesieved) */
  GPtrArray *managesieve_listen; /* of LmtpdListen* */
  char *managesieve_tls_cert_file; /* STARTTLS certificate chain, or NULL: [server]'s */
  char *managesieve_tls_key_file;
  gboolean managesieve_plaintext; /* PLAIN without TLS on any listener, not only loopback/UNIX */
  guint managesieve_max_connections;
  guint managesieve_idle_timeout; /* seconds */
  guint managesieve_max_scripts; /* per user */
  guint managesieve_max_auth_failures; /* per connection, then BYE */
  char *users_pgsql_password_query; /* [users] pgsql_password_query: the hash for a login, or NULL */
  char *users_dovecot_auth_socket; /* [users] dovecot_auth_socket: Dovecot's auth-client, for logins */

  /* [cluster]: per-recipient LMTP proxying (lmtpd/lmtp-nodes.c, lmtp-proxy.c) */
  char *cluster_node_name;    /* this node's name (in cluster_nodes or the nodes table), or NULL */
  char *cluster_nodes;        /* "NAME=inet:HOST:PORT;NAME=unix:PATH;...", "pgsql" (the nodes
                                 table of [state]), or NULL: no proxying */
  guint cluster_proxy_timeout; /* seconds for a proxied message's data and replies */
  guint cluster_proxy_command_timeout; /* seconds for a backend's connect and each RCPT */
  /* [state], [cluster] (state/: the state the nodes of a cluster share) */
  int state_backend;          /* LMTPD_STATE_FILE or LMTPD_STATE_PGSQL */
  char *state_pgsql_conninfo; /* libpq connection string; unset: [users] pgsql_conninfo */
  guint state_pgsql_timeout_ms;
  gboolean state_on_error_local; /* PostgreSQL failing: the local files (else 451 4.3.0) */
  char *cluster_lmtp_address; /* HOST:PORT where the other nodes reach this one */
  guint cluster_node_timeout; /* seconds without a heartbeat: down */
  char *state_records_db;     /* [state] records_db: the SQLite file of the records (backend = file) */

  /* the operator's tools (issue 19; conf/ops-settings.c): [trace], [quarantine],
   * [record], [learn], [admin] */
  gboolean trace_enabled;     /* [trace] enabled: a decision trace for every recipient */
  guint trace_keep;           /* [trace] keep: seconds a trace is kept */
  char *admin_listen;         /* [admin] listen: inet:HOST:PORT / unix:PATH, or NULL: no admin listener */
  char *admin_token_file;     /* [admin] token_file: the admin token (not world-readable) */
  char *admin_tls_cert_file;  /* [admin] tls_cert_file / tls_key_file: HTTPS, or NULL: plain HTTP */
  char *admin_tls_key_file;
  char *admin_tls_client_ca_file; /* [admin] tls_client_ca_file: its client certificates are admins */
  char *admin_link_secret_file;   /* [admin] link_secret_file: HMAC key of the users' signed links */
  guint admin_link_lifetime;  /* [admin] link_lifetime: seconds a signed link is valid */
  guint admin_max_connections; /* [admin] max_connections */
  gboolean learn_enabled;     /* [learn] enabled: watch the Maildirs for Junk moves */
  char **learn_junk_folders;  /* [learn] junk_folders (Maildir++ names, subfolders included) */
  char **learn_trash_folders; /* [learn] trash_folders: out of Junk into these teaches nothing */
  int learn_backend;          /* [learn] backend: LmtpdLearnBackend */
  char *learn_spamd;          /* [learn] spamd: inet:HOST:PORT or unix:PATH */
  char *learn_rspamd;         /* [learn] rspamd: the controller's URL */
  char *learn_rspamd_password;
  char *learn_bayes_db;       /* [learn] bayes_db: the builtin scorer's SQLite file */
  guint learn_rate;           /* [learn] rate: learns per user per hour */
  guint64 learn_max_size;     /* [learn] max_size: bigger messages are skipped */
  char **record_services;     /* [record] services whose calls are recorded; NULL: the shadow ones */
  char *record_dir;           /* [record] dir: the kept copies of recorded messages */
  guint record_keep;          /* [record] keep: seconds a recorded call is kept */
  guint64 record_max_size;    /* [record] max_size: bytes of kept copies at most */
  char *quarantine_dir;       /* [quarantine] dir: the stored copies (deliver/quarantine.c) */
  guint quarantine_keep;      /* [quarantine] keep: seconds a copy is kept */
  guint64 quarantine_max_size; /* [quarantine] max_size: a bigger copy is not stored (451) */

  char *source;               /* the file this came from */
} LmtpdConfig;

/* Loads and validates @path.  Returns a new reference, or NULL with @error
 * set to LMTPD_CONF_ERROR_INVALID whose message has one line per problem,
 * each "file:line: [group] key: what is wrong". */
LmtpdConfig *lmtpd_config_load (const char *path, GError **error);
/* For messages that name a line of a GKeyFile's @text: the first line it
 * would refuse, and where [@group] first starts; 0 if none. */
guint lmtpd_keyfile_bad_line (const char *text);
guint lmtpd_keyfile_group_line (const char *text, const char *group);

/* A setting that a reload cannot apply (read once at start) and whose
 * value differs between the running configuration and a reloaded one. */
typedef struct {
  const char *group;      /* "server" */
  const char *key;        /* "listen" */
  char *was;              /* the running value as text, NULL if unset */
  char *now;              /* the reloaded value as text, NULL if unset */
} LmtpdConfigChange;

/* The settings the table marks as needing a restart whose values differ
 * between @old and @now, in table order: a GPtrArray of LmtpdConfigChange*
 * that frees them (empty if none). */
GPtrArray *lmtpd_config_reload_differences (const LmtpdConfig *old, const LmtpdConfig *now);

/* The built-in defaults, as if loaded from an empty file. */
LmtpdConfig *lmtpd_config_new_default (void);

LmtpdConfig *lmtpd_config_ref (LmtpdConfig *config);
void lmtpd_config_unref (LmtpdConfig *config);

/* Looks up a lowercased local@domain address.  Returns TRUE if it is a
 * known user (users map or a catch-all domain); *out_mailbox is set to the
 * users map's explicit mailbox or NULL.  @out_mailbox may be NULL. */
gboolean lmtpd_config_lookup_user (const LmtpdConfig *config, const char *address,
                                   const char **out_mailbox);
/* TRUE if @peer ("local" for a UNIX socket, else an IP address) may send
 * XFORWARD ([server] xforward_hosts). */
gboolean lmtpd_config_xforward_allowed (const LmtpdConfig *config, const char *peer);

/* The users map @path read again, as a table address -> LmtpdUser* like
 * config->users, with @config's rules (its templates tell an mbox user);
 * NULL with every problem of the file in @error. */
GHashTable *lmtpd_users_map_load (const LmtpdConfig *config, const char *path, GError **error);

/* The users map entry for @address, or NULL (catch-all domains have none). */
const LmtpdUser *lmtpd_config_get_user (const LmtpdConfig *config, const char *address);

/* Applies the rewrite map to a lowercased address: exact entries first,
 * then @domain entries, then regular expressions in file order; one pass.
 * Returns a new string, or NULL if no entry matches. */
char *lmtpd_config_rewrite (const LmtpdConfig *config, const char *address);

/* The services that run for a (final, lowercased) recipient: the first
 * matching rule's, or NULL. */
const LmtpdRule *lmtpd_config_match_rule (const LmtpdConfig *config, const char *address);

/* The mailbox template for @domain: [mailboxes] entry or the default. */
const char *lmtpd_config_mailbox_template (const LmtpdConfig *config, const char *domain);

/* Parses "inet:HOST:PORT" (HOST may be [v6]) or "unix:PATH".  Port 0
 * means any free port.  Returns NULL with @error set if invalid. */
LmtpdListen *lmtpd_listen_parse (const char *spec, GError **error);
void lmtpd_listen_free (LmtpdListen *listen);

/* "inet:127.0.0.1:2424" / "unix:/path" for logs.  Free with g_free. */
char *lmtpd_listen_to_string (const LmtpdListen *listen);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LmtpdConfig, lmtpd_config_unref)

G_END_DECLS
