/* svc-simple.c - the services that need no outside daemon:
 *   logging  (RFC 4496 4.3)  metadata only, JSON lines
 *   access   (4.4)           a policy map on sender, recipient, client, LHLO
 *   blocking (4.8)           deny lists and subject keywords
 *   reroute  (4.7)           a directory map; To/Cc fixed too (RFC 4902 5.6)
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "services.h"

static const char *
env (const ServiceInput *in, const char *key)
{
  const char *v = g_hash_table_lookup (in->env, key);
  return v ? v : "";
}

/* ---- logging ---------------------------------------------------------------- */

typedef struct {
  GMutex lock;
  int fd;
} Logging;

static void
json_string (GString *s, const char *v)
{
  g_string_append_c (s, '"');
  for (const guchar *p = (const guchar *) v; *p; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_printf (s, "\\%c", *p);
      else if (*p < 0x20)
        g_string_append_printf (s, "\\u%04x", *p);
      else
        g_string_append_c (s, *p);
    }
  g_string_append_c (s, '"');
}

static gboolean
logging_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  g_autofree char *path = service_get_string (kf, group, "log", NULL);
  Logging *l;

  if (path == NULL)
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND, "log: missing");
      return FALSE;
    }
  l = g_new0 (Logging, 1);
  g_mutex_init (&l->lock);
  {
    g_autofree char *dir = g_path_get_dirname (path);
    if (g_mkdir_with_parents (dir, 0755) == 0)
      service_own_path (dir);
  }
  l->fd = open (path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (l->fd >= 0)
    service_own_path (path);
  if (l->fd < 0)
    {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "log %s: %s", path, g_strerror (errno));
      g_free (l);
      return FALSE;
    }
  svc->state = l;
  return TRUE;
}

static void
logging_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Logging *l = svc->state;
  g_autoptr (GString) s = g_string_new ("{");
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *ts = g_date_time_format_iso8601 (now);
  static const char *const keys[][2] = {
    { "transaction", "Transaction-Id" }, { "stage", "Stage" }, { "from", "Mail-From" },
    { "client", "Client-Address" }, { "helo", "Client-Name" }, { "size", "Message-Size" },
    { "verdicts", "Prior-Verdicts" },
  };

  g_string_append (s, "\"time\":");
  json_string (s, ts);
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_string_append_printf (s, ",\"%s\":", keys[i][0]);
      json_string (s, env (in, keys[i][1]));
    }
  g_string_append (s, ",\"to\":[");
  for (guint i = 0; in->rcpts[i]; i++)
    {
      if (i)
        g_string_append_c (s, ',');
      json_string (s, in->rcpts[i]);
    }
  /* it asked for metadata only: say so, so a reader can check */
  g_string_append_printf (s, "],\"had_header\":%s,\"had_body\":%s}\n", in->header ? "true" : "false",
                          service_input_has_body (in) ? "true" : "false");
  g_mutex_lock (&l->lock);
  if (write (l->fd, s->str, s->len) < 0)
    g_printerr ("ocp-services: logging: %s\n", g_strerror (errno));
  g_mutex_unlock (&l->lock);
  out->verdict.verdict = OCP_VERDICT_ACCEPT;
}

static void
logging_free (gpointer p)
{
  Logging *l = p;
  close (l->fd);
  g_mutex_clear (&l->lock);
  g_free (l);
}

const ServiceModule service_logging = {
  "logging", OCP_PART_ENVELOPE, logging_configure, logging_check, logging_free,
};

/* ---- access ---------------------------------------------------------------- */

typedef struct {
  char *kind;       /* from, rcpt, client, helo */
  char *pattern;    /* glob, or a CIDR for client */
  GInetAddressMask *mask;
  char *action;
} AccessRule;

typedef struct {
  GPtrArray *rules;
  char *fallback;
} Access;

static void
access_rule_free (gpointer p)
{
  AccessRule *r = p;
  g_free (r->kind);
  g_free (r->pattern);
  g_clear_object (&r->mask);
  g_free (r->action);
  g_free (r);
}

/* The file [service NAME] map names. */
static char *
map_path (GKeyFile *kf, const char *group, GError **error)
{
  char *path = service_get_string (kf, group, "map", NULL);

  if (path == NULL)
    g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND, "map: missing");
  return path;
}

/* "KIND PATTERN ACTION" (a comment or an empty line: NULL, no error). */
static gpointer
access_rule_parse (char *line, const char *path, guint lineno, GError **error)
{
  char *s = g_strstrip (line);
  g_auto (GStrv) f = NULL;
  AccessRule *r;

  if (*s == '\0' || *s == '#')
    return NULL;
  f = g_regex_split_simple ("\\s+", s, 0, 0);
  if (g_strv_length (f) < 3 || !strstr ("from rcpt client helo", f[0]))
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                   "%s:%u: expected 'from|rcpt|client|helo PATTERN ACTION'", path, lineno);
      return NULL;
    }
  r = g_new0 (AccessRule, 1);
  r->kind = g_strdup (f[0]);
  r->pattern = g_ascii_strdown (f[1], -1);
  r->action = g_strjoinv (" ", f + 2);
  if (strcmp (r->kind, "client") == 0 && strchr (r->pattern, '/'))
    r->mask = g_inet_address_mask_new_from_string (r->pattern, NULL);
  if (!service_action_valid (r->action, error))
    {
      g_prefix_error (error, "%s:%u: ", path, lineno);
      access_rule_free (r);
      return NULL;
    }
  return r;
}

static gboolean
access_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  g_autofree char *path = NULL;
  Access *a = g_new0 (Access, 1);

  svc->state = a;
  a->rules = g_ptr_array_new_with_free_func (access_rule_free);
  a->fallback = service_get_string (kf, group, "default", "accept");
  path = map_path (kf, group, error);
  return path && service_load_lines (path, access_rule_parse, a->rules, error);
}

static gboolean
access_matches (const AccessRule *r, const ServiceInput *in)
{
  if (strcmp (r->kind, "client") == 0 && r->mask)
    {
      g_autoptr (GInetAddress) ip = g_inet_address_new_from_string (env (in, "Client-Address"));
      return ip && g_inet_address_mask_matches (r->mask, ip);
    }
  if (strcmp (r->kind, "rcpt") == 0)
    {
      for (guint i = 0; in->rcpts[i]; i++)
        {
          g_autofree char *lc = g_ascii_strdown (in->rcpts[i], -1);
          if (g_pattern_match_simple (r->pattern, lc))
            return TRUE;
        }
      return FALSE;
    }
  {
    const char *v = env (in, strcmp (r->kind, "from") == 0 ? "Mail-From"
                             : strcmp (r->kind, "helo") == 0 ? "Client-Name" : "Client-Address");
    g_autofree char *lc = g_ascii_strdown (v, -1);
    return g_pattern_match_simple (r->pattern, lc);
  }
}

static void
access_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Access *a = svc->state;
  const char *action = a->fallback;

  for (guint i = 0; i < a->rules->len; i++)
    if (access_matches (a->rules->pdata[i], in))
      {
        action = ((AccessRule *) a->rules->pdata[i])->action;
        break;
      }
  service_apply_action (&out->verdict, action, NULL);
}

static void
access_free (gpointer p)
{
  Access *a = p;
  g_ptr_array_unref (a->rules);
  g_free (a->fallback);
  g_free (a);
}

const ServiceModule service_access = {
  "access", OCP_PART_ENVELOPE, access_configure, access_check, access_free, TRUE,
};

/* ---- blocking -------------------------------------------------------------- */

typedef struct {
  char **senders;
  char **recipients;
  char **keywords;
  char *action;
} Blocking;

static gboolean
blocking_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  Blocking *b = g_new0 (Blocking, 1);

  svc->state = b;
  b->senders = service_get_list (kf, group, "deny_senders");
  b->recipients = service_get_list (kf, group, "deny_recipients");
  b->keywords = service_get_list (kf, group, "subject_keywords");
  b->action = service_get_string (kf, group, "action", "reject 550 5.7.1 Blocked by policy");
  return service_action_valid (b->action, error);
}

static gboolean
any_glob (char **globs, const char *value)
{
  g_autofree char *lc = g_ascii_strdown (value, -1);
  for (guint i = 0; globs && globs[i]; i++)
    {
      g_autofree char *g = g_ascii_strdown (globs[i], -1);
      if (g[0] && g_pattern_match_simple (g, lc))
        return TRUE;
    }
  return FALSE;
}

static void
blocking_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Blocking *b = svc->state;
  gboolean hit = any_glob (b->senders, env (in, "Mail-From"));
  g_autofree char *subject = NULL;

  for (guint i = 0; !hit && in->rcpts[i]; i++)
    hit = any_glob (b->recipients, in->rcpts[i]);
  subject = service_header_value (in->header, "Subject");
  if (!hit && subject)
    {
      g_autofree char *lc = g_utf8_strdown (subject, -1);
      for (guint i = 0; !hit && b->keywords && b->keywords[i]; i++)
        {
          g_autofree char *k = g_utf8_strdown (b->keywords[i], -1);
          hit = k[0] && strstr (lc, k) != NULL;
        }
    }
  if (hit)
    service_apply_action (&out->verdict, b->action, NULL);
}

static void
blocking_free (gpointer p)
{
  Blocking *b = p;
  g_strfreev (b->senders);
  g_strfreev (b->recipients);
  g_strfreev (b->keywords);
  g_free (b->action);
  g_free (b);
}

const ServiceModule service_blocking = {
  "blocking", OCP_PART_ENVELOPE | OCP_PART_HEADER, blocking_configure, blocking_check, blocking_free, TRUE,
};

/* ---- reroute --------------------------------------------------------------- */

typedef struct {
  GHashTable *map;   /* lowercased address or @domain -> target */
} Reroute;

static gboolean
reroute_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  g_autofree char *path = NULL;
  g_auto (GStrv) lines = NULL;
  Reroute *r = g_new0 (Reroute, 1);

  svc->state = r;
  r->map = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  if ((path = map_path (kf, group, error)) == NULL || (lines = service_read_lines (path, error)) == NULL)
    return FALSE;
  for (guint i = 0; lines[i]; i++)
    {
      char *s = g_strstrip (lines[i]);
      g_auto (GStrv) f = NULL;
      const char *to;
      if (*s == '\0' || *s == '#')
        continue;
      /* "from to" or "from -> to" */
      f = g_regex_split_simple ("\\s+(->\\s+)?", s, 0, 0);
      to = g_strv_length (f) == 3 ? f[2] : f[1];
      if (g_strv_length (f) < 2 || !strchr (f[0], '@') || !strchr (to, '@'))
        {
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, "%s:%u: expected 'FROM -> TO'", path, i + 1);
          return FALSE;
        }
      g_hash_table_replace (r->map, g_ascii_strdown (f[0], -1), g_ascii_strdown (to, -1));
    }
  return TRUE;
}

static char *
reroute_lookup (Reroute *r, const char *address)
{
  g_autofree char *lc = g_ascii_strdown (address, -1);
  const char *at = strrchr (lc, '@');
  const char *t = g_hash_table_lookup (r->map, lc);

  if (t)
    return g_strdup (t);
  if (at && (t = g_hash_table_lookup (r->map, at)))
    return t[0] == '@' ? g_strdup_printf ("%.*s%s", (int) (at - lc), lc, t) : g_strdup (t);
  return NULL;
}

/* Rewrites the addresses of To and Cc that the map names (RFC 4902 5.6);
 * TRUE if any. */
static gboolean
reroute_addresses (Reroute *r, GMimeMessage *msg)
{
  static const GMimeAddressType types[] = { GMIME_ADDRESS_TYPE_TO, GMIME_ADDRESS_TYPE_CC };
  gboolean changed = FALSE;

  for (guint t = 0; t < G_N_ELEMENTS (types); t++)
    {
      InternetAddressList *list = g_mime_message_get_addresses (msg, types[t]);
      for (int i = 0; list && i < internet_address_list_length (list); i++)
        {
          InternetAddress *ia = internet_address_list_get_address (list, i);
          g_autofree char *to = NULL;
          if (!INTERNET_ADDRESS_IS_MAILBOX (ia))
            continue;
          to = reroute_lookup (r, internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (ia)));
          if (to)
            {
              internet_address_mailbox_set_addr (INTERNET_ADDRESS_MAILBOX (ia), to);
              changed = TRUE;
            }
        }
    }
  return changed;
}

/* The header block of @msg as GMime writes it: the whole body-less
 * message, since Content-* fields live on the MIME part. */
static GBytes *
header_block (GMimeMessage *msg)
{
  g_autoptr (GByteArray) bytes = service_object_bytes (GMIME_OBJECT (msg), GMIME_NEWLINE_FORMAT_UNIX, NULL);
  g_autofree char *text = NULL;
  const char *end;

  text = g_strndup ((const char *) bytes->data, bytes->len);
  end = strstr (text, "\n\n");
  return g_bytes_new (text, end ? (gsize) (end - text + 2) : strlen (text));
}

/* @header with To and Cc rerouted, or NULL if it stays as it is. */
static GBytes *
fix_header (Reroute *r, GBytes *header)
{
  g_autoptr (GMimeMessage) msg = util_gmime_parse_header (header);

  if (msg == NULL || !reroute_addresses (r, msg))
    return NULL;
  return header_block (msg);
}

static void
reroute_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Reroute *r = svc->state;
  g_autofree char *to = in->rcpts[0] ? reroute_lookup (r, in->rcpts[0]) : NULL;

  if (to == NULL)
    return;
  out->verdict.verdict = OCP_VERDICT_REDIRECT;
  out->verdict.redirect = g_steal_pointer (&to);
  out->header = fix_header (r, in->header);
}

static void
reroute_free (gpointer p)
{
  Reroute *r = p;
  g_hash_table_unref (r->map);
  g_free (r);
}

const ServiceModule service_reroute = {
  "reroute", OCP_PART_ENVELOPE | OCP_PART_HEADER, reroute_configure, reroute_check, reroute_free, TRUE,
};
