"""Around Sieve (issue 17): `sieve-lite test` with simulated callout
results and --trace; the envelope sender of redirects, SRS and loops; a
failed script counted in the metrics."""

import base64
import hashlib
import hmac
import os
import subprocess
import tempfile
import time
import unittest

from lmtptest import Daemon, main, metrics_text, own
from test_sieve import SmtpReceiver, session, transaction

LMTPD = os.environ.get("LMTPD", os.path.join(os.path.dirname(__file__), "..", "..", "lmtpd", "lmtpd"))
SIEVE_LITE = os.environ.get("SIEVE_LITE") or os.path.join(os.path.dirname(LMTPD), "..", "sieve-lite", "sieve-lite")

MSG = "From: alice@example.com\nTo: bob@example.org\nSubject: weekly report\n\nThe numbers.\n"

SCRIPT = """require ["fileinto", "spamtest", "spamtestplus", "relational", "comparator-i;ascii-numeric",
         "virustest", "vnd.opes-lmtpd.callout"];
if virustest :value "eq" :comparator "i;ascii-numeric" "5" { discard; stop; }
if spamtest :percent :value "ge" :comparator "i;ascii-numeric" "80" { fileinto "Junk"; stop; }
if callout :verdict "av" "reject" { fileinto "Quarantine"; stop; }
if callout :labels "spam" "ham" { fileinto "Clean"; }
"""


class SieveLiteTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.script = os.path.join(self.dir.name, "s.sieve")
        self.msg = os.path.join(self.dir.name, "m.eml")
        with open(self.script, "w") as f:
            f.write(SCRIPT)
        with open(self.msg, "w") as f:
            f.write(MSG)

    def tearDown(self):
        self.dir.cleanup()

    def run_lite(self, *args, script=None):
        if script is not None:
            with open(self.script, "w") as f:
                f.write(script)
        return subprocess.run([SIEVE_LITE, "test", self.script, self.msg, "--from", "alice@example.com",
                               "--to", "bob@example.org"] + list(args), capture_output=True, text=True)

    def test_no_callouts(self):
        """Without --callout nothing was tested: no rule on a result fires."""
        r = self.run_lite()
        self.assertEqual((r.returncode, r.stdout), (0, "keep\n"), r.stderr)

    def test_spam_score(self):
        """A bare number is the score; with the default threshold 5,
        8.5 is spamtest 9 and spamtestplus 85 %, as lmtpd maps it."""
        self.assertEqual(self.run_lite("--callout", "spam=8.5").stdout, 'fileinto "Junk"\n')
        self.assertEqual(self.run_lite("--callout", "spam=7.5").stdout, "keep\n")
        self.assertEqual(self.run_lite("--callout", "spam=accept,score=7.5,threshold=4.5").stdout,
                         'fileinto "Junk"\n')

    def test_verdict_and_labels(self):
        r = self.run_lite("--callout", "av=reject")
        self.assertEqual(r.stdout, 'fileinto "Quarantine"\n')
        # labels: the items after labels= without '=' are more labels
        r = self.run_lite("--callout", "spam=accept,score=1,labels=checked,ham")
        self.assertEqual(r.stdout, 'fileinto "Clean"\n')
        r = self.run_lite("--callout", "av=accept,labels=virus-scanned,virus", "--callout", "spam=2")
        self.assertEqual(r.stdout, "discard\n")

    def test_bad_callout(self):
        for bad in ["spam", "=1", "spam=", "av=rejct", "spam=accept,score=x", "spam=1,colour=red",
                    "spam=1,accept"]:
            r = self.run_lite("--callout", bad)
            self.assertEqual(r.returncode, 64, bad)
            self.assertIn("--callout", r.stderr)

    def test_help(self):
        r = subprocess.run([SIEVE_LITE, "--help"], capture_output=True, text=True)
        self.assertIn("--callout NAME=SPEC", r.stdout)
        self.assertIn("--trace", r.stdout)

    def test_trace(self):
        """Why did a rule not fire: every command and test with its line."""
        r = self.run_lite("--trace", "--callout", "spam=accept,score=3,labels=ham")
        self.assertEqual(r.stdout.splitlines(), [
            '1: require ["fileinto", "spamtest", "spamtestplus", "relational", '
            '"comparator-i;ascii-numeric", "virustest", "vnd.opes-lmtpd.callout"]',
            '3: if virustest :value "eq" :comparator "i;ascii-numeric" "5" -> false',
            '4: if spamtest :percent :value "ge" :comparator "i;ascii-numeric" "80" -> false',
            '5: if callout :verdict "av" "reject" -> false',
            '6: if callout :labels "spam" "ham" -> true',
            '6:   fileinto "Clean"',
            'fileinto "Clean"'])

    def test_replace_part_shown(self):
        """RFC 5703 5: replace inside foreverypart names the part it hit
        (its index, 0 the whole message); each store says how many
        changes came before it."""
        with open(self.msg, "w") as f:
            f.write("From: a@example.com\nSubject: s\nMIME-Version: 1.0\n"
                    "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n"
                    "--b\nContent-Type: application/octet-stream; name=x.exe\n\nAAAA\n--b--\n")
        r = self.run_lite(script='require ["foreverypart", "mime", "replace", "fileinto", "body"];\n'
                          'foreverypart { if header :mime :param "name" :matches "content-type" "*.exe" '
                          '{ replace "removed"; } }\nif body :text :is "hiremoved" { fileinto "Clean"; }\n'
                          'replace "all";\nkeep;\n')
        self.assertEqual(r.stdout, 'fileinto "Clean"\n  message changes: 1\nkeep\n  message changes: 2\n'
                         'replace after 0 header edits (part 2)\nreplace after 0 header edits\n', r.stderr)

    def test_trace_error(self):
        """The trace ends at the command that failed, then the error."""
        script = 'require "variables";\nset "a" "' + "x" * 3000 + '";\nset "b" "${a}${a}";\nkeep;\n'
        r = self.run_lite("--trace", script=script)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[1].startswith('2: set "a" "xxx'), lines)
        self.assertEqual(lines[2], '3: set "b" "${a}${a}"')
        self.assertTrue(lines[3].startswith("error: a variable would be longer"), lines)


LMTP_MSG = ("From: Sender <s@example.net>\r\nTo: alice@example.org\r\nSubject: Project status\r\n"
            "Message-ID: <m1@example.net>\r\n\r\nThe weekly report.\r\n")


class DeliveryBase(unittest.TestCase):
    extra = {}

    def setUp(self):
        self.smtp = SmtpReceiver()
        conf = {"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port, "server.metrics_listen": "inet:127.0.0.1:0"}
        conf.update(self.extra)
        self.d = Daemon(conf)

    def tearDown(self):
        self.d.cleanup()
        self.smtp.close()

    def script(self, address, text, name=".dovecot.sieve"):
        return self.d.user_file(address, name, text)


class ScriptErrorsTest(DeliveryBase):
    def test_errors_logged_and_counted(self):
        """A script that does not compile: FILE:LINE:COL: message in the
        user's log, the message kept; a runtime error likewise; each one
        counted in lmtpd_sieve_errors_total by kind."""
        broken = self.script("alice@example.org", 'require "fileinto";\nif header :is "subject" { fileinto "X"; }\n')
        self.script("bob@example.org", 'require "variables";\nset "a" "%s";\nset "b" "${a}${a}";\n' % ("x" * 3000))
        self.d.start()
        c = session(self.d)
        before = metrics_text(self.d)
        self.assertIn('lmtpd_sieve_errors_total{kind="compile"} 0', before)
        self.assertIn('lmtpd_sieve_errors_total{kind="runtime"} 0', before)
        codes = [r[0] for r in transaction(c, ["alice@example.org", "bob@example.org"], LMTP_MSG)]
        self.assertEqual(codes, [250, 250])
        again = LMTP_MSG.replace("<m1@", "<m2@")  # not a duplicate
        self.assertEqual(transaction(c, ["alice@example.org"], again)[0][0], 250)
        self.assertEqual(len(self.d.messages("alice@example.org")), 2)
        self.assertEqual(len(self.d.messages("bob@example.org")), 1)
        with open(broken + ".log") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2, lines)
        # "STAMP: FILE:2:4: header: ...; message kept in INBOX", the file named once
        self.assertRegex(lines[0], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d: \S*example\.org/alice/\.dovecot\.sieve:2:4: "
                         r"header: wrong number of arguments; message kept in INBOX$")
        self.assertEqual(lines[0].count(".dovecot.sieve"), 1, lines[0])
        after = metrics_text(self.d)
        self.assertIn('lmtpd_sieve_errors_total{kind="compile"} 2', after)
        self.assertIn('lmtpd_sieve_errors_total{kind="runtime"} 1', after)
        self.assertIn("# TYPE lmtpd_sieve_errors_total counter", after)


def srs0(secret, sender, domain, now=None):
    """postsrsd's SRS0 address for @sender, written from its recipe: the
    day mod 1024 in base32, HMAC-SHA1 over stamp + domain + local
    lowercased, the first four base64 characters."""
    b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    day = int(now if now is not None else time.time()) // 86400
    stamp = b32[(day >> 5) & 31] + b32[day & 31]
    local, host = sender.rsplit("@", 1)
    mac = hmac.new(secret.encode(), (stamp + host + local).lower().encode(), hashlib.sha1).digest()
    return "SRS0=%s=%s=%s=%s@%s" % (base64.b64encode(mac).decode()[:4], stamp, host, local, domain)


class RedirectSenderTest(DeliveryBase):
    """[sieve] redirect_sender: the MAIL FROM the SMTP sink gets."""

    def redirect_from(self, how, sender, n, extra=None):
        conf = {"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port, "sieve.redirect_sender": how}
        conf.update(extra or {})
        self.d.write_config(conf)
        self.d.start()
        try:
            c = session(self.d)
            msg = LMTP_MSG.replace("<m1@", "<%s-%d@" % (how.strip("<>") or "null", n))
            self.assertEqual(transaction(c, ["Alice@example.org"], msg, sender=sender)[0][0], 250)
            got = self.smtp.wait(n)
            self.assertEqual(len(got), n, self.d.read_log())
            return got[-1]
        finally:
            self.d.stop()

    def test_redirect_senders(self):
        self.script("alice@example.org", 'redirect "elsewhere@example.com";\n')
        cases = [("sender", "s@example.net"), ("recipient", "alice@example.org"),
                 ("user_email", "alice@example.org"), ("orig_recipient", "Alice@example.org"),
                 ("postmaster", "postmaster@example.org"), ("<>", ""),
                 ("<forwarder@example.org>", "forwarder@example.org")]
        for n, (how, want) in enumerate(cases, 1):
            sender, rcpts, data = self.redirect_from(how, "s@example.net", n)
            self.assertEqual((how, sender, rcpts), (how, want, ["elsewhere@example.com"]))
            self.assertIn(b"X-Sieve-Redirected-From: alice@example.org\r\n", data)
        # RFC 5228 4.2: the null sender stays null
        sender, _, _ = self.redirect_from("recipient", "", len(cases) + 1)
        self.assertEqual(sender, "")

    def srs_conf(self):
        secret = os.path.join(self.d.dir, "srs.secret")
        with open(secret, "w") as f:
            f.write("tops3cr3t\nolder-secret\n")
        own(secret)
        return {"sieve.srs_domain": "fwd.example.org", "sieve.srs_secret_file": "srs.secret"}

    def test_srs(self):
        """SRS0 for a plain sender, as postsrsd would write it (and
        reverse it: the test computes it with Python's hmac); SRS1 for
        another forwarder's SRS0; the null sender stays null."""
        self.script("alice@example.org", 'redirect "elsewhere@example.com";\n')
        conf = self.srs_conf()
        sender, _, data = self.redirect_from("srs", "Orig.Sender@Example.NET", 1, conf)
        self.assertEqual(sender, srs0("tops3cr3t", "Orig.Sender@Example.NET", "fwd.example.org"))
        self.assertIn(b"The weekly report.", data)
        other = "SRS0=abcd=XY=orig.example=bob@other.example"
        sender, _, _ = self.redirect_from("srs", other, 2, conf)
        mac = hmac.new(b"tops3cr3t", b"other.example=abcd=xy=orig.example=bob", hashlib.sha1).digest()
        self.assertEqual(sender, "SRS1=%s=other.example==abcd=XY=orig.example=bob@fwd.example.org"
                         % base64.b64encode(mac).decode()[:4])
        sender, _, _ = self.redirect_from("srs", "", 3, conf)
        self.assertEqual(sender, "")

    def test_srs_without_secret_keeps(self):
        self.script("alice@example.org", 'redirect "elsewhere@example.com";\n')
        conf = self.srs_conf()
        self.d.write_config({"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port, "sieve.redirect_sender": "srs",
                             **conf})
        self.d.start()
        os.unlink(os.path.join(self.d.dir, "srs.secret"))
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], LMTP_MSG)[0][0], 250)
        self.assertEqual(len(self.d.messages("alice@example.org")), 1)
        time.sleep(0.2)
        self.assertEqual(self.smtp.received, [])
        self.assertIn("kept instead", self.d.read_log())


class LoopTest(DeliveryBase):
    """Loops stopped as Pigeonhole stops them, and X-Loop / Delivered-To."""

    def deliver(self, msgs, sender="s@example.net"):
        self.d.start()
        c = session(self.d)
        for m in msgs:
            self.assertEqual(transaction(c, ["alice@example.org"], m, sender=sender)[0][0], 250)

    def test_been_here_not_redirected(self):
        self.script("alice@example.org", 'redirect "elsewhere@example.com";\n')
        self.deliver(["X-Loop: alice@example.org\r\n" + LMTP_MSG,
                      "Delivered-To: Alice@Example.org\r\n" + LMTP_MSG.replace("<m1@", "<m2@"),
                      "X-Loop: someone-else@example.org\r\n" + LMTP_MSG.replace("<m1@", "<m3@")])
        got = self.smtp.wait(1)
        time.sleep(0.2)
        self.assertEqual(len(self.smtp.received), 1, self.d.read_log())
        self.assertIn(b"<m3@example.net>", got[0][2])
        self.assertEqual(len(self.d.messages("alice@example.org")), 2)
        self.assertEqual(self.d.read_log().count("would loop"), 2)

    def test_duplicate_redirect(self):
        """Pigeonhole's duplicate check: the same Message-ID redirected by
        this recipient to this target goes once, though the bytes differ
        (another Received, so the delivery journal does not catch it); a
        resent message (another Resent-Message-ID) goes again."""
        self.script("alice@example.org", 'redirect "elsewhere@example.com";\n')
        self.deliver([LMTP_MSG, "Received: from another.example\r\n" + LMTP_MSG,
                      "Resent-Message-ID: <r1@example.net>\r\n" + LMTP_MSG])
        got = self.smtp.wait(2)
        time.sleep(0.2)
        self.assertEqual(len(self.smtp.received), 2, self.d.read_log())
        self.assertIn(b"Resent-Message-ID: <r1@example.net>", got[1][2])
        self.assertEqual(len(self.d.messages("alice@example.org")), 1)  # the second kept instead
        self.assertIn("redirected to <elsewhere@example.com> before", self.d.read_log())

    def test_vacation_not_to_what_was_here(self):
        self.script("alice@example.org", 'require "vacation";\nvacation "Away.";\n')
        self.deliver(["X-Loop: alice@example.org\r\n" + LMTP_MSG,
                      "Delivered-To: alice@example.org\r\n" + LMTP_MSG.replace("<m1@", "<m2@")])
        time.sleep(0.3)
        self.assertEqual(self.smtp.received, [])
        self.assertEqual(self.d.read_log().count("was here before"), 2, self.d.read_log())
        # and to one that was not: answered
        c = session(self.d)
        transaction(c, ["alice@example.org"], LMTP_MSG.replace("<m1@", "<m3@"))
        self.assertEqual(len(self.smtp.wait(1)), 1)


if __name__ == "__main__":
    main()
