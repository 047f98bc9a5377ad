/* sieve-caps.c - the capabilities a script may require (RFC 5228 3.2),
 * for require, ihave (RFC 5463) and ManageSieve's SIEVE capability: one
 * list, so what is advertised is what runs.
 */
#include "config.h"

#include "sieve-private.h"

static const char *const known_caps[] = {
  "fileinto", "envelope", "reject", "ereject", "copy", "imap4flags", "subaddress", "editheader",
  "variables", "relational", "body", "spamtest", "spamtestplus", "virustest", "comparator-i;octet",
  "comparator-i;ascii-casemap", "comparator-i;ascii-numeric", "vacation", "mailbox", "vnd.opes-lmtpd.callout",
  "date", "index", "duplicate", "vacation-seconds",
  "include", "ihave", "environment", "special-use",
  /* the MIME structure (RFC 5703) and regex (draft-ietf-sieve-regex) */
  "mime", "foreverypart", "extracttext", "regex",
  "enotify", "replace", "enclose",
  NULL,
};

gboolean
sieve_capability_known (const char *cap)
{
  return g_strv_contains (known_caps, cap);
}

const char *const *
sieve_capabilities (void)
{
  return known_caps;
}
