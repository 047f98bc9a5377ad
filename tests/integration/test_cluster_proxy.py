"""Per-recipient LMTP proxying between cluster nodes ([cluster],
docs/cluster.md "Routing and proxying"): three lmtpd nodes on 127.0.0.2-4,
each with its own mail root, one users map with host= for some users and
rendezvous hashing for the others.  Every copy lands on its owner's disk
exactly once, the replies keep RCPT order, a backend that is down, slow or
silent costs its recipients a 451 within the deadline and nothing else,
and a proxied transaction is never proxied again."""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from lmtptest import LMTPD, Daemon, dotstuff, free_port, main, strip_trace
from clustertest import PostfixFront, fnv_owner

DOMAIN = "example.org"
NODES = ["n1", "n2", "n3"]
HOSTED = {"a": "n1", "b": "n2", "c": "n3", "ghost": "n2"}
ALL = NODES + ["silent", "mute"]  # fake nodes are up too: the hash spreads over all five


def owner(local):
    return HOSTED.get(local) or fnv_owner("%s@%s" % (local, DOMAIN), ALL)


# users without host=, of the three real nodes
HASHED = [u for u in ("h%d" % i for i in range(60)) if owner(u) in NODES]


def body(tag):
    return ("From: s@example.net\nTo: x@example.org\nSubject: %s\nMessage-ID: <%s@t>\n\n"
            "line one\n.dot line\n%s\n" % (tag, tag, "x" * 100)).encode()


class SilentPeer:
    """A fake node that greets and accepts everything up to the data, then
    (data=False) never answers again; or never answers at all (greet=False)."""

    def __init__(self, greet=True):
        self.greet = greet
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.5", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        if not self.greet:
            return
        f = c.makefile("rb")
        c.sendall(b"220 silent\r\n")
        for line in f:
            if line.startswith(b"LHLO"):
                c.sendall(b"250-silent\r\n250-XFORWARD NAME ADDR PROTO HELO IDENT\r\n250 CHUNKING\r\n")
            elif line.startswith(b"BDAT"):
                return  # the data is never answered
            else:
                c.sendall(b"250 2.0.0 OK\r\n")

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class Cluster(unittest.TestCase):

    def setUp(self):
        self.ports = {n: free_port() for n in NODES}
        self.silent = SilentPeer(greet=True)
        self.mute = SilentPeer(greet=False)
        nodes = ";".join("%s=inet:127.0.0.%d:%d" % (n, i + 2, self.ports[n]) for i, n in enumerate(NODES))
        nodes += ";silent=inet:127.0.0.5:%d;mute=inet:127.0.0.5:%d" % (self.silent.port, self.mute.port)
        self.nodes = {}
        for i, n in enumerate(NODES):
            users = ["%s@%s host=%s" % (u, DOMAIN, h) for u, h in HOSTED.items() if not (u == "ghost" and n == "n2")]
            users += ["slow@%s host=silent" % DOMAIN, "dumb@%s host=mute" % DOMAIN, "lost@%s host=nowhere" % DOMAIN]
            users += ["%s@%s" % (u, DOMAIN) for u in HASHED]
            d = Daemon(users=users, extra={
                "server.listen": "inet:127.0.0.1:0;inet:127.0.0.%d:%d" % (i + 2, self.ports[n]),
                "server.xforward_hosts": "127.0.0.0/8",
                "users.domains": "catchall.invalid",
                "cluster.node_name": n, "cluster.nodes": nodes,
                "cluster.proxy_timeout": "3", "cluster.proxy_command_timeout": "2"})
            self.nodes[n] = d.start()
        # the hashed users must be spread over all three, or the test shows little
        self.assertEqual({owner(u) for u in HASHED}, set(NODES))

    def tearDown(self):
        for d in self.nodes.values():
            d.cleanup()
        self.silent.close()
        self.mute.close()

    def copies(self, local):
        """{node: [message bytes]} of @local's Maildir/new on every node."""
        out = {}
        for n, d in self.nodes.items():
            got = [m for _, m in d.messages("%s@%s" % (local, DOMAIN))]
            if got:
                out[n] = got
        return out

    def send(self, node, rcpts, tag, xforward=None):
        """One transaction through @node: (RCPT replies, data replies)."""
        c = self.nodes[node].connect(timeout=30)
        c.code()
        c.send("LHLO test\r\n")
        c.reply()
        if xforward:
            self.assertEqual(c.cmd("XFORWARD " + xforward)[:3], "250")
        self.assertEqual(c.cmd("MAIL FROM:<s@example.net>")[:3], "250")
        rcpt = []
        for r in rcpts:
            t0 = time.monotonic()
            rcpt.append((c.cmd("RCPT TO:<%s@%s>" % (r, DOMAIN)), time.monotonic() - t0))
        data = []
        if any(t.startswith("250") for t, _ in rcpt):
            self.assertEqual(c.cmd("DATA")[:3], "354")
            t0 = time.monotonic()
            c.send(dotstuff(body(tag)))
            for _ in [t for t, _ in rcpt if t.startswith("250")]:
                data.append((c.text(), time.monotonic() - t0))
        self.assertEqual(c.cmd("QUIT")[:3], "221")
        c.close()
        return rcpt, data

    def test_mixed_transaction(self):
        """Local and proxied recipients on all three nodes in one
        transaction: one copy each on the owner's disk, the original client
        passed on, the owner's 550 at RCPT, the replies in RCPT order."""
        hashed = {n: [u for u in HASHED if owner(u) == n][0] for n in NODES}
        rcpts = ["b", hashed["n3"], "a", "ghost", "c", hashed["n1"], hashed["n2"]]
        rcpt, data = self.send("n1", rcpts, "mixed", "NAME=client.example ADDR=192.0.2.7 HELO=helo.example")
        self.assertTrue(rcpt[3][0].startswith("550 5.1.1 <ghost@example.org>"), rcpt)
        self.assertEqual([t[:3] for t, _ in rcpt], ["250"] * 3 + ["550"] + ["250"] * 3)
        accepted = [r for r in rcpts if r != "ghost"]
        self.assertEqual(len(data), len(accepted))
        for r, (text, _) in zip(accepted, data):
            self.assertTrue(text.startswith("250 2."), (r, text))
        for r in accepted:
            got = self.copies(r)
            self.assertEqual(list(got), [owner(r)], (r, got))
            self.assertEqual(len(got[owner(r)]), 1)
            msg = got[owner(r)][0]
            self.assertEqual(strip_trace(msg), body("mixed"))
            self.assertIn(b"192.0.2.7", msg.split(b"\n\n")[0])
        self.assertEqual(self.copies("ghost"), {})
        # the owner's log names the proxying node's transaction
        log = self.nodes["n2"].read_log()
        self.assertRegex(log, r"to=<b@example\.org>.* status=250 .*queue_id=lmtpd-proxy:n1:")

    def test_loop_refused(self):
        """A transaction another node proxied is never proxied again: a
        recipient this node does not own gets 451 4.4.6; its own are taken."""
        c = self.nodes["n2"].connect()
        c.code()
        c.send("LHLO n1\r\n")
        c.reply()
        self.assertEqual(c.cmd("XFORWARD ADDR=192.0.2.9 IDENT=lmtpd-proxy:n1:ABC")[:3], "250")
        self.assertEqual(c.cmd("MAIL FROM:<s@example.net>")[:3], "250")
        self.assertTrue(c.cmd("RCPT TO:<c@%s>" % DOMAIN).startswith("451 4.4.6 "))
        self.assertTrue(c.cmd("RCPT TO:<b@%s>" % DOMAIN).startswith("250 "))
        self.assertEqual(c.cmd("DATA")[:3], "354")
        c.send(dotstuff(body("loop")))
        self.assertTrue(c.text().startswith("250 "))
        c.close()
        self.assertEqual(list(self.copies("b")), ["n2"])
        self.assertEqual(self.copies("c"), {})

    def test_connection_reused(self):
        """The connection to a backend outlives the transaction: the next
        one to the same backend takes it after a RSET; one the backend
        closed meanwhile (restarted) is replaced without a failure."""
        n2 = self.nodes["n2"]
        for tag in ("pool1", "pool2"):
            rcpt, data = self.send("n1", ["b"], tag)
            self.assertEqual([t[:3] for t, _ in data], ["250"])
        self.assertEqual(len(re.findall(r"s\d+: connect from", n2.read_log())), 1)
        n2.stop()
        n2.start()
        rcpt, data = self.send("n1", ["b"], "pool3")
        self.assertEqual([t[:3] for t, _ in rcpt + data], ["250", "250"])
        self.assertEqual(len(self.copies("b")["n2"]), 3)

    def test_unknown_node(self):
        """host= naming a node not in the cluster: 451, nothing proxied."""
        rcpt, data = self.send("n1", ["lost", "a"], "lost")
        self.assertTrue(rcpt[0][0].startswith("451 4.3.5 "), rcpt)
        self.assertEqual(len(data), 1)
        self.assertEqual(list(self.copies("a")), ["n1"])

    def test_backend_killed(self):
        """A backend SIGKILLed: its recipients 451 at once from the proxying
        node, the others delivered; back up, the retry delivers them once."""
        n3 = self.nodes["n3"]
        n3.signal(signal.SIGKILL)
        n3.proc.wait()
        n3.log.close()
        rcpt, data = self.send("n1", ["c", "a", "b"], "killed")
        self.assertTrue(rcpt[0][0].startswith("451 4.4.1 <c@example.org>"), rcpt)
        self.assertLess(rcpt[0][1], 2.5)
        self.assertEqual([t[:3] for t, _ in data], ["250", "250"])
        self.assertEqual(list(self.copies("a")), ["n1"])
        self.assertEqual(list(self.copies("b")), ["n2"])
        self.assertEqual(self.copies("c"), {})
        n3.start()
        rcpt, data = self.send("n2", ["c"], "killed")
        self.assertEqual([t[:3] for t, _ in data], ["250"])
        self.assertEqual({n: len(m) for n, m in self.copies("c").items()}, {"n3": 1})

    def test_backend_silent(self):
        """A backend that never greets: 451 within proxy_command_timeout; one
        that takes the RCPT but never answers the data: 451 4.4.2 within
        proxy_timeout, the local recipient delivered, and nothing more on
        the wire afterwards."""
        rcpt, data = self.send("n1", ["dumb", "a"], "mute")
        self.assertTrue(rcpt[0][0].startswith("451 4.4.1 <dumb@example.org>"), rcpt)
        self.assertTrue(1.5 < rcpt[0][1] < 4, rcpt)
        c = self.nodes["n1"].connect(timeout=30)
        c.code()
        c.send("LHLO test\r\n")
        c.reply()
        c.cmd("MAIL FROM:<s@example.net>")
        self.assertTrue(c.cmd("RCPT TO:<a@%s>" % DOMAIN).startswith("250 "))
        self.assertTrue(c.cmd("RCPT TO:<slow@%s>" % DOMAIN).startswith("250 "))
        self.assertEqual(c.cmd("DATA")[:3], "354")
        t0 = time.monotonic()
        c.send(dotstuff(body("silent")))
        first, second = c.text(), c.text()
        elapsed = time.monotonic() - t0
        self.assertTrue(first.startswith("250 "), first)
        self.assertTrue(second.startswith("451 4.4.2 <slow@example.org>"), second)
        self.assertTrue(2.5 < elapsed < 6, elapsed)
        # nothing late: the next command's reply is the next thing we read
        time.sleep(1)
        self.assertEqual(c.cmd("NOOP")[:3], "250")
        c.close()
        self.assertEqual(len(self.copies("a")["n1"]), 2)


class Settings(unittest.TestCase):

    def check(self, extra):
        d = Daemon(extra=extra)
        try:
            p = subprocess.run([LMTPD, "-c", d.conf, "--check-config"], capture_output=True, text=True,
                               cwd=d.dir, timeout=30)
        finally:
            d.cleanup()
        return p.returncode, p.stdout + p.stderr

    def test_nodes_checked(self):
        """[cluster] nodes is checked when the configuration loads."""
        ok = "n1=inet:127.0.0.2:24;n2=unix:/run/n2.sock"
        self.assertEqual(self.check({"cluster.node_name": "n1", "cluster.nodes": ok})[0], 0)
        for nodes, name, why in ((ok, "n9", "node_name 'n9' is not one of the nodes"),
                                 ("n1=inet:127.0.0.2:24;n1=inet:127.0.0.3:24", "n1", "node 'n1' is listed twice"),
                                 ("n1=tcp:x", "n1", "node 'n1': "),
                                 ("inet:127.0.0.2:24", "n1", "'inet:127.0.0.2:24' is not NAME=inet:HOST:PORT")):
            rc, out = self.check({"cluster.node_name": name, "cluster.nodes": nodes})
            self.assertNotEqual(rc, 0, nodes)
            self.assertIn("[cluster] nodes: " + why, out)


class FakeUserdb:
    """Dovecot's auth-userdb protocol on a UNIX socket: every user exists,
    with the fields given."""

    def __init__(self, path, fields):
        self.fields = fields.encode()
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        os.chmod(path, 0o666)
        self.srv.listen(16)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(c,), daemon=True).start()

    def answer(self, c):
        try:
            c.sendall(b"VERSION\t1\t2\nSPID\t1\n")
            for line in c.makefile("rb"):
                f = line.rstrip(b"\n").split(b"\t")
                if f[0] == b"USER":
                    c.sendall(b"\t".join([b"USER", f[1], f[2], self.fields]) + b"\n")
        except OSError:
            pass

    def stop(self):
        self.srv.close()


class DirectoryServer(unittest.TestCase):
    """With a directory that asks a server (looked up in a delivery
    thread), a recipient another node owns is not checked here: its quota
    is the owner's business."""

    def test_owner_checks_not_the_proxy(self):
        users = {"n1": None, "n2": ["q@%s" % DOMAIN], "n3": ["q@%s" % DOMAIN]}
        nodes, _ = start_nodes(lambda n: users[n], {})
        fake = None
        try:
            n1 = nodes["n1"]
            n1.stop()
            fake = FakeUserdb(os.path.join(n1.dir, "userdb"), "host=n2\tquota_rule=*:storage=1K")
            n1.write_config(dict(n1.extra, **{"users.backend": "dovecot", "users.domains": "",
                                             "users.dovecot_socket": "userdb"}))
            n1.start()
            c = n1.connect()
            c.code()
            c.send("LHLO t\r\n")
            c.reply()
            self.assertEqual(c.cmd("MAIL FROM:<s@example.net> SIZE=5000")[:3], "250")
            self.assertEqual(c.cmd("RCPT TO:<q@%s>" % DOMAIN)[:3], "250")
            self.assertEqual(c.cmd("DATA")[:3], "354")
            c.send(dotstuff(body("quota") + b"y" * 5000 + b"\n"))
            self.assertTrue(c.text().startswith("250 "))
            c.close()
            self.assertEqual(len(nodes["n2"].messages("q@%s" % DOMAIN)), 1)
            self.assertEqual(nodes["n1"].messages("q@%s" % DOMAIN), [])
        finally:
            for d in nodes.values():
                d.cleanup()
            if fake:
                fake.stop()


class Hashing(unittest.TestCase):

    def test_spread_and_movement(self):
        """The hashing the mixed transaction shows lmtpd uses: 10,000 users
        over 3, 5 and 10 nodes, none over 5% above the mean; a node that
        leaves moves its own users and no others."""
        users = ["user%d@example.org" % i for i in range(10000)]
        for n in (3, 5, 10):
            nodes = ["mx%d" % i for i in range(1, n + 1)]
            owners = [fnv_owner(u, nodes) for u in users]
            counts = [owners.count(x) for x in nodes]
            self.assertLess(max(counts), 1.05 * len(users) / n, counts)
            after = [fnv_owner(u, nodes[:-1]) for u in users]
            moved = sum(1 for a, b in zip(owners, after) if a != b)
            self.assertEqual(moved, counts[-1])


def start_nodes(users_of, extra):
    """Three nodes n1..n3 on 127.0.0.2-4 (and 127.0.0.1:0 for the tests'
    own connections); users_of(node) is its users map."""
    ports = {n: free_port() for n in NODES}
    nodes = ";".join("%s=inet:127.0.0.%d:%d" % (n, i + 2, ports[n]) for i, n in enumerate(NODES))
    out = {}
    for i, n in enumerate(NODES):
        settings = {"server.listen": "inet:127.0.0.1:0;inet:127.0.0.%d:%d" % (i + 2, ports[n]),
                    "server.xforward_hosts": "127.0.0.0/8", "users.domains": "catchall.invalid",
                    "cluster.node_name": n, "cluster.nodes": nodes}
        settings.update(extra)
        out[n] = Daemon(users=users_of(n), extra=settings).start()
    return out, ports


@unittest.skipUnless(os.geteuid() == 0, "Postfix's master needs root")
class PostfixInFront(unittest.TestCase):
    """Postfix hands 2,000 messages of 1-5 recipients to the three nodes;
    its transport map sends each recipient to a node by the last digit of
    its name, which is not how the cluster places users, so most
    transactions mix local and proxied recipients."""

    USERS = ["u%d" % i for i in range(40)]
    PINNED = {"u0": "n3", "u1": "n3", "u2": "n1", "u3": "n2"}

    def owner(self, u):
        return self.PINNED.get(u) or fnv_owner("%s@%s" % (u, DOMAIN), NODES)

    def setUp(self):
        users = ["%s@%s%s" % (u, DOMAIN, " host=" + self.PINNED[u] if u in self.PINNED else "") for u in self.USERS]
        self.nodes, ports = start_nodes(lambda n: users, {"server.max_sessions": "200"})
        self.front = PostfixFront({n: ("127.0.0.%d" % (i + 2), ports[n]) for i, n in enumerate(NODES)},
                                  self.USERS)
        self.pf = self.front.pf

    def tearDown(self):
        self.front.stop()
        for d in self.nodes.values():
            d.cleanup()

    def submit(self, count, during=None):
        return self.front.submit(count, self.owner, during)

    def check_delivered(self, expected):
        self.front.check_delivered(self, self.nodes, expected)

    def test_two_thousand_messages(self):
        self.check_delivered(self.submit(2000))
        # most copies went through a proxy
        proxied = sum(d.read_log().count("mailbox=proxy:") for d in self.nodes.values())
        self.assertGreater(proxied, 6000 // 3)

    def test_backend_killed_mid_load(self):
        """n3 SIGKILLed while Postfix delivers: the other nodes answer 451
        for its recipients (Postfix keeps them), deliver the rest; n3 back,
        Postfix's retries deliver every copy exactly once."""
        n3 = self.nodes["n3"]

        def kill(i):
            if i == 150:
                n3.signal(signal.SIGKILL)
                n3.proc.wait()
                n3.log.close()
        expected = self.submit(500, kill)
        time.sleep(3)
        logs = "".join(self.nodes[n].read_log() for n in ("n1", "n2"))
        self.assertRegex(logs, r"mailbox=proxy:n3 .*status=451 4\.4\.[12]|rejected at RCPT: .*status=451 4\.4\.1")
        n3.start()
        self.check_delivered(expected)


if __name__ == "__main__":
    main()
