/* conf-table.c - the table engine: what any table (a ConfTable) drives:
 * the defaults, loading with typed parsers, freeing, the known-key check
 * and the comparison of the settings a reload cannot apply.
 *
 * It knows no table and no loader: the main table is in settings.c, the
 * tables of [service NAME] and [rule NAME] in opes.c; a row whose value
 * needs more than its type names its own load or check function, and a
 * ->named row stands for the named groups its ->load loads.
 */
#include "config.h"

#include <string.h>

#include "conf-private.h"

const char *
conf_named_group_name (const char *group, const char *prefix)
{
  gsize n = strlen (prefix);

  if (strncmp (group, prefix, n) != 0 || group[n] != ' ' || group[n + 1] == '\0')
    return NULL;
  return group + n + 1;
}

static GPtrArray *
default_listeners (const char *text)
{
  GPtrArray *listen = g_ptr_array_new_with_free_func ((GDestroyNotify) lmtpd_listen_free);
  g_auto (GStrv) specs = g_strsplit (text ? text : "", ";", -1);

  for (guint i = 0; specs[i]; i++)
    {
      g_autofree char *why = NULL;
      LmtpdListen *l = conf_parse_listen (specs[i], &why);
      g_assert (l != NULL); /* a bad built-in default is a bug */
      g_ptr_array_add (listen, l);
    }
  return listen;
}

static void
apply_default (const ConfSetting *s, gpointer base)
{
  switch (s->type)
    {
    case CONF_NONE: break;
    case CONF_STRING: CONF_FIELD (base, s, char *) = g_strdup (s->def_text); break;
    case CONF_LIST: CONF_FIELD (base, s, char **) = g_strsplit (s->def_text ? s->def_text : "", ";", -1); break;
    case CONF_BOOL:
    case CONF_CHOICE: CONF_FIELD (base, s, int) = (int) s->def; break;
    case CONF_UINT:
    case CONF_MS: CONF_FIELD (base, s, guint) = (guint) s->def; break;
    case CONF_SIZE: CONF_FIELD (base, s, guint64) = s->def; break;
    case CONF_SIZE_T: CONF_FIELD (base, s, gsize) = (gsize) s->def; break;
    case CONF_LISTEN: CONF_FIELD (base, s, GPtrArray *) = default_listeners (s->def_text); break;
    }
}

void
conf_apply_defaults (const ConfTable *t, gpointer base)
{
  for (; t; t = t->more)
    for (gsize i = 0; i < t->n_rows; i++)
      apply_default (&t->rows[i], base);
}

void
conf_free_values (const ConfTable *t, gpointer base)
{
  if (t->more)
    conf_free_values (t->more, base);
  for (gsize i = 0; i < t->n_rows; i++)
    {
      const ConfSetting *s = &t->rows[i];
      if (s->type == CONF_STRING)
        g_clear_pointer (&CONF_FIELD (base, s, char *), g_free);
      else if (s->type == CONF_LIST)
        g_clear_pointer (&CONF_FIELD (base, s, char **), g_strfreev);
      else if (s->type == CONF_LISTEN)
        g_clear_pointer (&CONF_FIELD (base, s, GPtrArray *), g_ptr_array_unref);
    }
}

/* ---- loading ------------------------------------------------------------ */

static void
load_choice (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  g_autofree char *v = conf_get_string (kf, group, s->key);

  if (v == NULL)
    return;
  for (guint i = 0; s->choices->items[i].name; i++)
    if ((s->choices->caseless ? g_ascii_strcasecmp (v, s->choices->items[i].name)
                              : strcmp (v, s->choices->items[i].name)) == 0)
      {
        CONF_FIELD (base, s, int) = s->choices->items[i].value;
        return;
      }
  conf_problem (ld, group, s->key, "'%s' is not %s", v, s->choices->expect);
}

static void
load_listen (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  g_auto (GStrv) specs = g_key_file_get_string_list (kf, group, s->key, NULL, NULL);
  GPtrArray *listen = CONF_FIELD (base, s, GPtrArray *);

  if (specs == NULL)
    return;
  g_ptr_array_set_size (listen, 0);
  for (guint i = 0; specs[i]; i++)
    {
      g_autofree char *why = NULL;
      LmtpdListen *l;
      char *spec = g_strstrip (specs[i]);
      if (*spec == '\0')
        continue;
      l = conf_parse_listen (spec, &why);
      if (l)
        g_ptr_array_add (listen, l);
      else
        conf_problem (ld, group, s->key, "%s", why);
    }
  if (listen->len == 0)
    conf_problem (ld, group, s->key, "no listener given");
}

static void
load_list (GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  g_auto (GStrv) list = g_key_file_get_string_list (kf, group, s->key, NULL, NULL);

  if (list == NULL)
    return;
  g_strfreev (CONF_FIELD (base, s, char **));
  CONF_FIELD (base, s, char **) = conf_clean_list (list, FALSE);
}

static void
load_number (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  ConfUnits units = s->type == CONF_UINT ? CONF_UNITS_TIME : CONF_UNITS_SIZE;
  guint64 v;

  if (!conf_get_number (ld, kf, group, s->key, units, s->min, s->max, &v))
    return;
  if (s->type == CONF_UINT)
    CONF_FIELD (base, s, guint) = (guint) v;
  else if (s->type == CONF_SIZE)
    CONF_FIELD (base, s, guint64) = v;
  else
    CONF_FIELD (base, s, gsize) = (gsize) v;
}

static void
load_typed (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  switch (s->type)
    {
    case CONF_NONE: break;
    case CONF_STRING: conf_get_path (kf, group, s->key, &CONF_FIELD (base, s, char *)); break;
    case CONF_LIST: load_list (kf, group, s, base); break;
    case CONF_BOOL: conf_get_bool (ld, kf, group, s->key, &CONF_FIELD (base, s, gboolean)); break;
    case CONF_UINT:
    case CONF_SIZE:
    case CONF_SIZE_T: load_number (ld, kf, group, s, base); break;
    case CONF_MS: conf_get_ms (ld, kf, group, s->key, &CONF_FIELD (base, s, guint)); break;
    case CONF_CHOICE: load_choice (ld, kf, group, s, base); break;
    case CONF_LISTEN: load_listen (ld, kf, group, s, base); break;
    }
}

static void
load_row (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base)
{
  if (s->load)
    s->load (ld, kf, group, s, base);
  else
    load_typed (ld, kf, group, s, base);
  if (s->check)
    s->check (ld, kf, group, s, base);
}

void
conf_load_group (ConfLoader *ld, GKeyFile *kf, const ConfTable *t, const char *group, gpointer base)
{
  for (gsize i = 0; i < t->n_rows; i++)
    load_row (ld, kf, group, &t->rows[i], base);
}

void
conf_load_table (ConfLoader *ld, GKeyFile *kf, const ConfTable *t, gpointer base)
{
  for (; t; t = t->more)
    for (gsize i = 0; i < t->n_rows; i++)
      load_row (ld, kf, t->rows[i].group, &t->rows[i], base);
}

/* ---- unknown groups and keys -------------------------------------------- */

/* The rows a file's [@group] is checked against, with their group in
 * @table_group: those of a ->named row for its [NAME ...] (and a bare
 * [NAME], which is checked but not loaded), else @t's own; NULL: an unknown
 * group. */
static const ConfTable *
rows_of_group (const ConfTable *t, const char *group, const char **table_group)
{
  for (; t; t = t->more)
    for (gsize i = 0; i < t->n_rows; i++)
      {
        const ConfSetting *s = &t->rows[i];
        if (strcmp (s->group, group) != 0 && !(s->named && conf_named_group_name (group, s->group)))
          continue;
        *table_group = s->group;
        return s->named ? s->named : t;
      }
  return NULL;
}

static gboolean
key_is_known (const ConfTable *t, const char *table_group, const char *key)
{
  for (gsize i = 0; i < t->n_rows; i++)
    {
      const ConfSetting *s = &t->rows[i];
      if (!s->named && strcmp (s->group, table_group) == 0
          && (strcmp (s->key, key) == 0 || strcmp (s->key, "*") == 0))
        return TRUE;
    }
  return FALSE;
}

void
conf_check_known (ConfLoader *ld, GKeyFile *kf, const ConfTable *t)
{
  g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);

  for (guint i = 0; groups[i]; i++)
    {
      const char *tg = NULL;
      const ConfTable *rows = rows_of_group (t, groups[i], &tg);
      g_auto (GStrv) keys = NULL;

      if (rows == NULL)
        {
          conf_problem (ld, groups[i], NULL, "unknown group");
          continue;
        }
      keys = g_key_file_get_keys (kf, groups[i], NULL, NULL);
      for (guint k = 0; keys && keys[k]; k++)
        if (!key_is_known (rows, tg, keys[k]))
          conf_problem (ld, groups[i], keys[k], "unknown key");
    }
}

/* ---- reload ------------------------------------------------------------- */

static char *
choice_text (const ConfSetting *s, int value)
{
  for (guint i = 0; s->choices->items[i].name; i++)
    if (s->choices->items[i].value == value)
      return g_strdup (s->choices->items[i].name);
  return g_strdup_printf ("%d", value);
}

char *
conf_value_text (const ConfSetting *s, gconstpointer base)
{
  gpointer b = (gpointer) base;

  switch (s->type)
    {
    case CONF_NONE: return NULL;
    case CONF_STRING: return g_strdup (CONF_FIELD (b, s, char *));
    case CONF_LIST: return CONF_FIELD (b, s, char **) ? g_strjoinv (";", CONF_FIELD (b, s, char **)) : NULL;
    case CONF_BOOL: return g_strdup (CONF_FIELD (b, s, gboolean) ? "true" : "false");
    case CONF_CHOICE: return choice_text (s, CONF_FIELD (b, s, int));
    case CONF_UINT:
    case CONF_MS: return g_strdup_printf ("%u", CONF_FIELD (b, s, guint));
    case CONF_SIZE: return g_strdup_printf ("%" G_GUINT64_FORMAT, CONF_FIELD (b, s, guint64));
    case CONF_SIZE_T: return g_strdup_printf ("%" G_GSIZE_FORMAT, CONF_FIELD (b, s, gsize));
    case CONF_LISTEN: return conf_listen_list_text (CONF_FIELD (b, s, GPtrArray *));
    }
  return NULL;
}

static void
change_free (gpointer p)
{
  LmtpdConfigChange *ch = p;
  g_free (ch->was);
  g_free (ch->now);
  g_free (ch);
}

GPtrArray *
conf_table_differences (const ConfTable *t, gconstpointer old, gconstpointer now)
{
  GPtrArray *changes = t->more ? conf_table_differences (t->more, old, now)
                               : g_ptr_array_new_with_free_func (change_free);

  for (gsize i = 0; i < t->n_rows; i++)
    {
      const ConfSetting *s = &t->rows[i];
      g_autofree char *was = NULL, *is = NULL;
      LmtpdConfigChange *ch;

      if (!s->needs_restart || s->named)
        continue;
      was = conf_value_text (s, old);
      is = conf_value_text (s, now);
      if (g_strcmp0 (was, is) == 0)
        continue;
      ch = g_new0 (LmtpdConfigChange, 1);
      ch->group = s->group;
      ch->key = s->key;
      ch->was = g_steal_pointer (&was);
      ch->now = g_steal_pointer (&is);
      g_ptr_array_add (changes, ch);
    }
  return changes;
}
