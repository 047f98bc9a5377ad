/* sieve-lite.c - the command line: check a script, or show what it would
 * do with a message, without delivering anything.
 *
 *   sieve-lite check SCRIPT
 *   sieve-lite test SCRIPT MESSAGE [--from ADDR] [--to ADDR] [--dir DIR]
 *     [--global-dir DIR] [--remote-ip IP] [--remote-host NAME]
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

/* Where include finds scripts (NAME.sieve), and those it compiled. */
typedef struct {
  const char *dir, *global_dir;
  GHashTable *scripts;  /* path -> SieveScript* */
} Site;

#define MAX_INCLUDED_SIZE (1024 * 1024)

static const SieveScript *
include_script (gboolean global, const char *name, char **error, gpointer data)
{
  Site *site = data;
  const char *dir = global ? site->global_dir : site->dir;
  g_autofree char *file = g_strconcat (name, ".sieve", NULL), *path = NULL, *text = NULL;
  g_autoptr (GError) e = NULL;
  SieveScript *s;
  gsize len;

  if (dir == NULL || strchr (name, '/') || name[0] == '.')
    return NULL;
  path = g_build_filename (dir, file, NULL);
  if ((s = g_hash_table_lookup (site->scripts, path)) != NULL)
    return s;
  if (!g_file_get_contents (path, &text, &len, &e))
    {
      if (!g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        *error = g_strdup (e->message);
      return NULL;
    }
  if (len > MAX_INCLUDED_SIZE || (s = sieve_compile (text, len, &e)) == NULL)
    {
      *error = g_strdup_printf ("%s:%s", path, e ? e->message : " too large");
      return NULL;
    }
  g_hash_table_insert (site->scripts, g_steal_pointer (&path), s);
  return s;
}

/* Dovecot's default namespace (conf.d/15-mailboxes.conf), as lmtpd's
 * [sieve] special_use default */
static const char *
special_use (const char *flag, gpointer data)
{
  static const char *const map[][2] = {
    { "\\Drafts", "Drafts" }, { "\\Junk", "Junk" }, { "\\Trash", "Trash" }, { "\\Sent", "Sent" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (map); i++)
    if (g_ascii_strcasecmp (flag, map[i][0]) == 0)
      return map[i][1];
  return NULL;
}

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
      if (a->vacation)
        printf ("  days: %u\n  subject: %s\n  from: %s\n  handle: %s\n", a->vacation->days,
                a->vacation->subject ? a->vacation->subject : "(default)",
                a->vacation->from ? a->vacation->from : "(recipient)", a->vacation->handle);
    }
  for (guint i = 0; i < r->edits->len; i++)
    {
      SieveHeaderEdit *e = r->edits->pdata[i];
      printf ("%s %s%s%s\n", e->value ? "addheader" : "deleteheader", e->name, e->value ? ": " : "",
              e->value ? e->value : "");
    }
}

/* --dir, --global-dir (include), --remote-ip, --remote-host (environment) */
static char *opt_dir, *opt_global_dir, *opt_remote_ip, *opt_remote_host;
static const GOptionEntry site_entries[] = {
  { "dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_dir, "Personal scripts for include", "DIR" },
  { "global-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_global_dir, "Global scripts for include :global", "DIR" },
  { "remote-ip", 0, 0, G_OPTION_ARG_STRING, &opt_remote_ip, "environment \"remote-ip\"", "IP" },
  { "remote-host", 0, 0, G_OPTION_ARG_STRING, &opt_remote_host, "environment \"remote-host\"", "NAME" },
  { NULL }
};

/* What include, special-use and environment see; the host is this one. */
static void
site_message (Site *site, SieveMessage *sm)
{
  const char *host = g_get_host_name ();
  const char *dot = strchr (host, '.');

  site->dir = opt_dir;
  site->global_dir = opt_global_dir;
  site->scripts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) sieve_script_free);
  sm->include = include_script;
  sm->special_use = special_use;
  sm->site_data = site;
  sm->env_host = host;
  sm->env_domain = dot && dot[1] ? dot + 1 : host;
  sm->env_remote_ip = opt_remote_ip;
  sm->env_remote_host = opt_remote_host;
}

/* sieve-lite test: runs @script on the message in @path and prints what
 * it would do; the exit status as main's. */
static int
test_message (const SieveScript *script, const char *path, const char *from, const char *to, SieveMessage *sm_in)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GMimeStream) stream = g_mime_stream_fs_open (path, O_RDONLY, 0, &error);
  g_autoptr (GMimeParser) parser = NULL;
  Msg m = { NULL };
  SieveMessage sm = *sm_in;
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

static int
test_in_site (const SieveScript *script, const char *path, const char *from, const char *to)
{
  Site site = { 0 };
  SieveMessage sm = { 0 };
  int status;

  site_message (&site, &sm);
  status = test_message (script, path, from, to, &sm);
  g_hash_table_unref (site.scripts);
  return status;
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
  g_option_context_add_main_entries (ctx, site_entries, NULL);
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
  return test_in_site (script, argv[3], from, to);
}
