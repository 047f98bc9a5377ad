/* svc-smime.c - secure mail (RFC 4496 4.5) with OpenSSL CMS:
 *   verify   multipart/signed and signed-data; the result goes into a
 *            header, a bad signature is handled by the configured actions
 *   decrypt  enveloped-data for which a key is configured
 *   sign     mail from configured senders, as multipart/signed
 * MIME handling is GMime's; S/MIME works on the canonical (CRLF) form.
 */
#include "config.h"

#include <unistd.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "services.h"

typedef struct {
  X509_STORE *store;        /* trust for verification, or NULL */
  char **bad_actions;       /* on a signature that does not verify */
  X509 *decrypt_cert;
  EVP_PKEY *decrypt_key;
  char **sign_senders;
  X509 *sign_cert;
  EVP_PKEY *sign_key;
} Smime;

static X509 *
read_cert (const char *path, GError **error)
{
  BIO *b = BIO_new_file (path, "r");
  X509 *x = b ? PEM_read_bio_X509 (b, NULL, NULL, NULL) : NULL;
  BIO_free (b);
  if (x == NULL)
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: not a PEM certificate", path);
  return x;
}

static EVP_PKEY *
read_key (const char *path, GError **error)
{
  BIO *b = BIO_new_file (path, "r");
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey (b, NULL, NULL, NULL) : NULL;
  BIO_free (b);
  if (k == NULL)
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: not a PEM private key", path);
  return k;
}

static gboolean
smime_configure (Service *svc, GKeyFile *kf, const char *group, GError **error)
{
  Smime *s = g_new0 (Smime, 1);
  g_autofree char *ca = service_get_string (kf, group, "ca_file", NULL);
  g_autofree char *bad = service_get_string (kf, group, "bad_signature", "header X-SMIME-Warning: bad signature");
  g_autofree char *dc = service_get_string (kf, group, "decrypt_cert", NULL);
  g_autofree char *dk = service_get_string (kf, group, "decrypt_key", NULL);
  g_autofree char *sc = service_get_string (kf, group, "sign_cert", NULL);
  g_autofree char *sk = service_get_string (kf, group, "sign_key", NULL);

  svc->state = s;
  if (ca)
    {
      s->store = X509_STORE_new ();
      if (X509_STORE_load_file (s->store, ca) != 1)
        {
          g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "ca_file %s cannot be loaded", ca);
          return FALSE;
        }
    }
  s->bad_actions = service_parse_actions (bad, NULL, error);
  if (s->bad_actions == NULL)
    return FALSE;
  if ((dc && !(s->decrypt_cert = read_cert (dc, error))) || (dk && !(s->decrypt_key = read_key (dk, error)))
      || (sc && !(s->sign_cert = read_cert (sc, error))) || (sk && !(s->sign_key = read_key (sk, error))))
    return FALSE;
  s->sign_senders = service_get_list (kf, group, "sign_senders");
  return TRUE;
}

/* The entity as written by GMime, in canonical CRLF form. */
static GByteArray *
canonical (GMimeObject *obj)
{
  return service_object_bytes (obj, GMIME_NEWLINE_FORMAT_DOS, NULL);
}

static GByteArray *
part_bytes (GMimePart *part)
{
  GMimeDataWrapper *w = g_mime_part_get_content (part);
  g_autoptr (GMimeStream) mem = g_mime_stream_mem_new ();
  g_mime_stream_mem_set_owner (GMIME_STREAM_MEM (mem), FALSE);
  if (w)
    g_mime_data_wrapper_write_to_stream (w, mem);
  return g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (mem));
}

static char *
signer_name (CMS_ContentInfo *cms)
{
  STACK_OF (X509) *signers = CMS_get0_signers (cms);
  char buf[256] = "";
  if (signers && sk_X509_num (signers) > 0)
    X509_NAME_oneline (X509_get_subject_name (sk_X509_value (signers, 0)), buf, sizeof buf);
  sk_X509_free (signers);
  return g_strdup (buf);
}

static char *
ssl_reason (void)
{
  char buf[256];
  unsigned long e = ERR_get_error ();
  ERR_clear_error ();
  if (e == 0)
    return g_strdup ("unknown error");
  ERR_error_string_n (e, buf, sizeof buf);
  return g_strdup (buf);
}

/* Verifies a detached or embedded signature; fills @who / @why. */
static gboolean
verify (Smime *s, const GByteArray *sig, const GByteArray *content, char **who, char **why)
{
  BIO *sb = BIO_new_mem_buf (sig->data, (int) sig->len);
  BIO *cb = content ? BIO_new_mem_buf (content->data, (int) content->len) : NULL;
  CMS_ContentInfo *cms = d2i_CMS_bio (sb, NULL);
  gboolean ok = FALSE;

  ERR_clear_error ();
  if (cms == NULL)
    *why = g_strdup ("unreadable signature");
  else if (CMS_verify (cms, NULL, s->store, cb, NULL, (content ? CMS_DETACHED : 0) | CMS_BINARY
                       | (s->store ? 0 : CMS_NO_SIGNER_CERT_VERIFY)) == 1)
    {
      ok = TRUE;
      *who = signer_name (cms);
    }
  else
    *why = ssl_reason ();
  CMS_ContentInfo_free (cms);
  BIO_free (sb);
  BIO_free (cb);
  return ok;
}

static gboolean
is_type (GMimeObject *obj, const char *type, const char *subtype)
{
  GMimeContentType *ct = g_mime_object_get_content_type (obj);
  return ct && g_mime_content_type_is_type (ct, type, subtype);
}

/* An entity parsed from what CMS_decrypt wrote into @ob, or NULL. */
static GMimeObject *
decrypted_entity (BIO *ob)
{
  char *data = NULL;
  long len = BIO_get_mem_data (ob, &data);
  g_autoptr (GMimeStream) ps = g_mime_stream_mem_new_with_buffer (data, len);
  g_autoptr (GMimeParser) pp = g_mime_parser_new_with_stream (ps);

  return g_mime_parser_construct_part (pp, NULL);
}

/* Decrypts an enveloped top-level part; returns the message's top-level
 * part afterwards (the decrypted one, or still @top). */
static GMimeObject *
smime_decrypt (Smime *s, GMimeMessage *msg, GMimeObject *top, ServiceOutput *out)
{
  g_autoptr (GByteArray) der = part_bytes (GMIME_PART (top));
  BIO *ib = BIO_new_mem_buf (der->data, (int) der->len);
  BIO *ob = BIO_new (BIO_s_mem ());
  CMS_ContentInfo *cms = d2i_CMS_bio (ib, NULL);

  if (cms && CMS_decrypt (cms, s->decrypt_key, s->decrypt_cert, NULL, ob, CMS_BINARY) == 1)
    {
      g_autoptr (GMimeObject) inner = decrypted_entity (ob);
      if (inner)
        {
          g_mime_message_set_mime_part (msg, inner);
          top = inner; /* the message holds it */
          service_add_header (&out->verdict, "X-SMIME-Status: decrypted");
          service_emit_message (msg, "smime-XXXXXX", out);
        }
    }
  else if (cms)
    {
      g_autofree char *why = ssl_reason ();
      service_add_header (&out->verdict, "X-SMIME-Status: cannot decrypt (%s)", why);
    }
  CMS_ContentInfo_free (cms);
  BIO_free (ib);
  BIO_free (ob);
  return top;
}

/* A multipart/signed of two parts: the result goes into a header, and a
 * bad signature gets the configured actions. */
static void
smime_verify (Smime *s, GMimeMultipart *top, ServiceOutput *out)
{
  GMimeObject *content = g_mime_multipart_get_part (top, 0);
  GMimeObject *sigpart = g_mime_multipart_get_part (top, 1);
  g_autofree char *who = NULL, *why = NULL;
  g_autoptr (GByteArray) sig = NULL, canon = NULL;

  if (!GMIME_IS_PART (sigpart) || !(is_type (sigpart, "application", "pkcs7-signature")
                                    || is_type (sigpart, "application", "x-pkcs7-signature")))
    return;
  sig = part_bytes (GMIME_PART (sigpart));
  canon = canonical (content);
  if (verify (s, sig, canon, &who, &why))
    {
      service_add_header (&out->verdict, "X-SMIME-Status: valid signature; signer=%s", who);
      return;
    }
  service_add_header (&out->verdict, "X-SMIME-Status: invalid signature (%s)", why);
  for (guint i = 0; s->bad_actions[i]; i++)
    service_apply_action (&out->verdict, s->bad_actions[i], NULL);
}

/* @content and its detached signature @der as one multipart/signed. */
static GMimeObject *
signed_entity (GMimeObject *content, const char *der, long len)
{
  GMimeMultipartSigned *mps = g_mime_multipart_signed_new ();
  GMimePart *sp = g_mime_part_new_with_type ("application", "pkcs7-signature");
  g_autoptr (GMimeStream) ds = g_mime_stream_mem_new_with_buffer (der, len);
  GMimeDataWrapper *w = g_mime_data_wrapper_new_with_stream (ds, GMIME_CONTENT_ENCODING_DEFAULT);
  GMimeContentType *ct = g_mime_object_get_content_type (GMIME_OBJECT (mps));

  g_mime_multipart_set_boundary (GMIME_MULTIPART (mps), NULL); /* a fresh one */
  g_mime_content_type_set_parameter (ct, "protocol", "application/pkcs7-signature");
  g_mime_content_type_set_parameter (ct, "micalg", "sha-256");
  g_mime_part_set_content (sp, w);
  g_mime_part_set_content_encoding (sp, GMIME_CONTENT_ENCODING_BASE64);
  g_mime_part_set_filename (sp, "smime.p7s");
  g_object_unref (w);
  g_mime_multipart_add (GMIME_MULTIPART (mps), content);
  g_mime_multipart_add (GMIME_MULTIPART (mps), GMIME_OBJECT (sp));
  g_object_unref (sp);
  return GMIME_OBJECT (mps);
}

/* Forgets adapted parts written before (a decrypted message now signed). */
static void
output_reset (ServiceOutput *out)
{
  g_clear_pointer (&out->header, g_bytes_unref);
  if (out->body_fd >= 0)
    {
      close (out->body_fd);
      out->body_fd = -1;
    }
}

/* Signs @top for a configured sender, as multipart/signed. */
static void
smime_sign (Smime *s, GMimeMessage *msg, GMimeObject *top, ServiceOutput *out)
{
  g_autoptr (GByteArray) canon = canonical (top);
  BIO *cb = BIO_new_mem_buf (canon->data, (int) canon->len);
  BIO *ob = BIO_new (BIO_s_mem ());
  CMS_ContentInfo *cms = CMS_sign (s->sign_cert, s->sign_key, NULL, cb, CMS_DETACHED | CMS_BINARY);

  if (cms && i2d_CMS_bio (ob, cms) == 1)
    {
      char *der = NULL;
      long len = BIO_get_mem_data (ob, &der);
      g_autoptr (GMimeObject) mps = NULL;

      g_object_ref (top);
      mps = signed_entity (top, der, len);
      g_mime_message_set_mime_part (msg, mps);
      g_object_unref (top);
      service_add_header (&out->verdict, "X-SMIME-Status: signed by the mail system");
      output_reset (out);
      service_emit_message (msg, "smime-XXXXXX", out);
    }
  CMS_ContentInfo_free (cms);
  BIO_free (cb);
  BIO_free (ob);
}

static gboolean
is_enveloped (GMimeObject *obj)
{
  return GMIME_IS_PART (obj)
         && (is_type (obj, "application", "pkcs7-mime") || is_type (obj, "application", "x-pkcs7-mime"));
}

static gboolean
signs_for (const Smime *s, const char *from)
{
  return s->sign_cert && s->sign_key && from && s->sign_senders
         && g_strv_contains ((const char *const *) s->sign_senders, from);
}

static void
smime_check (Service *svc, const ServiceInput *in, ServiceOutput *out)
{
  Smime *s = svc->state;
  g_autoptr (GMimeMessage) msg = in->header ? service_input_message (in, 0) : NULL;
  GMimeObject *top = msg ? g_mime_message_get_mime_part (msg) : NULL;

  if (top == NULL)
    return;
  /* decrypt what we hold a key for */
  if (s->decrypt_key && s->decrypt_cert && is_enveloped (top))
    top = smime_decrypt (s, msg, top, out);
  /* verify signatures */
  if (GMIME_IS_MULTIPART_SIGNED (top) && g_mime_multipart_get_count (GMIME_MULTIPART (top)) == 2)
    smime_verify (s, GMIME_MULTIPART (top), out);
  /* sign for the configured senders */
  else if (signs_for (s, g_hash_table_lookup (in->env, "Mail-From")))
    smime_sign (s, msg, top, out);
}

static void
smime_free (gpointer p)
{
  Smime *s = p;
  X509_STORE_free (s->store);
  g_strfreev (s->bad_actions);
  X509_free (s->decrypt_cert);
  EVP_PKEY_free (s->decrypt_key);
  X509_free (s->sign_cert);
  EVP_PKEY_free (s->sign_key);
  g_strfreev (s->sign_senders);
  g_free (s);
}

const ServiceModule service_smime = {
  "smime", OCP_PARTS_ALL, smime_configure, smime_check, smime_free,
};
