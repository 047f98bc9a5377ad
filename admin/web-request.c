/* web-request.c - what the pages ask of the server and of their
 * request: the listener's state (web-server.c makes it) and the fields
 * of a form.  Apart from web-server.c, which calls the pages, so that the
 * pages never call back into it.
 */
#include "config.h"

#include "web-private.h"

DeliverContext *
web_context (AdminWeb *web)
{
  return web->ctx;
}

const LmtpdConfig *
web_config (AdminWeb *web)
{
  return web->config;
}

GBytes *
web_link_secret (AdminWeb *web)
{
  return web->link_secret;
}

const char *
web_request_field (const WebRequest *req, const char *name)
{
  const char *v = req->form ? g_hash_table_lookup (req->form, name) : NULL;

  if (v == NULL && req->query)
    v = g_hash_table_lookup (req->query, name);
  return v;
}

void
web_principal_clear (WebPrincipal *p)
{
  g_clear_pointer (&p->who, g_free);
  g_clear_pointer (&p->csrf, g_free);
}
