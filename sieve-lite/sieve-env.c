/* sieve-env.c - what a script can ask of its surroundings: which
 * extensions there are (ihave, with error: RFC 5463), the environment
 * items (RFC 5183) and the folders with a special use (RFC 8579); the
 * values come from the caller through SieveMessage.
 */
#include "config.h"

#include <string.h>

#include "sieve-match.h"
#include "sieve-run.h"

/* ---- ihave, error (RFC 5463) --------------------------------------------- */

/* 4: "MUST NOT allow it to be used with ... encoded-character ... or
 * variables ... that change how the content of Sieve scripts are
 * interpreted.  The test MUST fail" */
static gboolean
available (const char *cap)
{
  return sieve_capability_known (cap) && strcmp (cap, "variables") != 0 && strcmp (cap, "encoded-character") != 0;
}

static char **
ihave_caps (const SieveNode *t)
{
  const SieveArg *x = t->args->len == 1 ? t->args->pdata[0] : NULL;

  return x && x->kind == SIEVE_ARG_STRINGS ? x->strings : NULL;
}

/* 4: a block under "if ihave" may use what it names; when one of them is
 * not available, the block is not validated (its commands may be ones we
 * do not know) and never runs: the test is false.  Otherwise they become
 * the script's, as a require would make them ("all the way to the end of
 * the script, even outside the block"). */
gboolean
sieve_ihave_defers (SieveScript *s, const SieveNode *c)
{
  const SieveNode *t = c->tests->len == 1 ? c->tests->pdata[0] : NULL;
  char **caps;

  if (t == NULL || strcmp (t->name, "ihave") != 0 || !g_hash_table_contains (s->caps, "ihave")
      || (caps = ihave_caps (t)) == NULL)
    return FALSE;
  for (guint i = 0; caps[i]; i++)
    if (!available (caps[i]))
      return TRUE;
  for (guint i = 0; caps[i]; i++)
    g_hash_table_add (s->caps, g_strdup (caps[i]));
  return FALSE;
}

/* 4: true when every capability named is one we have */
gboolean
sieve_test_ihave (SieveRun *run, const SieveNode *t)
{
  char **caps = sieve_args_list (t->parsed, 0);

  for (guint i = 0; caps[i]; i++)
    if (!available (caps[i]))
      return FALSE;
  return TRUE;
}

/* 5: "error" ends the run with a runtime error carrying its message. */
void
sieve_cmd_error (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  g_autofree char *text = sieve_run_expand (run, sieve_args_string (c->parsed, 0));
  g_autofree char *shown = sieve_printable (text, SIEVE_MAX_ERROR_TEXT);
  g_autofree char *why = g_strdup_printf ("error command: %s", shown);

  sieve_run_fail (run, SIEVE_ERROR_RUNTIME, why);
}

/* ---- environment (RFC 5183) ------------------------------------------------ */

/* 4.1's items as a delivery agent sees them; NULL: not known. */
static const char *
env_item (SieveRun *run, const char *name)
{
  const SieveMessage *m = run->m;

  if (g_ascii_strcasecmp (name, "domain") == 0)
    return m->env_domain;
  if (g_ascii_strcasecmp (name, "host") == 0)
    return m->env_host;
  if (g_ascii_strcasecmp (name, "location") == 0)
    return "MDA";     /* evaluated at final delivery */
  if (g_ascii_strcasecmp (name, "name") == 0)
    return PACKAGE_NAME;
  if (g_ascii_strcasecmp (name, "phase") == 0)
    return "during";  /* while the message is delivered */
  /* remote-host: "The empty string will be returned if for some reason
   * this information cannot be obtained"; remote-ip says no such thing:
   * unknown, it does not exist */
  if (g_ascii_strcasecmp (name, "remote-host") == 0)
    return m->env_remote_host ? m->env_remote_host : "";
  if (g_ascii_strcasecmp (name, "remote-ip") == 0)
    return m->env_remote_ip;
  if (g_ascii_strcasecmp (name, "version") == 0)
    return PACKAGE_VERSION;
  return NULL;
}

static gboolean
env_match (SieveRun *run, const SieveArgs *a, const char *value, char **keys)
{
  g_autoptr (GArray) caps = g_array_new (FALSE, FALSE, sizeof (SieveGlobCap));
  gboolean late = FALSE;

  /* 4: "The count of an environment test is 0 if the environment
   * information returned is the empty string, or 1 otherwise." */
  if (a->match.type == SIEVE_MATCH_COUNT)
    return sieve_match_count (&a->match, value[0] != '\0', keys);
  for (guint k = 0; keys[k] && !sieve_run_out_of_time (run); k++)
    {
      if (sieve_match_one (&a->match, value, keys[k], caps, run->deadline, &late))
        {
          if (run->variables && a->match.type == SIEVE_MATCH_MATCHES)
            sieve_run_set_match_variables (run, value, caps);
          return TRUE;
        }
      if (late)
        {
          sieve_run_fail (run, SIEVE_ERROR_LIMIT, "script ran too long (or a :matches was too complex)");
          return FALSE;
        }
      g_array_set_size (caps, 0);
    }
  return FALSE;
}

/* 4.1: "If the specified environment item does not exist, the test
 * fails" */
gboolean
sieve_test_environment (SieveRun *run, const SieveNode *t)
{
  const SieveArgs *a = t->parsed;
  g_autofree char *name = sieve_run_expand (run, sieve_args_string (a, 0));
  g_auto (GStrv) keys = sieve_run_expand_list (run, sieve_args_list (a, 1));
  const char *value = env_item (run, name);

  return value != NULL && env_match (run, a, value, keys);
}

/* ---- special-use (RFC 8579) ------------------------------------------------- */

/* RFC 6154 2 / RFC 3501 flag-extension: "\" and an atom */
static gboolean
valid_flag (const char *flag)
{
  if (flag[0] != '\\' || flag[1] == '\0')
    return FALSE;
  for (const char *p = flag + 1; *p; p++)
    if ((guchar) *p <= 0x20 || (guchar) *p >= 0x7f || strchr ("(){%*\"\\]", *p))
      return FALSE;
  return TRUE;
}

static const char *
folder_of (SieveRun *run, const char *flag)
{
  const SieveMessage *m = run->m;

  return m->special_use ? m->special_use (flag, m->site_data) : NULL;
}

/* 4: a literal :specialuse that is no special-use flag is an error when
 * the script is compiled. */
gboolean
sieve_check_specialuse (const SieveNode *c, GError **error)
{
  const char *flag = c->parsed->specialuse;

  if (flag && !strstr (flag, "${") && !valid_flag (flag))
    {
      g_autofree char *shown = sieve_printable (flag, 64);
      sieve_node_fail (error, c, "'%s' is not a special-use flag", shown);
      return FALSE;
    }
  return TRUE;
}

/* 4: into the folder with the special use if there is one, else into
 * the one named. */
char *
sieve_run_specialuse (SieveRun *run, const SieveArgs *a, char *box)
{
  g_autofree char *flag = NULL;
  const char *folder;

  if (a->specialuse == NULL)
    return box;
  flag = sieve_run_expand (run, a->specialuse);
  if (!valid_flag (flag))
    {
      g_autofree char *shown = sieve_printable (flag, 64);
      g_autofree char *why = g_strdup_printf ("fileinto: '%s' is not a special-use flag", shown);
      sieve_run_fail (run, SIEVE_ERROR_RUNTIME, why);
      g_free (box);
      return NULL;
    }
  folder = folder_of (run, flag);
  if (folder == NULL)
    return box;
  g_free (box);
  return g_strdup (folder);
}

/* 5: do folders (or the one named) have all the special uses listed? */
gboolean
sieve_test_specialuse_exists (SieveRun *run, const SieveNode *t)
{
  const SieveArgs *a = t->parsed;
  g_autofree char *box = a->pos->len == 2 ? sieve_run_expand (run, sieve_args_string (a, 0)) : NULL;
  g_auto (GStrv) flags = sieve_run_expand_list (run, sieve_args_list (a, a->pos->len - 1));
  const SieveMessage *m = run->m;

  for (guint i = 0; flags[i]; i++)
    {
      const char *folder;
      if (!valid_flag (flags[i]))
        {
          sieve_run_fail (run, SIEVE_ERROR_RUNTIME, "specialuse_exists: not a special-use flag");
          return FALSE;
        }
      folder = folder_of (run, flags[i]);
      if (folder == NULL || (box && strcmp (folder, box) != 0))
        return FALSE;
      if (m->mailbox_exists == NULL || !m->mailbox_exists (folder, m->data))
        return FALSE;
    }
  return TRUE;
}
