/* util-gmime.c - GMime helpers shared by the callout services, the test
 * callout server and the delivery pipeline.
 */
#include "config.h"

#include "lmtpd-util.h"

GMimeMessage *
util_gmime_parse_header (GBytes *header)
{
  g_autoptr (GMimeStream) stream = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  gsize n;
  const char *p;

  if (header == NULL)
    return NULL;
  p = g_bytes_get_data (header, &n);
  stream = g_mime_stream_mem_new_with_buffer (p, n);
  parser = g_mime_parser_new_with_stream (stream);
  return g_mime_parser_construct_message (parser, NULL);
}
