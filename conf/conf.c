/* conf.c - the configuration object, at the top of conf/: built-in
 * defaults, loading a file (checked for unknown keys first, then everything
 * the main table describes, in its order), the reload comparison,
 * reference counting and the lookups callers make.
 *
 * It hands the main table (settings.c) to the table engine
 * (conf-table.c); values, problems with file:line, the maps and OPES have
 * files of their own below it (see conf-private.h).
 */
#include "config.h"

#include <string.h>

#include "conf-private.h"

LmtpdConfig *
lmtpd_config_ref (LmtpdConfig *config)
{
  g_return_val_if_fail (config != NULL, NULL);
  g_atomic_ref_count_inc (&config->ref_count);
  return config;
}

void
lmtpd_config_unref (LmtpdConfig *c)
{
  if (c == NULL || !g_atomic_ref_count_dec (&c->ref_count))
    return;
  conf_free_values (&conf_main_table, c);
  g_clear_pointer (&c->domain_mailbox, g_hash_table_unref);
  g_clear_pointer (&c->rewrites, g_ptr_array_unref);
  g_clear_pointer (&c->rules, g_ptr_array_unref);
  g_clear_pointer (&c->services, g_ptr_array_unref);
  g_clear_pointer (&c->users, g_hash_table_unref);
  g_clear_pointer (&c->xforward_hosts, g_ptr_array_unref);
  if (c->users_pgsql_password)
    memset (c->users_pgsql_password, 0, strlen (c->users_pgsql_password));
  g_free (c->users_pgsql_password);
  g_free (c->source);
  g_free (c);
}

LmtpdConfig *
lmtpd_config_new_default (void)
{
  LmtpdConfig *c = g_new0 (LmtpdConfig, 1);

  g_atomic_ref_count_init (&c->ref_count);
  conf_apply_defaults (&conf_main_table, c);
  /* the defaults that are not constants */
  c->hostname = g_strdup (g_get_host_name ());
  c->opes_system = g_strdup_printf ("urn:x-opes-lmtpd:system:%s", c->hostname);
  /* what the maps, [mailboxes], [service] and [rule] fill */
  c->domain_mailbox = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  c->rewrites = g_ptr_array_new_with_free_func (conf_rewrite_free);
  c->services = g_ptr_array_new_with_free_func (conf_service_free);
  c->rules = g_ptr_array_new_with_free_func (conf_rule_free);
  c->users = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, conf_user_free);
  return c;
}

static GKeyFile *
read_key_file (const char *path, char **out_text, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) err = NULL;
  g_autofree char *text = NULL;
  guint line;
  gsize len;

  if (!g_file_get_contents (path, &text, &len, &err))
    {
      g_set_error (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, "%s", err->message);
      return NULL;
    }
  if (g_key_file_load_from_data (kf, text, len, G_KEY_FILE_NONE, &err))
    {
      *out_text = g_steal_pointer (&text);
      return g_steal_pointer (&kf);
    }
  line = lmtpd_keyfile_bad_line (text);
  if (line)
    g_set_error (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, "%s:%u: %s", path, line, err->message);
  else
    g_set_error (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, "%s: %s", path, err->message);
  return NULL;
}

LmtpdConfig *
lmtpd_config_load (const char *path, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr (GKeyFile) kf = read_key_file (path, &text, error);
  g_autoptr (LmtpdConfig) c = NULL;
  g_autoptr (GString) errors = g_string_new (NULL);
  ConfLoader ld = { path, NULL, errors };

  if (kf == NULL)
    return NULL;
  ld.lines = conf_scan_lines (text);
  c = lmtpd_config_new_default ();
  c->source = g_strdup (path);
  conf_check_known (&ld, kf, &conf_main_table);
  conf_load_table (&ld, kf, &conf_main_table, c);
  g_hash_table_unref (ld.lines);
  if (errors->len)
    {
      g_set_error_literal (error, LMTPD_CONF_ERROR, LMTPD_CONF_ERROR_INVALID, errors->str);
      return NULL;
    }
  return g_steal_pointer (&c);
}

GPtrArray *
lmtpd_config_reload_differences (const LmtpdConfig *old, const LmtpdConfig *now)
{
  return conf_table_differences (&conf_main_table, old, now);
}

gboolean
lmtpd_config_xforward_allowed (const LmtpdConfig *config, const char *peer)
{
  g_autoptr (GInetAddress) a = NULL;

  if (peer == NULL)
    return FALSE;
  if (strcmp (peer, "local") == 0)
    return config->xforward_local;
  if (config->xforward_hosts == NULL || (a = g_inet_address_new_from_string (peer)) == NULL)
    return FALSE;
  for (guint i = 0; i < config->xforward_hosts->len; i++)
    if (g_inet_address_mask_matches (config->xforward_hosts->pdata[i], a))
      return TRUE;
  return FALSE;
}
