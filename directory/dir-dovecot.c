/* dir-dovecot.c - the "dovecot" backend: Dovecot's auth-userdb socket, the
 * USER lookup that Dovecot's own LDA and LMTP make.  Whatever userdb
 * Dovecot reads (passwd-file, LDAP, SQL) lmtpd reads too: one list of users.
 *
 * The protocol (Dovecot's "auth master" protocol, version 1) is lines of
 * tab-separated fields; after Dovecot's "VERSION\t1\t..." and "SPID" we
 * send "VERSION\t1\t0" (no CPID: that is the auth-client protocol, and the
 * userdb socket drops a connection that sends it) and ask
 * "USER\t<id>\t<user>\tservice=lmtp"; the answer is "USER\t<id>\t<user>\t
 * key=value..." (found), "NOTFOUND\t<id>" or "FAIL\t<id>\t..." (Dovecot
 * could not ask its own userdb: a tempfail).  Fields are tab-escaped with
 * \001.  The fields lmtpd uses: mail (with ~ for home), home, quota_rule*,
 * the Sieve script, nologin (disabled), host, the settings prefix; a user
 * name in the answer other than the one asked for (Dovecot's "user"
 * field) is an alias.
 *
 * Connections are made when first needed (lmtpd starts while Dovecot is
 * down), kept in a small pool and used by one lookup at a time; every
 * wait is bounded by the lookup's deadline, every line by LINE_MAX_BYTES.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include <gio/gunixsocketaddress.h>

#include "directory.h"

#define LINE_MAX_BYTES (64 * 1024)
#define LINES_MAX 64        /* lines read for one answer (handshake included) */
#define FIELDS_MAX 256      /* fields of one answer */
#define SETTINGS_MAX 64
#define POOL_IDLE_MAX 8

typedef struct {
  GSocket *socket;
  gboolean fresh;         /* our VERSION not sent yet */
  gboolean version_ok;    /* Dovecot's VERSION seen */
  guint32 next_id;
  gsize len;
  char buf[LINE_MAX_BYTES];
} Conn;

typedef struct {
  char *socket_path;
  char *auth_socket_path; /* auth-client, for logins; or NULL */
  char *service;
  gboolean local;         /* ask for the local part only */
  char *sieve_field;
  char *settings_prefix;
  GMutex lock;
  GQueue idle;            /* Conn* */
} Dovecot;

#define DOVECOT_ERROR (g_quark_from_static_string ("dir-dovecot"))

/* ---- the socket ------------------------------------------------------------ */

static void
conn_free (Conn *c)
{
  if (c == NULL)
    return;
  g_socket_close (c->socket, NULL);
  g_object_unref (c->socket);
  g_free (c);
}

static gboolean
wait_for (GSocket *s, GIOCondition cond, gint64 deadline, GError **error)
{
  gint64 left = deadline - g_get_monotonic_time ();
  g_autoptr (GError) err = NULL;

  if (left > 0 && g_socket_condition_timed_wait (s, cond, left, NULL, &err))
    return TRUE;
  if (err && !g_error_matches (err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    g_propagate_error (error, g_steal_pointer (&err));
  else
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "Dovecot did not answer in time");
  return FALSE;
}

static Conn *
conn_open (const char *path, gint64 deadline, GError **error)
{
  g_autoptr (GSocketAddress) addr = g_unix_socket_address_new (path);
  g_autoptr (GError) err = NULL;
  GSocket *s = g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, error);
  Conn *c;

  if (s == NULL)
    return NULL;
  g_socket_set_blocking (s, FALSE);
  if (!g_socket_connect (s, addr, NULL, &err)
      && (!g_error_matches (err, G_IO_ERROR, G_IO_ERROR_PENDING) || !wait_for (s, G_IO_OUT, deadline, error)
          || !g_socket_check_connect_result (s, error)))
    {
      if (err && !g_error_matches (err, G_IO_ERROR, G_IO_ERROR_PENDING))
        g_set_error (error, err->domain, err->code, "%s: %s", path, err->message);
      g_object_unref (s);
      return NULL;
    }
  c = g_new0 (Conn, 1);
  c->socket = s;
  c->fresh = TRUE;
  c->next_id = 1;
  return c;
}

static gboolean
conn_send (Conn *c, const char *data, gsize len, gint64 deadline, GError **error)
{
  while (len > 0)
    {
      g_autoptr (GError) err = NULL;
      gssize n = g_socket_send (c->socket, data, len, NULL, &err);

      if (n < 0 && !g_error_matches (err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          g_propagate_error (error, g_steal_pointer (&err));
          return FALSE;
        }
      if (n < 0 && !wait_for (c->socket, G_IO_OUT, deadline, error))
        return FALSE;
      if (n > 0)
        {
          data += n;
          len -= n;
        }
    }
  return TRUE;
}

/* The next line without its LF (owned), or NULL with @error. */
static char *
conn_read_line (Conn *c, gint64 deadline, GError **error)
{
  for (;;)
    {
      char *nl = memchr (c->buf, '\n', c->len);
      g_autoptr (GError) err = NULL;
      gssize got;

      if (nl)
        {
          gsize n = nl - c->buf;
          char *line = g_strndup (c->buf, n);
          memmove (c->buf, nl + 1, c->len - n - 1);
          c->len -= n + 1;
          return line;
        }
      if (c->len == sizeof c->buf)
        {
          g_set_error (error, DOVECOT_ERROR, 0, "Dovecot sent a line longer than %d bytes", LINE_MAX_BYTES);
          return NULL;
        }
      if (!wait_for (c->socket, G_IO_IN, deadline, error))
        return NULL;
      got = g_socket_receive (c->socket, c->buf + c->len, sizeof c->buf - c->len, NULL, &err);
      if (got < 0 && g_error_matches (err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        continue;
      if (got < 0)
        g_propagate_error (error, g_steal_pointer (&err));
      else if (got == 0)
        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "Dovecot closed the connection");
      if (got <= 0)
        return NULL;
      c->len += got;
    }
}

/* ---- tab-escaping ---------------------------------------------------------- */

static void
append_escaped (GString *out, const char *s)
{
  for (; *s; s++)
    switch (*s)
      {
      case '\001': g_string_append (out, "\0011"); break;
      case '\t': g_string_append (out, "\001t"); break;
      case '\r': g_string_append (out, "\001r"); break;
      case '\n': g_string_append (out, "\001n"); break;
      default: g_string_append_c (out, *s); break;
      }
}

/* A field unescaped (owned); NULL if it holds a NUL, which no value of
 * ours can carry. */
static char *
unescape (const char *s)
{
  GString *out = g_string_sized_new (strlen (s));

  for (; *s; s++)
    {
      if (*s != '\001')
        {
          g_string_append_c (out, *s);
          continue;
        }
      if (*++s == '\0')
        break;
      switch (*s)
        {
        case '0': g_string_free (out, TRUE); return NULL;
        case '1': g_string_append_c (out, '\001'); break;
        case 't': g_string_append_c (out, '\t'); break;
        case 'r': g_string_append_c (out, '\r'); break;
        case 'n': g_string_append_c (out, '\n'); break;
        default: g_string_append_c (out, *s); break;
        }
    }
  return g_string_free (out, FALSE);
}

/* Printable (UTF-8 allowed): may go into a log line or a header. */
static gboolean
printable (const char *s)
{
  for (const guchar *p = (const guchar *) s; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return FALSE;
  return TRUE;
}

/* ---- one request ----------------------------------------------------------- */

/* The answer to request @id: its tab-separated fields (owned), or NULL with
 * @error.  Handshake lines and lines for other ids are skipped. */
static char **
read_answer (Conn *c, guint32 id, gint64 deadline, GError **error)
{
  g_autofree char *want = g_strdup_printf ("%u", id);

  for (guint i = 0; i < LINES_MAX; i++)
    {
      g_autofree char *line = conn_read_line (c, deadline, error);
      g_auto (GStrv) f = NULL;

      if (line == NULL)
        return NULL;
      f = g_strsplit (line, "\t", FIELDS_MAX);
      if (strcmp (f[0], "VERSION") == 0)
        {
          c->version_ok = f[1] && strcmp (f[1], "1") == 0;
          if (!c->version_ok)
            break;
          continue;
        }
      if (!c->version_ok)
        break;
      if (f[1] && strcmp (f[1], want) == 0
          && (strcmp (f[0], "USER") == 0 || strcmp (f[0], "NOTFOUND") == 0 || strcmp (f[0], "FAIL") == 0))
        return g_steal_pointer (&f);
    }
  g_set_error (error, DOVECOT_ERROR, 0, "Dovecot's answer is not auth-master protocol version 1");
  return NULL;
}

/* Sends USER for @user and reads the answer. */
static char **
conn_ask (Conn *c, const Dovecot *d, const char *user, gint64 deadline, GError **error)
{
  g_autoptr (GString) req = g_string_new (c->fresh ? "VERSION\t1\t0\n" : "");
  guint32 id = c->next_id++;

  g_string_append_printf (req, "USER\t%u\t", id);
  append_escaped (req, user);
  g_string_append_printf (req, "\tservice=%s\n", d->service);
  if (!conn_send (c, req->str, req->len, deadline, error))
    return NULL;
  c->fresh = FALSE;
  return read_answer (c, id, deadline, error);
}

/* ---- the answer, as a DirectoryUser ------------------------------------------ */

typedef struct {
  char *home, *mail, *sieve, *host;
  gboolean nologin;
  guint64 quota_bytes, quota_messages;
  GPtrArray *settings;    /* "Name: value" */
} Fields;

static void
fields_clear (Fields *f)
{
  g_free (f->home);
  g_free (f->mail);
  g_free (f->sieve);
  g_free (f->host);
  g_ptr_array_unref (f->settings);
}

/* A Dovecot size or count: digits and an optional b/k/M/G/T (1024s);
 * @unit multiplies a bare number (storage= is in kilobytes). */
static gboolean
parse_size (const char *s, guint64 unit, guint64 *out)
{
  char *end = NULL;
  guint64 n, mult = unit;

  if (!g_ascii_isdigit (*s))
    return FALSE; /* "+10M", "-", "%": relative, not a limit */
  n = g_ascii_strtoull (s, &end, 10);
  switch (g_ascii_toupper (*end))
    {
    case '\0': break;
    case 'B': mult = 1; break;
    case 'K': mult = G_GUINT64_CONSTANT (1) << 10; break;
    case 'M': mult = G_GUINT64_CONSTANT (1) << 20; break;
    case 'G': mult = G_GUINT64_CONSTANT (1) << 30; break;
    case 'T': mult = G_GUINT64_CONSTANT (1) << 40; break;
    default: return FALSE;
    }
  if (*end && end[1] != '\0' && (g_ascii_toupper (*end) == 'B' || g_ascii_toupper (end[1]) != 'B' || end[2]))
    return FALSE; /* "1G" and "1GB", nothing more */
  if (n > G_MAXUINT64 / mult)
    return FALSE;
  *out = n * mult;
  return TRUE;
}

/* "*:storage=1G", "*:messages=1000", "*:bytes=10M": only the rule for all
 * mailboxes ("*") limits delivery. */
static void
take_quota_rule (Fields *f, const char *rule)
{
  g_auto (GStrv) parts = g_strsplit (rule, ":", 8);

  if (strcmp (parts[0], "*") != 0)
    return;
  for (guint i = 1; parts[i]; i++)
    {
      const char *p = parts[i];
      if (g_str_has_prefix (p, "storage="))
        parse_size (p + 8, 1024, &f->quota_bytes);
      else if (g_str_has_prefix (p, "bytes="))
        parse_size (p + 6, 1, &f->quota_bytes);
      else if (g_str_has_prefix (p, "messages="))
        parse_size (p + 9, 1, &f->quota_messages);
    }
}

static gboolean
is_quota_rule (const char *key)
{
  const char *rest = key + strlen ("quota_rule");

  if (!g_str_has_prefix (key, "quota_rule"))
    return FALSE;
  for (; *rest; rest++)
    if (!g_ascii_isdigit (*rest))
      return FALSE;
  return TRUE;
}

/* A setting "Name: value" from a prefixed field; names are header-safe. */
static void
take_setting (Fields *f, const char *name, const char *value)
{
  if (name[0] == '\0' || value == NULL || f->settings->len >= SETTINGS_MAX)
    return;
  for (const char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_')
      return;
  g_ptr_array_add (f->settings, g_strdup_printf ("%s: %s", name, value));
}

static void
take_field (const Dovecot *d, Fields *f, const char *key, const char *value)
{
  char **slot = NULL;

  if (strcmp (key, "nologin") == 0)
    f->nologin = TRUE;
  else if (value == NULL)
    return;
  else if (strcmp (key, "home") == 0)
    slot = &f->home;
  else if (strcmp (key, "mail") == 0)
    slot = &f->mail;
  else if (strcmp (key, d->sieve_field) == 0)
    slot = &f->sieve;
  else if (strcmp (key, "host") == 0)
    slot = &f->host;
  else if (is_quota_rule (key))
    take_quota_rule (f, value);
  else if (g_str_has_prefix (key, d->settings_prefix))
    take_setting (f, key + strlen (d->settings_prefix), value);
  if (slot)
    {
      g_free (*slot);
      *slot = g_strdup (value);
    }
}

/* The fields of a USER answer, from the fourth on; a field that does not
 * unescape to printable text is left out. */
static void
parse_fields (const Dovecot *d, char **raw, Fields *f)
{
  f->settings = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 3; raw[i]; i++)
    {
      g_autofree char *field = unescape (raw[i]);
      char *eq;

      if (field == NULL || field[0] == '\0' || !printable (field))
        continue;
      eq = strchr (field, '=');
      if (eq)
        *eq = '\0';
      take_field (d, f, field, eq ? eq + 1 : NULL);
    }
}

/* "~/x" with the home; a path that must be absolute, with no '..' and
 * with '%' doubled (lmtpd's templates would expand it again).  NULL with
 * @error if it cannot be made so. */
static char *
user_path (const char *path, const char *home, GError **error)
{
  g_autofree char *full = NULL;
  g_auto (GStrv) parts = NULL;

  if (path[0] == '~' && (path[1] == '\0' || path[1] == '/'))
    {
      if (home == NULL || home[0] != '/')
        {
          g_set_error (error, DOVECOT_ERROR, 0, "'%s' needs a home, and the user has none", path);
          return NULL;
        }
      full = g_strconcat (home, path + 1, NULL);
    }
  else
    full = g_strdup (path);
  if (full[0] != '/' || strstr (full, "/../") || g_str_has_suffix (full, "/.."))
    {
      g_set_error (error, DOVECOT_ERROR, 0, "'%s' is not an absolute path without '..'", full);
      return NULL;
    }
  parts = g_strsplit (full, "%", -1);
  return g_strjoinv ("%%", parts);
}

/* Dovecot's mail location "maildir:PATH[:KEY=V...]" or "mbox:PATH[:INBOX=F]"
 * as lmtpd's mailbox spec; without mail, a home gives HOME/Maildir; neither:
 * NULL (lmtpd's template).  Other formats (sdbox, mdbox) lmtpd cannot
 * write: an error, so the mail waits instead of going elsewhere. */
static gboolean
mailbox_of (const Fields *f, char **out, GError **error)
{
  g_auto (GStrv) parts = NULL;
  g_autofree char *path = NULL, *inbox = NULL;
  gboolean mbox;

  *out = NULL;
  if (f->mail == NULL || f->mail[0] == '\0')
    {
      if (f->home && f->home[0] == '/')
        *out = g_strdup_printf ("maildir:%s/Maildir", f->home);
      return TRUE;
    }
  parts = g_strsplit (f->mail, ":", 16);
  mbox = strcmp (parts[0], "mbox") == 0;
  if (parts[1] == NULL || (!mbox && strcmp (parts[0], "maildir") != 0))
    {
      g_set_error (error, DOVECOT_ERROR, 0, "mail location '%s' is not maildir: or mbox:", f->mail);
      return FALSE;
    }
  path = user_path (parts[1], f->home, error);
  for (guint i = 2; path && mbox && parts[i] && inbox == NULL; i++)
    if (g_str_has_prefix (parts[i], "INBOX="))
      {
        inbox = user_path (parts[i] + 6, f->home, error);
        if (inbox == NULL)
          return FALSE;
      }
  if (path == NULL)
    return FALSE;
  *out = g_strdup_printf ("%s:%s%s%s", parts[0], path, inbox ? ":INBOX=" : "", inbox ? inbox : "");
  return TRUE;
}

/* Pigeonhole's "[file:]PATH[;active=PATH]..." as the script to run, or
 * NULL for another kind of location (lmtpd's [sieve] script then). */
static char *
sieve_of (const Fields *f)
{
  g_auto (GStrv) parts = NULL;
  const char *path;

  if (f->sieve == NULL || f->sieve[0] == '\0')
    return NULL;
  path = g_str_has_prefix (f->sieve, "file:") ? f->sieve + 5 : f->sieve;
  parts = g_strsplit (path, ";", 16);
  path = parts[0];
  for (guint i = 1; parts[i]; i++)
    if (g_str_has_prefix (parts[i], "active="))
      path = parts[i] + 7;
  if (path[0] != '/' && path[0] != '~')
    return NULL;
  return user_path (path, f->home, NULL);
}

/* The user a USER answer names, as an address: a name without a domain
 * (auth_username_format = %n) is in the domain asked for. */
static char *
answered_address (const char *answered, const char *address)
{
  g_autofree char *name = unescape (answered);
  const char *at = strrchr (address, '@');

  if (name == NULL || name[0] == '\0' || !printable (name))
    return g_strdup (address);
  if (strchr (name, '@') || at == NULL)
    return g_ascii_strdown (name, -1);
  return g_strdup_printf ("%s%s", name, at);
}

static DirectoryUser *
user_of (const Dovecot *d, char **answer, const char *address, GError **error)
{
  Fields f = { 0 };
  g_autoptr (DirectoryUser) u = g_new0 (DirectoryUser, 1);
  g_autofree char *named = answered_address (answer[2] ? answer[2] : "", address);
  gboolean ok;

  parse_fields (d, answer, &f);
  u->address = g_strdup (address);
  if (strcmp (named, address) != 0)
    u->alias_of = g_steal_pointer (&named);
  ok = mailbox_of (&f, &u->mailbox, error);
  u->quota_bytes = f.quota_bytes;
  u->quota_messages = f.quota_messages;
  u->sieve_script = sieve_of (&f);
  u->disabled = f.nologin;
  u->host = g_steal_pointer (&f.host);
  if (f.settings->len > 0)
    {
      g_ptr_array_add (f.settings, NULL);
      u->settings = (char **) g_ptr_array_steal (f.settings, NULL);
    }
  fields_clear (&f);
  return ok ? g_steal_pointer (&u) : NULL;
}

/* ---- the backend ------------------------------------------------------------- */

static gpointer
dovecot_open (const LmtpdConfig *config, GError **error)
{
  Dovecot *d;

  if (config->users_dovecot_socket == NULL)
    {
      g_set_error_literal (error, DOVECOT_ERROR, 0, "[users] backend dovecot needs dovecot_socket");
      return NULL;
    }
  d = g_new0 (Dovecot, 1);
  d->socket_path = g_strdup (config->users_dovecot_socket);
  d->auth_socket_path = g_strdup (config->users_dovecot_auth_socket);
  d->service = g_strdup (config->users_dovecot_service ? config->users_dovecot_service : "lmtp");
  d->local = config->users_dovecot_local;
  d->sieve_field = g_strdup (config->users_dovecot_sieve_field ? config->users_dovecot_sieve_field : "sieve");
  d->settings_prefix = g_strdup (config->users_dovecot_settings_prefix ? config->users_dovecot_settings_prefix
                                                                       : "lmtpd_setting_");
  g_mutex_init (&d->lock);
  g_queue_init (&d->idle);
  return d;
}

static void
dovecot_close (gpointer backend)
{
  Dovecot *d = backend;

  g_queue_clear_full (&d->idle, (GDestroyNotify) conn_free);
  g_mutex_clear (&d->lock);
  g_free (d->socket_path);
  g_free (d->auth_socket_path);
  g_free (d->service);
  g_free (d->sieve_field);
  g_free (d->settings_prefix);
  g_free (d);
}

static Conn *
pool_take (Dovecot *d)
{
  Conn *c;

  g_mutex_lock (&d->lock);
  c = g_queue_pop_head (&d->idle);
  g_mutex_unlock (&d->lock);
  return c;
}

static void
pool_give (Dovecot *d, Conn *c)
{
  g_mutex_lock (&d->lock);
  if (g_queue_get_length (&d->idle) < POOL_IDLE_MAX)
    {
      g_queue_push_head (&d->idle, c);
      c = NULL;
    }
  g_mutex_unlock (&d->lock);
  conn_free (c);
}

/* The answer for @user: on a pooled connection, and once more on a new
 * one if that fails without timing out (Dovecot restarted since). */
static char **
ask (Dovecot *d, const char *user, gint64 deadline, GError **error)
{
  for (guint attempt = 0; attempt < 2; attempt++)
    {
      g_autoptr (GError) err = NULL;
      Conn *c = attempt == 0 ? pool_take (d) : NULL;
      gboolean pooled = c != NULL;
      char **answer;

      if (c == NULL && (c = conn_open (d->socket_path, deadline, error)) == NULL)
        return NULL;
      answer = conn_ask (c, d, user, deadline, &err);
      if (answer)
        {
          pool_give (d, c);
          return answer;
        }
      conn_free (c);
      if (!pooled || g_error_matches (err, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
        {
          g_propagate_error (error, g_steal_pointer (&err));
          return NULL;
        }
    }
  return NULL;
}

static DirectoryResult
dovecot_lookup (gpointer backend, const char *address, guint timeout_ms, DirectoryUser **out, GError **error)
{
  Dovecot *d = backend;
  gint64 deadline = g_get_monotonic_time () + (gint64) MAX (timeout_ms, 1) * 1000;
  const char *at = strrchr (address, '@');
  g_autofree char *user = d->local && at ? g_strndup (address, at - address) : g_strdup (address);
  g_auto (GStrv) answer = ask (d, user, deadline, error);
  DirectoryUser *u;

  if (answer == NULL)
    return DIRECTORY_TEMPFAIL;
  if (strcmp (answer[0], "NOTFOUND") == 0)
    return DIRECTORY_UNKNOWN;
  if (strcmp (answer[0], "FAIL") == 0)
    {
      g_autofree char *why = answer[2] ? unescape (answer[2]) : NULL;
      g_autofree char *safe = why ? g_strescape (why, NULL) : NULL;
      g_set_error (error, DOVECOT_ERROR, 0, "Dovecot could not look %s up: %.200s", user,
                   safe ? safe : "no reason given (Dovecot's log says why; a userdb socket of mode 0666 answers only for the client's own uid)");
      return DIRECTORY_TEMPFAIL;
    }
  u = user_of (d, answer, address, error);
  if (u == NULL)
    return DIRECTORY_TEMPFAIL;
  if (out)
    *out = u;
  else
    directory_user_free (u);
  return DIRECTORY_FOUND;
}

/* ---- logins: the auth-client protocol ----------------------------------------- *
 *
 * What Dovecot's own login processes do: after Dovecot's handshake
 * (VERSION 1, MECH..., SPID, CUID, COOKIE, DONE) we send "VERSION\t1\t2",
 * "CPID\t<pid>" and "AUTH\t1\tPLAIN\tservice=sieve\tsecured\tresp=<base64>";
 * the answer is "OK\t1\t..." or "FAIL\t1\t..." ("temp" among its fields:
 * Dovecot could not ask its passdb).  "secured": managesieved has already
 * required TLS where it should, so Dovecot's disable_plaintext_auth must not
 * refuse PLAIN again.  One connection a login: logins are rare. */

static char **
read_auth_answer (Conn *c, gint64 deadline, GError **error)
{
  for (guint i = 0; i < LINES_MAX; i++)
    {
      g_autofree char *line = conn_read_line (c, deadline, error);
      g_auto (GStrv) f = NULL;

      if (line == NULL)
        return NULL;
      f = g_strsplit (line, "\t", FIELDS_MAX);
      if (strcmp (f[0], "VERSION") == 0 && (f[1] == NULL || strcmp (f[1], "1") != 0))
        break;
      if (f[1] && strcmp (f[1], "1") == 0
          && (strcmp (f[0], "OK") == 0 || strcmp (f[0], "FAIL") == 0 || strcmp (f[0], "CONT") == 0))
        return g_steal_pointer (&f);
    }
  g_set_error (error, DOVECOT_ERROR, 0, "Dovecot's answer is not auth-client protocol version 1");
  return NULL;
}

static DirectoryResult
auth_verdict (char **answer, const char *user, GError **error)
{
  if (strcmp (answer[0], "OK") == 0)
    return DIRECTORY_FOUND;
  if (strcmp (answer[0], "FAIL") == 0 && g_strv_contains ((const char *const *) answer + 2, "temp"))
    {
      g_set_error (error, DOVECOT_ERROR, 0, "Dovecot could not check the password of %s", user);
      return DIRECTORY_TEMPFAIL;
    }
  return DIRECTORY_UNKNOWN; /* FAIL, or a CONT that PLAIN never asks for */
}

static DirectoryResult
dovecot_authenticate (gpointer backend, const char *address, const char *password, guint timeout_ms,
                      GError **error)
{
  Dovecot *d = backend;
  gint64 deadline = g_get_monotonic_time () + (gint64) MAX (timeout_ms, 1) * 1000;
  const char *at = strrchr (address, '@');
  g_autofree char *user = d->local && at ? g_strndup (address, at - address) : g_strdup (address);
  g_autofree char *plain = g_strdup_printf ("%c%s%c%s", 0, user, 0, password);
  gsize plain_len = strlen (user) + strlen (password) + 2;
  g_autofree char *resp = g_base64_encode ((const guchar *) plain, plain_len);
  g_autofree char *req = g_strdup_printf ("VERSION\t1\t2\nCPID\t%d\nAUTH\t1\tPLAIN\tservice=sieve\tsecured\t"
                                          "resp=%s\n", (int) getpid (), resp);
  g_auto (GStrv) answer = NULL;
  Conn *c;

  if (d->auth_socket_path == NULL)
    {
      g_set_error (error, DOVECOT_ERROR, 0, "[users] dovecot_auth_socket is not set");
      return DIRECTORY_TEMPFAIL;
    }
  c = conn_open (d->auth_socket_path, deadline, error);
  if (c && conn_send (c, req, strlen (req), deadline, error))
    answer = read_auth_answer (c, deadline, error);
  conn_free (c);
  explicit_bzero (plain, plain_len);
  explicit_bzero (resp, strlen (resp));
  explicit_bzero (req, strlen (req));
  return answer ? auth_verdict (answer, user, error) : DIRECTORY_TEMPFAIL;
}

const DirectoryBackend directory_backend_dovecot = {
  "dovecot", TRUE, dovecot_open, dovecot_lookup, dovecot_close, dovecot_authenticate,
};
