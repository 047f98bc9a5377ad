"""How a Maildir delivery is made durable (issue 20, [delivery] sync_mode).

lmtpd runs under strace (-y: every descriptor with its path) on a fresh
loop-mounted ext4, and the system calls of each delivery are read back:

- ext4 with a journal (data=ordered), sync_mode = one-commit (the default):
  sync_file_range on the file in tmp/, rename into new/, fsync of the file,
  and no fsync of new/ (one journal commit carries all);
- ext4 without a journal, or sync_mode = two-step: fsync of the file while
  it is in tmp/, rename, fsync of new/.

The log says which sequence a file system gets.  The SIGKILL crash test
runs on the one-commit file system too (test_crash.py)."""

import os
import re
import shutil
import signal
import subprocess
import unittest

from lmtptest import LMTPD, Client, Daemon, Ext4Image, main

DOMAIN = "sync.example"
RCPT = "u@" + DOMAIN
MESSAGES = 4


def deliver(d, n):
    c = Client(d)
    c.reply()
    c.send("LHLO t\r\n")
    c.reply()
    for i in range(n):
        assert c.cmd("MAIL FROM:<s@example.net>").startswith("250")
        assert c.cmd("RCPT TO:<%s>" % RCPT).startswith("250")
        assert c.cmd("DATA").startswith("354")
        body = "Subject: sync %d\r\nMessage-ID: <sync%d@t>\r\n\r\n" % (i, i) + ("line %d\r\n" % i) * 200
        c.send(body + ".\r\n")
        code, lines = c.reply()
        assert code == 250, lines
    c.cmd("QUIT")
    c.close()


class SyncModeTest(unittest.TestCase):
    def setUp(self):
        if shutil.which("strace") is None:
            self.skipTest("strace is not installed (setup.sh test installs it)")

    def run_on(self, mkfs_opts, extra):
        """Delivers MESSAGES messages under strace on a fresh ext4; returns
        (log, {message file name: [(call, path), ...] in order})."""
        d = Daemon(dict({"delivery.fsync": "true"}, **extra))
        fs = Ext4Image(d.mail, mkfs_opts)
        trace = os.path.join(d.dir, "strace.out")
        d.wrap = ["strace", "-f", "-qq", "-y", "-o", trace,
                  "-e", "trace=fsync,fdatasync,sync_file_range,rename,renameat,renameat2"]
        pid = None
        try:
            d.start()
            # d.proc is strace: a SIGTERM to it detaches and leaves lmtpd
            # running, so lmtpd is stopped by its own pid (strace then ends)
            pid = int(re.search(r"lmtpd\[(\d+)\]", d.read_log()).group(1))
            deliver(d, MESSAGES)
            os.kill(pid, signal.SIGTERM)
            d.proc.wait(30)
            files = os.listdir(os.path.join(d.maildir(RCPT), "new"))
            self.assertEqual(len(files), MESSAGES)
            for name in files:
                with open(os.path.join(d.maildir(RCPT), "new", name), "rb") as f:
                    self.assertIn(b"line ", f.read())
            with open(trace) as f:
                calls = f.read().splitlines()
            return d.read_log(), files, calls
        finally:
            if pid is not None and os.path.exists("/proc/%d" % pid):
                os.kill(pid, signal.SIGKILL)
            d.stop()
            fs.close()
            d.cleanup()

    def calls_of(self, calls, name):
        """The (call, first path) of each line naming the file @name (its
        base, before ",S="), in order."""
        base = name.split(",S=")[0]
        out = []
        for line in calls:
            m = re.match(r"\d+\s+(\w+)\((.*)", line)
            if m and base in m.group(2):
                out.append((m.group(1), m.group(2)))
        return out

    def dir_fsyncs(self, calls):
        return [c for c in calls if re.search(r"\bfsync\(\d+</[^>]*/Maildir/new>\)", c)]

    def test_one_commit_on_ext4_with_journal(self):
        log, files, calls = self.run_on([], {})
        self.assertIn("one commit per Maildir delivery", log)
        for name in files:
            seq = [c for c, _ in self.calls_of(calls, name)]
            self.assertEqual(seq[0], "sync_file_range", (name, seq))
            self.assertIn(seq[1], ("rename", "renameat", "renameat2"), (name, seq))
            self.assertEqual(seq[2:], ["fsync"], (name, seq))
            self.assertIn("/Maildir/new/", self.calls_of(calls, name)[2][1])
        self.assertEqual(self.dir_fsyncs(calls), [], "new/ was fsynced")

    def check_two_step(self, log, files, calls):
        for name in files:
            seq = self.calls_of(calls, name)
            self.assertEqual([c for c, _ in seq][:1], ["fsync"], (name, seq))
            self.assertIn("/Maildir/tmp/", seq[0][1])
            self.assertIn(seq[1][0], ("rename", "renameat", "renameat2"), (name, seq))
            self.assertNotIn("sync_file_range", [c for c, _ in seq])
        self.assertGreaterEqual(len(self.dir_fsyncs(calls)), MESSAGES)

    def test_two_step_without_journal(self):
        log, files, calls = self.run_on(["-O", "^has_journal"], {})
        self.assertIn("Maildir deliveries fsync the file and the directory", log)
        self.check_two_step(log, files, calls)

    def test_two_step_when_asked(self):
        log, files, calls = self.run_on([], {"delivery.sync_mode": "two-step"})
        self.assertNotIn("one commit per Maildir delivery", log)
        self.check_two_step(log, files, calls)

    def test_bad_value_refused(self):
        d = Daemon({"delivery.sync_mode": "sometimes"})
        try:
            r = subprocess.run([LMTPD, "-c", d.conf, "--check-config"], capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("sync_mode", r.stderr + r.stdout)
        finally:
            d.cleanup()


if __name__ == "__main__":
    main()
