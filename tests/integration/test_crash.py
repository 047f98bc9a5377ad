"""Crash safety (issue 7): lmtpd is killed with SIGKILL at random moments
under load from several sessions with several recipients each (Python
senders that remember every 250, plus Postfix's smtp-source -L), and
restarted.  Clients retry what was not acknowledged, with the same bytes,
as an MTA does.  After every round:

- every recipient that got 250 for a message has exactly one copy of it;
- no file in new/ or cur/ is partial (each ends with its message's marker);
- no message is stored twice for a recipient, even when the MTA retried it
  because the kill took the replies (the duplicate journal learns of a copy
  the moment it becomes visible, before the directory fsync).

The same holds when the callout server (ocp-calloutd, which stamps every
message it sees) is killed at random moments and restarted while lmtpd
keeps running: deliveries in flight get 4xx (on_failure = tempfail), are
retried, and every stored copy went through the service.

CRASH_ROUNDS (default 5) sets the number of kills; the long run is
CRASH_ROUNDS=50 python3 tests/integration/test_crash.py."""

import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from lmtptest import Callout, Daemon, Ext4Image, dotstuff, main
from test_clients import tool

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "5"))
DOMAIN = "crash.example"
USERS = ["u%d@%s" % (i, DOMAIN) for i in range(6)]


def message(mid, size):
    line = "x" * 76 + "\n"
    body = line * (size // len(line))
    return ("From: load@example.net\nTo: undisclosed\nSubject: crash %s\nMessage-ID: <%s@crash>\n\n%sEND-%s\n"
            % (mid, mid, body, mid)).encode()


class Sender(threading.Thread):
    """One LMTP session that sends messages until told to stop; remembers
    which (message, recipient) pairs were acknowledged and keeps the others
    to send again."""

    def __init__(self, port, queue, acked, lock, stop):
        super().__init__(daemon=True)
        self.port, self.queue, self.acked, self.lock, self.stop_ev = port, queue, acked, lock, stop

    def run(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            f = s.makefile("rb")

            def reply():
                while True:
                    line = f.readline()
                    if not line:
                        raise EOFError
                    if line[3:4] != b"-":
                        return int(line[:3])

            reply()
            s.sendall(b"LHLO crash\r\n")
            reply()
            while not self.stop_ev.is_set():
                with self.lock:
                    if not self.queue:
                        return
                    mid, rcpts, data = self.queue.pop(0)
                done = False
                try:
                    s.sendall(b"MAIL FROM:<load@example.net>\r\n" + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts)
                              + b"DATA\r\n")
                    codes = [reply() for _ in range(len(rcpts) + 1)]
                    if reply() != 354:
                        raise EOFError
                    s.sendall(dotstuff(data))
                    got = []
                    for r, c in zip(rcpts, codes[1:]):
                        if c == 250:
                            got.append((r, reply()))
                    with self.lock:
                        left = [r for r, c in got if c != 250]
                        for r, c in got:
                            if c == 250:
                                self.acked.add((mid, r))
                        if left:
                            self.queue.append((mid, left, data))
                    done = True
                finally:
                    if not done:
                        with self.lock:
                            # not known to be delivered: the MTA tries again
                            # (all recipients not yet acknowledged)
                            todo = [r for r in rcpts if (mid, r) not in self.acked]
                            if todo:
                                self.queue.append((mid, todo, data))
        except (OSError, EOFError, ValueError):
            return


def drain(d, queue, acked, lock, passes=20):
    """Sends what is left, a few sessions at a time, until nothing is."""
    stop = threading.Event()
    for _ in range(passes):
        with lock:
            if not queue:
                return
        senders = [Sender(d.port, queue, acked, lock, stop) for _ in range(4)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(120)


class CrashTest(unittest.TestCase):
    def test_sigkill_under_load(self):
        d = Daemon({"delivery.fsync": "true"})
        try:
            self.sigkill_rounds(d)
        finally:
            d.cleanup()

    def test_sigkill_under_load_one_commit(self):
        """The same on ext4 with a journal, where sync_mode = one-commit
        (the default) makes each delivery durable with one fsync of the file
        after the rename (issue 20)."""
        d = Daemon({"delivery.fsync": "true", "delivery.sync_mode": "one-commit"})
        fs = Ext4Image(d.mail, size_mb=1024)
        try:
            self.sigkill_rounds(d)
            self.assertIn("one commit per Maildir delivery", "".join(self.logs))
        finally:
            d.stop()
            fs.close()
            d.cleanup()

    def sigkill_rounds(self, d):
        self.logs = []
        self.acked_before = set()
        self.known_dups = set()
        rnd = random.Random(2033)
        queue, acked, lock = [], set(), threading.Lock()
        n = 0
        try:
            for rnd_i in range(ROUNDS):
                # fresh work each round, plus whatever was left over
                with lock:
                    for _ in range(150):
                        n += 1
                        rcpts = rnd.sample(USERS, rnd.randint(1, 4))
                        queue.append(("m%d" % n, rcpts, message("m%d" % n, rnd.choice([300, 4000, 60000, 400000]))))
                    start = len(acked)
                d.start()
                stop = threading.Event()
                senders = [Sender(d.port, queue, acked, lock, stop) for _ in range(4)]
                for t in senders:
                    t.start()
                # Postfix's smtp-source -L as more load (it cannot say which
                # recipient got 250, so its copies are checked for wholeness)
                source = subprocess.Popen([tool("smtp-source"), "-L", "-s", "3", "-m", "100000", "-r", "2",
                                           "-l", "20000", "-f", "s@example.net", "-t", "load@" + DOMAIN,
                                           "127.0.0.1:%d" % d.port],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                # kill in the middle of the load: after a random number of
                # acknowledged deliveries, while more are in flight
                target = start + rnd.randint(1, 120)
                deadline = time.time() + 20
                while len(acked) < target and time.time() < deadline:
                    time.sleep(0.001)
                time.sleep(rnd.uniform(0, 0.01))
                d.proc.send_signal(signal.SIGKILL)
                d.proc.wait()
                d.log.close()
                self.logs.append(d.read_log())
                stop.set()
                for t in senders:
                    t.join(10)
                source.kill()
                source.wait()
                whole = self.check_whole(d, "after kill %d" % (rnd_i + 1))
                stored = self.check(d, acked, "after kill %d" % (rnd_i + 1))
                self.acked_before = set(acked)
                print("# kill %d: %d acknowledged, %d stored, %d pending" % (rnd_i + 1, len(acked), len(stored),
                                                                            len(queue)))
            # a last clean round delivers everything left
            d.start()
            drain(d, queue, acked, lock)
            d.stop()
            self.assertGreater(whole, 0, "smtp-source delivered nothing")
            copies = self.check(d, acked, "at the end")
            # in the end everything was acknowledged and stored
            self.assertEqual(set(copies), acked)
            print("# %d kills, %d deliveries acknowledged: 0 lost, 0 partial, 0 duplicated" % (ROUNDS, len(acked)))
        finally:
            d.stop()

    def test_callout_server_killed(self):
        callout = Callout("* set-header X-Checked: yes\n")
        port = callout.port
        d = Daemon({"delivery.fsync": "true",
                    "service stamp.servers": callout.endpoint, "service stamp.on_failure": "tempfail",
                    "service stamp.connect_timeout": "300ms", "service stamp.timeout": "3s",
                    "rule all.match": "*@" + DOMAIN, "rule all.services": "stamp"})
        rnd = random.Random(4037)
        queue, acked, lock = [], set(), threading.Lock()
        n = 0
        try:
            d.start()
            for rnd_i in range(ROUNDS):
                with lock:
                    for _ in range(400):
                        n += 1
                        rcpts = rnd.sample(USERS, rnd.randint(1, 4))
                        queue.append(("c%d" % n, rcpts, message("c%d" % n, rnd.choice([300, 4000, 60000]))))
                    start = len(acked)
                stop = threading.Event()
                senders = [Sender(d.port, queue, acked, lock, stop) for _ in range(4)]
                for t in senders:
                    t.start()
                # kill while deliveries are under way: after a random number
                # of them, never after the work ran out
                target = start + rnd.randint(5, 150)
                deadline = time.time() + 20
                while len(acked) < target and time.time() < deadline:
                    time.sleep(0.002)
                callout.proc.send_signal(signal.SIGKILL)
                callout.proc.wait()
                callout.stop()
                time.sleep(rnd.uniform(0, 0.5))   # the service is down
                callout = Callout("* set-header X-Checked: yes\n", listen="inet:127.0.0.1:%d" % port)
                time.sleep(rnd.uniform(0.05, 0.4))
                stop.set()
                for t in senders:
                    t.join(30)
                self.assertIsNone(d.proc.poll(), "lmtpd died")
                stored = self.check(d, acked, "after callout kill %d" % (rnd_i + 1), stamp=b"X-Checked: yes\n")
                print("# callout kill %d: %d acknowledged, %d stored, %d pending" % (rnd_i + 1, len(acked),
                                                                                    len(stored), len(queue)))
            drain(d, queue, acked, lock)
            copies = self.check(d, acked, "at the end", stamp=b"X-Checked: yes\n")
            self.assertEqual(queue, [])
            self.assertEqual(set(copies), acked)
            tempfails = d.read_log().count("status=451 ")
            self.assertGreater(tempfails, 0, "the kills never hit a delivery")
            print("# %d callout kills, %d deliveries acknowledged, %d tempfailed and retried: 0 lost, 0 partial, "
                  "0 duplicated, all stamped" % (ROUNDS, len(acked), tempfails))
        finally:
            d.cleanup()
            callout.stop()

    def check_whole(self, d, when):
        """smtp-source's copies: each as long as its name says, whole lines."""
        n = 0
        for u in ("load@" + DOMAIN, "2load@" + DOMAIN):
            for sub in ("new", "cur"):
                path = os.path.join(d.maildir(u), sub)
                for name in (os.listdir(path) if os.path.isdir(path) else []):
                    with open(os.path.join(path, name), "rb") as f:
                        data = f.read()
                    self.assertRegex(name, r",S=%d" % len(data), "%s: partial %s" % (when, name))
                    self.assertTrue(data.endswith(b"\n"), "%s: partial %s" % (when, name))
                    n += 1
        return n

    def check(self, d, acked, when, stamp=None):
        """Returns {(mid, rcpt): copies}; fails on partial or duplicated copies
        and on acknowledged messages without a copy."""
        copies = {}
        self.names = {}
        for u in USERS:
            for sub in ("new", "cur"):
                path = os.path.join(d.maildir(u), sub)
                if not os.path.isdir(path):
                    continue
                for name in os.listdir(path):
                    with open(os.path.join(path, name), "rb") as f:
                        data = f.read()
                    m = re.search(rb"Message-ID: <([mc]\d+)@crash>", data)
                    self.assertIsNotNone(m, "%s: %s/%s has no Message-ID" % (when, u, name))
                    mid = m.group(1).decode()
                    self.assertTrue(data.endswith(("END-%s\n" % mid).encode()),
                                    "%s: partial file %s/%s/%s" % (when, u, sub, name))
                    self.assertRegex(name, r",S=%d" % len(data))
                    if stamp:
                        self.assertIn(stamp, data, "%s: %s/%s/%s skipped the service" % (when, u, sub, name))
                    copies[(mid, u)] = copies.get((mid, u), 0) + 1
                    self.names.setdefault((mid, u), []).append(name)
        dup = {k: v for k, v in copies.items() if v > 1}
        self.assertEqual(dup, {}, "%s: stored twice" % when)
        lost = sorted(k for k in acked if k not in copies)
        self.assertEqual(lost, [], "%s: acknowledged but not stored" % when)
        return copies


if __name__ == "__main__":
    main()
