/* records-schema.c - the tables of the records (issue 19), written once
 * for SQLite and PostgreSQL: TEXT and BIGINT columns only, unix-second
 * times, text ids.  Each part owns its entry; every statement is
 * idempotent (IF NOT EXISTS), run when the SQLite file is opened and by
 * lmtpd --init-db for PostgreSQL.
 */
#include "config.h"

#include "records-private.h"

const char *const records_schema[] = {
  /* the quarantine store's index (deliver/quarantine*.c).  state: held,
   * releasing (a release under way, or one a crash interrupted), released,
   * deleted.  path: the copy's file name in [quarantine] dir. */
  "CREATE TABLE IF NOT EXISTS lmtpd_quarantine ("
  " id TEXT PRIMARY KEY, created BIGINT NOT NULL, expires BIGINT NOT NULL,"
  " recipient TEXT NOT NULL, original_recipient TEXT, sender TEXT NOT NULL, subject TEXT, message_id TEXT,"
  " size BIGINT NOT NULL, service TEXT NOT NULL, reason TEXT, path TEXT NOT NULL, node TEXT, txn TEXT,"
  " state TEXT NOT NULL, released_by TEXT, released_at BIGINT, released_to TEXT)",
  "CREATE INDEX IF NOT EXISTS lmtpd_quarantine_recipient ON lmtpd_quarantine (recipient, created)",
  "CREATE INDEX IF NOT EXISTS lmtpd_quarantine_expires ON lmtpd_quarantine (expires)",

  /* one decision trace per recipient of a transaction (deliver/trace*):
   * steps is text, one step per line. */
  "CREATE TABLE IF NOT EXISTS lmtpd_trace ("
  " txn TEXT NOT NULL, recipient TEXT NOT NULL, at BIGINT NOT NULL, expires BIGINT NOT NULL,"
  " message_id TEXT, queue_id TEXT, sender TEXT, reply TEXT, folder TEXT, steps TEXT,"
  " PRIMARY KEY (txn, recipient))",
  "CREATE INDEX IF NOT EXISTS lmtpd_trace_message_id ON lmtpd_trace (message_id)",
  "CREATE INDEX IF NOT EXISTS lmtpd_trace_queue_id ON lmtpd_trace (queue_id)",
  "CREATE INDEX IF NOT EXISTS lmtpd_trace_expires ON lmtpd_trace (expires)",

  /* verdicts per service and hour; shadow 1: a shadow service's would-be
   * verdict, never applied */
  "CREATE TABLE IF NOT EXISTS lmtpd_verdicts ("
  " hour BIGINT NOT NULL, service TEXT NOT NULL, verdict TEXT NOT NULL, shadow BIGINT NOT NULL, n BIGINT NOT NULL,"
  " PRIMARY KEY (hour, service, verdict, shadow))",

  /* a callout call as it was made (shadow mode and replay, deliver/
   * record.c): recipients and verdicts one per line and parallel (each
   * recipient's verdict as the service answered); copy: the kept message's
   * name in [record] dir (its digest), shared by the calls of one message;
   * envelope: the rest of the request as a GVariant text */
  "CREATE TABLE IF NOT EXISTS lmtpd_calls ("
  " id TEXT PRIMARY KEY, at BIGINT NOT NULL, expires BIGINT NOT NULL, service TEXT NOT NULL, server TEXT,"
  " txn TEXT, sender TEXT, recipients TEXT, copy TEXT, size BIGINT, verdicts TEXT, envelope TEXT)",
  "CREATE INDEX IF NOT EXISTS lmtpd_calls_service ON lmtpd_calls (service, at)",
  "CREATE INDEX IF NOT EXISTS lmtpd_calls_expires ON lmtpd_calls (expires)",
  NULL,
};
