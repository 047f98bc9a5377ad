"""What an administrator relies on (issue 14, sections 4 and 5): every
delivery and every RCPT refusal is one log line that names the MTA's queue
id and the Message-ID, the 250 names lmtpd's transaction, the metrics count
refusals and verdicts; the configuration is checked the way it will be used,
and a reload says what it could not apply."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from lmtptest import LMTPD, SERVICES, Callout, Daemon, Services, dotstuff, main

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

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
SPAM_CONF = """[server]
metrics_listen = inet:127.0.0.1:0

[service spam]
module = spam
listen = inet:127.0.0.1:0
backend = builtin
threshold = 5
actions = junk
"""


class ServicesDecisions(unittest.TestCase):
    """ocp-services logs each decision (lmtpd's transaction id, recipient,
    verdict, why) as it happened, counts it, and reloads on SIGHUP."""

    def setUp(self):
        self.s = Services(SPAM_CONF)
        self.d = Daemon(extra={"service spam.servers": self.s.endpoint("spam"), "service spam.timeout": "20s",
                               "rule all.match": "*", "rule all.services": "spam"}).start()

    def tearDown(self):
        self.d.cleanup()
        self.s.stop()

    def send(self, rcpt, body):
        c = self.d.connect(timeout=30)
        c.reply()
        c.send("LHLO x\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt)
        self.assertEqual([c.code() for _ in range(4)], [250, 250, 250, 354])
        c.send(dotstuff(body))
        r = c.text()
        c.close()
        return r

    def wait_services_log(self, pattern, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.s.read_log(), re.M)
            if m:
                return m
            time.sleep(0.05)
        self.fail("no services line matching %r in:\n%s" % (pattern, self.s.read_log()))

    def test_decision_line_agrees_with_what_happened(self):
        r = self.send("alice@example.org", b"Subject: buy\n\n" + GTUBE + b"\n")
        txn = re.search(r"^250 .* id=(\w+)$", r).group(1)
        self.assertEqual(len(self.d.messages("alice@example.org", folder=".Junk")), 1)
        line = self.wait_services_log(r"^.*txn=%s rcpt=<alice@example\.org>.*$" % txn).group(0)
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} ocp-services\[\d+\]: spam: txn=%s "
                               r"rcpt=<alice@example\.org> verdict=junk folder=Junk score=\S+/5" % txn)
        r = self.send("bob@example.org", b"Subject: hi\n\nnothing to see\n")
        txn = re.search(r"id=(\w+)$", r).group(1)
        self.wait_services_log(r"txn=%s rcpt=<bob@example\.org> verdict=modify score=\S+ labels=ham" % txn)
        v = scrape_services(self.s)
        self.assertEqual(v['ocp_services_verdicts_total{service="spam",verdict="junk"}'], 1)
        self.assertEqual(v['ocp_services_verdicts_total{service="spam",verdict="modify"}'], 1)

    def test_sighup_reloads_and_keeps_old_on_error(self):
        with open(self.s.conf) as f:
            good = f.read()
        with open(self.s.conf, "w") as f:
            f.write(good.replace("actions = junk", "actions = reject 550 5.7.1 Spam refused"))
        self.s.proc.send_signal(signal.SIGHUP)
        self.wait_services_log(r"configuration reloaded$")
        self.assertTrue(self.send("alice@example.org", b"Subject: a\n\n" + GTUBE + b"\n").startswith("550 5.7.1"))
        # a broken file is not applied: the reject policy stays
        with open(self.s.conf, "w") as f:
            f.write(good.replace("actions = junk", "actions = reject 550 5.7.1 Spam refused") + "garbage line\n")
        self.s.proc.send_signal(signal.SIGHUP)
        self.wait_services_log(r"reload failed, keeping the old configuration: .*services\.conf:\d+: ")
        self.assertIsNone(self.s.proc.poll())
        self.assertTrue(self.send("alice@example.org", b"Subject: b\n\n" + GTUBE + b"\n").startswith("550 5.7.1"))
        # a listener cannot move at reload: said so, the old one keeps serving
        with open(self.s.conf, "w") as f:
            f.write(good.replace("listen = inet:127.0.0.1:0\nbackend", "listen = inet:127.0.0.1:1\nbackend"))
        self.s.proc.send_signal(signal.SIGHUP)
        self.wait_services_log(r"\[service spam\] listen changed: not applied")
        self.wait_services_log(r"configuration reloaded, 1 setting\(s\) not applied")
        self.assertTrue(self.send("bob@example.org", b"Subject: c\n\nfine\n").startswith("250 "))


def scrape_services(s):
    m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", s.read_log())
    with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=30) as sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    values = {}
    for line in data.split(b"\r\n\r\n", 1)[1].decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


class ServicesCheckConfig(unittest.TestCase):
    def check(self, text):
        d = tempfile.mkdtemp(prefix="svc-check-")
        try:
            path = os.path.join(d, "services.conf")
            with open(path, "w") as f:
                f.write(text)
            return subprocess.run([SERVICES, "-c", path, "--check-config"], capture_output=True, text=True,
                                  timeout=60)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_ok_and_errors(self):
        p = self.check(SPAM_CONF)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration OK", p.stderr)
        p = self.check(SPAM_CONF.replace("module = spam", "module = nosuch"))
        self.assertEqual(p.returncode, 78)
        self.assertIn("[service spam] module: 'nosuch'", p.stderr)
        p = self.check("[server]\nuser = nosuchuser\n" + SPAM_CONF.replace("[server]\n", ""))
        self.assertEqual(p.returncode, 78)
        self.assertIn("[server] user: no user 'nosuchuser'", p.stderr)
        n = SPAM_CONF.count("\n") + 1  # the first line after it
        p = self.check(SPAM_CONF + "[servce x]\nmodule = spam\n")
        self.assertEqual(p.returncode, 78)
        self.assertRegex(p.stderr, r"services\.conf:%d: \[servce x\]: unknown group" % n)
        p = self.check(SPAM_CONF + "what is this\n")
        self.assertEqual(p.returncode, 78)
        self.assertRegex(p.stderr, r"services\.conf:%d: .*what is this" % n)


if __name__ == "__main__":
    main()
