/* services.h - the callout services of ocp-services, one module per RFC
 * 4496 use case, hosted on ocp/'s server side.  Each configured service
 * listens on its own endpoint, so it negotiates exactly the parts it needs
 * (a metadata-only service never receives a body).
 */
#pragma once

#include <gio/gio.h>
#include <gmime/gmime.h>

#include "lmtpd-util.h"
#include "ocp.h"

G_BEGIN_DECLS

typedef struct Service Service;

/* What a module sees of one transaction: plain values, safe in a thread. */
typedef struct {
  GHashTable *env;        /* envelope: Stage, Mail-From, Rcpt-To, Client-Address ... */
  char **rcpts;           /* Rcpt-To split */
  GBytes *header;         /* original header part, or NULL */
  GBytes *body;           /* original body part when it is small (held in memory), or NULL */
  int body_fd;            /* otherwise the body part in a file, or -1 */
  guint64 body_len;
  /* string -> string, for the whole call: what a module found for one
   * recipient that holds for the others too (spam's score of the message)
   * is worked out once.  Only the call's own thread uses it. */
  GHashTable *call_memo;
} ServiceInput;

/* What it answers: the verdict, and adapted parts (NULL / -1: unchanged). */
typedef struct {
  OcpVerdict verdict;
  GBytes *header;
  int body_fd;
} ServiceOutput;

typedef struct {
  const char *name;        /* module = NAME in the configuration */
  guint parts;             /* OcpParts it needs */
  /* Reads its keys from [service NAME]; FALSE with @error if wrong. */
  gboolean (*configure) (Service *svc, GKeyFile *kf, const char *group, GError **error);
  /* Decides, in a worker thread.  Must fill out->verdict. */
  void (*check) (Service *svc, const ServiceInput *in, ServiceOutput *out);
  void (*free) (gpointer state);
  /* It has settings per recipient (policies, maps, limits): with several
   * recipients, check runs once for each, alone in in->rcpts, and each
   * gets its own verdict (profile 2; main.c). */
  gboolean per_recipient;
} ServiceModule;

struct Service {
  const ServiceModule *module;
  char *name;
  char *uri;
  gpointer state;          /* the module's */
};

/* Helpers for modules (services-util.c). */
char *service_get_string (GKeyFile *kf, const char *group, const char *key, const char *def);
char **service_get_list (GKeyFile *kf, const char *group, const char *key);
/* A decimal number setting (@def if unset; what strtoull makes of it). */
guint64 service_get_number (GKeyFile *kf, const char *group, const char *key, const char *def);
/* The lines of the file @path, or NULL with @error. */
char **service_read_lines (const char *path, GError **error);
/* One line of a map or policy file: the item it makes, or NULL for a line
 * to skip (a comment, an empty line) or with @error to stop reading. */
typedef gpointer (*ServiceLineParser) (char *line, const char *path, guint lineno, GError **error);
/* Each line of the file @path through @parse, its items appended to @items. */
gboolean service_load_lines (const char *path, ServiceLineParser parse, GPtrArray *items, GError **error);
/* Whether the input has a body part (in memory or in a file). */
gboolean service_input_has_body (const ServiceInput *in);
/* The value of header @name in @header (decoded by GMime), or NULL. */
char *service_header_value (GBytes *header, const char *name);
/* The values of the headers @names (NULL-terminated) in @header, parsed
 * once: values[i] (newly allocated, or NULL) for names[i]. */
void service_header_values (GBytes *header, const char *const *names, char **values);

/* @obj as GMime writes it with @newline line ends (a new array); if
 * @out_complete, whether all of it could be written. */
GByteArray *service_object_bytes (GMimeObject *obj, GMimeNewLineFormat newline, gboolean *out_complete);
/* How service_input_message reads the input. */
typedef enum {
  SERVICE_PARSE_PERSIST = 1 << 0,   /* large contents stay in the body file */
  SERVICE_PARSE_BODY_ONLY = 1 << 1, /* an empty line first: all of it is body */
} ServiceParseFlags;
/* The header part and the body part (either may be missing) as one
 * message parsed by GMime, or NULL. */
GMimeMessage *service_input_message (const ServiceInput *in, ServiceParseFlags flags);
/* An unlinked temporary file (@tmpl as for g_file_open_tmp) holding @data,
 * at offset 0; -1 if it cannot be written. */
int service_body_file (const char *tmpl, const void *data, gsize len);
/* @msg written by GMime (LF line ends): its header block becomes
 * out->header and the rest out->body_fd.  FALSE if it could not be. */
gboolean service_emit_message (GMimeMessage *msg, const char *tmpl, ServiceOutput *out);

/* A connection to "unix:PATH", "inet:HOST:PORT" or "HOST:PORT". */
GSocketConnection *service_connect (const char *endpoint, guint16 default_port, guint timeout_s, GError **error);

/* "reject 550 5.7.1 text" / "tempfail ..." / "discard" / "quarantine F" /
 * "tag [X]" / "header Name: value" / "accept" into @v. */
gboolean service_apply_action (OcpVerdict *v, const char *action, GError **error);
/* FALSE with @error if service_apply_action would not take @action. */
gboolean service_action_valid (const char *action, GError **error);
/* "ACTION;ACTION..." split and each one checked, except @keyword (a
 * module's own word such as "junk", or NULL); NULL with @error. */
char **service_parse_actions (const char *text, const char *keyword, GError **error);
void service_add_header (OcpVerdict *v, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
/* Hands a file or directory a module creates to [server] user when running
 * as root (the services switch to that user once configured). */
void service_own_path (const char *path);
extern char *service_user;

/* Counters for [server] metrics_listen (services-metrics.c). */
/* @check_us < 0: one more recipient of a call already counted. */
void service_metrics_decision (const char *service, const char *verdict, guint n_rcpts, gint64 check_us);
void service_metrics_reload (gboolean ok);
/* a libsoup server (util_metrics_http_new), or NULL with @error */
GObject *service_metrics_listen (const char *spec, GError **error);

extern const ServiceModule service_logging;
extern const ServiceModule service_access;
extern const ServiceModule service_blocking;
extern const ServiceModule service_reroute;
extern const ServiceModule service_spam;
extern const ServiceModule service_security;
extern const ServiceModule service_links;
extern const ServiceModule service_normalize;
extern const ServiceModule service_smime;

G_END_DECLS
