"""What an administrator relies on (issue 14, sections 4 and 5): every
delivery and every RCPT refusal is one log line that names the MTA's queue
id and the Message-ID, the 250 names lmtpd's transaction, the metrics count
refusals and verdicts; the configuration is checked the way it will be used,
and a reload says what it could not apply."""

import json
import os
import re
import signal
import socket
import subprocess
import time
import unittest

from lmtptest import LMTPD, Callout, Daemon, dotstuff, main

BODY = (b"From: a@example.net\nTo: joe@example.org\nSubject: trace me\n"
        b"Message-ID: <trace.1@example.net>\n\nhello\n")


def scrape(d):
    """The metrics endpoint's values, by series name."""
    m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", d.read_log())
    with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=30) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    values = {}
    for line in data.split(b"\r\n\r\n", 1)[1].decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


class Base(unittest.TestCase):
    extra = {}
    users = None

    def setUp(self):
        self.d = Daemon(dict(self.extra), users=self.users).start()

    def tearDown(self):
        self.d.cleanup()

    def session(self, unix=False):
        c = self.d.connect(unix=unix, timeout=30)
        self.assertEqual(c.code(), 220)
        c.send("LHLO admin.test\r\n")
        c.reply()
        return c

    def wait_log(self, pattern, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.d.read_log(), re.M)
            if m:
                return m
            time.sleep(0.05)
        self.fail("no log line matching %r in:\n%s" % (pattern, self.d.read_log()))


class Traceable(Base):
    """A Postfix queue id (XFORWARD IDENT) and the Message-ID are on the
    delivery line; the 250 carries the transaction id that line starts with."""
    extra = {"server.xforward_hosts": "local"}
    users = ["joe@example.org", "ann@example.org"]

    def test_queue_id_message_id_and_txn_id(self):
        c = self.session(unix=True)
        self.assertEqual(c.cmd("XFORWARD NAME=mx.example.net ADDR=192.0.2.7 IDENT=4XyZ12AbCd"), "250 2.0.0 Ok")
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<joe@example.org>\r\nRCPT TO:<ann@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(4)], [250, 250, 250, 354])
        c.send(dotstuff(BODY))
        replies = [c.text(), c.text()]
        ids = set()
        for r in replies:
            m = re.match(r"250 2\.0\.0 <\S+> Saved id=(\w+)$", r)
            self.assertTrue(m, r)
            ids.add(m.group(1))
        self.assertEqual(len(ids), 1, replies)
        txn = ids.pop()
        for who in ("joe", "ann"):
            line = self.wait_log(r"^.*: %s: from=<a@example\.net> to=<%s@example\.org> .*$" % (txn, who)).group(0)
            self.assertIn(" queue_id=4XyZ12AbCd", line)
            self.assertIn(" message_id=<trace.1@example.net>", line)
            self.assertIn(" status=250 2.0.0", line)
        # a queue id is the MTA's for one transaction only
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        c.send(dotstuff(b"Subject: second\n\nno id\n"))
        txn2 = re.search(r"id=(\w+)$", c.text()).group(1)
        line = self.wait_log(r"^.*: %s: from=.*$" % txn2).group(0)
        self.assertNotIn("queue_id=", line)
        self.assertNotIn("message_id=", line)

    def test_hostile_message_id_is_sanitised(self):
        c = self.session()
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        # folded, with a terminal escape and a fake log record in it
        c.send(dotstuff(b"Subject: x\nMessage-ID:\n <evil\x1b[2J@example.net>\n\tstatus=250 to=<boss@x>\n\nbody\n"))
        txn = re.search(r"id=(\w+)$", c.text()).group(1)
        line = self.wait_log(r"^.*: %s: from=.*$" % txn).group(0)
        self.assertNotIn("\x1b", self.d.read_log())
        self.assertRegex(line, r" message_id=<evil.\[2J@example\.net>")
        self.assertEqual(len([l for l in self.d.read_log().splitlines() if "boss@x" in l]), 1)


class RcptRefusals(Base):
    """A refusal at RCPT is a line like a delivery's, and it is counted."""
    extra = {"server.metrics_listen": "inet:127.0.0.1:0", "server.xforward_hosts": "local"}
    users = ["joe@example.org"]

    def test_logged_and_counted(self):
        before = scrape(self.d)
        self.assertEqual(before['lmtpd_rcpt_refused_total{status="5xx"}'], 0)
        c = self.session(unix=True)
        self.assertEqual(c.cmd("XFORWARD IDENT=QID777"), "250 2.0.0 Ok")
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<nobody@example.org>\r\n")
        self.assertEqual(c.code(), 250)
        self.assertTrue(c.text().startswith("550 5.1.1"))
        line = self.wait_log(r"^.*to=<nobody@example\.org>.*$").group(0)
        self.assertRegex(line, r": rejected at RCPT: from=<a@example\.net> to=<nobody@example\.org> "
                               r"status=550 5\.1\.1 .*queue_id=QID777 reason=\S")
        after = scrape(self.d)
        self.assertEqual(after['lmtpd_rcpt_refused_total{status="5xx"}'], 1)
        self.assertEqual(after['lmtpd_deliveries_total{status="5xx"}'], 0)


class RcptRefusalsJson(Base):
    extra = {"server.log_format": "json"}
    users = ["joe@example.org"]

    def test_json_fields(self):
        c = self.session()
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<nobody@example.org>\r\n")
        self.assertEqual(c.code(), 250)
        self.assertTrue(c.text().startswith("550 5.1.1"))
        self.wait_log(r'"rcpt":"nobody@example\.org"')
        rec = [json.loads(l) for l in self.d.read_log().splitlines()
               if l.startswith("{") and '"rcpt":"nobody@example.org"' in l][0]
        self.assertEqual(rec["from"], "a@example.net")
        self.assertEqual(rec["status"], 550)
        self.assertEqual(rec["dsn"], "5.1.1")
        self.assertEqual(rec["stage"], "rcpt")
        self.assertTrue(rec["reason"])


class VerdictMetrics(unittest.TestCase):
    """lmtpd counts each service's verdicts by action."""

    def test_verdicts_per_service_and_action(self):
        callout = Callout("rcpt=no@* reject 550 5.7.1 nope\n* accept\n")
        d = Daemon(extra={"server.metrics_listen": "inet:127.0.0.1:0",
                          "service gate.servers": callout.endpoint,
                          "rule all.match": "*", "rule all.services": "gate"}).start()
        try:
            c = d.connect(timeout=30)
            c.reply()
            c.send("LHLO x\r\n")
            c.reply()
            for rcpt in ("joe@example.org", "no@example.org", "ann@example.org"):
                c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt)
                self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
                c.send(dotstuff(BODY))
                c.code()
            v = scrape(d)
            self.assertEqual(v['lmtpd_service_verdicts_total{service="gate",verdict="accept"}'], 2)
            self.assertEqual(v['lmtpd_service_verdicts_total{service="gate",verdict="reject"}'], 1)
            self.assertEqual(v['lmtpd_service_verdicts_total{service="gate",verdict="discard"}'], 0)
        finally:
            d.cleanup()
            callout.stop()


if __name__ == "__main__":
    main()
