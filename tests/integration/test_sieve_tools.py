"""Around Sieve (issue 17): `sieve-lite test` with simulated callout
results and --trace; the envelope sender of redirects, SRS and loops; a
failed script counted in the metrics."""

import os
import subprocess
import tempfile
import unittest

from lmtptest import main

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


if __name__ == "__main__":
    main()
