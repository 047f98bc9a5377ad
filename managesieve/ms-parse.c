/* ms-parse.c - a ManageSieve command off the wire (RFC 5804 4): a verb,
 * then atoms, quoted strings and literals separated by spaces.
 *
 * A literal ends its line; the command goes on on the line after its
 * bytes.  {N+} and {N} are read alike and neither gets a continuation
 * (the server sends none, RFC 5804 4 literal-c2s).  A literal over the
 * limit is read and dropped if it is at most four times the limit (the
 * client then gets NO (QUOTA/MAXSIZE)); a larger one ends the connection,
 * as does a line over MS_MAX_LINE.
 */
#include "config.h"

#include <string.h>

#include "managesieve.h"

typedef struct {
  MsConn *conn;
  gsize max_literal;
  GString *line;
  gsize pos;
  gboolean too_big;
  char *why;
} Parser;

static MsParseResult
fail (Parser *p, MsParseResult r, const char *why)
{
  if (p->why == NULL)
    p->why = g_strdup (why);
  return r;
}

static MsParseResult
next_line (Parser *p)
{
  gboolean too_long = FALSE;

  p->pos = 0;
  if (ms_conn_read_line (p->conn, MS_MAX_LINE, p->line, &too_long))
    return MS_PARSE_OK;
  return fail (p, MS_PARSE_FATAL, too_long ? "line too long" : NULL);
}

/* "\"...\"" with \\ and \" the only escapes (QUOTED-SPECIALS). */
static MsParseResult
quoted (Parser *p, GString *out)
{
  const char *s = p->line->str;

  for (gsize i = p->pos + 1; i < p->line->len; i++)
    {
      if (s[i] == '"')
        {
          p->pos = i + 1;
          return MS_PARSE_OK;
        }
      if (s[i] == '\\' && (s[i + 1] == '\\' || s[i + 1] == '"'))
        i++;
      else if (s[i] == '\\' || s[i] == '\0')
        return fail (p, MS_PARSE_SYNTAX, "bad character in a quoted string");
      g_string_append_c (out, s[i]);
    }
  return fail (p, MS_PARSE_SYNTAX, "unterminated quoted string");
}

/* "{N+}" or "{N}" at the end of the line, then N bytes, then the rest of
 * the command on the next line. */
static MsParseResult
literal (Parser *p, GString *out)
{
  const char *s = p->line->str + p->pos + 1;
  char *end = NULL;
  guint64 n;

  if (!g_ascii_isdigit (*s))
    return fail (p, MS_PARSE_SYNTAX, "bad literal");
  n = g_ascii_strtoull (s, &end, 10);
  if (*end == '+')
    end++;
  if (*end != '}' || end[1] != '\0' || end - s > 10)
    return fail (p, MS_PARSE_SYNTAX, "bad literal");
  if (n > p->max_literal)
    {
      if (n > (guint64) p->max_literal * 4)
        return fail (p, MS_PARSE_FATAL, "literal too large");
      p->too_big = TRUE;
    }
  if (!ms_conn_read_bytes (p->conn, n, p->too_big ? NULL : out))
    return fail (p, MS_PARSE_FATAL, NULL);
  return next_line (p);
}

static void
atom (Parser *p, GString *out)
{
  const char *s = p->line->str;

  while (p->pos < p->line->len && s[p->pos] != ' ')
    g_string_append_c (out, s[p->pos++]);
}

/* One argument at p->pos into @out; *@is_string for a string. */
static MsParseResult
argument (Parser *p, GString *out, gboolean *is_string)
{
  char first = p->line->str[p->pos];

  *is_string = first == '"' || first == '{';
  if (first == '"')
    return quoted (p, out);
  if (first == '{')
    return literal (p, out);
  atom (p, out);
  return MS_PARSE_OK;
}

/* Arguments until the line ends; each after one space. */
static MsParseResult
arguments (Parser *p, MsCommand *cmd)
{
  while (p->pos < p->line->len)
    {
      MsParseResult r;
      if (p->line->str[p->pos] != ' ')
        return fail (p, MS_PARSE_SYNTAX, "expected a space between arguments");
      p->pos++;
      if (cmd->n_args == MS_MAX_ARGS)
        return fail (p, MS_PARSE_SYNTAX, "too many arguments");
      cmd->args[cmd->n_args] = g_string_new (NULL);
      r = argument (p, cmd->args[cmd->n_args], &cmd->is_string[cmd->n_args]);
      cmd->n_args++;
      if (r != MS_PARSE_OK)
        return r;
    }
  return MS_PARSE_OK;
}

MsParseResult
ms_read_command (MsConn *c, gsize max_literal, MsCommand *cmd)
{
  Parser p = { c, max_literal, g_string_sized_new (128), 0, FALSE, NULL };
  MsParseResult r = next_line (&p);
  gsize verb_len;

  memset (cmd, 0, sizeof *cmd);
  if (r == MS_PARSE_OK)
    {
      verb_len = strcspn (p.line->str, " ");
      cmd->verb = g_ascii_strup (p.line->str, verb_len);
      p.pos = verb_len;
      r = verb_len ? arguments (&p, cmd) : fail (&p, MS_PARSE_SYNTAX, "empty command");
    }
  if (r == MS_PARSE_OK && p.too_big)
    r = MS_PARSE_TOO_BIG;
  cmd->why = p.why;
  g_string_free (p.line, TRUE);
  return r;
}

MsParseResult
ms_read_string (MsConn *c, gsize max_literal, GString *out, char **why)
{
  Parser p = { c, max_literal, g_string_sized_new (128), 0, FALSE, NULL };
  MsParseResult r = next_line (&p);
  gboolean is_string = FALSE;

  if (r == MS_PARSE_OK && p.line->len == 0)
    r = fail (&p, MS_PARSE_SYNTAX, "expected a string");
  if (r == MS_PARSE_OK)
    r = argument (&p, out, &is_string);
  if (r == MS_PARSE_OK && (!is_string || p.pos != p.line->len))
    r = fail (&p, MS_PARSE_SYNTAX, "expected one string");
  if (r == MS_PARSE_OK && p.too_big)
    r = MS_PARSE_TOO_BIG;
  *why = p.why;
  g_string_free (p.line, TRUE);
  return r;
}

void
ms_command_clear (MsCommand *cmd)
{
  for (guint i = 0; i < cmd->n_args; i++)
    g_string_free (cmd->args[i], TRUE);
  g_free (cmd->verb);
  g_free (cmd->why);
  memset (cmd, 0, sizeof *cmd);
}

void
ms_append_string (GString *out, const char *s, gsize len)
{
  gboolean quotable = len <= 1024 && memchr (s, '\r', len) == NULL && memchr (s, '\n', len) == NULL
                      && memchr (s, '\0', len) == NULL;

  if (!quotable)
    {
      g_string_append_printf (out, "{%" G_GSIZE_FORMAT "}\r\n", len);
      g_string_append_len (out, s, len);
      return;
    }
  g_string_append_c (out, '"');
  for (gsize i = 0; i < len; i++)
    {
      if (s[i] == '"' || s[i] == '\\')
        g_string_append_c (out, '\\');
      g_string_append_c (out, s[i]);
    }
  g_string_append_c (out, '"');
}
