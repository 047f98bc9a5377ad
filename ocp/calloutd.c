/* calloutd.c - ocp-calloutd: an OCP callout server with a scriptable test
 * service, built on ocp-server.c.  The integration tests drive lmtpd
 * against it; the real services (issue 5) plug into the same library.
 *
 *   ocp-calloutd --listen inet:127.0.0.1:0 [--listen unix:PATH] --script FILE
 *                [--parts envelope,message-header,message-body] [-d]
 *                [--max-connections N] [--handshake-timeout S] [--idle-timeout S]
 *
 * The script has one rule per line, "CONDITION ACTION [; ACTION]...", and
 * the first rule whose condition matches a transaction decides:
 *
 *   *                     always
 *   rcpt=GLOB  from=GLOB  stage=rcpt|data  service=GLOB
 *   header:NAME~TEXT      that header contains TEXT (any case)
 *   body~TEXT             the body contains TEXT
 *
 *   accept | discard | reject CODE TEXT | tempfail CODE TEXT
 *   quarantine FOLDER | redirect ADDRESS | flags Seen,Flagged
 *   add-header NAME: VALUE | remove-header NAME | tag-subject TAG
 *   set-header NAME: VALUE   (sends an adapted header part; the body comes
 *                             back by DUY)
 *   replace-body TEXT | delay MS | close | garbage | hang
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <glib-unix.h>
#include "lmtpd-util.h"

#include "ocp.h"

typedef struct {
  char *cond;
  char **actions;
} Rule;

static GPtrArray *rules;
static OcpServer *server;
static GPtrArray *hanging; /* transactions left unanswered on purpose */
static gboolean debug;
static guint64 handled;

static void
rule_free (gpointer p)
{
  Rule *r = p;
  g_free (r->cond);
  g_strfreev (r->actions);
  g_free (r);
}

static gboolean
load_script (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  if (!g_file_get_contents (path, &text, NULL, error))
    return FALSE;
  rules = g_ptr_array_new_with_free_func (rule_free);
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      char *s = g_strstrip (lines[i]);
      char *sp;
      Rule *r;
      if (*s == '\0' || *s == '#')
        continue;
      r = g_new0 (Rule, 1);
      sp = strpbrk (s, " \t");
      r->cond = sp ? g_strndup (s, sp - s) : g_strdup (s);
      r->actions = g_strsplit (sp ? g_strstrip (sp) : "accept", ";", -1);
      for (guint k = 0; r->actions[k]; k++)
        g_strstrip (r->actions[k]);
      g_ptr_array_add (rules, r);
    }
  return TRUE;
}

static char *
header_value (GBytes *header, const char *name)
{
  g_autoptr (GMimeMessage) msg = util_gmime_parse_header (header);
  const char *v;

  if (msg == NULL)
    return NULL;
  v = g_mime_object_get_header (GMIME_OBJECT (msg), name);
  return v ? g_strdup (v) : NULL;
}

static gboolean
body_contains (OcpServerTxn *t, const char *needle)
{
  guint64 len = 0;
  int fd = ocp_server_txn_body_fd (t, &len);
  gsize nl = strlen (needle);
  g_autofree char *buf = NULL;
  guint64 off = 0;

  if (fd < 0 || nl == 0)
    return FALSE;
  buf = g_malloc (65536 + nl);
  while (off < len)
    {
      gssize n = pread (fd, buf, 65536 + nl, off);
      if (n <= 0)
        break;
      if (g_strstr_len (buf, n, needle))
        return TRUE;
      off += n > (gssize) nl ? (guint64) (n - nl) : (guint64) n;
      if ((guint64) n < 65536 + nl)
        break;
    }
  return FALSE;
}

static gboolean
matches (OcpServerTxn *t, const char *cond)
{
  GHashTable *env = ocp_server_txn_envelope (t);
  const char *v;

  if (strcmp (cond, "*") == 0)
    return TRUE;
  if (g_str_has_prefix (cond, "rcpt="))
    {
      g_auto (GStrv) rcpts = g_strsplit (g_hash_table_lookup (env, "Rcpt-To") ?: "", ", ", -1);
      for (guint i = 0; rcpts[i]; i++)
        if (g_pattern_match_simple (cond + 5, rcpts[i]))
          return TRUE;
      return FALSE;
    }
  if (g_str_has_prefix (cond, "from="))
    return g_pattern_match_simple (cond + 5, (v = g_hash_table_lookup (env, "Mail-From")) ? v : "");
  if (g_str_has_prefix (cond, "stage="))
    return g_strcmp0 (cond + 6, g_hash_table_lookup (env, "Stage")) == 0;
  if (g_str_has_prefix (cond, "service="))
    return g_pattern_match_simple (cond + 8, ocp_server_txn_service (t));
  if (g_str_has_prefix (cond, "header:") && strchr (cond, '~'))
    {
      g_autofree char *name = g_strndup (cond + 7, strchr (cond, '~') - cond - 7);
      g_autoptr (GBytes) h = ocp_server_txn_header (t);
      g_autofree char *value = header_value (h, name);
      g_autofree char *lv = value ? g_utf8_strdown (value, -1) : NULL;
      g_autofree char *lt = g_utf8_strdown (strchr (cond, '~') + 1, -1);
      return lv && strstr (lv, lt);
    }
  if (g_str_has_prefix (cond, "body~"))
    return body_contains (t, cond + 5);
  return FALSE;
}

typedef struct {
  OcpServerTxn *txn;
  OcpVerdict verdict;
  GBytes *header;
  int body_fd;
  guint delay;          /* ms before the answer */
} Pending;

static Pending *
pending_new (OcpServerTxn *t)
{
  Pending *p = g_new0 (Pending, 1);

  p->txn = ocp_server_txn_ref (t);
  p->body_fd = -1;
  ocp_verdict_init (&p->verdict);
  return p;
}

static void
pending_free (Pending *p)
{
  ocp_server_txn_unref (p->txn);
  ocp_verdict_clear (&p->verdict);
  if (p->header)
    g_bytes_unref (p->header);
  if (p->body_fd >= 0)
    close (p->body_fd);
  g_free (p);
}

static gboolean
respond_later (gpointer data)
{
  Pending *p = data;
  ocp_server_txn_respond (p->txn, &p->verdict, p->header, p->body_fd);
  if (debug)
    g_printerr ("calloutd: answered %s: %" G_GUINT64_FORMAT " octets sent in all\n",
                ocp_verdict_name (p->verdict.verdict), ocp_server_bytes_sent (server));
  pending_free (p);
  return G_SOURCE_REMOVE;
}

static GBytes *
header_with (OcpServerTxn *t, const char *line)
{
  g_autoptr (GBytes) h = ocp_server_txn_header (t);
  GString *s = g_string_new (line);
  gsize n = 0;
  const char *p = h ? g_bytes_get_data (h, &n) : NULL;

  g_string_append_c (s, '\n');
  if (p)
    g_string_append_len (s, p, n);
  else
    g_string_append_c (s, '\n');
  return g_string_free_to_bytes (s);
}

/* ---- the actions: each returns FALSE when the transaction gets no answer */

/* reject CODE TEXT | tempfail CODE TEXT */
static gboolean
act_refuse (Pending *p, const char *a, const char *arg)
{
  p->verdict.verdict = a[0] == 'r' ? OCP_VERDICT_REJECT : OCP_VERDICT_TEMPFAIL;
  p->verdict.reply_code = (guint) g_ascii_strtoull (arg, NULL, 10);
  p->verdict.reply_text = g_strdup (strchr (arg, ' ') ? strchr (arg, ' ') + 1 : "");
  return TRUE;
}

static gboolean
act_accept (Pending *p, const char *a, const char *arg)
{
  p->verdict.verdict = OCP_VERDICT_ACCEPT;
  return TRUE;
}

static gboolean
act_discard (Pending *p, const char *a, const char *arg)
{
  p->verdict.verdict = OCP_VERDICT_DISCARD;
  return TRUE;
}

static gboolean
act_quarantine (Pending *p, const char *a, const char *arg)
{
  p->verdict.verdict = OCP_VERDICT_QUARANTINE;
  p->verdict.folder = g_strdup (arg);
  return TRUE;
}

static gboolean
act_redirect (Pending *p, const char *a, const char *arg)
{
  p->verdict.verdict = OCP_VERDICT_REDIRECT;
  p->verdict.redirect = g_strdup (arg);
  return TRUE;
}

/* flags Seen,Flagged,... as Maildir letters */
static gboolean
act_flags (Pending *p, const char *a, const char *arg)
{
  static const struct {
    const char *name;
    char letter;
  } letters[] = {
    { "Seen", 'S' }, { "Flagged", 'F' }, { "Answered", 'R' }, { "Draft", 'D' }, { "Deleted", 'T' },
  };
  g_auto (GStrv) f = g_strsplit (arg, ",", -1);
  GString *s = g_string_new (NULL);

  for (guint i = 0; f[i]; i++)
    for (guint k = 0; k < G_N_ELEMENTS (letters); k++)
      if (!g_ascii_strcasecmp (f[i], letters[k].name))
        g_string_append_c (s, letters[k].letter);
  p->verdict.flags = g_string_free (s, FALSE);
  return TRUE;
}

static void
add_string (GPtrArray **list, const char *s)
{
  if (*list == NULL)
    *list = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (*list, g_strdup (s));
}

static gboolean
act_add_header (Pending *p, const char *a, const char *arg)
{
  add_string (&p->verdict.add_headers, arg);
  return TRUE;
}

static gboolean
act_remove_header (Pending *p, const char *a, const char *arg)
{
  add_string (&p->verdict.remove_headers, arg);
  return TRUE;
}

static gboolean
act_tag_subject (Pending *p, const char *a, const char *arg)
{
  p->verdict.subject_tag = g_strdup (arg);
  return TRUE;
}

static gboolean
act_set_header (Pending *p, const char *a, const char *arg)
{
  p->header = header_with (p->txn, arg);
  return TRUE;
}

/* replace-body TEXT (C escapes) in an unlinked file */
static gboolean
act_replace_body (Pending *p, const char *a, const char *arg)
{
  g_autofree char *path = NULL;
  g_autofree char *body = g_strcompress (arg);

  p->body_fd = g_file_open_tmp ("calloutd-XXXXXX", &path, NULL);
  if (p->body_fd >= 0)
    {
      unlink (path);
      if (write (p->body_fd, body, strlen (body)) < 0)
        g_printerr ("calloutd: %s\n", g_strerror (errno));
      lseek (p->body_fd, 0, SEEK_SET);
    }
  return TRUE;
}

static gboolean
act_delay (Pending *p, const char *a, const char *arg)
{
  p->delay = (guint) g_ascii_strtoull (arg, NULL, 10);
  return TRUE;
}

static gboolean
act_close (Pending *p, const char *a, const char *arg)
{
  ocp_server_txn_abort_connection (p->txn);
  return FALSE;
}

static gboolean
act_garbage (Pending *p, const char *a, const char *arg)
{
  ocp_server_txn_send_raw (p->txn, "AMS this is not OCP\r\n{{{\r\n;\r\n", 28);
  return FALSE;
}

static gboolean
act_hang (Pending *p, const char *a, const char *arg)
{
  g_ptr_array_add (hanging, ocp_server_txn_ref (p->txn));
  return FALSE;
}

static const struct {
  const char *word;     /* the action, or how it starts (prefix) */
  gboolean prefix;
  gboolean (*run) (Pending *p, const char *action, const char *arg);
} actions[] = {
  { "reject", TRUE, act_refuse },
  { "tempfail", TRUE, act_refuse },
  { "accept", FALSE, act_accept },
  { "discard", FALSE, act_discard },
  { "quarantine ", TRUE, act_quarantine },
  { "redirect ", TRUE, act_redirect },
  { "flags ", TRUE, act_flags },
  { "add-header ", TRUE, act_add_header },
  { "remove-header ", TRUE, act_remove_header },
  { "tag-subject ", TRUE, act_tag_subject },
  { "set-header ", TRUE, act_set_header },
  { "replace-body ", TRUE, act_replace_body },
  { "delay ", TRUE, act_delay },
  { "close", FALSE, act_close },
  { "garbage", FALSE, act_garbage },
  { "hang", FALSE, act_hang },
};

/* Runs action @a of a rule (unknown ones do nothing). */
static gboolean
run_action (Pending *p, const char *a)
{
  const char *arg = strchr (a, ' ') ? strchr (a, ' ') + 1 : "";

  for (guint i = 0; i < G_N_ELEMENTS (actions); i++)
    if (actions[i].prefix ? g_str_has_prefix (a, actions[i].word) : strcmp (a, actions[i].word) == 0)
      return actions[i].run (p, a, arg);
  return TRUE;
}

/* The first rule whose condition matches, or NULL. */
static const Rule *
rule_for (OcpServerTxn *t)
{
  for (guint i = 0; i < rules->len; i++)
    if (matches (t, ((Rule *) rules->pdata[i])->cond))
      return rules->pdata[i];
  return NULL;
}

static void
handle (OcpServerTxn *t, gpointer data)
{
  Pending *p = pending_new (t);
  const Rule *rule = rule_for (t);
  GHashTable *env = ocp_server_txn_envelope (t);

  handled++;
  if (debug)
    g_printerr ("calloutd: %s for %s from client %s (%s): %s\n", ocp_server_txn_service (t),
                (char *) g_hash_table_lookup (env, "Rcpt-To"), (char *) g_hash_table_lookup (env, "Client-Address"),
                (char *) g_hash_table_lookup (env, "Client-Name"), rule ? rule->cond : "(no rule: accept)");
  for (guint k = 0; rule && rule->actions[k]; k++)
    if (!run_action (p, rule->actions[k]))
      {
        pending_free (p);
        return;
      }
  p->verdict.service_id = g_strdup (ocp_server_txn_service (t));
  if (p->delay)
    g_timeout_add (p->delay, respond_later, p);
  else
    respond_later (p);
}

static gboolean
on_term (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

typedef struct {
  char **listen;
  char *script;
  char *parts_s;
  guint parts;
  gint max_conns, handshake_s, idle_s;
} Options;

static void
options_clear (Options *o)
{
  g_strfreev (o->listen);
  g_free (o->script);
  g_free (o->parts_s);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Options, options_clear)

/* The command line into @o: 0, or the exit status after a message. */
static int
parse_options (int *argc, char ***argv, Options *o)
{
  g_autoptr (GOptionContext) ctx = NULL;
  g_autoptr (GError) error = NULL;
  GOptionEntry entries[] = {
    { "listen", 'l', 0, G_OPTION_ARG_STRING_ARRAY, &o->listen, "inet:HOST:PORT or unix:PATH", "ENDPOINT" },
    { "script", 's', 0, G_OPTION_ARG_FILENAME, &o->script, "Rules of the test service", "FILE" },
    { "parts", 'p', 0, G_OPTION_ARG_STRING, &o->parts_s, "Parts the service wants", "LIST" },
    { "debug", 'd', 0, G_OPTION_ARG_NONE, &debug, "Log each transaction", NULL },
    { "max-connections", 0, 0, G_OPTION_ARG_INT, &o->max_conns, "Connections at once (0: no limit)", "N" },
    { "handshake-timeout", 0, 0, G_OPTION_ARG_INT, &o->handshake_s, "Seconds to wait for CS and NO", "S" },
    { "idle-timeout", 0, 0, G_OPTION_ARG_INT, &o->idle_s, "Seconds an idle connection is kept", "S" },
    { NULL }
  };

  ctx = g_option_context_new ("- OCP callout server with a scriptable test service");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, argc, argv, &error) || o->listen == NULL)
    {
      g_printerr ("ocp-calloutd: %s\n", error ? error->message : "--listen is required");
      return 64;
    }
  if (o->max_conns < 0 || o->handshake_s < 0 || o->idle_s < 0)
    {
      g_printerr ("ocp-calloutd: limits must not be negative\n");
      return 64;
    }
  if (o->parts_s && !ocp_parts_parse (o->parts_s, &o->parts))
    {
      g_printerr ("ocp-calloutd: bad --parts '%s'\n", o->parts_s);
      return 64;
    }
  return 0;
}

/* Listens on every endpoint and says where (the tests read the port). */
static gboolean
listen_all (char **listen)
{
  g_autoptr (GError) error = NULL;

  for (guint i = 0; listen[i]; i++)
    {
      guint16 port = 0;
      if (!ocp_server_listen (server, listen[i], &port, &error))
        {
          g_printerr ("ocp-calloutd: %s: %s\n", listen[i], error->message);
          return FALSE;
        }
      if (port)
        {
          g_autofree char *host = g_strndup (listen[i] + 5, strrchr (listen[i], ':') - listen[i] - 5);
          g_printerr ("ocp-calloutd: listening on inet:%s:%u\n", host, port);
        }
      else
        g_printerr ("ocp-calloutd: listening on %s\n", listen[i]);
    }
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_auto (Options) o = { .parts = OCP_PARTS_ALL, .max_conns = 1024, .handshake_s = 30, .idle_s = 600 };
  g_autoptr (GError) error = NULL;
  GMainLoop *loop;
  int status = parse_options (&argc, &argv, &o);

  if (status != 0)
    return status;
  if (o.script && !load_script (o.script, &error))
    {
      g_printerr ("ocp-calloutd: %s\n", error->message);
      return 66;
    }
  if (rules == NULL)
    rules = g_ptr_array_new_with_free_func (rule_free);
  g_mime_init ();
  hanging = g_ptr_array_new_with_free_func ((GDestroyNotify) ocp_server_txn_unref);
  loop = g_main_loop_new (NULL, FALSE);
  server = ocp_server_new (o.parts, handle, NULL);
  ocp_server_set_limits (server, o.max_conns, o.handshake_s, o.idle_s);
  if (!listen_all (o.listen))
    return 71;
  g_unix_signal_add (SIGTERM, on_term, loop);
  g_unix_signal_add (SIGINT, on_term, loop);
  g_main_loop_run (loop);
  ocp_server_free (server);
  g_ptr_array_unref (hanging);
  g_main_loop_unref (loop);
  g_ptr_array_unref (rules);
  g_mime_shutdown ();
  return 0;
}
