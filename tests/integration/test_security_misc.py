"""Security hardening (issue 13), miscellaneous items: log fields escaped
through the one sanitiser, duplicate suppression keyed on the sender too,
replies that say what is wrong with an address, the deliver command's
input (stdin closed, empty, a From_ line split across reads), and subject
tags that leave every other header byte as it was."""

import json
import os
import re
import subprocess
import time
import unittest

from lmtptest import LMTPD, Callout, Daemon, dotstuff, main, own, strip_trace

DELIVER = os.environ.get("DELIVER") or os.path.join(os.path.dirname(LMTPD), "..", "deliver", "deliver")

C1 = "\u009b"          # CSI as one C1 character: ESC [ for a terminal
C1_BYTES = C1.encode()


def session(d):
    c = d.connect()
    c.reply()
    c.cmd("LHLO client")
    return c


def deliver_one(c, sender, rcpt, body, mail_params=""):
    """One transaction to one recipient: the reply to the final dot."""
    c.send(("MAIL FROM:<%s>%s\r\nRCPT TO:<%s>\r\nDATA\r\n" % (sender, mail_params, rcpt)).encode())
    codes = [c.code() for _ in range(3)]
    assert codes == [250, 250, 354], codes
    c.send(dotstuff(body))
    return c.text()


def log_bytes(d):
    with open(d.log_path, "rb") as f:
        return f.read()


def wait_for(predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# ---- 10: log injection --------------------------------------------------------

class LogFields(unittest.TestCase):
    def tearDown(self):
        self.d.cleanup()

    def deliver_c1_mailbox(self, extra=None):
        self.d = Daemon(extra).start()
        c = session(self.d)
        rcpt = "a%sb@example.org" % C1
        self.assertTrue(deliver_one(c, "s%s@example.net" % C1, rcpt, b"Subject: c1\n\nx\n",
                                    " SMTPUTF8").startswith("250"))
        c.close()
        # the copy is there, under the name as given
        self.assertEqual(len(self.d.messages(rcpt)), 1)
        self.assertTrue(wait_for(lambda: b"mailbox" in log_bytes(self.d)))
        return log_bytes(self.d)

    def test_mailbox_field_escapes_c1(self):
        log = self.deliver_c1_mailbox()
        line = [l for l in log.splitlines() if b" mailbox=" in l][0]
        self.assertNotIn(C1_BYTES, log)
        self.assertIn(b"to=<a?b@example.org>", line)
        self.assertRegex(line, rb" mailbox=\S*a\?b")

    def test_json_mailbox_field_escapes_c1(self):
        log = self.deliver_c1_mailbox({"server.log_format": "json"})
        self.assertNotIn(C1_BYTES, log)
        rec = [json.loads(l) for l in log.decode().splitlines() if '"mailbox"' in l][0]
        self.assertIn("a?b", rec["mailbox"])
        self.assertNotIn(C1, json.dumps(rec, ensure_ascii=False))

    def test_sendmail_stderr_is_escaped_and_on_one_line(self):
        tool = os.path.join(tempfile_dir(), "fake-sendmail")
        with open(tool, "w") as f:
            f.write("#!/bin/sh\ncat >/dev/null\n"
                    "printf 'oops \\033[31mred\\nlmtpd[1]: forged record\\n' >&2\n"
                    "printf 'to stdout too\\n'\nexit 0\n")
        os.chmod(tool, 0o755)
        self.d = Daemon({"sieve.sendmail": tool})
        home = os.path.join(self.d.mail, "example.org", "alice")
        os.makedirs(home)
        own(os.path.join(self.d.mail, "example.org"))
        own(home)
        with open(os.path.join(home, ".dovecot.sieve"), "w") as f:
            f.write('redirect "copy@example.com";\n')
        self.d.start()
        c = session(self.d)
        self.assertTrue(deliver_one(c, "s@example.net", "alice@example.org",
                                    b"Subject: r\n\nx\n").startswith("250"))
        c.close()
        self.assertTrue(wait_for(lambda: b"redirected" in log_bytes(self.d)))
        log = log_bytes(self.d)
        self.assertNotIn(b"\x1b", log)
        self.assertNotIn(b"\nlmtpd[1]: forged", log)
        self.assertNotIn(b"\nto stdout too", log)
        # not lost either: one line, escaped
        self.assertRegex(log, rb"\n[^\n]*oops \?\[31mred\?lmtpd\[1\]: forged record[^\n]*\n")


def tempfile_dir():
    import tempfile
    d = tempfile.mkdtemp(prefix="sendmail-")
    os.chmod(d, 0o755)
    return d


# ---- 12: duplicates keyed on the sender -----------------------------------------

class DuplicatesBySender(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()

    def tearDown(self):
        self.d.cleanup()

    def test_same_data_other_sender_is_delivered(self):
        self.d.start()
        body = b"Subject: same\nMessage-ID: <same@example.net>\n\nthe same bytes\n"
        c = session(self.d)
        self.assertTrue(deliver_one(c, "one@example.net", "joe@example.org", body).startswith("250"))
        # a retry from the same sender: suppressed, as before
        self.assertIn("duplicate", deliver_one(c, "one@example.net", "joe@example.org", body))
        # the same bytes from someone else: a different message
        r = deliver_one(c, "two@example.net", "joe@example.org", body)
        self.assertNotIn("duplicate", r)
        self.assertIn("duplicate", deliver_one(c, "two@example.net", "joe@example.org", body))
        r = deliver_one(c, "", "joe@example.org", body)
        self.assertNotIn("duplicate", r)
        c.close()
        self.assertEqual(len(self.d.messages("joe@example.org")), 3)

    def test_journal_from_the_previous_format_still_loads(self):
        lib = os.path.join(self.d.dir, "lib")
        os.makedirs(lib)
        now = int(time.time())
        key = "ab" * 32
        with open(os.path.join(lib, "duplicates"), "w") as f:
            f.write("%d %s\n%d %s %s/mail/x/new/1.file\n%d -%s\n%d %s\ngarbage\n\n"
                    % (now, key, now, "cd" * 32, self.d.dir, now, "cd" * 32, now - 10, "ef" * 32))
        own(lib)
        own(os.path.join(lib, "duplicates"))
        self.d.start()
        c = session(self.d)
        body = b"Subject: after upgrade\n\nx\n"
        self.assertTrue(deliver_one(c, "one@example.net", "joe@example.org", body).startswith("250"))
        self.assertIn("duplicate", deliver_one(c, "one@example.net", "joe@example.org", body))
        c.close()
        self.assertEqual(len(self.d.messages("joe@example.org")), 1)


# ---- 13: replies that say what is wrong ------------------------------------------

class AddressReplies(unittest.TestCase):
    def setUp(self):
        self.d = Daemon().start()
        self.c = session(self.d)

    def tearDown(self):
        self.c.close()
        self.d.cleanup()

    def mail(self, path, params=""):
        self.c.send(b"MAIL FROM:<" + path + b">" + params.encode() + b"\r\n")
        return self.c.text()

    def rcpt(self, path, params=" SMTPUTF8"):
        self.assertTrue(self.mail(b"s@example.net", params).startswith("250"))
        self.c.send(b"RCPT TO:<" + path + b">\r\n")
        text = self.c.text()
        self.assertTrue(self.c.cmd("RSET").startswith("250"))
        return text

    def test_sender_replies(self):
        self.assertRegex(self.mail(b"a@[]"), r"^501 5\.1\.7 .*address literal")
        self.assertRegex(self.mail(b"a@[]", " SMTPUTF8"), r"^501 5\.1\.7 .*address literal")
        self.assertRegex(self.mail(b"a\xffb@example.net", " SMTPUTF8"), r"^501 5\.1\.7 .*not UTF-8")
        self.assertRegex(self.mail(b"a..b@example.net"), r"^501 5\.1\.7 .*dot")
        self.assertRegex(self.mail(b"a@-bad.example"), r"^501 5\.1\.7 .*bad domain")
        self.assertRegex(self.mail("j\u00f6@example.net".encode()), r"^553 5\.6\.7 .*SMTPUTF8")
        self.assertRegex(self.mail("j@ex\u00e4mple.net".encode()), r"^553 5\.6\.7 .*SMTPUTF8")
        self.assertRegex(self.mail(b"a\xffb@example.net"), r"^553 5\.6\.7 ")
        self.assertRegex(self.mail(b"postmaster"), r"^501 5\.1\.7 .*no domain")
        for text in [self.mail(b"a@[]")]:
            self.assertNotIn("no domain", text)

    def test_recipient_replies(self):
        self.assertRegex(self.rcpt(b"a@[]"), r"^501 5\.1\.3 .*address literal")
        self.assertRegex(self.rcpt(b"a\xffb@example.org"), r"^501 5\.1\.3 .*not UTF-8")
        self.assertRegex(self.rcpt("j\u00f6@example.org".encode(), ""), r"^553 5\.6\.7 .*SMTPUTF8")
        self.assertRegex(self.rcpt("j@ex\u00e4mple.org".encode(), ""), r"^553 5\.6\.7 .*SMTPUTF8")
        self.assertRegex(self.rcpt(b"a@b@example.org"), r"^501 5\.1\.3 ")
        self.assertTrue(self.rcpt("j\u00f6@example.org".encode()).startswith("250"))


# ---- 16: the deliver command's input ---------------------------------------------

class LdaInput(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(users=["joe@example.org"])

    def tearDown(self):
        self.d.cleanup()

    def popen(self, **kw):
        return subprocess.Popen([DELIVER, "-c", "lmtpd.conf", "-f", "s@example.net", "-a", "joe@example.org"],
                                cwd=self.d.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    def test_stdin_closed_is_refused(self):
        p = self.popen(stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(0))
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 66, err)
        self.assertIn(b"standard input", err)
        self.assertEqual(self.d.messages("joe@example.org"), [])

    def test_empty_input_is_refused(self):
        for data in (b"", b"From s@example.net Mon Jan  1 00:00:00 2024\n"):
            p = self.popen(stdin=subprocess.PIPE)
            out, err = p.communicate(data, timeout=60)
            self.assertEqual(p.returncode, 65, err)
            self.assertIn(b"empty", err)
        self.assertEqual(self.d.messages("joe@example.org"), [])

    def feed(self, pieces):
        p = self.popen(stdin=subprocess.PIPE)
        for piece in pieces:
            p.stdin.write(piece)
            p.stdin.flush()
            time.sleep(0.3)  # separate reads, most likely; the test holds either way
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        (name, data), = self.d.messages("joe@example.org")
        os.unlink(os.path.join(self.d.maildir("joe@example.org"), "new", name))
        return strip_trace(data)

    def test_from_line_split_across_reads(self):
        # each body differs: the duplicate journal would drop a repeat
        rest = [b"Subject: split %d\n\nbody\n" % i for i in range(5)]
        self.assertEqual(self.feed([b"Fr", b"om s@example.net Mon Jan  1 00:00:00 2024\n" + rest[0]]), rest[0])
        self.assertEqual(self.feed([b"From s@exa", b"mple.net Mon Jan  1", b" 00:00:00 2024\n", rest[1]]),
                         rest[1])
        self.assertEqual(self.feed([b"F", b"r", b"o", b"m", b" s@example.net x\nSub", rest[2][3:]]), rest[2])
        # not a From_ line: every byte kept
        self.assertEqual(self.feed([b"Fr", b"ied: yes\n" + rest[3]]), b"Fried: yes\n" + rest[3])
        self.assertEqual(self.feed([b"From", b": a@example.net\n" + rest[4]]), b"From: a@example.net\n" + rest[4])


# ---- 17: subject tags leave the rest of the header alone -----------------------------

SCRIPT = """\
rcpt=tag@* tag-subject [SPAM]
rcpt=utag@* tag-subject [SP\u00c4M]
rcpt=mix@* remove-header X-Remove-Me ; add-header X-Spam-Flag: YES ; tag-subject [SPAM]
* accept
"""

HEADER = (b"From: s@example.net\n"
          b"Subject:   =?x-unknown?q?caf=E9?= and\n"
          b"\t  more   \n"
          b"To: x@example.org\n"
          b"Subject: second subject\n"
          b"X-Raw: caf\xc3\xa9 \xff raw\n"
          b"X-Remove-Me: 1\n"
          b"X-NoSpace:tight\n"
          b"this line is not a field\n"
          b"Message-ID: <m1@example.net>\n")


class SubjectTag(unittest.TestCase):
    def setUp(self):
        self.c = Callout(SCRIPT)
        extra = {}
        for n in ("tag", "utag", "mix"):
            extra["service %s.servers" % n] = self.c.endpoint
            extra["service %s.timeout" % n] = "10s"
            extra["service %s.on_failure" % n] = "tempfail"
            extra["rule %s.match" % n] = "%s@example.org" % n
            extra["rule %s.services" % n] = n
        self.d = Daemon(extra=extra).start()

    def tearDown(self):
        self.d.cleanup()
        self.c.stop()

    def stored(self, rcpt, header):
        c = session(self.d)
        self.assertTrue(deliver_one(c, "s@example.net", rcpt, header + b"\nbody line\n").startswith("250"))
        c.close()
        (name, data), = self.d.messages(rcpt)
        data = strip_trace(data)
        # the OPES trace fields come before the message's own
        return re.sub(rb"^(OPES-[^\n]*\n)+", b"", data)

    def test_tag_keeps_every_other_byte(self):
        data = self.stored("tag@example.org", HEADER)
        want = HEADER.replace(b"Subject:   =?x", b"Subject: [SPAM]   =?x", 1)
        self.assertEqual(data, want + b"\nbody line\n")

    def test_non_ascii_tag_is_encoded(self):
        data = self.stored("utag@example.org", b"Subject: =?utf-8?q?hello?=\nTo: x@example.org\n")
        m = re.match(rb"Subject: (=\?[Uu][Tt][Ff]-8\?[BbQq]\?[^?]*\?=) =\?utf-8\?q\?hello\?=\nTo: x@example.org\n\n",
                     data)
        self.assertTrue(m, data)
        import email.header
        decoded = str(email.header.make_header(email.header.decode_header(
            (m.group(1) + b" =?utf-8?q?hello?=").decode())))
        self.assertEqual(decoded, "[SP\u00c4M] hello")

    def test_tag_with_other_edits_and_no_subject(self):
        data = self.stored("mix@example.org", HEADER.replace(b"Subject", b"X-Was-Subject"))
        want = HEADER.replace(b"Subject", b"X-Was-Subject").replace(b"X-Remove-Me: 1\n", b"")
        self.assertEqual(data, want + b"X-Spam-Flag: YES\nSubject: [SPAM]\n\nbody line\n")

    def test_tagged_once(self):
        data = self.stored("tag@example.org", b"Subject: [SPAM] already\nTo: x@example.org\n")
        self.assertEqual(data, b"Subject: [SPAM] already\nTo: x@example.org\n\nbody line\n")


if __name__ == "__main__":
    main()
