/* sieve-tests.c - the tests: their definitions (name, capability,
 * argument shape, run function) and what each looks at when it runs:
 * header fields and the addresses in them (through sieve-values.c), the
 * envelope, the body, size, flags (RFC 5232), strings (RFC 5229),
 * spamtest and virustest (RFC 5235), mailboxexists (RFC 5490) and the
 * callout results (vnd.opes-lmtpd.callout).
 */
#include "config.h"

#include <string.h>

#include "sieve-match.h"
#include "sieve-run.h"

#define MAX_BODY_SIZE (1024 * 1024)

static gboolean
test_true (SieveRun *run, const SieveNode *t)
{
  return TRUE;
}

static gboolean
test_false (SieveRun *run, const SieveNode *t)
{
  return FALSE;
}

static gboolean
test_not (SieveRun *run, const SieveNode *t)
{
  return !sieve_run_test (run, t->tests->pdata[0]);
}

/* allof and anyof: the first test that decides ends the list */
static gboolean
test_list (SieveRun *run, const SieveNode *t, gboolean all)
{
  for (guint i = 0; i < t->tests->len; i++)
    if (sieve_run_test (run, t->tests->pdata[i]) != all)
      return !all;
  return all;
}

static gboolean
test_allof (SieveRun *run, const SieveNode *t)
{
  return test_list (run, t, TRUE);
}

static gboolean
test_anyof (SieveRun *run, const SieveNode *t)
{
  return test_list (run, t, FALSE);
}

static gboolean
test_size (SieveRun *run, const SieveNode *t)
{
  const SieveArgs *a = t->parsed;
  guint64 limit = ((SieveArg *) a->pos->pdata[0])->number;

  return a->over ? run->m->size > limit : run->m->size < limit;
}

static gboolean
test_exists (SieveRun *run, const SieveNode *t)
{
  g_auto (GStrv) names = sieve_run_expand_list (run, sieve_args_list (t->parsed, 0));

  for (guint i = 0; names[i]; i++)
    {
      g_auto (GStrv) v = sieve_field_values (run, t->parsed, names[i]);
      if (v[0] == NULL)
        return FALSE;
    }
  return TRUE;
}

/* header and address: the values of the named fields, or the addresses
 * in them */
static gboolean
header_values (SieveRun *run, const SieveNode *t, gboolean addresses)
{
  const SieveArgs *a = t->parsed;
  g_auto (GStrv) keys = sieve_expand_keys (run, a);
  g_auto (GStrv) names = sieve_run_expand_list (run, sieve_args_list (a, 0));
  g_autoptr (GPtrArray) values = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) fields = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; names[i]; i++)
    {
      g_auto (GStrv) v = sieve_field_values (run, a, names[i]);
      for (guint k = 0; v[k]; k++)
        g_ptr_array_add (fields, g_steal_pointer (&v[k]));
    }
  sieve_run_pick_index (a, fields);
  for (guint k = 0; k < fields->len; k++)
    if (addresses)
      sieve_add_addresses (run, values, fields->pdata[k], a->address_part);
    else
      g_ptr_array_add (values, g_strdup (fields->pdata[k]));
  return sieve_match_keys (run, a, values, keys);
}

static gboolean
test_header (SieveRun *run, const SieveNode *t)
{
  return header_values (run, t, FALSE);
}

static gboolean
test_address (SieveRun *run, const SieveNode *t)
{
  return header_values (run, t, TRUE);
}

static gboolean
test_envelope (SieveRun *run, const SieveNode *t)
{
  const SieveArgs *a = t->parsed;
  g_auto (GStrv) keys = sieve_expand_keys (run, a);
  g_auto (GStrv) parts = sieve_run_expand_list (run, sieve_args_list (a, 0));
  g_autoptr (GPtrArray) values = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; parts[i]; i++)
    {
      const char *addr = !g_ascii_strcasecmp (parts[i], "from") ? run->m->envelope_from
                         : !g_ascii_strcasecmp (parts[i], "to") ? run->m->envelope_to : NULL;
      char *p;
      if (addr == NULL)
        continue;
      /* the null reverse-path is "" for every part */
      p = addr[0] ? sieve_address_part (addr, a->address_part, sieve_run_delimiter (run)) : g_strdup ("");
      if (p)
        g_ptr_array_add (values, p);
    }
  return sieve_match_keys (run, a, values, keys);
}

static gboolean
test_string (SieveRun *run, const SieveNode *t)
{
  const SieveArgs *a = t->parsed;
  g_auto (GStrv) keys = sieve_expand_keys (run, a);
  g_auto (GStrv) values = sieve_run_expand_list (run, sieve_args_list (a, 0));
  guint n = 0;

  if (a->match.type != SIEVE_MATCH_COUNT)
    return sieve_run_match_any (run, a, values, keys);
  /* RFC 5229 5: "The count of a single string is 0 if it is the empty
   * string, or 1 otherwise" (RFC 6609 3.4.1's example depends on it) */
  for (guint i = 0; values[i]; i++)
    n += values[i][0] != '\0';
  return sieve_match_count (&a->match, n, keys);
}

/* body (RFC 5173): :text the text parts as one string; :raw and
 * :content through sieve-mime.c.  No match variables (6). */
static gboolean
test_body (SieveRun *run, const SieveNode *t)
{
  const SieveArgs *a = t->parsed;
  g_auto (GStrv) keys = sieve_expand_keys (run, a);
  g_autofree char *text = NULL;
  g_autoptr (GPtrArray) values = NULL;
  char *one[2] = { NULL, NULL };

  if (!sieve_run_has_body (run))
    return FALSE;   /* a header alone: no body to match (4) */
  if (a->transform != SIEVE_BODY_TEXT)
    {
      values = sieve_mime_body_values (run, a);
      if (values == NULL)
        return FALSE;
      g_ptr_array_add (values, NULL);
      return sieve_match_any_full (run, a, (char **) values->pdata, keys, FALSE);
    }
  /* after a replace, the new body (RFC 5703 5) */
  text = sieve_changed_body (run, run->m->body_text ? run->m->body_text (run->m->data) : NULL);
  if (text)
    sieve_cut_utf8 (text, run->m->max_body_size ? run->m->max_body_size : MAX_BODY_SIZE);
  one[0] = text ? text : "";
  return sieve_match_any_full (run, a, one, keys, FALSE);
}

/* RFC 5490 3.1: true if all the mailboxes exist */
static gboolean
test_mailboxexists (SieveRun *run, const SieveNode *t)
{
  /* its names are its keys: expanded twice, as the memory bound has
   * always counted them */
  G_GNUC_UNUSED g_auto (GStrv) keys = sieve_expand_keys (run, t->parsed);
  g_auto (GStrv) names = sieve_run_expand_list (run, sieve_args_list (t->parsed, 0));
  gboolean all = run->m->mailbox_exists != NULL;

  for (guint i = 0; all && names[i]; i++)
    all = run->m->mailbox_exists (names[i], run->m->data);
  return all;
}

/* The internal flag variable's flags against the keys */
static gboolean
test_hasflag (SieveRun *run, const SieveNode *t)
{
  g_auto (GStrv) keys = sieve_expand_keys (run, t->parsed);
  g_autoptr (GPtrArray) values = g_ptr_array_new_with_free_func (g_free);
  GHashTableIter it;
  gpointer f;

  g_hash_table_iter_init (&it, run->flags);
  while (g_hash_table_iter_next (&it, &f, NULL))
    g_ptr_array_add (values, g_strdup (f));
  return sieve_match_keys (run, t->parsed, values, keys);
}

/* spamtest and virustest: the caller's score, 0 when unknown */
static gboolean
match_score (SieveRun *run, const SieveNode *t, int score)
{
  g_auto (GStrv) keys = sieve_expand_keys (run, t->parsed);
  g_autofree char *s = g_strdup_printf ("%d", score < 0 ? 0 : score);
  char *values[2] = { s, NULL };

  return sieve_run_match_any (run, t->parsed, values, keys);
}

static gboolean
test_spamtest (SieveRun *run, const SieveNode *t)
{
  return match_score (run, t, t->parsed->percent ? run->m->spamtest_percent : run->m->spamtest);
}

static gboolean
test_virustest (SieveRun *run, const SieveNode *t)
{
  return match_score (run, t, run->m->virustest);
}

/* The first result of the named service; its labels are a list */
static gboolean
test_callout (SieveRun *run, const SieveNode *t)
{
  const SieveArgs *a = t->parsed;
  g_auto (GStrv) keys = sieve_expand_keys (run, a);
  g_autofree char *service = sieve_run_expand (run, sieve_args_string (a, 0));

  for (guint i = 0; i < run->m->n_callouts; i++)
    {
      const SieveCallout *c = &run->m->callouts[i];
      const char *v = a->field == SIEVE_CALLOUT_SCORE ? c->score
                      : a->field == SIEVE_CALLOUT_LABELS ? c->labels : c->verdict;
      g_auto (GStrv) values = NULL;
      if (g_ascii_strcasecmp (c->service, service) != 0)
        continue;
      if (v == NULL)
        return FALSE;
      values = a->field == SIEVE_CALLOUT_LABELS ? g_strsplit (v, ",", -1) : g_strsplit (v, "\1", 1);
      return sieve_run_match_any (run, a, values, keys);
    }
  return FALSE;
}

const SieveDef sieve_test_defs[] = {
  { .name = "address", .shape = "ss", .check = sieve_check_index, .test = test_address },
  { .name = "allof", .shape = "", .tests = SIEVE_TESTS_LIST, .test = test_allof },
  { .name = "anyof", .shape = "", .tests = SIEVE_TESTS_LIST, .test = test_anyof },
  { .name = "exists", .shape = "s", .test = test_exists },
  { .name = "false", .shape = "", .test = test_false },
  { .name = "header", .shape = "ss", .check = sieve_check_index, .test = test_header },
  { .name = "not", .shape = "", .tests = 1, .test = test_not },
  { .name = "size", .shape = "n", .test = test_size },
  { .name = "true", .shape = "", .test = test_true },
  { .name = "envelope", .cap = "envelope", .shape = "ss", .test = test_envelope },
  { .name = "hasflag", .cap = "imap4flags", .shape = "oss", .test = test_hasflag },
  { .name = "string", .cap = "variables", .shape = "ss", .test = test_string },
  { .name = "body", .cap = "body", .shape = "s", .test = test_body },
  { .name = "spamtest", .cap = "spamtest", .shape = "s", .test = test_spamtest },
  { .name = "virustest", .cap = "virustest", .shape = "s", .test = test_virustest },
  { .name = "mailboxexists", .cap = "mailbox", .shape = "s", .test = test_mailboxexists },
  { .name = "callout", .cap = "vnd.opes-lmtpd.callout", .shape = "ss", .test = test_callout },
  { .name = "date", .cap = "date", .shape = "sss", .check = sieve_check_date, .test = sieve_test_date },
  { .name = "currentdate", .cap = "date", .shape = "ss", .check = sieve_check_date, .test = sieve_test_currentdate },
  { .name = "duplicate", .cap = "duplicate", .shape = "", .check = sieve_check_duplicate, .test = sieve_test_duplicate },
  { .name = "ihave", .cap = "ihave", .shape = "s", .test = sieve_test_ihave },
  { .name = "environment", .cap = "environment", .shape = "ss", .test = sieve_test_environment },
  { .name = "specialuse_exists", .cap = "special-use", .shape = "oss", .test = sieve_test_specialuse_exists },
  { .name = "valid_notify_method", .cap = "enotify", .shape = "s", .test = sieve_test_valid_notify_method },
  { .name = "notify_method_capability", .cap = "enotify", .shape = "sss",
    .test = sieve_test_notify_method_capability },
  { NULL }
};
