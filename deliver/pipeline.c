/* pipeline.c - one message to one recipient: the steps every delivery
 * takes, whether it came over LMTP or from the LDA command.  Today: trace
 * headers and the Maildir store; callouts, verdicts and Sieve slot in here.
 */
#include "config.h"

#include "deliver.h"

void
deliver_pipeline_run (const LmtpdConfig *config, const DeliverMessage *msg,
                      const DeliverRecipient *rcpt, DeliverStatus *status, char **out_path)
{
  g_autofree char *header = deliver_trace_headers (config, msg, rcpt);
  g_autoptr (GError) error = NULL;

  if (!deliver_maildir_store (rcpt->mailbox, config->hostname, header, msg->spool,
                              config->fsync, out_path, &error))
    {
      g_autofree char *why = deliver_sanitize (error->message, 512);
      g_warning ("%s: delivery to <%s> failed: %s", msg->id, rcpt->address, why);
      deliver_status_from_error (status, error);
      return;
    }
  deliver_status_set (status, 250, "2.0.0", "<%s> Saved", rcpt->original);
}
