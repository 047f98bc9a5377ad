/* test-sieve-mime.c - sieve-lite on the MIME structure of real messages
 * parsed with GMime as the callers parse them: body :raw and :content
 * (RFC 5173 5), foreverypart, break, :mime, extracttext (RFC 5703),
 * :regex (draft-ietf-sieve-regex) and '?' of :matches (RFC 5228 2.7.1).
 * Each case names the section it checks.
 */
#include "config.h"

#include <string.h>

#include "lmtpd-util.h"
#include "sieve.h"

/* RFC 5173 5.2's example message, its marked lines as they are */
static const char rfc5173_message[] =
  "From: Whomever\r\nTo: Someone\r\nDate: Whenever\r\nSubject: whatever\r\n"
  "Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
  "This is a multi-part message in MIME format.\r\n\r\n"
  "--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
  "This is a nested multi-part message in MIME format.\r\n\r\n"
  "--inner\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\r\nHello\r\n\r\n"
  "--inner\r\nContent-Type: text/html; charset=\"us-ascii\"\r\n\r\n<html><body>Hello</body></html>\r\n\r\n"
  "--inner--\r\n\r\nThis is the end of the inner MIME multipart.\r\n\r\n"
  "--outer\r\nContent-Type: message/rfc822\r\n\r\n"
  "From: Someone Else\r\nSubject: hello request\r\n\r\nPlease say Hello\r\n\r\n"
  "--outer--\r\n\r\nThis is the end of the outer MIME multipart.\r\n";

/* Nested multiparts, quoted-printable Latin-1 and base64 text, an
 * attachment with a filename, a prologue and an epilogue */
static const char nested_message[] =
  "From: a@example.com\nTo: b@example.org\nSubject: caf\xc3\xa9 x\nMIME-Version: 1.0\n"
  "Content-Type: multipart/mixed; boundary=\"o\"\n\npreamble-outer\n"
  "--o\nContent-Type: multipart/alternative; boundary=\"i\"\n\ninner-pro\n"
  "--i\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n"
  "Content-From: tim@example.com\n\nGr=FC=DFe MAKE MONEY FAST\n"
  "--i\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\nPGI+SGVsbG88L2I+Cg==\n"
  "--i--\ninner-epi\n"
  "--o\nContent-Type: application/pdf; name=\"important-report.pdf\"\n"
  "Content-Disposition: attachment; filename=\"important-report.pdf\"\n"
  "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n"
  "--o\nContent-Type: message/rfc822\n\nFrom: x@example.net\nSubject: nested hello\n\nPlease say Hello\n"
  "--o--\nouter-epilogue\n";

typedef struct {
  GMimeMessage *msg;
  const char *text;
  GPtrArray *parts;
} Msg;

static char **
msg_header (const char *name, gpointer data)
{
  Msg *m = data;
  GPtrArray *out = g_ptr_array_new ();
  GMimeObject *objs[2] = { GMIME_OBJECT (m->msg), g_mime_message_get_mime_part (m->msg) };

  for (int pass = 0; pass < 2; pass++)
    {
      GMimeHeaderList *l = objs[pass] ? g_mime_object_get_header_list (objs[pass]) : NULL;
      for (int i = 0; l && i < g_mime_header_list_get_count (l); i++)
        {
          GMimeHeader *h = g_mime_header_list_get_header_at (l, i);
          if (g_ascii_strcasecmp (g_mime_header_get_name (h), name) == 0)
            g_ptr_array_add (out, g_strdup (g_mime_header_get_value (h)));
        }
    }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

static char *
msg_raw_body (gsize max, gpointer data)
{
  Msg *m = data;
  g_autoptr (GMimeStream) s = g_mime_stream_mem_new_with_buffer (m->text, strlen (m->text));

  return sieve_raw_body_read (s, max);
}

static const GPtrArray *
msg_parts (gpointer data)
{
  Msg *m = data;

  if (m->parts == NULL)
    m->parts = sieve_mime_parts_new (m->msg, 0);
  return m->parts;
}

static char *
result_text (const SieveResult *r)
{
  GString *out = g_string_new (NULL);

  if (r->error)
    g_string_append_printf (out, "error: %s; ", r->error);
  for (guint i = 0; i < r->actions->len; i++)
    {
      const SieveAction *a = r->actions->pdata[i];
      g_string_append_printf (out, "%s%s%s%s", i ? "; " : "", sieve_action_name (a->kind), a->argument ? ":" : "",
                              a->argument ? a->argument : "");
    }
  /* replace and enclose as "| replace@PART" */
  for (guint i = 0; r->changes && i < r->changes->len; i++)
    {
      const SieveChange *c = r->changes->pdata[i];
      g_string_append_printf (out, " | %s@%u", c->kind == SIEVE_CHANGE_ENCLOSE ? "enclose" : "replace", c->part);
    }
  return g_string_free (out, FALSE);
}

/* Runs @script on @text; the actions as "kind[:arg]" joined with "; " */
static char *
run_on (const char *script, const char *text)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SieveScript) s = sieve_compile (script, strlen (script), &error);
  g_autoptr (GMimeStream) stream = g_mime_stream_mem_new_with_buffer (text, strlen (text));
  g_autoptr (GMimeParser) parser = g_mime_parser_new_with_stream (stream);
  Msg m = { g_mime_parser_construct_message (parser, NULL), text, NULL };
  SieveMessage sm = { .envelope_from = "a@example.com", .envelope_to = "b@example.org", .delimiter = "+" };
  SieveResult r = { 0 };
  char *out;

  if (s == NULL)
    {
      g_object_unref (m.msg);
      return g_strdup_printf ("compile error: %s", error->message);
    }
  sm.header = msg_header;
  sm.raw_body = msg_raw_body;
  sm.mime_parts = msg_parts;
  sm.data = &m;
  sieve_run (s, &sm, &r);
  out = result_text (&r);
  sieve_result_clear (&r);
  if (m.parts)
    g_ptr_array_unref (m.parts);
  g_object_unref (m.msg);
  return out;
}

#define CHECK_ON(script, text, want) \
  do \
    { \
      g_autofree char *got_ = run_on (script, text); \
      g_assert_cmpstr (got_, ==, want); \
    } \
  while (0)

#define BODY "require [\"body\", \"fileinto\"];\n"

/* RFC 5173 5.1: "MUST NOT remove any transfer encoding ... MUST treat
 * multipart boundaries or the MIME headers of enclosed body parts as part
 * of the content"; 4: a header alone has no body, "all body tests return
 * false, including those that test for an empty string". */
static void
test_raw (void)
{
  CHECK_ON (BODY "if body :raw :contains \"Gr=FC=DFe\" { fileinto \"qp\"; }", nested_message, "fileinto:qp");
  CHECK_ON (BODY "if body :raw :contains \"Gr\xc3\xbc\xc3\x9f" "e\" { fileinto \"decoded\"; }", nested_message, "keep");
  CHECK_ON (BODY "if body :raw :contains \"PGI+SGVsbG8\" { fileinto \"b64\"; }", nested_message, "fileinto:b64");
  CHECK_ON (BODY "if body :raw :contains \"Content-Type: text/html; charset=utf-8\" { fileinto \"hdr\"; }", nested_message,
            "fileinto:hdr");
  CHECK_ON (BODY "if body :raw :contains \"Subject: caf\" { fileinto \"top\"; }", nested_message, "keep");
  CHECK_ON (BODY "if body :raw :matches \"preamble-outer?--o*outer-epilogue?\" { fileinto \"all\"; }", nested_message,
            "fileinto:all");
  CHECK_ON (BODY "if body :raw :contains \"\" { fileinto \"x\"; }", "Subject: header only\n", "keep");
  CHECK_ON (BODY "if body :contains \"\" { fileinto \"x\"; }", "Subject: header only", "keep");
  CHECK_ON (BODY "if body :content \"text\" :contains \"\" { fileinto \"x\"; }", "Subject: header only", "keep");
  CHECK_ON (BODY "if body :raw :is \"\" { fileinto \"empty\"; }", "Subject: empty body\n\n", "fileinto:empty");
  /* RFC 5173 5.1's example */
  CHECK_ON (BODY "if body :raw :contains \"MAKE MONEY FAST\" { discard; }", nested_message, "discard");
}

/* RFC 5173 5.2, its example message: '&' lines for "multipart" :contains
 * "MIME", '$' for text/plain "Hello", '%' for text/html, '!' for
 * message/rfc822 "Hello"; "MIME headers of the containing part MUST NOT
 * be included"; "If an individual content type begins or ends with a '/'
 * ... it matches no content types" */
static void
test_content (void)
{
  static const struct {
    const char *types, *key;
    gboolean match;
  } cases[] = {
    { "\"multipart\"", "This is the end of the inner MIME multipart.", TRUE },
    { "\"multipart\"", "Hello", FALSE },
    { "\"text/plain\"", "Hello", TRUE },
    { "\"text/plain\"", "<html>", FALSE },
    { "\"text/html\"", "<html><body>Hello", TRUE },
    { "\"text\"", "<html><body>Hello", TRUE },
    { "\"message/rfc822\"", "hello request", TRUE },
    { "\"message/rfc822\"", "Please say", FALSE },
    { "\"text\"", "Please say Hello", TRUE },
    { "\"text/plain\"", "Content-Type", FALSE },
    { "\"text/\"", "Hello", FALSE },
    { "\"/plain\"", "Hello", FALSE },
    { "\"text/plain/x\"", "Hello", FALSE },
    { "\"\"", "Please say", TRUE },
    { "[\"audio/mp3\", \"image\"]", "", FALSE },
    { "\"TEXT/HTML\"", "Hello", TRUE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *script = g_strdup_printf (BODY "if body :content %s :contains \"%s\" { fileinto \"hit\"; }",
                                                 cases[i].types, cases[i].key);
      g_autofree char *got = run_on (script, rfc5173_message);
      g_assert_cmpstr (got, ==, cases[i].match ? "fileinto:hit" : "keep");
    }
  /* decoded: quoted-printable Latin-1 and base64 to UTF-8 */
  CHECK_ON (BODY "if body :content \"text/plain\" :contains \"Gr\xc3\xbc\xc3\x9f" "e MAKE\" { fileinto \"qp\"; }",
            nested_message, "fileinto:qp");
  CHECK_ON (BODY "if body :content \"text/html\" :matches \"<b>Hello</b>?\" { fileinto \"b64\"; }", nested_message,
            "fileinto:b64");
  /* each part on its own: nothing matches across parts */
  CHECK_ON (BODY "if body :content \"text\" :contains \"FAST?<b>\" { fileinto \"across\"; }", nested_message,
            "keep");
  CHECK_ON (BODY "if body :content \"multipart\" :is \"inner-epi\" { fileinto \"epi\"; }", nested_message,
            "fileinto:epi");
  /* RFC 5173 5.2's examples */
  CHECK_ON (BODY "if body :content \"text\" :contains [\"missile\", \"coordinates\"] { fileinto \"secrets\"; }",
            rfc5173_message, "keep");
  CHECK_ON (BODY "if body :content \"application/pdf\" :contains \"\" { fileinto \"jukebox\"; }", nested_message,
            "fileinto:jukebox");
}

/* RFC 5173 6: "they MUST NOT set match variables (${1}, ${2}...)" */
static void
test_body_no_match_variables (void)
{
  CHECK_ON ("require [\"body\", \"variables\", \"fileinto\"];\n"
            "if header :matches \"subject\" \"*\" {}\n"
            "if body :raw :matches \"*outer-epilogue*\" { fileinto \"v-${1}\"; }",
            nested_message, "fileinto:v-caf\xc3\xa9 x");
}

/* RFC 5228 2.7.1 with RFC 4790 9.3 and 9.2: i;octet and i;ascii-casemap
 * compare octets, so '?' stands for one octet, not one UTF-8 character
 * (Pigeonhole agrees: the diff suite's "caf??" cases) */
static void
test_question_mark_octet (void)
{
  const char *cmps[] = { "i;octet", "i;ascii-casemap" };

  for (guint i = 0; i < G_N_ELEMENTS (cmps); i++)
    {
      g_autofree char *one = g_strdup_printf ("require \"fileinto\";\nif header :comparator \"%s\" :matches "
                                              "\"subject\" \"caf? x\" { fileinto \"one\"; }", cmps[i]);
      g_autofree char *two = g_strdup_printf ("require \"fileinto\";\nif header :comparator \"%s\" :matches "
                                              "\"subject\" \"caf?? x\" { fileinto \"two\"; }", cmps[i]);
      CHECK_ON (one, nested_message, "keep");
      CHECK_ON (two, nested_message, "fileinto:two");
    }
}

#define LOOP "require [\"foreverypart\", \"mime\", \"variables\", \"fileinto\", \"extracttext\"];\n"

/* RFC 5703 3: "walks though every MIME part of a message, including
 * nested parts, depth first"; "the inner loop only operates on children
 * of the bodypart currently accessed by the outer loop"; break ends the
 * closest loop, break :name the closest of that name. */
static void
test_foreverypart (void)
{
  CHECK_ON (LOOP "set \"n\" \"\";\nforeverypart {\n"
            "if header :mime :matches :subtype \"content-type\" \"*\" { set \"n\" \"${n}.${1}\"; } "
            "else { set \"n\" \"${n}.none\"; } }\nfileinto \"x${n}\";",
            nested_message, "fileinto:x.mixed.alternative.plain.html.pdf.rfc822.none");
  CHECK_ON (LOOP "set \"n\" \"\";\nforeverypart :name \"outer\" { if header :mime :type \"content-type\" "
            "\"multipart\" { foreverypart { if header :mime :matches :subtype \"content-type\" \"*\" "
            "{ set \"n\" \"${n}.${1}\"; } } set \"n\" \"${n}|\"; } }\nfileinto \"x${n}\";",
            nested_message, "fileinto:x.alternative.plain.html.pdf.rfc822|.plain.html|");
  CHECK_ON (LOOP "set \"n\" \"\";\nforeverypart { set \"n\" \"${n}a\"; break; set \"n\" \"${n}b\"; }\n"
            "fileinto \"x${n}\";", nested_message, "fileinto:xa");
  CHECK_ON (LOOP "set \"n\" \"\";\nforeverypart :name \"o\" { foreverypart { set \"n\" \"${n}i\"; "
            "break :name \"o\"; } set \"n\" \"${n}after\"; }\nfileinto \"x${n}\";",
            nested_message, "fileinto:xi");
  /* RFC 5703 4.1's examples */
  CHECK_ON (LOOP "if header :mime :type \"Content-Type\" \"image\" { fileinto \"INBOX.images\"; }",
            nested_message, "keep");
  CHECK_ON (LOOP "if header :mime :anychild :contenttype \"Content-Type\" \"text/html\" { fileinto \"INBOX.html\"; }",
            nested_message, "fileinto:INBOX.html");
  CHECK_ON (LOOP "foreverypart { if allof (header :mime :param \"filename\" :contains \"Content-Disposition\" "
            "\"important\", header :mime :subtype \"Content-Type\" \"pdf\") { fileinto \"INBOX.important\"; "
            "break; } }", nested_message, "fileinto:INBOX.important");
  /* 4.2's example, and a field of a part is not one of the top level */
  CHECK_ON (LOOP "if address :mime :is :all \"content-from\" \"tim@example.com\" { fileinto \"top\"; }\n"
            "if address :mime :anychild :is :all \"content-from\" \"tim@example.com\" { fileinto \"any\"; }",
            nested_message, "fileinto:any");
  CHECK_ON (LOOP "if exists :mime :anychild \"content-disposition\" { fileinto \"att\"; }", nested_message,
            "fileinto:att");
  CHECK_ON (LOOP "if header :mime :type \"content-disposition\" \"attachment\" { fileinto \"top\"; }\n"
            "foreverypart { if header :mime :type \"content-disposition\" \"attachment\" { fileinto \"part\"; } }",
            nested_message, "fileinto:part");
}

/* RFC 5703 3: "It is an error if there is no enclosing loop with that
 * name"; 7: extracttext is only valid inside foreverypart, and needs
 * variables; nesting is bounded ("MAY limit the number of nested loops") */
static void
test_loop_validation (void)
{
  GString *deep = g_string_new ("require \"foreverypart\";\n");

  CHECK_ON (LOOP "break;", nested_message, "compile error: 2:1: break outside foreverypart");
  CHECK_ON (LOOP "foreverypart :name \"a\" { break :name \"b\"; }", nested_message,
            "compile error: 2:26: break: no foreverypart named \"b\" around it");
  CHECK_ON (LOOP "extracttext \"x\";", nested_message, "compile error: 2:1: extracttext outside foreverypart");
  CHECK_ON ("require [\"foreverypart\", \"extracttext\"];\nforeverypart { extracttext \"x\"; }", nested_message,
            "compile error: 2:16: extracttext needs require \"variables\"");
  CHECK_ON ("require \"foreverypart\";\nif header :mime \"subject\" \"x\" { keep; }", nested_message,
            "compile error: 2:4: header: :mime needs require \"mime\"");
  CHECK_ON (LOOP "if header :anychild \"subject\" \"x\" { keep; }", nested_message,
            "compile error: 2:4: header: :anychild, :type, :subtype, :contenttype and :param go with :mime");
  for (int i = 0; i < 9; i++)
    g_string_append (deep, "foreverypart { ");
  for (int i = 0; i < 9; i++)
    g_string_append (deep, "} ");
  CHECK_ON (deep->str, nested_message, "compile error: 2:121: foreverypart nested more than 8 deep");
  g_string_free (deep, TRUE);
}

/* RFC 5703 7: "at most ":first" characters of the transcoded content of
 * the current MIME body part"; a multipart or message/rfc822 has none */
static void
test_extracttext (void)
{
  CHECK_ON (LOOP "set \"n\" \"\";\nforeverypart { extracttext :first 6 \"t\"; set \"n\" \"${n}[${t}]\"; }\n"
            "fileinto \"x${n}\";", nested_message,
            "fileinto:x[][][Gr\xc3\xbc\xc3\x9f" "e ][<b>Hel][%PDF-1][][Please]");
  CHECK_ON (LOOP "foreverypart { if header :mime :subtype \"content-type\" \"plain\" { extracttext :upper \"t\"; "
            "break; } }\nif string :contains \"${t}\" \"MAKE MONEY\" { fileinto \"up\"; }", nested_message,
            "fileinto:up");
  /* 9.3's example */
  CHECK_ON (LOOP "if header :contains \"from\" \"a@example.com\" {\n"
            "  if header :matches \"Subject\" \"*\" { set \"subject\" \"${1}\"; }\n"
            "  foreverypart { if header :mime :type :is \"Content-Type\" \"text\" {\n"
            "      extracttext :first 100 \"msgcontent\"; break; } }\n"
            "  if not header :contains \"subject\" \"FYI:\" { fileinto \"boss-${msgcontent}\"; } }",
            rfc5173_message, "keep");
  CHECK_ON (LOOP "if header :contains \"from\" \"Whomever\" {\n"
            "  foreverypart { if header :mime :type :is \"Content-Type\" \"text\" {\n"
            "      extracttext :first 100 \"msgcontent\"; break; } }\n"
            "  if not header :contains \"subject\" \"FYI:\" { fileinto \"boss-${msgcontent}\"; } }",
            rfc5173_message, "fileinto:boss-Hello\r\n");
}

/* Bounds: each part a loop visits counts, together at most 10000 a run */
static void
test_loop_bounds (void)
{
  GString *msg = g_string_new ("Subject: many\nContent-Type: multipart/mixed; boundary=b\n\n");
  GString *script = g_string_new ("require \"foreverypart\";\n");
  g_autofree char *got = NULL;
  g_autoptr (GMimeStream) s = NULL;
  g_autoptr (GMimeParser) p = NULL;
  GMimeMessage *m;
  GPtrArray *parts;

  for (int i = 0; i < 700; i++)
    g_string_append (msg, "--b\nContent-Type: text/plain\n\nx\n");
  g_string_append (msg, "--b--\n");
  s = g_mime_stream_mem_new_with_buffer (msg->str, msg->len);
  p = g_mime_parser_new_with_stream (s);
  m = g_mime_parser_construct_message (p, NULL);
  parts = sieve_mime_parts_new (m, 0);
  g_assert_cmpuint (parts->len, ==, SIEVE_MIME_MAX_PARTS);
  g_ptr_array_unref (parts);
  g_object_unref (m);
  for (int i = 0; i < 21; i++)
    g_string_append (script, "foreverypart { }\n");
  got = run_on (script->str, msg->str);
  g_assert_cmpstr (got, ==, "error: foreverypart visited too many parts; keep");
  g_string_free (msg, TRUE);
  g_string_free (script, TRUE);
}

/* The contents of all parts together at most max_bytes, cut on a UTF-8
 * character's boundary, however large a part decodes to */
static void
test_content_bound (void)
{
  g_autoptr (GMimeStream) s = g_mime_stream_mem_new_with_buffer (nested_message, strlen (nested_message));
  g_autoptr (GMimeParser) p = g_mime_parser_new_with_stream (s);
  g_autoptr (GMimeMessage) m = g_mime_parser_construct_message (p, NULL);
  GPtrArray *parts = sieve_mime_parts_new (m, 11);
  gsize total = 0;

  g_assert_cmpuint (parts->len, ==, 7);
  for (guint i = 0; i < parts->len; i++)
    {
      const SieveMimePart *x = parts->pdata[i];
      const char *strs[] = { x->content, x->prologue, x->epilogue, x->message_header };
      for (guint k = 0; k < G_N_ELEMENTS (strs); k++)
        if (strs[k])
          {
            g_assert_true (g_utf8_validate (strs[k], -1, NULL));
            total += strlen (strs[k]);
          }
    }
  /* "preamble-outer" takes 11, nothing is left for the rest */
  g_assert_cmpuint (total, ==, 11);
  g_assert_cmpstr (((SieveMimePart *) parts->pdata[0])->prologue, ==, "preamble-ou");
  g_ptr_array_unref (parts);
  /* a room that ends inside the plain part's "\xc3\xbc" drops it whole */
  parts = sieve_mime_parts_new (m, 0);
  total = 0;
  for (guint i = 0; i < 2; i++)
    {
      const SieveMimePart *x = parts->pdata[i];
      total += strlen (x->prologue) + strlen (x->epilogue);
    }
  g_ptr_array_unref (parts);
  parts = sieve_mime_parts_new (m, total + 3);
  g_assert_cmpstr (((SieveMimePart *) parts->pdata[2])->content, ==, "Gr");
  g_ptr_array_unref (parts);
}

#define REGEX "require [\"regex\", \"variables\", \"fileinto\", \"comparator-i;octet\"];\n"

/* draft-ietf-sieve-regex 3: POSIX extended expressions; match variables
 * ${0} the whole match, ${1}.. the groups (as Pigeonhole); the
 * comparators' octets: '.' is one octet; ascii-casemap without case */
static void
test_regex (void)
{
  CHECK_ON (REGEX "if header :regex \"from\" \"^([a-z]+)@(example)\\\\.com$\" { fileinto \"${0}-${1}-${2}\"; }",
            nested_message, "fileinto:a@example.com-a-example");
  CHECK_ON (REGEX "if header :regex \"subject\" \"^CAF\" { fileinto \"nocase\"; }", nested_message,
            "fileinto:nocase");
  CHECK_ON (REGEX "if header :comparator \"i;octet\" :regex \"subject\" \"^CAF\" { fileinto \"case\"; }",
            nested_message, "keep");
  CHECK_ON (REGEX "if header :regex \"subject\" \"^caf. x$\" { fileinto \"one\"; }\n"
            "if header :regex \"subject\" \"^caf.. x$\" { fileinto \"two\"; }", nested_message, "fileinto:two");
  CHECK_ON (REGEX "if header :regex \"subject\" \"(\" { keep; }", nested_message,
            "compile error: 2:4: header: invalid regular expression");
  CHECK_ON ("require \"fileinto\";\nif header :regex \"subject\" \"x\" { keep; }", nested_message,
            "compile error: 2:4: header: :regex needs require \"regex\"");
  CHECK_ON ("require [\"regex\", \"comparator-i;ascii-numeric\"];\n"
            "if header :comparator \"i;ascii-numeric\" :regex \"subject\" \"1\" { keep; }", nested_message,
            "compile error: 2:4: header: :regex goes with i;octet or i;ascii-casemap");
  CHECK_ON (REGEX "set \"p\" \"(\";\nif header :regex \"subject\" \"${p}\" { fileinto \"x\"; }", nested_message,
            "error: a :regex did not compile or was too complex; keep");
  /* catastrophic backtracking stops at PCRE2's match limit: an error, not "no" */
  CHECK_ON (REGEX "set \"v\" \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\";\n"
            "if string :regex \"${v}\" \"^(a|a)*$\" { fileinto \"x\"; }", nested_message,
            "error: a :regex did not compile or was too complex; keep");
}

#define REPLACE "require [\"foreverypart\", \"mime\", \"replace\", \"enclose\", \"fileinto\", \"variables\", \"extracttext\", " \
  "\"body\"];\n"

/* RFC 5703 5: "If used in the context of a foreverypart iterator, the
 * replace command will replace the current MIME part"; the part is its
 * index (nested_message: 0 mixed, 1 alternative, 2 plain, 3 html, 4 pdf,
 * 5 rfc822, 6 the enclosed message), 0 the whole message */
static void
test_replace_part (void)
{
  /* 7's example, for the report */
  CHECK_ON (REPLACE "foreverypart { if anyof (header :mime :contenttype :is \"Content-Type\" \"application/exe\", "
            "header :mime :param [\"filename\"] :matches [\"Content-Type\", \"Content-Disposition\"] \"*.pdf\") "
            "{ replace \"Executable attachment removed by user filter\"; } }", nested_message, "keep | replace@4");
  CHECK_ON (REPLACE "replace \"x\";", nested_message, "keep | replace@0");
  CHECK_ON (REPLACE "foreverypart { replace \"x\"; break; }", nested_message, "keep | replace@0");
  /* the top part replaced, the loop has nothing left */
  CHECK_ON (REPLACE "set \"n\" \"\";\nforeverypart { set \"n\" \"${n}.\"; replace \"x\"; }\nfileinto \"x${n}\";",
            nested_message, "fileinto:x. | replace@0");
  CHECK_ON (REPLACE "foreverypart { if header :mime :type \"content-type\" \"message\" { enclose \"x\"; } }",
            nested_message, "keep | enclose@0");
  /* the parts inside a part replaced are gone: the loop goes past them */
  CHECK_ON (REPLACE "set \"n\" \"\";\nforeverypart { if header :mime :matches :subtype \"content-type\" \"*\" "
            "{ set \"n\" \"${n}.${1}\"; } if header :mime :subtype \"content-type\" \"alternative\" "
            "{ replace \"x\"; } }\nfileinto \"x${n}\";", nested_message,
            "fileinto:x.mixed.alternative.pdf.rfc822 | replace@1");
  /* ...a nested loop inside it after the replace: a run-time error, as is
   * a part after the whole message changed (the caller numbers the
   * parts of the message as received) */
  CHECK_ON (REPLACE "foreverypart { if header :mime :subtype \"content-type\" \"alternative\" { replace \"x\"; "
            "foreverypart { replace \"y\"; } } }", nested_message,
            "error: replace: the part is gone: an earlier replace or enclose changed what holds it; keep");
  CHECK_ON (REPLACE "enclose \"e\";\nforeverypart { if header :mime :subtype \"content-type\" \"pdf\" "
            "{ replace \"y\"; } }", nested_message,
            "error: replace: the part is gone: an earlier replace or enclose changed what holds it; keep");
  /* two parts, the same part twice, then the whole message: fine */
  CHECK_ON (REPLACE "foreverypart { if header :mime :type \"content-type\" [\"application\", \"message\"] "
            "{ replace \"y\"; replace :mime \"Content-Type: text/html\r\n\r\n<p>z</p>\"; } }\nreplace \"all\";",
            nested_message, "keep | replace@4 | replace@4 | replace@5 | replace@5 | replace@0");
}

/* RFC 5703 5, 6: later tests see the new message.  After a part's
 * replace: the top header's MIME fields stay (:subject still changes the
 * top Subject), the body test sees the new text in the part's place;
 * body :raw and :content, :mime and foreverypart see the parts as
 * received (README: Sieve).  After a change of the whole message, all
 * of them see the new one. */
static void
test_after_replace_part (void)
{
  CHECK_ON (REPLACE "foreverypart { if header :mime :subtype \"content-type\" \"html\" "
            "{ replace :subject \"new\" \"gone\"; } }\n"
            "if header :contains \"content-type\" \"multipart/mixed\" { fileinto \"mixed\"; }\n"
            "if header :is \"subject\" \"new\" { fileinto \"subject\"; }\n"
            "if header :is \"original-subject\" \"caf\xc3\xa9 x\" { fileinto \"original\"; }\n"
            "if body :text :contains \"gone\" { fileinto \"text-new\"; }\n"
            "if body :text :contains \"<b>\" { fileinto \"text-old\"; }\n"
            "if body :text :contains \"MONEY\" { fileinto \"text-other\"; }\n"
            "if body :content \"text/html\" :contains \"<b>\" { fileinto \"content-as-received\"; }\n"
            "if header :mime :anychild :subtype \"content-type\" \"html\" { fileinto \"mime-as-received\"; }\n",
            nested_message, "fileinto:mixed; fileinto:subject; fileinto:original; fileinto:text-new; "
            "fileinto:text-other; fileinto:content-as-received; fileinto:mime-as-received | replace@3");
  /* the whole message replaced: every test sees the new one, the loop too */
  CHECK_ON (REPLACE "replace \"all new\";\n"
            "if header :contains \"content-type\" \"text/plain\" { fileinto \"plain\"; }\n"
            "if body :text :is \"all new\" { fileinto \"text\"; }\n"
            "if body :raw :is \"all new\" { fileinto \"raw\"; }\n"
            "if body :content \"text/plain\" :is \"all new\" { fileinto \"content\"; }\n"
            "if body :raw :contains \"JVBERi0xLjQK\" { fileinto \"raw-old\"; }\n"
            "if header :mime :anychild :subtype \"content-type\" \"pdf\" { fileinto \"mime-old\"; }\n"
            "set \"n\" \"\";\nforeverypart { if header :mime :matches :contenttype \"content-type\" \"*\" "
            "{ set \"n\" \"${n}.${1}\"; } extracttext \"t\"; }\nfileinto \"loop${n}-${t}\";\n",
            nested_message, "fileinto:plain; fileinto:text; fileinto:raw; fileinto:content; "
            "fileinto:loop.text/plain-all new | replace@0");
  CHECK_ON (REPLACE "replace :mime \"Content-Type: multipart/alternative; boundary=z\r\n\r\n--z\r\n"
            "Content-Type: text/plain\r\n\r\none\r\n--z\r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n--z--\r\n\";\n"
            "set \"n\" \"\";\nforeverypart { if header :mime :matches :subtype \"content-type\" \"*\" "
            "{ set \"n\" \"${n}.${1}\"; } }\n"
            "if body :content \"text/html\" :is \"<p>two</p>\" { fileinto \"html\"; }\nfileinto \"loop${n}\";\n",
            nested_message, "fileinto:html; fileinto:loop.alternative.plain.html | replace@0");
  /* enclose: the new multipart/mixed, its text part, then the message
   * as it was inside the message/rfc822 part */
  CHECK_ON (REPLACE "enclose \"see attached\";\n"
            "set \"n\" \"\";\nforeverypart { if header :mime :matches :subtype \"content-type\" \"*\" "
            "{ set \"n\" \"${n}.${1}\"; } else { set \"n\" \"${n}.none\"; } }\n"
            "if body :content \"text/plain\" :contains \"see attached\" { fileinto \"text\"; }\n"
            "if body :content \"message/rfc822\" :contains \"Subject: caf\xc3\xa9 x\" { fileinto \"header\"; }\n"
            "if body :raw :contains \"see attached\" { if body :raw :contains \"JVBERi0xLjQK\" { fileinto \"raw\"; } }\n"
            "fileinto \"loop${n}\";\n", nested_message,
            "fileinto:text; fileinto:header; fileinto:raw; "
            "fileinto:loop.mixed.plain.rfc822.mixed.alternative.plain.html.pdf.rfc822.none | enclose@0");
  /* inside a loop begun before the change the loop's parts stay */
  CHECK_ON (REPLACE "set \"n\" \"\";\nforeverypart { if header :mime :subtype \"content-type\" \"pdf\" "
            "{ enclose \"e\"; } if header :mime :matches :subtype \"content-type\" \"*\" "
            "{ set \"n\" \"${n}.${1}\"; } }\nfileinto \"loop${n}\";\n", nested_message,
            "fileinto:loop.mixed.alternative.plain.html.pdf.rfc822 | enclose@0");
}

/* Where a part lies (sieve_mime_part_range): from its first field to the
 * end of its body before the line end of the next delimiter (RFC 2046
 * 5.1.1), numbered as sieve_mime_parts_new numbers them */
static void
test_part_range (void)
{
  static const struct {
    guint index;
    const char *from, *to;
  } cases[] = {
    { 1, "Content-Type: multipart/alternative", "inner-epi" },
    { 2, "Content-Type: text/plain", "FAST" },
    { 4, "Content-Type: application/pdf", "JVBERi0xLjQK" },
    { 5, "Content-Type: message/rfc822", "Please say Hello" },
    { 6, "From: x@example.net", "Please say Hello" },
  };
  g_autoptr (GMimeStream) stream = g_mime_stream_mem_new_with_buffer (nested_message, strlen (nested_message));
  g_autoptr (GMimeParser) parser = g_mime_parser_new_with_stream (stream);
  g_autoptr (GMimeMessage) msg = g_mime_parser_construct_message (parser, NULL);
  GMimeObject *part;
  GMimeMessage *enclosed;
  gint64 start, end;

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const char *f = strstr (nested_message, cases[i].from), *t = strstr (f, cases[i].to);
      g_assert_true (sieve_mime_part_range (msg, stream, cases[i].index, &part, &enclosed, &start, &end));
      g_assert_cmpint (start, ==, f - nested_message);
      g_assert_cmpint (end, ==, t + strlen (cases[i].to) - nested_message);
      g_assert_true ((enclosed != NULL) == (cases[i].index == 6));
    }
  g_assert_false (sieve_mime_part_range (msg, stream, 7, &part, &enclosed, &start, &end));
}

/* A part without fields begins with its empty line (CR LF here) */
static void
test_part_range_no_fields (void)
{
  static const char text[] = "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    "--b\r\n\r\nno fields\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n";
  g_autoptr (GMimeStream) stream = g_mime_stream_mem_new_with_buffer (text, strlen (text));
  g_autoptr (GMimeParser) parser = g_mime_parser_new_with_stream (stream);
  g_autoptr (GMimeMessage) msg = g_mime_parser_construct_message (parser, NULL);
  GMimeObject *part;
  GMimeMessage *enclosed;
  gint64 start, end;

  g_assert_true (sieve_mime_part_range (msg, stream, 1, &part, &enclosed, &start, &end));
  g_assert_cmpint (start, ==, strstr (text, "\r\n\r\nno fields") + 2 - text);
  g_assert_cmpint (end, ==, strstr (text, "no fields") + 9 - text);
  g_assert_true (sieve_mime_part_range (msg, stream, 2, &part, &enclosed, &start, &end));
  g_assert_cmpint (start, ==, strstr (text, "Content-Type: text/plain") - text);
  g_assert_cmpint (end, ==, strstr (text, "hello") + 5 - text);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_mime_init ();
  g_test_add_func ("/sieve-mime/rfc5173/raw", test_raw);
  g_test_add_func ("/sieve-mime/rfc5173/content", test_content);
  g_test_add_func ("/sieve-mime/rfc5173/no-match-variables", test_body_no_match_variables);
  g_test_add_func ("/sieve-mime/rfc5228/question-mark-octet", test_question_mark_octet);
  g_test_add_func ("/sieve-mime/rfc5703/foreverypart", test_foreverypart);
  g_test_add_func ("/sieve-mime/rfc5703/validation", test_loop_validation);
  g_test_add_func ("/sieve-mime/rfc5703/extracttext", test_extracttext);
  g_test_add_func ("/sieve-mime/rfc5703/bounds", test_loop_bounds);
  g_test_add_func ("/sieve-mime/regex", test_regex);
  g_test_add_func ("/sieve-mime/rfc5703/replace-part", test_replace_part);
  g_test_add_func ("/sieve-mime/rfc5703/after-replace-part", test_after_replace_part);
  g_test_add_func ("/sieve-mime/rfc5703/part-range", test_part_range);
  g_test_add_func ("/sieve-mime/rfc5703/part-range-no-fields", test_part_range_no_fields);
  g_test_add_func ("/sieve-mime/content-bound", test_content_bound);
  return g_test_run ();
}
