/* sieve-duplicate.c - the duplicate test (RFC 7352).  Whether an id was
 * seen is the caller's to answer (SieveMessage.duplicate, over what
 * earlier runs recorded); what this run would record goes into the
 * result (SieveResult.duplicates), for the caller to record once the
 * actions are carried out: a failed run records nothing (3).
 */
#include "config.h"

#include <string.h>

#include "sieve-run.h"

#define DEFAULT_SECONDS (7 * 86400)   /* 3.3: "around 7 days" */
#define MAX_ID_SIZE 1024              /* an id longer than this is cut (a key, not a copy of the body) */

/* 3.1: ":header" and ":uniqueid" are mutually exclusive; 3.4: no :index */
gboolean
sieve_check_duplicate (const SieveNode *n, GError **error)
{
  const char *why = n->parsed->header && n->parsed->uniqueid ? ":header and :uniqueid together"
                    : n->parsed->index ? ":index is not for duplicate" : NULL;

  if (why)
    sieve_node_fail (error, n, "%s", why);
  return why == NULL;
}

/* A field name (RFC 5228 2.4.2.2): printable ASCII but ':' */
static gboolean
field_name_ok (const char *name)
{
  if (name[0] == '\0')
    return FALSE;
  for (const char *p = name; *p; p++)
    if (*p < 33 || *p > 126 || *p == ':')
      return FALSE;
  return TRUE;
}

/* The unique id (3.1): :uniqueid as given, else the first field of
 * :header (Message-ID by default), trimmed; NULL if there is none. */
static char *
unique_id (SieveRun *run, const SieveArgs *a)
{
  g_autofree char *name = NULL;
  g_auto (GStrv) v = NULL;
  char *id;

  if (a->uniqueid)
    return sieve_run_expand (run, a->uniqueid);
  name = a->header ? sieve_run_expand (run, a->header) : g_strdup ("Message-ID");
  if (!field_name_ok (name))
    return NULL;  /* 3.1: an invalid name is no error, the test is false */
  v = sieve_run_headers (run, name);
  if (v[0] == NULL)
    return NULL;
  id = g_strstrip (g_strdup (v[0]));
  sieve_cut_utf8 (id, MAX_ID_SIZE);
  return id;
}

/* 3.3: the site's cap is put in silently; 0 makes the test false */
static guint64
timeout (SieveRun *run, const SieveArgs *a)
{
  guint64 max = run->m->max_duplicate_seconds ? run->m->max_duplicate_seconds : DEFAULT_SECONDS;

  return MIN (a->has_seconds ? a->seconds : DEFAULT_SECONDS, max);
}

/* One record per handle and id: the last test evaluated decides its
 * :seconds and :last (3.3 allows it). */
static void
remember (SieveRun *run, char *handle, char *id, guint64 seconds, gboolean last)
{
  SieveDuplicate *d = NULL;

  for (guint i = 0; i < run->r->duplicates->len && d == NULL; i++)
    {
      SieveDuplicate *o = run->r->duplicates->pdata[i];
      if (strcmp (o->handle, handle) == 0 && strcmp (o->id, id) == 0)
        d = o;
    }
  if (d == NULL)
    {
      d = g_new0 (SieveDuplicate, 1);
      d->handle = g_strdup (handle);
      d->id = g_strdup (id);
      g_ptr_array_add (run->r->duplicates, d);
    }
  d->seconds = seconds;
  d->last = last;
}

/* 3: true if an earlier run recorded the id; ids of this run do not
 * count (the caller records them only afterwards) */
gboolean
sieve_test_duplicate (SieveRun *run, const SieveNode *t)
{
  const SieveArgs *a = t->parsed;
  g_autofree char *id = unique_id (run, a);
  g_autofree char *handle = a->handle ? sieve_run_expand (run, a->handle) : g_strdup ("");
  guint64 seconds = timeout (run, a);
  gboolean seen;

  if (id == NULL || seconds == 0 || run->error)
    return FALSE;
  /* each question may read the user's ids: a bounded number of ids */
  if (run->r->duplicates->len >= SIEVE_MAX_ACTIONS * 4)
    {
      sieve_run_fail (run, SIEVE_ERROR_LIMIT, "too many duplicate tests");
      return FALSE;
    }
  seen = run->m->duplicate != NULL && run->m->duplicate (handle, id, run->m->data);
  remember (run, handle, id, seconds, a->last);
  return seen;
}
