/* fuzz-mime.c - libFuzzer target: the MIME paths we drive through GMime
 * (parsing, header values, text parts, re-serialising) and the Sieve
 * editheader rewrite of a header block. */
#include "config.h"

#include <string.h>

#include "filter.h"
#include "header-edit.h"
#include "lmtpd-util.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static void
part (GMimeObject *parent, GMimeObject *p, gpointer d)
{
  if (GMIME_IS_TEXT_PART (p))
    g_free (g_mime_text_part_get_text (GMIME_TEXT_PART (p)));
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  static gboolean init;
  g_autoptr (GMimeStream) s = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  g_autoptr (GMimeMessage) m = NULL;
  g_autofree char *text = g_strndup ((const char *) data, size);
  const char *end = strstr (text, "\n\n");

  if (!init)
    {
      g_mime_init ();
      init = TRUE;
    }
  s = g_mime_stream_mem_new_with_buffer ((const char *) data, size);
  parser = g_mime_parser_new_with_stream (s);
  m = g_mime_parser_construct_message (parser, NULL);
  if (m)
    {
      g_autoptr (GMimeFormatOptions) fmt = g_mime_format_options_new ();
      g_mime_message_get_subject (m);
      g_mime_message_foreach (m, part, NULL);
      g_free (g_mime_object_to_string (GMIME_OBJECT (m), fmt));
    }
  if (end)
    {
      /* the header block through deleteheader/addheader */
      SieveHeaderEdit del = { (char *) "x-drop", NULL, NULL, FALSE, 0, 0, NULL, NULL };
      SieveHeaderEdit add = { (char *) "X-Add", (char *) "v\r\nInjected: 1", NULL, TRUE, 0, 0, NULL, NULL };
      GPtrArray *edits = g_ptr_array_new ();
      g_autofree char *hdr = g_strndup (text, end - text + 2);
      g_autofree char *out = NULL;
      g_ptr_array_add (edits, &del);
      g_ptr_array_add (edits, &add);
      out = header_edit_sieve (hdr, edits, filter_protected_fields);
      if (strstr (out, "\nInjected: 1") && !strstr (hdr, "Injected: 1"))
        __builtin_trap (); /* header injection through addheader */
      g_ptr_array_unref (edits);
    }
  return 0;
}
