"""sieve-lite at delivery (issue 6), through the built lmtpd: several
recipients whose scripts differ in one transaction, failed scripts that
keep, the compile cache, editheader, redirect and vacation through a local
SMTP receiver, global before/after scripts, and callout results as
spamtest and the callout test."""

import datetime
import email
import email.policy
import hashlib
import os
import re
import socket
import threading
import time
import unittest

from lmtptest import Daemon, Services, dotstuff, main, own
from test_delivery import dovecot


def transaction(c, rcpts, body, sender="s@example.net"):
    c.send("MAIL FROM:<%s>\r\n" % sender + "".join("RCPT TO:<%s>\r\n" % r for r in rcpts) + "DATA\r\n")
    codes = [c.code() for _ in range(len(rcpts) + 1)]
    assert all(x == 250 for x in codes), codes
    assert c.code() == 354
    c.send(dotstuff(body.encode()))
    return [c.reply() for _ in rcpts]


def session(daemon):
    """A connected client past the greeting and LHLO."""
    c = daemon.connect()
    c.code()
    c.cmd("LHLO client")
    return c


class SmtpReceiver:
    """A small SMTP server on loopback that keeps what it receives."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.received = []  # (mail_from, [rcpts], data)
        self.lock = threading.Lock()
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 receiver ESMTP\r\n")
        sender, rcpts = None, []
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.decode().strip()
            up = cmd.upper()
            if up.startswith("EHLO") or up.startswith("HELO"):
                conn.sendall(b"250-receiver\r\n250 8BITMIME\r\n")
            elif up.startswith("MAIL FROM:"):
                sender, rcpts = re.search(r"<(.*?)>", cmd).group(1), []
                conn.sendall(b"250 ok\r\n")
            elif up.startswith("RCPT TO:"):
                rcpts.append(re.search(r"<(.*?)>", cmd).group(1))
                conn.sendall(b"250 ok\r\n")
            elif up == "DATA":
                conn.sendall(b"354 go\r\n")
                data = b""
                while True:
                    l = f.readline()
                    if l in (b".\r\n", b""):
                        break
                    data += l[1:] if l.startswith(b"..") else l
                with self.lock:
                    self.received.append((sender, rcpts, data))
                conn.sendall(b"250 queued\r\n")
            elif up == "QUIT":
                conn.sendall(b"221 bye\r\n")
                conn.close()
                return
            else:
                conn.sendall(b"502 no\r\n")

    def wait(self, n, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    return list(self.received)
            time.sleep(0.02)
        with self.lock:
            return list(self.received)

    def close(self):
        self.srv.close()


MSG = ("From: Sender <s@example.net>\r\nTo: alice@example.org, bob@example.org, carol@example.org, "
       "dave@example.org, erin@example.org\r\nSubject: Project status\r\nMessage-ID: <m1@example.net>\r\n"
       "X-Drop: yes\r\nX-Drop: keep me\r\n\r\nThe weekly report.\r\n")


# RFC 5703 5 and 7: replace inside foreverypart; parts 0 multipart/mixed, 1 text, 2 setup.exe,
# 3 message/rfc822, 4 its multipart/alternative, 5 its text, 6 tool.exe, 7 text/csv
PART_MSG = ("From: Sender <s@example.net>\r\nTo: alice@example.org\r\nSubject: Files\r\n"
            "Message-ID: <p1@example.net>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\nThis is a multi-part message.\r\n"
            "--outer\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attachments.\r\n"
            "--outer\r\nX-Scanned: no\r\nContent-Type: application/octet-stream; name=\"setup.exe\"\r\n"
            "Content-Disposition: attachment; filename=\"setup.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\r\n"
            "--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: Inner <i@example.net>\r\nSubject: Inner\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
            "--inner\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
            "--inner\r\nContent-Type: application/x-msdownload\r\n"
            "Content-Disposition: attachment; filename=\"tool.exe\"\r\n\r\nAAAA\r\n--inner--\r\n"
            "--outer\r\nContent-Type: text/csv; name=\"data.csv\"\r\n\r\na,b\r\n1,2\r\n--outer--\r\nEpilogue.\r\n")


class SieveDeliveryTest(unittest.TestCase):
    def setUp(self):
        self.smtp = SmtpReceiver()
        self.d = Daemon({"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port})

    def tearDown(self):
        self.d.cleanup()
        self.smtp.close()

    def script(self, address, text, name=".dovecot.sieve"):
        return self.d.user_file(address, name, text)

    def all_messages(self, address, folder=None):
        return self.d.messages(address, "new", folder) + self.d.messages(address, "cur", folder)

    def test_recipients_with_different_scripts_in_one_transaction(self):
        # RFC 2033 4.2: one reply per recipient, each after its own script
        self.script("alice@example.org", 'require ["fileinto", "imap4flags"];\n'
                    'if header :contains "subject" "status" { fileinto :flags "\\\\Seen" "Work"; }\n')
        self.script("bob@example.org", 'if address :domain "from" "example.net" { discard; }\n')
        self.script("carol@example.org", 'require "reject";\nreject "I do not take reports";\n')
        self.script("erin@example.org", 'require "ereject";\nif size :over 10 { ereject "Too big for me"; }\n')
        self.d.start()
        c = session(self.d)
        replies = transaction(c, ["alice@example.org", "bob@example.org", "carol@example.org",
                                  "dave@example.org", "erin@example.org"], MSG)
        codes = [r[0] for r in replies]
        self.assertEqual(codes, [250, 250, 550, 250, 550], replies)
        self.assertEqual(replies[2][1], ["550 5.7.1 <carol@example.org> I do not take reports"])
        self.assertEqual(replies[4][1], ["550 5.7.1 <erin@example.org> Too big for me"])
        # alice: in Work, seen (Maildir flag S in cur/), not in INBOX
        work = self.d.messages("alice@example.org", "cur", ".Work")
        self.assertEqual(len(work), 1)
        self.assertTrue(work[0][0].endswith(":2,S"), work[0][0])
        self.assertIn(b"The weekly report.", work[0][1])
        self.assertEqual(self.all_messages("alice@example.org"), [])
        # bob: discarded; carol, erin: nothing stored; dave: no script, INBOX
        self.assertEqual(self.all_messages("bob@example.org"), [])
        self.assertEqual(self.all_messages("carol@example.org"), [])
        self.assertEqual(self.all_messages("erin@example.org"), [])
        self.assertEqual(len(self.d.messages("dave@example.org")), 1)
        # Dovecot sees the folder and the flag
        out = dovecot("maildir:DATA:INDEX=MEMORY", 'a SELECT "Work"\r\nb FETCH 1 (FLAGS)\r\nc LOGOUT\r\n',
                      self.d.maildir("alice@example.org"))
        self.assertRegex(out, r"\* 1 FETCH \(FLAGS \(\\Seen( \\Recent)?\)\)", out)

    def test_broken_script_keeps_and_logs_next_to_it(self):
        # RFC 5228 2.10.6: an error means keep
        path = self.script("alice@example.org", 'require "fileinto";\nif header :is "subject" { fileinto "X"; }\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
        self.assertEqual(len(self.d.messages("alice@example.org")), 1)
        with open(path + ".log") as f:
            log = f.read()
        self.assertIn(".dovecot.sieve:2:", log)
        self.assertIn("kept in INBOX", log)
        self.assertIn("sieve", self.d.read_log())

    def test_runtime_limit_keeps(self):
        # more redirects than allowed is a runtime error: keep, nothing sent
        self.script("alice@example.org", "".join('redirect "r%d@example.com";\n' % i for i in range(6)))
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
        self.assertEqual(len(self.d.messages("alice@example.org")), 1)
        time.sleep(0.2)
        self.assertEqual(self.smtp.received, [])

    def test_script_change_is_seen(self):
        path = self.script("alice@example.org", 'require "fileinto";\nfileinto "One";\n')
        self.d.start()
        c = session(self.d)
        transaction(c, ["alice@example.org"], MSG)
        time.sleep(0.01)  # (the duplicate journal would drop the same message twice)
        with open(path, "w") as f:
            f.write('require "fileinto";\nfileinto "Two";\n# longer\n')
        transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<m2@"))
        self.assertEqual(len(self.d.messages("alice@example.org", "new", ".One")), 1)
        self.assertEqual(len(self.d.messages("alice@example.org", "new", ".Two")), 1)

    def test_editheader(self):
        # RFC 5293: addheader at the top (or :last), deleteheader by value, never Received
        self.script("alice@example.org", 'require ["editheader"];\naddheader "X-Sieved" "yes";\n'
                    'addheader :last "X-Last" "l\u00e9";\ndeleteheader :is "X-Drop" "yes";\n'
                    'deleteheader "Received";\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
        (name, data), = self.d.messages("alice@example.org")
        header, body = data.split(b"\n\n", 1)
        self.assertTrue(header.startswith(b"X-Sieved: yes\n"), header)
        self.assertIn(b"Received: ", header)
        self.assertNotIn(b"X-Drop: yes\n", header)
        self.assertIn(b"X-Drop: keep me\n", header)
        self.assertTrue(header.endswith(b"X-Last: =?UTF-8?b?bMOp?=") or header.endswith(b"X-Last: =?utf-8?b?bMOp?=")
                        or b"X-Last: =?" in header.split(b"\n")[-1], header)
        self.assertEqual(body, b"The weekly report.\n")
        self.assertRegex(name, r",S=%d" % len(data))

    def test_editheader_per_action(self):
        # RFC 5293 7: keep, fileinto and redirect take the header as edited up to them; the same
        # folder twice is one copy (RFC 5228 2.10.3) with the first one's header (as Pigeonhole) and
        # the last flags (RFC 5232 3: "the last flag list value MUST win")
        self.script("alice@example.org", 'require ["editheader", "fileinto", "copy", "imap4flags"];\n'
                    'addheader "X-One" "1";\nfileinto :flags "\\\\Seen" "A";\naddheader "X-Two" "2";\n'
                    'redirect :copy "r@example.com";\nkeep;\naddheader "X-Three" "3";\n'
                    'fileinto :flags "\\\\Flagged" "A";\n')
        # the implicit keep sees every edit; a fileinto :copy before the last does not
        self.script("bob@example.org", 'require ["editheader", "fileinto", "copy"];\n'
                    'addheader "X-A" "1";\nfileinto :copy "B";\naddheader "X-B" "2";\n')
        self.d.start()
        c = session(self.d)
        replies = transaction(c, ["alice@example.org", "bob@example.org"], MSG)
        self.assertEqual([r[0] for r in replies], [250, 250])
        (name, a), = self.all_messages("alice@example.org", ".A")
        self.assertTrue(name.endswith(":2,F"), name)
        self.assertEqual(a.split(b"\n\n")[0].count(b"X-"), 3, a)  # X-One and the two X-Drop
        self.assertTrue(a.startswith(b"X-One: 1\n"), a)
        (_, inbox), = self.all_messages("alice@example.org")
        self.assertTrue(inbox.startswith(b"X-Two: 2\nX-One: 1\n"), inbox)
        self.assertNotIn(b"X-Three", inbox)
        (_, rcpts, sent), = self.smtp.wait(1)
        self.assertEqual(rcpts, ["r@example.com"])
        self.assertIn(b"X-Two: 2\r\nX-One: 1\r\n", sent)
        self.assertNotIn(b"X-Three", sent)
        (_, b), = self.all_messages("bob@example.org", ".B")
        self.assertTrue(b.startswith(b"X-A: 1\n"), b)
        self.assertNotIn(b"X-B", b)
        (_, kept), = self.all_messages("bob@example.org")
        self.assertTrue(kept.startswith(b"X-B: 2\nX-A: 1\n"), kept)
        for data in (a, inbox, b, kept):
            self.assertTrue(data.endswith(b"\n\nThe weekly report.\n"), data)

    def test_editheader_runtime_error_keeps_the_original_header(self):
        # RFC 5293 7 / RFC 5228 2.10.6: after a run-time error the implicit keep stores the original
        self.script("alice@example.org", 'require ["editheader", "fileinto", "variables"];\n'
                    'addheader "X-A" "1";\nfileinto "B";\nset "x" "not an address";\nredirect "${x}";\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
        (_, kept), = self.all_messages("alice@example.org")
        self.assertNotIn(b"X-A", kept)
        self.assertEqual(self.all_messages("alice@example.org", ".B"), [])

    def test_enclose(self):
        # RFC 5703 6: later stores keep the new multipart/mixed message with the old one as its
        # message/rfc822 part; earlier stores and redirect ("does not affect messages that are
        # forwarded via a redirect action") keep the message itself; edits apply in script order
        self.script("alice@example.org", 'require ["enclose", "fileinto", "copy", "editheader"];\n'
                    'fileinto :copy "Before";\naddheader "X-Inner" "1";\n'
                    'enclose :subject "Wrapped" :headers ["to", "message-id"] "See the attached message.";\n'
                    'addheader "X-Outer" "2";\nredirect :copy "r@example.com";\n')
        # "If multiple enclose actions are executed by a script, the message is enclosed multiple times"
        self.script("bob@example.org", 'require ["enclose", "replace"];\nreplace "short";\nenclose "one";\n'
                    'enclose :subject "Twice" "two";\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual([r[0] for r in transaction(c, ["alice@example.org", "bob@example.org"], MSG)], [250, 250])
        (_, twice), = self.all_messages("bob@example.org")
        outer = email.message_from_bytes(twice, policy=email.policy.default)
        self.assertEqual(outer["Subject"], "Twice")
        self.assertEqual(outer.get_payload()[0].get_content().strip(), "two")
        middle = outer.get_payload()[1].get_payload()[0]
        self.assertEqual(middle["Subject"], "Project status")
        self.assertEqual(middle.get_payload()[0].get_content().strip(), "one")
        inner = middle.get_payload()[1].get_payload()[0]
        self.assertEqual(inner.get_content(), "short\n")
        (_, before), = self.all_messages("alice@example.org", ".Before")
        self.assertNotIn(b"X-Inner", before)
        self.assertTrue(before.endswith(b"\n\nThe weekly report.\n"), before)
        (name, kept), = self.all_messages("alice@example.org")
        self.assertRegex(name, r",S=%d" % len(kept))
        header = kept.split(b"\n\n", 1)[0]
        self.assertTrue(header.startswith(b"X-Outer: 2\n"), header)
        for field in (b"Subject: Wrapped", b"From: <alice@example.org>", b"Message-ID: <m1@example.net>",
                      b"MIME-Version: 1.0", b"Content-Type: multipart/mixed; boundary="):
            self.assertIn(b"\n" + field, header)
        self.assertNotIn(b"X-Inner", header)
        self.assertNotIn(b"X-Drop", header)
        m = email.message_from_bytes(kept, policy=email.policy.default)
        text, inner = m.get_payload()
        self.assertEqual(text.get_content_type(), "text/plain")
        self.assertEqual(text.get_content().strip(), "See the attached message.")
        self.assertEqual(inner.get_content_type(), "message/rfc822")
        enclosed = inner.get_payload()[0]
        self.assertEqual(enclosed["Subject"], "Project status")
        self.assertEqual(enclosed["X-Inner"], "1")
        self.assertIsNone(enclosed["X-Outer"])
        self.assertEqual(enclosed.get_content(), "The weekly report.\n")
        (_, rcpts, sent), = self.smtp.wait(1)
        self.assertIn(b"X-Outer: 2\r\nX-Inner: 1\r\n", sent)
        self.assertIn(b"Subject: Project status\r\n", sent)
        self.assertNotIn(b"multipart", sent)

    def test_replace(self):
        # RFC 5703 5, the whole message: the body goes, the MIME fields with it; :subject and :from
        # keep the old ones as Original-Subject and Original-From; every other field stays
        self.script("alice@example.org", 'require ["replace", "fileinto", "copy"];\nfileinto :copy "Before";\n'
                    'replace :subject "R\u00e4pl\u00e4ced" :from "Sieve <sieve@example.org>" "Nothing to see here.";\n')
        self.script("bob@example.org", 'require ["replace"];\n'
                    'replace :mime "Content-Type: text/html\r\nX-Evil: 1\r\n\r\n<p>hi</p>\r\n";\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual([r[0] for r in transaction(c, ["alice@example.org", "bob@example.org"], MSG)], [250, 250])
        (_, before), = self.all_messages("alice@example.org", ".Before")
        self.assertTrue(before.endswith(b"\n\nThe weekly report.\n"), before)
        (name, kept), = self.all_messages("alice@example.org")
        self.assertRegex(name, r",S=%d" % len(kept))
        m = email.message_from_bytes(kept, policy=email.policy.default)
        self.assertEqual(m["Subject"], "R\u00e4pl\u00e4ced")
        self.assertEqual(m["Original-Subject"], "Project status")
        self.assertEqual(m["From"], "Sieve <sieve@example.org>")
        self.assertEqual(m["Original-From"], "Sender <s@example.net>")
        self.assertEqual(m.get_all("X-Drop"), ["yes", "keep me"])
        self.assertEqual(m.get_content_type(), "text/plain")
        self.assertEqual(m.get_content(), "Nothing to see here.\n")
        (_, html), = self.all_messages("bob@example.org")
        header, body = html.split(b"\n\n", 1)
        self.assertIn(b"\nContent-Type: text/html\n", header + b"\n")
        self.assertNotIn(b"X-Evil", header)
        self.assertIn(b"\nSubject: Project status\n", header)
        self.assertEqual(body, b"<p>hi</p>\n")

    def test_replace_part(self):
        # RFC 5703 5: inside foreverypart replace changes the current part only; the rest of the
        # message is stored byte for byte; :subject still changes the top header
        self.script("alice@example.org", 'require ["foreverypart", "mime", "replace", "fileinto", "copy"];\n'
                    'fileinto :copy "Before";\n'
                    # RFC 5703 7's example, for .exe files
                    'foreverypart {\n  if anyof (header :mime :contenttype :is "Content-Type" "application/exe",\n'
                    '             header :mime :param ["filename"] :matches ["Content-Type", "Content-Disposition"]'
                    ' "*.exe") {\n    replace "Executable attachment removed by user filter";\n  }\n}\n'
                    'redirect :copy "r@example.com";\n')
        self.script("bob@example.org", 'require ["foreverypart", "mime", "replace"];\n'
                    'foreverypart {\n'
                    '  if header :mime :contenttype "Content-Type" "multipart/alternative" '
                    '{ replace :subject "Cleaned" "inner gone"; }\n'
                    '  if header :mime :contenttype "Content-Type" "text/csv" '
                    '{ replace :mime "Content-Type: text/html\r\n\r\n<p>no data</p>\r\n"; }\n}\n')
        # a part inside one replaced before: a run-time error, the message kept as received
        self.script("carol@example.org", 'require ["foreverypart", "mime", "replace"];\n'
                    'foreverypart { if header :mime :type "Content-Type" "message" { replace "x";\n'
                    '  foreverypart { replace "y"; } } }\n')
        # a part inside one replaced later, the same part twice: the last replace of the outer one counts
        self.script("dave@example.org", 'require ["foreverypart", "mime", "replace"];\n'
                    'foreverypart { if header :mime :type "Content-Type" "message" {\n'
                    '  foreverypart { if header :mime :subtype "Content-Type" "x-msdownload" { replace "a"; } }\n'
                    '  replace "b"; replace "c"; }\n'
                    '  if header :mime :subtype "Content-Type" "csv" { replace "d"; } }\n')
        # RFC 5703 6: after enclose the loop walks the new message (3 parts, then the 8 enclosed)
        self.script("erin@example.org", 'require ["foreverypart", "mime", "enclose", "fileinto", "variables"];\n'
                    'enclose "x";\nset "n" "";\nforeverypart { set "n" "${n}p"; '
                    'if header :mime :subtype "Content-Type" "rfc822" { set "n" "${n}M"; } }\nfileinto "${n}";\n')
        self.d.start()
        c = session(self.d)
        replies = transaction(c, ["alice@example.org", "bob@example.org", "carol@example.org", "dave@example.org",
                                  "erin@example.org"], PART_MSG)
        self.assertEqual([r[0] for r in replies], [250] * 5, replies)
        self.assertEqual(len(self.all_messages("erin@example.org", ".pppMppppMpppp")), 1)
        (_, before), = self.all_messages("alice@example.org", ".Before")
        (name, kept), = self.all_messages("alice@example.org")
        self.assertRegex(name, r",S=%d" % len(kept))
        s2 = before.index(b"X-Scanned: no")
        e2 = before.index(b"\n--outer", s2)
        s6 = before.index(b"Content-Type: application/x-msdownload")
        e6 = before.index(b"\n--inner--", s6)
        self.assertEqual(kept[:s2], before[:s2])
        k_e2 = kept.index(b"\n--outer", s2)
        k_s6 = kept.index(b"Content-Type: text/plain; charset=utf-8", k_e2)
        k_e6 = kept.index(b"\n--inner--", k_s6)
        self.assertEqual(kept[k_e2:k_s6], before[e2:s6])
        self.assertEqual(kept[k_e6:], before[e6:])
        # the part's other fields stay, its Content-* fields are the new text part's
        self.assertTrue(kept[s2:k_e2].startswith(b"X-Scanned: no\nContent-Type: text/plain; charset=utf-8\n"),
                        kept[s2:k_e2])
        self.assertTrue(kept[s2:k_e2].endswith(b"\n\nExecutable attachment removed by user filter"))
        self.assertNotIn(b"setup.exe", kept)
        self.assertNotIn(b"tool.exe", kept)
        m = email.message_from_bytes(kept, policy=email.policy.default)
        text, exe, rfc822, csv = m.get_payload()
        self.assertEqual(text.get_content(), "See the attachments.")
        self.assertEqual((exe.get_content_type(), exe.get_content()),
                         ("text/plain", "Executable attachment removed by user filter"))
        inner = rfc822.get_payload()[0]
        self.assertEqual(inner.get_payload()[1].get_content(), "Executable attachment removed by user filter")
        self.assertEqual(csv.get_content(), "a,b\n1,2")
        self.assertEqual(m["Subject"], "Files")
        # redirect sends the parts replaced too (RFC 5703 6 exempts only enclose)
        (_, _, sent), = self.smtp.wait(1)
        self.assertIn(b"X-Scanned: no\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                      b"Executable attachment removed by user filter\r\n--outer\r\n", sent)
        self.assertNotIn(b"tool.exe", sent)
        (_, bob), = self.all_messages("bob@example.org")
        m = email.message_from_bytes(bob, policy=email.policy.default)
        self.assertEqual((m["Subject"], m["Original-Subject"]), ("Cleaned", "Files"))
        self.assertEqual(m.get_content_type(), "multipart/mixed")
        text, exe, rfc822, csv = m.get_payload()
        inner = rfc822.get_payload()[0]
        self.assertEqual((inner["From"], inner["Subject"], inner.get_content_type(), inner.get_content()),
                         ("Inner <i@example.net>", "Inner", "text/plain", "inner gone"))
        self.assertEqual((csv.get_content_type(), csv.get_content()), ("text/html", "<p>no data</p>"))
        self.assertEqual(exe.get_filename(), "setup.exe")
        self.assertIn(b"\n\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\n--outer\n", bob)
        (_, carol), = self.all_messages("carol@example.org")
        self.assertEqual(carol.split(b"\n\n", 1)[1], before.split(b"\n\n", 1)[1])
        (_, dave), = self.all_messages("dave@example.org")
        body = before[before.index(b"\n\n"):]
        self.assertTrue(dave[dave.index(b"\n\n"):].startswith(body[:body.index(b"Content-Type: message/rfc822")]))
        self.assertTrue(dave.endswith(b"\n--outer\nContent-Type: text/plain; charset=utf-8\n\nc\n--outer\n"
                                      b"Content-Type: text/plain; charset=utf-8\n\nd\n--outer--\nEpilogue.\n"), dave)

    KNIT = ("Return-Path: <knitting-bounces@example.com>\r\nMessage-ID: <1234567.89ABCDEF@example.com>\r\n"
            "Date: Wed, 07 Dec 2005 10:59:19 +0100\r\nPrecedence: list\r\n"
            "List-Id: Knitting Mailing List <knitting.example.com>\r\nSender: knitting-bounces@example.com\r\n"
            "From: \"Jeff Smith\" <jeff@hobbies.example.com>\r\nTo: \"Knitting Mailing List\" <knitting@example.com>\r\n"
            "Subject: [Knitting] A new sweater\r\n\r\nI just finished a great new sweater!\r\n")

    def test_notify_mailto(self):
        # RFC 5436 3, the example: one notification per recipient of the URI, Auto-Submitted first
        # (2.7.1), the Subject from :message, From and the envelope sender the recipient (2.7);
        # the message itself is kept (RFC 5435 3: notify leaves the implicit keep alone)
        self.script("alice@example.org", 'require ["enotify", "variables"];\n'
                    'if header :contains "list-id" "knitting.example.com" {\n'
                    '  if header :matches "Subject" "[*] *" {\n'
                    '    notify :message "From ${1} list: ${2}" :importance "3"\n'
                    '      "mailto:0123456789@sms.example.net?to=backup@example.com&X-Tag=knit&date=x&body=new%0D%0Amail";\n'
                    '  }\n}\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], self.KNIT, sender="knitting-bounces@example.com")[0][0],
                         250)
        got = sorted(self.smtp.wait(2), key=lambda g: g[1])
        self.assertEqual([(g[0], g[1]) for g in got], [("alice@example.org", ["0123456789@sms.example.net"]),
                                                       ("alice@example.org", ["backup@example.com"])])
        data = got[0][2]
        self.assertEqual(data, got[1][2])
        header, body = data.split(b"\r\n\r\n", 1)
        lines = header.split(b"\r\n")
        self.assertEqual(lines[0], b'Auto-Submitted: auto-notified; owner-email="alice@example.org"')
        self.assertIn(b"From: alice@example.org", lines)
        self.assertIn(b"To: 0123456789@sms.example.net, backup@example.com", lines)
        self.assertIn(b"Subject: From Knitting list: A new sweater", lines)
        self.assertIn(b"X-Priority: 5 (Lowest)", lines)
        self.assertIn(b"X-Tag: knit", lines)
        self.assertEqual([l for l in lines if l.lower().startswith(b"date:")][0] != b"Date: x", True)
        self.assertEqual(len([l for l in lines if l.lower().startswith(b"date:")]), 1)
        self.assertNotIn(b"1234567.89ABCDEF", header)
        self.assertEqual(body, b"new\r\nmail\r\n")
        self.assertEqual(len(self.all_messages("alice@example.org")), 1)

    def test_notify_not_for_automatic_mail_and_null_sender(self):
        # RFC 5436 2.7: no notification about Auto-Submitted mail; a null sender's gets a null sender
        self.script("alice@example.org", 'require "enotify";\nnotify :from "me@example.org" "mailto:n@example.com";\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], "Auto-Submitted: auto-replied\r\n" + MSG)[0][0], 250)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<m2@"), sender="")[0][0], 250)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<m3@"))[0][0], 250)
        got = self.smtp.wait(2)
        time.sleep(0.3)
        # the envelope sender is the user's, not :from (RFC 5436 2.7 leaves it to the implementation)
        self.assertEqual([(g[0], g[1]) for g in self.smtp.received], [("", ["n@example.com"]),
                                                                       ("alice@example.org", ["n@example.com"])])
        self.assertIn(b"From: me@example.org\r\n", got[0][2])
        self.assertIn(b"Subject: Project status\r\n", got[0][2])
        self.assertEqual(len(self.all_messages("alice@example.org")), 3)

    def test_notify_with_reject(self):
        # RFC 5429 2.1 names keep, fileinto, redirect and vacation as what reject does not go with;
        # a notification about the rejected message still goes (as Pigeonhole)
        self.script("alice@example.org", 'require ["enotify", "reject"];\nnotify "mailto:n@example.com";\n'
                    'reject "not here";\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 550)
        (_, rcpts, sent), = self.smtp.wait(1)
        self.assertEqual(rcpts, ["n@example.com"])
        self.assertIn(b"Subject: Project status\r\n", sent)
        self.assertEqual(self.all_messages("alice@example.org"), [])

    def test_redirect_and_copy(self):
        self.script("alice@example.org", 'redirect "elsewhere@example.com";\n')
        self.script("bob@example.org", 'require "copy";\nredirect :copy "archive@example.com";\n')
        self.d.start()
        c = session(self.d)
        replies = transaction(c, ["alice@example.org", "bob@example.org"], MSG, sender="orig@example.net")
        self.assertEqual([r[0] for r in replies], [250, 250])
        got = sorted(self.smtp.wait(2), key=lambda x: x[1])
        self.assertEqual([(g[0], g[1]) for g in got],
                         [("orig@example.net", ["archive@example.com"]), ("orig@example.net", ["elsewhere@example.com"])])
        self.assertIn(b"X-Sieve-Redirected-From: alice@example.org\r\n", got[1][2])
        self.assertNotIn(b"Return-Path:", got[1][2])
        self.assertIn(b"The weekly report.\r\n", got[1][2])
        self.assertEqual(self.all_messages("alice@example.org"), [])
        self.assertEqual(len(self.d.messages("bob@example.org")), 1)

    def test_redirect_loop_is_kept(self):
        self.script("alice@example.org", 'redirect "elsewhere@example.com";\n')
        self.d.start()
        c = session(self.d)
        looped = "X-Sieve-Redirected-From: alice@example.org\r\n" + MSG
        self.assertEqual(transaction(c, ["alice@example.org"], looped)[0][0], 250)
        self.assertEqual(len(self.d.messages("alice@example.org")), 1)
        time.sleep(0.2)
        self.assertEqual(self.smtp.received, [])
        self.assertIn("would loop", self.d.read_log())

    def test_redirect_failure_keeps(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there
        self.d.write_config({"sieve.submission": "inet:127.0.0.1:%d" % port})
        self.script("alice@example.org", 'redirect "elsewhere@example.com";\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
        self.assertEqual(len(self.d.messages("alice@example.org")), 1)

    def test_script_size_limit_keeps(self):
        self.d.write_config({"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port,
                             "sieve.max_script_size": "64"})
        path = self.script("alice@example.org", "discard;\n" + "# padding\n" * 10)
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
        self.assertEqual(len(self.d.messages("alice@example.org")), 1)
        with open(path + ".log") as f:
            self.assertIn("max_script_size", f.read())

    def test_sendmail_command_and_vacation_from_mime(self):
        out = os.path.join(self.d.dir, "sent")
        tool = os.path.join(self.d.dir, "fake-sendmail")
        with open(tool, "w") as f:
            f.write("#!/bin/sh\n{ echo \"ARGS: $*\"; cat; echo END; } >> %s\n" % out)
        os.chmod(tool, 0o755)
        open(out, "w").close()
        os.chmod(out, 0o666)
        self.d.write_config({"sieve.sendmail": tool})
        self.script("alice@example.org", 'require "vacation";\n'
                    'vacation :from "Alice Away <alice@example.org>" :mime text:\n'
                    'Content-Type: text/plain; charset=utf-8\n\nBack on Monday.\n.\n;\n'
                    'redirect "copy@example.com";\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG, sender="orig@example.net")[0][0], 250)
        with open(out) as f:
            sent = f.read()
        self.assertIn("ARGS: -i -f orig@example.net -- copy@example.com\n", sent)
        self.assertIn("ARGS: -i -f <> -- orig@example.net\n", sent)
        self.assertIn("From: Alice Away <alice@example.org>", sent)
        self.assertIn("Back on Monday.", sent)
        self.assertIn("X-Sieve-Redirected-From: alice@example.org\n", sent)
        self.assertEqual(self.all_messages("alice@example.org"), [])

    def test_vacation_concurrent_and_odd_handle(self):
        # the reply log is held from the check to the record: one reply for
        # four messages from one sender delivered at once; a :handle with
        # spaces and a newline still matches
        self.script("alice@example.org", 'require "vacation";\n'
                    'vacation :handle "my handle\n2" "Away.";\n')
        self.d.start()
        results = []

        def one(i):
            c = session(self.d)
            results.append(transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<c%d@" % i))[0][0])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        c = session(self.d)
        results.append(transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<c9@"))[0][0])
        self.assertEqual(results, [250] * 5)
        time.sleep(0.3)
        self.assertEqual(len(self.smtp.wait(1)), 1)

    def test_vacation(self):
        # RFC 5230: once per sender within :days, null sender, Auto-Submitted
        self.d.write_config({"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port,
                             "sieve.vacation_never_reply": "bounce*@*"})
        self.script("alice@example.org", 'require "vacation";\n'
                    'vacation :days 3 :subject "Away" "I am away until Monday.";\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
        got = self.smtp.wait(1)
        self.assertEqual(len(got), 1)
        sender, rcpts, data = got[0]
        self.assertEqual((sender, rcpts), ("", ["s@example.net"]))
        self.assertIn(b"Auto-Submitted: auto-replied", data)
        self.assertIn(b"Subject: Away\r\n", data)
        self.assertIn(b"In-Reply-To: <m1@example.net>", data)
        self.assertIn(b"I am away until Monday.", data)
        self.assertEqual(len(self.d.messages("alice@example.org")), 1)  # implicit keep
        # the same sender again: no second reply
        transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<m2@"))
        # a list message, an auto-reply and a message not addressed to her: none
        transaction(c, ["alice@example.org"], "Precedence: bulk\r\n" + MSG, sender="x@example.net")
        transaction(c, ["alice@example.org"], "Auto-Submitted: auto-replied\r\n" + MSG, sender="y@example.net")
        transaction(c, ["alice@example.org"], MSG.replace("alice@", "someone@"), sender="z@example.net")
        transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<m3@"), sender="")
        transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<m5@"), sender="Bounce-7@example.net")
        time.sleep(0.3)
        self.assertEqual(len(self.smtp.received), 1)
        self.assertEqual(len(self.d.messages("alice@example.org")), 7)
        log = self.d.read_log()
        for why in ("answered already", "Precedence", "Auto-Submitted", "not in To, Cc or Bcc", "sender is null",
                    "vacation_never_reply"):
            self.assertIn(why, log)
        # another sender gets one
        transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<m4@"), sender="other@example.net")
        self.assertEqual(len(self.smtp.wait(2)), 2)


MIME_MSG = ("From: Sender <s@example.net>\r\nTo: alice@example.org\r\nSubject: Parts\r\n"
            "Message-ID: <mime1@example.net>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\nprologue text\r\n"
            "--o\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe, invoice attached\r\n"
            "--o\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            "PGI+SGVsbG88L2I+Cg==\r\n"
            "--o\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"inv-42.pdf\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--o--\r\n")


class SieveMimeDeliveryTest(unittest.TestCase):
    """The MIME structure from the spool (deliver/filter-view.c): body
    :raw and :content (RFC 5173 5), foreverypart, :mime and extracttext
    (RFC 5703), regex; each recipient's own script in one transaction."""

    def test_mime_structure_at_delivery(self):
        d = Daemon({})
        self.addCleanup(d.cleanup)
        scripts = {
            "alice": 'require ["fileinto", "body"];\nif body :raw :contains "Gr=FC=DFe" { fileinto "Raw"; }\n',
            "bob": 'require ["fileinto", "body"];\nif body :content "text/html" :contains "<b>Hello" '
                   '{ fileinto "Html"; }\n',
            "carol": 'require ["fileinto", "foreverypart", "mime", "variables", "extracttext", "regex"];\n'
                     'foreverypart { if header :mime :param "filename" :regex "content-disposition" "^inv-([0-9]+)" '
                     '{ set "n" "${1}"; } if header :mime :subtype "content-type" "plain" '
                     '{ extracttext :first 2 "t"; } }\nfileinto "Inv${n}-${t}";\n',
            "dave": 'require ["fileinto", "body"];\nif body :content "multipart" :is "prologue text" '
                    '{ fileinto "Prologue"; }\n',
        }
        for user, text in scripts.items():
            local, domain = user, "example.org"
            home = os.path.join(d.mail, domain, local)
            os.makedirs(home, exist_ok=True)
            for p in (os.path.join(d.mail, domain), home):
                own(p)
            path = os.path.join(home, ".dovecot.sieve")
            with open(path, "w") as f:
                f.write(text)
            own(path)
        d.start()
        c = session(d)
        replies = transaction(c, [u + "@example.org" for u in scripts], MIME_MSG)
        self.assertEqual([r[0] for r in replies], [250] * 4, replies)
        for user, folder in (("alice", ".Raw"), ("bob", ".Html"), ("carol", ".Inv42-Gr"),
                             ("dave", ".Prologue")):
            stored = d.messages(user + "@example.org", "new", folder)
            self.assertEqual(len(stored), 1, (user, folder))
            self.assertIn(b"JVBERi0xLjQK", stored[0][1])


class SieveGlobalScriptsTest(unittest.TestCase):
    def test_before_and_after(self):
        d = Daemon()
        try:
            before = os.path.join(d.dir, "before.sieve")
            after = os.path.join(d.dir, "after.sieve")
            with open(before, "w") as f:
                f.write('require ["fileinto"];\nif header :contains "subject" "[SPAM]" { fileinto "Junk"; stop; }\n')
            with open(after, "w") as f:
                f.write('require ["editheader"];\naddheader "X-After" "ran";\n')
            d.write_config(dict(d.extra, **{"sieve.before": "before.sieve", "sieve.after": "after.sieve"}))
            d.start()
            c = session(d)
            transaction(c, ["alice@example.org"], MSG.replace("Project status", "[SPAM] buy"))
            transaction(c, ["alice@example.org"], MSG)
            junk = d.messages("alice@example.org", "new", ".Junk")
            inbox = d.messages("alice@example.org")
            self.assertEqual(len(junk), 1)
            self.assertNotIn(b"X-After", junk[0][1])  # the sequence ended at the fileinto
            self.assertEqual(len(inbox), 1)
            self.assertTrue(inbox[0][1].startswith(b"X-After: ran\n"))
        finally:
            d.cleanup()


SPAM_CONF = """
[service spam]
module = spam
listen = inet:127.0.0.1:0
backend = builtin
threshold = 5
actions = tag [SPAM]
"""


class SieveCalloutResultsTest(unittest.TestCase):
    def test_spamtest_and_callout_test(self):
        svc = Services(SPAM_CONF)
        d = Daemon({"service spam.servers": svc.endpoint("spam"), "service spam.uri": "urn:test:spam",
                    "rule all.match": "*", "rule all.services": "spam"})
        try:
            home = os.path.join(d.mail, "example.org", "alice")
            os.makedirs(home)
            own(os.path.join(d.mail, "example.org"))
            own(home)
            with open(os.path.join(home, ".dovecot.sieve"), "w") as f:
                f.write('require ["fileinto", "spamtest", "relational", "comparator-i;ascii-numeric",'
                        ' "vnd.opes-lmtpd.callout"];\n'
                        'if spamtest :value "ge" :comparator "i;ascii-numeric" "6" { fileinto "Junk"; stop; }\n'
                        'if callout :labels "spam" "ham" { fileinto "Clean"; }\n')
            d.start()
            c = session(d)
            self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
            spammy = MSG.replace("The weekly report.", "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")
            self.assertEqual(transaction(c, ["alice@example.org"], spammy)[0][0], 250)
            clean = d.messages("alice@example.org", "new", ".Clean")
            junk = d.messages("alice@example.org", "new", ".Junk")
            self.assertEqual(len(clean), 1, d.read_log())
            self.assertEqual(len(junk), 1, d.read_log() + svc.read_log())
            self.assertIn(b"Subject: [SPAM] Project status", junk[0][1])
        finally:
            d.cleanup()
            svc.stop()


class SieveTimeAndMemoryTest(unittest.TestCase):
    """duplicate (RFC 7352), currentdate (RFC 5260) and vacation :seconds
    (RFC 6131) at delivery."""

    script = SieveDeliveryTest.script

    def setUp(self):
        self.smtp = SmtpReceiver()
        self.d = Daemon({"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port})

    def tearDown(self):
        self.d.cleanup()
        self.smtp.close()

    def test_duplicate_files_the_second_copy_elsewhere(self):
        # RFC 7352 3: true if an earlier delivery's script saw the Message-ID
        # (another envelope sender, so the transaction journal lets it in)
        path = self.script("alice@example.org", 'require ["duplicate", "fileinto"];\n'
                           'if duplicate { fileinto "Dups"; }\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG, sender="list@example.net")[0][0], 250)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<m2@"))[0][0], 250)
        inbox = self.d.messages("alice@example.org")
        dups = self.d.messages("alice@example.org", "new", ".Dups")
        self.assertEqual(len(inbox), 2, self.d.read_log())
        self.assertEqual(len(dups), 1, self.d.read_log())
        self.assertIn(b"Message-ID: <m1@example.net>", dups[0][1])
        self.assertIn(b"The weekly report.", dups[0][1])
        with open(path + ".duplicate") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2, lines)  # m1 once (no :last), m2

    def test_duplicate_records_nothing_when_the_script_fails(self):
        # RFC 7352 3: "MUST only update the internal duplicate-tracking list
        # when the Sieve script execution finishes successfully"
        self.script("alice@example.org", 'require ["duplicate", "fileinto"];\n'
                    'if duplicate { fileinto "Dups"; stop; }\n'
                    'if header :is "x-fail" "yes" {\n' + "".join('redirect "r%d@example.com";\n' % i
                                                                  for i in range(6)) + '}\n')
        self.d.start()
        c = session(self.d)
        transaction(c, ["alice@example.org"], "X-Fail: yes\r\n" + MSG)
        transaction(c, ["alice@example.org"], MSG, sender="a@example.net")
        transaction(c, ["alice@example.org"], MSG, sender="b@example.net")
        self.assertEqual(len(self.d.messages("alice@example.org")), 2, self.d.read_log())
        self.assertEqual(len(self.d.messages("alice@example.org", "new", ".Dups")), 1, self.d.read_log())

    def test_duplicate_ids_are_bounded_and_expire(self):
        # RFC 7352 3.3: entries expire; the file keeps at most 10,000 (to
        # make room, the ones that expire first go)
        path = self.script("alice@example.org", 'require ["duplicate", "fileinto"];\n'
                           'if duplicate :seconds 3600 { fileinto "Dups"; }\n')
        now = int(time.time())
        with open(path + ".duplicate", "w") as f:
            f.write("%d %s\n" % (now - 10, "e" * 32))  # expired
            for i in range(10050):
                f.write("%d %032x\n" % (now + 100000 + i, i))
        own(path + ".duplicate")
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
        with open(path + ".duplicate") as f:
            entries = dict(reversed(line.split()) for line in f.read().splitlines())
        key = hashlib.sha256(b"\0<m1@example.net>").hexdigest()[:32]
        self.assertEqual(len(entries), 10000)
        self.assertIn(key, entries)
        self.assertLessEqual(abs(int(entries[key]) - (now + 3600)), 5)
        self.assertNotIn("e" * 32, entries)
        self.assertNotIn("%032x" % 50, entries)  # the 51 that expire first made room
        self.assertIn("%032x" % 51, entries)
        self.assertEqual(len(self.d.messages("alice@example.org")), 1)

    def test_duplicate_ids_file_planted_by_the_user(self):
        # the ids file is the user's: a symlink is not followed, a FIFO does
        # not block; the message is delivered all the same
        path = self.script("alice@example.org", 'require ["duplicate", "fileinto"];\n'
                           'if duplicate { fileinto "Dups"; }\n')
        target = os.path.join(self.d.dir, "victim")
        with open(target, "w") as f:
            f.write("precious\n")
        os.symlink(target, path + ".duplicate")
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 250)
        os.unlink(path + ".duplicate")
        os.mkfifo(path + ".duplicate")
        own(path + ".duplicate")
        self.assertEqual(transaction(c, ["alice@example.org"], MSG, sender="b@example.net")[0][0], 250)
        with open(target) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertEqual(len(self.d.messages("alice@example.org")), 2)
        self.assertIn("sieve duplicate ids", self.d.read_log())

    def test_duplicate_recorded_by_a_reject(self):
        # RFC 7352 3: a run that ends well records its ids, whatever it did
        self.script("alice@example.org", 'require ["duplicate", "fileinto", "reject"];\n'
                    'if duplicate { fileinto "Dups"; stop; }\nreject "Not now.";\n')
        self.d.start()
        c = session(self.d)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG)[0][0], 550)
        self.assertEqual(transaction(c, ["alice@example.org"], MSG, sender="list@example.net")[0][0], 250)
        self.assertEqual(len(self.d.messages("alice@example.org", "new", ".Dups")), 1, self.d.read_log())

    def test_vacation_in_a_date_range_and_seconds(self):
        # RFC 5260 5.1: a vacation set up for a range of dates (as Roundcube
        # writes it); RFC 6131 2: ":seconds 0" answers every message when
        # the site's minimum allows it
        today = datetime.date.today()
        first, last = today - datetime.timedelta(days=2), today + datetime.timedelta(days=2)
        self.d.write_config({"sieve.submission": "inet:127.0.0.1:%d" % self.smtp.port,
                             "sieve.vacation_min_period": "0"})
        self.script("alice@example.org", 'require ["date", "relational", "vacation-seconds"];\n'
                    'if allof(currentdate :value "ge" "date" "%s", currentdate :value "le" "date" "%s")\n'
                    '{ vacation :seconds 0 "Away this week."; }\n' % (first, last))
        self.script("bob@example.org", 'require ["date", "relational", "vacation"];\n'
                    'if currentdate :value "lt" "date" "%s" { vacation "Long ago."; }\n' % first)
        self.d.start()
        c = session(self.d)
        transaction(c, ["alice@example.org", "bob@example.org"], MSG)
        transaction(c, ["alice@example.org", "bob@example.org"], MSG.replace("<m1@", "<m2@"))
        self.smtp.wait(2)
        time.sleep(0.3)
        self.assertEqual(len(self.smtp.received), 2, self.d.read_log())
        for sender, rcpts, data in self.smtp.received:
            self.assertEqual((sender, rcpts), ("", ["s@example.net"]))
            self.assertIn(b"Away this week.", data)
        self.assertEqual(len(self.d.messages("bob@example.org")), 2)

    def test_vacation_seconds_under_the_minimum(self):
        # RFC 6131 2: "If 0 <= v(spec) < v(min), then v(eff) = v(min)" (the
        # default minimum is a day, as Pigeonhole's)
        self.script("alice@example.org", 'require "vacation-seconds";\nvacation :seconds 1 "In a meeting.";\n')
        self.d.start()
        c = session(self.d)
        transaction(c, ["alice@example.org"], MSG)
        self.smtp.wait(1)
        time.sleep(1.5)
        transaction(c, ["alice@example.org"], MSG.replace("<m1@", "<m2@"))
        time.sleep(0.3)
        self.assertEqual(len(self.smtp.received), 1)
        self.assertIn("answered already", self.d.read_log())

if __name__ == "__main__":
    main()
