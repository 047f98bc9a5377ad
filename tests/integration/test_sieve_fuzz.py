"""Mutation fuzzing of sieve-lite: scripts from the differential corpus,
cut, repeated and spliced with Sieve tokens, must either run or be refused
with a compile error (exit 0 or 65) - never crash, hang or (under
--enable-sanitizers) trip a sanitizer.  The seed is fixed: a failure is
reproducible."""

import os
import random
import subprocess
import tempfile
import shutil
import unittest

from lmtptest import main
from test_sieve_diff import MESSAGES, SCRIPTS, SIEVE_LITE

TOKENS = ['"', '{', '}', '(', ')', ';', ',', '[', ']', ':', '\\', '*', '${', 'text:\n', '\n.\n', '/*', '*/',
          '#', '1K', '99999999999999999999G', 'if', 'not', 'allof', 'anyof', ':matches', ':count "eq"',
          ':value "lt"', '${1}', '${99}', '\xff', ':index 2', ':last', ':days 0',
          'require ["variables","fileinto","imap4flags","editheader","relational",'
          '"comparator-i;ascii-numeric","body","vacation","copy","subaddress","envelope"];',
          # the MIME structure and regex
          'foreverypart {', 'foreverypart :name "a" {', 'break;', 'break :name "a";', ':mime', ':anychild',
          ':param ["name"]', ':raw', ':content ["text", ""]', ':regex', '(a|a)*', 'extracttext :first 3 "t";',
          'require ["foreverypart","mime","extracttext","regex","variables","body"];']


class FuzzTest(unittest.TestCase):
    def test_mutated_scripts(self):
        rnd = random.Random(4037)
        tmp = tempfile.mkdtemp(prefix="sieve-fuzz-")
        msg = os.path.join(tmp, "m.eml")
        with open(msg, "w") as f:
            f.write(MESSAGES["mime"])
        bad = []
        try:
            for i in range(400):
                s = rnd.choice(SCRIPTS)
                for _ in range(rnd.randint(1, 6)):
                    p = rnd.randint(0, len(s))
                    op = rnd.random()
                    if op < 0.5:
                        s = s[:p] + rnd.choice(TOKENS) + s[p:]
                    elif op < 0.8:
                        s = s[:p] + s[p + rnd.randint(1, 5):]
                    else:
                        q = rnd.randint(0, len(s))
                        s = s[:p] + s[min(p, q):max(p, q)] * 3 + s[p:]
                path = os.path.join(tmp, "s.sieve")
                with open(path, "w", errors="surrogateescape") as f:
                    f.write(s)
                r = subprocess.run([SIEVE_LITE, "test", path, msg, "--from", "a@b.c", "--to", "d+e@f.g"],
                                   capture_output=True, timeout=30)
                if r.returncode not in (0, 65) or b"Sanitizer" in r.stderr or b"runtime error" in r.stderr:
                    bad.append("case %d exit %d:\n%r\n%s" % (i, r.returncode, s, r.stderr[-1500:].decode("utf-8", "replace")))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertEqual(bad, [], "\n\n".join(bad[:3]))


if __name__ == "__main__":
    main()
