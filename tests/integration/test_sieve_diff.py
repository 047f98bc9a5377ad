"""Differential tests: `sieve-lite test` against Dovecot Pigeonhole's
`sieve-test` on the same scripts, messages and envelopes.  Both results are
reduced to what would happen to the message (stores with their flags,
redirects, rejects, vacation); discard is the absence of stores.  Scripts
that one side refuses to compile must be refused by the other too."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from lmtptest import LMTPD, main

SIEVE_LITE = os.environ.get("SIEVE_LITE") or os.path.join(os.path.dirname(LMTPD), "..", "sieve-lite", "sieve-lite")
SIEVE_TEST = shutil.which("sieve-test") or "/usr/bin/sieve-test"

MESSAGES = {
    "plain": ("From: Alice Example <alice@example.com>\nTo: bob@example.org, \"Carol\" <carol+news@example.org>\n"
              "Cc: team@lists.example.org\nSubject: Weekly report: status GREEN\nX-Priority: 3\n"
              "Message-ID: <r1@example.com>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n\n"
              "Hello team,\nthe weekly numbers are in. Budget 1200, spent 950.\n-- \nAlice\n"),
    "mime": ("From: \"=?utf-8?q?J=C3=B6rg?=\" <joerg@example.de>\nTo: bob@example.org\n"
             "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_Berlin?=\nMIME-Version: 1.0\n"
             "Content-Type: multipart/mixed; boundary=\"b1\"\nX-Spam-Level: ****\nX-Count: 42\n\n"
             "--b1\nContent-Type: text/plain; charset=utf-8\n\nViele Gr\xc3\xbc\xc3\x9fe, invoice attached.\n"
             "--b1\nContent-Type: application/pdf; name=\"invoice.pdf\"\nContent-Transfer-Encoding: base64\n\n"
             "JVBERi0xLjQK\n--b1--\n"),
    "encoded": ("From: =?utf-8?b?w4Frb2I=?= <jakob@example.net>\nTo: =?utf-8?q?B=C3=B6b?= <bob@example.org>\n"
                "Subject: =?utf-8?q?=3D=3Futf-8=3Fq=3Fhidden=3F=3D?=\nX-Count: 3\n\nbody\n"),
    "list": ("From: announce-bounces@lists.example.org\nSender: owner-announce@lists.example.org\n"
             "To: announce@lists.example.org\nList-Id: <announce.lists.example.org>\nPrecedence: list\n"
             "Subject: [announce] New release 2.0\nX-Count: 7\n\nRelease notes follow.\n"),
}

# (sieve-test cannot take a null sender)
ENVELOPES = [("alice@example.com", "bob@example.org"), ("MAILER-DAEMON@example.net", "carol+news@example.org")]

SCRIPTS = [
    'keep;',
    'discard;',
    'stop;',
    '',
    'require "fileinto";\nfileinto "Archive";',
    'require "fileinto";\nfileinto "Archive"; keep;',
    'require "fileinto";\nfileinto "Archive"; fileinto "Archive";',
    'require ["fileinto", "copy"];\nfileinto :copy "Archive";',
    'redirect "other@example.net";',
    'require "copy";\nredirect :copy "other@example.net";',
    'redirect "other@example.net"; keep;',
    'require "reject";\nreject "Go away";',
    'require "fileinto";\nif header :contains "subject" "report" { fileinto "Reports"; }',
    'require "fileinto";\nif header :is "subject" "weekly report: status green" { fileinto "Exact"; }',
    'require "fileinto";\nif header :comparator "i;octet" :is "subject" "weekly report: status green" '
    '{ fileinto "Octet"; }',
    'require "fileinto";\nif header :matches "subject" "*status ???E?" { fileinto "Glob"; }',
    'require "fileinto";\nif header :matches "subject" "\\\\*" { fileinto "Star"; } else { fileinto "NoStar"; }',
    'require "fileinto";\nif address :domain :is "from" "example.com" { fileinto "Dom"; }',
    'require "fileinto";\nif address :localpart :is ["to", "cc"] "team" { fileinto "Team"; }',
    'require "fileinto";\nif address :all :contains "to" "carol" { fileinto "Carol"; }',
    'require ["fileinto", "subaddress"];\nif address :detail "to" "news" { fileinto "News"; }',
    'require ["fileinto", "subaddress"];\nif address :user "to" "carol" { fileinto "CarolUser"; }',
    'require ["fileinto", "envelope"];\nif envelope :localpart :is "from" "mailer-daemon" { fileinto "Bounce"; }',
    'require ["fileinto", "envelope", "subaddress"];\nif envelope :detail "to" "news" { fileinto "EnvNews"; }',
    'require ["fileinto", "envelope"];\nif envelope :domain "to" "example.org" { fileinto "EnvDom"; }',
    'require "fileinto";\nif exists ["list-id", "x-count"] { fileinto "Lists"; }',
    'require "fileinto";\nif not exists "list-id" { fileinto "Direct"; }',
    'require "fileinto";\nif size :over 300 { fileinto "Big"; } elsif size :under 100 { fileinto "Tiny"; } '
    'else { fileinto "Medium"; }',
    'require "fileinto";\nif size :over 1K { fileinto "Big"; }',
    'require "fileinto";\nif allof (header :contains "from" "alice", not header :contains "subject" "x") '
    '{ fileinto "All"; }',
    'require "fileinto";\nif anyof (false, header :contains "subject" "release") { fileinto "Any"; }',
    'require "fileinto";\nif true { fileinto "T"; stop; } fileinto "After";',
    'require ["fileinto", "comparator-i;ascii-numeric"];\nif header :comparator "i;ascii-numeric" :is '
    '"x-count" "42" { fileinto "FortyTwo"; }',
    'require ["fileinto", "relational", "comparator-i;ascii-numeric"];\nif header :value "gt" :comparator '
    '"i;ascii-numeric" "x-count" "10" { fileinto "Many"; }',
    'require ["fileinto", "relational"];\nif address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "3" '
    '{ fileinto "Crowd"; }',
    'require ["fileinto", "variables"];\nif header :matches "subject" "*: *" { fileinto "By-${1}"; }',
    'require ["fileinto", "variables"];\nset :lower "f" "INBOX.Sub"; fileinto "${f}";',
    'require ["fileinto", "variables"];\nif address :matches :domain "from" "*.*" '
    '{ set "d" "${1}"; fileinto "Dom-${d}"; }',
    'require ["fileinto", "imap4flags"];\naddflag "\\\\Flagged"; fileinto "Flagged"; removeflag "\\\\Flagged"; keep;',
    'require ["fileinto", "imap4flags"];\nfileinto :flags ["\\\\Seen", "\\\\Answered"] "Read";',
    'require ["imap4flags"];\nsetflag "\\\\Seen";',
    'require ["fileinto", "imap4flags"];\nsetflag "\\\\Seen"; if hasflag "\\\\Seen" { fileinto "Has"; }',
    'require ["fileinto", "body"];\nif body :contains "invoice" { fileinto "Invoices"; }',
    'require ["fileinto", "body"];\nif body :contains "numbers are in" { fileinto "Numbers"; }',
    'require "vacation";\nvacation :days 7 "I am away.";',
    'require ["vacation", "fileinto"];\nvacation "Away"; fileinto "Seen";',
    'require "fileinto";\nif header :contains "subject" "text:" { fileinto "X"; }\n'
    '# a comment\n/* and a\n block */',
    'require "vacation";\nvacation :subject "Out" text:\nI am out.\n..dot-stuffed line\n.\n;',
    'require "fileinto";\nif header :contains "subject" "Gr\u00fc\u00dfe" { fileinto "Umlaut"; }',
    'require "fileinto";\nif header :contains "from" "J\u00f6rg" { fileinto "Joerg"; }',
    'require "fileinto";\nif header :contains "content-type" "multipart" { fileinto "Multipart"; }',
    'require ["variables"];\nif header :matches "subject" "*i*" { set "x" "${2}"; }\nredirect "${x}@b.c";',
    'require ["editheader", "fileinto"];\naddheader "X-Tag" "1";\nif header :is "x-tag" "1" '
    '{ fileinto "Tagged"; }',
    'require ["variables", "fileinto"];\nset "a" "x"; set "b" "${a}${a}"; if string :is "${b}" "xx" '
    '{ fileinto "Str"; }',
    'require ["fileinto", "mailbox"];\nfileinto :create "Bench"; stop;',
    'require ["fileinto", "mailbox"];\nif mailboxexists "INBOX" { fileinto "Yes"; }',
    'require ["fileinto", "mailbox"];\nif mailboxexists ["INBOX", "Nope"] { fileinto "Yes"; }',
    'require ["reject", "fileinto"];\nfileinto "A"; reject "x";',
    'require "reject";\nreject "x"; keep;',
    'require "reject";\ndiscard; reject "x";',
    'require "reject";\nreject "x"; redirect "a@b.c";',
    'require ["reject", "vacation"];\nvacation "v"; reject "x";',
    'require "reject";\nreject "x"; reject "y";',
    'require ["editheader", "fileinto"];\ndeleteheader :contains "subject" "report";\n'
    'if exists "subject" { fileinto "Still"; }',
    'require ["editheader", "fileinto"];\naddheader :last "X-New" "v";\ndeleteheader :index 1 :last "X-New";\n'
    'if exists "x-new" { fileinto "Still"; }',
    'require "fileinto";\nif header :is "subject" "hidden" { fileinto "Twice"; }\n'
    'if header :is "subject" "=?utf-8?q?hidden?=" { fileinto "Once"; }',
    'require "fileinto";\nif address :is "to" "bob@example.org" { fileinto "EncTo"; }',
    'require "fileinto";\nif header :contains "from" "\u00c1kob" { fileinto "Akob"; }',
    # issue 17, changing and sending the message: the same folder twice is one store with the last flags
    # (RFC 5232 3); editheader before and after stores (the header per store: test_sieve.py)
    'require ["fileinto", "imap4flags"];\nfileinto :flags "\\\\Seen" "A"; fileinto :flags "\\\\Flagged" "A";',
    'require ["fileinto", "imap4flags"];\nkeep :flags "\\\\Seen"; fileinto :flags "\\\\Deleted" "INBOX";',
    'require ["editheader", "fileinto", "copy"];\nfileinto :copy "A"; addheader "X-One" "1"; redirect "r@b.c";',
    # enotify (RFC 5435) by mailto (RFC 5436)
    'require ["enotify", "variables"];\nif header :matches "subject" "*" { notify :message "${1}" :importance "1" '
    '"mailto:n@example.com?cc=c@example.com&subject=x"; }',
    'require "enotify";\nnotify "mailto:a@example.com"; notify "mailto:a@example.com?subject=2";\n'
    'notify "mailto:b@example.com?cc=a@example.com";',
    'require ["enotify", "fileinto"];\nif valid_notify_method ["mailto:a@b.c", "mailto:?to=x@y.z"] { fileinto "V"; }\n'
    'if valid_notify_method "xmpp:a@b.c" { fileinto "X"; }',
    'require ["enotify", "fileinto"];\nif notify_method_capability "mailto:a@b.c" "online" "maybe" { fileinto "M"; }\n'
    'if notify_method_capability :is "mailto:a@b.c" "online" "yes" { fileinto "Y"; }',
    'require ["enotify", "variables"];\nset :encodeurl "b" "a&b=c d";\nnotify "mailto:e@example.com?body=${b}";',
    'require ["enotify", "variables"];\nset "m" "xmpp:a@b.c";\nnotify "${m}";',
    'require "enotify";\nnotify :importance "0" "mailto:a@b.c";',
    'require "enotify";\nnotify "mailto:a@";',
    'require "variables";\nset :encodeurl "a" "b";',
    'require ["enotify", "reject"];\nnotify "mailto:a@b.c"; reject "x";',
    # errors both must refuse
    'require "mailbox";\nif true { keep :create; }',
    'fileinto "X";',
    'if header "subject" { keep; }',
    'require "nonexistent";',
    'keep',
    'if true { keep; } else keep;',
    'elsif true { keep; }',
    'redirect "not-an-address";',
    'require "fileinto";\nfileinto :flags "x" "Y";',
    'require ["relational"];\nif header :value "zz" "subject" "a" { keep; }',
]


# Where we differ from Pigeonhole on purpose: (script, ours, Pigeonhole's), each with the RFC line that decides.
ON_PURPOSE = [
    # RFC 6068 2: 'to = addr-spec *("," addr-spec )': a comma between the URI's addresses is allowed
    # (Pigeonhole refuses the script: "invalid character ',' in 'to' part")
    ('require "enotify";\nnotify "mailto:a@example.com,b@example.com";',
     [("notify", "a@example.com,b@example.com"), ("store", "INBOX", "")], "error"),
]

def ours(script, message, sender, rcpt, tmp):
    sp, mp = os.path.join(tmp, "s.sieve"), os.path.join(tmp, "m.eml")
    with open(sp, "w") as f:
        f.write(script)
    with open(mp, "w") as f:
        f.write(message)
    r = subprocess.run([SIEVE_LITE, "test", sp, mp, "--from", sender, "--to", rcpt], capture_output=True, text=True)
    if r.returncode != 0:
        return "error"
    acts = []
    for line in r.stdout.splitlines():
        m = re.match(r'(keep|fileinto|redirect|reject|ereject|vacation|discard|notify)(?: "(.*)")?', line)
        if m:
            kind, arg = m.group(1), m.group(2)
            if kind == "keep":
                acts.append(["store", "INBOX", ""])
            elif kind == "fileinto":
                acts.append(["store", arg, ""])
            elif kind in ("redirect", "reject"):
                acts.append([kind, arg])
            elif kind == "vacation":
                acts.append(["vacation"])
            elif kind == "notify":
                acts.append(["notify", ""])
        elif line.startswith("  recipients: ") and acts and acts[-1][0] == "notify":
            acts[-1][1] = ",".join(sorted(line[14:].lower().split(", ")))
        elif line.startswith("  flags: ") and acts and acts[-1][0] == "store":
            acts[-1][2] = " ".join(sorted(line[9:].lower().split()))
        elif line.startswith("error: "):
            return "runtime-error"
    return sorted(map(tuple, acts))


def pigeonhole(script, message, sender, rcpt, tmp):
    sp, mp, conf = os.path.join(tmp, "s.sieve"), os.path.join(tmp, "m.eml"), os.path.join(tmp, "dovecot.conf")
    with open(conf, "w") as f:
        f.write("mail_uid = nobody\nmail_gid = nogroup\nmail_location = maildir:%s/Maildir\nprotocols =\n"
                "plugin {\n  sieve_extensions = +editheader +enotify\n}\n" % tmp)
    r = subprocess.run([SIEVE_TEST, "-c", conf, "-f", sender or "<>", "-r", rcpt, "-a", rcpt, sp, mp],
                       capture_output=True, text=True)
    if "failed to compile" in r.stderr:
        return "error"
    if "final result: failed" in r.stderr:
        return "runtime-error"
    acts = []
    for line in r.stdout.splitlines():
        s = line.strip()
        m = re.match(r"\* store message in folder: (.*)", s)
        if m:
            acts.append(["store", m.group(1), ""])
            continue
        m = re.match(r"\+ (?:add|set) IMAP flags: (.*)", s)
        if m and acts and acts[-1][0] == "store":
            acts[-1][2] = " ".join(sorted(m.group(1).lower().split()))
            continue
        m = re.match(r"\* redirect message to: <(.*)>", s)
        if m:
            acts.append(["redirect", m.group(1)])
            continue
        m = re.match(r"\* reject message with reason: (.*)", s)
        if m:
            acts.append(["reject", m.group(1)])
            continue
        if s.startswith("* send vacation message"):
            acts.append(["vacation"])
        if s.startswith("* send notification with method"):
            acts.append(["notify", ""])
        m = re.match(r"\+ (?:To|Cc): (.*)", s)
        if m and acts and acts[-1][0] == "notify":
            acts[-1][1] = ",".join(sorted(filter(None, acts[-1][1].split(",") + [m.group(1).lower()])))
    return sorted(map(tuple, acts))


@unittest.skipUnless(os.path.exists(SIEVE_TEST), "Pigeonhole's sieve-test is not installed (dovecot-sieve)")
class DifferentialTest(unittest.TestCase):
    def test_against_pigeonhole(self):
        tmp = tempfile.mkdtemp(prefix="sieve-diff-")
        os.chmod(tmp, 0o777)
        failures = []
        runs = 0
        try:
            for i, script in enumerate(SCRIPTS):
                for mname, message in MESSAGES.items():
                    for sender, rcpt in ENVELOPES:
                        a = ours(script, message, sender, rcpt, tmp)
                        b = pigeonhole(script, message, sender, rcpt, tmp)
                        runs += 1
                        if a != b:
                            failures.append("script %d on %s from <%s> to <%s>:\n%s\n  sieve-lite: %s\n"
                                            "  pigeonhole: %s" % (i, mname, sender, rcpt, script, a, b))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertGreater(runs, 300)
        self.assertEqual(failures, [], "\n\n".join(failures[:10]))

    def test_differs_on_purpose(self):
        tmp = tempfile.mkdtemp(prefix="sieve-diff-")
        os.chmod(tmp, 0o777)
        try:
            for script, want_ours, want_pigeonhole in ON_PURPOSE:
                message, (sender, rcpt) = MESSAGES["plain"], ENVELOPES[0]
                self.assertEqual(ours(script, message, sender, rcpt, tmp), want_ours, script)
                self.assertEqual(pigeonhole(script, message, sender, rcpt, tmp), want_pigeonhole, script)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
