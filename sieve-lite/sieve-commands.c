/* sieve-commands.c - the commands: their definitions (name, capability,
 * argument shape, run function) and what each does when it runs.  Control
 * (RFC 5228 3), actions (4, RFC 5228 fileinto/redirect, RFC 5429 reject,
 * RFC 5230 vacation), imap4flags (RFC 5232), variables (RFC 5229 set) and
 * editheader (RFC 5293).
 */
#include "config.h"

#include <string.h>

#include "sieve-match.h"
#include "sieve-run.h"

static void
cmd_require (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
}

/* if, elsif and else; *if_taken: a branch of this chain ran already */
static void
cmd_if (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  gboolean go = TRUE;

  if ((c->def->flags & SIEVE_DEF_ELSE) && *if_taken)
    return;
  if (c->def->flags & SIEVE_DEF_IF)
    go = sieve_run_test (run, c->tests->pdata[0]);
  *if_taken = go;
  if (go)
    sieve_run_block (run, c->block);
}

static void
cmd_stop (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  run->stopped = TRUE;
}

static void
cmd_keep (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  sieve_run_action (run, SIEVE_KEEP, NULL, sieve_run_flags_string (run, c->parsed->flags), FALSE);
  run->implicit_keep = FALSE;
}

static void
cmd_discard (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  sieve_run_action (run, SIEVE_DISCARD, NULL, NULL, FALSE);
  run->implicit_keep = FALSE;
}

static void
cmd_fileinto (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  const SieveArgs *a = c->parsed;
  g_autofree char *box = sieve_run_specialuse (run, a, sieve_run_expand (run, sieve_args_string (a, 0)));

  if (box == NULL)
    return;
  sieve_run_action (run, SIEVE_FILEINTO, g_strdup (box), sieve_run_flags_string (run, a->flags), a->copy);
  for (guint i = 0; a->create && i < run->r->actions->len; i++)
    {
      SieveAction *x = run->r->actions->pdata[i];
      if (x->kind == SIEVE_FILEINTO && g_strcmp0 (x->argument, box) == 0)
        x->create = TRUE;
    }
  if (!a->copy)
    run->implicit_keep = FALSE;
}

static void
cmd_redirect (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  const SieveArgs *a = c->parsed;
  char *to;

  if (++run->redirects > (run->m->max_redirects ? run->m->max_redirects : SIEVE_MAX_REDIRECTS))
    {
      g_set_error (&run->error, SIEVE_ERROR, SIEVE_ERROR_LIMIT, "too many redirects");
      return;
    }
  to = sieve_run_expand (run, sieve_args_string (a, 0));
  if (run->error)
    g_free (to);
  else if (!sieve_address_ok (to))
    {
      /* RFC 5228 4.2: a bad address is an error */
      g_autofree char *shown = sieve_printable (to, SIEVE_MAX_ERROR_TEXT);
      g_set_error (&run->error, SIEVE_ERROR, SIEVE_ERROR_RUNTIME, "redirect to an invalid address '%s'", shown);
      g_free (to);
    }
  else
    {
      sieve_run_action (run, SIEVE_REDIRECT, to, NULL, a->copy);
      if (!a->copy)
        run->implicit_keep = FALSE;
    }
}

/* A literal address is checked when the script is compiled; one built
 * from variables when it runs. */
static gboolean
check_redirect (const SieveNode *c, GError **error)
{
  const SieveArg *x = c->args->len ? c->args->pdata[c->args->len - 1] : NULL;

  if (x && x->kind == SIEVE_ARG_STRINGS && !strstr (x->strings[0], "${") && !sieve_address_ok (x->strings[0]))
    {
      sieve_node_fail (error, c, "'%s' is not a valid address", x->strings[0]);
      return FALSE;
    }
  return TRUE;
}

static void
cmd_vacation (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  sieve_run_vacation (run, c->parsed);
}

static void
reject (SieveRun *run, const SieveNode *c, SieveActionKind kind)
{
  sieve_run_action (run, kind, sieve_run_expand (run, sieve_args_string (c->parsed, 0)), NULL, FALSE);
  run->implicit_keep = FALSE;
}

static void
cmd_reject (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  reject (run, c, SIEVE_REJECT);
}

static void
cmd_ereject (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  reject (run, c, SIEVE_EREJECT);
}

/* setflag, addflag, removeflag: on the internal flag variable, or on
 * the named one given first */
static void
edit_flags (SieveRun *run, const SieveNode *c, gboolean remove, gboolean replace)
{
  const SieveArgs *a = c->parsed;
  char **list = sieve_args_list (a, a->pos->len - 1);
  g_autofree char *var = NULL;
  g_autoptr (GHashTable) saved = NULL;
  g_auto (GStrv) curv = NULL;
  const char *cur;
  char *value;

  if (a->pos->len != 2)
    {
      sieve_run_add_flags (run, list, remove, replace);
      return;
    }
  var = g_ascii_strdown (sieve_args_string (a, 0), -1);
  saved = run->flags;
  {
    const char *bare = var;
    cur = g_hash_table_lookup (sieve_run_variables (run, &bare), bare);
  }
  curv = g_strsplit (cur ? cur : "", " ", -1);
  run->flags = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  sieve_run_add_flags (run, curv, FALSE, FALSE);
  sieve_run_add_flags (run, list, remove, replace);
  value = sieve_run_flags_string (run, NULL);
  sieve_run_set_variable (run, g_steal_pointer (&var), value ? value : g_strdup (""));
  g_hash_table_unref (run->flags);
  run->flags = g_steal_pointer (&saved);
}

static void
cmd_setflag (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  edit_flags (run, c, FALSE, TRUE);
}

static void
cmd_addflag (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  edit_flags (run, c, FALSE, FALSE);
}

static void
cmd_removeflag (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  edit_flags (run, c, TRUE, FALSE);
}

/* set, with its modifiers applied in the order given */
static void
cmd_set (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  const SieveArgs *a = c->parsed;
  g_autofree char *name = g_ascii_strdown (sieve_args_string (a, 0), -1);
  char *value = sieve_run_expand (run, sieve_args_string (a, 1));

  for (guint i = 0; i < a->modifiers->len; i++)
    {
      const SieveModifierDef *m = a->modifiers->pdata[i];
      char *v = m->apply (value);
      g_free (value);
      value = v;
    }
  sieve_run_set_variable (run, g_steal_pointer (&name), value);
}

/* addheader and deleteheader: the trace fields and the caller's own (a
 * loop mark) stay as they are: the edit is ignored, as before for
 * Received */
static void
edit_header (SieveRun *run, const SieveNode *c, gboolean add)
{
  const SieveArgs *a = c->parsed;
  g_autofree char *name = sieve_run_expand (run, sieve_args_string (a, 0));
  SieveHeaderEdit *e;

  if (sieve_header_protected (name, run->m->protected_headers))
    return;
  e = g_new0 (SieveHeaderEdit, 1);
  e->name = g_steal_pointer (&name);
  e->last = a->last;
  e->index = (int) a->index;
  if (add)
    e->value = sieve_run_expand (run, sieve_args_string (a, 1));
  else if (a->pos->len == 2)
    {
      e->match = sieve_run_expand_list (run, sieve_args_list (a, 1));
      e->match_type = a->match.type;
      e->comparator = g_strdup (sieve_comparator_name (a->match.comparator));
      e->relop = a->match.has_relop ? g_strdup (sieve_relop_name (a->match.relop)) : NULL;
    }
  g_ptr_array_add (run->r->edits, e);
}

static void
cmd_addheader (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  edit_header (run, c, TRUE);
}

static void
cmd_deleteheader (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  edit_header (run, c, FALSE);
}

/* deleteheader's second shape keeps the wording of its errors. */
const SieveDef sieve_command_defs[] = {
  { .name = "require", .flags = SIEVE_DEF_REQUIRE, .command = cmd_require },
  { .name = "if", .shape = "", .tests = 1, .flags = SIEVE_DEF_IF | SIEVE_DEF_BLOCK, .command = cmd_if },
  { .name = "elsif", .shape = "", .tests = 1, .flags = SIEVE_DEF_IF | SIEVE_DEF_ELSE | SIEVE_DEF_BLOCK,
    .command = cmd_if },
  { .name = "else", .shape = "", .flags = SIEVE_DEF_ELSE | SIEVE_DEF_BLOCK, .command = cmd_if },
  { .name = "stop", .shape = "", .command = cmd_stop },
  { .name = "keep", .shape = "", .command = cmd_keep },
  { .name = "discard", .shape = "", .command = cmd_discard },
  { .name = "redirect", .shape = "s", .check = check_redirect, .command = cmd_redirect },
  { .name = "fileinto", .cap = "fileinto", .shape = "s", .flags = SIEVE_DEF_CREATE, .check = sieve_check_specialuse,
    .command = cmd_fileinto },
  { .name = "reject", .cap = "reject", .shape = "s", .command = cmd_reject },
  { .name = "ereject", .cap = "ereject", .shape = "s", .command = cmd_ereject },
  { .name = "setflag", .cap = "imap4flags", .shape = "oss", .command = cmd_setflag },
  { .name = "addflag", .cap = "imap4flags", .shape = "oss", .command = cmd_addflag },
  { .name = "removeflag", .cap = "imap4flags", .shape = "oss", .command = cmd_removeflag },
  { .name = "set", .cap = "variables", .shape = "ss", .command = cmd_set },
  { .name = "vacation", .cap = "vacation", .shape = "s", .check = sieve_check_vacation, .command = cmd_vacation },
  { .name = "addheader", .cap = "editheader", .shape = "ss", .command = cmd_addheader },
  { .name = "deleteheader", .cap = "editheader", .shape = "oss", .alt_shape = "s", .command = cmd_deleteheader },
  { .name = "include", .cap = "include", .shape = "s", .check = sieve_check_include, .command = sieve_cmd_include },
  { .name = "return", .cap = "include", .shape = "", .command = sieve_cmd_return },
  { .name = "global", .cap = "include", .shape = "s", .check = sieve_check_global, .command = sieve_cmd_global },
  { .name = "error", .cap = "ihave", .shape = "s", .command = sieve_cmd_error },
  /* RFC 5703 (sieve-mime.c) */
  { .name = "foreverypart", .cap = "foreverypart", .shape = "", .flags = SIEVE_DEF_BLOCK,
    .command = sieve_cmd_foreverypart },
  { .name = "break", .cap = "foreverypart", .shape = "", .command = sieve_cmd_break },
  { .name = "extracttext", .cap = "extracttext", .shape = "s", .command = sieve_cmd_extracttext },
  { .name = "notify", .cap = "enotify", .shape = "s", .check = sieve_check_notify, .command = sieve_cmd_notify },
  { .name = "replace", .cap = "replace", .shape = "s", .check = sieve_check_replace, .command = sieve_cmd_replace },
  { .name = "enclose", .cap = "enclose", .shape = "s", .command = sieve_cmd_enclose },
  { NULL }
};
