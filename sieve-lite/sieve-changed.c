/* sieve-changed.c - the MIME structure after a replace or enclose of the
 * whole message (RFC 5703 5, 6: tests after them "use the newly created
 * message"), for body :content and :raw, :mime, foreverypart and
 * extracttext.  Made here from the change as deliver/ makes the message,
 * but for what only it knows (enclose's boundary, the transfer encoding).
 * The parts of a replaced part stay as received (README: Sieve).
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"
#include "sieve-run.h"

#define MAX_BODY_SIZE (1024 * 1024)

static void
part_free (gpointer data)
{
  SieveMimePart *p = data;

  g_free (p->type);
  g_free (p->subtype);
  g_strfreev (p->names);
  g_strfreev (p->values);
  g_free (p->content);
  g_free (p->prologue);
  g_free (p->epilogue);
  g_free (p->message_header);
  g_free (p);
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
  GPtrArray *out = g_ptr_array_new_with_free_func (part_free);
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
