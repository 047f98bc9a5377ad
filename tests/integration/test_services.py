"""The RFC 4496 services of ocp-services, through lmtpd."""

import json
import os
import re
import unittest

from lmtptest import Daemon, Services, dotstuff, main
from test_delivery import transaction

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

CONF = """
[service log]
module = logging
listen = inet:127.0.0.1:0
log = @DIR@/mail.jsonl

[service access]
module = access
listen = inet:127.0.0.1:0
map = @DIR@/access.map

[service block]
module = blocking
listen = inet:127.0.0.1:0
deny_senders = *@spammer.example
subject_keywords = viagra;casino
action = reject 550 5.7.1 Blocked by content policy

[service reroute]
module = reroute
listen = inet:127.0.0.1:0
map = @DIR@/directory.map

[service spam]
module = spam
listen = inet:127.0.0.1:0
backend = builtin
threshold = 5
actions = junk
policy = @DIR@/spam.policy
"""

FILES = {
    "access.map": "client 192.0.2.0/24 reject 554 5.7.1 Your network is not welcome\n"
                  "from *@denied.example reject 550 5.7.1 Sender refused by access policy\n"
                  "rcpt closed@example.org tempfail 450 4.7.1 Mailbox closed for now\n",
    "directory.map": "joe@example.org -> joe@fr.example.org\n",
    "spam.policy": "boss@example.org 5 reject 550 5.7.1 Spam refused\n",
}


def service(name, endpoint, stage="data"):
    return {"service %s.servers" % name: endpoint, "service %s.stage" % name: stage,
            "service %s.timeout" % name: "5s"}


class RFC4496(unittest.TestCase):
    def setUp(self):
        self.s = Services(CONF, FILES)
        extra = {}
        extra.update(service("access", self.s.endpoint("access"), "rcpt"))
        extra.update(service("block", self.s.endpoint("block")))
        extra.update(service("spam", self.s.endpoint("spam")))
        extra.update(service("log", self.s.endpoint("log")))
        extra.update(service("reroute", self.s.endpoint("reroute")))
        extra.update({
            "rule dir.match": "joe@example.org", "rule dir.services": "reroute",
            "rule boss.match": "boss@example.org", "rule boss.services": "access;block;spam;log",
            "rule all.match": "*", "rule all.services": "access;block;spam;log",
        })
        self.d = Daemon(extra=extra).start()

    def tearDown(self):
        self.d.cleanup()
        self.s.stop()

    def session(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        return c

    def test_spam_per_recipient_policy_in_one_transaction(self):
        body = b"Subject: offer\r\nFrom: s@example.net\r\n\r\n" + GTUBE + b"\r\n"
        r = transaction(self.session(), ["ann@example.org", "boss@example.org"], body)
        self.assertTrue(r[0].startswith("250"), r)
        self.assertRegex(r[1], r"^550 5\.7\.1 <boss@example\.org> Spam refused \(OPES ")
        (name, data), = self.d.messages("ann@example.org", folder=".Junk")
        self.assertIn(b"\nSubject: [SPAM] offer\n", data)
        self.assertRegex(data, rb"\nX-Spam-Score: 100\d\.\d\n")
        self.assertIn(b"\nX-Spam-Flag: YES\n", data)
        self.assertEqual(self.d.messages("boss@example.org"), [])
        # and clean mail is just scored
        r = transaction(self.session(), ["ann@example.org"], b"Subject: hi\r\nFrom: s@example.net\r\n\r\nhello\r\n")
        (name, data), = self.d.messages("ann@example.org")
        self.assertIn(b"X-Spam-Status: No, score=0.0", data)

    def test_logging_never_gets_the_body(self):
        transaction(self.session(), ["ann@example.org"], b"Subject: hi\r\nFrom: s@example.net\r\n\r\nsecret body\r\n")
        with open(self.s.path("mail.jsonl")) as f:
            lines = [json.loads(l) for l in f]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["to"], ["ann@example.org"])
        self.assertEqual(lines[0]["from"], "s@example.net")
        self.assertEqual(lines[0]["client"], "127.0.0.1")
        self.assertFalse(lines[0]["had_header"])
        self.assertFalse(lines[0]["had_body"])
        self.assertRegex(lines[0]["verdicts"], r"urn:x-opes-lmtpd:service:spam=\w+")

    def test_access_control_at_rcpt(self):
        c = self.session()
        self.assertTrue(c.cmd("MAIL FROM:<x@denied.example>").startswith("250"))
        self.assertRegex(c.cmd("RCPT TO:<ann@example.org>"), r"^550 5\.7\.1 <ann@example\.org> Sender refused")
        c.cmd("RSET")
        c.cmd("MAIL FROM:<x@fine.example>")
        self.assertRegex(c.cmd("RCPT TO:<closed@example.org>"), r"^450 4\.7\.1 ")
        self.assertTrue(c.cmd("RCPT TO:<ann@example.org>").startswith("250"))

    def test_blocking(self):
        c = self.session()
        r = transaction(c, ["ann@example.org"], b"Subject: Cheap CASINO chips\r\nFrom: s@example.net\r\n\r\nx\r\n")
        self.assertRegex(r[0], r"^550 5\.7\.1 <ann@example\.org> Blocked by content policy")
        r = transaction(c, ["ann@example.org"], b"Subject: hi\r\n\r\nx\r\n", sender="bad@spammer.example")
        self.assertRegex(r[0], r"^550 5\.7\.1 ")
        self.assertEqual(self.d.messages("ann@example.org"), [])

    def test_reroute_fixes_headers(self):
        r = transaction(self.session(), ["joe@example.org"],
                        b"To: Joe <joe@example.org>, ann@example.org\r\nSubject: hi\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = self.d.messages("joe@fr.example.org")
        self.assertIn(b"X-Original-To: joe@example.org\n", data)
        self.assertRegex(data, rb"\nTo: Joe <joe@fr\.example\.org>, ann@example\.org\n")
        self.assertEqual(self.d.messages("joe@example.org"), [])


if __name__ == "__main__":
    main()
