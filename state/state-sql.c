/* state-sql.c - every statement the shared state runs on its rows, in one
 * place, prepared once on each new connection (util-pgsql.c).  Each one
 * touches one key's row (or one batch of keys), so concurrent nodes need
 * no transaction of their own: the row lock of INSERT ... ON CONFLICT
 * decides between two claims of the same key.
 */
#include "config.h"

#include "state-private.h"

const UtilPgStatement state_statements[] = {
  [SQL_DUP_SEEN] = { "lmtpd_dup_seen",
                     "SELECT confirmed, path FROM lmtpd_duplicates WHERE key = $1 AND expires > now()" },
  /* a claim: not over a confirmed row, nor over another node's live intent */
  [SQL_DUP_INTEND] = { "lmtpd_dup_intend",
                       "INSERT INTO lmtpd_duplicates (key, path, confirmed, intended, expires)"
                       " VALUES ($1, $2, false, now(), now() + $3::integer * interval '1 second')"
                       " ON CONFLICT (key) DO UPDATE SET path = EXCLUDED.path, intended = now(),"
                       " expires = EXCLUDED.expires"
                       " WHERE NOT lmtpd_duplicates.confirmed AND (lmtpd_duplicates.intended IS NULL"
                       " OR lmtpd_duplicates.intended < now() - $4::integer * interval '1 second') RETURNING 1" },
  /* the confirmations, a batch of distinct keys at once */
  [SQL_DUP_RECORD] = { "lmtpd_dup_record",
                       "INSERT INTO lmtpd_duplicates (key, confirmed, expires)"
                       " SELECT k, true, now() + $2::integer * interval '1 second' FROM unnest($1::text[]) AS k"
                       " ON CONFLICT (key) DO UPDATE SET confirmed = true, expires = EXCLUDED.expires" },
  [SQL_DUP_FORGET] = { "lmtpd_dup_forget", "DELETE FROM lmtpd_duplicates WHERE key = $1" },
  [SQL_VAC_CLAIM] = { "lmtpd_vac_claim",
                      "INSERT INTO lmtpd_vacation (address, handle, sender, expires)"
                      " VALUES ($1, $2, $3, now() + $4::bigint * interval '1 second')"
                      " ON CONFLICT (address, handle, sender) DO UPDATE SET expires = EXCLUDED.expires"
                      " WHERE lmtpd_vacation.expires <= now() RETURNING 1" },
  [SQL_VAC_RELEASE] = { "lmtpd_vac_release",
                        "DELETE FROM lmtpd_vacation WHERE address = $1 AND handle = $2 AND sender = $3" },
  [SQL_IDS_SEEN] = { "lmtpd_ids_seen",
                     "SELECT 1 FROM lmtpd_sieve_ids WHERE address = $1 AND key = $2 AND expires > now()" },
  [SQL_IDS_RECORD] = { "lmtpd_ids_record",
                       "INSERT INTO lmtpd_sieve_ids (address, key, expires)"
                       " VALUES ($1, $2, now() + $3::bigint * interval '1 second')"
                       " ON CONFLICT (address, key) DO UPDATE SET expires = EXCLUDED.expires"
                       " WHERE $4::boolean OR lmtpd_sieve_ids.expires <= now()" },
  [SQL_NODE_BEAT] = { "lmtpd_node_beat",
                      "INSERT INTO lmtpd_nodes (name, lmtp_address, heartbeat) VALUES ($1, $2, now())"
                      " ON CONFLICT (name) DO UPDATE SET lmtp_address = EXCLUDED.lmtp_address, heartbeat = now()" },
  [SQL_NODES_READ] = { "lmtpd_nodes_read",
                       "SELECT name, lmtp_address, state,"
                       " coalesce(extract(epoch FROM now() - heartbeat)::bigint, -1)"
                       " FROM lmtpd_nodes ORDER BY name LIMIT 1000" },
  [SQL_NODE_SET] = { "lmtpd_node_set", "UPDATE lmtpd_nodes SET state = $2 WHERE name = $1" },
  [SQL_N] = { NULL, NULL },
};
