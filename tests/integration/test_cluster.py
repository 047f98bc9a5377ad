"""Issue 18's tests on the joined system: three lmtpd nodes n1-n3 on
127.0.0.2-4, each with its own mail root (per-node disks), one private
PostgreSQL holding the shared state and the nodes table ([state] backend =
pgsql), and the proxy taking its node list from that table ([cluster]
nodes = pgsql).  Users u0-u39; u0-u3 have host= in the users map, the
others are hashed (lmtpd/lmtp-nodes.c, fnv_owner here).

- after the heartbeats lmtpctl shows the three up; Postfix in front hands
  them 2,000 messages of 1-5 recipients: each copy once, on its owner;
- a lost-reply retry sent to another node: 250, no second copy;
- a node SIGKILLed mid-load: its recipients 451 (not moved elsewhere), the
  others delivered; restarted, the MTA-like retry delivers each once;
- lmtpctl node drain / up moves the hashed users within seconds;
- PostgreSQL stopped mid-load: tempfail holds, nothing lost or twice; it
  comes back without restarting lmtpd."""

import collections
import itertools
import random
import re
import signal
import threading
import time
import unittest

from clustertest import DOMAIN, Node, PostfixFront, copies, fnv_owner, wait_for
from lmtptest import main
from test_directory_pgsql import PGBIN, Cluster as Pgsql

NAMES = ["n1", "n2", "n3"]
USERS = ["u%d" % i for i in range(40)]
PINNED = {"u0": "n3", "u1": "n3", "u2": "n1", "u3": "n2"}


def owner(u, up=NAMES):
    return PINNED.get(u) or fnv_owner("%s@%s" % (u, DOMAIN), up)


def body(tag):
    return ("From: s@example.net\r\nSubject: %s\r\nMessage-ID: <%s@t>\r\n\r\nbody %s\r\n"
            % (tag, tag, tag)).encode()


class ClusterTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if PGBIN is None:
            raise unittest.SkipTest("PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)")
        cls.pg = Pgsql()

    @classmethod
    def tearDownClass(cls):
        cls.pg.cleanup()

    def setUp(self):
        self.pg.psql("DROP TABLE IF EXISTS lmtpd_duplicates, lmtpd_vacation, lmtpd_sieve_ids, lmtpd_nodes, "
                     "lmtpd_schema_version")
        users = ["%s@%s%s" % (u, DOMAIN, " host=" + PINNED[u] if u in PINNED else "") for u in USERS]
        extra = {"cluster.nodes": "pgsql", "server.xforward_hosts": "127.0.0.0/8",
                 "users.domains": "catchall.invalid", "server.max_sessions": "200",
                 "cluster.proxy_timeout": "5", "cluster.proxy_command_timeout": "2",
                 "delivery.delivery_timeout": "10"}
        self.nodes = {n: Node(n, "127.0.0.%d" % (i + 2), self.pg, None, extra, users) for i, n in enumerate(NAMES)}
        r = self.nodes["n1"].init_db()
        self.assertEqual(r.returncode, 0, r.stderr)
        # the rows a node's first heartbeat would make, made at once: every
        # node's first read of the table then sees all three
        self.pg.psql("INSERT INTO lmtpd_nodes (name, lmtp_address) VALUES " + ", ".join(
            "('%s', '%s:%d')" % (n, d.host, d.lport) for n, d in self.nodes.items()))
        for d in self.nodes.values():
            d.start()
        self.assertTrue(wait_for(lambda: self.pg.psql("SELECT count(*) FROM lmtpd_nodes WHERE heartbeat IS NOT NULL")
                                 .strip() == "3"))
        time.sleep(0.2)  # the read after the beat

    def tearDown(self):
        if self.pg.pid() is None:
            self.pg.start()
        for d in self.nodes.values():
            d.cleanup()

    def copies(self):
        return copies(self.nodes, USERS)

    def assert_each_once_on_owner(self, expected):
        """@expected: {(tag, user): owner}; every copy there once, no other."""
        got = self.copies()
        wrong = {k: v for k, v in got.items() if v != [expected.get(k)]}
        missing = [k for k in expected if k not in got]
        self.assertEqual((wrong, missing), ({}, []))

    def load(self, entry, count, prefix, seed, during=None):
        """@count MTA-like transactions of 1-4 users through the nodes
        @entry, one thread each: {(tag, user): final reply}."""
        replies = {}

        def run(n, k):
            rnd = random.Random(seed + k)
            for i in range(count):
                tag = "%s%s-%d" % (prefix, n, i)
                rcpts = rnd.sample(USERS, rnd.randint(1, 4))
                got = self.nodes[n].deliver(["%s@%s" % (u, DOMAIN) for u in rcpts], body(tag))
                replies.update({(tag, u): r for u, r in zip(rcpts, got)})
        threads = [threading.Thread(target=run, args=(n, k)) for k, n in enumerate(entry)]
        for t in threads:
            t.start()
        if during:
            during(replies)
        for t in threads:
            t.join(120)
        return replies

    def retry(self, replies, avoid=()):
        """The MTA's retry of what was not 250, each time through another
        node (never one in @avoid), until everything is 250.  An intent of
        a node killed before its rename holds its key for delivery_timeout
        + 5 s (15 s here): 451 4.3.0 until then."""
        entry = [n for n in NAMES if n not in avoid]
        deadline = time.monotonic() + 30
        for attempt in itertools.count():
            todo = sorted(k for k, r in replies.items() if not r.startswith("250"))
            if not todo or time.monotonic() > deadline:
                break
            time.sleep(1 if attempt > 2 else 0)
            for i, (tag, u) in enumerate(todo):
                n = entry[(i + attempt) % len(entry)]
                (replies[(tag, u)],) = self.nodes[n].deliver(["%s@%s" % (u, DOMAIN)], body(tag))
        self.assertEqual([(k, r) for k, r in replies.items() if not r.startswith("250")], [])

    def test_postfix_two_thousand_messages(self):
        listed = self.nodes["n2"].ctl("node", "list")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        for n, d in self.nodes.items():
            self.assertRegex(listed.stdout, r"%s\s+%s:%d\s+up\s+up\s+\ds ago" % (n, d.host.replace(".", r"\."),
                                                                                 d.lport))
        self.assertEqual({owner(u) for u in USERS if u not in PINNED}, set(NAMES))
        front = PostfixFront({n: (d.host, d.lport) for n, d in self.nodes.items()}, USERS)
        try:
            t0 = time.monotonic()
            expected = front.submit(2000, owner)
            front.check_delivered(self, self.nodes, expected, timeout=240)
            print("# 2,000 messages, %d copies, through Postfix in %.1f s" % (len(expected), time.monotonic() - t0))
        finally:
            front.stop()
        proxied = sum(d.read_log().count("mailbox=proxy:") for d in self.nodes.values())
        self.assertGreater(proxied, 2000)

    def test_lost_reply_retry_to_another_node(self):
        hashed = {n: [u for u in USERS if u not in PINNED and owner(u) == n][0] for n in NAMES}
        # n3's user through n1 (proxied), n1's user through n1 (local); each
        # retried through n2, which proxies both
        for u, tag in ((hashed["n3"], "lost1"), (hashed["n1"], "lost2")):
            c = self.nodes["n1"].connect()
            c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<%s@%s>\r\nDATA\r\n" % (u, DOMAIN))
            self.assertEqual([c.code(), c.code(), c.code()], [250, 250, 354])
            c.send(body(tag) + b".\r\n")
            # stored on its owner; the reply never reaches the MTA
            self.assertTrue(wait_for(lambda: (tag, u) in self.copies()))
            c.close()
            self.assertTrue(wait_for(lambda: self.pg.psql("SELECT count(*) FROM lmtpd_duplicates WHERE confirmed")
                                     .strip() == tag[-1]))
            (r,) = self.nodes["n2"].deliver(["%s@%s" % (u, DOMAIN)], body(tag))
            self.assertTrue(r.startswith("250"), r)
            self.assertIn("duplicate", r)
        self.assert_each_once_on_owner({("lost1", hashed["n3"]): "n3", ("lost2", hashed["n1"]): "n1"})
        self.assertIn("has this message already", self.nodes["n3"].read_log())

    def test_node_killed_mid_load(self):
        n3 = self.nodes["n3"]

        def kill(replies):
            self.assertTrue(wait_for(lambda: len(replies) >= 60, 60))
            n3.signal(signal.SIGKILL)
            n3.proc.wait()
            n3.log.close()
        replies = self.load(["n1", "n2"], 60, "k", 100, kill)
        self.assertTrue(any(r.startswith("451") for r in replies.values()))
        # after the heartbeat timed out: n3 is down, its users still wait for it
        time.sleep(2.5)
        self.assertRegex(self.nodes["n1"].ctl("node", "list").stdout, r"n3\s+\S+\s+down\s+up")
        replies.update(self.load(["n1", "n2"], 10, "late", 200))
        print("# n3 killed: %s" % ", ".join("%d %s" % (n, c) for c, n in sorted(collections.Counter(
            r[:9] for r in replies.values()).items())))
        for (tag, u), r in replies.items():
            if owner(u) == "n3":
                self.assertRegex(r, r"^(250|451 4\.4\.[12]) ", (tag, u))
            else:
                self.assertTrue(r.startswith("250"), (tag, u, r))
        got = self.copies()
        for (tag, u), r in replies.items():
            if tag.startswith("late") and owner(u) == "n3":
                self.assertTrue(r.startswith("451 4.4.1"), (tag, u, r))
            if r.startswith("451 4.4.1"):
                self.assertNotIn((tag, u), got)  # no file written after a 451
        # what n3 stored before it died is on n3, nothing of its users elsewhere
        self.assertEqual([(k, v) for k, v in got.items() if v != [owner(k[1])]], [])
        n3.start()
        self.retry(replies, avoid=("n3",))
        self.assert_each_once_on_owner({k: owner(k[1]) for k in replies})

    def test_drain_and_up(self):
        movers = [u for u in USERS if u not in PINNED and owner(u) == "n2"]
        after = {u: owner(u, ["n1", "n3"]) for u in USERS}
        self.assertEqual({after[u] for u in movers}, {"n1", "n3"})  # spread over both
        rounds = iter(range(1000))

        def settled(where):
            """One message for every user through each node; True when the
            movers' copies all landed where @where says."""
            tags = []
            for n in NAMES:
                tag = "d%d" % next(rounds)
                tags.append(tag)
                replies = self.nodes[n].deliver(["%s@%s" % (u, DOMAIN) for u in USERS], body(tag))
                # while the nodes disagree a proxied recipient may meet a loop: 451
                self.assertTrue(all(r[:3] in ("250", "451") for r in replies), replies)
            got = self.copies()
            return all(got.get((t, u)) == [where[u]] for t in tags for u in movers)
        # delivered on n2 before the drain; its 250 lost, retried after it
        pre = self.nodes["n1"].deliver(["%s@%s" % (u, DOMAIN) for u in movers], body("pre"))
        self.assertTrue(all(r.startswith("250") for r in pre), pre)
        r = self.nodes["n1"].ctl("node", "drain", "n2")
        self.assertEqual((r.returncode, r.stdout), (0, "n2: draining\n"))
        t0 = time.monotonic()
        self.assertTrue(wait_for(lambda: settled(after), 10))
        drained = time.monotonic() - t0
        self.assertLess(drained, 8)
        print("# drain effective on every node within %.1f s" % drained)
        got = self.copies()
        last = "d%d" % (next(rounds) - 1)
        # the others keep their owner, host=n2 stays on n2
        self.assertEqual({u: got.get((last, u)) for u in USERS}, {u: [after[u]] for u in USERS})
        self.assertEqual(after["u3"], "n2")
        # the new owners find it in the shared journal: 250, no second copy
        pre = self.nodes["n3"].deliver(["%s@%s" % (u, DOMAIN) for u in movers], body("pre"))
        self.assertTrue(all(r.startswith("250") and "duplicate" in r for r in pre), pre)
        self.assertEqual({u: self.copies().get(("pre", u)) for u in movers}, {u: ["n2"] for u in movers})
        r = self.nodes["n3"].ctl("node", "up", "n2")
        self.assertEqual(r.returncode, 0, r.stderr)
        t0 = time.monotonic()
        self.assertTrue(wait_for(lambda: settled({u: owner(u) for u in USERS}), 10))
        self.assertLess(time.monotonic() - t0, 8)
        # every copy on the owner of its moment, none twice
        for k, v in self.copies().items():
            self.assertIn(v, ([owner(k[1])], [after[k[1]]]), k)

    def test_pgsql_stopped_mid_load(self):
        pids = {n: d.proc.pid for n, d in self.nodes.items()}

        def stop(replies):
            self.assertTrue(wait_for(lambda: len(replies) >= 40, 60))
            self.pg.stop()
        replies = self.load(NAMES, 40, "p", 300, stop)
        codes = collections.Counter(r[:9] for r in replies.values())
        self.assertIn("451 4.3.0", codes)
        self.assertTrue({c[:3] for c in codes} <= {"250", "451"}, codes)
        got = self.copies()
        for k, r in replies.items():
            if r.startswith("451"):
                self.assertTrue(r.startswith("451 4.3.0"), (k, r))
                self.assertNotIn(k, got)  # no file written after a 451
        self.pg.start()
        self.retry(replies)
        self.assert_each_once_on_owner({k: owner(k[1]) for k in replies})
        self.assertEqual({n: d.proc.pid for n, d in self.nodes.items()}, pids)
        self.assertTrue(any("PostgreSQL answers again" in d.read_log() for d in self.nodes.values()))
        self.assertTrue(wait_for(lambda: len(re.findall(r"\s+up\s+up\s+\ds ago",
                                                        self.nodes["n1"].ctl("node", "list").stdout)) == 3, 8))
        print("# PostgreSQL stopped: %s" % ", ".join("%d %s" % (n, c) for c, n in sorted(codes.items())))

    def test_node_restarted_while_pgsql_down(self):
        """A node that has not read the nodes table yet does not know who
        owns what: 451, never another node's user on its own disk."""
        n3 = self.nodes["n3"]
        others = [u for u in USERS if owner(u) != "n3"][:6]
        self.pg.stop()
        n3.stop()
        n3.start()
        t0 = time.monotonic()
        self.pg.start()
        # at once, before n3's heartbeat thread tries again (3 s after n3 began)
        replies = {("r%d" % i, u): r for i in range(3) for u, r in
                   zip(others, n3.deliver(["%s@%s" % (u, DOMAIN) for u in others], body("r%d" % i)))}
        self.assertTrue({r[:3] for r in replies.values()} <= {"250", "451"}, replies)
        if time.monotonic() - t0 < 2.5:
            self.assertEqual({replies[("r0", u)] for u in others},
                             {"451 4.3.0 <%s@%s> The cluster's node list is not known yet, try again later"
                              % (u, DOMAIN) for u in others})
        self.assertEqual([(k, v) for k, v in self.copies().items() if v != [owner(k[1])]], [])
        time.sleep(3.5)
        self.retry(replies)
        self.assert_each_once_on_owner({k: owner(k[1]) for k in replies})


if __name__ == "__main__":
    main()
