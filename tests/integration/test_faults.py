"""Faults (issue 7): a full disk (small tmpfs under a mailbox and under the
spool), EIO and slow fsync (an LD_PRELOAD shim, faultinject.c), permission
denied, a read-only mailbox, a mailbox that is a symlink out of the mail
root, an mbox that is a FIFO, descriptor exhaustion and memory pressure.

Each time: the affected recipient gets the right 4xx or 5xx, the others
in the same transaction get 250 with their copy on disk, nothing partial
is left, and the server answers the next session.  Mounts need root; those
cases are skipped otherwise."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from lmtptest import Daemon, MAIL_USER, dotstuff, main, own

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.geteuid() == 0
DOMAIN = "faults.example"


def message(tag, size=200):
    body = ("x" * 70 + "\n") * max(1, size // 71)
    return ("From: f@example.net\nSubject: %s\n\n%sEND-%s\n" % (tag, body, tag)).encode()


def transaction(d, rcpts, data, timeout=30):
    """One LMTP transaction; returns {rcpt: (code, text)} for every RCPT
    (the RCPT reply when refused there, else the reply after DATA)."""
    c = d.connect(timeout=timeout)
    try:
        assert c.code() == 220
        c.send("LHLO faults\r\n")
        c.reply()
        c.send("MAIL FROM:<f@example.net>\r\n")
        assert c.code() == 250
        out, accepted = {}, []
        for r in rcpts:
            c.send("RCPT TO:<%s>\r\n" % r)
            code, lines = c.reply()
            if code == 250:
                accepted.append(r)
            else:
                out[r] = (code, lines[-1])
        if accepted:
            c.send("DATA\r\n")
            assert c.code() == 354
            c.send(dotstuff(data))
            for r in accepted:
                code, lines = c.reply()
                out[r] = (code, lines[-1])
        c.send("QUIT\r\n")
        return out
    finally:
        c.close()


def makedirs(path):
    """mkdir -p, each new level handed to the mail user."""
    if not os.path.isdir(path):
        makedirs(os.path.dirname(path))
        os.mkdir(path)
        own(path)


def mount_tmpfs(path, size):
    makedirs(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", path], check=True)
    own(path)


def umount(path):
    subprocess.run(["umount", "-l", path], check=False)


class FaultTest(unittest.TestCase):
    def setUp(self):
        self.mounts = []
        self.d = None

    def tearDown(self):
        if self.d:
            self.d.cleanup() if not self.mounts else self.d.stop()
        for m in reversed(self.mounts):
            umount(m)
        if self.d and self.mounts:
            self.d.cleanup()

    def start(self, extra=None, users=None):
        self.d = Daemon(extra=extra, users=users)
        return self.d

    def files(self, rcpt, sub="new"):
        return self.d.messages(rcpt, sub)

    def assert_nothing_stored(self, rcpt):
        for sub in ("new", "cur", "tmp"):
            self.assertEqual(self.files(rcpt, sub), [], "%s: %s/ not empty" % (rcpt, sub))

    def assert_stored(self, rcpt, tag, n=1):
        got = [data for _, data in self.files(rcpt) if data.endswith(("END-%s\n" % tag).encode())]
        self.assertEqual(len(got), n, "%s: %d copies of %s" % (rcpt, len(got), tag))

    def assert_serving(self, rcpt="ok@" + DOMAIN, tag="after"):
        got = transaction(self.d, [rcpt], message(tag))
        self.assertEqual(got[rcpt][0], 250, got)
        self.assert_stored(rcpt, tag)

    @unittest.skipUnless(ROOT, "mounting a tmpfs needs root")
    def test_disk_full_in_a_mailbox(self):
        d = self.start().start()
        full = os.path.join(d.mail, DOMAIN, "full")
        mount_tmpfs(full, "256k")
        self.mounts.append(full)
        big = message("big", 600 * 1024)
        got = transaction(d, ["ok@" + DOMAIN, "full@" + DOMAIN], big)
        self.assertEqual(got["ok@" + DOMAIN][0], 250, got)
        self.assertEqual(got["full@" + DOMAIN], (452, "452 4.3.1 Insufficient system storage"))
        self.assert_stored("ok@" + DOMAIN, "big")
        self.assert_nothing_stored("full@" + DOMAIN)
        # the space is given back: a small message fits, and others still flow
        self.assert_serving("full@" + DOMAIN, "small")
        self.assert_serving()

    @unittest.skipUnless(ROOT, "mounting a tmpfs needs root")
    def test_disk_full_in_the_spool(self):
        d = self.start()
        spool = os.path.join(d.dir, "spool")
        mount_tmpfs(spool, "256k")
        self.mounts.append(spool)
        d.start()
        got = transaction(d, ["a@" + DOMAIN, "b@" + DOMAIN], message("big", 600 * 1024))
        for r in ("a@" + DOMAIN, "b@" + DOMAIN):
            self.assertEqual(got[r], (452, "452 4.3.1 Insufficient system storage"))
            self.assert_nothing_stored(r)
        # the unlinked spool file is gone with its transaction
        st = os.statvfs(spool)
        self.assertGreater(st.f_bfree * st.f_frsize, 200 * 1024)
        self.assert_serving("a@" + DOMAIN)

    def preload_daemon(self, slow_ms=2000):
        lib = os.path.join(tempfile.mkdtemp(prefix="faultinject-"), "faultinject.so")
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", lib, os.path.join(HERE, "faultinject.c"), "-ldl"],
                       check=True)
        d = self.start()
        d.env = dict(os.environ, LD_PRELOAD=lib, FAULT_SLOW_MS=str(slow_ms),
                     ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
        return d.start()

    def test_eio_on_fsync(self):
        d = self.preload_daemon()
        got = transaction(d, ["ok@" + DOMAIN, "eio@" + DOMAIN, "ok2@" + DOMAIN], message("m1", 5000))
        self.assertEqual(got["eio@" + DOMAIN], (451, "451 4.3.0 Temporary internal error"))
        for r in ("ok@" + DOMAIN, "ok2@" + DOMAIN):
            self.assertEqual(got[r][0], 250, got)
            self.assert_stored(r, "m1")
        self.assert_nothing_stored("eio@" + DOMAIN)
        self.assertRegex(d.read_log(), r"eio@%s.*fsync.*Input/output error" % re.escape(DOMAIN))
        self.assert_serving()

    def test_slow_fsync_blocks_nobody_else(self):
        d = self.preload_daemon(slow_ms=3000)
        result = {}

        def slow():
            t0 = time.time()
            result["slow"] = transaction(d, ["slow@" + DOMAIN], message("s1"))
            result["slow_s"] = time.time() - t0

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        t0 = time.time()
        self.assert_serving(tag="during")
        fast = time.time() - t0
        t.join(30)
        self.assertEqual(result["slow"]["slow@" + DOMAIN][0], 250, result)
        self.assertGreaterEqual(result["slow_s"], 3.0)
        self.assertLess(fast, 2.0, "another session waited for the slow disk")
        self.assert_stored("slow@" + DOMAIN, "s1")

    @unittest.skipUnless(ROOT, "the mail user must lack a permission root has")
    def test_permission_denied(self):
        d = self.start().start()
        locked = os.path.join(d.mail, DOMAIN, "locked")
        makedirs(os.path.dirname(locked))
        os.mkdir(locked, 0o700)  # root's, not the mail user's
        got = transaction(d, ["locked@" + DOMAIN, "ok@" + DOMAIN], message("p1"))
        self.assertEqual(got["locked@" + DOMAIN], (451, "451 4.2.0 Mailbox unavailable"))
        self.assertEqual(got["ok@" + DOMAIN][0], 250)
        self.assertEqual(os.listdir(locked), [])
        self.assertRegex(d.read_log(), r"Permission denied")
        # once the admin fixes it, the retry is delivered
        own(locked)
        self.assert_serving("locked@" + DOMAIN, "p1")

    @unittest.skipUnless(ROOT, "a read-only bind mount needs root")
    def test_read_only_mailbox(self):
        d = self.start().start()
        assert transaction(d, ["ro@" + DOMAIN], message("before"))["ro@" + DOMAIN][0] == 250
        box = d.maildir("ro@" + DOMAIN)
        subprocess.run(["mount", "--bind", box, box], check=True)
        self.mounts.append(box)
        subprocess.run(["mount", "-o", "remount,bind,ro", box], check=True)
        got = transaction(d, ["ro@" + DOMAIN, "ok@" + DOMAIN], message("r1"))
        self.assertEqual(got["ro@" + DOMAIN], (451, "451 4.2.0 Mailbox unavailable"))
        self.assertEqual(got["ok@" + DOMAIN][0], 250)
        self.assert_stored("ro@" + DOMAIN, "before")
        self.assertEqual(len(self.files("ro@" + DOMAIN)), 1)
        self.assertRegex(d.read_log(), r"Read-only file system")
        self.assert_serving()

    def test_mailbox_symlink_out_of_the_root(self):
        d = self.start(users=["link@%s" % DOMAIN, "inlink@%s" % DOMAIN, "ok@%s" % DOMAIN,
                              "mlink@%s mbox:mlink" % DOMAIN]).start()
        outside = tempfile.mkdtemp(prefix="outside-")
        os.chmod(outside, 0o777)
        try:
            parent = os.path.join(d.mail, DOMAIN, "link")
            makedirs(parent)
            os.symlink(outside, os.path.join(parent, "Maildir"))
            # a link that stays inside the mail root is an admin's choice
            inside = os.path.join(d.mail, "elsewhere")
            makedirs(inside)
            makedirs(os.path.join(d.mail, DOMAIN, "inlink"))
            os.symlink(inside, os.path.join(d.mail, DOMAIN, "inlink", "Maildir"))
            # an mbox directory pointing out, and an mbox file that is a link
            os.symlink(outside, os.path.join(d.mail, "mlink"))
            got = transaction(d, ["link@" + DOMAIN, "inlink@" + DOMAIN, "ok@" + DOMAIN, "mlink@" + DOMAIN],
                              message("l1"))
            self.assertEqual(got["link@" + DOMAIN], (451, "451 4.2.0 Mailbox unavailable"))
            self.assertEqual(got["mlink@" + DOMAIN], (451, "451 4.2.0 Mailbox unavailable"))
            self.assertEqual(got["inlink@" + DOMAIN][0], 250)
            self.assertEqual(got["ok@" + DOMAIN][0], 250)
            self.assertEqual(os.listdir(outside), [], "wrote outside the mail root")
            self.assertEqual(len(os.listdir(os.path.join(inside, "new"))), 1)
            self.assertRegex(d.read_log(), r"leads outside the mail root")
            # a symlink planted as the mbox file itself is not followed
            os.unlink(os.path.join(d.mail, "mlink"))
            makedirs(os.path.join(d.mail, "mlink"))
            target = os.path.join(outside, "victim")
            open(target, "w").close()
            os.symlink(target, os.path.join(d.mail, "mlink", "inbox"))
            got = transaction(d, ["mlink@" + DOMAIN], message("l2"))
            self.assertEqual(got["mlink@" + DOMAIN][0], 451, got)
            self.assertEqual(os.path.getsize(target), 0)
            self.assert_serving()
        finally:
            shutil.rmtree(outside, ignore_errors=True)

    def test_mailbox_is_a_fifo(self):
        d = self.start(users=["fifo@%s mbox:fifo" % DOMAIN, "ok@%s" % DOMAIN, "pipe@%s" % DOMAIN]).start()
        box = os.path.join(d.mail, "fifo")
        makedirs(box)
        os.mkfifo(os.path.join(box, "inbox"))
        own(os.path.join(box, "inbox"))
        # a Maildir path that is a FIFO
        makedirs(os.path.join(d.mail, DOMAIN, "pipe"))
        os.mkfifo(os.path.join(d.mail, DOMAIN, "pipe", "Maildir"))
        t0 = time.time()
        got = transaction(d, ["fifo@" + DOMAIN, "pipe@" + DOMAIN, "ok@" + DOMAIN], message("f1"))
        self.assertLess(time.time() - t0, 10, "hung on a FIFO")
        self.assertEqual(got["fifo@" + DOMAIN][0], 451, got)
        self.assertEqual(got["pipe@" + DOMAIN][0], 451, got)
        self.assertEqual(got["ok@" + DOMAIN][0], 250, got)
        self.assert_serving()

    def test_descriptor_exhaustion(self):
        d = self.start({"server.max_sessions": "1000", "server.delivery_threads": "4"})
        d.wrap = ["prlimit", "--nofile=128:128"]
        d.start()
        held, refused = [], None
        try:
            for _ in range(200):
                c = d.connect()
                code, lines = c.reply()
                if code == 421:
                    refused = lines[-1]
                    c.close()
                    break
                self.assertEqual(code, 220)
                c.send("LHLO held\r\n")
                c.reply()
                held.append(c)
            self.assertIsNotNone(refused, "never refused: %d sessions held" % len(held))
            self.assertRegex(refused, r"^421 4\.3\.2 lmtp\.test Out of file descriptors")
            self.assertGreater(len(held), 40)
            # every session already open can still deliver
            for i, c in enumerate(held[:3] + held[-3:]):
                c.send("MAIL FROM:<f@example.net>\r\nRCPT TO:<ok@%s>\r\nDATA\r\n" % DOMAIN)
                self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
                c.send(dotstuff(message("h%d" % i)))
                self.assertEqual(c.code(), 250)
            for c in held[:20]:
                c.close()
            held = held[20:]
            time.sleep(0.3)
            self.assert_serving()
        finally:
            for c in held:
                c.close()

    def test_memory_pressure(self):
        d = self.start().start()
        first = d.connect()
        self.assertEqual(first.code(), 220)
        d.write_config({"server.max_memory": "1M"})  # lmtpd alone is above that
        d.signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "configuration reloaded" not in d.read_log() and time.time() < deadline:
            time.sleep(0.05)
        c = d.connect()
        self.assertRegex(c.text(), r"^421 4\.3\.2 lmtp\.test Out of memory")
        c.close()
        # the session already open finishes its work
        first.send("LHLO f\r\n")
        first.reply()
        first.send("MAIL FROM:<f@example.net>\r\nRCPT TO:<ok@%s>\r\nDATA\r\n" % DOMAIN)
        self.assertEqual([first.code() for _ in range(3)], [250, 250, 354])
        first.send(dotstuff(message("mem")))
        self.assertEqual(first.code(), 250)
        first.close()
        self.assert_stored("ok@" + DOMAIN, "mem")
        d.write_config({})
        d.signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assert_serving()


if __name__ == "__main__":
    main()
