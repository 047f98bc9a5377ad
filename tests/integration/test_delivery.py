"""Delivery in depth, through the built lmtpd and deliver: mbox read back by
Python and Dovecot, folders seen over IMAP, single instance, duplicates,
quota, rewriting, a SIGKILL in the middle of an mbox append, the LDA
command and privileges."""

import grp
import mailbox
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from lmtptest import Daemon, LMTPD, MAIL_USER, dotstuff, main, strip_trace

DELIVER = os.environ.get("DELIVER") or os.path.join(os.path.dirname(LMTPD), "..", "deliver", "deliver")
IMAP = "/usr/lib/dovecot/imap"


def transaction(c, rcpts, body, sender="s@example.net", params=""):
    """One LMTP transaction on an open client; returns the per-recipient replies."""
    c.send("MAIL FROM:<%s>%s\r\n" % (sender, params) + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts)
           + "DATA\r\n")
    codes = [c.code() for _ in range(len(rcpts) + 1)]
    assert codes[0] == 250, codes
    accepted = sum(1 for x in codes[1:] if x == 250)
    if not accepted:
        c.text()
        return codes[1:]
    assert c.code() == 354
    c.send(dotstuff(body))
    return [c.text() for _ in range(accepted)]


def dovecot(location, script, home):
    """Runs Dovecot's imap binary preauthenticated on a copy owned by an
    unprivileged user; returns its output."""
    work = tempfile.mkdtemp(prefix="dovecot-")
    os.chmod(work, 0o755)
    data = os.path.join(work, "data")
    shutil.copytree(home, data)
    if os.geteuid() == 0:
        user = MAIL_USER
        group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
        for root, dirs, files in os.walk(work):
            for n in dirs + files:
                shutil.chown(os.path.join(root, n), user, group)
    else:
        user, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    conf = os.path.join(work, "dovecot.conf")
    with open(conf, "w") as f:
        f.write("log_path = /dev/stderr\nssl = no\nfirst_valid_uid = 0\nmail_location = %s\n"
                "mail_uid = %s\nmail_gid = %s\nmbox_read_locks = fcntl\nmbox_write_locks = fcntl\n"
                % (location.replace("DATA", data), user, group))
    p = subprocess.run([IMAP, "-c", conf], input=script.encode(), capture_output=True, timeout=60,
                       env={"USER": "u", "HOME": data, "PATH": os.environ.get("PATH", "")})
    shutil.rmtree(work, ignore_errors=True)
    return p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


def imap_bodies(out):
    """The literals of BODY[TEXT] fetches in an IMAP transcript."""
    bodies = []
    for m in re.finditer(r"BODY\[TEXT\] \{(\d+)\}\r\n", out):
        n = int(m.group(1))
        bodies.append(out[m.end():m.end() + n])
    return bodies


def unquote_mboxrd(text):
    return re.sub(r"(?m)^>(>*From )", r"\1", text)


class Mbox(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(extra={"mailboxes.mbox.test": "mbox:%d/%n"}).start()

    def tearDown(self):
        self.d.cleanup()

    def test_concurrent_appends_read_by_python_and_dovecot(self):
        bodies = []
        for i in range(24):
            bodies.append(("Subject: m%d\r\n\r\nFrom the start %d\r\n>From quoted\r\n>>From twice\r\n"
                           "plain line\r\nFrom \r\n" % (i, i)).encode())
        errors = []

        def worker(k):
            try:
                c = self.d.connect()
                c.reply()
                c.cmd("LHLO x")
                for b in bodies[k::4]:
                    r = transaction(c, ["ann@mbox.test"], b)
                    if not r[0].startswith("250"):
                        errors.append(r)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        path = os.path.join(self.d.mail, "mbox.test", "ann", "inbox")
        py = [m.get_payload() for m in mailbox.mbox(path)]
        self.assertEqual(len(py), len(bodies))
        # our quoting is mboxrd: undoing it gives back exactly what was sent
        sent = sorted(b.decode().split("\r\n\r\n", 1)[1].replace("\r\n", "\n") for b in bodies)
        self.assertEqual(sorted(unquote_mboxrd(p) for p in py), sent)
        # Dovecot sees the same messages with the same bodies
        out = dovecot("mbox:DATA:INBOX=DATA/inbox:INDEX=MEMORY",
                      "a SELECT INBOX\r\nb FETCH 1:* BODY.PEEK[TEXT]\r\nc LOGOUT\r\n",
                      os.path.dirname(path))
        self.assertIn("* %d EXISTS" % len(bodies), out, out[-2000:])
        dv = [b.replace("\r\n", "\n") for b in imap_bodies(out)]
        self.assertEqual(sorted(dv), sorted(p.rstrip("\n") + "\n" for p in py))

    def test_sigkill_during_append_leaves_whole_messages(self):
        small = b"Subject: small\r\n\r\nsmall body\r\n"
        big = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 400000  # ~31 MB
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        self.assertTrue(transaction(c, ["bob@mbox.test"], small)[0].startswith("250"))
        path = os.path.join(self.d.mail, "mbox.test", "bob", "inbox")
        before = os.path.getsize(path)
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<bob@mbox.test>\r\nDATA\r\n")
        [c.code() for _ in range(3)]
        c.send(dotstuff(big))
        deadline = time.time() + 30
        while os.path.getsize(path) == before and time.time() < deadline:
            time.sleep(0.001)
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        interrupted = os.path.getsize(path) < before * 2 + len(big)
        # restarting repairs the interrupted append before anything else
        self.d.start()
        msgs = list(mailbox.mbox(path))
        self.assertEqual(os.path.getsize(path) if interrupted else 0, before if interrupted else 0)
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        self.assertTrue(transaction(c, ["bob@mbox.test"], small + b"again\r\n")[0].startswith("250"))
        msgs = list(mailbox.mbox(path))
        for m in msgs:
            self.assertIn(m["Subject"], ("small", "big"))
            if m["Subject"] == "big":
                self.assertEqual(len(m.get_payload()), 77 * 400000)
        self.assertEqual(sum(1 for m in msgs if m["Subject"] == "small"), 2)
        if interrupted:
            self.assertEqual(len(msgs), 2, "a partial message was left in the mbox")
        print("# SIGKILL %s the append" % ("interrupted" if interrupted else "came after"))


class Folders(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(extra={"delivery.detail_folder": "yes"}).start()

    def tearDown(self):
        self.d.cleanup()

    def test_detail_folders_seen_by_dovecot(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        for rcpt, params in (("joe+Lists@example.org", ""), ("joe+Junk@example.org", ""),
                             ("joe+Entw\u00fcrfe@example.org", " SMTPUTF8"), ("joe@example.org", ""),
                             ("joe+../../etc@example.org", "")):
            r = transaction(c, [rcpt], b"Subject: to %s\r\n\r\nhi\r\n" % rcpt.encode(), params=params)
            self.assertTrue(str(r[0])[0] in "25" and (str(r[0]).startswith("250") or "etc" in rcpt), r)
        md = self.d.maildir("joe@example.org")
        self.assertEqual(len(self.d.messages("joe@example.org", folder=".Lists")), 1)
        self.assertEqual(len(self.d.messages("joe@example.org", folder=".Junk")), 1)
        self.assertEqual(len(self.d.messages("joe@example.org", folder=".Entw&APw-rfe")), 1)
        self.assertEqual(len(self.d.messages("joe@example.org")), 1)
        self.assertTrue(os.path.exists(os.path.join(md, ".Lists", "maildirfolder")))
        self.assertFalse(any(".." in n or "etc" in n for n in os.listdir(md)))
        out = dovecot("maildir:DATA:INDEX=MEMORY",
                      'a LIST "" "*"\r\nb LSUB "" "*"\r\nc SELECT Lists\r\nd LOGOUT\r\n', md)
        for name in ("Lists", "Junk", "Entw&APw-rfe"):
            self.assertRegex(out, r'\* LIST \([^)]*\) "\." "?%s"?\r\n' % re.escape(name), out)
            self.assertRegex(out, r'\* LSUB \([^)]*\) "\." "?%s"?\r\n' % re.escape(name), out)
        self.assertIn("* 1 EXISTS", out)


class SingleInstance(unittest.TestCase):
    def setUp(self):
        self.d = Daemon().start()

    def tearDown(self):
        self.d.cleanup()

    def test_five_recipients_one_inode(self):
        rcpts = ["u%d@example.org" % i for i in range(5)]
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        replies = transaction(c, rcpts, b"Subject: shared\r\n\r\none copy\r\n")
        self.assertTrue(all(r.startswith("250") for r in replies), replies)
        inodes = set()
        for r in rcpts:
            (name, data), = self.d.messages(r)
            st = os.stat(os.path.join(self.d.maildir(r), "new", name))
            inodes.add(st.st_ino)
            self.assertEqual(st.st_nlink, 5)
            self.assertNotIn(b"Delivered-To:", data)
        self.assertEqual(len(inodes), 1)
        # one recipient: its own Delivered-To, as before
        transaction(c, ["solo@example.org"], b"Subject: solo\r\n\r\nx\r\n")
        (name, data), = self.d.messages("solo@example.org")
        self.assertIn(b"Delivered-To: solo@example.org\n", data)


class Duplicates(unittest.TestCase):
    def setUp(self):
        self.d = Daemon().start()

    def tearDown(self):
        self.d.cleanup()

    def test_retry_after_lost_replies_is_not_delivered_twice(self):
        rcpts = ["a@example.org", "b@example.org"]
        body = b"Subject: retry\r\nMessage-ID: <retry@example.net>\r\n\r\nonce only\r\n"
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        c.send("MAIL FROM:<s@example.net>\r\n" + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts) + "DATA\r\n")
        [c.code() for _ in range(4)]
        c.send(dotstuff(body))
        c.close()  # the replies are lost
        deadline = time.time() + 10
        while time.time() < deadline and not all(self.d.messages(r) for r in rcpts):
            time.sleep(0.05)
        # the MTA retries the whole transaction, here after a restart too
        self.d.stop()
        self.d.start()
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        replies = transaction(c, rcpts, body)
        self.assertTrue(all(r.startswith("250") for r in replies), replies)
        for r in rcpts:
            self.assertEqual(len(self.d.messages(r)), 1, r)
        # a different message is delivered normally
        transaction(c, rcpts, body + b"changed\r\n")
        for r in rcpts:
            self.assertEqual(len(self.d.messages(r)), 2, r)


class QuotaAndRewrite(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(users=["q@example.org quota=10k", "joe@fr.example.org", "ann@example.org"],
                        extra={"users.rewrite": "rewrite", "delivery.quota_full_tempfail": "false"})
        with open(os.path.join(self.d.dir, "rewrite"), "w") as f:
            f.write("joe@example.org joe@fr.example.org\n@old.example.org @example.org\n")
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def test_quota_at_rcpt_and_after_data(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        c.cmd("MAIL FROM:<s@example.net> SIZE=20000")
        self.assertTrue(c.cmd("RCPT TO:<q@example.org>").startswith("552 5.2.2"))
        self.assertTrue(c.cmd("RCPT TO:<ann@example.org>").startswith("250"))
        c.cmd("RSET")
        body = b"Subject: q\r\n\r\n" + b"y" * 6000 + b"\r\n"
        self.assertTrue(transaction(c, ["q@example.org"], body)[0].startswith("250"))
        r = transaction(c, ["q@example.org"], body.replace(b"q", b"q2", 1))
        self.assertTrue(r[0].startswith("552 5.2.2"), r)
        self.assertEqual(len(self.d.messages("q@example.org")), 1)
        with open(os.path.join(self.d.maildir("q@example.org"), "maildirsize")) as f:
            self.assertEqual(f.readline(), "10240S\n")

    def test_rewrite(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["Joe@Example.org"], b"Subject: rw\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = self.d.messages("joe@fr.example.org")
        self.assertIn(b"Delivered-To: joe@fr.example.org\n", data)
        self.assertIn(b"X-Original-To: Joe@Example.org\n", data)
        r = transaction(c, ["ann@old.example.org"], b"Subject: rw2\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        self.assertEqual(len(self.d.messages("ann@example.org")), 1)


class Lda(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(users=["joe@example.org", "full@example.org quota=1k"])

    def tearDown(self):
        self.d.cleanup()

    def run_lda(self, args, data=b"Subject: lda\n\nhello\n", conf="lmtpd.conf"):
        return subprocess.run([DELIVER, "-c", conf] + args, input=data, capture_output=True,
                              cwd=self.d.dir, timeout=60)

    def test_exit_codes_and_delivery(self):
        p = self.run_lda(["-f", "s@example.net", "-a", "joe@example.org"],
                         b"From s@example.net Mon Jan  1 00:00:00 2024\nSubject: lda\n\n.hello\nFrom x\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        (name, data), = self.d.messages("joe@example.org")
        self.assertEqual(strip_trace(data), b"Subject: lda\n\n.hello\nFrom x\n")
        self.assertIn(b"with local id", data)
        p = self.run_lda(["-f", "s@example.net", "-a", "nobody@example.org"])
        self.assertEqual(p.returncode, 67)
        self.assertIn(b"5.1.1", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1)
        p = self.run_lda(["-f", "bad..sender@x", "-a", "joe@example.org"])
        self.assertEqual(p.returncode, 65)
        p = self.run_lda(["-a", "full@example.org"], b"Subject: big\n\n" + b"z" * 2000 + b"\n")
        self.assertEqual(p.returncode, 73, p.stderr)
        p = self.run_lda([])
        self.assertEqual(p.returncode, 64)
        with open(os.path.join(self.d.dir, "broken.conf"), "w") as f:
            f.write("[delivery]\nfsync = perhaps\n")
        p = self.run_lda(["-a", "joe@example.org"], conf="broken.conf")
        self.assertEqual(p.returncode, 78)

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_refuses_root_without_user(self):
        self.d.write_config(extra={"server.user": None})
        p = self.run_lda(["-a", "joe@example.org"])
        self.assertEqual(p.returncode, 77)
        self.assertIn(b"refusing to run as root", p.stderr)
        p = subprocess.run([LMTPD, "-c", "lmtpd.conf"], cwd=self.d.dir, capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 77)
        self.assertIn(b"refusing to run as root", p.stderr)

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_mail_belongs_to_the_mail_user(self):
        self.d.start()
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        transaction(c, ["joe@example.org"], b"Subject: owner\r\n\r\nx\r\n")
        (name, data), = self.d.messages("joe@example.org")
        st = os.stat(os.path.join(self.d.maildir("joe@example.org"), "new", name))
        self.assertEqual(st.st_uid, pwd.getpwnam(MAIL_USER).pw_uid)
        with open("/proc/%d/status" % self.d.proc.pid) as f:
            uid_line = [l for l in f if l.startswith("Uid:")][0]
        self.assertEqual(int(uid_line.split()[1]), pwd.getpwnam(MAIL_USER).pw_uid)


if __name__ == "__main__":
    main()
