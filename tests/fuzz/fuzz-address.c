/* fuzz-address.c - libFuzzer target: RFC 5321 address parsing, the
 * sanitiser for logs, and the LMTP command argument parsers. */
#include "config.h"

#include <string.h>

#include "deliver.h"
#include "lmtpd.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  g_autofree char *s = g_strndup ((const char *) data, size);
  g_autofree char *san = util_sanitize (s, 64);
  g_assert (strpbrk (san, "\r\n") == NULL);
  const char *why = NULL, *args = NULL;
  guint64 n;
  gboolean last;

  for (int utf8 = 0; utf8 < 2; utf8++)
    {
      g_autofree char *local = NULL, *domain = NULL;
      deliver_address_parse (s, utf8, &local, &domain, &why);
    }
  lmtp_command_verb (s, &args);
  for (int k = 0; k < 2; k++)
    {
      LmtpPathArgs a = { 0 };
      if (lmtp_command_parse_path (s, k ? "TO:" : "FROM:", &a, &why))
        {
          lmtp_path_args_find (&a, "SIZE");
          lmtp_path_args_clear (&a);
        }
    }
  lmtp_command_parse_bdat (s, &n, &last);
  g_free (lmtp_xtext_decode (s));
  return 0;
}
