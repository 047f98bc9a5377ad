/* cli-message.c - sieve-lite test: the message file as a script sees it
 * (its header, text, raw body and MIME parts through GMime; only INBOX
 * exists; the --duplicate ids were seen), and what the run decided,
 * printed one action or change a line.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* What the test run pretends earlier runs recorded (any handle) */
static gboolean
duplicate_seen (const char *handle, const char *id, gpointer data)
{
  CliMessage *m = data;

  return m->seen && g_strv_contains ((const char *const *) m->seen, id);
}
static char **
header_values (const char *name, gpointer data)
{
  CliMessage *m = data;
  GMimeHeaderList *list = g_mime_object_get_header_list (GMIME_OBJECT (m->msg));
  GMimeObject *part = g_mime_message_get_mime_part (m->msg);
  GMimeHeaderList *plist = part ? g_mime_object_get_header_list (part) : NULL;
  GPtrArray *out = g_ptr_array_new ();

  for (int pass = 0; pass < 2; pass++)
    {
      GMimeHeaderList *l = pass ? plist : list;
      for (int i = 0; l && i < g_mime_header_list_get_count (l); i++)
        {
          GMimeHeader *h = g_mime_header_list_get_header_at (l, i);
          if (g_ascii_strcasecmp (g_mime_header_get_name (h), name) == 0)
            {
              const char *v = g_mime_header_get_value (h);
              g_ptr_array_add (out, g_strdup (v ? v : "")); /* decoded by GMime already */
            }
        }
    }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

static void
collect_text (GMimeObject *parent, GMimeObject *part, gpointer data)
{
  GString *s = data;
  if (GMIME_IS_TEXT_PART (part))
    {
      g_autofree char *t = g_mime_text_part_get_text (GMIME_TEXT_PART (part));
      if (t)
        g_string_append (s, t);
    }
}

static char *
body_text (gpointer data)
{
  CliMessage *m = data;
  GString *s = g_string_new (NULL);
  g_mime_message_foreach (m->msg, collect_text, s);
  return g_string_free (s, FALSE);
}

/* body :raw: read again from the file, as it is */
static char *
raw_body (gsize max, gpointer data)
{
  CliMessage *m = data;
  g_autoptr (GMimeStream) stream = g_mime_stream_fs_open (m->path, O_RDONLY, 0, NULL);

  return stream ? sieve_raw_body_read (stream, max) : NULL;
}

static const GPtrArray *
mime_parts (gpointer data)
{
  CliMessage *m = data;

  if (m->parts == NULL)
    m->parts = sieve_mime_parts_new (m->msg, 0);
  return m->parts;
}

/* No mailbox store here: only INBOX exists. */
static gboolean
mailbox_exists (const char *name, gpointer data)
{
  return g_ascii_strcasecmp (name, "INBOX") == 0;
}

static void
print_action (const SieveResult *r, const SieveAction *a)
{
  gboolean sends = a->kind == SIEVE_KEEP || a->kind == SIEVE_FILEINTO || a->kind == SIEVE_REDIRECT;

  printf ("%s%s%s%s%s%s%s\n", sieve_action_name (a->kind), a->argument ? " \"" : "",
          a->argument ? a->argument : "", a->argument ? "\"" : "", a->copy ? " :copy" : "",
          a->create ? " :create" : "", a->flags ? " :flags" : "");
  if (a->flags)
    printf ("  flags: %s\n", a->flags);
  if (a->vacation && a->vacation->days == 0)
    printf ("  seconds: %u\n", a->vacation->seconds);
  if (r->edits->len && sends)
    printf ("  header edits: %u\n", a->edits_before);
  if (r->changes->len && sends)
    printf ("  message changes: %u\n", a->changes_before);
  if (a->notify)
    {
      g_autofree char *to = g_strjoinv (", ", a->notify->recipients);
      printf ("  recipients: %s\n  importance: %d\n", to, a->notify->importance);
      if (a->notify->message)
        printf ("  message: %s\n", a->notify->message);
      if (a->notify->from)
        printf ("  from: %s\n", a->notify->from);
    }
  if (a->vacation)
    printf ("  days: %u\n  subject: %s\n  from: %s\n  handle: %s\n", a->vacation->days,
            a->vacation->subject ? a->vacation->subject : "(default)",
            a->vacation->from ? a->vacation->from : "(recipient)", a->vacation->handle);
}

/* replace/enclose, header edits and the duplicate ids to record */
static void
print_changes (const SieveResult *r)
{
  for (guint i = 0; i < r->changes->len; i++)
    {
      SieveChange *c = r->changes->pdata[i];
      printf ("%s%s%s%s after %u header edits", c->kind == SIEVE_CHANGE_ENCLOSE ? "enclose" : "replace",
              c->mime ? " :mime" : "", c->subject ? " :subject " : "", c->subject ? c->subject : "", c->edits_before);
      if (c->part)
        printf (" (part %u)", c->part);
      printf ("\n");
    }
  for (guint i = 0; i < r->edits->len; i++)
    {
      SieveHeaderEdit *e = r->edits->pdata[i];
      printf ("%s %s%s%s\n", e->value ? "addheader" : "deleteheader", e->name, e->value ? ": " : "",
              e->value ? e->value : "");
    }
  for (guint i = 0; r->duplicates && i < r->duplicates->len; i++)
    {
      SieveDuplicate *d = r->duplicates->pdata[i];
      printf ("record duplicate \"%s\"%s%s%s :seconds %" G_GUINT64_FORMAT "%s\n", d->id, d->handle[0] ? " :handle \"" : "",
              d->handle, d->handle[0] ? "\"" : "", d->seconds, d->last ? " :last" : "");
    }
}

void
cli_print_result (const SieveResult *r)
{
  if (r->error)
    printf ("error: %s\n", r->error);
  for (guint i = 0; i < r->actions->len; i++)
    print_action (r, r->actions->pdata[i]);
  print_changes (r);
}

int
cli_message_open (CliMessage *m, const char *path, SieveMessage *sm)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GMimeStream) stream = g_mime_stream_fs_open (path, O_RDONLY, 0, &error);
  g_autoptr (GMimeParser) parser = NULL;

  if (stream == NULL)
    {
      fprintf (stderr, "sieve-lite: %s\n", error->message);
      return 66;
    }
  parser = g_mime_parser_new_with_stream (stream);
  m->path = path;
  m->msg = g_mime_parser_construct_message (parser, NULL);
  if (m->msg == NULL)
    {
      fprintf (stderr, "sieve-lite: %s: not a message\n", path);
      return 65;
    }
  sm->size = g_mime_stream_length (stream);
  sm->header = header_values;
  sm->body_text = body_text;
  sm->mailbox_exists = mailbox_exists;
  sm->raw_body = raw_body;
  sm->mime_parts = mime_parts;
  sm->duplicate = duplicate_seen;
  sm->data = m;
  return 0;
}

void
cli_message_clear (CliMessage *m)
{
  g_clear_object (&m->msg);
  g_clear_pointer (&m->parts, g_ptr_array_unref);
}
