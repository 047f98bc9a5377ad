/* ctl-link.c - lmtpctl quarantine link: a user's signed link to one
 * quarantined message, as the digest sends them (admin/link.c).
 *
 *   lmtpctl [-c FILE] quarantine link ID [--expires SECONDS]
 *
 * Prints the URL.  Reads the key as root, then drops to [server] user
 * for the records.  Exit 66 for no such message, 75 when the records do
 * not answer, 78 without [admin] link_secret_file.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "lmtpd-util.h"

/* the message's row, as the mail user (root would leave the records'
 * files its own) */
static int
find_message (const LmtpdConfig *config, const char *id, DeliverQuarantined **out)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverContext) ctx = NULL;

  if (!util_drop_privileges (config->user, &error))
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return ADMIN_EXIT_CONFIG;
    }
  ctx = deliver_context_new ();
  if (!deliver_context_open_records (ctx, config, &error)
      || (*out = deliver_quarantine_get (ctx, id, &error)) == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ? ADMIN_EXIT_NOINPUT : ADMIN_EXIT_TEMPFAIL;
    }
  return ADMIN_EXIT_OK;
}

static int
link_run (const LmtpdConfig *config, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) secret = NULL;
  g_autoptr (DeliverQuarantined) q = NULL;
  g_autofree char *url = NULL;
  gint64 expires = 0;
  int code;

  if (argc == 5 && strcmp (argv[3], "--expires") == 0)
    expires = g_get_real_time () / G_USEC_PER_SEC + g_ascii_strtoll (argv[4], NULL, 10);
  else if (argc != 3)
    return ADMIN_EXIT_USAGE;
  /* the key first: it is root's to read */
  if ((secret = admin_link_secret (config, &error)) == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return ADMIN_EXIT_CONFIG;
    }
  if ((code = find_message (config, argv[2], &q)) != ADMIN_EXIT_OK)
    return code;
  url = admin_link_url (config, secret, q->id, expires);
  printf ("%s\n", url);
  return ADMIN_EXIT_OK;
}

const AdminCommand admin_quarantine_link_command = {
  "quarantine link", "quarantine link ID [--expires SECONDS]", link_run, TRUE,
};
