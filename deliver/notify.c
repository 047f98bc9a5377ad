/* notify.c - the Sieve notify action (RFC 5435) by mailto (RFC 5436):
 * whether to notify at all (2.7: not about automatic mail), and the
 * notification message, sent like vacation replies and redirects.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "filter.h"
#include "lmtpd-util.h"

/* RFC 5436 2.7: "SHOULD NOT trigger notifications for messages
 * containing Auto-Submitted: header fields with any value other than
 * No"; that also ends loops between notifiers.  NULL or why not. */
static const char *
notify_forbidden (FilterView *view)
{
  g_auto (GStrv) auto_sub = filter_view_header ("Auto-Submitted", view);

  for (guint i = 0; auto_sub[i]; i++)
    if (g_ascii_strcasecmp (g_strstrip (auto_sub[i]), "no") != 0)
      return "the message is Auto-Submitted";
  return NULL;
}

/* The From field: :from if it is an address (RFC 5436 2.7), else the
 * recipient. */
static char *
notify_from (const FilterMessage *m, const SieveNotify *n)
{
  g_autofree char *local = NULL, *domain = NULL;
  const char *why = NULL;

  if (n->from && deliver_address_parse (n->from, TRUE, &local, &domain, &why) && domain)
    return g_strdup_printf ("%s@%s", local, domain);
  return g_strdup (m->rcpt->original);
}

/* The fields RFC 5436 2.7 asks for: Auto-Submitted first, then the
 * notification's own Date and Message-ID, From, To, Cc, Subject. */
static void
notify_fields (const FilterMessage *m, const SieveNotify *n, const char *from, GMimeMessage *orig,
               GMimeMessage *out)
{
  GMimeObject *o = GMIME_OBJECT (out);
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *owner = g_strdup_printf ("auto-notified; owner-email=\"%s\"", m->rcpt->address);
  g_autofree char *id = g_strdup_printf ("%" G_GINT64_FORMAT ".%d.%08x@%s", g_get_real_time (), getpid (),
                                         g_random_int (), m->config->hostname);
  const char *subject = n->message ? n->message : n->subject;

  g_mime_message_set_date (out, now);
  g_mime_message_set_message_id (out, id);
  g_mime_message_add_mailbox (out, GMIME_ADDRESS_TYPE_FROM, NULL, from);
  if (n->to)
    g_mime_object_set_header (o, "To", n->to, "utf-8");
  if (n->cc)
    g_mime_object_set_header (o, "Cc", n->cc, "utf-8");
  if (subject == NULL && orig)
    subject = g_mime_message_get_subject (orig);
  g_mime_message_set_subject (out, subject ? subject : "", "utf-8");
  /* RFC 5436 2.4 leaves :importance to us: the common priority field */
  if (n->importance != 2)
    g_mime_object_set_header (o, "X-Priority", n->importance == 1 ? "1 (Highest)" : "5 (Lowest)", NULL);
  for (guint i = 0; n->headers[i]; i++)
    {
      g_autofree char *name = g_strndup (n->headers[i], strcspn (n->headers[i], ":"));
      g_mime_object_append_header (o, name, n->headers[i] + strlen (name) + 2, "utf-8");
    }
  /* 2.7.1: above everything, a boundary like the trace fields */
  g_mime_header_list_prepend (g_mime_object_get_header_list (o), "Auto-Submitted", owner, NULL);
}

char *
filter_to_lf (const char *s)
{
  GString *out = g_string_new (NULL);

  for (const char *p = s; *p; p++)
    if (*p != '\r')
      g_string_append_c (out, *p);
    else if (p[1] != '\n')
      g_string_append_c (out, '\n');
  return g_string_free (out, FALSE);
}

/* The notification, LF line ends. */
static char *
notify_text (const FilterMessage *m, const SieveNotify *n, const char *from, GMimeMessage *orig)
{
  g_autoptr (GMimeMessage) out = g_mime_message_new (TRUE);
  g_autoptr (GMimeFormatOptions) fmt = g_mime_format_options_new ();
  GMimeTextPart *body = g_mime_text_part_new_with_subtype ("plain");
  g_autofree char *text = NULL;

  notify_fields (m, n, from, orig, out);
  /* the URI's body= (RFC 5436 2.7), CRLF as LF like the rest */
  text = n->body ? filter_to_lf (n->body) : g_strdup ("");
  g_mime_text_part_set_text (body, text);
  g_mime_part_set_content_encoding (GMIME_PART (body),
                                    g_mime_part_get_best_content_encoding (GMIME_PART (body),
                                                                           GMIME_ENCODING_CONSTRAINT_7BIT));
  g_mime_message_set_mime_part (out, GMIME_OBJECT (body));
  g_object_unref (body);
  g_mime_format_options_set_newline_format (fmt, GMIME_NEWLINE_FORMAT_UNIX);
  return g_mime_object_to_string (GMIME_OBJECT (out), fmt);
}

/* Sends @text to each recipient.  The envelope sender is null when the
 * triggering message's is (RFC 5436 2.7 "MUST be empty as well"), else
 * the user, whatever :from says (2.7 leaves it to "implementation-specific
 * security checks": a script does not choose where bounces go). */
static void
notify_send (const FilterMessage *m, const SieveNotify *n, const char *text)
{
  const char *sender = m->msg->sender[0] ? m->rcpt->original : "";

  for (guint i = 0; n->recipients[i]; i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *shown = util_sanitize (n->recipients[i], 330);
      if (!deliver_submit (m->config, sender, n->recipients[i], text, NULL, &error))
        {
          g_autofree char *w = util_sanitize (error->message, 300);
          g_warning ("%s: <%s> sieve: notification to <%s> failed: %s", m->msg->id, m->rcpt->address, shown, w);
        }
      else
        g_message ("%s: <%s> sieve: notification sent to <%s>", m->msg->id, m->rcpt->address, shown);
    }
}

void
filter_notify (const FilterMessage *m, const SieveAction *action)
{
  const SieveNotify *n = action->notify;
  FilterView view;
  const char *why;

  filter_view_init (&view, m);
  why = notify_forbidden (&view);
  if (why)
    g_message ("%s: <%s> sieve: no notification: %s", m->msg->id, m->rcpt->address, why);
  else
    {
      g_autofree char *from = notify_from (m, n);
      g_autofree char *text = notify_text (m, n, from, filter_view_message (&view));
      notify_send (m, n, text);
    }
  filter_view_clear (&view);
}
