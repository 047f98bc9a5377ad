/* sieve-lexer.c - the tokens of a Sieve script (RFC 5228 section 8.1):
 * white space and comments, identifiers, numbers, quoted strings and
 * text: blocks.  Errors carry the line and column where they were seen.
 */
#include "config.h"

#include <string.h>

#include "sieve-lexer.h"
#include "sieve.h"

void
sieve_lexer_init (SieveLexer *lx, const char *text, gsize len, GError **error)
{
  lx->p = text;
  lx->end = text + len;
  lx->line = 1;
  lx->col = 1;
  lx->error = error;
  lx->failed = FALSE;
}

gboolean
sieve_lexer_fail (SieveLexer *lx, const char *fmt, ...)
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

void
sieve_lexer_advance (SieveLexer *lx, gsize n)
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

gboolean
sieve_lexer_skip (SieveLexer *lx)
{
  for (;;)
    {
      while (lx->p < lx->end && strchr (" \t\r\n", *lx->p))
        sieve_lexer_advance (lx, 1);
      if (lx->p < lx->end && *lx->p == '#')
        {
          while (lx->p < lx->end && *lx->p != '\n')
            sieve_lexer_advance (lx, 1);
          continue;
        }
      if (lx->end - lx->p >= 2 && lx->p[0] == '/' && lx->p[1] == '*')
        {
          const char *close = g_strstr_len (lx->p + 2, lx->end - lx->p - 2, "*/");
          if (close == NULL)
            return sieve_lexer_fail (lx, "unterminated comment");
          sieve_lexer_advance (lx, close + 2 - lx->p);
          continue;
        }
      return TRUE;
    }
}

gboolean
sieve_lexer_at_end (SieveLexer *lx)
{
  return lx->p >= lx->end;
}

gboolean
sieve_lexer_peek (SieveLexer *lx, char c)
{
  return sieve_lexer_skip (lx) && lx->p < lx->end && *lx->p == c;
}

gboolean
sieve_lexer_eat (SieveLexer *lx, char c)
{
  if (!sieve_lexer_peek (lx, c))
    return FALSE;
  sieve_lexer_advance (lx, 1);
  return TRUE;
}

char *
sieve_lexer_identifier (SieveLexer *lx)
{
  const char *s;

  if (!sieve_lexer_skip (lx) || lx->p >= lx->end || !(g_ascii_isalpha (*lx->p) || *lx->p == '_'))
    return NULL;
  s = lx->p;
  while (lx->p < lx->end && (g_ascii_isalnum (*lx->p) || *lx->p == '_'))
    sieve_lexer_advance (lx, 1);
  return g_ascii_strdown (s, lx->p - s);
}

static char *
quoted (SieveLexer *lx)
{
  GString *s = g_string_new (NULL);

  sieve_lexer_advance (lx, 1); /* " */
  while (lx->p < lx->end && *lx->p != '"')
    {
      if (*lx->p == '\\' && lx->p + 1 < lx->end)
        sieve_lexer_advance (lx, 1);
      g_string_append_c (s, *lx->p);
      sieve_lexer_advance (lx, 1);
    }
  if (lx->p >= lx->end)
    {
      g_string_free (s, TRUE);
      sieve_lexer_fail (lx, "unterminated string");
      return NULL;
    }
  sieve_lexer_advance (lx, 1);
  return g_string_free (s, FALSE);
}

/* "text:", blanks and a comment up to the end of the line */
static gboolean
multiline_start (SieveLexer *lx)
{
  sieve_lexer_advance (lx, 5);
  while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t'))
    sieve_lexer_advance (lx, 1);
  if (lx->p < lx->end && *lx->p == '#')
    while (lx->p < lx->end && *lx->p != '\n')
      sieve_lexer_advance (lx, 1);
  if (lx->p < lx->end && *lx->p == '\r')
    sieve_lexer_advance (lx, 1);
  if (lx->p >= lx->end || *lx->p != '\n')
    return sieve_lexer_fail (lx, "text: must end its line");
  sieve_lexer_advance (lx, 1);
  return TRUE;
}

/* text: ... CRLF "." CRLF, with dot-stuffing (RFC 5228 2.4.2) */
static char *
multiline (SieveLexer *lx)
{
  g_autoptr (GString) s = NULL;

  if (!multiline_start (lx))
    return NULL;
  s = g_string_new (NULL);
  for (;;)
    {
      const char *nl = memchr (lx->p, '\n', lx->end - lx->p);
      gsize n, stuffed;
      if (nl == NULL)
        {
          sieve_lexer_fail (lx, "unterminated text: block");
          return NULL;
        }
      n = nl - lx->p;
      if (n > 0 && lx->p[n - 1] == '\r')
        n--;
      if (n == 1 && lx->p[0] == '.')
        {
          sieve_lexer_advance (lx, nl + 1 - lx->p);
          return g_string_free (g_steal_pointer (&s), FALSE);
        }
      stuffed = lx->p[0] == '.' && n > 1 && lx->p[1] == '.';
      g_string_append_len (s, lx->p + stuffed, n - stuffed);
      g_string_append (s, "\r\n");
      sieve_lexer_advance (lx, nl + 1 - lx->p);
    }
}

gboolean
sieve_lexer_at_string (SieveLexer *lx)
{
  return lx->p < lx->end
         && (*lx->p == '"' || (lx->end - lx->p >= 5 && g_ascii_strncasecmp (lx->p, "text:", 5) == 0));
}

char *
sieve_lexer_string (SieveLexer *lx)
{
  if (!sieve_lexer_skip (lx) || lx->p >= lx->end)
    return NULL;
  if (*lx->p == '"')
    return quoted (lx);
  if (lx->end - lx->p >= 5 && g_ascii_strncasecmp (lx->p, "text:", 5) == 0)
    return multiline (lx);
  return NULL;
}

gboolean
sieve_lexer_number (SieveLexer *lx, guint64 *out)
{
  guint64 v = 0;

  while (lx->p < lx->end && g_ascii_isdigit (*lx->p))
    {
      if (v > G_MAXUINT64 / 20)
        return sieve_lexer_fail (lx, "number too large");
      v = v * 10 + (*lx->p - '0');
      sieve_lexer_advance (lx, 1);
    }
  if (lx->p < lx->end && strchr ("kKmMgG", *lx->p))
    {
      switch (g_ascii_tolower (*lx->p))
        {
        case 'k': v <<= 10; break;
        case 'm': v <<= 20; break;
        default: v <<= 30; break;
        }
      sieve_lexer_advance (lx, 1);
    }
  *out = v;
  return TRUE;
}
