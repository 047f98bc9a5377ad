#!/usr/bin/env bash
# sieve-bench.sh - deliveries per second with a global Sieve script that
# files every message (the harness's bench.sieve: fileinto :create "Bench"),
# lmtpd next to Dovecot/Pigeonhole on the same load, via ../shared/bench.
#
#   bench/sieve-bench.sh [--messages N] [--sessions S] [--repeat R] [--size B]
#
# Needs root, Postfix's smtp-source, dovecot-lmtpd, dovecot-sieve and a
# built tree.  Loopback only.  Everything is written on a fresh ext4 made
# for the invocation (bench/freshfs.sh; 2 targets x messages x repeat
# files of 8 KB, doubled, plus 512 MB), nothing deleted before the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
harness=${LMTP_BENCH:-$top/../shared/bench/lmtp-bench.sh}
script=$(dirname "$harness")/dovecot/bench.sieve
messages=2000 sessions=4 repeat=3 size=4096
while [ $# -gt 0 ]; do
  case $1 in
    --messages) messages=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    *) echo "usage: $0 [--messages N] [--sessions S] [--repeat R] [--size B]" >&2; exit 64 ;;
  esac
done
work=$(mktemp -d /tmp/lmtpd-sieve-bench.XXXXXX)
. "$here/freshfs.sh"
trap 'fresh_fs_done; rm -rf "$work"' EXIT
chmod 755 "$work"
fresh_fs "$work" $(( 2 * messages * repeat * 8 * 2 / 1024 + 512 )) $(( 2 * messages * repeat * 2 + 20000 ))
mkdir -p "$FRESH/harness"; chmod 755 "$FRESH/harness"
conf="sed 's#@W@#{workdir}#g' $here/lmtpd.conf.in > {workdir}/lmtpd.conf"
conf="$conf && cp $script {workdir}/bench.sieve && chmod 644 {workdir}/bench.sieve"
conf="$conf && printf '[sieve]\\nbefore = {workdir}/bench.sieve\\n' >> {workdir}/lmtpd.conf"
lmtpd=$top/lmtpd/lmtpd
"$harness" --workdir "$FRESH/harness" --keep --messages "$messages" --recipients 1 --size "$size" --sessions "$sessions" --repeat "$repeat" \
  --target dovecot:sieve \
  --target "lmtpd-sieve=cmd:$conf && exec $lmtpd -c {workdir}/lmtpd.conf --listen {addr} --maildir-root {mailroot}"
