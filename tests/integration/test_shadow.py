"""Shadow mode and replay (issue 19): a [service] in mode = shadow is called
like any other but its verdict is only counted and recorded, never applied;
recorded calls are made again by lmtpctl replay against another server.

Real LMTP on the wire, ocp-calloutd as the services, bytes on disk:

- a shadow service that rejects everything, in front of a normal service
  that adds a header: every reply 250, the stored bytes the same as those
  of a second lmtpd without the shadow service (trace headers aside), its
  would-be rejections on the metrics page and in lmtpd_verdicts (through
  SQLite and lmtpctl verdicts), its calls in lmtpd_calls with one kept copy per message;
- lmtpctl replay against a second calloutd scripted differently prints
  the differences recipient by recipient and a summary, delivers nothing;
  --since leaves the older calls out; 66 when nothing is recorded, 69 when
  the server cannot be reached;
- [record] max_size bounds the kept copies (recording pauses, logged once),
  [record] keep expires calls and copies;
- a shadow service that is down changes nothing either;
- the same counts and replay with the records in PostgreSQL ([state]
  backend = pgsql): the SQL is written once for both."""

import os
import re
import sqlite3
import subprocess
import time
import unittest

from lmtptest import LMTPD, Callout, Daemon, free_port, main, metrics_text, strip_trace
from test_delivery import transaction
from test_directory_pgsql import PostgresClass

LMTPCTL = os.path.join(os.path.dirname(LMTPD), "..", "admin", "lmtpctl")

SHADOW_SCRIPT = "* reject 550 5.7.1 the shadow says no\n"
NORMAL_SCRIPT = "* add-header X-Checked: yes\n"
# the candidate a replay asks: only bob is refused now
CANDIDATE_SCRIPT = "rcpt=bob@* reject 550 5.7.1 bob again\n* accept\n"

RCPTS = ["alice@example.org", "bob@example.org", "carol@example.org"]


def message(n, pad=0):
    return (b"From: sender@example.net\nTo: team@example.org\nSubject: report %d\n"
            b"Message-ID: <report-%d@example.net>\nDate: Mon, 07 Dec 2026 10:00:00 +0000\n\n"
            b"The numbers of week %d.\n" % (n, n, n) + b"x" * pad + b"\n")


def config(normal, shadow=None, **more):
    extra = {
        "server.metrics_listen": "inet:127.0.0.1:0",
        "service tagger.servers": normal.endpoint,
        "service tagger.timeout": "3s",
    }
    chain = "tagger"
    if shadow is not None:
        extra.update({
            "service judge.servers": shadow if isinstance(shadow, str) else shadow.endpoint,
            "service judge.mode": "shadow",
            "service judge.on_failure": "tempfail",  # ignored: a shadow never tempfails
            "service judge.timeout": "3s",
            "service judge.connect_timeout": "500ms",
        })
        chain = "judge;tagger"
    extra["rule all.match"] = "*"
    extra["rule all.services"] = chain
    extra.update(more)
    return extra


def stored(d, rcpts):
    """Every stored message of @rcpts without our trace headers."""
    return {r: sorted(strip_trace(data) for _, data in d.messages(r)) for r in rcpts}


def records(d, sql, args=()):
    db = sqlite3.connect(os.path.join(d.dir, "var", "lib", "records.db"), timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def wait_rows(d, sql, want, timeout=15):
    """Polls the records until @sql returns @want (the writer is async)."""
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        try:
            got = records(d, sql)
        except sqlite3.OperationalError:
            got = None
        if got == want:
            return got
        time.sleep(0.2)
    raise AssertionError("%s: %r, wanted %r" % (sql, got, want))


def lmtpctl(d, *args):
    return subprocess.run([LMTPCTL, "-c", "lmtpd.conf"] + list(args), cwd=d.dir, capture_output=True,
                          text=True, timeout=60)


def deliver(d, rcpts, body):
    """One LMTP session, one transaction; the replies after the data."""
    c = d.connect()
    c.reply()
    c.cmd("LHLO test")
    replies = transaction(c, rcpts, body)
    c.close()
    return replies


def recorded_files(d):
    path = os.path.join(d.dir, "var", "lib", "recorded")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


class ShadowMode(unittest.TestCase):
    def setUp(self):
        self.shadow = Callout(SHADOW_SCRIPT)
        self.normal = Callout(NORMAL_SCRIPT)
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.cleanup()
        self.shadow.stop()
        self.normal.stop()

    def daemon(self, extra):
        d = Daemon(extra=extra).start()
        self.daemons.append(d)
        return d

    def deliver(self, d, rcpts, body):
        return deliver(d, rcpts, body)

    def test_shadow_rejecting_all_changes_nothing_and_is_counted(self):
        plain = self.daemon(config(self.normal))
        with_shadow = self.daemon(config(self.normal, self.shadow))
        for d in (plain, with_shadow):
            replies = self.deliver(d, RCPTS, message(1))
            self.assertEqual([r[:3] for r in replies], ["250"] * 3, replies)
            self.assertEqual(self.deliver(d, RCPTS[:1], message(2))[0][:3], "250")
        self.assertEqual(stored(with_shadow, RCPTS), stored(plain, RCPTS))
        # the normal service did act, and only it is in the OPES trace
        data = stored(with_shadow, RCPTS)["alice@example.org"][0]
        self.assertIn(b"X-Checked: yes\n", data)
        self.assertIn(b"verdict=modify", data)
        self.assertNotIn(b"judge", data)
        self.assertNotIn(b"verdict=reject", data)
        # the shadow did answer reject, per recipient: 3 + 1
        self.assertIn('lmtpd_shadow_verdicts_total{service="judge",verdict="reject"} 4',
                      metrics_text(with_shadow))
        self.assertNotIn('lmtpd_shadow_verdicts_total{service="tagger"', metrics_text(with_shadow))
        # ... and in the hourly counts (posted within seconds)
        wait_rows(with_shadow, "SELECT service, verdict, shadow, sum(n) FROM lmtpd_verdicts"
                               " GROUP BY service, verdict, shadow ORDER BY service",
                  [("judge", "reject", 1, 4), ("tagger", "modify", 0, 4)])
        wait_rows(plain, "SELECT service, verdict, shadow, sum(n) FROM lmtpd_verdicts"
                         " GROUP BY service, verdict, shadow", [("tagger", "modify", 0, 4)])
        # deliver_verdict_counts, as lmtpctl verdicts prints it
        p = lmtpctl(with_shadow, "verdicts", "--since", "1h")
        self.assertEqual(p.returncode, 0, p.stderr)
        totals = {}
        for line in p.stdout.splitlines():  # "HOUR SERVICE VERDICT N [shadow]"; an hour may turn meanwhile
            m = re.match(r"\d{4}-\d\d-\d\dT\d\d:00Z (\S+) (\S+) (\d+)( shadow)?$", line)
            self.assertTrue(m, line)
            key = (m.group(1), m.group(2), bool(m.group(4)))
            totals[key] = totals.get(key, 0) + int(m.group(3))
        self.assertEqual(totals, {("judge", "reject", True): 4, ("tagger", "modify", False): 4})
        self.assertEqual(lmtpctl(with_shadow, "verdicts", "--since", str(int(time.time()) + 7200)).stdout, "")

    def test_shadow_junking_and_editing_changes_nothing(self):
        painter = Callout("* quarantine Junk; add-header X-Spam: yes; tag-subject [SPAM]; flags Seen\n")
        try:
            plain = self.daemon(config(self.normal))
            with_shadow = self.daemon(config(self.normal, painter))
            for d in (plain, with_shadow):
                self.assertEqual([r[:3] for r in self.deliver(d, RCPTS[:2], message(4))], ["250"] * 2)
        finally:
            painter.stop()
        self.assertEqual(stored(with_shadow, RCPTS[:2]), stored(plain, RCPTS[:2]))
        self.assertEqual(len(with_shadow.messages("alice@example.org")), 1)  # INBOX/new: no Seen, no Junk
        self.assertFalse(os.path.exists(with_shadow.maildir("alice@example.org", ".Junk")))
        self.assertIn('lmtpd_shadow_verdicts_total{service="judge",verdict="quarantine"} 2',
                      metrics_text(with_shadow))

    def test_recording_one_copy_per_message(self):
        d = self.daemon(config(self.normal, self.shadow))
        # the same message twice (to others: a duplicate is not called at all): one copy
        for rcpts in (RCPTS, ["dave@example.org"]):
            self.assertEqual([r[:3] for r in self.deliver(d, rcpts, message(1))], ["250"] * len(rcpts))
        self.deliver(d, RCPTS[1:2], message(2))
        rows = wait_rows(d, "SELECT count(*) FROM lmtpd_calls", [(3,)])
        rows = records(d, "SELECT service, sender, recipients, verdicts, copy, size FROM lmtpd_calls ORDER BY at, rowid")
        self.assertEqual([r[0] for r in rows], ["judge"] * 3)  # tagger is not recorded by default
        self.assertEqual(rows[0][1], "s@example.net")
        self.assertEqual(rows[0][2], "\n".join(RCPTS))  # one shared call for the transaction
        self.assertEqual(rows[0][3], "reject\nreject\nreject")
        self.assertEqual(rows[1][2:4], ("dave@example.org", "reject"))
        self.assertEqual(rows[0][4], rows[1][4])
        self.assertNotEqual(rows[0][4], rows[2][4])
        # one segment file for the hour, each copy a range of it
        segment, offset = rows[0][4].split(":")
        self.assertEqual(recorded_files(d), [segment])
        self.assertEqual(rows[2][4], "%s:%d" % (segment, int(offset) + len(message(1))))
        with open(os.path.join(d.dir, "var", "lib", "recorded", segment), "rb") as f:
            f.seek(int(offset))
            self.assertEqual(f.read(rows[0][5]), message(1))  # the message as the call sent it
        self.assertEqual(rows[0][5], len(message(1)))

    def test_replay_prints_differences_recipient_by_recipient(self):
        d = self.daemon(config(self.normal, self.shadow))
        for r in RCPTS[:1]:
            self.deliver(d, [r], message(1))
        wait_rows(d, "SELECT count(*) FROM lmtpd_calls", [(1,)])
        time.sleep(1.1)  # calls are timed in seconds
        since = int(time.time())
        for r in RCPTS[1:]:
            self.deliver(d, [r], message(2))
        rows = wait_rows(d, "SELECT count(*) FROM lmtpd_calls", [(3,)])
        ids = [r[0] for r in records(d, "SELECT id FROM lmtpd_calls ORDER BY at, rowid")]
        delivered = {r: len(d.messages(r)) for r in RCPTS}
        candidate = Callout(CANDIDATE_SCRIPT)
        try:
            p = lmtpctl(d, "replay", "--service", "judge", "--server", candidate.endpoint)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout, "%s alice@example.org: was reject, now accept\n"
                                       "%s carol@example.org: was reject, now accept\n"
                                       "3 calls, 3 recipients, 2 differ\n" % (ids[0], ids[2]))
            p = lmtpctl(d, "replay", "--service", "judge", "--server", candidate.endpoint,
                        "--since", str(since))
            self.assertEqual(p.stdout, "%s carol@example.org: was reject, now accept\n"
                                       "2 calls, 2 recipients, 1 differ\n" % ids[2], p.stderr)
            p = lmtpctl(d, "replay", "--service", "judge", "--server", candidate.endpoint, "--limit", "1")
            self.assertEqual(p.stdout.splitlines()[-1], "1 calls, 1 recipients, 1 differ")
        finally:
            candidate.stop()
        # against the configured server (the shadow itself): nothing differs
        p = lmtpctl(d, "replay", "--service", "judge")
        self.assertEqual((p.returncode, p.stdout), (0, "3 calls, 3 recipients, 0 differ\n"), p.stderr)
        # nothing was delivered by the replays
        self.assertEqual({r: len(d.messages(r)) for r in RCPTS}, delivered)
        p = lmtpctl(d, "replay", "--service", "tagger")
        self.assertEqual(p.returncode, 66, p.stdout + p.stderr)
        p = lmtpctl(d, "replay", "--service", "judge", "--server", "inet:127.0.0.1:%d" % free_port())
        self.assertEqual(p.returncode, 69, p.stdout + p.stderr)
        self.assertEqual(lmtpctl(d, "replay", "--service", "nosuch").returncode, 78)
        self.assertEqual(lmtpctl(d, "replay").returncode, 64)

    def test_max_size_bounds_the_copies(self):
        size = len(message(1, pad=3000))
        d = self.daemon(config(self.normal, self.shadow, **{"record.max_size": str(size + 100)}))
        for n in range(1, 5):
            self.assertEqual(self.deliver(d, RCPTS[:1], message(n, pad=3000))[0][:3], "250")
        wait_rows(d, "SELECT count(*) FROM lmtpd_calls", [(1,)])
        files = recorded_files(d)
        self.assertEqual(len(files), 1, files)
        total = sum(os.path.getsize(os.path.join(d.dir, "var", "lib", "recorded", f)) for f in files)
        self.assertLessEqual(total, size + 100)
        self.assertEqual(d.read_log().count("recording paused"), 1, d.read_log())
        # counted all the same
        wait_rows(d, "SELECT sum(n) FROM lmtpd_verdicts WHERE service = 'judge' AND shadow = 1", [(4,)])

    def test_keep_expires_calls_and_copies(self):
        d = self.daemon(config(self.normal, self.shadow, **{"record.keep": "60"}))
        self.deliver(d, RCPTS[:1], message(1))
        wait_rows(d, "SELECT count(*) FROM lmtpd_calls", [(1,)])
        d.stop()
        (segment,) = recorded_files(d)
        # the copies are in one segment file an hour: make it two hours old
        old = "seg-%d" % (int(segment[4:]) - 2)
        recorded = os.path.join(d.dir, "var", "lib", "recorded")
        os.rename(os.path.join(recorded, segment), os.path.join(recorded, old))
        db = sqlite3.connect(os.path.join(d.dir, "var", "lib", "records.db"))
        db.execute("UPDATE lmtpd_calls SET expires = expires - 120")
        db.commit()
        db.close()
        d.start()  # a new process looks at the directory with its first recording
        self.deliver(d, RCPTS[1:2], message(2))
        wait_rows(d, "SELECT recipients FROM lmtpd_calls", [("bob@example.org",)])
        self.assertNotIn(old, recorded_files(d))
        self.assertEqual(len(recorded_files(d)), 1)

    def test_shadow_down_changes_nothing(self):
        plain = self.daemon(config(self.normal))
        down = self.daemon(config(self.normal, "inet:127.0.0.1:%d" % free_port()))
        for d in (plain, down):
            replies = self.deliver(d, RCPTS, message(3))
            self.assertEqual([r[:3] for r in replies], ["250"] * 3, replies)
        self.assertEqual(stored(down, RCPTS), stored(plain, RCPTS))
        self.assertIn("service judge failed (shadow, nothing applies)", down.read_log())
        wait_rows(down, "SELECT service, verdict, shadow, sum(n) FROM lmtpd_verdicts"
                        " GROUP BY service, verdict, shadow ORDER BY service",
                  [("judge", "failed", 1, 3), ("tagger", "modify", 0, 3)])
        self.assertEqual(records(down, "SELECT count(*) FROM lmtpd_calls"), [(0,)])



class ShadowOnPostgres(PostgresClass):
    """The records in PostgreSQL: counts add up (upsert), calls replay."""

    def setUp(self):
        self.shadow = Callout(SHADOW_SCRIPT)
        self.normal = Callout(NORMAL_SCRIPT)
        conninfo = "host=%s port=%d dbname=postgres user=postgres" % (self.pg.sock, self.pg.port)
        self.d = Daemon(extra=config(self.normal, self.shadow, **{
            "state.backend": "pgsql", "state.pgsql_conninfo": conninfo, "state.pgsql_timeout": "5s"}))
        r = subprocess.run([LMTPD, "-c", "lmtpd.conf", "--init-db"], cwd=self.d.dir, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.d.start()

    def tearDown(self):
        self.d.cleanup()
        self.shadow.stop()
        self.normal.stop()

    def test_counts_and_replay(self):
        for rcpts in (RCPTS[:2], RCPTS[2:]):
            self.assertEqual([r[:3] for r in deliver(self.d, rcpts, message(len(rcpts)))], ["250"] * len(rcpts))
        deadline = time.time() + 15
        while time.time() < deadline and self.pg.psql("SELECT sum(n) FROM lmtpd_verdicts WHERE shadow = 1").strip() != "3":
            time.sleep(0.2)
        self.assertEqual(self.pg.psql("SELECT service, verdict, shadow, sum(n) FROM lmtpd_verdicts"
                                      " GROUP BY 1, 2, 3 ORDER BY 1").split(),
                         ["judge|reject|1|3", "tagger|modify|0|3"])
        self.assertEqual(self.pg.psql("SELECT count(*) FROM lmtpd_calls").strip(), "2")
        candidate = Callout(CANDIDATE_SCRIPT)
        try:
            p = lmtpctl(self.d, "replay", "--service", "judge", "--server", candidate.endpoint)
        finally:
            candidate.stop()
        self.assertEqual(p.returncode, 0, p.stderr)
        # the first call had alice and bob: bob matches, so the candidate rejects that call, for both
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 2, p.stdout)
        self.assertRegex(lines[0], r"^[0-9a-f]{16} carol@example.org: was reject, now accept$")
        self.assertEqual(lines[1], "2 calls, 3 recipients, 1 differ")


if __name__ == "__main__":
    main()
