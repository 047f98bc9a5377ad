/* sieve-validate.c - sieve_compile: parses a script, then checks what
 * needs no message (capabilities, command and test names, argument
 * shapes, if/elsif/else order, blocks), resolving each node's definition
 * and parsing its arguments once, for every run to use as they are.
 */
#include "config.h"

#include <string.h>

#include "sieve-match.h"
#include "sieve-run.h"

static gboolean G_GNUC_PRINTF (3, 4)
fail (GError **error, const SieveNode *n, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "%d:%d: %s", n->line, n->col, msg);
  return FALSE;
}

static SieveArgs *
args_new (void)
{
  SieveArgs *a = g_new0 (SieveArgs, 1);

  a->comparator = "i;ascii-casemap";
  a->pos = g_ptr_array_new ();
  a->modifiers = g_ptr_array_new ();
  return a;
}

/* Splits a node's arguments into tags (with their values) and positional
 * ones; NULL, or why they do not parse. */
static const char *
parse_args (const SieveNode *n, SieveArgs *a)
{
  for (guint i = 0; i < n->args->len; i++)
    {
      const SieveArg *x = n->args->pdata[i];
      const SieveArg *v = i + 1 < n->args->len ? n->args->pdata[i + 1] : NULL;
      gboolean took_value;
      const char *why;

      if (x->kind != SIEVE_ARG_TAG)
        {
          g_ptr_array_add (a->pos, (gpointer) x);
          continue;
        }
      why = sieve_args_apply_tag (a, x->tag, v, &took_value);
      if (why)
        return why;
      if (took_value)
        i++;
    }
  return NULL;
}

/* @shape: see SieveDef */
static const char *
check_positional (const SieveArgs *a, const char *shape)
{
  guint want = strlen (shape);
  gboolean opt = shape[0] == 'o';

  if (opt)
    {
      shape++;
      want--;
    }
  if (!(a->pos->len == want || (opt && a->pos->len + 1 == want)))
    return "wrong number of arguments";
  for (guint i = 0; i < a->pos->len; i++)
    {
      const SieveArg *x = a->pos->pdata[i];
      char k = shape[want - a->pos->len + i];
      if ((k == 'n') != (x->kind == SIEVE_ARG_NUMBER))
        return k == 'n' ? "expected a number" : "expected a string";
    }
  return NULL;
}

/* Tags of one command or test only (RFC 5260, 6131, 7352) */
static const char *
check_owned_tags (const SieveDef *def, const SieveArgs *a)
{
  gboolean date = !strcmp (def->name, "date") || !strcmp (def->name, "currentdate");
  gboolean dup = !strcmp (def->name, "duplicate");

  if ((a->zone || a->originalzone) && !date)
    return ":zone/:originalzone are for date and currentdate";
  if ((a->header || a->uniqueid) && !dup)
    return ":header/:uniqueid are for duplicate";
  if (a->has_seconds && !dup && strcmp (def->name, "vacation"))
    return ":seconds is for vacation and duplicate";
  return NULL;
}

/* include (RFC 6609) and special-use (RFC 8579): their tags go with
 * their commands, global needs variables, and the "global." namespace
 * include */
static const char *
check_include_tags (const SieveDef *def, const SieveArgs *a, GHashTable *caps)
{
  if ((a->personal || a->global || a->once || a->optional) && strcmp (def->name, "include") != 0)
    return ":personal, :global, :once and :optional go with include";
  if (strcmp (def->name, "global") == 0 && !g_hash_table_contains (caps, "variables"))
    return "global needs require \"variables\" (RFC 6609 3.4.1)";
  if (strcmp (def->name, "set") == 0 && a->pos->len == 2)
    return sieve_set_name_problem (((SieveArg *) a->pos->pdata[0])->strings[0], caps);
  if (a->specialuse && (strcmp (def->name, "fileinto") != 0 || !g_hash_table_contains (caps, "special-use")))
    return ":specialuse needs require \"special-use\" and goes with fileinto";
  return NULL;
}

/* :regex needs its capability, and a literal pattern must compile; the
 * :mime tags (RFC 5703 4) theirs, on the tests */
static const char *
check_mime (const SieveDef *def, const SieveArgs *a, GHashTable *caps)
{
  char **keys = a->pos->len ? sieve_args_list (a, a->pos->len - 1) : NULL;

  if (a->match.type == SIEVE_MATCH_REGEX)
    {
      if (!g_hash_table_contains (caps, "regex"))
        return ":regex needs require \"regex\"";
      if (a->match.comparator == SIEVE_COMPARATOR_ASCII_NUMERIC)
        return ":regex goes with i;octet or i;ascii-casemap";
      for (guint i = 0; keys && keys[i]; i++)
        if (!strstr (keys[i], "${") && sieve_regex_check (keys[i]) != NULL)
          return sieve_regex_check (keys[i]);
    }
  if ((a->anychild || a->mime_opt != SIEVE_MIMEOPT_NONE) && !a->mime)
    return ":anychild, :type, :subtype, :contenttype and :param go with :mime";
  if (a->mime && def->test && !g_hash_table_contains (caps, "mime"))
    return ":mime needs require \"mime\"";
  return NULL;
}

/* The capabilities the tags need; resolves the comparator. */
static const char *
check_capabilities (const SieveDef *def, SieveArgs *a, GHashTable *caps)
{
  SieveMatchType m = a->match.type;
  SieveAddressPart p = a->address_part;
  const char *why;

  if ((m == SIEVE_MATCH_COUNT || m == SIEVE_MATCH_VALUE) && !g_hash_table_contains (caps, "relational"))
    return ":count/:value need require \"relational\"";
  if ((p == SIEVE_ADDRESS_USER || p == SIEVE_ADDRESS_DETAIL) && !g_hash_table_contains (caps, "subaddress"))
    return ":user/:detail need require \"subaddress\"";
  if (a->create && (!(def->flags & SIEVE_DEF_CREATE) || !g_hash_table_contains (caps, "mailbox")))
    return ":create needs require \"mailbox\" and goes with fileinto";
  if (a->copy && !g_hash_table_contains (caps, "copy"))
    return ":copy needs require \"copy\"";
  if (a->flags && !g_hash_table_contains (caps, "imap4flags"))
    return ":flags needs require \"imap4flags\"";
  if (a->percent && !g_hash_table_contains (caps, "spamtestplus"))
    return ":percent needs require \"spamtestplus\"";
  if ((a->zone || a->originalzone) && !g_hash_table_contains (caps, "date"))
    return ":zone/:originalzone need require \"date\"";
  if (a->has_seconds && def->command && !g_hash_table_contains (caps, "vacation-seconds"))
    return ":seconds needs require \"vacation-seconds\"";
  if (a->index && def->test && !g_hash_table_contains (caps, "index"))
    return ":index needs require \"index\"";
  for (guint i = 0; a->modifiers && i < a->modifiers->len; i++)
    if (((const SieveModifierDef *) a->modifiers->pdata[i])->apply == sieve_mod_encodeurl
        && !g_hash_table_contains (caps, "enotify"))
      return ":encodeurl needs require \"enotify\"";
  if (!sieve_comparator_lookup (a->comparator, &a->match.comparator))
    return "unknown comparator";
  if ((why = check_mime (def, a, caps)) != NULL)
    return why;
  if (a->match.comparator == SIEVE_COMPARATOR_ASCII_NUMERIC
      && !g_hash_table_contains (caps, "comparator-i;ascii-numeric"))
    return "i;ascii-numeric needs require \"comparator-i;ascii-numeric\"";
  return check_include_tags (def, a, caps);
}

static const char *
check_args (const SieveNode *n, const SieveDef *def, const char *shape, SieveArgs *a, GHashTable *caps)
{
  const char *why = check_positional (a, shape);

  if (why == NULL && n->tests->len != def->tests && def->tests != SIEVE_TESTS_LIST)
    why = "wrong number of tests";
  if (why == NULL)
    why = check_owned_tags (def, a);
  if (why == NULL)
    why = check_capabilities (def, a, caps);
  return why;
}

/* Parses the node's arguments into n->parsed and checks them against
 * its definition. */
static gboolean
validate_args (const SieveScript *s, SieveNode *n, GError **error)
{
  const SieveDef *def = n->def;
  g_autoptr (SieveArgs) a = NULL;
  const char *why;

  if (def->shape == NULL)
    return TRUE;
  a = args_new ();
  why = parse_args (n, a);
  if (why != NULL)
    return fail (error, n, "%s: %s", n->name, why);
  why = check_args (n, def, def->shape, a, s->caps);
  if (why != NULL && def->alt_shape != NULL)
    why = check_args (n, def, def->alt_shape, a, s->caps);
  if (why != NULL)
    return fail (error, n, "%s: %s", n->name, why);
  n->parsed = g_steal_pointer (&a);
  return def->check == NULL || def->check (n, error);
}

static gboolean
validate_test (const SieveScript *s, SieveNode *t, GError **error)
{
  t->def = sieve_def_test (t->name);
  if (t->def == NULL)
    return fail (error, t, "unknown test '%s'", t->name);
  if (t->def->cap && !g_hash_table_contains (s->caps, t->def->cap))
    return fail (error, t, "'%s' needs require \"%s\"", t->name, t->def->cap);
  for (guint i = 0; i < t->tests->len; i++)
    if (!validate_test (s, t->tests->pdata[i], error))
      return FALSE;
  if (t->def->tests == SIEVE_TESTS_LIST && t->tests->len == 0)
    return fail (error, t, "%s needs tests", t->name);
  return validate_args (s, t, error);
}

/* require: a list of known capabilities, before any other command */
static gboolean
validate_require (SieveScript *s, const SieveNode *c, gboolean requires_allowed, GError **error)
{
  const SieveArg *a = c->args->len == 1 ? c->args->pdata[0] : NULL;

  if (!requires_allowed)
    return fail (error, c, "require must come before other commands");
  if (a == NULL || a->kind != SIEVE_ARG_STRINGS)
    return fail (error, c, "require takes a string list");
  for (guint j = 0; a->strings[j]; j++)
    {
      if (!sieve_capability_known (a->strings[j]))
        return fail (error, c, "unsupported extension \"%s\"", a->strings[j]);
      g_hash_table_add (s->caps, g_strdup (a->strings[j]));
      if (strcmp (a->strings[j], "spamtestplus") == 0)
        g_hash_table_add (s->caps, g_strdup ("spamtest"));
      if (strcmp (a->strings[j], "vacation-seconds") == 0) /* RFC 6131 2 */
        g_hash_table_add (s->caps, g_strdup ("vacation"));
    }
  return TRUE;
}

/* if/elsif/else order, and which commands take a block; @prev: the
 * command before in the same block, or NULL */
static gboolean
validate_structure (const SieveNode *c, const SieveDef *prev, GError **error)
{
  SieveDefFlags f = c->def->flags;

  if ((f & SIEVE_DEF_ELSE) && !(prev && (prev->flags & SIEVE_DEF_IF)))
    return fail (error, c, "%s without if", c->name);
  if ((f & SIEVE_DEF_IF) && (c->tests->len != 1 || c->block == NULL))
    return fail (error, c, "%s needs one test and a block", c->name);
  if ((f & SIEVE_DEF_ELSE) && !(f & SIEVE_DEF_IF) && (c->tests->len || c->block == NULL))
    return fail (error, c, "else needs a block and no test");
  if (c->block && !(f & SIEVE_DEF_BLOCK))
    return fail (error, c, "%s takes no block", c->name);
  return TRUE;
}

static gboolean validate_block (SieveScript *s, GPtrArray *cmds, gboolean top, GError **error);

/* A block, with what an "if ihave" makes available in it (RFC 5463 4). */
static gboolean
validate_if_block (SieveScript *s, SieveNode *c, GError **error)
{
  c->deferred = sieve_ihave_defers (s, c);
  return c->deferred || validate_block (s, c->block, FALSE, error);
}

/* RFC 5703 3, 7: break and extracttext only inside foreverypart, a
 * break's :name that of one around it; foreverypart nested at most
 * SIEVE_MAX_LOOPS deep */
static gboolean
validate_loop (const SieveScript *s, const SieveNode *c, GError **error)
{
  const char *name = c->parsed ? c->parsed->loop_name : NULL;
  gboolean is_break = strcmp (c->name, "break") == 0;

  if (strcmp (c->name, "foreverypart") == 0 && s->loops->len >= SIEVE_MAX_LOOPS)
    return fail (error, c, "foreverypart nested more than %d deep", SIEVE_MAX_LOOPS);
  if ((is_break || strcmp (c->name, "extracttext") == 0) && s->loops->len == 0)
    return fail (error, c, "%s outside foreverypart", c->name);
  if (strcmp (c->name, "extracttext") == 0 && !g_hash_table_contains (s->caps, "variables"))
    return fail (error, c, "extracttext needs require \"variables\"");
  if (!is_break || name == NULL)
    return TRUE;
  for (guint i = 0; i < s->loops->len; i++)
    if (strcmp (s->loops->pdata[i], name) == 0)
      return TRUE;
  return fail (error, c, "break: no foreverypart named \"%s\" around it", name);
}

/* The block, inside a loop when the command is foreverypart */
static gboolean
validate_inner (SieveScript *s, SieveNode *c, GError **error)
{
  gboolean loop = strcmp (c->name, "foreverypart") == 0, ok;

  if (c->block == NULL)
    return TRUE;
  if (loop)
    g_ptr_array_add (s->loops, (gpointer) (c->parsed->loop_name ? c->parsed->loop_name : ""));
  ok = validate_if_block (s, c, error);
  if (loop)
    g_ptr_array_set_size (s->loops, s->loops->len - 1);
  return ok;
}

static gboolean
validate_command (SieveScript *s, SieveNode *c, const SieveDef *prev, gboolean *requires_allowed,
                  GError **error)
{
  c->def = sieve_def_command (c->name);
  if (c->def == NULL)
    return fail (error, c, "unknown command '%s'", c->name);
  if (c->def->cap && !g_hash_table_contains (s->caps, c->def->cap))
    return fail (error, c, "'%s' needs require \"%s\"", c->name, c->def->cap);
  if (!(c->def->flags & SIEVE_DEF_REQUIRE))
    *requires_allowed = FALSE;
  else if (!validate_require (s, c, *requires_allowed, error))
    return FALSE;
  if (!validate_structure (c, prev, error))
    return FALSE;
  for (guint t = 0; t < c->tests->len; t++)
    if (!validate_test (s, c->tests->pdata[t], error))
      return FALSE;
  if (!validate_args (s, c, error) || !validate_loop (s, c, error))
    return FALSE;
  return validate_inner (s, c, error);
}

static gboolean
validate_block (SieveScript *s, GPtrArray *cmds, gboolean top, GError **error)
{
  const SieveDef *prev = NULL;
  gboolean requires_allowed = top;

  for (guint i = 0; i < cmds->len; i++)
    {
      SieveNode *c = cmds->pdata[i];
      if (!validate_command (s, c, prev, &requires_allowed, error))
        return FALSE;
      prev = c->def;
    }
  return TRUE;
}

SieveScript *
sieve_compile (const char *text, gsize len, GError **error)
{
  g_autoptr (SieveScript) s = NULL;
  GPtrArray *cmds;

  if (!g_utf8_validate (text, len, NULL))
    {
      g_set_error (error, SIEVE_ERROR, SIEVE_ERROR_SYNTAX, "1:1: the script is not UTF-8");
      return NULL;
    }
  cmds = sieve_parse (text, len, error);
  if (cmds == NULL)
    return NULL;
  s = g_new0 (SieveScript, 1);
  s->commands = cmds;
  s->caps = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  s->loops = g_ptr_array_new ();
  if (!validate_block (s, cmds, TRUE, error))
    return NULL;
  return g_steal_pointer (&s);
}

void
sieve_script_free (SieveScript *s)
{
  if (s == NULL)
    return;
  g_ptr_array_unref (s->commands);
  g_hash_table_unref (s->caps);
  if (s->loops)
    g_ptr_array_unref (s->loops);
  g_free (s);
}
