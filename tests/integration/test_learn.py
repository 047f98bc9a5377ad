#!/usr/bin/env python3
"""Learning from the user (issue 19): a message moved into Junk reaches a
real spamd as spam for its user, one moved out as ham; a move into Trash
and lmtpd's own deliveries into Junk teach nothing.  Moves are made by
renaming files (as most IMAP servers do) and by a real Dovecot's IMAP MOVE
(a hard link into the destination, then the unlink of the source).  A
real rspamd's controller learns per user too; the per-user rate and
max_size drop what they should.  The builtin scorer: what lmtpd's learner
writes moves its score."""
import grp
import http.server
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

from lmtptest import (Daemon, MAIL_USER, Services, dotstuff, free_port, main, own)
from test_directory_dovecot import Dovecot

SPAMD = shutil.which("spamd") or "/usr/sbin/spamd"
SA_LEARN = shutil.which("sa-learn") or "/usr/bin/sa-learn"
RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"

ANN = "ann@example.org"
PILLS = (b"From: Pharmacy <deals@pills.example>\r\nTo: ann@example.org\r\nSubject: cheap pills viagra offer\r\n"
         b"Message-ID: <%s@pills.example>\r\n\r\nbuy cheap pills viagra cialis now online pharmacy discount\r\n"
         b"limited offer order today pharmacy pills\r\n")


def own_tree(path):
    for root, dirs, files in os.walk(path):
        own(root)
        for name in files:
            own(os.path.join(root, name))


def make_maildir(daemon, address, folders=("Junk", "Trash")):
    """@address's Maildir with its Maildir++ folders, owned by the mail user."""
    path = daemon.maildir(address)
    for d in [path] + [os.path.join(path, "." + f) for f in folders]:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
    own_tree(daemon.mail)


def deliver(d, rcpts, body):
    c = d.connect()
    c.reply()
    c.cmd("LHLO x")
    c.send("MAIL FROM:<s@pills.example>\r\n" + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts) + "DATA\r\n")
    codes = [c.code() for _ in range(len(rcpts) + 2)]
    assert codes == [250] * (len(rcpts) + 1) + [354], codes
    c.send(dotstuff(body))
    replies = [c.text() for _ in rcpts]
    c.close()
    assert all(r.startswith("250") for r in replies), replies


def wait_for(fn, timeout=15, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def only_file(d):
    names = [n for n in os.listdir(d) if not n.startswith(".")]
    assert len(names) == 1, (d, names)
    return os.path.join(d, names[0])


class TempServer:
    """A server the test starts in a temp dir of its own and stops by its PID."""

    def spawn(self, args, ready, what):
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_for(lambda: self.proc.poll() is not None or ready(), 120, what)
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited: %s" % (what, open(self.log.name, errors="replace").read()[-3000:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Spamd(TempServer):
    """spamd on 127.0.0.1 with --allow-tell and per-user Bayes files under a
    temp dir (--virtual-config-dir), its own site config, as the mail user."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="spamd-")
        os.chmod(self.dir, 0o755)
        self.site = os.path.join(self.dir, "site")
        os.mkdir(self.site)
        for name in os.listdir("/etc/spamassassin"):
            if name.endswith(".pre"):
                shutil.copy(os.path.join("/etc/spamassassin", name), self.site)
        with open(os.path.join(self.site, "local.cf"), "w") as f:
            f.write("use_bayes 1\nbayes_auto_learn 0\nskip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\n")
        os.mkdir(os.path.join(self.dir, "users"))
        own_tree(self.dir)
        self.port = free_port()
        self.pidfile = os.path.join(self.dir, "spamd.pid")
        args = [SPAMD, "--allow-tell", "-x", "--virtual-config-dir=%s/users/%%u" % self.dir, "-i", "127.0.0.1",
                "-p", str(self.port), "-A", "127.0.0.1", "--siteconfigpath=" + self.site, "-s", "stderr",
                "-m", "2", "-r", self.pidfile]
        if os.geteuid() == 0:
            args += ["-u", MAIL_USER]
        self.spawn(args, lambda: b"server successfully spawned child" in open(self.log.name, "rb").read(), "spamd")

    def magic(self, user):
        """(nspam, nham) of @user's Bayes database, by sa-learn --dump magic."""
        db = os.path.join(self.dir, "users", user, "bayes")
        if not os.path.exists(db + "_toks"):
            return (0, 0)
        out = subprocess.run([SA_LEARN, "--siteconfigpath=" + self.site, "--dbpath", db, "--dump", "magic"],
                             capture_output=True, text=True, timeout=60).stdout
        nspam = int(re.search(r"^\S+\s+\S+\s+(\d+)\s+\S+\s+non-token data: nspam$", out, re.M).group(1))
        nham = int(re.search(r"^\S+\s+\S+\s+(\d+)\s+\S+\s+non-token data: nham$", out, re.M).group(1))
        return (nspam, nham)



class ImapDovecot(Dovecot):
    """Dovecot's IMAP on a free loopback port over one Maildir; one user
    (passdb static, any name with the password 'pw'), as the mail user."""

    def __init__(self, maildir):
        super().__init__([])
        self.port = free_port()
        index = os.path.join(self.dir, "index")
        os.mkdir(index)
        own(index)
        pw = pwd.getpwnam(MAIL_USER) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        with open(self.conf, "w") as f:
            f.write("""base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 0
mail_location = maildir:{m}:INDEX={i}
passdb {{
  driver = static
  args = password=pw
}}
userdb {{
  driver = static
  args = uid={u} gid={g} home={i}
}}
service imap-login {{
  inet_listener imap {{
    port = {p}
  }}
}}
""".format(d=self.dir, m=maildir, i=index, p=self.port, u=pw.pw_uid, g=pw.pw_gid,
           internal="dovecot" if os.geteuid() == 0 else pw.pw_name,
           login="dovenull" if os.geteuid() == 0 else pw.pw_name))
        self.start()

    def login(self):
        imap = wait_for(self._connect, 15, "dovecot's IMAP")
        imap.login("ann", "pw")
        return imap

    def _connect(self):
        try:
            return imaplib.IMAP4("127.0.0.1", self.port)
        except OSError:
            return None


def learn_lines(d, user=None):
    return [l for l in d.read_log().splitlines() if "learn: user=" in l and (user is None or "user=" + user in l)]


class LearnSpamd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.spamd = Spamd()

    @classmethod
    def tearDownClass(cls):
        cls.spamd.stop()

    def setUp(self):
        self.d = Daemon(extra={"learn.enabled": "true", "learn.backend": "spamd",
                               "learn.spamd": "inet:127.0.0.1:%d" % self.spamd.port})
        self.user = "ann%d@example.org" % (int(time.time() * 1000) % 1000000)  # a fresh Bayes per test
        make_maildir(self.d, self.user)
        self.d.start()
        wait_for(lambda: "learn: watching" in self.d.read_log(), 10, "the watcher")

    def tearDown(self):
        self.d.cleanup()

    def deliver_one(self, tag):
        deliver(self.d, [self.user], PILLS % tag.encode())
        return only_file(os.path.join(self.d.maildir(self.user), "new"))

    def wait_learned(self, n, user=None):
        return wait_for(lambda: len(learn_lines(self.d, user or self.user)) >= n and learn_lines(self.d, user or self.user),
                        30, "%d learn lines" % n)

    def test_rename_into_junk_then_out_to_inbox(self):
        path = self.deliver_one("a1")
        md = self.d.maildir(self.user)
        # (a) into Junk, as an IMAP server renames it
        junk = os.path.join(md, ".Junk", "cur", os.path.basename(path) + ":2,S")
        os.rename(path, junk)
        lines = self.wait_learned(1)
        self.assertRegex(lines[0], r"learn: user=%s class=spam folder=Junk from=INBOX backend=spamd result=ok"
                         % re.escape(self.user))
        self.assertEqual(self.spamd.magic(self.user), (1, 0))
        # (b) out to INBOX: ham (spamd moves it from spam to ham)
        os.rename(junk, os.path.join(md, "cur", os.path.basename(junk)))
        lines = self.wait_learned(2)
        self.assertRegex(lines[1], r"class=ham folder=INBOX from=Junk backend=spamd result=ok")
        self.assertEqual(self.spamd.magic(self.user), (0, 1))

    def test_trash_and_same_folder_renames_teach_nothing(self):
        path = self.deliver_one("c1")
        md = self.d.maildir(self.user)
        # new/ -> cur/ of INBOX is reading it; INBOX -> Trash is deleting it
        cur = os.path.join(md, "cur", os.path.basename(path) + ":2,S")
        os.rename(path, cur)
        os.rename(cur, os.path.join(md, ".Trash", "cur", os.path.basename(cur)))
        # (c) Junk -> Trash: nothing either; the one move into Junk is the only lesson
        path = self.deliver_one("c2")
        junk = os.path.join(md, ".Junk", "cur", os.path.basename(path))
        os.rename(path, junk)
        self.wait_learned(1)
        os.rename(junk, os.path.join(md, ".Trash", "cur", os.path.basename(junk)))
        time.sleep(2)
        lines = learn_lines(self.d, self.user)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("class=spam folder=Junk", lines[0])
        self.assertEqual(self.spamd.magic(self.user), (1, 0))

    def test_renamed_folder(self):
        """An IMAP RENAME: the old Junk teaches nothing any more, the folder
        renamed to Junk does."""
        md = self.d.maildir(self.user)
        os.rename(os.path.join(md, ".Junk"), os.path.join(md, ".Old"))
        os.rename(os.path.join(md, ".Trash"), os.path.join(md, ".Junk"))
        time.sleep(0.5)
        path = self.deliver_one("f1")
        os.rename(path, os.path.join(md, ".Old", "cur", os.path.basename(path)))
        path = self.deliver_one("f2")
        os.rename(path, os.path.join(md, ".Junk", "new", os.path.basename(path)))
        lines = self.wait_learned(1)
        time.sleep(1)
        lines = learn_lines(self.d, self.user)
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"class=spam folder=Junk from=INBOX backend=spamd result=ok")
        self.assertEqual(self.spamd.magic(self.user), (1, 0))

    def test_dovecot_imap_move(self):
        self.deliver_one("d1")
        dv = ImapDovecot(self.d.maildir(self.user))
        try:
            imap = dv.login()
            self.assertEqual(imap.select("INBOX")[0], "OK")
            typ, data = imap._simple_command("MOVE", "1", "Junk")
            self.assertEqual(typ, "OK", data)
            lines = self.wait_learned(1)
            self.assertRegex(lines[0], r"class=spam folder=Junk from=INBOX backend=spamd result=ok")
            self.assertEqual(self.spamd.magic(self.user), (1, 0))
            self.assertEqual(imap.select("Junk")[0], "OK")
            typ, data = imap._simple_command("MOVE", "1", "INBOX")
            self.assertEqual(typ, "OK", data)
            lines = self.wait_learned(2)
            self.assertRegex(lines[1], r"class=ham folder=INBOX from=Junk backend=spamd result=ok")
            self.assertEqual(self.spamd.magic(self.user), (0, 1))
            imap.logout()
        finally:
            dv.cleanup()

    def test_new_mailbox_is_picked_up(self):
        bob = "bob%d@example.org" % (int(time.time() * 1000) % 1000000)
        deliver(self.d, [bob], PILLS % b"n1")  # lmtpd makes bob's Maildir now
        md = self.d.maildir(bob)
        path = only_file(os.path.join(md, "new"))
        make_maildir(self.d, bob)  # the IMAP server makes .Junk when the user asks
        time.sleep(1)
        os.rename(path, os.path.join(md, ".Junk", "cur", os.path.basename(path)))
        lines = self.wait_learned(1, bob)
        self.assertRegex(lines[0], r"user=%s class=spam folder=Junk" % re.escape(bob))
        self.assertEqual(self.spamd.magic(bob), (1, 0))


class LearnNotDeliveries(unittest.TestCase):
    """(e) lmtpd's own deliveries into Junk (Sieve fileinto, for two users
    at once: the second copy is a hard link of the first) are no lesson."""

    def test_sieve_fileinto_junk_is_not_learned(self):
        spamd_port = free_port()  # nothing listens: a lesson would log result=failed
        d = Daemon(extra={"learn.enabled": "true", "learn.spamd": "inet:127.0.0.1:%d" % spamd_port})
        try:
            script = os.path.join(d.dir, "before.sieve")
            with open(script, "w") as f:
                f.write('require "fileinto";\nfileinto "Junk";\n')
            d.write_config(dict(d.extra, **{"sieve.before": "before.sieve"}))
            users = ["carl@example.org", "dora@example.org"]
            for u in users:
                make_maildir(d, u)
            d.start()
            wait_for(lambda: "learn: watching" in d.read_log(), 10, "the watcher")
            deliver(d, users, PILLS % b"e1")
            copies = [only_file(os.path.join(d.maildir(u), ".Junk", "new")) for u in users]
            # single instance: the second copy is a link of the first; the
            # first one deleted does not make the second a move
            self.assertEqual(os.stat(copies[1]).st_ino, os.stat(copies[0]).st_ino)
            os.unlink(copies[0])
            # a copy in INBOX and one in Junk, then the INBOX copy deleted:
            # still lmtpd's delivery, not a move into Junk
            with open(script, "w") as f:
                f.write('require "fileinto";\nfileinto "Junk";\nkeep;\n')
            deliver(d, users[:1], PILLS % b"e2")
            inbox = only_file(os.path.join(d.maildir(users[0]), "new"))
            only_file(os.path.join(d.maildir(users[0]), ".Junk", "new"))  # e1 was deleted above
            os.unlink(inbox)
            time.sleep(2)
            self.assertEqual(learn_lines(d), [])
        finally:
            d.cleanup()


class RspamdController(http.server.BaseHTTPRequestHandler):
    """Answers /learnspam and /learnham as rspamd's controller does, and
    keeps what it was sent."""
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers.get("Password"), self.headers.get("Deliver-To"), body))
        ok = self.headers.get("Password") == "s3cret"
        self.send_response(200 if ok else 403)
        self.end_headers()
        self.wfile.write(b'{"success":true}' if ok else b'{"error":"Unauthorized"}')

    def log_message(self, *args):
        pass


class LearnRspamdAndLimits(unittest.TestCase):
    """rspamd's controller (a stand-in: the request is what is checked), the
    per-user rate and max_size."""

    def setUp(self):
        RspamdController.seen = []
        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), RspamdController)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.d = Daemon(extra={"learn.enabled": "true", "learn.backend": "rspamd",
                               "learn.rspamd": "http://127.0.0.1:%d" % self.httpd.server_port,
                               "learn.rspamd_password": "s3cret", "learn.rate": "2", "learn.max_size": "2k"})
        make_maildir(self.d, ANN)
        self.d.start()
        wait_for(lambda: "learn: watching" in self.d.read_log(), 10, "the watcher")

    def tearDown(self):
        self.d.cleanup()
        self.httpd.shutdown()
        self.httpd.server_close()

    def move_new_to_junk(self, body):
        md = self.d.maildir(ANN)
        deliver(self.d, [ANN], body)
        path = only_file(os.path.join(md, "new"))
        os.rename(path, os.path.join(md, ".Junk", "cur", os.path.basename(path)))
        return path

    def test_rspamd_learn_rate_and_size(self):
        big = PILLS % b"r0" + b"x" * 3000 + b"\r\n"
        self.move_new_to_junk(big)
        lines = wait_for(lambda: learn_lines(self.d, ANN), 15, "the skip")
        self.assertRegex(lines[0], r"class=spam folder=Junk from=INBOX backend=rspamd result=skipped-size")
        for i in (1, 2, 3):
            self.move_new_to_junk(PILLS % b"r%d" % i)
        lines = wait_for(lambda: len(learn_lines(self.d, ANN)) >= 4 and learn_lines(self.d, ANN), 15, "4 lines")
        # the learner thread logs its lesson, the watcher its drops: any order
        results = sorted(re.search(r"backend=rspamd result=(\S+)", l).group(1) for l in lines[1:])
        self.assertEqual(results, ["dropped-rate", "dropped-rate", "ok"])  # the skipped one counted
        time.sleep(1)
        self.assertEqual(len(learn_lines(self.d, ANN)), 4)
        self.assertEqual(len(RspamdController.seen), 1)
        path, password, rcpt, body = RspamdController.seen[0]
        self.assertEqual((path, password, rcpt), ("/learnspam", "s3cret", ANN))
        self.assertIn(b"Message-ID: <r1@pills.example>", body)
        self.assertIn(b"Delivered-To: " + ANN.encode(), body)  # the file as stored


class Rspamd(TempServer):
    """A real rspamd (the system's rules, our workers on free loopback ports,
    per-user Bayes in SQLite files under a temp dir), as the mail user."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rspamd-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        files = {
            "local.d/worker-controller.inc": 'bind_socket = "127.0.0.1:%d";\npassword = "s3cret";\n'
                                             'enable_password = "s3cret";\n' % self.port,
            "override.d/worker-normal.inc": 'bind_socket = "127.0.0.1:%d";\ncount = 1;\n' % free_port(),
            "override.d/worker-proxy.inc": 'enabled = false;\nbind_socket = "127.0.0.1:%d";\n' % free_port(),
            "override.d/worker-fuzzy.inc": "enabled = false;\n",
            "override.d/classifier-bayes.conf":
                'backend = "sqlite3";\nper_user = true;\nmin_learns = 1;\n'
                'statfile {\n symbol = "BAYES_HAM";\n path = "%s/db/ham.sqlite";\n spam = false;\n}\n'
                'statfile {\n symbol = "BAYES_SPAM";\n path = "%s/db/spam.sqlite";\n spam = true;\n}\n'
                % (self.dir, self.dir),
        }
        for name, text in files.items():
            os.makedirs(os.path.join(self.dir, os.path.dirname(name)), exist_ok=True)
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        for sub in ("db", "run", "log"):
            os.mkdir(os.path.join(self.dir, sub))
        own_tree(self.dir)
        args = [RSPAMD, "-f", "-c", "/etc/rspamd/rspamd.conf", "--var", "LOCAL_CONFDIR=" + self.dir,
                "--var", "DBDIR=%s/db" % self.dir, "--var", "RUNDIR=%s/run" % self.dir,
                "--var", "LOGDIR=%s/log" % self.dir]
        if os.geteuid() == 0:
            args += ["-u", MAIL_USER, "-g", grp.getgrgid(pwd.getpwnam(MAIL_USER).pw_gid).gr_name]
        self.spawn(args, self._listening, "rspamd")

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def learns(self, cls, user):
        """How many messages rspamd learned as @cls ("spam" or "ham") for @user."""
        path = os.path.join(self.dir, "db", cls + ".sqlite")
        if not os.path.exists(path):
            return 0
        with sqlite3.connect(path) as db:
            row = db.execute("SELECT learns FROM users WHERE name = ?", (user,)).fetchone()
        return row[0] if row else 0



class LearnRealRspamd(unittest.TestCase):
    """rspamd's controller itself: the lessons land in the user's Bayes."""

    def setUp(self):
        self.rspamd = Rspamd()
        self.addCleanup(self.rspamd.stop)
        self.d = Daemon(extra={"learn.enabled": "true", "learn.backend": "rspamd",
                               "learn.rspamd": "http://127.0.0.1:%d/" % self.rspamd.port,
                               "learn.rspamd_password": "s3cret"})
        self.addCleanup(self.d.cleanup)
        make_maildir(self.d, ANN)
        self.d.start()
        wait_for(lambda: "learn: watching" in self.d.read_log(), 10, "the watcher")

    def test_spam_then_ham(self):
        md = self.d.maildir(ANN)
        deliver(self.d, [ANN], PILLS % b"q1")
        path = only_file(os.path.join(md, "new"))
        junk = os.path.join(md, ".Junk", "cur", os.path.basename(path) + ":2,S")
        os.rename(path, junk)
        lines = wait_for(lambda: learn_lines(self.d, ANN), 30, "the lesson")
        self.assertRegex(lines[0], r"class=spam folder=Junk from=INBOX backend=rspamd result=ok")
        self.assertEqual((self.rspamd.learns("spam", ANN), self.rspamd.learns("ham", ANN)), (1, 0))
        os.rename(junk, os.path.join(md, "cur", os.path.basename(junk)))
        lines = wait_for(lambda: len(learn_lines(self.d, ANN)) >= 2 and learn_lines(self.d, ANN), 30, "2 lessons")
        self.assertRegex(lines[1], r"class=ham folder=INBOX from=Junk backend=rspamd result=ok")
        self.assertEqual(self.rspamd.learns("ham", ANN), 1)


class LearnBuiltin(unittest.TestCase):
    """The builtin Bayes: lmtpd's learner writes the user's tokens, the
    builtin scorer of ocp-services reads them: a similar message scores
    higher, the why text says BAYES."""

    def setUp(self):
        self.d = Daemon()
        self.db = os.path.join(self.d.dir, "lib", "bayes.db")
        os.makedirs(os.path.dirname(self.db), exist_ok=True)
        own(os.path.dirname(self.db))
        self.s = Services("[service spam]\nmodule = spam\nlisten = inet:127.0.0.1:0\nbackend = builtin\n"
                          "threshold = 50\nactions = junk\nbayes_db = %s\n" % self.db)
        extra = {"learn.enabled": "true", "learn.backend": "builtin", "learn.bayes_db": self.db,
                 "service spam.servers": self.s.endpoint("spam"), "service spam.stage": "data",
                 "service spam.timeout": "20s", "rule all.match": "*", "rule all.services": "spam"}
        self.d.write_config(extra)
        make_maildir(self.d, ANN)
        self.d.start()
        wait_for(lambda: "learn: watching" in self.d.read_log(), 10, "the watcher")

    def tearDown(self):
        self.d.cleanup()
        self.s.stop()

    def status(self, path):
        with open(path, "rb") as f:
            m = re.search(rb"X-Spam-Status: \w+, score=(-?[\d.]+) required=[\d.]+ tests=(.*)", f.read())
        return float(m.group(1)), m.group(2).decode()

    def test_learned_tokens_move_the_score(self):
        md = self.d.maildir(ANN)
        deliver(self.d, [ANN], PILLS % b"b1")
        first = only_file(os.path.join(md, "new"))
        score0, why0 = self.status(first)
        self.assertNotIn("BAYES", why0)
        os.rename(first, os.path.join(md, ".Junk", "cur", os.path.basename(first)))
        lines = wait_for(lambda: learn_lines(self.d, ANN), 15, "the lesson")
        self.assertRegex(lines[0], r"class=spam folder=Junk from=INBOX backend=builtin result=ok")
        with sqlite3.connect(self.db) as db:
            tokens = db.execute("SELECT count(*) FROM bayes_tokens WHERE user = ? AND spam > 0", (ANN,)).fetchone()[0]
            totals = db.execute("SELECT spam, ham FROM bayes_totals WHERE user = ?", (ANN,)).fetchone()
        self.assertGreater(tokens, 10)
        self.assertEqual(totals, (1, 0))
        deliver(self.d, [ANN], PILLS % b"b2")
        second = only_file(os.path.join(md, "new"))
        score1, why1 = self.status(second)
        self.assertRegex(why1, r"BAYES_9\d\(\+3\.\d\)")
        self.assertGreater(score1, score0 + 2.5)
        # another user has learned nothing: no Bayes opinion for them
        with sqlite3.connect(self.db) as db:
            self.assertIsNone(db.execute("SELECT spam FROM bayes_totals WHERE user = 'zed@example.org'").fetchone())


if __name__ == "__main__":
    main()
