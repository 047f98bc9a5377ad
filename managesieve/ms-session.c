/* ms-session.c - one ManageSieve connection (RFC 5804): the greeting, the
 * command table and the two states, not authenticated and authenticated.
 *
 * Every reply is queued and flushed once a command is done; the next
 * command is read only after that, so a client that does not read finds
 * the flush's deadline.  Scripts are checked with sieve-lite's compiler
 * (PUTSCRIPT, CHECKSCRIPT), so what is stored compiles at delivery.
 */
#include "config.h"

#include <string.h>

#include "managesieve.h"
#include "sieve.h"

typedef struct {
  const MsSessionSetup *setup;
  const LmtpdConfig *config;
  MsConn *conn;
  char *user;             /* NULL: not authenticated */
  MsStore *store;
  guint auth_failures;
  gboolean done;
} Session;

typedef enum { ANY, NONAUTH, AUTH } MsState;

typedef struct {
  const char *verb;
  MsState state;
  guint min_args, max_args;
  void (*run) (Session *s, MsCommand *cmd);
} MsCommandDef;

/* ---- replies ------------------------------------------------------------------ */

/* "OK", "NO" or "BYE", a response code or NULL, and a human text. */
static void
reply (Session *s, const char *kind, const char *code, const char *text)
{
  g_autoptr (GString) line = g_string_new (kind);

  if (code)
    g_string_append_printf (line, " (%s)", code);
  g_string_append_c (line, ' ');
  ms_append_string (line, text, strlen (text));
  g_string_append (line, "\r\n");
  ms_conn_write (s->conn, line->str, line->len);
}

static void
capability_pair (GString *out, const char *name, const char *value)
{
  ms_append_string (out, name, strlen (name));
  if (value)
    {
      g_string_append_c (out, ' ');
      ms_append_string (out, value, strlen (value));
    }
  g_string_append (out, "\r\n");
}

/* RFC 5804 1.7; SASL is empty where PLAIN may not be used yet. */
static void
capabilities (Session *s)
{
  g_autoptr (GString) out = g_string_new (NULL);
  g_autofree char *sieve = g_strjoinv (" ", (char **) sieve_capabilities ());
  g_autofree char *redirects = g_strdup_printf ("%u", s->config->sieve_max_redirects);
  gboolean plain = s->setup->plaintext_ok || ms_conn_is_tls (s->conn);

  capability_pair (out, "IMPLEMENTATION", "opes-lmtpd managesieved " PACKAGE_VERSION);
  capability_pair (out, "SASL", plain && s->user == NULL ? "PLAIN" : "");
  capability_pair (out, "SIEVE", sieve);
  if (s->setup->tls && !ms_conn_is_tls (s->conn) && s->user == NULL)
    capability_pair (out, "STARTTLS", NULL);
  capability_pair (out, "MAXREDIRECTS", redirects);
  capability_pair (out, "UNAUTHENTICATE", NULL); /* RFC 5804 2.14.1 */
  if (s->user)
    capability_pair (out, "OWNER", s->user);
  capability_pair (out, "VERSION", "1.0");
  ms_conn_write (s->conn, out->str, out->len);
}

static void
store_reply (Session *s, MsStoreStatus r, GError *error, const char *ok)
{
  switch (r)
    {
    case MS_STORE_OK: reply (s, "OK", NULL, ok); break;
    case MS_STORE_NONEXISTENT: reply (s, "NO", "NONEXISTENT", "There is no script by that name"); break;
    case MS_STORE_ALREADYEXISTS: reply (s, "NO", "ALREADYEXISTS", "A script by that name already exists"); break;
    case MS_STORE_ACTIVE: reply (s, "NO", "ACTIVE", "The active script cannot be deleted"); break;
    case MS_STORE_MAXSCRIPTS: reply (s, "NO", "QUOTA/MAXSCRIPTS", "Too many scripts"); break;
    case MS_STORE_BADNAME: reply (s, "NO", NULL, "Invalid script name"); break;
    case MS_STORE_TRYLATER:
      {
        g_autofree char *why = util_sanitize (error ? error->message : "?", 300);
        g_warning ("%s: %s: %s", s->setup->peer, s->user, why);
        reply (s, "NO", "TRYLATER", "Temporary failure, try again later");
      }
      break;
    }
}

/* The name in argument @i: a string that is a valid script name. */
static const char *
name_arg (Session *s, MsCommand *cmd, guint i)
{
  GString *a = cmd->args[i];

  if (!cmd->is_string[i] || !ms_store_name_valid (a->str, a->len) || strlen (a->str) != a->len)
    {
      reply (s, "NO", NULL, "Invalid script name");
      return NULL;
    }
  return a->str;
}

/* sieve-lite's verdict on @script: TRUE if it compiles, else NO with its
 * "line:col: message". */
static gboolean
script_compiles (Session *s, GString *script)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SieveScript) compiled = NULL;

  if (!g_utf8_validate (script->str, script->len, NULL))
    {
      reply (s, "NO", NULL, "The script is not UTF-8");
      return FALSE;
    }
  compiled = sieve_compile (script->str, script->len, &error);
  if (compiled == NULL)
    reply (s, "NO", NULL, error->message);
  return compiled != NULL;
}

/* ---- not authenticated ---------------------------------------------------------- */

static void
cmd_capability (Session *s, MsCommand *cmd)
{
  capabilities (s);
  reply (s, "OK", NULL, "Capability completed");
}

static void
cmd_logout (Session *s, MsCommand *cmd)
{
  reply (s, "OK", NULL, "Logout completed");
  s->done = TRUE;
}

static void
cmd_noop (Session *s, MsCommand *cmd)
{
  g_autoptr (GString) code = g_string_new ("TAG ");

  if (cmd->n_args == 0)
    {
      reply (s, "OK", NULL, "NOOP completed");
      return;
    }
  ms_append_string (code, cmd->args[0]->str, MIN (cmd->args[0]->len, 1024));
  reply (s, "OK", code->str, "NOOP completed");
}

/* RFC 5804 2.2: after the handshake the capabilities again, then OK. */
static void
cmd_starttls (Session *s, MsCommand *cmd)
{
  g_autoptr (GError) error = NULL;

  if (s->setup->tls == NULL || ms_conn_is_tls (s->conn))
    {
      reply (s, "NO", NULL, ms_conn_is_tls (s->conn) ? "TLS is already active" : "STARTTLS is not configured");
      return;
    }
  reply (s, "OK", NULL, "Begin TLS negotiation now");
  if (!ms_conn_flush (s->conn) || !ms_conn_starttls (s->conn, s->setup->tls, &error))
    {
      g_message ("%s: STARTTLS failed: %s", s->setup->peer, error ? error->message : "client gone");
      s->done = TRUE;
      return;
    }
  capabilities (s);
  reply (s, "OK", NULL, "TLS negotiation successful");
}

static void login_failed (Session *s, const char *why);

static void
logged_in (Session *s, char *user)
{
  g_autoptr (GError) error = NULL;

  s->store = ms_store_new (s->config, s->setup->directory, user, &error);
  if (s->store == NULL && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED))
    login_failed (s, error->message);
  else if (s->store == NULL)
    {
      g_autofree char *why = util_sanitize (error ? error->message : "?", 300);
      g_warning ("%s: %s: %s", s->setup->peer, user, why);
      reply (s, "NO", "TRYLATER", "Temporary failure, try again later");
    }
  else
    {
      s->user = g_steal_pointer (&user);
      g_message ("%s: %s logged in", s->setup->peer, s->user);
      reply (s, "OK", NULL, "Logged in");
    }
  g_free (user);
}

/* A failure answered after a delay that grows with each; the last one
 * allowed ends the connection. */
static void
login_failed (Session *s, const char *why)
{
  s->auth_failures++;
  g_message ("%s: login failed%s%s", s->setup->peer, why ? ": " : "", why ? why : "");
  g_usleep ((gulong) MIN (s->auth_failures, 5u) * s->setup->auth_delay_ms * 1000);
  if (s->auth_failures >= s->config->managesieve_max_auth_failures)
    {
      reply (s, "BYE", NULL, "Too many failed logins");
      s->done = TRUE;
    }
  else
    reply (s, "NO", NULL, "Authentication failed");
}

/* The SASL response: the initial one, or one asked for with "". */
static gboolean
sasl_response (Session *s, MsCommand *cmd, GString *out)
{
  g_autofree char *why = NULL;
  MsParseResult r;

  if (cmd->n_args == 2)
    {
      g_string_assign (out, cmd->args[1]->str);
      return TRUE;
    }
  ms_conn_write (s->conn, "\"\"\r\n", 4);
  if (!ms_conn_flush (s->conn))
    {
      s->done = TRUE;
      return FALSE;
    }
  r = ms_read_string (s->conn, MS_MAX_LINE, out, &why);
  if (r == MS_PARSE_FATAL)
    s->done = TRUE;
  else if (r != MS_PARSE_OK)
    reply (s, "NO", NULL, why ? why : "Bad SASL response");
  else if (strcmp (out->str, "*") == 0)
    reply (s, "NO", NULL, "Authentication aborted"); /* RFC 5804 2.1 */
  return r == MS_PARSE_OK && strcmp (out->str, "*") != 0;
}

static void
cmd_authenticate (Session *s, MsCommand *cmd)
{
  g_autoptr (GString) response = g_string_new (NULL);
  g_autofree char *why = NULL;
  char *user = NULL;

  if (g_ascii_strcasecmp (cmd->args[0]->str, "PLAIN") != 0)
    {
      reply (s, "NO", NULL, "Unsupported authentication mechanism");
      return;
    }
  if (!s->setup->plaintext_ok && !ms_conn_is_tls (s->conn))
    {
      reply (s, "NO", "ENCRYPT-NEEDED", "Use STARTTLS first"); /* RFC 5804 1.3 */
      return;
    }
  if (!sasl_response (s, cmd, response))
    return;
  switch (ms_auth_plain (s->setup->directory, response->str, &user, &why))
    {
    case MS_AUTH_OK:
      logged_in (s, user);
      break;
    case MS_AUTH_TRYLATER:
      g_warning ("%s: login: %s", s->setup->peer, why);
      reply (s, "NO", "TRYLATER", "The user directory is not available, try again later");
      break;
    default:
      login_failed (s, why);
      break;
    }
  explicit_bzero (response->str, response->len);
}

/* ---- authenticated --------------------------------------------------------------- */

static void
cmd_unauthenticate (Session *s, MsCommand *cmd)
{
  g_clear_pointer (&s->store, ms_store_free);
  g_clear_pointer (&s->user, g_free);
  reply (s, "OK", NULL, "Unauthenticate completed");
}

static void
cmd_havespace (Session *s, MsCommand *cmd)
{
  g_autoptr (GError) error = NULL;
  const char *name = name_arg (s, cmd, 0);
  const char *size = cmd->args[1]->str;
  guint64 n = 0;

  if (name == NULL)
    return;
  if (cmd->is_string[1] || !g_ascii_string_to_unsigned (size, 10, 0, G_MAXUINT64, &n, NULL))
    reply (s, "NO", NULL, "The size is not a number");
  else if (n > s->config->sieve_max_script_size)
    reply (s, "NO", "QUOTA/MAXSIZE", "The script is larger than the maximum size");
  else
    store_reply (s, ms_store_count_allows (s->store, name, s->config->managesieve_max_scripts, &error), error,
                 "Putscript would succeed");
}

static void
cmd_putscript (Session *s, MsCommand *cmd)
{
  g_autoptr (GError) error = NULL;
  const char *name = name_arg (s, cmd, 0);
  GString *script = cmd->args[1];

  if (name == NULL)
    return;
  if (!cmd->is_string[1])
    reply (s, "NO", NULL, "The script must be a string");
  else if (script_compiles (s, script))
    store_reply (s, ms_store_put (s->store, name, script->str, script->len, s->config->managesieve_max_scripts,
                                  &error), error, "Putscript completed");
}

static void
cmd_checkscript (Session *s, MsCommand *cmd)
{
  if (!cmd->is_string[0])
    reply (s, "NO", NULL, "The script must be a string");
  else if (script_compiles (s, cmd->args[0]))
    reply (s, "OK", NULL, "Script is valid");
}

static void
cmd_listscripts (Session *s, MsCommand *cmd)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) names = NULL;
  g_autofree char *active = NULL;
  g_autoptr (GString) out = g_string_new (NULL);
  MsStoreStatus r = ms_store_list (s->store, &names, &active, &error);

  for (guint i = 0; r == MS_STORE_OK && i < names->len; i++)
    {
      const char *name = names->pdata[i];
      ms_append_string (out, name, strlen (name));
      g_string_append (out, active && strcmp (active, name) == 0 ? " ACTIVE\r\n" : "\r\n");
    }
  ms_conn_write (s->conn, out->str, out->len);
  store_reply (s, r, error, "Listscripts completed");
}

static void
cmd_setactive (Session *s, MsCommand *cmd)
{
  g_autoptr (GError) error = NULL;
  const char *name = cmd->args[0]->len == 0 && cmd->is_string[0] ? "" : name_arg (s, cmd, 0);

  if (name)
    store_reply (s, ms_store_set_active (s->store, name, &error), error,
                 name[0] ? "Setactive completed" : "No script is active");
}

static void
cmd_getscript (Session *s, MsCommand *cmd)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GString) out = g_string_new (NULL);
  const char *name = name_arg (s, cmd, 0);
  MsStoreStatus r;

  if (name == NULL)
    return;
  r = ms_store_get (s->store, name, s->config->sieve_max_script_size, out, &error);
  if (r == MS_STORE_OK)
    {
      ms_conn_printf (s->conn, "{%" G_GSIZE_FORMAT "}\r\n", out->len);
      ms_conn_write (s->conn, out->str, out->len);
      ms_conn_write (s->conn, "\r\n", 2);
    }
  store_reply (s, r, error, "Getscript completed");
}

static void
cmd_deletescript (Session *s, MsCommand *cmd)
{
  g_autoptr (GError) error = NULL;
  const char *name = name_arg (s, cmd, 0);

  if (name)
    store_reply (s, ms_store_delete (s->store, name, &error), error, "Deletescript completed");
}

static void
cmd_renamescript (Session *s, MsCommand *cmd)
{
  g_autoptr (GError) error = NULL;
  const char *from = name_arg (s, cmd, 0), *to = from ? name_arg (s, cmd, 1) : NULL;

  if (to)
    store_reply (s, ms_store_rename (s->store, from, to, &error), error, "Renamescript completed");
}

/* ---- the table and the loop -------------------------------------------------------- */

static const MsCommandDef commands[] = {
  { "CAPABILITY", ANY, 0, 0, cmd_capability },
  { "LOGOUT", ANY, 0, 0, cmd_logout },
  { "NOOP", ANY, 0, 1, cmd_noop },
  { "STARTTLS", NONAUTH, 0, 0, cmd_starttls },
  { "AUTHENTICATE", NONAUTH, 1, 2, cmd_authenticate },
  { "UNAUTHENTICATE", AUTH, 0, 0, cmd_unauthenticate },
  { "HAVESPACE", AUTH, 2, 2, cmd_havespace },
  { "PUTSCRIPT", AUTH, 2, 2, cmd_putscript },
  { "CHECKSCRIPT", AUTH, 1, 1, cmd_checkscript },
  { "LISTSCRIPTS", AUTH, 0, 0, cmd_listscripts },
  { "SETACTIVE", AUTH, 1, 1, cmd_setactive },
  { "GETSCRIPT", AUTH, 1, 1, cmd_getscript },
  { "DELETESCRIPT", AUTH, 1, 1, cmd_deletescript },
  { "RENAMESCRIPT", AUTH, 2, 2, cmd_renamescript },
};

static void
dispatch (Session *s, MsCommand *cmd)
{
  const MsCommandDef *def = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (commands) && def == NULL; i++)
    if (strcmp (commands[i].verb, cmd->verb) == 0)
      def = &commands[i];
  if (def == NULL)
    reply (s, "NO", NULL, "Unknown command");
  else if (def->state == AUTH && s->user == NULL)
    reply (s, "NO", NULL, "Authenticate first");
  else if (def->state == NONAUTH && s->user)
    reply (s, "NO", NULL, "Already authenticated");
  else if (cmd->n_args < def->min_args || cmd->n_args > def->max_args)
    reply (s, "NO", NULL, "Wrong number of arguments");
  else
    def->run (s, cmd);
}

/* One command read and answered; FALSE when the connection is done. */
static gboolean
one_command (Session *s)
{
  MsCommand cmd;
  MsParseResult r = ms_read_command (s->conn, s->config->sieve_max_script_size, &cmd);

  if (r == MS_PARSE_OK)
    dispatch (s, &cmd);
  else if (r == MS_PARSE_SYNTAX)
    reply (s, "NO", NULL, cmd.why ? cmd.why : "Syntax error");
  else if (r == MS_PARSE_TOO_BIG)
    reply (s, "NO", "QUOTA/MAXSIZE", "The string is larger than max_script_size");
  else
    {
      s->done = TRUE;
      if (cmd.why || ms_conn_timed_out (s->conn))
        reply (s, "BYE", NULL, cmd.why ? cmd.why : "Disconnected for inactivity");
      g_message ("%s: closed: %s", s->setup->peer, cmd.why ? cmd.why
                 : ms_conn_timed_out (s->conn) ? "idle or not reading" : "client gone");
    }
  ms_command_clear (&cmd);
  if (!ms_conn_flush (s->conn))
    {
      g_message ("%s: closed: %s", s->setup->peer, ms_conn_timed_out (s->conn) ? "not reading" : "client gone");
      return FALSE;
    }
  return !s->done;
}

void
ms_session_run (const MsSessionSetup *setup, int fd)
{
  Session s = { setup, setup->config, ms_conn_new (fd, setup->config->managesieve_idle_timeout) };
  guint n = 0;

  capabilities (&s);
  reply (&s, "OK", NULL, "opes-lmtpd ManageSieve ready");
  if (ms_conn_flush (s.conn))
    while (one_command (&s))
      if (++n >= MS_MAX_COMMANDS)
        {
          reply (&s, "BYE", NULL, "Too many commands");
          ms_conn_flush (s.conn);
          break;
        }
  g_clear_pointer (&s.store, ms_store_free);
  g_free (s.user);
  ms_conn_free (s.conn);
}
