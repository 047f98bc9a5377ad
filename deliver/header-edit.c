/* header-edit.c - the one header editor: the changes Sieve's editheader
 * (RFC 5293) and the callout services make to the header a recipient
 * stores, with GMime's encoders and folders.
 *
 * Two views of a header, as the two callers need them: editheader works
 * on whole fields as strings (matching decoded values, adding encoded
 * ones); a service's removals, additions and subject tag work on the raw
 * fields, so every line not edited is stored byte for byte.
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"
#include "header-edit.h"

/* ---- editheader (RFC 5293) ------------------------------------------------ */

static gboolean
field_name_ok (const char *name)
{
  if (*name == '\0')
    return FALSE;
  for (const char *p = name; *p; p++)
    if (*p <= ' ' || *p >= 127 || *p == ':')
      return FALSE;
  return TRUE;
}

char *
header_field_name (const char *field)
{
  const char *colon = strchr (field, ':');
  return g_strstrip (g_strndup (field, colon ? (gsize) (colon - field) : strlen (field)));
}

char *
header_field_value (const char *field)
{
  const char *colon = strchr (field, ':');
  g_autoptr (GString) s = g_string_new (NULL);

  for (const char *p = colon ? colon + 1 : ""; *p; p++)
    if (*p != '\n' && *p != '\r')
      g_string_append_c (s, *p);
  g_strstrip (s->str);
  return g_mime_utils_header_decode_text (NULL, s->str);
}

/* One entry per field of @header, continuation lines included. */
GPtrArray *
header_fields (const char *header)
{
  GPtrArray *fields = g_ptr_array_new_with_free_func (g_free);
  const char *p = header;

  while (*p && *p != '\n')
    {
      const char *end = p;
      do
        {
          const char *nl = strchr (end, '\n');
          end = nl ? nl + 1 : end + strlen (end);
        }
      while (*end == ' ' || *end == '\t');
      g_ptr_array_add (fields, g_strndup (p, end - p));
      p = end;
    }
  return fields;
}

/* Deletes the fields named @e->name that match @e (RFC 5293 deleteheader,
 * :index counting from the end with :last). */
static void
delete_fields (GPtrArray *fields, const SieveHeaderEdit *e)
{
  guint n = 0, occurrence = 0;

  for (guint k = 0; k < fields->len; k++)
    {
      g_autofree char *name = header_field_name (fields->pdata[k]);
      n += g_ascii_strcasecmp (name, e->name) == 0;
    }
  for (guint k = 0; k < fields->len;)
    {
      g_autofree char *name = header_field_name (fields->pdata[k]);
      g_autofree char *value = NULL;
      guint at;
      if (g_ascii_strcasecmp (name, e->name) != 0)
        {
          k++;
          continue;
        }
      occurrence++;
      at = e->last ? n - occurrence + 1 : occurrence;
      value = header_field_value (fields->pdata[k]);
      if ((e->index == 0 || (guint) e->index == at) && sieve_header_edit_matches (e, value))
        g_ptr_array_remove_index (fields, k);
      else
        k++;
    }
}

/* addheader: the value on one line, encoded if it needs to be. */
static void
add_sieve_field (GPtrArray *fields, const SieveHeaderEdit *e)
{
  g_autofree char *clean = g_strdup (e->value);
  g_autofree char *encoded = NULL;

  for (char *q = clean; *q; q++)
    if (*q == '\r' || *q == '\n')
      *q = ' ';
  encoded = g_mime_utils_header_encode_text (NULL, clean, "utf-8");
  g_ptr_array_insert (fields, e->last ? -1 : 0, g_strdup_printf ("%s: %s\n", e->name, encoded));
}

char *
header_edit_sieve (const char *header, const GPtrArray *edits, const char *const *protected_fields)
{
  g_autoptr (GPtrArray) fields = header_fields (header);
  GString *out;

  for (guint i = 0; i < edits->len; i++)
    {
      const SieveHeaderEdit *e = edits->pdata[i];
      /* sieve-lite refuses these already; this is where they would be
       * written, so the rule holds here too */
      if (!field_name_ok (e->name) || sieve_header_protected (e->name, protected_fields))
        continue;
      if (e->value)
        add_sieve_field (fields, e);
      else
        delete_fields (fields, e);
    }
  out = g_string_new (NULL);
  for (guint i = 0; i < fields->len; i++)
    g_string_append (out, fields->pdata[i]);
  g_string_append_c (out, '\n');
  return g_string_free (out, FALSE);
}

/* ---- a service's edits, on the raw fields ----------------------------------
 *
 * Header removals, additions and subject tags are applied to the header
 * as received, field by field: every line not edited is stored byte for
 * byte (duplicate fields, undecodable charsets, raw 8-bit, lines that are
 * not fields at all).  A parse-and-rewrite through GMime lost all three. */

/* One field as received, continuation lines and LF included; @name is
 * what precedes the colon (NULL: a line that is not a field). */
typedef struct {
  char *name;
  GString *raw;
} RawField;

static void
raw_field_free (gpointer p)
{
  RawField *f = p;

  g_free (f->name);
  g_string_free (f->raw, TRUE);
  g_free (f);
}

static RawField *
raw_field_new (const char *line, gsize n)
{
  RawField *f = g_new0 (RawField, 1);
  const char *colon = memchr (line, ':', n);

  if (colon && colon > line)
    f->name = g_strchomp (g_strndup (line, colon - line));
  f->raw = g_string_new_len (line, n);
  return f;
}

/* The fields up to the empty line (or the end), CRLF made LF. */
GPtrArray *
header_raw_split (const char *src, gsize len)
{
  GPtrArray *fields = g_ptr_array_new_with_free_func (raw_field_free);
  const char *p = src, *end = src + len;

  while (p < end)
    {
      const char *nl = memchr (p, '\n', end - p);
      gsize n = (nl ? nl : end) - p;
      if (n && p[n - 1] == '\r')
        n--;
      if (n == 0)
        break;
      if ((p[0] == ' ' || p[0] == '\t') && fields->len)
        g_string_append_len (((RawField *) g_ptr_array_index (fields, fields->len - 1))->raw, p, n);
      else
        g_ptr_array_add (fields, raw_field_new (p, n));
      g_string_append_c (((RawField *) g_ptr_array_index (fields, fields->len - 1))->raw, '\n');
      p = nl ? nl + 1 : end;
    }
  return fields;
}

static RawField *
find_field (GPtrArray *fields, const char *name)
{
  for (guint i = 0; i < fields->len; i++)
    {
      RawField *f = fields->pdata[i];
      if (f->name && g_ascii_strcasecmp (f->name, name) == 0)
        return f;
    }
  return NULL;
}

void
header_raw_remove (GPtrArray *fields, const char *name)
{
  RawField *f;

  while ((f = find_field (fields, name)) != NULL)
    g_ptr_array_remove (fields, f);
}

static gboolean
needs_encoding (const char *s)
{
  for (const guchar *p = (const guchar *) s; *p; p++)
    if (*p < 0x20 || *p >= 0x7f)
      return TRUE;
  return FALSE;
}

/* @h is "Name: value" (checked by the OCP layer); the value is encoded
 * if needed and the field folded. */
void
header_raw_add (GPtrArray *fields, const char *h)
{
  const char *colon = strchr (h, ':');
  g_autofree char *name = g_strndup (h, colon - h);
  g_autofree char *value = g_strstrip (g_strdup (colon + 1));
  g_autofree char *encoded = g_mime_utils_header_encode_text (NULL, value, "utf-8");
  g_autofree char *line = g_strdup_printf ("%s: %s", name, encoded);
  g_autoptr (GMimeFormatOptions) fmt = g_mime_format_options_new ();
  g_autofree char *folded = NULL;
  RawField *f;

  g_mime_format_options_set_newline_format (fmt, GMIME_NEWLINE_FORMAT_UNIX);
  folded = g_mime_utils_unstructured_header_fold (NULL, fmt, line);
  f = raw_field_new (folded, strlen (folded));
  if (f->raw->len == 0 || f->raw->str[f->raw->len - 1] != '\n')
    g_string_append_c (f->raw, '\n');
  g_ptr_array_add (fields, f);
}

/* @tag as it goes into the raw value: as is if plain printable ASCII, else
 * one RFC 2047 encoded word.  @space_inside: the space that follows the
 * tag goes inside the word, since the blank between two encoded words
 * does not survive decoding (RFC 2047 6.2). */
static char *
encode_tag (const char *tag, gboolean space_inside)
{
  g_autofree char *text = g_strconcat (tag, space_inside ? " " : "", NULL);
  g_autofree char *b64 = NULL;

  if (!needs_encoding (tag))
    return g_steal_pointer (&text);
  b64 = g_base64_encode ((const guchar *) text, strlen (text));
  return g_strdup_printf ("=?UTF-8?B?%s?=", b64);
}

/* Prepends @tag to the first Subject field's raw value and leaves the rest
 * of it, and every other field, as it was.  A subject that already starts
 * with the tag is left alone; with no Subject, one is added. */
void
header_raw_tag_subject (GPtrArray *fields, const char *tag_in)
{
  g_autofree char *tag = g_strstrip (g_strdup (tag_in));
  RawField *f = find_field (fields, "Subject");
  const char *rest;
  g_autofree char *value = NULL, *decoded = NULL, *word = NULL;
  gboolean space_inside, blank;
  GString *raw;

  if (f == NULL)
    {
      g_autofree char *enc = encode_tag (tag, FALSE);
      g_autofree char *line = g_strdup_printf ("Subject: %s\n", enc);
      g_ptr_array_add (fields, raw_field_new (line, strlen (line)));
      return;
    }
  rest = strchr (f->raw->str, ':') + 1;
  value = g_mime_utils_header_unfold (rest);
  decoded = g_mime_utils_header_decode_text (NULL, g_strstrip (value));
  if (g_str_has_prefix (g_strstrip (decoded), tag))
    return;  /* tag once: a message tagged before is not tagged again */
  space_inside = needs_encoding (tag) && g_str_has_prefix (rest + strspn (rest, " \t\n"), "=?");
  word = encode_tag (tag, space_inside);
  /* the value's own leading blank, if any, separates it from the tag */
  blank = space_inside || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n';
  raw = g_string_new_len (f->raw->str, rest - f->raw->str);
  g_string_append_printf (raw, " %s%s%s", word, blank ? "" : " ", rest);
  g_string_free (f->raw, TRUE);
  f->raw = raw;
}

char *
header_raw_join (const GPtrArray *fields, gsize size_hint)
{
  GString *out = g_string_sized_new (size_hint + 256);

  for (guint i = 0; i < fields->len; i++)
    {
      const RawField *f = fields->pdata[i];
      g_string_append_len (out, f->raw->str, f->raw->len);
    }
  g_string_append_c (out, '\n');
  return g_string_free (out, FALSE);
}
