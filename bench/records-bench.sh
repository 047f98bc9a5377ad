#!/usr/bin/env bash
# records-bench.sh - what the records of issue 19 cost: the 4 KB load
# through one no-op OPES callout, with the decision trace off and nothing
# recorded (lmtpd-bare), against the trace on and every call of that
# service recorded for replay (lmtpd-recorded), interleaved via
# ../shared/bench.  Target: the second at least 85% of the first.
#
#   bench/records-bench.sh [--messages N] [--sessions S] [--repeat R]
#
# Needs root, Postfix's smtp-source and a built tree.  Loopback only.
# Everything is written on a fresh ext4 made for the invocation
# (bench/freshfs.sh; 2 targets x messages x repeat files of 8 KB, doubled,
# plus 512 MB), nothing deleted before the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
harness=${LMTP_BENCH:-$top/../shared/bench/lmtp-bench.sh}
messages=2000 sessions=4 repeat=3
while [ $# -gt 0 ]; do
  case $1 in
    --messages) messages=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    *) echo "usage: $0 [--messages N] [--sessions S] [--repeat R]" >&2; exit 64 ;;
  esac
done
work=$(mktemp -d /tmp/lmtpd-records-bench.XXXXXX)
cpid=""
. "$here/freshfs.sh"
trap '[ -n "$cpid" ] && kill "$cpid" 2>/dev/null; fresh_fs_done; rm -rf "$work"' EXIT
printf '* accept\n' > "$work/callout.script"
"$top/ocp/ocp-calloutd" --listen inet:127.0.0.1:0 --script "$work/callout.script" 2>"$work/calloutd.log" &
cpid=$!
for _ in $(seq 50); do grep -q "listening on" "$work/calloutd.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on inet:127.0.0.1:\([0-9]*\).*/\1/p' "$work/calloutd.log")
sed "s#@PORT@#$port#" "$here/callout.conf.in" > "$work/callout.part"
printf '[trace]\nenabled = false\n' > "$work/bare.part"
printf '[trace]\nenabled = true\n[record]\nservices = noop\n' > "$work/recorded.part"
chmod 755 "$work"
fresh_fs "$work" $(( 2 * messages * repeat * 8 * 2 / 1024 + 512 )) $(( 2 * messages * repeat * 2 + 20000 ))
mkdir -p "$FRESH/harness"; chmod 755 "$FRESH/harness"

lmtpd=$top/lmtpd/lmtpd
conf="sed 's#@W@#{workdir}#g' $here/lmtpd.conf.in > {workdir}/lmtpd.conf && cat $work/callout.part >> {workdir}/lmtpd.conf"
run="exec $lmtpd -c {workdir}/lmtpd.conf --listen {addr} --maildir-root {mailroot}"
"$harness" --workdir "$FRESH/harness" --keep --messages "$messages" --recipients 1 --size 4096 --sessions "$sessions" --repeat "$repeat" \
  --target "lmtpd-bare=cmd:$conf && cat $work/bare.part >> {workdir}/lmtpd.conf && $run" \
  --target "lmtpd-recorded=cmd:$conf && cat $work/recorded.part >> {workdir}/lmtpd.conf && printf 'dir = {workdir}/lib/recorded\\n' >> {workdir}/lmtpd.conf && $run"
