"""A verdict per recipient (issue 14, section 1): one callout for a
transaction of several recipients, and each recipient gets its own
service's decision, in every order of the recipients.

The quick start's own configuration (conf/lmtpd.conf.example,
conf/services.conf.example and conf/services/spam.policy, with test ports
and the test's mail user) gets a GTUBE message for three recipients of
three spam policies:

- alice@example.org: the default policy, junk (tagged, into Junk);
- boss@example.org: reject 550;
- abuse@example.org: accept (threshold out of reach), untouched in INBOX;

in all six orders through lmtpd alone, and submitted in all six orders to
a private Postfix (which sorts a message's recipients before LMTP; see
ThroughPostfix).  Recipients whose stored bytes are the same share one file
(hard link), those that differ get their own.  Also: version negotiation
against an independent server (ocppeer), and bodies that differ per
recipient (links)."""

import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from lmtptest import LMTPD, MAIL_USER, SERVICES, TOP_SRCDIR, Client, Daemon, Services, main
import ocppeer
from test_delivery import transaction
from test_examples import free_port

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
RCPTS = ["alice@example.org", "boss@example.org", "abuse@example.org"]
ROOT = os.geteuid() == 0


def header_of(n, rcpts):
    return ("From: sender@example.net\nTo: %s\nSubject: cheap watches\nDate: Fri, 04 Dec 2026 04:00:00 +0000\n"
            "Message-ID: <order-%s@example.net>\n" % (", ".join(rcpts), n))


BODY = "Buy now.\n%s\n" % GTUBE


class QuickStart:
    """ocp-services and lmtpd on copies of the quick start's files."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="verdicts-")
        os.chmod(self.dir, 0o755)
        shutil.copytree(os.path.join(TOP_SRCDIR, "conf"), os.path.join(self.dir, "conf"))
        ports = {}
        for name in ("services.conf.example", "lmtpd.conf.example"):
            p = os.path.join(self.dir, "conf", name)
            with open(p) as f:
                text = f.read()
            text = text.replace("user = lmtpd", "user = %s" % MAIL_USER)
            text = text.replace("socket_mode = 0660", "socket_mode = 0666")  # Postfix's lmtp client
            text = re.sub(r"127\.0\.0\.1:(113\d\d|2424)\b",
                          lambda m: "127.0.0.1:%d" % ports.setdefault(m.group(1), free_port()), text)
            with open(p, "w") as f:
                f.write(text)
        self.port = ports["2424"]
        self.sock = os.path.join(self.dir, "var", "run", "lmtpd.sock")
        self.mail = os.path.join(self.dir, "var", "mail")
        self.procs = []
        self.start([SERVICES, "-c", "conf/services.conf.example", "-d"], "ocp-services: started")
        self.start([LMTPD, "-c", "conf/lmtpd.conf.example", "-d"], "started")

    def start(self, args, ready):
        log = open(os.path.join(self.dir, os.path.basename(args[0]) + ".log"), "wb")
        p = subprocess.Popen(args, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        deadline = time.time() + 30
        while time.time() < deadline:
            text = self.log(args[0])
            if ready in text:
                return
            if p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("%s did not start: %s" % (args[0], self.log(args[0])))

    def log(self, prog):
        with open(os.path.join(self.dir, os.path.basename(prog) + ".log"), errors="replace") as f:
            return f.read()

    def files(self, address, folder=None):
        local, domain = address.split("@")
        d = os.path.join(self.mail, domain, local, "Maildir", *([folder] if folder else []), "new")
        return sorted(os.path.join(d, n) for n in os.listdir(d)) if os.path.isdir(d) else []

    def everything(self, address):
        """Every file in @address's Maildir, any folder."""
        local, domain = address.split("@")
        out = []
        for root, dirs, names in os.walk(os.path.join(self.mail, domain, local)):
            out += [os.path.join(root, n) for n in names if os.path.basename(root) in ("new", "cur")]
        return out

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Expect(unittest.TestCase):
    """What each policy stores: the header as sent with the spam service's
    edits (every other byte as received), then the body untouched."""

    def stored(self, path, header, spam):
        with open(path, "rb") as f:
            data = f.read()
        if spam:
            header = header.replace("Subject: cheap watches", "Subject: [SPAM] cheap watches")
            edits = ("X-Spam-Score: 1000.0\nX-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE\n"
                     "X-Spam-Flag: YES\n")
        else:
            edits = "X-Spam-Score: 1000.0\nX-Spam-Status: No, score=1000.0 required=1000000.0 tests=GTUBE\n"
        tail = (header + edits + "\n" + BODY).encode()
        self.assertTrue(data.endswith(tail), "%s:\n%r\nwant it to end with\n%r" % (path, data, tail))
        self.assertIn(b"\nOPES-Via: ", data)
        return data

    def check_order(self, qs, n, order, replies, before):
        by_rcpt = dict(zip(order, replies))
        self.assertEqual(by_rcpt["boss@example.org"][:3], "550", (order, replies))
        self.assertRegex(by_rcpt["alice@example.org"], r"^250 2\.0\.0 <alice@example\.org> ")
        self.assertRegex(by_rcpt["abuse@example.org"], r"^250 2\.0\.0 <abuse@example\.org> ")
        self.assertRegex(by_rcpt["boss@example.org"],
                         r"^550 5\.7\.1 <boss@example\.org> Spam is refused here \(OPES .* via "
                         r"urn:x-opes-lmtpd:service:spam\)$")
        new = {a: sorted(set(qs.everything(a)) - before[a]) for a in RCPTS}
        self.assertEqual(new["boss@example.org"], [], "boss stored nothing")
        alice, = new["alice@example.org"]
        abuse, = new["abuse@example.org"]
        self.assertIn("/Maildir/.Junk/new/", alice)
        self.assertRegex(abuse, r"/abuse/Maildir/new/")
        header = header_of(n, order)
        a = self.stored(alice, header, True)
        b = self.stored(abuse, header, False)
        self.assertNotEqual(a, b)
        self.assertNotEqual(os.stat(alice).st_ino, os.stat(abuse).st_ino)


class LmtpdAlone(Expect):
    def setUp(self):
        self.qs = QuickStart()

    def tearDown(self):
        self.qs.stop()

    def send(self, rcpts, n):
        d = Daemon.__new__(Daemon)
        d.port = self.qs.port
        c = Client(d, timeout=60)
        c.reply()
        c.cmd("LHLO x")
        msg = (header_of(n, rcpts) + "\n" + BODY).replace("\n", "\r\n").encode()
        r = transaction(c, rcpts, msg, sender="sender@example.net")
        c.close()
        return r

    def test_three_policies_in_every_order(self):
        for n, order in enumerate(itertools.permutations(RCPTS)):
            before = {a: set(self.qs.everything(a)) for a in RCPTS}
            replies = self.send(list(order), n)
            self.assertEqual(len(replies), 3, (order, replies))
            self.check_order(self.qs, n, list(order), replies, before)
        # one call per transaction, not one per recipient
        self.assertEqual(len(re.findall(r"ocp-services: spam: \w+ for ", self.qs.log(SERVICES))), 6,
                         self.qs.log(SERVICES))

    def test_same_bytes_share_one_file(self):
        # ann has alice's (default) policy: one file, two links; abuse its own
        rcpts = ["ann@example.org", "boss@example.org", "alice@example.org", "abuse@example.org"]
        replies = self.send(rcpts, "shared")
        self.assertEqual([r[:3] for r in replies], ["250", "550", "250", "250"], replies)
        ann, = self.qs.files("ann@example.org", ".Junk")
        alice, = self.qs.files("alice@example.org", ".Junk")
        abuse, = self.qs.files("abuse@example.org")
        header = header_of("shared", rcpts)
        self.assertEqual(self.stored(ann, header, True), self.stored(alice, header, True))
        self.assertEqual(os.stat(ann).st_ino, os.stat(alice).st_ino)
        self.assertNotEqual(os.stat(abuse).st_ino, os.stat(alice).st_ino)
        self.stored(abuse, header, False)


PROFILE_2 = b"urn:x-opes-lmtpd:ocp:lmtp:2"


def sections(env, header, body):
    """An independent server's answer: a verdict for alice and one for boss,
    the call's own (with a common adapted header) for everyone else."""
    assert [r for r in env["Rcpt-To"]] == [b"alice@example.org", b"boss@example.org", b"carol@example.org"]
    named = {"Verdict": b"accept",
             "Recipient-Verdicts": [
                 ocppeer.Struct([b"alice@example.org"], {"Verdict": b"quarantine", "Folder": b"Junk",
                                                         "Flags": [b"Seen"],
                                                         "Header": b"X-Own: alice\n" + header}),
                 ocppeer.Struct([b"boss@example.org"], {"Verdict": b"reject",
                                                        "Reply": ocppeer.Struct([b"550", b"5.7.1 not for boss"])})]}
    return named, b"X-Common: yes\n" + header


class Negotiation(unittest.TestCase):
    """lmtpd against a server written from the profile alone (ocppeer):
    version 2 when the server speaks it, version 1 (one verdict for all, as
    before) when it does not."""

    def run_peer(self, profiles):
        peer = ocppeer.Server(sections, profiles=profiles)
        d = Daemon(extra={"service peer.servers": "inet:127.0.0.1:%d" % peer.port, "service peer.timeout": "30s",
                          "service peer.on_failure": "tempfail", "rule all.match": "*",
                          "rule all.services": "peer"}).start()
        self.addCleanup(peer.close)
        self.addCleanup(d.cleanup)
        c = d.connect(timeout=60)
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["alice@example.org", "boss@example.org", "carol@example.org"],
                        b"From: s@example.net\r\nSubject: hi\r\n\r\nbody line\r\n")
        self.assertEqual(peer.errors, [])
        self.assertEqual(peer.transactions, 1)
        self.assertEqual(peer.offered, [[PROFILE_2, ocppeer.PROFILE]])
        return d, r

    def test_version_2_a_verdict_each(self):
        d, r = self.run_peer((PROFILE_2, ocppeer.PROFILE))
        self.assertRegex(r[0], r"^250 2\.0\.0 <alice@example\.org> ")
        self.assertRegex(r[1], r"^550 5\.7\.1 <boss@example\.org> not for boss \(OPES ")
        self.assertRegex(r[2], r"^250 2\.0\.0 <carol@example\.org> ")
        (name, alice), = d.messages("alice@example.org", sub="cur", folder=".Junk")
        self.assertTrue(name.endswith(":2,S"), name)
        self.assertTrue(alice.endswith(b"verdict=quarantine\nX-Own: alice\nFrom: s@example.net\nSubject: hi\n"
                                       b"\nbody line\n"), alice)
        self.assertEqual(d.messages("alice@example.org"), [])
        self.assertEqual(d.messages("boss@example.org"), [])
        (_, carol), = d.messages("carol@example.org")
        self.assertTrue(carol.endswith(b"verdict=modify\nX-Common: yes\nFrom: s@example.net\nSubject: hi\n"
                                       b"\nbody line\n"), carol)

    def test_version_1_server_one_verdict_for_all(self):
        # it sends sections anyway: not negotiated, so not honoured
        d, r = self.run_peer((ocppeer.PROFILE,))
        self.assertEqual([x[:3] for x in r], ["250", "250", "250"], r)
        for a in ("alice@example.org", "boss@example.org", "carol@example.org"):
            (_, data), = d.messages(a)
            self.assertTrue(data.endswith(b"verdict=modify\nX-Common: yes\nFrom: s@example.net\nSubject: hi\n"
                                          b"\nbody line\n"), data)


LINKS_CONF = """[service links]
module = links
listen = inet:127.0.0.1:0
store = @DIR@/store
url = http://files.test/a
max_size = 100000
per_recipient = *@lists.example.org 1000
"""

ATTACHED = ("From: s@example.net\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            "--b\r\nContent-Type: application/octet-stream\r\n"
            "Content-Disposition: attachment; filename=data.bin\r\n\r\n"
            + ("x" * 70 + "\r\n") * 70 + "--b--\r\n")


class BodiesThatDiffer(unittest.TestCase):
    """links: the list's 1000-byte limit moves the 5 KB attachment out, the
    default 100 KB one does not.  The adapted body is one per call, so the
    recipient whose body is not the first one's is deferred (451) and gets
    its own body when delivered alone: nobody gets the other's content."""

    def setUp(self):
        self.sv = Services(LINKS_CONF)
        self.d = Daemon(extra={"service links.servers": self.sv.endpoint("links"), "service links.timeout": "30s",
                               "service links.on_failure": "tempfail", "rule all.match": "*",
                               "rule all.services": "links"}).start()

    def tearDown(self):
        self.d.cleanup()
        self.sv.stop()

    def send(self, rcpts):
        c = self.d.connect(timeout=60)
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, rcpts, ATTACHED.encode())
        c.close()
        return r

    def check(self, address, moved):
        (_, data), = self.d.messages(address)
        self.assertEqual(b"http://files.test/a/" in data, moved, data[:2000])
        self.assertEqual(b"x" * 70 in data, not moved)

    def test_each_gets_its_own_body(self):
        for first, second in (("ann@example.org", "x@lists.example.org"), ("y@lists.example.org", "bob@example.org")):
            r = self.send([first, second])
            self.assertRegex(r[0], r"^250 ")
            self.assertRegex(r[1], r"^451 4\.3\.0 <%s> Content adapted differently" % re.escape(second))
            self.assertEqual(self.d.messages(second), [])
            self.check(first, "lists" in first)
            r = self.send([second])
            self.assertRegex(r[0], r"^250 ")
            self.check(second, "lists" in second)


MAPS_CONF = """[service blocking]
module = blocking
listen = inet:127.0.0.1:0
deny_recipients = denied@example.org
action = reject 550 5.7.1 Blocked by content policy

[service reroute]
module = reroute
listen = inet:127.0.0.1:0
map = @DIR@/directory.map

[service access]
module = access
listen = inet:127.0.0.1:0
map = @DIR@/access.map
"""


class MapsPerRecipient(unittest.TestCase):
    """blocking, reroute and access at the data stage, one call each for
    four recipients: each map's entry applies to its recipient alone (a
    denied recipient used to get the whole transaction refused, and only the
    first recipient was looked up in the directory)."""

    def test_each_recipient_its_own_entry(self):
        sv = Services(MAPS_CONF, files={"directory.map": "joe@example.org -> joe@fr.example.org\n",
                                        "access.map": "rcpt closed@example.org tempfail 450 4.7.1 Closed\n"})
        self.addCleanup(sv.stop)
        extra = {"rule all.match": "*", "rule all.services": "blocking;reroute;access"}
        for name in ("blocking", "reroute", "access"):
            extra["service %s.servers" % name] = sv.endpoint(name)
            extra["service %s.timeout" % name] = "30s"
        d = Daemon(extra=extra).start()
        self.addCleanup(d.cleanup)
        c = d.connect(timeout=60)
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["ann@example.org", "joe@example.org", "denied@example.org", "closed@example.org"],
                        b"From: s@example.net\r\nTo: ann@example.org, joe@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
        self.assertRegex(r[0], r"^250 2\.0\.0 <ann@example\.org> ")
        self.assertRegex(r[1], r"^250 2\.0\.0 <joe@example\.org> ")
        self.assertRegex(r[2], r"^550 5\.7\.1 <denied@example\.org> Blocked by content policy ")
        self.assertRegex(r[3], r"^450 4\.7\.1 <closed@example\.org> Closed ")
        (_, ann), = d.messages("ann@example.org")
        (_, joe), = d.messages("joe@fr.example.org")
        self.assertEqual(d.messages("joe@example.org"), [])
        self.assertEqual(d.messages("denied@example.org") + d.messages("closed@example.org"), [])
        self.assertIn(b"urn:x-opes-lmtpd:service:reroute ; verdict=redirect", joe)
        self.assertIn(b"\nTo: ann@example.org, joe@fr.example.org\n", joe)
        self.assertIn(b"urn:x-opes-lmtpd:service:reroute ; verdict=accept", ann)
        self.assertIn(b"\nTo: ann@example.org, joe@example.org\n", ann)


@unittest.skipUnless(ROOT and shutil.which("postfix") and shutil.which("swaks"),
                     "a private Postfix needs root, postfix and swaks")
class ThroughPostfix(Expect):
    def setUp(self):
        from test_postfix import Postfix
        self.qs = QuickStart()
        self.pf = Postfix(self.qs.sock, self.qs.port)

    def tearDown(self):
        self.pf.stop()
        self.qs.stop()

    def wait_for(self, what, cond, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.2)
        self.fail("%s; postfix log:\n%s\nlmtpd log:\n%s" % (what, self.pf.maillog()[-4000:],
                                                           self.qs.log(LMTPD)[-4000:]))

    def test_three_policies_in_every_order(self):
        # Postfix's queue manager sorts a message's recipients by address,
        # so the six submission orders reach lmtpd in one order.  The junk
        # recipient's name moves it: aaron (before abuse), alice (between),
        # zoe (after boss) make the three orders that sorting leaves; boss
        # before abuse cannot come through Postfix (LmtpdAlone has it).
        junk = ["aaron@example.org", "alice@example.org", "zoe@example.org"]
        orders = []
        for n, order in enumerate(itertools.permutations(RCPTS)):
            order = [junk[n % 3] if a == "alice@example.org" else a for a in order]
            orders.append(order)
            msg = header_of(n, order) + "\n" + BODY
            r = subprocess.run([shutil.which("swaks"), "--server", "127.0.0.1:%d" % self.pf.port,
                                "--helo", "client.example", "--from", "sender@example.net",
                                "--to", ",".join(order), "--data", "-"],
                               input=msg.rstrip("\n").replace("\n", "\r\n"), capture_output=True, text=True,
                               timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        junk_files = lambda: sum((self.qs.files(a, ".Junk") for a in junk), [])
        self.wait_for("six deliveries and six bounces",
                      lambda: len(junk_files()) == 6 and len(self.qs.files("abuse@example.org")) == 6
                      and len(re.findall(r"to=<boss@example\.org>.*status=bounced", self.pf.maillog())) == 6)
        log = self.pf.maillog()
        for line in re.findall(r"to=<boss@example\.org>.*status=bounced.*", log):
            self.assertIn("550 5.7.1 <boss@example.org> Spam is refused here", line)
        self.assertEqual(len(re.findall(r"to=<(aaron|alice|zoe|abuse)@example\.org>.*status=sent", log)), 12, log)
        self.assertEqual(self.qs.everything("boss@example.org"), [])
        for a in junk:
            self.assertEqual(self.qs.files(a), [], "junk is not in %s's INBOX" % a)
        # the orders lmtpd got, as its call to the spam service listed them
        # (the bounces to the sender are calls of their own)
        seen = set(re.findall(r"ocp-services: spam: \w+ for (.+, .+)", self.qs.log(SERVICES)))
        self.assertEqual(seen, {"aaron@example.org, abuse@example.org, boss@example.org",
                                "abuse@example.org, alice@example.org, boss@example.org",
                                "abuse@example.org, boss@example.org, zoe@example.org"})
        texts = {}
        for path in junk_files() + self.qs.files("abuse@example.org"):
            with open(path, "rb") as f:
                data = f.read()
            n = int(re.search(rb"Message-ID: <order-(\d+)@", data).group(1))
            texts.setdefault(n, []).append(path)
        self.assertEqual(sorted(texts), list(range(6)))
        for n, paths in texts.items():
            abuse, = [p for p in paths if "/abuse/" in p]
            spam, = [p for p in paths if p != abuse]
            self.assertIn("/%s/Maildir/.Junk/new/" % junk[n % 3].split("@")[0], spam)
            # Postfix adds its own Received and Return-Path above the header as sent
            self.stored(spam, header_of(n, orders[n]), True)
            self.stored(abuse, header_of(n, orders[n]), False)

if __name__ == "__main__":
    main()
