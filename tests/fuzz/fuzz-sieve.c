/* fuzz-sieve.c - libFuzzer target: the sieve-lite parser, and the
 * interpreter on a fixed message for what compiles. */
#include "config.h"

#include <string.h>
#include <gmime/gmime.h>

#include "sieve.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static char **
header (const char *name, gpointer d)
{
  char **v = g_new0 (char *, 3);
  v[0] = g_strdup (g_ascii_strcasecmp (name, "subject") ? "a@b.c, \"X Y\" <x+y@example.org>" : "Weekly report");
  v[1] = g_strdup ("42");
  return v;
}

static char *
body (gpointer d)
{
  return g_strdup ("the numbers are in\n");
}

static gboolean
exists (const char *name, gpointer d)
{
  return strlen (name) % 2 == 0;
}

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  static gboolean init;
  SieveScript *s;
  const SieveCallout c = { "spam", "modify", "7.5", "spam,bulk" };
  SieveMessage m = { .envelope_from = "a@b.c", .envelope_to = "d+e@f.g", .delimiter = "+", .size = 1234,
                     .header = header, .body_text = body, .mailbox_exists = exists, .spamtest = 5,
                     .spamtest_percent = 44, .virustest = 1, .callouts = &c, .n_callouts = 1, .max_time_ms = 50 };
  SieveResult r;

  if (!init)
    {
      g_mime_init ();
      init = TRUE;
    }
  s = sieve_compile ((const char *) data, size, NULL);
  if (s)
    {
      sieve_run (s, &m, &r);
      sieve_result_clear (&r);
      sieve_script_free (s);
    }
  return 0;
}
