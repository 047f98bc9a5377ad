/* sieve-result.c - the helpers sieve.h gives its callers: the error
 * domain, freeing actions, edits and results, the names of actions, IMAP
 * flags as Maildir letters, the header fields editheader leaves alone,
 * what a callout's score means to spamtest, and the text of a compile
 * error at a node.  It calls no other part of sieve-lite.
 */
#include "config.h"

#include <stdarg.h>

#include "sieve-private.h"

G_DEFINE_QUARK (sieve-error-quark, sieve_error)

void
sieve_action_free (gpointer p)
{
  SieveAction *a = p;
  if (a == NULL)
    return;
  g_free (a->argument);
  g_free (a->flags);
  g_free (a->script);
  if (a->vacation)
    {
      g_free (a->vacation->subject);
      g_free (a->vacation->from);
      g_strfreev (a->vacation->addresses);
      g_free (a->vacation->handle);
      g_free (a->vacation);
    }
  sieve_notify_free (a->notify);
  g_free (a);
}

void
sieve_notify_free (SieveNotify *n)
{
  if (n == NULL)
    return;
  g_free (n->from);
  g_strfreev (n->options);
  g_free (n->message);
  g_strfreev (n->recipients);
  g_free (n->to);
  g_free (n->cc);
  g_free (n->subject);
  g_free (n->body);
  g_strfreev (n->headers);
  g_free (n);
}

void
sieve_change_free (gpointer p)
{
  SieveChange *c = p;
  if (c == NULL)
    return;
  g_free (c->text);
  g_free (c->subject);
  g_free (c->from);
  g_strfreev (c->headers);
  g_free (c);
}

void
sieve_header_edit_free (gpointer p)
{
  SieveHeaderEdit *e = p;
  if (e == NULL)
    return;
  g_free (e->comparator);
  g_free (e->relop);
  g_free (e->name);
  g_free (e->value);
  g_strfreev (e->match);
  g_free (e);
}

void
sieve_mime_part_free (gpointer data)
{
  SieveMimePart *p = data;

  g_free (p->type);
  g_free (p->subtype);
  g_strfreev (p->names);
  g_strfreev (p->values);
  g_free (p->content);
  g_free (p->prologue);
  g_free (p->epilogue);
  g_free (p->message_header);
  g_free (p);
}

void
sieve_duplicate_free (gpointer p)
{
  SieveDuplicate *d = p;

  if (d == NULL)
    return;
  g_free (d->handle);
  g_free (d->id);
  g_free (d);
}

void
sieve_result_clear (SieveResult *r)
{
  g_clear_pointer (&r->duplicates, g_ptr_array_unref);
  g_clear_pointer (&r->actions, g_ptr_array_unref);
  g_clear_pointer (&r->edits, g_ptr_array_unref);
  g_clear_pointer (&r->changes, g_ptr_array_unref);
  g_clear_pointer (&r->error, g_free);
}

gboolean
sieve_header_protected (const char *name, const char *const *extra)
{
  /* RFC 5293 4.3, 5.1: Received and Auto-Submitted; Return-Path and
   * Delivered-To are trace fields too: one above the real ones would be
   * read as the real one */
  static const char *const trace[] = { "Received", "Auto-Submitted", "Return-Path", "Delivered-To", NULL };
  g_autofree char *bare = g_strstrip (g_strdup (name));

  for (guint i = 0; trace[i]; i++)
    if (g_ascii_strcasecmp (bare, trace[i]) == 0)
      return TRUE;
  for (guint i = 0; extra && extra[i]; i++)
    if (g_ascii_strcasecmp (bare, extra[i]) == 0)
      return TRUE;
  return FALSE;
}

const char *
sieve_action_name (SieveActionKind kind)
{
  static const char *const names[] = { "keep", "fileinto", "redirect", "discard", "reject", "ereject",
                                       "vacation", "notify" };
  return kind < G_N_ELEMENTS (names) ? names[kind] : "?";
}

char *
sieve_flags_to_maildir (const char *flags)
{
  static const struct { const char *imap; char letter; } map[] = {
    { "\\draft", 'D' }, { "\\flagged", 'F' }, { "\\answered", 'R' }, { "\\seen", 'S' }, { "\\deleted", 'T' },
  };
  g_auto (GStrv) words = g_strsplit (flags ? flags : "", " ", -1);
  GString *s = g_string_new (NULL);

  for (guint k = 0; k < G_N_ELEMENTS (map); k++)
    for (guint i = 0; words[i]; i++)
      if (g_ascii_strcasecmp (words[i], map[k].imap) == 0)
        {
          g_string_append_c (s, map[k].letter);
          break;
        }
  return g_string_free (s, FALSE);
}

void
sieve_spamtest_from_score (const char *score, const char *threshold, int *spamtest, int *percent)
{
  double s = g_ascii_strtod (score, NULL), t = threshold ? g_ascii_strtod (threshold, NULL) : 0;
  double ratio = t > 0 ? CLAMP (s / (2 * t), 0.0, 1.0) : (s > 0 ? 1.0 : 0.0);

  if (ratio != ratio) /* "nan" */
    ratio = 0;
  *spamtest = 1 + (int) (9 * ratio + 0.5);
  *percent = (int) (100 * ratio + 0.5);
}

/* A compile error of command or test @n: "LINE:COL: NAME: message" */
gboolean
sieve_node_fail (GError **error, const SieveNode *n, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "%d:%d: %s: %s", n->line, n->col, n->name, msg);
  return FALSE;
}
