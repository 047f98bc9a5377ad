"""[users] backend = ldap (issue 16): lmtpd asks a private OpenLDAP slapd
(started by the test on a loopback port, a generated slapd.conf and tree,
stopped by PID) who its users are.

- a known user gets 250 and the message lands in the mailbox the directory
  names; an unknown one 550 5.1.1, a disabled one 550 5.2.1; an alias
  delivers to its target; user+tag to the user; the directory's quota is
  enforced at RCPT (SIZE);
- a filter cannot be changed by the address (RFC 4515 escaping), and an
  address with two entries tempfails instead of picking one;
- slapd stopped: an uncached user gets 451 4.3.0, a cached one still 250;
  slapd hung (SIGSTOP): 451 within lookup_timeout;
  slapd restarted: new users resolve again, lmtpd not restarted;
- failover to the second URI; StartTLS and ldaps:// with a CA file, and an
  unverified certificate tempfails;
- --check-config refuses a bad ldap_ setting with file:line."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from lmtptest import GTUBE, LMTPD, Daemon, Services, free_port, main, own
from test_delivery import transaction

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
LDAPADD = shutil.which("ldapadd")
SCHEMA_DIR = "/etc/ldap/schema"
SUFFIX = "dc=test"
ADMIN = "cn=admin,dc=test"
PASSWORD = "test-secret"

# The attributes lmtpd's defaults name that no standard schema has.
TEST_SCHEMA = """
attributetype ( 1.3.6.1.4.1.55555.1.1 NAME 'mailMessageStore' EQUALITY caseExactIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.2 NAME 'mailQuota' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.3 NAME 'mailQuotaMessages' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.4 NAME 'mailSieveScript' EQUALITY caseExactIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.5 NAME 'accountStatus' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.6 NAME 'mailForwardingAddress' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( 1.3.6.1.4.1.55555.1.7 NAME 'mailRecipientSetting' EQUALITY caseExactMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.55555.1.8 NAME 'mailHost' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.55555.2.1 NAME 'lmtpdTestUser' SUP top AUXILIARY
  MAY ( mailMessageStore $ mailQuota $ mailQuotaMessages $ mailSieveScript $ accountStatus $
        mailForwardingAddress $ mailRecipientSetting $ mailHost ) )
"""


def entry(uid, mail, **attrs):
    lines = ["dn: uid=%s,ou=people,%s" % (uid, SUFFIX), "objectClass: inetOrgPerson",
             "objectClass: lmtpdTestUser", "uid: %s" % uid, "cn: %s" % uid, "sn: %s" % uid, "mail: %s" % mail]
    for k, v in attrs.items():
        for one in (v if isinstance(v, list) else [v]):
            lines.append("%s: %s" % (k, one))
    return "\n".join(lines) + "\n"


TREE = "\n".join([
    "dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: test\no: test\n" % SUFFIX,
    "dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n" % SUFFIX,
    entry("joe", "joe@example.org", mailMessageStore="maildir:example.org/joe/Custom", accountStatus="active",
          mailRecipientSetting=["Spam-Policy: strict", "Link-Size-Limit: 100k"]),
    entry("ann", "ann@example.org"),
    entry("off", "off@example.org", accountStatus="disabled"),
    entry("info", "info@example.org", mailForwardingAddress="joe@example.org"),
    entry("small", "small@example.org", mailQuota="1k"),
    entry("dup1", "dup@example.org"),
    entry("dup2", "dup@example.org"),
    entry("lenient", "lenient@example.org", mailRecipientSetting="Spam-Threshold: 2000"),
])


class Slapd:
    """A private slapd on 127.0.0.1:port with a generated configuration;
    its database stays across stop() and start()."""

    def __init__(self, tls=None):
        self.dir = tempfile.mkdtemp(prefix="slapd-test-")
        self.port = free_port()
        self.uri = "ldap://127.0.0.1:%d/" % self.port
        self.ldaps = "ldaps://127.0.0.1:%d/" % free_port() if tls else None
        os.mkdir(os.path.join(self.dir, "db"))
        with open(os.path.join(self.dir, "lmtpd-test.schema"), "w") as f:
            f.write(TEST_SCHEMA)
        schemas = "".join("include %s/%s.schema\n" % (SCHEMA_DIR, n) for n in ("core", "cosine", "inetorgperson"))
        tls_lines = ""
        if tls:
            tls_lines = "TLSCertificateFile %s\nTLSCertificateKeyFile %s\n" % tls
        with open(os.path.join(self.dir, "slapd.conf"), "w") as f:
            f.write(schemas + "include {d}/lmtpd-test.schema\npidfile {d}/slapd.pid\n{tls}"
                    "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
                    "database mdb\nmaxsize 10485760\nsuffix \"{s}\"\nrootdn \"{a}\"\nrootpw {p}\n"
                    "directory {d}/db\n".format(d=self.dir, s=SUFFIX, a=ADMIN, p=PASSWORD, tls=tls_lines))
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "slapd.log"), "ab")
        urls = self.uri + (" " + self.ldaps if self.ldaps else "")
        self.proc = subprocess.Popen([SLAPD, "-d", "0", "-h", urls, "-f", os.path.join(self.dir, "slapd.conf")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("slapd exited: " + self.read_log())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not start: " + self.read_log())

    def read_log(self):
        with open(os.path.join(self.dir, "slapd.log"), errors="replace") as f:
            return f.read()

    def add(self, ldif):
        p = subprocess.run([LDAPADD, "-x", "-H", self.uri, "-D", ADMIN, "-w", PASSWORD], input=ldif,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None

    def freeze(self):
        """SIGSTOP, and wait until every thread has stopped (it is
        asynchronous: a thread may still answer one more request)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        task = "/proc/%d/task" % self.proc.pid
        deadline = time.time() + 10
        while time.time() < deadline:
            states = []
            for t in os.listdir(task):
                with open(os.path.join(task, t, "stat")) as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            if all(st == "T" for st in states):
                return
            time.sleep(0.01)
        raise RuntimeError("slapd did not stop")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def ldap_settings(d, uris=None, **more):
    """The [users] lines for the test tree; the password in a file."""
    path = os.path.join(d.dir, "ldap.password")
    with open(path, "w") as f:
        f.write(PASSWORD + "\n")
    os.chmod(path, 0o600)
    own(path)
    extra = {"users.domains": "", "users.backend": "ldap", "users.ldap_uris": uris,
             "users.ldap_base": "ou=people," + SUFFIX, "users.ldap_bind_dn": ADMIN,
             "users.ldap_bind_password_file": "ldap.password", "users.lookup_timeout": "3s"}
    extra.update(("users." + k, v) for k, v in more.items())
    return extra


def rcpt(c, address):
    c.cmd("MAIL FROM:<s@example.net>")
    reply = c.cmd("RCPT TO:<%s>" % address)
    c.cmd("RSET")
    return reply


@unittest.skipUnless(os.path.exists(SLAPD) and LDAPADD, "slapd or ldapadd missing (apt-get install slapd ldap-utils)")
class Ldap(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.slapd = Slapd()
        cls.slapd.add(TREE)

    @classmethod
    def tearDownClass(cls):
        cls.slapd.cleanup()

    def start(self, uris=None, **more):
        self.d = Daemon()
        self.d.write_config(ldap_settings(self.d, uris or self.slapd.uri, **more))
        self.d.start()
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        return c

    def tearDown(self):
        if getattr(self, "d", None):
            self.d.cleanup()
        if self.slapd.proc is None:
            self.slapd.start()

    def custom(self):
        d = os.path.join(self.d.mail, "example.org", "joe", "Custom", "new")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def test_settings_reach_the_service(self):
        """A user's mailRecipientSetting reaches the callout service with
        the call: lenient's own spam threshold keeps GTUBE out of Junk, ann
        gets the service's."""
        sv = Services("[service spam]\nmodule = spam\nlisten = inet:127.0.0.1:0\nbackend = builtin\n"
                      "threshold = 5\nactions = junk\n")
        self.addCleanup(sv.stop)
        self.d = Daemon()
        extra = ldap_settings(self.d, self.slapd.uri)
        extra.update({"service spam.servers": sv.endpoint("spam"), "service spam.timeout": "30s",
                      "rule all.match": "*", "rule all.services": "spam"})
        self.d.write_config(extra)
        self.d.start()
        c = self.d.connect(timeout=60)
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["ann@example.org", "lenient@example.org"], b"Subject: spam\r\n\r\n" + GTUBE + b"\r\n")
        self.assertTrue(all(x.startswith("250") for x in r), r)
        self.assertEqual(len(self.d.messages("ann@example.org", folder=".Junk")), 1)
        self.assertEqual(len(self.d.messages("lenient@example.org")), 1)
        self.assertEqual(len(self.d.messages("lenient@example.org", folder=".Junk")), 0)

    def test_known_user_lands_in_the_directory_mailbox(self):
        c = self.start()
        r = transaction(c, ["joe@example.org"], b"Subject: hello\r\n\r\nbody\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        files = self.custom()
        self.assertEqual(len(files), 1)
        with open(os.path.join(self.d.mail, "example.org", "joe", "Custom", "new", files[0]), "rb") as f:
            self.assertIn(b"Subject: hello", f.read())
        # ann has no mailbox attribute: the template
        r = transaction(c, ["ann@example.org"], b"Subject: t\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        self.assertEqual(len(self.d.messages("ann@example.org")), 1)

    def test_unknown_disabled_alias_subaddress(self):
        c = self.start()
        self.assertTrue(rcpt(c, "nobody@example.org").startswith("550 5.1.1"))
        self.assertTrue(rcpt(c, "off@example.org").startswith("550 5.2.1"))
        # one transaction each: both reach joe, who gets one copy of a message
        r = transaction(c, ["info@example.org"], b"Subject: via alias\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        r = transaction(c, ["joe+tag@example.org"], b"Subject: via subaddress\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        self.assertEqual(len(self.custom()), 2)
        self.assertEqual(self.d.messages("info@example.org"), [])

    def test_quota_from_the_directory(self):
        c = self.start()
        c.cmd("MAIL FROM:<s@example.net> SIZE=5000")
        self.assertTrue(c.cmd("RCPT TO:<small@example.org>").startswith("552 5.2.2"))
        self.assertTrue(c.cmd("RCPT TO:<ann@example.org>").startswith("250"))
        c.cmd("RSET")
        r = transaction(c, ["small@example.org"], b"Subject: q\r\n\r\n" + b"y" * 2000 + b"\r\n")
        self.assertTrue(r[0].startswith("552 5.2.2"), r)
        self.assertEqual(self.d.messages("small@example.org"), [])

    def test_filter_values_are_escaped_and_two_entries_tempfail(self):
        c = self.start()
        # unescaped, "*" would match every mail attribute of the domain
        self.assertTrue(rcpt(c, "*@example.org").startswith("550 5.1.1"))
        self.assertTrue(rcpt(c, "j*@example.org").startswith("550 5.1.1"))
        self.assertTrue(rcpt(c, "dup@example.org").startswith("451 4.3.0"))
        self.assertIn("more than one entry", self.d.read_log())

    def test_server_down_then_back(self):
        c = self.start(cache_ttl="3600", negative_cache_ttl="0")
        self.assertTrue(rcpt(c, "joe@example.org").startswith("250"))
        self.slapd.stop()
        self.assertTrue(rcpt(c, "ann@example.org").startswith("451 4.3.0"))
        r = transaction(c, ["joe@example.org"], b"Subject: cached\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        self.assertEqual(len(self.custom()), 1)
        self.slapd.start()
        self.assertTrue(rcpt(c, "ann@example.org").startswith("250"))
        self.assertTrue(rcpt(c, "nobody@example.org").startswith("550 5.1.1"))

    def test_hung_server_answers_451_within_the_timeout(self):
        c = self.start(lookup_timeout="1s", negative_cache_ttl="0")
        self.assertTrue(rcpt(c, "joe@example.org").startswith("250"))
        self.slapd.freeze()
        try:
            t = time.monotonic()
            reply = rcpt(c, "ann@example.org")
            self.assertTrue(reply.startswith("451 4.3.0"), reply)
            self.assertLess(time.monotonic() - t, 3)
        finally:
            os.kill(self.slapd.proc.pid, signal.SIGCONT)
        self.assertTrue(rcpt(c, "ann@example.org").startswith("250"))

    def test_lmtpd_starts_while_the_server_is_down(self):
        self.slapd.stop()
        c = self.start()
        self.assertTrue(rcpt(c, "joe@example.org").startswith("451 4.3.0"))
        self.slapd.start()
        self.assertTrue(rcpt(c, "joe@example.org").startswith("250"))

    def test_wrong_bind_password_tempfails(self):
        self.d = Daemon()
        self.d.write_config(ldap_settings(self.d, self.slapd.uri))
        with open(os.path.join(self.d.dir, "ldap.password"), "w") as f:
            f.write("wrong\n")
        self.d.start()
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        self.assertTrue(rcpt(c, "joe@example.org").startswith("451 4.3.0"))
        self.assertIn("Invalid credentials", self.d.read_log())

    def test_many_sessions_at_once_share_the_pool(self):
        self.start(cache_ttl="0", negative_cache_ttl="0")
        results = []

        def session():
            c = self.d.connect()
            c.reply()
            c.cmd("LHLO x")
            for _ in range(10):
                results.append((rcpt(c, "ann@example.org")[:3], rcpt(c, "nobody@example.org")[:3]))
            c.close()
        threads = [threading.Thread(target=session) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results, [("250", "550")] * 120)

    def test_failover_to_the_next_uri(self):
        dead = "ldap://127.0.0.1:%d/" % free_port()
        c = self.start(uris="%s; %s" % (dead, self.slapd.uri))
        self.assertTrue(rcpt(c, "joe@example.org").startswith("250"))
        self.assertTrue(rcpt(c, "nobody@example.org").startswith("550 5.1.1"))


def self_signed(where):
    """A certificate for 127.0.0.1 and its key, made by openssl."""
    cert, key = os.path.join(where, "cert.pem"), os.path.join(where, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@unittest.skipUnless(os.path.exists(SLAPD) and LDAPADD and shutil.which("openssl"),
                     "slapd, ldapadd or openssl missing (apt-get install slapd ldap-utils openssl)")
class LdapTls(unittest.TestCase):
    """StartTLS on ldap:// and ldaps://, verified against the CA file."""

    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="slapd-certs-")
        cls.cert, key = self_signed(cls.certs)
        cls.slapd = Slapd(tls=(cls.cert, key))
        cls.slapd.add(TREE)

    @classmethod
    def tearDownClass(cls):
        cls.slapd.cleanup()
        shutil.rmtree(cls.certs, ignore_errors=True)

    def setUp(self):
        self.d = Daemon()
        self.ca = os.path.join(self.d.dir, "ca.pem")
        shutil.copy(self.cert, self.ca)
        own(self.ca)

    def tearDown(self):
        self.d.cleanup()

    def start(self, **more):
        self.d.write_config(ldap_settings(self.d, **more))
        self.d.start()
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        return c

    def test_starttls(self):
        c = self.start(uris=self.slapd.uri, ldap_starttls="yes", ldap_tls_ca_file="ca.pem")
        self.assertTrue(rcpt(c, "joe@example.org").startswith("250"))
        self.assertTrue(rcpt(c, "off@example.org").startswith("550 5.2.1"))

    def test_ldaps(self):
        c = self.start(uris=self.slapd.ldaps, ldap_tls_ca_file="ca.pem")
        self.assertTrue(rcpt(c, "joe@example.org").startswith("250"))

    def test_unverified_certificate_tempfails(self):
        c = self.start(uris=self.slapd.ldaps)
        self.assertTrue(rcpt(c, "joe@example.org").startswith("451 4.3.0"))


class LdapCheckConfig(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()

    def tearDown(self):
        self.d.cleanup()

    def check(self, **more):
        self.d.write_config(ldap_settings(self.d, "ldap://127.0.0.1:1/", **more))
        return subprocess.run([LMTPD, "-c", self.d.conf, "--check-config"], capture_output=True, text=True,
                              timeout=60, cwd=self.d.dir)

    def line_of(self, key):
        with open(self.d.conf) as f:
            return next(i for i, l in enumerate(f, 1) if l.startswith(key + " "))

    def test_good_settings_pass_without_a_server(self):
        p = self.check()
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_bad_settings_have_lines(self):
        for key, value, why in [("ldap_scope", "deep", "sub, one or base"),
                                ("ldap_filter", "(mail=%x)", "unknown escape"),
                                ("ldap_filter", "(mail=%u", "balanced parentheses"),
                                ("ldap_uris", "http://x/", "not an ldap://"),
                                ("ldap_quota_attribute", "mail quota", "not an attribute name"),
                                ("ldap_bind_password_file", "missing", "not a readable file"),
                                ("ldap_starttls", "maybe", "yes or no")]:
            p = self.check(**{key: value})
            self.assertEqual(p.returncode, 78, (key, p.stderr))
            self.assertIn("%s:%d: [users] %s: " % (self.d.conf, self.line_of(key), key), p.stderr)
            self.assertIn(why, p.stderr)


if __name__ == "__main__":
    main()
