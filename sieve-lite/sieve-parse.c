/* sieve-parse.c - the parser for Sieve (RFC 5228 section 8.2): commands,
 * arguments, tests and blocks into a syntax tree, with the nesting
 * bounded.  What the names and arguments mean is sieve-validate.c's job.
 */
#include "config.h"

#include <string.h>

#include "sieve-lexer.h"
#include "sieve-private.h"

#define MAX_DEPTH 32

static void
arg_free (gpointer p)
{
  SieveArg *a = p;
  g_strfreev (a->strings);
  g_free (a->tag);
  g_free (a);
}

/* The node owns what validation parsed into it. */
void
sieve_args_free (SieveArgs *a)
{
  if (a == NULL)
    return;
  g_clear_pointer (&a->modifiers, g_ptr_array_unref);
  g_clear_pointer (&a->pos, g_ptr_array_unref);
  g_free (a);
}

void
sieve_node_free (gpointer p)
{
  SieveNode *n = p;
  if (n == NULL)
    return;
  g_free (n->name);
  g_ptr_array_unref (n->args);
  g_ptr_array_unref (n->tests);
  if (n->block)
    g_ptr_array_unref (n->block);
  sieve_args_free (n->parsed);
  g_free (n);
}

static SieveNode *
node_new (char *name, int line, int col)
{
  SieveNode *n = g_new0 (SieveNode, 1);
  n->name = name;
  n->line = line;
  n->col = col;
  n->args = g_ptr_array_new_with_free_func (arg_free);
  n->tests = g_ptr_array_new_with_free_func (sieve_node_free);
  return n;
}

static SieveArg *
arg_new (SieveArgKind kind)
{
  SieveArg *a = g_new0 (SieveArg, 1);
  a->kind = kind;
  return a;
}

/* "[" string *("," string) "]", at the '[' */
static char **
string_list (SieveLexer *lx)
{
  g_autoptr (GPtrArray) list = g_ptr_array_new_with_free_func (g_free);

  sieve_lexer_advance (lx, 1);
  for (;;)
    {
      char *s = sieve_lexer_string (lx);
      if (s == NULL)
        {
          sieve_lexer_fail (lx, "expected a string in the list");
          return NULL;
        }
      g_ptr_array_add (list, s);
      if (sieve_lexer_eat (lx, ','))
        continue;
      if (sieve_lexer_eat (lx, ']'))
        break;
      sieve_lexer_fail (lx, "expected ',' or ']'");
      return NULL;
    }
  g_ptr_array_add (list, NULL);
  g_ptr_array_set_free_func (list, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&list), FALSE);
}

/* One argument at the lexer's position: *@a is NULL where none starts
 * (a test, ';' or '{' follows); FALSE on a syntax error. */
static gboolean
parse_argument (SieveLexer *lx, SieveArg **a)
{
  *a = NULL;
  if (*lx->p == ':')
    {
      char *t;
      sieve_lexer_advance (lx, 1);
      t = sieve_lexer_identifier (lx);
      if (t == NULL)
        return sieve_lexer_fail (lx, "a tag needs a name");
      *a = arg_new (SIEVE_ARG_TAG);
      (*a)->tag = t;
      return TRUE;
    }
  if (g_ascii_isdigit (*lx->p))
    {
      guint64 v;
      if (!sieve_lexer_number (lx, &v))
        return FALSE;
      *a = arg_new (SIEVE_ARG_NUMBER);
      (*a)->number = v;
      return TRUE;
    }
  if (sieve_lexer_at_string (lx))
    {
      char *s = sieve_lexer_string (lx);
      if (s == NULL)
        return FALSE;
      *a = arg_new (SIEVE_ARG_STRINGS);
      (*a)->strings = g_new0 (char *, 2);
      (*a)->strings[0] = s;
      return TRUE;
    }
  if (*lx->p == '[')
    {
      char **list = string_list (lx);
      if (list == NULL)
        return FALSE;
      *a = arg_new (SIEVE_ARG_STRINGS);
      (*a)->strings = list;
    }
  return TRUE;
}

static SieveNode *parse_test (SieveLexer *lx, int depth);

/* "(" test *("," test) ")", at the '(' */
static gboolean
parse_test_list (SieveLexer *lx, SieveNode *n, int depth)
{
  sieve_lexer_advance (lx, 1);
  for (;;)
    {
      SieveNode *t = parse_test (lx, depth + 1);
      if (t == NULL)
        return FALSE;
      g_ptr_array_add (n->tests, t);
      if (sieve_lexer_eat (lx, ','))
        continue;
      if (sieve_lexer_eat (lx, ')'))
        return TRUE;
      return sieve_lexer_fail (lx, "expected ',' or ')' in a test list");
    }
}

/* *argument [test / test-list] */
static gboolean
parse_arguments (SieveLexer *lx, SieveNode *n, int depth)
{
  for (;;)
    {
      SieveArg *a;
      if (!sieve_lexer_skip (lx) || sieve_lexer_at_end (lx))
        return TRUE;
      if (!parse_argument (lx, &a))
        return FALSE;
      if (a == NULL)
        break;
      g_ptr_array_add (n->args, a);
    }
  if (*lx->p == '(')
    return parse_test_list (lx, n, depth);
  if (g_ascii_isalpha (*lx->p))
    {
      SieveNode *t = parse_test (lx, depth + 1);
      if (t == NULL)
        return FALSE;
      g_ptr_array_add (n->tests, t);
    }
  return TRUE;
}

/* An identifier and its arguments: a test, or a command up to its ';'
 * or block. */
static SieveNode *
parse_node (SieveLexer *lx, int depth, const char *what)
{
  int line, col;
  char *name;
  SieveNode *n;

  sieve_lexer_skip (lx);
  line = lx->line;
  col = lx->col;
  name = sieve_lexer_identifier (lx);
  if (name == NULL)
    {
      sieve_lexer_fail (lx, "expected %s", what);
      return NULL;
    }
  n = node_new (name, line, col);
  if (!parse_arguments (lx, n, depth))
    {
      sieve_node_free (n);
      return NULL;
    }
  return n;
}

static SieveNode *
parse_test (SieveLexer *lx, int depth)
{
  if (depth > MAX_DEPTH)
    {
      sieve_lexer_fail (lx, "tests nested too deeply");
      return NULL;
    }
  return parse_node (lx, depth, "a test");
}

static GPtrArray *parse_commands (SieveLexer *lx, int depth, gboolean in_block);

static SieveNode *
parse_command (SieveLexer *lx, int depth)
{
  SieveNode *c = parse_node (lx, depth, "a command");

  if (c == NULL)
    return NULL;
  if (sieve_lexer_eat (lx, ';'))
    return c;
  if (sieve_lexer_eat (lx, '{'))
    {
      c->block = parse_commands (lx, depth + 1, TRUE);
      if (c->block != NULL)
        return c;
    }
  else
    sieve_lexer_fail (lx, "expected ';' or '{' after %s", c->name);
  sieve_node_free (c);
  return NULL;
}

/* At the end of the text or a '}': is it the end of this list? */
static gboolean
commands_end (SieveLexer *lx, gboolean in_block, gboolean *bad)
{
  *bad = FALSE;
  if (sieve_lexer_at_end (lx))
    {
      if (in_block)
        {
          sieve_lexer_fail (lx, "missing '}'");
          *bad = TRUE;
        }
      return TRUE;
    }
  if (*lx->p != '}')
    return FALSE;
  if (in_block)
    sieve_lexer_advance (lx, 1);
  else
    {
      sieve_lexer_fail (lx, "unexpected '}'");
      *bad = TRUE;
    }
  return TRUE;
}

static GPtrArray *
parse_commands (SieveLexer *lx, int depth, gboolean in_block)
{
  g_autoptr (GPtrArray) cmds = g_ptr_array_new_with_free_func (sieve_node_free);
  gboolean bad;

  if (depth > MAX_DEPTH)
    {
      sieve_lexer_fail (lx, "blocks nested too deeply");
      return NULL;
    }
  for (;;)
    {
      SieveNode *c;
      if (!sieve_lexer_skip (lx))
        return NULL;
      if (commands_end (lx, in_block, &bad))
        return bad ? NULL : g_steal_pointer (&cmds);
      c = parse_command (lx, depth);
      if (c == NULL)
        return NULL;
      g_ptr_array_add (cmds, c);
    }
}

GPtrArray *
sieve_parse (const char *text, gsize len, GError **error)
{
  SieveLexer lx;

  sieve_lexer_init (&lx, text, len, error);
  return parse_commands (&lx, 0, FALSE);
}
