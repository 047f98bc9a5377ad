/* fuzz-ocp.c - libFuzzer target: the OCP Core codec (RFC 4037) on a
 * stream of messages, each written back and parsed again (round trip). */
#include "config.h"

#include <string.h>

#include "ocp.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  const char *p = (const char *) data;
  gsize left = size;

  while (left > 0)
    {
      OcpMessage *m = NULL;
      gsize used = 0;
      GError *error = NULL;
      OcpParseResult r = ocp_message_parse (p, left, &ocp_default_limits, &m, &used, &error);
      g_clear_error (&error);
      if (r != OCP_PARSE_OK)
        break;
      {
        GString *out = g_string_new (NULL);
        OcpMessage *again = NULL;
        gsize used2 = 0;
        ocp_message_write (m, out);
        if (ocp_message_parse (out->str, out->len, &ocp_default_limits, &again, &used2, &error) != OCP_PARSE_OK)
          __builtin_trap (); /* what we write, we must read */
        ocp_message_free (again);
        g_string_free (out, TRUE);
      }
      {
        OcpVerdict v;
        ocp_verdict_init (&v);
        ocp_verdict_from_message (&v, m, &error);
        g_clear_error (&error);
        ocp_verdict_clear (&v);
        g_hash_table_unref (ocp_envelope_from_message (m));
      }
      ocp_message_free (m);
      if (used == 0 || used > left)
        break;
      p += used;
      left -= used;
    }
  return 0;
}
