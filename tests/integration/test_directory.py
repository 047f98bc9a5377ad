"""The user directory with the embedded file backend: the users map is read
again when it changes, without a reload, and a map that stops loading keeps
the last good one; what a lookup says (lmtpd --lookup)."""

import os
import re
import subprocess
import time
import unittest

from lmtptest import GTUBE, LMTPD, Daemon, Services, dotstuff, main, metrics_text, own

BODY = b"From: s@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"


class FileBackend(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(users=["joe@example.org"], extra={"server.metrics_listen": "inet:127.0.0.1:0"}).start()

    def tearDown(self):
        self.d.cleanup()

    def rcpt(self, address):
        c = self.d.connect()
        self.assertEqual(c.code(), 220)
        c.cmd("LHLO client.test")
        c.cmd("MAIL FROM:<s@example.net>")
        reply = c.cmd("RCPT TO:<%s>" % address)
        return c, reply

    def deliver(self, address):
        c, reply = self.rcpt(address)
        self.assertTrue(reply.startswith("250"), reply)
        self.assertTrue(c.cmd("DATA").startswith("354"))
        c.send(dotstuff(BODY))
        self.assertTrue(c.text().startswith("250 2.0.0"))

    def rewrite_map(self, lines):
        # a new inode, as editors and config management write files; the
        # check looks at most once a second
        time.sleep(1.1)
        path = os.path.join(self.d.dir, "users")
        with open(path + ".new", "w") as f:
            f.write("".join(l + "\n" for l in lines))
        os.rename(path + ".new", path)

    def test_user_added_gets_mail_without_reload(self):
        c, reply = self.rcpt("ann@example.org")
        self.assertTrue(reply.startswith("550 5.1.1"), reply)
        self.rewrite_map(["joe@example.org", "ann@example.org"])
        self.deliver("ann@example.org")
        self.assertEqual(len(self.d.messages("ann@example.org")), 1)
        self.assertIn("read again: 2 users", self.d.read_log())

    def test_user_removed_is_refused_without_reload(self):
        self.deliver("joe@example.org")
        self.rewrite_map(["ann@example.org"])
        c, reply = self.rcpt("joe@example.org")
        self.assertTrue(reply.startswith("550 5.1.1"), reply)

    def test_lookups_are_counted(self):
        self.deliver("joe@example.org")
        self.rcpt("nobody@example.org")
        text = metrics_text(self.d)
        all_ = re.search(r'lmtpd_directory_lookups_total\{backend="file",result="all"\} (\d+)', text)
        self.assertIsNotNone(all_, text)
        # one lookup per recipient, though resolving asks up to three times
        # (a server backend without a cache would pay each)
        self.assertEqual(int(all_.group(1)), 2)
        self.assertIn('lmtpd_directory_lookups_total{backend="file",result="failed"} 0', text)
        self.assertIn('lmtpd_directory_lookup_seconds_bucket{backend="file",le="+Inf"}', text)

    def test_broken_map_keeps_the_last_good_one(self):
        self.rewrite_map(["joe@example.org quota=lots", "ann@example.org"])
        self.deliver("joe@example.org")
        c, reply = self.rcpt("ann@example.org")
        self.assertTrue(reply.startswith("550 5.1.1"), reply)
        log = self.d.read_log()
        self.assertIn("does not load, keeping the last good one", log)
        self.assertIn("'lots' is not a size", log)


SPAM_CONF = """[service spam]
module = spam
listen = inet:127.0.0.1:0
backend = builtin
threshold = 5
actions = junk
"""


class UserFields(unittest.TestCase):
    """What the users map says of a user beyond its mailbox: an alias, a
    disabled account, its own Sieve script, and settings that reach the
    callout services in the call (Recipient-Data)."""

    def setUp(self):
        self.sv = Services(SPAM_CONF)
        self.addCleanup(self.sv.stop)
        users = ["joe@example.org",
                 "ann@example.org setting=Spam-Threshold:2000",
                 "info@example.org alias=joe@example.org",
                 "gone@example.org disabled=yes",
                 "sue@example.org sieve=scripts/sue.sieve"]
        self.d = Daemon(users=users, extra={"service spam.servers": self.sv.endpoint("spam"),
                                            "service spam.timeout": "30s", "rule all.match": "*",
                                            "rule all.services": "spam"})
        os.makedirs(os.path.join(self.d.mail, "scripts"))
        with open(os.path.join(self.d.mail, "scripts", "sue.sieve"), "w") as f:
            f.write('require "fileinto";\nfileinto "FromScript";\n')
        own(self.d.mail)
        self.d.start()
        self.addCleanup(self.d.cleanup)

    def send(self, rcpts, body=BODY):
        c = self.d.connect(timeout=60)
        c.reply()
        c.cmd("LHLO x")
        c.cmd("MAIL FROM:<s@example.net>")
        accepted = []
        replies = {}
        for r in rcpts:
            reply = c.cmd("RCPT TO:<%s>" % r)
            replies[r] = reply
            if reply.startswith("250"):
                accepted.append(r)
        if accepted:
            self.assertTrue(c.cmd("DATA").startswith("354"))
            c.send(dotstuff(body))
            for r in accepted:
                replies[r] = c.text()
        return replies

    def test_alias_and_disabled(self):
        r = self.send(["info@example.org", "gone@example.org"])
        self.assertTrue(r["info@example.org"].startswith("250 2.0.0"), r)
        self.assertTrue(r["gone@example.org"].startswith("550 5.2.1"), r)
        self.assertEqual(len(self.d.messages("joe@example.org")), 1)
        self.assertFalse(os.path.exists(self.d.maildir("info@example.org")))

    def test_alias_and_its_target_in_one_transaction_stored_once(self):
        for i in range(5):
            # a different message each time (the same one again would be a
            # duplicate for the journal)
            r = self.send(["info@example.org", "joe@example.org"], BODY + b"round %d\r\n" % i)
            self.assertTrue(all(v.startswith("250 2.0.0") for v in r.values()), r)
        # five transactions, one copy each, whatever order the threads ran in
        self.assertEqual(len(self.d.messages("joe@example.org")), 5)

    def test_own_sieve_script(self):
        r = self.send(["sue@example.org"])
        self.assertTrue(r["sue@example.org"].startswith("250 2.0.0"), r)
        self.assertEqual(len(self.d.messages("sue@example.org", folder=".FromScript")), 1)

    def test_settings_reach_the_service(self):
        body = BODY + GTUBE + b"\r\n"
        r = self.send(["joe@example.org", "ann@example.org"], body)
        self.assertTrue(all(v.startswith("250 2.0.0") for v in r.values()), r)
        # joe has the service's threshold (5): Junk; ann's own (2000) keeps it
        self.assertEqual(len(self.d.messages("joe@example.org", folder=".Junk")), 1)
        self.assertEqual(len(self.d.messages("ann@example.org")), 1)
        self.assertEqual(len(self.d.messages("ann@example.org", folder=".Junk")), 0)


class Lookup(unittest.TestCase):
    """lmtpd --lookup ADDRESS: what RCPT would answer and what delivery
    would use, with an exit code for scripts."""

    def setUp(self):
        self.d = Daemon(users=["joe@example.org quota=10M", "box@example.org mbox:boxes/%n"],
                        extra={"users.rewrite": "rewrite", "delivery.detail_folder": "yes"})
        with open(os.path.join(self.d.dir, "rewrite"), "w") as f:
            f.write("old@example.org joe@example.org\n")

    def tearDown(self):
        self.d.cleanup()

    def lookup(self, *addresses):
        args = [LMTPD, "-c", "lmtpd.conf"]
        for a in addresses:
            args += ["--lookup", a]
        p = subprocess.run(args, cwd=self.d.dir, capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout

    def test_known_user_with_detail_and_rewrite(self):
        code, out = self.lookup("joe+Lists@example.org", "old@example.org")
        self.assertEqual(code, 0, out)
        first, second = out.split("\n\n")
        self.assertIn("status: 250 deliverable", first)
        self.assertIn("final: joe@example.org", first)
        self.assertIn("detail: Lists (folder Lists)", first)
        self.assertIn("mailbox: maildir mail/example.org/joe/Maildir", first)
        self.assertIn("quota: 10485760 bytes", first)
        self.assertIn("directory: file", first)
        self.assertIn("final: joe@example.org", second)

    def test_mbox_user(self):
        code, out = self.lookup("box@example.org")
        self.assertEqual(code, 0, out)
        self.assertIn("mailbox: mbox mail/boxes/box", out)

    def test_unknown_user(self):
        code, out = self.lookup("nobody@example.org")
        self.assertEqual(code, 67, out)
        self.assertIn("status: 550 5.1.1", out)

    def test_probe_a_directory(self):
        p = subprocess.run([LMTPD, "-c", "lmtpd.conf", "--check-config", "--probe"], cwd=self.d.dir,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("user directory: answers", p.stdout)
        # a directory server nobody listens for: the configuration is valid,
        # the directory cannot answer
        self.d.write_config(extra={"users.backend": "ldap", "users.ldap_uris": "ldap://127.0.0.1:9",
                                   "users.ldap_base": "dc=example,dc=org", "users.lookup_timeout": "1s"})
        p = subprocess.run([LMTPD, "-c", "lmtpd.conf", "--check-config", "--probe"], cwd=self.d.dir,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 75, p.stdout + p.stderr)
        self.assertIn("OK", p.stdout)
        self.assertIn("status: 451 4.3.0", p.stdout)
        self.assertIn("cannot answer", p.stderr)

    def test_not_an_address(self):
        code, out = self.lookup("a@@b")
        self.assertEqual(code, 67, out)
        self.assertIn("status: 501", out)


if __name__ == "__main__":
    main()
