/* srs.h - inside deliver/: the envelope sender of a redirect ([sieve]
 * redirect_sender), and the Sender Rewriting Scheme for it (srs.c).  Not
 * part of deliver.h's public interface.
 */
#pragma once

#include <glib.h>

#include "lmtpd-conf.h"

/* What postsrsd (libsrs2) writes, so that postsrsd can reverse a bounce:
 *   SRS0=HHHH=TT=orig-domain=orig-local@DOMAIN
 * TT the day (unix time / 86400, mod 1024) in two base32 characters
 * (A-Z 2-7), HHHH the first four base64 characters of HMAC-SHA1(secret,
 * TT orig-domain orig-local), each part lowercased, concatenated.  An
 * SRS0 address (of another forwarder) becomes
 *   SRS1=HHHH=its-domain==HHHH=TT=orig-domain=orig-local@DOMAIN
 * (HMAC over its-domain and what follows "SRS0"), an SRS1 one keeps its
 * first forwarder's part and gets a new hash.  A sender already at
 * @domain stays as it is, as with postsrsd.  NULL if @sender is not
 * local@domain. */
char *deliver_srs_forward (const char *secret, const char *domain, const char *sender, gint64 now);

/* The first line of @path (at most 4 KiB, without the line end), or NULL
 * with @error: empty or unreadable. */
char *deliver_srs_read_secret (const char *path, GError **error);

/* The envelope sender for redirecting a message from @sender that came
 * for @address (@original as given at RCPT, @domain its domain), by
 * [sieve] redirect_sender; the null sender stays null (RFC 5228 4.2).
 * NULL with @error when SRS cannot be applied (the caller keeps the
 * message). */
char *deliver_redirect_sender (const LmtpdConfig *config, const char *sender, const char *address,
                               const char *original, const char *domain, GError **error);
