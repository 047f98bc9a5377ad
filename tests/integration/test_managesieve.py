#!/usr/bin/env python3
"""managesieved (RFC 5804): the protocol over a socket from Python (literals,
STARTTLS, bad input, a client that never reads, wrong passwords), the
scripts as bytes on disk in Pigeonhole's layout, Debian's sieve-connect as a
real client, and a delivery through lmtpd running the script it activated."""

import base64
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from lmtptest import Daemon, main, dotstuff, own, SLOWDOWN

MANAGESIEVED = os.environ.get("MANAGESIEVED") or os.path.join(
    os.path.dirname(__file__), "..", "..", "managesieve", "managesieved")

PLAIN_USER = "joe@example.org password={PLAIN}secret"
IDLE = 3 * SLOWDOWN


def non_loopback_address():
    """An address of this host that is not loopback, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent: the route picks the address
        addr = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


def make_cert(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=lmtp.test",
                    "-addext", "subjectAltName=DNS:lmtp.test,IP:127.0.0.1"], check=True, capture_output=True)
    os.chmod(key, 0o644)
    return cert, key


def sha512_crypt(password):
    return subprocess.run(["openssl", "passwd", "-6", password], check=True, capture_output=True,
                          text=True).stdout.strip()


def plain(user, password, authz=""):
    return base64.b64encode(("%s\0%s\0%s" % (authz, user, password)).encode()).decode()


class Sieved:
    """lmtpd (it makes the mail root, and delivers) and managesieved on the
    same configuration, both on loopback; managesieved stopped by its PID."""

    def __init__(self, users, extra=None, listen=None):
        self.d = Daemon(users=users)
        self.cert, self.key = make_cert(self.d.dir)
        conf = {"managesieve.listen": listen or "inet:127.0.0.1:0;unix:run/managesieve.sock",
                "managesieve.idle_timeout": str(IDLE), "managesieve.max_scripts": "3",
                "managesieve.tls_cert_file": self.cert, "managesieve.tls_key_file": self.key,
                "sieve.max_script_size": "4k"}
        conf.update((extra(self.d) if callable(extra) else extra) or {})
        self.d.write_config(conf)
        self.d.start()
        self.log_path = os.path.join(self.d.dir, "managesieved.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([MANAGESIEVED, "-c", "lmtpd.conf"], cwd=self.d.dir, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.ports = self.wait_ports()
        self.port = self.ports[0]
        self.unix = os.path.join(self.d.dir, "run", "managesieve.sock")

    def wait_ports(self):
        deadline = time.time() + 10 * SLOWDOWN
        while time.time() < deadline:
            log = self.read_log()
            if "started" in log:
                return [int(p) for p in re.findall(r"listening on inet:[^:]+:(\d+)", log)]
            if self.proc.poll() is not None:
                raise RuntimeError("managesieved exited: " + log)
            time.sleep(0.02)
        raise RuntimeError("managesieved did not start: " + self.read_log())

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def home(self, address):
        local, domain = address.rsplit("@", 1)
        return os.path.join(self.d.mail, domain, local)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        log = self.read_log()
        self.d.cleanup()
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if mark in log:
                raise AssertionError("managesieved: " + log[log.index(mark):][:3000])


class Client:
    """ManageSieve over a socket: responses read up to their OK/NO/BYE line,
    literals {N} in them read by their length."""

    def __init__(self, port=None, unix=None, host="127.0.0.1", timeout=10):
        if unix:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.connect(unix)
        else:
            self.s = socket.create_connection((host, port))
        self.s.settimeout(timeout * SLOWDOWN)
        self.buf = b""
        self.greeting = self.response()

    def fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("closed; have %r" % self.buf)
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self):
        """(the OK/NO/BYE line as text, the lines and literals before it)"""
        items = []
        while True:
            line = self.line()
            m = re.match(rb"^\{(\d+)\}$", line)
            if m:
                items.append(self.take(int(m.group(1))))
                continue
            if re.match(rb"^(OK|NO|BYE)\b", line):
                return line.decode("utf-8", "replace"), items
            items.append(line)

    def send(self, data):
        self.s.sendall(data.encode() if isinstance(data, str) else data)

    def cmd(self, data):
        """@data and CRLF sent, the response read"""
        self.send(data + ("\r\n" if isinstance(data, str) else b"\r\n"))
        return self.response()

    def login(self, user="joe@example.org", password="secret"):
        status, _ = self.cmd('AUTHENTICATE "PLAIN" "%s"' % plain(user, password))
        assert status.startswith("OK"), status
        return self

    def closed(self, timeout=5):
        self.s.settimeout(timeout * SLOWDOWN)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def put(c, name, script, form="+"):
    data = script.encode() if isinstance(script, str) else script
    if form == "quoted":
        return c.cmd(b'PUTSCRIPT "%s" "%s"' % (name.encode(), data))
    return c.cmd(b'PUTSCRIPT "%s" {%d%s}\r\n%s' % (name.encode(), len(data), form.encode(), data))


def capabilities(items):
    out = {}
    for line in items:
        m = re.match(rb'^"([^"]*)"(?: "((?:[^"\\]|\\.)*)")?$', line)
        assert m, line
        out[m.group(1).decode()] = (m.group(2) or b"").decode()
    return out


class Protocol(unittest.TestCase):
    """The commands of RFC 5804 and what they leave on disk."""

    @classmethod
    def setUpClass(cls):
        cls.ms = Sieved([PLAIN_USER, "ann@example.org password={SHA512-CRYPT}%s" % sha512_crypt("annpw"),
                         "off@example.org password={PLAIN}pw disabled=yes", "nopw@example.org"])

    @classmethod
    def tearDownClass(cls):
        cls.ms.stop()

    def client(self, **kw):
        c = Client(self.ms.port, **kw)
        self.addCleanup(c.close)
        return c

    def test_greeting_capabilities(self):
        c = self.client()
        status, items = c.greeting
        self.assertTrue(status.startswith("OK"), status)
        caps = capabilities(items)
        self.assertTrue(caps["IMPLEMENTATION"].startswith("opes-lmtpd managesieved"))
        self.assertEqual(caps["SASL"], "PLAIN")   # loopback: allowed before TLS
        self.assertEqual(caps["VERSION"], "1.0")
        self.assertEqual(caps["MAXREDIRECTS"], "4")
        self.assertIn("STARTTLS", caps)
        self.assertIn("UNAUTHENTICATE", caps)
        # sieve-lite's own list (sieve_capabilities()), what a script may require
        for ext in ("fileinto", "vacation", "variables", "imap4flags", "editheader", "body", "copy"):
            self.assertIn(ext, caps["SIEVE"].split())
        status, items = c.cmd("CAPABILITY")
        self.assertEqual(capabilities(items), caps)

    def test_scripts_on_disk(self):
        c = self.client().login()
        home = self.ms.home("joe@example.org")
        script = 'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "X"; }\r\n'
        self.assertTrue(put(c, "one", script)[0].startswith("OK"))
        self.assertTrue(put(c, "two", "keep;\r\n", form="")[0].startswith("OK"))   # {N} literal
        self.assertTrue(put(c, "thr\\\"ee", "discard;", form="quoted")[0].startswith("OK"))
        with open(os.path.join(home, "sieve", "one.sieve"), "rb") as f:
            self.assertEqual(f.read(), script.encode())
        with open(os.path.join(home, "sieve", 'thr"ee.sieve'), "rb") as f:
            self.assertEqual(f.read(), b"discard;")
        status, items = c.cmd("LISTSCRIPTS")
        self.assertEqual(items, [b'"one"', b'"thr\\"ee"', b'"two"'])
        self.assertFalse(os.path.lexists(os.path.join(home, ".dovecot.sieve")))
        self.assertTrue(c.cmd('SETACTIVE "one"')[0].startswith("OK"))
        self.assertEqual(os.readlink(os.path.join(home, ".dovecot.sieve")), "sieve/one.sieve")
        self.assertIn(b'"one" ACTIVE', c.cmd("LISTSCRIPTS")[1])
        status, items = c.cmd('GETSCRIPT "one"')
        self.assertEqual((status[:2], items), ("OK", [script.encode(), b""]))
        self.assertEqual(c.cmd('DELETESCRIPT "one"')[0], 'NO (ACTIVE) "The active script cannot be deleted"')
        self.assertTrue(c.cmd('RENAMESCRIPT "one" "uno"')[0].startswith("OK"))
        self.assertEqual(os.readlink(os.path.join(home, ".dovecot.sieve")), "sieve/uno.sieve")
        self.assertFalse(os.path.exists(os.path.join(home, "sieve", "one.sieve")))
        self.assertTrue(c.cmd('RENAMESCRIPT "uno" "two"')[0].startswith("NO (ALREADYEXISTS)"))
        self.assertTrue(c.cmd('RENAMESCRIPT "none" "x"')[0].startswith("NO (NONEXISTENT)"))
        self.assertTrue(c.cmd('GETSCRIPT "none"')[0].startswith("NO (NONEXISTENT)"))
        self.assertTrue(c.cmd('SETACTIVE "none"')[0].startswith("NO (NONEXISTENT)"))
        self.assertTrue(c.cmd('DELETESCRIPT "none"')[0].startswith("NO (NONEXISTENT)"))
        # a fourth script is over max_scripts = 3; replacing one is not
        self.assertEqual(put(c, "four", "keep;")[0], 'NO (QUOTA/MAXSCRIPTS) "Too many scripts"')
        self.assertTrue(c.cmd('HAVESPACE "four" 10')[0].startswith("NO (QUOTA/MAXSCRIPTS)"))
        self.assertTrue(put(c, "two", "stop;")[0].startswith("OK"))
        self.assertTrue(c.cmd('HAVESPACE "two" 5000')[0].startswith("NO (QUOTA/MAXSIZE)"))
        self.assertTrue(c.cmd('HAVESPACE "two" 4000')[0].startswith("OK"))
        self.assertTrue(c.cmd('SETACTIVE ""')[0].startswith("OK"))
        self.assertFalse(os.path.lexists(os.path.join(home, ".dovecot.sieve")))
        self.assertTrue(c.cmd('DELETESCRIPT "uno"')[0].startswith("OK"))
        self.assertEqual(sorted(os.listdir(os.path.join(home, "sieve"))), ['thr"ee.sieve', "two.sieve"])
        for name in ("two", 'thr\\"ee'):
            c.cmd('DELETESCRIPT "%s"' % name)

    def test_invalid_scripts_refused(self):
        c = self.client().login()
        status, _ = put(c, "bad", 'require "nosuchext";\r\nkeep;\r\n')
        self.assertRegex(status, r'^NO "1:\d+: .*nosuchext')
        self.assertRegex(c.cmd('CHECKSCRIPT "if true {"')[0], r'^NO "1:\d+: ')
        self.assertEqual(c.cmd('CHECKSCRIPT {5+}\r\nkeep;')[0], 'OK "Script is valid"')
        self.assertTrue(c.cmd(b'CHECKSCRIPT {6+}\r\nkeep;\xff')[0].startswith("NO"))
        self.assertFalse(os.path.exists(os.path.join(self.ms.home("joe@example.org"), "sieve", "bad.sieve")))

    def test_bad_names_refused(self):
        c = self.client().login()
        for name in ("../evil", "a/b", ".hidden", "", "x" * 200, "tab\there"):
            status, _ = put(c, name, "keep;")
            self.assertEqual(status, 'NO "Invalid script name"', name)
        self.assertEqual(c.cmd("PUTSCRIPT atom {5+}\r\nkeep;")[0], 'NO "Invalid script name"')
        sieve_dir = os.path.join(self.ms.home("joe@example.org"), "sieve")
        self.assertEqual(os.listdir(sieve_dir) if os.path.exists(sieve_dir) else [], [])

    def test_commands_need_login(self):
        c = self.client()
        for command in ("LISTSCRIPTS", 'GETSCRIPT "a"', 'PUTSCRIPT "a" "keep;"', 'SETACTIVE "a"'):
            self.assertEqual(c.cmd(command)[0], 'NO "Authenticate first"')
        self.assertEqual(c.cmd("FOO")[0], 'NO "Unknown command"')
        self.assertEqual(c.cmd('NOOP "t1"')[0], 'OK (TAG "t1") "NOOP completed"')
        self.assertEqual(c.cmd('LOGOUT')[0], 'OK "Logout completed"')
        self.assertTrue(c.closed())

    def test_authenticate_continuation_and_unauthenticate(self):
        c = self.client()
        c.send('AUTHENTICATE "PLAIN"\r\n')
        self.assertEqual(c.line(), b'""')
        c.send('"%s"\r\n' % plain("ann@example.org", "annpw"))   # SHA512-CRYPT
        self.assertEqual(c.response()[0], 'OK "Logged in"')
        caps = capabilities(c.cmd("CAPABILITY")[1])
        self.assertEqual((caps["OWNER"], caps["SASL"]), ("ann@example.org", ""))
        self.assertNotIn("STARTTLS", caps)
        self.assertTrue(c.cmd("UNAUTHENTICATE")[0].startswith("OK"))
        self.assertEqual(c.cmd("LISTSCRIPTS")[0], 'NO "Authenticate first"')
        resp = plain("joe@example.org", "secret").encode()
        c.send(b'AUTHENTICATE "PLAIN"\r\n')
        self.assertEqual(c.line(), b'""')
        c.send(b"{%d+}\r\n%s\r\n" % (len(resp), resp))               # a literal as the response
        self.assertEqual(c.response()[0], 'OK "Logged in"')
        self.assertEqual(c.cmd('AUTHENTICATE "PLAIN" "x"')[0], 'NO "Already authenticated"')

    def test_authenticate_abort(self):
        c = self.client()
        c.send('AUTHENTICATE "PLAIN"\r\n')
        self.assertEqual(c.line(), b'""')
        self.assertEqual(c.cmd('"*"')[0], 'NO "Authentication aborted"')
        self.assertEqual(c.cmd('AUTHENTICATE "DIGEST-MD5"')[0], 'NO "Unsupported authentication mechanism"')

    def test_wrong_passwords(self):
        c = self.client()
        start = time.time()
        bad = [plain("joe@example.org", "wrong"), plain("nobody@example.org", "secret"),
               plain("off@example.org", "pw")]
        self.assertEqual(c.cmd('AUTHENTICATE "PLAIN" "%s"' % bad[0])[0], 'NO "Authentication failed"')
        self.assertEqual(c.cmd('AUTHENTICATE "PLAIN" "%s"' % bad[1])[0], 'NO "Authentication failed"')
        # the third failure (max_auth_failures) ends the connection
        self.assertEqual(c.cmd('AUTHENTICATE "PLAIN" "%s"' % bad[2])[0], 'BYE "Too many failed logins"')
        self.assertTrue(c.closed())
        self.assertGreaterEqual(time.time() - start, 2.5)   # 0.5 + 1 + 1.5 s of delay
        d = self.client()
        for response in (plain("nopw@example.org", ""), plain("joe@example.org", "secret", authz="ann@example.org")):
            self.assertTrue(d.cmd('AUTHENTICATE "PLAIN" "%s"' % response)[0].startswith("NO"))
        d = self.client()
        self.assertEqual(d.cmd('AUTHENTICATE "PLAIN" "not base64!"')[0], 'NO "Authentication failed"')

    def test_unix_socket(self):
        c = Client(unix=self.ms.unix)
        self.addCleanup(c.close)
        self.assertEqual(capabilities(c.greeting[1])["SASL"], "PLAIN")
        c.login()
        self.assertTrue(c.cmd("LISTSCRIPTS")[0].startswith("OK"))


class BadInput(unittest.TestCase):
    """Bounds: line length, literal size, idle clients, clients that never
    read, connections."""

    @classmethod
    def setUpClass(cls):
        cls.ms = Sieved([PLAIN_USER], {"managesieve.max_connections": "3"})

    @classmethod
    def tearDownClass(cls):
        cls.ms.stop()

    def client(self):
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        return c

    def test_too_long_line(self):
        c = self.client()
        c.send(b"NOOP " + b"x" * 20000 + b"\r\n")
        self.assertEqual(c.response()[0], 'BYE "line too long"')
        self.assertTrue(c.closed())

    def test_literals_over_the_limit(self):
        c = self.client().login()
        big = b"#" * 5000 + b"\r\nkeep;"   # over max_script_size 4k: read, dropped, refused
        status, _ = c.cmd(b'PUTSCRIPT "big" {%d+}\r\n%s' % (len(big), big))
        self.assertEqual(status, 'NO (QUOTA/MAXSIZE) "The string is larger than max_script_size"')
        self.assertTrue(c.cmd("NOOP")[0].startswith("OK"))   # the connection goes on
        c.send(b'PUTSCRIPT "huge" {99999999+}\r\n')         # far over: not read at all
        self.assertEqual(c.response()[0], 'BYE "literal too large"')
        self.assertTrue(c.closed())

    def test_syntax_errors(self):
        c = self.client().login()
        self.assertEqual(c.cmd('PUTSCRIPT "x\\q" "keep;"')[0], 'NO "bad character in a quoted string"')
        self.assertEqual(c.cmd('GETSCRIPT "x')[0], 'NO "unterminated quoted string"')
        self.assertEqual(c.cmd('GETSCRIPT {x}')[0], 'NO "bad literal"')
        self.assertEqual(c.cmd('GETSCRIPT "a" "b" "c" "d" "e"')[0], 'NO "too many arguments"')
        self.assertEqual(c.cmd('RENAMESCRIPT "a"')[0], 'NO "Wrong number of arguments"')
        self.assertEqual(c.cmd('HAVESPACE "a" -5')[0], 'NO "The size is not a number"')
        self.assertTrue(c.cmd("LISTSCRIPTS")[0].startswith("OK"))

    def test_idle_client_is_disconnected(self):
        c = self.client()
        start = time.time()
        self.assertEqual(c.response()[0], 'BYE "Disconnected for inactivity"')
        self.assertTrue(c.closed())
        self.assertLess(time.time() - start, IDLE + 5)

    def test_client_that_never_reads(self):
        c = self.client().login()
        self.assertTrue(put(c, "s", "#" * 3000 + "\r\nkeep;")[0].startswith("OK"))
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        start = time.time()
        sent = 0
        c.s.settimeout(IDLE * 4)
        try:
            for _ in range(5000):   # 15 MB of replies asked for, none read
                c.s.sendall(b'GETSCRIPT "s"\r\n' * 10)
                sent += 10
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            pass
        # the server gave up on the writes within the idle timeout
        deadline = time.time() + IDLE * 4
        while "not reading" not in self.ms.read_log() and time.time() < deadline:
            time.sleep(0.1)
        self.assertIn("closed: not reading", self.ms.read_log())
        self.assertLess(time.time() - start, IDLE * 4 + 5)
        # and others are served meanwhile and after
        d = self.client().login()
        self.assertTrue(d.cmd('DELETESCRIPT "s"')[0].startswith("OK"))

    def test_max_connections(self):
        time.sleep(0.2 * SLOWDOWN)  # the other tests' connections end
        held = [self.client() for _ in range(3)]
        extra = socket.create_connection(("127.0.0.1", self.ms.port))
        extra.settimeout(5 * SLOWDOWN)
        self.assertEqual(extra.recv(1000), b'BYE "Too many connections, try again later"\r\n')
        extra.close()
        for c in held:   # each thread ends with its LOGOUT; then there is room again
            self.assertTrue(c.cmd("LOGOUT")[0].startswith("OK"))
            self.assertTrue(c.closed())
        deadline = time.time() + 5 * SLOWDOWN
        while True:
            c = self.client()
            if c.greeting[0].startswith("OK") or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertTrue(c.greeting[0].startswith("OK"), c.greeting)


class Tls(unittest.TestCase):
    """STARTTLS with the test certificate; PLAIN only under TLS off loopback."""

    @classmethod
    def setUpClass(cls):
        cls.addr = non_loopback_address()
        listen = "inet:127.0.0.1:0" + (";inet:%s:0" % cls.addr if cls.addr else "")
        cls.ms = Sieved([PLAIN_USER], listen=listen)

    @classmethod
    def tearDownClass(cls):
        cls.ms.stop()

    def starttls(self, c, host):
        self.assertEqual(c.cmd("STARTTLS")[0], 'OK "Begin TLS negotiation now"')
        ctx = ssl.create_default_context(cafile=self.ms.cert)
        ctx.check_hostname = False
        c.s = ctx.wrap_socket(c.s)
        status, items = c.response()   # RFC 5804 2.2: the capabilities again
        self.assertEqual(status, 'OK "TLS negotiation successful"')
        return capabilities(items)

    def test_starttls_then_login(self):
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        caps = self.starttls(c, "127.0.0.1")
        self.assertNotIn("STARTTLS", caps)
        self.assertEqual(caps["SASL"], "PLAIN")
        c.login()
        script = "keep;\r\n" * 300
        self.assertTrue(put(c, "tls", script)[0].startswith("OK"))
        self.assertEqual(c.cmd('GETSCRIPT "tls"')[1][0], script.encode())
        self.assertTrue(c.cmd('DELETESCRIPT "tls"')[0].startswith("OK"))
        self.assertEqual(c.cmd("STARTTLS")[0], 'NO "Already authenticated"')

    def test_pipelined_after_starttls_closes(self):
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        c.send('STARTTLS\r\nAUTHENTICATE "PLAIN" "%s"\r\n' % plain("joe@example.org", "secret"))
        self.assertEqual(c.response()[0], 'OK "Begin TLS negotiation now"')
        self.assertTrue(c.closed())
        self.assertIn("input pipelined after STARTTLS", self.ms.read_log())

    def test_plain_needs_tls_off_loopback(self):
        if not self.addr:
            self.skipTest("no address but loopback on this host")
        c = Client(self.ms.ports[1], host=self.addr)
        self.addCleanup(c.close)
        self.assertEqual(capabilities(c.greeting[1])["SASL"], "")
        status, _ = c.cmd('AUTHENTICATE "PLAIN" "%s"' % plain("joe@example.org", "secret"))
        self.assertEqual(status, 'NO (ENCRYPT-NEEDED) "Use STARTTLS first"')
        self.assertEqual(self.starttls(c, self.addr)["SASL"], "PLAIN")
        c.login()


class Store(unittest.TestCase):
    """Files: the script directory reached without following a link the
    user planted; a file system failure is TRYLATER."""

    def setUp(self):
        self.ms = Sieved([PLAIN_USER])
        self.addCleanup(self.ms.stop)

    def make_home(self):
        """the user's directory, the mail user's as lmtpd would make it"""
        home = self.ms.home("joe@example.org")
        os.makedirs(home)
        own(os.path.dirname(home))
        own(home)
        return home

    def test_planted_symlink_not_followed(self):
        outside = tempfile.mkdtemp(prefix="ms-outside-")
        self.addCleanup(shutil.rmtree, outside, True)
        own(outside)   # writable by the mail user: only O_NOFOLLOW stops it
        home = self.make_home()
        os.symlink(outside, os.path.join(home, "sieve"))
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        c.login()
        self.assertEqual(put(c, "x", "keep;")[0], 'NO (TRYLATER) "Temporary failure, try again later"')
        self.assertEqual(os.listdir(outside), [])

    def test_active_regular_file_kept(self):
        """A script from before ManageSieve is kept as dovecot.orig when
        another is activated, as Pigeonhole does; never over one."""
        home = self.make_home()
        with open(os.path.join(home, ".dovecot.sieve"), "w") as f:
            f.write("discard;\n")
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        c.login()
        self.assertTrue(put(c, "x", "keep;")[0].startswith("OK"))
        self.assertEqual(c.cmd("LISTSCRIPTS")[1], [b'"x"'])
        self.assertTrue(c.cmd('SETACTIVE "x"')[0].startswith("OK"))
        self.assertEqual(os.readlink(os.path.join(home, ".dovecot.sieve")), "sieve/x.sieve")
        self.assertEqual(c.cmd("LISTSCRIPTS")[1], [b'"dovecot.orig"', b'"x" ACTIVE'])
        self.assertEqual(c.cmd('GETSCRIPT "dovecot.orig"')[1][0], b"discard;\n")
        os.unlink(os.path.join(home, ".dovecot.sieve"))
        with open(os.path.join(home, ".dovecot.sieve"), "w") as f:
            f.write("stop;\n")
        self.assertTrue(c.cmd('SETACTIVE "x"')[0].startswith("NO (TRYLATER)"))
        with open(os.path.join(home, ".dovecot.sieve")) as f:
            self.assertEqual(f.read(), "stop;\n")


class Startup(unittest.TestCase):
    def test_backend_without_passwords_refused(self):
        """dovecot without dovecot_auth_socket (its userdb socket cannot
        check passwords): a clear error at start, not a failing login"""
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.write_config({"users.backend": "dovecot", "users.dovecot_socket": "/nonexistent/auth-userdb",
                        "managesieve.listen": "inet:127.0.0.1:0"})
        p = subprocess.run([MANAGESIEVED, "-c", "lmtpd.conf"], cwd=d.dir, capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn("[users] backend = dovecot cannot check passwords", p.stderr)


class LdapLogins(unittest.TestCase):
    """backend = ldap: the user's entry found with ldap_filter, then a
    second connection bound as it with the password."""

    @classmethod
    def setUpClass(cls):
        import test_directory_ldap as t
        if not (os.path.exists(t.SLAPD) and t.LDAPADD):
            raise unittest.SkipTest("slapd or ldapadd missing (apt-get install slapd ldap-utils)")
        cls.slapd = t.Slapd()
        cls.slapd.add(t.TREE + "\n" + t.entry("sue", "sue@example.org", userPassword="sue-pw") + "\n"
                      + t.entry("gone", "gone@example.org", userPassword="gone-pw", accountStatus="disabled"))
        cls.ms = Sieved(None, lambda d: t.ldap_settings(d, cls.slapd.uri))

    @classmethod
    def tearDownClass(cls):
        cls.ms.stop()
        cls.slapd.cleanup()

    def test_bind_as_the_user(self):
        # a wrong password, none, an entry without one, a disabled entry whose bind works
        for user, password in (("sue@example.org", "wrong"), ("sue@example.org", ""), ("ann@example.org", "x"),
                               ("gone@example.org", "gone-pw")):
            c = Client(self.ms.port)
            self.addCleanup(c.close)
            status, _ = c.cmd('AUTHENTICATE "PLAIN" "%s"' % plain(user, password))
            self.assertEqual(status, 'NO "Authentication failed"', user)
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        c.login("sue@example.org", "sue-pw")
        self.assertTrue(put(c, "s", "keep;")[0].startswith("OK"))
        self.assertTrue(os.path.isfile(os.path.join(self.ms.home("sue@example.org"), "sieve", "s.sieve")))

    def test_server_down_is_trylater(self):
        self.slapd.stop()
        self.addCleanup(self.slapd.start)
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        status, _ = c.cmd('AUTHENTICATE "PLAIN" "%s"' % plain("sue@example.org", "sue-pw"))
        self.assertEqual(status, 'NO (TRYLATER) "The user directory is not available, try again later"')


class PgsqlLogins(unittest.TestCase):
    """backend = pgsql: pgsql_password_query returns the stored hash."""

    @classmethod
    def setUpClass(cls):
        import test_directory_pgsql as t
        if t.PGBIN is None:
            raise unittest.SkipTest("PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)")
        cls.pg = t.Cluster()
        try:
            cls.pg.psql(t.SCHEMA + "ALTER TABLE users ADD COLUMN password text;"
                        "UPDATE users SET password = '{SHA512-CRYPT}%s' WHERE address = 'ann@example.org';"
                        % sha512_crypt("ann-pw"))
        except Exception:
            cls.pg.cleanup()
            raise

        def settings(d):
            with open(os.path.join(d.dir, "pgpass"), "w") as f:
                f.write(t.PASSWORD + "\n")
            return {"users.backend": "pgsql", "users.domains": "", "users.pgsql_password_file": "pgpass",
                    "users.pgsql_conninfo": "host=127.0.0.1 port=%d dbname=postgres user=lmtpd" % cls.pg.port,
                    "users.pgsql_query": "SELECT mailbox, enabled FROM users WHERE address = $1",
                    "users.pgsql_password_query": "SELECT password FROM users WHERE address = $1 AND enabled"}
        cls.ms = Sieved(None, settings)

    @classmethod
    def tearDownClass(cls):
        cls.ms.stop()
        cls.pg.cleanup()

    def test_password_from_the_table(self):
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        for user, password in (("ann@example.org", "wrong"), ("off@example.org", "x")):
            self.assertEqual(c.cmd('AUTHENTICATE "PLAIN" "%s"' % plain(user, password))[0],
                             'NO "Authentication failed"')
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        c.login("ann@example.org", "ann-pw")
        self.assertTrue(c.cmd("LISTSCRIPTS")[0].startswith("OK"))

    def test_server_down_is_trylater(self):
        self.pg.stop()
        self.addCleanup(self.pg.start)
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        status, _ = c.cmd('AUTHENTICATE "PLAIN" "%s"' % plain("ann@example.org", "ann-pw"))
        self.assertEqual(status, 'NO (TRYLATER) "The user directory is not available, try again later"')


class DovecotLogins(unittest.TestCase):
    """backend = dovecot: users from Dovecot's auth-userdb, logins through
    its auth-client socket (AUTH PLAIN), as Dovecot's own login does."""

    @classmethod
    def setUpClass(cls):
        import test_directory_dovecot as t
        from lmtptest import MAIL_USER
        if not os.path.exists(t.DOVECOT):
            raise unittest.SkipTest("dovecot is not installed (dovecot-core)")
        cls.dc = t.Dovecot(["sue@example.org:{PLAIN}sue-pw::::::", "off@example.org:{PLAIN}x::::::userdb_nologin=y"])
        with open(cls.dc.conf) as f:
            conf = f.read()
        client = MAIL_USER if os.geteuid() == 0 else __import__("pwd").getpwuid(os.geteuid()).pw_name
        conf = conf.replace("service auth {\n", "service auth {\n  unix_listener auth-client {\n    mode = 0600\n"
                            "    user = %s\n  }\n" % client, 1)
        with open(cls.dc.conf, "w") as f:
            f.write(conf)
        cls.dc.start()
        try:
            cls.ms = Sieved(None, {"users.backend": "dovecot", "users.domains": "",
                                   "users.dovecot_socket": cls.dc.socket,
                                   "users.dovecot_auth_socket": os.path.join(cls.dc.dir, "run", "auth-client")})
        except Exception:
            cls.dc.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.ms.stop()
        cls.dc.cleanup()

    def test_login_through_dovecot(self):
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        self.assertEqual(c.cmd('AUTHENTICATE "PLAIN" "%s"' % plain("sue@example.org", "wrong"))[0],
                         'NO "Authentication failed"')
        c.login("sue@example.org", "sue-pw")
        self.assertTrue(put(c, "s", "keep;")[0].startswith("OK"))
        self.assertTrue(os.path.isfile(os.path.join(self.ms.home("sue@example.org"), "sieve", "s.sieve")))

    def test_dovecot_down_is_trylater(self):
        self.dc.stop()
        self.addCleanup(self.dc.start)
        c = Client(self.ms.port)
        self.addCleanup(c.close)
        status, _ = c.cmd('AUTHENTICATE "PLAIN" "%s"' % plain("sue@example.org", "sue-pw"))
        self.assertEqual(status, 'NO (TRYLATER) "The user directory is not available, try again later"')


class SieveConnect(unittest.TestCase):
    """Debian's sieve-connect uploads, lists and activates over STARTTLS;
    lmtpd then runs the activated script for a delivery."""

    def setUp(self):
        if shutil.which("sieve-connect") is None:
            self.skipTest("sieve-connect is not installed (apt-get install sieve-connect)")
        self.ms = Sieved([PLAIN_USER])
        self.addCleanup(self.ms.stop)

    def sieve_connect(self, *args):
        cmd = ["sieve-connect", "-s", "127.0.0.1", "-p", str(self.ms.port), "-u", "joe@example.org",
               "--passwordfd", "0", "--tlscafile", self.ms.cert, "--tlshostname", "lmtp.test",
               "--authmech", "PLAIN"] + list(args)
        p = subprocess.run(cmd, input="secret\n", capture_output=True, text=True, timeout=30 * SLOWDOWN,
                           cwd=self.ms.d.dir)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p.stdout + p.stderr

    def test_upload_list_activate_deliver(self):
        local = os.path.join(self.ms.d.dir, "filter.sieve")
        with open(local, "w") as f:
            f.write('require ["fileinto"];\nif header :contains "subject" "report" {\n'
                    '  fileinto "Reports";\n}\n')
        self.sieve_connect("--upload", "--localsieve", local, "--remotesieve", "filter")
        self.assertIn("filter", self.sieve_connect("--list"))
        self.sieve_connect("--activate", "--remotesieve", "filter")
        self.assertRegex(self.sieve_connect("--list"), r'"filter" ACTIVE')
        home = self.ms.home("joe@example.org")
        self.assertEqual(os.readlink(os.path.join(home, ".dovecot.sieve")), "sieve/filter.sieve")

        body = b"From: a@example.net\r\nSubject: the weekly report\r\n\r\nNumbers.\r\n"
        c = self.ms.d.connect()
        self.assertEqual(c.code(), 220)
        c.cmd("LHLO t")
        c.cmd("MAIL FROM:<a@example.net>")
        c.cmd("RCPT TO:<joe@example.org>")
        c.cmd("DATA")
        c.send(dotstuff(body))
        self.assertTrue(c.text().startswith("250"))
        c.cmd("QUIT")
        c.close()
        (_, data), = self.ms.d.messages("joe@example.org", folder=".Reports")
        self.assertTrue(data.endswith(b"Subject: the weekly report\n\nNumbers.\n"), data)
        self.assertEqual(self.ms.d.messages("joe@example.org"), [])


if __name__ == "__main__":
    main()
