"""The quarantine store (issue 19): a service with quarantine = store keeps
one recipient's copy outside its mailbox, indexed in the records, while the
other recipients of the transaction get theirs; lmtpctl quarantine lists,
shows, releases (exactly once, through the pipeline, without the service
that quarantined it), deletes and expires; a release killed midway is
completed later without a second copy; a failing index answers 451 and
leaves no file behind."""

import os
import re
import subprocess
import time
import unittest

from lmtptest import LMTPD, Callout, Daemon, main
from test_delivery import transaction

LMTPCTL = os.path.join(os.path.dirname(LMTPD), "..", "admin", "lmtpctl")
SQLITE = "/usr/bin/sqlite3"

RCPTS = ["alice@example.org", "bob@example.org", "carol@example.org"]
BODY = (b"From: s@example.net\nTo: alice@example.org\nSubject: cheap pills\n"
        b"Message-ID: <q.1@example.net>\n\nbuy now\n")


class Quarantine(unittest.TestCase):

    def setUp(self):
        # filter quarantines alice (her own call: her own rule), tagger edits everyone's header
        self.filter = Callout("rcpt=alice@* quarantine spam-score-high\n* accept\n")
        self.addCleanup(self.filter.stop)
        self.tagger = Callout("* add-header X-Tagged: yes\n")
        self.addCleanup(self.tagger.stop)
        self.d = Daemon(extra={
            "delivery.delivery_timeout": "3",
            "state.records_db": "lib/records.db",
            "quarantine.dir": "qstore",
            "service filter.servers": self.filter.endpoint, "service filter.quarantine": "store",
            "service tagger.servers": self.tagger.endpoint,
            "rule a.match": "alice@example.org", "rule a.services": "filter, tagger",
            "rule all.match": "*", "rule all.services": "filter, tagger"}).start()
        self.addCleanup(self.d.cleanup)
        self.store = os.path.join(self.d.dir, "qstore")

    def send(self, body=BODY):
        c = self.d.connect(timeout=30)
        c.reply()
        c.cmd("LHLO x")
        replies = transaction(c, RCPTS, body)
        c.close()
        return replies

    def quarantined(self, body=BODY):
        r = self.send(body)
        m = re.match(r"^250 2\.0\.0 <alice@example\.org> quarantined as ([0-9a-f]{16}) id=\w+$", r[0])
        self.assertTrue(m, r)
        return m.group(1)

    def ctl(self, *args, env=None):
        return subprocess.run([LMTPCTL, "-c", "lmtpd.conf", "quarantine"] + list(args), cwd=self.d.dir,
                              capture_output=True, env=env, timeout=60)

    def trace(self, message_id):
        return subprocess.run([LMTPCTL, "-c", "lmtpd.conf", "trace", message_id], cwd=self.d.dir,
                              capture_output=True, timeout=60).stdout.decode()

    def sql(self, statement):
        subprocess.run([SQLITE, os.path.join(self.d.dir, "lib", "records.db"), statement], check=True, timeout=30)

    def alice(self):
        return [data for _, data in self.d.messages("alice@example.org")]

    def test_one_of_three_into_the_store_then_released_once(self):
        r = self.send()
        self.assertRegex(r[1], r"^250 2\.0\.0 <bob@example\.org> ")
        self.assertRegex(r[2], r"^250 2\.0\.0 <carol@example\.org> ")
        qid = re.search(r"quarantined as ([0-9a-f]{16})", r[0]).group(1)
        for who in ("bob@example.org", "carol@example.org"):
            (_, data), = self.d.messages(who)
            self.assertIn(b"X-Tagged: yes\n", data)
            self.assertTrue(data.endswith(b"\nbuy now\n"), data)
        # in the store, not in any folder of alice's mailbox; her trace says where
        self.assertEqual(self.alice(), [])
        deadline = time.time() + 10
        while "folder: quarantine:" not in self.trace("q.1@example.net") and time.time() < deadline:
            time.sleep(0.1)
        self.assertIn("folder: quarantine:%s\n" % qid, self.trace("q.1@example.net"))
        home = self.d.maildir("alice@example.org")
        self.assertEqual([f for f in os.listdir(home) if f.startswith(".")] if os.path.isdir(home) else [], [])
        with open(os.path.join(self.store, qid + ".msg"), "rb") as f:
            copy = f.read()
        self.assertTrue(copy.startswith(b"Return-Path: <s@example.net>\n"), copy)
        self.assertIn(b"X-Tagged: yes\n", copy)
        self.assertIn(b"verdict=quarantine", copy)
        self.assertTrue(copy.endswith(b"Subject: cheap pills\nMessage-ID: <q.1@example.net>\nX-Tagged: yes\n\nbuy now\n"),
                        copy)
        self.assertFalse([f for f in os.listdir(self.store) if f.startswith("tmp.")])

        listed = self.ctl("list", "--rcpt", "alice@example.org")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertRegex(listed.stdout.decode(), qid + r" .* held .* filter +<alice@example\.org> <s@example\.net> "
                                                       r"cheap pills")
        self.assertNotIn(qid, self.ctl("list", "--service", "tagger").stdout.decode())
        shown = self.ctl("show", qid).stdout.decode()
        self.assertRegex(shown, r"reason: +spam-score-high\n")
        self.assertRegex(shown, r"message-id: +<q\.1@example\.net>\n")
        self.assertIn("--- headers ---\nReturn-Path: <s@example.net>\n", shown)
        self.assertIn("--- text ---\nbuy now\n", shown)

        self.assertRegex(self.d.read_log(), r"to=<alice@example\.org> mailbox=quarantine:%s .*status=250 " % qid)

        rel = self.ctl("release", qid)
        self.assertEqual(rel.returncode, 0, rel.stderr)
        self.assertRegex(rel.stderr.decode(), r"quarantine: id=%s released by=root rcpt=<alice@example\.org> " % qid)
        data, = self.alice()
        self.assertRegex(data.decode(), r"^X-Quarantine-Released: %s by root at \w{3}, \d\d \w{3} \d{4} " % qid)
        self.assertEqual(data.count(b"Return-Path:"), 1, data)
        self.assertEqual(data.count(b"Received: "), 1, data)
        self.assertEqual(data.count(b"Delivered-To:"), copy.count(b"Delivered-To:"), data)
        # the filter was not called again (it would have quarantined it), the tagger was
        self.assertEqual(data.count(b"X-Tagged: yes\n"), 2, data)
        self.assertRegex(data.decode(), r"filter ; verdict=bypassed")
        self.assertTrue(data.endswith(b"\n\nbuy now\n"))

        again = self.ctl("release", qid)
        self.assertEqual(again.returncode, 65, again.stderr)
        self.assertIn(b"released already", again.stderr)
        self.assertEqual(len(self.alice()), 1)
        self.assertNotIn(qid, self.ctl("list").stdout.decode())
        self.assertRegex(self.ctl("list", "--all").stdout.decode(), qid + r" .* released ")
        self.assertEqual(self.ctl("show", "0123456789abcdef").returncode, 66)

    def test_release_to_another_address(self):
        qid = self.quarantined()
        rel = self.ctl("release", qid, "--to", "dave@example.org")
        self.assertEqual(rel.returncode, 0, rel.stderr)
        self.assertEqual(self.alice(), [])
        (_, data), = self.d.messages("dave@example.org")
        self.assertIn(b"X-Quarantine-Released: " + qid.encode(), data)
        self.assertRegex(self.ctl("show", qid).stdout.decode(), r"released to: +dave@example\.org\n")

    def test_delete(self):
        qid = self.quarantined()
        rm = self.ctl("delete", qid)
        self.assertEqual(rm.returncode, 0, rm.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.store, qid + ".msg")))
        self.assertEqual(self.ctl("release", qid).returncode, 65)
        self.assertEqual(self.ctl("delete", qid).returncode, 65)
        self.assertEqual(self.ctl("delete", "0123456789abcdef").returncode, 66)
        self.assertEqual(self.ctl("delete", "../records.db").returncode, 66)
        self.assertRegex(self.ctl("show", qid).stdout.decode(), r"state: +deleted\n")
        self.assertEqual(self.alice(), [])

    def test_a_symlink_in_the_store_is_not_followed(self):
        qid = self.quarantined()
        path = os.path.join(self.store, qid + ".msg")
        os.unlink(path)
        os.symlink("/etc/passwd", path)
        shown = self.ctl("show", qid)
        self.assertNotIn(b"root:", shown.stdout)
        self.assertIn(b"(the copy: ", shown.stdout)
        rel = self.ctl("release", qid)
        self.assertEqual(rel.returncode, 75, rel.stderr)
        self.assertEqual(self.alice(), [])
        # not released: still held, for when the copy is back
        self.assertRegex(self.ctl("list").stdout.decode(), qid + r" .* held ")

    def test_expiry_removes_copy_and_row(self):
        old = self.quarantined()
        new = self.quarantined(BODY.replace(b"q.1@", b"q.2@"))
        self.sql("UPDATE lmtpd_quarantine SET expires = 1000 WHERE id = '%s'" % old)
        ex = self.ctl("expire")
        self.assertEqual(ex.returncode, 0, ex.stderr)
        self.assertEqual(ex.stdout, b"expired: 1\n")
        self.assertFalse(os.path.exists(os.path.join(self.store, old + ".msg")))
        self.assertTrue(os.path.exists(os.path.join(self.store, new + ".msg")))
        listed = self.ctl("list", "--all").stdout.decode()
        self.assertNotIn(old, listed)
        self.assertIn(new, listed)

    def killed_release(self, qid, point):
        env = dict(os.environ, LMTPD_TEST_QUARANTINE_PAUSE=point)
        p = subprocess.Popen([LMTPCTL, "-c", "lmtpd.conf", "quarantine", "release", qid], cwd=self.d.dir,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        for line in p.stderr:
            if b"quarantine release paused: " + point.encode() in line:
                break
        p.kill()
        p.wait()
        p.stderr.close()

    def test_sigkill_in_the_middle_of_a_release(self):
        # killed after the claim, before delivering: nothing delivered yet
        qid = self.quarantined()
        self.killed_release(qid, "claimed")
        self.assertEqual(self.alice(), [])
        self.assertRegex(self.ctl("list", "--all").stdout.decode(), qid + r" .* releasing ")
        busy = self.ctl("release", qid)
        self.assertEqual(busy.returncode, 65, busy.stderr)
        self.assertIn(b"under way", busy.stderr)
        time.sleep(4.5)  # delivery_timeout: the claim is stale
        rel = self.ctl("release", qid)
        self.assertEqual(rel.returncode, 0, rel.stderr)
        self.assertEqual(len(self.alice()), 1)

        # killed after the copy is in the Maildir, before the row says so
        qid2 = self.quarantined(BODY.replace(b"q.1@", b"q.2@"))
        self.killed_release(qid2, "delivered")
        self.assertEqual(len(self.alice()), 2)
        time.sleep(4.5)
        rel = self.ctl("release", qid2)
        self.assertEqual(rel.returncode, 0, rel.stderr)
        self.assertIn(b"Saved (duplicate)", rel.stdout)
        mine = [m for m in self.alice() if b"X-Quarantine-Released: " + qid2.encode() in m]
        self.assertEqual(len(mine), 1)
        self.assertEqual(len(self.alice()), 2)
        self.assertRegex(self.ctl("list", "--all").stdout.decode(), qid2 + r" .* released ")

    def test_interrupted_release_completed_by_expire(self):
        qid = self.quarantined()
        self.killed_release(qid, "claimed")
        time.sleep(4.5)
        ex = self.ctl("expire")
        self.assertEqual(ex.returncode, 0, ex.stderr)
        self.assertIn(b"completing an interrupted release", ex.stderr)
        self.assertEqual(len(self.alice()), 1)
        self.assertRegex(self.ctl("list", "--all").stdout.decode(), qid + r" .* released ")

    def test_interrupted_release_completed_by_lmtpd_at_start(self):
        qid = self.quarantined()
        self.killed_release(qid, "claimed")
        self.d.stop()
        time.sleep(1.1)  # claims older than lmtpd's start (by the second) are a crash's
        self.d.start()
        deadline = time.time() + 20
        while time.time() < deadline and not self.alice():
            time.sleep(0.2)
        self.assertEqual(len(self.alice()), 1, self.d.read_log())
        self.assertIn("quarantine: id=%s completing an interrupted release" % qid, self.d.read_log())
        time.sleep(0.5)
        self.assertRegex(self.ctl("list", "--all").stdout.decode(), qid + r" .* released ")
        self.assertEqual(len(self.alice()), 1)

    def test_list_since(self):
        qid = self.quarantined()
        tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
        for since, listed in (("2000-01-01", True), ("1h", True), (tomorrow, False),
                              (str(int(time.time()) + 60), False)):
            r = self.ctl("list", "--since", since)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(qid in r.stdout.decode(), listed, since)
        self.assertEqual(self.ctl("list", "--since", "soon").returncode, 64)

    def test_digest_lists_held_messages_with_release_links(self):
        """lmtpctl quarantine digest: one message a recipient, through the
        MTA (here a sendmail stand-in), listing what is held for her with a
        signed link each; released messages are not listed."""
        sent = os.path.join(self.d.dir, "sent")
        tool = os.path.join(self.d.dir, "fake-sendmail")
        with open(tool, "w") as f:
            f.write("#!/bin/sh\n{ echo \"ARGS: $*\"; cat; echo END; } >> %s\n" % sent)
        os.chmod(tool, 0o755)
        open(sent, "w").close()
        os.chmod(sent, 0o666)
        secret = os.path.join(self.d.dir, "link.secret")
        with open(secret, "w") as f:
            f.write("a-link-secret-of-some-length\n")
        os.chmod(secret, 0o600)
        first = self.quarantined()
        second = self.quarantined(BODY.replace(b"q.1@", b"q.2@").replace(b"cheap pills", b"Cheap\tWatches"))
        gone = self.quarantined(BODY.replace(b"q.1@", b"q.3@"))
        self.assertEqual(self.ctl("release", gone).returncode, 0)
        self.d.write_config(dict(self.d.extra, **{"sieve.sendmail": tool, "admin.link_secret_file": "link.secret",
                                                  "admin.listen": "inet:127.0.0.1:8999",
                                                  "admin.token_file": "link.secret"}))
        r = self.ctl("digest")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"digest: <alice@example.org> 2 held\n")
        with open(sent) as f:
            text = f.read()
        self.assertEqual(text.count("ARGS: "), 1)
        self.assertIn("ARGS: -i -f <> -- alice@example.org\n", text)
        self.assertIn("\nSubject: Quarantine: 2 messages held for you\n", text)
        self.assertIn("\nAuto-Submitted: auto-generated\n", text)
        self.assertIn("Subject: cheap pills\n", text)
        self.assertIn("Subject: Cheap?Watches\n", text)   # a control character from the mail is not passed on
        for qid in (first, second):
            self.assertRegex(text, r"Release: http://127\.0\.0\.1:8999/u/release\?id=%s&exp=\d+&sig=[0-9a-f]{64}\n"
                             % qid)
        self.assertNotIn(gone, text)
        # nothing held since a minute from now: nothing sent
        self.assertEqual(self.ctl("digest", "--since", str(int(time.time()) + 60)).stdout, b"")
        # no way to send: a configuration error
        self.d.write_config(self.d.extra)
        self.assertEqual(self.ctl("digest").returncode, 78)

    def test_records_failure_answers_451_and_leaves_no_file(self):
        self.sql("CREATE TRIGGER q_down BEFORE INSERT ON lmtpd_quarantine BEGIN SELECT RAISE(ABORT, 'disk says no');"
                 " END")
        r = self.send()
        self.assertRegex(r[0], r"^451 4\.3\.0 <alice@example\.org> ")
        self.assertRegex(r[1], r"^250 2\.0\.0 <bob@example\.org> ")
        self.assertRegex(r[2], r"^250 2\.0\.0 <carol@example\.org> ")
        self.assertEqual(os.listdir(self.store), [])
        self.assertEqual(self.alice(), [])
        self.assertIn("disk says no", self.d.read_log())
        # the index back: the MTA's retry is stored
        self.sql("DROP TRIGGER q_down")
        r = self.send()
        self.assertRegex(r[0], r"quarantined as [0-9a-f]{16} id=")


class Settings(unittest.TestCase):

    def check(self, extra):
        d = Daemon(extra=extra)
        self.addCleanup(d.cleanup)
        return subprocess.run([LMTPD, "-c", "lmtpd.conf", "--check-config"], cwd=d.dir, capture_output=True,
                              timeout=30)

    def test_records_down_is_75(self):
        d = Daemon(extra={"state.records_db": "lib/records.db"})
        self.addCleanup(d.cleanup)
        os.makedirs(os.path.join(d.dir, "lib", "records.db"))  # a directory where the database should be
        for args in (["list"], ["release", "0123456789abcdef"], ["expire"]):
            p = subprocess.run([LMTPCTL, "-c", "lmtpd.conf", "quarantine"] + args, cwd=d.dir, capture_output=True,
                               timeout=30)
            self.assertEqual(p.returncode, 75, p.stderr)
            self.assertIn(b"records", p.stderr)

    def test_quarantine_is_folder_or_store(self):
        p = self.check({"service f.servers": "inet:127.0.0.1:1", "service f.quarantine": "box"})
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr.decode(), r"\[service f\] quarantine: .*folder or store")
        p = self.check({"service f.servers": "inet:127.0.0.1:1", "service f.quarantine": "store",
                        "quarantine.keep": "720h", "quarantine.max_size": "10M"})
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.check({"quarantine.keep": "10"})
        self.assertRegex(p.stderr.decode(), r"\[quarantine\] keep")


if __name__ == "__main__":
    main()
