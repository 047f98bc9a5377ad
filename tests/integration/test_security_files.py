"""Security hardening of the files lmtpd touches (issue 13): what the
mail user can plant in its mailboxes and in the directories lmtpd hands
over to it.

- root never chowns (or chmods) through a symlink, nor a directory that
  was there: the configured directories, the journal, the UNIX socket;
- a FIFO or a symlink planted where lmtpd reads or writes (maildirsize,
  subscriptions, maildirfolder, a dotlock, the vacation and script logs)
  does not hang a delivery thread, and a delivery has a deadline
  ([delivery] delivery_timeout, then 451 4.4.7, nothing stored);
- a symlinked new/ or tmp/ inside a Maildir is not written through;
- the byte quota holds for mbox users; a message quota for them is
  refused by the configuration check;
- maildirsize lines that overflow do not bypass the quota;
- a folder name too long once encoded goes to INBOX instead of failing
  forever.

Replies are asserted on the wire and bytes on disk.  Bounds are generous
(a loaded 2-core machine): a test asserts that a reply comes at all within
a long timeout, never that it is fast."""

import os
import pwd
import shutil
import subprocess
import tempfile
import unittest

from lmtptest import LMTPD, MAIL_USER, Callout, Daemon, dotstuff, main, own

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.geteuid() == 0
DOMAIN = "files.example"


def message(tag, size=200):
    body = ("x" * 70 + "\n") * max(1, size // 71)
    return ("From: f@example.net\nSubject: %s\n\n%sEND-%s\n" % (tag, body, tag)).encode()


def deliver(d, rcpt, data, timeout=60):
    """One transaction to one recipient: its (code, last line) after DATA,
    or the RCPT reply when refused there.  A reply that does not come
    within @timeout fails the test (socket.timeout)."""
    c = d.connect(timeout=timeout)
    try:
        assert c.code() == 220
        c.send("LHLO files\r\n")
        c.reply()
        c.send("MAIL FROM:<f@example.net>\r\n")
        assert c.code() == 250
        c.send("RCPT TO:<%s>\r\n" % rcpt)
        code, lines = c.reply()
        if code != 250:
            return code, lines[-1]
        c.send("DATA\r\n")
        assert c.code() == 354
        c.send(dotstuff(data))
        code, lines = c.reply()
        c.send("QUIT\r\n")
        return code, lines[-1]
    finally:
        c.close()


def makedirs(path):
    """mkdir -p, each new level the mail user's (a mailbox as lmtpd makes it)."""
    if not os.path.isdir(path):
        makedirs(os.path.dirname(path))
        os.mkdir(path)
        own(path)


def make_maildir(path):
    for sub in ("cur", "new", "tmp"):
        makedirs(os.path.join(path, sub))


def files_in(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


class Base(unittest.TestCase):
    def setUp(self):
        self.daemons = []
        self.tmp = []

    def tearDown(self):
        for d in self.daemons:
            d.cleanup()
        for t in self.tmp:
            shutil.rmtree(t, ignore_errors=True)

    def daemon(self, users, extra=None):
        d = Daemon(extra or {}, users=users)
        self.daemons.append(d)
        return d

    def outside_dir(self, d):
        """A directory outside the mail root that the mail user may write."""
        p = os.path.join(d.dir, "elsewhere")
        os.mkdir(p)
        own(p)
        return p


@unittest.skipUnless(ROOT, "needs root: lmtpd prepares its directories as root, then switches users")
class PrivilegesTest(Base):
    """Item 3: root creates and hands over only what it creates itself."""

    def victim(self, d, name="victim"):
        path = os.path.join(d.dir, name)
        with open(path, "w") as f:
            f.write("root's\n")
        os.chmod(path, 0o600)
        return path

    def start_quietly(self, d):
        try:
            d.start()
            return True
        except RuntimeError:
            return False

    def test_journal_symlink_is_not_chowned_through(self):
        d = self.daemon(["a@%s" % DOMAIN])
        victim = self.victim(d)
        lib = os.path.join(d.dir, "lib")
        makedirs(lib)  # the mail user's, from an earlier run
        os.symlink(victim, os.path.join(lib, "duplicates"))
        self.start_quietly(d)
        st = os.stat(victim)
        self.assertEqual((st.st_uid, st.st_gid), (0, 0), "root's file was handed to the mail user")
        with open(victim) as f:
            self.assertEqual(f.read(), "root's\n")

    def test_existing_directory_keeps_its_owner(self):
        # duplicate_db in a directory root already had: it stays root's;
        # the journal itself, made by lmtpd, is the mail user's
        d = self.daemon(["a@%s" % DOMAIN], {"delivery.duplicate_db": "shared/lmtpd-duplicates"})
        shared = os.path.join(d.dir, "shared")
        os.mkdir(shared, 0o755)
        d.start()
        self.assertEqual(os.stat(shared).st_uid, 0)
        journal = os.path.join(shared, "lmtpd-duplicates")
        self.assertEqual(os.lstat(journal).st_uid, pwd.getpwnam(MAIL_USER).pw_uid)
        self.assertEqual(deliver(d, "a@" + DOMAIN, message("j1"))[0], 250)
        # what lmtpd created is still handed over, as before
        for p in ("spool", "mail"):
            self.assertEqual(os.stat(os.path.join(d.dir, p)).st_uid, pwd.getpwnam(MAIL_USER).pw_uid, p)

    def test_symlinked_directory_is_not_followed(self):
        # spool_dir below a directory the mail user owns, replaced by a
        # symlink to a directory of root's
        d = self.daemon(["a@%s" % DOMAIN], {"server.spool_dir": "var/spool"})
        target = os.path.join(d.dir, "rootdir")
        os.mkdir(target, 0o700)
        makedirs(os.path.join(d.dir, "var"))
        os.symlink(target, os.path.join(d.dir, "var", "spool"))
        started = self.start_quietly(d)
        self.assertEqual(os.stat(target).st_uid, 0, "root's directory was handed to the mail user")
        self.assertFalse(started, "lmtpd started with a spool reached through a planted symlink")
        self.assertIn("var/spool", d.read_log())

    def test_lda_does_not_chown_through_a_symlink(self):
        d = self.daemon(["a@%s" % DOMAIN])
        victim = self.victim(d)
        makedirs(os.path.join(d.dir, "lib"))
        os.symlink(victim, os.path.join(d.dir, "lib", "duplicates"))
        lda = os.environ.get("DELIVER") or os.path.join(os.path.dirname(LMTPD), "..", "deliver", "deliver")
        subprocess.run([lda, "-c", "lmtpd.conf", "-a", "a@" + DOMAIN], input=message("lda"), cwd=d.dir,
                       capture_output=True, timeout=60)
        self.assertEqual(os.stat(victim).st_uid, 0)


class SocketModeTest(Base):
    """The socket still gets socket_mode (now set without following a symlink)."""

    def test_socket_mode_applied(self):
        d = self.daemon(["a@%s" % DOMAIN], {"server.socket_mode": "0666"}).start()
        st = os.lstat(d.sock)
        self.assertEqual(oct(st.st_mode & 0o7777), oct(0o666))
        c = d.connect(unix=True, timeout=60)
        try:
            self.assertEqual(c.code(), 220)
        finally:
            c.close()


class BlockingFilesTest(Base):
    """Item 4: a FIFO where lmtpd reads does not hang a delivery; a
    delivery has a deadline."""

    def test_fifo_maildirsize(self):
        d = self.daemon(["q@%s quota=100k" % DOMAIN, "ok@%s" % DOMAIN]).start()
        md = d.maildir("q@" + DOMAIN)
        make_maildir(md)
        os.mkfifo(os.path.join(md, "maildirsize"))
        own(os.path.join(md, "maildirsize"))
        for i in range(3):  # more than one: no thread may stay stuck
            self.assertEqual(deliver(d, "q@" + DOMAIN, message("q%d" % i))[0], 250)
        self.assertEqual(len(d.messages("q@" + DOMAIN)), 3)
        # replaced by a real maildirsize, counting what is there
        with open(os.path.join(md, "maildirsize")) as f:
            self.assertTrue(f.readline().startswith("102400S"))
        self.assertEqual(deliver(d, "ok@" + DOMAIN, message("ok"))[0], 250)

    def test_maildirsize_symlink_to_dev_zero(self):
        # not followed (the old code read /dev/zero until memory ran out:
        # this one is not run against it)
        d = self.daemon(["q@%s quota=100k" % DOMAIN]).start()
        md = d.maildir("q@" + DOMAIN)
        make_maildir(md)
        os.symlink("/dev/zero", os.path.join(md, "maildirsize"))
        self.assertEqual(deliver(d, "q@" + DOMAIN, message("z1"))[0], 250)
        self.assertFalse(os.path.islink(os.path.join(md, "maildirsize")))
        self.assertEqual(len(d.messages("q@" + DOMAIN)), 1)

    def test_fifo_subscriptions(self):
        d = self.daemon(["s@%s" % DOMAIN], {"delivery.detail_folder": "yes"}).start()
        md = d.maildir("s@" + DOMAIN)
        make_maildir(md)
        os.mkfifo(os.path.join(md, "subscriptions"))
        own(os.path.join(md, "subscriptions"))
        code, text = deliver(d, "s+lists@" + DOMAIN, message("s1"))
        self.assertEqual(code // 100, 4, text)  # the folder cannot be subscribed: retried
        self.assertEqual(deliver(d, "s@" + DOMAIN, message("s2"))[0], 250)

    def test_fifo_folder_marker(self):
        d = self.daemon(["s@%s" % DOMAIN], {"delivery.detail_folder": "yes"}).start()
        md = d.maildir("s@" + DOMAIN)
        make_maildir(md)
        makedirs(os.path.join(md, ".lists"))
        os.mkfifo(os.path.join(md, ".lists", "maildirfolder"))
        own(os.path.join(md, ".lists", "maildirfolder"))
        code, text = deliver(d, "s+lists@" + DOMAIN, message("s1"))
        self.assertEqual(code, 250, text)
        self.assertEqual(len(d.messages("s@" + DOMAIN, folder=".lists")), 1)

    def test_fifo_vacation_log(self):
        d = self.daemon(["u@%s" % DOMAIN]).start()
        home = os.path.join(d.mail, DOMAIN, "u")
        makedirs(home)
        script = os.path.join(home, ".dovecot.sieve")
        with open(script, "w") as f:
            f.write('require "vacation";\nvacation "away";\n')
        own(script)
        os.mkfifo(script + ".vacation")
        own(script + ".vacation")
        data = b"From: f@example.net\nTo: u@%s\nSubject: v\n\nhello END-v\n" % DOMAIN.encode()
        code, text = deliver(d, "u@" + DOMAIN, data)
        self.assertEqual(code, 250, text)  # kept; no reply without a usable log
        self.assertEqual(len(d.messages("u@" + DOMAIN)), 1)

    def test_fifo_script_log(self):
        # a broken script: its owner hears of it in .dovecot.sieve.log
        d = self.daemon(["u@%s" % DOMAIN]).start()
        home = os.path.join(d.mail, DOMAIN, "u")
        makedirs(home)
        script = os.path.join(home, ".dovecot.sieve")
        with open(script, "w") as f:
            f.write('this is not sieve;\n')
        own(script)
        os.mkfifo(script + ".log")
        own(script + ".log")
        code, text = deliver(d, "u@" + DOMAIN, message("b1"))
        self.assertEqual(code, 250, text)
        self.assertEqual(len(d.messages("u@" + DOMAIN)), 1)

    def test_fifo_dotlock(self):
        d = self.daemon(["m@%s mbox:m" % DOMAIN], {"delivery.mbox_lock_timeout": "2"}).start()
        box = os.path.join(d.mail, "m")
        makedirs(box)
        os.mkfifo(os.path.join(box, "inbox.lock"))
        code, text = deliver(d, "m@" + DOMAIN, message("m1"))
        self.assertEqual(code, 451, text)
        self.assertFalse(os.path.exists(os.path.join(box, "inbox")) and os.path.getsize(os.path.join(box, "inbox")))

    def test_delivery_deadline(self):
        # a lock held by a live process, a lock timeout longer than the
        # deadline: the deadline answers, and nothing is appended
        d = self.daemon(["m@%s mbox:m" % DOMAIN],
                        {"delivery.mbox_lock_timeout": "600", "delivery.delivery_timeout": "2"}).start()
        box = os.path.join(d.mail, "m")
        makedirs(box)
        with open(os.path.join(box, "inbox.lock"), "w") as f:
            f.write("%d -1\n" % os.getpid())
        code, text = deliver(d, "m@" + DOMAIN, message("m1"), timeout=120)
        self.assertEqual(code, 451, text)
        self.assertIn("4.4.7", text)
        inbox = os.path.join(box, "inbox")
        self.assertFalse(os.path.exists(inbox) and os.path.getsize(inbox), "stored past the deadline")

    def test_delivery_deadline_maildir(self):
        # a service slower than the deadline (but within its own timeout):
        # 451 4.4.7 and nothing in the Maildir; the next delivery works
        callout = Callout("* delay 3000\n* accept\n")
        try:
            d = self.daemon(["u@%s" % DOMAIN, "v@%s" % DOMAIN],
                            {"delivery.delivery_timeout": "1",
                             "service slow.servers": callout.endpoint, "service slow.timeout": "60s",
                             "service slow.response_timeout": "60s", "service slow.on_failure": "tempfail",
                             "rule all.match": "u@" + DOMAIN, "rule all.services": "slow"}).start()
            code, text = deliver(d, "u@" + DOMAIN, message("u1"), timeout=120)
            self.assertEqual(code, 451, text)
            self.assertIn("4.4.7", text)
            md = d.maildir("u@" + DOMAIN)
            for sub in ("new", "cur", "tmp"):
                self.assertEqual(files_in(os.path.join(md, sub)), [], sub)
            self.assertEqual(deliver(d, "v@" + DOMAIN, message("v1"))[0], 250)
        finally:
            callout.stop()

    def test_delivery_timeout_is_validated(self):
        d = self.daemon(["a@%s" % DOMAIN], {"delivery.delivery_timeout": "0"})
        p = subprocess.run([LMTPD, "-c", "lmtpd.conf", "--check-config"], cwd=d.dir, capture_output=True,
                           text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("delivery_timeout", p.stdout + p.stderr)


class MaildirSymlinkTest(Base):
    """Item 6: nothing is written through a symlinked new/, tmp/ or cur/."""

    def check_refused(self, sub, folder=None, rcpt="u", flags=False):
        extra = {"delivery.detail_folder": "yes"} if folder else {}
        d = self.daemon(["u@%s" % DOMAIN], extra).start()
        md = d.maildir("u@" + DOMAIN)
        make_maildir(md)
        target = os.path.join(md, "." + folder) if folder else md
        make_maildir(target)
        elsewhere = self.outside_dir(d)
        os.rmdir(os.path.join(target, sub))
        os.symlink(elsewhere, os.path.join(target, sub))
        addr = "u+%s@%s" % (folder, DOMAIN) if folder else "u@" + DOMAIN
        code, text = deliver(d, addr, message("l1"))
        self.assertEqual(code, 451, text)
        self.assertEqual(files_in(elsewhere), [], "written through %s -> %s" % (sub, elsewhere))
        for s in ("new", "cur", "tmp"):
            if s != sub:
                self.assertEqual(files_in(os.path.join(target, s)), [], s)
        return d

    def test_new_is_a_symlink(self):
        self.check_refused("new")

    def test_tmp_is_a_symlink(self):
        self.check_refused("tmp")

    def test_folder_new_is_a_symlink(self):
        self.check_refused("new", folder="Lists")

    def test_plain_maildir_still_works(self):
        d = self.daemon(["u@%s" % DOMAIN]).start()
        self.assertEqual(deliver(d, "u@" + DOMAIN, message("p1"))[0], 250)
        (name, data), = d.messages("u@" + DOMAIN)
        self.assertIn(b"END-p1", data)
        self.assertEqual(files_in(os.path.join(d.maildir("u@" + DOMAIN), "tmp")), [])


class MboxQuotaTest(Base):
    """Item 8: quota= holds for mbox users."""

    def test_byte_quota_enforced(self):
        d = self.daemon(["m@%s mbox:m quota=10k" % DOMAIN]).start()
        codes = [deliver(d, "m@" + DOMAIN, message("m%d" % i, 4096))[0] for i in range(3)]
        self.assertEqual(codes, [250, 250, 552])
        inbox = os.path.join(d.mail, "m", "inbox")
        self.assertLessEqual(os.path.getsize(inbox), 10 * 1024)
        with open(inbox, "rb") as f:
            data = f.read()
        self.assertIn(b"END-m1", data)
        self.assertNotIn(b"END-m2", data)

    def test_full_at_rcpt_with_size_hint(self):
        d = self.daemon(["m@%s mbox:m quota=1k" % DOMAIN]).start()
        c = d.connect(timeout=60)
        try:
            c.code()
            c.send("LHLO files\r\n")
            c.reply()
            c.send("MAIL FROM:<f@example.net> SIZE=4096\r\n")
            self.assertEqual(c.code(), 250)
            c.send("RCPT TO:<m@%s>\r\n" % DOMAIN)
            code, lines = c.reply()
            self.assertEqual(code, 552, lines)
        finally:
            c.close()

    def test_message_quota_refused_by_check_config(self):
        d = self.daemon(["m@%s mbox:m quota_messages=10" % DOMAIN])
        p = subprocess.run([LMTPD, "-c", "lmtpd.conf", "--check-config"], cwd=d.dir, capture_output=True,
                           text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("quota_messages", p.stdout + p.stderr)


class QuotaOverflowTest(Base):
    """Item 9: maildirsize lines that sum past INT64 are not trusted."""

    def check_recalculated(self, lines):
        d = self.daemon(["q@%s quota=10k" % DOMAIN]).start()
        md = d.maildir("q@" + DOMAIN)
        make_maildir(md)
        big = os.path.join(md, "cur", "1.M1P1Q1.old,S=9000,W=9100:2,S")
        with open(big, "wb") as f:
            f.write(b"x" * 9000)
        own(big)
        size = os.path.join(md, "maildirsize")
        with open(size, "w") as f:
            f.write("10240S\n9000 1\n" + lines)
        own(size)
        code, text = deliver(d, "q@" + DOMAIN, message("q1", 4096))
        self.assertEqual(code, 552, text)
        self.assertEqual(d.messages("q@" + DOMAIN), [])
        with open(size) as f:
            self.assertEqual(f.read(), "10240S\n9000 1\n")  # recalculated from the file names

    def test_overflowing_lines_are_recalculated(self):
        # 9000 + INT64_MAX: wrapped, the total was negative, read as 0
        self.check_recalculated("9223372036854775807 1\n")

    def test_out_of_range_line_is_recalculated(self):
        self.check_recalculated("99999999999999999999 1\n")


class FolderNameTest(Base):
    """Item 11: a folder name too long once encoded is kept in INBOX."""

    def script(self, d, address, text):
        local, domain = address.split("@")
        home = os.path.join(d.mail, domain, local)
        makedirs(home)
        path = os.path.join(home, ".dovecot.sieve")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        own(path)

    def check_kept(self, folder):
        d = self.daemon(["u@%s" % DOMAIN]).start()
        self.script(d, "u@" + DOMAIN, 'require "fileinto";\nfileinto "%s";\n' % folder)
        code, text = deliver(d, "u@" + DOMAIN, message("f1"))
        self.assertEqual(code, 250, text)
        self.assertEqual(len(d.messages("u@" + DOMAIN)), 1)

    def test_long_ascii_name(self):
        self.check_kept("x" * 255)

    def test_emoji_name(self):
        self.check_kept("\U0001F600" * 60)

    def test_many_levels(self):
        # 127 levels of "&" pass the 255-character limit; each is "&-" on disk
        self.check_kept("/".join(["&"] * 127))

    def test_long_but_fitting_name_still_filed(self):
        d = self.daemon(["u@%s" % DOMAIN]).start()
        name = "y" * 200
        self.script(d, "u@" + DOMAIN, 'require "fileinto";\nfileinto "%s";\n' % name)
        self.assertEqual(deliver(d, "u@" + DOMAIN, message("f2"))[0], 250)
        self.assertEqual(len(d.messages("u@" + DOMAIN, folder="." + name)), 1)


if __name__ == "__main__":
    main()
