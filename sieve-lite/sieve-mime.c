/* sieve-mime.c - the MIME structure as a run sees it: body :raw and
 * :content (RFC 5173 5.1, 5.2), the loops foreverypart and break, the
 * :mime tag of header/address/exists and extracttext (RFC 5703).  The
 * parts come from the caller (SieveMessage.mime_parts), once a run.
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"
#include "sieve-match.h"
#include "sieve-run.h"

#define MAX_BODY_SIZE (1024 * 1024)

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeContentType, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (GMimeContentDisposition, g_object_unref)

#define PART(parts, i) ((const SieveMimePart *) (parts)->pdata[i])

int
sieve_run_current_part (SieveRun *run)
{
  return run->n_loops ? (int) run->loops[run->n_loops - 1].part : -1;
}

gboolean
sieve_run_has_body (SieveRun *run)
{
  char *one;

  if (sieve_run_changed_whole (run))
    return TRUE;
  if (run->has_body == 0 && run->m->raw_body)
    {
      one = run->m->raw_body (1, run->m->data);
      run->has_body = one ? 1 : -1;
      g_free (one);
    }
  return run->has_body >= 0;
}

/* RFC 5173 5.2: "" is every type, "type" any of its subtypes,
 * "type/subtype" that one; one that begins or ends with '/', or has two,
 * none. */
static gboolean
type_listed (const SieveMimePart *p, char **types)
{
  for (guint i = 0; types && types[i]; i++)
    {
      const char *t = types[i], *slash = strchr (t, '/');
      if (t[0] == '\0')
        return TRUE;
      if (slash == NULL)
        {
          if (g_ascii_strcasecmp (t, p->type) == 0)
            return TRUE;
          continue;
        }
      if (slash == t || slash[1] == '\0' || strchr (slash + 1, '/'))
        continue;
      if (strlen (p->type) == (gsize) (slash - t) && g_ascii_strncasecmp (t, p->type, slash - t) == 0
          && g_ascii_strcasecmp (slash + 1, p->subtype) == 0)
        return TRUE;
    }
  return FALSE;
}

/* What :content searches of a listed part: a multipart's prologue and
 * epilogue apart, a message/rfc822's enclosed header, else the part. */
static void
add_part_strings (const SieveMimePart *p, GPtrArray *out)
{
  if (strcmp (p->type, "multipart") == 0)
    {
      g_ptr_array_add (out, g_strdup (p->prologue ? p->prologue : ""));
      g_ptr_array_add (out, g_strdup (p->epilogue ? p->epilogue : ""));
    }
  else if (p->message_header)
    g_ptr_array_add (out, g_strdup (p->message_header));
  else
    g_ptr_array_add (out, g_strdup (p->content ? p->content : ""));
}

GPtrArray *
sieve_mime_body_values (SieveRun *run, const SieveArgs *a)
{
  gsize max = run->m->max_body_size ? run->m->max_body_size : MAX_BODY_SIZE;
  GPtrArray *out;
  const GPtrArray *parts;

  if (a->transform == SIEVE_BODY_RAW)
    {
      char *raw = sieve_run_raw_now (run, max);
      if (raw == NULL)
        return NULL;
      out = g_ptr_array_new_with_free_func (g_free);
      g_ptr_array_add (out, raw);
      return out;
    }
  out = g_ptr_array_new_with_free_func (g_free);
  parts = sieve_run_parts_now (run);
  {
    g_auto (GStrv) types = sieve_run_expand_list (run, a->content_types);
    for (guint i = 0; parts && i < parts->len; i++)
      if (type_listed (PART (parts, i), types))
        add_part_strings (PART (parts, i), out);
  }
  return out;
}

/* :type, :subtype, :contenttype of Content-Type or Content-Disposition
 * (RFC 5703 4.1); another field gives "" */
static void
add_type (const SieveArgs *a, const char *name, const char *value, GPtrArray *out)
{
  if (g_ascii_strcasecmp (name, "content-type") == 0)
    {
      g_autoptr (GMimeContentType) ct = g_mime_content_type_parse (NULL, value);
      const char *t = ct ? g_mime_content_type_get_media_type (ct) : NULL;
      const char *st = ct ? g_mime_content_type_get_media_subtype (ct) : NULL;
      if (t == NULL || st == NULL)
        return;   /* does not parse: not counted (4.1 a) */
      g_ptr_array_add (out, a->mime_opt == SIEVE_MIMEOPT_TYPE ? g_strdup (t)
                            : a->mime_opt == SIEVE_MIMEOPT_SUBTYPE ? g_strdup (st)
                            : g_strdup_printf ("%s/%s", t, st));
    }
  else if (g_ascii_strcasecmp (name, "content-disposition") == 0)
    {
      g_autoptr (GMimeContentDisposition) d = g_mime_content_disposition_parse (NULL, value);
      const char *v = d ? g_mime_content_disposition_get_disposition (d) : NULL;
      if (v == NULL)
        return;
      g_ptr_array_add (out, g_strdup (a->mime_opt == SIEVE_MIMEOPT_SUBTYPE ? "" : v));
    }
  else
    g_ptr_array_add (out, g_strdup (""));
}

/* :param: the named parameters' values (RFC 2231 decoded by GMime) */
static void
add_params (const SieveArgs *a, const char *name, const char *value, GPtrArray *out)
{
  g_autoptr (GMimeContentType) ct = NULL;
  g_autoptr (GMimeContentDisposition) d = NULL;
  GMimeParamList *l;

  if (g_ascii_strcasecmp (name, "content-disposition") == 0)
    {
      d = g_mime_content_disposition_parse (NULL, value);
      l = d ? g_mime_content_disposition_get_parameters (d) : NULL;
    }
  else
    {
      ct = g_mime_content_type_parse (NULL, value);
      l = ct ? g_mime_content_type_get_parameters (ct) : NULL;
    }
  for (guint i = 0; l && a->params && a->params[i]; i++)
    {
      GMimeParam *p = g_mime_param_list_get_parameter (l, a->params[i]);
      if (p && g_mime_param_get_value (p))
        g_ptr_array_add (out, g_strdup (g_mime_param_get_value (p)));
    }
}

void
sieve_mime_option (const SieveArgs *a, const char *name, const char *value, GPtrArray *out)
{
  if (a->mime_opt == SIEVE_MIMEOPT_NONE)
    g_ptr_array_add (out, g_strdup (value));
  else if (a->mime_opt == SIEVE_MIMEOPT_PARAM)
    add_params (a, name, value, out);
  else
    add_type (a, name, value, out);
}

/* RFC 5703 4.1: the current part (the top-level header outside a loop),
 * or with :anychild that part and all inside it (every part outside) */
GPtrArray *
sieve_mime_header_values (SieveRun *run, const SieveArgs *a, const char *name)
{
  const GPtrArray *parts;
  int cur = sieve_run_current_part (run);
  guint first, end;
  GPtrArray *out;

  if (!a->anychild && cur < 0)
    return NULL;
  parts = cur < 0 ? sieve_run_parts_now (run) : run->loops[run->n_loops - 1].parts;
  out = g_ptr_array_new_with_free_func (g_free);
  if (parts == NULL || parts->len == 0)
    return out;
  first = cur < 0 ? 0 : (guint) cur;
  end = a->anychild ? first + 1 + PART (parts, first)->n_descendants : first + 1;
  for (guint i = first; i < end && i < parts->len; i++)
    {
      const SieveMimePart *p = PART (parts, i);
      for (guint k = 0; p->names[k]; k++)
        if (g_ascii_strcasecmp (p->names[k], name) == 0)
          sieve_mime_option (a, name, p->values[k], out);
    }
  return out;
}

/* RFC 5703 3: every part depth first, the whole message first; inside
 * another loop, the parts inside that loop's part.  Each part counts
 * against SIEVE_MAX_PARTS_VISITED, each command against the steps. */
void
sieve_cmd_foreverypart (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  guint level = run->n_loops, first = 0, end;
  const GPtrArray *parts = level ? run->loops[level - 1].parts : sieve_run_parts_now (run);

  if (parts == NULL)
    return;
  end = parts->len;
  if (level >= SIEVE_MAX_LOOPS)
    {
      sieve_run_fail (run, SIEVE_ERROR_LIMIT, "foreverypart nested too deep");
      return;
    }
  if (level > 0)
    {
      first = run->loops[level - 1].part + 1;
      end = first + PART (parts, first - 1)->n_descendants;
    }
  run->n_loops++;
  for (guint i = first; i < end && i < parts->len && !run->error && !run->stopped; i++)
    {
      if (++run->parts_visited > SIEVE_MAX_PARTS_VISITED)
        {
          sieve_run_fail (run, SIEVE_ERROR_LIMIT, "foreverypart visited too many parts");
          break;
        }
      run->loops[level].part = i;
      run->loops[level].name = c->parsed->loop_name;
      run->loops[level].replaced = FALSE;
      run->loops[level].parts = parts;
      sieve_run_block (run, c->block);
      /* the parts inside a part replaced are gone (RFC 5703 5) */
      if (run->loops[level].replaced)
        i += PART (parts, i)->n_descendants;
      if (run->breaking)
        {
          run->breaking = run->break_level != level;
          break;
        }
    }
  run->n_loops = level;
}

/* The innermost loop, or the innermost of that :name (RFC 5703 3);
 * validation made sure there is one. */
void
sieve_cmd_break (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  const char *name = c->parsed->loop_name;

  for (guint level = run->n_loops; level > 0; level--)
    if (name == NULL || g_strcmp0 (run->loops[level - 1].name, name) == 0)
      {
        run->breaking = TRUE;
        run->break_level = level - 1;
        return;
      }
  sieve_run_fail (run, SIEVE_ERROR_RUNTIME, "break outside foreverypart");
}

/* RFC 5703 7: "the transcoded content of the current MIME body part"
 * ("" for a multipart or message/rfc822, which have parts, not content,
 * as Pigeonhole), :first N characters of it, cut to the variable size
 * rather than failing (a long part is ordinary mail: "MAY be truncated") */
void
sieve_cmd_extracttext (SieveRun *run, const SieveNode *c, gboolean *if_taken)
{
  const SieveArgs *a = c->parsed;
  int cur = sieve_run_current_part (run);
  const GPtrArray *parts = cur >= 0 ? run->loops[run->n_loops - 1].parts : NULL;
  const SieveMimePart *p = parts && cur >= 0 ? PART (parts, cur) : NULL;
  char *value = g_strdup (p && p->content ? p->content : "");

  if (a->has_first)
    {
      char *q = value;
      for (guint64 n = 0; *q && n < a->first; n++)
        q = (char *) g_utf8_find_next_char (q, NULL);
      if (q)
        *q = '\0';
    }
  sieve_cut_utf8 (value, run->var_max);
  for (guint i = 0; i < a->modifiers->len; i++)
    {
      const SieveModifierDef *m = a->modifiers->pdata[i];
      char *v = m->apply (value);
      g_free (value);
      value = v;
    }
  sieve_run_set_variable (run, g_ascii_strdown (sieve_args_string (a, 0), -1), value);
}
