/* sieve-changed.c - the message as the tests see it after the run's
 * changes so far: a header field's values after editheader (RFC 5293 3)
 * and after replace or enclose (RFC 5703 6: tests after them "use the
 * newly created message"), the body text, and the MIME structure for body
 * :content and :raw, :mime, foreverypart and extracttext.  Made here from
 * the change as deliver/ makes the message, but for what only it knows
 * (enclose's boundary, the transfer encoding).  The parts of a replaced
 * part stay as received (README: Sieve).  And the parts as received,
 * which the caller gives once.
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"
#include "sieve-run.h"

#define MAX_BODY_SIZE (1024 * 1024)
#define MAX_HEADER_SIZE (1024 * 1024) /* like the body: a folded field can be longer */

/* The parts as received, asked of the caller on first use */
const GPtrArray *
sieve_run_mime_parts (SieveRun *run)
{
  if (!run->parts_fetched)
    {
      run->parts_fetched = TRUE;
      run->parts = run->m->mime_parts ? run->m->mime_parts (run->m->data) : NULL;
    }
  return run->parts;
}

static void
list_free (gpointer list)
{
  if (list)
    g_ptr_array_unref (list);
}

/* The last change of the whole message among the first @n, or -1 */
static int
last_whole (SieveRun *run, guint n)
{
  for (guint i = MIN (n, run->r->changes->len); i > 0; i--)
    if (((const SieveChange *) run->r->changes->pdata[i - 1])->part == 0)
      return (int) i - 1;
  return -1;
}

static gsize
max_body (SieveRun *run)
{
  return run->m->max_body_size ? run->m->max_body_size : MAX_BODY_SIZE;
}

/* replace :mime's entity (fields, empty line, body) or the text as a
 * text/plain part, CR LF as LF as it is stored; no empty line: all body */
static char *
replaced_entity (const SieveChange *c)
{
  GString *s = g_string_new (c->mime ? "" : "Content-Type: text/plain; charset=utf-8\n\n");

  for (const char *r = c->text; *r; r++)
    if (*r != '\r')
      g_string_append_c (s, *r);
  if (c->mime && s->str[0] != '\n' && strstr (s->str, "\n\n") == NULL)
    g_string_prepend_c (s, '\n');
  return g_string_free (s, FALSE);
}

/* replace: the new entity parsed as the caller parses the stored message */
static GPtrArray *
replaced_parts (SieveRun *run, const SieveChange *c)
{
  g_autofree char *text = replaced_entity (c);
  g_autoptr (GMimeStream) stream = g_mime_stream_mem_new_with_buffer (text, strlen (text));
  g_autoptr (GMimeParser) parser = g_mime_parser_new_with_stream (stream);
  g_autoptr (GMimeMessage) msg = g_mime_parser_construct_message (parser, NULL);

  return sieve_mime_parts_new (msg, max_body (run));
}

static SieveMimePart *
new_part (guint depth, const char *type, const char *subtype, guint n_descendants)
{
  SieveMimePart *p = g_new0 (SieveMimePart, 1);
  char *names[] = { "Content-Type", NULL };
  char *values[] = { NULL, NULL };

  p->depth = depth;
  p->n_descendants = n_descendants;
  p->type = g_strdup (type);
  p->subtype = g_strdup (subtype);
  values[0] = g_strdup_printf ("%s/%s%s", type, subtype, strcmp (type, "text") ? "" : "; charset=utf-8");
  p->names = g_strdupv (names);
  p->values = g_strdupv (values);
  g_free (values[0]);
  return p;
}

static SieveMimePart *
copy_part (const SieveMimePart *p, guint deeper)
{
  SieveMimePart *q = g_new0 (SieveMimePart, 1);

  *q = *p;
  q->depth += deeper;
  q->type = g_strdup (p->type);
  q->subtype = g_strdup (p->subtype);
  q->names = g_strdupv (p->names);
  q->values = g_strdupv (p->values);
  q->content = g_strdup (p->content);
  q->prologue = g_strdup (p->prologue);
  q->epilogue = g_strdup (p->epilogue);
  q->message_header = g_strdup (p->message_header);
  return q;
}

/* The enclosed message's header for :content of the message/rfc822 part */
static char *
header_text (const SieveMimePart *top)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; top->names[i]; i++)
    g_string_append_printf (s, "%s: %s\r\n", top->names[i], top->values[i]);
  return g_string_free (s, FALSE);
}

/* enclose: multipart/mixed of the text part and a message/rfc822 part
 * holding the message before it (deeper by two) */
static GPtrArray *
enclosed_parts (const SieveChange *c, const GPtrArray *before)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (sieve_mime_part_free);
  guint n = before ? MIN (before->len, SIEVE_MIME_MAX_PARTS - 3) : 0;
  SieveMimePart *text, *rfc822;

  g_ptr_array_add (out, new_part (0, "multipart", "mixed", n + 2));
  text = new_part (1, "text", "plain", 0);
  text->content = g_strdup (c->text);
  g_ptr_array_add (out, text);
  rfc822 = new_part (1, "message", "rfc822", n);
  rfc822->message_header = n ? header_text (before->pdata[0]) : NULL;
  g_ptr_array_add (out, rfc822);
  for (guint i = 0; i < n; i++)
    if (((const SieveMimePart *) before->pdata[i])->depth + 2 < SIEVE_MIME_MAX_DEPTH)
      g_ptr_array_add (out, copy_part (before->pdata[i], 2));
  return out;
}

/* The bytes a list holds, charged to the run's memory (an enclose copies
 * the parts); FALSE (the run failed) over it */
static gboolean
charge (SieveRun *run, const GPtrArray *parts)
{
  gsize n = 0;

  for (guint i = 0; i < parts->len; i++)
    {
      const SieveMimePart *p = parts->pdata[i];
      n += (p->content ? strlen (p->content) : 0) + (p->message_header ? strlen (p->message_header) : 0);
    }
  if (n > run->mem_max - MIN (run->mem_used, run->mem_max))
    {
      sieve_run_fail (run, SIEVE_ERROR_LIMIT, "replace or enclose: the new message's parts are too large");
      return FALSE;
    }
  run->mem_used += n;
  return TRUE;
}

/* The parts after changes [0, @w] (@w a change of the whole message) */
static const GPtrArray *
parts_after (SieveRun *run, int w)
{
  const SieveChange *c = run->r->changes->pdata[w];
  GPtrArray *made;

  if ((guint) w < run->made->len && run->made->pdata[w])
    return run->made->pdata[w];
  if (c->kind == SIEVE_CHANGE_REPLACE)
    made = replaced_parts (run, c);
  else
    {
      int before = last_whole (run, w);
      made = enclosed_parts (c, before < 0 ? sieve_run_mime_parts (run) : parts_after (run, before));
    }
  if (run->made->len <= (guint) w)
    g_ptr_array_set_size (run->made, w + 1);
  run->made->pdata[w] = made;
  if (!charge (run, made))
    return NULL;
  return made;
}

const GPtrArray *
sieve_run_parts_now (SieveRun *run)
{
  int w = last_whole (run, G_MAXUINT);

  if (w < 0)
    return sieve_run_mime_parts (run);
  if (run->made == NULL)
    run->made = g_ptr_array_new_with_free_func (list_free);
  return parts_after (run, w);
}

/* body :raw after changes [0, @w]: replace's new body as it is before
 * the transfer encoding; enclose's text part then the body before it
 * (no boundaries: those are the caller's) */
static char *
raw_after (SieveRun *run, int w, gsize max)
{
  const SieveChange *c;
  char *raw, *body;

  if (w < 0)
    return run->m->raw_body ? run->m->raw_body (max, run->m->data) : NULL;
  c = run->r->changes->pdata[w];
  if (c->kind == SIEVE_CHANGE_REPLACE)
    {
      g_autofree char *entity = replaced_entity (c);
      body = entity[0] == '\n' ? entity + 1 : strstr (entity, "\n\n") + 2;
      return g_strndup (body, max);
    }
  raw = raw_after (run, last_whole (run, w), max);
  body = g_strconcat (c->text, "\n", raw ? raw : "", NULL);
  g_free (raw);
  sieve_cut_utf8 (body, max);
  return body;
}

char *
sieve_run_raw_now (SieveRun *run, gsize max)
{
  return raw_after (run, last_whole (run, G_MAXUINT), max);
}

gboolean
sieve_run_changed_whole (SieveRun *run)
{
  return last_whole (run, G_MAXUINT) >= 0;
}

void
sieve_changed_clear (SieveRun *run)
{
  g_clear_pointer (&run->made, g_ptr_array_unref);
}

/* ---- header values after editheader (RFC 5293 3), and after replace or
 * enclose of the whole message (RFC 5703 6) ---------------------------- */

/* RFC 5293 3: later tests see the edits so far, in order, as they will
 * be applied to the message */
static void
apply_edit (const SieveHeaderEdit *e, GPtrArray *out)
{
  guint n = out->len, occurrence = 0;

  if (e->value)
    {
      g_ptr_array_insert (out, e->last ? -1 : 0, g_strdup (e->value));
      return;
    }
  for (guint k = 0; k < out->len;)
    {
      guint at;
      occurrence++;
      at = e->last ? n - occurrence + 1 : occurrence;
      if ((e->index == 0 || (guint) e->index == at) && sieve_header_edit_matches (e, out->pdata[k]))
        g_ptr_array_remove_index (out, k);
      else
        k++;
    }
}

static void
apply_edits (SieveRun *run, const char *name, guint from, guint to, GPtrArray *out)
{
  for (guint i = from; run->r->edits && i < MIN (to, run->r->edits->len); i++)
    {
      const SieveHeaderEdit *e = run->r->edits->pdata[i];
      if (g_ascii_strcasecmp (e->name, name) == 0)
        apply_edit (e, out);
    }
}

/* Header values as the script sees them after the first @changes replace
 * and enclose changes (RFC 5703 6: later tests see the new message) and
 * the edits made before each. */
GPtrArray *
sieve_header_values (SieveRun *run, const char *name, guint changes)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  char **orig = run->m->header ? run->m->header (name, run->m->data) : NULL;
  guint done = 0;

  /* tests see at most max_header_size of a value (a Subject folded over
   * megabytes is no more spam for its tail) */
  for (guint i = 0; orig && orig[i]; i++)
    {
      sieve_cut_utf8 (orig[i], run->m->max_header_size ? run->m->max_header_size : MAX_HEADER_SIZE);
      g_ptr_array_add (out, g_steal_pointer (&orig[i]));
    }
  g_free (orig);
  for (guint i = 0; run->r->changes && i < MIN (changes, run->r->changes->len); i++)
    {
      const SieveChange *c = run->r->changes->pdata[i];
      apply_edits (run, name, done, c->edits_before, out);
      done = MAX (done, c->edits_before);
      sieve_change_values (run, i, name, out);
    }
  apply_edits (run, name, done, G_MAXUINT, out);
  return out;
}

/* ---- what later tests see (RFC 5703 6: "tests ... use the newly created
 * message"); as deliver/ makes it, but for what only it knows (the
 * boundary, the transfer encoding) ------------------------------------------- */

static gboolean
is_mime_field (const char *name)
{
  return g_ascii_strncasecmp (name, "Content-", 8) == 0 || g_ascii_strcasecmp (name, "MIME-Version") == 0;
}

static void
set_values (GPtrArray *values, const char *value)
{
  g_ptr_array_set_size (values, 0);
  if (value)
    g_ptr_array_add (values, g_strdup (value));
}

/* replace :mime: the entity's own values of @name (its fields up to the
 * empty line, unfolded). */
static void
entity_values (const char *text, const char *name, GPtrArray *values)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", 1000);
  gsize n = strlen (name);

  for (guint i = 0; lines[i] && lines[i][strspn (lines[i], "\r")] != '\0'; i++)
    if (g_ascii_strncasecmp (lines[i], name, n) == 0 && lines[i][n] == ':')
      {
        GString *v = g_string_new (lines[i] + n + 1);
        for (guint k = i + 1; lines[k] && (lines[k][0] == ' ' || lines[k][0] == '\t'); k++)
          g_string_append (v, lines[k]);
        g_strdelimit (v->str, "\r", ' ');
        g_ptr_array_add (values, g_strstrip (g_string_free (v, FALSE)));
      }
}

static void
replace_values (SieveRun *run, guint index, const SieveChange *c, const char *name, GPtrArray *values)
{
  const char *old = g_ascii_strcasecmp (name, "Original-Subject") == 0 && c->subject ? "Subject"
                  : g_ascii_strcasecmp (name, "Original-From") == 0 && c->from ? "From" : NULL;

  if (old)
    {
      GPtrArray *before = sieve_header_values (run, old, index);
      for (guint i = 0; i < before->len; i++)
        g_ptr_array_add (values, g_steal_pointer (&before->pdata[i]));
      g_ptr_array_unref (before);
    }
  else if (c->part != 0 && (is_mime_field (name) || !g_ascii_strcasecmp (name, "MIME-Version")))
    return;   /* a part replaced: the top part's fields stay */
  else if (g_ascii_strcasecmp (name, "MIME-Version") == 0)
    set_values (values, "1.0");
  else if (is_mime_field (name))
    {
      set_values (values, c->mime || g_ascii_strcasecmp (name, "Content-Type") ? NULL : "text/plain; charset=utf-8");
      if (c->mime)
        entity_values (c->text, name, values);
    }
  else if (g_ascii_strcasecmp (name, "Subject") == 0 && c->subject)
    set_values (values, c->subject);
  else if (g_ascii_strcasecmp (name, "From") == 0 && c->from)
    set_values (values, c->from);
}

static void
enclose_values (SieveRun *run, const SieveChange *c, const char *name, GPtrArray *values)
{
  gboolean copied = FALSE;

  for (guint i = 0; !copied && c->headers && c->headers[i]; i++)
    copied = g_ascii_strcasecmp (c->headers[i], name) == 0;
  if (g_ascii_strcasecmp (name, "Subject") == 0)
    {
      if (c->subject)
        set_values (values, c->subject);
    }
  else if (copied)
    return;
  else if (g_ascii_strcasecmp (name, "From") == 0)
    {
      g_autofree char *me = g_strdup_printf ("<%s>", run->m->envelope_to ? run->m->envelope_to : "");
      set_values (values, me);
    }
  else if (g_ascii_strcasecmp (name, "Date") == 0)
    {
      g_autoptr (GDateTime) now = g_date_time_new_now_local ();
      g_autofree char *d = g_date_time_format (now, "%a, %d %b %Y %H:%M:%S %z");
      set_values (values, d);
    }
  else if (g_ascii_strcasecmp (name, "MIME-Version") == 0)
    set_values (values, "1.0");
  else if (g_ascii_strcasecmp (name, "Content-Type") == 0)
    set_values (values, "multipart/mixed");
  else if (g_ascii_strcasecmp (name, "Return-Path") != 0)
    set_values (values, NULL);
}

void
sieve_change_values (SieveRun *run, guint index, const char *name, GPtrArray *values)
{
  const SieveChange *c = run->r->changes->pdata[index];

  if (c->kind == SIEVE_CHANGE_ENCLOSE)
    enclose_values (run, c, name, values);
  else
    replace_values (run, index, c, name, values);
}

/* replace :mime: the entity's body, if it is text (no Content-Type is
 * text/plain, RFC 2045 5.2); else nothing the body test can read. */
static char *
entity_text (const char *text)
{
  g_autoptr (GPtrArray) type = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *entity = g_strdup (text);
  const char *blank;
  char *w = entity;

  for (const char *r = text; *r; r++)   /* CR LF as LF, as it is stored */
    if (*r != '\r')
      *w++ = *r;
  *w = '\0';
  blank = g_str_has_prefix (entity, "\n") ? entity : strstr (entity, "\n\n");

  entity_values (entity, "Content-Type", type);
  if (type->len && g_ascii_strncasecmp (type->pdata[0], "text/", 5) != 0)
    return g_strdup ("");
  return g_strdup (blank ? blank + (blank == entity ? 1 : 2) : entity);
}

/* The last of changes [0, @n) that replaced part @p, or NULL */
static const SieveChange *
part_change (SieveRun *run, guint n, guint p)
{
  for (guint i = n; i > 0; i--)
    if (((const SieveChange *) run->r->changes->pdata[i - 1])->part == p)
      return run->r->changes->pdata[i - 1];
  return NULL;
}

/* The text parts after the replaces of parts [0, @n) (they all come
 * before any change of the whole message): each replaced part gives its
 * new text, the others what they had. */
static char *
parts_text (SieveRun *run, guint n)
{
  const GPtrArray *parts = sieve_run_mime_parts (run);
  GString *s = g_string_new (NULL);

  for (guint i = 0; parts && i < parts->len; i++)
    {
      const SieveMimePart *p = parts->pdata[i];
      const SieveChange *c = part_change (run, n, i);
      if (c)
        {
          g_autofree char *t = c->mime ? entity_text (c->text) : g_strdup (c->text);
          g_string_append (s, t);
          i += p->n_descendants;
        }
      else if (p->content && strcmp (p->type, "text") == 0)
        g_string_append (s, p->content);
    }
  return g_string_free (s, FALSE);
}

/* The body test after replace sees the new text; after enclose, the
 * new text part and then what was enclosed (RFC 5703 5, 6).  After the
 * replace of a part, the text parts with the new one in its place. */
char *
sieve_changed_body (SieveRun *run, char *text)
{
  guint n = 0;

  while (run->r->changes && n < run->r->changes->len && ((SieveChange *) run->r->changes->pdata[n])->part)
    n++;
  if (n > 0)
    {
      g_free (text);
      text = parts_text (run, n);
    }
  for (guint i = n; run->r->changes && i < run->r->changes->len; i++)
    {
      const SieveChange *c = run->r->changes->pdata[i];
      char *next;
      if (c->kind == SIEVE_CHANGE_REPLACE)
        next = c->mime ? entity_text (c->text) : g_strdup (c->text);
      else
        next = g_strconcat (c->text, "\n", text ? text : "", NULL);
      g_free (text);
      text = next;
    }
  return text;
}
