/* test-config.c - loading, defaults and error reports with file:line. */
#include "config.h"

#include <string.h>
#include <glib/gstdio.h>

#include "lmtpd-conf.h"
#include "conf-private.h" /* the settings table, for the man page test */

static char *
write_file (const char *name, const char *text)
{
  char *path = g_build_filename (g_get_tmp_dir (), name, NULL);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  return path;
}

static void
test_example (void)
{
  g_autofree char *path = g_build_filename (TEST_DATA_DIR, "..", "..", "conf", "lmtpd.conf.example", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) c = lmtpd_config_load (path, &error);
  const LmtpdListen *l;

  g_assert_no_error (error);
  g_assert_cmpuint (c->listen->len, ==, 2);
  l = c->listen->pdata[0];
  g_assert_cmpint (l->kind, ==, LMTPD_LISTEN_INET);
  g_assert_cmpstr (l->host, ==, "127.0.0.1");
  g_assert_cmpuint (l->port, ==, 2424);
  l = c->listen->pdata[1];
  g_assert_cmpint (l->kind, ==, LMTPD_LISTEN_UNIX);
  g_assert_cmpstr (l->path, ==, "./var/run/lmtpd.sock");
  g_assert_cmpuint (c->idle_timeout, ==, 300);
  g_assert_cmpuint (c->max_message_size, ==, 51 * 1024 * 1024);
  g_assert_cmpuint (c->max_data_line_length, ==, 1024 * 1024);
  g_assert_true (c->fsync);
  g_assert_true (lmtpd_config_lookup_user (c, "anyone@anywhere.example", NULL));
}

/* Durations take days too: "keep = 30d" is what people write. */
static void
test_days (void)
{
  g_autofree char *path = write_file ("days.conf", "[trace]\nkeep = 3d\n[server]\nidle_timeout = 1d\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) c = lmtpd_config_load (path, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (c->trace_keep, ==, 3 * 86400);
  g_assert_cmpuint (c->idle_timeout, ==, 86400);
}

static void
test_errors (void)
{
  g_autofree char *path = write_file ("bad.conf",
    "[server]\n"
    "listen = tcp:1.2.3.4\n"          /* line 2 */
    "max_sessions = lots\n"           /* line 3 */
    "idle_timeout = 10x\n"            /* line 4 */
    "\n"
    "[delivery]\n"
    "mailbox = ../%n\n"               /* line 7 */
    "fsync = maybe\n"                 /* line 8 */
    "colour = blue\n"                 /* line 9 */
    "[nonsense]\n");                  /* line 10 */
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) c = lmtpd_config_load (path, &error);
  g_autofree char *l2 = g_strdup_printf ("%s:2: [server] listen:", path);
  g_autofree char *l3 = g_strdup_printf ("%s:3: [server] max_sessions:", path);
  g_autofree char *l4 = g_strdup_printf ("%s:4: [server] idle_timeout:", path);
  g_autofree char *l7 = g_strdup_printf ("%s:7: [delivery] mailbox:", path);
  g_autofree char *l8 = g_strdup_printf ("%s:8: [delivery] fsync:", path);
  g_autofree char *l9 = g_strdup_printf ("%s:9: [delivery] colour: unknown key", path);
  g_autofree char *l10 = g_strdup_printf ("%s:10: [nonsense]: unknown group", path);

  g_assert_null (c);
  g_assert_error (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, l2));
  g_assert_nonnull (strstr (error->message, l3));
  g_assert_nonnull (strstr (error->message, l4));
  g_assert_nonnull (strstr (error->message, l7));
  g_assert_nonnull (strstr (error->message, l8));
  g_assert_nonnull (strstr (error->message, l9));
  g_assert_nonnull (strstr (error->message, l10));
}

/* The Postfix lookup listeners: off unless set, checked like listen. */
static void
test_postfix_listeners (void)
{
  g_autofree char *path = write_file ("pfx.conf",
    "[server]\n"
    "socketmap_listen = inet:127.0.0.1:99999\n"   /* line 2 */
    "policy_listen = tcp:foo\n");                 /* line 3 */
  g_autofree char *good = write_file ("pfx-good.conf",
    "[server]\nsocketmap_listen = unix:/run/lmtpd/socketmap\npolicy_listen = inet:127.0.0.1:10031\n");
  g_autofree char *none = write_file ("pfx-none.conf", "[server]\nsocketmap_listen =\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) c = lmtpd_config_load (path, &error);
  g_autoptr (LmtpdConfig) g = NULL, n = NULL;
  g_autofree char *l2 = g_strdup_printf ("%s:2: [server] socketmap_listen:", path);
  g_autofree char *l3 = g_strdup_printf ("%s:3: [server] policy_listen:", path);

  g_assert_null (c);
  g_assert_nonnull (strstr (error->message, l2));
  g_assert_nonnull (strstr (error->message, l3));
  g_clear_error (&error);
  g = lmtpd_config_load (good, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g->socketmap_listen, ==, "unix:/run/lmtpd/socketmap");
  g_assert_cmpstr (g->policy_listen, ==, "inet:127.0.0.1:10031");
  n = lmtpd_config_load (none, &error);
  g_assert_no_error (error);
  g_assert_null (n->socketmap_listen);
  g_assert_null (n->policy_listen);
}

static void
test_sieve (void)
{
  g_autofree char *path = write_file ("sieve.conf",
    "[sieve]\n"
    "script = %d/%x/s\n"                 /* line 2 */
    "before = /nonexistent/b.sieve\n"    /* line 3 */
    "max_actions = 0\n"                  /* line 4 */
    "submission = smtp:host\n"           /* line 5 */
    "sendmail = /usr/sbin/sendmail\n"    /* line 6 */
    "max_run_time = 5m\n");              /* line 7: fine */
  g_autofree char *good = write_file ("sieve-good.conf",
    "[sieve]\nscript = /home/%n/.sieve\nmax_run_time = 5s\nsubmission = inet:127.0.0.1:25\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) c = lmtpd_config_load (path, &error);
  g_autoptr (LmtpdConfig) g = NULL;
  const char *want[] = { ":2: [sieve] script:", ":3: [sieve] before:", ":4: [sieve] max_actions:",
                         ":5: [sieve] submission:", ":6: [sieve] sendmail:" };

  g_assert_null (c);
  g_test_message ("%s", error->message);
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    {
      g_autofree char *w = g_strconcat (path, want[i], NULL);
      g_assert_nonnull (strstr (error->message, w));
    }
  g_assert_null (strstr (error->message, "max_run_time"));
  g_clear_error (&error);
  g = lmtpd_config_load (good, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (g->sieve_script, ==, "/home/%n/.sieve");
  g_assert_cmpuint (g->sieve_max_run_time_ms, ==, 5000);
  g_assert_cmpuint (g->sieve_max_actions, ==, 32);
  g_assert_cmpstr (g->submission, ==, "inet:127.0.0.1:25");
}

static void
test_syntax_error (void)
{
  g_autofree char *path = write_file ("syntax.conf", "[server\nlisten=x\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) c = lmtpd_config_load (path, &error);
  g_assert_null (c);
  g_assert_nonnull (strstr (error->message, path));
}

static void
test_users_map (void)
{
  g_autofree char *map = write_file ("users", "# users\nJoe@Example.org\nann@example.org /srv/ann\n"
                                               "bad line with three\n");
  g_autofree char *text = g_strdup_printf ("[users]\nmap = %s\n", map);
  g_autofree char *path = write_file ("users.conf", text);
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) c = lmtpd_config_load (path, &error);
  g_autofree char *l4 = g_strdup_printf ("%s:4:", map);
  const char *mbox = NULL;

  g_assert_null (c);
  g_assert_nonnull (strstr (error->message, l4));
  g_clear_error (&error);

  g_assert_true (g_file_set_contents (map, "Joe@Example.org\nann@example.org /srv/ann\n", -1, NULL));
  c = lmtpd_config_load (path, &error);
  g_assert_no_error (error);
  g_assert_true (lmtpd_config_lookup_user (c, "joe@example.org", &mbox));
  g_assert_null (mbox);
  g_assert_true (lmtpd_config_lookup_user (c, "ann@example.org", &mbox));
  g_assert_cmpstr (mbox, ==, "/srv/ann");
  g_assert_false (lmtpd_config_lookup_user (c, "eve@example.org", NULL));
}

static void
test_listen_parse (void)
{
  static const struct { const char *spec; gboolean ok; const char *round; } cases[] = {
    { "inet:127.0.0.1:24", TRUE, "inet:127.0.0.1:24" },
    { "inet:[::1]:2424", TRUE, "inet:[::1]:2424" },
    { "inet:localhost:0", TRUE, "inet:localhost:0" },
    { "unix:/run/lmtpd.sock", TRUE, "unix:/run/lmtpd.sock" },
    { "inet:127.0.0.1", FALSE, NULL },
    { "inet:127.0.0.1:99999", FALSE, NULL },
    { "unix:", FALSE, NULL },
    { "127.0.0.1:24", FALSE, NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      LmtpdListen *l = lmtpd_listen_parse (cases[i].spec, &error);
      if (!cases[i].ok)
        {
          g_assert_null (l);
          g_assert_nonnull (error);
          continue;
        }
      g_assert_no_error (error);
      {
        g_autofree char *s = lmtpd_listen_to_string (l);
        g_assert_cmpstr (s, ==, cases[i].round);
      }
      lmtpd_listen_free (l);
    }
}

/* Every key row of every table: the main table's, and for each of its
 * ->named rows ([service NAME], [rule NAME]) the rows of that table. */
static GPtrArray *
all_rows (void)
{
  GPtrArray *rows = g_ptr_array_new ();

  /* the main table and its continuations (conf/ops-settings.c) */
  for (const ConfTable *t = &conf_main_table; t; t = t->more)
    for (gsize i = 0; i < t->n_rows; i++)
      {
        const ConfSetting *s = &t->rows[i];
        if (s->named == NULL)
          g_ptr_array_add (rows, (gpointer) s);
        for (gsize j = 0; s->named && j < s->named->n_rows; j++)
          g_ptr_array_add (rows, (gpointer) &s->named->rows[j]);
      }
  return rows;
}

static gboolean
in_table (const char *group, const char *key)
{
  g_autoptr (GPtrArray) rows = all_rows ();

  for (guint i = 0; i < rows->len; i++)
    {
      const ConfSetting *s = rows->pdata[i];
      if (strcmp (s->group, group) == 0 && strcmp (s->key, key) == 0)
        return TRUE;
    }
  return FALSE;
}

/* The arguments of a roff request line, "quoted" ones as one. */
static GPtrArray *
roff_args (const char *line)
{
  GPtrArray *args = g_ptr_array_new_with_free_func (g_free);
  const char *p = line;

  while (*p)
    {
      const char *start;
      while (*p == ' ')
        p++;
      if (*p == '\0')
        break;
      if (*p == '"')
        {
          start = ++p;
          while (*p && *p != '"')
            p++;
          g_ptr_array_add (args, g_strndup (start, p - start));
          if (*p)
            p++;
          continue;
        }
      start = p;
      while (*p && *p != ' ')
        p++;
      g_ptr_array_add (args, g_strndup (start, p - start));
    }
  return args;
}

/* The groups a ".SS [server]" or ".SS [users], [mailboxes]" heading names
 * ("service" for "[service NAME]"). */
static char **
section_groups (const char *heading)
{
  g_autoptr (GPtrArray) groups = g_ptr_array_new ();

  for (const char *p = strchr (heading, '['); p; p = strchr (p + 1, '['))
    g_ptr_array_add (groups, g_strndup (p + 1, strcspn (p + 1, " ]")));
  g_ptr_array_add (groups, NULL);
  return (char **) g_ptr_array_free (g_steal_pointer (&groups), FALSE);
}

/* Bold words of a .B or .BR line (.BR alternates bold and roman) that
 * look like keys. */
static void
add_documented_keys (const char *line, char **groups, GHashTable *documented, GString *wrong)
{
  gboolean alternate = g_str_has_prefix (line, ".BR ");
  g_autoptr (GPtrArray) args = roff_args (line + (alternate ? 4 : 3));

  for (guint i = 0; i < args->len; i += alternate ? 2 : 1)
    {
      const char *key = args->pdata[i];
      gboolean found = FALSE;
      if (!g_regex_match_simple ("^[a-z][a-z0-9_]*$", key, 0, 0))
        continue;
      for (guint g = 0; groups[g]; g++)
        if (in_table (groups[g], key))
          {
            g_hash_table_add (documented, g_strdup_printf ("%s\n%s", groups[g], key));
            found = TRUE;
          }
      if (!found)
        g_string_append_printf (wrong, "documented but not in the table: %s\n", key);
    }
}

/* docs/man/lmtpd.conf.5 lists the keys of each group under ".SS [group]":
 * the .B/.BR line right after the .SS or a .TP. */
static GHashTable *
man_page_keys (const char *text, GString *wrong)
{
  GHashTable *documented = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  g_auto (GStrv) groups = NULL;

  for (guint i = 0; lines[i]; i++)
    {
      const char *prev = i ? lines[i - 1] : "";
      if (g_str_has_prefix (lines[i], ".SH "))
        g_clear_pointer (&groups, g_strfreev);
      else if (g_str_has_prefix (lines[i], ".SS "))
        {
          g_strfreev (groups);
          groups = section_groups (lines[i]);
        }
      else if (groups && (g_str_has_prefix (lines[i], ".B ") || g_str_has_prefix (lines[i], ".BR "))
               && (strcmp (prev, ".TP") == 0 || g_str_has_prefix (prev, ".SS ")))
        add_documented_keys (lines[i], groups, documented, wrong);
    }
  return documented;
}

static void
test_man_page (void)
{
  g_autofree char *path = g_build_filename (TEST_DATA_DIR, "..", "..", "docs", "man", "lmtpd.conf.5", NULL);
  g_autofree char *text = NULL;
  g_autoptr (GString) wrong = g_string_new (NULL);
  g_autoptr (GHashTable) documented = NULL;
  g_autoptr (GPtrArray) rows = NULL;

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  documented = man_page_keys (text, wrong);
  rows = all_rows ();
  g_assert_cmpuint (rows->len, >, conf_main_table.n_rows); /* the named tables' rows are in */
  for (guint i = 0; i < rows->len; i++)
    {
      const ConfSetting *s = rows->pdata[i];
      g_autofree char *k = g_strdup_printf ("%s\n%s", s->group, s->key);
      if (strcmp (s->key, "*") != 0 && !g_hash_table_contains (documented, k))
        g_string_append_printf (wrong, "[%s] %s is not documented\n", s->group, s->key);
      g_assert_nonnull (s->doc);
    }
  if (wrong->len)
    g_test_message ("%s: %s", path, wrong->str);
  g_assert_cmpuint (wrong->len, ==, 0);
}

/* The table's defaults are what an empty file gives, and the settings a
 * reload cannot apply are named with their values as text. */
static void
test_reload_differences (void)
{
  g_autofree char *path = write_file ("reload.conf",
    "[server]\nlisten = inet:127.0.0.1:2424;unix:/tmp/x.sock\ndelivery_threads = 8\n"
    "max_sessions = 7\nmetrics_listen = inet:127.0.0.1:9101\nuser = \n");
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) old = lmtpd_config_new_default ();
  g_autoptr (LmtpdConfig) now = lmtpd_config_load (path, &error);
  g_autoptr (GPtrArray) same = NULL, changes = NULL;
  const LmtpdConfigChange *ch;

  g_assert_no_error (error);
  same = lmtpd_config_reload_differences (old, old);
  g_assert_cmpuint (same->len, ==, 0);
  changes = lmtpd_config_reload_differences (old, now);
  /* max_sessions and delivery_threads are reload-safe; "" is unset */
  g_assert_cmpuint (changes->len, ==, 2);
  ch = changes->pdata[0];
  g_assert_cmpstr (ch->group, ==, "server");
  g_assert_cmpstr (ch->key, ==, "listen");
  g_assert_cmpstr (ch->was, ==, "inet:127.0.0.1:2424");
  g_assert_cmpstr (ch->now, ==, "inet:127.0.0.1:2424;unix:/tmp/x.sock");
  ch = changes->pdata[1];
  g_assert_cmpstr (ch->key, ==, "metrics_listen");
  g_assert_null (ch->was);
  g_assert_cmpstr (ch->now, ==, "inet:127.0.0.1:9101");
}

/* The users map's quota= takes sizes as [limits] does (one parser). */
static void
test_quota_sizes (void)
{
  g_autofree char *map = write_file ("quota-users", "a@example.org quota=10M\nb@example.org quota=10MB\n"
                                                     "c@example.org quota=2g quota_messages=1k\n");
  g_autofree char *text = g_strdup_printf ("[users]\nmap = %s\n", map);
  g_autofree char *path = write_file ("quota.conf", text);
  g_autoptr (GError) error = NULL;
  g_autoptr (LmtpdConfig) c = lmtpd_config_load (path, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (lmtpd_config_get_user (c, "a@example.org")->quota_bytes, ==, 10 * 1024 * 1024);
  g_assert_cmpuint (lmtpd_config_get_user (c, "b@example.org")->quota_bytes, ==, 10 * 1024 * 1024);
  g_assert_cmpuint (lmtpd_config_get_user (c, "c@example.org")->quota_bytes, ==, G_GUINT64_CONSTANT (2) << 30);
  g_assert_cmpuint (lmtpd_config_get_user (c, "c@example.org")->quota_messages, ==, 1024);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  g_test_add_func ("/config/example", test_example);
  g_test_add_func ("/config/days", test_days);
  g_test_add_func ("/config/errors", test_errors);
  g_test_add_func ("/config/postfix-listeners", test_postfix_listeners);
  g_test_add_func ("/config/syntax-error", test_syntax_error);
  g_test_add_func ("/config/sieve", test_sieve);
  g_test_add_func ("/config/users-map", test_users_map);
  g_test_add_func ("/config/listen-parse", test_listen_parse);
  g_test_add_func ("/config/man-page", test_man_page);
  g_test_add_func ("/config/reload-differences", test_reload_differences);
  g_test_add_func ("/config/quota-sizes", test_quota_sizes);
  return g_test_run ();
}
