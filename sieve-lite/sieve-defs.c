/* sieve-defs.c - the language's vocabulary as tables: the lookup of
 * command and test definitions (the
 * tables sit with their run functions in sieve-commands.c and
 * sieve-tests.c), the tagged arguments and what each sets in a node's
 * SieveArgs, and the modifiers of set (RFC 5229 4.1).
 */
#include "config.h"

#include <stddef.h>
#include <string.h>

#include "sieve-match.h"

static const SieveDef *
lookup (const SieveDef *defs, const char *name)
{
  for (guint i = 0; defs[i].name; i++)
    if (strcmp (defs[i].name, name) == 0)
      return &defs[i];
  return NULL;
}

const SieveDef *
sieve_def_command (const char *name)
{
  return lookup (sieve_command_defs, name);
}

const SieveDef *
sieve_def_test (const char *name)
{
  return lookup (sieve_test_defs, name);
}

/* ---- set modifiers ---------------------------------------------------------- */

static char *
mod_lower (const char *value)
{
  return g_utf8_strdown (value, -1);
}

static char *
mod_upper (const char *value)
{
  return g_utf8_strup (value, -1);
}

static char *
mod_lowerfirst (const char *value)
{
  char *v = g_strdup (value);
  v[0] = g_ascii_tolower (v[0]);
  return v;
}

static char *
mod_upperfirst (const char *value)
{
  char *v = g_strdup (value);
  v[0] = g_ascii_toupper (v[0]);
  return v;
}

static char *
mod_quotewildcard (const char *value)
{
  GString *q = g_string_new (NULL);

  for (const char *p = value; *p; p++)
    {
      if (strchr ("*?\\", *p))
        g_string_append_c (q, '\\');
      g_string_append_c (q, *p);
    }
  return g_string_free (q, FALSE);
}

static char *
mod_length (const char *value)
{
  return g_strdup_printf ("%ld", g_utf8_strlen (value, -1));
}

static const SieveModifierDef modifiers[] = {
  { "lower", mod_lower }, { "upper", mod_upper }, { "lowerfirst", mod_lowerfirst },
  { "upperfirst", mod_upperfirst }, { "quotewildcard", mod_quotewildcard }, { "length", mod_length },
  { "encodeurl", sieve_mod_encodeurl },
};

/* ---- tagged arguments --------------------------------------------------------- */

typedef enum {
  TAG_ALONE,        /* no value */
  TAG_STRING,       /* a string list of one */
  TAG_LIST,         /* a string list */
  TAG_NUMBER,
} TagValue;

typedef struct TagDef TagDef;
struct TagDef {
  const char *name;
  TagValue value;
  /* NULL, or why the tag cannot be applied */
  const char *(*apply) (SieveArgs *a, const TagDef *t, const SieveArg *v);
  gsize param;      /* an offset into SieveArgs, or a value, for apply */
};

#define FIELD(a, t, type) ((type *) ((char *) (a) + (t)->param))

static const char *
tag_bool (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  *FIELD (a, t, gboolean) = TRUE;
  return NULL;
}

static const char *
tag_string (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  *FIELD (a, t, const char *) = v->strings[0];
  return NULL;
}

static const char *
tag_list (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  *FIELD (a, t, char **) = v->strings;
  return NULL;
}

static const char *
tag_index (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  a->index = v->number;
  return NULL;
}

static const char *
tag_days (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  a->days = v->number;
  a->has_days = TRUE;
  return NULL;
}

static const char *
tag_seconds (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  a->seconds = v->number;
  a->has_seconds = TRUE;
  return NULL;
}

/* body :raw, :text, :content (RFC 5173 5) */
static const char *
tag_transform (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  a->transform = t->param;
  a->content_types = t->param == SIEVE_BODY_CONTENT ? v->strings : NULL;
  return NULL;
}

/* header :mime :type, :subtype, :contenttype, :param (RFC 5703 4.1) */
static const char *
tag_mime_opt (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  a->mime_opt = t->param;
  a->params = t->param == SIEVE_MIMEOPT_PARAM ? v->strings : NULL;
  return NULL;
}

static const char *
tag_first (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  a->first = v->number;
  a->has_first = TRUE;
  return NULL;
}

static const char *
tag_match (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  a->match.type = t->param;
  return NULL;
}

static const char *
tag_relational (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  a->match.type = t->param;
  a->match.has_relop = TRUE;
  if (!sieve_relop_lookup (v->strings[0], &a->match.relop))
    return "relational operator must be gt, ge, lt, le, eq or ne";
  return NULL;
}

static const char *
tag_address_part (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  a->address_part = t->param;
  return NULL;
}

static const char *
tag_callout_field (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  a->field = t->param;
  return NULL;
}

/* the modifier of the tag's name */
static const char *
tag_modifier (SieveArgs *a, const TagDef *t, const SieveArg *v)
{
  for (guint i = 0; i < G_N_ELEMENTS (modifiers); i++)
    if (strcmp (modifiers[i].name, t->name) == 0)
      g_ptr_array_add (a->modifiers, (gpointer) &modifiers[i]);
  return NULL;
}

/* Every tag is accepted on every command and test, as it always was;
 * validation checks the capabilities they need. */
static const TagDef tags[] = {
  { "comparator", TAG_STRING, tag_string, offsetof (SieveArgs, comparator) },
  { "count", TAG_STRING, tag_relational, SIEVE_MATCH_COUNT },
  { "value", TAG_STRING, tag_relational, SIEVE_MATCH_VALUE },
  { "index", TAG_NUMBER, tag_index, 0 },
  { "flags", TAG_LIST, tag_list, offsetof (SieveArgs, flags) },
  { "days", TAG_NUMBER, tag_days, 0 },
  { "subject", TAG_STRING, tag_string, offsetof (SieveArgs, subject) },
  { "from", TAG_STRING, tag_string, offsetof (SieveArgs, from) },
  { "addresses", TAG_LIST, tag_list, offsetof (SieveArgs, addresses) },
  { "handle", TAG_STRING, tag_string, offsetof (SieveArgs, handle) },
  { "is", TAG_ALONE, tag_match, SIEVE_MATCH_IS },
  { "contains", TAG_ALONE, tag_match, SIEVE_MATCH_CONTAINS },
  { "matches", TAG_ALONE, tag_match, SIEVE_MATCH_MATCHES },
  { "all", TAG_ALONE, tag_address_part, SIEVE_ADDRESS_ALL },
  { "localpart", TAG_ALONE, tag_address_part, SIEVE_ADDRESS_LOCALPART },
  { "domain", TAG_ALONE, tag_address_part, SIEVE_ADDRESS_DOMAIN },
  { "user", TAG_ALONE, tag_address_part, SIEVE_ADDRESS_USER },
  { "detail", TAG_ALONE, tag_address_part, SIEVE_ADDRESS_DETAIL },
  { "copy", TAG_ALONE, tag_bool, offsetof (SieveArgs, copy) },
  { "create", TAG_ALONE, tag_bool, offsetof (SieveArgs, create) },
  { "last", TAG_ALONE, tag_bool, offsetof (SieveArgs, last) },
  { "over", TAG_ALONE, tag_bool, offsetof (SieveArgs, over) },
  { "under", TAG_ALONE, tag_bool, offsetof (SieveArgs, under) },
  { "percent", TAG_ALONE, tag_bool, offsetof (SieveArgs, percent) },
  { "mime", TAG_ALONE, tag_bool, offsetof (SieveArgs, mime) },
  { "verdict", TAG_ALONE, tag_callout_field, SIEVE_CALLOUT_VERDICT },
  { "score", TAG_ALONE, tag_callout_field, SIEVE_CALLOUT_SCORE },
  { "labels", TAG_ALONE, tag_callout_field, SIEVE_CALLOUT_LABELS },
  { "lower", TAG_ALONE, tag_modifier, 0 },
  { "upper", TAG_ALONE, tag_modifier, 0 },
  { "lowerfirst", TAG_ALONE, tag_modifier, 0 },
  { "upperfirst", TAG_ALONE, tag_modifier, 0 },
  { "quotewildcard", TAG_ALONE, tag_modifier, 0 },
  { "length", TAG_ALONE, tag_modifier, 0 },
  { "zone", TAG_STRING, tag_string, offsetof (SieveArgs, zone) },
  { "originalzone", TAG_ALONE, tag_bool, offsetof (SieveArgs, originalzone) },
  { "seconds", TAG_NUMBER, tag_seconds, 0 },
  { "header", TAG_STRING, tag_string, offsetof (SieveArgs, header) },
  { "uniqueid", TAG_STRING, tag_string, offsetof (SieveArgs, uniqueid) },
  { "personal", TAG_ALONE, tag_bool, offsetof (SieveArgs, personal) },
  { "global", TAG_ALONE, tag_bool, offsetof (SieveArgs, global) },
  { "once", TAG_ALONE, tag_bool, offsetof (SieveArgs, once) },
  { "optional", TAG_ALONE, tag_bool, offsetof (SieveArgs, optional) },
  { "specialuse", TAG_STRING, tag_string, offsetof (SieveArgs, specialuse) },
  /* body transforms (RFC 5173), mime and its loops (RFC 5703), regex */
  { "raw", TAG_ALONE, tag_transform, SIEVE_BODY_RAW },
  { "text", TAG_ALONE, tag_transform, SIEVE_BODY_TEXT },
  { "content", TAG_LIST, tag_transform, SIEVE_BODY_CONTENT },
  { "anychild", TAG_ALONE, tag_bool, offsetof (SieveArgs, anychild) },
  { "type", TAG_ALONE, tag_mime_opt, SIEVE_MIMEOPT_TYPE },
  { "subtype", TAG_ALONE, tag_mime_opt, SIEVE_MIMEOPT_SUBTYPE },
  { "contenttype", TAG_ALONE, tag_mime_opt, SIEVE_MIMEOPT_CONTENTTYPE },
  { "param", TAG_LIST, tag_mime_opt, SIEVE_MIMEOPT_PARAM },
  { "name", TAG_STRING, tag_string, offsetof (SieveArgs, loop_name) },
  { "first", TAG_NUMBER, tag_first, 0 },
  { "regex", TAG_ALONE, tag_match, SIEVE_MATCH_REGEX },
  { "encodeurl", TAG_ALONE, tag_modifier, 0 },
  { "importance", TAG_STRING, tag_string, offsetof (SieveArgs, importance) },
  { "message", TAG_STRING, tag_string, offsetof (SieveArgs, message) },
  { "options", TAG_LIST, tag_list, offsetof (SieveArgs, options) },
  { "headers", TAG_LIST, tag_list, offsetof (SieveArgs, headers) },
};

static gboolean
value_fits (TagValue want, const SieveArg *v)
{
  switch (want)
    {
    case TAG_NUMBER:
      return v != NULL && v->kind == SIEVE_ARG_NUMBER;
    case TAG_LIST:
      return v != NULL && v->kind == SIEVE_ARG_STRINGS;
    case TAG_STRING:
      return v != NULL && v->kind == SIEVE_ARG_STRINGS && v->strings[1] == NULL;
    default:
      return TRUE;
    }
}

const char *
sieve_args_apply_tag (SieveArgs *a, const char *tag, const SieveArg *v, gboolean *took_value)
{
  *took_value = FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (tags); i++)
    {
      const TagDef *t = &tags[i];
      if (strcmp (t->name, tag) != 0)
        continue;
      if (!value_fits (t->value, v))
        return "a tag is missing its value";
      *took_value = t->value != TAG_ALONE;
      return t->apply (a, t, v);
    }
  return "unknown tag";
}
