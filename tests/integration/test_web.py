"""The admin web page (issue 19) in a real browser: headless Chromium logs
in with the token, searches the quarantine, opens a message a callout
service quarantined into the store (headers, the text only, escaped),
releases it with the form's button (the mailbox then holds it, once),
opens its decision trace and the services' chart; a screenshot of each
page is kept (tests/integration/artifacts/ or $ARTIFACTS_DIR) and every
request the browser made stayed on loopback.  Without a token every admin
page refuses (401; 403 with a wrong one), an action without the session's
CSRF token is refused, a forged or expired signed link is refused and a
good one releases; lmtpd refuses a token file others may read."""

import os
import re
import socket
import stat
import subprocess
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from browser import Browser
from lmtptest import LMTPD, Callout, Daemon, main, recv_to_close
from test_delivery import transaction

LMTPCTL = os.path.join(os.path.dirname(LMTPD), "..", "admin", "lmtpctl")
ARTIFACTS = os.environ.get("ARTIFACTS_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")
TOKEN = "t0ken-" + "a1b2c3d4e5f6a7b8c9d0" * 2
SECRET = "link-secret-" + "0f1e2d3c4b5a6978" * 2

RCPTS = ["alice@example.org", "bob@example.org"]
BODY = (b"From: Spammer <s@example.net>\nTo: alice@example.org\nSubject: cheap <b>pills</b> & more\n"
        b"Message-ID: <web.1@example.net>\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/alternative; boundary=\"b1\"\n\n"
        b"--b1\nContent-Type: text/plain; charset=utf-8\n\nbuy now, plain text\n"
        b"--b1\nContent-Type: text/html; charset=utf-8\n\n"
        b"<html><head><style>p{color:red}</style><script>document.title='owned'</script></head>"
        b"<body><p>html <i>part</i> &amp; <img src=\"http://tracker.example.com/p.gif\"></p></body></html>\n"
        b"--b1--\n")


def write_secret(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)


def http(port, path, method="GET", headers=None, data=None):
    """(status, headers, body) of one request, redirects not followed."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method, headers=headers or {},
                                 data=data)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


class Web(unittest.TestCase):

    def setUp(self):
        # the filter quarantines alice's copy into the store, passes bob's
        self.filter = Callout("rcpt=alice@* quarantine spam-score-high\n* accept\n")
        self.addCleanup(self.filter.stop)
        # a candidate in shadow mode: its rejections are counted, never applied
        self.candidate = Callout("* reject would-reject\n")
        self.addCleanup(self.candidate.stop)
        self.d = Daemon(extra={
            "state.records_db": "lib/records.db",
            "quarantine.dir": "qstore",
            "service filter.servers": self.filter.endpoint, "service filter.quarantine": "store",
            "service candidate.servers": self.candidate.endpoint, "service candidate.mode": "shadow",
            "rule a.match": "alice@example.org", "rule a.services": "filter, candidate",
            "rule all.match": "*", "rule all.services": "filter, candidate",
            "admin.listen": "inet:127.0.0.1:0", "admin.token_file": "admin.token",
            "admin.link_secret_file": "link.secret",
            "server.metrics_listen": "inet:127.0.0.1:0"})
        write_secret(os.path.join(self.d.dir, "admin.token"), TOKEN)
        write_secret(os.path.join(self.d.dir, "link.secret"), SECRET)
        self.d.start()
        self.addCleanup(self.d.cleanup)
        self.port = self.admin_port()

    def admin_port(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            m = re.search(r"admin web page on http://127\.0\.0\.1:(\d+)/", self.d.read_log())
            if m:
                return int(m.group(1))
            time.sleep(0.05)
        self.fail("no admin listener: " + self.d.read_log())

    def quarantined(self, body=BODY):
        c = self.d.connect(timeout=30)
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, RCPTS, body)
        c.close()
        m = re.match(r"^250 2\.0\.0 <alice@example\.org> quarantined as ([0-9a-f]{16}) ", r[0])
        self.assertTrue(m, r)
        self.assertRegex(r[1], r"^250 2\.0\.0 <bob@example\.org> ")
        self.assertEqual(len(self.d.messages("bob@example.org")), 1)
        return m.group(1)

    def alice(self):
        return [data for _, data in self.d.messages("alice@example.org")]

    def ctl(self, *args):
        return subprocess.run([LMTPCTL, "-c", "lmtpd.conf"] + list(args), cwd=self.d.dir, capture_output=True,
                              timeout=60)

    def seed_verdict_counts(self):
        """Past hours of the filter's counts, as the pipeline records them
        (a test cannot wait hours for a chart)."""
        hour = int(time.time()) // 3600 * 3600
        rows = []
        for back, accept, quarantine in ((5, 40, 3), (4, 55, 2), (2, 30, 4)):
            rows.append("(%d, 'filter', 'accept', 0, %d)" % (hour - back * 3600, accept))
            rows.append("(%d, 'filter', 'quarantine', 0, %d)" % (hour - back * 3600, quarantine))
        subprocess.run(["sqlite3", os.path.join(self.d.dir, "lib", "records.db"),
                        "INSERT INTO lmtpd_verdicts (hour, service, verdict, shadow, n) VALUES %s "
                        "ON CONFLICT DO UPDATE SET n = n + excluded.n" % ", ".join(rows)], check=True, timeout=30)

    def browser(self):
        b = Browser()
        self.addCleanup(b.close)
        return b

    def shot(self, b, name):
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = b.screenshot(os.path.join(ARTIFACTS, name))
        self.assertGreater(os.path.getsize(path), 5000)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    # ---- the browser -----------------------------------------------------------

    def test_browser_quarantine_release_trace_services(self):
        qid = self.quarantined()
        self.assertEqual(self.alice(), [])
        base = "http://127.0.0.1:%d" % self.port
        b = self.browser()

        # the login URL sets the session cookie and leads to the list
        b.go(base + "/login?token=" + urllib.parse.quote(TOKEN))
        self.assertEqual(b.js("location.pathname"), "/quarantine")
        self.assertEqual(b.js("document.cookie"), "")  # HttpOnly: no script sees it
        b.go(base + "/quarantine?rcpt=alice%40example.org")
        table = b.text("#quarantine")
        self.assertIn(qid, table)
        self.assertIn("cheap <b>pills</b> & more", table)  # the subject as text, not markup
        self.assertEqual(b.js("document.querySelectorAll('#quarantine b').length"), 0)
        self.assertIn("spam-score-high", table)
        self.assertIn("filter", table)
        self.shot(b, "web-quarantine.png")
        b.go(base + "/quarantine?sender=nobody%40example.org")
        self.assertNotIn(qid, b.text("#quarantine"))

        # the message: its header and text, nothing of its HTML rendered or fetched
        b.go(base + "/quarantine?rcpt=alice%40example.org")
        b.click("#quarantine a")
        self.assertEqual(b.js("location.pathname"), "/quarantine/" + qid)
        self.assertIn("spam-score-high", b.text("#summary"))
        self.assertIn("<web.1@example.net>", b.text("#header"))
        text = b.text("#text")
        self.assertIn("buy now, plain text", text)
        self.assertIn("html part & ", text)
        self.assertNotIn("owned", text + b.js("document.title"))
        self.assertNotIn("color:red", text)
        self.assertEqual(b.js("document.scripts.length + document.images.length"), 0)
        self.shot(b, "web-message.png")

        # Release: the form's button
        b.click("#release")
        self.assertIn("Released to its recipient", b.text("#note"))
        self.assertIn("released", b.text("#summary"))
        data, = self.alice()
        self.assertRegex(data.decode(), r"^X-Quarantine-Released: %s by web:admin at " % qid)
        self.assertIn(b"Subject: cheap <b>pills</b> & more\n", data)
        self.assertTrue(data.endswith(b"--b1--\n"), data)
        self.assertEqual(data.count(b"Return-Path:"), 1)
        self.assertRegex(self.d.read_log(), r"admin web action=release id=%s who=web:admin" % qid)
        # the button is gone and a second release is refused
        self.assertEqual(b.js("document.querySelectorAll('#release').length"), 0)
        self.assertIn("released", self.ctl("quarantine", "list", "--all").stdout.decode())

        # the trace of the message
        b.go(base + "/trace?id=" + urllib.parse.quote("<web.1@example.net>"))
        trace = b.text("main")
        self.assertIn("alice@example.org", trace)
        self.assertIn("bob@example.org", trace)
        self.assertIn("quarantined as " + qid, trace)
        self.assertRegex(trace, r"callout data filter server=%s time=\d+ms verdict=quarantine applied"
                         % self.filter.endpoint)
        self.assertRegex(trace, r"callout data filter server=%s time=\d+ms verdict=accept applied"
                         % self.filter.endpoint)
        self.assertRegex(trace, r"callout data candidate server=%s time=\d+ms verdict=reject shadow"
                         % self.candidate.endpoint)
        self.assertGreaterEqual(b.js("document.querySelectorAll('table.steps tr').length"), 6)
        self.shot(b, "web-trace.png")

        self.seed_verdict_counts()
        b.go(base + "/services")
        self.assertEqual("Services", b.text("h1"))
        self.assertGreaterEqual(b.js("document.querySelectorAll('svg.chart rect').length"), 7)
        self.assertIn("candidate (shadow mode: would-be verdicts)", b.text("main"))
        rows = b.js("[...document.querySelectorAll('#shadow tr')].map(r => r.innerText.replace(/\\s+/g, ' ').trim())")
        # the seeded hours plus this test's own calls: alice's quarantine, bob's accept; the
        # candidate's would-be rejections of both (and of alice's release), never applied
        self.assertIn("filter quarantine 10 0", rows)
        self.assertIn("filter accept 126 0", rows)
        shadow = [r for r in rows if r.startswith("candidate reject 0 ")]
        self.assertEqual(len(shadow), 1, rows)
        self.assertIn(int(shadow[0].split()[-1]), (2, 3))
        self.shot(b, "web-services.png")

        # nothing left loopback
        self.assertTrue(b.urls)
        for url in b.urls:
            self.assertTrue(url.startswith(base + "/"), url)

    # ---- refusals ----------------------------------------------------------------

    def test_without_token_every_admin_page_refuses(self):
        qid = self.quarantined()
        pages = ["/", "/quarantine", "/quarantine?text=x", "/quarantine/" + qid, "/trace?id=x", "/services",
                 "/metrics"]
        for path in pages:
            status, headers, body = http(self.port, path)
            self.assertEqual(status, 401, path)
            self.assertIn("Bearer", headers["WWW-Authenticate"])
            self.assertNotIn(qid + "<", body)
            for wrong in ({"Authorization": "Bearer " + TOKEN[:-1] + "x"},
                          {"Authorization": "Basic " + TOKEN},
                          {"Cookie": "lmtpd_admin=00.9999999999.00"}):
                self.assertEqual(http(self.port, path, headers=wrong)[0], 403, (path, wrong))
            status, _, _ = http(self.port, path, headers={"Authorization": "Bearer " + TOKEN})
            self.assertIn(status, (200, 303), path)
        for verb in ("release", "delete"):
            self.assertEqual(http(self.port, "/quarantine/%s/%s" % (qid, verb), method="POST", data=b"")[0], 401)
        self.assertEqual(http(self.port, "/login?token=" + TOKEN[:-1])[0], 403)
        self.assertEqual(http(self.port, "/login")[0], 403)
        # a token, but no CSRF token: the action is refused, the message stays
        bearer = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/x-www-form-urlencoded"}
        status, _, body = http(self.port, "/quarantine/%s/release" % qid, "POST", bearer, b"csrf=forged")
        self.assertEqual(status, 403, body)
        self.assertEqual(self.alice(), [])
        self.assertIn(" held ", self.ctl("quarantine", "list").stdout.decode())
        # with the session's token it goes through
        _, _, page = http(self.port, "/quarantine/" + qid, headers=bearer)
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page).group(1)
        status, _, body = http(self.port, "/quarantine/%s/delete" % qid, "POST", bearer,
                               ("csrf=" + csrf).encode())
        self.assertEqual(status, 200, body)
        self.assertIn("Deleted.", body)
        self.assertIn(" deleted ", self.ctl("quarantine", "list", "--all").stdout.decode())
        self.assertEqual(self.alice(), [])
        # hostile input comes back as text
        self.assertIn(http(self.port, "/quarantine/..%2F..%2Fadmin.token", headers=bearer)[0], (400, 404))
        self.assertEqual(http(self.port, "/quarantine/" + qid + ".msg", headers=bearer)[0], 404)
        status, _, page = http(self.port, "/quarantine?text=%22%3E%3Cscript%3Ex%3C/script%3E", headers=bearer)
        self.assertEqual(status, 200)
        self.assertNotIn('"><script>', page)
        self.assertIn('value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"', page)

    def test_metrics_on_both_listeners(self):
        status, headers, body = http(self.port, "/metrics", headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        self.assertRegex(body, r"\nlmtpd_sessions_total \d+\n")
        m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", self.d.read_log())
        status, _, body = http(int(m.group(1)), "/metrics")  # [server] metrics_listen: no token, as before
        self.assertEqual(status, 200)
        self.assertIn("# TYPE lmtpd_sessions_total counter\n", body)

    def test_bounded_requests(self):
        bearer = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/x-www-form-urlencoded"}
        status, _, _ = http(self.port, "/quarantine/x/release", "POST", bearer, b"a" * (65 * 1024))
        self.assertEqual(status, 413)
        status, _, _ = http(self.port, "/quarantine?text=" + "x" * 2000, headers=bearer)
        self.assertEqual(status, 400)
        # a head over libsoup's 64 KiB: an error or the connection closed, never an answer
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            try:
                s.sendall(b"GET /quarantine HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 100000 + b"\r\n\r\n")
                answer = s.recv(100)
            except ConnectionResetError:
                answer = b""
            self.assertRegex(answer, rb"^(HTTP/1\.1 (400|413|431) |$)")
        self.assertEqual(http(self.port, "/quarantine", headers=bearer)[0], 200)

    # ---- signed links -------------------------------------------------------------

    def test_signed_link_releases_forged_and_expired_refused(self):
        qid = self.quarantined()
        made = self.ctl("quarantine", "link", qid)
        self.assertEqual(made.returncode, 0, made.stderr)
        url = made.stdout.decode().strip()
        m = re.match(r"^http://127\.0\.0\.1:0/u/release\?id=%s&exp=(\d+)&sig=([0-9a-f]{64})$" % qid, url)
        self.assertTrue(m, url)
        exp, sig = m.group(1), m.group(2)
        self.assertAlmostEqual(int(exp), time.time() + 7 * 86400, delta=60)
        path = url[url.index("/u/"):]
        forged = [path[:-1] + ("0" if sig[-1] != "0" else "1"),
                  path.replace("exp=" + exp, "exp=%d" % (int(exp) + 1)),
                  "/u/release?id=%s&exp=%s&sig=%s" % ("0" * 16, exp, sig),
                  "/u/release?id=" + qid]
        expired = self.ctl("quarantine", "link", qid, "--expires", "-5").stdout.decode().strip()
        for p in forged + [expired[expired.index("/u/"):]]:
            status, _, body = http(self.port, p)
            self.assertEqual(status, 403, p)
            self.assertNotIn("cheap", body)
            fields = urllib.parse.urlencode(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(p).query)))
            self.assertEqual(http(self.port, "/u/release", "POST",
                                  {"Content-Type": "application/x-www-form-urlencoded"}, fields.encode())[0], 403)
        self.assertIn("expired", http(self.port, expired[expired.index("/u/"):])[2])
        self.assertEqual(self.alice(), [])

        # the real link in the browser: the summary, then Release
        b = self.browser()
        b.go("http://127.0.0.1:%d%s" % (self.port, path))
        summary = b.text("#summary")
        self.assertIn("cheap <b>pills</b> & more", summary)
        self.assertNotIn("Quarantine", b.text("header"))  # no admin pages for a user
        self.shot(b, "web-link.png")
        b.click("#release")
        self.assertIn("Released to alice@example.org", b.text("#note"))
        data, = self.alice()
        self.assertRegex(data.decode(), r"^X-Quarantine-Released: %s by link:alice@example\.org at " % qid)
        # a link releases once
        status, _, _ = http(self.port, "/u/release", "POST", {"Content-Type": "application/x-www-form-urlencoded"},
                            urllib.parse.urlencode({"id": qid, "exp": exp, "sig": sig}).encode())
        self.assertEqual(status, 409)
        self.assertEqual(len(self.alice()), 1)


    def test_sigkill_of_lmtpd_in_the_middle_of_a_release(self):
        """A release the page started inside lmtpd, lmtpd killed (SIGKILL)
        right after the claim: the store keeps the message, and the
        restarted lmtpd completes the release, exactly once."""
        qid = self.quarantined()
        url = self.ctl("quarantine", "link", qid).stdout.decode().strip()
        form = urllib.parse.urlencode(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))).encode()
        self.d.stop()
        self.d.extra["delivery.delivery_timeout"] = "2"   # a claim this old is a crash's
        self.d.write_config()
        self.d.env = dict(os.environ, LMTPD_TEST_QUARANTINE_PAUSE="claimed")
        self.d.start()
        port = self.admin_port()
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /u/release HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                  b"application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s" % (len(form), form))
        deadline = time.time() + 15
        while "quarantine release paused: claimed" not in self.d.read_log() and time.time() < deadline:
            time.sleep(0.05)
        self.assertIn("quarantine release paused: claimed", self.d.read_log())
        self.d.proc.kill()
        self.d.proc.wait()
        s.close()
        self.assertEqual(self.alice(), [])
        self.assertTrue(os.path.exists(os.path.join(self.d.dir, "qstore", qid + ".msg")))
        self.assertRegex(self.ctl("quarantine", "list", "--all").stdout.decode(), qid + r" .* releasing ")
        self.d.env = None
        time.sleep(1.1)   # claims older than lmtpd's start (by the second) are a crash's
        self.d.start()
        deadline = time.time() + 20
        while not self.alice() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        data, = self.alice()
        self.assertRegex(data.decode(), r"^X-Quarantine-Released: %s by link:alice@example\.org at " % qid)
        self.assertRegex(self.ctl("quarantine", "list", "--all").stdout.decode(), qid + r" .* released ")
        self.assertEqual(http(self.admin_port(), "/u/release", "POST",
                              {"Content-Type": "application/x-www-form-urlencoded"}, form)[0], 409)
        self.assertEqual(len(self.alice()), 1)


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)


def make_ca(directory, name):
    ca, key = os.path.join(directory, name + "-ca.pem"), os.path.join(directory, name + "-ca.key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
            "-out", ca, "-days", "2", "-subj", "/CN=%s admin CA" % name, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
    return ca, key


def make_signed(directory, name, ca, ca_key, subject, ext):
    cert, key, csr = (os.path.join(directory, name + x) for x in (".pem", ".key", ".csr"))
    extfile = os.path.join(directory, name + ".ext")
    with open(extfile, "w") as f:
        f.write(ext + "\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
            "-out", csr, "-subj", subject)
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
            "-extfile", extfile)
    return cert, key


class ClientCertificates(unittest.TestCase):
    """HTTPS, and client certificates from [admin] tls_client_ca_file as
    the admins' way in (no token file at all)."""

    def setUp(self):
        self.d = Daemon(extra={"state.records_db": "lib/records.db",
                               "admin.listen": "inet:127.0.0.1:0", "admin.tls_cert_file": "server.pem",
                               "admin.tls_key_file": "server.key", "admin.tls_client_ca_file": "admins-ca.pem"})
        self.addCleanup(self.d.cleanup)
        ca, ca_key = make_ca(self.d.dir, "admins")
        rogue, rogue_key = make_ca(self.d.dir, "rogue")
        self.server, _ = make_signed(self.d.dir, "server", ca, ca_key, "/CN=lmtp.test",
                                     "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
        self.admin = make_signed(self.d.dir, "admin", ca, ca_key, "/O=Example/CN=Ops Admin",
                                 "extendedKeyUsage=clientAuth")
        self.intruder = make_signed(self.d.dir, "intruder", rogue, rogue_key, "/CN=Ops Admin",
                                    "extendedKeyUsage=clientAuth")
        self.ca = ca
        self.d.start()
        self.port = int(re.search(r"admin web page on https://127\.0\.0\.1:(\d+)/", self.d.read_log()).group(1))

    def get(self, path, cert=None):
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca)
        if cert:
            ctx.load_cert_chain(*cert)
        try:
            with urllib.request.urlopen("https://127.0.0.1:%d%s" % (self.port, path), context=ctx, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def test_certificate_from_the_ca_is_an_admin(self):
        status, body = self.get("/services", self.admin)
        self.assertEqual(status, 200, body)
        self.assertIn("<h1>Services</h1>", body)
        self.assertRegex(body, r'name="csrf"|Services')
        self.assertEqual(self.get("/services")[0], 401)
        try:
            status, _ = self.get("/services", self.intruder)
        except (urllib.error.URLError, ConnectionError, OSError):
            status = "handshake refused"
        self.assertIn(status, (403, "handshake refused"))
        status, body = self.get("/metrics", self.admin)
        self.assertEqual(status, 200)
        self.assertIn("lmtpd_sessions_total", body)


class Connections(unittest.TestCase):
    """[admin] max_connections: one more connection gets 503 and is closed;
    once one goes, a new one is served."""

    def setUp(self):
        self.d = Daemon(extra={"state.records_db": "lib/records.db", "admin.listen": "inet:127.0.0.1:0",
                               "admin.token_file": "admin.token", "admin.max_connections": "2"})
        self.addCleanup(self.d.cleanup)
        write_secret(os.path.join(self.d.dir, "admin.token"), TOKEN)
        self.d.start()
        self.port = int(re.search(r"admin web page on http://127\.0\.0\.1:(\d+)/", self.d.read_log()).group(1))

    def ask(self, s):
        """One request on @s: the status line, and whether the connection
        was closed after the answer."""
        s.sendall(("GET /nothing-here HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % TOKEN).encode())
        data = recv_to_close(s)
        return data.split(b"\r\n")[0].decode(), b"\r\nConnection: close\r\n" in data

    def test_one_connection_too_many(self):
        # two clients that have not finished their request hold both places
        first = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        second = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        for s in (first, second):
            s.sendall(b"GET /nothing-here HTTP/1.1\r\n")
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as third:
            try:
                answer = self.ask(third)
            except ConnectionResetError:  # closed at once, before its request was read
                answer = ("reset", True)
            self.assertIn(answer, (("HTTP/1.1 503 Service Unavailable", True), ("reset", True), ("", False)))
        # one finishes its request: answered, closed, its place free again
        first.sendall(("Host: x\r\nAuthorization: Bearer %s\r\n\r\n" % TOKEN).encode())
        self.assertTrue(first.recv(100).startswith(b"HTTP/1.1 404 "))
        first.close()
        deadline = time.time() + 10
        while True:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as again:
                try:
                    answer = self.ask(again)
                except ConnectionResetError:
                    answer = ("reset", True)
            if answer[0] == "HTTP/1.1 404 Not Found" or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(answer, ("HTTP/1.1 404 Not Found", True))
        second.close()


class TokenFile(unittest.TestCase):
    """lmtpd refuses to start the admin listener with a bad token file."""

    def start_with(self, write):
        d = Daemon(extra={"admin.listen": "inet:127.0.0.1:0", "admin.token_file": "admin.token"})
        self.addCleanup(d.cleanup)
        write(os.path.join(d.dir, "admin.token"))
        with self.assertRaises(RuntimeError) as e:
            d.start()
        return str(e.exception)

    def test_world_readable_missing_or_empty(self):
        self.assertRegex(self.start_with(lambda p: write_secret(p, TOKEN, 0o644)),
                         r"token_file admin\.token: others may read it \(mode 0644\)")
        self.assertRegex(self.start_with(lambda p: None), r"token_file admin\.token: No such file")
        self.assertRegex(self.start_with(lambda p: write_secret(p, "  ")), r"token_file admin\.token: empty")

    def test_listener_needs_a_way_in(self):
        d = Daemon(extra={"admin.listen": "inet:127.0.0.1:0"})
        self.addCleanup(d.cleanup)
        r = subprocess.run([LMTPD, "-c", "lmtpd.conf", "--check-config"], cwd=d.dir, capture_output=True,
                           timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"[admin] listen: the admin listener needs token_file or tls_client_ca_file", r.stderr)


if __name__ == "__main__":
    main()
