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
      sieve_node_fail (error, c, ":mime goes with neither :subject "
                   "nor :from");
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

/* Whether part @p of the message as received is still there for a
 * replace after the changes made so far: not if an earlier change
 * replaced a part it lies inside, nor (for a part, not the whole) after
 * the whole message changed, as the caller numbers parts. */
static gboolean
part_still_there (SieveRun *run, guint p)
{
  const GPtrArray *parts = sieve_run_mime_parts (run);

  for (guint i = 0; i < run->r->changes->len; i++)
    {
      const SieveChange *e = run->r->changes->pdata[i];
      guint inside = parts && e->part < parts->len
                     ? ((const SieveMimePart *) parts->pdata[e->part])->n_descendants : 0;
      if (p != 0 && (e->part == 0 || (p > e->part && p <= e->part + inside)))
        return FALSE;
    }
  return TRUE;
}

/* The part replace changes (RFC 5703 5): foreverypart's current part
 * (its index, 0 for the top part: the whole message), else the whole
 * message.  FALSE (the run failed) if an earlier change took it away. */
static gboolean
replace_part (SieveRun *run, SieveChange *c)
{
  int cur = sieve_run_current_part (run);

  if (cur > 0 && !part_still_there (run, cur))
    {
      sieve_run_fail (run, SIEVE_ERROR_RUNTIME, "replace: the part is gone: an earlier replace or enclose "
                      "changed what holds it");
      return FALSE;
    }
  c->part = MAX (cur, 0);
  if (run->n_loops)
    run->loops[run->n_loops - 1].replaced = TRUE;
  return TRUE;
}

/* replace: inside foreverypart the current part, else the whole message
 * (5); :subject and :from change the message's own header either way. */
void
sieve_cmd_replace (SieveRun *run, const SieveNode *node, gboolean *if_taken)
{
  const SieveArgs *a = node->parsed;
  SieveChange *c = g_new0 (SieveChange, 1);

  c->kind = SIEVE_CHANGE_REPLACE;
  if (!run->error && !replace_part (run, c))
    {
      sieve_change_free (c);
      return;
    }
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
