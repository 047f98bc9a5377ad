"""[users] backend = pgsql (issue 16): lmtpd asks a private PostgreSQL
cluster (initdb + pg_ctl in a temp dir, 127.0.0.1 and a UNIX socket in that
dir, started and stopped by the test) who the users are.

- two hosts in the connection string, the first down (libpq's failover);
- known, unknown (550 5.1.1), disabled (550 5.2.1), alias, subaddress, the
  mailbox and the quota the table names;
- an address with a quote or SQL in it is looked up literally (the query
  has parameters) and harms nothing; a query that returns two rows is a
  configuration error (451), not a user;
- the server stopped: an uncached user gets 451 4.3.0, a cached one 250;
  started again: new users resolve without restarting lmtpd;
- --check-config refuses a bad pgsql_ setting with file:line."""

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from lmtptest import GTUBE, LMTPD, SLOWDOWN, Daemon, Services, free_port, main
from test_delivery import transaction

ROOT = os.geteuid() == 0
BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
PGBIN = os.path.dirname(BINS[-1]) if BINS else None
PG_USER = "postgres"  # postgres refuses to run as root
PASSWORD = "s3cret 'pw\""

SCHEMA = """
CREATE ROLE lmtpd LOGIN PASSWORD '{pw}';
CREATE TABLE users (address text NOT NULL, mailbox text, quota_bytes bigint, quota_messages bigint,
                    sieve_script text, enabled boolean, alias_of text, settings text[], host text);
GRANT SELECT ON users TO lmtpd;
INSERT INTO users (address, mailbox, enabled, alias_of, quota_bytes, settings) VALUES
  ('joe@example.org', 'maildir:boxes/joe', NULL, NULL, NULL, ARRAY['Spam-Policy: strict']),
  ('ann@example.org', NULL, true, NULL, NULL, NULL),
  ('off@example.org', NULL, false, NULL, NULL, NULL),
  ('info@example.org', NULL, NULL, 'joe@example.org', NULL, NULL),
  ('q@example.org', NULL, true, NULL, 10240, NULL),
  ('o''brien@example.org', NULL, NULL, NULL, NULL, NULL),
  ('x'';drop table users;--@example.org', 'maildir:boxes/x', NULL, NULL, NULL, NULL),
  ('dup@example.org', NULL, NULL, NULL, NULL, NULL),
  ('dup@example.org', NULL, NULL, NULL, NULL, NULL),
  ('lenient@example.org', NULL, NULL, NULL, NULL, ARRAY['Spam-Threshold: 2000']);
""".format(pw=PASSWORD.replace("'", "''"))


class Cluster:
    """A private PostgreSQL: its data, socket dir and log in one temp dir,
    owned by the postgres user when the test runs as root."""

    def __init__(self):
        base = tempfile.gettempdir()
        if ROOT and not os.stat(base).st_mode & 0o001:
            base = "/tmp"  # the postgres user must reach it
        self.dir = tempfile.mkdtemp(prefix="pgsql-test-", dir=base)
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "log")
        os.mkdir(self.sock)
        os.chmod(self.sock, 0o755)
        if ROOT:
            pw = pwd.getpwnam(PG_USER)
            for p in (self.dir, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        self.run("initdb", "-D", self.data, "-U", "postgres", "--auth-local=trust",
                 "--auth-host=scram-sha-256", "--no-locale", "-E", "UTF8", "--no-sync")
        self.start()

    def run(self, prog, *args, check=True):
        argv = [os.path.join(PGBIN, prog)] + list(args)
        if ROOT:
            argv = ["runuser", "-u", PG_USER, "--"] + argv
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.dir)
        if check and p.returncode != 0:
            raise RuntimeError("%s: %s%s" % (prog, p.stdout, p.stderr))
        return p

    def start(self):
        self.run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o",
                 "-k %s -c listen_addresses=127.0.0.1 -p %d -c fsync=off" % (self.sock, self.port), "start")

    def pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def stop(self):
        pid = self.pid()
        if pid is None:
            return
        self.run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "30", "stop", check=False)
        try:
            os.kill(pid, signal.SIGKILL)  # pg_ctl did not manage: by PID
        except ProcessLookupError:
            pass
        deadline = time.time() + 10
        while os.path.exists(os.path.join(self.data, "postmaster.pid")) and time.time() < deadline:
            time.sleep(0.05)

    def psql(self, sql):
        return self.run("psql", "-h", self.sock, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                        "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql).stdout

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def rcpt(d, address, params=""):
    """The reply to one RCPT in a fresh transaction."""
    c = d.connect()
    c.reply()
    c.cmd("LHLO x")
    c.cmd("MAIL FROM:<s@example.net>%s" % params)
    reply = c.cmd("RCPT TO:<%s>" % address)
    c.close()
    return reply


class PostgresClass(unittest.TestCase):
    """A private PostgreSQL (cls.pg) for the tests of a class; skipped
    where PostgreSQL is not installed."""

    @classmethod
    def setUpClass(cls):
        if PGBIN is None:
            raise unittest.SkipTest("PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)")
        cls.pg = Cluster()

    @classmethod
    def tearDownClass(cls):
        cls.pg.cleanup()


class PgsqlBase(PostgresClass):
    extra = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.pg.psql(SCHEMA)
        except Exception:
            cls.pg.cleanup()
            raise

    def setUp(self):
        self.d = Daemon(extra={"users.backend": "pgsql", "users.domains": "",
                               # libpq's failover: the first host refuses, the second answers
                               "users.pgsql_conninfo": "host=127.0.0.1,127.0.0.1 port=%d,%d dbname=postgres "
                               "user=lmtpd" % (free_port(), self.pg.port),
                               "users.pgsql_password_file": "pgpass",
                               "users.pgsql_query": "SELECT mailbox, quota_bytes, quota_messages, sieve_script, "
                               "enabled, alias_of, settings, host FROM users WHERE address = $1",
                               **self.extra})
        with open(os.path.join(self.d.dir, "pgpass"), "w") as f:
            f.write(PASSWORD + "\n")
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def deliver(self, address, subject):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, [address], b"Subject: %s\r\n\r\nbody of %s\r\n" % (subject.encode(), subject.encode()))
        c.close()
        return r[0]

    def box(self, *parts):
        d = os.path.join(self.d.mail, *parts, "new")
        out = []
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            with open(os.path.join(d, name), "rb") as f:
                out.append(f.read())
        return out


class Users(PgsqlBase):
    def test_known_user_lands_in_the_mailbox_the_table_names(self):
        r = self.deliver("joe@example.org", "to joe")
        self.assertTrue(str(r).startswith("250"), r)
        (data,) = self.box("boxes", "joe")
        self.assertIn(b"Subject: to joe", data)
        self.assertIn(b"Delivered-To: joe@example.org", data)
        # no mailbox column: the template
        self.assertTrue(str(self.deliver("Ann@Example.org", "to ann")).startswith("250"))
        self.assertEqual(len(self.d.messages("ann@example.org")), 1)

    def test_unknown_and_disabled(self):
        self.assertTrue(rcpt(self.d, "nobody@example.org").startswith("550 5.1.1"))
        self.assertTrue(rcpt(self.d, "off@example.org").startswith("550 5.2.1"))
        self.assertEqual(self.box("example.org", "off", "Maildir"), [])

    def test_alias_and_subaddress(self):
        self.assertTrue(str(self.deliver("info@example.org", "via alias")).startswith("250"))
        self.assertTrue(str(self.deliver("joe+lists@example.org", "with detail")).startswith("250"))
        subjects = sorted(re.search(rb"Subject: ([^\r\n]*)", m).group(1) for m in self.box("boxes", "joe"))
        self.assertEqual(subjects, [b"via alias", b"with detail"])
        self.assertFalse(os.path.exists(os.path.join(self.d.mail, "example.org", "info")))

    def test_quota_from_the_table(self):
        reply = rcpt(self.d, "q@example.org", " SIZE=20000")
        self.assertRegex(reply, r"^(552 5\.2\.2|452 4\.2\.2)")
        self.assertTrue(rcpt(self.d, "q@example.org", " SIZE=2000").startswith("250"))

    def test_quotes_and_sql_are_looked_up_literally(self):
        self.assertTrue(str(self.deliver("o'brien@example.org", "quote")).startswith("250"))
        self.assertEqual(len(self.d.messages("o'brien@example.org")), 1)
        r = self.deliver('"x\';drop table users;--"@example.org', "sql")
        self.assertTrue(str(r).startswith("250"), r)
        self.assertEqual(len(self.box("boxes", "x")), 1)
        # were it spliced into the SQL, this would match every row
        self.assertTrue(rcpt(self.d, '"x\' or \'1\'=\'1"@example.org').startswith("550 5.1.1"))
        self.assertEqual(self.pg.psql("SELECT count(*) FROM users").strip(), "10")

    def test_reload_with_another_query(self):
        self.assertTrue(rcpt(self.d, "joe@example.org").startswith("250"))
        self.d.write_config(dict(self.d.extra, **{"users.pgsql_query": "SELECT mailbox FROM users "
                                                  "WHERE address = $1 AND address LIKE 'ann@%'"}))
        self.d.signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "configuration reloaded" not in self.d.read_log() and time.time() < deadline:
            time.sleep(0.05)
        self.assertTrue(rcpt(self.d, "joe@example.org").startswith("550 5.1.1"))
        self.assertTrue(rcpt(self.d, "ann@example.org").startswith("250"))

    def test_two_rows_are_a_configuration_error(self):
        self.assertTrue(rcpt(self.d, "dup@example.org").startswith("451 4.3.0"))
        self.assertIn("configuration error", self.d.read_log())


class LocalPartAndDomain(PgsqlBase):
    """Over the UNIX socket (trust: no password), with $2 and $3; settings
    as text lines rather than text[]."""

    def setUp(self):
        self.extra = {"users.pgsql_conninfo": "postgresql://lmtpd@/postgres?host=%s&port=%d"
                      % (self.pg.sock, self.pg.port),
                      "users.pgsql_password_file": None,
                      "users.pgsql_query": "SELECT mailbox, enabled, array_to_string(settings, chr(10)) AS settings FROM users "
                      "WHERE split_part(address, '@', 1) = $2 AND split_part(address, '@', 2) = $3"}
        super().setUp()

    def test_socket_and_split_address(self):
        r = self.deliver("joe@example.org", "over the socket")
        self.assertTrue(str(r).startswith("250"), r)
        self.assertEqual(len(self.box("boxes", "joe")), 1)
        self.assertTrue(rcpt(self.d, "joe@example.net").startswith("550 5.1.1"))
        self.assertTrue(rcpt(self.d, "off@example.org").startswith("550 5.2.1"))


class Outage(PgsqlBase):
    extra = {"users.cache_ttl": "3600", "users.negative_cache_ttl": "0", "users.lookup_timeout": "3s"}

    def test_down_then_up_again(self):
        self.assertTrue(str(self.deliver("joe@example.org", "before")).startswith("250"))
        self.pg.stop()
        self.assertTrue(rcpt(self.d, "ann@example.org").startswith("451 4.3.0"))
        self.assertTrue(str(self.deliver("joe@example.org", "during")).startswith("250"))
        self.assertTrue(rcpt(self.d, "nobody@example.org").startswith("451 4.3.0"))
        self.assertEqual(len(self.box("boxes", "joe")), 2)
        self.pg.start()
        r = self.deliver("ann@example.org", "after")
        self.assertTrue(str(r).startswith("250"), (r, self.d.read_log()[-2000:]))
        self.assertEqual(len(self.d.messages("ann@example.org")), 1)
        self.assertTrue(rcpt(self.d, "nobody@example.org").startswith("550 5.1.1"))


class SlowAndConcurrent(PgsqlBase):
    """A query slower than lookup_timeout is cut by statement_timeout (451,
    not a hung RCPT); many RCPTs at once share the small pool."""
    extra = {"users.cache_ttl": "0", "users.negative_cache_ttl": "0", "users.lookup_timeout": "1s",
             "users.pgsql_query": "SELECT u.mailbox, u.enabled FROM users u, "
             "pg_sleep(CASE WHEN $2 = 'slow' THEN 10 ELSE 0 END) s WHERE u.address = $1"}

    def test_slow_query_tempfails_in_time(self):
        t = time.time()
        self.assertTrue(rcpt(self.d, "slow@example.org").startswith("451 4.3.0"))
        self.assertLess(time.time() - t, 8)
        # whichever comes first: lmtpd's deadline or the server's statement_timeout
        self.assertRegex(self.d.read_log(), r"pgsql: (the server did not answer in time|.*statement timeout)")
        self.assertTrue(rcpt(self.d, "joe@example.org").startswith("250"))


class Concurrent(PgsqlBase):
    """Many RCPTs at once share the small pool (a timeout that allows for a
    loaded machine and the sanitizers: this is about sharing, not speed)."""
    extra = {"users.cache_ttl": "0", "users.negative_cache_ttl": "0",
             "users.lookup_timeout": "%ds" % (5 * SLOWDOWN)}

    def test_many_lookups_at_once(self):
        want = {"joe@example.org": "250", "ann@example.org": "250", "off@example.org": "550 5.2.1",
                "nobody@example.org": "550 5.1.1"}
        got = []

        def client(i):
            for n in range(5):
                a = sorted(want)[(i + n) % len(want)]
                got.append((a, rcpt(self.d, a)))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        self.assertEqual(len(got), 50)
        for a, reply in got:
            self.assertTrue(reply.startswith(want[a]), (a, reply))


class SettingsReachTheService(PgsqlBase):
    """A user's settings column reaches the callout service with the call
    (Recipient-Data): lenient's own spam threshold keeps GTUBE out of Junk,
    ann (no settings) gets the service's own."""

    def setUp(self):
        self.sv = Services("[service spam]\nmodule = spam\nlisten = inet:127.0.0.1:0\nbackend = builtin\n"
                           "threshold = 5\nactions = junk\n")
        self.addCleanup(self.sv.stop)
        self.extra = {"service spam.servers": self.sv.endpoint("spam"), "service spam.timeout": "30s",
                      "rule all.match": "*", "rule all.services": "spam"}
        super().setUp()

    def test_own_spam_threshold(self):
        c = self.d.connect(timeout=60)
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["ann@example.org", "lenient@example.org"], b"Subject: spam\r\n\r\n" + GTUBE + b"\r\n")
        c.close()
        self.assertTrue(all(str(x).startswith("250") for x in r), r)
        self.assertEqual(len(self.d.messages("ann@example.org", folder=".Junk")), 1)
        self.assertEqual(len(self.d.messages("lenient@example.org")), 1)
        self.assertEqual(len(self.d.messages("lenient@example.org", folder=".Junk")), 0)


class CheckConfig(unittest.TestCase):
    """--check-config refuses a bad pgsql_ setting with file:line (no server needed)."""

    def setUp(self):
        self.d = Daemon(extra={"users.backend": "pgsql", "users.domains": ""})

    def tearDown(self):
        self.d.cleanup()

    def check(self, **settings):
        self.d.write_config(dict(self.d.extra, **{"users." + k: v for k, v in settings.items()}))
        with open(self.d.conf) as f:
            lines = f.read().splitlines()
        p = subprocess.run([LMTPD, "-c", self.d.conf, "--check-config"], capture_output=True, text=True,
                           timeout=60, cwd=self.d.dir)
        return p, lines

    def line_of(self, lines, key):
        return next(i + 1 for i, l in enumerate(lines) if l.startswith(key + " ="))

    def test_bad_settings_have_file_and_line(self):
        good = "host=127.0.0.1 dbname=mail"
        p, lines = self.check(pgsql_conninfo=good, pgsql_query="SELECT * FROM users WHERE address = $4")
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("%s:%d: [users] pgsql_query:" % (self.d.conf, self.line_of(lines, "pgsql_query")), p.stderr)
        p, lines = self.check(pgsql_conninfo="host='db1 dbname=mail")
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("%s:%d: [users] pgsql_conninfo:" % (self.d.conf, self.line_of(lines, "pgsql_conninfo")),
                      p.stderr)
        p, lines = self.check(pgsql_conninfo=good, pgsql_password_file="no-such-file")
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("%s:%d: [users] pgsql_password_file:" % (self.d.conf,
                                                               self.line_of(lines, "pgsql_password_file")), p.stderr)
        p, lines = self.check(pgsql_query="SELECT * FROM users")
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("backend pgsql needs a connection string", p.stderr)
        self.assertIn("never names the address", p.stderr)
        p, lines = self.check(pgsql_conninfo=good)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    main()
