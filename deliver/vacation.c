/* vacation.c - the Sieve vacation action (RFC 5230): whether a reply is
 * allowed (4.5, 4.6, 5 and vacation_never_reply), the reply log that
 * answers a sender once within :days, and the reply itself.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "context.h"
#include "filter.h"
#include "lmtpd-util.h"

static gboolean
addr_in (const char *addr, const char *const *list)
{
  for (guint i = 0; list[i]; i++)
    if (list[i][0] && g_ascii_strcasecmp (addr, list[i]) == 0)
      return TRUE;
  return FALSE;
}

/* 4.5: is one of the user's addresses among the visible recipients? */
static gboolean
addressed_to_user (FilterView *view, const char *const *mine)
{
  static const char *const fields[] = { "To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc" };
  GMimeMessage *m = filter_view_message (view);
  GMimeHeaderList *l = m ? g_mime_object_get_header_list (GMIME_OBJECT (m)) : NULL;

  for (int i = 0; l && i < g_mime_header_list_get_count (l); i++)
    {
      GMimeHeader *h = g_mime_header_list_get_header_at (l, i);
      g_autoptr (InternetAddressList) list = NULL;
      gboolean wanted = FALSE;
      for (guint k = 0; k < G_N_ELEMENTS (fields); k++)
        wanted |= g_ascii_strcasecmp (g_mime_header_get_name (h), fields[k]) == 0;
      if (!wanted || (list = internet_address_list_parse (NULL, g_mime_header_get_value (h))) == NULL)
        continue;
      for (int k = 0; k < internet_address_list_length (list); k++)
        {
          InternetAddress *a = internet_address_list_get_address (list, k);
          if (INTERNET_ADDRESS_IS_MAILBOX (a)
              && addr_in (internet_address_mailbox_get_addr (INTERNET_ADDRESS_MAILBOX (a)), mine))
            return TRUE;
        }
    }
  return FALSE;
}

/* 4.6 and 5: no replies to automatic mail, lists or daemons. */
static const char *
automatic (FilterView *view, const char *sender)
{
  g_autofree char *local = g_ascii_strdown (sender, strcspn (sender, "@"));
  static const char *const lists[] = { "List-Id", "List-Post", "List-Unsubscribe", "List-Help", "List-Owner" };
  g_auto (GStrv) auto_sub = filter_view_header ("Auto-Submitted", view);
  g_auto (GStrv) precedence = filter_view_header ("Precedence", view);

  if (!strcmp (local, "mailer-daemon") || !strcmp (local, "listserv") || !strcmp (local, "majordomo")
      || g_str_has_prefix (local, "owner-") || g_str_has_suffix (local, "-request")
      || g_str_has_suffix (local, "-owner") || !strcmp (local, "noreply") || !strcmp (local, "no-reply"))
    return "the sender is a daemon or a list";
  for (guint i = 0; auto_sub[i]; i++)
    if (g_ascii_strcasecmp (g_strstrip (auto_sub[i]), "no") != 0)
      return "the message is Auto-Submitted";
  for (guint i = 0; precedence[i]; i++)
    {
      const char *p = g_strstrip (precedence[i]);
      if (!g_ascii_strcasecmp (p, "bulk") || !g_ascii_strcasecmp (p, "list") || !g_ascii_strcasecmp (p, "junk"))
        return "the message has Precedence: bulk, list or junk";
    }
  for (guint k = 0; k < G_N_ELEMENTS (lists); k++)
    {
      g_auto (GStrv) v = filter_view_header (lists[k], view);
      if (v[0])
        return "the message came through a mailing list";
    }
  return NULL;
}

/* The reply log: "EXPIRES KEY SENDER" lines (KEY: a digest of the
 * handle), held under an exclusive lock from the check until the reply is
 * recorded, so concurrent deliveries answer a sender once. */
typedef struct {
  int fd;
  GString *kept;     /* unexpired lines */
  char key[33];
} ReplyLog;

#define VACATION_LOCK_TIMEOUT 30 /* seconds */

static gboolean
reply_log_open (ReplyLog *log, const char *path, const char *handle)
{
  g_autofree char *digest = g_compute_checksum_for_string (G_CHECKSUM_SHA256, handle, -1);
  g_autoptr (GError) error = NULL;
  char buf[8192];
  gssize n;

  memset (log, 0, sizeof *log);
  g_strlcpy (log->key, digest, sizeof log->key);
  /* the user's file: no symlink, no FIFO, and a lock held forever by
   * someone else only costs VACATION_LOCK_TIMEOUT */
  log->fd = deliver_mailfile_open (path, O_RDWR | O_CREAT, &error);
  if (log->fd < 0 || !deliver_mailfile_lock (log->fd, path, VACATION_LOCK_TIMEOUT, &error))
    {
      g_warning ("vacation log: %s", error->message);
      if (log->fd >= 0)
        close (log->fd);
      log->fd = -1;
      return FALSE;
    }
  log->kept = g_string_new (NULL);
  while ((n = read (log->fd, buf, sizeof buf)) > 0 && log->kept->len < 16 * 1024 * 1024)
    g_string_append_len (log->kept, buf, n);
  if (n < 0)
    {
      g_warning ("vacation log %s: %s", path, g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

/* TRUE if @sender was answered for this handle and that has not expired;
 * drops expired lines. */
static gboolean
reply_log_seen (ReplyLog *log, const char *sender)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  g_auto (GStrv) lines = g_strsplit (log->kept->str, "\n", -1);
  gboolean seen = FALSE;

  g_string_truncate (log->kept, 0);
  for (guint i = 0; lines[i]; i++)
    {
      g_auto (GStrv) w = g_strsplit (lines[i], " ", 3);
      if (g_strv_length (w) != 3 || g_ascii_strtoll (w[0], NULL, 10) <= now)
        continue;
      if (!strcmp (w[1], log->key) && !g_ascii_strcasecmp (w[2], sender))
        seen = TRUE;
      g_string_append_printf (log->kept, "%s\n", lines[i]);
    }
  return seen;
}

static void
reply_log_record (ReplyLog *log, const char *path, const char *sender, guint64 seconds)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;

  g_string_append_printf (log->kept, "%" G_GINT64_FORMAT " %s %s\n", now + (gint64) seconds, log->key, sender);
  if (lseek (log->fd, 0, SEEK_SET) < 0 || ftruncate (log->fd, 0) < 0
      || write (log->fd, log->kept->str, log->kept->len) != (gssize) log->kept->len || fsync (log->fd) < 0)
    g_warning ("vacation log %s: %s", path, g_strerror (errno));
}

static void
reply_log_close (ReplyLog *log)
{
  if (log->fd >= 0)
    close (log->fd);
  log->fd = -1;
  if (log->kept)
    g_string_free (log->kept, TRUE);
  log->kept = NULL;
}

/* The reason: a MIME entity of its own with :mime (4.7), else plain text. */
static GMimeObject *
reply_body (const SieveAction *action)
{
  GMimeObject *body = NULL;
  GMimeTextPart *t;

  if (action->vacation->mime)
    {
      g_autoptr (GMimeStream) s = g_mime_stream_mem_new_with_buffer (action->argument, strlen (action->argument));
      g_autoptr (GMimeParser) parser = g_mime_parser_new_with_stream (s);
      body = g_mime_parser_construct_part (parser, NULL);
    }
  if (body)
    return body;
  t = g_mime_text_part_new_with_subtype ("plain");
  g_mime_text_part_set_text (t, action->argument);
  g_mime_part_set_content_encoding (GMIME_PART (t),
                                    g_mime_part_get_best_content_encoding (GMIME_PART (t),
                                                                           GMIME_ENCODING_CONSTRAINT_7BIT));
  return GMIME_OBJECT (t);
}

static char *
reply_text (const LmtpdConfig *config, const DeliverRecipient *rcpt, const SieveAction *action,
            GMimeMessage *orig, const char *sender)
{
  const SieveVacation *v = action->vacation;
  g_autoptr (GMimeMessage) m = g_mime_message_new (TRUE);
  g_autoptr (GMimeFormatOptions) fmt = g_mime_format_options_new ();
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autoptr (GMimeObject) body = NULL;
  g_autofree char *subject = NULL, *id = NULL;
  const char *orig_id = orig ? g_mime_message_get_message_id (orig) : NULL;
  const char *orig_subject = orig ? g_mime_message_get_subject (orig) : NULL;
  g_autoptr (InternetAddressList) from = v->from ? internet_address_list_parse (NULL, v->from) : NULL;

  if (from && internet_address_list_length (from) > 0)
    internet_address_list_append (g_mime_message_get_from (m), from);
  else
    g_mime_message_add_mailbox (m, GMIME_ADDRESS_TYPE_FROM, NULL, rcpt->original);
  g_mime_message_add_mailbox (m, GMIME_ADDRESS_TYPE_TO, NULL, sender);
  subject = v->subject ? g_strdup (v->subject) : g_strdup_printf ("Auto: %s", orig_subject ? orig_subject : "");
  g_mime_message_set_subject (m, subject, "utf-8");
  g_mime_message_set_date (m, now);
  id = g_strdup_printf ("%" G_GINT64_FORMAT ".%d.%08x@%s", g_get_real_time (), getpid (), g_random_int (),
                        config->hostname);
  g_mime_message_set_message_id (m, id);
  if (orig_id)
    {
      g_autofree char *ref = g_strdup_printf ("<%s>", orig_id);
      g_mime_object_set_header (GMIME_OBJECT (m), "In-Reply-To", ref, NULL);
      g_mime_object_set_header (GMIME_OBJECT (m), "References", ref, NULL);
    }
  g_mime_object_set_header (GMIME_OBJECT (m), "Auto-Submitted", "auto-replied (vacation)", NULL);
  body = reply_body (action);
  g_mime_message_set_mime_part (m, body);
  g_mime_format_options_set_newline_format (fmt, GMIME_NEWLINE_FORMAT_UNIX);
  return g_mime_object_to_string (GMIME_OBJECT (m), fmt);
}

static gboolean
never_reply (const LmtpdConfig *config, const char *sender)
{
  g_autofree char *lc = g_ascii_strdown (sender, -1);
  for (guint i = 0; config->vacation_never_reply[i]; i++)
    if (g_pattern_match_simple (config->vacation_never_reply[i], lc))
      return TRUE;
  return FALSE;
}

/* Why RFC 5230 4.5, 4.6 and 5 or the configuration forbid a reply, or
 * NULL.  @mine: the user's addresses. */
static const char *
reply_forbidden (const FilterMessage *m, FilterView *view, const char *const *mine)
{
  const char *sender = m->msg->sender;
  const char *why;

  if (sender[0] == '\0')
    return "the sender is null";
  if (never_reply (m->config, sender))
    return "the sender is on vacation_never_reply";
  if (addr_in (sender, mine))
    return "the sender is the user";
  if (filter_been_here (m->msg, m->rcpt))
    return "the message was here before (Delivered-To, X-Loop or a redirect mark)";
  if ((why = automatic (view, sender)) != NULL)
    return why;
  if (!addressed_to_user (view, mine))
    return "the user is not in To, Cc or Bcc";
  return NULL;
}

/* The reply log: next to the user's script if its directory is there,
 * else in the spool. */
static char *
reply_log_path (const FilterMessage *m, const FilterOutcome *outcome)
{
  g_autofree char *dir = NULL, *name = NULL;

  if (outcome->user_script)
    {
      g_autofree char *sdir = g_path_get_dirname (outcome->user_script);
      if (g_file_test (sdir, G_FILE_TEST_IS_DIR))
        return g_strconcat (outcome->user_script, ".vacation", NULL);
    }
  dir = g_build_filename (m->config->spool_dir, "vacation", NULL);
  name = g_strconcat (m->rcpt->address, ".log", NULL);
  if (g_mkdir_with_parents (dir, 0700) < 0)
    g_warning ("%s: %s", dir, g_strerror (errno));
  return g_build_filename (dir, name, NULL);
}

/* RFC 6131 2: the period between two replies to a sender, within the
 * site's bounds; 0 answers every message */
static guint64
reply_period (const LmtpdConfig *config, const SieveVacation *v)
{
  guint64 max = (guint64) config->vacation_max_days * 86400;
  guint64 want = v->days ? (guint64) v->days * 86400 : v->seconds;

  return MIN (MAX (want, config->vacation_min_period), MAX (max, config->vacation_min_period));
}

/* The reply log's answer for this reply: NULL to send it (*@claimed: the
 * shared log took it already), else why not.  The shared log failing
 * with on_error = local uses the file; else no reply (fail closed). */
static const char *
reply_log_check (const FilterMessage *m, const SieveVacation *v, const FilterOutcome *outcome, ReplyLog *rl,
                 char **log, gboolean *claimed)
{
  StateStore *shared = m->ctx ? m->ctx->state : NULL;
  guint64 period = reply_period (m->config, v);
  StateAnswer a;

  *claimed = FALSE;
  if (shared && period > 0)
    {
      a = state_vacation_claim (shared, m->rcpt->address, v->handle, m->msg->sender, period);
      if (a == STATE_NO)
        return "answered already";
      *claimed = a == STATE_YES;
      if (*claimed)
        return NULL;
      if (!state_store_fall_back (shared))
        return "the shared reply log cannot be used";
      g_warning ("%s: <%s> shared state failing: the local vacation log is used", m->msg->id, m->rcpt->address);
    }
  else if (shared)
    return NULL;  /* every message answered: nothing to log */
  *log = reply_log_path (m, outcome);
  /* fail closed: without a working log, no reply (no loops, no floods) */
  if (!reply_log_open (rl, *log, v->handle))
    return "the reply log cannot be used";
  if (period > 0 && reply_log_seen (rl, m->msg->sender))
    return "answered already";
  return NULL;
}

void
filter_vacation (const FilterMessage *m, const SieveAction *action, const FilterOutcome *outcome)
{
  const DeliverMessage *msg = m->msg;
  const DeliverRecipient *rcpt = m->rcpt;
  const SieveVacation *v = action->vacation;
  FilterView view;
  g_autoptr (GPtrArray) mine = g_ptr_array_new ();
  g_autofree char *log = NULL, *text = NULL;
  g_autoptr (GError) error = NULL;
  const char *why = NULL;
  ReplyLog rl = { -1, NULL, "" };
  gboolean claimed = FALSE;

  g_ptr_array_add (mine, rcpt->original);
  g_ptr_array_add (mine, rcpt->address);
  for (guint i = 0; v->addresses && v->addresses[i]; i++)
    g_ptr_array_add (mine, v->addresses[i]);
  g_ptr_array_add (mine, NULL);
  filter_view_init (&view, m);
  why = reply_forbidden (m, &view, (const char *const *) mine->pdata);
  if (why == NULL)
    why = reply_log_check (m, v, outcome, &rl, &log, &claimed);
  if (why == NULL)
    text = reply_text (m->config, rcpt, action, filter_view_message (&view), msg->sender);
  filter_view_clear (&view);
  if (why)
    g_message ("%s: <%s> sieve: no vacation reply to <%s>: %s", msg->id, rcpt->address, msg->sender, why);
  else if (!deliver_submit (m->config, "", msg->sender, text, NULL, &error))
    {
      g_autofree char *w = util_sanitize (error->message, 300);
      g_warning ("%s: <%s> sieve: vacation reply to <%s> failed: %s", msg->id, rcpt->address, msg->sender, w);
      if (claimed)
        state_vacation_release (m->ctx->state, rcpt->address, v->handle, msg->sender);
    }
  else
    {
      if (rl.kept)
        reply_log_record (&rl, log, msg->sender, reply_period (m->config, v));
      g_message ("%s: <%s> sieve: vacation reply sent to <%s>", msg->id, rcpt->address, msg->sender);
    }
  reply_log_close (&rl);
}
