/* sieve-notify.c - enotify (RFC 5435) with the one method we have,
 * mailto (RFC 5436): the notify action, the valid_notify_method and
 * notify_method_capability tests, the encodeurl modifier, and the mailto
 * URI (RFC 6068) read into the plain values the caller sends from.
 */
#include "config.h"

#include <string.h>

#include "sieve-match.h"
#include "sieve-run.h"

#define MAX_NOTIFIES 4              /* per run */
#define MAX_NOTIFY_RECIPIENTS 8     /* per notify */

/* ---- the mailto URI (RFC 6068) ------------------------------------------------ */

/* %XX decoded; NULL if an escape is broken or decodes to NUL. */
static char *
pct_decode (const char *s, gsize len)
{
  g_autoptr (GString) out = g_string_sized_new (len);

  for (gsize i = 0; i < len; i++)
    {
      int hi, lo;
      if (s[i] != '%')
        {
          g_string_append_c (out, s[i]);
          continue;
        }
      if (i + 2 >= len)
        return NULL;
      hi = g_ascii_xdigit_value (s[i + 1]);
      lo = g_ascii_xdigit_value (s[i + 2]);
      if (hi < 0 || lo < 0 || (hi | lo) == 0)
        return NULL;
      g_string_append_c (out, (char) (hi * 16 + lo));
      i += 2;
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* Fields a URI may not set (RFC 5436 2.7: "MUST be ignored"; Bcc and the
 * MIME and trace fields too: the recipients are To and Cc, the body is
 * ours to encode, trace fields are the transport's). */
static gboolean
unsafe_field (const char *name)
{
  static const char *const unsafe[] = { "from", "auto-submitted", "received", "message-id", "date", "bcc",
                                        "sender", "return-path", "delivered-to", "mime-version",
                                        "content-type", "content-transfer-encoding", NULL };
  g_autofree char *lc = g_ascii_strdown (name, -1);

  return g_strv_contains (unsafe, lc) || g_str_has_prefix (lc, "resent-") || g_str_has_prefix (lc, "x-sieve-");
}

/* Adds the addresses of a to-list (comma-separated, "<a@b>" or a@b) to
 * @rcpts.  FALSE if one is not an address. */
static gboolean
add_addresses (GPtrArray *rcpts, const char *list)
{
  g_auto (GStrv) parts = g_strsplit (list, ",", -1);

  for (guint i = 0; parts[i]; i++)
    {
      char *a = g_strstrip (parts[i]);
      char *lt = strrchr (a, '<');
      if (*a == '\0')
        continue;
      if (lt && g_str_has_suffix (lt, ">"))
        {
          a = lt + 1;
          a[strlen (a) - 1] = '\0';
        }
      if (!sieve_address_ok (a) || rcpts->len >= MAX_NOTIFY_RECIPIENTS * 4)
        return FALSE;
      g_ptr_array_add (rcpts, g_strdup (a));
    }
  return TRUE;
}

static void
join_field (char **field, const char *value)
{
  char *v = *field ? g_strconcat (*field, ", ", value, NULL) : g_strdup (value);
  g_free (*field);
  *field = v;
}

/* One hfield "name=value" into @n.  FALSE if it is malformed. */
static gboolean
mailto_field (SieveNotify *n, GPtrArray *rcpts, GPtrArray *headers, const char *f)
{
  const char *eq = strchr (f, '=');
  g_autofree char *name = eq ? pct_decode (f, eq - f) : NULL;
  g_autofree char *value = eq ? pct_decode (eq + 1, strlen (eq + 1)) : NULL;

  if (name == NULL || value == NULL || name[0] == '\0' || strpbrk (name, ": \t\r\n"))
    return FALSE;
  if (g_ascii_strcasecmp (name, "body") == 0)
    {
      g_free (n->body);
      n->body = g_steal_pointer (&value);
      return TRUE;
    }
  /* a line break in a field would start a field of the sender's choosing */
  if (strpbrk (value, "\r\n"))
    return FALSE;
  if (g_ascii_strcasecmp (name, "to") == 0 || g_ascii_strcasecmp (name, "cc") == 0)
    {
      join_field (g_ascii_strcasecmp (name, "to") == 0 ? &n->to : &n->cc, value);
      return add_addresses (rcpts, value);
    }
  if (g_ascii_strcasecmp (name, "subject") == 0)
    {
      g_free (n->subject);
      n->subject = g_steal_pointer (&value);
    }
  else if (!unsafe_field (name))
    g_ptr_array_add (headers, g_strdup_printf ("%s: %s", name, value));
  return TRUE;
}

/* Reads @uri into @n (recipients, fields, body).  NULL or why it is not a
 * mailto URI we can send to. */
static const char *
mailto_parse (const char *uri, SieveNotify *n)
{
  g_autoptr (GPtrArray) rcpts = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) headers = g_ptr_array_new_with_free_func (g_free);
  const char *q, *p = uri + 7;
  g_autofree char *to = NULL;
  g_auto (GStrv) fields = NULL;

  if (g_ascii_strncasecmp (uri, "mailto:", 7) != 0)
    return "unsupported notification method";
  q = strchr (p, '?');
  to = pct_decode (p, q ? (gsize) (q - p) : strlen (p));
  if (to == NULL || !add_addresses (rcpts, to))
    return "invalid mailto URI";
  if (to[0])
    join_field (&n->to, to);
  fields = g_strsplit (q ? q + 1 : "", "&", -1);
  for (guint i = 0; q && fields[i]; i++)
    if (!mailto_field (n, rcpts, headers, fields[i]))
      return "invalid mailto URI";
  if (rcpts->len == 0)
    return "mailto URI without recipients";
  if (rcpts->len > MAX_NOTIFY_RECIPIENTS)
    return "too many recipients in a mailto URI";
  g_ptr_array_add (rcpts, NULL);
  g_ptr_array_add (headers, NULL);
  n->recipients = (char **) g_ptr_array_free (g_steal_pointer (&rcpts), FALSE);
  n->headers = (char **) g_ptr_array_free (g_steal_pointer (&headers), FALSE);
  return NULL;
}

/* NULL if @uri is a method we can notify by, else why not. */
static const char *
method_check (const char *uri)
{
  SieveNotify *n = g_new0 (SieveNotify, 1);
  const char *why = mailto_parse (uri, n);

  sieve_notify_free (n);
  return why;
}

/* ---- the notify action (RFC 5435 3) ------------------------------------------ */

static gboolean
importance_ok (const char *v)
{
  return v == NULL || ((v[0] == '1' || v[0] == '2' || v[0] == '3') && v[1] == '\0');
}

/* A literal method or :importance is checked when the script is compiled
 * (RFC 5435 3.8, 3.2), one built from variables when it runs. */
gboolean
sieve_check_notify (const SieveNode *c, GError **error)
{
  const SieveArgs *a = c->parsed;
  const char *uri = sieve_args_string (a, 0);
  const char *why = NULL;

  if (!importance_ok (a->importance) && !strstr (a->importance, "${"))
    why = ":importance must be \"1\", \"2\" or \"3\"";
  else if (!strstr (uri, "${"))
    why = method_check (uri);
  if (why)
    {
      sieve_node_fail (error, c, "%s", why);
      return FALSE;
    }
  return TRUE;
}

/* RFC 5436 2.7: no two notifications to one address in a run; FALSE if
 * no recipient is left. */
static gboolean
drop_notified (SieveRun *run, SieveNotify *n)
{
  guint kept = 0;

  for (guint i = 0; n->recipients[i]; i++)
    {
      gboolean seen = FALSE;
      for (guint k = 0; k < run->r->actions->len && !seen; k++)
        {
          const SieveAction *o = run->r->actions->pdata[k];
          for (guint j = 0; o->notify && o->notify->recipients[j] && !seen; j++)
            seen = g_ascii_strcasecmp (o->notify->recipients[j], n->recipients[i]) == 0;
        }
      for (guint j = 0; j < kept && !seen; j++)
        seen = g_ascii_strcasecmp (n->recipients[j], n->recipients[i]) == 0;
      if (seen)
        g_free (n->recipients[i]);
      else
        n->recipients[kept++] = n->recipients[i];
    }
  n->recipients[kept] = NULL;
  return kept > 0;
}

static guint
notifies (SieveRun *run)
{
  guint count = 0;

  for (guint i = 0; i < run->r->actions->len; i++)
    count += ((SieveAction *) run->r->actions->pdata[i])->kind == SIEVE_NOTIFY;
  return count;
}

/* The arguments expanded into @n; NULL or why the notify fails the run. */
static const char *
notify_fill (SieveRun *run, const SieveArgs *a, const char *uri, SieveNotify *n)
{
  g_autofree char *importance = a->importance ? sieve_run_expand (run, a->importance) : NULL;
  const char *why = mailto_parse (uri, n);

  if (why)
    return why;
  if (!importance_ok (importance))
    return ":importance must be \"1\", \"2\" or \"3\"";
  n->importance = importance ? importance[0] - '0' : 2;
  n->from = a->from ? sieve_run_expand (run, a->from) : NULL;
  n->message = a->message ? sieve_run_expand (run, a->message) : NULL;
  n->options = a->options ? sieve_run_expand_list (run, a->options) : NULL;
  return NULL;
}

/* notify: an action of its own; it leaves the implicit keep alone (RFC
 * 5435 3).  A method that is not valid fails the run (3.8). */
void
sieve_cmd_notify (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  g_autofree char *uri = sieve_run_expand (run, sieve_args_string (c->parsed, 0));
  SieveNotify *n = g_new0 (SieveNotify, 1);
  const char *why = run->error ? NULL : notify_fill (run, c->parsed, uri, n);
  SieveAction *x;

  if (why == NULL && !run->error && notifies (run) >= MAX_NOTIFIES)
    why = "too many notifications";
  if (why || run->error || !drop_notified (run, n))
    {
      g_autofree char *shown = sieve_printable (uri, SIEVE_MAX_ERROR_TEXT);
      g_autofree char *what = why ? g_strdup_printf ("notify '%s': %s", shown, why) : NULL;
      if (what)
        sieve_run_fail (run, SIEVE_ERROR_RUNTIME, what);
      sieve_notify_free (n);
      return;
    }
  if (run->r->actions->len >= (run->m->max_actions ? run->m->max_actions : SIEVE_MAX_ACTIONS))
    {
      sieve_run_fail (run, SIEVE_ERROR_LIMIT, "too many actions");
      sieve_notify_free (n);
      return;
    }
  x = sieve_run_new_action (run, SIEVE_NOTIFY);
  x->argument = g_steal_pointer (&uri);
  x->notify = n;
  g_ptr_array_add (run->r->actions, x);
}

/* ---- the tests (RFC 5435 4, 5) ------------------------------------------------- */

/* valid_notify_method: every URI is one we could notify by. */
gboolean
sieve_test_valid_notify_method (SieveRun *run, const SieveNode *t)
{
  g_auto (GStrv) uris = sieve_run_expand_list (run, sieve_args_list (t->parsed, 0));

  for (guint i = 0; uris[i]; i++)
    if (method_check (uris[i]))
      return FALSE;
  return uris[0] != NULL;
}

/* notify_method_capability: "online" is "maybe" for mailto (RFC 5436
 * 2.2); anything else about a valid method is unknown, and an invalid
 * method has no capabilities (RFC 5435 5). */
gboolean
sieve_test_notify_method_capability (SieveRun *run, const SieveNode *t)
{
  const SieveArgs *a = t->parsed;
  g_autofree char *uri = sieve_run_expand (run, sieve_args_string (a, 0));
  g_autofree char *cap = sieve_run_expand (run, sieve_args_string (a, 1));
  g_auto (GStrv) keys = sieve_run_expand_list (run, sieve_args_list (a, 2));

  if (method_check (uri) || g_ascii_strcasecmp (cap, "online") != 0)
    return FALSE;
  if (a->match.type == SIEVE_MATCH_COUNT)
    return sieve_match_count (&a->match, 1, keys);
  for (guint k = 0; keys[k]; k++)
    {
      gboolean late = FALSE;
      if (sieve_match_one (&a->match, "maybe", keys[k], NULL, run->deadline, &late))
        return TRUE;
    }
  return FALSE;
}

/* ---- :encodeurl (RFC 5435 6) --------------------------------------------------- */

/* Percent-encodes every octet but the URI's unreserved characters. */
char *
sieve_mod_encodeurl (const char *value)
{
  GString *s = g_string_new (NULL);

  for (const guchar *p = (const guchar *) value; *p; p++)
    {
      if (g_ascii_isalnum (*p) || strchr ("-._~", *p))
        g_string_append_c (s, *p);
      else
        g_string_append_printf (s, "%%%02X", *p);
    }
  return g_string_free (s, FALSE);
}
