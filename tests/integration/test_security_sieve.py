"""A user's Sieve script against the daemon (issue 13): variables that
double until memory runs out, :matches on megabyte headers and bodies,
editheader on trace fields and on the redirect mark, two users whose
scripts redirect to each other, and strings from the message in the log.
Each ends in a delivery for that recipient (kept when the script fails)
and a server that still serves."""

import os
import socket
import threading
import time
import unittest

from lmtptest import SLOWDOWN, Daemon, dotstuff, main
from test_sieve import SmtpReceiver, session, transaction

DOMAIN = "example.org"
ESC = "\x1b"


class Base(unittest.TestCase):
    extra = {}

    def setUp(self):
        self.smtp = SmtpReceiver()
        extra = {"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port}
        extra.update(self.extra)
        self.d = Daemon(extra)

    def tearDown(self):
        self.d.cleanup()
        self.smtp.close()

    def script(self, local, text):
        return self.d.user_file("%s@%s" % (local, DOMAIN), ".dovecot.sieve", text)

    def deliver(self, rcpt, body, timeout=120):
        """One message to @rcpt; the reply and how long it took."""
        c = self.d.connect(timeout=timeout)
        c.code()
        c.cmd("LHLO client")
        t0 = time.monotonic()
        reply = transaction(c, [rcpt], body)[0]
        took = time.monotonic() - t0
        c.close()
        return reply, took

    def stored(self, local):
        addr = "%s@%s" % (local, DOMAIN)
        return self.d.messages(addr, "new") + self.d.messages(addr, "cur")

    def assert_serving(self):
        n = len(self.stored("plain"))
        reply, _ = self.deliver("plain@" + DOMAIN, "Subject: after\n\nstill here\n")
        self.assertEqual(reply[0], 250)
        self.assertEqual(len(self.stored("plain")), n + 1)

    def user_log(self, local):
        path = os.path.join(self.d.mail, DOMAIN, local, ".dovecot.sieve.log")
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")


class VariableLimits(Base):
    def test_doubling_variable_is_a_runtime_error(self):
        # 32 bytes doubled 40 times would be 32 TB: the run stops at the
        # variable size limit, the message is kept, the daemon lives
        self.script("alice", 'require "variables";\nset "a" "%s";\n' % ("x" * 32)
                    + 'set "a" "${a}${a}";\n' * 40 + 'discard;\n')
        self.d.start()
        reply, _ = self.deliver("alice@" + DOMAIN, "Subject: hi\n\nbody\n")
        self.assertEqual(reply[0], 250)
        self.assertEqual(len(self.stored("alice")), 1)
        self.assertIn("variable", self.user_log("alice"))
        self.assertIn("message kept in INBOX", self.user_log("alice"))
        self.assert_serving()

    def test_wide_expansion_is_a_runtime_error(self):
        # one string that names a 4 KB variable thousands of times: the
        # memory of a run is bounded, not only each variable
        self.script("alice", 'require "variables";\nset "a" "%s";\n' % ("x" * 4000)
                    + 'set "b" "%s";\n' % ("${a}" * 5000) + 'discard;\n')
        self.d.start()
        reply, _ = self.deliver("alice@" + DOMAIN, "Subject: hi\n\nbody\n")
        self.assertEqual(reply[0], 250)
        self.assertEqual(len(self.stored("alice")), 1)
        self.assertIn("message kept in INBOX", self.user_log("alice"))
        self.assert_serving()


class MatchesTime(Base):
    extra = {"sieve.max_run_time": "1"}

    def test_matches_on_huge_folded_subject_is_bounded(self):
        self.script("alice", 'if header :matches "Subject" "*viagra*" { discard; }\n')
        self.d.start()
        subject = "Subject: start\n" + "".join(" %s\n" % ("y" * 69) for _ in range(30000))
        reply, took = self.deliver("alice@" + DOMAIN, subject + "\nbody\n")
        self.assertEqual(reply[0], 250)
        # 36 s before; bounded by the run time limit and parsing, with room
        # for a loaded machine
        self.assertLess(took, 20 * SLOWDOWN)
        self.assertEqual(len(self.stored("alice")), 1)
        self.assert_serving()

    def test_matches_on_megabyte_body_is_bounded(self):
        self.script("alice", 'require "body";\nif body :matches "*viagra*x" { discard; }\n')
        self.d.start()
        body = ("z" * 99 + "\n") * 10000
        reply, took = self.deliver("alice@" + DOMAIN, "Subject: big\n\n" + body)
        self.assertEqual(reply[0], 250)
        self.assertLess(took, 20 * SLOWDOWN)
        self.assertEqual(len(self.stored("alice")), 1)
        self.assert_serving()

    def test_matches_still_finds_and_captures(self):
        self.script("alice", 'require ["variables", "fileinto"];\n'
                    'if header :matches "Subject" "* viagra *" { fileinto "Junk-${1}-${2}"; }\n')
        self.d.start()
        reply, _ = self.deliver("alice@" + DOMAIN, "Subject: cheap viagra now\n\nbody\n")
        self.assertEqual(reply[0], 250)
        self.assertEqual(len(self.d.messages("alice@" + DOMAIN, "new", ".Junk-cheap-now")), 1)


class EditheaderTrace(Base):
    def test_trace_fields_cannot_be_forged_or_removed(self):
        self.script("alice", 'require "editheader";\n'
                    'addheader "Return-Path" "<forged@evil.example>";\n'
                    'addheader "Delivered-To" "forged@evil.example";\n'
                    'addheader "received" "from forged";\n'
                    'deleteheader "Delivered-To";\ndeleteheader "RETURN-PATH";\n'
                    'deleteheader "X-Sieve-Redirected-From";\n'
                    'addheader "X-Sieve-Redirected-From" "forged@evil.example";\n'
                    'addheader "X-Ok" "yes";\n')
        self.d.start()
        msg = "X-Sieve-Redirected-From: someone@else.example\nSubject: hi\n\nbody\n"
        reply, _ = self.deliver("alice@" + DOMAIN, msg)
        self.assertEqual(reply[0], 250)
        [(_, data)] = self.stored("alice")
        header = data.split(b"\n\n", 1)[0]
        self.assertNotIn(b"forged", header)
        self.assertTrue(header.startswith(b"X-Ok: yes\nReturn-Path: <s@example.net>\n"), header)
        self.assertEqual(header.count(b"\nDelivered-To: alice@example.org\n"), 1)
        self.assertIn(b"\nX-Sieve-Redirected-From: someone@else.example\n", header)


class Relay(SmtpReceiver):
    """Submission that hands each message back to lmtpd, as an MTA would
    deliver a redirect to a local user; stops after @limit."""

    def __init__(self, limit=20):
        super().__init__()
        self.limit = limit
        self.port_lmtp = None

    def relay(self, stop):
        done = 0
        while not stop.is_set() and done < self.limit:
            with self.lock:
                todo = self.received[done:]
            for sender, rcpts, data in todo:
                c = socket.create_connection(("127.0.0.1", self.port_lmtp), timeout=60)
                f = c.makefile("rb")
                f.readline()
                c.sendall(b"LHLO relay\r\n")
                while f.readline()[3:4] == b"-":
                    pass
                c.sendall(("MAIL FROM:<%s>\r\n" % sender + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts)
                           + "DATA\r\n").encode())
                for _ in range(len(rcpts) + 2):
                    f.readline()
                c.sendall(dotstuff(data.replace(b"\r\n", b"\n")))
                for _ in rcpts:
                    f.readline()
                c.close()
                done += 1
            time.sleep(0.05)


class RedirectLoop(Base):
    def setUp(self):
        self.smtp = Relay()
        self.d = Daemon({"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port})

    def test_scripts_that_redirect_to_each_other(self):
        for me, other in (("alice", "bob"), ("bob", "alice")):
            self.script(me, 'require ["editheader"];\ndeleteheader "X-Sieve-Redirected-From";\n'
                        'deleteheader "Delivered-To";\nredirect "%s@%s";\n' % (other, DOMAIN))
        self.d.start()
        self.smtp.port_lmtp = self.d.port
        stop = threading.Event()
        t = threading.Thread(target=self.smtp.relay, args=(stop,), daemon=True)
        t.start()
        try:
            reply, _ = self.deliver("alice@" + DOMAIN, "Subject: ping\nMessage-ID: <p@x>\n\nping\n")
            self.assertEqual(reply[0], 250)
            # the loop ends with the message kept by one of them
            deadline = time.time() + 60
            while time.time() < deadline and not (self.stored("alice") or self.stored("bob")):
                time.sleep(0.1)
            time.sleep(1)
        finally:
            stop.set()
            t.join(90)
        sent = len(self.smtp.received)
        self.assertLessEqual(sent, 2, "redirected %d times" % sent)
        self.assertEqual(len(self.stored("alice")) + len(self.stored("bob")), 1)
        self.assertIn("would loop", self.d.read_log())


class DeliveredToChain(Base):
    def test_delivered_here_before_is_not_redirected(self):
        # no redirect mark, but the delivered-to chain names alice: the
        # message was delivered to her before, so her redirect would loop
        self.script("alice", 'redirect "bob@%s";\n' % DOMAIN)
        self.d.start()
        msg = "Delivered-To: alice@example.org\nSubject: again\n\nbody\n"
        reply, _ = self.deliver("alice@" + DOMAIN, msg)
        self.assertEqual(reply[0], 250)
        self.assertEqual(len(self.stored("alice")), 1)
        time.sleep(0.5)
        self.assertEqual(self.smtp.received, [])
        self.assertIn("would loop", self.d.read_log())


class LogInjection(Base):
    def test_fileinto_name_from_header_is_sanitised(self):
        self.script("alice", 'require ["fileinto", "variables"];\n'
                    'if header :matches "Subject" "*" { fileinto "${1}"; }\n')
        self.d.start()
        # RFC 2047: an encoded LF and ESC decode into the folder name
        msg = "Subject: =?utf-8?q?a=0A2026-01-01T00:00:00.000_lmtpd[1]:_FORGED=1B[31m?=\n\nbody\n"
        reply, _ = self.deliver("alice@" + DOMAIN, msg)
        self.assertEqual(reply[0], 250)
        self.assertEqual(len(self.stored("alice")), 1)
        log = self.d.read_log()
        self.assertIn("FORGED", log)
        self.assertNotIn(ESC, log)
        self.assertNotRegex(log, r"(?m)^2026-01-01T00:00:00.000 lmtpd\[1\]")

    def test_runtime_error_text_from_header_is_sanitised(self):
        self.script("alice", 'require "variables";\n'
                    'if header :matches "Subject" "*" { redirect "${1}"; }\n')
        self.d.start()
        msg = "Subject: =?utf-8?q?x=0Almtpd[1]:_FORGED=1B[31m@y.example?=\n\nbody\n"
        reply, _ = self.deliver("alice@" + DOMAIN, msg)
        self.assertEqual(reply[0], 250)
        self.assertEqual(len(self.stored("alice")), 1)
        for log in (self.d.read_log(), self.user_log("alice")):
            self.assertIn("FORGED", log)
            self.assertNotIn(ESC, log)
            self.assertNotRegex(log, r"(?m)^lmtpd\[1\]")


if __name__ == "__main__":
    main()
