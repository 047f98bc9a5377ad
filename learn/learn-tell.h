/* learn-tell.h - the external filters' learning calls (learn-tell.c);
 * private to learn/, apart from learn-private.h so that only the files
 * that speak HTTP see libsoup. */
#pragma once

#include <gio/gio.h>
#include <libsoup/soup.h>

#include "lmtpd-conf.h"

G_BEGIN_DECLS

/* spamd TELL at @endpoint (inet:HOST:PORT or unix:PATH); *result "ok" or
 * "unchanged". */
gboolean learn_tell_spamd (const char *endpoint, const char *user, gboolean spam, GBytes *msg, char **result,
                           GError **error);
SoupSession *learn_rspamd_session (void);
/* rspamd's controller ([learn] rspamd, rspamd_password). */
gboolean learn_tell_rspamd (SoupSession *session, const LmtpdConfig *config, const char *user, gboolean spam,
                            GBytes *msg, char **result, GError **error);

G_END_DECLS
