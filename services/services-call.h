/* services-call.h - the services ocp-services runs and the calls on
 * them (services-call.c), internal to ocp-services: main.c configures the
 * services and hands each call on a listener to service_call_start.
 */
#pragma once

#include "services.h"

G_BEGIN_DECLS

/* A configured service, shared by the jobs that use it: a reload makes a
 * new one, and the old goes when its last job is done. */
typedef struct {
  Service svc;        /* first: modules get &live->svc */
  gint ref_count;
  char *module_name;
  char *listen;       /* the listen value as written, to notice a change */
} ServiceLive;

ServiceLive *service_live_ref (ServiceLive *l);
void service_live_unref (ServiceLive *l);

/* Runs @live's check on the call @txn in a worker thread and answers it on
 * the main loop; @debug adds one line per call to the log. */
void service_call_start (ServiceLive *live, OcpServerTxn *txn, gboolean debug);

G_END_DECLS
