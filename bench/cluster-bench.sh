#!/usr/bin/env bash
# bench/cluster-bench.sh - issue 18's proxy target: 3 lmtpd nodes with
# per-recipient proxying against one node, same machine, same load,
# per-node mail roots on tmpfs (so the figure is CPU, not the disk).
# Both behind one front socket (bench/cluster-nodes.py); the shared
# harness drives them interleaved and reports medians.  Not a test.
#
#   bench/cluster-bench.sh [--repeat R] [--messages N] [--sessions S]
#
# Needs root (the harness's mail user) and Postfix's smtp-source.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
harness=${LMTP_BENCH:-$top/../shared/bench/lmtp-bench.sh}
repeat=3 messages=4000 sessions=12
while [ $# -gt 0 ]; do
  case $1 in
    --repeat) repeat=$2; shift 2 ;;
    --messages) messages=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    *) echo "usage: $0 [--repeat R] [--messages N] [--sessions S]" >&2; exit 64 ;;
  esac
done
[ -x "$harness" ] || { echo "cluster-bench: no harness at $harness (set LMTP_BENCH)" >&2; exit 2; }
[ -x "$top/lmtpd/lmtpd" ] || (cd "$top" && ./setup.sh build)
nodes="python3 $here/cluster-nodes.py --lmtpd $top/lmtpd/lmtpd --addr {addr} --workdir {workdir} --mailroot {mailroot} --user {mailuser}"
# every recipient a new mailbox (1bench, 2bench, ...): hashing spreads
# them over the nodes, so about two thirds of them are proxied
addr=${CLUSTER_BENCH_ADDR:-127.0.0.1:24318}
exec "$harness" --addr "$addr" --workdir /dev/shm --repeat "$repeat" --messages "$messages" --sessions "$sessions" \
  --size 4096 --recipients 1 --unique-rcpts \
  --target "one-node=cmd:exec $nodes --nodes 1" \
  --target "three-nodes=cmd:exec $nodes --nodes 3"
