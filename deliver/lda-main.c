/* lda-main.c - deliver: the same pipeline as lmtpd, as a command.
 *
 *   deliver [-c CONF] [-f SENDER] -a RECIPIENT [-a RECIPIENT ...] < message
 *
 * For Postfix's mailbox_command, procmail-style use or scripts.  Exit codes
 * follow sysexits(3), so the caller can tell temporary from permanent
 * failures: 0 delivered; 64 usage; 65 bad input (an empty message too);
 * 66 stdin closed; 67 unknown user; 73 cannot create (mailbox full, not
 * writable); 75 temporary failure; 77 refusing to run as root; 78 bad
 * configuration.  Each failure is one line
 * on stderr.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "deliver.h"
#include "lmtpd-util.h"

enum {
  EX_OK_ = 0, EX_USAGE_ = 64, EX_DATAERR_ = 65, EX_NOINPUT_ = 66, EX_NOUSER_ = 67, EX_CANTCREAT_ = 73,
  EX_TEMPFAIL_ = 75, EX_NOPERM_ = 77, EX_CONFIG_ = 78,
};

static gboolean verbose;

/* One failure on stderr.  The caller's log gets what we say: addresses and
 * texts from outside go through the sanitiser, like lmtpd's log lines. */
static void say (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static void
say (const char *fmt, ...)
{
  va_list ap;
  g_autofree char *text = NULL;
  g_autofree char *safe = NULL;

  va_start (ap, fmt);
  text = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  safe = util_sanitize_record (text);
  fprintf (stderr, "deliver: %s\n", safe);
}

static GLogWriterOutput
log_writer (GLogLevelFlags level, const GLogField *fields, gsize n, gpointer data)
{
  if (!verbose && !(level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)))
    return G_LOG_WRITER_HANDLED;
  for (gsize i = 0; i < n; i++)
    if (strcmp (fields[i].key, "MESSAGE") == 0)
      say ("%s", (const char *) fields[i].value);
  return G_LOG_WRITER_HANDLED;
}

/* An mbox "From " line is at most this long; longer is not one we skip. */
#define FROM_LINE_MAX (64 * 1024)

static ssize_t
read_stdin (char *buf, gsize size)
{
  for (;;)
    {
      ssize_t n = read (STDIN_FILENO, buf, size);
      if (n >= 0 || errno != EINTR)
        return n;
    }
}

/* Reads the start of stdin into @head until it can tell whether it is an
 * mbox "From " line (Postfix's local(8) and procmail-style callers add
 * one), however the reads split it, and drops that line.  @head keeps the
 * bytes that belong to the message; *@eof is set at the end of input. */
static int
read_head (GString *head, gboolean *eof)
{
  char buf[4096];

  for (;;)
    {
      gsize cmp = MIN (head->len, 5);
      const char *nl;
      ssize_t n;

      if (memcmp (head->str, "From ", cmp) != 0)
        return EX_OK_;   /* cannot be a From_ line */
      if (cmp == 5 && (nl = memchr (head->str, '\n', head->len)) != NULL)
        {
          g_string_erase (head, 0, nl + 1 - head->str);
          return EX_OK_;
        }
      if (head->len > FROM_LINE_MAX)
        {
          say ("the From_ line is too long");
          return EX_DATAERR_;
        }
      if ((n = read_stdin (buf, sizeof buf)) < 0)
        {
          say ("reading the message: %s", g_strerror (errno));
          return EX_TEMPFAIL_;
        }
      if (n == 0)
        {
          /* a From_ line and nothing else is no message */
          if (cmp == 5)
            g_string_truncate (head, 0);
          *eof = TRUE;
          return EX_OK_;
        }
      g_string_append_len (head, buf, n);
    }
}

/* Appends @n bytes to the spool, within max_message_size. */
static int
spool_append (const LmtpdConfig *config, DeliverSpool *spool, const char *p, gsize n, guint64 *total)
{
  g_autoptr (GError) error = NULL;

  *total += n;
  if (config->max_message_size && *total > config->max_message_size)
    {
      say ("message is bigger than max_message_size (%" G_GUINT64_FORMAT ")", config->max_message_size);
      return EX_DATAERR_;
    }
  if (!deliver_spool_write (spool, p, n, &error))
    {
      say ("%s", error->message);
      return EX_TEMPFAIL_;
    }
  return EX_OK_;
}

/* Reads stdin into the spool, without a From_ line at the top.  An empty
 * message is refused: it is what a caller's broken pipe looks like. */
static int
read_message (const LmtpdConfig *config, DeliverSpool *spool)
{
  char buf[64 * 1024];
  g_autoptr (GString) head = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  gboolean eof = FALSE;
  guint64 total = 0;
  int rc;

  if ((rc = read_head (head, &eof)) != EX_OK_
      || (rc = spool_append (config, spool, head->str, head->len, &total)) != EX_OK_)
    return rc;
  while (!eof)
    {
      ssize_t n = read_stdin (buf, sizeof buf);
      if (n < 0)
        {
          say ("reading the message: %s", g_strerror (errno));
          return EX_TEMPFAIL_;
        }
      eof = n == 0;
      if (n > 0 && (rc = spool_append (config, spool, buf, n, &total)) != EX_OK_)
        return rc;
    }
  if (total == 0)
    {
      say ("the message is empty");
      return EX_DATAERR_;
    }
  if (!deliver_spool_finish (spool, &error))
    {
      say ("%s", error->message);
      return EX_TEMPFAIL_;
    }
  return EX_OK_;
}

/* Standard input must be open: closed, the next file we open would become
 * descriptor 0 and be read as the message (the spool: an empty message).
 * Closed stdout or stderr get /dev/null, so that our messages cannot land
 * in a file we opened. */
static int
check_stdio (void)
{
  int fd;

  if (fcntl (STDIN_FILENO, F_GETFD) < 0 && errno == EBADF)
    {
      if (fcntl (STDERR_FILENO, F_GETFD) >= 0)
        say ("standard input is closed: no message to deliver");
      return EX_NOINPUT_;
    }
  while ((fd = open ("/dev/null", O_RDWR | O_CLOEXEC)) >= 0 && fd <= STDERR_FILENO)
    fcntl (fd, F_SETFD, 0);
  if (fd > STDERR_FILENO)
    close (fd);
  return EX_OK_;
}

/* The exit code a failed recipient asks for. */
static int
exit_code_for (const DeliverStatus *st)
{
  if (st->code >= 400 && st->code < 500)
    return EX_TEMPFAIL_;
  if (strcmp (st->enhanced, "5.1.1") == 0 || strcmp (st->enhanced, "5.1.3") == 0)
    return EX_NOUSER_;
  if (strncmp (st->enhanced, "5.1.", 4) == 0 || strncmp (st->enhanced, "5.5.", 4) == 0)
    return EX_DATAERR_;
  return EX_CANTCREAT_;
}

/* Temporary beats permanent: the MTA then retries, and the duplicate
 * journal keeps the recipients already served from a second copy. */
static int
worse (int a, int b)
{
  if (a == EX_TEMPFAIL_ || b == EX_TEMPFAIL_)
    return EX_TEMPFAIL_;
  return a ? a : b;
}

/* The options; EX_OK_ or EX_USAGE_ (said). */
static int
parse_options (int *argc, char ***argv, char **config_path, char **sender, GStrv *rcpts)
{
  g_autoptr (GOptionContext) options = NULL;
  g_autoptr (GError) error = NULL;
  GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, config_path, "Configuration file (as lmtpd's)", "FILE" },
    { "from", 'f', 0, G_OPTION_ARG_STRING, sender, "Envelope sender (empty: null sender)", "SENDER" },
    { "recipient", 'a', 0, G_OPTION_ARG_STRING_ARRAY, rcpts, "Envelope recipient (repeatable)", "ADDRESS" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log each delivery on stderr", NULL },
    { NULL }
  };

  options = g_option_context_new ("< message - deliver a message like lmtpd does");
  g_option_context_add_main_entries (options, entries, NULL);
  if (!g_option_context_parse (options, argc, argv, &error) || *rcpts == NULL || *argc > 1)
    {
      say ("%s\nusage: deliver [-c CONF] [-f SENDER] -a RECIPIENT... < message",
               error ? error->message : "at least one -a RECIPIENT is needed");
      return EX_USAGE_;
    }
  return EX_OK_;
}

/* The configuration, the directories, the mail user, and the repair of
 * mboxes a crash left half written. */
static int
set_up (const char *config_path, LmtpdConfig **out)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) config = config_path ? lmtpd_config_load (config_path, &error)
                                               : lmtpd_config_new_default ();

  if (config == NULL)
    {
      say ("configuration is invalid:\n%s", error->message);
      return EX_CONFIG_;
    }
  if ((geteuid () == 0 && config->user == NULL) || !deliver_prepare_dirs (config, &error)
      || !util_drop_privileges (config->user, &error))
    {
      say ("%s", error ? error->message
                       : "refusing to run as root: set [server] user to the account that owns the mail");
      return error && error->code != EPERM ? EX_CANTCREAT_ : EX_NOPERM_;
    }
  {
    g_autofree char *inflight = deliver_inflight_dir (config);
    deliver_mbox_recover (inflight);
  }
  *out = g_steal_pointer (&config);
  return EX_OK_;
}

static int
check_sender (const char *sender)
{
  g_autofree char *l = NULL, *d = NULL;
  const char *why = NULL;

  if (sender == NULL || sender[0] == '\0')
    return EX_OK_;
  if (!deliver_address_parse (sender, TRUE, &l, &d, &why) || d == NULL)
    {
      say ("bad sender <%s>: %s", sender, why ? why : "no domain");
      return EX_DATAERR_;
    }
  return EX_OK_;
}

static int
open_spool (DeliverContext *dctx, const LmtpdConfig *config, DeliverSpool **spool)
{
  g_autoptr (GError) error = NULL;

  if (g_mkdir_with_parents (config->spool_dir, 0700) < 0
      || (*spool = deliver_spool_new (dctx, config->spool_dir, &error)) == NULL)
    {
      say ("spool_dir %s: %s", config->spool_dir,
               error ? error->message : g_strerror (errno));
      return EX_TEMPFAIL_;
    }
  return EX_OK_;
}

/* Recipients first, so that an unknown user costs no reading.  The ones
 * that resolve go into @resolved; returns the worst failure. */
static int
resolve_all (DeliverContext *dctx, const LmtpdConfig *config, GStrv rcpts, GPtrArray *resolved)
{
  int rc = EX_OK_;

  for (guint i = 0; rcpts[i]; i++)
    {
      g_autofree char *l = NULL, *d = NULL;
      const char *why;
      DeliverStatus st = { 0 };
      DeliverRecipient *r;

      if (!deliver_address_parse (rcpts[i], TRUE, &l, &d, &why))
        {
          say ("bad recipient <%s>: %s", rcpts[i], why);
          rc = worse (rc, EX_DATAERR_);
          continue;
        }
      r = deliver_resolve (dctx, config, l, d, &st);
      if (r == NULL)
        {
          say ("%u %s %s", st.code, st.enhanced, st.text);
          rc = worse (rc, exit_code_for (&st));
          deliver_status_clear (&st);
          continue;
        }
      g_ptr_array_add (resolved, r);
    }
  return rc;
}

/* The pipeline for each recipient; returns the worst failure. */
static int
deliver_each (DeliverContext *dctx, const LmtpdConfig *config, const DeliverMessage *msg, GPtrArray *resolved)
{
  g_autofree char *message_id = NULL;
  DeliverShared shared = { 0 };
  int rc = EX_OK_;

  {
    /* for the -v line, as lmtpd logs it */
    g_autofree char *raw = deliver_spool_header_value (msg->spool, "Message-ID");
    message_id = raw && raw[0] ? util_sanitize (raw, 256) : NULL;
  }
  deliver_shared_init (&shared, resolved);
  for (guint i = 0; i < resolved->len; i++)
    {
      DeliverRecipient *r = resolved->pdata[i];
      DeliverStatus st = { 0 };
      g_autofree char *path = NULL;

      if (deliver_rcpt_check (dctx, config, msg, r, deliver_spool_size (msg->spool), &st))
        deliver_pipeline_run (dctx, config, msg, r, &shared, &st, &path);
      if (st.code >= 400)
        {
          say ("%u %s %s", st.code, st.enhanced, st.text);
          rc = worse (rc, exit_code_for (&st));
        }
      else
        g_message ("%s: from=<%s> to=<%s> mailbox=%s status=%u %s%s%s", msg->id, msg->sender, r->address,
                   path ? path : r->mailbox, st.code, st.enhanced, message_id ? " message_id=" : "",
                   message_id ? message_id : "");
      deliver_status_clear (&st);
    }
  deliver_shared_clear (&shared);
  return rc;
}

int
main (int argc, char **argv)
{
  g_autofree char *config_path = NULL, *sender = NULL, *id = NULL;
  g_auto (GStrv) rcpts = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) config = NULL;
  g_autoptr (DeliverContext) dctx = NULL;
  g_autoptr (DeliverSpool) spool = NULL;
  g_autoptr (GPtrArray) resolved = g_ptr_array_new_with_free_func ((GDestroyNotify) deliver_recipient_free);
  DeliverMessage msg = { 0 };
  int rc;

  if ((rc = check_stdio ()) != EX_OK_)
    return rc;
  setlocale (LC_ALL, "C");
  g_mime_init ();
  if ((rc = parse_options (&argc, &argv, &config_path, &sender, &rcpts)) != EX_OK_)
    return rc;
  g_log_set_writer_func (log_writer, NULL, NULL);
  if ((rc = set_up (config_path, &config)) != EX_OK_ || (rc = check_sender (sender)) != EX_OK_)
    return rc;
  dctx = deliver_context_new ();
  if ((rc = open_spool (dctx, config, &spool)) != EX_OK_)
    return rc;
  rc = resolve_all (dctx, config, rcpts, resolved);
  if (resolved->len == 0)
    return rc;
  {
    int r = read_message (config, spool);
    if (r != EX_OK_)
      return r;
  }
  if (!deliver_context_open_journal (dctx, config, &error))
    {
      say ("duplicate journal not used: %s", error->message);
      g_clear_error (&error);
    }
  if (!deliver_context_open_records (dctx, config, &error))
    {
      g_debug ("no records, no traces: %s", error->message);
      g_clear_error (&error);
    }
  id = g_strdup_printf ("%" G_GINT64_MODIFIER "XL%05X", g_get_real_time () / G_USEC_PER_SEC,
                        (guint) getpid () & 0xFFFFF);
  msg.id = id;
  msg.sender = sender ? sender : "";
  msg.protocol = "local";
  msg.received_us = g_get_real_time ();
  msg.spool = spool;
  rc = worse (rc, deliver_each (dctx, config, &msg, resolved));
  deliver_context_close_callouts (dctx);
  return rc;
}
