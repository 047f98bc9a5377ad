"""[state] backend = pgsql (issue 18): two lmtpd nodes on 127.0.0.2 and
127.0.0.3 share one private PostgreSQL (initdb + pg_ctl in a temp dir,
started and stopped by the test) and one mail root.

- a retry whose 250 was lost, sent to the OTHER node: 250, one file;
- vacation answered on both nodes: one reply (each node keeps its script,
  and so its local reply log, in a directory of its own);
- PostgreSQL stopped (between loads and mid-load): on_error = tempfail
  answers 451 4.3.0 and writes nothing, the MTA-like retry after the
  restart delivers each once, without restarting lmtpd; on_error = local
  logs a warning and delivers;
- lmtpd --init-db twice is fine, and says so clearly when the database
  cannot be reached;
- lmtpctl node list / drain / up, and a node without heartbeat is down;
- old rows expire, bounded; --check-config refuses bad [state]/[cluster]."""

import os
import subprocess
import shutil
import tempfile
import threading
import time
import unittest

from clustertest import Node, wait_for
from lmtptest import LMTPD, Daemon, free_port, main, own
from test_directory_pgsql import PGBIN, Cluster
from test_sieve import SmtpReceiver

MSG = (b"From: Sender <s@example.net>\r\nTo: alice@example.org\r\nSubject: hello\r\n"
       b"Message-ID: <c1@example.net>\r\n\r\nThe body.\r\n")


class ClusterBase(unittest.TestCase):
    extra = {}

    @classmethod
    def setUpClass(cls):
        if PGBIN is None:
            raise unittest.SkipTest("PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)")
        cls.pg = Cluster()

    @classmethod
    def tearDownClass(cls):
        cls.pg.cleanup()

    def setUp(self):
        self.pg.psql("DROP TABLE IF EXISTS lmtpd_duplicates, lmtpd_vacation, lmtpd_sieve_ids, lmtpd_nodes, "
                     "lmtpd_schema_version")
        self.root = tempfile.mkdtemp(prefix="cluster-mail-")
        os.chmod(self.root, 0o755)
        own(self.root)
        self.nodes = [Node("node-a", "127.0.0.2", self.pg, self.root, self.extra),
                      Node("node-b", "127.0.0.3", self.pg, self.root, self.extra)]
        r = self.nodes[0].init_db()
        self.assertEqual(r.returncode, 0, r.stderr)
        for n in self.nodes:
            n.start()

    def tearDown(self):
        if self.pg.pid() is None:
            self.pg.start()
        for n in self.nodes:
            n.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def files(self, address):
        local, domain = address.split("@")
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.root, domain, local, "Maildir", sub)
            out += [os.path.join(d, f) for f in sorted(os.listdir(d))] if os.path.isdir(d) else []
        return out


class SharedJournal(ClusterBase):
    def test_lost_reply_retry_to_the_other_node(self):
        a, b = self.nodes
        # the MTA sends the dot and loses the connection before the reply
        c = a.connect()
        c.send("MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        self.assertEqual([c.code(), c.code(), c.code()], [250, 250, 354])
        c.send(MSG + b".\r\n")
        c.s.close()
        self.assertTrue(wait_for(lambda: len(self.files("alice@example.org")) == 1))
        self.assertTrue(wait_for(lambda: self.pg.psql("SELECT count(*) FROM lmtpd_duplicates WHERE confirmed")
                                 .strip() == "1"))
        # its retry lands on the other node: 250, and still one file
        (r,) = b.send(["alice@example.org"], MSG)
        self.assertTrue(r.startswith("250"), r)
        self.assertIn("duplicate", r)
        self.assertEqual(len(self.files("alice@example.org")), 1)
        self.assertIn("has this message already", b.read_log())
        # another sender's same bytes are another message
        (r,) = b.send(["alice@example.org"], MSG, sender="other@example.net")
        self.assertTrue(r.startswith("250"), r)
        self.assertEqual(len(self.files("alice@example.org")), 2)

    def test_a_live_intent_of_another_node_holds_the_key(self):
        # node-a's intent, its file not there yet (renaming right now, or
        # died before the rename): node-b does not make a second copy
        a, b = self.nodes
        (r,) = a.send(["bob@example.org"], MSG)
        self.assertTrue(r.startswith("250"), r)
        (path,) = self.files("bob@example.org")
        # the confirmation goes out in a batch, a moment later: let it land first
        self.assertTrue(wait_for(lambda: self.pg.psql("SELECT count(*) FROM lmtpd_duplicates WHERE confirmed")
                                 .strip() == "1"))
        self.pg.psql("UPDATE lmtpd_duplicates SET confirmed = false, intended = now(), path = '%s.gone'" % path)
        (r,) = b.send(["bob@example.org"], MSG)
        self.assertTrue(r.startswith("451 4.3.0"), r)
        self.assertEqual(len(self.files("bob@example.org")), 1)
        # once the intent is older than a delivery may take: a dead node's
        self.pg.psql("UPDATE lmtpd_duplicates SET intended = now() - interval '1 hour'")
        (r,) = b.send(["bob@example.org"], MSG)
        self.assertTrue(r.startswith("250"), r)
        self.assertNotIn("duplicate", r)
        self.assertEqual(len(self.files("bob@example.org")), 2)


class Vacation(ClusterBase):
    def setUp(self):
        self.smtp = SmtpReceiver()
        self.extra = {"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port, "sieve.script": ""}
        super().setUp()
        for n in self.nodes:
            # each node keeps the script, and next to it its reply log, on its own disk
            sdir = os.path.join(n.dir, "sieve")
            os.mkdir(sdir)
            own(sdir)
            with open(os.path.join(sdir, "alice.sieve"), "w") as f:
                f.write('require "vacation";\nvacation :days 3 :subject "Away" "I am away.";\n')
            own(os.path.join(sdir, "alice.sieve"))
            n.stop()
            n.write_config(dict(n.extra, **{"sieve.script": os.path.join(sdir, "%n.sieve")}))
            n.start()

    def tearDown(self):
        super().tearDown()
        self.smtp.close()

    def test_one_reply_across_two_nodes(self):
        a, b = self.nodes
        self.assertTrue(a.send(["alice@example.org"], MSG)[0].startswith("250"))
        self.assertEqual(len(self.smtp.wait(1)), 1)
        self.assertTrue(b.send(["alice@example.org"], MSG.replace(b"<c1@", b"<c2@"))[0].startswith("250"))
        time.sleep(0.5)
        self.assertEqual(len(self.smtp.received), 1)
        self.assertIn("answered already", b.read_log())
        self.assertEqual(len(self.files("alice@example.org")), 2)
        # another sender is answered once too
        self.assertTrue(b.send(["alice@example.org"], MSG, sender="x@example.net")[0].startswith("250"))
        self.assertEqual(len(self.smtp.wait(2)), 2)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM lmtpd_vacation").strip(), "2")


class PgsqlDownTempfail(ClusterBase):
    def test_451_then_each_once_after_the_restart(self):
        a, b = self.nodes
        rcpts = ["u%d@example.org" % i for i in range(6)]
        self.assertTrue(all(r.startswith("250") for r in a.send(rcpts[:2], MSG)))
        self.pg.stop()
        replies = a.send(rcpts, MSG) + b.send(rcpts[2:], MSG)
        # the first two had it: 451 too (the journal cannot tell), nothing written
        self.assertTrue(all(r.startswith("451 4.3.0") for r in replies), replies)
        self.assertEqual([len(self.files(r)) for r in rcpts], [1, 1, 0, 0, 0, 0])
        self.assertIn("shared state failing: 451", a.read_log())
        self.pg.start()
        # the MTA's retry, half to each node, the same lmtpd processes
        replies = a.send(rcpts[:3], MSG) + b.send(rcpts[3:], MSG)
        self.assertTrue(all(r.startswith("250") for r in replies), replies)
        self.assertEqual([len(self.files(r)) for r in rcpts], [1] * 6)
        # and once more on the other node: duplicates, still one each
        replies = b.send(rcpts[:3], MSG) + a.send(rcpts[3:], MSG)
        self.assertTrue(all("duplicate" in r for r in replies), replies)
        self.assertEqual([len(self.files(r)) for r in rcpts], [1] * 6)
        # the outage is logged when it starts and when it ends, not per statement
        log = a.read_log()
        self.assertIn("PostgreSQL answers again", log)
        self.assertLessEqual(log.count("failures so far"), 2)


class PgsqlDownMidLoad(ClusterBase):
    def test_stopped_mid_load_nothing_lost_nothing_twice(self):
        # two MTA-like senders, one a node, 30 messages each; PostgreSQL stops
        # after the first few; what was not 250 is retried on the other node
        # once it is back, until every message is 250: one file each
        nodes = self.nodes
        jobs = {n.name: ["m%d-%s@example.org" % (i, n.name) for i in range(30)] for n in nodes}
        replies = {}

        def body(rcpt):
            return MSG.replace(b"<c1@", ("<%s@" % rcpt.split("@")[0]).encode())

        def load(node):
            for r in jobs[node.name]:
                replies[r] = node.send([r], body(r))[0]

        threads = [threading.Thread(target=load, args=(n,)) for n in nodes]
        for t in threads:
            t.start()
        self.assertTrue(wait_for(lambda: len(replies) >= 8, 30))
        self.pg.stop()
        for t in threads:
            t.join(120)
        self.assertEqual(len(replies), 60)
        codes = sorted(set(r[:3] for r in replies.values()))
        self.assertTrue(set(codes) <= {"250", "451"}, codes)
        self.assertIn("451", codes)
        for r, reply in replies.items():
            if reply.startswith("451"):
                self.assertIn("4.3.0", reply)
                self.assertEqual(self.files(r), [], r)  # no file written after a 451
        self.pg.start()
        for _ in range(5):
            todo = [r for r, reply in replies.items() if not reply.startswith("250")]
            for r in todo:
                other = nodes[1] if r.endswith("node-a@example.org") else nodes[0]
                replies[r] = other.send([r], body(r))[0]
        self.assertEqual([r for r, reply in replies.items() if not reply.startswith("250")], [])
        self.assertEqual({r: len(self.files(r)) for r in replies}, {r: 1 for r in replies})


class PgsqlDownLocal(ClusterBase):
    extra = {"state.on_error": "local"}

    def test_warning_and_delivery_goes_on(self):
        a, b = self.nodes
        self.pg.stop()
        (r,) = a.send(["carol@example.org"], MSG)
        self.assertTrue(r.startswith("250"), r)
        self.assertEqual(len(self.files("carol@example.org")), 1)
        self.assertIn("shared state failing: the local duplicate journal is used", a.read_log())
        # the local journal took the record: the same node knows it
        (r,) = a.send(["carol@example.org"], MSG)
        self.assertIn("duplicate", r)
        self.assertEqual(len(self.files("carol@example.org")), 1)
        self.pg.start()
        (r,) = a.send(["dave@example.org"], MSG)
        self.assertTrue(r.startswith("250"), r)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM lmtpd_duplicates").strip(), "1")


class InitDbAndNodes(ClusterBase):
    def test_init_db_twice_and_unreachable(self):
        a, b = self.nodes
        for _ in range(2):
            r = a.init_db()
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("up to date", r.stdout)
        self.assertEqual(self.pg.psql("SELECT version FROM lmtpd_schema_version ORDER BY version").split(),
                         ["1", "2"])
        # migration 2: the records of issue 19
        self.assertIn("lmtpd_quarantine", self.pg.psql("SELECT tablename FROM pg_tables").split())
        a.write_config(dict(a.extra, **{"state.pgsql_conninfo": "host=127.0.0.1 port=%d dbname=postgres "
                                        "user=postgres connect_timeout=2" % free_port()}))
        r = a.init_db()
        self.assertEqual(r.returncode, 75)
        self.assertRegex(r.stderr, r"--init-db: pgsql: connect: .*(refused|connect)")

    def test_expired_rows_go(self):
        a, b = self.nodes
        self.pg.psql("INSERT INTO lmtpd_duplicates (key, confirmed, expires) SELECT 'old' || i, true, "
                     "now() - interval '1 minute' FROM generate_series(1, 7000) i;"
                     "INSERT INTO lmtpd_duplicates (key, confirmed, expires) VALUES ('live', true, now() + "
                     "interval '1 hour');"
                     "INSERT INTO lmtpd_vacation VALUES ('a@x', 'h', 's@y', now() - interval '1 second');"
                     "INSERT INTO lmtpd_sieve_ids VALUES ('a@x', 'k', now() - interval '1 second')")
        # each node expires when it starts, then once a minute, 5000 rows a table a time
        a.stop()
        a.start()
        count = "SELECT (SELECT count(*) FROM lmtpd_duplicates) + (SELECT count(*) FROM lmtpd_vacation)" \
                " + (SELECT count(*) FROM lmtpd_sieve_ids)"
        self.assertTrue(wait_for(lambda: int(self.pg.psql(count)) < 7003))
        b.stop()
        b.start()
        self.assertTrue(wait_for(lambda: int(self.pg.psql(count)) == 1))
        self.assertEqual(self.pg.psql("SELECT key FROM lmtpd_duplicates").split(), ["live"])

    def test_lmtpctl_node_list_drain_up_and_timeout(self):
        a, b = self.nodes
        self.assertTrue(wait_for(lambda: self.pg.psql("SELECT count(*) FROM lmtpd_nodes").strip() == "2"))
        r = a.ctl("node", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"node-a\s+127\.0\.0\.2:%d\s+up\s+up\s+\ds ago" % a.lport)
        self.assertRegex(r.stdout, r"node-b\s+127\.0\.0\.3:%d\s+up\s+up" % b.lport)
        r = a.ctl("node", "drain", "node-b")
        self.assertEqual((r.returncode, r.stdout), (0, "node-b: draining\n"))
        self.assertRegex(a.ctl("node", "list").stdout, r"node-b\s+\S+\s+draining\s+draining")
        self.assertEqual(self.pg.psql("SELECT state FROM lmtpd_nodes WHERE name = 'node-b'").strip(), "draining")
        # the heartbeat keeps the state lmtpctl set
        time.sleep(3.5)
        self.assertRegex(a.ctl("node", "list").stdout, r"node-b\s+\S+\s+draining")
        self.assertEqual(a.ctl("node", "up", "node-b").returncode, 0)
        self.assertEqual(a.ctl("node", "drain", "nosuch").returncode, 67)
        self.assertEqual(a.ctl("node", "frobnicate", "node-b").returncode, 64)
        # no heartbeat for longer than node_timeout: down, whatever its state says
        b.stop()
        time.sleep(3.5)
        self.assertRegex(a.ctl("node", "list").stdout, r"node-b\s+\S+\s+down\s+up")
        self.assertRegex(a.ctl("node", "list").stdout, r"node-a\s+\S+\s+up\s+up")


class Settings(unittest.TestCase):
    def test_check_config_refuses_bad_cluster_settings(self):
        d = Daemon()
        try:
            pgsql = {"state.backend": "pgsql", "state.pgsql_conninfo": "host=/nonexistent dbname=x"}
            for extra, want in (({"cluster.node_name": "x", **pgsql}, "lmtp_address: node_name is set"),
                                ({"cluster.node_name": "x", "cluster.nodes": "pgsql"},
                                 "pgsql (the nodes table) needs [state] backend = pgsql"),
                                ({"cluster.node_name": "x", "cluster.lmtp_address": "10.0.0.1"},
                                 "'10.0.0.1' is not HOST:PORT"),
                                ({"cluster.lmtp_address": "10.0.0.1:0"}, "a port other than 0"),
                                ({"state.backend": "pgsql"}, "backend pgsql needs a connection string"),
                                ({"state.backend": "redis"}, "backend")):
                d.write_config(dict(extra))
                r = subprocess.run([LMTPD, "-c", d.conf, "--check-config"], capture_output=True, text=True,
                                   cwd=d.dir, timeout=30)
                self.assertEqual(r.returncode, 78, (extra, r.stdout))
                self.assertIn(want, r.stderr)
            d.write_config({"cluster.node_name": "x", "cluster.lmtp_address": "[::1]:24"})
            r = subprocess.run([LMTPD, "-c", d.conf, "--check-config"], capture_output=True, text=True,
                               cwd=d.dir, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            d.cleanup()


if __name__ == "__main__":
    main()
