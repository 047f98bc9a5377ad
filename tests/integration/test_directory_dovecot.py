"""The dovecot user directory (issue 16): a private Dovecot (its own
dovecot.conf, base_dir and state_dir in a temp dir, no protocols, only the
auth service with its auth-userdb socket) reads a passwd-file userdb, and
lmtpd with [users] backend = dovecot asks that socket: one list of users.

- a known user gets 250 and the message lands where Dovecot's mail field
  says (with ~ as the home); unknown -> 550 5.1.1; nologin -> 550 5.2.1;
- an alias (Dovecot's userdb_user field) delivers to its target; user+tag
  delivers to the user;
- quota_rule from Dovecot is enforced at RCPT (SIZE) and after DATA, and
  written as the Maildir++ quota; the sieve field names the user's script;
- Dovecot stopped: an uncached user gets 451 4.3.0, a cached user 250;
  Dovecot started again: new users resolve without restarting lmtpd;
- dovecot_user_key = localpart, and eight sessions at once without a cache;
- a fake socket that is silent, answers FAIL or floods a line: 451 in time;
- --check-config refuses a bad dovecot_ setting with file:line."""

import grp
import imaplib
import os
import re
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from lmtptest import GTUBE, LMTPD, MAIL_USER, Daemon, Services, doc_block, free_port, main
from test_delivery import transaction

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
ROOT = os.geteuid() == 0


class Dovecot:
    """dovecot -F on a generated configuration; stopped by its master's PID."""

    def __init__(self, users):
        self.dir = tempfile.mkdtemp(prefix="dovecot-dir-")
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "run", "auth-userdb")
        self.log = os.path.join(self.dir, "dovecot.log")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.users = os.path.join(self.dir, "users")
        self.proc = None
        self.write_users(users)
        internal = "dovecot" if ROOT else pwd.getpwuid(os.geteuid()).pw_name
        login = "dovenull" if ROOT else internal
        with open(self.conf, "w") as f:
            f.write("""base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = no
protocols =
default_internal_user = {internal}
default_login_user = {login}
passdb {{
  driver = passwd-file
  args = {users}
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
# not 0666: Dovecot answers a world-accessible userdb socket only for
# users with the client's own uid; lmtpd's mail user is let in by owner
service auth {{
  unix_listener auth-userdb {{
    mode = 0600
    user = {client}
  }}
}}
""".format(d=self.dir, users=self.users, internal=internal, login=login,
                       client=MAIL_USER if ROOT else internal))

    def write_users(self, lines):
        with open(self.users + ".new", "w") as f:
            f.write("".join(l + "\n" for l in lines))
        os.chmod(self.users + ".new", 0o644)
        os.rename(self.users + ".new", self.users)

    def start(self):
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited: " + self.read_log())
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(2)
                    s.connect(self.socket)
                    if s.recv(100).startswith(b"VERSION\t1\t"):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("dovecot did not start: " + self.read_log())

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def children(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def stop(self):
        """Stops the master by its PID, then its children by theirs."""
        if self.proc and self.proc.poll() is None:
            children = self.children()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            # orphaned children keep serving their connections: ours too,
            # by the PIDs the master had
            for pid in children:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.time() + 10
            while any(os.path.exists("/proc/%d" % p) for p in children) and time.time() < deadline:
                time.sleep(0.05)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def messages(maildir, folder=None):
    d = os.path.join(maildir, folder, "new") if folder else os.path.join(maildir, "new")
    if not os.path.isdir(d):
        return []
    out = []
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out.append(f.read())
    return out


@unittest.skipUnless(os.path.exists(DOVECOT), "dovecot is not installed (dovecot-core)")
class DovecotDirectory(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(extra={"users.backend": "dovecot", "users.domains": "", "users.cache_ttl": "3600",
                               "users.negative_cache_ttl": "0", "users.lookup_timeout": "2s",
                               "delivery.quota_full_tempfail": "false"})
        mail = self.d.mail
        self.joe_box = os.path.join(mail, "vmail", "example.org", "joe")
        self.ann_home = os.path.join(mail, "home", "ann")
        self.script = os.path.join(self.d.dir, "ann.sieve")
        with open(self.script, "w") as f:
            f.write('require "fileinto";\nif header :contains "subject" "sort" { fileinto "Sorted"; }\n')
        os.chmod(self.script, 0o644)
        self.users = [
            "joe@example.org:{PLAIN}x::::::userdb_mail=maildir:%s" % self.joe_box,
            "ann@example.org:{PLAIN}x::::%s::userdb_mail=maildir:~/Maildir userdb_sieve=%s"
            % (self.ann_home, self.script),
            "q@example.org:{PLAIN}x::::::userdb_mail=maildir:%s/q userdb_quota_rule=*:storage=10k "
            "userdb_quota_rule2=*:messages=5" % mail,
            "off@example.org:{PLAIN}x::::::userdb_mail=maildir:%s/off userdb_nologin=y" % mail,
            "sales@example.org:{PLAIN}x::::::userdb_user=joe@example.org",
        ]
        self.dc = Dovecot(self.users).start()
        self.d.write_config(dict(self.d.extra, **{"users.dovecot_socket": self.dc.socket}))
        self.d.start()

    def tearDown(self):
        self.d.cleanup()
        self.dc.cleanup()

    def client(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        return c

    def rcpt(self, c, address):
        c.cmd("RSET")
        c.cmd("MAIL FROM:<s@example.net>")
        return c.cmd("RCPT TO:<%s>" % address)

    def test_users_from_dovecot(self):
        c = self.client()
        r = transaction(c, ["joe@example.org"], b"Subject: hi joe\r\n\r\nbody\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        (msg,) = messages(self.joe_box)
        self.assertIn(b"Subject: hi joe", msg)
        self.assertIn(b"Delivered-To: joe@example.org", msg)
        self.assertTrue(self.rcpt(c, "nobody@example.org").startswith("550 5.1.1"))
        self.assertTrue(self.rcpt(c, "off@example.org").startswith("550 5.2.1"))
        self.assertFalse(os.path.exists(os.path.join(self.d.mail, "off")))

    def test_alias_subaddress_and_home(self):
        c = self.client()
        r = transaction(c, ["sales@example.org"], b"Subject: to sales\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        r = transaction(c, ["joe+tag@example.org"], b"Subject: tagged\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        subjects = sorted(m.split(b"Subject: ")[1].split(b"\n")[0] for m in messages(self.joe_box))
        self.assertEqual(subjects, [b"tagged", b"to sales"])
        r = transaction(c, ["ann@example.org"], b"Subject: for ann\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        self.assertEqual(len(messages(os.path.join(self.ann_home, "Maildir"))), 1)

    def test_sieve_script_from_dovecot(self):
        c = self.client()
        r = transaction(c, ["ann@example.org"], b"Subject: please sort me\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        maildir = os.path.join(self.ann_home, "Maildir")
        self.assertEqual(messages(maildir), [])
        self.assertEqual(len(messages(maildir, ".Sorted")), 1, self.d.read_log())

    def test_quota_from_dovecot(self):
        c = self.client()
        c.cmd("MAIL FROM:<s@example.net> SIZE=20000")
        self.assertTrue(c.cmd("RCPT TO:<q@example.org>").startswith("552 5.2.2"))
        c.cmd("RSET")
        body = b"Subject: q\r\n\r\n" + b"y" * 6000 + b"\r\n"
        self.assertTrue(transaction(c, ["q@example.org"], body)[0].startswith("250"))
        r = transaction(c, ["q@example.org"], body.replace(b"q", b"q2", 1))
        self.assertTrue(r[0].startswith("552 5.2.2"), r)
        q = os.path.join(self.d.mail, "q")
        self.assertEqual(len(messages(q)), 1)
        with open(os.path.join(q, "maildirsize")) as f:
            self.assertEqual(f.readline(), "10240S,5C\n")

    def test_dovecot_down_then_back(self):
        c = self.client()
        self.assertTrue(self.rcpt(c, "joe@example.org").startswith("250"))  # now cached
        self.dc.stop()
        self.assertTrue(self.rcpt(c, "ann@example.org").startswith("451 4.3.0"))
        self.assertTrue(self.rcpt(c, "nobody@example.org").startswith("451 4.3.0"))
        c.cmd("RSET")
        r = transaction(c, ["joe@example.org"], b"Subject: while down\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        self.assertEqual(len(messages(self.joe_box)), 1)
        self.dc.write_users(self.users + ["new@example.org:{PLAIN}x::::::userdb_mail=maildir:%s/new"
                                          % self.d.mail])
        self.dc.start()
        r = transaction(c, ["new@example.org", "ann@example.org"], b"Subject: back\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250") and r[1].startswith("250"), r)
        self.assertEqual(len(messages(os.path.join(self.d.mail, "new"))), 1)
        self.assertTrue(self.rcpt(c, "nobody@example.org").startswith("550 5.1.1"))


@unittest.skipUnless(os.path.exists(DOVECOT), "dovecot is not installed (dovecot-core)")
class DovecotSettings(unittest.TestCase):
    """A userdb field lmtpd_setting_NAME reaches the callout service with the
    call: lenient's own spam threshold keeps GTUBE out of Junk, ann gets
    the service's."""

    def setUp(self):
        self.sv = Services("[service spam]\nmodule = spam\nlisten = inet:127.0.0.1:0\nbackend = builtin\n"
                           "threshold = 5\nactions = junk\n")
        self.addCleanup(self.sv.stop)
        self.d = Daemon(extra={"users.backend": "dovecot", "users.domains": "",
                               "service spam.servers": self.sv.endpoint("spam"), "service spam.timeout": "30s",
                               "rule all.match": "*", "rule all.services": "spam"})
        self.addCleanup(self.d.cleanup)
        mail = self.d.mail
        self.dc = Dovecot([
            "ann@example.org:{PLAIN}x::::::userdb_mail=maildir:%s/ann" % mail,
            "lenient@example.org:{PLAIN}x::::::userdb_mail=maildir:%s/lenient "
            "userdb_lmtpd_setting_Spam-Threshold=2000" % mail,
        ]).start()
        self.addCleanup(self.dc.cleanup)
        self.d.write_config(dict(self.d.extra, **{"users.dovecot_socket": self.dc.socket}))
        self.d.start()

    def test_own_spam_threshold(self):
        c = self.d.connect(timeout=60)
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["ann@example.org", "lenient@example.org"], b"Subject: spam\r\n\r\n" + GTUBE + b"\r\n")
        self.assertTrue(all(x.startswith("250") for x in r), r)
        mail = self.d.mail
        self.assertEqual(len(messages(os.path.join(mail, "ann"), ".Junk")), 1)
        self.assertEqual(len(messages(os.path.join(mail, "lenient"))), 1)
        self.assertEqual(len(messages(os.path.join(mail, "lenient"), ".Junk")), 0)


@unittest.skipUnless(ROOT and os.path.exists(DOVECOT) and os.path.exists("/usr/lib/dovecot/imap"),
                     "needs root, dovecot-core and dovecot-imapd")
class DovecotGuide(unittest.TestCase):
    """docs/dovecot.md followed: Dovecot's local.conf and users file and
    lmtpd's [users] block, as the guide gives them (paths moved below a
    temporary directory, vmail made the test's mail user), give one list of
    users: lmtpd delivers what Dovecot's userdb says, and Dovecot's IMAP
    shows it to the user."""

    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.dc = Dovecot([])
        self.addCleanup(self.dc.cleanup)
        self.vhosts = os.path.join(self.dc.dir, "vhosts")
        os.makedirs(self.vhosts)
        pw = pwd.getpwnam(MAIL_USER)
        os.chown(self.vhosts, pw.pw_uid, pw.pw_gid)
        group = grp.getgrgid(pw.pw_gid).gr_name
        self.port = free_port()
        users = doc_block("dovecot.md", "joe@example.org:{PLAIN}secret::::::")
        self.dc.write_users(users.strip().split("\n"))
        local = doc_block("dovecot.md", "protocols = imap")
        local = (local.replace("/etc/dovecot/users", self.dc.users).replace("/var/mail/vhosts", self.vhosts)
                 .replace("gid=vmail", "gid=" + group).replace("vmail", MAIL_USER))
        with open(self.dc.conf, "w") as f:
            f.write("""base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = no
listen = 127.0.0.1
default_internal_user = dovecot
default_login_user = dovenull
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
}}
""".format(d=self.dc.dir, port=self.port) + local)
        self.dc.start()
        extra = {"users.domains": ""}
        for line in doc_block("dovecot.md", "[users]").splitlines()[1:]:
            line = line.split("#")[0].strip()
            if "=" in line:
                k, v = (x.strip() for x in line.split("=", 1))
                extra["users." + k] = v.replace("/run/dovecot/auth-userdb", self.dc.socket)
        self.d.write_config(extra)
        self.d.start()

    def test_one_list_of_users(self):
        c = self.d.connect(timeout=30)
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["joe@example.org", "info@example.org"], b"Subject: guide\r\n\r\nhello joe\r\n")
        self.assertTrue(all(x.startswith("250") for x in r), r)
        c.cmd("MAIL FROM:<s@example.net>")
        self.assertTrue(c.cmd("RCPT TO:<old@example.org>").startswith("550 5.2.1"))
        self.assertTrue(c.cmd("RCPT TO:<nobody@example.org>").startswith("550 5.1.1"))
        joe = os.path.join(self.vhosts, "example.org", "joe", "Maildir")
        # joe and his alias info in one transaction: one copy (docs/directory.md)
        self.assertEqual(len(messages(joe)), 1)
        with imaplib.IMAP4("127.0.0.1", self.port, timeout=30) as imap:
            imap.login("joe@example.org", "secret")
            typ, data = imap.select("INBOX")
            self.assertEqual((typ, data[0]), ("OK", b"1"))
            typ, data = imap.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")
            self.assertIn(b"Subject: guide", data[0][1])
        out = subprocess.run([LMTPD, "-c", "lmtpd.conf", "--lookup", "ann@example.org"], cwd=self.d.dir,
                             capture_output=True, text=True, timeout=30).stdout
        self.assertIn("quota: 5368709120 bytes", out)
        self.assertIn("setting: Spam-Threshold: 8", out)


class DovecotLocalPartAndLoad(unittest.TestCase):
    """dovecot_user_key = localpart (a userdb of bare names), and many
    sessions at once with no cache: every RCPT asks Dovecot."""

    def setUp(self):
        self.d = Daemon(extra={"users.backend": "dovecot", "users.domains": "", "users.cache_ttl": "0",
                               "users.negative_cache_ttl": "0", "users.dovecot_user_key": "localpart"})
        self.boxes = {n: os.path.join(self.d.mail, "box", n) for n in ("bob", "eve")}
        self.dc = Dovecot(["%s:{PLAIN}x::::::userdb_mail=maildir:%s" % (n, b) for n, b in self.boxes.items()])
        self.dc.start()
        self.d.write_config(dict(self.d.extra, **{"users.dovecot_socket": self.dc.socket}))
        self.d.start()

    def tearDown(self):
        self.d.cleanup()
        self.dc.cleanup()

    def test_parallel_sessions(self):
        errors = []

        def worker(k):
            try:
                c = self.d.connect()
                c.reply()
                c.cmd("LHLO x")
                for i in range(5):
                    r = transaction(c, ["bob@example.org", "eve@example.net"],
                                    b"Subject: m%d-%d\r\n\r\nx\r\n" % (k, i))
                    if not all(x.startswith("250") for x in r):
                        errors.append(r)
                c.cmd("MAIL FROM:<s@example.net>")
                r = c.cmd("RCPT TO:<nobody@example.org>")
                if not r.startswith("550 5.1.1"):
                    errors.append(r)
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [], self.d.read_log()[-3000:])
        for b in self.boxes.values():
            self.assertEqual(len(messages(b)), 40)


class FakeAuth:
    """A UNIX socket that speaks as told: "silent" (accepts, never answers),
    "fail" (Dovecot's FAIL), "long" (a line beyond any bound)."""

    def __init__(self, path, mode):
        self.path, self.mode = path, mode
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        os.chmod(path, 0o666)
        self.srv.listen(16)
        self.conns = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.mode != "silent":
                threading.Thread(target=self.answer, args=(c,), daemon=True).start()

    def answer(self, c):
        try:
            c.sendall(b"VERSION\t1\t2\nSPID\t1\n")
            data = b""
            while b"\nUSER\t" not in b"\n" + data:
                data += c.recv(4096)
            rid = data.split(b"USER\t")[1].split(b"\t")[0]
            if self.mode == "fail":
                c.sendall(b"FAIL\t" + rid + b"\treason=LDAP\001tdown\n")
            else:
                c.sendall(b"USER\t" + rid + b"\tx@example.org\t" + b"a" * 200000 + b"\n")
        except OSError:
            pass

    def stop(self):
        self.srv.close()
        for c in self.conns:
            c.close()


class DovecotMisbehaving(unittest.TestCase):
    """A server that is slow, fails or floods: 451, within lookup_timeout."""

    def run_with(self, mode):
        d = Daemon(extra={"users.backend": "dovecot", "users.domains": "", "users.lookup_timeout": "1s",
                          "users.dovecot_socket": "fake-auth"})
        fake = FakeAuth(os.path.join(d.dir, "fake-auth"), mode)
        try:
            d.start()
            c = d.connect()
            c.reply()
            c.cmd("LHLO x")
            c.cmd("MAIL FROM:<s@example.net>")
            t0 = time.time()
            r = c.cmd("RCPT TO:<x@example.org>")
            took = time.time() - t0
            self.assertTrue(r.startswith("451 4.3.0"), r)
            self.assertLess(took, 5)
            return d.read_log()
        finally:
            d.cleanup()
            fake.stop()

    def test_silent(self):
        self.assertIn("did not answer in time", self.run_with("silent"))

    def test_fail(self):
        self.assertIn("could not look x@example.org up: reason=LDAP\\tdown", self.run_with("fail"))

    def test_line_too_long(self):
        self.assertIn("line longer than", self.run_with("long"))


class DovecotCheckConfig(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()

    def tearDown(self):
        self.d.cleanup()

    def check(self, extra):
        self.d.write_config(dict({"users.backend": "dovecot"}, **extra))
        return subprocess.run([LMTPD, "-c", self.d.conf, "--check-config"], capture_output=True, text=True,
                              timeout=60, cwd=self.d.dir)

    def line_of(self, key):
        with open(self.d.conf) as f:
            return [i + 1 for i, l in enumerate(f) if l.startswith(key + " =")][0]

    def test_bad_settings_with_file_and_line(self):
        p = self.check({"users.dovecot_socket": "run/auth-userdb", "users.dovecot_service": "lmtp=x"})
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        self.assertIn("%s:%d: [users] dovecot_service" % (self.d.conf, self.line_of("dovecot_service")),
                      p.stderr)
        p = self.check({"users.dovecot_socket": "run/auth-userdb", "users.dovecot_user_key": "uid"})
        self.assertEqual(p.returncode, 78)
        self.assertIn("%s:%d: [users] dovecot_user_key" % (self.d.conf, self.line_of("dovecot_user_key")),
                      p.stderr)
        p = self.check({})
        self.assertEqual(p.returncode, 78)
        self.assertIn("dovecot_socket", p.stderr)
        # down is fine: lmtpd starts while Dovecot does not answer
        p = self.check({"users.dovecot_socket": "run/auth-userdb"})
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    main()
