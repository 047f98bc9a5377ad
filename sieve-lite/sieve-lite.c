/* sieve-lite.c - the command line: check a script, or show what it would
 * do with a message, without delivering anything.
 *
 *   sieve-lite check SCRIPT
 *   sieve-lite test SCRIPT MESSAGE [--from ADDR] [--to ADDR]
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "lmtpd-util.h"
#include "sieve.h"

typedef struct {
  GMimeMessage *msg;
} Msg;

static char **
header_values (const char *name, gpointer data)
{
  Msg *m = data;
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
  Msg *m = data;
  GString *s = g_string_new (NULL);
  g_mime_message_foreach (m->msg, collect_text, s);
  return g_string_free (s, FALSE);
}

/* No mailbox store here: only INBOX exists. */
static gboolean
mailbox_exists (const char *name, gpointer data)
{
  return g_ascii_strcasecmp (name, "INBOX") == 0;
}

static void
print_result (const SieveResult *r)
{
  if (r->error)
    printf ("error: %s\n", r->error);
  for (guint i = 0; i < r->actions->len; i++)
    {
      SieveAction *a = r->actions->pdata[i];
      printf ("%s%s%s%s%s%s%s\n", sieve_action_name (a->kind), a->argument ? " \"" : "",
              a->argument ? a->argument : "", a->argument ? "\"" : "", a->copy ? " :copy" : "",
              a->create ? " :create" : "", a->flags ? " :flags" : "");
      if (a->flags)
        printf ("  flags: %s\n", a->flags);
      if (r->edits->len && (a->kind == SIEVE_KEEP || a->kind == SIEVE_FILEINTO || a->kind == SIEVE_REDIRECT))
        printf ("  header edits: %u\n", a->edits_before);
      if (r->changes->len && (a->kind == SIEVE_KEEP || a->kind == SIEVE_FILEINTO || a->kind == SIEVE_REDIRECT))
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
  for (guint i = 0; i < r->changes->len; i++)
    {
      SieveChange *c = r->changes->pdata[i];
      printf ("%s%s%s%s after %u header edits\n", c->kind == SIEVE_CHANGE_ENCLOSE ? "enclose" : "replace",
              c->mime ? " :mime" : "", c->subject ? " :subject " : "", c->subject ? c->subject : "", c->edits_before);
    }
  for (guint i = 0; i < r->edits->len; i++)
    {
      SieveHeaderEdit *e = r->edits->pdata[i];
      printf ("%s %s%s%s\n", e->value ? "addheader" : "deleteheader", e->name, e->value ? ": " : "",
              e->value ? e->value : "");
    }
}

/* sieve-lite test: runs @script on the message in @path and prints what
 * it would do; the exit status as main's. */
static int
test_message (const SieveScript *script, const char *path, const char *from, const char *to)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GMimeStream) stream = g_mime_stream_fs_open (path, O_RDONLY, 0, &error);
  g_autoptr (GMimeParser) parser = NULL;
  Msg m = { NULL };
  SieveMessage sm = { 0 };
  SieveResult r = { 0 };

  if (stream == NULL)
    {
      fprintf (stderr, "sieve-lite: %s\n", error->message);
      return 66;
    }
  parser = g_mime_parser_new_with_stream (stream);
  m.msg = g_mime_parser_construct_message (parser, NULL);
  if (m.msg == NULL)
    {
      fprintf (stderr, "sieve-lite: %s: not a message\n", path);
      return 65;
    }
  sm.envelope_from = from ? from : "";
  sm.envelope_to = to ? to : "";
  sm.delimiter = "+";
  sm.size = g_mime_stream_length (stream);
  sm.header = header_values;
  sm.body_text = body_text;
  sm.mailbox_exists = mailbox_exists;
  sm.data = &m;
  sm.spamtest = sm.spamtest_percent = sm.virustest = -1;
  sieve_run (script, &sm, &r);
  print_result (&r);
  sieve_result_clear (&r);
  g_object_unref (m.msg);
  return 0;
}

int
main (int argc, char **argv)
{
  g_autofree char *from = NULL, *to = NULL;
  g_autoptr (GOptionContext) ctx = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  g_autoptr (SieveScript) script = NULL;
  gsize len;
  GOptionEntry entries[] = {
    { "from", 'f', 0, G_OPTION_ARG_STRING, &from, "Envelope sender", "ADDR" },
    { "to", 't', 0, G_OPTION_ARG_STRING, &to, "Envelope recipient", "ADDR" },
    { NULL }
  };

  ctx = g_option_context_new ("check SCRIPT | test SCRIPT MESSAGE - check or try a Sieve script");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc < 3
      || (strcmp (argv[1], "check") && strcmp (argv[1], "test")) || (!strcmp (argv[1], "test") && argc < 4))
    {
      fprintf (stderr, "usage: sieve-lite check SCRIPT | sieve-lite test SCRIPT MESSAGE [--from A] [--to A]\n");
      return 64;
    }
  if (!g_file_get_contents (argv[2], &text, &len, &error))
    {
      fprintf (stderr, "sieve-lite: %s\n", error->message);
      return 66;
    }
  g_mime_init ();
  script = sieve_compile (text, len, &error);
  if (script == NULL)
    {
      fprintf (stderr, "%s:%s\n", argv[2], error->message);
      return 65;
    }
  if (!strcmp (argv[1], "check"))
    {
      printf ("%s: OK\n", argv[2]);
      return 0;
    }
  return test_message (script, argv[3], from, to);
}
