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
#include "gmime-cleanup.h"

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
  g_autoptr (GMimeStream) stream = NULL;
  g_autoptr (GMimeParser) parser = NULL;
  g_autoptr (GMimeMessage) msg = NULL;
  gsize n;
  const char *p;

  if (header == NULL)
    return NULL;
  p = g_bytes_get_data (header, &n);
  stream = g_mime_stream_mem_new_with_buffer (p, n);
  parser = g_mime_parser_new_with_stream (stream);
  msg = g_mime_parser_construct_message (parser, NULL);
  if (msg == NULL)
    return NULL;
  p = g_mime_object_get_header (GMIME_OBJECT (msg), name);
  return p ? g_strdup (p) : NULL;
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
} Pending;

static gboolean
respond_later (gpointer data)
{
  Pending *p = data;
  ocp_server_txn_respond (p->txn, &p->verdict, p->header, p->body_fd);
  if (debug)
    g_printerr ("calloutd: answered %s: %" G_GUINT64_FORMAT " octets sent in all\n",
                ocp_verdict_name (p->verdict.verdict), ocp_server_bytes_sent (server));
  ocp_server_txn_unref (p->txn);
  ocp_verdict_clear (&p->verdict);
  if (p->header)
    g_bytes_unref (p->header);
  if (p->body_fd >= 0)
    close (p->body_fd);
  g_free (p);
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

static void
handle (OcpServerTxn *t, gpointer data)
{
  Pending *p = g_new0 (Pending, 1);
  guint delay = 0;
  const Rule *rule = NULL;

  handled++;
  p->txn = ocp_server_txn_ref (t);
  p->body_fd = -1;
  ocp_verdict_init (&p->verdict);
  for (guint i = 0; i < rules->len && rule == NULL; i++)
    if (matches (t, ((Rule *) rules->pdata[i])->cond))
      rule = rules->pdata[i];
  if (debug)
    g_printerr ("calloutd: %s for %s from client %s (%s): %s\n", ocp_server_txn_service (t),
                (char *) g_hash_table_lookup (ocp_server_txn_envelope (t), "Rcpt-To"),
                (char *) g_hash_table_lookup (ocp_server_txn_envelope (t), "Client-Address"),
                (char *) g_hash_table_lookup (ocp_server_txn_envelope (t), "Client-Name"),
                rule ? rule->cond : "(no rule: accept)");
  for (guint k = 0; rule && rule->actions[k]; k++)
    {
      const char *a = rule->actions[k];
      const char *arg = strchr (a, ' ') ? strchr (a, ' ') + 1 : "";
      OcpVerdict *v = &p->verdict;

      if (g_str_has_prefix (a, "reject") || g_str_has_prefix (a, "tempfail"))
        {
          v->verdict = a[0] == 'r' ? OCP_VERDICT_REJECT : OCP_VERDICT_TEMPFAIL;
          v->reply_code = (guint) g_ascii_strtoull (arg, NULL, 10);
          v->reply_text = g_strdup (strchr (arg, ' ') ? strchr (arg, ' ') + 1 : "");
        }
      else if (strcmp (a, "accept") == 0)
        v->verdict = OCP_VERDICT_ACCEPT;
      else if (strcmp (a, "discard") == 0)
        v->verdict = OCP_VERDICT_DISCARD;
      else if (g_str_has_prefix (a, "quarantine "))
        {
          v->verdict = OCP_VERDICT_QUARANTINE;
          v->folder = g_strdup (arg);
        }
      else if (g_str_has_prefix (a, "redirect "))
        {
          v->verdict = OCP_VERDICT_REDIRECT;
          v->redirect = g_strdup (arg);
        }
      else if (g_str_has_prefix (a, "flags "))
        {
          g_auto (GStrv) f = g_strsplit (arg, ",", -1);
          GString *s = g_string_new (NULL);
          for (guint i = 0; f[i]; i++)
            {
              if (!g_ascii_strcasecmp (f[i], "Seen")) g_string_append_c (s, 'S');
              if (!g_ascii_strcasecmp (f[i], "Flagged")) g_string_append_c (s, 'F');
              if (!g_ascii_strcasecmp (f[i], "Answered")) g_string_append_c (s, 'R');
              if (!g_ascii_strcasecmp (f[i], "Draft")) g_string_append_c (s, 'D');
              if (!g_ascii_strcasecmp (f[i], "Deleted")) g_string_append_c (s, 'T');
            }
          v->flags = g_string_free (s, FALSE);
        }
      else if (g_str_has_prefix (a, "add-header "))
        {
          if (v->add_headers == NULL)
            v->add_headers = g_ptr_array_new_with_free_func (g_free);
          g_ptr_array_add (v->add_headers, g_strdup (arg));
        }
      else if (g_str_has_prefix (a, "remove-header "))
        {
          if (v->remove_headers == NULL)
            v->remove_headers = g_ptr_array_new_with_free_func (g_free);
          g_ptr_array_add (v->remove_headers, g_strdup (arg));
        }
      else if (g_str_has_prefix (a, "tag-subject "))
        v->subject_tag = g_strdup (arg);
      else if (g_str_has_prefix (a, "set-header "))
        p->header = header_with (t, arg);
      else if (g_str_has_prefix (a, "replace-body "))
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
        }
      else if (g_str_has_prefix (a, "delay "))
        delay = (guint) g_ascii_strtoull (arg, NULL, 10);
      else if (strcmp (a, "close") == 0 || strcmp (a, "garbage") == 0 || strcmp (a, "hang") == 0)
        {
          if (a[0] == 'c')
            ocp_server_txn_abort_connection (t);
          else if (a[0] == 'g')
            ocp_server_txn_send_raw (t, "AMS this is not OCP\r\n{{{\r\n;\r\n", 28);
          else
            g_ptr_array_add (hanging, ocp_server_txn_ref (t));
          ocp_server_txn_unref (p->txn);
          ocp_verdict_clear (&p->verdict);
          if (p->header)
            g_bytes_unref (p->header);
          if (p->body_fd >= 0)
            close (p->body_fd);
          g_free (p);
          return;
        }
    }
  p->verdict.service_id = g_strdup (ocp_server_txn_service (t));
  if (delay)
    g_timeout_add (delay, respond_later, p);
  else
    respond_later (p);
}

static gboolean
on_term (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

int
main (int argc, char **argv)
{
  g_auto (GStrv) listen = NULL;
  g_autofree char *script = NULL, *parts_s = NULL;
  g_autoptr (GOptionContext) ctx = NULL;
  g_autoptr (GError) error = NULL;
  GMainLoop *loop;
  guint parts = OCP_PARTS_ALL;
  gint max_conns = 1024, handshake_s = 30, idle_s = 600;
  GOptionEntry entries[] = {
    { "listen", 'l', 0, G_OPTION_ARG_STRING_ARRAY, &listen, "inet:HOST:PORT or unix:PATH", "ENDPOINT" },
    { "script", 's', 0, G_OPTION_ARG_FILENAME, &script, "Rules of the test service", "FILE" },
    { "parts", 'p', 0, G_OPTION_ARG_STRING, &parts_s, "Parts the service wants", "LIST" },
    { "debug", 'd', 0, G_OPTION_ARG_NONE, &debug, "Log each transaction", NULL },
    { "max-connections", 0, 0, G_OPTION_ARG_INT, &max_conns, "Connections at once (0: no limit)", "N" },
    { "handshake-timeout", 0, 0, G_OPTION_ARG_INT, &handshake_s, "Seconds to wait for CS and NO", "S" },
    { "idle-timeout", 0, 0, G_OPTION_ARG_INT, &idle_s, "Seconds an idle connection is kept", "S" },
    { NULL }
  };

  ctx = g_option_context_new ("- OCP callout server with a scriptable test service");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || listen == NULL)
    {
      g_printerr ("ocp-calloutd: %s\n", error ? error->message : "--listen is required");
      return 64;
    }
  if (max_conns < 0 || handshake_s < 0 || idle_s < 0)
    {
      g_printerr ("ocp-calloutd: limits must not be negative\n");
      return 64;
    }
  if (parts_s && !ocp_parts_parse (parts_s, &parts))
    {
      g_printerr ("ocp-calloutd: bad --parts '%s'\n", parts_s);
      return 64;
    }
  if (script && !load_script (script, &error))
    {
      g_printerr ("ocp-calloutd: %s\n", error->message);
      return 66;
    }
  if (rules == NULL)
    rules = g_ptr_array_new_with_free_func (rule_free);
  g_mime_init ();
  hanging = g_ptr_array_new_with_free_func ((GDestroyNotify) ocp_server_txn_unref);
  loop = g_main_loop_new (NULL, FALSE);
  server = ocp_server_new (parts, handle, NULL);
  ocp_server_set_limits (server, max_conns, handshake_s, idle_s);
  for (guint i = 0; listen[i]; i++)
    {
      guint16 port = 0;
      if (!ocp_server_listen (server, listen[i], &port, &error))
        {
          g_printerr ("ocp-calloutd: %s: %s\n", listen[i], error->message);
          return 71;
        }
      if (port)
        {
          g_autofree char *host = g_strndup (listen[i] + 5, strrchr (listen[i], ':') - listen[i] - 5);
          g_printerr ("ocp-calloutd: listening on inet:%s:%u\n", host, port);
        }
      else
        g_printerr ("ocp-calloutd: listening on %s\n", listen[i]);
    }
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
