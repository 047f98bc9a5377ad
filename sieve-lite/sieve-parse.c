/* sieve-parse.c - lexer and parser for Sieve (RFC 5228 section 8), and the
 * checks that need no message: capabilities, command and test names,
 * argument shapes, if/elsif/else order, nesting.
 */
#include "config.h"

#include <string.h>

#include "sieve-private.h"

G_DEFINE_QUARK (sieve-error-quark, sieve_error)

#define MAX_DEPTH 32

static const char *const known_caps[] = {
  "fileinto", "envelope", "reject", "ereject", "copy", "imap4flags", "subaddress", "editheader",
  "variables", "relational", "body", "spamtest", "spamtestplus", "virustest", "comparator-i;octet",
  "comparator-i;ascii-casemap", "comparator-i;ascii-numeric", "vacation", "mailbox", "vnd.opes-lmtpd.callout", NULL,
};

typedef struct {
  const char *p, *end;
  int line, col;
  GError **error;
  gboolean failed;
} Lexer;

static gboolean G_GNUC_PRINTF (2, 3)
fail (Lexer *lx, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  if (lx->failed)
    return FALSE;
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (lx->error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "%d:%d: %s", lx->line, lx->col, msg);
  lx->failed = TRUE;
  return FALSE;
}

static void
advance (Lexer *lx, gsize n)
{
  while (n-- > 0 && lx->p < lx->end)
    {
      if (*lx->p == '\n')
        {
          lx->line++;
          lx->col = 1;
        }
      else
        lx->col++;
      lx->p++;
    }
}

/* Skips white space and comments. */
static gboolean
skip (Lexer *lx)
{
  for (;;)
    {
      while (lx->p < lx->end && strchr (" \t\r\n", *lx->p))
        advance (lx, 1);
      if (lx->p < lx->end && *lx->p == '#')
        {
          while (lx->p < lx->end && *lx->p != '\n')
            advance (lx, 1);
          continue;
        }
      if (lx->end - lx->p >= 2 && lx->p[0] == '/' && lx->p[1] == '*')
        {
          const char *close = g_strstr_len (lx->p + 2, lx->end - lx->p - 2, "*/");
          if (close == NULL)
            return fail (lx, "unterminated comment");
          advance (lx, close + 2 - lx->p);
          continue;
        }
      return TRUE;
    }
}

static gboolean
peek (Lexer *lx, char c)
{
  return skip (lx) && lx->p < lx->end && *lx->p == c;
}

static gboolean
eat (Lexer *lx, char c)
{
  if (!peek (lx, c))
    return FALSE;
  advance (lx, 1);
  return TRUE;
}

static char *
identifier (Lexer *lx)
{
  const char *s;

  if (!skip (lx) || lx->p >= lx->end || !(g_ascii_isalpha (*lx->p) || *lx->p == '_'))
    return NULL;
  s = lx->p;
  while (lx->p < lx->end && (g_ascii_isalnum (*lx->p) || *lx->p == '_'))
    advance (lx, 1);
  return g_ascii_strdown (s, lx->p - s);
}

static char *
quoted (Lexer *lx)
{
  GString *s = g_string_new (NULL);

  advance (lx, 1); /* " */
  while (lx->p < lx->end && *lx->p != '"')
    {
      if (*lx->p == '\\' && lx->p + 1 < lx->end)
        advance (lx, 1);
      g_string_append_c (s, *lx->p);
      advance (lx, 1);
    }
  if (lx->p >= lx->end)
    {
      g_string_free (s, TRUE);
      fail (lx, "unterminated string");
      return NULL;
    }
  advance (lx, 1);
  return g_string_free (s, FALSE);
}

/* text: ... CRLF "." CRLF, with dot-stuffing (RFC 5228 2.4.2) */
static char *
multiline (Lexer *lx)
{
  GString *s = g_string_new (NULL);

  advance (lx, 5);
  while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t'))
    advance (lx, 1);
  if (lx->p < lx->end && *lx->p == '#')
    while (lx->p < lx->end && *lx->p != '\n')
      advance (lx, 1);
  if (lx->p < lx->end && *lx->p == '\r')
    advance (lx, 1);
  if (lx->p >= lx->end || *lx->p != '\n')
    {
      g_string_free (s, TRUE);
      fail (lx, "text: must end its line");
      return NULL;
    }
  advance (lx, 1);
  for (;;)
    {
      const char *nl = memchr (lx->p, '\n', lx->end - lx->p);
      gsize n;
      if (nl == NULL)
        {
          g_string_free (s, TRUE);
          fail (lx, "unterminated text: block");
          return NULL;
        }
      n = nl - lx->p;
      if (n > 0 && lx->p[n - 1] == '\r')
        n--;
      if (n == 1 && lx->p[0] == '.')
        {
          advance (lx, nl + 1 - lx->p);
          return g_string_free (s, FALSE);
        }
      g_string_append_len (s, lx->p + (lx->p[0] == '.' && n > 1 && lx->p[1] == '.'), n - (lx->p[0] == '.' && n > 1 && lx->p[1] == '.'));
      g_string_append (s, "\r\n");
      advance (lx, nl + 1 - lx->p);
    }
}

static char *
string (Lexer *lx)
{
  if (!skip (lx) || lx->p >= lx->end)
    return NULL;
  if (*lx->p == '"')
    return quoted (lx);
  if (lx->end - lx->p >= 5 && g_ascii_strncasecmp (lx->p, "text:", 5) == 0)
    return multiline (lx);
  return NULL;
}

static void
arg_free (gpointer p)
{
  SieveArg *a = p;
  g_strfreev (a->strings);
  g_free (a->tag);
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
  g_free (n);
}

static SieveNode *
node_new (Lexer *lx, char *name)
{
  SieveNode *n = g_new0 (SieveNode, 1);
  n->name = name;
  n->line = lx->line;
  n->col = lx->col;
  n->args = g_ptr_array_new_with_free_func (arg_free);
  n->tests = g_ptr_array_new_with_free_func (sieve_node_free);
  return n;
}

static SieveNode *parse_test (Lexer *lx, int depth);

/* *argument [test / test-list] */
static gboolean
parse_arguments (Lexer *lx, SieveNode *n, int depth)
{
  for (;;)
    {
      SieveArg *a;
      if (!skip (lx) || lx->p >= lx->end)
        return TRUE;
      if (*lx->p == ':')
        {
          char *t;
          advance (lx, 1);
          t = identifier (lx);
          if (t == NULL)
            return fail (lx, "a tag needs a name");
          a = g_new0 (SieveArg, 1);
          a->kind = SIEVE_ARG_TAG;
          a->tag = t;
          g_ptr_array_add (n->args, a);
          continue;
        }
      if (g_ascii_isdigit (*lx->p))
        {
          guint64 v = 0;
          while (lx->p < lx->end && g_ascii_isdigit (*lx->p))
            {
              if (v > G_MAXUINT64 / 20)
                return fail (lx, "number too large");
              v = v * 10 + (*lx->p - '0');
              advance (lx, 1);
            }
          if (lx->p < lx->end && strchr ("kKmMgG", *lx->p))
            {
              switch (g_ascii_tolower (*lx->p))
                {
                case 'k': v <<= 10; break;
                case 'm': v <<= 20; break;
                default: v <<= 30; break;
                }
              advance (lx, 1);
            }
          a = g_new0 (SieveArg, 1);
          a->kind = SIEVE_ARG_NUMBER;
          a->number = v;
          g_ptr_array_add (n->args, a);
          continue;
        }
      if (*lx->p == '"' || (lx->end - lx->p >= 5 && g_ascii_strncasecmp (lx->p, "text:", 5) == 0))
        {
          char *s = string (lx);
          if (s == NULL)
            return FALSE;
          a = g_new0 (SieveArg, 1);
          a->kind = SIEVE_ARG_STRINGS;
          a->strings = g_new0 (char *, 2);
          a->strings[0] = s;
          g_ptr_array_add (n->args, a);
          continue;
        }
      if (*lx->p == '[')
        {
          GPtrArray *list = g_ptr_array_new_with_free_func (g_free);
          advance (lx, 1);
          for (;;)
            {
              char *s = string (lx);
              if (s == NULL)
                {
                  g_ptr_array_free (list, TRUE);
                  return fail (lx, "expected a string in the list");
                }
              g_ptr_array_add (list, s);
              if (eat (lx, ','))
                continue;
              if (eat (lx, ']'))
                break;
              g_ptr_array_free (list, TRUE);
              return fail (lx, "expected ',' or ']'");
            }
          g_ptr_array_add (list, NULL);
          a = g_new0 (SieveArg, 1);
          a->kind = SIEVE_ARG_STRINGS;
          a->strings = (char **) g_ptr_array_free (list, FALSE);
          g_ptr_array_add (n->args, a);
          continue;
        }
      break;
    }
  /* a test or a test list */
  if (*lx->p == '(')
    {
      advance (lx, 1);
      for (;;)
        {
          SieveNode *t = parse_test (lx, depth + 1);
          if (t == NULL)
            return FALSE;
          g_ptr_array_add (n->tests, t);
          if (eat (lx, ','))
            continue;
          if (eat (lx, ')'))
            return TRUE;
          return fail (lx, "expected ',' or ')' in a test list");
        }
    }
  if (g_ascii_isalpha (*lx->p))
    {
      SieveNode *t = parse_test (lx, depth + 1);
      if (t == NULL)
        return FALSE;
      g_ptr_array_add (n->tests, t);
    }
  return TRUE;
}

static SieveNode *
parse_test (Lexer *lx, int depth)
{
  char *name;
  SieveNode *t;
  int line, col;

  if (depth > MAX_DEPTH)
    {
      fail (lx, "tests nested too deeply");
      return NULL;
    }
  skip (lx);
  line = lx->line;
  col = lx->col;
  name = identifier (lx);
  if (name == NULL)
    {
      fail (lx, "expected a test");
      return NULL;
    }
  t = node_new (lx, name);
  t->line = line;
  t->col = col;
  if (!parse_arguments (lx, t, depth))
    {
      sieve_node_free (t);
      return NULL;
    }
  return t;
}

static GPtrArray *parse_commands (Lexer *lx, int depth, gboolean in_block);

static SieveNode *
parse_command (Lexer *lx, int depth)
{
  int line, col;
  char *name;
  SieveNode *c;

  skip (lx);
  line = lx->line;
  col = lx->col;
  name = identifier (lx);
  if (name == NULL)
    {
      fail (lx, "expected a command");
      return NULL;
    }
  c = node_new (lx, name);
  c->line = line;
  c->col = col;
  if (!parse_arguments (lx, c, depth))
    goto bad;
  if (eat (lx, ';'))
    return c;
  if (eat (lx, '{'))
    {
      c->block = parse_commands (lx, depth + 1, TRUE);
      if (c->block == NULL)
        goto bad;
      return c;
    }
  fail (lx, "expected ';' or '{' after %s", name);
bad:
  sieve_node_free (c);
  return NULL;
}

static GPtrArray *
parse_commands (Lexer *lx, int depth, gboolean in_block)
{
  GPtrArray *cmds = g_ptr_array_new_with_free_func (sieve_node_free);

  if (depth > MAX_DEPTH)
    {
      fail (lx, "blocks nested too deeply");
      goto bad;
    }
  for (;;)
    {
      SieveNode *c;
      if (!skip (lx))
        goto bad;
      if (lx->p >= lx->end)
        {
          if (in_block)
            {
              fail (lx, "missing '}'");
              goto bad;
            }
          return cmds;
        }
      if (*lx->p == '}')
        {
          if (!in_block)
            {
              fail (lx, "unexpected '}'");
              goto bad;
            }
          advance (lx, 1);
          return cmds;
        }
      c = parse_command (lx, depth);
      if (c == NULL)
        goto bad;
      g_ptr_array_add (cmds, c);
    }
bad:
  g_ptr_array_unref (cmds);
  return NULL;
}

/* ---- validation ------------------------------------------------------------ */

typedef struct {
  const char *name;
  const char *cap;     /* capability it needs, or NULL */
  gboolean is_test;
} Known;

static const Known knowns[] = {
  { "require", NULL, FALSE }, { "if", NULL, FALSE }, { "elsif", NULL, FALSE }, { "else", NULL, FALSE },
  { "stop", NULL, FALSE }, { "keep", NULL, FALSE }, { "discard", NULL, FALSE }, { "redirect", NULL, FALSE },
  { "fileinto", "fileinto", FALSE }, { "reject", "reject", FALSE }, { "ereject", "ereject", FALSE },
  { "setflag", "imap4flags", FALSE }, { "addflag", "imap4flags", FALSE }, { "removeflag", "imap4flags", FALSE },
  { "set", "variables", FALSE }, { "vacation", "vacation", FALSE }, { "addheader", "editheader", FALSE }, { "deleteheader", "editheader", FALSE },
  { "address", NULL, TRUE }, { "allof", NULL, TRUE }, { "anyof", NULL, TRUE }, { "exists", NULL, TRUE },
  { "false", NULL, TRUE }, { "header", NULL, TRUE }, { "not", NULL, TRUE }, { "size", NULL, TRUE },
  { "true", NULL, TRUE }, { "envelope", "envelope", TRUE }, { "hasflag", "imap4flags", TRUE },
  { "string", "variables", TRUE }, { "body", "body", TRUE }, { "spamtest", "spamtest", TRUE },
  { "virustest", "virustest", TRUE }, { "mailboxexists", "mailbox", TRUE }, { "callout", "vnd.opes-lmtpd.callout", TRUE },
};

static gboolean
validate (Lexer *lx, SieveScript *s, GPtrArray *cmds, gboolean top)
{
  const char *prev = NULL;
  gboolean requires_allowed = top;

  for (guint i = 0; i < cmds->len; i++)
    {
      SieveNode *c = cmds->pdata[i];
      const Known *k = NULL;
      lx->line = c->line;
      lx->col = c->col;
      for (guint j = 0; j < G_N_ELEMENTS (knowns); j++)
        if (strcmp (knowns[j].name, c->name) == 0)
          k = &knowns[j];
      if (k == NULL || k->is_test)
        return fail (lx, "unknown command '%s'", c->name);
      if (k->cap && !g_hash_table_contains (s->caps, k->cap))
        return fail (lx, "'%s' needs require \"%s\"", c->name, k->cap);
      if (strcmp (c->name, "require") == 0)
        {
          SieveArg *a = c->args->len == 1 ? c->args->pdata[0] : NULL;
          if (!requires_allowed)
            return fail (lx, "require must come before other commands");
          if (a == NULL || a->kind != SIEVE_ARG_STRINGS)
            return fail (lx, "require takes a string list");
          for (guint j = 0; a->strings[j]; j++)
            {
              if (!g_strv_contains (known_caps, a->strings[j]))
                return fail (lx, "unsupported extension \"%s\"", a->strings[j]);
              g_hash_table_add (s->caps, g_strdup (a->strings[j]));
              if (strcmp (a->strings[j], "spamtestplus") == 0)
                g_hash_table_add (s->caps, g_strdup ("spamtest"));
            }
        }
      else
        requires_allowed = FALSE;
      if ((strcmp (c->name, "elsif") == 0 || strcmp (c->name, "else") == 0)
          && !(prev && (strcmp (prev, "if") == 0 || strcmp (prev, "elsif") == 0)))
        return fail (lx, "%s without if", c->name);
      if ((strcmp (c->name, "if") == 0 || strcmp (c->name, "elsif") == 0)
          && (c->tests->len != 1 || c->block == NULL))
        return fail (lx, "%s needs one test and a block", c->name);
      if (strcmp (c->name, "else") == 0 && (c->tests->len || c->block == NULL))
        return fail (lx, "else needs a block and no test");
      if (c->block && strcmp (c->name, "if") && strcmp (c->name, "elsif") && strcmp (c->name, "else"))
        return fail (lx, "%s takes no block", c->name);
      if (!c->block && (strcmp (c->name, "if") == 0 || strcmp (c->name, "elsif") == 0))
        return fail (lx, "%s needs a block", c->name);
      for (guint t = 0; t < c->tests->len; t++)
        if (!sieve_validate_test (lx->error, s, c->tests->pdata[t]))
          {
            lx->failed = TRUE;
            return FALSE;
          }
      if (!sieve_validate_command (lx->error, s, c))
        {
          lx->failed = TRUE;
          return FALSE;
        }
      if (c->block && !validate (lx, s, c->block, FALSE))
        return FALSE;
      prev = c->name;
    }
  return TRUE;
}

gboolean
sieve_known_test (const char *name, const char **cap)
{
  for (guint j = 0; j < G_N_ELEMENTS (knowns); j++)
    if (knowns[j].is_test && strcmp (knowns[j].name, name) == 0)
      {
        *cap = knowns[j].cap;
        return TRUE;
      }
  return FALSE;
}

SieveScript *
sieve_compile (const char *text, gsize len, GError **error)
{
  Lexer lx = { text, text + len, 1, 1, error, FALSE };
  SieveScript *s;
  GPtrArray *cmds;

  if (!g_utf8_validate (text, len, NULL))
    {
      g_set_error (error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "1:1: the script is not UTF-8");
      return NULL;
    }
  cmds = parse_commands (&lx, 0, FALSE);
  if (cmds == NULL)
    return NULL;
  s = g_new0 (SieveScript, 1);
  s->commands = cmds;
  s->caps = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  if (!validate (&lx, s, cmds, TRUE))
    {
      sieve_script_free (s);
      return NULL;
    }
  return s;
}

void
sieve_script_free (SieveScript *s)
{
  if (s == NULL)
    return;
  g_ptr_array_unref (s->commands);
  g_hash_table_unref (s->caps);
  g_free (s);
}
