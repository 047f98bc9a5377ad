/* lmtp-policy.c - a Postfix policy service (SMTPD_POLICY_README): at RCPT
 * the recipient is resolved as lmtpd's own RCPT would and its quota
 * checked against the size= the client announced, so Postfix answers 550,
 * 451 or 552/452 at its RCPT; anything else is DUNNO.
 *
 * The request parsing is pure; the serving is in lmtp-maps.c.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "lmtpd.h"

static void
take_size (LmtpPolicyRequest *req, const char *v)
{
  char *end;
  guint64 n;

  if (!g_ascii_isdigit (v[0]))
    return;
  n = g_ascii_strtoull (v, &end, 10);
  if (*end == '\0')
    req->size = n;
}

LmtpPolicyLine
lmtp_policy_feed (LmtpPolicyRequest *req, const char *line, gsize len)
{
  g_autofree char *copy = NULL;
  char *eq;

  if (len > 0 && line[len - 1] == '\r')
    len--;
  if (len == 0)
    return LMTP_POLICY_DONE;
  if (len >= LMTP_POLICY_LINE_MAX || ++req->n_attrs > LMTP_POLICY_ATTRS_MAX || memchr (line, '\0', len))
    return LMTP_POLICY_BAD;
  copy = g_strndup (line, len);
  eq = strchr (copy, '=');
  if (eq == NULL || eq == copy)
    return LMTP_POLICY_BAD;
  *eq = '\0';
  /* a repeated attribute: the last one counts, as in Postfix's own servers */
  if (strcmp (copy, "protocol_state") == 0)
    {
      g_free (req->protocol_state);
      req->protocol_state = g_strdup (eq + 1);
    }
  else if (strcmp (copy, "recipient") == 0)
    {
      g_free (req->recipient);
      req->recipient = g_strdup (eq + 1);
    }
  else if (strcmp (copy, "size") == 0)
    take_size (req, eq + 1);
  return LMTP_POLICY_MORE;
}

void
lmtp_policy_request_clear (LmtpPolicyRequest *req)
{
  g_clear_pointer (&req->protocol_state, g_free);
  g_clear_pointer (&req->recipient, g_free);
  req->size = 0;
  req->n_attrs = 0;
}

char *
lmtp_policy_action (guint code, const char *enhanced, const char *text)
{
  GString *out;

  if (code < 400 || code > 599)
    return g_strdup ("action=DUNNO");
  out = g_string_new (NULL);
  g_string_append_printf (out, "action=%u %s ", code, enhanced);
  /* the text quotes the client's address: one line, printable */
  for (const guchar *p = (const guchar *) (text ? text : ""); *p; p++)
    g_string_append_c (out, *p < 0x20 || *p == 0x7f ? '?' : (char) *p);
  return g_string_free (out, FALSE);
}

char *
lmtp_policy_answer (DeliverContext *ctx, const LmtpdConfig *config, const LmtpPolicyRequest *req)
{
  g_autofree char *local = NULL, *domain = NULL;
  g_autoptr (DeliverRecipient) r = NULL;
  DeliverStatus st = { 0 };
  const char *why;
  char *action;

  /* only RCPT names one recipient; an empty or odd one is for smtpd's own
   * checks to refuse */
  if (req->protocol_state == NULL || g_ascii_strcasecmp (req->protocol_state, "RCPT") != 0
      || req->recipient == NULL || !deliver_address_parse (req->recipient, TRUE, &local, &domain, &why))
    return g_strdup ("action=DUNNO");
  r = deliver_resolve (ctx, config, local, domain, &st);
  if (r && !deliver_precheck (config, r, req->size, &st))
    g_clear_pointer (&r, deliver_recipient_free);
  action = lmtp_policy_action (r ? 0 : st.code, st.enhanced, st.text);
  deliver_status_clear (&st);
  return action;
}
