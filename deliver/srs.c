/* srs.c - the envelope sender of a redirect: what [sieve] redirect_sender
 * names (as Pigeonhole's sieve_redirect_envelope_from: sender, recipient,
 * orig_recipient, user_email, postmaster, <> or an address), or the
 * original sender rewritten by the Sender Rewriting Scheme, so that the
 * forwarded mail passes SPF at the far end and a bounce comes back through
 * the forwarding domain, where postsrsd (or anything libsrs2-compatible
 * with the same secret) turns it back into the original sender.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "deliver.h"
#include "srs.h"

#define SRS_SECRET_MAX 4096
#define SRS_DAY 86400
static const char base32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* The first four base64 characters of HMAC-SHA1(@secret, the @parts
 * lowercased and concatenated): libsrs2's hash. */
static void
srs_hash (const char *secret, const char *const *parts, char out[5])
{
  g_autoptr (GString) data = g_string_new (NULL);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  g_autofree char *b64 = NULL;

  for (guint i = 0; parts[i]; i++)
    {
      g_autofree char *lower = g_ascii_strdown (parts[i], -1);
      g_string_append (data, lower);
    }
  HMAC (EVP_sha1 (), secret, (int) strlen (secret), (const unsigned char *) data->str, data->len, md, &md_len);
  b64 = g_base64_encode (md, md_len);
  memcpy (out, b64, 4);
  out[4] = '\0';
}

/* SRS0 or SRS1 (any case) followed by one of libsrs2's separators */
static gboolean
srs_tagged (const char *local, char digit)
{
  return g_ascii_strncasecmp (local, "SRS", 3) == 0 && local[3] == digit && local[4] && strchr ("=-+", local[4]);
}

/* An SRS1 address again: the first forwarder's part stays, the hash is new. */
static char *
srs1_again (const char *secret, const char *domain, const char *local)
{
  const char *host = strchr (local + 5, '=');
  const char *user = host ? strchr (host + 1, '=') : NULL;
  g_autofree char *h = NULL;
  char hash[5];

  if (host == NULL || user == NULL || user == host + 1 || user[1] == '\0')
    return NULL;
  h = g_strndup (host + 1, user - host - 1);
  srs_hash (secret, (const char *const[]) { h, user + 1, NULL }, hash);
  return g_strdup_printf ("SRS1=%s=%s=%s@%s", hash, h, user + 1, domain);
}

char *
deliver_srs_forward (const char *secret, const char *domain, const char *sender, gint64 now)
{
  const char *at = strrchr (sender, '@');
  g_autofree char *local = NULL;
  const char *host;
  char hash[5], stamp[3];
  gint64 day = now / SRS_DAY;

  if (at == NULL || at == sender || at[1] == '\0')
    return NULL;
  host = at + 1;
  if (g_ascii_strcasecmp (host, domain) == 0)
    return g_strdup (sender);
  local = g_strndup (sender, at - sender);
  if (srs_tagged (local, '1'))
    return srs1_again (secret, domain, local);
  if (srs_tagged (local, '0'))
    {
      /* the other forwarder's address: "SRS1=HHHH=its-domain==HHHH=TT=..." */
      srs_hash (secret, (const char *const[]) { host, local + 4, NULL }, hash);
      return g_strdup_printf ("SRS1=%s=%s=%s@%s", hash, host, local + 4, domain);
    }
  stamp[0] = base32[(day >> 5) & 31];
  stamp[1] = base32[day & 31];
  stamp[2] = '\0';
  srs_hash (secret, (const char *const[]) { stamp, host, local, NULL }, hash);
  return g_strdup_printf ("SRS0=%s=%s=%s=%s@%s", hash, stamp, host, local, domain);
}

char *
deliver_srs_read_secret (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  char *secret;

  if (!g_file_get_contents (path, &text, &len, error))
    return NULL;
  if (len > SRS_SECRET_MAX)
    text[SRS_SECRET_MAX] = '\0';
  secret = g_strndup (text, strcspn (text, "\r\n"));
  if (secret[0] == '\0')
    {
      g_set_error (error, DELIVER_ERROR, EINVAL, "%s: the first line (the secret) is empty", path);
      g_free (secret);
      return NULL;
    }
  return secret;
}

static char *
srs_sender (const LmtpdConfig *config, const char *sender, GError **error)
{
  g_autofree char *secret = deliver_srs_read_secret (config->srs_secret_file, error);
  char *out;

  if (secret == NULL)
    return NULL;
  out = deliver_srs_forward (secret, config->srs_domain, sender, g_get_real_time () / G_USEC_PER_SEC);
  if (out == NULL)
    g_set_error (error, DELIVER_ERROR, EINVAL, "SRS: the sender is not local@domain");
  memset (secret, 0, strlen (secret));
  return out;
}

char *
deliver_redirect_sender (const LmtpdConfig *config, const char *sender, const char *address,
                         const char *original, const char *domain, GError **error)
{
  const char *how = config->redirect_sender ? config->redirect_sender : "sender";
  gsize n = strlen (how);

  /* RFC 5228 4.2: "if the message being processed has an empty envelope
   * sender address the outgoing message MUST also have an empty envelope
   * sender address" (a bounce redirected to a dead address would loop) */
  if (sender[0] == '\0' || !strcmp (how, "sender"))
    return g_strdup (sender);
  if (!strcmp (how, "srs"))
    return srs_sender (config, sender, error);
  if (!strcmp (how, "recipient") || !strcmp (how, "user_email"))
    return g_strdup (address);
  if (!strcmp (how, "orig_recipient"))
    return g_strdup (original);
  if (!strcmp (how, "postmaster"))
    return config->postmaster ? g_strdup (config->postmaster) : g_strconcat ("postmaster@", domain, NULL);
  if (how[0] == '<' && how[n - 1] == '>')
    return g_strndup (how + 1, n - 2); /* "<>" is the null sender */
  return g_strdup (how);
}
