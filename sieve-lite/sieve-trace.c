/* sieve-trace.c - the trace of a run (sieve-lite test --trace): a line
 * for each command and each test as it runs, with its line in the script
 * and a test's result, so a user can see why a rule did not fire.
 *
 * Only called when SieveMessage.trace is set.  A test's result is known
 * only after the tests inside it (anyof, allof, not) have run, so its line
 * is given a place first and filled in at the end; the lines of a test
 * reach the caller together, in script order.  Scripts and messages are
 * untrusted: each string is cut and made printable, a list shows its
 * first items, and a run writes at most max_trace_lines lines.
 */
#include "config.h"

#include <string.h>

#include "sieve-run.h"

#define TRACE_MAX_LINES 1000
#define TRACE_MAX_STRING 60
#define TRACE_MAX_LIST 8
#define TRACE_MAX_TEXT 240

static guint
max_lines (const SieveRun *run)
{
  return run->m->max_trace_lines ? run->m->max_trace_lines : TRACE_MAX_LINES;
}

/* the top-level block is the first one entered */
static guint
indent (const SieveRun *run)
{
  return run->trace_block ? run->trace_block - 1 : 0;
}

static void
render_string (GString *s, const char *str)
{
  g_autofree char *shown = sieve_printable (str, TRACE_MAX_STRING);

  g_string_append_c (s, '"');
  for (const char *p = shown; *p; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_c (s, '\\');
      g_string_append_c (s, *p);
    }
  g_string_append (s, strlen (str) > TRACE_MAX_STRING ? "...\"" : "\"");
}

static void
render_arg (GString *s, const SieveArg *a)
{
  guint n;

  if (a->kind == SIEVE_ARG_TAG)
    {
      g_string_append_printf (s, " :%s", a->tag);
      return;
    }
  if (a->kind == SIEVE_ARG_NUMBER)
    {
      g_string_append_printf (s, " %" G_GUINT64_FORMAT, a->number);
      return;
    }
  n = g_strv_length (a->strings);
  g_string_append (s, n == 1 ? " " : " [");
  for (guint i = 0; i < n && i < TRACE_MAX_LIST; i++)
    {
      if (i)
        g_string_append (s, ", ");
      render_string (s, a->strings[i]);
    }
  if (n > TRACE_MAX_LIST)
    g_string_append_printf (s, ", ... (%u)", n);
  if (n != 1)
    g_string_append_c (s, ']');
}

/* @n as written, roughly: its name, its arguments, and the names of the
 * tests it takes (each has a line of its own). */
static void
render_node (GString *s, const SieveNode *n)
{
  g_string_append (s, n->name);
  for (guint i = 0; n->args && i < n->args->len && s->len < TRACE_MAX_TEXT; i++)
    render_arg (s, n->args->pdata[i]);
  for (guint i = 0; n->tests && i < n->tests->len && s->len < TRACE_MAX_TEXT; i++)
    g_string_append_printf (s, "%s%s", i ? ", " : " (", ((SieveNode *) n->tests->pdata[i])->name);
  if (n->tests && n->tests->len)
    g_string_append_c (s, ')');
  if (s->len > TRACE_MAX_TEXT)
    {
      sieve_cut_utf8 (s->str, TRACE_MAX_TEXT);
      g_string_set_size (s, strlen (s->str));
      g_string_append (s, "...");
    }
}

static char *
line_text (int line, guint depth, const char *prefix, const SieveNode *n, const char *result)
{
  GString *s = g_string_new (NULL);

  g_string_append_printf (s, "%d: %*s%s", line, 2 * (int) depth, "", prefix ? prefix : "");
  render_node (s, n);
  if (result)
    g_string_append_printf (s, " -> %s", result);
  return g_string_free (s, FALSE);
}

/* Hands the lines waiting (all filled in) to the caller, within the cap. */
static void
flush (SieveRun *run)
{
  for (guint i = 0; i < run->trace_wait->len; i++)
    {
      const char *line = run->trace_wait->pdata[i];
      if (line && run->trace_lines < max_lines (run))
        run->m->trace (line, run->m->trace_data);
      else if (line && run->trace_lines == max_lines (run))
        run->m->trace ("... (the trace stops here)", run->m->trace_data);
      if (line)
        run->trace_lines++;
    }
  g_ptr_array_set_size (run->trace_wait, 0);
}

/* A place for a line, in order, or G_MAXUINT past the cap. */
static guint
reserve (SieveRun *run)
{
  if (run->trace_wait == NULL)
    run->trace_wait = g_ptr_array_new_with_free_func (g_free);
  if (run->trace_lines + run->trace_wait->len > max_lines (run))
    return G_MAXUINT;
  g_ptr_array_add (run->trace_wait, NULL);
  return run->trace_wait->len - 1;
}

/* Before command @c runs: its line, except for if and elsif, whose line
 * is their test's (see sieve_trace_test).  An else shows only if it runs. */
void
sieve_trace_command (SieveRun *run, const SieveNode *c, gboolean if_taken)
{
  guint slot;

  run->trace_if = NULL;
  if (c->def->flags & SIEVE_DEF_IF)
    {
      run->trace_if = c;
      return;
    }
  if (((c->def->flags & SIEVE_DEF_ELSE) && if_taken) || (slot = reserve (run)) == G_MAXUINT)
    return;
  run->trace_wait->pdata[slot] = line_text (c->line, indent (run), NULL, c, NULL);
  flush (run);
}

/* Runs test @t with a line for it: "LINE: if TEST -> RESULT" for the test
 * of an if or elsif, "LINE:   TEST -> RESULT" for one inside another. */
gboolean
sieve_trace_test (SieveRun *run, const SieveNode *t)
{
  const SieveNode *cmd = g_steal_pointer (&run->trace_if);
  guint slot = reserve (run);
  gboolean result;
  g_autofree char *prefix = cmd ? g_strconcat (cmd->name, " ", NULL) : NULL;

  run->trace_depth++;
  result = t->def->test (run, t);
  run->trace_depth--;
  if (slot != G_MAXUINT)
    run->trace_wait->pdata[slot] = line_text (cmd ? cmd->line : t->line,
                                              indent (run) + run->trace_depth, prefix, t,
                                              run->error ? "error" : result ? "true" : "false");
  if (run->trace_depth == 0)
    flush (run);
  return result;
}

void
sieve_trace_clear (SieveRun *run)
{
  g_clear_pointer (&run->trace_wait, g_ptr_array_unref);
}
