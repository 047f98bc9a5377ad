/* sieve-run.c - the interpreter: runs a validated script for one message
 * through each node's definition, within the limits (steps, time, memory,
 * variable size), keeps the variables (RFC 5229) and the internal flag
 * variable (RFC 5232), and turns a runtime error into "stop, say so,
 * keep" (RFC 5228 2.10.6).
 */
#include "config.h"

#include <string.h>

#include "sieve-match.h"
#include "sieve-run.h"

#define MAX_STEPS 100000
#define MAX_TIME_MS 2000
#define MAX_VARIABLE_SIZE 4096
#define MAX_MEMORY (4 * 1024 * 1024)

/* include (RFC 6609): the run's shared variables and the scripts in
 * it, made whether or not the script includes (sieve-include.c runs them) */
void
sieve_include_init (SieveRun *run)
{
  run->include = g_hash_table_contains (run->s->caps, "include");
  run->globals = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  run->chain = g_ptr_array_new_with_free_func (g_free);
  run->included = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

void
sieve_include_clear (SieveRun *run)
{
  g_clear_pointer (&run->declared, g_hash_table_unref);
  g_clear_pointer (&run->globals, g_hash_table_unref);
  g_clear_pointer (&run->chain, g_ptr_array_unref);
  g_clear_pointer (&run->included, g_hash_table_unref);
}

/* 3.4: a script's variables are its own; the names it declared global,
 * and any in the "global." namespace (3.4.2), are everyone's.  Without
 * "include" the name is an ordinary one, as before. */
GHashTable *
sieve_run_variables (SieveRun *run, const char **name)
{
  if (!run->include && g_ascii_strncasecmp (*name, "global.", 7) == 0)
    sieve_run_fail (run, SIEVE_ERROR_RUNTIME, "the global namespace needs require \"include\"");
  if (!run->include)
    return run->vars;
  if (g_ascii_strncasecmp (*name, "global.", 7) == 0)
    {
      *name += 7;
      return run->globals;
    }
  if (run->declared && g_hash_table_contains (run->declared, *name))
    return run->globals;
  return run->vars;
}

/* The value of ${@name} (lowercased), or NULL: a name that is not a
 * variable name is no reference and stays as it is (*@valid FALSE). */
static const char *
variable_value (SieveRun *run, const char *name, gboolean *valid)
{
  GHashTable *table;

  *valid = name[0] != '\0';
  for (const char *q = name; *q && *valid; q++)
    *valid = g_ascii_isalnum (*q) || *q == '_' || *q == '.';
  if (!*valid)
    return NULL;
  if (g_ascii_isdigit (name[0]))
    {
      guint64 k = g_ascii_strtoull (name, NULL, 10);
      return k < 10 ? run->mv[k] : NULL;
    }
  table = sieve_run_variables (run, &name);
  return g_hash_table_lookup (table, name);
}

/* ${name} and ${N} (RFC 5229 3), when variables is required.  What it
 * builds counts against the run's memory (a string may name a 4 KB
 * variable thousands of times); over it, the run fails and the result is
 * cut short. */
char *
sieve_run_expand (SieveRun *run, const char *str)
{
  GString *out;
  gsize room;

  if (!run->variables || !strstr (str, "${"))
    return g_strdup (str);
  room = run->mem_max - run->mem_used;
  out = g_string_new (NULL);
  for (const char *p = str; *p;)
    {
      const char *close;
      if (out->len > room)
        {
          sieve_run_fail (run, SIEVE_ERROR_LIMIT, "script used too much memory (variables)");
          break;
        }
      if (p[0] == '$' && p[1] == '{' && (close = strchr (p + 2, '}')) != NULL)
        {
          g_autofree char *name = g_ascii_strdown (p + 2, close - p - 2);
          gboolean valid;
          const char *v = variable_value (run, name, &valid);
          if (valid)
            {
              g_string_append (out, v ? v : "");
              p = close + 1;
              continue;
            }
        }
      g_string_append_c (out, *p++);
    }
  run->mem_used += MIN (out->len, room);
  return g_string_free (out, FALSE);
}

char **
sieve_run_expand_list (SieveRun *run, char **list)
{
  guint n = list ? g_strv_length (list) : 0;
  char **out = g_new0 (char *, n + 1);

  for (guint i = 0; i < n; i++)
    out[i] = sieve_run_expand (run, list[i]);
  return out;
}

/* RFC 5229 3: an implementation may limit the size of a variable; a
 * script that sets a longer one fails (the doubling of a string would
 * otherwise reach gigabytes in forty lines).  Takes @name and @value. */
void
sieve_run_set_variable (SieveRun *run, char *name, char *value)
{
  const char *bare = name;
  GHashTable *table = sieve_run_variables (run, &bare);

  if (strlen (value) > run->var_max)
    {
      g_autofree char *why = g_strdup_printf ("a variable would be longer than %" G_GSIZE_FORMAT " bytes",
                                              run->var_max);
      sieve_run_fail (run, SIEVE_ERROR_LIMIT, why);
      g_free (name);
      g_free (value);
      return;
    }
  if (bare != name)
    {
      char *b = g_strdup (bare);
      g_free (name);
      name = b;
    }
  g_hash_table_replace (table, name, value);
}

/* A match variable: as a variable, but cut to the limit rather than
 * failing (a long Subject against "*" is ordinary mail). */
static char *
match_value (SieveRun *run, const char *s, gsize len)
{
  char *v = g_strndup (s, len);
  sieve_cut_utf8 (v, run->var_max);
  return v;
}

/* ${0} is the whole of @value, ${1}... what the wildcards matched
 * (SieveGlobCap in @caps). */
void
sieve_run_set_match_variables (SieveRun *run, const char *value, GArray *caps)
{
  for (guint i = 0; i < 10; i++)
    g_clear_pointer (&run->mv[i], g_free);
  run->mv[0] = match_value (run, value, strlen (value));
  for (guint i = 0; i < caps->len && i < 9; i++)
    {
      const SieveGlobCap *c = &g_array_index (caps, SieveGlobCap, i);
      run->mv[i + 1] = match_value (run, value + c->start, c->len);
    }
}

void
sieve_run_set_match_groups (SieveRun *run, const char *value, GArray *caps)
{
  for (guint i = 0; i < 10; i++)
    g_clear_pointer (&run->mv[i], g_free);
  for (guint i = 0; i < caps->len && i < 10; i++)
    {
      const SieveGlobCap *c = &g_array_index (caps, SieveGlobCap, i);
      run->mv[i] = match_value (run, value + c->start, c->len);
    }
}

void
sieve_run_add_flags (SieveRun *run, char **list, gboolean remove, gboolean replace)
{
  if (replace)
    g_hash_table_remove_all (run->flags);
  for (guint i = 0; list && list[i]; i++)
    {
      g_autofree char *x = sieve_run_expand (run, list[i]);
      g_auto (GStrv) words = g_strsplit_set (x, " ", -1);
      for (guint k = 0; words[k]; k++)
        {
          if (words[k][0] == '\0')
            continue;
          if (remove)
            g_hash_table_remove (run->flags, words[k]);
          else
            g_hash_table_add (run->flags, g_strdup (words[k]));
        }
    }
}

/* :flags (expanded), else the internal flag variable; NULL when
 * imap4flags is not required or there are none. */
char *
sieve_run_flags_string (SieveRun *run, char **explicit_flags)
{
  g_autoptr (GString) s = g_string_new (NULL);
  GHashTableIter it;
  gpointer f;

  if (!run->imap4flags)
    return NULL;
  if (explicit_flags)
    {
      for (guint i = 0; explicit_flags[i]; i++)
        {
          g_autofree char *x = sieve_run_expand (run, explicit_flags[i]);
          g_string_append_printf (s, "%s%s", s->len ? " " : "", x);
        }
    }
  else
    {
      g_hash_table_iter_init (&it, run->flags);
      while (g_hash_table_iter_next (&it, &f, NULL))
        g_string_append_printf (s, "%s%s", s->len ? " " : "", (char *) f);
    }
  return s->len ? g_strdup (s->str) : NULL;
}

gboolean
sieve_run_test (SieveRun *run, const SieveNode *t)
{
  if (sieve_run_out_of_time (run))
    return FALSE;
  if (run->m->trace)
    return sieve_trace_test (run, t);
  return t->def->test (run, t);
}

/* Each command counts against the step budget and the deadline; any
 * command but if, elsif and else ends an if chain. */
static void
run_command (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  if (run->error || run->stopped || run->returned || run->breaking)
    return;
  if (++run->steps > MAX_STEPS)
    sieve_run_fail (run, SIEVE_ERROR_LIMIT, "script ran too long");
  if (sieve_run_out_of_time (run))
    return;
  if (run->m->trace)
    sieve_trace_command (run, c, *if_taken);
  run->command = c;
  c->def->command (run, c, if_taken);
  run->trace_if = NULL;
  if (!(c->def->flags & (SIEVE_DEF_IF | SIEVE_DEF_ELSE)))
    *if_taken = FALSE;
}

void
sieve_run_block (SieveRun *run, const GPtrArray *commands)
{
  gboolean if_taken = FALSE;

  run->trace_block++;
  for (guint i = 0; i < commands->len && !run->stopped && !run->returned && !run->error && !run->breaking; i++)
    run_command (run, commands->pdata[i], &if_taken);
  run->trace_block--;
}

static void
run_init (SieveRun *run, const SieveScript *script, const SieveMessage *msg, SieveResult *out)
{
  memset (run, 0, sizeof *run);
  run->s = script;
  run->m = msg;
  run->r = out;
  out->actions = g_ptr_array_new_with_free_func (sieve_action_free);
  out->edits = g_ptr_array_new_with_free_func (sieve_header_edit_free);
  out->duplicates = g_ptr_array_new_with_free_func (sieve_duplicate_free);
  out->changes = g_ptr_array_new_with_free_func (sieve_change_free);
  out->error = NULL;
  run->now = msg->now ? msg->now : g_get_real_time () / G_USEC_PER_SEC;
  run->vars = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  run->flags = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  run->variables = g_hash_table_contains (script->caps, "variables");
  run->imap4flags = g_hash_table_contains (script->caps, "imap4flags");
  run->implicit_keep = TRUE;
  run->deadline = g_get_monotonic_time () + 1000 * (gint64) (msg->max_time_ms ? msg->max_time_ms : MAX_TIME_MS);
  run->mem_max = msg->max_memory ? msg->max_memory : MAX_MEMORY;
  run->var_max = msg->max_variable_size ? msg->max_variable_size : MAX_VARIABLE_SIZE;
  sieve_include_init (run);
}

void
sieve_run (const SieveScript *script, const SieveMessage *msg, SieveResult *out)
{
  SieveRun run;

  run_init (&run, script, msg, out);
  sieve_run_block (&run, script->commands);
  if (run.error)
    {
      /* RFC 5228 2.10.6: stop, say so, keep */
      out->error = g_strdup (run.error->message);
      g_ptr_array_set_size (out->actions, 0);
      g_ptr_array_set_size (out->edits, 0);
      g_ptr_array_set_size (out->duplicates, 0); /* RFC 7352 3: only a run that succeeds records */
      g_ptr_array_set_size (out->changes, 0);
      run.implicit_keep = TRUE;
      g_hash_table_remove_all (run.flags);
      g_error_free (run.error);
    }
  out->implicit_keep = run.implicit_keep;
  if (run.implicit_keep)
    {
      SieveAction *k = g_new0 (SieveAction, 1);
      k->kind = SIEVE_KEEP;
      k->flags = sieve_run_flags_string (&run, NULL);
      k->edits_before = out->edits->len;
      k->changes_before = out->changes->len;
      g_ptr_array_add (out->actions, k);
    }
  for (guint i = 0; i < 10; i++)
    g_free (run.mv[i]);
  g_hash_table_unref (run.vars);
  g_hash_table_unref (run.flags);
  sieve_trace_clear (&run);
  sieve_include_clear (&run);
  sieve_changed_clear (&run);
}
