"""OPES callouts end to end: lmtpd calling ocp-calloutd (and an independent
Python OCP peer) per recipient, with verdicts, failures, tracing, bypass,
RCPT-stage access control and data preservation."""

import os
import re
import signal
import socket
import subprocess
import time
import unittest

from lmtptest import Callout, Daemon, dotstuff, free_port, main, strip_trace
from test_delivery import transaction
import ocppeer

SCRIPT = """\
rcpt=bad@* reject 554 5.7.1 Spam is not welcome here
rcpt=tag@* tag-subject [SPAM] ; add-header X-Spam-Flag: YES ; remove-header X-Remove-Me
rcpt=q@* quarantine Quarantine
rcpt=drop@* discard
rcpt=later@* tempfail 451 4.7.1 Greylisted, try later
rcpt=fwd@* redirect other@example.org
rcpt=flag@* flags Seen,Flagged
rcpt=big@* set-header X-Checked: yes
rcpt=body@* replace-body This message was replaced.\\n
rcpt=slow@* delay 3000
rcpt=crash@* close
rcpt=junk@* garbage
rcpt=hang@* hang
* accept
"""

BODY = (b"From: s@example.net\r\nTo: x@example.org\r\nSubject: Hello\r\nX-Remove-Me: 1\r\n"
        b"Message-ID: <m1@example.net>\r\n\r\nbody line\r\n")


def services(endpoint, names, **kw):
    """Config entries: one service per name, all on @endpoint, and one rule
    per name matching NAME@example.org (separate rules: separate calls)."""
    extra = {}
    for n in names:
        extra["service %s.servers" % n] = kw.get("servers", endpoint)
        extra["service %s.timeout" % n] = kw.get("timeout", "1500ms")
        extra["service %s.response_timeout" % n] = kw.get("timeout", "1500ms")
        extra["service %s.connect_timeout" % n] = "500ms"
        extra["service %s.on_failure" % n] = kw.get("on_failure", "tempfail")
        extra["rule %s.match" % n] = "%s@example.org" % n
        extra["rule %s.services" % n] = n
    return extra


class Verdicts(unittest.TestCase):
    def setUp(self):
        self.c = Callout(SCRIPT)
        names = ["bad", "tag", "q", "drop", "later", "fwd", "flag", "big", "body", "plain"]
        self.d = Daemon(extra=services(self.c.endpoint, names)).start()

    def tearDown(self):
        self.d.cleanup()
        self.c.stop()

    def test_three_recipients_three_verdicts(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["bad@example.org", "tag@example.org", "q@example.org"], BODY)
        self.assertRegex(r[0], r"^554 5\.7\.1 <bad@example\.org> Spam is not welcome here \(OPES .* via ")
        self.assertTrue(r[1].startswith("250 2.0.0"), r)
        self.assertTrue(r[2].startswith("250 2.0.0"), r)
        self.assertEqual(self.d.messages("bad@example.org"), [])
        (name, data), = self.d.messages("tag@example.org")
        self.assertIn(b"\nSubject: [SPAM] Hello\n", data)
        self.assertIn(b"\nX-Spam-Flag: YES\n", data)
        self.assertNotIn(b"X-Remove-Me", data)
        self.assertTrue(data.endswith(b"\n\nbody line\n"))
        self.assertRegex(data, rb"OPES-System: urn:x-opes-lmtpd:system:lmtp\.test\n")
        self.assertRegex(data, rb"OPES-Via: urn:x-opes-lmtpd:service:tag ; verdict=modify\n")
        self.assertEqual(self.d.messages("q@example.org"), [])
        (name, data), = self.d.messages("q@example.org", folder=".Quarantine")
        self.assertIn(b"verdict=quarantine", data)
        self.assertTrue(data.endswith(b"\nSubject: Hello\nX-Remove-Me: 1\nMessage-ID: <m1@example.net>\n\nbody line\n"))

    def test_tag_keeps_mime_headers(self):
        # GMime keeps Content-* on the MIME part: a tagged message keeps them
        mime = (b"Subject: Hello\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n"
                b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b1--\r\n")
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        transaction(c, ["tag@example.org"], mime)
        (name, data), = self.d.messages("tag@example.org")
        self.assertIn(b"\nSubject: [SPAM] Hello\n", data)
        self.assertIn(b'Content-Type: multipart/mixed; boundary="b1"\n', data)
        self.assertIn(b"MIME-Version: 1.0\n", data)
        self.assertTrue(data.endswith(b"\n\n--b1\nContent-Type: text/plain\n\nhi\n--b1--\n"))

    def test_other_verdicts(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["drop@example.org", "later@example.org", "fwd@example.org", "flag@example.org",
                            "body@example.org", "plain@example.org"], BODY)
        self.assertTrue(r[0].startswith("250 2.0.0") and "Discarded" in r[0], r)
        self.assertRegex(r[1], r"^451 4\.7\.1 <later@example\.org> Greylisted, try later \(OPES ")
        self.assertTrue(all(x.startswith("250") for x in r[2:]), r)
        self.assertEqual(self.d.messages("drop@example.org"), [])
        self.assertEqual(self.d.messages("later@example.org"), [])
        (name, data), = self.d.messages("other@example.org")
        self.assertIn(b"X-Original-To: fwd@example.org\n", data)
        (name, data), = self.d.messages("flag@example.org", sub="cur")
        self.assertTrue(name.endswith(":2,FS"), name)
        (name, data), = self.d.messages("body@example.org")
        self.assertTrue(data.endswith(b"\nSubject: Hello\nX-Remove-Me: 1\nMessage-ID: <m1@example.net>\n\n"
                                      b"This message was replaced.\n"), data)
        (name, data), = self.d.messages("plain@example.org")
        self.assertEqual(strip_trace(data).split(b"OPES-Via: ", 1)[1].split(b"\n", 1)[1],
                         BODY.replace(b"\r\n", b"\n"))

    def test_headers_only_change_of_20mb_comes_back_by_duy(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        line = b"x" * 98 + b"\r\n"
        big = b"Subject: big\r\n\r\n" + line * 200000  # 20 MB
        before = self.c.bytes_sent()
        c.s.settimeout(120)
        r = transaction(c, ["big@example.org"], big)
        self.assertTrue(r[0].startswith("250"), r)
        sent = self.c.bytes_sent() - before
        self.assertLess(sent, 10000, "the body came back over the wire")
        (name, data), = self.d.messages("big@example.org")
        self.assertIn(b"\nX-Checked: yes\nSubject: big\n\n", data)
        self.assertTrue(data.endswith(line.replace(b"\r\n", b"\n") * 3))
        self.assertEqual(len(data.split(b"\n\n", 1)[1]), 200000 * 99)
        print("# 20 MB, header changed: %d octets from the callout server" % sent)


class Failures(unittest.TestCase):
    def setUp(self):
        self.c = Callout(SCRIPT)

    def tearDown(self):
        self.d.cleanup()
        self.c.stop()

    def start(self, **kw):
        names = ["slow", "crash", "junk", "hang", "plain"]
        self.d = Daemon(extra=services(self.c.endpoint, names, **kw)).start()
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        return c

    def test_tempfail_policy_within_the_deadline(self):
        c = self.start(timeout="1s")
        t0 = time.time()
        r = transaction(c, ["slow@example.org", "crash@example.org", "junk@example.org", "hang@example.org",
                            "plain@example.org"], BODY)
        took = time.time() - t0
        for x in r[:4]:
            self.assertRegex(x, r"^451 4\.3\.0 <\w+@example\.org> Content filter \w+ unavailable \(OPES ")
        self.assertTrue(r[4].startswith("250"), r)
        self.assertLess(took, 4.0, "a recipient waited past its deadline")
        for n in ("slow", "crash", "junk", "hang"):
            self.assertEqual(self.d.messages("%s@example.org" % n), [])
        self.assertTrue(c.cmd("NOOP").startswith("250"))

    def test_accept_policy_delivers_unadapted_and_says_so(self):
        c = self.start(on_failure="accept", timeout="800ms")
        r = transaction(c, ["crash@example.org", "hang@example.org"], BODY)
        self.assertTrue(all(x.startswith("250") for x in r), r)
        (name, data), = self.d.messages("hang@example.org")
        self.assertIn(b"verdict=skipped", data)

    def test_reject_policy(self):
        c = self.start(on_failure="reject", timeout="800ms")
        r = transaction(c, ["junk@example.org"], BODY)
        self.assertRegex(r[0], r"^550 5\.7\.1 ")

    def test_unreachable_server(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        c = self.start(servers="inet:127.0.0.1:%d" % port)
        t0 = time.time()
        r = transaction(c, ["plain@example.org"], BODY)
        self.assertRegex(r[0], r"^451 4\.3\.0 ")
        self.assertLess(time.time() - t0, 3)

    def test_standby_server_takes_over(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        c = self.start(servers="inet:127.0.0.1:%d;%s" % (port, self.c.endpoint))
        r = transaction(c, ["plain@example.org"], BODY)
        self.assertTrue(r[0].startswith("250"), r)

    def test_callout_server_killed_mid_transaction(self):
        c = self.start(timeout="5s")
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<hang@example.org>\r\nDATA\r\n")
        [c.code() for _ in range(3)]
        c.send(dotstuff(BODY))
        time.sleep(0.5)
        t0 = time.time()
        self.c.proc.send_signal(signal.SIGKILL)
        r = c.text()
        self.assertRegex(r, r"^451 4\.3\.0 ")
        self.assertLess(time.time() - t0, 2)
        self.assertEqual(self.d.messages("hang@example.org"), [])


class Stages(unittest.TestCase):
    def setUp(self):
        self.c = Callout("rcpt=blocked@* reject 550 5.7.1 Access denied\n"
                         "service=urn:example:spam tag-subject [SPAM]\n* accept\n")
        extra = {
            "service access.servers": self.c.endpoint, "service access.stage": "rcpt",
            "service access.timeout": "2s",
            "service spam.servers": self.c.endpoint, "service spam.uri": "urn:example:spam",
            "service virus.servers": self.c.endpoint, "service virus.uri": "urn:example:virus",
            "service virus.bypassable": "false",
            "rule all.match": "*", "rule all.services": "access;spam;virus",
            "opes.bypass": "header;parameter",
            "opes.system": "http://lmtp.test/opes-policy",
        }
        self.d = Daemon(extra=extra).start()

    def tearDown(self):
        self.d.cleanup()
        self.c.stop()

    def test_rcpt_stage_refusal_during_the_dialog(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        c.cmd("MAIL FROM:<s@example.net>")
        r = c.cmd("RCPT TO:<blocked@example.org>")
        self.assertRegex(r, r"^550 5\.7\.1 <blocked@example\.org> Access denied \(OPES http://lmtp\.test/opes-policy via ")
        self.assertTrue(c.cmd("RCPT TO:<fine@example.org>").startswith("250"))

    def test_bypass_parameter_and_header(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        c.cmd("MAIL FROM:<s@example.net>")
        self.assertTrue(c.cmd("RCPT TO:<spam@example.org> OPES-BYPASS=urn:example:spam,urn:example:virus")
                        .startswith("250"))
        c.cmd("DATA")
        c.send(dotstuff(BODY))
        self.assertTrue(c.text().startswith("250"))
        (name, data), = self.d.messages("spam@example.org")
        self.assertIn(b"urn:example:spam ; verdict=bypassed", data)
        self.assertIn(b"urn:example:virus ; verdict=accept", data)  # never bypassed
        self.assertIn(b"\nSubject: Hello\n", data)
        # the same asked for in the message
        r = transaction(c, ["spam@example.org"], b"OPES-Bypass: *\r\n" + BODY.replace(b"body", b"other"))
        self.assertTrue(r[0].startswith("250"), r)
        data = [d for n, d in self.d.messages("spam@example.org") if b"other line" in d][0]
        self.assertIn(b"urn:example:spam ; verdict=bypassed", data)
        self.assertIn(b"urn:example:virus ; verdict=accept", data)
        # without a bypass the service tags the subject
        r = transaction(c, ["spam@example.org"], BODY.replace(b"body", b"third"))
        data = [d for n, d in self.d.messages("spam@example.org") if b"third line" in d][0]
        self.assertIn(b"\nSubject: [SPAM] Hello\n", data)


class Tls(unittest.TestCase):
    """lmtpd's client speaks TLS (OpenSSL) to a callout server behind socat,
    and verifies its certificate."""

    def setUp(self):
        self.c = Callout(SCRIPT)
        self.d = Daemon()
        for name in ("good", "evil"):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                            "-subj", "/CN=callout.test", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", os.path.join(self.d.dir, name + ".key"),
                            "-out", os.path.join(self.d.dir, name + ".pem")],
                           check=True, capture_output=True)
            os.chmod(os.path.join(self.d.dir, name + ".pem"), 0o644)
        self.port = free_port()
        self.socat = subprocess.Popen(
            ["socat", "OPENSSL-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,verify=0,cert=%s,key=%s"
             % (self.port, os.path.join(self.d.dir, "good.pem"), os.path.join(self.d.dir, "good.key")),
             "TCP:127.0.0.1:%d" % self.c.port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port)).close()
                break
            except OSError:
                time.sleep(0.05)
        # handshakes are slow under valgrind (LMTPD_WRAP)
        extra = services("inet:127.0.0.1:%d" % self.port, ["tag", "plain"],
                         timeout="15s" if os.environ.get("LMTPD_WRAP") else "1500ms")
        extra.update({"service tag.tls": "true", "service tag.tls_ca_file": os.path.join(self.d.dir, "good.pem"),
                      "service plain.tls": "true",
                      "service plain.tls_ca_file": os.path.join(self.d.dir, "evil.pem")})
        self.d.write_config(extra=extra)
        self.d.start()

    def tearDown(self):
        self.socat.terminate()
        self.socat.wait()
        self.d.cleanup()
        self.c.stop()

    def test_tls_with_verified_server(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["tag@example.org", "plain@example.org"], BODY)
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = self.d.messages("tag@example.org")
        self.assertIn(b"\nSubject: [SPAM] Hello\n", data)
        # a server whose certificate the CA did not sign is not trusted
        self.assertRegex(r[1], r"^451 4\.3\.0 ")
        self.assertIn("certificate", self.d.read_log())


class IndependentPeer(unittest.TestCase):
    def test_lmtpd_client_against_python_peer(self):
        def handler(env, header, body):
            assert env["Stage"] == b"data"
            assert env["Mail-From"] == b"s@example.net"
            if b"reject" in env["Rcpt-To"][0]:
                return {"Verdict": b"reject", "Reply": ocppeer.Struct([b"550", b"5.7.1 peer says no"])}, None
            return {"Verdict": b"accept"}, b"X-Peer: seen\n" + header
        peer = ocppeer.Server(handler)
        d = Daemon(extra=services("inet:127.0.0.1:%d" % peer.port, ["ok", "reject"])).start()
        try:
            c = d.connect()
            c.reply()
            c.cmd("LHLO x")
            r = transaction(c, ["ok@example.org", "reject@example.org"], BODY)
            self.assertTrue(r[0].startswith("250"), r)
            self.assertRegex(r[1], r"^550 5\.7\.1 <reject@example\.org> peer says no")
            (name, data), = d.messages("ok@example.org")
            self.assertIn(b"\nX-Peer: seen\nFrom: s@example.net\n", data)
            self.assertTrue(data.endswith(b"\n\nbody line\n"))
            self.assertEqual(peer.errors, [])
            self.assertEqual(peer.transactions, 2)
        finally:
            d.cleanup()
            peer.close()

    def test_dwsr_stops_the_upload(self):
        seen = []

        def handler(env, header, body):
            seen.append(len(body))
            return {"Verdict": b"accept"}, None
        peer = ocppeer.Server(handler, dwsr=True)
        d = Daemon(extra=services("inet:127.0.0.1:%d" % peer.port, ["ok"])).start()
        try:
            c = d.connect()
            c.reply()
            c.cmd("LHLO x")
            big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 20000
            r = transaction(c, ["ok@example.org"], big)
            self.assertTrue(r[0].startswith("250"), r)
            self.assertEqual(peer.ame_results, [b"206"])
            self.assertLess(seen[0], 19980000)
            (name, data), = d.messages("ok@example.org")
            self.assertEqual(len(data.split(b"\n\n", 1)[1]), 999 * 20000)  # all of it delivered
        finally:
            d.cleanup()
            peer.close()

    def test_python_processor_against_calloutd(self):
        co = Callout("rcpt=no@* reject 550 5.7.1 nope\n* set-header X-Seen: 1\n")
        try:
            conn = ocppeer.Conn(socket.create_connection(("127.0.0.1", co.port)))
            P = ocppeer
            conn.send(P.Msg("CS"))
            conn.send(P.Msg("NO", [[P.Struct([P.PROFILE], {"Parts": [b"envelope", b"message-header",
                                                                    b"message-body"]})]]))
            self.assertEqual(conn.recv().name, "CS")
            nr = conn.recv()
            self.assertEqual(nr.name, "NR")
            self.assertEqual(nr.anon[0].anon[0], P.PROFILE)
            conn.send(P.Msg("SGC", [1, [P.Struct([b"urn:test"])]]))
            for xid, rcpt in ((1, b"yes@x.org"), (2, b"no@x.org")):
                conn.send(P.Msg("TS", [xid, 1]))
                conn.send(P.Msg("AMS", [xid], {"Stage": b"data", "Rcpt-To": [rcpt], "Mail-From": b"a@b.org"}))
                conn.send(P.Msg("DUM", [xid, 0], {"Kept": (0, 8), "AM-Part": b"message-header"}, b"A: b\n\n"))
                conn.send(P.Msg("DUM", [xid, 6], {"Kept": (0, 10), "AM-Part": b"message-body"}, b"hi!\n"))
                conn.send(P.Msg("AME", [xid]))
            got = {1: [], 2: []}
            while len([m for v in got.values() for m in v if m.name == "TE"]) < 2:
                m = conn.recv()
                got[int(m.anon[0])].append(m)
            names1 = [m.name for m in got[1]]
            self.assertEqual(names1, ["AMS", "DUM", "DUY", "AME", "TE"])
            self.assertEqual(got[1][1].payload, b"X-Seen: 1\nA: b\n\n")
            self.assertEqual([int(x) for x in got[1][2].anon[1:]], [6, 4])
            self.assertEqual(got[2][0].named["Verdict"], b"reject")
            self.assertEqual(got[2][0].named["Reply"].anon, [b"550", b"5.7.1 nope"])
            # unknown messages are ignored; PQ is answered
            conn.send(b"XFOO 1 2\r\nBar: baz\r\n;\r\n")
            conn.send(P.Msg("PQ"))
            self.assertEqual(conn.recv().name, "PA")
            # invalid syntax ends the connection with CE 400
            conn.send(b"TS { broken;\r\n")
            ce = conn.recv()
            self.assertEqual(ce.name, "CE")
            self.assertEqual(ce.anon[0].anon[0], b"400")
        finally:
            co.stop()


if __name__ == "__main__":
    main()
