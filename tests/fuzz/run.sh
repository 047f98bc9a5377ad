#!/usr/bin/env bash
# run.sh - builds the libFuzzer targets (clang, ASan+UBSan) in a separate
# build directory and runs each for SECONDS (default 60) on its seed corpus.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]     targets: sieve address ocp mime lmtp lmtp-deaf managesieve
#
# lmtp-deaf is fuzz-lmtp with a client that never reads (FUZZ_LMTP_DEAF=1).
#
# Findings are left as crash-*/timeout-*/leak-* files in the build directory.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-60}
shift || true
targets=${*:-sieve address ocp mime lmtp lmtp-deaf managesieve}
build=${FUZZ_BUILD:-$top/build-fuzz}
mkdir -p "$build"
cd "$build"
if [ ! -f Makefile ]; then
  [ -x "$top/configure" ] || (cd "$top" && ./autogen.sh >/dev/null)
  # a VPATH build needs an unconfigured source tree: when this one is
  # configured, build a clone of its last commit
  src=$top
  if [ -f "$top/Makefile" ]; then
    rm -rf src && git clone -q "$top" src && (cd src && ./autogen.sh >/dev/null)
    src=$build/src
  fi
  "$src/configure" -q CC=clang --enable-fuzzing >/dev/null
fi
make -s -j"$(nproc)" $(for t in $targets; do printf 'tests/fuzz/fuzz-%s ' "${t%-deaf}"; done | tr ' ' '\n' | sort -u) >/dev/null
rc=0
for t in $targets; do
  corpus=$(mktemp -d)
  bin=${t%-deaf}
  cp "$top/tests/fuzz/corpus/$bin/"* "$corpus/"
  if env FUZZ_LMTP_DEAF=$([ "$t" = "$bin" ] && echo 0 || echo 1) ./tests/fuzz/fuzz-$bin -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 "$corpus" >"fuzz-$t.log" 2>&1; then
    echo "fuzz-$t: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "fuzz-$t.log" | tail -1), no finding"
  else
    echo "fuzz-$t: FINDING (see $build/fuzz-$t.log)"; grep -E 'ERROR|SUMMARY' "fuzz-$t.log" | head -3
    rc=1
  fi
  rm -rf "$corpus"
done
exit $rc
