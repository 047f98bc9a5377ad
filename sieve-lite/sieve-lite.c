/* sieve-lite.c - the command line: check a script, or show what it would
 * do with a message, without delivering anything.
 *
 *   sieve-lite check SCRIPT
 *   sieve-lite test SCRIPT MESSAGE [--from ADDR] [--to ADDR]
 *                   [--callout NAME=SPEC]... [--trace] [--date ISO8601]
 *                   [--duplicate ID]... [--dir DIR] [--global-dir DIR]
 *                   [--remote-ip IP] [--remote-host NAME]
 *
 * --callout gives what a callout service would have answered, turned into
 * spamtest, virustest and the callout test as lmtpd does it
 * (deliver/callout.c); --trace prints each command and test as it runs;
 * --date sets the run's "now" and local zone; each --duplicate is an id
 * the duplicate test has seen; --dir and --global-dir are where include
 * finds scripts, --remote-ip and --remote-host what environment says.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "lmtpd-util.h"
#include "sieve.h"

typedef struct {
  GMimeMessage *msg;
  char **seen;      /* --duplicate: ids earlier runs recorded */
  const char *path;
  GPtrArray *parts;         /* built on first use */
} Msg;

/* What the test run pretends earlier runs recorded (any handle) */
static gboolean
duplicate_seen (const char *handle, const char *id, gpointer data)
{
  Msg *m = data;

  return m->seen && g_strv_contains ((const char *const *) m->seen, id);
}

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

/* body :raw: read again from the file, as it is */
static char *
raw_body (gsize max, gpointer data)
{
  Msg *m = data;
  g_autoptr (GMimeStream) stream = g_mime_stream_fs_open (m->path, O_RDONLY, 0, NULL);

  return stream ? sieve_raw_body_read (stream, max) : NULL;
}

static const GPtrArray *
mime_parts (gpointer data)
{
  Msg *m = data;

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
      if (a->vacation && a->vacation->days == 0)
        printf ("  seconds: %u\n", a->vacation->seconds);
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

/* --date: the run's "now", and its offset as the local zone */
static gboolean
set_now (SieveMessage *sm, const char *date, char *zone, gsize zone_size)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_iso8601 (date, NULL);
  gint64 off;

  if (t == NULL)
    return FALSE;
  off = g_date_time_get_utc_offset (t) / G_USEC_PER_SEC;
  sm->now = g_date_time_to_unix (t);
  g_snprintf (zone, zone_size, "%c%02d%02d", off < 0 ? '-' : '+', (int) (ABS (off) / 3600), (int) (ABS (off) % 3600 / 60));
  sm->zone = zone;
  return TRUE;
}

/* ---- --callout NAME=SPEC ---------------------------------------------------- */

#define MAX_CALLOUTS 32
#define MAX_CALLOUT_ITEMS 64

/* what deliver/callout.c can hand to Sieve (ocp_verdict_name) */
static const char *const verdicts[] = { "accept", "reject", "tempfail", "discard", "quarantine", "redirect", NULL };

typedef struct {
  SieveCallout c;
  const char *threshold;
} SimCallout;

static gboolean
is_number (const char *s)
{
  char *end;
  double d = g_ascii_strtod (s, &end);

  return end != s && *end == '\0' && d == d && d > -1e300 && d < 1e300;
}

static gboolean
callout_fail (GError **error, const char *arg, const char *why)
{
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--callout %s: %s", arg, why);
  return FALSE;
}

/* One item of SPEC into @c: "key=value", or a verdict or a score (first
 * item only), or one more label after labels=. */
static gboolean
callout_item (const char *item, guint i, gboolean *in_labels, GString *labels, SimCallout *c, const char **why)
{
  const char *eq = strchr (item, '=');
  g_autofree char *key = eq ? g_strndup (item, eq - item) : NULL;
  const char *val = eq ? eq + 1 : item;

  if (eq == NULL && *in_labels)
    key = g_strdup ("labels");
  else if (eq == NULL && i == 0)
    key = g_strdup (is_number (item) ? "score" : "verdict");
  *in_labels = key && !strcmp (key, "labels");
  if (key == NULL)
    *why = "an item without '=' only first (VERDICT or SCORE) or after labels=";
  else if (!strcmp (key, "verdict") && !g_strv_contains (verdicts, val))
    *why = "the verdict is not accept, reject, tempfail, discard, quarantine or redirect";
  else if ((!strcmp (key, "score") || !strcmp (key, "threshold")) && !is_number (val))
    *why = "score and threshold are decimal numbers";
  else if (*in_labels)
    g_string_append_printf (labels, "%s%s", labels->len ? "," : "", val);
  else if (!strcmp (key, "verdict") || !strcmp (key, "score") || !strcmp (key, "threshold"))
    *(key[0] == 'v' ? &c->c.verdict : key[0] == 's' ? &c->c.score : &c->threshold) = val;
  else
    *why = "keys are verdict, score, threshold and labels";
  return *why == NULL;
}

/* NAME=SPEC into @c; its strings stay in @keep. */
static gboolean
callout_parse (const char *arg, SimCallout *c, GPtrArray *keep, GError **error)
{
  const char *eq = strchr (arg, '=');
  g_autoptr (GString) labels = g_string_new (NULL);
  gboolean in_labels = FALSE;
  const char *why = NULL;
  char **items;

  if (eq == NULL || eq == arg || eq[1] == '\0')
    return callout_fail (error, arg, "give NAME=VERDICT or NAME=SCORE, then ,key=value items");
  memset (c, 0, sizeof *c);
  c->c.service = g_strndup (arg, eq - arg);
  g_ptr_array_add (keep, (gpointer) c->c.service);
  items = g_strsplit (eq + 1, ",", MAX_CALLOUT_ITEMS);
  for (guint i = 0; items[i]; i++)
    g_ptr_array_add (keep, items[i]); /* @c points into them */
  for (guint i = 0; items[i] && why == NULL; i++)
    callout_item (items[i], i, &in_labels, labels, c, &why);
  g_free (items);
  if (why)
    return callout_fail (error, arg, why);
  if (labels->len)
    {
      c->c.labels = g_strdup (labels->str);
      g_ptr_array_add (keep, (gpointer) c->c.labels);
    }
  if (c->c.verdict == NULL)
    c->c.verdict = "accept";
  if (c->c.score && c->threshold == NULL)
    c->threshold = "5"; /* the spam service's default */
  return TRUE;
}

/* As deliver/callout.c's callout_for_sieve: the first score with a
 * threshold is spamtest; the labels virus and virus-scanned virustest. */
static void
callouts_for_sieve (const SimCallout *sims, guint n, SieveMessage *sm, GArray *cs)
{
  sm->spamtest = sm->spamtest_percent = sm->virustest = 0;
  for (guint i = 0; i < n; i++)
    {
      g_auto (GStrv) labels = g_strsplit (sims[i].c.labels ? sims[i].c.labels : "", ",", -1);
      g_array_append_val (cs, sims[i].c);
      if (sims[i].c.score && sm->spamtest == 0)
        sieve_spamtest_from_score (sims[i].c.score, sims[i].threshold, &sm->spamtest, &sm->spamtest_percent);
      for (guint k = 0; labels[k]; k++)
        if (!strcmp (labels[k], "virus"))
          sm->virustest = 5;
        else if (!strcmp (labels[k], "virus-scanned") && sm->virustest == 0)
          sm->virustest = 1;
    }
  sm->callouts = (const SieveCallout *) (void *) cs->data;
  sm->n_callouts = cs->len;
}

static void
print_trace (const char *line, gpointer data)
{
  printf ("%s\n", line);
}

typedef struct {
  const char *from, *to;
  char **callouts;      /* NAME=SPEC, or NULL */
  gboolean trace;
  const char *date;     /* --date, or NULL */
  char **seen;          /* --duplicate ids, or NULL */
} TestOptions;

/* The envelope, the callouts and the trace as the options give them. */
static gboolean
test_setup (const TestOptions *o, SieveMessage *sm, GArray *cs, GPtrArray *keep, char *zone, gsize zone_size,
            GError **error)
{
  SimCallout sims[MAX_CALLOUTS];
  guint n = o->callouts ? g_strv_length (o->callouts) : 0;

  sm->envelope_from = o->from ? o->from : "";
  sm->envelope_to = o->to ? o->to : "";
  sm->delimiter = "+";
  sm->spamtest = sm->spamtest_percent = sm->virustest = -1;
  if (o->trace)
    sm->trace = print_trace;
  if (o->date && !set_now (sm, o->date, zone, zone_size))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--date %s: not an ISO 8601 date-time", o->date);
      return FALSE;
    }
  if (n == 0)
    return TRUE;
  if (n > MAX_CALLOUTS)
    return callout_fail (error, o->callouts[MAX_CALLOUTS], "too many callouts");
  for (guint i = 0; i < n; i++)
    if (!callout_parse (o->callouts[i], &sims[i], keep, error))
      return FALSE;
  callouts_for_sieve (sims, n, sm, cs);
  return TRUE;
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
test_message (const SieveScript *script, const char *path, const TestOptions *o)
{
  char zone[8];
  g_autoptr (GError) error = NULL;
  g_autoptr (GMimeStream) stream = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  g_autoptr (GArray) cs = g_array_new (FALSE, TRUE, sizeof (SieveCallout));
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  Msg m = { NULL, NULL, path, NULL };
  Site site = { 0 };
  SieveMessage sm = { 0 };
  SieveResult r = { 0 };

  if (!test_setup (o, &sm, cs, keep, zone, sizeof zone, &error))
    {
      fprintf (stderr, "sieve-lite: %s\n", error->message);
      return 64;
    }
  if ((stream = g_mime_stream_fs_open (path, O_RDONLY, 0, &error)) == NULL)
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
  sm.size = g_mime_stream_length (stream);
  sm.header = header_values;
  sm.body_text = body_text;
  sm.mailbox_exists = mailbox_exists;
  sm.raw_body = raw_body;
  sm.mime_parts = mime_parts;
  sm.data = &m;
  sm.duplicate = duplicate_seen;
  m.seen = o->seen;
  site_message (&site, &sm);
  sieve_run (script, &sm, &r);
  print_result (&r);
  sieve_result_clear (&r);
  g_hash_table_unref (site.scripts);
  g_object_unref (m.msg);
  if (m.parts)
    g_ptr_array_unref (m.parts);
  return 0;
}

#define USAGE "usage: sieve-lite check SCRIPT | sieve-lite test SCRIPT MESSAGE [--from A] [--to A] " \
              "[--callout NAME=SPEC]... [--trace] [--date ISO8601] [--duplicate ID]... [--dir DIR] "\
              "[--global-dir DIR] [--remote-ip IP] [--remote-host NAME]\n"

#define HELP_TEXT \
  "--callout NAME=SPEC says what callout service NAME answered, as lmtpd hands it to the\n" \
  "script (repeat it for more services).  SPEC is comma-separated: first a verdict\n" \
  "(accept, reject, tempfail, discard, quarantine, redirect; default accept) or a score,\n" \
  "then any of verdict=V, score=S, threshold=T (default 5), labels=L1,L2,...\n" \
  "The first score becomes spamtest (1 + 9 x score / (2 x threshold)) and spamtestplus;\n" \
  "the labels virus and virus-scanned make virustest 5 and 1.  Examples:\n" \
  "  --callout spam=8.5   --callout av=reject,labels=virus\n" \
  "  --callout spam=accept,score=3.2,threshold=6,labels=ham\n" \
  "--trace prints each command and test as it runs, with its line and a test's\n" \
  "result (\"3: if header :contains \\\"subject\\\" \\\"x\\\" -> false\"), at most 1000 lines.\n"

int
main (int argc, char **argv)
{
  g_autofree char *from = NULL, *to = NULL, *date = NULL;
  g_auto (GStrv) callouts = NULL, seen = NULL;
  gboolean trace = FALSE;
  g_autoptr (GOptionContext) ctx = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = NULL;
  g_autoptr (SieveScript) script = NULL;
  gsize len;
  GOptionEntry entries[] = {
    { "from", 'f', 0, G_OPTION_ARG_STRING, &from, "Envelope sender", "ADDR" },
    { "to", 't', 0, G_OPTION_ARG_STRING, &to, "Envelope recipient", "ADDR" },
    { "callout", 'c', 0, G_OPTION_ARG_STRING_ARRAY, &callouts, "A callout service's result (below)", "NAME=SPEC" },
    { "trace", 0, 0, G_OPTION_ARG_NONE, &trace, "Print each command and test as it runs", NULL },
    { "date", 0, 0, G_OPTION_ARG_STRING, &date, "The time of the run, and its offset as the local zone",
      "2026-12-07T10:00:00+01:00" },
    { "duplicate", 0, 0, G_OPTION_ARG_STRING_ARRAY, &seen, "An id the duplicate test has seen", "ID" },
    { NULL }
  };

  ctx = g_option_context_new ("check SCRIPT | test SCRIPT MESSAGE - check or try a Sieve script");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx, HELP_TEXT);
  g_option_context_add_main_entries (ctx, site_entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc < 3
      || (strcmp (argv[1], "check") && strcmp (argv[1], "test")) || (!strcmp (argv[1], "test") && argc < 4))
    {
      fprintf (stderr, USAGE);
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
  return test_message (script, argv[3], &(TestOptions) { from, to, callouts, trace, date, seen });
}
