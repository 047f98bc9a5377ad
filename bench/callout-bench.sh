#!/usr/bin/env bash
# callout-bench.sh - deliveries per second with a no-op OPES callout per
# recipient against the same load without callouts, and the time each
# callout adds (p50/p99, from lmtpd's debug log), via ../shared/bench.
#
#   bench/callout-bench.sh [--messages N] [--sessions S] [--repeat R] [--size B] [--shadow]
#
# --shadow adds a third target: the same service in mode = shadow, its
# calls recorded (issue 19: counting and recording, one copy per message).
#
# Needs root (the harness creates its mail user), Postfix's smtp-source and
# a built tree.  Loopback only.  Everything is written on a fresh ext4
# made for the invocation (bench/freshfs.sh; 3 targets x messages x
# repeat files of 8 KB, doubled, plus 512 MB), nothing deleted before the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
harness=${LMTP_BENCH:-$top/../shared/bench/lmtp-bench.sh}
messages=2000 sessions=4 repeat=3 size=4096 shadow=0
while [ $# -gt 0 ]; do
  case $1 in
    --shadow) shadow=1; shift ;;
    --messages) messages=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    *) echo "usage: $0 [--messages N] [--sessions S] [--repeat R] [--size B] [--shadow]" >&2; exit 64 ;;
  esac
done
work=$(mktemp -d /tmp/callout-bench.XXXXXX)
cpid=""
. "$here/freshfs.sh"
trap '[ -n "$cpid" ] && kill "$cpid" 2>/dev/null; fresh_fs_done; rm -rf "$work"' EXIT
chmod 755 "$work"
fresh_fs "$work" $(( 3 * messages * repeat * 8 * 2 / 1024 + 512 )) $(( 3 * messages * repeat * 2 + 20000 ))
mkdir -p "$FRESH/harness"; chmod 755 "$FRESH/harness"
printf '* accept\n' > "$work/script"
"$top/ocp/ocp-calloutd" --listen inet:127.0.0.1:0 --script "$work/script" 2>"$work/calloutd.log" &
cpid=$!
for _ in $(seq 50); do grep -q "listening on" "$work/calloutd.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on inet:127.0.0.1:\([0-9]*\).*/\1/p' "$work/calloutd.log")
sed "s#@PORT@#$port#" "$here/callout.conf.in" > "$work/callout.part"
base="sed 's#@W@#{workdir}#g' $here/lmtpd.conf.in > {workdir}/lmtpd.conf"
with="$base && cat $work/callout.part >> {workdir}/lmtpd.conf"
lmtpd=$top/lmtpd/lmtpd
run="exec $lmtpd -c {workdir}/lmtpd.conf --listen {addr} --maildir-root {mailroot}"
targets=(--target "no-callout=cmd:$base && $run" --target "noop-callout=cmd:$with && $run")
if [ "$shadow" = 1 ]; then
  sed 's#^\[service noop\]$#&\nmode = shadow#' "$work/callout.part" > "$work/shadow.part"
  printf '[record]\ndir = @W@/recorded\n' >> "$work/shadow.part"
  targets+=(--target "shadow-recorded=cmd:$base && sed 's#@W@#{workdir}#g' $work/shadow.part >> {workdir}/lmtpd.conf && $run")
fi
"$harness" --workdir "$FRESH/harness" --messages "$messages" --recipients 1 --size "$size" --sessions "$sessions" --repeat "$repeat" \
  --keep 2>"$work/harness.log" "${targets[@]}" | tee "$work/results"
kept=$(sed -n 's/^lmtp-bench: kept //p' "$work/harness.log" | tail -1)
grep -E 'error|exited' "$work/harness.log" >&2 || true
# the time each callout took, as lmtpd logs it per delivery (callout_us=)
[ -n "$kept" ] && find "$kept" -name target.out -exec grep -ho 'callout_us=[0-9]*' {} + |
  sed 's/callout_us=//' | sort -n > "$work/lat"
touch "$work/lat"
n=$(wc -l < "$work/lat")
if [ "$n" -gt 0 ]; then
  p50=$(sed -n "$(( (n + 1) / 2 ))p" "$work/lat")
  p99=$(sed -n "$(( (n * 99 + 99) / 100 ))p" "$work/lat")
  echo "CALLOUT count=$n p50_us=$p50 p99_us=$p99"
fi
