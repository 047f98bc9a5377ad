/* web-private.h - inside the admin web listener (admin/web-*.c).
 *
 *   web-server.c      the libsoup server: listening, limits, routing, the
 *                     worker threads pages are rendered in
 *   web-auth.c        who asks: token, session cookie, client certificate;
 *                     the CSRF token of a session
 *   web-html.c        the page around every page, forms, escaping
 *   web-quarantine.c  /quarantine, /quarantine/ID and its actions
 *   web-trace.c       /trace
 *   web-services.c    /services: verdict counts drawn in SVG, shadow mode
 *   web-link.c        /u/release: the users' signed links
 *   link.c            signing and checking those links (lmtpctl too)
 */
#pragma once

#include <libsoup/soup.h>

#include "admin.h"
#include "deliver.h"

G_BEGIN_DECLS

#define WEB_BODY_MAX (64 * 1024)      /* a request's body (forms are small) */
#define WEB_FIELD_MAX 1024            /* one form or query field */
#define WEB_SESSION_LIFETIME (12 * 3600)
#define WEB_IO_TIMEOUT 30             /* seconds a client may stop sending */

typedef struct _AdminWeb AdminWeb;

/* Who a request comes from, as web-auth.c found out. */
typedef struct {
  gboolean admin;             /* an admin: token, session or certificate */
  gboolean refused;           /* credentials given, but wrong (403, not 401) */
  char *who;                  /* "web:admin" or the certificate's subject */
  char *csrf;                 /* the token forms of this session carry */
} WebPrincipal;
void web_principal_clear (WebPrincipal *p);

/* What a page answers; filled in a worker thread, sent on the main loop. */
typedef struct {
  guint status;
  char *content_type;         /* NULL: text/html */
  GString *body;
  char *location;             /* a redirect, or NULL */
  char *set_cookie;           /* or NULL */
} WebReply;
void web_reply_free (WebReply *r);

/* One request as a page sees it: copies, safe to use in a worker. */
typedef struct {
  AdminWeb *web;
  char *method, *path;
  GHashTable *query;          /* field -> value, or NULL */
  GHashTable *form;           /* a POST's fields, or NULL */
  WebPrincipal who;
} WebRequest;

/* A page: renders @req into @reply (status 200 and text/html preset).
 * Runs in a worker thread: it may block on the records. */
typedef void (*WebPageFunc) (const WebRequest *req, WebReply *reply);

/* web-server.c: what pages may ask of the server */
DeliverContext *web_context (AdminWeb *web);
const LmtpdConfig *web_config (AdminWeb *web);
const char *web_request_field (const WebRequest *req, const char *name); /* form, then query; or NULL */

/* web-auth.c */
typedef struct _WebAuth WebAuth;
WebAuth *web_auth_new (const LmtpdConfig *config, GError **error);
void web_auth_free (WebAuth *auth);
GTlsDatabase *web_auth_client_ca (WebAuth *auth); /* or NULL */
/* @peer was signed by [admin] tls_client_ca_file */
gboolean web_auth_certificate_ok (WebAuth *auth, GTlsCertificate *peer);
/* Who sent @msg: fills @p; FALSE if nobody authenticated. */
gboolean web_auth_check (WebAuth *auth, SoupServer *server, SoupServerMessage *msg, WebPrincipal *p);
/* GET /login?token=: a session cookie for the right token, 403 else. */
void web_auth_login (WebAuth *auth, SoupServerMessage *msg, GHashTable *query);
/* TRUE if @csrf is the one of @p's session */
gboolean web_auth_csrf_ok (const WebPrincipal *p, const char *csrf);

/* The listener's state (web-server.c makes it, web-request.c answers for it). */
struct _AdminWeb {
  const LmtpdConfig *config;  /* a reference, held */
  DeliverContext *ctx;        /* a reference, held */
  AdminMetricsRender metrics;
  WebAuth *auth;
  GBytes *link_secret;        /* or NULL: no signed links */
};

/* web-html.c */
void web_page_begin (GString *out, const char *title, const WebRequest *req);
void web_page_end (GString *out);
void web_page_error (WebReply *reply, const WebRequest *req, guint status, const char *text);
void web_append_escaped (GString *out, const char *format, ...) G_GNUC_PRINTF (2, 3);
/* A two-column table #@id (NULL: no id): @n/2 pairs of name and value (a NULL value
 * is empty), all escaped. */
void web_append_fields (GString *out, const char *id, const char *const *fields, guint n);
/* <input type=hidden name=csrf ...> for a form of @req's session */
void web_append_csrf (GString *out, const WebRequest *req);
char *web_format_time (gint64 t);
/* The reply of a GError from deliver/: 404, 409, 503 or 500 */
guint web_status_of_error (const GError *error);

/* the pages */
void web_quarantine_list (const WebRequest *req, WebReply *reply);
void web_quarantine_page (const WebRequest *req, WebReply *reply);
void web_trace_page (const WebRequest *req, WebReply *reply);
void web_services_page (const WebRequest *req, WebReply *reply);
void web_link_page (const WebRequest *req, WebReply *reply);

/* link.c: signed links (also lmtpctl quarantine link) */
gboolean admin_secret_equal (const char *a, const char *b);
GBytes *admin_secret_file_read (const char *path, const char *what, GError **error);
char *admin_link_signature (GBytes *secret, const char *id, gint64 expires);
/* NULL if @sig is @id's and @expires's and not past; else why not */
const char *admin_link_refusal (GBytes *secret, const char *id, const char *expires, const char *sig);
GBytes *web_link_secret (AdminWeb *web);

G_END_DECLS
