/* ms-auth.c - SASL PLAIN (RFC 4616) against the user directory.
 *
 * The login name is the user's address, looked up as lmtpd looks up a
 * recipient (lowercased); an authorization identity other than the login
 * itself is refused (no proxy logins).  A directory that cannot answer is
 * TRYLATER, never "wrong password".
 */
#include "config.h"

#include <string.h>

#include "managesieve.h"

/* An address fit to become a path under the mail root: local@domain,
 * no '/', no control characters, no part starting with a dot. */
static gboolean
address_fit (const char *a)
{
  const char *at = strrchr (a, '@');

  if (at == NULL || at == a || at[1] == '\0' || a[0] == '.' || at[1] == '.' || strlen (a) > 254)
    return FALSE;
  for (const char *p = a; *p; p++)
    if ((guchar) *p < 0x20 || *p == 0x7f || *p == '/' || *p == '\\')
      return FALSE;
  return strstr (a, "..") == NULL;
}

/* authzid NUL authcid NUL password, each part without NUL. */
static gboolean
split_plain (const guchar *d, gsize n, char **authz, char **authc, char **password)
{
  const guchar *nul1 = memchr (d, '\0', n), *nul2;

  if (nul1 == NULL)
    return FALSE;
  nul2 = memchr (nul1 + 1, '\0', n - (nul1 + 1 - d));
  if (nul2 == NULL || memchr (nul2 + 1, '\0', n - (nul2 + 1 - d)))
    return FALSE;
  *authz = g_strndup ((const char *) d, nul1 - d);
  *authc = g_strndup ((const char *) nul1 + 1, nul2 - nul1 - 1);
  *password = g_strndup ((const char *) nul2 + 1, n - (nul2 + 1 - d));
  return TRUE;
}

static gboolean
base64_valid (const char *b64)
{
  gsize n = strlen (b64);

  return n % 4 == 0 && strspn (b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") == n;
}

static MsAuthResult
check (Directory *dir, const char *authz, const char *authc, const char *password, char **user, char **why)
{
  g_autofree char *address = g_ascii_strdown (authc, -1);
  g_autoptr (GError) error = NULL;

  if (authz[0] && g_ascii_strcasecmp (authz, authc) != 0)
    {
      *why = g_strdup ("logging in as another user is not supported");
      return MS_AUTH_FAILED;
    }
  if (!address_fit (address) || !g_utf8_validate (address, -1, NULL))
    return MS_AUTH_FAILED;
  switch (directory_authenticate (dir, address, password, &error))
    {
    case DIRECTORY_FOUND:
      *user = g_steal_pointer (&address);
      return MS_AUTH_OK;
    case DIRECTORY_TEMPFAIL:
      *why = g_strdup (error ? error->message : "the user directory did not answer");
      return MS_AUTH_TRYLATER;
    default:
      return MS_AUTH_FAILED;
    }
}

MsAuthResult
ms_auth_plain (Directory *dir, const char *b64, char **user, char **why)
{
  g_autofree guchar *data = NULL;
  g_autofree char *authz = NULL, *authc = NULL, *password = NULL;
  gsize n = 0;
  MsAuthResult r;

  *user = *why = NULL;
  if (!base64_valid (b64))
    {
      *why = g_strdup ("not base64");
      return MS_AUTH_FAILED;
    }
  data = b64[0] ? g_base64_decode (b64, &n) : NULL;
  if (data == NULL || !split_plain (data, n, &authz, &authc, &password))
    {
      *why = g_strdup ("not a PLAIN response");
      if (data)
        explicit_bzero (data, n);
      return MS_AUTH_FAILED;
    }
  explicit_bzero (data, n);
  r = check (dir, authz, authc, password, user, why);
  explicit_bzero (password, strlen (password));
  return r;
}
