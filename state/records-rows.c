/* records-rows.c - what the records' backends hand back and take: rows
 * of a query and posted statements.  Below records.c and the backends,
 * which both use them.
 */
#include "config.h"

#include <string.h>

#include "records-private.h"

/* ---- rows --------------------------------------------------------------- */

StateRows *
records_rows_new (guint n_cols)
{
  StateRows *rows = g_new0 (StateRows, 1);
  rows->n_cols = n_cols;
  return rows;
}

/* Appends one row of n_cols cells (taken). */
void
records_rows_add (StateRows *rows, char **cells)
{
  rows->cells = g_renew (char *, rows->cells, (gsize) (rows->n_rows + 1) * rows->n_cols);
  memcpy (rows->cells + (gsize) rows->n_rows * rows->n_cols, cells, rows->n_cols * sizeof (char *));
  rows->n_rows++;
}

const char *
state_rows_get (const StateRows *rows, guint row, guint col)
{
  if (rows == NULL || row >= rows->n_rows || col >= rows->n_cols)
    return NULL;
  return rows->cells[(gsize) row * rows->n_cols + col];
}

void
state_rows_free (StateRows *rows)
{
  if (rows == NULL)
    return;
  for (gsize i = 0; i < (gsize) rows->n_rows * rows->n_cols; i++)
    g_free (rows->cells[i]);
  g_free (rows->cells);
  g_free (rows);
}

void
records_statement_free (gpointer p)
{
  RecordsStatement *st = p;
  for (guint i = 0; i < st->n; i++)
    g_free (st->values[i]);
  g_free (st->values);
  g_free (st->sql);
  g_free (st);
}
