/* dir-ldap.c - the "ldap" backend: users from an LDAP server, with
 * OpenLDAP's libldap.
 *
 * One search per lookup: [users] ldap_filter with %u %n %d replaced by the
 * address, its local part and its domain, each escaped by libldap
 * (RFC 4515) so an address cannot change the filter's meaning.  The entry's
 * attributes, named by the ldap_*_attribute settings, make the user.  More
 * than one entry for an address is a directory that cannot be trusted to
 * answer (TEMPFAIL), never one picked at random.
 *
 * A small pool of bound connections serves the delivery threads; a
 * connection that fails is dropped and the next one is made to the next
 * URI (failover).  Nothing connects until the first lookup, so lmtpd starts
 * while the server is down.  libldap's own timeouts (network, operation)
 * and the search time limit bound each lookup by lookup_timeout.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <ldap.h>

#include "directory.h"

#define POOL_MAX 4         /* connections per directory */
#define MAX_URIS 16
#define MAX_FILTER 4096    /* bytes of a filter once expanded */
#define MAX_VALUE 4096     /* bytes of one attribute value */
#define MAX_SETTINGS 64    /* values of the settings attribute */

typedef struct {
  char **uris;
  char *base, *filter, *bind_dn, *password, *ca_file;
  int scope;
  gboolean starttls;
  char *attr_mailbox, *attr_quota, *attr_quota_messages, *attr_sieve, *attr_enabled, *enabled_value,
    *attr_alias, *attr_settings, *attr_host;
  char *attrs[10];         /* the attributes a search asks for, NULL-terminated */

  GMutex lock;
  GCond freed;
  GPtrArray *idle;         /* LDAP* bound and unused */
  guint open;              /* connections made and not dropped */
  guint next_uri;          /* where the next connection starts: the last that worked */
} LdapDirectory;

static GQuark
ldir_error_quark (void)
{
  return g_quark_from_static_string ("lmtpd-ldap-error");
}

/* ---- opening ------------------------------------------------------------- */

/* The bind password: the file's first line. */
static char *
read_password (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &text, &len, error))
    return NULL;
  text[strcspn (text, "\r\n")] = '\0';
  return g_steal_pointer (&text);
}

static char **
split_uris (const char *text)
{
  g_auto (GStrv) items = g_strsplit_set (text ? text : "", "; \t", -1);
  GPtrArray *out = g_ptr_array_new ();

  for (guint i = 0; items[i] && out->len < MAX_URIS; i++)
    if (items[i][0])
      g_ptr_array_add (out, g_strdup (items[i]));
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

static void
collect_attrs (LdapDirectory *l)
{
  const char *names[] = { l->attr_mailbox, l->attr_quota, l->attr_quota_messages, l->attr_sieve,
                          l->attr_enabled, l->attr_alias, l->attr_settings, l->attr_host };
  guint n = 0;

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (names[i])
      l->attrs[n++] = (char *) names[i];
  if (n == 0)
    l->attrs[n++] = (char *) LDAP_NO_ATTRS;
  l->attrs[n] = NULL;
}

static const int scopes[] = { LDAP_SCOPE_SUBTREE, LDAP_SCOPE_ONELEVEL, LDAP_SCOPE_BASE };

static gpointer
ldir_open (const LmtpdConfig *c, GError **error)
{
  LdapDirectory *l = g_new0 (LdapDirectory, 1);

  if (c->ldap_bind_password_file && (l->password = read_password (c->ldap_bind_password_file, error)) == NULL)
    {
      g_free (l);
      return NULL;
    }
  l->uris = split_uris (c->ldap_uris);
  l->base = g_strdup (c->ldap_base ? c->ldap_base : "");
  l->filter = g_strdup (c->ldap_filter);
  l->bind_dn = g_strdup (c->ldap_bind_dn);
  l->ca_file = g_strdup (c->ldap_tls_ca_file);
  l->scope = scopes[c->ldap_scope];
  l->starttls = c->ldap_starttls;
  l->attr_mailbox = g_strdup (c->ldap_mailbox_attribute);
  l->attr_quota = g_strdup (c->ldap_quota_attribute);
  l->attr_quota_messages = g_strdup (c->ldap_quota_messages_attribute);
  l->attr_sieve = g_strdup (c->ldap_sieve_attribute);
  l->attr_enabled = g_strdup (c->ldap_enabled_attribute);
  l->enabled_value = g_strdup (c->ldap_enabled_value ? c->ldap_enabled_value : "");
  l->attr_alias = g_strdup (c->ldap_alias_attribute);
  l->attr_settings = g_strdup (c->ldap_settings_attribute);
  l->attr_host = g_strdup (c->ldap_host_attribute);
  collect_attrs (l);
  g_mutex_init (&l->lock);
  g_cond_init (&l->freed);
  l->idle = g_ptr_array_new ();
  return l;
}

static void
ldir_close (gpointer backend)
{
  LdapDirectory *l = backend;

  for (guint i = 0; i < l->idle->len; i++)
    ldap_unbind_ext_s (l->idle->pdata[i], NULL, NULL);
  g_ptr_array_unref (l->idle);
  g_mutex_clear (&l->lock);
  g_cond_clear (&l->freed);
  g_strfreev (l->uris);
  if (l->password)
    memset (l->password, 0, strlen (l->password));
  g_free (l->password);
  g_free (l->base), g_free (l->filter), g_free (l->bind_dn), g_free (l->ca_file);
  g_free (l->attr_mailbox), g_free (l->attr_quota), g_free (l->attr_quota_messages), g_free (l->attr_sieve);
  g_free (l->attr_enabled), g_free (l->enabled_value), g_free (l->attr_alias), g_free (l->attr_settings);
  g_free (l->attr_host);
  g_free (l);
}

/* ---- connections ----------------------------------------------------------- */

/* What is left of a lookup's time (at least 1 ms: libldap takes a zero
 * timeout as "none"). */
static struct timeval
time_left (gint64 deadline)
{
  gint64 us = MAX (deadline - g_get_monotonic_time (), 1000);
  return (struct timeval) { us / G_USEC_PER_SEC, us % G_USEC_PER_SEC };
}

/* libldap's own timeouts, for the connection and each synchronous
 * operation (StartTLS, bind) of this lookup. */
static void
set_timeouts (LDAP *ld, gint64 deadline)
{
  struct timeval tv = time_left (deadline);
  int version = LDAP_VERSION3;

  ldap_set_option (ld, LDAP_OPT_PROTOCOL_VERSION, &version);
  ldap_set_option (ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
  ldap_set_option (ld, LDAP_OPT_TIMEOUT, &tv);
  ldap_set_option (ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
}

/* The handle's TLS: its own context, verifying against ldap_tls_ca_file. */
static int
set_tls (LdapDirectory *l, LDAP *ld)
{
  int demand = LDAP_OPT_X_TLS_DEMAND, zero = 0, rc = LDAP_SUCCESS;

  if (l->ca_file)
    rc = ldap_set_option (ld, LDAP_OPT_X_TLS_CACERTFILE, l->ca_file);
  if (rc == LDAP_SUCCESS)
    rc = ldap_set_option (ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
  if (rc == LDAP_SUCCESS)
    rc = ldap_set_option (ld, LDAP_OPT_X_TLS_NEWCTX, &zero);
  return rc;
}

/* One connection to @uri bound as @dn with @password (NULL: anonymous),
 * or NULL with @error (its code libldap's). */
static LDAP *
connect_as (LdapDirectory *l, const char *uri, const char *dn, const char *password, gint64 deadline,
            GError **error)
{
  struct berval cred = { 0, NULL };
  LDAP *ld = NULL;
  int rc = ldap_initialize (&ld, uri);

  if (rc == LDAP_SUCCESS)
    {
      set_timeouts (ld, deadline);
      rc = set_tls (l, ld);
    }
  if (rc == LDAP_SUCCESS && l->starttls && g_str_has_prefix (uri, "ldap://"))
    rc = ldap_start_tls_s (ld, NULL, NULL);
  if (password)
    cred = (struct berval) { strlen (password), (char *) password };
  /* an anonymous bind too: it opens the connection, so a dead server is
   * found here and the next URI tried */
  if (rc == LDAP_SUCCESS)
    rc = ldap_sasl_bind_s (ld, dn ? dn : "", LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
  if (rc == LDAP_SUCCESS)
    return ld;
  g_set_error (error, ldir_error_quark (), rc, "%s: %s", uri, ldap_err2string (rc));
  if (ld)
    ldap_unbind_ext_s (ld, NULL, NULL);
  return NULL;
}

/* One bound connection to @uri, or NULL with @error. */
static LDAP *
connect_one (LdapDirectory *l, const char *uri, gint64 deadline, GError **error)
{
  return connect_as (l, uri, l->bind_dn, l->password, deadline, error);
}

/* A new connection: the URIs in order from the last that worked. */
static LDAP *
connect_any (LdapDirectory *l, gint64 deadline, GError **error)
{
  guint n = g_strv_length (l->uris), start;

  g_mutex_lock (&l->lock);
  start = l->next_uri;
  g_mutex_unlock (&l->lock);
  for (guint i = 0; i < n && (i == 0 || g_get_monotonic_time () < deadline); i++)
    {
      guint k = (start + i) % n;
      LDAP *ld;

      g_clear_error (error);
      ld = connect_one (l, l->uris[k], deadline, error);
      if (ld)
        {
          g_mutex_lock (&l->lock);
          l->next_uri = k;
          g_mutex_unlock (&l->lock);
          return ld;
        }
    }
  if (n == 0)
    g_set_error_literal (error, ldir_error_quark (), 0, "no ldap_uris");
  return NULL;
}

/* A connection for one lookup: an idle one, a new one while the pool has
 * room, or the first freed before @deadline. *@reused: it was idle (and
 * may have been closed by the server since). */
static LDAP *
pool_take (LdapDirectory *l, gint64 deadline, gboolean *reused, GError **error)
{
  LDAP *ld = NULL;
  gboolean busy = FALSE;

  g_mutex_lock (&l->lock);
  while (l->idle->len == 0 && l->open >= POOL_MAX)
    if (!g_cond_wait_until (&l->freed, &l->lock, deadline))
      break;
  *reused = l->idle->len > 0;
  if (*reused)
    ld = g_ptr_array_steal_index_fast (l->idle, l->idle->len - 1);
  else if (l->open < POOL_MAX)
    l->open++;
  else
    busy = TRUE;
  g_mutex_unlock (&l->lock);
  if (busy)
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "all LDAP connections busy");
  if (ld || busy)
    return ld;
  ld = connect_any (l, deadline, error);
  if (ld == NULL)
    {
      g_mutex_lock (&l->lock);
      l->open--;
      g_cond_signal (&l->freed);
      g_mutex_unlock (&l->lock);
    }
  return ld;
}

/* Back to the pool, or (@broken) closed with the idle ones: they went to
 * the same server, likely gone too.  The next connection then starts at
 * the next URI. */
static void
pool_give (LdapDirectory *l, LDAP *ld, gboolean broken)
{
  g_autoptr (GPtrArray) drop = g_ptr_array_new ();

  g_mutex_lock (&l->lock);
  if (broken)
    {
      g_ptr_array_add (drop, ld);
      while (l->idle->len)
        g_ptr_array_add (drop, g_ptr_array_steal_index_fast (l->idle, l->idle->len - 1));
      l->open -= drop->len;
      l->next_uri = (l->next_uri + 1) % MAX (1, g_strv_length (l->uris));
    }
  else
    g_ptr_array_add (l->idle, ld);
  g_cond_broadcast (&l->freed);
  g_mutex_unlock (&l->lock);
  for (guint i = 0; i < drop->len; i++)
    ldap_unbind_ext_s (drop->pdata[i], NULL, NULL);
}

/* ---- the filter ------------------------------------------------------------ */

/* @value escaped for a filter (RFC 4515), appended to @out. */
static gboolean
append_escaped (GString *out, const char *value)
{
  struct berval in = { strlen (value), (char *) value }, esc = { 0, NULL };

  if (ldap_bv2escaped_filter_value (&in, &esc) != 0)
    return FALSE;
  g_string_append_len (out, esc.bv_val, esc.bv_len);
  ber_memfree (esc.bv_val);
  return TRUE;
}

/* The filter for @address: the template with %u %n %d %% replaced. */
static char *
make_filter (const char *template, const char *address, GError **error)
{
  const char *at = strrchr (address, '@');
  g_autofree char *local = at ? g_strndup (address, at - address) : g_strdup (address);
  g_autoptr (GString) out = g_string_new (NULL);
  gboolean ok = TRUE;

  for (const char *p = template; *p && ok; p++)
    {
      if (*p != '%' || p[1] == '\0')
        {
          g_string_append_c (out, *p);
          continue;
        }
      p++;
      if (*p == 'u')
        ok = append_escaped (out, address);
      else if (*p == 'n')
        ok = append_escaped (out, local);
      else if (*p == 'd')
        ok = append_escaped (out, at ? at + 1 : "");
      else
        g_string_append_c (out, *p);
    }
  if (ok && out->len <= MAX_FILTER)
    return g_string_free (g_steal_pointer (&out), FALSE);
  g_set_error (error, ldir_error_quark (), 0, "cannot make a filter for <%s>", address);
  return NULL;
}

/* ---- the entry ------------------------------------------------------------- */

/* The values of @attr (at most @max), as strings without NULs or line
 * ends; NULL if none.  *@bad: a value was unusable. */
static char **
get_values (LDAP *ld, LDAPMessage *e, const char *attr, guint max, gboolean *bad)
{
  struct berval **vals;
  GPtrArray *out;

  if (attr == NULL || (vals = ldap_get_values_len (ld, e, attr)) == NULL)
    return NULL;
  out = g_ptr_array_new ();
  for (guint i = 0; vals[i]; i++)
    {
      const struct berval *v = vals[i];
      if (out->len >= max || v->bv_len > MAX_VALUE || memchr (v->bv_val, '\0', v->bv_len)
          || memchr (v->bv_val, '\n', v->bv_len) || memchr (v->bv_val, '\r', v->bv_len))
        {
          *bad = TRUE;
          break;
        }
      g_ptr_array_add (out, g_strndup (v->bv_val, v->bv_len));
    }
  ldap_value_free_len (vals);
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

static char *
get_value (LDAP *ld, LDAPMessage *e, const char *attr, gboolean *bad)
{
  g_auto (GStrv) v = get_values (ld, e, attr, 1, bad);
  return v && v[0] ? g_strdup (v[0]) : NULL;
}

/* Bytes or messages: digits with an optional k, M or G (and B). */
static gboolean
parse_quota (const char *text, guint64 *out)
{
  char *end = NULL;
  guint64 n, mult = 1;

  if (text == NULL)
    return TRUE;
  if (!g_ascii_isdigit (text[0]))
    return FALSE;
  errno = 0;
  n = g_ascii_strtoull (text, &end, 10);
  switch (g_ascii_tolower (*end))
    {
    case 'k': mult = 1024, end++; break;
    case 'm': mult = 1024 * 1024, end++; break;
    case 'g': mult = 1024 * 1024 * 1024, end++; break;
    default: break;
    }
  if (mult > 1 && g_ascii_tolower (*end) == 'b')
    end++;
  if (errno || *end != '\0' || n > G_MAXUINT64 / mult)
    return FALSE;
  *out = n * mult;
  return TRUE;
}

/* Enabled unless the attribute is there without the enabled value. */
static gboolean
is_disabled (LdapDirectory *l, LDAP *ld, LDAPMessage *e, gboolean *bad)
{
  g_auto (GStrv) v = get_values (ld, e, l->attr_enabled, 16, bad);

  for (guint i = 0; v && v[i]; i++)
    if (g_ascii_strcasecmp (v[i], l->enabled_value) == 0)
      return FALSE;
  return v != NULL && v[0] != NULL;
}

static gboolean
settings_valid (char **settings)
{
  for (guint i = 0; settings && settings[i]; i++)
    {
      const char *colon = strchr (settings[i], ':');
      if (colon == NULL || colon == settings[i])
        return FALSE;
    }
  return TRUE;
}

/* The user an entry describes, or NULL with @error for unusable values. */
static DirectoryUser *
user_of (LdapDirectory *l, LDAP *ld, LDAPMessage *e, const char *address, GError **error)
{
  g_autoptr (DirectoryUser) u = g_new0 (DirectoryUser, 1);
  g_autofree char *quota = NULL, *quota_messages = NULL;
  gboolean bad = FALSE;

  u->address = g_strdup (address);
  u->mailbox = get_value (ld, e, l->attr_mailbox, &bad);
  quota = get_value (ld, e, l->attr_quota, &bad);
  quota_messages = get_value (ld, e, l->attr_quota_messages, &bad);
  u->sieve_script = get_value (ld, e, l->attr_sieve, &bad);
  u->disabled = is_disabled (l, ld, e, &bad);
  u->alias_of = get_value (ld, e, l->attr_alias, &bad);
  u->settings = get_values (ld, e, l->attr_settings, MAX_SETTINGS, &bad);
  u->host = get_value (ld, e, l->attr_host, &bad);
  if (!bad && !parse_quota (quota, &u->quota_bytes))
    bad = TRUE;
  if (!bad && !parse_quota (quota_messages, &u->quota_messages))
    bad = TRUE;
  if (!bad && u->mailbox && strstr (u->mailbox, ".."))
    bad = TRUE;
  if (!bad && u->alias_of && strchr (u->alias_of, '@') == NULL)
    bad = TRUE;
  if (!bad && settings_valid (u->settings))
    return g_steal_pointer (&u);
  g_set_error (error, ldir_error_quark (), 0, "<%s>: the directory's entry has an unusable value", address);
  return NULL;
}

/* ---- lookups --------------------------------------------------------------- */

/* Errors after which the connection is not used again. */
static gboolean
connection_lost (int rc)
{
  return rc == LDAP_SERVER_DOWN || rc == LDAP_TIMEOUT || rc == LDAP_CONNECT_ERROR || rc == LDAP_UNAVAILABLE
         || rc == LDAP_BUSY || rc == LDAP_TIMELIMIT_EXCEEDED || rc == LDAP_LOCAL_ERROR
         || rc == LDAP_DECODING_ERROR || rc == LDAP_ENCODING_ERROR;
}

/* What the search result says. */
static DirectoryResult
read_result (LdapDirectory *l, LDAP *ld, LDAPMessage *res, const char *address, DirectoryUser **out,
             GError **error)
{
  int n = ldap_count_entries (ld, res);

  if (n < 0)
    {
      g_set_error (error, ldir_error_quark (), 0, "<%s>: an unreadable answer", address);
      return DIRECTORY_TEMPFAIL;
    }
  if (n == 0)
    return DIRECTORY_UNKNOWN;
  if (n != 1)
    {
      g_set_error (error, ldir_error_quark (), 0, "<%s> matches more than one entry (check ldap_filter)",
                   address);
      return DIRECTORY_TEMPFAIL;
    }
  *out = user_of (l, ld, ldap_first_entry (ld, res), address, error);
  return *out ? DIRECTORY_FOUND : DIRECTORY_TEMPFAIL;
}

/* One search on @ld.  *@broken: the connection is not to be used again. */
static DirectoryResult
search (LdapDirectory *l, LDAP *ld, const char *filter, const char *address, gint64 deadline,
        DirectoryUser **out, gboolean *broken, GError **error)
{
  struct timeval tv = time_left (deadline);
  LDAPMessage *res = NULL;
  DirectoryResult r;
  int rc;

  /* size limit 2: enough to tell "one entry" from "more than one" */
  rc = ldap_search_ext_s (ld, l->base, l->scope, filter, l->attrs, 0, NULL, NULL, &tv, 2, &res);
  *broken = connection_lost (rc);
  if (rc == LDAP_SUCCESS || rc == LDAP_SIZELIMIT_EXCEEDED)
    r = rc == LDAP_SIZELIMIT_EXCEEDED ? DIRECTORY_TEMPFAIL : read_result (l, ld, res, address, out, error);
  else
    r = DIRECTORY_TEMPFAIL;
  if (rc == LDAP_SIZELIMIT_EXCEEDED)
    g_set_error (error, ldir_error_quark (), rc, "<%s> matches more than one entry (check ldap_filter)",
                 address);
  else if (rc != LDAP_SUCCESS)
    g_set_error (error, ldir_error_quark (), rc, "search for <%s>: %s", address, ldap_err2string (rc));
  ldap_msgfree (res);
  return r;
}

static DirectoryResult
ldir_lookup (gpointer backend, const char *address, guint timeout_ms, DirectoryUser **out, GError **error)
{
  LdapDirectory *l = backend;
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  g_autofree char *filter = make_filter (l->filter, address, error);
  DirectoryUser *user = NULL;
  DirectoryResult r = DIRECTORY_TEMPFAIL;

  if (filter == NULL)
    return DIRECTORY_TEMPFAIL;
  /* twice at most: a pooled connection the server closed since its last
   * use fails once, then a new one is made */
  for (guint attempt = 0; attempt < 2; attempt++)
    {
      gboolean reused = FALSE, broken = FALSE;
      LDAP *ld = pool_take (l, deadline, &reused, error);

      if (ld == NULL)
        return DIRECTORY_TEMPFAIL;
      r = search (l, ld, filter, address, deadline, &user, &broken, error);
      pool_give (l, ld, broken);
      if (!(broken && reused) || g_get_monotonic_time () >= deadline)
        break;
      g_clear_error (error);
    }
  if (out)
    *out = user;
  else
    directory_user_free (user);
  return r;
}

/* ---- logins: the user's entry, then a bind as it ------------------------- */

/* The DN of the one entry ldap_filter finds for @address (NULL: none). */
static DirectoryResult
search_dn (LdapDirectory *l, LDAP *ld, const char *filter, gint64 deadline, char **dn, gboolean *broken,
           GError **error)
{
  char *no_attrs[] = { (char *) LDAP_NO_ATTRS, NULL };
  struct timeval tv = time_left (deadline);
  LDAPMessage *res = NULL;
  int rc = ldap_search_ext_s (ld, l->base, l->scope, filter, no_attrs, 0, NULL, NULL, &tv, 2, &res);
  int n = rc == LDAP_SUCCESS ? ldap_count_entries (ld, res) : -1;
  char *found = n == 1 ? ldap_get_dn (ld, ldap_first_entry (ld, res)) : NULL;
  DirectoryResult r = n == 0 ? DIRECTORY_UNKNOWN : found ? DIRECTORY_FOUND : DIRECTORY_TEMPFAIL;

  *broken = connection_lost (rc);
  if (r == DIRECTORY_TEMPFAIL)
    g_set_error (error, ldir_error_quark (), rc, "login search: %s",
                 rc == LDAP_SUCCESS ? "not exactly one entry (check ldap_filter)" : ldap_err2string (rc));
  *dn = g_strdup (found);
  ldap_memfree (found);
  ldap_msgfree (res);
  return r;
}

static DirectoryResult
find_dn (LdapDirectory *l, const char *address, gint64 deadline, char **dn, GError **error)
{
  g_autofree char *filter = make_filter (l->filter, address, error);
  DirectoryResult r = DIRECTORY_TEMPFAIL;

  for (guint attempt = 0; filter && attempt < 2; attempt++)
    {
      gboolean reused = FALSE, broken = FALSE;
      LDAP *ld = pool_take (l, deadline, &reused, error);

      if (ld == NULL)
        return DIRECTORY_TEMPFAIL;
      r = search_dn (l, ld, filter, deadline, dn, &broken, error);
      pool_give (l, ld, broken);
      if (!(broken && reused) || g_get_monotonic_time () >= deadline)
        break;
      g_clear_error (error);
    }
  return r;
}

/* A second connection bound as the user's entry: invalid credentials are
 * a wrong password, anything else a failure of that server (the next URI
 * is tried).  An empty password never binds (RFC 4513 5.1.2: that would be
 * an unauthenticated bind, which servers accept). */
static DirectoryResult
ldir_authenticate (gpointer backend, const char *address, const char *password, guint timeout_ms,
                   GError **error)
{
  LdapDirectory *l = backend;
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  g_autofree char *dn = NULL;
  DirectoryResult r = password[0] ? find_dn (l, address, deadline, &dn, error) : DIRECTORY_UNKNOWN;

  for (guint i = 0; r == DIRECTORY_FOUND && l->uris[i]; i++)
    {
      g_autoptr (GError) failure = NULL;
      LDAP *ld = connect_as (l, l->uris[i], dn, password, deadline, &failure);

      if (ld)
        {
          ldap_unbind_ext_s (ld, NULL, NULL);
          return DIRECTORY_FOUND;
        }
      if (failure->code == LDAP_INVALID_CREDENTIALS)
        return DIRECTORY_UNKNOWN;
      if (l->uris[i + 1] == NULL || g_get_monotonic_time () >= deadline)
        {
          g_propagate_error (error, g_steal_pointer (&failure));
          return DIRECTORY_TEMPFAIL;
        }
    }
  if (r == DIRECTORY_FOUND) /* never "right" without a bind */
    {
      g_set_error_literal (error, ldir_error_quark (), 0, "no ldap_uris to bind to");
      return DIRECTORY_TEMPFAIL;
    }
  return r;
}

const DirectoryBackend directory_backend_ldap = {
  "ldap", TRUE, ldir_open, ldir_lookup, ldir_close, ldir_authenticate,
};
