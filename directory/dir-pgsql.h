/* dir-pgsql.h - what the two files of the pgsql backend share: the pool
 * and the query (dir-pgsql.c) hand a result to the reading of its row
 * (dir-pgsql-row.c).
 */
#pragma once

#include <libpq-fe.h>

#include "directory.h"

G_BEGIN_DECLS

/* The answer of the query for @address: no row UNKNOWN, one row FOUND
 * (*@out the user its columns describe, taken by name), more rows or a
 * column that cannot be read TEMPFAIL with @error. */
DirectoryResult pgsql_row_user (const PGresult *res, const char *address, DirectoryUser **out, GError **error);

G_END_DECLS
