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

/* ---- what later tests see (RFC 5703 6: "tests ... use the newly created
 * message"); as deliver/ makes it, but for what only it knows (the
 * boundary, the transfer encoding) ------------------------------------------- */

static gboolean
is_mime_field (const char *name)
{
  return g_ascii_strncasecmp (name, "Content-", 8) == 0 || g_ascii_strcasecmp (name, "MIME-Version") == 0;
}

static void
set_values (GPtrArray *values, const char *value)
{
  g_ptr_array_set_size (values, 0);
  if (value)
    g_ptr_array_add (values, g_strdup (value));
}

/* replace :mime: the entity's own values of @name (its fields up to the
 * empty line, unfolded). */
static void
entity_values (const char *text, const char *name, GPtrArray *values)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", 1000);
  gsize n = strlen (name);

  for (guint i = 0; lines[i] && lines[i][strspn (lines[i], "\r")] != '\0'; i++)
    if (g_ascii_strncasecmp (lines[i], name, n) == 0 && lines[i][n] == ':')
      {
        GString *v = g_string_new (lines[i] + n + 1);
        for (guint k = i + 1; lines[k] && (lines[k][0] == ' ' || lines[k][0] == '\t'); k++)
          g_string_append (v, lines[k]);
        g_strdelimit (v->str, "\r", ' ');
        g_ptr_array_add (values, g_strstrip (g_string_free (v, FALSE)));
      }
}

static void
replace_values (SieveRun *run, guint index, const SieveChange *c, const char *name, GPtrArray *values)
{
  const char *old = g_ascii_strcasecmp (name, "Original-Subject") == 0 && c->subject ? "Subject"
                  : g_ascii_strcasecmp (name, "Original-From") == 0 && c->from ? "From" : NULL;

  if (old)
    {
      GPtrArray *before = sieve_header_values (run, old, index);
      for (guint i = 0; i < before->len; i++)
        g_ptr_array_add (values, g_steal_pointer (&before->pdata[i]));
      g_ptr_array_unref (before);
    }
  else if (c->part != 0 && (is_mime_field (name) || !g_ascii_strcasecmp (name, "MIME-Version")))
    return;   /* a part replaced: the top part's fields stay */
  else if (g_ascii_strcasecmp (name, "MIME-Version") == 0)
    set_values (values, "1.0");
  else if (is_mime_field (name))
    {
      set_values (values, c->mime || g_ascii_strcasecmp (name, "Content-Type") ? NULL : "text/plain; charset=utf-8");
      if (c->mime)
        entity_values (c->text, name, values);
    }
  else if (g_ascii_strcasecmp (name, "Subject") == 0 && c->subject)
    set_values (values, c->subject);
  else if (g_ascii_strcasecmp (name, "From") == 0 && c->from)
    set_values (values, c->from);
}

static void
enclose_values (SieveRun *run, const SieveChange *c, const char *name, GPtrArray *values)
{
  gboolean copied = FALSE;

  for (guint i = 0; !copied && c->headers && c->headers[i]; i++)
    copied = g_ascii_strcasecmp (c->headers[i], name) == 0;
  if (g_ascii_strcasecmp (name, "Subject") == 0)
    {
      if (c->subject)
        set_values (values, c->subject);
    }
  else if (copied)
    return;
  else if (g_ascii_strcasecmp (name, "From") == 0)
    {
      g_autofree char *me = g_strdup_printf ("<%s>", run->m->envelope_to ? run->m->envelope_to : "");
      set_values (values, me);
    }
  else if (g_ascii_strcasecmp (name, "Date") == 0)
    {
      g_autoptr (GDateTime) now = g_date_time_new_now_local ();
      g_autofree char *d = g_date_time_format (now, "%a, %d %b %Y %H:%M:%S %z");
      set_values (values, d);
    }
  else if (g_ascii_strcasecmp (name, "MIME-Version") == 0)
    set_values (values, "1.0");
  else if (g_ascii_strcasecmp (name, "Content-Type") == 0)
    set_values (values, "multipart/mixed");
  else if (g_ascii_strcasecmp (name, "Return-Path") != 0)
    set_values (values, NULL);
}

void
sieve_change_values (SieveRun *run, guint index, const char *name, GPtrArray *values)
{
  const SieveChange *c = run->r->changes->pdata[index];

  if (c->kind == SIEVE_CHANGE_ENCLOSE)
    enclose_values (run, c, name, values);
  else
    replace_values (run, index, c, name, values);
}

/* replace :mime: the entity's body, if it is text (no Content-Type is
 * text/plain, RFC 2045 5.2); else nothing the body test can read. */
static char *
entity_text (const char *text)
{
  g_autoptr (GPtrArray) type = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *entity = g_strdup (text);
  const char *blank;
  char *w = entity;

  for (const char *r = text; *r; r++)   /* CR LF as LF, as it is stored */
    if (*r != '\r')
      *w++ = *r;
  *w = '\0';
  blank = g_str_has_prefix (entity, "\n") ? entity : strstr (entity, "\n\n");

  entity_values (entity, "Content-Type", type);
  if (type->len && g_ascii_strncasecmp (type->pdata[0], "text/", 5) != 0)
    return g_strdup ("");
  return g_strdup (blank ? blank + (blank == entity ? 1 : 2) : entity);
}

/* The last of changes [0, @n) that replaced part @p, or NULL */
static const SieveChange *
part_change (SieveRun *run, guint n, guint p)
{
  for (guint i = n; i > 0; i--)
    if (((const SieveChange *) run->r->changes->pdata[i - 1])->part == p)
      return run->r->changes->pdata[i - 1];
  return NULL;
}

/* The text parts after the replaces of parts [0, @n) (they all come
 * before any change of the whole message): each replaced part gives its
 * new text, the others what they had. */
static char *
parts_text (SieveRun *run, guint n)
{
  const GPtrArray *parts = sieve_run_mime_parts (run);
  GString *s = g_string_new (NULL);

  for (guint i = 0; parts && i < parts->len; i++)
    {
      const SieveMimePart *p = parts->pdata[i];
      const SieveChange *c = part_change (run, n, i);
      if (c)
        {
          g_autofree char *t = c->mime ? entity_text (c->text) : g_strdup (c->text);
          g_string_append (s, t);
          i += p->n_descendants;
        }
      else if (p->content && strcmp (p->type, "text") == 0)
        g_string_append (s, p->content);
    }
  return g_string_free (s, FALSE);
}

/* The body test after replace sees the new text; after enclose, the
 * new text part and then what was enclosed (RFC 5703 5, 6).  After the
 * replace of a part, the text parts with the new one in its place. */
char *
sieve_changed_body (SieveRun *run, char *text)
{
  guint n = 0;

  while (run->r->changes && n < run->r->changes->len && ((SieveChange *) run->r->changes->pdata[n])->part)
    n++;
  if (n > 0)
    {
      g_free (text);
      text = parts_text (run, n);
    }
  for (guint i = n; run->r->changes && i < run->r->changes->len; i++)
    {
      const SieveChange *c = run->r->changes->pdata[i];
      char *next;
      if (c->kind == SIEVE_CHANGE_REPLACE)
        next = c->mime ? entity_text (c->text) : g_strdup (c->text);
      else
        next = g_strconcat (c->text, "\n", text ? text : "", NULL);
      g_free (text);
      text = next;
    }
  return text;
}
