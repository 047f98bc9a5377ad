/* dir-password.c - checking a login's password against what a directory
 * stores, and the directory's authenticate() in front of the backends.
 *
 * Stored passwords are written as Dovecot's passdb writes them: a scheme
 * in braces, then the hash ({SHA512-CRYPT}$6$..., {BLF-CRYPT}$2y$...,
 * {CRYPT}, {PLAIN} for tests).  crypt(3) schemes go through libxcrypt's
 * crypt_r, so what it supports here is what works; the comparison of the
 * result takes the same time wherever the two first differ.  Logins are
 * never cached: a changed password counts at once.
 */
#include "config.h"

#include <crypt.h>
#include <string.h>

#include "directory.h"

/* TRUE if @a and @b are equal, looking at every byte of the longer. */
static gboolean
equal_constant_time (const char *a, const char *b)
{
  gsize la = strlen (a), lb = strlen (b), n = MAX (la, lb);
  volatile guchar diff = la != lb;

  for (gsize i = 0; i < n; i++)
    diff |= (guchar) (i < la ? a[i] : 0) ^ (guchar) (i < lb ? b[i] : 0);
  return diff == 0;
}

static gboolean
crypt_matches (const char *hash, const char *password)
{
  struct crypt_data *data = g_new0 (struct crypt_data, 1);
  const char *got = crypt_r (password, hash, data);
  /* libxcrypt answers a hash it cannot use with "*0" or "*1" */
  gboolean ok = got && got[0] != '*' && hash[0] != '\0' && equal_constant_time (got, hash);

  explicit_bzero (data, sizeof *data);
  g_free (data);
  return ok;
}

static const char *const crypt_schemes[] = {
  "CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT", NULL,
};

gboolean
directory_password_verify (const char *stored, const char *password, GError **error)
{
  const char *end;
  g_autofree char *scheme = NULL;

  if (stored == NULL || password == NULL)
    return FALSE;
  if (stored[0] == '$') /* a bare crypt(3) hash, as {CRYPT} */
    return crypt_matches (stored, password);
  end = stored[0] == '{' ? strchr (stored, '}') : NULL;
  if (end == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "a stored password without {SCHEME}");
      return FALSE;
    }
  scheme = g_ascii_strup (stored + 1, end - stored - 1);
  if (strcmp (scheme, "PLAIN") == 0 || strcmp (scheme, "CLEARTEXT") == 0)
    return equal_constant_time (end + 1, password);
  if (g_strv_contains (crypt_schemes, scheme))
    return crypt_matches (end + 1, password);
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "password scheme {%s} is not supported", scheme);
  return FALSE;
}
