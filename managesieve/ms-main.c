/* ms-main.c - managesieved: the configuration (lmtpd.conf's [managesieve],
 * [users], [sieve], [delivery]), the listeners, and a thread for each
 * connection up to max_connections (more get BYE).
 *
 * Started as root it binds, then switches to [server] user for good, so
 * the scripts it writes belong to the mail user as lmtpd's mail does.
 * Logins may use PLAIN without TLS only on loopback and UNIX sockets,
 * unless plaintext_auth says otherwise.  SIGTERM and SIGINT stop it; the
 * configuration is read once (restart it to apply changes).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gunixsocketaddress.h>
#include <glib-unix.h>

#include "managesieve.h"

#define AUTH_DELAY_MS 500 /* a first failed login; the next wait longer */

typedef struct {
  gatomicrefcount ref;    /* main's, and one a connection's thread */
  LmtpdConfig *config;
  Directory *directory;
  UtilTlsContext *tls;
  GPtrArray *sockets;     /* GSocket*, listening */
  GPtrArray *unix_paths;  /* to remove at exit */
  gint active;            /* connections being served (atomic) */
  GMainLoop *loop;
} Server;

typedef struct {
  Server *server;
  GSocket *socket;
  MsSessionSetup setup;
  char *peer;
} Connection;

static void server_unref (Server *server);

static gpointer
connection_thread (gpointer data)
{
  Connection *c = data;

  ms_session_run (&c->setup, g_socket_get_fd (c->socket));
  g_socket_close (c->socket, NULL);
  g_object_unref (c->socket);
  g_atomic_int_dec_and_test (&c->server->active);
  server_unref (c->server);
  g_free (c->peer);
  g_free (c);
  return NULL;
}

/* "local" for a UNIX socket, else the address; *@trusted for loopback. */
static char *
peer_of (GSocket *sock, gboolean *trusted)
{
  g_autoptr (GSocketAddress) a = g_socket_get_remote_address (sock, NULL);
  GInetAddress *ia;
  g_autofree char *text = NULL;

  *trusted = TRUE;
  if (a == NULL || !G_IS_INET_SOCKET_ADDRESS (a))
    return g_strdup ("local");
  ia = g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (a));
  *trusted = g_inet_address_get_is_loopback (ia);
  text = g_inet_address_to_string (ia);
  return g_strdup_printf ("[%s]:%u", text,
                          g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (a)));
}

static void
refuse (GSocket *sock)
{
  static const char bye[] = "BYE \"Too many connections, try again later\"\r\n";

  g_socket_send (sock, bye, sizeof bye - 1, NULL, NULL);
  g_socket_close (sock, NULL);
  g_object_unref (sock);
}

/* A thread for @sock, holding the server; FALSE if none could be made. */
static gboolean
spawn (Server *server, GSocket *sock)
{
  Connection *c = g_new0 (Connection, 1);
  gboolean trusted;
  GThread *t;

  g_socket_set_blocking (sock, FALSE);
  c->server = server;
  c->socket = sock;
  c->peer = peer_of (sock, &trusted);
  c->setup = (MsSessionSetup) { server->config, server->directory, server->tls,
                                trusted || server->config->managesieve_plaintext, c->peer, AUTH_DELAY_MS };
  g_atomic_int_inc (&server->active);
  g_atomic_ref_count_inc (&server->ref);
  t = g_thread_try_new ("managesieve", connection_thread, c, NULL);
  if (t)
    {
      g_thread_unref (t);
      return TRUE;
    }
  g_atomic_int_dec_and_test (&server->active);
  g_atomic_ref_count_dec (&server->ref);
  g_free (c->peer);
  g_free (c);
  return FALSE;
}

static gboolean
on_incoming (GSocket *listener, GIOCondition cond, gpointer data)
{
  Server *server = data;
  GSocket *sock = g_socket_accept (listener, NULL, NULL);

  if (sock == NULL)
    return G_SOURCE_CONTINUE;
  if ((guint) g_atomic_int_get (&server->active) >= server->config->managesieve_max_connections
      || !spawn (server, sock))
    refuse (sock);
  return G_SOURCE_CONTINUE;
}

/* ---- listeners ---------------------------------------------------------------- */

static GSocketAddress *
address_of (const LmtpdListen *l, GError **error)
{
  GInetAddress *ia;
  GSocketAddress *a;

  if (l->kind == LMTPD_LISTEN_UNIX)
    return g_unix_socket_address_new (l->path);
  ia = g_inet_address_new_from_string (l->host);
  if (ia == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "%s is not an IP address", l->host);
      return NULL;
    }
  a = g_inet_socket_address_new (ia, l->port);
  g_object_unref (ia);
  return a;
}

/* Binds @l (a UNIX socket with [server] socket_mode) and listens. */
static gboolean
bind_one (Server *server, const LmtpdListen *l, GError **error)
{
  g_autoptr (GSocketAddress) addr = address_of (l, error);
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GSocket) sock = NULL;
  g_autofree char *text = NULL;
  gboolean ok;
  mode_t old;

  if (addr == NULL)
    return FALSE;
  sock = g_socket_new (g_socket_address_get_family (addr), G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, error);
  if (sock == NULL)
    return FALSE;
  if (l->kind == LMTPD_LISTEN_UNIX)
    unlink (l->path);
  /* the socket is made with its mode: no chmod by name afterwards */
  old = umask (l->kind == LMTPD_LISTEN_UNIX ? (~server->config->socket_mode & 0777) : 022);
  ok = g_socket_bind (sock, addr, TRUE, error) && g_socket_listen (sock, error);
  umask (old);
  if (!ok)
    return FALSE;
  g_socket_set_blocking (sock, FALSE);
  bound = g_socket_get_local_address (sock, NULL);
  if (l->kind == LMTPD_LISTEN_UNIX)
    {
      g_ptr_array_add (server->unix_paths, g_strdup (l->path));
      text = g_strdup_printf ("unix:%s", l->path);
    }
  else
    text = g_strdup_printf ("inet:%s:%u", l->host, g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
  g_message ("listening on %s", text);
  g_ptr_array_add (server->sockets, g_steal_pointer (&sock));
  return TRUE;
}

static void
serve (Server *server)
{
  for (guint i = 0; i < server->sockets->len; i++)
    {
      GSource *src = g_socket_create_source (server->sockets->pdata[i], G_IO_IN, NULL);
      g_source_set_callback (src, (GSourceFunc) (void (*) (void)) on_incoming, server, NULL);
      g_source_attach (src, NULL);
      g_source_unref (src);
    }
}

static gboolean
on_stop (gpointer data)
{
  Server *server = data;

  g_message ("stopping");
  g_main_loop_quit (server->loop);
  return G_SOURCE_CONTINUE;
}

/* ---- start ------------------------------------------------------------------------ */

/* The directory, able to check passwords, and the TLS context. */
static gboolean
server_setup (Server *server, GError **error)
{
  const LmtpdConfig *c = server->config;
  const char *cert = c->managesieve_tls_cert_file ? c->managesieve_tls_cert_file : c->tls_cert_file;
  const char *key = c->managesieve_tls_cert_file ? c->managesieve_tls_key_file : c->tls_key_file;

  server->directory = directory_new (c, error);
  if (server->directory == NULL)
    return FALSE;
  if (!directory_can_authenticate (server->directory))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "[users] backend = %s cannot check passwords for ManageSieve logins (file: password= "
                   "fields; pgsql: pgsql_password_query; dovecot: dovecot_auth_socket)",
                   directory_backend_name (server->directory));
      return FALSE;
    }
  if (cert)
    server->tls = util_tls_server_context_new (cert, key, NULL, error);
  return cert == NULL || server->tls != NULL;
}

static gboolean
start (Server *server, GError **error)
{
  const GPtrArray *listen = server->config->managesieve_listen;

  if (!server_setup (server, error))
    return FALSE;
  if (listen == NULL || listen->len == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "[managesieve] listen is empty");
      return FALSE;
    }
  for (guint i = 0; i < listen->len; i++)
    if (!bind_one (server, listen->pdata[i], error))
      return FALSE;
  return util_drop_privileges (server->config->user, error);
}

/* Sessions still running hold the server (their configuration, directory
 * and TLS context) until they end, or the process does. */
static void
server_unref (Server *server)
{
  if (!g_atomic_ref_count_dec (&server->ref))
    return;
  g_ptr_array_unref (server->unix_paths);
  g_ptr_array_unref (server->sockets);
  g_clear_pointer (&server->tls, util_tls_context_free);
  g_clear_pointer (&server->directory, directory_unref);
  g_clear_pointer (&server->loop, g_main_loop_unref);
  lmtpd_config_unref (server->config);
  g_free (server);
}

/* No new connections: the listeners closed, the UNIX sockets removed. */
static void
server_stop_listening (Server *server)
{
  for (guint i = 0; i < server->sockets->len; i++)
    g_socket_close (server->sockets->pdata[i], NULL);
  for (guint i = 0; i < server->unix_paths->len; i++)
    unlink (server->unix_paths->pdata[i]);
}

static int
run (const char *config_path)
{
  g_autoptr (GError) error = NULL;
  LmtpdConfig *config = lmtpd_config_load (config_path, &error);
  Server *server;

  if (config == NULL)
    {
      fprintf (stderr, "managesieved: configuration is invalid:\n%s\n", error->message);
      return 78; /* EX_CONFIG */
    }
  server = g_new0 (Server, 1);
  g_atomic_ref_count_init (&server->ref);
  server->config = config;
  server->sockets = g_ptr_array_new_with_free_func (g_object_unref);
  server->unix_paths = g_ptr_array_new_with_free_func (g_free);
  server->loop = g_main_loop_new (NULL, FALSE);
  if (!start (server, &error))
    {
      fprintf (stderr, "managesieved: %s\n", error->message);
      server_stop_listening (server);
      server_unref (server);
      return 1;
    }
  serve (server);
  g_unix_signal_add (SIGTERM, on_stop, server);
  g_unix_signal_add (SIGINT, on_stop, server);
  g_message ("started");
  g_main_loop_run (server->loop);
  server_stop_listening (server);
  server_unref (server); /* sessions still running end with the process */
  return 0;
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- ManageSieve server (RFC 5804)");
  g_autoptr (GError) error = NULL;
  g_autofree char *config_path = NULL;
  gboolean debug = FALSE;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, "Configuration file (lmtpd.conf)", "FILE" },
    { "debug", 'd', 0, G_OPTION_ARG_NONE, &debug, "Log debug messages", NULL },
    { NULL }
  };

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || config_path == NULL)
    {
      fprintf (stderr, "managesieved: %s\n", error ? error->message : "-c FILE is required");
      return 64; /* EX_USAGE */
    }
  if (debug)
    g_log_set_debug_enabled (TRUE);
  signal (SIGPIPE, SIG_IGN);
  return run (config_path);
}
