/* test-dir-pgsql.c - the pgsql backend's reading of a row
 * (directory/dir-pgsql-row.c), on results made by libpq without a server:
 * columns by name, text[] and text settings, and the values that are a bad
 * answer (TEMPFAIL) rather than a user.
 */
#include "config.h"

#include <string.h>

#include "dir-pgsql.h"

#define TEXTOID 25
#define TEXTARRAYOID 1009

/* A result of one row: @names with their @values (NULL: SQL NULL); the
 * column "settings" is a text[] if @settings_array. */
static PGresult *
make_result (const char *const *names, const char *const *values, int n, int rows, gboolean settings_array)
{
  PGresult *res = PQmakeEmptyPGresult (NULL, PGRES_TUPLES_OK);
  PGresAttDesc attrs[16];

  g_assert_cmpint (n, <=, 16);
  memset (attrs, 0, sizeof attrs);
  for (int i = 0; i < n; i++)
    {
      attrs[i].name = (char *) names[i];
      attrs[i].typid = settings_array && strcmp (names[i], "settings") == 0 ? TEXTARRAYOID : TEXTOID;
      attrs[i].typlen = -1;
      attrs[i].atttypmod = -1;
    }
  g_assert_true (PQsetResultAttrs (res, n, attrs));
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < n; i++)
      g_assert_true (PQsetvalue (res, r, i, (char *) values[i], values[i] ? (int) strlen (values[i]) : -1));
  return res;
}

static DirectoryResult
read_one (const char *name, const char *value, gboolean array, DirectoryUser **out, GError **error)
{
  const char *names[] = { "unused", name };
  const char *values[] = { "a column lmtpd does not read", value };
  PGresult *res = make_result (names, values, 2, 1, array);
  DirectoryResult r = pgsql_row_user (res, "x@example.org", out, error);

  PQclear (res);
  return r;
}

static void
test_columns_by_name (void)
{
  const char *names[] = { "host", "extra", "quota_bytes", "mailbox", "enabled", "alias_of", "quota_messages",
                          "sieve_script" };
  const char *values[] = { "node2", "ignored", "10240", "mbox:m/x", "f", NULL, "7", "sieve/x.sieve" };
  PGresult *res = make_result (names, values, 8, 1, FALSE);
  g_autoptr (DirectoryUser) u = NULL;

  g_assert_cmpint (pgsql_row_user (res, "x@example.org", &u, NULL), ==, DIRECTORY_FOUND);
  g_assert_cmpstr (u->address, ==, "x@example.org");
  g_assert_cmpstr (u->mailbox, ==, "mbox:m/x");
  g_assert_cmpuint (u->quota_bytes, ==, 10240);
  g_assert_cmpuint (u->quota_messages, ==, 7);
  g_assert_cmpstr (u->sieve_script, ==, "sieve/x.sieve");
  g_assert_true (u->disabled);
  g_assert_null (u->alias_of);
  g_assert_cmpstr (u->host, ==, "node2");
  g_assert_null (u->settings);
  PQclear (res);
}

static void
test_rows (void)
{
  const char *names[] = { "mailbox" };
  const char *values[] = { "x" };
  g_autoptr (GError) error = NULL;
  PGresult *none = make_result (names, values, 1, 0, FALSE), *two = make_result (names, values, 1, 2, FALSE);

  g_assert_cmpint (pgsql_row_user (none, "x@example.org", NULL, NULL), ==, DIRECTORY_UNKNOWN);
  g_assert_cmpint (pgsql_row_user (two, "x@example.org", NULL, &error), ==, DIRECTORY_TEMPFAIL);
  g_assert_nonnull (strstr (error->message, "configuration error"));
  PQclear (none);
  PQclear (two);
}

static void
test_enabled (void)
{
  static const struct { const char *v; DirectoryResult r; gboolean disabled; } cases[] = {
    { "t", DIRECTORY_FOUND, FALSE }, { "1", DIRECTORY_FOUND, FALSE }, { "TRUE", DIRECTORY_FOUND, FALSE },
    { NULL, DIRECTORY_FOUND, FALSE }, { "f", DIRECTORY_FOUND, TRUE }, { "0", DIRECTORY_FOUND, TRUE },
    { "no", DIRECTORY_FOUND, TRUE }, { "maybe", DIRECTORY_TEMPFAIL, FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (DirectoryUser) u = NULL;
      g_autoptr (GError) error = NULL;

      g_assert_cmpint (read_one ("enabled", cases[i].v, FALSE, &u, &error), ==, cases[i].r);
      if (cases[i].r == DIRECTORY_FOUND)
        g_assert_cmpint (u->disabled, ==, cases[i].disabled);
      else
        g_assert_nonnull (error);
    }
}

static void
test_settings (void)
{
  static const struct { const char *v; gboolean array; const char *want; } cases[] = {
    { "{\"Spam-Policy: strict\",NULL,\"Link-Size: 10 \\\"k\\\"\"}", TRUE, "Spam-Policy: strict|Link-Size: 10 \"k\"" },
    { "{Class:x}", TRUE, "Class:x" },
    { "[0:1]={A: 1,B: 2}", TRUE, "A: 1|B: 2" },
    { "{}", TRUE, NULL },
    { "Spam-Policy: strict\r\n\nLink-Size: 10\n", FALSE, "Spam-Policy: strict|Link-Size: 10" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (DirectoryUser) u = NULL;
      g_autofree char *got = NULL;

      g_assert_cmpint (read_one ("settings", cases[i].v, cases[i].array, &u, NULL), ==, DIRECTORY_FOUND);
      got = u->settings ? g_strjoinv ("|", u->settings) : NULL;
      g_assert_cmpstr (got, ==, cases[i].want);
    }
}

/* What a row may not say: TEMPFAIL with a reason, never a user. */
static void
test_bad_answers (void)
{
  static const struct { const char *name, *v; gboolean array; } cases[] = {
    { "settings", "no colon here", FALSE },
    { "settings", "X-Bad: a\rb", FALSE },
    { "settings", "{{A: 1},{B: 2}}", TRUE },
    { "settings", "{\"A: 1\"", TRUE },
    { "settings", "A: 1", TRUE },
    { "quota_bytes", "-1", FALSE },
    { "quota_bytes", "10k", FALSE },
    { "quota_messages", "99999999999999999999999", FALSE },
    { "mailbox", "maildir:../../etc", FALSE },
    { "sieve_script", "a/../b", FALSE },
    { "alias_of", "nobody", FALSE },
    { "alias_of", "a b@example.org", FALSE },
    { "host", "node\n2", FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (DirectoryUser) u = NULL;
      g_autoptr (GError) error = NULL;

      g_assert_cmpint (read_one (cases[i].name, cases[i].v, cases[i].array, &u, &error), ==, DIRECTORY_TEMPFAIL);
      g_assert_null (u);
      g_assert_nonnull (strstr (error->message, cases[i].name));
    }
}

static void
test_too_many_settings (void)
{
  GString *s = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (DirectoryUser) u = NULL;

  for (int i = 0; i < 1000; i++)
    g_string_append_printf (s, "S%d: v\n", i);
  g_assert_cmpint (read_one ("settings", s->str, FALSE, &u, &error), ==, DIRECTORY_TEMPFAIL);
  g_string_free (s, TRUE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/dir-pgsql/columns-by-name", test_columns_by_name);
  g_test_add_func ("/dir-pgsql/rows", test_rows);
  g_test_add_func ("/dir-pgsql/enabled", test_enabled);
  g_test_add_func ("/dir-pgsql/settings", test_settings);
  g_test_add_func ("/dir-pgsql/bad-answers", test_bad_answers);
  g_test_add_func ("/dir-pgsql/too-many-settings", test_too_many_settings);
  return g_test_run ();
}
