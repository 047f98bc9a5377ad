/* ctl-quarantine.c - lmtpctl quarantine: the quarantine store.
 *
 *   lmtpctl [-c FILE] quarantine list [--rcpt A] [--sender S] [--service N] [--since T] [--all]
 *   lmtpctl [-c FILE] quarantine show ID
 *   lmtpctl [-c FILE] quarantine release ID [--to ADDR]
 *   lmtpctl [-c FILE] quarantine delete ID
 *   lmtpctl [-c FILE] quarantine expire
 *
 * A release runs the delivery pipeline in this process, as the deliver
 * command does: the context is opened with the journal and the records,
 * and run as root it first drops to [server] user.  Who released is the
 * Unix user running lmtpctl.  Exit 66 for no such id, 65 when refused
 * (released or deleted already, a permanent delivery failure), 75 when the
 * records (or a delivery) fail for now.
 */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "deliver.h"

#define SHOW_MAX (1024 * 1024) /* of the copy read for show */
#define TEXT_MAX (64 * 1024)   /* of its text printed */

static int
fail (const GError *error)
{
  fprintf (stderr, "lmtpctl: %s\n", error->message);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
    return ADMIN_EXIT_NOINPUT;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_EXISTS))
    return ADMIN_EXIT_DATAERR;
  return ADMIN_EXIT_TEMPFAIL;
}

/* The Unix user running lmtpctl, before any privileges are dropped. */
static char *
invoking_user (void)
{
  struct passwd *pw = getpwuid (getuid ());

  return pw ? g_strdup (pw->pw_name) : g_strdup_printf ("uid:%u", (guint) getuid ());
}

/* The directories and the mail user (as the deliver command), then the
 * context with the journal and the records. */
static int
open_context (const LmtpdConfig *config, DeliverContext **out)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverContext) ctx = NULL;

  if ((geteuid () == 0 && config->user == NULL) || !deliver_prepare_dirs (config, &error)
      || !util_drop_privileges (config->user, &error))
    {
      fprintf (stderr, "lmtpctl: %s\n", error ? error->message : "refusing to run as root: set [server] user");
      return ADMIN_EXIT_CONFIG;
    }
  g_mime_init ();
  ctx = deliver_context_new ();
  if (!deliver_context_open_journal (ctx, config, &error) || !deliver_context_open_records (ctx, config, &error))
    return fail (error);
  *out = g_steal_pointer (&ctx);
  return ADMIN_EXIT_OK;
}

/* Bytes a terminal should not interpret become '?'. */
static void
print_safe (const char *s, gsize len)
{
  for (gsize i = 0; i < len; i++)
    {
      guchar c = s[i];
      putchar ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f ? '?' : c);
    }
}

static char *
time_text (gint64 t)
{
  g_autoptr (GDateTime) d = t ? g_date_time_new_from_unix_utc (t) : NULL;

  return d ? g_date_time_format (d, "%Y-%m-%d %H:%M:%S") : g_strdup ("-");
}

/* ---- list ------------------------------------------------------------------ */

static void
print_row (const DeliverQuarantined *q)
{
  g_autofree char *created = time_text (q->created);

  printf ("%-16s %-19s %-9s %8" G_GUINT64_FORMAT " %-12s <%s> <%s> %s\n", q->id, created, q->state, q->size,
          q->service ? q->service : "-", q->recipient, q->sender, q->subject ? q->subject : "");
}

static int
quarantine_list (DeliverContext *ctx, int argc, char **argv)
{
  g_autofree char *rcpt = NULL, *sender = NULL, *service = NULL, *since = NULL;
  gboolean all = FALSE;
  GOptionEntry entries[] = {
    { "rcpt", 0, 0, G_OPTION_ARG_STRING, &rcpt, "final recipient address", "ADDR" },
    { "sender", 0, 0, G_OPTION_ARG_STRING, &sender, "envelope sender", "ADDR" },
    { "service", 0, 0, G_OPTION_ARG_STRING, &service, "the service that quarantined it", "NAME" },
    { "since", 0, 0, G_OPTION_ARG_STRING, &since, "unix seconds, YYYY-MM-DD or an age (2h, 7d)", "T" },
    { "all", 0, 0, G_OPTION_ARG_NONE, &all, "released and deleted ones too", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) oc = g_option_context_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) list = NULL;
  DeliverQuarantineFilter f = { 0 };

  g_option_context_add_main_entries (oc, entries, NULL);
  if (!g_option_context_parse (oc, &argc, &argv, &error) || argc != 1 || (since && !admin_parse_since (since, &f.since)))
    return ADMIN_EXIT_USAGE;
  f.recipient = rcpt;
  f.sender = sender;
  f.service = service;
  f.all_states = all;
  if ((list = deliver_quarantine_list (ctx, &f, &error)) == NULL)
    return fail (error);
  printf ("%-16s %-19s %-9s %8s %-12s %s\n", "ID", "CREATED (UTC)", "STATE", "SIZE", "SERVICE",
          "RECIPIENT SENDER SUBJECT");
  for (guint i = 0; i < list->len; i++)
    print_row (list->pdata[i]);
  return ADMIN_EXIT_OK;
}

/* ---- show ------------------------------------------------------------------ */

static void
print_field (const char *name, const char *value)
{
  printf ("%-19s ", name);
  print_safe (value ? value : "-", value ? strlen (value) : 1);
  putchar ('\n');
}

static void
print_index (const DeliverQuarantined *q)
{
  g_autofree char *created = time_text (q->created), *expires = time_text (q->expires);
  g_autofree char *released = time_text (q->released_at);
  g_autofree char *size = g_strdup_printf ("%" G_GUINT64_FORMAT, q->size);
  const char *fields[][2] = {
    { "id:", q->id }, { "state:", q->state }, { "created:", created }, { "expires:", expires },
    { "recipient:", q->recipient }, { "original recipient:", q->original_recipient }, { "sender:", q->sender },
    { "subject:", q->subject }, { "message-id:", q->message_id }, { "size:", size },
    { "service:", q->service }, { "reason:", q->reason }, { "released by:", q->released_by },
    { "released at:", q->released_at ? released : NULL }, { "released to:", q->released_to },
  };

  for (guint i = 0; i < G_N_ELEMENTS (fields); i++)
    print_field (fields[i][0], fields[i][1]);
}

/* The first text/plain part's text, decoded, or NULL. */
static char *
plain_text (GMimeMessage *m)
{
  GMimePartIter *it = g_mime_part_iter_new (GMIME_OBJECT (m));
  char *text = NULL;

  for (guint n = 0; text == NULL && n < 1000 && g_mime_part_iter_is_valid (it); n++)
    {
      GMimeObject *part = g_mime_part_iter_get_current (it);
      if (GMIME_IS_TEXT_PART (part)
          && g_mime_content_type_is_type (g_mime_object_get_content_type (part), "text", "plain"))
        text = g_mime_text_part_get_text (GMIME_TEXT_PART (part));
      else if (!g_mime_part_iter_next (it))
        break;
    }
  g_mime_part_iter_free (it);
  return text;
}

static void
print_copy (const char *data, gsize len)
{
  const char *end = g_strstr_len (data, len, "\n\n");
  gsize hlen = end ? (gsize) (end - data) + 1 : len;
  g_autoptr (GMimeStream) stream = g_mime_stream_mem_new_with_buffer (data, len);
  g_autoptr (GMimeParser) parser = g_mime_parser_new_with_stream (stream);
  g_autoptr (GMimeMessage) m = g_mime_parser_construct_message (parser, NULL);
  g_autofree char *text = m ? plain_text (m) : NULL;

  printf ("\n--- headers ---\n");
  print_safe (data, hlen);
  printf ("\n--- text ---\n");
  if (text)
    print_safe (text, MIN (strlen (text), TEXT_MAX));
  else
    printf ("(no text/plain part)");
  putchar ('\n');
}

static int
quarantine_show (DeliverContext *ctx, const LmtpdConfig *config, const char *id)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverQuarantined) q = deliver_quarantine_get (ctx, id, &error);
  g_autofree char *data = NULL;
  gsize len = 0;
  int fd;

  if (q == NULL)
    return fail (error);
  print_index (q);
  if ((fd = deliver_quarantine_open_copy (ctx, config, id, &error)) < 0)
    {
      printf ("\n(the copy: %s)\n", error->message);
      return ADMIN_EXIT_OK;
    }
  if (!deliver_mailfile_read_fd (fd, id, SHOW_MAX, &data, &len, &error))
    {
      close (fd);
      return fail (error);
    }
  close (fd);
  print_copy (data, len);
  return ADMIN_EXIT_OK;
}

/* ---- release, delete, expire --------------------------------------------- */

static int
quarantine_release (DeliverContext *ctx, const LmtpdConfig *config, const char *who, int argc, char **argv)
{
  g_autofree char *to = NULL;
  GOptionEntry entries[] = {
    { "to", 0, 0, G_OPTION_ARG_STRING, &to, "deliver to this address instead", "ADDR" },
    { NULL }
  };
  g_autoptr (GOptionContext) oc = g_option_context_new (NULL);
  g_autoptr (GError) error = NULL;
  DeliverStatus st = { 0 };
  int code = ADMIN_EXIT_OK;

  g_option_context_add_main_entries (oc, entries, NULL);
  if (!g_option_context_parse (oc, &argc, &argv, &error) || argc != 2)
    return ADMIN_EXIT_USAGE;
  if (deliver_quarantine_release (ctx, config, argv[1], to, who, &st, &error))
    printf ("%s: released: %u %s %s\n", argv[1], st.code, st.enhanced, st.text);
  else if (st.code >= 500 && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_EXISTS))
    {
      fprintf (stderr, "lmtpctl: %s: not released: %s\n", argv[1], error->message);
      code = ADMIN_EXIT_DATAERR;
    }
  else
    code = fail (error);
  deliver_status_clear (&st);
  return code;
}

static int
quarantine_verb (DeliverContext *ctx, const LmtpdConfig *config, const char *who, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  gint64 n;

  if (strcmp (argv[0], "list") == 0)
    return quarantine_list (ctx, argc, argv);
  if (strcmp (argv[0], "release") == 0)
    return quarantine_release (ctx, config, who, argc, argv);
  if (strcmp (argv[0], "show") == 0)
    return quarantine_show (ctx, config, argv[1]);
  if (strcmp (argv[0], "delete") == 0)
    {
      if (!deliver_quarantine_delete (ctx, config, argv[1], who, &error))
        return fail (error);
      printf ("%s: deleted\n", argv[1]);
      return ADMIN_EXIT_OK;
    }
  /* interrupted releases first: their rows are not expired under them */
  deliver_quarantine_recover (ctx, config, 0);
  if ((n = deliver_quarantine_expire (ctx, config, &error)) < 0)
    return fail (error);
  printf ("expired: %" G_GINT64_FORMAT "\n", n);
  return ADMIN_EXIT_OK;
}

static gboolean
args_fit (int argc, char **argv)
{
  const char *verb = argv[1];

  if (!strcmp (verb, "list") || !strcmp (verb, "release"))
    return TRUE; /* their options are checked by their parsers */
  if (!strcmp (verb, "show") || !strcmp (verb, "delete"))
    return argc == 3;
  return !strcmp (verb, "expire") && argc == 2;
}

static int
quarantine_run (const LmtpdConfig *config, int argc, char **argv)
{
  g_autofree char *who = invoking_user ();
  g_autoptr (DeliverContext) ctx = NULL;
  int code;

  if (argc < 2 || !args_fit (argc, argv))
    return ADMIN_EXIT_USAGE;
  if ((code = open_context (config, &ctx)) != ADMIN_EXIT_OK)
    return code;
  code = quarantine_verb (ctx, config, who, argc - 1, argv + 1);
  deliver_context_close_callouts (ctx);
  return code;
}

const AdminCommand admin_quarantine_command = {
  "quarantine",
  "quarantine list [--rcpt ADDR] [--sender ADDR] [--service NAME] [--since T] [--all]\n"
  "quarantine show ID\nquarantine release ID [--to ADDR]\nquarantine delete ID\nquarantine expire",
  quarantine_run,
  TRUE,
};
