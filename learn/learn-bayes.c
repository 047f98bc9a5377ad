/* learn-bayes.c - the builtin scorer's memory: per-user token counts in an
 * SQLite file (Robinson's take on Graham's naive Bayes).  lmtpd's learner
 * adds the tokens of a message the user moved into or out of Junk; the
 * builtin scorer of ocp-services reads them and combines the most telling
 * ones with Fisher's method (as SpamBayes does).  Bounded everywhere: the
 * part of a message read, tokens per message, counts per token, tokens per
 * user (the least recently seen go first) and their age.
 */
#include "config.h"

#include <math.h>
#include <sqlite3.h>
#include <string.h>

#include "learn.h"

#define SCAN_MAX (256 * 1024)       /* bytes of a message tokenized */
#define TOKENS_MAX 1500             /* distinct tokens of one message */
#define TOKEN_MIN 3
#define TOKEN_MAX 32
#define COUNT_CAP 65535             /* per token and class */
#define USER_TOKENS_MAX 150000      /* per user; the least recently seen go */
#define TOKEN_AGE_MAX (180 * 86400) /* tokens not seen for this long go */
#define INTERESTING_MAX 15          /* tokens that decide */
#define ROBINSON_S 1.0              /* strength of the 0.5 prior */
#define ROBINSON_X 0.5

struct _LearnBayes {
  sqlite3 *db;
};

static const char schema[] =
  "CREATE TABLE IF NOT EXISTS bayes_tokens (user TEXT NOT NULL, token TEXT NOT NULL,"
  " spam INTEGER NOT NULL DEFAULT 0, ham INTEGER NOT NULL DEFAULT 0, atime INTEGER NOT NULL,"
  " PRIMARY KEY (user, token));"
  "CREATE INDEX IF NOT EXISTS bayes_tokens_age ON bayes_tokens (user, atime);"
  "CREATE TABLE IF NOT EXISTS bayes_totals (user TEXT PRIMARY KEY,"
  " spam INTEGER NOT NULL DEFAULT 0, ham INTEGER NOT NULL DEFAULT 0);";

static gboolean
db_fail (sqlite3 *db, const char *what, GError **error)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "bayes: %s: %s", what, sqlite3_errmsg (db));
  return FALSE;
}

LearnBayes *
learn_bayes_open (const char *path, gboolean writable, GError **error)
{
  int flags = writable ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
  LearnBayes *b = g_new0 (LearnBayes, 1);

  if (sqlite3_open_v2 (path, &b->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK
      || sqlite3_busy_timeout (b->db, 2000) != SQLITE_OK
      || (writable && sqlite3_exec (b->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK)
      || (writable && sqlite3_exec (b->db, schema, NULL, NULL, NULL) != SQLITE_OK))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "bayes: %s: %s", path,
                   b->db ? sqlite3_errmsg (b->db) : "out of memory");
      learn_bayes_close (b);
      return NULL;
    }
  return b;
}

void
learn_bayes_close (LearnBayes *b)
{
  if (b == NULL)
    return;
  sqlite3_close (b->db);
  g_free (b);
}

/* Adds the words of @p..@end to @set, prefixed by @prefix. */
static void
add_words (GHashTable *set, const char *prefix, const char *p, const char *end)
{
  while (p < end && g_hash_table_size (set) < TOKENS_MAX)
    {
      const char *w = p;
      while (p < end && (g_ascii_isalnum (*p) || (guchar) *p >= 0x80 || *p == '$' || *p == '\''))
        p++;
      if (p - w >= TOKEN_MIN && p - w <= TOKEN_MAX)
        {
          g_autofree char *lower = g_ascii_strdown (w, p - w);
          g_hash_table_add (set, g_strconcat (prefix, lower, NULL));
        }
      while (p < end && !(g_ascii_isalnum (*p) || (guchar) *p >= 0x80))
        p++;
    }
}

/* The message's distinct tokens: the words of Subject and From (marked as
 * such) and of the body, from the first SCAN_MAX bytes. */
static GHashTable *
tokenize (const char *msg, gsize len)
{
  GHashTable *set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  const char *end = msg + MIN (len, SCAN_MAX);
  const char *p = msg;

  while (p < end && *p != '\n' && *p != '\r')
    {
      const char *eol = memchr (p, '\n', end - p);
      eol = eol ? eol : end;
      if (g_ascii_strncasecmp (p, "Subject:", 8) == 0)
        add_words (set, "s:", p + 8, eol);
      else if (g_ascii_strncasecmp (p, "From:", 5) == 0)
        add_words (set, "f:", p + 5, eol);
      p = eol < end ? eol + 1 : end;
    }
  add_words (set, "", p, end);
  return set;
}

static gboolean
exec_user (sqlite3 *db, const char *sql, const char *user, gint64 n, GError **error)
{
  sqlite3_stmt *st = NULL;
  int rc;

  if (sqlite3_prepare_v2 (db, sql, -1, &st, NULL) != SQLITE_OK)
    return db_fail (db, "prepare", error);
  sqlite3_bind_text (st, 1, user, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 2, n);
  rc = sqlite3_step (st);
  sqlite3_finalize (st);
  return rc == SQLITE_DONE || db_fail (db, "write", error);
}

/* Adds one to each token's count of the class. */
static gboolean
count_tokens (sqlite3 *db, const char *user, gboolean spam, GHashTable *tokens, gint64 now, GError **error)
{
  static const char sql[] =
    "INSERT INTO bayes_tokens (user, token, spam, ham, atime) VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT (user, token) DO UPDATE SET spam = min(spam + excluded.spam, 65535),"
    " ham = min(ham + excluded.ham, 65535), atime = excluded.atime";
  sqlite3_stmt *st = NULL;
  GHashTableIter it;
  gpointer token;
  gboolean ok = TRUE;

  G_STATIC_ASSERT (COUNT_CAP == 65535);
  if (sqlite3_prepare_v2 (db, sql, -1, &st, NULL) != SQLITE_OK)
    return db_fail (db, "prepare", error);
  g_hash_table_iter_init (&it, tokens);
  while (ok && g_hash_table_iter_next (&it, &token, NULL))
    {
      sqlite3_bind_text (st, 1, user, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 2, token, -1, SQLITE_STATIC);
      sqlite3_bind_int (st, 3, spam ? 1 : 0);
      sqlite3_bind_int (st, 4, spam ? 0 : 1);
      sqlite3_bind_int64 (st, 5, now);
      ok = sqlite3_step (st) == SQLITE_DONE || db_fail (db, "write", error);
      sqlite3_reset (st);
    }
  sqlite3_finalize (st);
  return ok;
}

/* Old tokens go, then the least recently seen beyond the per-user cap. */
static gboolean
prune (sqlite3 *db, const char *user, gint64 now, GError **error)
{
  return exec_user (db, "DELETE FROM bayes_tokens WHERE user = ?1 AND atime < ?2", user, now - TOKEN_AGE_MAX,
                    error)
         && exec_user (db,
                       "DELETE FROM bayes_tokens WHERE rowid IN (SELECT rowid FROM bayes_tokens WHERE user = ?1"
                       " ORDER BY atime DESC LIMIT -1 OFFSET ?2)",
                       user, USER_TOKENS_MAX, error);
}

gboolean
learn_bayes_learn (LearnBayes *b, const char *user, gboolean spam, const char *msg, gsize len, GError **error)
{
  g_autoptr (GHashTable) tokens = tokenize (msg, len);
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  const char *total = spam ? "INSERT INTO bayes_totals (user, spam) VALUES (?1, ?2) ON CONFLICT (user)"
                             " DO UPDATE SET spam = spam + 1"
                           : "INSERT INTO bayes_totals (user, ham) VALUES (?1, ?2) ON CONFLICT (user)"
                             " DO UPDATE SET ham = ham + 1";

  if (sqlite3_exec (b->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return db_fail (b->db, "begin", error);
  if (exec_user (b->db, total, user, 1, error) && count_tokens (b->db, user, spam, tokens, now, error)
      && prune (b->db, user, now, error))
    {
      if (sqlite3_exec (b->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return TRUE;
      db_fail (b->db, "commit", error);
    }
  sqlite3_exec (b->db, "ROLLBACK", NULL, NULL, NULL);
  return FALSE;
}

/* The messages @user learned of each class; FALSE if none at all. */
static gboolean
user_totals (sqlite3 *db, const char *user, gint64 *nspam, gint64 *nham)
{
  sqlite3_stmt *st = NULL;
  gboolean found = FALSE;

  *nspam = *nham = 0;
  if (sqlite3_prepare_v2 (db, "SELECT spam, ham FROM bayes_totals WHERE user = ?1", -1, &st, NULL) != SQLITE_OK)
    return FALSE;
  sqlite3_bind_text (st, 1, user, -1, SQLITE_STATIC);
  if (sqlite3_step (st) == SQLITE_ROW)
    {
      *nspam = sqlite3_column_int64 (st, 0);
      *nham = sqlite3_column_int64 (st, 1);
      found = *nspam + *nham > 0;
    }
  sqlite3_finalize (st);
  return found;
}

/* Robinson's f(w): the token's spam probability pulled toward 0.5 when it
 * was seen only a few times. */
static double
token_probability (gint64 spam, gint64 ham, gint64 nspam, gint64 nham)
{
  double sr = (double) spam / MAX (nspam, 1), hr = (double) ham / MAX (nham, 1);
  double n = spam + ham;
  double p = sr + hr > 0 ? sr / (sr + hr) : ROBINSON_X;

  return (ROBINSON_S * ROBINSON_X + n * p) / (ROBINSON_S + n);
}

/* The chi-square survival function for an even number of degrees. */
static double
chi2q (double x2, int v)
{
  double m = x2 / 2.0, sum, term;

  sum = term = exp (-m);
  for (int i = 1; i < v / 2; i++)
    {
      term *= m / i;
      sum += term;
    }
  return MIN (sum, 1.0);
}

static int
by_interest (gconstpointer a, gconstpointer b)
{
  double da = fabs (*(const double *) a - 0.5), db = fabs (*(const double *) b - 0.5);
  return da < db ? 1 : da > db ? -1 : 0;
}

/* Fisher's combination of the most telling probabilities (SpamBayes). */
static double
combine (GArray *fs)
{
  double lnh = 0, lns = 0;
  guint n = MIN (fs->len, INTERESTING_MAX);

  g_array_sort (fs, by_interest);
  if (n == 0)
    return 0.5;
  for (guint i = 0; i < n; i++)
    {
      double f = CLAMP (g_array_index (fs, double, i), 0.001, 0.999);
      lnh += log (f);
      lns += log (1.0 - f);
    }
  return (1.0 + chi2q (-2.0 * lnh, 2 * n) - chi2q (-2.0 * lns, 2 * n)) / 2.0;
}

/* Each known token's f(w) into @fs. */
static gboolean
token_probabilities (sqlite3 *db, const char *user, GHashTable *tokens, gint64 nspam, gint64 nham, GArray *fs,
                     GError **error)
{
  sqlite3_stmt *st = NULL;
  GHashTableIter it;
  gpointer token;

  if (sqlite3_prepare_v2 (db, "SELECT spam, ham FROM bayes_tokens WHERE user = ?1 AND token = ?2", -1, &st,
                          NULL) != SQLITE_OK)
    return db_fail (db, "prepare", error);
  g_hash_table_iter_init (&it, tokens);
  while (g_hash_table_iter_next (&it, &token, NULL))
    {
      sqlite3_bind_text (st, 1, user, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 2, token, -1, SQLITE_STATIC);
      if (sqlite3_step (st) == SQLITE_ROW)
        {
          double f = token_probability (sqlite3_column_int64 (st, 0), sqlite3_column_int64 (st, 1), nspam, nham);
          g_array_append_val (fs, f);
        }
      sqlite3_reset (st);
    }
  sqlite3_finalize (st);
  return TRUE;
}

gboolean
learn_bayes_classify (LearnBayes *b, const char *user, const char *msg, gsize len, double *out_prob,
                      guint *out_tokens, GError **error)
{
  g_autoptr (GHashTable) tokens = NULL;
  g_autoptr (GArray) fs = NULL;
  gint64 nspam, nham;

  *out_prob = 0.5;
  *out_tokens = 0;
  if (!user_totals (b->db, user, &nspam, &nham))
    return FALSE;
  tokens = tokenize (msg, len);
  fs = g_array_new (FALSE, FALSE, sizeof (double));
  if (!token_probabilities (b->db, user, tokens, nspam, nham, fs, error))
    return FALSE;
  *out_tokens = MIN (fs->len, INTERESTING_MAX);
  *out_prob = combine (fs);
  return TRUE;
}

gint64
learn_bayes_token_count (LearnBayes *b, const char *user, gint64 *out_spam, gint64 *out_ham)
{
  sqlite3_stmt *st = NULL;
  gint64 n = -1;

  user_totals (b->db, user, out_spam, out_ham);
  if (sqlite3_prepare_v2 (b->db, "SELECT count(*) FROM bayes_tokens WHERE user = ?1", -1, &st, NULL) != SQLITE_OK)
    return -1;
  sqlite3_bind_text (st, 1, user, -1, SQLITE_STATIC);
  if (sqlite3_step (st) == SQLITE_ROW)
    n = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  return n;
}
