"""Around Sieve (issue 17): `sieve-lite test` with simulated callout
results and --trace; the envelope sender of redirects, SRS and loops; a
failed script counted in the metrics."""

import os
import subprocess
import tempfile
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
        local, domain = address.split("@")
        home = os.path.join(self.d.mail, domain, local)
        os.makedirs(home, exist_ok=True)
        for p in (os.path.join(self.d.mail, domain), home):
            own(p)
        path = os.path.join(home, name)
        with open(path, "w") as f:
            f.write(text)
        own(path)
        return path


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


if __name__ == "__main__":
    main()
