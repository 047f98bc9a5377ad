/* sieve-replace.c - replace and enclose (RFC 5703 5, 6): changes of the
 * message that keep, fileinto and the implicit keep after them store.  A
 * run only records them, in order with the header edits; the caller
 * makes the new message (it knows MIME and where to write it).
 */
#include "config.h"

#include <string.h>

#include "sieve-match.h"
#include "sieve-run.h"

#define MAX_CHANGES 8    /* per run: each enclose copies the message once */

/* RFC 5703 5: ":subject" or ":from" with ":mime" "SHOULD be flagged as
 * a compilation error". */
gboolean
sieve_check_replace (const SieveNode *c, GError **error)
{
  const SieveArgs *a = c->parsed;

  if (a->mime && (a->subject || a->from))
    {
      g_set_error (error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "%d:%d: replace: :mime goes with neither :subject "
                   "nor :from", c->line, c->col);
      return FALSE;
    }
  return TRUE;
}

/* A mailbox list of bare or <bracketed> addresses (RFC 5703 5 "SHOULD
 * check the syntax and generate an error"). */
static gboolean
mailbox_list_ok (const char *list)
{
  g_auto (GStrv) parts = g_strsplit (list, ",", 16);
  guint n = 0;

  for (guint i = 0; parts[i]; i++)
    {
      char *a = g_strstrip (parts[i]);
      char *lt = strrchr (a, '<');
      if (lt && g_str_has_suffix (lt, ">"))
        {
          a = lt + 1;
          a[strlen (a) - 1] = '\0';
        }
      if (!sieve_address_ok (a))
        return FALSE;
      n++;
    }
  return n > 0 && !strchr (list, '\n') && !strchr (list, '\r');
}

/* Records @c (taken); FALSE if the run failed instead. */
static gboolean
add_change (SieveRun *run, SieveChange *c)
{
  if (run->error || run->r->changes->len >= MAX_CHANGES)
    {
      sieve_run_fail (run, SIEVE_ERROR_LIMIT, "too many replace and enclose actions");
      sieve_change_free (c);
      return FALSE;
    }
  c->edits_before = run->r->edits->len;
  g_ptr_array_add (run->r->changes, c);
  return TRUE;
}

/* replace: outside foreverypart the whole message (5); the part stays 0
 * until foreverypart gives a current part. */
void
sieve_cmd_replace (SieveRun *run, const SieveNode *node, gboolean *if_taken)
{
  const SieveArgs *a = node->parsed;
  SieveChange *c = g_new0 (SieveChange, 1);

  c->kind = SIEVE_CHANGE_REPLACE;
  c->text = sieve_run_expand (run, sieve_args_string (a, 0));
  c->mime = a->mime;
  c->subject = a->subject ? sieve_run_expand (run, a->subject) : NULL;
  c->from = a->from ? sieve_run_expand (run, a->from) : NULL;
  if (c->subject && strpbrk (c->subject, "\r\n"))
    g_strdelimit (c->subject, "\r\n", ' ');
  if (c->from && !run->error && !mailbox_list_ok (c->from))
    {
      g_autofree char *shown = sieve_printable (c->from, SIEVE_MAX_ERROR_TEXT);
      g_autofree char *what = g_strdup_printf ("replace :from '%s' is not a mailbox list", shown);
      sieve_run_fail (run, SIEVE_ERROR_RUNTIME, what);
    }
  add_change (run, c);
}

/* enclose: the message becomes the message/rfc822 part of a new one (6);
 * :headers names the fields copied into the new one. */
void
sieve_cmd_enclose (SieveRun *run, const SieveNode *node, gboolean *if_taken)
{
  const SieveArgs *a = node->parsed;
  SieveChange *c = g_new0 (SieveChange, 1);

  c->kind = SIEVE_CHANGE_ENCLOSE;
  c->text = sieve_run_expand (run, sieve_args_string (a, 0));
  c->subject = a->subject ? sieve_run_expand (run, a->subject) : NULL;
  if (c->subject && strpbrk (c->subject, "\r\n"))
    g_strdelimit (c->subject, "\r\n", ' ');
  c->headers = a->headers ? sieve_run_expand_list (run, a->headers) : NULL;
  add_change (run, c);
}
