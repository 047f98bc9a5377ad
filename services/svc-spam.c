/* svc-spam.c - spam filtering (RFC 4496 4.2): SpamAssassin's spamd (the
 * SPAMC protocol, with the recipient as User), rspamd (HTTP /checkv2), or
 * a small built-in scorer for when neither runs.  The score is compared
 * with each recipient class's threshold ([service] policy file); the
 * class's actions apply to spam: subject tag, score header, a folder,
 * reject.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "learn.h"
#include "services.h"

#define GTUBE "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
#define MESSAGE_MAX (32 * 1024 * 1024)
#define BAYES_POINTS 3.5 /* what a certain Bayes verdict adds (or takes away) */

typedef struct {
  char *pattern;        /* recipient glob */
  double threshold;
  char **actions;
} Policy;

typedef struct {
  char *backend;        /* builtin, spamd, rspamd */
  char *endpoint;       /* inet:HOST:PORT of spamd or rspamd */
  char *bayes_db;       /* builtin: the per-user token counts lmtpd's learner writes, or NULL */
  GPtrArray *policies;  /* Policy*, first match wins; the last is the default */
} Spam;

static void
policy_free (gpointer p)
{
  Policy *pol = p;
  g_free (pol->pattern);
  g_strfreev (pol->actions);
  g_free (pol);
}

static Policy *
policy_new (const char *pattern, double threshold, const char *actions, GError **error)
{
  Policy *p = g_new0 (Policy, 1);
  p->pattern = g_ascii_strdown (pattern, -1);
  p->threshold = threshold;
  p->actions = service_parse_actions (actions, "junk", error);
  if (p->actions == NULL)
    {
      policy_free (p);
      return NULL;
    }
  return p;
}

/* One line of the policy file: "RECIPIENT-GLOB THRESHOLD ACTION[;ACTION]".
 * A comment or an empty line: NULL, no error. */
static gpointer
policy_parse_line (char *line, const char *path, guint lineno, GError **error)
{
  char *l = g_strstrip (line);
  g_auto (GStrv) f = NULL;
  g_autofree char *acts = NULL;
  Policy *p;
  char *end = NULL;
  double t;

  if (*l == '\0' || *l == '#')
    return NULL;
  f = g_regex_split_simple ("\\s+", l, 0, 0);
  t = f[1] ? g_ascii_strtod (f[1], &end) : 0;
  if (g_strv_length (f) < 3 || end == f[1] || *end)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                   "%s:%u: expected 'RECIPIENT-GLOB THRESHOLD ACTION[;ACTION]'", path, lineno);
      return NULL;
    }
  acts = g_strjoinv (" ", f + 2);
  p = policy_new (f[0], t, acts, error);
  if (p == NULL)
    g_prefix_error (error, "%s:%u: ", path, lineno);
  return p;
}

/* backend = and the endpoint that goes with it. */
static gboolean
spam_backend (Spam *s, GKeyFile *kf, const char *group, GError **error)
{
  s->backend = service_get_string (kf, group, "backend", "builtin");
  s->bayes_db = service_get_string (kf, group, "bayes_db", NULL);
  if (strcmp (s->backend, "spamd") == 0)
    s->endpoint = service_get_string (kf, group, "spamd", "inet:127.0.0.1:783");
  else if (strcmp (s->backend, "rspamd") == 0)
    s->endpoint = service_get_string (kf, group, "rspamd", "inet:127.0.0.1:11333");
  else if (strcmp (s->backend, "builtin") != 0)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                   "backend: '%s' is not builtin, spamd or rspamd", s->backend);
      return FALSE;
    }
  return TRUE;
}

static gboolean
spam_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  Spam *s = g_new0 (Spam, 1);
  g_autofree char *policy = service_get_string (kf, group, "policy", NULL);
  g_autofree char *actions = service_get_string (kf, group, "actions", "junk");
  g_autofree char *threshold = service_get_string (kf, group, "threshold", "5");
  Policy *def;

  svc->state = s;
  s->policies = g_ptr_array_new_with_free_func (policy_free);
  if (!spam_backend (s, kf, group, error))
    return FALSE;
  if (policy && !service_load_lines (policy, policy_parse_line, s->policies, error))
    return FALSE;
  def = policy_new ("*", g_ascii_strtod (threshold, NULL), actions, error);
  if (def == NULL)
    return FALSE;
  g_ptr_array_add (s->policies, def);
  return TRUE;
}

/* The message as the filters want it: a Received line naming the real
 * client (spamd has no other way to learn it), the header part, the body. */
static GBytes *
whole_message (const ServiceInput *in)
{
  GByteArray *b = g_byte_array_new ();
  gsize n = 0;
  const guint8 *h = in->header ? g_bytes_get_data (in->header, &n) : NULL;
  const char *ip = g_hash_table_lookup (in->env, "Client-Address");
  const char *helo = g_hash_table_lookup (in->env, "Client-Name");
  guint64 off = 0;
  guint8 buf[65536];

  if (ip && g_hostname_is_ip_address (ip))
    {
      g_autofree char *rcv = g_strdup_printf ("Received: from %s ([%s])\n\tby opes-lmtpd with LMTP\n",
                                              helo && !strpbrk (helo, "\r\n") ? helo : "unknown", ip);
      g_byte_array_append (b, (const guint8 *) rcv, strlen (rcv));
    }
  if (h)
    g_byte_array_append (b, h, n);
  if (in->body && b->len < MESSAGE_MAX)
    g_byte_array_append (b, g_bytes_get_data (in->body, NULL), g_bytes_get_size (in->body));
  while (in->body_fd >= 0 && off < in->body_len && b->len < MESSAGE_MAX)
    {
      gssize r = pread (in->body_fd, buf, sizeof buf, off);
      if (r <= 0)
        break;
      g_byte_array_append (b, buf, r);
      off += r;
    }
  return g_byte_array_free_to_bytes (b);
}

static void
add_rule (double *score, GString *why, double points, const char *name)
{
  *score += points;
  g_string_append_printf (why, "%s,", name);
}

static gboolean
subject_all_caps (const char *subject)
{
  g_autofree char *up = NULL;

  if (subject == NULL || g_utf8_strlen (subject, -1) <= 8)
    return FALSE;
  up = g_utf8_strup (subject, -1);
  return strcmp (up, subject) == 0;
}

/* Envelope and header sender from different domains. */
static gboolean
from_mismatch (const char *from, const char *env_from)
{
  g_autofree char *lc = NULL, *dom = NULL;

  if (env_from == NULL || env_from[0] == '\0' || !strchr (env_from, '@'))
    return FALSE;
  lc = g_ascii_strdown (from, -1);
  dom = g_ascii_strdown (strrchr (env_from, '@'), -1);
  return !strstr (lc, dom);
}

/* None of the envelope recipients is named in To or Cc (Bcc or list). */
static gboolean
rcpt_not_named (const ServiceInput *in, const char *to, const char *cc)
{
  g_autofree char *joined = g_strconcat (to ? to : "", ",", cc ? cc : "", NULL);
  g_autofree char *both = g_ascii_strdown (joined, -1);
  gboolean named = FALSE;

  for (guint i = 0; in->rcpts[i] && !named; i++)
    {
      g_autofree char *r = g_ascii_strdown (in->rcpts[i], -1);
      named = strstr (both, r) != NULL;
    }
  return !named && in->rcpts[0];
}

static gboolean
builtin_score (const ServiceInput *in, GBytes *msg, double *score, GString *why)
{
  gsize n;
  const char *p = g_bytes_get_data (msg, &n);
  /* the header parsed once for all the rules */
  const char *names[] = { "Subject", "From", "To", "Cc", NULL };
  char *v[G_N_ELEMENTS (names)] = { NULL };
  const char *subject, *from;

  service_header_values (in->header, names, v);
  subject = v[0];
  from = v[1];
  *score = 0;
  if (g_strstr_len (p, n, GTUBE))
    add_rule (score, why, 1000, "GTUBE");
  if (subject_all_caps (subject))
    add_rule (score, why, 1.5, "SUBJ_ALL_CAPS");
  if (from == NULL)
    add_rule (score, why, 1, "MISSING_FROM");
  else if (from_mismatch (from, g_hash_table_lookup (in->env, "Mail-From")))
    add_rule (score, why, 0.5, "FROM_MISMATCH");
  if (rcpt_not_named (in, v[2], v[3]))
    add_rule (score, why, 0.5, "RCPT_NOT_IN_TO");
  if (why->len)
    g_string_truncate (why, why->len - 1);
  for (guint i = 0; i < G_N_ELEMENTS (v); i++)
    g_free (v[i]);
  return TRUE;
}

/* The recipient's own Bayes opinion ([learn] backend = builtin in lmtpd
 * writes it): (p - 0.5) * 2 * BAYES_POINTS, shown as BAYES_NN(+x.x).  A
 * missing or busy file, or a user who taught nothing yet, adds nothing. */
static void
bayes_score (const char *path, const char *rcpt, GBytes *msg, double *score, GString *why)
{
  g_autoptr (GError) error = NULL;
  LearnBayes *db = learn_bayes_open (path, FALSE, &error);
  double prob, points;
  guint tokens;
  gsize n;
  const char *p = g_bytes_get_data (msg, &n);
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  if (db == NULL || !learn_bayes_classify (db, rcpt, p, n, &prob, &tokens, &error))
    {
      if (error)
        g_printerr ("ocp-services: spam: bayes: %s\n", error->message);
      learn_bayes_close (db);
      return;
    }
  learn_bayes_close (db);
  points = (prob - 0.5) * 2 * BAYES_POINTS;
  *score += points;
  g_ascii_formatd (buf, sizeof buf, "%+.1f", points);
  g_string_append_printf (why, "%sBAYES_%02d(%s)", why->len ? "," : "", MIN ((int) (prob * 100), 99), buf);
}

static GSocketConnection *
connect_to (const char *endpoint, GError **error)
{
  g_autoptr (GSocketClient) client = util_socket_client_new ();
  const char *hp = g_str_has_prefix (endpoint, "inet:") ? endpoint + 5 : endpoint;
  g_socket_client_set_timeout (client, 30);
  return g_socket_client_connect_to_host (client, hp, 0, NULL, error);
}

/* Reads the whole answer (bounded). */
static char *
read_answer (GSocketConnection *conn, GError **error)
{
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (conn));
  GString *s = g_string_new (NULL);
  char buf[4096];
  gssize n;

  while ((n = g_input_stream_read (in, buf, sizeof buf, NULL, error)) > 0 && s->len < 1024 * 1024)
    g_string_append_len (s, buf, n);
  if (n < 0)
    {
      g_string_free (s, TRUE);
      return NULL;
    }
  return g_string_free (s, FALSE);
}

/* SPAMC/1.5: "CHECK" with User; "Spam: True ; 15.3 / 5.0" */
static gboolean
spamd_score (const char *endpoint, const char *user, GBytes *msg, double *score, GString *why, GError **error)
{
  g_autoptr (GSocketConnection) conn = connect_to (endpoint, error);
  g_autofree char *head = NULL, *answer = NULL;
  GOutputStream *out;
  const char *spam;
  gsize n;
  const char *p = g_bytes_get_data (msg, &n);

  if (conn == NULL)
    return FALSE;
  out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  head = g_strdup_printf ("CHECK SPAMC/1.5\r\nContent-length: %" G_GSIZE_FORMAT "\r\nUser: %s\r\n\r\n", n, user);
  if (!g_output_stream_write_all (out, head, strlen (head), NULL, NULL, error)
      || !g_output_stream_write_all (out, p, n, NULL, NULL, error))
    return FALSE;
  g_socket_shutdown (g_socket_connection_get_socket (conn), FALSE, TRUE, NULL);
  answer = read_answer (conn, error);
  if (answer == NULL)
    return FALSE;
  spam = strstr (answer, "\nSpam: ");
  if (!g_str_has_prefix (answer, "SPAMD/") || spam == NULL || !strchr (spam, ';'))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "spamd: unexpected answer");
      return FALSE;
    }
  *score = g_ascii_strtod (strchr (spam, ';') + 1, NULL);
  g_string_append (why, "spamd");
  return TRUE;
}

/* rspamd's request head: what it knows of the envelope. */
static char *
rspamd_head (const ServiceInput *in, gsize len)
{
  GString *h = g_string_new (NULL);
  const char *v;

  g_string_append_printf (h, "POST /checkv2 HTTP/1.0\r\nContent-Length: %" G_GSIZE_FORMAT "\r\n", len);
  if ((v = g_hash_table_lookup (in->env, "Mail-From")) && v[0])
    g_string_append_printf (h, "From: %s\r\n", v);
  if ((v = g_hash_table_lookup (in->env, "Client-Address")) && g_hostname_is_ip_address (v))
    g_string_append_printf (h, "IP: %s\r\n", v);
  if ((v = g_hash_table_lookup (in->env, "Client-Name")))
    g_string_append_printf (h, "Helo: %s\r\n", v);
  for (guint i = 0; in->rcpts[i]; i++)
    g_string_append_printf (h, "Rcpt: %s\r\n", in->rcpts[i]);
  g_string_append (h, "\r\n");
  return g_string_free (h, FALSE);
}

/* rspamd: POST /checkv2, JSON with "score" */
static gboolean
rspamd_score (const char *endpoint, const ServiceInput *in, GBytes *msg, double *score, GString *why,
              GError **error)
{
  g_autoptr (GSocketConnection) conn = connect_to (endpoint, error);
  g_autoptr (GRegex) re = g_regex_new ("\"score\"\\s*:\\s*(-?[0-9.]+)", 0, 0, NULL);
  g_autoptr (GMatchInfo) mi = NULL;
  g_autofree char *head = NULL, *answer = NULL, *s = NULL;
  GOutputStream *out;
  gsize n;
  const char *p = g_bytes_get_data (msg, &n);

  if (conn == NULL)
    return FALSE;
  head = rspamd_head (in, n);
  out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  if (!g_output_stream_write_all (out, head, strlen (head), NULL, NULL, error)
      || !g_output_stream_write_all (out, p, n, NULL, NULL, error))
    return FALSE;
  answer = read_answer (conn, error);
  if (answer == NULL)
    return FALSE;
  if (!g_regex_match (re, answer, 0, &mi))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "rspamd: no score in the answer");
      return FALSE;
    }
  s = g_match_info_fetch (mi, 1);
  *score = g_ascii_strtod (s, NULL);
  g_string_append (why, "rspamd");
  return TRUE;
}

/* The message's score: one scan a call.  The builtin scorer and rspamd
 * look only at the message, so every recipient of the call shares the
 * first one's scan (in->call_memo); spamd scores with the recipient's
 * own preferences (User:), so it is asked once per recipient. */
static gboolean
message_score (Spam *s, const ServiceInput *in, const char *rcpt, GBytes *msg, double *score, GString *why,
               GError **error)
{
  /* spamd and the builtin Bayes score per recipient */
  gboolean per_rcpt = strcmp (s->backend, "spamd") == 0 || s->bayes_db;
  g_autofree char *key = per_rcpt ? g_strconcat ("spam:", s->backend, ":", rcpt, NULL)
                                  : g_strconcat ("spam:", s->backend, NULL);
  const char *memo = in->call_memo ? g_hash_table_lookup (in->call_memo, key) : NULL;
  gboolean ok;

  if (memo)
    {
      char *end;
      *score = g_ascii_strtod (memo, &end);
      g_string_append (why, end + 1);
      return TRUE;
    }
  if (strcmp (s->backend, "spamd") == 0)
    ok = spamd_score (s->endpoint, rcpt, msg, score, why, error);
  else if (strcmp (s->backend, "rspamd") == 0)
    ok = rspamd_score (s->endpoint, in, msg, score, why, error);
  else if ((ok = builtin_score (in, msg, score, why)) && s->bayes_db)
    bayes_score (s->bayes_db, rcpt, msg, score, why);
  if (ok && in->call_memo)
    {
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      g_ascii_dtostr (buf, sizeof buf, *score);
      g_hash_table_insert (in->call_memo, g_steal_pointer (&key), g_strconcat (buf, " ", why->str, NULL));
    }
  return ok;
}

/* The first policy class the recipient matches (the last one is "*"). */
static const Policy *
policy_for (const Spam *s, const char *lc_rcpt)
{
  for (guint i = 0; i < s->policies->len; i++)
    if (g_pattern_match_simple (((Policy *) s->policies->pdata[i])->pattern, lc_rcpt))
      return s->policies->pdata[i];
  return NULL;
}

/* The recipient's own settings (Recipient-Data, from lmtpd's user
 * directory) over @pol, or NULL when it has none; invalid ones are
 * logged and ignored. */
static Policy *
own_policy (const ServiceInput *in, const char *rcpt, const char *lc, const Policy *pol)
{
  const char *own_threshold = g_hash_table_lookup (in->env, "Spam-Threshold");
  const char *own_actions = g_hash_table_lookup (in->env, "Spam-Actions");
  g_autoptr (GError) own_error = NULL;
  g_autofree char *acts = NULL;
  char *end = NULL;
  double t;
  Policy *own;

  if (!own_threshold && !own_actions)
    return NULL;
  t = own_threshold ? g_ascii_strtod (own_threshold, &end) : pol->threshold;
  acts = own_actions ? g_strdup (own_actions) : g_strjoinv (";", pol->actions);
  if (own_threshold && (end == own_threshold || *end))
    {
      g_printerr ("ocp-services: spam: %s: Spam-Threshold '%s' is not a number\n", rcpt, own_threshold);
      return NULL;
    }
  if ((own = policy_new (lc, t, acts, &own_error)) == NULL)
    g_printerr ("ocp-services: spam: %s: Spam-Actions: %s\n", rcpt, own_error->message);
  return own;
}

/* Score, threshold, the label and the X-Spam-* headers of a scan. */
static void
spam_report (const Policy *pol, double score, const GString *why, OcpVerdict *v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE], tbuf[G_ASCII_DTOSTR_BUF_SIZE];

  g_ascii_formatd (buf, sizeof buf, "%.1f", score);
  g_ascii_formatd (tbuf, sizeof tbuf, "%.1f", pol->threshold);
  v->score = g_strdup (buf);
  v->threshold = g_strdup (tbuf);
  v->labels = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (v->labels, g_strdup (score >= pol->threshold ? "spam" : "ham"));
  service_add_header (v, "X-Spam-Score: %s", buf);
  service_add_header (v, "X-Spam-Status: %s, score=%s required=%s tests=%s",
                      score >= pol->threshold ? "Yes" : "No", buf, tbuf, why->str);
}

/* The class's actions on spam; "junk" is the subject tag and the folder. */
static void
spam_act (const Policy *pol, OcpVerdict *v)
{
  service_add_header (v, "X-Spam-Flag: YES");
  for (guint i = 0; pol->actions[i]; i++)
    {
      if (strcmp (pol->actions[i], "junk") == 0)
        {
          service_apply_action (v, "tag [SPAM]", NULL);
          service_apply_action (v, "folder Junk", NULL);
        }
      else
        service_apply_action (v, pol->actions[i], NULL);
    }
}

static void
spam_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Spam *s = svc->state;
  g_autoptr (GBytes) msg = whole_message (in);
  g_autoptr (GString) why = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  const char *rcpt = in->rcpts[0] ? in->rcpts[0] : "";
  g_autofree char *lc = g_ascii_strdown (rcpt, -1);
  const Policy *pol = policy_for (s, lc);
  Policy *own = own_policy (in, rcpt, lc, pol);
  double score = 0;

  if (own)
    pol = own;
  if (!message_score (s, in, lc, msg, &score, why, &error))
    {
      /* the filter is down: say so; lmtpd's on_failure decides what it means */
      out->verdict.verdict = OCP_VERDICT_TEMPFAIL;
      out->verdict.reply_code = 451;
      out->verdict.reply_text = g_strdup_printf ("4.7.1 Spam filter unavailable: %s", error->message);
    }
  else
    {
      spam_report (pol, score, why, &out->verdict);
      if (score >= pol->threshold)
        spam_act (pol, &out->verdict);
    }
  if (own)
    policy_free (own);
}

static void
spam_free (gpointer p)
{
  Spam *s = p;
  g_free (s->backend);
  g_free (s->endpoint);
  g_free (s->bayes_db);
  g_ptr_array_unref (s->policies);
  g_free (s);
}

const ServiceModule service_spam = {
  "spam", OCP_PARTS_ALL, spam_configure, spam_check, spam_free, TRUE,
};
