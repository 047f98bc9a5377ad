#!/usr/bin/env python3
"""bench/cluster-nodes.py - N lmtpd nodes behind one listening socket, for
bench/cluster-bench.sh (a target of the shared harness).

The front socket (--addr) is handed to every node by socket activation
(LISTEN_FDS, descriptor 3), so the kernel spreads the harness's
connections over the nodes as they accept; each node also gets its own
listener on 127.0.0.(2+i) (descriptor 4), where the others proxy to it.
Each node has its own spool and its own mail root, --mailroot/nI, which
the harness counts as one.  With --nodes 1 the one node has no [cluster]
settings at all: the baseline.  SIGTERM stops every node and waits."""

import argparse
import os
import signal
import socket
import sys

CONF = """[server]
user = {user}
spool_dir = {dir}/spool
max_sessions = 1000
xforward_hosts = 127.0.0.0/8
[delivery]
mail_root = {mail}
duplicate_db = {dir}/lib/duplicates
[users]
domains = *
"""


def listener(host, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(512)
    return s


def spawn(lmtpd, conf, front, own):
    pid = os.fork()
    if pid == 0:
        a, b = os.dup(front.fileno()), os.dup(own.fileno())
        os.dup2(a, 3)
        os.dup2(b, 4)
        env = dict(os.environ, LISTEN_FDS="2", LISTEN_PID=str(os.getpid()))
        os.execve(lmtpd, [lmtpd, "-c", conf], env)
    return pid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lmtpd", required=True)
    ap.add_argument("--addr", required=True, help="HOST:PORT the harness sends to")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--mailroot", required=True)
    ap.add_argument("--user", default="lmtpbench")
    ap.add_argument("--nodes", type=int, default=3)
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    front = listener(host, int(port))
    owns = [listener("127.0.0.%d" % (i + 2), 0) for i in range(a.nodes)]
    names = ["n%d" % (i + 1) for i in range(a.nodes)]
    nodes = ";".join("%s=inet:127.0.0.%d:%d" % (n, i + 2, owns[i].getsockname()[1]) for i, n in enumerate(names))
    pids = []
    for i, n in enumerate(names):
        d = os.path.join(a.workdir, n)
        mail = os.path.join(a.mailroot, n)
        for sub in (d, mail):
            os.makedirs(sub, exist_ok=True)
        os.chmod(d, 0o777)
        os.chmod(mail, 0o777)
        conf = os.path.join(d, "lmtpd.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(user=a.user, dir=d, mail=mail))
            if a.nodes > 1:
                f.write("[cluster]\nnode_name = %s\nnodes = %s\n" % (n, nodes))
        pids.append(spawn(a.lmtpd, conf, front, owns[i]))

    def stop(*_):
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    for _ in pids:
        pid, st = os.wait()
        status = status or os.waitstatus_to_exitcode(st)
        stop()  # one node gone: the others too
    sys.exit(1 if status else 0)


if __name__ == "__main__":
    main()
