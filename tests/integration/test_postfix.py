"""The real stack (issue 9): a private Postfix (Debian's package, its own
config and queue directories, loopback only, started and stopped by the
test) hands mail to lmtpd over a UNIX socket and over TCP with XFORWARD, as
docs/postfix.md says; Dovecot's imap reads what lmtpd wrote.

- mail submitted to Postfix's smtpd by swaks lands in the Maildirs, and the
  Received header lmtpd writes names the original client (XFORWARD);
- an unknown user is refused by lmtpd and bounced by Postfix (the bounce
  itself comes back through lmtpd to the sender's Maildir);
- a tempfail verdict from a callout service leaves the mail in Postfix's
  queue; once the service accepts, a queue flush delivers it exactly once;
- Dovecot sees the messages, the subaddress folder and the Junk folder.

Needs root (Postfix's master)."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from lmtptest import Callout, Daemon, main
from test_clients import tool
from test_delivery import dovecot

ROOT = os.geteuid() == 0


class Postfix:
    def __init__(self, lmtp_unix, lmtp_port, settings=()):
        self.dir = tempfile.mkdtemp(prefix="postfix-test-")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        for sub in ("etc", "spool", "data"):
            os.mkdir(os.path.join(self.dir, sub))
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        shutil.copy("/etc/postfix/master.cf", self.etc)
        if os.path.exists("/etc/postfix/dynamicmaps.cf"):
            shutil.copy("/etc/postfix/dynamicmaps.cf", self.etc)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = os.path.join(self.dir, "maillog")
        # the main.cf lines of docs/postfix.md, plus what a private instance needs
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("""compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.test
myorigin = mx.test
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
default_transport = error:no mail leaves this test
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
# --- docs/postfix.md ---
virtual_mailbox_domains = example.org, example.net
virtual_transport = lmtp:unix:{sock}
transport_maps = inline:{{ example.net=lmtp:inet:127.0.0.1:{port} }}
# lmtpd decides who exists (550 -> bounce); see docs/postfix.md
smtpd_reject_unlisted_recipient = no
lmtp_send_xforward_command = yes
""".format(d=self.dir, sock=lmtp_unix, port=lmtp_port))
        if settings:  # "name = value" lines that replace the ones above
            self.postconf("-e", *settings)
        self.postconf("-F", "*/*/chroot = n")
        self.postconf("-M#", "smtp/inet")
        self.postconf("-Me", "127.0.0.1:%d/inet = 127.0.0.1:%d inet n - n - - smtpd" % (self.port, self.port))
        subprocess.run(["postfix", "-c", self.etc, "start"], check=True, capture_output=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("postfix did not start: " + self.maillog())

    def postconf(self, *args):
        subprocess.run(["postconf", "-c", self.etc] + list(args), check=True, capture_output=True)

    def maillog(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def queue(self):
        p = subprocess.run(["postqueue", "-c", self.etc, "-j"], capture_output=True, text=True)
        return [l for l in p.stdout.splitlines() if l.strip()]

    def flush(self):
        subprocess.run(["postqueue", "-c", self.etc, "-f"], capture_output=True)

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)
        # master's pid file names the process: wait until it is gone
        pidfile = os.path.join(self.dir, "spool", "pid", "master.pid")
        deadline = time.time() + 10
        while os.path.exists(pidfile) and time.time() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)


def swaks(port, frm, to, subject, helo="client.origin.example"):
    return subprocess.run([tool("swaks"), "--server", "127.0.0.1:%d" % port, "--helo", helo,
                           "--from", frm, "--to", to, "--header", "Subject: %s" % subject,
                           "--body", "body of %s" % subject],
                          capture_output=True, text=True, timeout=60)


@unittest.skipUnless(ROOT, "Postfix's master needs root")
class PostfixToLmtpd(unittest.TestCase):
    def setUp(self):
        self.callout = Callout("rcpt=later@* tempfail 451 4.7.1 Greylisted, try later\n"
                               "rcpt=spam@* quarantine Junk\n* accept\n")
        self.d = Daemon(extra={"server.xforward_hosts": "local, 127.0.0.1", "server.socket_mode": "0666",
                               "delivery.recipient_delimiter": "+", "delivery.detail_folder": "yes",
                               "service check.servers": self.callout.endpoint,
                               "service check.on_failure": "tempfail",
                               "rule all.match": "*", "rule all.services": "check"},
                        users=["joe@example.org", "ann@example.net", "bob@example.org", "later@example.org",
                               "spam@example.org"])
        self.d.start()
        self.pf = Postfix(self.d.sock, self.d.port)

    def tearDown(self):
        if os.environ.get("KEEP_POSTFIX"):
            print("# postfix log:\n" + self.pf.maillog()[-3000:])
        self.pf.stop()
        self.d.cleanup()
        self.callout.stop()

    def wait_for(self, what, cond, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.2)
        self.fail("%s; postfix log:\n%s\nlmtpd log:\n%s" % (what, self.pf.maillog()[-4000:],
                                                           self.d.read_log()[-4000:]))

    def test_unix_and_tcp_with_xforward_bounce_and_retry(self):
        # 1. UNIX socket (example.org) and TCP (example.net), one submission
        r = swaks(self.pf.port, "bob@example.org", "joe@example.org,joe+lists@example.org,ann@example.net", "hello")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.wait_for("delivery to joe and ann",
                      lambda: len(self.d.messages("joe@example.org")) == 1 and
                      len(self.d.messages("joe@example.org", folder=".lists")) == 1 and
                      len(self.d.messages("ann@example.net")) == 1)
        (_, joe), = self.d.messages("joe@example.org")
        # lmtpd's Received names the original client, from Postfix's XFORWARD
        self.assertRegex(joe, rb"Received: from client\.origin\.example \(localhost \[127\.0\.0\.1\]\)\n"
                              rb"\tby lmtp\.test with LMTP")
        self.assertIn(b"Subject: hello", joe)
        # and so does the callout service (RFC 4496 4.2/4.4 need the real source)
        seen = re.findall(r"for (.+?) from client (\S+) \((\S+)\)", self.callout.read_log())
        self.assertGreaterEqual(len(seen), 2, self.callout.read_log())  # the TCP and the UNIX socket deliveries
        self.assertTrue(all((a, h) == ("127.0.0.1", "client.origin.example") for _, a, h in seen), seen)
        log = self.pf.maillog()
        self.assertRegex(log, r"to=<joe@example\.org>, relay=[^,]*lmtpd\.sock\[?[^,]*, .*status=sent")
        self.assertRegex(log, r"to=<ann@example\.net>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent"
                         % self.d.port)

        # 2. an unknown user: 550 from lmtpd, Postfix bounces to the sender
        r = swaks(self.pf.port, "bob@example.org", "nobody-here@example.org", "unknown")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.wait_for("the bounce in bob's Maildir", lambda: len(self.d.messages("bob@example.org")) == 1)
        (_, bounce), = self.d.messages("bob@example.org")
        self.assertIn(b"MAILER-DAEMON", bounce)
        self.assertRegex(bounce, rb"550 5\.1\.1")
        self.assertRegex(self.pf.maillog(), r"to=<nobody-here@example\.org>.*status=bounced")

        # 3. a tempfail verdict: the mail waits in Postfix's queue
        r = swaks(self.pf.port, "bob@example.org", "later@example.org", "greylisted")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.wait_for("a deferral", lambda: re.search(r"to=<later@example\.org>.*status=deferred.*451 4\.7\.1",
                                                      self.pf.maillog()) is not None)
        self.assertEqual(len(self.pf.queue()), 1)
        self.assertEqual(self.d.messages("later@example.org"), [])
        # the service changes its mind; the retry delivers exactly once
        port = self.callout.port
        self.callout.stop()
        self.callout = Callout("rcpt=spam@* quarantine Junk\n* accept\n", listen="inet:127.0.0.1:%d" % port)
        self.pf.flush()
        self.wait_for("the retried delivery", lambda: len(self.d.messages("later@example.org")) == 1)
        self.wait_for("an empty queue", lambda: self.pf.queue() == [])
        self.pf.flush()
        time.sleep(1)
        self.assertEqual(len(self.d.messages("later@example.org")), 1)

        # 4. a quarantine verdict files into Junk
        r = swaks(self.pf.port, "bob@example.org", "spam@example.org", "junk")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.wait_for("the Junk copy", lambda: len(self.d.messages("spam@example.org", folder=".Junk")) == 1)

        # 5. Dovecot reads it all: INBOX, the subaddress folder, Junk
        home = os.path.dirname(self.d.maildir("joe@example.org"))
        out = dovecot("maildir:DATA/Maildir", "a LIST \"\" \"*\"\r\nb SELECT INBOX\r\n"
                      "c EXAMINE lists\r\nd FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\ne LOGOUT\r\n", home)
        self.assertRegex(out, r'\* LIST \([^)]*\) "\." lists')
        self.assertIn("* 1 EXISTS", out)
        self.assertIn("Subject: hello", out)
        out = dovecot("maildir:DATA/Maildir", "a EXAMINE Junk\r\nb FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n"
                      "c LOGOUT\r\n", os.path.dirname(self.d.maildir("spam@example.org")))
        self.assertIn("* 1 EXISTS", out)
        self.assertIn("Subject: junk", out)


if __name__ == "__main__":
    main()
