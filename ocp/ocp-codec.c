/* ocp-codec.c - OCP Core messages on the wire (RFC 4037 3.1).
 *
 *   message = name [SP anonym-parameters] [CRLF named-parameters CRLF]
 *             [CRLF payload CRLF] ";" CRLF
 *
 * Pure functions: bytes in, messages out and back.  No whitespace is
 * implied; everything is case-sensitive; sizes are decimal without leading
 * zeros up to 2147483647.  The one liberty taken is the one both RFCs
 * print: a named parameter may carry several SP-separated values
 * ("Kept: 65 64").  Every length and the nesting depth are bounded.
 */
#include "config.h"

#include <string.h>

#include "ocp.h"

G_DEFINE_QUARK (ocp-error-quark, ocp_error)

#define OCP_SIZE_MAX 2147483647u

const OcpLimits ocp_default_limits = {
  .max_depth = 16,
  .max_value = 1024 * 1024,
  .max_payload = 16 * 1024 * 1024,
  .max_message = 4 * 1024 * 1024,
};

/* ---- construction ------------------------------------------------------- */

static void named_free (gpointer p);

OcpValue *
ocp_atom_new_len (const char *s, gsize len)
{
  OcpValue *v = g_new0 (OcpValue, 1);
  v->kind = OCP_ATOM;
  v->atom = g_malloc (len + 1);
  memcpy (v->atom, s, len);
  v->atom[len] = '\0';
  v->atom_len = len;
  return v;
}

OcpValue *
ocp_atom_new (const char *s)
{
  return ocp_atom_new_len (s, strlen (s));
}

OcpValue *
ocp_atom_new_uint (guint64 n)
{
  char buf[32];
  g_snprintf (buf, sizeof buf, "%" G_GUINT64_FORMAT, n);
  return ocp_atom_new (buf);
}

OcpValue *
ocp_list_new (void)
{
  OcpValue *v = g_new0 (OcpValue, 1);
  v->kind = OCP_LIST;
  v->items = g_ptr_array_new_with_free_func ((GDestroyNotify) ocp_value_free);
  return v;
}

OcpValue *
ocp_struct_new (void)
{
  OcpValue *v = g_new0 (OcpValue, 1);
  v->kind = OCP_STRUCT;
  v->items = g_ptr_array_new_with_free_func ((GDestroyNotify) ocp_value_free);
  v->named = g_ptr_array_new_with_free_func (named_free);
  return v;
}

void
ocp_value_free (OcpValue *v)
{
  if (v == NULL)
    return;
  g_free (v->atom);
  if (v->items)
    g_ptr_array_unref (v->items);
  if (v->named)
    g_ptr_array_unref (v->named);
  g_free (v);
}

static void
named_free (gpointer p)
{
  OcpNamed *n = p;
  g_free (n->name);
  g_ptr_array_unref (n->values);
  g_free (n);
}

static OcpNamed *
named_new (const char *name, gsize len)
{
  OcpNamed *n = g_new0 (OcpNamed, 1);
  n->name = g_strndup (name, len);
  n->values = g_ptr_array_new_with_free_func ((GDestroyNotify) ocp_value_free);
  return n;
}

OcpValue *
ocp_value_add (OcpValue *c, OcpValue *item)
{
  g_ptr_array_add (c->items, item);
  return c;
}

OcpValue *
ocp_value_add_named (OcpValue *s, const char *name, OcpValue *value)
{
  OcpNamed *n = named_new (name, strlen (name));
  g_ptr_array_add (n->values, value);
  g_ptr_array_add (s->named, n);
  return s;
}

static const OcpNamed *
find_named (GPtrArray *named, const char *name)
{
  for (guint i = 0; named && i < named->len; i++)
    {
      const OcpNamed *n = named->pdata[i];
      if (strcmp (n->name, name) == 0)
        return n;
    }
  return NULL;
}

OcpValue *
ocp_result_new (guint code, const char *reason)
{
  OcpValue *r = ocp_struct_new ();
  ocp_value_add (r, ocp_atom_new_uint (code));
  if (reason)
    ocp_value_add (r, ocp_atom_new (reason));
  return r;
}

const OcpValue *
ocp_value_get_named (const OcpValue *s, const char *name)
{
  const OcpNamed *n = s && s->kind == OCP_STRUCT ? find_named (s->named, name) : NULL;
  return n && n->values->len ? n->values->pdata[0] : NULL;
}

static gboolean
parse_dec (const char *s, gsize len, guint64 *out)
{
  guint64 v = 0;

  if (len == 0 || len > 10 || (len > 1 && s[0] == '0'))
    return FALSE;
  for (gsize i = 0; i < len; i++)
    {
      if (!g_ascii_isdigit (s[i]))
        return FALSE;
      v = v * 10 + (s[i] - '0');
    }
  if (v > OCP_SIZE_MAX)
    return FALSE;
  *out = v;
  return TRUE;
}

gboolean
ocp_value_get_uint (const OcpValue *v, guint64 *out)
{
  return v && v->kind == OCP_ATOM && parse_dec (v->atom, v->atom_len, out);
}

const char *
ocp_value_get_atom (const OcpValue *v)
{
  return v && v->kind == OCP_ATOM ? v->atom : NULL;
}

OcpMessage *
ocp_message_new (const char *name)
{
  OcpMessage *m = g_new0 (OcpMessage, 1);
  m->name = g_strdup (name);
  m->anon = g_ptr_array_new_with_free_func ((GDestroyNotify) ocp_value_free);
  m->named = g_ptr_array_new_with_free_func (named_free);
  return m;
}

void
ocp_message_free (OcpMessage *m)
{
  if (m == NULL)
    return;
  g_free (m->name);
  g_ptr_array_unref (m->anon);
  g_ptr_array_unref (m->named);
  if (m->payload)
    g_bytes_unref (m->payload);
  g_free (m);
}

OcpMessage *
ocp_message_add (OcpMessage *m, OcpValue *anon)
{
  g_ptr_array_add (m->anon, anon);
  return m;
}

OcpMessage *
ocp_message_add_uint (OcpMessage *m, guint64 v)
{
  return ocp_message_add (m, ocp_atom_new_uint (v));
}

OcpMessage *
ocp_message_set (OcpMessage *m, const char *name, OcpValue *value)
{
  OcpNamed *n = named_new (name, strlen (name));
  g_ptr_array_add (n->values, value);
  g_ptr_array_add (m->named, n);
  return m;
}

OcpMessage *
ocp_message_set_payload (OcpMessage *m, GBytes *payload)
{
  if (m->payload)
    g_bytes_unref (m->payload);
  m->payload = payload;
  return m;
}

const OcpValue *
ocp_message_anon (const OcpMessage *m, guint i)
{
  return i < m->anon->len ? m->anon->pdata[i] : NULL;
}

const OcpNamed *
ocp_message_named (const OcpMessage *m, const char *name)
{
  return find_named (m->named, name);
}

const OcpValue *
ocp_message_get (const OcpMessage *m, const char *name)
{
  const OcpNamed *n = find_named (m->named, name);
  return n && n->values->len ? n->values->pdata[0] : NULL;
}

gboolean
ocp_message_anon_uint (const OcpMessage *m, guint i, guint64 *out)
{
  return ocp_value_get_uint (ocp_message_anon (m, i), out);
}

/* ---- serializing -------------------------------------------------------- */

static gboolean
is_safe (char c)
{
  return g_ascii_isalnum (c) || c == '-' || c == '_';
}

static void write_value (const OcpValue *v, GString *out);

static void
write_anon (GPtrArray *values, GString *out)
{
  for (guint i = 0; i < values->len; i++)
    {
      if (i)
        g_string_append_c (out, ' ');
      write_value (values->pdata[i], out);
    }
}

static void
write_named (GPtrArray *named, GString *out)
{
  for (guint i = 0; i < named->len; i++)
    {
      const OcpNamed *n = named->pdata[i];
      if (i)
        g_string_append (out, "\r\n");
      g_string_append (out, n->name);
      g_string_append_c (out, ':');
      for (guint k = 0; k < n->values->len; k++)
        {
          g_string_append_c (out, ' ');
          write_value (n->values->pdata[k], out);
        }
    }
}

static void
write_value (const OcpValue *v, GString *out)
{
  gboolean bare = TRUE;

  switch (v->kind)
    {
    case OCP_ATOM:
      for (gsize i = 0; i < v->atom_len && bare; i++)
        bare = is_safe (v->atom[i]);
      if (bare && v->atom_len > 0)
        g_string_append_len (out, v->atom, v->atom_len);
      else
        {
          g_string_append_printf (out, "\"%" G_GSIZE_FORMAT ":", v->atom_len);
          g_string_append_len (out, v->atom, v->atom_len);
          g_string_append_c (out, '"');
        }
      break;
    case OCP_LIST:
      g_string_append_c (out, '(');
      for (guint i = 0; i < v->items->len; i++)
        {
          if (i)
            g_string_append_c (out, ',');
          write_value (v->items->pdata[i], out);
        }
      g_string_append_c (out, ')');
      break;
    case OCP_STRUCT:
      g_string_append_c (out, '{');
      write_anon (v->items, out);
      if (v->named->len)
        {
          g_string_append (out, "\r\n");
          write_named (v->named, out);
          g_string_append (out, "\r\n");
        }
      g_string_append_c (out, '}');
      break;
    }
}

void
ocp_message_write (const OcpMessage *m, GString *out)
{
  g_string_append (out, m->name);
  if (m->anon->len)
    {
      g_string_append_c (out, ' ');
      write_anon (m->anon, out);
    }
  if (m->named->len)
    {
      g_string_append (out, "\r\n");
      write_named (m->named, out);
      g_string_append (out, "\r\n");
    }
  if (m->payload)
    {
      gsize n;
      const char *p = g_bytes_get_data (m->payload, &n);
      g_string_append_printf (out, "\r\n%" G_GSIZE_FORMAT ":", n);
      g_string_append_len (out, p, n);
      g_string_append (out, "\r\n");
    }
  g_string_append (out, ";\r\n");
}

GBytes *
ocp_message_to_bytes (const OcpMessage *m)
{
  GString *s = g_string_new (NULL);
  ocp_message_write (m, s);
  return g_string_free_to_bytes (s);
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct {
  const char *buf;
  gsize len, pos;
  const OcpLimits *limits;
  gsize need;          /* bytes needed in total when MORE */
  gboolean more;       /* ran out of input */
  const char *error;   /* static reason */
  gboolean limit;
} P;

static gboolean
more (P *p)
{
  p->more = TRUE;
  return FALSE;
}

static gboolean
fail (P *p, const char *why)
{
  if (p->error == NULL)
    p->error = why;
  return FALSE;
}

/* A limit was exceeded: OCP_ERROR_LIMIT rather than a syntax error. */
static gboolean
too_large (P *p, const char *why)
{
  p->limit = TRUE;
  return fail (p, why);
}

static gboolean
at_end (P *p)
{
  return p->pos >= p->len;
}

static gboolean
expect (P *p, const char *s)
{
  for (; *s; s++)
    {
      if (at_end (p))
        return more (p);
      if (p->buf[p->pos] != *s)
        return fail (p, "unexpected character");
      p->pos++;
    }
  return TRUE;
}

/* size ":" then exactly size octets */
static gboolean
parse_data (P *p, gsize max, const char **data, gsize *len)
{
  gsize start = p->pos;
  guint64 n;

  while (!at_end (p) && g_ascii_isdigit (p->buf[p->pos]))
    p->pos++;
  if (at_end (p))
    return more (p);
  if (p->buf[p->pos] != ':' || !parse_dec (p->buf + start, p->pos - start, &n))
    return fail (p, "bad size");
  if (n > max)
    return too_large (p, "value or payload too large");
  p->pos++;
  if (p->len - p->pos < n)
    {
      p->need = p->pos + n + 4;
      return more (p);
    }
  *data = p->buf + p->pos;
  *len = n;
  p->pos += n;
  return TRUE;
}

static OcpValue *parse_value (P *p, gsize depth);

static gboolean
parse_name (P *p, gsize *len)
{
  gsize start = p->pos;

  if (at_end (p))
    return more (p);
  if (!g_ascii_isalpha (p->buf[p->pos]))
    return fail (p, "a name must start with a letter");
  while (!at_end (p) && is_safe (p->buf[p->pos]))
    p->pos++;
  if (at_end (p))
    return more (p);
  *len = p->pos - start;
  return TRUE;
}

/* value *(SP value), into @out */
static gboolean
parse_anon (P *p, GPtrArray *out, gsize depth)
{
  for (;;)
    {
      OcpValue *v = parse_value (p, depth);
      if (v == NULL)
        return FALSE;
      g_ptr_array_add (out, v);
      if (at_end (p))
        return more (p);
      if (p->buf[p->pos] != ' ')
        return TRUE;
      p->pos++;
    }
}

/* named-value *(CRLF named-value); stops before the CRLF that ends them */
static gboolean
parse_named (P *p, GPtrArray *out, gsize depth)
{
  for (;;)
    {
      gsize start = p->pos, len;
      OcpNamed *n;

      if (!parse_name (p, &len) || !expect (p, ": "))
        return FALSE;
      n = named_new (p->buf + start, len);
      if (find_named (out, n->name))
        {
          named_free (n);
          return fail (p, "a parameter name is repeated");
        }
      g_ptr_array_add (out, n);
      for (;;)
        {
          OcpValue *v = parse_value (p, depth);
          if (v == NULL)
            return FALSE;
          g_ptr_array_add (n->values, v);
          if (at_end (p))
            return more (p);
          if (p->buf[p->pos] != ' ')
            break;
          p->pos++; /* "Kept: offset size" */
        }
      if (p->len - p->pos < 3)
        return more (p);
      if (p->buf[p->pos] != '\r' || p->buf[p->pos + 1] != '\n')
        return fail (p, "expected CRLF after a named parameter");
      if (!g_ascii_isalpha (p->buf[p->pos + 2]))
        return TRUE;
      p->pos += 2;
    }
}

/* '"' size ":" octets '"' */
static OcpValue *
parse_quoted (P *p)
{
  const char *data;
  gsize len;

  p->pos++;
  if (!parse_data (p, p->limits->max_value, &data, &len) || !expect (p, "\""))
    return NULL;
  return ocp_atom_new_len (data, len);
}

/* an atom of safe characters, unquoted */
static OcpValue *
parse_bare (P *p)
{
  gsize start = p->pos;

  while (!at_end (p) && is_safe (p->buf[p->pos]))
    p->pos++;
  if (at_end (p))
    {
      more (p);
      return NULL;
    }
  if (p->pos - start > p->limits->max_value)
    {
      too_large (p, "value too large");
      return NULL;
    }
  return ocp_atom_new_len (p->buf + start, p->pos - start);
}

/* "(" [value *("," value)] ")", into @v */
static gboolean
parse_list (P *p, OcpValue *v, gsize depth)
{
  p->pos++;
  if (at_end (p))
    return more (p);
  if (p->buf[p->pos] == ')')
    {
      p->pos++;
      return TRUE;
    }
  for (;;)
    {
      OcpValue *item = parse_value (p, depth + 1);
      if (item == NULL)
        return FALSE;
      g_ptr_array_add (v->items, item);
      if (at_end (p))
        return more (p);
      if (p->buf[p->pos] == ')')
        {
          p->pos++;
          return TRUE;
        }
      if (p->buf[p->pos] != ',')
        return fail (p, "expected ',' or ')' in a list");
      p->pos++;
    }
}

/* "{" [anonymous members] [CRLF named members CRLF] "}", into @v */
static gboolean
parse_struct (P *p, OcpValue *v, gsize depth)
{
  p->pos++;
  if (at_end (p))
    return more (p);
  if (p->buf[p->pos] != '\r' && p->buf[p->pos] != '}' && !parse_anon (p, v->items, depth + 1))
    return FALSE;
  if (at_end (p))
    return more (p);
  if (p->buf[p->pos] == '\r'
      && (!expect (p, "\r\n") || !parse_named (p, v->named, depth + 1) || !expect (p, "\r\n")))
    return FALSE;
  return expect (p, "}");
}

static OcpValue *
parse_value (P *p, gsize depth)
{
  OcpValue *v;
  gboolean ok;
  char c;

  if (at_end (p))
    {
      more (p);
      return NULL;
    }
  if (depth > p->limits->max_depth)
    {
      too_large (p, "values nested too deeply");
      return NULL;
    }
  c = p->buf[p->pos];
  if (c == '"')
    return parse_quoted (p);
  if (is_safe (c))
    return parse_bare (p);
  if (c == '(')
    {
      v = ocp_list_new ();
      ok = parse_list (p, v, depth);
    }
  else if (c == '{')
    {
      v = ocp_struct_new ();
      ok = parse_struct (p, v, depth);
    }
  else
    {
      fail (p, "unexpected character where a value should be");
      return NULL;
    }
  if (!ok)
    g_clear_pointer (&v, ocp_value_free);
  return v;
}

/* named-parameters CRLF [CRLF] */
static gboolean
parse_named_block (P *p, OcpMessage *m)
{
  if (!parse_named (p, m->named, 0) || !expect (p, "\r\n"))
    return FALSE;
  if (at_end (p))
    return more (p);
  return p->buf[p->pos] != '\r' || expect (p, "\r\n");
}

/* payload CRLF */
static gboolean
parse_payload (P *p, OcpMessage *m)
{
  const char *data;
  gsize len;

  if (!parse_data (p, p->limits->max_payload, &data, &len) || !expect (p, "\r\n"))
    return FALSE;
  m->payload = g_bytes_new (data, len);
  return TRUE;
}

/* After the anonymous parameters: [CRLF [named-parameters] [payload]],
 * up to the final ";" */
static gboolean
parse_tail (P *p, OcpMessage *m)
{
  if (at_end (p))
    return more (p);
  if (p->buf[p->pos] != '\r')
    return TRUE;
  if (!expect (p, "\r\n"))
    return FALSE;
  if (at_end (p))
    return more (p);
  if (g_ascii_isalpha (p->buf[p->pos]) && !parse_named_block (p, m))
    return FALSE;
  if (!at_end (p) && g_ascii_isdigit (p->buf[p->pos]))
    return parse_payload (p, m);
  return TRUE;
}

/* A parse that stopped short: MORE (with the octets needed, if known), or
 * ERROR. */
static OcpParseResult
parse_stopped (const P *p, gsize *consumed, GError **error)
{
  if (p->error == NULL && p->more)
    {
      /* a message without its payload may not grow without bound */
      if (p->need == 0 && p->len > p->limits->max_message)
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_LIMIT, "message too large");
          return OCP_PARSE_ERROR;
        }
      *consumed = p->need;
      return OCP_PARSE_MORE;
    }
  g_set_error (error, OCP_ERROR, p->limit ? OCP_ERROR_LIMIT : OCP_ERROR_PARSE, "%s at octet %" G_GSIZE_FORMAT,
               p->error ? p->error : "invalid message", p->pos);
  return OCP_PARSE_ERROR;
}

OcpParseResult
ocp_message_parse (const char *buf, gsize len, const OcpLimits *limits, OcpMessage **out,
                   gsize *consumed, GError **error)
{
  P p = { buf, len, 0, limits ? limits : &ocp_default_limits, 0, FALSE, NULL, FALSE };
  g_autoptr (OcpMessage) m = NULL;
  gsize nlen;

  *out = NULL;
  *consumed = 0;
  if (!parse_name (&p, &nlen))
    return parse_stopped (&p, consumed, error);
  m = ocp_message_new ("");
  g_free (m->name);
  m->name = g_strndup (buf, nlen);
  if (buf[p.pos] == ' ')
    {
      p.pos++;
      if (!parse_anon (&p, m->anon, 0))
        return parse_stopped (&p, consumed, error);
    }
  if (!parse_tail (&p, m) || !expect (&p, ";\r\n"))
    return parse_stopped (&p, consumed, error);
  *out = g_steal_pointer (&m);
  *consumed = p.pos;
  return OCP_PARSE_OK;
}
