/* explain.c - what delivery would do for an address, for the administrator
 * (lmtpd --lookup): the same resolution as RCPT, then the facts a delivery
 * would use, each on a line "name: value".
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "context.h"
#include "filter.h"

static void
explain_quota (const DeliverRecipient *r, GString *out)
{
  guint64 bytes = 0, messages = 0;

  if (r->quota_bytes == 0 && r->quota_messages == 0)
    {
      g_string_append (out, "quota: none\n");
      return;
    }
  if (r->format == DELIVER_MAILDIR)
    deliver_quota_usage (r->mailbox, r->quota_bytes, r->quota_messages, &bytes, &messages);
  g_string_append_printf (out, "quota: %" G_GUINT64_FORMAT " bytes, %" G_GUINT64_FORMAT " messages (0: no limit)\n",
                          r->quota_bytes, r->quota_messages);
  if (r->format == DELIVER_MAILDIR)
    g_string_append_printf (out, "usage: %" G_GUINT64_FORMAT " bytes, %" G_GUINT64_FORMAT " messages\n", bytes,
                            messages);
}

static void
explain_services (const LmtpdConfig *config, const DeliverRecipient *r, GString *out)
{
  const LmtpdRule *rule = lmtpd_config_match_rule (config, r->address);

  if (rule == NULL || rule->services->len == 0)
    {
      g_string_append (out, "services: none\n");
      return;
    }
  g_string_append_printf (out, "services: rule %s:", rule->name);
  for (guint i = 0; i < rule->services->len; i++)
    {
      const LmtpdService *s = rule->services->pdata[i];
      g_string_append_printf (out, " %s (%s)", s->name, s->rcpt_stage ? "at RCPT" : "after DATA");
    }
  g_string_append_c (out, '\n');
}

static void
explain_recipient (const LmtpdConfig *config, const DeliverRecipient *r, GString *out)
{
  g_autofree char *script = NULL;

  g_string_append_printf (out, "final: %s\n", r->address);
  if (r->detail)
    g_string_append_printf (out, "detail: %s (folder %s)\n", r->detail, r->folder ? r->folder : "INBOX");
  g_string_append_printf (out, "mailbox: %s %s\n", r->format == DELIVER_MBOX ? "mbox" : "maildir", r->mailbox);
  if (r->inbox)
    g_string_append_printf (out, "inbox: %s\n", r->inbox);
  explain_quota (r, out);
  if (r->sieve_script || (config->sieve_script && config->sieve_script[0]))
    script = filter_user_script_path (config, r);
  g_string_append_printf (out, "sieve: %s%s%s\n", script ? script : "none",
                          script && access (script, F_OK) < 0 ? " (absent)" : "",
                          r->sieve_script ? " (from the directory)" : "");
  explain_services (config, r, out);
  for (guint i = 0; r->settings && r->settings[i]; i++)
    g_string_append_printf (out, "setting: %s\n", r->settings[i]);
}

guint
deliver_explain (DeliverContext *ctx, const LmtpdConfig *config, const char *address, GString *out)
{
  g_autofree char *local = NULL, *domain = NULL;
  g_autoptr (DeliverRecipient) r = NULL;
  g_autoptr (Directory) dir = deliver_context_directory (ctx, config, NULL);
  DeliverStatus st = { 0 };
  const char *why;
  gint64 start;
  guint code;

  g_string_append_printf (out, "address: %s\n", address);
  if (!deliver_address_parse (address, TRUE, &local, &domain, &why))
    {
      g_string_append_printf (out, "status: 501 not an address: %s\n", why);
      return 501;
    }
  start = g_get_monotonic_time ();
  r = deliver_resolve (ctx, config, local, domain, &st);
  g_string_append_printf (out, "directory: %s, %.1f ms\n", dir ? directory_backend_name (dir) : "unavailable",
                          (g_get_monotonic_time () - start) / 1000.0);
  code = r ? 250 : st.code;
  if (r)
    g_string_append (out, "status: 250 deliverable\n");
  else
    g_string_append_printf (out, "status: %u %s %s\n", st.code, st.enhanced, st.text);
  if (r)
    explain_recipient (config, r, out);
  deliver_status_clear (&st);
  return code;
}
