/* svc-normalize.c - format normalisation (RFC 4496 4.6).
 *
 * Absurd command values (over-long addresses) are refused with an error
 * reply.  The message is parsed with GMime, which is lenient about broken
 * MIME, and written back well-formed: multiparts get boundaries, parts
 * with lines over 998 octets or raw 8-bit in 7bit parts are re-encoded
 * (quoted-printable for text, base64 otherwise), and file names are made
 * safe.  Only when that changes anything is an adapted message sent.
 */
#include "config.h"

#include <string.h>

#include "services.h"

#define LINE_MAX_OCTETS 998

typedef struct {
  guint max_address;
} Normalize;

static gboolean
normalize_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  Normalize *n = g_new0 (Normalize, 1);
  n->max_address = (guint) service_get_number (kf, group, "max_address", "256");
  svc->state = n;
  return TRUE;
}

/* Does this part's encoded content need re-encoding? */
static gboolean
needs_encoding (GMimePart *part)
{
  GMimeDataWrapper *w = g_mime_part_get_content (part);
  GMimeContentEncoding enc = g_mime_part_get_content_encoding (part);
  g_autoptr (GMimeStream) mem = NULL;
  GByteArray *a;
  gsize line = 0;
  gboolean eightbit = FALSE;

  if (w == NULL || enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
      || enc == GMIME_CONTENT_ENCODING_BINARY)
    return FALSE;
  mem = g_mime_stream_mem_new ();
  if (g_mime_data_wrapper_write_to_stream (w, mem) < 0)
    return FALSE;
  a = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
  for (guint i = 0; i < a->len; i++)
    {
      if (a->data[i] == '\n')
        line = 0;
      else if (++line > LINE_MAX_OCTETS)
        return TRUE;
      eightbit |= a->data[i] >= 0x80;
    }
  return eightbit && enc != GMIME_CONTENT_ENCODING_8BIT;
}

/* A file name a file system could take wrongly becomes a plain one. */
static gboolean
fix_filename (GMimePart *part)
{
  const char *name = g_mime_part_get_filename (part);
  g_autofree char *safe = NULL;

  if (name == NULL || !(strpbrk (name, "/\\\r\n\t") || name[0] == '.' || strlen (name) > 200))
    return FALSE;
  safe = g_path_get_basename (name);
  g_strdelimit (safe, "/\\\r\n\t:", '_');
  if (safe[0] == '.')
    safe[0] = '_';
  if (strlen (safe) > 200)
    safe[200] = '\0';
  g_mime_part_set_filename (part, safe);
  return TRUE;
}

/* Quoted-printable for text, base64 for the rest. */
static gboolean
fix_encoding (GMimePart *part)
{
  GMimeContentType *ct;
  gboolean text;

  if (!needs_encoding (part))
    return FALSE;
  ct = g_mime_object_get_content_type (GMIME_OBJECT (part));
  text = ct && g_mime_content_type_is_type (ct, "text", "*");
  g_mime_part_set_content_encoding (part, text ? GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
                                               : GMIME_CONTENT_ENCODING_BASE64);
  return TRUE;
}

static gboolean fix_part (GMimeObject *obj);

static gboolean
fix_multipart (GMimeMultipart *mp)
{
  gboolean changed = FALSE;

  if (g_mime_multipart_get_boundary (mp) == NULL)
    {
      g_mime_multipart_set_boundary (mp, NULL); /* generates one */
      changed = TRUE;
    }
  for (int i = 0; i < g_mime_multipart_get_count (mp); i++)
    changed |= fix_part (g_mime_multipart_get_part (mp, i));
  return changed;
}

static gboolean
fix_part (GMimeObject *obj)
{
  gboolean changed = FALSE;

  if (GMIME_IS_MULTIPART (obj))
    changed = fix_multipart (GMIME_MULTIPART (obj));
  else if (GMIME_IS_PART (obj))
    {
      changed = fix_filename (GMIME_PART (obj));
      changed |= fix_encoding (GMIME_PART (obj));
    }
  else if (GMIME_IS_MESSAGE_PART (obj))
    {
      GMimeMessage *inner = g_mime_message_part_get_message (GMIME_MESSAGE_PART (obj));
      if (inner && g_mime_message_get_mime_part (inner))
        changed = fix_part (g_mime_message_get_mime_part (inner));
    }
  return changed;
}

/* The reply for an absurdly long sender or recipient, or NULL. */
static const char *
address_too_long (const Normalize *n, const ServiceInput *in)
{
  const char *from = g_hash_table_lookup (in->env, "Mail-From");

  if (from && strlen (from) > n->max_address)
    return "reject 553 5.1.7 Sender address too long";
  for (guint i = 0; in->rcpts[i]; i++)
    if (strlen (in->rcpts[i]) > n->max_address)
      return "reject 553 5.1.3 Recipient address too long";
  return NULL;
}

static void
normalize_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  const char *refusal = address_too_long (svc->state, in);
  g_autoptr (GMimeMessage) msg = NULL;

  if (refusal)
    {
      service_apply_action (&out->verdict, refusal, NULL);
      return;
    }
  if (in->header == NULL || !service_input_has_body (in))
    return;
  msg = service_input_message (in, SERVICE_PARSE_PERSIST);
  if (msg == NULL || g_mime_message_get_mime_part (msg) == NULL
      || !fix_part (g_mime_message_get_mime_part (msg)))
    return;
  if (service_emit_message (msg, "normalize-XXXXXX", out))
    service_add_header (&out->verdict, "X-Normalized: MIME structure repaired");
}

const ServiceModule service_normalize = {
  "normalize", OCP_PARTS_ALL, normalize_configure, normalize_check, g_free,
};
