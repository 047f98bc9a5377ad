/* test-delivery.c - folders, flags, single instance, mbox quoting and
 * locking, quota, the duplicate journal, rewriting and subaddresses. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "deliver.h"

/* deliver_maildir_store() with the fields as arguments, as the tests
 * used to call it. */
static gboolean
store_maildir (const char *maildir, const char *hostname, const char *header, const DeliverContent *content,
               const char *flags, const char *link_from, gboolean do_fsync, char **out_path, guint64 *out_size,
               GError **error)
{
  DeliverMaildirStore st = { maildir, hostname, header, content, flags, link_from, do_fsync, NULL, NULL, NULL };
  return deliver_maildir_store (&st, out_path, out_size, error);
}

/* deliver_mbox_store() with the fields as arguments. */
static gboolean
store_mbox (const char *path, const char *sender, gint64 received_us, const char *header,
            const DeliverContent *content, gboolean mboxo, guint lock_timeout, gboolean do_fsync,
            const char *inflight_dir, GError **error)
{
  DeliverMboxStore st = { path, sender, received_us, header, content, mboxo, lock_timeout, do_fsync, inflight_dir };
  return deliver_mbox_store (&st, error);
}

static const DeliverContent *
content_of (DeliverSpool *s)
{
  static DeliverContent c;
  deliver_content_from_spool (&c, s);
  return &c;
}

static DeliverSpool *
spool_of (const char *text)
{
  g_autoptr (GError) error = NULL;
  DeliverSpool *s = deliver_spool_new (NULL, g_get_tmp_dir (), &error);
  g_assert_no_error (error);
  g_assert_true (deliver_spool_write (s, text, strlen (text), &error));
  g_assert_true (deliver_spool_finish (s, &error));
  return s;
}

static char *
read_all (const char *path)
{
  char *text = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  return text;
}

static void
test_folder_names (void)
{
  static const struct { const char *name; gboolean ok; const char *maildir; } cases[] = {
    { "Junk", TRUE, "/m/.Junk" },
    { "Lists/ietf", TRUE, "/m/.Lists.ietf" },
    { "Lists.ietf", TRUE, "/m/.Lists.ietf" },
    { "Entw\xc3\xbcrfe", TRUE, "/m/.Entw&APw-rfe" },
    { "A&B", TRUE, "/m/.A&-B" },
    { "\xe5\x8f\xb0\xe5\x8c\x97", TRUE, "/m/.&U,BTFw-" },
    { "../etc", FALSE, NULL },
    { "..", FALSE, NULL },
    { ".hidden", FALSE, NULL },
    { "a//b", FALSE, NULL },
    { "trailing/", FALSE, NULL },
    { "ctl\x01", FALSE, NULL },
    { "back\\slash", FALSE, NULL },
    { "", FALSE, NULL },
    { "\xff\xfe", FALSE, NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const char *why = NULL;
      g_test_message ("case %u", i);
      g_assert_cmpint (deliver_folder_valid (cases[i].name, &why), ==, cases[i].ok);
      if (cases[i].ok)
        {
          g_autofree char *p = deliver_folder_maildir_path ("/m", cases[i].name);
          g_assert_cmpstr (p, ==, cases[i].maildir);
        }
    }
  {
    g_autofree char *mb = deliver_folder_mbox_path ("/mail", "Lists.ietf");
    g_assert_cmpstr (mb, ==, "/mail/Lists/ietf");
  }
  g_assert_true (deliver_folder_is_inbox ("inbox"));
}

static void
test_flags (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverSpool) s = spool_of ("Subject: f\r\n\r\nx\r\n");
  g_autofree char *maildir = g_build_filename (g_get_tmp_dir (), "flags", "Maildir", NULL);
  g_autofree char *path = NULL, *norm = deliver_flags_normalize ("SxFRD");

  g_assert_cmpstr (norm, ==, "DFRS");
  g_assert_true (store_maildir (maildir, "h", "", content_of (s), "FS", NULL, TRUE, &path, NULL, &error));
  g_assert_no_error (error);
  g_assert_nonnull (strstr (path, "/Maildir/cur/"));
  g_assert_true (g_str_has_suffix (path, ":2,FS"));
}

static void
test_single_instance_link (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverSpool) s = spool_of ("Subject: l\r\n\r\nsame bytes\r\n");
  g_autofree char *a = g_build_filename (g_get_tmp_dir (), "a", "Maildir", NULL);
  g_autofree char *b = g_build_filename (g_get_tmp_dir (), "b", "Maildir", NULL);
  g_autofree char *pa = NULL, *pb = NULL, *gone = NULL;
  struct stat sa, sb;

  g_assert_true (store_maildir (a, "h", "H: 1\n", content_of (s), NULL, NULL, TRUE, &pa, NULL, &error));
  g_assert_true (store_maildir (b, "h", "H: 1\n", content_of (s), NULL, pa, TRUE, &pb, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (stat (pa, &sa), ==, 0);
  g_assert_cmpint (stat (pb, &sb), ==, 0);
  g_assert_cmpuint (sa.st_ino, ==, sb.st_ino);
  g_assert_cmpuint (sb.st_nlink, ==, 2);
  /* the source moved away (a reader took it to cur/): a copy is written */
  gone = g_strconcat (pa, ".moved", NULL);
  g_assert_cmpint (rename (pa, gone), ==, 0);
  g_clear_pointer (&pb, g_free);
  g_assert_true (store_maildir (b, "h", "H: 1\n", content_of (s), NULL, pa, TRUE, &pb, NULL, &error));
  g_assert_cmpint (stat (pb, &sb), ==, 0);
  g_assert_cmpuint (sb.st_nlink, ==, 1);
}

static void
test_mbox_quoting (void)
{
  static const char *body =
    "Subject: q\r\n\r\nFrom here\r\n>From there\r\n>>From far\r\n From not\r\nFromage\r\nlast";
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverSpool) s = spool_of (body);
  g_autofree char *path = g_build_filename (g_get_tmp_dir (), "mbox", "inbox", NULL);
  g_autofree char *text = NULL, *lock = g_strconcat (path, ".lock", NULL);
  const char *want_rd = "Return-Path: <a@b>\nSubject: q\n\n>From here\n>>From there\n>>>From far\n"
                        " From not\nFromage\nlast\n\n";
  const char *want_o = "Return-Path: <a@b>\nSubject: q\n\n>From here\n>From there\n>>From far\n"
                       " From not\nFromage\nlast\n\n";
  char *second;

  g_assert_true (store_mbox (path, "a@b", 0, "Return-Path: <a@b>\n", content_of (s), FALSE, 5, TRUE, NULL, &error));
  g_assert_true (store_mbox (path, "", 0, "Return-Path: <a@b>\n", content_of (s), TRUE, 5, TRUE, NULL, &error));
  g_assert_no_error (error);
  text = read_all (path);
  g_assert_true (g_str_has_prefix (text, "From a@b Thu Jan  1 00:00:00 1970\n"));
  g_assert_true (g_str_has_prefix (text + strlen ("From a@b Thu Jan  1 00:00:00 1970\n"), want_rd));
  second = strstr (text, "\nFrom MAILER-DAEMON Thu Jan  1 00:00:00 1970\n");
  g_assert_nonnull (second);
  g_assert_cmpstr (second + strlen ("\nFrom MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"), ==, want_o);
  g_assert_false (g_file_test (lock, G_FILE_TEST_EXISTS));
}

static void
test_mbox_locked_and_repair (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverSpool) s = spool_of ("Subject: l\r\n\r\nbody\r\n");
  g_autofree char *path = g_build_filename (g_get_tmp_dir (), "lock", "inbox", NULL);
  g_autofree char *lock = g_strconcat (path, ".lock", NULL);
  g_autofree char *text = NULL;
  gsize first_len;

  g_assert_true (store_mbox (path, "a@b", 0, "", content_of (s), FALSE, 5, TRUE, NULL, &error));
  text = read_all (path);
  first_len = strlen (text);
  /* a live lock holder: we give up after the timeout with EAGAIN */
  g_assert_true (g_file_set_contents (lock, "1 -1\n", -1, NULL));
  g_assert_false (store_mbox (path, "a@b", 0, "", content_of (s), FALSE, 1, TRUE, NULL, &error));
  g_assert_error (error, DELIVER_ERROR, EAGAIN);
  g_clear_error (&error);
  /* a dead lmtpd left half a message and its lock: it is cut away */
  {
    g_autofree char *lk = g_strdup_printf ("999999 %zu\n", first_len);
    FILE *f = fopen (path, "a");
    fputs ("From x@y Thu Jan  1 00:00:00 1970\nSubject: half", f);
    fclose (f);
    g_assert_true (g_file_set_contents (lock, lk, -1, NULL));
  }
  g_assert_true (store_mbox (path, "a@b", 0, "", content_of (s), FALSE, 5, TRUE, NULL, &error));
  g_free (text);
  text = read_all (path);
  g_assert_null (strstr (text, "Subject: half"));
  g_assert_cmpuint (strlen (text), ==, 2 * first_len);
}

static void
test_mbox_refuses_symlink_and_fifo (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverSpool) s = spool_of ("x\r\n");
  g_autofree char *dir = g_build_filename (g_get_tmp_dir (), "evil", NULL);
  g_autofree char *link = g_build_filename (dir, "inbox", NULL);
  g_autofree char *fifo = g_build_filename (dir, "fifo", NULL);
  g_autofree char *target = g_build_filename (g_get_tmp_dir (), "target", NULL);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  g_assert_cmpint (symlink (target, link), ==, 0);
  g_assert_false (store_mbox (link, "a@b", 0, "", content_of (s), FALSE, 1, TRUE, NULL, &error));
  g_assert_error (error, DELIVER_ERROR, ELOOP);
  g_clear_error (&error);
  g_assert_false (g_file_test (target, G_FILE_TEST_EXISTS));
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  g_assert_false (store_mbox (fifo, "a@b", 0, "", content_of (s), FALSE, 1, TRUE, NULL, &error));
  g_assert_nonnull (error);
}

static void
test_quota (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverSpool) s = spool_of ("Subject: q\r\n\r\n0123456789\r\n");
  g_autofree char *maildir = g_build_filename (g_get_tmp_dir (), "quota", "Maildir", NULL);
  g_autofree char *size_file = g_build_filename (maildir, "maildirsize", NULL);
  g_autofree char *text = NULL;
  guint64 size = 0;

  g_assert_true (deliver_quota_check (maildir, 100, 0, 10, &error));
  g_assert_true (store_maildir (maildir, "h", "", content_of (s), NULL, NULL, FALSE, NULL, &size, &error));
  deliver_quota_add (maildir, 100, 0, size);
  text = read_all (size_file);
  g_assert_true (g_str_has_prefix (text, "100S\n"));
  g_assert_true (deliver_quota_check (maildir, 100, 0, 100 - size, &error));
  g_assert_false (deliver_quota_check (maildir, 100, 0, 101 - size, &error));
  g_assert_error (error, DELIVER_ERROR, EDQUOT);
  g_clear_error (&error);
  /* message count; a different quota recalculates from the file names */
  g_assert_false (deliver_quota_check (maildir, 0, 1, 1, &error));
  g_clear_error (&error);
  g_free (text);
  text = read_all (size_file);
  g_assert_true (g_str_has_prefix (text, "1C\n"));
  g_assert_true (deliver_quota_check (maildir, 0, 2, 1, &error));
}

/* A Maildir of 2000 messages of 10 bytes (names with ",S=10") and a
 * maildirsize of 1000 bytes' quota, over 5120 bytes long, whose lines add
 * up to the same 20000 bytes in 2000 messages. */
static char *
long_maildirsize (void)
{
  char *maildir = g_build_filename (g_get_tmp_dir (), "long", "Maildir", NULL);
  g_autofree char *cur = g_build_filename (maildir, "cur", NULL);
  g_autofree char *size_file = g_build_filename (maildir, "maildirsize", NULL);
  g_autoptr (GString) text = g_string_new ("1000S\n");

  g_assert_cmpint (g_mkdir_with_parents (cur, 0700), ==, 0);
  for (int i = 0; i < 2000; i++)
    {
      g_autofree char *name = g_strdup_printf ("%s/%d.M1P1Q%d.h,S=10:2,S", cur, i, i);
      g_assert_true (g_file_set_contents (name, "0123456789", 10, NULL));
      g_string_append (text, "10 1\n");
    }
  g_assert_cmpuint (text->len, >, 5120);
  g_assert_true (g_file_set_contents (size_file, text->str, text->len, NULL));
  return maildir;
}

static gpointer
usage_thread (gpointer maildir)
{
  guint64 bytes = 0, messages = 0;

  deliver_quota_usage (maildir, 1000, 0, &bytes, &messages);
  g_assert_cmpuint (bytes, ==, 20000);
  g_assert_cmpuint (messages, ==, 2000);
  return NULL;
}

/* A maildirsize over 5120 bytes is recalculated (compacted to one line);
 * delivery threads that read it while another recalculates it use its
 * sums instead of scanning the Maildir too (issue 20): every one of them
 * gets the same usage either way. */
static void
test_quota_long_maildirsize (void)
{
  g_autofree char *maildir = long_maildirsize ();
  g_autofree char *size_file = g_build_filename (maildir, "maildirsize", NULL);
  g_autofree char *text = NULL;
  GThread *threads[8];

  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("usage", usage_thread, maildir);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);
  text = read_all (size_file);
  g_assert_cmpstr (text, ==, "1000S\n20000 2000\n");
  usage_thread (maildir);
}

static void
test_dedupe (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (g_get_tmp_dir (), "lib", "dup", NULL);
  DeliverDedupe *d = deliver_dedupe_open (path, 3600, &error);

  g_assert_no_error (error);
  g_assert_false (deliver_dedupe_seen (d, "abc", "s@y", "joe@x"));
  deliver_dedupe_record (d, "abc", "s@y", "joe@x");
  g_assert_true (deliver_dedupe_seen (d, "abc", "s@y", "joe@x"));
  g_assert_false (deliver_dedupe_seen (d, "abc", "s@y", "ann@x"));
  /* the same data from another sender is another message */
  g_assert_false (deliver_dedupe_seen (d, "abc", "t@y", "joe@x"));
  g_assert_false (deliver_dedupe_seen (d, "abc", "", "joe@x"));
  deliver_dedupe_free (d);
  /* survives a restart */
  d = deliver_dedupe_open (path, 3600, &error);
  g_assert_true (deliver_dedupe_seen (d, "abc", "s@y", "joe@x"));
  /* a record taken back stays taken back after a restart */
  deliver_dedupe_record (d, "def", "s@y", "joe@x");
  deliver_dedupe_forget (d, "def", "s@y", "joe@x");
  g_assert_false (deliver_dedupe_seen (d, "def", "s@y", "joe@x"));
  deliver_dedupe_free (d);
  d = deliver_dedupe_open (path, 3600, &error);
  g_assert_false (deliver_dedupe_seen (d, "def", "s@y", "joe@x"));
  g_assert_true (deliver_dedupe_seen (d, "abc", "s@y", "joe@x"));
  /* a kill between the intent and the confirmation: the entry counts after
   * a restart only if the file became visible (even if a reader moved it
   * to cur/ since) */
  {
    g_autofree char *md = g_build_filename (g_get_tmp_dir (), "intent", "Maildir", NULL);
    g_autofree char *shown = g_build_filename (md, "new", "1.M1P1Q1.h,S=5,W=6", NULL);
    g_autofree char *moved = g_build_filename (md, "new", "2.M2P2Q2.h,S=5,W=6", NULL);
    g_autofree char *moved_to = g_build_filename (md, "cur", "2.M2P2Q2.h,S=5,W=6:2,S", NULL);
    g_autofree char *never = g_build_filename (md, "new", "3.M3P3Q3.h,S=5,W=6", NULL);
    g_assert_true (deliver_maildir_create (md, FALSE, &error));
    deliver_dedupe_intend (d, "i1", "s@y", "joe@x", shown);
    deliver_dedupe_intend (d, "i2", "s@y", "joe@x", moved);
    deliver_dedupe_intend (d, "i3", "s@y", "joe@x", never);
    g_assert_true (deliver_dedupe_seen (d, "i3", "s@y", "joe@x")); /* in this process: pending */
    g_assert_true (g_file_set_contents (shown, "hello", -1, NULL));
    g_assert_true (g_file_set_contents (moved_to, "hello", -1, NULL));
    deliver_dedupe_free (d);
    d = deliver_dedupe_open (path, 3600, &error);
    g_assert_true (deliver_dedupe_seen (d, "i1", "s@y", "joe@x"));
    g_assert_true (deliver_dedupe_seen (d, "i2", "s@y", "joe@x"));
    g_assert_false (deliver_dedupe_seen (d, "i3", "s@y", "joe@x"));
    /* confirmed: counts whatever happens to the file */
    deliver_dedupe_intend (d, "i4", "s@y", "joe@x", never);
    deliver_dedupe_record (d, "i4", "s@y", "joe@x");
    deliver_dedupe_free (d);
    d = deliver_dedupe_open (path, 3600, &error);
    g_assert_true (deliver_dedupe_seen (d, "i4", "s@y", "joe@x"));
  }
  /* old entries are forgotten */
  deliver_dedupe_free (d);
  g_assert_true (g_file_set_contents (path, "1000 0000000000000000000000000000000000000000000000000000000000000000\n",
                                      -1, NULL));
  d = deliver_dedupe_open (path, 3600, &error);
  for (int i = 0; i < 3000; i++)
    {
      g_autofree char *dg = g_strdup_printf ("d%d", i);
      deliver_dedupe_record (d, dg, "s@y", "joe@x");
    }
  g_assert_true (deliver_dedupe_seen (d, "d0", "s@y", "joe@x"));
  g_assert_true (deliver_dedupe_seen (d, "d2999", "s@y", "joe@x"));
  deliver_dedupe_free (d);
}

static LmtpdConfig *
config_with (const char *text)
{
  g_autofree char *path = g_build_filename (g_get_tmp_dir (), "t.conf", NULL);
  g_autoptr (GError) error = NULL;
  LmtpdConfig *c;

  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  c = lmtpd_config_load (path, &error);
  g_assert_no_error (error);
  return c;
}

static void
test_rewrite_and_subaddress (void)
{
  g_autofree char *map = g_build_filename (g_get_tmp_dir (), "rewrite", NULL);
  g_autofree char *users = g_build_filename (g_get_tmp_dir (), "users", NULL);
  g_autofree char *conf = NULL;
  g_autoptr (LmtpdConfig) c = NULL;
  static const struct {
    const char *local, *domain;
    guint code;
    const char *address, *detail, *folder;
  } cases[] = {
    { "joe", "example.org", 0, "joe@fr.example.org", NULL, NULL },
    { "joe+lists", "example.org", 0, "joe@fr.example.org", "lists", "lists" },
    { "ann+Junk", "old.example", 0, "ann@new.example", "Junk", "Junk" },
    { "bob", "old.example", 0, "bob@new.example", NULL, NULL },
    { "sales-x", "example.org", 0, "ann@new.example", NULL, NULL },
    { "ann+INBOX", "new.example", 0, "ann@new.example", "INBOX", NULL },
    { "ann+../x", "new.example", 553, NULL, NULL, NULL },
    { "eve", "example.org", 550, NULL, NULL, NULL },
    { "exact+d", "new.example", 0, "exact+d@new.example", NULL, NULL },
  };

  g_assert_true (g_file_set_contents (map,
    "# rewrite map\n"
    "joe@example.org joe@fr.example.org\n"
    "@old.example @new.example\n"
    "/^sales-.*@example\\.org$/ ann@new.example\n", -1, NULL));
  g_assert_true (g_file_set_contents (users,
    "joe@fr.example.org quota=1M\nann@new.example mbox:new/ann\nbob@new.example\n"
    "exact+d@new.example\n", -1, NULL));
  conf = g_strdup_printf ("[users]\nmap=%s\nrewrite=%s\n[delivery]\nmail_root=/m\ndetail_folder=yes\n",
                          users, map);
  c = config_with (conf);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      DeliverStatus st = { 0 };
      g_autoptr (DeliverRecipient) r = deliver_resolve (NULL, c, cases[i].local, cases[i].domain, &st);
      g_test_message ("case %u: %s@%s", i, cases[i].local, cases[i].domain);
      if (cases[i].code)
        {
          g_assert_null (r);
          g_assert_cmpuint (st.code, ==, cases[i].code);
          deliver_status_clear (&st);
          continue;
        }
      g_assert_nonnull (r);
      g_assert_cmpstr (r->address, ==, cases[i].address);
      g_assert_cmpstr (r->detail, ==, cases[i].detail);
      g_assert_cmpstr (r->folder, ==, cases[i].folder);
    }
  {
    DeliverStatus st = { 0 };
    g_autoptr (DeliverRecipient) j = deliver_resolve (NULL, c, "joe", "example.org", &st);
    g_autoptr (DeliverRecipient) a = deliver_resolve (NULL, c, "ann", "new.example", &st);
    g_assert_cmpuint (j->quota_bytes, ==, 1024 * 1024);
    g_assert_cmpint (j->format, ==, DELIVER_MAILDIR);
    g_assert_cmpstr (j->mailbox, ==, "/m/fr.example.org/joe/Maildir");
    g_assert_cmpint (a->format, ==, DELIVER_MBOX);
    g_assert_cmpstr (a->mailbox, ==, "/m/new/ann");
    g_assert_cmpstr (a->inbox, ==, "/m/new/ann/inbox");
  }
}

static void
test_domain_mailboxes (void)
{
  g_autoptr (LmtpdConfig) c = config_with ("[delivery]\nmail_root=/m\n"
                                           "[mailboxes]\nmbox.example = mbox:%d/%n:INBOX=spool/%n\n");
  DeliverStatus st = { 0 };
  g_autoptr (DeliverRecipient) a = deliver_resolve (NULL, c, "Ann", "MBOX.example", &st);
  g_autoptr (DeliverRecipient) b = deliver_resolve (NULL, c, "bob", "other.example", &st);

  g_assert_cmpint (a->format, ==, DELIVER_MBOX);
  g_assert_cmpstr (a->mailbox, ==, "/m/mbox.example/ann");
  g_assert_cmpstr (a->inbox, ==, "/m/spool/ann");
  g_assert_cmpint (b->format, ==, DELIVER_MAILDIR);
  g_assert_cmpstr (b->mailbox, ==, "/m/other.example/bob/Maildir");
}

/* The context's spool pool: a freed spool's file serves the next spool
 * in the same directory, emptied; without a context nothing is kept.  A
 * spool may outlive the context it came from. */
static void
test_context_spool_pool (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverContext) ctx = deliver_context_new ();
  g_autoptr (LmtpdConfig) c = lmtpd_config_new_default ();
  DeliverSpool *a, *b;
  int fd;

  c->duplicate_window = 0;
  g_assert_true (deliver_context_open_journal (ctx, c, &error));
  a = deliver_spool_new (ctx, g_get_tmp_dir (), &error);
  g_assert_no_error (error);
  g_assert_true (deliver_spool_write (a, "X: 1\r\n\r\nbody\r\n", 14, &error));
  g_assert_true (deliver_spool_finish (a, &error));
  fd = deliver_spool_fd (a);
  deliver_spool_free (a);
  b = deliver_spool_new (ctx, g_get_tmp_dir (), &error);
  g_assert_cmpint (deliver_spool_fd (b), ==, fd);
  g_assert_true (deliver_spool_finish (b, &error));
  g_assert_cmpuint (deliver_spool_size (b), ==, 0);
  g_clear_pointer (&ctx, deliver_context_unref);
  deliver_spool_free (b);
}

/* The header reads the same whether the message is still in the spool's
 * buffer (small) or only in the file (past 64 KiB), and a reused spool
 * does not answer with its last message. */
static void
test_spool_header_read_back (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (DeliverContext) ctx = deliver_context_new ();
  g_autoptr (GString) big = g_string_new ("Message-ID: <big@x>\r\nSubject: b\r\n\r\n");
  DeliverSpool *s;
  char *h;
  gsize len = 0;

  s = deliver_spool_new (ctx, g_get_tmp_dir (), &error);
  g_assert_true (deliver_spool_write (s, "Message-ID: <small@x>\r\n\r\nbody\r\n", 31, &error));
  g_assert_true (deliver_spool_finish (s, &error));
  h = deliver_spool_read_header (s, &len);
  g_assert_cmpstr (h, ==, "Message-ID: <small@x>\n\n");
  g_assert_cmpuint (len, ==, 23);
  g_free (h);
  h = deliver_spool_header_value (s, "Message-ID");
  g_assert_cmpstr (h, ==, "<small@x>");
  g_free (h);
  deliver_spool_free (s);

  while (big->len < 200 * 1024)
    g_string_append (big, "a line of the body\r\n");
  s = deliver_spool_new (ctx, g_get_tmp_dir (), &error); /* the pooled one again */
  g_assert_true (deliver_spool_write (s, big->str, big->len, &error));
  g_assert_true (deliver_spool_finish (s, &error));
  h = deliver_spool_read_header (s, &len);
  g_assert_cmpstr (h, ==, "Message-ID: <big@x>\nSubject: b\n\n");
  g_free (h);
  h = deliver_spool_header_value (s, "Message-ID");
  g_assert_cmpstr (h, ==, "<big@x>");
  g_free (h);
  deliver_spool_free (s);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/folder/names", test_folder_names);
  g_test_add_func ("/context/spool-pool", test_context_spool_pool);
  g_test_add_func ("/spool/header-read-back", test_spool_header_read_back);
  g_test_add_func ("/maildir/flags", test_flags);
  g_test_add_func ("/maildir/single-instance", test_single_instance_link);
  g_test_add_func ("/mbox/quoting", test_mbox_quoting);
  g_test_add_func ("/mbox/locked-and-repair", test_mbox_locked_and_repair);
  g_test_add_func ("/mbox/symlink-and-fifo", test_mbox_refuses_symlink_and_fifo);
  g_test_add_func ("/quota/maildirsize", test_quota);
  g_test_add_func ("/quota/long-maildirsize", test_quota_long_maildirsize);
  g_test_add_func ("/dedupe/journal", test_dedupe);
  g_test_add_func ("/resolve/rewrite-and-subaddress", test_rewrite_and_subaddress);
  g_test_add_func ("/resolve/domain-mailboxes", test_domain_mailboxes);
  return g_test_run ();
}
