/* ops-settings.c - the rows of the operator's tools (issue 19): the
 * decision trace, the quarantine store, recorded calls, learning from the
 * user's Junk moves and the admin listener.  The main table (settings.c)
 * goes on here; each group's rows stay together.
 */
#include "config.h"

#include <string.h>

#include "conf-private.h"

#define CFG(field) G_STRUCT_OFFSET (LmtpdConfig, field)

static const ConfSetting ops_rows[] = {
  /* [trace]: what happened to each recipient (deliver/, lmtpctl trace) */
  { "trace", "enabled", CONF_BOOL, CFG (trace_enabled), .def = TRUE,
    .doc = "record each recipient's decisions: callouts, Sieve rules, the reply and folder" },
  { "trace", "keep", CONF_UINT, CFG (trace_keep), .def = 7 * 86400, .min = 60, .max = 366 * 86400,
    .doc = "how long a decision trace is kept" },

  /* [record]: callout calls kept for lmtpctl replay (deliver/record.c) */
  { "record", "services", CONF_LIST, CFG (record_services),
    .doc = "services whose calls are recorded (none: no recording); unset: the shadow services" },
  { "record", "dir", CONF_STRING, CFG (record_dir), .def_text = "./var/lib/recorded",
    .doc = "where one copy of each recorded message is kept" },
  { "record", "keep", CONF_UINT, CFG (record_keep), .def = 2 * 86400, .min = 60, .max = 366 * 86400,
    .doc = "how long a recorded call and its copy are kept" },
  { "record", "max_size", CONF_SIZE, CFG (record_max_size), .def = 1024 * 1024 * 1024, .min = 0,
    .max = G_MAXINT64, .doc = "bytes of kept copies at most; when full, recording pauses (0: no recording)" },
};

const ConfTable conf_ops_table = { ops_rows, G_N_ELEMENTS (ops_rows), NULL };
