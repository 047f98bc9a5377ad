/* sieve-values.c - what the tests compare: the values of a header field
 * (as sieve-changed.c says they are now), the addresses in them (RFC 5228
 * 2.7.4, RFC 5233), and matching values against keys with the comparator
 * and match type (setting the match variables).
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"
#include "sieve-match.h"
#include "sieve-run.h"


/* @set_vars: :matches and :regex set the match variables (not so for
 * body, RFC 5173 6) */
static gboolean
match_value (SieveRun *run, const SieveArgs *a, const char *value, const char *key, gboolean *late,
             gboolean set_vars)
{
  g_autoptr (GArray) caps = NULL;
  gboolean regex = a->match.type == SIEVE_MATCH_REGEX;

  if ((a->match.type != SIEVE_MATCH_MATCHES && !regex) || !set_vars || !run->variables)
    return sieve_match_one (&a->match, value, key, NULL, run->deadline, late);
  caps = g_array_new (FALSE, FALSE, sizeof (SieveGlobCap));
  if (!sieve_match_one (&a->match, value, key, caps, run->deadline, late))
    return FALSE;
  if (regex)
    sieve_run_set_match_groups (run, value, caps);
  else
    sieve_run_set_match_variables (run, value, caps);
  return TRUE;
}

/* Does any value match any key?  Sets match variables on :matches. */
gboolean
sieve_run_match_any (SieveRun *run, const SieveArgs *a, char **values, char **keys)
{
  return sieve_match_any_full (run, a, values, keys, TRUE);
}

/* ... and with @set_vars FALSE, leaves them alone (body, RFC 5173 6) */
gboolean
sieve_match_any_full (SieveRun *run, const SieveArgs *a, char **values, char **keys, gboolean set_vars)
{
  if (a->match.type == SIEVE_MATCH_COUNT)
    return sieve_match_count (&a->match, values ? g_strv_length (values) : 0, keys);
  for (guint v = 0; values && values[v] && !sieve_run_out_of_time (run); v++)
    for (guint k = 0; keys[k]; k++)
      {
        gboolean late = FALSE;
        if (match_value (run, a, values[v], keys[k], &late, set_vars))
          return TRUE;
        if (late)
          {
            sieve_run_fail (run, SIEVE_ERROR_LIMIT, a->match.type == SIEVE_MATCH_REGEX
                            ? "a :regex did not compile or was too complex"
                            : "script ran too long (or a :matches was too complex)");
            return FALSE;
          }
      }
  return FALSE;
}

/* The key list: the last positional argument, expanded */
char **
sieve_expand_keys (SieveRun *run, const SieveArgs *a)
{
  return sieve_run_expand_list (run, sieve_args_list (a, a->pos->len - 1));
}

/* @values (NULL-terminated here) against @keys */
gboolean
sieve_match_keys (SieveRun *run, const SieveArgs *a, GPtrArray *values, char **keys)
{
  g_ptr_array_add (values, NULL);
  return sieve_run_match_any (run, a, (char **) values->pdata, keys);
}

/* The subaddress separators (RFC 5233), "+" when none are set */
const char *
sieve_run_delimiter (SieveRun *run)
{
  return run->m->delimiter && run->m->delimiter[0] ? run->m->delimiter : "+";
}

static void
add_address (SieveRun *run, GPtrArray *out, InternetAddress *ia, SieveAddressPart part)
{
  char *p;

  if (!INTERNET_ADDRESS_IS_MAILBOX (ia))
    return;
  p = sieve_address_part (internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia)), part, sieve_run_delimiter (run));
  if (p)
    g_ptr_array_add (out, p);
}

/* The addresses of a header value, a group's members included */
void
sieve_add_addresses (SieveRun *run, GPtrArray *out, const char *value, SieveAddressPart part)
{
  InternetAddressList *list = internet_address_list_parse (NULL, value);

  for (int i = 0; list && i < internet_address_list_length (list); i++)
    {
      InternetAddress *ia = internet_address_list_get_address (list, i);
      if (INTERNET_ADDRESS_IS_GROUP (ia))
        {
          InternetAddressList *members = internet_address_group_get_members (INTERNET_ADDRESS_GROUP (ia));
          for (int k = 0; members && k < internet_address_list_length (members); k++)
            add_address (run, out, internet_address_list_get_address (members, k), part);
        }
      else
        add_address (run, out, ia, part);
    }
  if (list)
    g_object_unref (list);
}

/* Header values as the script sees them now. */
char **
sieve_run_headers (SieveRun *run, const char *name)
{
  GPtrArray *out = sieve_header_values (run, name, G_MAXUINT);

  g_ptr_array_add (out, NULL);
  g_ptr_array_set_free_func (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

/* header, address, exists: the top-level fields as editheader left
 * them, or with :mime those of the parts in scope (RFC 5703 4) */
char **
sieve_field_values (SieveRun *run, const SieveArgs *a, const char *name)
{
  GPtrArray *out;
  g_auto (GStrv) top = NULL;

  if (!a->mime)
    return sieve_run_headers (run, name);
  out = sieve_mime_header_values (run, a, name);
  if (out == NULL)
    {
      top = sieve_run_headers (run, name);
      out = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; top[i]; i++)
        sieve_mime_option (a, name, top[i], out);
    }
  g_ptr_array_add (out, NULL);
  g_ptr_array_set_free_func (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}
