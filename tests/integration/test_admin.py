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

from lmtptest import LMTPD, SERVICES, Callout, Daemon, Services, doc_block, dotstuff, main

TOP = os.environ.get("TOP_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")

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


class LmtpdCheckConfig(unittest.TestCase):
    """--check-config finds what start would trip over, with file:line; the
    exit code is the man page's 78 (invalid configuration) both ways."""

    def setUp(self):
        self.d = Daemon()

    def tearDown(self):
        self.d.cleanup()

    def lmtpd(self, *args):
        return subprocess.run([LMTPD, "-c", self.d.conf] + list(args), capture_output=True, text=True,
                              timeout=60, cwd=self.d.dir)

    def test_no_such_user(self):
        self.d.write_config({"server.user": "nosuchuser"})
        p = self.lmtpd("--check-config")
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"lmtpd\.conf: \[server\] user: no user 'nosuchuser'")
        p = self.lmtpd()
        self.assertEqual(p.returncode, 78, p.stderr)
        with open(os.path.join(TOP, "docs", "man", "lmtpd.8")) as f:
            self.assertIn("78 invalid configuration", f.read())

    def test_syntax_error_and_unknown_group_have_lines(self):
        self.d.write_config(text=self.d.config_text() + "\n# fine\nthis is not a setting\n")
        n = self.d.config_text().count("\n") + 3
        p = self.lmtpd("--check-config")
        self.assertEqual(p.returncode, 78)
        self.assertIn("%s:%d: " % (self.d.conf, n), p.stderr)
        self.d.write_config(text=self.d.config_text() + "[mailboxs]\nx = 1\n")
        n = self.d.config_text().count("\n") + 1
        p = self.lmtpd("--check-config")
        self.assertEqual(p.returncode, 78)
        self.assertIn("%s:%d: [mailboxs]: unknown group" % (self.d.conf, n), p.stderr)


class ReloadSaysWhatItCannotApply(Base):
    extra = {"server.delivery_threads": "4"}

    def test_sighup_names_settings_needing_restart(self):
        self.d.write_config({"server.delivery_threads": "8",
                             "server.listen": "inet:127.0.0.1:0;unix:run/other.sock",
                             "server.metrics_listen": "inet:127.0.0.1:0", "limits.max_recipients": "7"})
        self.d.signal(signal.SIGHUP)
        self.wait_log(r"configuration reloaded.*, 2 setting\(s\) not applied")
        log = self.d.read_log()
        # delivery_threads follows a reload (ReloadResizesDeliveryThreads)
        self.assertNotRegex(log, r"delivery_threads changed")
        self.assertRegex(log, r"reload: \[server\] listen changed .*other\.sock\): not applied")
        self.assertRegex(log, r"reload: \[server\] metrics_listen changed \(unset -> inet:127\.0\.0\.1:0\)")
        # what can change did: the new recipient limit is in force
        c = self.session()
        c.send("MAIL FROM:<a@example.net>\r\n" + "".join("RCPT TO:<u%d@example.org>\r\n" % i for i in range(8)))
        codes = [c.code() for _ in range(9)]
        self.assertEqual(codes[-1], 452, codes)
        # a reload that changes nothing of the kind says just that
        self.d.write_config({"server.delivery_threads": "4"})
        self.d.signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline and len(re.findall(r"configuration reloaded", self.d.read_log())) < 2:
            time.sleep(0.05)
        self.assertRegex(self.d.read_log().splitlines()[-1], r"configuration reloaded from lmtpd\.conf$")


class ReloadResizesDeliveryThreads(Base):
    """delivery_threads is applied on SIGHUP: no warning, and deliveries go
    on with the new number of threads."""
    extra = {"server.delivery_threads": "1"}
    users = ["joe@example.org", "ann@example.org", "bob@example.org"]

    def deliver_to_all(self, n):
        c = self.session()
        c.send("MAIL FROM:<a@example.net>\r\n" + "".join("RCPT TO:<%s>\r\n" % u for u in self.users) + "DATA\r\n")
        self.assertEqual([c.code() for _ in range(5)], [250] * 4 + [354])
        c.send(dotstuff(b"Message-ID: <threads.%d@example.net>\nSubject: %d\n\nhello\n" % (n, n)))
        for _ in self.users:
            self.assertRegex(c.text(), r"^250 2\.0\.0 <\S+> Saved id=\w+$")
        c.send("QUIT\r\n")

    def test_reload_changes_delivery_threads(self):
        self.deliver_to_all(0)
        for threads, n in (("3", 1), ("2", 2)):
            self.d.write_config({"server.delivery_threads": threads})
            self.d.signal(signal.SIGHUP)
            deadline = time.time() + 30
            while time.time() < deadline and len(re.findall(r"configuration reloaded", self.d.read_log())) < n:
                time.sleep(0.05)
            self.assertEqual(len(re.findall(r"configuration reloaded from lmtpd\.conf$", self.d.read_log(), re.M)), n)
            self.deliver_to_all(n)
        log = self.d.read_log()
        self.assertNotRegex(log, r"delivery_threads changed|not applied")
        for u in self.users:
            self.assertEqual(len(self.d.messages(u)), 3)


class SameRecipientTwice(Base):
    users = ["joe@example.org", "ann@example.org"]

    def test_stored_once_answered_twice(self):
        c = self.session()
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<joe@example.org>\r\nRCPT TO:<ann@example.org>\r\n"
               "RCPT TO:<Joe@example.org>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(6)], [250] * 5 + [354])
        c.send(dotstuff(BODY))
        replies = [c.text() for _ in range(4)]
        for r in replies:
            self.assertRegex(r, r"^250 2\.0\.0 <\S+> Saved id=\w+$")
        self.assertEqual(len(self.d.messages("joe@example.org")), 1)
        self.assertEqual(len(self.d.messages("ann@example.org")), 1)
        # the server is still in step: the next transaction is normal
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        c.send(dotstuff(b"Subject: 2\n\nagain\n"))
        self.assertTrue(c.text().startswith("250 "))
        self.assertEqual(len(self.d.messages("joe@example.org")), 2)


def children(pid):
    """Direct children of @pid (Linux /proc)."""
    out = []
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class SetupRunStops(unittest.TestCase):
    """./setup.sh run stops lmtpd and ocp-services on SIGTERM, SIGINT and
    SIGHUP (a service manager or kill sends SIGTERM to the script only)."""

    def setUp(self):
        self.d = Daemon()  # only for its directory and configuration
        self.svc_conf = os.path.join(self.d.dir, "services.conf")
        with open(self.svc_conf, "w") as f:
            if os.geteuid() == 0:
                f.write("[server]\nuser = nobody\n")
            f.write("[service log]\nmodule = logging\nlisten = inet:127.0.0.1:0\nlog = %s/log.jsonl\n" % self.d.dir)
        text = self.d.config_text().replace("= spool", "= %s/spool" % self.d.dir) \
            .replace("= mail", "= %s/mail" % self.d.dir).replace("= lib/", "= %s/lib/" % self.d.dir) \
            .replace("unix:run/", "unix:%s/run/" % self.d.dir)
        # setup.sh runs lmtpd in the source tree: no relative path may stay
        text += "[state]\nrecords_db = %s/lib/records.db\n" % self.d.dir
        self.d.write_config(text=text)

    def tearDown(self):
        self.d.cleanup()

    def run_and_signal(self, sig):
        env = dict(os.environ, SKIP_BUILD="1", LMTPD_CONF=self.d.conf, SERVICES_CONF=self.svc_conf)
        out_path = os.path.join(self.d.dir, "setup.out")
        with open(out_path, "wb") as out:
            p = subprocess.Popen(["bash", os.path.join(TOP, "setup.sh"), "run"], stdout=out,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                with open(out_path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                if "ocp-services: started" in text and re.search(r"lmtpd\[\d+\]: .* started", text):
                    break
                self.assertIsNone(p.poll(), text)
                time.sleep(0.05)
            else:
                self.fail("setup.sh run did not start both: " + text)
            kids = children(p.pid)
            self.assertEqual(len(kids), 2, kids)
            p.send_signal(sig)
            p.wait(60)
            deadline = time.time() + 30
            while time.time() < deadline and any(alive(k) for k in kids):
                time.sleep(0.05)
            self.assertEqual([k for k in kids if alive(k)], [], "left running after %s" % sig)
            return p.returncode
        finally:
            # whatever is left of the script's session, so a failure leaves nothing behind
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if p.poll() is None:
                p.wait()

    def test_sigterm(self):
        self.assertEqual(self.run_and_signal(signal.SIGTERM), 143)

    def test_sigint(self):
        self.assertEqual(self.run_and_signal(signal.SIGINT), 130)

    def test_sighup(self):
        self.assertEqual(self.run_and_signal(signal.SIGHUP), 129)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("postfix") and shutil.which("swaks"),
                     "needs root, Postfix and swaks")
class PostfixQueueIdBothLogs(unittest.TestCase):
    """The acceptance line: grep of a Postfix queue id finds Postfix's line
    and lmtpd's; lmtpd's names the Message-ID, and Postfix's status=sent
    reply names lmtpd's transaction."""

    def setUp(self):
        from test_postfix import Postfix
        self.d = Daemon(extra={"server.xforward_hosts": "local, 127.0.0.1", "server.socket_mode": "0666"},
                        users=["joe@example.org", "ann@example.net"]).start()
        self.pf = Postfix(self.d.sock, self.d.port)

    def tearDown(self):
        self.pf.stop()
        self.d.cleanup()

    def test_grep_queue_id(self):
        from test_postfix import swaks
        for to in ("joe@example.org", "ann@example.net"):  # the UNIX socket and TCP
            p = swaks(self.pf.port, "sender@example.com", to, "trace " + to)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        deadline = time.time() + 60
        sent = []
        while time.time() < deadline and len(sent) < 2:
            sent = re.findall(r"postfix/lmtp\[\d+\]: ([0-9A-F]+): to=<(\S+)>, .*status=sent \(.* id=(\w+)\)",
                              self.pf.maillog())
            time.sleep(0.2)
        self.assertEqual(len(sent), 2, self.pf.maillog())
        for qid, to, txn in sent:
            pf_lines = [l for l in self.pf.maillog().splitlines() if qid in l]
            ours = [l for l in self.d.read_log().splitlines() if qid in l]
            self.assertTrue(pf_lines)
            self.assertEqual(len(ours), 1, self.d.read_log())
            self.assertIn(": %s: from=<sender@example.com> to=<%s>" % (txn, to), ours[0])
            self.assertRegex(ours[0], r" queue_id=%s message_id=<[^>\s]+@[^>\s]+>" % qid)


class ServicesUnit(unittest.TestCase):
    def test_unit_checks_and_reloads_the_documented_default(self):
        with open(os.path.join(TOP, "conf", "systemd", "ocp-services.service")) as f:
            unit = f.read()
        p = subprocess.run([SERVICES, "--help"], capture_output=True, text=True, timeout=30)
        default = re.search(r"default (/\S+)\)", p.stdout).group(1)
        self.assertIn("ExecStartPre=/usr/local/sbin/ocp-services -c %s --check-config" % default, unit)
        self.assertIn("ExecStart=/usr/local/sbin/ocp-services -c %s\n" % default, unit)
        self.assertIn("ExecReload=/bin/kill -HUP $MAINPID", unit)
        with open(os.path.join(TOP, "docs", "man", "ocp-calloutd.8")) as f:
            self.assertIn(default, f.read())


DELIVER = os.path.join(os.path.dirname(LMTPD), "..", "deliver", "deliver")


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "runs deliver as another user")
class DeliverAsMailboxCommand(unittest.TestCase):
    """docs/postfix.md's deliver.conf for mailbox_command: Postfix runs the
    command as the recipient, with HOME set; nothing in it may need root
    or the vmail user."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="lda-admin-")
        os.chmod(self.dir, 0o755)
        self.home = os.path.join(self.dir, "home", "nobody")
        os.makedirs(self.home)
        os.chmod(os.path.dirname(self.home), 0o755)
        shutil.chown(self.home, "nobody")
        with open(os.path.join(TOP, "docs", "postfix.md")) as f:
            doc = f.read()
        conf = re.search(r"```ini\n(# /etc/lmtpd/deliver\.conf.*?)```", doc, re.S).group(1)
        self.conf = os.path.join(self.dir, "deliver.conf")
        with open(self.conf, "w") as f:
            f.write(conf.replace("mail_root = /home", "mail_root = " + os.path.dirname(self.home)))
        # the recipient runs the command as Postfix would from /usr/bin: a
        # copy, since the build tree may be one only root can enter (a
        # checkout in a mktemp -d directory is 0700)
        self.deliver = os.path.join(self.dir, "deliver")
        shutil.copy(DELIVER, self.deliver)
        os.chmod(self.deliver, 0o755)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_runs_as_the_recipient(self):
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            "env", "HOME=" + self.home, "USER=nobody",
                            self.deliver, "-c", self.conf, "-f", "s@example.net", "-a", "nobody@mx.example.org"],
                           input=BODY, capture_output=True, timeout=60, cwd="/")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, b"")
        new = os.path.join(self.home, "Maildir", "new")
        (name,) = os.listdir(new)
        with open(os.path.join(new, name), "rb") as f:
            data = f.read()
        self.assertTrue(data.endswith(BODY), data)
        self.assertEqual(os.stat(os.path.join(new, name)).st_uid, pwd_uid("nobody"))
        # -v: the delivery line names the Message-ID, as lmtpd's does
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            "env", "HOME=" + self.home, self.deliver, "-c", self.conf, "-v", "-f", "s@example.net",
                            "-a", "nobody@mx.example.org"], input=BODY, capture_output=True, timeout=60, cwd="/")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stderr, rb"to=<nobody@mx\.example\.org> .*status=250 2\.0\.0 message_id=<trace\.1@example\.net>")


def pwd_uid(name):
    import pwd
    return pwd.getpwnam(name).pw_uid


EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class ReadmeTryIt(unittest.TestCase):
    """The README's try-it address goes through every service of the quick
    start, and GTUBE and EICAR do what the README says."""

    def setUp(self):
        from test_examples import Examples
        self.ex = Examples("test_every_service_starts_and_lmtpd_uses_them")
        self.ex.setUp()
        with open(os.path.join(TOP, "README.md")) as f:
            self.readme = f.read()
        self.addr = re.search(r"swaks --protocol LMTP --server 127\.0\.0\.1:2424 --to (\S+)`", self.readme).group(1)

    def tearDown(self):
        self.ex.tearDown()

    def test_try_it(self):
        from test_delivery import transaction
        import lmtptest
        self.ex.start([SERVICES, "-c", "conf/services.conf.example"], "ocp-services: started")
        text = self.ex.start([LMTPD, "-c", "conf/lmtpd.conf.example", "--listen", "127.0.0.1:0", "-d"], "started")
        d = lmtptest.Daemon.__new__(lmtptest.Daemon)
        d.port = int(re.search(r"listening on inet:127\.0\.0\.1:(\d+)\n", text).group(1))

        def send(rcpt, raw):
            c = lmtptest.Client(d, timeout=60)
            c.reply()
            c.cmd("LHLO x")
            r = transaction(c, [rcpt], raw)
            c.close()
            return r[0]

        local, domain = self.addr.split("@")
        maildir = os.path.join(self.ex.dir, "var", "mail", domain, local, "Maildir")

        def only(folder):
            new = os.path.join(maildir, folder, "new")
            names = sorted(os.listdir(new), key=lambda n: os.stat(os.path.join(new, n)).st_mtime)
            with open(os.path.join(new, names[-1]), "rb") as f:
                return len(names), f.read()

        head = b"From: s@example.net\r\nTo: %s\r\nSubject: %s\r\n" % (self.addr.encode(), b"%s")
        self.assertTrue(send(self.addr, head % b"hello" + b"\r\nhi\r\n").startswith("250"))
        n, data = only("")
        for svc in ("access", "blocking", "normalize", "security", "links", "spam", "logging", "reroute"):
            self.assertRegex(data, (r"urn:x-opes-lmtpd:service:%s ; verdict=(accept|modify)" % svc).encode())
        # GTUBE: junk (tagged, into Junk), as the README says
        self.assertIn("GTUBE", self.readme)
        self.assertTrue(send(self.addr, head % b"gtube" + b"\r\n" + GTUBE + b"\r\n").startswith("250"))
        n, data = only(".Junk")
        self.assertIn(b"X-Spam-Flag: YES", data)
        # EICAR as an attachment: the part is replaced by a notice, the subject tagged
        self.assertIn("EICAR", self.readme)
        mime = (head % b"eicar" + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
                b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
                b"--b\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Disposition: attachment; filename=eicar.com\r\n\r\n" + EICAR + b"\r\n--b--\r\n")
        self.assertTrue(send(self.addr, mime).startswith("250"))
        n, data = only("")
        self.assertNotIn(EICAR, data)
        self.assertIn(b"Subject: [VIRUS] eicar", data)
        # boss@example.org has the reject policy
        self.assertRegex(send("boss@example.org", head % b"gtube" + b"\r\n" + GTUBE + b"\r\n"), r"^550 5\.7\.1")


class PostfixGuideConfigs(unittest.TestCase):
    """docs/postfix.md's lmtpd.conf, users map and services.conf pass
    --check-config (paths moved below a temporary directory, the account
    made one that exists here)."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="guide-")
        os.chmod(self.dir, 0o755)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def place(self, text):
        text = text.replace("/etc/lmtpd/", self.dir + "/etc/lmtpd/").replace("/var/", self.dir + "/var/")
        return text.replace("user = vmail", "user = nobody").replace("socket_owner = postfix:postfix", "")

    def write(self, path, text):
        path = self.dir + path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_guide_configurations_check(self):
        self.write("/etc/lmtpd/users", doc_block("postfix.md", "# /etc/lmtpd/users"))
        for name in ("access.map", "spam.policy"):
            with open(os.path.join(TOP, "conf", "services", name)) as f:
                self.write("/etc/lmtpd/services/" + name, f.read())
        conf = self.write("/etc/lmtpd/lmtpd.conf", self.place(doc_block("postfix.md", "# /etc/lmtpd/lmtpd.conf")))
        p = subprocess.run([LMTPD, "-c", conf, "--check-config"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        svc = self.write("/etc/lmtpd/services.conf",
                         self.place(doc_block("postfix.md", "# /etc/lmtpd/services.conf")))
        p = subprocess.run([SERVICES, "-c", svc, "--check-config"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        # the chrooted lmtp client's private/lmtpd is where lmtpd and its socket unit listen
        self.assertIn("listen = unix:/var/spool/postfix/private/lmtpd;",
                      doc_block("postfix.md", "# /etc/lmtpd/lmtpd.conf"))
        with open(os.path.join(TOP, "conf", "systemd", "lmtpd.socket")) as f:
            self.assertIn("ListenStream=/var/spool/postfix/private/lmtpd\n", f.read())


class UsersMapFields(unittest.TestCase):
    """After the address, a users map line takes its fields in any order;
    a wrong field is named for what it is."""

    def check(self, lines):
        d = Daemon(users=lines)
        try:
            return subprocess.run([LMTPD, "-c", d.conf, "--check-config"], capture_output=True, text=True,
                                  timeout=60, cwd=d.dir)
        finally:
            d.cleanup()

    def test_any_order(self):
        p = self.check(["a@example.org quota=1G example.org/a/Maildir",
                        "b@example.org mbox:b quota=5M", "c@example.org quota_messages=100 maildir:c/Maildir"])
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_errors_name_the_token(self):
        p = self.check(["a@example.org quota=lots"])
        self.assertIn("users:1: 'quota=lots': 'lots' is not a size", p.stderr)
        p = self.check(["a@example.org colour=blue"])
        self.assertIn("users:1: 'colour=': unknown setting", p.stderr)
        p = self.check(["a@example.org x/Maildir quota=1M y/Maildir"])
        self.assertIn("users:1: 'y/Maildir': a second mailbox (the first is 'x/Maildir')", p.stderr)


if __name__ == "__main__":
    main()
