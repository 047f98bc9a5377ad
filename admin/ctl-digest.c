/* ctl-digest.c - lmtpctl quarantine digest: to each recipient with held
 * messages, one message listing them with a signed release link each
 * (the per-user digest; run it daily from cron).
 *
 *   lmtpctl [-c FILE] quarantine digest [--since T]
 *
 * T (default 1d; unix seconds, an age or ISO 8601): the messages held
 * since then.  Sent from the null sender through [sieve] submission or
 * sendmail, as vacation replies go, so the user gets it through the MTA
 * like any mail.  Without [admin] link_secret_file the digest names the
 * ids only.  Exit 69 when a digest could not be sent, 75 when the records
 * fail, 78 without a way to send.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "lmtpd-util.h"

#define DIGEST_ROWS 10000     /* held messages read a run */
#define DIGEST_LISTED 100     /* listed in one digest; the rest are counted */

static void
append_entry (GString *s, const LmtpdConfig *config, GBytes *secret, const DeliverQuarantined *q)
{
  g_autoptr (GDateTime) t = g_date_time_new_from_unix_utc (q->created);
  g_autofree char *when = t ? g_date_time_format (t, "%Y-%m-%d %H:%M UTC") : g_strdup ("-");
  g_autofree char *from = util_sanitize (q->sender[0] ? q->sender : "<>", 200);
  g_autofree char *subject = util_sanitize (q->subject ? q->subject : "(no subject)", 200);
  g_autofree char *url = secret ? admin_link_url (config, secret, q->id, 0) : NULL;

  g_string_append_printf (s, "- %s  from %s\n  Subject: %s\n", when, from, subject);
  if (url)
    g_string_append_printf (s, "  Release: %s\n\n", url);
  else
    g_string_append_printf (s, "  Id: %s (ask your postmaster to release it)\n\n", q->id);
}

/* The whole message: a header of our own words only, then the list. */
static char *
digest_text (const LmtpdConfig *config, GBytes *secret, const char *rcpt, GPtrArray *held)
{
  GString *s = g_string_new (NULL);
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *date = g_date_time_format (now, "%a, %d %b %Y %H:%M:%S +0000");
  g_autofree char *id = state_records_new_id ();

  g_string_append_printf (s, "From: Mail Delivery System <MAILER-DAEMON@%s>\nTo: <%s>\n"
                          "Subject: Quarantine: %u message%s held for you\nDate: %s\n"
                          "Message-ID: <digest.%s@%s>\nAuto-Submitted: auto-generated\nMIME-Version: 1.0\n"
                          "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n",
                          config->hostname, rcpt, held->len, held->len == 1 ? "" : "s", date, id,
                          config->hostname);
  g_string_append (s, "These messages to you were held back as suspicious and are not in your\n"
                      "mailbox.  Open a link to see one and release it into your mailbox.\n\n");
  for (guint i = 0; i < held->len && i < DIGEST_LISTED; i++)
    append_entry (s, config, secret, held->pdata[i]);
  if (held->len > DIGEST_LISTED)
    g_string_append_printf (s, "... and %u more.\n", held->len - DIGEST_LISTED);
  return g_string_free (s, FALSE);
}

/* The held messages since @since, by recipient (rows borrowed from
 * *@rows, newest first). */
static GHashTable *
held_by_recipient (DeliverContext *ctx, gint64 since, GPtrArray **rows, GError **error)
{
  DeliverQuarantineFilter filter = { .since = since, .limit = DIGEST_ROWS };
  GHashTable *by = NULL;

  if ((*rows = deliver_quarantine_list (ctx, &filter, error)) == NULL)
    return NULL;
  by = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) g_ptr_array_unref);
  for (guint i = 0; i < (*rows)->len; i++)
    {
      DeliverQuarantined *q = (*rows)->pdata[i];
      GPtrArray *list = g_hash_table_lookup (by, q->recipient);
      if (list == NULL)
        g_hash_table_insert (by, q->recipient, list = g_ptr_array_new ());
      g_ptr_array_add (list, q);
    }
  return by;
}

static int
send_digests (const LmtpdConfig *config, GBytes *secret, GHashTable *by)
{
  GHashTableIter it;
  gpointer rcpt, held;
  int code = ADMIN_EXIT_OK;

  g_hash_table_iter_init (&it, by);
  while (g_hash_table_iter_next (&it, &rcpt, &held))
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *text = digest_text (config, secret, rcpt, held);
      DeliverContent none = { 0 };

      if (deliver_submit (config, "", rcpt, text, &none, &error))
        printf ("digest: <%s> %u held\n", (const char *) rcpt, ((GPtrArray *) held)->len);
      else
        {
          fprintf (stderr, "lmtpctl: digest to <%s> not sent: %s\n", (const char *) rcpt, error->message);
          code = ADMIN_EXIT_UNAVAILABLE;
        }
    }
  return code;
}

static int
digest_run (const LmtpdConfig *config, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) secret = NULL;
  g_autoptr (DeliverContext) ctx = NULL;
  g_autoptr (GPtrArray) rows = NULL;
  g_autoptr (GHashTable) by = NULL;
  gint64 since = g_get_real_time () / G_USEC_PER_SEC - 86400;

  if (!(argc == 2 || (argc == 4 && strcmp (argv[2], "--since") == 0 && admin_parse_since (argv[3], &since))))
    return ADMIN_EXIT_USAGE;
  if (config->submission == NULL && config->sendmail == NULL)
    {
      fprintf (stderr, "lmtpctl: set [sieve] submission or sendmail: the digests go out through the MTA\n");
      return ADMIN_EXIT_CONFIG;
    }
  /* the key as root, if there is one; then the records as the mail user */
  if (config->admin_link_secret_file && (secret = admin_link_secret (config, &error)) == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return ADMIN_EXIT_CONFIG;
    }
  ctx = deliver_context_new ();
  if (!util_drop_privileges (config->user, &error) || !deliver_context_open_records (ctx, config, &error)
      || (by = held_by_recipient (ctx, since, &rows, &error)) == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return ADMIN_EXIT_TEMPFAIL;
    }
  return send_digests (config, secret, by);
}

const AdminCommand admin_quarantine_digest_command = {
  "quarantine digest", "quarantine digest [--since T]", digest_run, TRUE,
};
