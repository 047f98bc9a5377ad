/* conf-private.h - what the files of conf/ share and nobody else sees.
 *
 * The files depend on each other downward only:
 *
 *   conf.c          the object: defaults, lmtpd_config_load, the reload
 *                   differences, lookups
 *   settings.c      the main table: the rows of the fixed groups, and one
 *                   row standing for [service NAME] and one for [rule NAME]
 *   maps.c, opes.c  the loaders the main table names; opes.c owns the
 *                   tables of [service NAME] and [rule NAME]
 *   conf-table.c    the engine: defaults, loading, the known-key check and
 *                   the reload comparison of any table it is given
 *   conf-values.c   typed values (and the error quark)
 *   conf-report.c   problems with file:line
 *
 * A ConfLoader collects the problems of one load with their file:line.  A
 * table (ConfTable) says, once per key, where a value lives, its type,
 * default, bounds and whether a reload can apply it.  Values that need more
 * than a type (listeners, maps, [service]/[rule]) have their own loaders.
 */
#pragma once

#include <gio/gio.h>

#include "lmtpd-conf.h"

G_BEGIN_DECLS

/* ---- problems with file:line (conf-report.c) ---------------------------- */

typedef struct {
  const char *file;
  GHashTable *lines; /* "group\nkey" -> line number; "group\n" -> where it starts */
  GString *errors;
} ConfLoader;

GHashTable *conf_scan_lines (const char *text);
/* "file:line: [group] key: ..." (the line and the group or key when known) */
void conf_problem (ConfLoader *ld, const char *group, const char *key, const char *fmt, ...)
  G_GNUC_PRINTF (4, 5);
/* "file:line: ..." for a line of a map file */
void conf_file_problem (ConfLoader *ld, const char *file, guint line, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

/* ---- values (conf-values.c) --------------------------------------------- */

/* The unit suffixes a number may carry. */
typedef enum {
  CONF_UNITS_TIME, /* s, m, h, d: seconds */
  CONF_UNITS_SIZE, /* k, M, G with an optional B: bytes */
} ConfUnits;

typedef enum {
  CONF_NUMBER_OK,
  CONF_NUMBER_NOT_NUMBER,
  CONF_NUMBER_BAD_UNIT,
  CONF_NUMBER_TOO_BIG,     /* does not fit 64 bits once multiplied */
} ConfNumberResult;

ConfNumberResult conf_parse_number (const char *s, ConfUnits units, guint64 *out);
char *conf_get_string (GKeyFile *kf, const char *group, const char *key);
/* The value if given and valid (else untouched; invalid ones are problems). */
gboolean conf_get_number (ConfLoader *ld, GKeyFile *kf, const char *group, const char *key, ConfUnits units,
                          guint64 min, guint64 max, guint64 *value);
void conf_get_ms (ConfLoader *ld, GKeyFile *kf, const char *group, const char *key, guint *out);
void conf_get_bool (ConfLoader *ld, GKeyFile *kf, const char *group, const char *key, gboolean *out);
void conf_get_path (GKeyFile *kf, const char *group, const char *key, char **out);
/* Blank-stripped items without empty ones, lowercased if @lower. */
char **conf_clean_list (char **list, gboolean lower);
LmtpdListen *conf_parse_listen (const char *spec, char **why);
/* inet:HOST:PORT;unix:PATH as the reload warnings have always shown it */
char *conf_listen_list_text (const GPtrArray *listen);

/* ---- tables (conf-table.c the engine, settings.c and opes.c the rows) --- */

typedef enum {
  CONF_NONE,     /* no typed value: ->load does everything */
  CONF_STRING,   /* char *, blanks stripped; default ->def_text */
  CONF_LIST,     /* char ** from a ';' list; default ->def_text split on ';' */
  CONF_BOOL,     /* gboolean */
  CONF_UINT,     /* guint, a number that may end in s, m, h or d */
  CONF_SIZE,     /* guint64, a number that may end in k, M or G (and B) */
  CONF_SIZE_T,   /* gsize, as CONF_SIZE */
  CONF_MS,       /* guint milliseconds: 500ms, 2s, 1m or plain seconds */
  CONF_CHOICE,   /* an int (enum or gboolean) named by one of ->choices */
  CONF_LISTEN,   /* GPtrArray of LmtpdListen*, a ';' list of specs */
} ConfType;

typedef struct {
  gboolean caseless;
  const char *expect;     /* "no, yes or if-exists" for the error */
  struct {
    const char *name;
    int value;
  } items[6];             /* up to a NULL name */
} ConfChoices;

typedef struct _ConfSetting ConfSetting;
typedef struct _ConfTable ConfTable;

/* Loads or checks @s of [@group] into @base, the LmtpdConfig or the object
 * of a named group ("service NAME" is the group of a "service" row). */
typedef void (*ConfSettingFunc) (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s,
                                 gpointer base);

struct _ConfSetting {
  const char *group;      /* "server"; "service" and "rule" for every [service NAME]... */
  const char *key;        /* "*": any key (free-form group); NULL in a ->named row */
  ConfType type;
  gsize offset;           /* of the value in the group's struct */
  const char *def_text;   /* STRING, LIST, LISTEN default; NULL = unset */
  guint64 def;            /* BOOL, UINT, SIZE, SIZE_T, MS, CHOICE default */
  guint64 min, max;       /* UINT, SIZE, SIZE_T */
  gboolean needs_restart; /* not reload-safe: read once at start, a SIGHUP cannot apply it */
  const ConfChoices *choices;
  ConfSettingFunc load;   /* replaces the type's own parsing, if set */
  ConfSettingFunc check;  /* runs after loading, whether the key was given or not */
  const char *doc;        /* one line for people */
  /* Set, the row stands for every [group NAME] (and a bare [group]) of the
   * file: ->load loads them where the row stands, their keys are checked
   * against these rows. */
  const ConfTable *named;
};

/* Rows in load order within each group: problems are reported in this order. */
struct _ConfTable {
  const ConfSetting *rows;
  gsize n_rows;
  const ConfTable *more;  /* the rows go on there (the main table is split by subject), or NULL */
};

/* The value of @s in @base, as a @type lvalue */
#define CONF_FIELD(base, s, type) (*(type *) (gpointer) ((guint8 *) (base) + (s)->offset))

/* The main table: the fixed groups (settings.c) */
extern const ConfTable conf_main_table;
/* Its continuation: the operator's tools of issue 19 (ops-settings.c) */
extern const ConfTable conf_ops_table;
/* The rows of each [service NAME] and [rule NAME] (opes.c) */
extern const ConfTable conf_service_table;
extern const ConfTable conf_rule_table;

/* NAME of a file's [@prefix NAME], NULL if @group is not one */
const char *conf_named_group_name (const char *group, const char *prefix);
void conf_apply_defaults (const ConfTable *t, gpointer base);
void conf_free_values (const ConfTable *t, gpointer base);
/* Loads [@group] into @base with every row of @t, in table order. */
void conf_load_group (ConfLoader *ld, GKeyFile *kf, const ConfTable *t, const char *group, gpointer base);
/* Every row of @t in table order, each from its own [group]; a ->named row
 * loads its named groups where it stands. */
void conf_load_table (ConfLoader *ld, GKeyFile *kf, const ConfTable *t, gpointer base);
/* Unknown groups and keys, in file order */
void conf_check_known (ConfLoader *ld, GKeyFile *kf, const ConfTable *t);
/* The value as text (for the reload warnings), NULL if unset */
char *conf_value_text (const ConfSetting *s, gconstpointer base);
/* LmtpdConfigChange* for each needs_restart row whose value differs */
GPtrArray *conf_table_differences (const ConfTable *t, gconstpointer old, gconstpointer now);

/* ---- loaders the main table names (maps.c, opes.c) ---------------------- */

gboolean conf_address_is_sane (const char *a);
/* [users] pgsql_* (users-pgsql.c): what can be checked without the server */
void conf_check_pgsql_conninfo (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s,
                                gpointer base);
void conf_check_state_conninfo (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s,
                                gpointer base);
void conf_load_pgsql_password (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s,
                               gpointer base);
void conf_check_pgsql_query (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_load_users_map (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_load_rewrite_map (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s,
                            gpointer base);
void conf_rewrite_free (gpointer p);
/* conf-values.c: an empty value is no value (a check of the table's rows) */
void conf_check_empty_is_unset (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
/* [users] (users-settings.c): checks and loaders of the table's rows */
void conf_load_domains (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_check_socket_path (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_check_dovecot_socket (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_check_dovecot_name (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_check_postmaster (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_check_ldap_uris (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_check_ldap_base (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_check_ldap_filter (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_check_ldap_attribute (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_check_readable_file (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_check_ldap_password_file (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);

void conf_user_free (gpointer p);

void conf_load_opes_system (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_load_bypass (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
/* The ->named rows: every [service NAME], [rule NAME] of the file, in file order */
void conf_load_services (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_load_rules (ConfLoader *ld, GKeyFile *kf, const char *group, const ConfSetting *s, gpointer base);
void conf_service_free (gpointer p);
void conf_rule_free (gpointer p);

G_END_DECLS
