"""Helpers of the cluster tests (issue 18): lmtpd nodes on their own
loopback addresses sharing one PostgreSQL (test_cluster_state.py,
test_cluster.py), lmtpd/lmtp-nodes.c's hashing in Python, and a private
Postfix in front of the nodes (test_cluster_proxy.py, test_cluster.py)."""

import os
import random
import re
import smtplib
import socket
import subprocess
import tempfile
import time

from lmtptest import LMTPD, Client, Daemon, dotstuff, free_port
from test_postfix import Postfix

LMTPCTL = os.path.join(os.path.dirname(LMTPD), "..", "admin", "lmtpctl")
DOMAIN = "example.org"


def fnv_owner(address, nodes):
    """lmtpd/lmtp-nodes.c's rendezvous hashing (weight 1), in Python."""
    mask = (1 << 64) - 1

    def h(node):
        x = 14695981039346656037
        for ch in node.encode() + b"#" + bytes([0, 0]) + address.encode():
            x = ((x ^ ch) * 1099511628211) & mask
        x ^= x >> 30
        x = (x * 0xbf58476d1ce4e5b9) & mask
        x ^= x >> 27
        x = (x * 0x94d049bb133111eb) & mask
        return x ^ (x >> 31)
    return max(nodes, key=h)


def wait_for(pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class NodeClient(Client):
    def __init__(self, host, port, timeout=10):
        self.where = "%s:%d" % (host, port)
        self.s = socket.create_connection((host, port))
        self.s.settimeout(timeout)
        self.buf = b""


class Node(Daemon):
    """One lmtpd on its own loopback address, its own directory (journal,
    spool, scripts), the shared state in @pg; @mail is a shared mail root,
    None for the node's own (per-node disks)."""

    def __init__(self, name, host, pg, mail, extra=None, users=None):
        self.name, self.host, self.lport = name, host, free_port()
        conninfo = "host=%s port=%d dbname=postgres user=postgres" % (pg.sock, pg.port)
        settings = {"server.listen": "inet:%s:%d" % (host, self.lport),
                    "state.backend": "pgsql", "state.pgsql_conninfo": conninfo,
                    "state.pgsql_timeout": "2s",
                    "cluster.node_name": name,
                    "cluster.lmtp_address": "%s:%d" % (host, self.lport),
                    "cluster.node_timeout": "2"}
        if mail:
            settings["delivery.mail_root"] = mail
        super().__init__(dict(settings, **(extra or {})), users=users)
        if mail:
            self.mail = mail

    def start(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([LMTPD, "-c", "lmtpd.conf", "-d"], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.time() + 10
        while time.time() < deadline:
            log = self.read_log()
            if "started" in log and "listening on inet:%s:%d" % (self.host, self.lport) in log:
                self.port = self.lport
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("lmtpd exited: " + log)
            time.sleep(0.02)
        raise RuntimeError("lmtpd did not start: " + self.read_log())

    def connect(self, unix=False, timeout=10):
        c = NodeClient(self.host, self.lport, timeout)
        c.reply()
        c.cmd("LHLO mta")
        return c

    def send(self, rcpts, body, sender="s@example.net"):
        from test_delivery import transaction
        c = self.connect()
        r = transaction(c, rcpts, body, sender)
        c.close()
        return r

    def deliver(self, rcpts, body, sender="s@example.net", timeout=30):
        """One transaction as an MTA sees it: each recipient's final reply
        (its RCPT reply if refused, else its reply after the data)."""
        c = self.connect(timeout=timeout)
        c.send("MAIL FROM:<%s>\r\n" % sender + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts) + "DATA\r\n")
        assert c.code() == 250
        out = [c.text() for _ in rcpts]
        if not any(r.startswith("250") for r in out):
            c.text()
        else:
            assert c.code() == 354
            c.send(dotstuff(body))
            out = [c.text() if r.startswith("250") else r for r in out]
        c.close()
        return out

    def ctl(self, *args):
        return subprocess.run([LMTPCTL, "-c", self.conf] + list(args), capture_output=True, text=True,
                              timeout=30, cwd=self.dir)

    def init_db(self):
        return subprocess.run([LMTPD, "-c", self.conf, "--init-db"], capture_output=True, text=True,
                              timeout=60, cwd=self.dir)


def copies(nodes, users):
    """{(message tag, user): [node, ...]} of every copy on every disk of
    @nodes ({name: Daemon}); a message's tag is its Message-ID <TAG@t>."""
    out = {}
    for n, d in nodes.items():
        for u in users:
            for _, data in d.messages("%s@%s" % (u, DOMAIN)):
                m = re.search(rb"Message-ID: <([\w.-]+)@t>", data)
                out.setdefault((m.group(1).decode(), u), []).append(n)
    return out


class PostfixFront:
    """A private Postfix in front of three nodes ({name: (host, port)}, in
    order): its regexp: transport map sends each recipient u<N> to a node by
    the last digit of N, which is not how the cluster places users, so most
    transactions mix local and proxied recipients."""

    def __init__(self, addresses, users):
        self.users = users
        self.maps = tempfile.mkdtemp(prefix="cluster-maps-")
        os.chmod(self.maps, 0o755)
        transport = os.path.join(self.maps, "transport")
        names = list(addresses)
        with open(transport, "w") as f:
            for digits, n in zip(("0-3", "4-6", "7-9"), names):
                f.write("/^u[0-9]*[%s]@/ lmtp:inet:%s:%d\n" % ((digits,) + addresses[n]))
        self.pf = Postfix("/nonexistent", 1, settings=[
            "virtual_mailbox_domains = %s" % DOMAIN, "transport_maps = regexp:%s" % transport,
            "virtual_transport = lmtp:inet:%s:%d" % addresses[names[0]]])

    def stop(self):
        self.pf.stop()

    def submit(self, count, owner, during=None):
        """@count messages of 1-5 random users; @during(i) before message i.
        Returns {(tag, user): [owner(user)]}."""
        rnd = random.Random(18)
        expected = {}
        with smtplib.SMTP("127.0.0.1", self.pf.port, timeout=60) as smtp:
            for i in range(count):
                if during:
                    during(i)
                rcpts = rnd.sample(self.users, rnd.randint(1, 5))
                tag = "m%d" % i
                smtp.sendmail("s@example.net", ["%s@%s" % (u, DOMAIN) for u in rcpts],
                              "From: s@example.net\r\nSubject: %s\r\nMessage-ID: <%s@t>\r\n\r\nbody %s\r\n"
                              % (tag, tag, tag))
                for u in rcpts:
                    expected[(tag, u)] = [owner(u)]
        return expected

    def delivered(self, nodes):
        return copies(nodes, self.users)

    def check_delivered(self, test, nodes, expected, timeout=600):
        """Waits until Postfix's queue is empty and as many copies are on
        the disks as @expected; then each copy once, on its owner's disk."""
        deadline = time.time() + timeout
        count = 0
        while time.time() < deadline:
            count = sum(len(os.listdir(os.path.join(d.maildir("%s@%s" % (u, DOMAIN)), "new")))
                        for d in nodes.values() for u in self.users
                        if os.path.isdir(os.path.join(d.maildir("%s@%s" % (u, DOMAIN)), "new")))
            if count >= len(expected) and not self.pf.queue():
                break
            time.sleep(0.5)
        got = self.delivered(nodes)
        missing = [k for k in expected if k not in got]
        wrong = [(k, v) for k, v in got.items() if expected.get(k) != v]
        test.assertEqual((missing[:5], wrong[:5]), ([], []),
                         "%d copies of %d; postfix: %s" % (count, len(expected), self.pf.maillog()[-3000:]))
        test.assertEqual(len(got), len(expected))
