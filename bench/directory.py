#!/usr/bin/env python3
"""bench/directory.py - what a directory lookup costs lmtpd (issue 16).

One run of the shared harness (../shared/bench/lmtp-bench.sh, Postfix's
smtp-source -L, targets interleaved A B C D E A B ..., medians) against
six lmtpd configurations that differ only in [users]:

  file          backend = file, a users map holding the harness's
                recipients (and the filler users)
  ldap-nocache  backend = ldap, cache_ttl = 0, negative_cache_ttl = 0:
                a search on every RCPT
  ldap-cached   backend = ldap, the default cache (60 s / 10 s)
  pgsql-nocache backend = pgsql, cache off: a query on every RCPT
  pgsql-cached  backend = pgsql, the default cache
  file-again    the file target again, last of every round: the file
                backend's rate is the mean of the two, and their
                difference shows the noise (and any position effect)

The directory servers are a private slapd (127.0.0.1) and a private
PostgreSQL cluster (initdb + pg_ctl, 127.0.0.1), started with the
integration tests' own classes (tests/integration/test_directory_ldap.py
Slapd, test_directory_pgsql.py Cluster), loaded with the same users
(bench@example.test, 2bench..20bench@example.test as smtp-source numbers
its recipients, and --users filler users), indexed on the address as a
site would, and stopped by PID at the end.

Prints a table (medians of the harness) and the two targets of issue 16:
cached lookups cost under 2% of the rate with the file backend; a lookup
on every RCPT keeps at least 70% of it.  A benchmark, not a test: nothing
here asserts a time.  Needs root (the harness creates its mail user;
PostgreSQL runs as postgres), smtp-source, slapd + ldap-utils,
PostgreSQL, a built tree.

  bench/directory.py [--messages N] [--repeat R] [--size B] [--sessions S]
                     [--recipients R] [--users N]
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
LMTPD = os.path.join(TOP, "lmtpd", "lmtpd")
os.environ.setdefault("LMTPD", LMTPD)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

from test_directory_ldap import ADMIN, PASSWORD as LDAP_PASSWORD, SLAPD, SUFFIX, Slapd, entry  # noqa: E402
from test_directory_pgsql import PGBIN, Cluster  # noqa: E402

DOMAIN = "example.test"  # the harness: sender@example.test -> [N]bench@example.test
PG_PASSWORD = "bench-secret"
PG_QUERY = ("SELECT mailbox, quota_bytes, quota_messages, sieve_script, enabled, alias_of, settings, host "
            "FROM users WHERE address = $1")
SCANS = "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'users'"
NOCACHE = "cache_ttl = 0\nnegative_cache_ttl = 0\n"


def addresses(recipients, users):
    """The harness's recipients (bench, 2bench ... as smtp-source numbers
    them; at least 20 so --recipients up to 20 works) and filler users."""
    smtp_source = ["bench"] + ["%dbench" % i for i in range(2, max(recipients, 20) + 1)]
    return ["%s@%s" % (l, DOMAIN) for l in smtp_source] + ["user%05d@%s" % (i, DOMAIN) for i in range(users)]


def start_slapd(addrs):
    s = Slapd()
    # an index on the attribute the filter names, as any site has; room for the users
    s.stop()
    conf = os.path.join(s.dir, "slapd.conf")
    with open(conf) as f:
        text = f.read().replace("maxsize 10485760", "maxsize 1073741824")
    with open(conf, "w") as f:
        f.write(text + "index objectClass eq\nindex mail eq\n")
    s.start()
    tree = ["dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: test\no: test\n" % SUFFIX,
            "dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n" % SUFFIX]
    tree += [entry(a.split("@")[0], a) for a in addrs]
    s.add("\n".join(tree))
    return s


def start_pgsql(addrs):
    pg = Cluster()
    values = ",\n".join("('%s')" % a for a in addrs)
    pg.psql("CREATE ROLE lmtpd LOGIN PASSWORD '%s';\n"
            "CREATE TABLE users (address text NOT NULL, mailbox text, quota_bytes bigint, quota_messages bigint,"
            " sieve_script text, enabled boolean, alias_of text, settings text[], host text);\n"
            "CREATE UNIQUE INDEX users_address ON users (address);\n"
            "GRANT SELECT ON users TO lmtpd;\n"
            "INSERT INTO users (address) VALUES %s;\nANALYZE users;\n" % (PG_PASSWORD, values))
    return pg


def cpu_ticks(pid, children=False):
    """utime+stime (+ reaped children's) of a process, in clock ticks."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    t = int(fields[11]) + int(fields[12])
    return t + int(fields[13]) + int(fields[14]) if children else t


def tree_ticks(pid):
    """A process, its reaped children and its live children (the postmaster
    and its backends)."""
    t = cpu_ticks(pid, children=True)
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                t += cpu_ticks(int(p), children=True)
    return t


def main():
    ap = argparse.ArgumentParser(description="lmtpd with the file, ldap and pgsql directories (issue 16)")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--recipients", type=int, default=1)
    ap.add_argument("--users", type=int, default=1000, help="filler users in each directory (default 1000)")
    args = ap.parse_args()
    harness = os.environ.get("LMTP_BENCH") or os.path.join(TOP, "..", "shared", "bench", "lmtp-bench.sh")
    if not os.access(harness, os.X_OK):
        sys.exit("bench/directory.py: no harness at %s (set LMTP_BENCH)" % harness)
    if not os.path.exists(SLAPD) or not shutil.which("ldapadd") or PGBIN is None:
        sys.exit("bench/directory.py: needs slapd, ldap-utils and PostgreSQL (the test command installs them)")
    if not os.access(LMTPD, os.X_OK):
        subprocess.run(["./setup.sh", "build"], cwd=TOP, check=True)

    servers = []
    harness_proc = []
    work = tempfile.mkdtemp(prefix="lmtpd-dirbench-")

    def cleanup():
        for h in harness_proc:  # interrupted: its own process group (smtp-source, lmtpd), by its id
            if h.poll() is None:
                os.killpg(h.pid, signal.SIGTERM)
                h.wait(60)
        for s in servers:  # Slapd.stop and Cluster.stop end their server by PID
            s.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        addrs = addresses(args.recipients, args.users)
        print("bench/directory: starting slapd and PostgreSQL with %d users" % len(addrs), file=sys.stderr)
        slapd = start_slapd(addrs)
        servers.append(slapd)
        pg = start_pgsql(addrs)
        servers.append(pg)

        # the [users] parts, @W@ being the harness's work directory
        with open(os.path.join(work, "users.map"), "w") as f:
            f.write("".join(a + "\n" for a in addrs))
        with open(os.path.join(work, "ldap.pw"), "w") as f:
            f.write(LDAP_PASSWORD + "\n")
        with open(os.path.join(work, "pg.pw"), "w") as f:
            f.write(PG_PASSWORD + "\n")
        parts = {
            "file": "backend = file\nmap = @W@/users.map\ndomains =\n",
            "ldap": "backend = ldap\ndomains =\nldap_uris = %s\nldap_base = ou=people,%s\nldap_bind_dn = %s\n"
                    "ldap_bind_password_file = @W@/ldap.pw\n" % (slapd.uri, SUFFIX, ADMIN),
            "pgsql": "backend = pgsql\ndomains =\npgsql_conninfo = host=127.0.0.1 port=%d dbname=postgres user=lmtpd\n"
                     "pgsql_password_file = @W@/pg.pw\npgsql_query = %s\n" % (pg.port, PG_QUERY),
        }
        parts["ldap-nocache"] = parts["ldap"] + NOCACHE
        parts["pgsql-nocache"] = parts["pgsql"] + NOCACHE
        # file twice, first and last of every round: the reference is their
        # mean, and their difference is what this machine cannot resolve
        names = ["file", "ldap-nocache", "ldap-cached", "pgsql-nocache", "pgsql-cached", "file-again"]
        targets = []
        for name in names:
            part = os.path.join(work, name + ".part")
            with open(part, "w") as f:
                f.write(parts[name.replace("-cached", "").replace("-again", "")])
            # lmtpd.conf.in ends with [users]: drop its catch-all, append ours
            cmd = ("sed -e 's#@W@#{workdir}#g' -e '/^domains *=/d' %s/lmtpd.conf.in > {workdir}/lmtpd.conf"
                   " && sed 's#@W@#{workdir}#g' %s >> {workdir}/lmtpd.conf" % (HERE, part))
            for secret in ("users.map", "ldap.pw", "pg.pw"):
                cmd += (" && cp %s/%s {workdir}/ && chown {mailuser} {workdir}/%s && chmod 600 {workdir}/%s"
                        % (work, secret, secret, secret))
            cmd += " && exec %s -c {workdir}/lmtpd.conf --listen {addr} --maildir-root {mailroot}" % LMTPD
            targets += ["--target", "%s=cmd:%s" % (name, cmd)]

        pg_pid = pg.pid()
        before = (cpu_ticks(slapd.proc.pid), tree_ticks(pg_pid))
        scans_before = int(pg.psql(SCANS) or 0)
        print("bench/directory: the harness, %d targets x %d runs" % (len(names), args.repeat), file=sys.stderr)
        log = os.path.join(work, "harness.log")
        with open(log, "w") as err:
            p = subprocess.Popen([harness, "--messages", str(args.messages), "--recipients", str(args.recipients),
                                  "--size", str(args.size), "--sessions", str(args.sessions),
                                  "--repeat", str(args.repeat)] + targets,
                                 stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
            harness_proc.append(p)
            out = p.communicate()[0]
        after = (cpu_ticks(slapd.proc.pid), tree_ticks(pg_pid))
        time.sleep(1.5)  # the backends report their statistics as they exit
        scans = int(pg.psql(SCANS) or 0) - scans_before
        if p.returncode != 0:
            with open(log) as f:
                sys.stderr.write("bench/directory: the harness exited %d:\n%s" % (p.returncode,
                                                                                 "".join(f.readlines()[-15:])))
        results = {}
        for line in out.splitlines():
            if line.startswith("RESULT "):
                kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
                results[kv.get("target")] = kv
        if results:
            report(args, names, results, before, after, scans)
        return 0 if p.returncode == 0 and len(results) == len(names) else 1
    finally:
        cleanup()


def report(args, names, results, before, after, scans):
    def num(t, k):
        try:
            return float(results[t][k])
        except (KeyError, ValueError):
            return 0.0

    print("%d messages x %d rcpt, %d bytes, %d sessions, %d interleaved runs, medians; %d users in each directory"
          % (args.messages, args.recipients, args.size, args.sessions, args.repeat,
             len(addresses(args.recipients, args.users))))
    print("%-14s %12s %16s %12s %16s %5s" % ("target", "deliveries/s", "(min-max)", "cpu_ms/dlv", "(min-max)", "lost"))
    for t in names:
        r = results.get(t, {})
        print("%-14s %12s %16s %12s %16s %5s" % (
            t, r.get("deliveries_per_s", "-"),
            "%s-%s" % (r.get("deliveries_per_s_min", "?"), r.get("deliveries_per_s_max", "?")),
            r.get("cpu_ms_per_delivery", "-"),
            "%s-%s" % (r.get("cpu_ms_per_delivery_min", "?"), r.get("cpu_ms_per_delivery_max", "?")),
            r.get("lost", "-")))
    hz = os.sysconf("SC_CLK_TCK")
    lookups = args.messages * args.recipients * args.repeat  # the nocache target's; the cached adds a few
    print("directory servers' own CPU over the whole run (not in cpu_ms/dlv): slapd %.2f s, PostgreSQL %.2f s;"
          " about %.3f / %.3f ms per RCPT of the nocache targets" % (
              (after[0] - before[0]) / hz, (after[1] - before[1]) / hz,
              (after[0] - before[0]) * 1000.0 / hz / lookups, (after[1] - before[1]) * 1000.0 / hz / lookups))
    print("PostgreSQL scans of the users table: %d (lookups; the nocache target sent %d RCPTs,"
          " the cached one misses a few)" % (scans, lookups))

    f1, f2 = num("file", "deliveries_per_s"), num("file-again", "deliveries_per_s")
    c1, c2 = num("file", "cpu_ms_per_delivery"), num("file-again", "cpu_ms_per_delivery")
    f, fc = (f1 + f2) / 2, (c1 + c2) / 2
    print("\nthe file backend, first and last of every round: %.1f and %.1f deliveries/s (%+.1f%%),"
          " %.3f and %.3f cpu ms (%+.1f%%): the noise floor; the reference below is their mean"
          % (f1, f2, (f2 - f1) / f1 * 100 if f1 > 0 else float("nan"),
             c1, c2, (c2 - c1) / c1 * 100 if c1 > 0 else float("nan")))
    print("targets (issue 16):")
    for b in ("ldap", "pgsql"):
        c = num(b + "-cached", "deliveries_per_s")
        cost = (f - c) / f * 100 if f > 0 else float("nan")
        cc = num(b + "-cached", "cpu_ms_per_delivery")
        cpu = (cc - fc) / fc * 100 if fc > 0 else float("nan")
        print("  %-5s cached:   costs %5.1f%% of the file backend's rate (< 2%%)   %-6s  (cpu/delivery %+.1f%%)"
              % (b, cost, "met" if f > 0 and c > 0 and cost < 2 else "MISSED", cpu))
    for b in ("ldap", "pgsql"):
        n = num(b + "-nocache", "deliveries_per_s")
        frac = n / f if f > 0 else float("nan")
        nc = num(b + "-nocache", "cpu_ms_per_delivery")
        print("  %-5s no cache: keeps %.3f of the file backend's rate (>= 0.70)   %-6s  (cpu/delivery %+.1f%%)"
              % (b, frac, "met" if f > 0 and frac >= 0.7 else "MISSED",
                 (nc - fc) / fc * 100 if fc > 0 else float("nan")))


if __name__ == "__main__":
    sys.exit(main())
