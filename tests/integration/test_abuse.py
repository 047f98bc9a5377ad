"""Hostile clients (issue 7): a thousand concurrent sessions, slowloris in
commands and in DATA, a recipient flood, a 1 GB message announced by SIZE
and one streamed without it, NUL / bare CR / bare LF, pipelined garbage,
megabyte header lines and deeply nested MIME.  After each, the server is
asked to deliver again and must."""

import os
import random
import resource
import socket
import subprocess
import threading
import time
import unittest

from lmtptest import Daemon, dotstuff, main, own

DOMAIN = "abuse.example"
ROOT = os.geteuid() == 0


class Base(unittest.TestCase):
    extra = {}

    def setUp(self):
        self.d = Daemon(dict(self.extra)).start()

    def tearDown(self):
        self.d.cleanup()

    def session(self):
        c = self.d.connect(timeout=30)
        self.assertEqual(c.code(), 220)
        c.send("LHLO abuse\r\n")
        c.reply()
        return c

    def deliver(self, rcpt="ok@" + DOMAIN, data=b"Subject: after\n\nstill here\n"):
        c = self.session()
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt)
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        c.send(dotstuff(data))
        code = c.text()
        c.close()
        return code

    def user_script(self, local, text):
        """The Sieve script of local@DOMAIN, owned as an admin would."""
        script = os.path.join(self.d.mail, DOMAIN, local, ".dovecot.sieve")
        os.makedirs(os.path.dirname(script))
        for p in (os.path.join(self.d.mail, DOMAIN), os.path.dirname(script)):
            own(p)
        with open(script, "w") as f:
            f.write(text)

    def assert_serving(self):
        n = len(self.d.messages("ok@" + DOMAIN))
        self.assertRegex(self.deliver(), r"^250 ")
        self.assertEqual(len(self.d.messages("ok@" + DOMAIN)), n + 1)


class Sessions(Base):
    extra = {"server.max_sessions": "1000"}

    def test_thousand_concurrent_sessions(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
        held = []
        try:
            for _ in range(1000):
                s = socket.create_connection(("127.0.0.1", self.d.port), timeout=30)
                held.append(s)
            for s in held:
                self.assertTrue(s.recv(512).startswith(b"220 "))
            extra = self.d.connect()
            self.assertRegex(extra.text(), r"^421 4\.3\.2 lmtp\.test Too many connections")
            self.assertTrue(extra.closed())
            # all thousand are alive and answer
            for s in held:
                s.sendall(b"NOOP\r\n")
            for s in held:
                self.assertTrue(s.recv(512).startswith(b"250 "))
            # one of them delivers
            s = held[500]
            s.sendall(b"LHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<ok@%s>\r\nDATA\r\n" % DOMAIN.encode())
            buf = b""
            while buf.count(b"\r\n") < 3 or not buf.endswith(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n"):
                buf += s.recv(4096)
            s.sendall(dotstuff(b"Subject: one of 1000\n\nbody\n"))
            self.assertTrue(s.recv(512).startswith(b"250 "))
            rss = int(open("/proc/%d/statm" % self.d.proc.pid).read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            print("# 1000 sessions: lmtpd RSS %.1f MB" % (rss / 1e6))
        finally:
            for s in held:
                s.close()
        time.sleep(0.5)
        self.assert_serving()


class Slow(Base):
    extra = {"server.idle_timeout": "2", "limits.min_data_rate": "1000"}

    def trickle(self, c, data, interval):
        """Sends @data a few bytes at a time until the server hangs up;
        returns seconds until then."""
        start = time.time()
        try:
            for i in range(0, len(data), 3):
                c.send(data[i:i + 3])
                time.sleep(interval)
                if time.time() - start > 30:
                    break
        except OSError:
            pass
        return time.time() - start

    def test_slowloris_command(self):
        c = self.session()
        start = time.time()
        # one command, a few bytes every 0.3 s: each read is not progress
        t = threading.Thread(target=self.trickle, args=(c, b"NOOP" + b" " * 200 + b"\r\n", 0.3), daemon=True)
        t.start()
        self.assertRegex(c.text(), r"^421 4\.4\.2 lmtp\.test Idle timeout")
        self.assertTrue(c.closed())
        self.assertLess(time.time() - start, 4)
        self.assert_serving()

    def test_slowloris_data(self):
        c = self.session()
        c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<slow@%s>\r\nDATA\r\n" % DOMAIN)
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        start = time.time()
        # whole lines, but 10 bytes/s against a minimum of 1000
        t = threading.Thread(target=self.trickle, args=(c, b"Subject: x\r\n\r\n" + b"ab\r\n" * 5000, 0.3),
                             daemon=True)
        t.start()
        self.assertRegex(c.text(), r"^421 4\.4\.2 lmtp\.test Timeout waiting for data")
        self.assertTrue(c.closed())
        self.assertLess(time.time() - start, 5)
        self.assertEqual(self.d.messages("slow@" + DOMAIN), [])
        self.assertRegex(self.d.read_log(), r"data timeout after \d+ bytes")
        self.assert_serving()

    def test_fast_client_is_not_cut(self):
        # 3 MB in well under the allowance of idle_timeout + size/min_data_rate
        self.assertRegex(self.deliver(data=b"Subject: big\n\n" + (b"y" * 78 + b"\n") * 40000), r"^250 ")


class Floods(Base):
    extra = {"limits.max_recipients": "100"}

    def test_recipient_flood_cut_at_the_limit(self):
        c = self.session()
        rcpts = "".join("RCPT TO:<u%d@%s>\r\n" % (i, DOMAIN) for i in range(5000))
        c.send("MAIL FROM:<a@example.net>\r\n" + rcpts)
        self.assertEqual(c.code(), 250)
        codes = []
        try:
            for _ in range(5000):
                codes.append(c.text())
        except EOFError:
            pass
        self.assertTrue(all(x.startswith("250 ") for x in codes[:100]))
        self.assertTrue(codes[100].startswith("452 4.5.3"), codes[100])
        # every one past the limit is refused, cheaply; a 452 is not a
        # protocol error (an MTA sends the rest in the next transaction)
        self.assertEqual(len(codes), 5000)
        self.assertTrue(all(x.startswith("452 4.5.3") for x in codes[100:]))
        c.send("DATA\r\n")
        self.assertEqual(c.code(), 354)
        c.send(dotstuff(b"Subject: flood\n\nx\n"))
        self.assertTrue(all(c.text().startswith("250 ") for _ in range(100)))
        self.assertEqual(len(self.d.messages("u99@" + DOMAIN)), 1)
        self.assertEqual(self.d.messages("u100@" + DOMAIN), [])
        self.assert_serving()

    def test_1gb_refused_at_size(self):
        c = self.session()
        self.assertRegex(c.cmd("MAIL FROM:<a@example.net> SIZE=1073741824"), r"^552 5\.3\.4 ")
        self.assertRegex(c.cmd("MAIL FROM:<a@example.net> SIZE=99999999999999999999999"), r"^55[25] ")
        self.assertRegex(c.cmd("NOOP"), r"^250 ")

    def test_1gb_streamed_without_size(self):
        if ROOT:
            # the spool on a 96 MB tmpfs: writing past the limit would fill it
            spool = os.path.join(self.d.dir, "spool")
            self.d.stop()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", spool], check=True)
            own(spool)
            self.d.start()
        try:
            c = self.session()
            c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<big@%s>\r\nDATA\r\n" % DOMAIN)
            self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
            chunk = (b"z" * 998 + b"\r\n") * 1024   # 1 MB
            peak = 0
            start = time.time()
            c.send(b"Subject: 1 GB\r\n\r\n")
            for i in range(1024):
                c.send(chunk)
                if ROOT and i % 64 == 0:
                    st = os.statvfs(spool)
                    peak = max(peak, (st.f_blocks - st.f_bfree) * st.f_frsize)
            c.send(b".\r\n")
            self.assertRegex(c.text(), r"^552 5\.3\.4 Message too big")
            print("# 1 GB streamed in %.1f s, spool peak %.1f MB" % (time.time() - start, peak / 1e6))
            self.assertLess(peak, 60e6)
            self.assertEqual(self.d.messages("big@" + DOMAIN), [])
            self.assertRegex(c.cmd("NOOP"), r"^250 ")
            self.assert_serving()
        finally:
            if ROOT:
                self.d.stop()
                subprocess.run(["umount", "-l", spool], check=False)


class Bytes(Base):
    def test_nul_bare_cr_bare_lf(self):
        c = self.d.connect()
        self.assertEqual(c.code(), 220)
        # a whole session with bare LF line ends, as some clients send
        c.send(b"LHLO lf\nMAIL FROM:<a@example.net>\nRCPT TO:<bytes@%s>\nDATA\n" % DOMAIN.encode())
        c.reply()
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        body = b"Subject: bytes\n\nnul:\x00:end\ncr:\r:end\nlone cr at end\r\n..dot\nlast\n"
        c.send(body + b".\n")
        self.assertRegex(c.text(), r"^250 ")
        (_, data), = self.d.messages("bytes@" + DOMAIN)
        self.assertTrue(data.endswith(b"nul:\x00:end\ncr:\r:end\nlone cr at end\n.dot\nlast\n"), data[-80:])
        # NUL and bare CR in a command are refused, the session goes on
        self.assertRegex(c.cmd("NOOP\x00x"), r"^500 5\.5\.2")
        self.assertRegex(c.cmd("NO\rOP"), r"^500 5\.5\.2")
        self.assertRegex(c.cmd("NOOP"), r"^250 ")

    def test_pipelined_garbage(self):
        rnd = random.Random(4037)
        for round_ in range(5):
            c = self.d.connect()
            self.assertEqual(c.code(), 220)
            junk = bytes(rnd.getrandbits(8) for _ in range(256 * 1024))
            if round_ % 2:
                # garbage that looks like commands
                junk = b"".join(rnd.choice([b"MAIL FROM:<", b"RCPT TO:<>", b"DATA", b"BDAT 5", b"\r\n", b"\n",
                                            b"LHLO", b" ", b"BDAT 99999999999999999999", b"RSET"])
                                for _ in range(50000))
            try:
                c.send(junk)
            except OSError:
                pass
            self.assertTrue(c.closed(10), "session not ended after garbage")
            c.close()
        self.assert_serving()

    def test_megabyte_header_lines(self):
        self.user_script("hdr", 'require ["fileinto", "editheader"];\n'
                         'addheader "X-Seen" "yes";\n'
                         'if header :contains "subject" "needle" { fileinto "Found"; }\n')
        subject = b"Subject: " + b"hay " * 200000 + b"needle\n"   # 800 KB, one line
        data = subject + b"X-Other: " + b"o" * 500000 + b"\n\nbody\n"
        self.assertRegex(self.deliver("hdr@" + DOMAIN, data), r"^250 ")
        (_, got), = self.d.messages("hdr@" + DOMAIN, folder=".Found")
        self.assertIn(subject, got)
        self.assertIn(b"X-Seen: yes\n", got)
        # a line over max_data_line_length (1 MB) is refused, nothing stored
        self.assertRegex(self.deliver("hdr@" + DOMAIN, b"Subject: " + b"h" * (1 << 21) + b"\n\nx\n"),
                         r"^500 5\.5\.2 Message line too long")
        self.assertEqual(len(self.d.messages("hdr@" + DOMAIN)), 0)
        self.assert_serving()

    def test_deeply_nested_mime(self):
        self.user_script("deep", 'require ["fileinto", "body"];\n'
                          'if body :text :contains "bottom" { fileinto "Deep"; }\n')
        depth = 5000
        parts = [b"Subject: deep\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b0\"\n\n"]
        for i in range(1, depth):
            parts.append(b"--b%d\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n" % (i - 1, i))
        parts.append(b"--b%d\nContent-Type: text/plain\n\nbottom\n" % (depth - 1))
        for i in reversed(range(depth)):
            parts.append(b"--b%d--\n" % i)
        data = b"".join(parts)
        self.assertRegex(self.deliver("deep@" + DOMAIN, data), r"^250 ")
        stored = self.d.messages("deep@" + DOMAIN) + self.d.messages("deep@" + DOMAIN, folder=".Deep")
        self.assertEqual(len(stored), 1)
        self.assertTrue(stored[0][1].endswith(data[-200:]))
        self.assert_serving()


if __name__ == "__main__":
    main()
