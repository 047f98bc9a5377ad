/* ocp-profile.c - our OCP profile for LMTP delivery (docs/ocp-lmtp-profile.md):
 * parts, envelope metadata on the AMS, and the verdict on the server's AMS.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "ocp.h"

static const struct {
  const char *name;
  guint bit;
} part_names[] = {
  { "envelope", OCP_PART_ENVELOPE },
  { "message-header", OCP_PART_HEADER },
  { "message-body", OCP_PART_BODY },
};

gboolean
ocp_parts_parse (const char *list, guint *out)
{
  g_auto (GStrv) v = g_strsplit_set (list, ",; ", -1);

  *out = 0;
  for (guint i = 0; v[i]; i++)
    {
      gboolean found = FALSE;
      if (v[i][0] == '\0')
        continue;
      for (guint k = 0; k < G_N_ELEMENTS (part_names); k++)
        if (strcmp (v[i], part_names[k].name) == 0)
          {
            *out |= part_names[k].bit;
            found = TRUE;
          }
      if (!found)
        return FALSE;
    }
  return TRUE;
}

OcpValue *
ocp_parts_to_value (guint parts)
{
  OcpValue *l = ocp_list_new ();
  for (guint k = 0; k < G_N_ELEMENTS (part_names); k++)
    if (parts & part_names[k].bit)
      ocp_value_add (l, ocp_atom_new (part_names[k].name));
  return l;
}

guint
ocp_parts_from_value (const OcpValue *list)
{
  guint parts = 0;

  if (list == NULL || list->kind != OCP_LIST)
    return 0;
  for (guint i = 0; i < list->items->len; i++)
    {
      const char *a = ocp_value_get_atom (list->items->pdata[i]);
      for (guint k = 0; a && k < G_N_ELEMENTS (part_names); k++)
        if (strcmp (a, part_names[k].name) == 0)
          parts |= part_names[k].bit;
    }
  return parts;
}

static const char *const verdict_names[] = {
  [OCP_VERDICT_ACCEPT] = "accept", [OCP_VERDICT_REJECT] = "reject",
  [OCP_VERDICT_TEMPFAIL] = "tempfail", [OCP_VERDICT_DISCARD] = "discard",
  [OCP_VERDICT_QUARANTINE] = "quarantine", [OCP_VERDICT_REDIRECT] = "redirect",
};

const char *
ocp_verdict_name (OcpVerdictKind v)
{
  return v < G_N_ELEMENTS (verdict_names) ? verdict_names[v] : "accept";
}

gboolean
ocp_verdict_parse (const char *name, OcpVerdictKind *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (verdict_names); i++)
    if (name && strcmp (name, verdict_names[i]) == 0)
      {
        *out = i;
        return TRUE;
      }
  return FALSE;
}

void
ocp_verdict_init (OcpVerdict *v)
{
  memset (v, 0, sizeof *v);
  v->body_fd = -1;
}

void
ocp_verdict_clear (OcpVerdict *v)
{
  g_free (v->reply_text);
  g_free (v->folder);
  g_free (v->redirect);
  if (v->add_headers)
    g_ptr_array_unref (v->add_headers);
  if (v->remove_headers)
    g_ptr_array_unref (v->remove_headers);
  g_free (v->subject_tag);
  g_free (v->flags);
  g_free (v->score);
  g_free (v->threshold);
  g_clear_pointer (&v->labels, g_ptr_array_unref);
  g_free (v->service_id);
  if (v->header)
    g_bytes_unref (v->header);
  if (v->body_fd >= 0)
    close (v->body_fd);
  g_clear_pointer (&v->recipients, g_ptr_array_unref);
  g_free (v->server);
  ocp_verdict_init (v);
}

static void
recipient_verdict_free (gpointer p)
{
  OcpRecipientVerdict *rv = p;

  g_free (rv->address);
  ocp_verdict_clear (&rv->verdict);
  g_free (rv);
}

static gpointer
copy_string (gconstpointer s, gpointer unused)
{
  return g_strdup (s);
}

static GPtrArray *
strv_copy (const GPtrArray *a)
{
  GPtrArray *c;

  if (a == NULL)
    return NULL;
  c = g_ptr_array_copy ((GPtrArray *) a, copy_string, NULL);
  g_ptr_array_set_free_func (c, g_free);
  return c;
}

void
ocp_verdict_copy (OcpVerdict *dst, const OcpVerdict *src)
{
  ocp_verdict_init (dst);
  dst->verdict = src->verdict;
  dst->reply_code = src->reply_code;
  dst->reply_text = g_strdup (src->reply_text);
  dst->folder = g_strdup (src->folder);
  dst->redirect = g_strdup (src->redirect);
  dst->add_headers = strv_copy (src->add_headers);
  dst->remove_headers = strv_copy (src->remove_headers);
  dst->subject_tag = g_strdup (src->subject_tag);
  dst->flags = g_strdup (src->flags);
  dst->service_id = g_strdup (src->service_id);
  dst->score = g_strdup (src->score);
  dst->threshold = g_strdup (src->threshold);
  dst->labels = strv_copy (src->labels);
  dst->header = src->header ? g_bytes_ref (src->header) : NULL;
  dst->body_fd = src->body_fd >= 0 ? dup (src->body_fd) : -1;
  dst->body_len = src->body_len;
  dst->server = g_strdup (src->server);
  for (guint i = 0; src->recipients && i < src->recipients->len; i++)
    {
      const OcpRecipientVerdict *rv = src->recipients->pdata[i];
      ocp_verdict_add_recipient (dst, rv->address, &rv->verdict);
    }
}

void
ocp_verdict_add_recipient (OcpVerdict *v, const char *address, const OcpVerdict *rv)
{
  OcpRecipientVerdict *section = g_new0 (OcpRecipientVerdict, 1);

  section->address = g_strdup (address);
  ocp_verdict_copy (&section->verdict, rv);
  /* a section has no body and no sections of its own */
  if (section->verdict.body_fd >= 0)
    close (section->verdict.body_fd);
  section->verdict.body_fd = -1;
  section->verdict.body_len = 0;
  g_clear_pointer (&section->verdict.recipients, g_ptr_array_unref);
  if (v->recipients == NULL)
    v->recipients = g_ptr_array_new_with_free_func (recipient_verdict_free);
  g_ptr_array_add (v->recipients, section);
}

const OcpRecipientVerdict *
ocp_verdict_for_recipient (const OcpVerdict *v, const char *address)
{
  for (guint i = 0; v->recipients && address && i < v->recipients->len; i++)
    {
      const OcpRecipientVerdict *rv = v->recipients->pdata[i];
      if (g_ascii_strcasecmp (rv->address, address) == 0)
        return rv;
    }
  return NULL;
}

guint
ocp_profile_version (const char *uri)
{
  if (g_strcmp0 (uri, OCP_LMTP_PROFILE_2) == 0)
    return 2;
  if (g_strcmp0 (uri, OCP_LMTP_PROFILE) == 0)
    return 1;
  return 0;
}

static gboolean
text_ok (const char *s)
{
  /* nothing a verdict carries may break a header or a reply line */
  for (const guchar *p = (const guchar *) s; *p; p++)
    if (*p < 0x20 && *p != '\t')
      return FALSE;
  return TRUE;
}

/* The verdict's parameters are named parameters of the AMS (@m), or named
 * members of a recipient's section (@s) in Recipient-Verdicts. */
static const OcpValue *
param (const OcpMessage *m, const OcpValue *s, const char *name)
{
  return s ? ocp_value_get_named (s, name) : ocp_message_get (m, name);
}

static void
put (OcpMessage *m, OcpValue *s, const char *name, OcpValue *value)
{
  if (s)
    ocp_value_add_named (s, name, value);
  else
    ocp_message_set (m, name, value);
}

static char *
get_text (const OcpMessage *m, const OcpValue *s, const char *name, GError **error)
{
  const char *a = ocp_value_get_atom (param (m, s, name));
  if (a == NULL)
    return NULL;
  if (!text_ok (a))
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "%s contains control characters", name);
      return NULL;
    }
  return g_strdup (a);
}

static GPtrArray *
get_list (const OcpMessage *m, const OcpValue *s, const char *name, GError **error)
{
  const OcpValue *l = param (m, s, name);
  GPtrArray *out;

  if (l == NULL)
    return NULL;
  if (l->kind != OCP_LIST)
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "%s is not a list", name);
      return NULL;
    }
  out = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < l->items->len; i++)
    {
      const char *a = ocp_value_get_atom (l->items->pdata[i]);
      if (a == NULL || !text_ok (a))
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "bad item in %s", name);
          g_ptr_array_unref (out);
          return NULL;
        }
      g_ptr_array_add (out, g_strdup (a));
    }
  return out;
}

static const struct {
  const char *name;
  char letter;
} flag_names[] = {
  { "Draft", 'D' }, { "Flagged", 'F' }, { "Answered", 'R' }, { "Seen", 'S' }, { "Deleted", 'T' },
};

/* "-12.5", "3", "0.25" */
static gboolean
decimal_ok (const char *s)
{
  gboolean digits = FALSE, dot = FALSE;

  if (*s == '-')
    s++;
  for (; *s; s++)
    {
      if (g_ascii_isdigit (*s))
        digits = TRUE;
      else if (*s == '.' && !dot)
        dot = TRUE;
      else
        return FALSE;
    }
  return digits;
}

/* Reply: {code ["text"]} */
static gboolean
reply_from_params (OcpVerdict *v, const OcpMessage *ams, const OcpValue *sec, GError **error)
{
  const OcpValue *reply = param (ams, sec, "Reply");
  const char *text;
  guint64 code = 0;

  if (reply == NULL)
    return TRUE;
  text = reply->kind == OCP_STRUCT && reply->items->len > 1 ? ocp_value_get_atom (reply->items->pdata[1]) : NULL;
  if (reply->kind != OCP_STRUCT || reply->items->len < 1 || !ocp_value_get_uint (reply->items->pdata[0], &code)
      || code < 200 || code > 599 || (text && !text_ok (text)))
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "bad Reply");
      return FALSE;
    }
  v->reply_code = (guint) code;
  v->reply_text = g_strdup (text);
  return TRUE;
}

/* The text and list parameters, in this order: the first bad one is the
 * error.  Flags come as names, into *flags. */
static gboolean
texts_from_params (OcpVerdict *v, const OcpMessage *ams, const OcpValue *sec, GPtrArray **flags,
                   GError **error)
{
  GError *e = NULL;

  v->folder = get_text (ams, sec, "Folder", &e);
  if (!e)
    v->redirect = get_text (ams, sec, "Redirect", &e);
  if (!e)
    v->subject_tag = get_text (ams, sec, "Subject-Tag", &e);
  if (!e)
    v->service_id = get_text (ams, sec, "Service-Id", &e);
  if (!e)
    v->add_headers = get_list (ams, sec, "Add-Headers", &e);
  if (!e)
    v->remove_headers = get_list (ams, sec, "Remove-Headers", &e);
  if (!e)
    *flags = get_list (ams, sec, "Flags", &e);
  if (!e)
    v->score = get_text (ams, sec, "Score", &e);
  if (!e)
    v->threshold = get_text (ams, sec, "Score-Threshold", &e);
  if (!e)
    v->labels = get_list (ams, sec, "Labels", &e);
  if (!e && ((v->score && !decimal_ok (v->score)) || (v->threshold && !decimal_ok (v->threshold))))
    g_set_error (&e, OCP_ERROR, OCP_ERROR_PROTOCOL, "Score is not a decimal number");
  if (e)
    {
      g_propagate_error (error, e);
      return FALSE;
    }
  return TRUE;
}

/* Flag names -> Maildir letters; unknown names are skipped. */
static char *
flag_letters (GPtrArray *names)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < names->len; i++)
    for (guint k = 0; k < G_N_ELEMENTS (flag_names); k++)
      if (g_ascii_strcasecmp (names->pdata[i], flag_names[k].name) == 0)
        g_string_append_c (s, flag_names[k].letter);
  return g_string_free (s, FALSE);
}

/* Every Add-Headers item must be "Name: value". */
static gboolean
add_headers_ok (const OcpVerdict *v, GError **error)
{
  for (guint i = 0; v->add_headers && i < v->add_headers->len; i++)
    {
      const char *h = v->add_headers->pdata[i];
      const char *colon = strchr (h, ':');
      if (colon == NULL || colon == h || strcspn (h, " \t") < (gsize) (colon - h))
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "Add-Headers item is not 'Name: value'");
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
verdict_from_params (OcpVerdict *v, const OcpMessage *ams, const OcpValue *sec, GError **error)
{
  const char *verdict = ocp_value_get_atom (param (ams, sec, "Verdict"));
  g_autoptr (GPtrArray) flags = NULL;

  if (verdict && !ocp_verdict_parse (verdict, &v->verdict))
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "unknown verdict '%s'", verdict);
      return FALSE;
    }
  if (!reply_from_params (v, ams, sec, error) || !texts_from_params (v, ams, sec, &flags, error))
    return FALSE;
  if (flags)
    v->flags = flag_letters (flags);
  return add_headers_ok (v, error);
}

/* A list parameter of atoms, unless there are none. */
static void
put_list (OcpMessage *ams, OcpValue *sec, const char *name, const GPtrArray *items)
{
  OcpValue *l;

  if (items == NULL || items->len == 0)
    return;
  l = ocp_list_new ();
  for (guint i = 0; i < items->len; i++)
    ocp_value_add (l, ocp_atom_new (items->pdata[i]));
  put (ams, sec, name, l);
}

/* A text parameter, unless it is NULL. */
static void
put_text (OcpMessage *ams, OcpValue *sec, const char *name, const char *text)
{
  if (text)
    put (ams, sec, name, ocp_atom_new (text));
}

/* Maildir letters -> Flags: (names) */
static void
put_flags (OcpMessage *ams, OcpValue *sec, const char *letters)
{
  OcpValue *l;

  if (letters == NULL || letters[0] == '\0')
    return;
  l = ocp_list_new ();
  for (const char *p = letters; *p; p++)
    for (guint k = 0; k < G_N_ELEMENTS (flag_names); k++)
      if (flag_names[k].letter == *p)
        ocp_value_add (l, ocp_atom_new (flag_names[k].name));
  put (ams, sec, "Flags", l);
}

static void
verdict_to_params (const OcpVerdict *v, OcpMessage *ams, OcpValue *sec)
{
  put (ams, sec, "Verdict", ocp_atom_new (ocp_verdict_name (v->verdict)));
  if (v->reply_code)
    {
      OcpValue *r = ocp_struct_new ();
      ocp_value_add (r, ocp_atom_new_uint (v->reply_code));
      if (v->reply_text)
        ocp_value_add (r, ocp_atom_new (v->reply_text));
      put (ams, sec, "Reply", r);
    }
  put_text (ams, sec, "Folder", v->folder);
  put_text (ams, sec, "Redirect", v->redirect);
  put_text (ams, sec, "Subject-Tag", v->subject_tag);
  put_text (ams, sec, "Service-Id", v->service_id);
  put_list (ams, sec, "Add-Headers", v->add_headers);
  put_list (ams, sec, "Remove-Headers", v->remove_headers);
  put_text (ams, sec, "Score", v->score);
  put_text (ams, sec, "Score-Threshold", v->threshold);
  put_list (ams, sec, "Labels", v->labels);
  put_flags (ams, sec, v->flags);
}

/* Recipient-Verdicts: ({"address"\r\nVerdict: ...\r\nHeader: ...\r\n}, ...) */
static gboolean
recipients_from_message (OcpVerdict *v, const OcpMessage *ams, GError **error)
{
  const OcpValue *l = ocp_message_get (ams, "Recipient-Verdicts");

  if (l == NULL)
    return TRUE;
  if (l->kind != OCP_LIST)
    {
      g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "Recipient-Verdicts is not a list");
      return FALSE;
    }
  v->recipients = g_ptr_array_new_with_free_func (recipient_verdict_free);
  for (guint i = 0; i < l->items->len; i++)
    {
      const OcpValue *sec = l->items->pdata[i];
      const char *address = sec->kind == OCP_STRUCT && sec->items->len >= 1
                            ? ocp_value_get_atom (sec->items->pdata[0]) : NULL;
      const OcpValue *header = ocp_value_get_named (sec, "Header");
      OcpRecipientVerdict *rv;

      if (address == NULL || !text_ok (address) || (header && header->kind != OCP_ATOM))
        {
          g_set_error (error, OCP_ERROR, OCP_ERROR_PROTOCOL, "bad item in Recipient-Verdicts");
          return FALSE;
        }
      rv = g_new0 (OcpRecipientVerdict, 1);
      rv->address = g_strdup (address);
      ocp_verdict_init (&rv->verdict);
      g_ptr_array_add (v->recipients, rv);
      if (!verdict_from_params (&rv->verdict, NULL, sec, error))
        return FALSE;
      if (header)
        rv->verdict.header = g_bytes_new (header->atom, header->atom_len);
    }
  return TRUE;
}

gboolean
ocp_verdict_from_message (OcpVerdict *v, const OcpMessage *ams, GError **error)
{
  return verdict_from_params (v, ams, NULL, error) && recipients_from_message (v, ams, error);
}

void
ocp_verdict_to_message (const OcpVerdict *v, OcpMessage *ams)
{
  verdict_to_params (v, ams, NULL);
}

void
ocp_verdict_recipients_to_message (const OcpVerdict *v, OcpMessage *ams)
{
  OcpValue *l;

  if (v->recipients == NULL || v->recipients->len == 0)
    return;
  l = ocp_list_new ();
  for (guint i = 0; i < v->recipients->len; i++)
    {
      const OcpRecipientVerdict *rv = v->recipients->pdata[i];
      OcpValue *sec = ocp_struct_new ();
      gsize n;
      const char *h;

      ocp_value_add (sec, ocp_atom_new (rv->address));
      verdict_to_params (&rv->verdict, NULL, sec);
      if (rv->verdict.header)
        {
          h = g_bytes_get_data (rv->verdict.header, &n);
          ocp_value_add_named (sec, "Header", ocp_atom_new_len (h, n));
        }
      ocp_value_add (l, sec);
    }
  ocp_message_set (ams, "Recipient-Verdicts", l);
}

static void
set_text (OcpMessage *m, const char *name, const char *value)
{
  if (value)
    ocp_message_set (m, name, ocp_atom_new (value));
}

/* Recipient-Data: ({"address"\r\nName: value\r\n...}, ...) for the
 * recipients that have settings; none at all if nobody has any. */
static void
recipient_data_to_message (const OcpRequest *r, OcpMessage *ams)
{
  OcpValue *l = ocp_list_new ();

  for (guint i = 0; r->rcpt_to && r->rcpt_to[i]; i++)
    {
      GHashTable *data = r->rcpt_data[i];
      g_autoptr (GList) names = NULL;
      OcpValue *sec;

      if (data == NULL || g_hash_table_size (data) == 0)
        continue;
      sec = ocp_value_add (ocp_struct_new (), ocp_atom_new (r->rcpt_to[i]));
      names = g_list_sort (g_hash_table_get_keys (data), (GCompareFunc) strcmp);
      for (GList *n = names; n; n = n->next)
        ocp_value_add_named (sec, n->data, ocp_atom_new (g_hash_table_lookup (data, n->data)));
      ocp_value_add (l, sec);
    }
  if (l->items->len)
    ocp_message_set (ams, "Recipient-Data", l);
  else
    ocp_value_free (l);
}

char *
ocp_recipient_data_key (const char *address, const char *name)
{
  g_autofree char *lc = g_ascii_strdown (address, -1);
  return g_strdup_printf ("Recipient-Data:%s:%s", lc, name);
}

static void
recipient_data_from_value (GHashTable *env, const OcpValue *list)
{
  for (guint i = 0; i < list->items->len; i++)
    {
      const OcpValue *sec = list->items->pdata[i];
      const char *address = sec->kind == OCP_STRUCT && sec->items->len
                            ? ocp_value_get_atom (sec->items->pdata[0]) : NULL;
      for (guint k = 0; address && k < sec->named->len; k++)
        {
          const OcpNamed *n = sec->named->pdata[k];
          const char *v = n->values->len ? ocp_value_get_atom (n->values->pdata[0]) : NULL;
          if (v && text_ok (v))
            g_hash_table_replace (env, ocp_recipient_data_key (address, n->name), g_strdup (v));
        }
    }
}

void
ocp_request_to_message (const OcpRequest *r, OcpMessage *ams)
{
  OcpValue *rcpts = ocp_list_new ();

  set_text (ams, "Stage", r->stage);
  set_text (ams, "Transaction-Id", r->transaction_id);
  set_text (ams, "Client-Address", r->client_address);
  set_text (ams, "Client-Name", r->client_name);
  set_text (ams, "Mail-From", r->mail_from ? r->mail_from : "");
  set_text (ams, "Mail-Params", r->mail_params);
  for (guint i = 0; r->rcpt_to && r->rcpt_to[i]; i++)
    ocp_value_add (rcpts, ocp_atom_new (r->rcpt_to[i]));
  ocp_message_set (ams, "Rcpt-To", rcpts);
  if (r->orcpt)
    {
      OcpValue *o = ocp_list_new ();
      for (guint i = 0; r->rcpt_to && r->rcpt_to[i]; i++)
        ocp_value_add (o, ocp_atom_new (r->orcpt[i] ? r->orcpt[i] : ""));
      ocp_message_set (ams, "Orcpt", o);
    }
  if (r->rcpt_data)
    recipient_data_to_message (r, ams);
  if (r->message_size)
    ocp_message_set (ams, "Message-Size", ocp_atom_new_uint (r->message_size));
  set_text (ams, "Bypass", r->bypass);
  set_text (ams, "Prior-Verdicts", r->prior_verdicts);
}

GHashTable *
ocp_envelope_from_message (const OcpMessage *ams)
{
  GHashTable *env = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  for (guint i = 0; i < ams->named->len; i++)
    {
      const OcpNamed *n = ams->named->pdata[i];
      const OcpValue *v = n->values->len ? n->values->pdata[0] : NULL;
      if (v == NULL)
        continue;
      if (strcmp (n->name, "Recipient-Data") == 0 && v->kind == OCP_LIST)
        recipient_data_from_value (env, v);
      else if (v->kind == OCP_ATOM)
        g_hash_table_replace (env, g_strdup (n->name), g_strndup (v->atom, v->atom_len));
      else if (v->kind == OCP_LIST)
        {
          GString *s = g_string_new (NULL);
          for (guint k = 0; k < v->items->len; k++)
            {
              const char *a = ocp_value_get_atom (v->items->pdata[k]);
              if (k)
                g_string_append (s, ", ");
              g_string_append (s, a ? a : "");
            }
          g_hash_table_replace (env, g_strdup (n->name), g_string_free (s, FALSE));
        }
    }
  return env;
}
