"""Issue 13, item 1: LMTP clients that never read.  A client that
pipelines commands whose replies are larger than the commands (LHLO
amplifies about 16x) and does not read must not make lmtpd queue output
without bound; a write that makes no progress for idle_timeout ends the
session, so such clients cannot hold every session slot; and the
resident size stays bounded for the sessions already open."""

import os
import pwd
import signal
import stat
import subprocess
import tempfile
import socket
import threading
import time
import unittest

from lmtptest import MAIL_USER, SLOWDOWN, Daemon, dotstuff, main


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def deaf_client(port, seconds, stop=None):
    """Connects with a tiny receive buffer and writes LHLO as fast as the
    server takes it, never reading, for @seconds or until the server
    closes.  Returns how many bytes it got out."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(("127.0.0.1", port))
    s.settimeout(0.5)
    chunk = b"LHLO x\r\n" * 8192
    sent = 0
    deadline = time.time() + seconds
    try:
        while time.time() < deadline and not (stop and stop.is_set()):
            try:
                sent += s.send(chunk)
            except socket.timeout:
                continue
    except OSError:
        pass  # closed by the server: what we want
    finally:
        s.close()
    return sent


class NeverReads(unittest.TestCase):
    idle = 3

    def setUp(self):
        self.d = Daemon({"server.idle_timeout": str(self.idle), "server.max_sessions": "10"}).start()

    def tearDown(self):
        self.d.cleanup()

    def test_output_is_bounded(self):
        """One deaf client for 8 s: lmtpd stops reading it, its memory does
        not follow the client's writes (before: hundreds of MB)."""
        before = rss_kb(self.d.proc.pid)
        sent = deaf_client(self.d.port, 8)
        grown = rss_kb(self.d.proc.pid) - before
        # reading stops once 256 KiB of replies wait: the client gets out
        # little more than the socket buffers plus the input buffer
        self.assertLess(sent, 16 << 20, "lmtpd kept reading a client that does not read")
        self.assertLess(grown, 32 * 1024 * SLOWDOWN, "resident size grew by %d KB" % grown)

    def test_late_reader_gets_every_reply(self):
        """Replies that fill the socket wait for it and go out once the
        client reads: nothing lost, nothing doubled, the session goes on."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        s.connect(("127.0.0.1", self.d.port))
        s.settimeout(10)
        n = 400
        s.sendall(b"LHLO x\r\n" * n + b"QUIT\r\n")
        time.sleep(1)  # the replies (~100 KB) back up against the small buffer
        got = b""
        while b"\r\n221 " not in got:
            part = s.recv(65536)
            if not part:
                break
            got += part
        s.close()
        lines = got.split(b"\r\n")
        self.assertEqual(sum(1 for l in lines if l.startswith(b"250 ")), n, got[-300:])
        self.assertTrue(any(l.startswith(b"221 ") for l in lines), got[-300:])

    def test_stalled_writes_end_the_session(self):
        """A client that never reads is closed after idle_timeout of no
        write progress, and the log says so."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        s.connect(("127.0.0.1", self.d.port))
        s.settimeout(1)
        try:
            for _ in range(200):
                s.send(b"LHLO x\r\n" * 1024)
        except (socket.timeout, OSError):
            pass
        deadline = time.time() + self.idle * 5 + 10
        closed = False
        while time.time() < deadline and not closed:
            closed = "write timeout" in self.d.read_log()
            time.sleep(0.2)
        s.close()
        self.assertTrue(closed, self.d.read_log()[-2000:])

    def test_deaf_clients_do_not_hold_every_session(self):
        """max_sessions deaf clients; after a few idle timeouts new clients
        are served again (before: 421 Too many connections for minutes)."""
        stop = threading.Event()
        threads = [threading.Thread(target=deaf_client, args=(self.d.port, 60, stop)) for _ in range(10)]
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            deadline = time.time() + self.idle * 6 + 15
            served = False
            while time.time() < deadline and not served:
                time.sleep(0.5)
                try:
                    c = self.d.connect(timeout=10)
                    served = c.code() == 220
                    if served:
                        c.send("LHLO t\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n")
                        c.reply()
                        self.assertEqual([c.code() for _ in range(3)], [250, 250, 354])
                        c.send(dotstuff(b"Subject: through\n\nserved\n"))
                        self.assertEqual(c.code(), 250)
                    c.close()
                except (OSError, EOFError):
                    pass
            self.assertTrue(served, "deaf clients held every session")
            self.assertEqual(len(self.d.messages("u@example.org")), 1)
        finally:
            stop.set()
            for t in threads:
                t.join()


class MemoryLimit(unittest.TestCase):
    """max_memory sheds the sessions that hoard unsent output when the
    process is over the limit, so the ones that read go on."""

    def test_over_limit_sheds_backlogged_sessions(self):
        d = Daemon({"server.idle_timeout": "60"}).start()
        try:
            # a limit just above what lmtpd holds now, then deaf clients
            limit = rss_kb(d.proc.pid) * 1024 + (2 << 20)
            d.write_config(dict(d.extra, **{"server.max_memory": str(limit)}))
            d.signal(signal.SIGHUP)
            deadline = time.time() + 10
            while "reloaded" not in d.read_log() and time.time() < deadline:
                time.sleep(0.1)
            stop = threading.Event()
            threads = [threading.Thread(target=deaf_client, args=(d.port, 30, stop)) for _ in range(24)]
            for t in threads:
                t.start()
            deadline = time.time() + 30
            shed = False
            while time.time() < deadline and not shed:
                shed = "over max_memory" in d.read_log()
                time.sleep(0.2)
            stop.set()
            for t in threads:
                t.join()
            self.assertTrue(shed, d.read_log()[-2000:])
        finally:
            d.cleanup()


HERE = os.path.dirname(os.path.abspath(__file__))


def faultinject():
    lib = os.path.join(tempfile.mkdtemp(prefix="faultinject-"), "faultinject.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", lib, os.path.join(HERE, "faultinject.c"), "-ldl"],
                   check=True)
    return lib


@unittest.skipUnless(os.geteuid() == 0, "needs root: the attack is on root's chmod/chown")
class SocketOwner(unittest.TestCase):
    """Item 15: the UNIX socket's mode and owner are set without following
    a name the mail user could have replaced after bind()."""

    conf = {"server.socket_mode": "0666", "server.socket_owner": MAIL_USER}

    def test_mode_and_owner(self):
        d = Daemon(dict(self.conf)).start()
        try:
            st = os.lstat(d.sock)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o666)
            self.assertEqual(st.st_uid, pwd.getpwnam(MAIL_USER).pw_uid)
        finally:
            d.cleanup()

    def test_link_planted_after_bind(self):
        d = Daemon(dict(self.conf))
        victim = os.path.join(d.dir, "victim")
        with open(victim, "w") as f:
            f.write("root's\n")
        os.chmod(victim, 0o600)
        d.env = dict(os.environ, LD_PRELOAD=faultinject(), FAULT_BIND_SWAP=victim,
                     ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
        try:
            with self.assertRaises(RuntimeError) as cm:
                d.start()
            self.assertIn("replaced", str(cm.exception))
            st = os.stat(victim)
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o600))
        finally:
            d.cleanup()


if __name__ == "__main__":
    main()
