"""Postfix sees lmtpd's users (issue 16): [server] socketmap_listen and
policy_listen answer from the same resolution as lmtpd's RCPT.

- on the wire: socketmap netstrings (maps mailbox and alias; known, alias,
  disabled, unknown users; several requests on one connection, pipelined;
  malformed and oversized requests answered PERM and closed) and policy
  requests (550 for unknown and disabled, 552 for a size over quota, DUNNO
  for the rest and for other protocol states; bad lines close);
- a lookup connection left half sent does not hold up LMTP (worker threads);
  a request must be complete 10 s after its first byte; past 64
  connections one more is closed at once; a reload keeps the listeners;
- end to end through a private Postfix (as test_postfix.py starts one):
  virtual_mailbox_maps = socketmap:unix:...:mailbox and
  check_policy_service inet:...: an unknown user is refused at SMTP RCPT
  and nothing bounces, an over-quota user gets 552 at RCPT when the client
  gives SIZE, a known user and an alias are delivered to the Maildir.
  Needs root (Postfix's master)."""

import os
import re
import smtplib
import socket
import subprocess
import time
import unittest

from lmtptest import Daemon, main
from test_postfix import ROOT, Postfix

USERS = ["joe@example.org", "ann@example.org alias=joe@example.org", "off@example.org disabled=yes",
         "full@example.org quota=200", "bob@example.org"]


def netstring(s):
    b = s.encode() if isinstance(s, str) else s
    return b"%d:%s," % (len(b), b)


def read_netstring(sock):
    data = b""
    while b":" not in data:
        c = sock.recv(1)
        if not c:
            return None
        data += c
    n = int(data[:-1])
    body = b""
    while len(body) < n + 1:
        c = sock.recv(n + 1 - len(body))
        if not c:
            return None
        body += c
    assert body[-1:] == b",", body
    return body[:-1].decode()


def closed(sock, timeout=5):
    sock.settimeout(timeout)
    try:
        while True:
            if sock.recv(4096) == b"":
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def policy_request(**attrs):
    attrs.setdefault("request", "smtpd_access_policy")
    return "".join("%s=%s\n" % kv for kv in attrs.items()).encode() + b"\n"


def read_policy(sock):
    data = b""
    while not data.endswith(b"\n\n"):
        c = sock.recv(4096)
        if not c:
            return None
        data += c
    return data.decode()


def port_of(log, what):
    m = re.search(r"%s on inet:127\.0\.0\.1:(\d+)" % what, log)
    return int(m.group(1))


class Wire(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(users=USERS, extra={"server.socketmap_listen": "unix:run/socketmap",
                                            "server.policy_listen": "inet:127.0.0.1:0"})
        self.d.start()
        self.map_path = os.path.join(self.d.dir, "run", "socketmap")
        self.policy_port = port_of(self.d.read_log(), "policy service")

    def tearDown(self):
        self.d.cleanup()

    def socketmap(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.map_path)  # blocking: waits for room in the listen backlog
        s.settimeout(10)
        return s

    def policy(self):
        return socket.create_connection(("127.0.0.1", self.policy_port), timeout=10)

    def test_socketmap_answers(self):
        with self.socketmap() as s:
            def ask(req):
                s.sendall(netstring(req))
                return read_netstring(s)
            joe = ask("mailbox joe@example.org")
            self.assertTrue(joe.startswith("OK "), joe)
            self.assertTrue(joe.endswith("example.org/joe/Maildir"), joe)
            self.assertEqual(ask("mailbox JOE@Example.ORG"), joe)
            self.assertEqual(ask("mailbox ann@example.org"), joe)          # the alias' target's mailbox
            self.assertEqual(ask("alias ann@example.org"), "OK joe@example.org")
            self.assertEqual(ask("alias joe@example.org"), "OK joe@example.org")
            self.assertEqual(ask("mailbox off@example.org"), "NOTFOUND ")  # disabled: 550 at RCPT
            self.assertEqual(ask("mailbox nobody@example.org"), "NOTFOUND ")
            self.assertEqual(ask("mailbox @example.org"), "NOTFOUND ")     # Postfix's domain-wide probe
            self.assertEqual(ask("mailbox joe"), "NOTFOUND ")
            self.assertTrue(ask("users joe@example.org").startswith("PERM "))
            self.assertTrue(ask("mailbox").startswith("PERM "))
            # pipelined: two requests in one write, two answers in order
            s.sendall(netstring("mailbox nobody@example.org") + netstring("alias ann@example.org"))
            self.assertEqual(read_netstring(s), "NOTFOUND ")
            self.assertEqual(read_netstring(s), "OK joe@example.org")

    def test_socketmap_malformed_and_oversized(self):
        for bad in (b"abc", b"5:mailbox joe,", b"03:abc,", b"-1:,", b"100001:" + b"x" * 1000):
            with self.socketmap() as s:
                s.sendall(bad)
                reply = read_netstring(s)
                self.assertTrue(reply is not None and reply.startswith("PERM "), (bad, reply))
                self.assertTrue(closed(s), bad)
        # the largest request Postfix may send is read and answered
        with self.socketmap() as s:
            s.sendall(netstring("mailbox " + "x" * 99000 + "@example.org"))
            self.assertEqual(read_netstring(s), "NOTFOUND ")
        self.assertIsNone(self.d.proc.poll())

    def test_policy_answers(self):
        with self.policy() as s:
            def ask(**attrs):
                s.sendall(policy_request(**attrs))
                return read_policy(s)
            self.assertEqual(ask(protocol_state="RCPT", recipient="joe@example.org", size="100"),
                             "action=DUNNO\n\n")
            self.assertEqual(ask(protocol_state="RCPT", recipient="nobody@example.org"),
                             "action=550 5.1.1 <nobody@example.org> User doesn't exist\n\n")
            self.assertRegex(ask(protocol_state="RCPT", recipient="off@example.org"),
                             r"^action=550 5\.2\.1 <off@example\.org> Mailbox disabled")
            self.assertEqual(ask(protocol_state="RCPT", recipient="full@example.org", size="5000"),
                             "action=552 5.2.2 <full@example.org> Mailbox is full\n\n")
            self.assertEqual(ask(protocol_state="RCPT", recipient="full@example.org", size="0"), "action=DUNNO\n\n")
            self.assertEqual(ask(protocol_state="RCPT", recipient="ann@example.org", size="10"), "action=DUNNO\n\n")
            self.assertEqual(ask(protocol_state="DATA", recipient="nobody@example.org"), "action=DUNNO\n\n")
            self.assertEqual(ask(protocol_state="RCPT", recipient=""), "action=DUNNO\n\n")
        # quota_full_tempfail: 452 (a reload applies it); the listeners
        # themselves need a restart (the old one keeps serving)
        self.d.extra["delivery.quota_full_tempfail"] = "true"
        self.d.extra["server.socketmap_listen"] = "unix:run/socketmap2"
        self.d.write_config()
        self.d.signal(1)
        deadline = time.time() + 10
        while "configuration reloaded" not in self.d.read_log() and time.time() < deadline:
            time.sleep(0.05)
        with self.policy() as s:
            s.sendall(policy_request(protocol_state="RCPT", recipient="full@example.org", size="5000"))
            self.assertEqual(read_policy(s), "action=452 4.2.2 <full@example.org> Mailbox is full\n\n")
        self.assertRegex(self.d.read_log(), r"reload: \[server\] socketmap_listen changed \(unix:run/socketmap -> "
                                            r"unix:run/socketmap2\): not applied, it needs a restart")
        with self.socketmap() as s:
            s.sendall(netstring("alias ann@example.org"))
            self.assertEqual(read_netstring(s), "OK joe@example.org")

    def test_policy_malformed_and_oversized(self):
        for bad in (b"no equals sign\n\n", b"=x\n\n", b"recipient=" + b"x" * 5000 + b"\n\n",
                    b"a=b\n" * 300 + b"\n", b"x" * 8000):
            with self.policy() as s:
                s.sendall(bad)
                self.assertTrue(closed(s), bad[:40])
        self.assertIsNone(self.d.proc.poll())

    def test_request_timeout(self):
        # a request must be complete 10 s after its first byte, however slowly
        # the bytes trickle in
        with self.policy() as s, self.socketmap() as m:
            start = time.time()
            s.sendall(b"protocol_state=RCPT\n")
            m.sendall(b"30:mailbox ")
            for _ in range(12):
                time.sleep(1)
                try:
                    s.sendall(b"x")
                    m.sendall(b"x")
                except OSError:
                    break
            self.assertTrue(closed(s, timeout=3))
            self.assertTrue(closed(m, timeout=3))
            self.assertLess(time.time() - start, 14)

    def test_split_request_after_idle(self):
        # the 10 s of a request start at its first byte, not before the idle
        # wait: a request split in two after a long idle is answered
        with self.policy() as s:
            time.sleep(11)
            s.sendall(b"protocol_state=RCPT\n")
            time.sleep(0.5)
            s.sendall(b"recipient=nobody@example.org\n\n")
            self.assertEqual(read_policy(s), "action=550 5.1.1 <nobody@example.org> User doesn't exist\n\n")

    def test_connection_limit(self):
        # 64 connections are served; one more is closed at once, and a
        # place freed is taken again
        held = [self.socketmap() for _ in range(64)]
        try:
            for s in held[::16]:
                s.sendall(netstring("alias ann@example.org"))
                self.assertEqual(read_netstring(s), "OK joe@example.org")
            with self.socketmap() as extra:
                self.assertTrue(closed(extra))
            held.pop().close()
            deadline = time.time() + 5
            while True:
                try:
                    with self.socketmap() as s:
                        s.sendall(netstring("alias ann@example.org"))
                        reply = read_netstring(s)
                except (ConnectionResetError, BrokenPipeError):
                    reply = None  # the place is not free yet
                if reply is not None or time.time() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(reply, "OK joe@example.org")
        finally:
            for s in held:
                s.close()
        self.assertIn("socketmap: 64 connections open: refusing another", self.d.read_log())

    def test_lookups_do_not_hold_up_lmtp(self):
        # half a request on each: their threads wait, the main loop does not
        with self.policy() as p, self.socketmap() as m:
            p.sendall(b"protocol_state=RCPT\n")
            m.sendall(b"30:mailbox jo")
            c = self.d.connect(timeout=5)
            self.assertEqual(c.code(), 220)
            self.assertTrue(c.cmd("LHLO x").startswith("250"))
            self.assertTrue(c.cmd("MAIL FROM:<a@b.org>").startswith("250"))
            self.assertTrue(c.cmd("RCPT TO:<nobody@example.org>").startswith("550 5.1.1"))
            c.close()


@unittest.skipUnless(ROOT, "Postfix's master needs root")
class PostfixRefusesAtRcpt(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(users=USERS, extra={"server.socketmap_listen": "unix:run/socketmap",
                                            "server.policy_listen": "inet:127.0.0.1:0",
                                            "server.socket_mode": "0666"})
        self.d.start()
        policy_port = port_of(self.d.read_log(), "policy service")
        # the lines of docs/postfix.md, "One list of users"
        self.pf = Postfix(self.d.sock, self.d.port, settings=[
            "virtual_mailbox_maps = socketmap:unix:%s:mailbox" % os.path.join(self.d.dir, "run", "socketmap"),
            "smtpd_reject_unlisted_recipient = yes",
            "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, "
            "check_policy_service inet:127.0.0.1:%d" % policy_port,
            # the test's client must not be a trusted one, which skips the checks
            "mynetworks = 192.0.2.1/32"])

    def tearDown(self):
        if os.environ.get("KEEP_POSTFIX"):
            print("# postfix log:\n" + self.pf.maillog()[-3000:])
        self.pf.stop()
        self.d.cleanup()

    def wait_for(self, what, cond, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.2)
        self.fail("%s; postfix log:\n%s\nlmtpd log:\n%s" % (what, self.pf.maillog()[-4000:],
                                                           self.d.read_log()[-4000:]))

    def rcpt(self, to, size):
        with smtplib.SMTP("127.0.0.1", self.pf.port, timeout=30) as s:
            s.ehlo("client.test")
            self.assertEqual(s.mail("bob@example.org", ["SIZE=%d" % size])[0], 250)
            return s.rcpt(to)

    def test_unknown_refused_at_rcpt_quota_and_delivery(self):
        # unknown and disabled: 550 at RCPT, lmtpd's own reply through the
        # policy service (it comes before Postfix's unlisted-recipient check)
        code, text = self.rcpt("nobody@example.org", 300)
        self.assertEqual((code, text), (550, b"5.1.1 <nobody@example.org>: Recipient address rejected: "
                                             b"<nobody@example.org> User doesn't exist"))
        code, text = self.rcpt("off@example.org", 300)
        self.assertEqual(code, 550, text)
        self.assertIn(b"5.2.1", text)
        # over quota for the announced size: 552 at RCPT (the policy service)
        code, text = self.rcpt("full@example.org", 5000)
        self.assertEqual(code, 552, text)
        self.assertIn(b"Mailbox is full", text)
        # a whole transaction: the known user and the alias delivered, the
        # unknown one refused in the dialog
        msg = b"From: bob@example.org\r\nTo: joe@example.org\r\nSubject: maps\r\n\r\nhello\r\n"
        with smtplib.SMTP("127.0.0.1", self.pf.port, timeout=30) as s:
            s.ehlo("client.test")
            refused = s.sendmail("bob@example.org", ["joe@example.org", "ann@example.org", "nobody@example.org"], msg)
        self.assertEqual(list(refused), ["nobody@example.org"])
        self.assertEqual(refused["nobody@example.org"][0], 550)
        # joe and ann (his alias) came in one LMTP transaction: one copy
        self.wait_for("one copy in joe's Maildir", lambda: len(self.d.messages("joe@example.org")) == 1)
        self.assertTrue(all(b"Subject: maps" in m for _, m in self.d.messages("joe@example.org")))
        self.wait_for("an empty queue", lambda: self.pf.queue() == [])
        # no bounce anywhere: not in the sender's Maildir, not in the log
        time.sleep(1)
        self.assertEqual(self.d.messages("bob@example.org"), [])
        log = self.pf.maillog()
        self.assertNotIn("status=bounced", log)
        self.assertRegex(log, r"NOQUEUE: reject: RCPT from \S+: 550 5\.1\.1 <nobody@example\.org>")
        self.assertRegex(log, r"NOQUEUE: reject: RCPT from \S+: 552 5\.2\.2 <full@example\.org>")
        self.assertNotIn("rejected at RCPT", self.d.read_log())   # lmtpd never saw the unknown one

    def test_socketmap_alone(self):
        # without the policy service, virtual_mailbox_maps (the socketmap)
        # refuses unknown and disabled users and lets the others through
        self.pf.postconf("-e", "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination")
        subprocess.run(["postfix", "-c", self.pf.etc, "reload"], check=True, capture_output=True)
        deadline = time.time() + 20
        while True:
            code, text = self.rcpt("nobody@example.org", 300)
            if b"virtual mailbox table" in text or time.time() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(code, 550, text)
        self.assertIn(b"5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
                      text)
        code, text = self.rcpt("off@example.org", 300)
        self.assertEqual(code, 550, text)
        self.assertIn(b"User unknown in virtual mailbox table", text)
        self.assertEqual(self.rcpt("ann@example.org", 300)[0], 250)
        self.assertEqual(self.rcpt("full@example.org", 5000)[0], 250)   # the quota is the policy service's
        self.assertNotRegex(self.pf.maillog(), r"(warning|error):.*(socketmap|policy)")


if __name__ == "__main__":
    main()
