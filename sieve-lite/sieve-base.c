/* sieve-base.c - what every part of a run calls and that calls nothing
 * else of sieve-lite: failing a run, the clock, text fit for a log line,
 * cutting on a character boundary, a node's positional arguments.
 */
#include "config.h"

#include <string.h>

#include "sieve-run.h"

/* Limits are runtime errors (RFC 5228 2.10.6); the first one counts. */
void
sieve_run_fail (SieveRun *run, int code, const char *what)
{
  if (run->error == NULL)
    g_set_error_literal (&run->error, SIEVE_ERROR, code, what);
}

/* Checked where the work is done (each command and test, inside matching
 * and expansion), so one costly step cannot run far past the limit. */
gboolean
sieve_run_out_of_time (SieveRun *run)
{
  if (run->error)
    return TRUE;
  if (g_get_monotonic_time () <= run->deadline)
    return FALSE;
  sieve_run_fail (run, SIEVE_ERROR_LIMIT, "script ran too long");
  return TRUE;
}

/* A copy of @s fit for a log line: control characters become '?' (a
 * header decoded into a string may hold LF or ESC), at most @max bytes. */
char *
sieve_printable (const char *s, gsize max)
{
  GString *out = g_string_new (NULL);
  const char *p = s;

  while (*p && out->len < max)
    {
      gunichar c = g_utf8_get_char_validated (p, -1);
      gboolean invalid = c == (gunichar) -1 || c == (gunichar) -2;
      const char *next = invalid ? p + 1 : g_utf8_next_char (p);
      if (invalid || c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0))
        g_string_append_c (out, '?');
      else
        g_string_append_len (out, p, next - p);
      p = next;
    }
  return g_string_free (out, FALSE);
}

/* Cuts @s to at most @max bytes on a UTF-8 character boundary. */
void
sieve_cut_utf8 (char *s, gsize max)
{
  gsize n = strlen (s);

  if (n <= max)
    return;
  n = max;
  while (n > 0 && ((guchar) s[n] & 0xc0) == 0x80)
    n--;
  s[n] = '\0';
}

const char *
sieve_args_string (const SieveArgs *a, guint i)
{
  const SieveArg *x = i < a->pos->len ? a->pos->pdata[i] : NULL;
  return x && x->kind == SIEVE_ARG_STRINGS ? x->strings[0] : NULL;
}

char **
sieve_args_list (const SieveArgs *a, guint i)
{
  const SieveArg *x = i < a->pos->len ? a->pos->pdata[i] : NULL;
  return x && x->kind == SIEVE_ARG_STRINGS ? x->strings : NULL;
}
