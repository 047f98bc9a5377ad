"""The RFC 4496 services of ocp-services, through lmtpd."""

import email
import email.policy
import hashlib
import json
import os
import re
import tempfile
import shutil
import unittest

from lmtptest import Daemon, dotstuff, free_port, main, Services
from test_delivery import transaction

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

CONF = """
[service log]
module = logging
listen = inet:127.0.0.1:0
log = @DIR@/mail.jsonl

[service access]
module = access
listen = inet:127.0.0.1:0
map = @DIR@/access.map

[service block]
module = blocking
listen = inet:127.0.0.1:0
deny_senders = *@spammer.example
subject_keywords = viagra;casino
action = reject 550 5.7.1 Blocked by content policy

[service reroute]
module = reroute
listen = inet:127.0.0.1:0
map = @DIR@/directory.map

[service security]
module = security
listen = inet:127.0.0.1:0
block_extensions = exe;scr;vbs
actions = replace;tag [VIRUS]
notify_lmtp = @LMTP@
notify = postmaster@example.org

[service links]
module = links
listen = inet:127.0.0.1:0
store = @DIR@/store
url = https://files.example.org/att
max_size = 1048576
per_recipient = small@example.org 1000

[service norm]
module = normalize
listen = inet:127.0.0.1:0
max_address = 100

[service spam]
module = spam
listen = inet:127.0.0.1:0
backend = builtin
threshold = 5
actions = junk
policy = @DIR@/spam.policy
"""

FILES = {
    "access.map": "client 192.0.2.0/24 reject 554 5.7.1 Your network is not welcome\n"
                  "from *@denied.example reject 550 5.7.1 Sender refused by access policy\n"
                  "rcpt closed@example.org tempfail 450 4.7.1 Mailbox closed for now\n",
    "directory.map": "joe@example.org -> joe@fr.example.org\n",
    "spam.policy": "boss@example.org 5 reject 550 5.7.1 Spam refused\n",
}


def service(name, endpoint, stage="data"):
    return {"service %s.servers" % name: endpoint, "service %s.stage" % name: stage,
            "service %s.timeout" % name: "20s"}


class ServicesBase(unittest.TestCase):
    def setUp(self):
        self.d0 = Daemon()  # its LMTP socket takes the admin notices
        self.s = Services(CONF.replace("@LMTP@", "unix:" + self.d0.sock), FILES)
        extra = {}
        extra.update(service("access", self.s.endpoint("access"), "rcpt"))
        extra.update(service("block", self.s.endpoint("block")))
        extra.update(service("spam", self.s.endpoint("spam")))
        extra.update(service("log", self.s.endpoint("log")))
        extra.update(service("reroute", self.s.endpoint("reroute")))
        extra.update(service("security", self.s.endpoint("security")))
        extra.update(service("links", self.s.endpoint("links")))
        extra.update(service("norm", self.s.endpoint("norm")))
        extra.update({
            "rule dir.match": "joe@example.org", "rule dir.services": "reroute",
            "rule mime.match": "@mime.example", "rule mime.services": "security;links",
            "rule norm.match": "@norm.example", "rule norm.services": "norm",
            "rule boss.match": "boss@example.org", "rule boss.services": "access;block;spam;log",
            "rule all.match": "*", "rule all.services": "access;block;spam;log",
        })
        self.d = Daemon(extra=extra)
        # one daemon: the notices come back to it
        self.d0.cleanup()
        self.d.sock = self.d0.sock
        self.d.write_config(extra=dict(extra, **{"server.listen": "inet:127.0.0.1:0;unix:%s" % self.d0.sock,
                                                 "server.socket_mode": "0666"}))
        self.d.start()

    def tearDown(self):
        self.d.cleanup()
        self.s.stop()

    def session(self):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        return c


class RFC4496(ServicesBase):
    def test_spam_per_recipient_policy_in_one_transaction(self):
        body = b"Subject: offer\r\nFrom: s@example.net\r\n\r\n" + GTUBE + b"\r\n"
        r = transaction(self.session(), ["ann@example.org", "boss@example.org"], body)
        self.assertTrue(r[0].startswith("250"), r)
        self.assertRegex(r[1], r"^550 5\.7\.1 <boss@example\.org> Spam refused \(OPES ")
        (name, data), = self.d.messages("ann@example.org", folder=".Junk")
        self.assertIn(b"\nSubject: [SPAM] offer\n", data)
        self.assertRegex(data, rb"\nX-Spam-Score: 100\d\.\d\n")
        self.assertIn(b"\nX-Spam-Flag: YES\n", data)
        self.assertEqual(self.d.messages("boss@example.org"), [])
        # and clean mail is just scored
        r = transaction(self.session(), ["ann@example.org"],
                        b"Subject: hi\r\nFrom: s@example.net\r\nTo: ann@example.org\r\n\r\nhello\r\n")
        (name, data), = self.d.messages("ann@example.org")
        self.assertIn(b"X-Spam-Status: No, score=0.0", data)

    def test_logging_never_gets_the_body(self):
        transaction(self.session(), ["ann@example.org"], b"Subject: hi\r\nFrom: s@example.net\r\n\r\nsecret body\r\n")
        with open(self.s.path("mail.jsonl")) as f:
            lines = [json.loads(l) for l in f]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["to"], ["ann@example.org"])
        self.assertEqual(lines[0]["from"], "s@example.net")
        self.assertEqual(lines[0]["client"], "127.0.0.1")
        self.assertFalse(lines[0]["had_header"])
        self.assertFalse(lines[0]["had_body"])
        self.assertRegex(lines[0]["verdicts"], r"urn:x-opes-lmtpd:service:spam=\w+")

    def test_access_control_at_rcpt(self):
        c = self.session()
        self.assertTrue(c.cmd("MAIL FROM:<x@denied.example>").startswith("250"))
        self.assertRegex(c.cmd("RCPT TO:<ann@example.org>"), r"^550 5\.7\.1 <ann@example\.org> Sender refused")
        c.cmd("RSET")
        c.cmd("MAIL FROM:<x@fine.example>")
        self.assertRegex(c.cmd("RCPT TO:<closed@example.org>"), r"^450 4\.7\.1 ")
        self.assertTrue(c.cmd("RCPT TO:<ann@example.org>").startswith("250"))

    def test_blocking(self):
        c = self.session()
        r = transaction(c, ["ann@example.org"], b"Subject: Cheap CASINO chips\r\nFrom: s@example.net\r\n\r\nx\r\n")
        self.assertRegex(r[0], r"^550 5\.7\.1 <ann@example\.org> Blocked by content policy")
        r = transaction(c, ["ann@example.org"], b"Subject: hi\r\n\r\nx\r\n", sender="bad@spammer.example")
        self.assertRegex(r[0], r"^550 5\.7\.1 ")
        self.assertEqual(self.d.messages("ann@example.org"), [])

    def test_reroute_fixes_headers(self):
        r = transaction(self.session(), ["joe@example.org"],
                        b"To: Joe <joe@example.org>, ann@example.org\r\nSubject: hi\r\n\r\nx\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = self.d.messages("joe@fr.example.org")
        self.assertIn(b"X-Original-To: joe@example.org\n", data)
        self.assertRegex(data, rb"\nTo: Joe <joe@fr\.example\.org>, ann@example\.org\n")
        self.assertEqual(self.d.messages("joe@example.org"), [])


def multipart(parts):
    msg = email.message.EmailMessage(policy=email.policy.default)
    msg["Subject"] = "files"
    msg["From"] = "s@example.net"
    msg["To"] = "u@mime.example"
    msg.set_content("Hello, see the attachments.\n")
    for name, data, ctype in parts:
        main_t, sub_t = ctype.split("/")
        msg.add_attachment(data, maintype=main_t, subtype=sub_t, filename=name)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def parts_of(raw):
    m = email.message_from_bytes(raw, policy=email.policy.default)
    return [(p.get_filename(), p.get_content_type(), p.get_payload(decode=True), p.as_bytes())
            for p in m.walk() if not p.is_multipart()]


class Normalize(ServicesBase):
    def test_long_lines_reencoded_and_long_addresses_refused(self):
        line = b"a" * 1500
        raw = (b"Subject: long\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
               b"Content-Transfer-Encoding: 7bit\r\n\r\n" + line + b"\r\nshort line\r\n")
        r = transaction(self.session(), ["u@norm.example"], raw)
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = self.d.messages("u@norm.example")
        self.assertIn(b"Content-Transfer-Encoding: quoted-printable", data)
        self.assertTrue(all(len(l) <= 998 for l in data.split(b"\n")))
        m = email.message_from_bytes(data, policy=email.policy.default)
        self.assertEqual(m.get_payload(decode=True).replace(b"\r\n", b"\n"), line + b"\nshort line\n")
        r = transaction(self.session(), ["u@norm.example"], b"Subject: x\r\n\r\nx\r\n",
                        sender="a" * 120 + "@example.net")
        self.assertRegex(r[0], r"^553 5\.1\.7 ")


class MimeServices(ServicesBase):
    EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

    def test_eicar_replaced_other_parts_identical(self):
        raw = multipart([("report.pdf", bytes(range(256)) * 50, "application/pdf"),
                         ("eicar.com", self.EICAR, "application/octet-stream"),
                         ("notes.txt", b"plain notes\n" * 10, "text/plain")])
        r = transaction(self.session(), ["u@mime.example"], raw)
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = self.d.messages("u@mime.example")
        self.assertIn(b"\nSubject: [VIRUS] files\n", data)
        self.assertIn(b"X-Security-Filter: eicar.com: virus Eicar-Test-Signature found", data)
        got = parts_of(data.split(b"\n", 0)[0])
        want = parts_of(raw.replace(b"\r\n", b"\n"))
        self.assertEqual(len(got), len(want))
        for (gn, gt, gp, graw), (wn, wt, wp, wraw) in zip(got, want):
            if wn == "eicar.com":
                self.assertIn(b"was removed by the security filter", gp)
                self.assertNotIn(b"EICAR", graw)
            else:
                self.assertEqual(graw, wraw, wn)  # byte-identical
        # the admin got a notice through lmtpd
        notices = self.d.messages("postmaster@example.org")
        self.assertEqual(len(notices), 1)
        self.assertIn(b"eicar.com: virus Eicar-Test-Signature found", notices[0][1])

    def test_two_megabyte_message_through_a_file(self):
        # a body over 64 KB reaches the services through a file, not memory:
        # the same verdict and the same bytes as a small one
        blobs = [os.urandom(500 * 1024) for _ in range(3)]
        raw = multipart([("a.pdf", blobs[0], "application/pdf"),
                         ("eicar.com", self.EICAR, "application/octet-stream"),
                         ("b.pdf", blobs[1], "application/pdf"),
                         ("c.pdf", blobs[2], "application/pdf")])
        self.assertGreater(len(raw), 2 * 1024 * 1024)
        c = self.session()
        c.s.settimeout(60)
        r = transaction(c, ["u@mime.example"], raw)
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = self.d.messages("u@mime.example")
        self.assertIn(b"\nSubject: [VIRUS] files\n", data)
        got = parts_of(data)
        want = parts_of(raw.replace(b"\r\n", b"\n"))
        self.assertEqual(len(got), len(want))
        for (gn, gt, gp, graw), (wn, wt, wp, wraw) in zip(got, want):
            if wn == "eicar.com":
                self.assertNotIn(b"EICAR", graw)
            else:
                self.assertEqual(graw, wraw, wn)

    def test_small_clean_message_unchanged(self):
        # held in memory by the services: delivered byte for byte
        raw = multipart([("notes.txt", b"plain notes\n" * 10, "text/plain"),
                         ("report.pdf", bytes(range(256)) * 20, "application/pdf")])
        r = transaction(self.session(), ["u@mime.example"], raw)
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = self.d.messages("u@mime.example")
        self.assertTrue(data.endswith(raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]), data[-200:])
        self.assertEqual(parts_of(data), parts_of(raw.replace(b"\r\n", b"\n")))

    def test_blocked_extension(self):
        raw = multipart([("setup.exe", b"MZ\x90\x00" + b"x" * 100, "application/octet-stream")])
        transaction(self.session(), ["u@mime.example"], raw)
        (name, data), = self.d.messages("u@mime.example")
        self.assertIn(b"file name setup.exe is not allowed", data)

    def test_big_attachment_becomes_a_link(self):
        blob = os.urandom(5 * 1024 * 1024)
        raw = multipart([("big.bin", blob, "application/octet-stream"),
                         ("small.txt", b"small\n", "text/plain")])
        c = self.session()
        c.s.settimeout(60)
        r = transaction(c, ["u@mime.example"], raw)
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = self.d.messages("u@mime.example")
        digest = hashlib.sha256(blob).hexdigest()
        self.assertIn(("https://files.example.org/att/%s/big.bin" % digest).encode(), data)
        self.assertLess(len(data), 100000)
        with open(os.path.join(self.s.path("store"), digest, "big.bin"), "rb") as f:
            self.assertEqual(f.read(), blob)
        got = parts_of(data)
        self.assertEqual(got[-1][2], b"small\n")


def find(binary):
    for d in ("/usr/sbin", "/usr/bin"):
        if os.access(os.path.join(d, binary), os.X_OK):
            return os.path.join(d, binary)
    return None


class Smime(unittest.TestCase):
    """S/MIME with OpenSSL CMS: verify, decrypt, sign (RFC 4496 4.5)."""

    def ossl(self, *args, data=None):
        import subprocess
        return subprocess.run(["openssl"] + list(args), input=data, capture_output=True, check=True,
                              cwd=self.tmp).stdout

    def setUp(self):
        import tempfile
        self.tmp = tempfile.mkdtemp(prefix="smime-")
        os.chmod(self.tmp, 0o755)
        self.ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
                  "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign")
        for name in ("signer", "rcpt", "system"):
            self.ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s/emailAddress=%s@example.org" % (name, name),
                      "-keyout", name + ".key", "-out", name + ".csr")
            with open(os.path.join(self.tmp, "ext"), "w") as f:
                f.write("subjectAltName=email:%s@example.org\nkeyUsage=digitalSignature,keyEncipherment\n"
                        "extendedKeyUsage=emailProtection\n" % name)
            self.ossl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                      "-days", "2", "-out", name + ".pem", "-extfile", "ext")
        for f in os.listdir(self.tmp):
            os.chmod(os.path.join(self.tmp, f), 0o644)
        conf = ("[service sm]\nmodule = smime\nlisten = inet:127.0.0.1:0\nca_file = {t}/ca.pem\n"
                "bad_signature = tag [BAD SIGNATURE]\ndecrypt_cert = {t}/rcpt.pem\ndecrypt_key = {t}/rcpt.key\n"
                "sign_senders = boss@example.org\nsign_cert = {t}/system.pem\nsign_key = {t}/system.key\n"
                ).format(t=self.tmp)
        self.s = Services(conf)
        extra = service("sm", self.s.endpoint("sm"))
        extra.update({"rule all.match": "*", "rule all.services": "sm"})
        self.d = Daemon(extra=extra).start()

    def tearDown(self):
        import shutil
        self.d.cleanup()
        self.s.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def deliver(self, raw, sender="signer@example.org"):
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["ann@example.org"], raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
                        sender=sender)
        self.assertTrue(r[0].startswith("250"), r)
        msgs = sorted(self.d.messages("ann@example.org"))
        return msgs[-1][1]

    @staticmethod
    def unfold(data):
        return data.replace(b"\n ", b" ").replace(b"\n\t", b" ")

    def test_verify_good_and_bad_signatures(self):
        entity = b"Content-Type: text/plain\n\nsigned text\n"
        signed = self.ossl("cms", "-sign", "-signer", "signer.pem", "-inkey", "signer.key", "-binary",
                           data=entity.replace(b"\n", b"\r\n"))
        raw = b"Subject: signed\nFrom: signer@example.org\n" + signed
        data = self.unfold(self.deliver(raw))
        self.assertIn(b"X-SMIME-Status: valid signature; signer=/CN=signer", data)
        data = self.unfold(self.deliver(raw.replace(b"signed text", b"forged text")))
        self.assertIn(b"X-SMIME-Status: invalid signature", data)
        self.assertIn(b"Subject: [BAD SIGNATURE] signed", data)

    def test_decrypt(self):
        entity = b"Content-Type: text/plain\r\n\r\nthe secret\r\n"
        enc = self.ossl("cms", "-encrypt", "-aes256", "-binary", "rcpt.pem", data=entity)
        data = self.deliver(b"Subject: secret\nFrom: x@example.net\n" + enc)
        self.assertIn(b"X-SMIME-Status: decrypted", data)
        self.assertIn(b"\nthe secret\n", data)
        self.assertNotIn(b"pkcs7-mime", data)

    def test_sign_for_configured_sender(self):
        data = self.deliver(b"Subject: from the boss\nContent-Type: text/plain\n\nsign me\n", sender="boss@example.org")
        self.assertIn(b"multipart/signed", data)
        body = data.split(b"\n\n", 1)
        path = os.path.join(self.tmp, "delivered.eml")
        with open(path, "wb") as f:
            f.write(data)
        out = self.ossl("cms", "-verify", "-CAfile", "ca.pem", "-in", "delivered.eml")
        self.assertIn(b"sign me", out)


class RspamdProtocol(unittest.TestCase):
    """The rspamd bridge against a stand-in that answers /checkv2 as rspamd
    does (rspamd itself is not in the test dependencies)."""

    def test_checkv2(self):
        import http.server
        import threading
        seen = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen.update(path=self.path, rcpt=self.headers.get_all("Rcpt"), ip=self.headers["IP"],
                            frm=self.headers["From"], body=body)
                score = 20.5 if b"buy now" in body else 1.0
                answer = ('{"is_skipped":false,"score":%s,"required_score":15.0,"action":"add header"}'
                          % score).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        s = Services("[service rs]\nmodule = spam\nlisten = inet:127.0.0.1:0\nbackend = rspamd\n"
                     "rspamd = inet:127.0.0.1:%d\nthreshold = 15\nactions = junk\n" % httpd.server_port)
        extra = service("rs", s.endpoint("rs"))
        extra.update({"rule all.match": "*", "rule all.services": "rs"})
        d = Daemon(extra=extra).start()
        try:
            c = d.connect()
            c.reply()
            c.cmd("LHLO x")
            r = transaction(c, ["ann@example.org"], b"Subject: deal\r\nFrom: s@example.net\r\n\r\nbuy now\r\n")
            self.assertTrue(r[0].startswith("250"), r)
            self.assertEqual(seen["path"], "/checkv2")
            self.assertEqual(seen["rcpt"], ["ann@example.org"])
            self.assertEqual(seen["ip"], "127.0.0.1")
            self.assertEqual(seen["frm"], "s@example.net")
            self.assertIn(b"Subject: deal\n", seen["body"])
            (name, data), = d.messages("ann@example.org", folder=".Junk")
            self.assertIn(b"X-Spam-Status: Yes, score=20.5 required=15.0 tests=rspamd", data)
        finally:
            d.cleanup()
            s.stop()
            httpd.shutdown()


class RspamdOneScan(unittest.TestCase):
    """One scan, a verdict per recipient: three recipients with three
    policies in one transaction cost rspamd one request, and each gets its
    own verdict from the one score."""

    def test_one_request_three_verdicts(self):
        import http.server
        import threading
        posts = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                posts.append(self.headers.get_all("Rcpt"))
                answer = b'{"is_skipped":false,"score":20.5,"required_score":15.0,"action":"add header"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        tmp = tempfile.mkdtemp(prefix="spam-policy-")
        policy = os.path.join(tmp, "spam.policy")
        with open(policy, "w") as f:
            f.write("boss@example.org 15 reject 550 5.7.1 Spam is refused here\n"
                    "abuse@example.org 1000000 accept\n")
        s = Services("[service rs]\nmodule = spam\nlisten = inet:127.0.0.1:0\nbackend = rspamd\n"
                     "rspamd = inet:127.0.0.1:%d\nthreshold = 15\nactions = junk\npolicy = %s\n"
                     % (httpd.server_port, policy))
        extra = service("rs", s.endpoint("rs"))
        extra.update({"rule all.match": "*", "rule all.services": "rs"})
        d = Daemon(extra=extra).start()
        try:
            c = d.connect()
            c.reply()
            c.cmd("LHLO x")
            r = transaction(c, ["ann@example.org", "boss@example.org", "abuse@example.org"],
                            b"Subject: deal\r\nFrom: s@example.net\r\n\r\nbuy now\r\n")
            self.assertEqual(len(posts), 1, posts)
            self.assertTrue(r[0].startswith("250"), r)
            self.assertTrue(r[1].startswith("550 5.7.1"), r)
            self.assertTrue(r[2].startswith("250"), r)
            self.assertEqual(len(d.messages("ann@example.org", folder=".Junk")), 1)
            self.assertEqual(len(d.messages("abuse@example.org")), 1)
            self.assertEqual(d.messages("boss@example.org"), [])
        finally:
            d.cleanup()
            s.stop()
            httpd.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)


class RealFilters(unittest.TestCase):
    """SpamAssassin's spamd and ClamAV's clamd, started here from Debian's
    packages (clamd with a local EICAR signature, no download)."""

    @classmethod
    def setUpClass(cls):
        import subprocess
        import tempfile
        import time
        cls.tmp = tempfile.mkdtemp(prefix="filters-")
        os.chmod(cls.tmp, 0o755)
        cls.procs = []
        cls.spamd_port = None
        cls.clamd_sock = None
        if find("spamd"):
            cls.spamd_port = free_port()
            log = open(os.path.join(cls.tmp, "spamd.log"), "wb")
            user = ["-u", "nobody"] if os.geteuid() == 0 else []
            cls.procs.append(subprocess.Popen(
                [find("spamd"), "-x", "--listen=127.0.0.1:%d" % cls.spamd_port, "--max-children=2",
                 "--helper-home-dir=" + cls.tmp, "-s", "stderr"] + user, stdout=log, stderr=subprocess.STDOUT))
        if find("clamd"):
            db = os.path.join(cls.tmp, "db")
            os.makedirs(db)
            with open(os.path.join(db, "eicar.hdb"), "w") as f:
                f.write("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n")
            cls.clamd_sock = os.path.join(cls.tmp, "clamd.sock")
            conf = os.path.join(cls.tmp, "clamd.conf")
            with open(conf, "w") as f:
                f.write("Foreground yes\nLocalSocket %s\nDatabaseDirectory %s\nLogFile %s/clamd.log\n%s"
                        % (cls.clamd_sock, db, cls.tmp, "User root\n" if os.geteuid() == 0 else ""))
            cls.procs.append(subprocess.Popen([find("clamd"), "-c", conf], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
        deadline = time.time() + 60
        while time.time() < deadline:
            ok = True
            if cls.spamd_port:
                try:
                    import socket
                    socket.create_connection(("127.0.0.1", cls.spamd_port)).close()
                except OSError:
                    ok = False
            if cls.clamd_sock and not os.path.exists(cls.clamd_sock):
                ok = False
            if ok:
                break
            time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        import shutil
        for p in cls.procs:
            p.terminate()
            p.wait()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        conf = ""
        if self.spamd_port:
            conf += ("[service sa]\nmodule = spam\nlisten = inet:127.0.0.1:0\nbackend = spamd\n"
                     "spamd = inet:127.0.0.1:%d\nthreshold = 5\nactions = junk\npolicy = @DIR@/spam.policy\n"
                     % self.spamd_port)
        if self.clamd_sock:
            conf += ("[service av]\nmodule = security\nlisten = inet:127.0.0.1:0\nclamd = unix:%s\n"
                     "actions = replace\n" % self.clamd_sock)
        if not conf:
            self.skipTest("neither spamd nor clamd is installed (apt-get install spamd clamav-daemon)")
        self.s = Services(conf, {"spam.policy": "boss@example.org 5 reject 550 5.7.1 Spam refused\n"})
        extra = {}
        if self.spamd_port:
            extra.update(service("sa", self.s.endpoint("sa")))
            # one rule per policy class: recipients of a rule share one call
            extra.update({"rule boss.match": "boss@example.org", "rule boss.services": "sa",
                          "rule spam.match": "*@example.org", "rule spam.services": "sa"})
        if self.clamd_sock:
            extra.update(service("av", self.s.endpoint("av")))
            extra.update({"rule av.match": "@mime.example", "rule av.services": "av"})
        self.d = Daemon(extra=extra).start()

    def tearDown(self):
        self.d.cleanup()
        self.s.stop()

    def test_spamd_gtube(self):
        if not self.spamd_port:
            self.skipTest("spamd is not installed (apt-get install spamd)")
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["ann@example.org", "boss@example.org"],
                        b"Subject: offer\r\nFrom: s@example.net\r\n\r\n" + GTUBE + b"\r\n")
        self.assertTrue(r[0].startswith("250"), r)
        self.assertRegex(r[1], r"^550 5\.7\.1 <boss@example\.org> Spam refused")
        (name, data), = self.d.messages("ann@example.org", folder=".Junk")
        self.assertIn(b"\nSubject: [SPAM] offer\n", data)
        self.assertRegex(data, rb"X-Spam-Status: Yes, score=\d+\.\d required=5\.0 tests=spamd")

    def test_clamd_eicar(self):
        if not self.clamd_sock:
            self.skipTest("clamd is not installed (apt-get install clamav-daemon)")
        raw = multipart([("eicar.com", MimeServices.EICAR, "application/octet-stream"),
                         ("ok.txt", b"fine\n", "text/plain")])
        c = self.d.connect()
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["u@mime.example"], raw)
        self.assertTrue(r[0].startswith("250"), r)
        (name, data), = self.d.messages("u@mime.example")
        self.assertIn(b"virus Eicar-Test-Signature", data)
        self.assertNotIn(b"EICAR-STANDARD", data)
        self.assertEqual(parts_of(data)[-1][2], b"fine\n")


if __name__ == "__main__":
    main()
