/* test-address.c - mailbox syntax, path safety and recipient resolution. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "deliver.h"

static void
test_parse (void)
{
  static const struct {
    const char *in;
    gboolean utf8, ok;
    const char *local, *domain;
  } cases[] = {
    { "joe@example.org", FALSE, TRUE, "joe", "example.org" },
    { "Joe.Smith+tag@Example.ORG", FALSE, TRUE, "Joe.Smith+tag", "Example.ORG" },
    { "\"john doe\"@example.org", FALSE, TRUE, "john doe", "example.org" },
    { "\"a\\\"b\"@x.org", FALSE, TRUE, "a\"b", "x.org" },
    { "postmaster", FALSE, TRUE, "postmaster", NULL },
    { "PostMaster", FALSE, TRUE, "PostMaster", NULL },
    { "a@[127.0.0.1]", FALSE, TRUE, "a", "[127.0.0.1]" },
    { "j\xc3\xb6rg@example.org", TRUE, TRUE, "j\xc3\xb6rg", "example.org" },
    { "j\xc3\xb6rg@example.org", FALSE, FALSE, NULL, NULL },
    { "bob", FALSE, FALSE, NULL, NULL },
    { "@example.org", FALSE, FALSE, NULL, NULL },
    { "a@", FALSE, FALSE, NULL, NULL },
    { ".a@x.org", FALSE, FALSE, NULL, NULL },
    { "a.@x.org", FALSE, FALSE, NULL, NULL },
    { "a..b@x.org", FALSE, FALSE, NULL, NULL },
    { "a b@x.org", FALSE, FALSE, NULL, NULL },
    { "a@-x.org", FALSE, FALSE, NULL, NULL },
    { "a@x..org", FALSE, FALSE, NULL, NULL },
    { "a@x_y.org", FALSE, FALSE, NULL, NULL },
    { "a@[1.2.3.4", FALSE, FALSE, NULL, NULL },
    { "\"unterminated@x.org", FALSE, FALSE, NULL, NULL },
    { "\"ctl\x01\"@x.org", FALSE, FALSE, NULL, NULL },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *local = NULL, *domain = NULL;
      const char *why = NULL;
      gboolean ok = deliver_address_parse (cases[i].in, cases[i].utf8, &local, &domain, &why);

      g_test_message ("case %u: %s", i, cases[i].in);
      g_assert_cmpint (ok, ==, cases[i].ok);
      if (ok)
        {
          g_assert_cmpstr (local, ==, cases[i].local);
          g_assert_cmpstr (domain, ==, cases[i].domain);
        }
      else
        g_assert_nonnull (why);
    }
}

static void
test_resolve (void)
{
  g_autoptr (LmtpdConfig) c = lmtpd_config_new_default ();
  static const struct { const char *local, *domain; guint code; const char *mailbox; } cases[] = {
    { "Joe", "Example.ORG", 0, "/m/example.org/joe/Maildir" },
    { "a/b", "example.org", 553, NULL },
    { "..", "example.org", 553, NULL },
    { "x..y", "example.org", 553, NULL },
    { ".hidden", "example.org", 553, NULL },
    { "a\\b", "example.org", 553, NULL },
    { "joe", "a/b", 553, NULL },
    { "tab\there", "example.org", 553, NULL },
  };

  g_free (c->mail_root);
  c->mail_root = g_strdup ("/m");
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      DeliverStatus st = { 0 };
      g_autoptr (DeliverRecipient) r = deliver_resolve (NULL, c, cases[i].local, cases[i].domain, &st);
      if (cases[i].code == 0)
        {
          g_assert_nonnull (r);
          g_assert_cmpstr (r->mailbox, ==, cases[i].mailbox);
          g_assert_cmpuint (st.code, ==, 0);
        }
      else
        {
          g_assert_null (r);
          g_assert_cmpuint (st.code, ==, cases[i].code);
          g_assert_null (strpbrk (st.text, "\r\n"));
        }
      deliver_status_clear (&st);
    }
}

static void
test_unknown_user (void)
{
  g_autoptr (LmtpdConfig) c = lmtpd_config_new_default ();
  DeliverStatus st = { 0 };
  g_autoptr (DeliverRecipient) r = NULL;

  g_strfreev (c->domains);
  c->domains = g_strsplit ("example.org", ";", -1);
  r = deliver_resolve (NULL, c, "nobody", "other.example", &st);
  g_assert_null (r);
  g_assert_cmpuint (st.code, ==, 550);
  g_assert_cmpstr (st.enhanced, ==, "5.1.1");
  deliver_status_clear (&st);
  r = deliver_resolve (NULL, c, "anyone", "EXAMPLE.org", &st);
  g_assert_nonnull (r);
  g_assert_cmpstr (r->address, ==, "anyone@example.org");
}

/* issue 13: the reply says what is wrong, with the right enhanced code */
static void
test_address_status (void)
{
  static const struct { const char *in; gboolean utf8, sender; guint code; const char *enh, *why; } cases[] = {
    { "a@[]", FALSE, TRUE, 501, "5.1.7", "bad address literal" },
    { "a@[]", TRUE, FALSE, 501, "5.1.3", "bad address literal" },
    { "a\xff@example.org", TRUE, TRUE, 501, "5.1.7", "address is not UTF-8" },
    { "j\xc3\xb6@example.org", FALSE, FALSE, 553, "5.6.7", "non-ASCII local part without SMTPUTF8" },
    { "\"j\xc3\xb6\"@example.org", FALSE, TRUE, 553, "5.6.7", "non-ASCII local part without SMTPUTF8" },
    { "j@ex\xc3\xa4mple.org", FALSE, TRUE, 553, "5.6.7", "non-ASCII domain without SMTPUTF8" },
    { "j@ex_ample.org", TRUE, FALSE, 501, "5.1.3", "invalid character in domain" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *local = NULL, *domain = NULL;
      const char *why = NULL;
      guint code = 0;
      g_assert_false (deliver_address_parse (cases[i].in, cases[i].utf8, &local, &domain, &why));
      g_assert_cmpstr (why, ==, cases[i].why);
      g_assert_cmpstr (deliver_address_status (why, cases[i].sender, &code), ==, cases[i].enh);
      g_assert_cmpuint (code, ==, cases[i].code);
    }
}

static void
test_status (void)
{
  DeliverStatus st = { 0 };
  static const struct { int e; guint code; const char *enh; } cases[] = {
    { ENOSPC, 452, "4.3.1" }, { EDQUOT, 452, "4.2.2" }, { EACCES, 451, "4.2.0" },
    { EIO, 451, "4.3.0" }, { EFBIG, 552, "5.2.3" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) e = g_error_new_literal (DELIVER_ERROR, cases[i].e, "x");
      deliver_status_from_error (&st, e);
      g_assert_cmpuint (st.code, ==, cases[i].code);
      g_assert_cmpstr (st.enhanced, ==, cases[i].enh);
    }
  deliver_status_set (&st, 550, "5.7.1", "multi\r\nline");
  g_assert_cmpstr (st.text, ==, "multi  line");
  deliver_status_clear (&st);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/address/parse", test_parse);
  g_test_add_func ("/address/resolve", test_resolve);
  g_test_add_func ("/address/unknown-user", test_unknown_user);
  g_test_add_func ("/address/status", test_status);
  g_test_add_func ("/address/reply-status", test_address_status);
  return g_test_run ();
}
