/* filter.c - the Sieve step of the pipeline: find the scripts, compile
 * them once (cached by path until the file changes), show them the
 * message as it would be stored and the callouts' results as plain
 * values, and carry out what cannot be a store: header edits, redirect,
 * vacation.  Stores, discard and reject stay with the pipeline.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filter.h"
#include "gmime-cleanup.h"

#define MAX_BODY_TEXT (1024 * 1024)
#define MAX_REDIRECT_HOPS 5
#define REDIRECT_HEADER "X-Sieve-Redirected-From"

/* Fields editheader leaves alone besides sieve-lite's trace fields: the
 * loop mark (deleting it let two scripts bounce a message for ever) and
 * the rest of what deliver_trace_headers writes. */
static const char *const protected_fields[] = { REDIRECT_HEADER, "X-Original-To", NULL };

/* ---- compiled scripts, cached ------------------------------------------------ */

typedef struct {
  gatomicrefcount ref;
  dev_t dev;
  ino_t ino;
  gint64 mtime_ns;
  off_t size;
  SieveScript *script;    /* NULL: did not compile */
  char *error;            /* why */
} Compiled;

static GMutex cache_lock;
static GHashTable *cache;  /* path -> Compiled* */

static void
compiled_unref (gpointer p)
{
  Compiled *c = p;
  if (c && g_atomic_ref_count_dec (&c->ref))
    {
      if (c->script)
        sieve_script_free (c->script);
      g_free (c->error);
      g_free (c);
    }
}

/* The compiled script at @path, or NULL if there is no such file. */
static Compiled *
compiled_get (const LmtpdConfig *config, const char *path)
{
  struct stat st;
  Compiled *c;
  g_autofree char *text = NULL;
  g_autoptr (GError) error = NULL;
  gsize len = 0;
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

  /* one open file for the checks and the read */
  if (fd < 0)
    return NULL;
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode))
    {
      close (fd);
      return NULL;
    }
  g_mutex_lock (&cache_lock);
  if (cache == NULL)
    cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, compiled_unref);
  c = g_hash_table_lookup (cache, path);
  if (c && c->dev == st.st_dev && c->ino == st.st_ino && c->size == st.st_size
      && c->mtime_ns == (gint64) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec)
    {
      g_atomic_ref_count_inc (&c->ref);
      g_mutex_unlock (&cache_lock);
      close (fd);
      return c;
    }
  g_mutex_unlock (&cache_lock);

  c = g_new0 (Compiled, 1);
  g_atomic_ref_count_init (&c->ref);
  c->dev = st.st_dev;
  c->ino = st.st_ino;
  c->size = st.st_size;
  c->mtime_ns = (gint64) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  if ((guint64) st.st_size <= config->sieve_max_script_size)
    {
      gssize n = 0;
      text = g_malloc (config->sieve_max_script_size + 1);
      while (len <= config->sieve_max_script_size
             && (n = read (fd, text + len, config->sieve_max_script_size + 1 - len)) > 0)
        len += n;
      if (n < 0)
        c->error = g_strdup_printf ("%s: %s", path, g_strerror (errno));
    }
  close (fd);
  if (c->error)
    ;
  else if ((guint64) st.st_size > config->sieve_max_script_size || len > config->sieve_max_script_size)
    c->error = g_strdup_printf ("script is larger than max_script_size (%" G_GUINT64_FORMAT " bytes)",
                                config->sieve_max_script_size);
  else if ((c->script = sieve_compile (text, len, &error)) == NULL)
    c->error = g_strdup_printf ("%s:%s", path, error->message);
  g_mutex_lock (&cache_lock);
  g_atomic_ref_count_inc (&c->ref);
  g_hash_table_replace (cache, g_strdup (path), c);
  g_mutex_unlock (&cache_lock);
  return c;
}

/* ---- the message as Sieve sees it --------------------------------------------- */

struct FilterView {
  const DeliverRecipient *rcpt;
  const char *prefix;
  const DeliverContent *content;
  GMimeMessage *mime;       /* parsed on first use */
  gboolean failed;
};

/* A stream of its own over a range of a file shared with other threads:
 * reopened through /proc so the file offset is not shared. */
static GMimeStream *
segment_stream (const DeliverSegment *seg)
{
  g_autofree char *proc = g_strdup_printf ("/proc/self/fd/%d", seg->fd);
  int fd = open (proc, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    {
      /* no /proc: a copy in memory */
      GByteArray *b = g_byte_array_sized_new (seg->length);
      g_byte_array_set_size (b, seg->length);
      if (pread (seg->fd, b->data, seg->length, seg->offset) != (gssize) seg->length)
        g_byte_array_set_size (b, 0);
      return g_mime_stream_mem_new_with_byte_array (b);
    }
  return g_mime_stream_fs_new_with_bounds (fd, seg->offset, seg->offset + seg->length);
}

static GMimeMessage *
view_message (FilterView *v)
{
  g_autoptr (GMimeStream) cat = NULL;
  g_autoptr (GMimeParser) parser = NULL;

  if (v->mime || v->failed)
    return v->mime;
  cat = g_mime_stream_cat_new ();
  {
    g_autoptr (GMimeStream) p = g_mime_stream_mem_new_with_buffer (v->prefix, strlen (v->prefix));
    g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), p);
  }
  for (guint i = 0; v->content && i < v->content->n; i++)
    {
      g_autoptr (GMimeStream) s = segment_stream (&v->content->seg[i]);
      g_mime_stream_cat_add_source (GMIME_STREAM_CAT (cat), s);
    }
  parser = g_mime_parser_new_with_stream (cat);
  v->mime = g_mime_parser_construct_message (parser, NULL);
  v->failed = v->mime == NULL;
  return v->mime;
}

static void
view_clear (FilterView *v)
{
  g_clear_object (&v->mime);
}

/* All values of @name: the message's fields and its top part's (GMime
 * keeps Content-* there), decoded. */
static char **
view_header (const char *name, gpointer data)
{
  GMimeMessage *m = view_message (data);
  GPtrArray *out = g_ptr_array_new ();

  for (int pass = 0; m && pass < 2; pass++)
    {
      GMimeObject *part = pass ? g_mime_message_get_mime_part (m) : GMIME_OBJECT (m);
      GMimeHeaderList *l = part ? g_mime_object_get_header_list (part) : NULL;
      for (int i = 0; l && i < g_mime_header_list_get_count (l); i++)
        {
          GMimeHeader *h = g_mime_header_list_get_header_at (l, i);
          if (g_ascii_strcasecmp (g_mime_header_get_name (h), name) == 0)
            {
              const char *val = g_mime_header_get_value (h);
              g_ptr_array_add (out, g_strdup (val ? val : "")); /* decoded by GMime already */
            }
        }
    }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

static void
collect_text (GMimeObject *parent, GMimeObject *part, gpointer data)
{
  GString *s = data;
  if (GMIME_IS_TEXT_PART (part) && s->len < MAX_BODY_TEXT)
    {
      g_autofree char *t = g_mime_text_part_get_text (GMIME_TEXT_PART (part));
      if (t)
        g_string_append_len (s, t, MIN (strlen (t), MAX_BODY_TEXT - s->len));
    }
}

static char *
view_body (gpointer data)
{
  GMimeMessage *m = view_message (data);
  GString *s = g_string_new (NULL);
  if (m)
    g_mime_message_foreach (m, collect_text, s);
  return g_string_free (s, FALSE);
}

/* ---- scripts ------------------------------------------------------------------ */

static gboolean
view_mailbox_exists (const char *name, gpointer data)
{
  const FilterView *v = data;
  const char *why;
  g_autofree char *path = NULL;

  if (deliver_folder_is_inbox (name))
    return TRUE;
  if (!deliver_folder_valid (name, &why))
    return FALSE;
  if (v->rcpt->format == DELIVER_MAILDIR)
    {
      g_autofree char *dir = deliver_folder_maildir_path (v->rcpt->mailbox, name);
      path = g_build_filename (dir, "cur", NULL);
      return g_file_test (path, G_FILE_TEST_IS_DIR);
    }
  path = deliver_folder_mbox_path (v->rcpt->mailbox, name);
  return g_file_test (path, G_FILE_TEST_IS_REGULAR);
}

static char *
script_path (const LmtpdConfig *config, const DeliverRecipient *rcpt)
{
  GString *s = g_string_new (NULL);
  char *path;

  for (const char *p = config->sieve_script; *p; p++)
    {
      if (*p != '%' || p[1] == '\0')
        {
          g_string_append_c (s, *p);
          continue;
        }
      switch (*++p)
        {
        case 'u': g_string_append (s, rcpt->address); break;
        case 'n': g_string_append (s, rcpt->local); break;
        case 'd': g_string_append (s, rcpt->domain ? rcpt->domain : ""); break;
        case 'h': g_string_append (s, rcpt->mailbox); break;
        default: g_string_append_c (s, *p); break;
        }
    }
  if (g_path_is_absolute (s->str))
    return g_string_free (s, FALSE);
  path = g_build_filename (config->mail_root, s->str, NULL);
  g_string_free (s, TRUE);
  return path;
}

/* The per-user log next to the script: what the user can read to learn
 * why the script did not run. */
static void
user_log (const char *script, const char *what)
{
  g_autofree char *path = g_strconcat (script, ".log", NULL);
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y-%m-%d %H:%M:%S");
  g_autofree char *line = g_strdup_printf ("%s: %s\n", stamp, what);
  int fd = deliver_mailfile_open (path, O_WRONLY | O_CREAT | O_APPEND, NULL); /* a FIFO must not block */

  if (fd < 0)
    return;
  if (write (fd, line, strlen (line)) < 0)
    g_debug ("%s: %s", path, g_strerror (errno));
  close (fd);
}

/* RFC 5429 2.1 across the scripts of a sequence: a reject in one and a
 * delivery or answer in another. */
static gboolean
rejects_with_others (const SieveResult *so_far, const SieveResult *next)
{
  gboolean rej = FALSE, other = FALSE;
  const SieveResult *both[] = { so_far, next };

  for (guint k = 0; k < 2; k++)
    for (guint i = 0; i < both[k]->actions->len - (k == 1 && next->implicit_keep ? 1 : 0); i++)
      {
        SieveActionKind kind = ((SieveAction *) both[k]->actions->pdata[i])->kind;
        if (kind == SIEVE_REJECT || kind == SIEVE_EREJECT)
          rej = TRUE;
        else if (kind != SIEVE_DISCARD)
          other = TRUE;
      }
  return rej && other;
}

/* Moves @from's actions and edits over; its implicit keep goes to
 * *pending, as only the last script's counts. */
static void
merge (SieveResult *into, SieveResult *from, SieveAction **pending)
{
  guint n = from->actions->len - (from->implicit_keep ? 1 : 0);
  for (guint i = 0; i < n; i++)
    g_ptr_array_add (into->actions, g_steal_pointer (&from->actions->pdata[i]));
  for (guint i = 0; i < from->edits->len; i++)
    g_ptr_array_add (into->edits, g_steal_pointer (&from->edits->pdata[i]));
  sieve_action_free (*pending);
  *pending = from->implicit_keep ? g_steal_pointer (&from->actions->pdata[n]) : NULL;
  into->implicit_keep = from->implicit_keep;
}

void
filter_run (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
            const CalloutResult *callouts, const char *prefix, const DeliverContent *content,
            FilterOutcome *out)
{
  FilterView view = { rcpt, prefix, content, NULL, FALSE };
  g_autoptr (GPtrArray) scripts = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) cs = g_array_new (FALSE, TRUE, sizeof (SieveCallout));
  SieveMessage sm = { 0 };
  guint user_index = G_MAXUINT;
  SieveAction *pending = NULL;

  memset (out, 0, sizeof *out);
  out->result.actions = g_ptr_array_new_with_free_func (sieve_action_free);
  out->result.edits = g_ptr_array_new_with_free_func (sieve_header_edit_free);
  out->result.implicit_keep = TRUE;
  if (config->sieve_script && config->sieve_script[0])
    out->user_script = script_path (config, rcpt);
  for (guint i = 0; config->sieve_before[i]; i++)
    g_ptr_array_add (scripts, g_strdup (config->sieve_before[i]));
  if (out->user_script)
    {
      user_index = scripts->len;
      g_ptr_array_add (scripts, g_strdup (out->user_script));
    }
  for (guint i = 0; config->sieve_after[i]; i++)
    g_ptr_array_add (scripts, g_strdup (config->sieve_after[i]));

  sm.envelope_from = msg->sender;
  sm.envelope_to = rcpt->original;
  sm.delimiter = config->recipient_delimiter;
  sm.size = strlen (prefix) + deliver_content_size (content);
  sm.header = view_header;
  sm.body_text = view_body;
  sm.mailbox_exists = view_mailbox_exists;
  sm.data = &view;
  sm.max_actions = config->sieve_max_actions;
  sm.max_redirects = config->sieve_max_redirects ? config->sieve_max_redirects : 1;
  sm.max_time_ms = config->sieve_max_run_time_ms;
  sm.protected_headers = protected_fields;
  callout_for_sieve (callouts, &sm, cs, keep);

  for (guint i = 0; i < scripts->len; i++)
    {
      const char *path = scripts->pdata[i];
      Compiled *c = compiled_get (config, path);
      SieveResult r = { 0 };
      const char *why = NULL;
      g_autofree char *what = NULL;

      if (c == NULL)
        continue;
      out->ran = TRUE;
      if (c->script)
        {
          sieve_run (c->script, &sm, &r);
          if (r.error)
            why = r.error;
          else if (config->sieve_max_redirects == 0)
            for (guint k = 0; k < r.actions->len; k++)
              if (((SieveAction *) r.actions->pdata[k])->kind == SIEVE_REDIRECT)
                why = "redirect is not allowed here";
          if (why == NULL && rejects_with_others (&out->result, &r))
            why = "reject conflicts with an action of an earlier script";
        }
      else
        why = c->error;
      if (why)
        {
          /* RFC 5228 2.10.6: a failed script keeps the message, and whoever
           * owns the script hears of it */
          {
            /* the error may quote the message (a decoded header through
             * ${1}): one sanitiser for the log and the user's log */
            g_autofree char *shown = deliver_sanitize (why, 400);
            what = g_strdup_printf ("%s: %s; message kept in INBOX", path, shown);
          }
          g_warning ("%s: <%s> sieve: %s", msg->id, rcpt->address, what);
          if (i == user_index)
            user_log (path, what);
          sieve_result_clear (&r);
          compiled_unref (c);
          g_ptr_array_set_size (out->result.actions, 0);
          g_clear_pointer (&pending, sieve_action_free);
          g_ptr_array_set_size (out->result.edits, 0);
          out->result.implicit_keep = TRUE;
          out->result.error = g_steal_pointer (&what);
          break;
        }
      merge (&out->result, &r, &pending);
      sieve_result_clear (&r);
      compiled_unref (c);
      /* the sequence goes on only while the message is still kept (as
       * Pigeonhole's multiscript does) */
      if (!out->result.implicit_keep)
        break;
    }
  if (out->result.implicit_keep)
    {
      SieveAction *k = pending && !out->result.error ? g_steal_pointer (&pending) : g_new0 (SieveAction, 1);
      k->kind = SIEVE_KEEP;
      g_ptr_array_add (out->result.actions, k);
    }
  sieve_action_free (pending);
  view_clear (&view);
}

void
filter_outcome_clear (FilterOutcome *out)
{
  sieve_result_clear (&out->result);
  g_clear_pointer (&out->user_script, g_free);
}

/* ---- editheader (RFC 5293) ----------------------------------------------------- */

static gboolean
field_name_ok (const char *name)
{
  if (*name == '\0')
    return FALSE;
  for (const char *p = name; *p; p++)
    if (*p <= ' ' || *p >= 127 || *p == ':')
      return FALSE;
  return TRUE;
}

static char *
field_name (const char *field)
{
  const char *colon = strchr (field, ':');
  return g_strstrip (g_strndup (field, colon ? (gsize) (colon - field) : strlen (field)));
}

static char *
field_value (const char *field)
{
  const char *colon = strchr (field, ':');
  g_autoptr (GString) s = g_string_new (NULL);

  for (const char *p = colon ? colon + 1 : ""; *p; p++)
    if (*p != '\n' && *p != '\r')
      g_string_append_c (s, *p);
  g_strstrip (s->str);
  return g_mime_utils_header_decode_text (NULL, s->str);
}

/* One entry per field of @header, continuation lines included. */
static GPtrArray *
header_fields (const char *header)
{
  GPtrArray *fields = g_ptr_array_new_with_free_func (g_free);
  const char *p = header;

  while (*p && *p != '\n')
    {
      const char *end = p;
      do
        {
          const char *nl = strchr (end, '\n');
          end = nl ? nl + 1 : end + strlen (end);
        }
      while (*end == ' ' || *end == '\t');
      g_ptr_array_add (fields, g_strndup (p, end - p));
      p = end;
    }
  return fields;
}

char *
filter_edit_header (const char *header, const GPtrArray *edits)
{
  g_autoptr (GPtrArray) fields = header_fields (header);
  GString *out;

  for (guint i = 0; i < edits->len; i++)
    {
      const SieveHeaderEdit *e = edits->pdata[i];
      /* sieve-lite refuses these already; this is where they would be
       * written, so the rule holds here too */
      if (!field_name_ok (e->name) || sieve_header_protected (e->name, protected_fields))
        continue;
      if (e->value)
        {
          g_autofree char *clean = g_strdup (e->value);
          g_autofree char *encoded = NULL;
          for (char *q = clean; *q; q++)
            if (*q == '\r' || *q == '\n')
              *q = ' ';
          encoded = g_mime_utils_header_encode_text (NULL, clean, "utf-8");
          g_ptr_array_insert (fields, e->last ? -1 : 0, g_strdup_printf ("%s: %s\n", e->name, encoded));
        }
      else
        {
          guint n = 0, occurrence = 0;
          for (guint k = 0; k < fields->len; k++)
            {
              g_autofree char *name = field_name (fields->pdata[k]);
              n += g_ascii_strcasecmp (name, e->name) == 0;
            }
          for (guint k = 0; k < fields->len;)
            {
              g_autofree char *name = field_name (fields->pdata[k]);
              g_autofree char *value = NULL;
              guint at;
              if (g_ascii_strcasecmp (name, e->name) != 0)
                {
                  k++;
                  continue;
                }
              occurrence++;
              at = e->last ? n - occurrence + 1 : occurrence;
              value = field_value (fields->pdata[k]);
              if ((e->index == 0 || (guint) e->index == at) && sieve_header_edit_matches (e, value))
                g_ptr_array_remove_index (fields, k);
              else
                k++;
            }
        }
    }
  out = g_string_new (NULL);
  for (guint i = 0; i < fields->len; i++)
    g_string_append (out, fields->pdata[i]);
  g_string_append_c (out, '\n');
  return g_string_free (out, FALSE);
}

/* ---- redirect ------------------------------------------------------------------ */

/* The header as lmtpd received it, before trace fields, services and
 * editheader: the delivered-to chain no script can change. */
static char *
received_header (const DeliverMessage *msg)
{
  guint64 hlen = msg->spool ? deliver_spool_header_len (msg->spool) : 0;
  char *h = g_malloc (hlen + 1);

  if (hlen && pread (deliver_spool_fd (msg->spool), h, hlen, 0) != (gssize) hlen)
    hlen = 0;
  h[hlen] = '\0';
  return h;
}

static gboolean
names_recipient (const char *value, const DeliverRecipient *rcpt)
{
  g_autofree char *v = g_strstrip (g_strdup (value));
  return g_ascii_strcasecmp (v, rcpt->address) == 0 || g_ascii_strcasecmp (v, rcpt->original) == 0;
}

/* Was the message here before?  A Delivered-To (RFC 9228; as Postfix
 * local and Pigeonhole read it) or our redirect mark naming this
 * recipient in the header as received. */
static gboolean
delivered_here_before (const DeliverMessage *msg, const DeliverRecipient *rcpt)
{
  g_autofree char *header = received_header (msg);
  g_autoptr (GPtrArray) fields = header_fields (header);

  for (guint i = 0; i < fields->len; i++)
    {
      g_autofree char *name = field_name (fields->pdata[i]);
      g_autofree char *value = NULL;
      if (g_ascii_strcasecmp (name, "Delivered-To") && g_ascii_strcasecmp (name, REDIRECT_HEADER))
        continue;
      value = field_value (fields->pdata[i]);
      if (names_recipient (value, rcpt))
        return TRUE;
    }
  return FALSE;
}

gboolean
filter_redirect (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
                 const char *target, const char *prefix, const DeliverContent *content)
{
  FilterView view = { rcpt, prefix, content, NULL, FALSE };
  g_auto (GStrv) hops = NULL;
  g_autofree char *local = NULL, *domain = NULL, *head = NULL;
  g_autoptr (GError) error = NULL;
  const char *why = NULL, *rest = prefix;
  g_autofree char *shown = deliver_sanitize (target, 330);
  gboolean loop;

  if (!deliver_address_parse (target, TRUE, &local, &domain, &why) || domain == NULL)
    {
      g_warning ("%s: <%s> sieve: redirect to a bad address: %s", msg->id, rcpt->address, why ? why : "no domain");
      return FALSE;
    }
  /* loops: delivered here before, our own mark, too many hops, or back
   * to ourselves (editheader cannot remove the mark or Delivered-To) */
  loop = delivered_here_before (msg, rcpt);
  hops = view_header (REDIRECT_HEADER, &view);
  for (guint i = 0; hops[i]; i++)
    loop |= names_recipient (hops[i], rcpt);
  view_clear (&view);
  if (loop || g_strv_length (hops) >= MAX_REDIRECT_HOPS || g_ascii_strcasecmp (target, rcpt->address) == 0
      || g_ascii_strcasecmp (target, rcpt->original) == 0)
    {
      g_warning ("%s: <%s> sieve: redirect to <%s> would loop; kept instead", msg->id, rcpt->address, shown);
      return FALSE;
    }
  /* Return-Path belongs to the final delivery only */
  if (g_ascii_strncasecmp (rest, "Return-Path:", 12) == 0)
    {
      const char *nl = strchr (rest, '\n');
      rest = nl ? nl + 1 : "";
    }
  head = g_strdup_printf ("%s: %s\n%s", REDIRECT_HEADER, rcpt->address, rest);
  if (!deliver_submit (config, msg->sender, target, head, content, &error))
    {
      g_autofree char *w = deliver_sanitize (error->message, 300);
      g_warning ("%s: <%s> sieve: redirect to <%s> failed: %s; kept instead", msg->id, rcpt->address, shown, w);
      return FALSE;
    }
  g_message ("%s: <%s> sieve: redirected to <%s>", msg->id, rcpt->address, shown);
  return TRUE;
}

/* ---- vacation (RFC 5230) ---------------------------------------------------------- */

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
  GMimeMessage *m = view_message (view);
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
  g_auto (GStrv) auto_sub = view_header ("Auto-Submitted", view);
  g_auto (GStrv) precedence = view_header ("Precedence", view);

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
      g_auto (GStrv) v = view_header (lists[k], view);
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
reply_log_record (ReplyLog *log, const char *path, const char *sender, guint days)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;

  g_string_append_printf (log->kept, "%" G_GINT64_FORMAT " %s %s\n", now + (gint64) days * 86400, log->key, sender);
  if (lseek (log->fd, 0, SEEK_SET) < 0 || ftruncate (log->fd, 0) < 0
      || write (log->fd, log->kept->str, log->kept->len) != (gssize) log->kept->len || fsync (log->fd) < 0)
    g_warning ("vacation log %s: %s", path, g_strerror (errno));
}

static void
reply_log_close (ReplyLog *log)
{
  if (log->fd >= 0)
    close (log->fd);
  if (log->kept)
    g_string_free (log->kept, TRUE);
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
  if (v->mime)
    {
      /* the reason is a MIME entity of its own (4.7) */
      g_autoptr (GMimeStream) s = g_mime_stream_mem_new_with_buffer (action->argument, strlen (action->argument));
      g_autoptr (GMimeParser) parser = g_mime_parser_new_with_stream (s);
      body = g_mime_parser_construct_part (parser, NULL);
    }
  if (body == NULL)
    {
      GMimeTextPart *t = g_mime_text_part_new_with_subtype ("plain");
      g_mime_text_part_set_text (t, action->argument);
      g_mime_part_set_content_encoding (GMIME_PART (t),
                                        g_mime_part_get_best_content_encoding (GMIME_PART (t),
                                                                               GMIME_ENCODING_CONSTRAINT_7BIT));
      body = GMIME_OBJECT (t);
    }
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

void
filter_vacation (const LmtpdConfig *config, const DeliverMessage *msg, const DeliverRecipient *rcpt,
                 const SieveAction *action, const FilterOutcome *outcome, const char *prefix,
                 const DeliverContent *content)
{
  const SieveVacation *v = action->vacation;
  FilterView view = { rcpt, prefix, content, NULL, FALSE };
  g_autoptr (GPtrArray) mine = g_ptr_array_new ();
  g_autofree char *log = NULL, *text = NULL;
  g_autoptr (GError) error = NULL;
  const char *why = NULL;
  guint days = MIN (v->days, config->vacation_max_days);
  ReplyLog rl = { -1, NULL, "" };

  g_ptr_array_add (mine, rcpt->original);
  g_ptr_array_add (mine, rcpt->address);
  for (guint i = 0; v->addresses && v->addresses[i]; i++)
    g_ptr_array_add (mine, v->addresses[i]);
  g_ptr_array_add (mine, NULL);

  if (msg->sender[0] == '\0')
    why = "the sender is null";
  else if (never_reply (config, msg->sender))
    why = "the sender is on vacation_never_reply";
  else if (addr_in (msg->sender, (const char *const *) mine->pdata))
    why = "the sender is the user";
  else if ((why = automatic (&view, msg->sender)) != NULL)
    ;
  else if (!addressed_to_user (&view, (const char *const *) mine->pdata))
    why = "the user is not in To, Cc or Bcc";
  if (why)
    {
      g_message ("%s: <%s> sieve: no vacation reply to <%s>: %s", msg->id, rcpt->address, msg->sender, why);
      view_clear (&view);
      return;
    }
  /* next to the user's script if its directory is there, else in the spool */
  if (outcome->user_script)
    {
      g_autofree char *dir = g_path_get_dirname (outcome->user_script);
      if (g_file_test (dir, G_FILE_TEST_IS_DIR))
        log = g_strconcat (outcome->user_script, ".vacation", NULL);
    }
  if (log == NULL)
    {
      g_autofree char *dir = g_build_filename (config->spool_dir, "vacation", NULL);
      g_autofree char *name = g_strconcat (rcpt->address, ".log", NULL);
      if (g_mkdir_with_parents (dir, 0700) < 0)
        g_warning ("%s: %s", dir, g_strerror (errno));
      log = g_build_filename (dir, name, NULL);
    }
  /* fail closed: without a working log, no reply (no loops, no floods) */
  if (!reply_log_open (&rl, log, v->handle))
    why = "the reply log cannot be used";
  else if (reply_log_seen (&rl, msg->sender))
    why = "answered already";
  if (why)
    {
      g_message ("%s: <%s> sieve: no vacation reply to <%s>: %s", msg->id, rcpt->address, msg->sender, why);
      reply_log_close (&rl);
      view_clear (&view);
      return;
    }
  text = reply_text (config, rcpt, action, view_message (&view), msg->sender);
  view_clear (&view);
  if (!deliver_submit (config, "", msg->sender, text, NULL, &error))
    {
      g_autofree char *w = deliver_sanitize (error->message, 300);
      g_warning ("%s: <%s> sieve: vacation reply to <%s> failed: %s", msg->id, rcpt->address, msg->sender, w);
      reply_log_close (&rl);
      return;
    }
  reply_log_record (&rl, log, msg->sender, days);
  reply_log_close (&rl);
  g_message ("%s: <%s> sieve: vacation reply sent to <%s>", msg->id, rcpt->address, msg->sender);
}
