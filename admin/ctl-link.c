/* ctl-link.c - lmtpctl quarantine link: a user's signed link to one
 * quarantined message, as the digest sends them (admin/link.c).
 *
 *   lmtpctl [-c FILE] quarantine link ID [--expires SECONDS]
 *
 * Prints the URL.  Exit 66 for no such message, 75 when the records do
 * not answer, 78 without [admin] link_secret_file.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "admin.h"

static int
link_run (const LmtpdConfig *config, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverContext) ctx = NULL;
  g_autoptr (DeliverQuarantined) q = NULL;
  g_autofree char *url = NULL;
  gint64 expires = 0;

  if (argc == 5 && strcmp (argv[3], "--expires") == 0)
    expires = g_get_real_time () / G_USEC_PER_SEC + g_ascii_strtoll (argv[4], NULL, 10);
  else if (argc != 3)
    return ADMIN_EXIT_USAGE;
  ctx = deliver_context_new ();
  if (!deliver_context_open_journal (ctx, config, &error)
      || (q = deliver_quarantine_get (ctx, argv[2], &error)) == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ? ADMIN_EXIT_NOINPUT : ADMIN_EXIT_TEMPFAIL;
    }
  if ((url = admin_link_url (config, q->id, expires, &error)) == NULL)
    {
      fprintf (stderr, "lmtpctl: %s\n", error->message);
      return ADMIN_EXIT_CONFIG;
    }
  printf ("%s\n", url);
  return ADMIN_EXIT_OK;
}

const AdminCommand admin_quarantine_link_command = {
  "quarantine link", "quarantine link ID [--expires SECONDS]", link_run,
};
