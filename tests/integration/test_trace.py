"""The decision trace (issue 19): every recipient's callouts (service,
server, time, verdict, how it counted), Sieve actions with their script and
line, the reply and the folder, kept in the records (lmtpd_trace) and
printed by `lmtpctl trace` by Message-ID, transaction id or queue id; off
when [trace] enabled is false; expired rows deleted in batches."""

import os
import re
import sqlite3
import subprocess
import time
import unittest

from lmtptest import LMTPD, Callout, Daemon, dotstuff, free_port, main
from test_directory_pgsql import PGBIN, Cluster

LMTPCTL = os.path.join(os.path.dirname(LMTPD), "..", "admin", "lmtpctl")
DELIVER = os.environ.get("DELIVER") or os.path.join(os.path.dirname(LMTPD), "..", "deliver", "deliver")

BODY = (b"From: s@example.net\r\nTo: joe@example.org\r\nSubject: monthly report\r\n"
        b"Message-ID: <trace.19@example.net>\r\n"
        b"Received: from mx.example.net by relay.example.net with ESMTP id RCVD42; Mon, 7 Dec 2026 20:00:00 +0000\r\n"
        b"\r\nthe numbers\r\n")

SIEVE = ('require ["fileinto"];\n'
         '# reports go to their own folder\n'
         'if header :contains "subject" "report" {\n'
         '  fileinto "Reports";\n'
         '}\n')


class TraceBase(unittest.TestCase):
    trace_enabled = "true"

    def setUp(self):
        self.access = Callout("rcpt=blocked@* reject 550 5.7.1 Access denied\n* accept\n")
        self.spam = Callout("rcpt=rej@* reject 550 5.7.1 Spam detected\nrcpt=drop@* discard\n"
                            "* add-header X-Spam: no\n")
        self.virus = Callout("* accept\n")
        self.down_port = free_port()
        extra = {
            "server.xforward_hosts": "local",
            "trace.enabled": self.trace_enabled,
            "service access.servers": self.access.endpoint, "service access.stage": "rcpt",
            "service spam.servers": self.spam.endpoint,
            "service virus.servers": self.virus.endpoint,
            "service down.servers": "inet:127.0.0.1:%d" % self.down_port,
            "service down.on_failure": "accept", "service down.connect_timeout": "500ms",
            "service down.timeout": "1s",
        }
        # a rule each: recipients of one rule share one call, and
        # ocp-calloutd answers a call as a whole
        for rule, match in (("rej", "rej@example.org"), ("drop", "drop@example.org"), ("all", "*")):
            extra["rule %s.match" % rule] = match
            extra["rule %s.services" % rule] = "access;spam;virus;down"
        extra.update(self.state_settings())
        self.d = Daemon(extra=extra)
        self.before_start()
        self.d.start()
        # as lmtpd names it: under the (relative) mail_root
        self.script_path = os.path.relpath(self.d.user_file("joe@example.org", ".dovecot.sieve", SIEVE), self.d.dir)

    def state_settings(self):
        return {}

    def before_start(self):
        pass

    def tearDown(self):
        self.d.cleanup()
        for c in (self.access, self.spam, self.virus):
            c.stop()

    def lmtpctl(self, *args):
        return subprocess.run([LMTPCTL, "-c", self.d.conf] + list(args), capture_output=True, text=True,
                              cwd=self.d.dir, timeout=30)

    def wait_trace(self, key, n_recipients, timeout=15):
        """lmtpctl trace KEY once the writer thread has written every row."""
        deadline = time.time() + timeout
        while True:
            p = self.lmtpctl("trace", key)
            if p.returncode == 0 and len(re.findall(r"^  <", p.stdout, re.M)) >= n_recipients:
                return p.stdout
            if time.time() > deadline:
                self.fail("no trace for %s: rc=%d %s %s" % (key, p.returncode, p.stdout, p.stderr))
            time.sleep(0.1)

    def deliver(self, rcpts, ident="QID4711"):
        """One LMTP transaction over the UNIX socket (XFORWARD allowed);
        returns the RCPT replies and the replies after the data."""
        c = self.d.connect(unix=True)
        c.reply()
        c.cmd("LHLO x")
        if ident:
            self.assertEqual(c.cmd("XFORWARD IDENT=%s" % ident), "250 2.0.0 Ok")
        self.assertEqual(c.cmd("MAIL FROM:<s@example.net>")[:3], "250")
        rcpt_replies = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        accepted = sum(1 for r in rcpt_replies if r.startswith("250"))
        self.assertEqual(c.cmd("DATA")[:3], "354")
        c.send(dotstuff(BODY))
        data_replies = [c.text() for _ in range(accepted)]
        c.cmd("QUIT")
        c.close()
        return rcpt_replies, data_replies

    def records(self):
        return os.path.join(self.d.dir, "var", "lib", "records.db")

    def trace_rows(self):
        with sqlite3.connect(self.records()) as db:
            return db.execute("SELECT txn, recipient, expires FROM lmtpd_trace").fetchall()


def block(out, address):
    """The lines of one recipient's trace in lmtpctl's output."""
    m = re.search(r"^  <%s> at [^\n]*\n((?:    [^\n]*\n)*)" % re.escape(address), out, re.M)
    assert m, "no trace of %s in:\n%s" % (address, out)
    return m.group(1)


class Trace(TraceBase):
    def test_every_step_in_order_by_message_id_txn_and_queue_id(self):
        rcpt, data = self.deliver(["joe@example.org", "drop@example.org", "rej@example.org", "blocked@example.org"])
        self.assertRegex(rcpt[3], r"^550 5\.7\.1 <blocked@example\.org> Access denied")
        self.assertRegex(data[0], r"^250 2\.0\.0 <joe@example\.org> Saved id=\w+")
        self.assertRegex(data[1], r"^250 2\.0\.0 <drop@example\.org> Discarded by content filter")
        self.assertRegex(data[2], r"^550 5\.7\.1 <rej@example\.org> Spam detected")
        txn = re.search(r"id=(\w+)", data[0]).group(1)
        # the bytes on disk: Sieve's folder
        (name, stored), = self.d.messages("joe@example.org", folder=".Reports")
        self.assertIn(b"X-Spam: no", stored)

        out = self.wait_trace("<trace.19@example.net>", 3)
        self.assertRegex(out, r"^transaction %s queue_id=QID4711 message_id=<trace\.19@example\.net> "
                              r"from=<s@example\.net>\n" % txn)
        joe = block(out, "joe@example.org")
        a, s, v = self.access.endpoint, self.spam.endpoint, self.virus.endpoint
        steps = [
            r"    1\. callout rcpt access server=%s time=\d+ms verdict=accept applied\n" % a,
            r"    2\. callout data spam server=%s time=\d+ms verdict=modify applied\n" % s,
            r"    3\. callout data virus server=%s time=\d+ms verdict=accept applied\n" % v,
            r"    4\. callout data down server=inet:127\.0\.0\.1:%d time=\d+ms failed: on_failure=accept "
            r"reason=\"[^\"]+\"\n" % self.down_port,
            r"    5\. sieve %s:4 fileinto \"Reports\"\n" % re.escape(self.script_path),
            r"    reply: 250 2\.0\.0 <joe@example\.org> Saved\n",
            r"    folder: Reports\n",
        ]
        self.assertRegex(joe, "^" + "".join(steps) + "$")
        drop = block(out, "drop@example.org")
        self.assertRegex(drop, r"2\. callout data spam server=%s time=\d+ms verdict=discard applied\n" % s)
        self.assertNotIn("sieve", drop)
        self.assertRegex(drop, r"reply: 250 2\.0\.0 <drop@example\.org> Discarded by content filter\n"
                               r"    folder: discard\n$")
        rej = block(out, "rej@example.org")
        self.assertRegex(rej, r"2\. callout data spam server=%s time=\d+ms verdict=reject applied "
                              r"reason=\"5\.7\.1 Spam detected\"\n" % s)
        self.assertRegex(rej, r"reply: 550 5\.7\.1 <rej@example\.org> Spam detected \(OPES [^\n]*\)\n$")
        self.assertNotIn("folder:", rej)
        # the refusal at RCPT has no Message-ID yet: found by the transaction
        self.assertNotIn("blocked@", out)

        by_txn = self.wait_trace(txn, 4)
        self.assertIn(joe, by_txn)
        blocked = block(by_txn, "blocked@example.org")
        self.assertRegex(blocked, r"^    1\. callout rcpt access server=%s time=\d+ms verdict=reject applied "
                                  r"reason=\"5\.7\.1 Access denied\"\n    reply: 550 5\.7\.1 <blocked@example\.org>"
                                  r" Access denied" % a)
        by_queue = self.wait_trace("QID4711", 4)
        self.assertEqual(by_queue, by_txn)
        self.assertEqual(self.wait_trace("trace.19@example.net", 3), out)

    def test_nothing_found_and_queue_id_from_received(self):
        p = self.lmtpctl("trace", "<nobody@example.net>")
        self.assertEqual(p.returncode, 66, p.stderr)
        self.assertIn("nothing found", p.stderr)
        p = self.lmtpctl("trace")
        self.assertEqual(p.returncode, 64)
        # without XFORWARD IDENT: the id of the topmost Received field
        self.deliver(["joe@example.org"], ident=None)
        out = self.wait_trace("RCVD42", 1)
        self.assertRegex(out, r"^transaction \w+ queue_id=RCVD42 message_id=<trace\.19@example\.net>")

    def test_duplicate_suppressed(self):
        self.deliver(["joe@example.org"], ident="QIDFIRST")
        rcpt, data = self.deliver(["joe@example.org"], ident="QIDAGAIN")
        self.assertRegex(data[0], r"^250 2\.0\.0 <joe@example\.org> Saved \(duplicate\)")
        self.assertEqual(len(self.d.messages("joe@example.org", folder=".Reports")), 1)
        joe = block(self.wait_trace("QIDAGAIN", 1), "joe@example.org")
        self.assertRegex(joe, r"^    1\. callout rcpt access [^\n]* verdict=accept applied\n"
                              r"    2\. duplicate: delivered before within duplicate_window, not stored again\n"
                              r"    reply: 250 2\.0\.0 <joe@example\.org> Saved \(duplicate\)\n$")

    def test_records_failing_is_75(self):
        self.d.stop()
        os.makedirs(os.path.join(self.d.dir, "blocked"))
        with open(os.path.join(self.d.dir, "blocked", "records.db"), "wb") as f:
            f.write(b"this is not a database" * 100)
        conf = self.d.conf + ".bad"
        with open(conf, "w") as f:
            f.write(self.d.config_text() + "[state]\nrecords_db = blocked/records.db\n")
        p = subprocess.run([LMTPCTL, "-c", conf, "trace", "x"], capture_output=True, text=True, cwd=self.d.dir,
                           timeout=30)
        self.assertEqual(p.returncode, 75, p.stderr)

    def test_lda_traces_and_expires_old_rows(self):
        self.deliver(["joe@example.org"])
        self.wait_trace("QID4711", 1)
        self.d.stop()
        # a row past its time: the next process's first trace deletes it
        with sqlite3.connect(self.records()) as db:
            db.execute("INSERT INTO lmtpd_trace (txn, recipient, at, expires, steps) VALUES "
                       "('oldtxn', 'old@example.org', 1, 2, 'callout data spam')")
        self.assertIn(("oldtxn", "old@example.org", 2), self.trace_rows())
        p = subprocess.run([DELIVER, "-c", "lmtpd.conf", "-f", "s@example.net", "-a", "joe@example.org"],
                           input=BODY.replace(b"\r\n", b"\n").replace(b"trace.19", b"lda.1"),
                           capture_output=True, cwd=self.d.dir, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = self.trace_rows()
        self.assertNotIn("oldtxn", [r[0] for r in rows])
        self.assertEqual(len(rows), 2, rows)
        out = self.lmtpctl("trace", "lda.1@example.net")
        self.assertEqual(out.returncode, 0, out.stderr)
        joe = block(out.stdout, "joe@example.org")
        self.assertRegex(joe, r"5\. sieve %s:4 fileinto \"Reports\"\n" % re.escape(self.script_path))
        self.assertRegex(joe, r"folder: Reports\n$")


class TraceShadow(TraceBase):
    """A service in shadow mode: its would-be verdict is traced as shadow,
    never applied."""

    def state_settings(self):
        self.shadow = Callout("* reject 550 5.7.1 Would have refused\n")
        return {"service shadowspam.servers": self.shadow.endpoint, "service shadowspam.mode": "shadow",
                "rule all.services": "access;spam;virus;down;shadowspam"}

    def tearDown(self):
        super().tearDown()
        self.shadow.stop()

    def test_shadow_verdict_traced_not_applied(self):
        rcpt, data = self.deliver(["joe@example.org"])
        self.assertTrue(data[0].startswith("250 2.0.0"), data)
        joe = block(self.wait_trace("QID4711", 1), "joe@example.org")
        self.assertRegex(joe, r"5\. callout data shadowspam server=%s time=\d+ms verdict=reject shadow "
                              r"reason=\"5\.7\.1 Would have refused\"\n" % self.shadow.endpoint)
        self.assertRegex(joe, r"6\. sieve [^\n]*:4 fileinto \"Reports\"\n    reply: 250 ")


class TraceDisabled(TraceBase):
    trace_enabled = "false"

    def test_nothing_written(self):
        rcpt, data = self.deliver(["joe@example.org", "rej@example.org", "blocked@example.org"])
        self.assertTrue(data[0].startswith("250"), data)
        self.assertEqual(len(self.d.messages("joe@example.org", folder=".Reports")), 1)
        self.d.stop()  # the writer's queue is written on the way out
        self.assertEqual(self.trace_rows(), [])
        p = self.lmtpctl("trace", "trace.19@example.net")
        self.assertEqual(p.returncode, 66, p.stderr)


@unittest.skipIf(PGBIN is None, "PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)")
class TracePgsql(TraceBase):
    """The same table in PostgreSQL ([state] backend = pgsql): every node
    sees every trace; expiry deletes there too."""

    @classmethod
    def setUpClass(cls):
        cls.pg = Cluster()

    @classmethod
    def tearDownClass(cls):
        cls.pg.cleanup()

    def state_settings(self):
        return {"state.backend": "pgsql", "state.pgsql_timeout": "5s",
                "state.pgsql_conninfo": "host=%s port=%d dbname=postgres user=postgres" % (self.pg.sock,
                                                                                           self.pg.port)}

    def before_start(self):
        self.pg.psql("DROP TABLE IF EXISTS lmtpd_trace")
        r = subprocess.run([LMTPD, "-c", self.d.conf, "--init-db"], capture_output=True, text=True, timeout=60,
                           cwd=self.d.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        # a row past its time: this process's first trace deletes it
        self.pg.psql("INSERT INTO lmtpd_trace (txn, recipient, at, expires, steps) VALUES "
                     "('oldtxn', 'old@example.org', 1, 2, 'callout data spam')")

    def test_trace_in_postgresql(self):
        rcpt, data = self.deliver(["joe@example.org", "rej@example.org"])
        self.assertTrue(data[0].startswith("250"), data)
        out = self.wait_trace("QID4711", 2)
        joe = block(out, "joe@example.org")
        self.assertRegex(joe, r"4\. callout data down server=inet:127\.0\.0\.1:%d time=\d+ms failed: "
                              r"on_failure=accept" % self.down_port)
        self.assertRegex(joe, r"5\. sieve %s:4 fileinto \"Reports\"\n" % re.escape(self.script_path))
        self.assertRegex(block(out, "rej@example.org"), r"reply: 550 5\.7\.1 <rej@example\.org> Spam detected")
        rows = self.pg.psql("SELECT txn, recipient, folder FROM lmtpd_trace ORDER BY recipient").split()
        self.assertEqual(len(rows), 2, rows)
        self.assertTrue(rows[0].endswith("|joe@example.org|Reports"), rows)
        self.assertTrue(rows[1].endswith("|rej@example.org|"), rows)


if __name__ == "__main__":
    main()
