/* util-net.c - the socket client every outgoing connection uses.
 *
 * GIO's GSocketClient asks the proxy resolver by default, which asks
 * GSettings: on a machine with a desktop's dconf installed that loads
 * dconf as the mail user (who cannot write its cache, and says so on
 * stderr for every connection).  Mail services, spamd and LMTP backends
 * are never reached through a desktop's HTTP proxy, so none is asked.
 */
#include "config.h"

#include "lmtpd-util.h"

GSocketClient *
util_socket_client_new (void)
{
  GSocketClient *client = g_socket_client_new ();

  g_socket_client_set_enable_proxy (client, FALSE);
  return client;
}
