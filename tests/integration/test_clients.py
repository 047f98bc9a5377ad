"""Real clients and readers against the built lmtpd: swaks, Postfix's
smtp-source -L, Dovecot's imap reading the Maildir, and a 50 MB message
with lmtpd's peak memory measured."""

import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from lmtptest import Daemon, dotstuff, main, strip_trace


def tool(name, *dirs):
    for d in dirs + ("/usr/sbin", "/usr/bin", "/usr/lib/dovecot"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    raise AssertionError("%s is not installed (run the README's test command, it installs it)" % name)


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


class Clients(unittest.TestCase):
    def setUp(self):
        self.d = Daemon().start()

    def tearDown(self):
        self.d.cleanup()

    def test_swaks_tcp_and_unix(self):
        swaks = tool("swaks")
        for server in (["--server", "127.0.0.1:%d" % self.d.port], ["--socket", self.d.sock]):
            p = subprocess.run([swaks, "--protocol", "LMTP", *server, "--from", "s@example.net",
                                "--to", "joe@example.org,ann@example.org",
                                "--header", "Subject: swaks test", "--body", "line one\n.dotted\nend"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual(len(re.findall(r"<-  250 2\.0\.0 <\S+> Saved", p.stdout)), 2, p.stdout)
        for rcpt in ("joe@example.org", "ann@example.org"):
            msgs = self.d.messages(rcpt)
            self.assertEqual(len(msgs), 2)
            for name, data in msgs:
                self.assertIn(b"\n\nline one\n.dotted\nend\n", data)
                self.assertIn(b"Subject: swaks test\n", data)

    def test_smtp_source_sessions_and_recipients(self):
        smtp_source = tool("smtp-source")
        sessions, messages, rcpts, size = 4, 40, 3, 3000
        p = subprocess.run([smtp_source, "-L", "-s", str(sessions), "-m", str(messages),
                            "-r", str(rcpts), "-l", str(size), "-f", "s@example.net",
                            "-t", "bench@example.org", "127.0.0.1:%d" % self.d.port],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        bodies = set()
        for local in ["bench"] + ["%dbench" % i for i in range(2, rcpts + 1)]:
            msgs = self.d.messages("%s@example.org" % local)
            self.assertEqual(len(msgs), messages, local)
            ids = set()
            for name, data in msgs:
                rest = strip_trace(data)
                head, body = rest.split(b"\n\n", 1)
                ids.add(re.search(rb"Message-Id: (\S+)", head).group(1))
                bodies.add(body)
                m = re.search(r",S=(\d+),W=(\d+)$", name)
                self.assertEqual(int(m.group(1)), len(data))
            self.assertEqual(len(ids), messages, "a message twice or missing in " + local)
        # the same payload every time, complete
        self.assertEqual(len(bodies), 1)
        body = bodies.pop()
        self.assertGreaterEqual(len(body), size - 100)
        self.assertTrue(body.endswith(b"X\n"))
        self.assertEqual(self.d.messages("bench@example.org", "tmp"), [])

    def test_dovecot_reads_the_maildir(self):
        imap = tool("imap", "/usr/lib/dovecot")
        subjects = ["first", "second with .dot", "third"]
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        for s in subjects:
            c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
            self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
            c.send(dotstuff(("Subject: %s\r\nMessage-ID: <%s@t>\r\n\r\nbody of %s\r\n.\r\n..x\r\n"
                             % (s, s.split()[0], s)).encode()))
            self.assertTrue(c.text().startswith("250"))
        files = {name: data for name, data in self.d.messages("joe@example.org")}
        # Dovecot refuses to run as root: read a copy owned by an unprivileged user
        work = tempfile.mkdtemp(prefix="dovecot-read-")
        maildir = os.path.join(work, "Maildir")
        shutil.copytree(self.d.maildir("joe@example.org"), maildir)
        if os.geteuid() == 0:
            user, group = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
            for root, dirs, fnames in os.walk(work):
                for n in dirs + fnames + [""]:
                    shutil.chown(os.path.join(root, n), user, group)
        else:
            user, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
        conf = os.path.join(work, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("log_path = /dev/stderr\nssl = no\nfirst_valid_uid = 0\n"
                    "mail_location = maildir:%s:INDEX=MEMORY\nmail_uid = %s\nmail_gid = %s\n"
                    % (maildir, user, group))
        script = ("a SELECT INBOX\r\nb FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"
                  "c FETCH 2 BODY.PEEK[TEXT]\r\nd LOGOUT\r\n")
        p = subprocess.run([imap, "-c", conf], input=script.encode(), capture_output=True, timeout=60,
                           env={"USER": "joe", "HOME": work, "PATH": os.environ.get("PATH", "")})
        out = p.stdout.decode("utf-8", "replace")
        shutil.rmtree(work, ignore_errors=True)
        self.assertIn("* 3 EXISTS", out, out + p.stderr.decode())
        for s in subjects:
            self.assertIn("Subject: %s\r\n" % s, out)
        # Dovecot's size is the ,W= size (CRLF), and the body comes back unstuffed
        sizes = sorted(int(x) for x in re.findall(r"RFC822\.SIZE (\d+)", out))
        self.assertEqual(sizes, sorted(int(re.search(r",W=(\d+)", n).group(1)) for n in files))
        self.assertIn("body of second with .dot\r\n.\r\n..x\r\n", out)
        self.assertIn("c OK", out)

    def test_50mb_message_memory(self):
        pid = self.d.proc.pid
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        # warm up: one small delivery so thread pools and buffers exist
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
        [c.code() for _ in range(3)]
        c.send(dotstuff(b"Subject: small\r\n\r\nx\r\n"))
        self.assertTrue(c.text().startswith("250"))
        before = vm_hwm_kb(pid)
        line = b"0123456789" * 7 + b"abcdefg\r\n"  # 79 bytes with CRLF
        nlines = 50 * 1000 * 1000 // len(line) + 1
        c.send("MAIL FROM:<s@example.net> SIZE=%d\r\nRCPT TO:<ann@example.org>\r\n"
               "RCPT TO:<bob@example.org>\r\nDATA\r\n" % (nlines * len(line)))
        self.assertEqual([c.code() for _ in range(4)], [250, 250, 250, 354])
        c.send(b"Subject: big\r\n\r\n")
        chunk = line * 10000
        for _ in range(nlines // 10000):
            c.send(chunk)
        c.send(line * (nlines % 10000))
        c.send(b".\r\n")
        c.s.settimeout(120)
        self.assertTrue(c.text().startswith("250"))
        self.assertTrue(c.text().startswith("250"))
        after = vm_hwm_kb(pid)
        growth = after - before
        print("# 50 MB message: peak RSS %d kB -> %d kB (+%d kB)" % (before, after, growth))
        self.assertLess(growth, 10 * 1024)
        for rcpt in ("ann@example.org", "bob@example.org"):
            (name, data), = self.d.messages(rcpt)
            body = strip_trace(data).split(b"\n\n", 1)[1]
            self.assertEqual(len(body), nlines * (len(line) - 1))
            lf_line = line.replace(b"\r\n", b"\n")
            self.assertEqual(body[:len(lf_line)], lf_line)
            self.assertEqual(body[-len(lf_line):], lf_line)


if __name__ == "__main__":
    main()
