/* status.c - delivery results as SMTP replies.  The one place where a
 * failure becomes a temporary (4xx) or permanent (5xx) answer.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "deliver.h"

G_DEFINE_QUARK (deliver-error-quark, deliver_error)

void
deliver_status_set (DeliverStatus *st, guint code, const char *enhanced, const char *fmt, ...)
{
  va_list ap;
  char *text;

  va_start (ap, fmt);
  text = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  /* A reply line can never carry a line break from anywhere. */
  for (char *p = text; *p; p++)
    if (*p == '\r' || *p == '\n')
      *p = ' ';
  g_free (st->text);
  st->text = text;
  st->code = code;
  g_strlcpy (st->enhanced, enhanced, sizeof st->enhanced);
}

void
deliver_status_clear (DeliverStatus *st)
{
  g_clear_pointer (&st->text, g_free);
  st->code = 0;
  st->callout_us = 0;
  st->enhanced[0] = '\0';
}

void
deliver_status_from_error (DeliverStatus *st, const GError *error)
{
  int e = error->domain == DELIVER_ERROR ? error->code : EIO;

  switch (e)
    {
    case ENOSPC:
      deliver_status_set (st, 452, "4.3.1", "Insufficient system storage");
      break;
    case EDQUOT:
      deliver_status_set (st, 452, "4.2.2", "Mailbox is full");
      break;
    case EFBIG:
      deliver_status_set (st, 552, "5.2.3", "Message too big for mailbox");
      break;
    case EAGAIN:
      deliver_status_set (st, 451, "4.2.0", "Mailbox is locked, try again later");
      break;
    case ETIMEDOUT:
      deliver_status_set (st, 451, "4.4.7", "Delivery took too long, try again later");
      break;
    case EACCES:
    case EPERM:
    case EROFS:
    case ELOOP:
    case ENOTDIR:
      deliver_status_set (st, 451, "4.2.0", "Mailbox unavailable");
      break;
    default:
      deliver_status_set (st, 451, "4.3.0", "Temporary internal error");
      break;
    }
}
