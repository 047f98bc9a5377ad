/* sieve-include.c - include, return and global (RFC 6609): a script runs
 * others of the user's or the site's, which the caller compiles and hands
 * over (SieveMessage.include), each in a frame of its own: its own
 * variables and capabilities, the run's actions, limits and implicit
 * keep.  Recursion, a missing script and the bounds on nesting and on
 * the number of includes are runtime errors (3.1, 3.2).
 */
#include "config.h"

#include <string.h>

#include "sieve-run.h"

#define MAX_NESTING 10      /* included scripts deep, as Pigeonhole */
#define MAX_INCLUDES 255    /* includes a run, as Pigeonhole */
#define MAX_NAME 255        /* bytes of a script name */

/* A script's own state, set aside while a script it includes runs. */
typedef struct {
  const SieveScript *s;
  GHashTable *vars, *declared;
  gboolean variables, imap4flags, include;
} Frame;

/* RFC 5804 1.6 (which 3.2 asks for) and what is safe as a file name
 * (section 4: "./../..//etc/passwd" is hostile): NULL or what is wrong. */
static const char *
bad_name (const char *name)
{
  if (name[0] == '\0')
    return "is empty";
  if (strlen (name) > MAX_NAME)
    return "is too long";
  if (name[0] == '.')
    return "starts with '.'";
  if (strchr (name, '/'))
    return "contains '/'";
  for (const char *p = name; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0x2028 || c == 0x2029)
        return "contains a control character";
    }
  return NULL;
}

/* 3.2: one location at most, a name that is a safe constant (it is never
 * expanded: "${x}" is a name like any other). */
gboolean
sieve_check_include (const SieveNode *c, GError **error)
{
  const SieveArgs *a = c->parsed;
  const char *why = bad_name (sieve_args_string (a, 0));

  if (a->personal && a->global)
    {
      sieve_node_fail (error, c, ":personal and :global together");
      return FALSE;
    }
  if (why)
    {
      g_autofree char *shown = sieve_printable (sieve_args_string (a, 0), 64);
      sieve_node_fail (error, c, "the script name '%s' %s", shown, why);
      return FALSE;
    }
  return TRUE;
}

static gboolean
identifier (const char *name)
{
  if (!(g_ascii_isalpha (name[0]) || name[0] == '_'))
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!(g_ascii_isalnum (*p) || *p == '_'))
      return FALSE;
  return TRUE;
}

/* 3.4.2: "global." and an identifier, with "include" required ("MUST
 * cause an error" without) */
const char *
sieve_set_name_problem (const char *name, GHashTable *caps)
{
  if (g_ascii_strncasecmp (name, "global.", 7) != 0)
    return NULL;
  if (!g_hash_table_contains (caps, "include"))
    return "the global namespace needs require \"include\"";
  return identifier (name + 7) ? NULL : "not a variable name in the global namespace";
}

/* 3.4.1: "An invalid name MUST be detected as a syntax error": no match
 * variable, no namespace. */
gboolean
sieve_check_global (const SieveNode *c, GError **error)
{
  char **names = sieve_args_list (c->parsed, 0);

  for (guint i = 0; names[i]; i++)
    if (!identifier (names[i]))
      {
        g_autofree char *shown = sieve_printable (names[i], 64);
        sieve_node_fail (error, c, "'%s' is not a variable name", shown);
        return FALSE;
      }
  return TRUE;
}

/* 3.4.1: a name set before in this script cannot become global. */
void
sieve_cmd_global (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  char **names = sieve_args_list (c->parsed, 0);

  if (run->declared == NULL)
    run->declared = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; names[i] && !run->error; i++)
    {
      char *name = g_ascii_strdown (names[i], -1);
      if (g_hash_table_contains (run->vars, name))
        {
          g_autofree char *why = g_strdup_printf ("global: '%s' was set before as a local variable", name);
          sieve_run_fail (run, SIEVE_ERROR_RUNTIME, why);
          g_free (name);
        }
      else
        g_hash_table_add (run->declared, name);
    }
}

/* 3.3: the end of the running script; in the main one, as stop. */
void
sieve_cmd_return (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  if (run->chain->len == 0)
    run->stopped = TRUE;
  else
    run->returned = TRUE;
}

static void
frame_enter (SieveRun *run, const SieveScript *s, Frame *saved)
{
  *saved = (Frame) { run->s, run->vars, run->declared, run->variables, run->imap4flags, run->include };
  run->s = s;
  run->vars = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  run->declared = NULL;
  /* 3.2: "The scope of a "require" statement is the script in which it
   * immediately appears" */
  run->variables = g_hash_table_contains (s->caps, "variables");
  run->imap4flags = g_hash_table_contains (s->caps, "imap4flags");
  run->include = g_hash_table_contains (s->caps, "include");
}

static void
frame_leave (SieveRun *run, const Frame *saved)
{
  g_hash_table_unref (run->vars);
  g_clear_pointer (&run->declared, g_hash_table_unref);
  run->s = saved->s;
  run->vars = saved->vars;
  run->declared = saved->declared;
  run->variables = saved->variables;
  run->imap4flags = saved->imap4flags;
  run->include = saved->include;
  run->returned = FALSE;
}

static gboolean
in_chain (SieveRun *run, const char *key)
{
  for (guint i = 0; i < run->chain->len; i++)
    if (strcmp (run->chain->pdata[i], key) == 0)
      return TRUE;
  return FALSE;
}

/* The script to include, or NULL (after a runtime error unless it is
 * missing and optional). */
static const SieveScript *
load (SieveRun *run, const SieveArgs *a, const char *name)
{
  const SieveMessage *m = run->m;
  const char *where = a->global ? "global" : "personal";
  g_autofree char *error = NULL, *why = NULL, *shown = sieve_printable (name, 64);
  const SieveScript *s = m->include ? m->include (a->global, name, &error, m->site_data) : NULL;

  if (s == NULL && error)
    why = g_strdup_printf ("include: %s script '%s': %s", where, shown, error);
  else if (s == NULL && !a->optional)
    /* 3.2: "MUST generate an error at execution time if an included
     * script does not exist, except when ":optional" is specified" */
    why = g_strdup_printf ("include: %s script '%s' does not exist", where, shown);
  if (why)
    sieve_run_fail (run, SIEVE_ERROR_RUNTIME, why);
  return s;
}

void
sieve_cmd_include (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  const SieveArgs *a = c->parsed;
  const char *name = sieve_args_string (a, 0);
  g_autofree char *key = g_strconcat (a->global ? "global:" : "personal:", name, NULL);
  const SieveScript *s;
  Frame saved;

  /* 3.2: :once skips a script included before, and one whose inclusion
   * would be recursive */
  if (a->once && g_hash_table_contains (run->included, key))
    return;
  if (in_chain (run, key))
    {
      sieve_run_fail (run, SIEVE_ERROR_RUNTIME, "include: a script includes itself (recursion)");
      return;
    }
  if (run->chain->len >= MAX_NESTING || ++run->includes > MAX_INCLUDES)
    {
      sieve_run_fail (run, SIEVE_ERROR_LIMIT, run->chain->len >= MAX_NESTING ? "include: nested too deep"
                                                                              : "include: too many includes");
      return;
    }
  if ((s = load (run, a, name)) == NULL)
    return;
  g_hash_table_add (run->included, g_strdup (key));
  g_ptr_array_add (run->chain, g_steal_pointer (&key));
  frame_enter (run, s, &saved);
  sieve_run_block (run, s->commands);
  frame_leave (run, &saved);
  g_ptr_array_remove_index (run->chain, run->chain->len - 1);
}
