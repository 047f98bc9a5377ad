"""OCP Core (RFC 4037) conformance of both sides, checked against an
independent peer read to the letter (ocppeer.py, strict mode) and by hand on
the wire: increasing xids under concurrency (s10.2), PQ/PA and AQ/AA
(s5, s11.22-24), one TE per transaction (s4), CE before closing (s2.7), a
liberal reading of the server's DUMs, handshake and idle timeouts and a
connection limit on the server, and how an unchanged echo is traced."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from lmtptest import CALLOUTD, Daemon, main, strip_trace
from test_delivery import transaction
import ocppeer
from ocppeer import Msg, Struct, PROFILE

BODY = (b"From: s@example.net\r\nTo: x@example.org\r\nSubject: Hello\r\n"
        b"Message-ID: <c1@example.net>\r\n\r\nbody line\r\n")


def services(endpoint, names, timeout="10s", response_timeout="10s", max_connections=None):
    extra = {}
    for n in names:
        extra["service %s.servers" % n] = endpoint
        extra["service %s.timeout" % n] = timeout
        extra["service %s.response_timeout" % n] = response_timeout
        extra["service %s.connect_timeout" % n] = "2s"
        extra["service %s.on_failure" % n] = "tempfail"
        if max_connections:
            extra["service %s.max_connections" % n] = str(max_connections)
        extra["rule %s.match" % n] = "%s@example.org" % n
        extra["rule %s.services" % n] = n
    return extra


def accept(env, header, body):
    return {"Verdict": b"accept"}, None


def echo(env, header, body):
    return {"Verdict": b"accept"}, header, body


def session(d, rcpt, body=BODY):
    c = d.connect(timeout=60)
    c.reply()
    c.cmd("LHLO x")
    r = transaction(c, [rcpt], body)
    c.cmd("QUIT")
    c.close()
    return r


def wait_for(pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class Processor(unittest.TestCase):
    """lmtpd's OCP client against a strict peer."""

    def start(self, peer, names=("ok",), **kw):
        self.peer = peer
        self.d = Daemon(extra=services("inet:127.0.0.1:%d" % peer.port, names, **kw)).start()
        return self.d

    def tearDown(self):
        self.d.cleanup()
        self.peer.close()

    def test_xids_increase_on_each_connection_under_concurrency(self):
        d = self.start(ocppeer.Server(accept, strict=True), max_connections=2)
        results = [None] * 24

        def one(i):
            # big and small messages mixed: the big ones are still being
            # sent when later transactions start
            body = BODY.replace(b"<c1@", b"<c1-%d@" % i) + (b"z" * 998 + b"\r\n") * (300 * (i % 2))
            try:
                results[i] = session(d, "ok@example.org", body)
            except Exception as e:  # reported below
                results[i] = repr(e)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(self.peer.non_increasing, 0, "a TS had an xid not higher than an earlier one")
        for r in results:
            self.assertTrue(isinstance(r, list) and r[0].startswith("250"), results)
        self.assertEqual(len(d.messages("ok@example.org")), 24)
        self.assertEqual(self.peer.errors, [])
        self.assertLessEqual(self.peer.connections, 2)

    def test_server_pq_is_answered_with_pa(self):
        d = self.start(ocppeer.Server(accept, strict=True, ask_progress=True))
        r = session(d, "ok@example.org")
        self.assertTrue(r[0].startswith("250"), r)
        # PA names the transaction: lmtpd is still waiting for the answer
        self.assertEqual(self.peer.progress_answers, [[b"1"]])
        self.assertEqual(self.peer.errors, [])

    def test_pa_from_the_server_extends_the_response_deadline(self):
        # answers after 6 x 0.5 s of PA, well past the 1.5 s response timeout
        d = self.start(ocppeer.Server(accept, strict=True, keepalive=(6, 0.5)),
                       timeout="30s", response_timeout="1500ms")
        r = session(d, "ok@example.org")
        self.assertTrue(r[0].startswith("250"), r)
        self.assertEqual(len(d.messages("ok@example.org")), 1)

    def test_aq_for_the_negotiated_profile_is_answered_true(self):
        d = self.start(ocppeer.Server(accept, strict=True, ask_ability=True))
        r = session(d, "ok@example.org")
        self.assertTrue(r[0].startswith("250"), r)
        self.assertEqual(self.peer.ability_answers, [[b"true"]])

    def test_no_te_after_the_servers_te(self):
        # AME and TE in two reads, 20 ms apart
        d = self.start(ocppeer.Server(accept, strict=True, te_gap=0.02), max_connections=1)
        results = []

        def one():
            results.append(session(d, "ok@example.org"))
        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(len(results), 12)
        self.assertTrue(all(r[0].startswith("250") for r in results), results)
        self.assertEqual(self.peer.errors, [])

    def test_ce_before_closing_at_shutdown(self):
        d = self.start(ocppeer.Server(accept, strict=True))
        self.assertTrue(session(d, "ok@example.org")[0].startswith("250"))
        d.stop()
        self.assertTrue(wait_for(lambda: len(self.peer.closed_by_ce) == 1))
        self.assertEqual(self.peer.closed_by_ce, [True])

    def test_ce_before_closing_after_garbage(self):
        def garbage(env, header, body):
            return b"AMS this is not OCP\r\n{{{\r\n;\r\n"
        d = self.start(ocppeer.Server(garbage))
        r = session(d, "ok@example.org")
        self.assertRegex(r[0], r"^451 4\.3\.0 ")
        self.assertTrue(wait_for(lambda: len(self.peer.closed_by_ce) == 1))
        self.assertEqual(self.peer.closed_by_ce, [True])

    def test_empty_dum_with_only_modp(self):
        d = self.start(ocppeer.Server(accept, strict=True, modp_only=True))
        r = session(d, "ok@example.org")
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = d.messages("ok@example.org")
        self.assertTrue(data.endswith(b"\nMessage-ID: <c1@example.net>\n\nbody line\n"), data)
        self.assertIn(b"verdict=accept\n", data)

    def stored_without_callout(self, body):
        d = Daemon().start()
        try:
            self.assertTrue(session(d, "ok@example.org", body)[0].startswith("250"))
            (name, data), = d.messages("ok@example.org")
            return strip_trace(data)
        finally:
            d.cleanup()

    def test_echo_is_stored_as_without_a_callout_and_traced_unchanged(self):
        bodies = [BODY,
                  b"this first line is not a header field\r\nSubject: x\r\n\r\nbody\r\n",
                  b"Subject: no body at all\r\nFrom: s@example.net\r\n",
                  b"Subject: empty body\r\n\r\n",
                  b"\r\nonly a body\r\n"]
        d = self.start(ocppeer.Server(echo, strict=True))
        for body in bodies:
            want = self.stored_without_callout(body)
            for name, _ in d.messages("ok@example.org"):
                os.unlink(os.path.join(d.maildir("ok@example.org"), "new", name))
            r = session(d, "ok@example.org", body)
            self.assertTrue(r[0].startswith("250"), (body, r))
            (name, data), = d.messages("ok@example.org")
            self.assertIn(b"\nOPES-System: urn:x-opes-lmtpd:system:lmtp.test\n"
                          b"OPES-Via: urn:x-opes-lmtpd:service:ok ; verdict=accept\n", data)
            data = re.sub(rb"OPES-System: [^\n]*\nOPES-Via: [^\n]*\n", b"", data)
            self.assertEqual(strip_trace(data), want, body)
        self.assertEqual(self.peer.errors, [])

    def test_trace_rule_for_a_recipient_no_rule_selects(self):
        d = self.start(ocppeer.Server(accept, strict=True))
        self.assertTrue(session(d, "other@example.org")[0].startswith("250"))
        (name, data), = d.messages("other@example.org")
        self.assertIn(b"\nOPES-System: urn:x-opes-lmtpd:system:lmtp.test\nFrom: ", data)
        self.assertNotIn(b"OPES-Via", data)
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "ocp-lmtp-profile.md")) as f:
            doc = " ".join(f.read().split())
        self.assertIn("A recipient that no rule selects gets `OPES-System` alone", doc)
        self.assertIn("byte for byte the original", doc)


class Calloutd:
    """ocp-calloutd with extra options; its port from its log."""

    def __init__(self, script="* accept\n", args=()):
        self.dir = tempfile.mkdtemp(prefix="calloutd-")
        path = os.path.join(self.dir, "script")
        with open(path, "w") as f:
            f.write(script)
        self.log_path = os.path.join(self.dir, "log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([CALLOUTD, "--listen", "inet:127.0.0.1:0", "--script", path] + list(args),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(self.log_path, "rb") as f:
                m = re.search(rb"listening on inet:127\.0\.0\.1:(\d+)\n", f.read())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("ocp-calloutd did not start")

    def connect(self, timeout=10):
        return ocppeer.Conn(socket.create_connection(("127.0.0.1", self.port)), timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def handshake(conn):
    conn.send(Msg("CS"))
    conn.send(Msg("NO", [[Struct([PROFILE], {"Parts": [b"envelope", b"message-header", b"message-body"]})]]))
    assert conn.recv().name == "CS"
    assert conn.recv().name == "NR"
    conn.send(Msg("SGC", [1, [Struct([b"urn:test"])]]))


def one_transaction(conn, xid):
    conn.send(Msg("TS", [xid, 1]))
    conn.send(Msg("AMS", [xid], {"Stage": b"data", "Rcpt-To": [b"a@x.org"], "Mail-From": b"a@b.org"}))
    conn.send(Msg("DUM", [xid, 0], {"AM-Part": b"message-header"}, b"A: b\n\n"))
    conn.send(Msg("AME", [xid]))
    got = []
    while not got or got[-1].name != "TE":
        got.append(conn.recv())
    return got


def closed(conn, timeout):
    """The messages received until the server closed, or None if it did not."""
    conn.s.settimeout(timeout)
    got = []
    try:
        while True:
            got.append(conn.recv())
    except EOFError:
        return got
    except ConnectionResetError:
        return got
    except socket.timeout:
        return None


class Server(unittest.TestCase):
    """ocp-server (through ocp-calloutd) driven by hand."""

    co = None

    def tearDown(self):
        if self.co:
            self.co.stop()

    def test_aq_answers_true_only_for_what_was_negotiated(self):
        self.co = Calloutd()
        conn = self.co.connect()
        handshake(conn)
        conn.send(Msg("AQ", [Struct([PROFILE])]))
        self.assertEqual(conn.recv().anon, [b"true"])
        conn.send(Msg("AQ", [Struct([b"urn:x-unknown:feature"])]))
        self.assertEqual(conn.recv().anon, [b"false"])

    def test_one_te_per_transaction_and_silence_for_ended_ones(self):
        self.co = Calloutd()
        conn = self.co.connect()
        handshake(conn)
        self.assertEqual([m.name for m in one_transaction(conn, 1)], ["AMS", "AME", "TE"])
        # our TE crosses the server's; a late AME and DUM for the ended
        # transaction: none of these may bring a second TE
        conn.send(Msg("TE", [1]))
        conn.send(Msg("AME", [1]))
        conn.send(Msg("DUM", [1, 6], {"AM-Part": b"message-body"}, b"x\n"))
        conn.send(Msg("PQ"))
        self.assertEqual(conn.recv().name, "PA")
        self.assertEqual([m.name for m in one_transaction(conn, 2)], ["AMS", "AME", "TE"])

    def test_non_increasing_xid_is_refused(self):
        self.co = Calloutd()
        conn = self.co.connect()
        handshake(conn)
        one_transaction(conn, 5)
        conn.send(Msg("TS", [3, 1]))
        got = closed(conn, 10)
        self.assertIsNotNone(got, "the connection stayed open")
        self.assertEqual([m.name for m in got], ["CE"])
        self.assertEqual(got[0].anon[0].anon[0], b"400")

    def test_handshake_timeout(self):
        self.co = Calloutd(args=["--handshake-timeout", "1"])
        conn = self.co.connect()
        t0 = time.time()
        got = closed(conn, 15)
        self.assertIsNotNone(got, "a connection that never sent CS was kept")
        self.assertEqual([m.name for m in got], ["CS", "CE"])
        self.assertGreaterEqual(time.time() - t0, 0.5)
        # one that does the handshake is not affected by it
        conn = self.co.connect()
        handshake(conn)
        time.sleep(1.5)
        self.assertEqual([m.name for m in one_transaction(conn, 1)], ["AMS", "AME", "TE"])

    def test_idle_timeout(self):
        self.co = Calloutd(args=["--idle-timeout", "1"])
        conn = self.co.connect()
        handshake(conn)
        self.assertEqual([m.name for m in one_transaction(conn, 1)], ["AMS", "AME", "TE"])
        got = closed(conn, 15)
        self.assertIsNotNone(got, "an idle connection was kept")
        self.assertEqual([m.name for m in got], ["CE"])

    def test_connection_limit(self):
        self.co = Calloutd(args=["--max-connections", "2"])
        a, b = self.co.connect(), self.co.connect()
        handshake(a)
        handshake(b)
        c = self.co.connect()
        got = closed(c, 10)
        self.assertIsNotNone(got, "a connection over the limit was kept")
        self.assertEqual([m.name for m in got], ["CS", "CE"])
        self.assertEqual([m.name for m in one_transaction(a, 1)], ["AMS", "AME", "TE"])
        # a closed connection frees its place
        b.s.close()
        time.sleep(0.5)
        d = self.co.connect()
        handshake(d)
        self.assertEqual([m.name for m in one_transaction(d, 1)], ["AMS", "AME", "TE"])


if __name__ == "__main__":
    main()
