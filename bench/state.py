#!/usr/bin/env python3
"""bench/state.py - what the shared duplicate journal costs lmtpd (issue 18).

One run of the shared harness (../shared/bench/lmtp-bench.sh, Postfix's
smtp-source -L, targets interleaved, medians) against three lmtpd
configurations that differ only in [state]:

  file        backend = file: the local duplicate journal (the default)
  pgsql       backend = pgsql: the journal in PostgreSQL (a seen query, an
              intent and a confirmation per recipient)
  file-again  the file target again, last of every round: the reference
              is the mean of the two, their difference the noise

PostgreSQL is a private cluster (initdb + pg_ctl on a UNIX socket,
fsync = off as the tests run it) started with the integration tests' own
class (tests/integration/test_directory_pgsql.py Cluster), its schema made
by `lmtpd --init-db`, stopped by PID at the end.

Prints a table and the target of issue 18: pgsql keeps at least 70% of the
file journal's rate.  A benchmark, not a test: nothing here asserts a time.
Needs root, smtp-source, PostgreSQL, a built tree.

  bench/state.py [--messages N] [--repeat R] [--size B] [--sessions S]
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
LMTPD = os.path.join(TOP, "lmtpd", "lmtpd")
os.environ.setdefault("LMTPD", LMTPD)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

from test_directory_pgsql import PGBIN, Cluster  # noqa: E402

NAMES = ["file", "pgsql", "file-again"]


def init_db(work, conninfo):
    conf = os.path.join(work, "init.conf")
    with open(conf, "w") as f:
        f.write("[server]\nuser = nobody\n[state]\nbackend = pgsql\npgsql_conninfo = %s\n" % conninfo)
    subprocess.run([LMTPD, "-c", conf, "--init-db"], check=True, cwd=work)


def targets(work, conninfo):
    out = []
    for name in NAMES:
        part = os.path.join(work, name + ".part")
        with open(part, "w") as f:
            f.write("[state]\nbackend = %s\n" % ("pgsql" if name == "pgsql" else "file"))
            if name == "pgsql":
                f.write("pgsql_conninfo = %s\n" % conninfo)
        cmd = ("sed -e 's#@W@#{workdir}#g' %s/lmtpd.conf.in > {workdir}/lmtpd.conf && cat %s >> {workdir}/lmtpd.conf"
               " && exec %s -c {workdir}/lmtpd.conf --listen {addr} --maildir-root {mailroot}" % (HERE, part, LMTPD))
        out += ["--target", "%s=cmd:%s" % (name, cmd)]
    return out


def run_harness(harness, args, work, conninfo):
    log = os.path.join(work, "harness.log")
    with open(log, "w") as err:
        p = subprocess.Popen([harness, "--messages", str(args.messages), "--recipients", "1",
                              "--size", str(args.size), "--sessions", str(args.sessions),
                              "--repeat", str(args.repeat)] + targets(work, conninfo),
                             stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
        try:
            out = p.communicate()[0]
        except BaseException:
            os.killpg(p.pid, signal.SIGTERM)  # its own process group, by its id
            p.wait(60)
            raise
    if p.returncode != 0:
        with open(log) as f:
            sys.stderr.write("bench/state: the harness exited %d:\n%s" % (p.returncode, "".join(f.readlines()[-15:])))
    results = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
            results[kv.get("target")] = kv
    return p.returncode, results


def report(args, results):
    def num(t, k):
        try:
            return float(results[t][k])
        except (KeyError, ValueError):
            return 0.0

    print("%d messages x 1 rcpt, %d bytes, %d sessions, %d interleaved runs, medians"
          % (args.messages, args.size, args.sessions, args.repeat))
    print("%-11s %12s %16s %12s %16s %5s" % ("target", "deliveries/s", "(min-max)", "cpu_ms/dlv", "(min-max)", "lost"))
    for t in NAMES:
        r = results.get(t, {})
        print("%-11s %12s %16s %12s %16s %5s" % (
            t, r.get("deliveries_per_s", "-"),
            "%s-%s" % (r.get("deliveries_per_s_min", "?"), r.get("deliveries_per_s_max", "?")),
            r.get("cpu_ms_per_delivery", "-"),
            "%s-%s" % (r.get("cpu_ms_per_delivery_min", "?"), r.get("cpu_ms_per_delivery_max", "?")),
            r.get("lost", "-")))
    f1, f2 = num("file", "deliveries_per_s"), num("file-again", "deliveries_per_s")
    f = (f1 + f2) / 2
    p = num("pgsql", "deliveries_per_s")
    print("\nthe file journal, first and last of every round: %.1f and %.1f deliveries/s (%+.1f%%): the noise"
          % (f1, f2, (f2 - f1) / f1 * 100 if f1 > 0 else float("nan")))
    frac = p / f if f > 0 else float("nan")
    print("target (issue 18): the pgsql journal keeps %.3f of the file journal's rate (>= 0.70)   %s"
          % (frac, "met" if f > 0 and frac >= 0.7 else "MISSED"))


def main():
    ap = argparse.ArgumentParser(description="lmtpd with the file and the pgsql duplicate journal (issue 18)")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--sessions", type=int, default=4)
    args = ap.parse_args()
    harness = os.environ.get("LMTP_BENCH") or os.path.join(TOP, "..", "shared", "bench", "lmtp-bench.sh")
    if not os.access(harness, os.X_OK):
        sys.exit("bench/state.py: no harness at %s (set LMTP_BENCH)" % harness)
    if PGBIN is None:
        sys.exit("bench/state.py: needs PostgreSQL (the test command installs it)")
    if not os.access(LMTPD, os.X_OK):
        subprocess.run(["./setup.sh", "build"], cwd=TOP, check=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = tempfile.mkdtemp(prefix="lmtpd-statebench-")
    os.chmod(work, 0o755)
    pg = None
    try:
        pg = Cluster()
        conninfo = "host=%s port=%d dbname=postgres user=postgres" % (pg.sock, pg.port)
        init_db(work, conninfo)
        print("bench/state: the harness, %d targets x %d runs" % (len(NAMES), args.repeat), file=sys.stderr)
        rc, results = run_harness(harness, args, work, conninfo)
        rows = pg.psql("SELECT count(*) FROM lmtpd_duplicates WHERE confirmed").strip()
        if results:
            report(args, results)
            print("confirmed rows in lmtpd_duplicates after the run: %s" % rows)
        return 0 if rc == 0 and len(results) == len(NAMES) else 1
    finally:
        if pg:
            pg.cleanup()  # stops the postmaster by PID
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
