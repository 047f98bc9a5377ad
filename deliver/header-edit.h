/* header-edit.h - inside deliver/: the header editor (header-edit.c) for
 * Sieve's editheader and the callout services' header changes.  Not part
 * of deliver.h's public interface.
 */
#pragma once

#include <gmime/gmime.h>

#include "sieve.h"

/* ---- whole fields (editheader, redirect's loop check) --------------------- */

/* One string per field of @header (LF ends, up to the empty line),
 * continuation lines included.  Free with g_ptr_array_unref. */
GPtrArray *header_fields (const char *header);
/* A field's name, trimmed; its value unfolded, trimmed and decoded. */
char *header_field_name (const char *field);
char *header_field_value (const char *field);
/* @header (LF ends, ending with the empty line) with the editheader
 * @edits (SieveHeaderEdit*) applied; fields in @protected_fields and
 * invalid names are left alone. */
char *header_edit_sieve (const char *header, const GPtrArray *edits, const char *const *protected_fields);

/* ---- raw fields (a service's removals, additions, subject tag) ------------ */

/* The fields of @src up to the empty line (or the end), CRLF made LF,
 * each kept as received. */
GPtrArray *header_raw_split (const char *src, gsize len);
/* Removes every field named @name. */
void header_raw_remove (GPtrArray *fields, const char *name);
/* Adds "Name: value" @field, the value encoded if needed and folded. */
void header_raw_add (GPtrArray *fields, const char *field);
/* Prepends @tag to the first Subject (once), or adds a Subject. */
void header_raw_tag_subject (GPtrArray *fields, const char *tag);
/* The fields and the empty line that ends a header. */
char *header_raw_join (const GPtrArray *fields, gsize size_hint);
