"""RFC 2033 behaviour of the built lmtpd over real sockets: replies on the
wire and bytes on disk."""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time
import unittest

from lmtptest import Daemon, LMTPD, dotstuff, main, own, strip_trace

BODY = (b"From: Sender <s@example.net>\r\nTo: joe@example.org\r\nSubject: hello\r\n"
        b"Message-ID: <1@example.net>\r\n\r\nHello Joe.\r\n")


class Base(unittest.TestCase):
    extra = None
    users = None

    def setUp(self):
        self.d = Daemon(extra=self.extra, users=self.users).start()

    def tearDown(self):
        self.d.cleanup()

    def lhlo(self, c):
        code, lines = c.reply()
        self.assertEqual(code, 220)
        c.send("LHLO client.test\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250)
        return lines


class Protocol(Base):
    def test_greeting_and_capabilities(self):
        c = self.d.connect()
        lines = self.lhlo(c)
        self.assertEqual(lines[0], "250-lmtp.test")
        caps = [l[4:] for l in lines[1:]]
        for cap in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING", "SMTPUTF8"):
            self.assertIn(cap, caps)
        self.assertTrue(any(re.match(r"SIZE \d+$", x) for x in caps))

    def test_helo_ehlo_refused(self):
        c = self.d.connect()
        self.assertEqual(c.code(), 220)
        self.assertTrue(c.cmd("HELO x").startswith("500 5.5.1"))
        self.assertTrue(c.cmd("EHLO x").startswith("500 5.5.1"))
        self.assertTrue(c.cmd("FOO bar").startswith("500 5.5.1"))
        self.assertTrue(c.cmd("LHLO").startswith("501 5.5.4"))

    def test_bad_sequence(self):
        c = self.d.connect()
        self.assertEqual(c.code(), 220)
        self.assertTrue(c.cmd("MAIL FROM:<a@b.org>").startswith("503 5.5.1"))
        c.send("LHLO x\r\n")
        c.reply()
        self.assertTrue(c.cmd("RCPT TO:<joe@example.org>").startswith("503 5.5.1"))
        self.assertTrue(c.cmd("DATA").startswith("503 5.5.1"))
        self.assertTrue(c.cmd("MAIL FROM:<a@b.org>").startswith("250 2.1.0"))
        self.assertTrue(c.cmd("MAIL FROM:<a@b.org>").startswith("503 5.5.1"))
        self.assertTrue(c.cmd("DATA").startswith("503 5.5.1"))
        self.assertTrue(c.cmd("RSET").startswith("250 2.0.0"))
        self.assertTrue(c.cmd("NOOP").startswith("250 2.0.0"))
        self.assertTrue(c.cmd("VRFY joe").startswith("252 "))
        self.assertTrue(c.cmd("HELP").startswith("214 "))
        self.assertTrue(c.cmd("QUIT").startswith("221 2.0.0"))
        self.assertTrue(c.closed())

    def test_syntax_errors(self):
        c = self.d.connect()
        self.lhlo(c)
        self.assertTrue(c.cmd("MAIL FROM:a@b.org").startswith("501 5.5.4"))
        self.assertTrue(c.cmd("MAIL FROM:<a@b.org> SIZE=abc").startswith("501 5.5.4"))
        self.assertTrue(c.cmd("MAIL FROM:<a@b.org> BODY=9BIT").startswith("501 5.5.4"))
        self.assertTrue(c.cmd("MAIL FROM:<a@b.org> FOO=1").startswith("555 5.5.4"))
        self.assertTrue(c.cmd("MAIL FROM:<a..b@b.org>").startswith("501 5.1.7"))
        self.assertTrue(c.cmd("MAIL FROM:<>").startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<>").startswith("501 5.1.3"))
        self.assertTrue(c.cmd("RCPT TO:<joe@exa mple.org>").startswith("501"))
        self.assertTrue(c.cmd("RCPT TO:<joe@example.org> BOGUS=1").startswith("555 5.5.4"))
        self.assertTrue(c.cmd("RSET x").startswith("501 5.5.4"))
        self.assertTrue(c.cmd("DATA x").startswith("501 5.5.4"))

    def test_mail_params_accepted(self):
        c = self.d.connect()
        self.lhlo(c)
        r = c.cmd("MAIL FROM:<s@example.net> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=abc+2B1")
        self.assertTrue(r.startswith("250 2.1.0"), r)
        r = c.cmd("RCPT TO:<joe@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;joe+40example.org")
        self.assertTrue(r.startswith("250 2.1.5"), r)

    def test_command_line_too_long(self):
        c = self.d.connect()
        self.lhlo(c)
        self.assertTrue(c.cmd("NOOP " + "x" * 5000).startswith("500 5.5.2"))
        # the session goes on
        self.assertTrue(c.cmd("NOOP").startswith("250"))

    def test_nul_in_command(self):
        c = self.d.connect()
        self.lhlo(c)
        c.send(b"NOOP \x00x\r\n")
        self.assertTrue(c.text().startswith("500 5.5.2"))

    def test_postmaster_accepted(self):
        c = self.d.connect()
        self.lhlo(c)
        c.cmd("MAIL FROM:<s@example.net>")
        self.assertTrue(c.cmd("RCPT TO:<Postmaster>").startswith("250"))


class Delivery(Base):
    users = ["joe@example.org", "ann@example.org", "bob@example.org"]

    def test_smtplib_lmtp_unix_socket(self):
        # smtplib.LMTP.sendmail reads one reply after DATA, so one recipient
        # per transaction (several: see the TCP test, which reads them all)
        with smtplib.LMTP(self.d.sock) as s:
            for rcpt in ("joe@example.org", "ann@example.org"):
                self.assertEqual(s.sendmail("s@example.net", [rcpt], BODY), {})
        for rcpt in ("joe@example.org", "ann@example.org"):
            msgs = self.d.messages(rcpt)
            self.assertEqual(len(msgs), 1)
            name, data = msgs[0]
            self.assertEqual(strip_trace(data), BODY.replace(b"\r\n", b"\n"))
            self.assertIn(b"Delivered-To: %s\n" % rcpt.encode(), data)
            self.assertTrue(data.startswith(b"Return-Path: <s@example.net>\n"))
            m = re.search(r",S=(\d+),W=(\d+)$", name)
            self.assertEqual(int(m.group(1)), len(data))
            self.assertEqual(int(m.group(2)), len(data) + data.count(b"\n"))

    def test_smtplib_lmtp_tcp_with_unknown_user(self):
        s = smtplib.LMTP("127.0.0.1", self.d.port)
        s.ehlo_or_helo_if_needed()
        s.mail("s@example.net")
        self.assertEqual(s.rcpt("joe@example.org")[0], 250)
        code, msg = s.rcpt("nobody@example.org")
        self.assertEqual(code, 550)
        self.assertIn(b"5.1.1", msg)
        self.assertEqual(s.rcpt("bob@example.org")[0], 250)
        s.putcmd("data")
        self.assertEqual(s.getreply()[0], 354)
        s.send(dotstuff(BODY))
        # exactly one reply per accepted recipient, in order
        r1 = s.getreply()
        r2 = s.getreply()
        self.assertEqual(r1[0], 250)
        self.assertIn(b"joe@example.org", r1[1])
        self.assertEqual(r2[0], 250)
        self.assertIn(b"bob@example.org", r2[1])
        s.quit()
        self.assertEqual(len(self.d.messages("joe@example.org")), 1)
        self.assertEqual(len(self.d.messages("bob@example.org")), 1)
        self.assertFalse(os.path.exists(self.d.maildir("nobody@example.org")))

    def test_data_with_no_valid_recipient(self):
        c = self.d.connect()
        self.lhlo(c)
        c.cmd("MAIL FROM:<s@example.net>")
        self.assertTrue(c.cmd("RCPT TO:<nobody@example.org>").startswith("550 5.1.1"))
        self.assertTrue(c.cmd("DATA").startswith("503 5.5.1"))

    def test_dot_stuffing_round_trip(self):
        body = (b"Subject: dots\r\n\r\n.\r\n..\r\n...leading dots\r\n"
                b" .not at start\r\n.\r\n.end\r\nlast line without dot\r\n")
        c = self.d.connect()
        self.lhlo(c)
        c.cmd("MAIL FROM:<s@example.net>")
        c.cmd("RCPT TO:<joe@example.org>")
        self.assertEqual(c.cmd("DATA")[:3], "354")
        c.send(dotstuff(body))
        self.assertTrue(c.text().startswith("250 2.0.0"))
        (name, data), = self.d.messages("joe@example.org")
        self.assertEqual(strip_trace(data), body.replace(b"\r\n", b"\n"))

    def test_binary_bytes_and_bare_cr(self):
        body = b"Subject: bin\r\n\r\n\x00\x01\xff\xfe bare\rcr\r\n\tend\r\n"
        c = self.d.connect()
        self.lhlo(c)
        c.cmd("MAIL FROM:<s@example.net> BODY=8BITMIME")
        c.cmd("RCPT TO:<joe@example.org>")
        c.cmd("DATA")
        c.send(dotstuff(body))
        self.assertTrue(c.text().startswith("250"))
        (name, data), = self.d.messages("joe@example.org")
        self.assertEqual(strip_trace(data), body.replace(b"\r\n", b"\n"))

    def test_pipelined_transactions(self):
        c = self.d.connect()
        self.assertEqual(c.code(), 220)
        batch = "LHLO x\r\n"
        for i in range(3):
            batch += "MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\n"
            batch += "RCPT TO:<nobody@example.org>\r\nRCPT TO:<ann@example.org>\r\nDATA\r\n"
        # all commands up to the first DATA in one write (RFC 2920)
        first, rest = batch.split("DATA\r\n", 1)
        c.send(first + "DATA\r\n")
        self.assertEqual(c.code(), 250)  # LHLO
        codes = [c.code() for _ in range(4)]
        self.assertEqual(codes, [250, 250, 550, 250])
        self.assertEqual(c.code(), 354)
        # the message, then the next transaction in the same write
        msg = dotstuff(b"Subject: p1\r\n\r\nbody 1\r\n")
        second = rest.split("DATA\r\n", 1)[0]
        c.send(msg + second.encode() + b"DATA\r\n")
        self.assertEqual([c.code(), c.code()], [250, 250])  # joe, ann
        self.assertEqual([c.code() for _ in range(4)], [250, 250, 550, 250])
        self.assertEqual(c.code(), 354)
        c.send(dotstuff(b"Subject: p2\r\n\r\nbody 2\r\n") + b"RSET\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual([c.code() for _ in range(5)], [250, 250, 250, 250, 221])
        self.assertEqual(len(self.d.messages("joe@example.org")), 2)
        self.assertEqual(len(self.d.messages("ann@example.org")), 2)

    def test_bdat(self):
        body = b"Subject: chunks\r\n\r\n.dot line stays\r\nsecond\r\n"
        c = self.d.connect()
        self.lhlo(c)
        c.send("MAIL FROM:<s@example.net> BODY=BINARYMIME\r\nRCPT TO:<joe@example.org>\r\n"
               "RCPT TO:<ann@example.org>\r\n")
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 250])
        self.assertTrue(c.cmd("DATA").startswith("503"))  # BINARYMIME needs BDAT
        a, b = body[:20], body[20:]
        c.send(b"BDAT %d\r\n%s" % (len(a), a))
        self.assertTrue(c.text().startswith("250 2.0.0"))
        c.send(b"BDAT %d LAST\r\n%s" % (len(b), b))
        r1, r2 = c.text(), c.text()
        self.assertTrue(r1.startswith("250 2.0.0") and "joe@" in r1, r1)
        self.assertTrue(r2.startswith("250 2.0.0") and "ann@" in r2, r2)
        for rcpt in ("joe@example.org", "ann@example.org"):
            (name, data), = self.d.messages(rcpt)
            self.assertEqual(strip_trace(data), body.replace(b"\r\n", b"\n"))
        # BDAT with nothing to deliver to: one error, data consumed, still in sync
        c.send(b"BDAT 5 LAST\r\nhello")
        self.assertTrue(c.text().startswith("503"))
        self.assertTrue(c.cmd("NOOP").startswith("250"))
        # a broken chunk size cannot be followed: the connection ends
        c.send(b"BDAT x\r\n")
        self.assertTrue(c.text().startswith("501"))
        self.assertTrue(c.text().startswith("421"))
        self.assertTrue(c.closed())

    def test_bdat_zero_last_and_pipelined(self):
        c = self.d.connect()
        self.lhlo(c)
        body = b"Subject: z\r\n\r\nzero\r\n"
        c.send(b"MAIL FROM:<s@example.net>\r\nRCPT TO:<bob@example.org>\r\nBDAT %d\r\n%sBDAT 0 LAST\r\n"
               % (len(body), body))
        self.assertEqual([c.code() for _ in range(4)], [250, 250, 250, 250])
        (name, data), = self.d.messages("bob@example.org")
        self.assertEqual(strip_trace(data), body.replace(b"\r\n", b"\n"))

    def test_one_recipient_fails_others_delivered(self):
        # ann's Maildir path is blocked by a file: her delivery fails (4xx)
        os.makedirs(os.path.join(self.d.mail, "example.org", "ann"))
        own(os.path.join(self.d.mail, "example.org"))
        own(os.path.join(self.d.mail, "example.org", "ann"))
        with open(os.path.join(self.d.mail, "example.org", "ann", "Maildir"), "w") as f:
            f.write("not a directory")
        c = self.d.connect()
        self.lhlo(c)
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\nRCPT TO:<ann@example.org>\r\n"
               "RCPT TO:<bob@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(5)], [250, 250, 250, 250, 354])
        c.send(dotstuff(BODY))
        replies = [c.text() for _ in range(3)]
        self.assertTrue(replies[0].startswith("250 2.0.0"), replies)
        self.assertRegex(replies[1], r"^45\d 4\.\d\.\d")
        self.assertTrue(replies[2].startswith("250 2.0.0"), replies)
        self.assertEqual(len(self.d.messages("joe@example.org")), 1)
        self.assertEqual(len(self.d.messages("bob@example.org")), 1)
        self.assertTrue(c.cmd("NOOP").startswith("250"))

    def test_unsafe_recipients_refused(self):
        c = self.d.connect()
        self.lhlo(c)
        c.cmd("MAIL FROM:<s@example.net>")
        for rcpt in ('"../../etc"@example.org', '"a/b"@example.org', "a/b@example.org",
                     '"x\\\\y"@example.org', "joe@[1.2.3.4/..]"):
            r = c.cmd("RCPT TO:<%s>" % rcpt)
            self.assertRegex(r, r"^5\d\d 5\.\d\.\d", rcpt)
        self.assertEqual(os.listdir(self.d.dir).count("etc"), 0)


class CatchAll(Base):
    extra = {"limits.max_message_size": "64k", "limits.max_recipients": "3",
             "limits.max_data_line_length": "2000", "limits.max_errors": "5"}

    def test_size_at_mail(self):
        c = self.d.connect()
        lines = self.lhlo(c)
        self.assertIn("250-SIZE 65536", lines)
        self.assertTrue(c.cmd("MAIL FROM:<s@example.net> SIZE=70000").startswith("552 5.3.4"))
        self.assertTrue(c.cmd("MAIL FROM:<s@example.net> SIZE=60000").startswith("250"))

    def test_too_big_streamed(self):
        c = self.d.connect()
        self.lhlo(c)
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(4)], [250, 250, 250, 354])
        c.send(dotstuff(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 2000))
        self.assertTrue(c.text().startswith("552 5.3.4"))
        self.assertTrue(c.text().startswith("552 5.3.4"))
        self.assertTrue(c.cmd("NOOP").startswith("250"))
        self.assertEqual(self.d.messages("a@example.org"), [])

    def test_data_line_too_long(self):
        c = self.d.connect()
        self.lhlo(c)
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        c.send(dotstuff(b"Subject: long\r\n\r\n" + b"z" * 3000 + b"\r\n"))
        self.assertTrue(c.text().startswith("500 5.5.2"))
        self.assertEqual(self.d.messages("a@example.org"), [])

    def test_too_many_recipients(self):
        c = self.d.connect()
        self.lhlo(c)
        c.cmd("MAIL FROM:<s@example.net>")
        for i in range(3):
            self.assertTrue(c.cmd("RCPT TO:<u%d@example.org>" % i).startswith("250"))
        self.assertTrue(c.cmd("RCPT TO:<u9@example.org>").startswith("452 4.5.3"))

    def test_too_many_errors(self):
        c = self.d.connect()
        self.lhlo(c)
        for i in range(4):
            self.assertTrue(c.cmd("BOGUS").startswith("500"))
        c.send("BOGUS\r\n")
        self.assertTrue(c.text().startswith("500"))
        self.assertTrue(c.text().startswith("421"))
        self.assertTrue(c.closed())


class Xforward(Base):
    """XFORWARD (Postfix's lmtp_send_xforward_command): trusted peers only;
    the original client reaches the Received header; one transaction."""
    extra = {"server.xforward_hosts": "local, 192.0.2.0/24"}

    def test_trusted_unix_peer(self):
        c = self.d.connect(unix=True)
        lines = self.lhlo(c)
        self.assertIn("250-XFORWARD NAME ADDR PROTO HELO SOURCE IDENT PORT", lines)
        self.assertEqual(c.cmd("XFORWARD NAME=mx.origin.example ADDR=IPV6:2001:DB8::7 PROTO=ESMTP"),
                         "250 2.0.0 Ok")
        self.assertEqual(c.cmd("XFORWARD HELO=helo.origin.example SOURCE=REMOTE PORT=2525 IDENT=[UNAVAILABLE]"),
                         "250 2.0.0 Ok")
        self.assertTrue(c.cmd("XFORWARD ADDR=not-an-address").startswith("501 5.5.4"))
        self.assertTrue(c.cmd("XFORWARD BOGUS=1").startswith("501 5.5.4"))
        self.assertTrue(c.cmd("XFORWARD").startswith("501 5.5.4"))
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\n")
        self.assertEqual([c.code(), c.code()], [250, 250])
        self.assertTrue(c.cmd("XFORWARD NAME=late.example").startswith("503 5.5.1"))
        c.send("DATA\r\n")
        self.assertEqual(c.code(), 354)
        c.send(dotstuff(BODY))
        self.assertEqual(c.code(), 250)
        # the next transaction has the session's own identity again
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<ann@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        c.send(dotstuff(BODY))
        self.assertEqual(c.code(), 250)
        (_, data), = self.d.messages("joe@example.org")
        self.assertRegex(data, rb"\nReceived: from helo\.origin\.example \(mx\.origin\.example \[2001:db8::7\]\)\n")
        (_, data), = self.d.messages("ann@example.org")
        self.assertRegex(data, rb"\nReceived: from client\.test \(local\)\n")

    def test_xclient(self):
        c = self.d.connect(unix=True)
        lines = self.lhlo(c)
        self.assertIn("250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT", lines)
        self.assertTrue(c.cmd("XCLIENT ADDR=nonsense").startswith("501 5.5.4"))
        self.assertEqual(c.cmd("XCLIENT NAME=orig.example ADDR=192.0.2.9 HELO=orig-helo.example LOGIN=[UNAVAILABLE]"),
                         "220 lmtp.test LMTP opes-lmtpd ready")
        c.send("LHLO again.example\r\n")
        c.reply()
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        c.send(dotstuff(BODY))
        self.assertEqual(c.code(), 250)
        (_, data), = self.d.messages("joe@example.org")
        # LHLO after XCLIENT names the client's HELO from then on, as in Postfix
        self.assertRegex(data, rb"\nReceived: from again\.example \(orig\.example \[192\.0\.2\.9\]\)\n")
        # authorization stays with the real peer (the UNIX socket)
        self.assertEqual(c.cmd("XFORWARD ADDR=192.0.2.10"), "250 2.0.0 Ok")

    def test_untrusted_peer_refused(self):
        c = self.d.connect()  # 127.0.0.1 is not in xforward_hosts
        lines = self.lhlo(c)
        self.assertFalse(any("XFORWARD" in l for l in lines))
        self.assertTrue(c.cmd("XFORWARD ADDR=192.0.2.1").startswith("550 5.7.0"))
        self.assertTrue(c.cmd("XCLIENT ADDR=192.0.2.1").startswith("550 5.7.0"))

    def test_bad_setting_reported(self):
        self.d.write_config({"server.xforward_hosts": "10.0.0.0/8, nonsense"})
        p = subprocess.run([LMTPD, "-c", "lmtpd.conf", "--check-config"], cwd=self.d.dir, capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 78)
        self.assertRegex(p.stderr, r"\[server\] xforward_hosts: 'nonsense' is not an address or CIDR block")


class SocketActivation(unittest.TestCase):
    """systemd socket activation: systemd-socket-activate listens, starts
    lmtpd on the first connection and passes the sockets (LISTEN_FDS);
    they replace the configured listeners."""

    def test_listen_fds(self):
        tool = shutil.which("systemd-socket-activate")
        if tool is None:
            self.skipTest("systemd-socket-activate is not installed")
        d = Daemon()
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            sock = os.path.join(d.dir, "activated.sock")
            d.wrap = [tool, "-l", "127.0.0.1:%d" % port, "-l", sock]
            d.log = open(d.log_path, "wb")
            d.proc = subprocess.Popen(d.wrap + [LMTPD, "-c", "lmtpd.conf", "-d"], stdout=d.log,
                                      stderr=subprocess.STDOUT, cwd=d.dir)
            deadline = time.time() + 10
            while not os.path.exists(sock) and time.time() < deadline:
                time.sleep(0.05)
            os.chmod(sock, 0o666)
            d.port, d.sock = port, sock
            for unix in (False, True):
                c = d.connect(unix=unix)
                self.assertEqual(c.code(), 220)
                c.send("LHLO act\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
                c.reply()
                self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
                c.send(dotstuff(BODY + (b"over %s\r\n" % (b"unix" if unix else b"tcp"))))
                self.assertEqual(c.code(), 250)
                c.close()
            self.assertEqual(len(d.messages("joe@example.org")), 2)
            log = d.read_log()
            self.assertIn("listening on inet:127.0.0.1:%d (socket activation, descriptor 3)" % port, log)
            self.assertIn("(socket activation, descriptor 4)", log)
            # the configured listeners were not opened
            self.assertNotIn("listening on unix:run/lmtpd.sock", log)
        finally:
            d.cleanup()


class Metrics(Base):
    """Prometheus text on [server] metrics_listen, changing as mail flows;
    SIGUSR1 logs a one-line summary."""
    extra = {"server.metrics_listen": "inet:127.0.0.1:0"}

    def scrape(self):
        m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", self.d.read_log())
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.0 200 OK"))
        self.assertIn(b"Content-Type: text/plain; version=0.0.4", head)
        values = {}
        for line in body.decode().splitlines():
            if line.startswith("#"):
                self.assertRegex(line, r"^# (HELP|TYPE) lmtpd_[a-z_]+ ")
                continue
            name, value = line.rsplit(" ", 1)
            self.assertRegex(name, r'^lmtpd_[a-z_]+(\{[a-z]+="[^"]*"(,[a-z]+="[^"]*")*\})?$')
            values[name] = float(value)
        return values

    def test_per_service_callout_metrics(self):
        from lmtptest import Callout
        callout = Callout("* accept\n")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]
        self.d.cleanup()
        self.d = Daemon(extra={"server.metrics_listen": "inet:127.0.0.1:0",
                               "service up.servers": callout.endpoint,
                               "service down.servers": "inet:127.0.0.1:%d" % dead,
                               "service down.on_failure": "accept", "service down.connect_timeout": "300ms",
                               "rule all.match": "*", "rule all.services": "up, down"}).start()
        try:
            c = self.d.connect()
            self.lhlo(c)
            c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
            self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
            c.send(dotstuff(BODY))
            self.assertEqual(c.code(), 250)
            v = self.scrape()
            self.assertEqual(v['lmtpd_service_callout_seconds_count{service="up"}'], 1)
            self.assertEqual(v['lmtpd_service_callout_failures_total{service="up"}'], 0)
            self.assertEqual(v['lmtpd_service_callout_failures_total{service="down"}'], 1)
            self.assertEqual(v['lmtpd_service_callout_seconds_bucket{service="up",le="+Inf"}'], 1)
        finally:
            callout.stop()

    def test_prometheus_text_changes_as_mail_flows(self):
        before = self.scrape()
        self.assertEqual(before['lmtpd_deliveries_total{status="2xx"}'], 0)
        c = self.d.connect()
        self.lhlo(c)
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\nRCPT TO:<ann@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(4)], [250, 250, 250, 354])
        c.send(dotstuff(BODY))
        self.assertEqual([c.code(), c.code()], [250, 250])
        after = self.scrape()
        self.assertEqual(after['lmtpd_deliveries_total{status="2xx"}'], 2)
        self.assertEqual(after["lmtpd_transactions_total"], 1)
        self.assertEqual(after["lmtpd_received_bytes_total"], len(BODY))
        self.assertEqual(after["lmtpd_sessions_active"], 1)
        self.assertEqual(after['lmtpd_delivery_seconds_bucket{le="+Inf"}'], 2)
        self.assertEqual(after["lmtpd_delivery_seconds_count"], 2)
        self.d.signal(signal.SIGUSR1)
        deadline = time.time() + 5
        while "stats: " not in self.d.read_log() and time.time() < deadline:
            time.sleep(0.05)
        self.assertRegex(self.d.read_log(), r"stats: sessions=\d+ active=1 refused=0 transactions=1 delivered=2 "
                                            r"tempfailed=0 rejected=0 bytes=%d" % len(BODY))


class JsonLog(Base):
    extra = {"server.log_format": "json"}

    def test_one_json_object_per_line(self):
        import json
        c = self.d.connect()
        self.lhlo(c)
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        c.send(dotstuff(BODY + b"quote \" and \\ and \x01\r\n"))
        self.assertEqual(c.code(), 250)
        c.close()
        time.sleep(0.2)
        records = [json.loads(l) for l in self.d.read_log().splitlines() if l.startswith("{")]
        deliveries = [r for r in records if r.get("rcpt") == "joe@example.org"]
        self.assertEqual(len(deliveries), 1, records)
        d = deliveries[0]
        self.assertEqual((d["status"], d["dsn"], d["from"], d["level"]), (250, "2.0.0", "s@example.net", "info"))
        self.assertIsInstance(d["size"], int)
        self.assertIn("/new/", d["mailbox"])
        self.assertTrue(any("started" in r["message"] for r in records))


class StartTls(unittest.TestCase):
    """STARTTLS with OpenSSL: advertised only when a certificate is set,
    TLS 1.2 or later, state reset after the handshake, and commands
    pipelined behind STARTTLS dropped (CVE-2011-0411)."""

    def setUp(self):
        self.d = Daemon()
        self.cert = os.path.join(self.d.dir, "cert.pem")
        self.key = os.path.join(self.d.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=lmtp.test",
                        "-addext", "subjectAltName=DNS:lmtp.test,IP:127.0.0.1"],
                       check=True, capture_output=True)
        self.d.write_config({"server.tls_cert_file": self.cert, "server.tls_key_file": self.key})
        self.d.start()

    def tearDown(self):
        self.d.cleanup()

    def context(self):
        import ssl
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = False
        return ctx

    def test_smtplib_starttls(self):
        with smtplib.LMTP("127.0.0.1", self.d.port) as c:
            c.ehlo()
            self.assertTrue(c.has_extn("starttls"))
            code, _ = c.starttls(context=self.context())
            self.assertEqual(code, 220)
            c.ehlo()
            self.assertFalse(c.has_extn("starttls"))
            refused = c.sendmail("s@example.net", ["joe@example.org"], BODY)
            self.assertEqual(refused, {})
            # megabytes through the TLS read and write paths
            big = b"Subject: big\r\n\r\n" + (b"t" * 998 + b"\r\n") * 3000
            self.assertEqual(c.sendmail("s@example.net", ["ann@example.org"], big), {})
        (_, data), = self.d.messages("joe@example.org")
        self.assertTrue(data.endswith(b"Hello Joe.\n"))
        (_, data), = self.d.messages("ann@example.org")
        self.assertEqual(data.count(b"t" * 998 + b"\n"), 3000)
        self.assertRegex(self.d.read_log(), r"TLS established with 127\.0\.0\.1: TLSv1\.[23] ")

    def test_pipelined_commands_after_starttls_dropped(self):
        import ssl
        raw = socket.create_connection(("127.0.0.1", self.d.port), timeout=10)
        f = raw.makefile("rb")
        self.assertTrue(f.readline().startswith(b"220 "))
        raw.sendall(b"LHLO x\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\nNOOP injected\r\nRSET\r\n")
        self.assertEqual(f.readline(), b"220 2.0.0 Ready to start TLS\r\n")
        tls = self.context().wrap_socket(raw, server_hostname="lmtp.test")
        tf = tls.makefile("rb")
        tls.sendall(b"MAIL FROM:<s@example.net>\r\n")
        # no answer to the injected commands; LHLO is needed again
        self.assertTrue(tf.readline().startswith(b"503 "))
        tls.sendall(b"LHLO y\r\n")
        lines = []
        while True:
            line = tf.readline()
            lines.append(line)
            if line.startswith(b"250 "):
                break
        self.assertNotIn(b"250-STARTTLS\r\n", lines)
        tls.sendall(b"STARTTLS\r\n")
        self.assertTrue(tf.readline().startswith(b"503 5.5.1"))
        tls.close()

    def test_old_tls_refused(self):
        import ssl
        raw = socket.create_connection(("127.0.0.1", self.d.port), timeout=10)
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"STARTTLS\r\n")
        self.assertTrue(f.readline().startswith(b"220 "))
        ctx = self.context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        with self.assertRaises((ssl.SSLError, OSError)):
            ctx.wrap_socket(raw, server_hostname="lmtp.test")
        raw.close()
        # the server goes on
        c = self.d.connect()
        self.assertEqual(c.code(), 220)

    def test_not_offered_without_certificate(self):
        d = Daemon().start()
        try:
            c = d.connect()
            c.reply()
            c.send("LHLO x\r\n")
            code, lines = c.reply()
            self.assertNotIn("250-STARTTLS", lines)
            self.assertTrue(c.cmd("STARTTLS").startswith("502 5.5.1"))
        finally:
            d.cleanup()


class Timeouts(Base):
    extra = {"server.idle_timeout": "1", "server.max_sessions": "2"}

    def test_idle_timeout(self):
        c = self.d.connect()
        self.lhlo(c)
        start = time.time()
        self.assertTrue(c.text().startswith("421 4.4.2"))
        self.assertTrue(c.closed())
        self.assertLess(time.time() - start, 5)

    def test_max_sessions(self):
        a, b = self.d.connect(), self.d.connect()
        self.assertEqual(a.code(), 220)
        self.assertEqual(b.code(), 220)
        c = self.d.connect()
        self.assertTrue(c.text().startswith("421 4.3.2"))
        self.assertTrue(c.closed())


class Lifecycle(Base):
    users = ["joe@example.org"]

    def setUp(self):
        self.users = list(self.users)
        super().setUp()

    def test_sighup_reload(self):
        c = self.d.connect()
        self.lhlo(c)
        c.cmd("MAIL FROM:<s@example.net>")
        self.assertTrue(c.cmd("RCPT TO:<new@example.org>").startswith("550"))
        # a broken config is reported and the old one kept
        self.d.write_config(text="[server]\nmax_sessions = many\n")
        self.d.signal(signal.SIGHUP)
        time.sleep(0.3)
        self.assertIn("reload failed", self.d.read_log())
        self.assertTrue(c.cmd("RCPT TO:<joe@example.org>").startswith("250"))
        # a good one applies to new transactions, the session stays up
        self.d.users.append("new@example.org")
        self.d.write_config()
        self.d.signal(signal.SIGHUP)
        for _ in range(50):
            if "configuration reloaded" in self.d.read_log():
                break
            time.sleep(0.05)
        self.assertTrue(c.cmd("RSET").startswith("250"))
        c.cmd("MAIL FROM:<s@example.net>")
        self.assertTrue(c.cmd("RCPT TO:<new@example.org>").startswith("250"))

    def test_graceful_shutdown(self):
        idle = self.d.connect()
        self.lhlo(idle)
        busy = self.d.connect()
        self.lhlo(busy)
        busy.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
        self.assertEqual([busy.code() for _ in range(3)], [250, 250, 354])
        self.d.signal(signal.SIGTERM)
        self.assertTrue(idle.text().startswith("421 4.3.2"))
        self.assertTrue(idle.closed())
        time.sleep(0.2)
        self.assertIsNone(self.d.proc.poll())  # still finishing the transaction
        busy.send(dotstuff(BODY))
        self.assertTrue(busy.text().startswith("250 2.0.0"))
        self.assertTrue(busy.text().startswith("421 4.3.2"))
        self.assertEqual(self.d.proc.wait(10), 0)
        self.assertEqual(len(self.d.messages("joe@example.org")), 1)
        self.assertFalse(os.path.exists(self.d.sock))

    def test_client_disconnect_mid_data_delivers_nothing(self):
        c = self.d.connect()
        self.lhlo(c)
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<joe@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
        c.send(b"Subject: cut\r\n\r\npartial")
        c.close()
        time.sleep(0.3)
        self.assertEqual(self.d.messages("joe@example.org"), [])
        self.assertEqual(self.d.messages("joe@example.org", "tmp"), [])


class CheckConfig(unittest.TestCase):
    def test_check_config_reports_lines(self):
        d = Daemon()
        try:
            d.write_config(text="[server]\nlisten = nowhere\n\n[limits]\nmax_errors = 0\n")
            p = subprocess.run([LMTPD, "-c", d.conf, "--check-config"], capture_output=True, text=True)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("%s:2: [server] listen:" % d.conf, p.stderr)
            self.assertIn("%s:5: [limits] max_errors:" % d.conf, p.stderr)
            d.write_config()
            p = subprocess.run([LMTPD, "-c", d.conf, "--check-config"], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            # an invalid config never starts the server
            d.write_config(text="[server]\nbogus = 1\n")
            p = subprocess.run([LMTPD, "-c", d.conf], capture_output=True, text=True, timeout=10)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("unknown key", p.stderr)
        finally:
            d.cleanup()


if __name__ == "__main__":
    main()
