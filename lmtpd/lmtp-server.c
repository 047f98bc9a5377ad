/* lmtp-server.c - listeners and the set of live sessions.
 *
 * One GSocketService accepts on every configured inet and unix listener;
 * each connection becomes an LmtpSession on the main loop.  The server
 * enforces the session limit (421 to the one over it), holds the current
 * configuration (swapped on reload) and the delivery threads (as many as
 * delivery_threads, which a reload changes), and runs the graceful
 * shutdown.  Sessions call back only through LmtpSessionHost.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <gio/gunixsocketaddress.h>

#include "deliver.h"
#include "lmtp-nodes.h"
#include "lmtp-private.h"
#include "lmtp-reply.h"

struct LmtpServer {
  LmtpdConfig *config;
  GSocketService *service;
  GHashTable *sessions;      /* LmtpSession* set, owns a reference */
  DeliverContext *ctx;       /* what deliveries share; kept across reloads */
  GPtrArray *unix_paths;     /* to remove at shutdown */
  guint64 next_id;
  gboolean shutting_down;
  GSourceFunc done;
  gpointer done_data;
  guint shutdown_timer;
  guint memory_timer;        /* the max_memory watch */
  UtilTlsContext *tls;       /* STARTTLS, or NULL */
  GThreadPool *pool;         /* the delivery threads, delivery_threads of them */
};

LmtpdConfig *
lmtp_server_get_config (LmtpServer *server)
{
  return server->config;
}

/* ---- what a session asks of its server ------------------------------------ */

static LmtpdConfig *
host_config (gpointer server)
{
  return lmtp_server_get_config (server);
}

static UtilTlsContext *
host_tls (gpointer server)
{
  return ((LmtpServer *) server)->tls;
}

static DeliverContext *
host_context (gpointer server)
{
  return ((LmtpServer *) server)->ctx;
}

static GThreadPool *
host_pool (gpointer server)
{
  return ((LmtpServer *) server)->pool;
}

static void host_closed (gpointer server, LmtpSession *s);

static const LmtpSessionHost session_host = {
  host_config, host_tls, host_context, host_pool, host_closed, &lmtp_protocol,
};

static gboolean
load_tls (LmtpServer *server, LmtpdConfig *config, GError **error)
{
  UtilTlsContext *ctx = NULL;

  if (config->tls_cert_file)
    {
      ctx = util_tls_server_context_new (config->tls_cert_file, config->tls_key_file, config->tls_client_ca_file, error);
      if (ctx == NULL)
        return FALSE;
    }
  util_tls_context_free (server->tls);
  server->tls = ctx;
  return TRUE;
}

void
lmtp_server_set_config (LmtpServer *server, LmtpdConfig *config)
{
  LmtpdConfig *old = server->config;
  g_autoptr (GError) error = NULL;

  /* certificates are read again on reload (renewed ones take effect);
   * a broken one keeps the old */
  if (!load_tls (server, config, &error))
    g_warning ("STARTTLS: keeping the old certificate: %s", error->message);
  server->config = lmtpd_config_ref (config);
  lmtpd_config_unref (old);
  /* more threads start as work comes; fewer: the extra ones end once
   * their delivery is done */
  g_thread_pool_set_max_threads (server->pool, (gint) config->delivery_threads, NULL);
}

gboolean
lmtp_server_is_shutting_down (LmtpServer *server)
{
  return server->shutting_down;
}

static char *
peer_name (GSocketConnection *conn)
{
  g_autoptr (GSocketAddress) addr = g_socket_connection_get_remote_address (conn, NULL);

  if (addr && G_IS_INET_SOCKET_ADDRESS (addr))
    return g_inet_address_to_string (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (addr)));
  return g_strdup ("local");
}

/* Resident set size in bytes, 0 if unknown. */
static guint64
resident_bytes (void)
{
  unsigned long long size, rss;
  FILE *f = fopen ("/proc/self/statm", "re");
  int n;

  if (f == NULL)
    return 0;
  n = fscanf (f, "%llu %llu", &size, &rss);
  fclose (f);
  return n == 2 ? rss * (guint64) sysconf (_SC_PAGESIZE) : 0;
}

/* Accepted descriptors take the lowest free number, so a high one means
 * the table is nearly full.  Sessions already open keep enough for their
 * spool files, mailbox files and callout connections. */
static gboolean
fds_low (LmtpServer *server, GSocketConnection *conn)
{
  struct rlimit rl;
  int fd = g_socket_get_fd (g_socket_connection_get_socket (conn));
  rlim_t reserve = 32 + 4 * (rlim_t) server->config->delivery_threads;

  return getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
         && (rlim_t) fd + reserve >= rl.rlim_cur;
}

/* A fresh socket's send buffer is empty: the reply cannot block. */
static void
refuse (LmtpServer *server, GSocketConnection *conn, const char *peer, const char *why)
{
  g_autofree char *msg = g_strdup_printf (LMTP_REPLY_REFUSED, server->config->hostname, why);
  GSocket *sock = g_socket_connection_get_socket (conn);

  g_message ("%s: refused %s", why, peer);
  g_socket_set_blocking (sock, FALSE);
  g_socket_send (sock, msg, strlen (msg), NULL, NULL);
  g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
}

static gboolean
incoming_cb (GSocketService *service, GSocketConnection *conn, GObject *source, gpointer data)
{
  LmtpServer *server = data;
  g_autofree char *peer = peer_name (conn);
  LmtpSession *s;

  if (server->shutting_down)
    return TRUE;
  if (g_hash_table_size (server->sessions) >= server->config->max_sessions)
    {
      lmtp_metrics_refused (LMTP_REFUSED_SESSIONS);
      refuse (server, conn, peer, "Too many connections");
      return TRUE;
    }
  if (fds_low (server, conn))
    {
      lmtp_metrics_refused (LMTP_REFUSED_DESCRIPTORS);
      refuse (server, conn, peer, "Out of file descriptors");
      return TRUE;
    }
  if (server->config->max_memory && resident_bytes () > server->config->max_memory)
    {
      lmtp_metrics_refused (LMTP_REFUSED_MEMORY);
      refuse (server, conn, peer, "Out of memory");
      return TRUE;
    }
  /* Replies are queued and written together when the input runs dry;
   * Nagle would hold back the second of several per-recipient replies
   * for the client's delayed ACK (40 ms a transaction). */
  if (G_IS_TCP_CONNECTION (conn))
    g_socket_set_option (g_socket_connection_get_socket (conn), IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  s = lmtp_session_new (&session_host, server, conn, ++server->next_id, peer);
  g_hash_table_add (server->sessions, s);
  lmtp_metrics_session (+1);
  lmtp_session_start (s);
  return TRUE;
}

void
lmtp_server_adopt (LmtpServer *server, GSocketConnection *conn)
{
  incoming_cb (server->service, conn, NULL, server);
}

guint
lmtp_server_n_sessions (LmtpServer *server)
{
  return g_hash_table_size (server->sessions);
}

static void
host_closed (gpointer data, LmtpSession *s)
{
  LmtpServer *server = data;

  if (!g_hash_table_steal (server->sessions, s))
    return;
  lmtp_metrics_session (-1);
  lmtp_session_unref (s);
  if (server->shutting_down && g_hash_table_size (server->sessions) == 0 && server->done)
    {
      GSourceFunc done = server->done;
      server->done = NULL;
      g_idle_add (done, server->done_data);
    }
}

/* socket_owner "user[:group]" as ids; -1 for what is not given. */
static gboolean
owner_ids (const char *owner, uid_t *uid, gid_t *gid, GError **error)
{
  g_auto (GStrv) parts = g_strsplit (owner, ":", 2);

  *uid = (uid_t) -1;
  *gid = (gid_t) -1;
  if (parts[0] && parts[0][0])
    {
      struct passwd *pw = getpwnam (parts[0]);
      if (pw == NULL)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "socket_owner: no user '%s'", parts[0]);
          return FALSE;
        }
      *uid = pw->pw_uid;
    }
  if (parts[0] && parts[1] && parts[1][0])
    {
      struct group *gr = getgrnam (parts[1]);
      if (gr == NULL)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "socket_owner: no group '%s'", parts[1]);
          return FALSE;
        }
      *gid = gr->gr_gid;
    }
  return TRUE;
}

static gboolean
errno_error (GError **error, const char *what, const char *path)
{
  int e = errno;

  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (e), "%s %s: %s", what, path, g_strerror (e));
  return FALSE;
}

/* Hands the socket just bound at @path to socket_owner.  The directory
 * may be writable by the mail user, who could have put a link or another
 * file in its place since bind(): the name is opened without following
 * it (O_PATH|O_NOFOLLOW) and changed only if it is a socket we own. */
static gboolean
socket_set_owner (const char *path, const char *owner, GError **error)
{
  uid_t uid;
  gid_t gid;
  struct stat st;
  int fd;
  gboolean ok;

  if (!owner_ids (owner, &uid, &gid, error))
    return FALSE;
  fd = open (path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return errno_error (error, "open", path);
  if (fstat (fd, &st) < 0 || !S_ISSOCK (st.st_mode) || st.st_uid != geteuid ())
    {
      close (fd);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "%s was replaced by something else after it was bound: refusing to change its owner", path);
      return FALSE;
    }
  ok = fchownat (fd, "", uid, gid, AT_EMPTY_PATH) == 0 || errno_error (error, "chown", path);
  close (fd);
  return ok;
}

/* Binds with the socket's mode already right: under a umask made from
 * socket_mode bind() creates it so, and no chmod() by name (which would
 * follow a link planted after the bind) is needed. */
static gboolean
bind_unix (GSocketListener *listener, GSocketAddress *addr, guint mode, GError **error)
{
  mode_t old = umask (~mode & 0777);
  gboolean ok = g_socket_listener_add_address (listener, addr, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT,
                                               NULL, NULL, error);

  umask (old);
  return ok;
}

static gboolean
listen_unix (LmtpServer *server, const LmtpdListen *l, GError **error)
{
  GSocketListener *listener = G_SOCKET_LISTENER (server->service);
  g_autoptr (GSocketAddress) addr = NULL;
  g_autofree char *dir = g_path_get_dirname (l->path);
  struct stat st;

  if (g_mkdir_with_parents (dir, 0755) < 0)
    {
      int e = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (e), "mkdir %s: %s", dir, g_strerror (e));
      return FALSE;
    }
  /* A socket left by an earlier run is replaced; any other file is not. */
  if (lstat (l->path, &st) == 0)
    {
      if (!S_ISSOCK (st.st_mode))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS, "%s exists and is not a socket", l->path);
          return FALSE;
        }
      unlink (l->path);
    }
  addr = g_unix_socket_address_new (l->path);
  if (!bind_unix (listener, addr, server->config->socket_mode, error))
    return FALSE;
  g_ptr_array_add (server->unix_paths, g_strdup (l->path));
  if (server->config->socket_owner && !socket_set_owner (l->path, server->config->socket_owner, error))
    return FALSE;
  g_message ("listening on unix:%s", l->path);
  return TRUE;
}

static gboolean
listen_inet (LmtpServer *server, const LmtpdListen *l, GError **error)
{
  GSocketListener *listener = G_SOCKET_LISTENER (server->service);
  g_autoptr (GInetAddress) ip = g_inet_address_new_from_string (l->host);
  g_autolist (GInetAddress) addrs = NULL;

  if (ip)
    addrs = g_list_prepend (NULL, g_steal_pointer (&ip));
  else
    {
      addrs = g_resolver_lookup_by_name (g_resolver_get_default (), l->host, NULL, error);
      if (addrs == NULL)
        return FALSE;
    }
  for (GList *i = addrs; i; i = i->next)
    {
      g_autoptr (GSocketAddress) sa = g_inet_socket_address_new (i->data, l->port);
      g_autoptr (GSocketAddress) bound = NULL;
      g_autofree char *host = g_inet_address_to_string (i->data);

      if (!g_socket_listener_add_address (listener, sa, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                                          NULL, &bound, error))
        {
          g_prefix_error (error, "inet:%s:%u: ", l->host, l->port);
          return FALSE;
        }
      g_message ("listening on inet:%s%s%s:%u", strchr (host, ':') ? "[" : "", host,
                 strchr (host, ':') ? "]" : "",
                 g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
    }
  return TRUE;
}

/* Socket activation (systemd's sd_listen_fds protocol): listening
 * sockets passed as descriptors 3.. with LISTEN_FDS and LISTEN_PID.  When
 * there are any, they replace the configured listeners.  Returns how many
 * were taken, or -1. */
static int
listen_activated (LmtpServer *server, GError **error)
{
  const char *pid = g_getenv ("LISTEN_PID"), *fds = g_getenv ("LISTEN_FDS");
  GSocketListener *listener = G_SOCKET_LISTENER (server->service);
  guint64 n;

  if (pid == NULL || fds == NULL || g_ascii_strtoull (pid, NULL, 10) != (guint64) getpid ())
    return 0;
  n = g_ascii_strtoull (fds, NULL, 10);
  g_unsetenv ("LISTEN_PID");
  g_unsetenv ("LISTEN_FDS");
  g_unsetenv ("LISTEN_FDNAMES");
  for (guint64 i = 0; i < n && i < 1024; i++)
    {
      int fd = 3 + (int) i;
      g_autoptr (GSocket) sock = NULL;
      g_autoptr (GSocketAddress) addr = NULL;
      g_autofree char *where = NULL;

      fcntl (fd, F_SETFD, FD_CLOEXEC);
      sock = g_socket_new_from_fd (fd, error);
      if (sock == NULL || !g_socket_listener_add_socket (listener, sock, NULL, error))
        {
          g_prefix_error (error, "socket activation, descriptor %d: ", fd);
          return -1;
        }
      addr = g_socket_get_local_address (sock, NULL);
      if (addr && G_IS_INET_SOCKET_ADDRESS (addr))
        {
          g_autofree char *host = g_inet_address_to_string (
            g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (addr)));
          where = g_strdup_printf ("inet:%s%s%s:%u", strchr (host, ':') ? "[" : "", host,
                                   strchr (host, ':') ? "]" : "",
                                   g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (addr)));
        }
      else if (addr && G_IS_UNIX_SOCKET_ADDRESS (addr))
        where = g_strdup_printf ("unix:%s", g_unix_socket_address_get_path (G_UNIX_SOCKET_ADDRESS (addr)));
      g_message ("listening on %s (socket activation, descriptor %d)", where ? where : "?", fd);
    }
  return (int) n;
}

LmtpServer *
lmtp_server_new (LmtpdConfig *config, DeliverContext *ctx, GError **error)
{
  LmtpServer *server = g_new0 (LmtpServer, 1);
  int activated;

  server->config = lmtpd_config_ref (config);
  server->ctx = deliver_context_ref (ctx);
  server->service = g_socket_service_new ();
  g_socket_service_stop (server->service); /* until lmtp_server_start */
  server->sessions = g_hash_table_new (NULL, NULL);
  server->unix_paths = g_ptr_array_new_with_free_func (g_free);
  /* no thread starts before there is work */
  server->pool = g_thread_pool_new (lmtp_delivery_run, NULL, (gint) config->delivery_threads, FALSE, NULL);
  g_socket_listener_set_backlog (G_SOCKET_LISTENER (server->service), 128);
  if (!load_tls (server, config, error))
    {
      lmtp_server_free (server);
      return NULL;
    }
  activated = listen_activated (server, error);
  if (activated < 0)
    {
      lmtp_server_free (server);
      return NULL;
    }
  for (guint i = 0; activated == 0 && i < config->listen->len; i++)
    {
      const LmtpdListen *l = config->listen->pdata[i];
      gboolean ok = l->kind == LMTPD_LISTEN_UNIX ? listen_unix (server, l, error)
                                                  : listen_inet (server, l, error);
      if (!ok)
        {
          lmtp_server_free (server);
          return NULL;
        }
    }
  g_signal_connect (server->service, "incoming", G_CALLBACK (incoming_cb), server);
  return server;
}

static gboolean memory_watch_cb (gpointer data);

gboolean
lmtp_server_start (LmtpServer *server, GError **error)
{
  if (!deliver_context_open_journal (server->ctx, server->config, error)
      || !deliver_context_open_records (server->ctx, server->config, error))
    return FALSE;
  /* the nodes table's heartbeat and the expiry of old rows: a thread of
   * the shared state's, never this loop */
  state_heartbeat_start (deliver_context_state (server->ctx), server->config);
  /* [cluster] nodes = pgsql: the nodes table is the node list */
  if (g_strcmp0 (server->config->cluster_nodes, LMTPD_CLUSTER_NODES_PGSQL) == 0)
    lmtp_nodes_use_registry (deliver_context_state (server->ctx));
  g_socket_service_start (server->service);
  server->memory_timer = g_timeout_add_seconds (1, memory_watch_cb, server);
  return TRUE;
}

/* Sessions that hold this much unsent output are the first to go when
 * the process is over max_memory: their clients do not read. */
#define SHED_BACKLOG (64 * 1024)

/* Once a second: over max_memory, the sessions that hoard replies their
 * clients do not read are closed, so the ones that do go on (new ones
 * are refused at accept meanwhile). */
static gboolean
memory_watch_cb (gpointer data)
{
  LmtpServer *server = data;
  guint64 limit = server->config->max_memory, rss;
  GList *all;

  if (limit == 0 || (rss = resident_bytes ()) <= limit)
    return G_SOURCE_CONTINUE;
  all = g_hash_table_get_keys (server->sessions);
  for (GList *i = all; i; i = i->next)
    {
      gsize backlog = lmtp_session_backlog (i->data);
      if (backlog < SHED_BACKLOG)
        continue;
      g_message ("over max_memory (%" G_GUINT64_FORMAT " KB resident): closing a session with %" G_GSIZE_FORMAT
                 " bytes of unread replies", rss / 1024, backlog);
      lmtp_session_abort (i->data);
    }
  g_list_free (all);
  return G_SOURCE_CONTINUE;
}

static gboolean
shutdown_timeout_cb (gpointer data)
{
  LmtpServer *server = data;
  GList *all = g_hash_table_get_keys (server->sessions);

  server->shutdown_timer = 0;
  if (all)
    g_message ("shutdown timeout: closing %u sessions", g_list_length (all));
  for (GList *i = all; i; i = i->next)
    lmtp_session_abort (i->data);
  g_list_free (all);
  return G_SOURCE_REMOVE;
}

static void
stop_listening (LmtpServer *server)
{
  g_socket_service_stop (server->service);
  g_socket_listener_close (G_SOCKET_LISTENER (server->service));
  for (guint i = 0; i < server->unix_paths->len; i++)
    unlink (server->unix_paths->pdata[i]);
  g_ptr_array_set_size (server->unix_paths, 0);
}

void
lmtp_server_shutdown (LmtpServer *server, GSourceFunc done, gpointer data)
{
  GList *all;

  if (server->shutting_down)
    return;
  server->shutting_down = TRUE;
  server->done = done;
  server->done_data = data;
  stop_listening (server);
  all = g_hash_table_get_keys (server->sessions);
  for (GList *i = all; i; i = i->next)
    lmtp_session_shutdown (i->data);
  g_list_free (all);
  if (g_hash_table_size (server->sessions) == 0)
    {
      server->done = NULL;
      g_idle_add (done, data);
      return;
    }
  server->shutdown_timer = g_timeout_add_seconds (MAX (server->config->shutdown_timeout, 1),
                                                  shutdown_timeout_cb, server);
}

void
lmtp_server_free (LmtpServer *server)
{
  GList *all;

  if (server == NULL)
    return;
  stop_listening (server);
  all = g_hash_table_get_keys (server->sessions);
  for (GList *i = all; i; i = i->next)
    lmtp_session_abort (i->data);
  g_list_free (all);
  if (server->shutdown_timer)
    g_source_remove (server->shutdown_timer);
  if (server->memory_timer)
    g_source_remove (server->memory_timer);
  g_hash_table_unref (server->sessions);
  g_ptr_array_unref (server->unix_paths);
  g_object_unref (server->service);
  /* deliveries in flight finish in their threads; nobody waits for them
   * (a second SIGTERM means now) */
  g_thread_pool_free (server->pool, FALSE, FALSE);
  deliver_context_unref (server->ctx);
  util_tls_context_free (server->tls);
  lmtpd_config_unref (server->config);
  g_free (server);
}
