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
    # dates (RFC 5260): an obsolete zone, Received fields with and without one
    "dated": ("From: boss@example.com\nTo: bob@example.org, carol@example.org\nCc: team@example.org\n"
              "Subject: Dated\nDate: Thu, 26 Feb 2026 14:30:45 EST\n"
              "Received: from a.example by mx.example.org; Sat, 28 Feb 2026 23:10:00 +0100\n"
              "Received: from b.example by a.example; Fri, 27 Feb 2026 08:00:00 +0000\n"
              "Received: from c.example by b.example\nX-Spam: yes\nX-Spam: maybe\n"
              "X-Leap: Sat, 28 Feb 2026 10:00:60 +0000\nX-Bad: Sun, 29 Feb 2025 10:00:00 +0000\n"
              "Message-ID: <d1@example.com>\n\nbody\n"),
    # nested multiparts with a prologue and epilogue each, quoted-printable
    # Latin-1 and base64 text, an attachment, a message/rfc822 (RFC 5173,
    # RFC 5703); its Subject holds a two-octet character for '?'
    "nested": ("From: Ann <ann@example.com>\nTo: bob@example.org\nSubject: caf\u00e9 x\nMIME-Version: 1.0\n"
               "Content-Type: multipart/mixed; boundary=\"o\"\n\npreamble-outer\n"
               "--o\nContent-Type: multipart/alternative; boundary=\"i\"\n\ninner-pro\n"
               "--i\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n"
               "Content-From: tim@example.com\n\nGr=FC=DFe MAKE MONEY FAST\n"
               "--i\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
               "PGI+SGVsbG88L2I+Cg==\n--i--\ninner-epi\n"
               "--o\nContent-Type: application/pdf; name=\"important-report.pdf\"\n"
               "Content-Disposition: attachment; filename=\"important-report.pdf\"\n"
               "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n"
               "--o\nContent-Type: message/rfc822\n\nFrom: x@example.net\nSubject: nested hello\n\n"
               "Please say Hello\n--o--\nouter-epilogue\n"),
    # RFC 5173 5.2's example
    "rfc5173": ("From: Whomever <whomever@example.com>\nTo: Someone <someone@example.org>\n"
                "Date: Mon, 23 Nov 2026 10:00:00 +0000\nSubject: whatever\n"
                "Content-Type: multipart/mixed; boundary=outer\n\n"
                "This is a multi-part message in MIME format.\n\n"
                "--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
                "This is a nested multi-part message in MIME format.\n\n"
                "--inner\nContent-Type: text/plain; charset=\"us-ascii\"\n\nHello\n\n"
                "--inner\nContent-Type: text/html; charset=\"us-ascii\"\n\n<html><body>Hello</body></html>\n\n"
                "--inner--\n\nThis is the end of the inner MIME multipart.\n\n"
                "--outer\nContent-Type: message/rfc822\n\nFrom: Someone Else\nSubject: hello request\n\n"
                "Please say Hello\n\n--outer--\n\nThis is the end of the outer MIME multipart.\n"),
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
    # date, currentdate, index (RFC 5260); currentdate only where the clock does not decide
    'require ["date", "fileinto", "variables"];\nif date :matches :zone "+0130" "date" "std11" "*" { set "a" "${0}"; }\n'
    'if date :matches :zone "-0000" "date" "iso8601" "*" { set "b" "${0}"; }\n'
    'if date :matches :zone "+0000" "date" "julian" "*" { set "c" "${0}"; }\n'
    'if date :matches :zone "-0730" "date" "zone" "*" { set "d" "${0}"; }\n'
    'if date :matches "date" "weekday" "*" { set "e" "${0}"; }\nfileinto "${a}|${b}|${c}|${d}|${e}";',
    'require ["date", "fileinto", "variables"];\nif date :matches :originalzone "date" "iso8601" "*" { set "a" "${0}"; }\n'
    'if date :matches "date" "date" "*" { set "b" "${0}"; }\nif date :matches "date" "time" "*" { set "c" "${0}"; }\n'
    'if date :matches :zone "+1400" "date" "year" "*" { set "d" "${0}-"; }\n'
    'if date :matches :zone "+1400" "date" "month" "*" { set "d" "${d}${0}-"; }\n'
    'if date :matches :zone "+1400" "date" "day" "*" { set "d" "${d}${0}T"; }\n'
    'if date :matches :zone "+1400" "date" "hour" "*" { set "d" "${d}${0}:"; }\n'
    'if date :matches :zone "+1400" "date" "minute" "*" { set "d" "${d}${0}:"; }\n'
    'if date :matches :zone "+1400" "date" "second" "*" { set "d" "${d}${0}"; }\nfileinto "${a}|${b}|${c}|${d}";',
    'require ["date", "fileinto", "variables"];\nif date :matches :originalzone "received" "iso8601" "*" '
    '{ fileinto "${0}"; }',
    'require ["date", "fileinto", "variables"];\nif date :matches :originalzone "x-leap" "iso8601" "*" '
    '{ fileinto "${0}"; }\nif date :matches "x-bad" "date" "*" { fileinto "Bad"; }',
    'require ["date", "fileinto", "variables", "index"];\nif date :matches :index 2 "received" "iso8601" "*" '
    '{ fileinto "A${0}"; }\nif date :matches :index 1 :last "received" "date" "*" { fileinto "L${0}"; }',
    'require ["date", "fileinto", "relational", "comparator-i;ascii-numeric"];\n'
    'if date :count "eq" :comparator "i;ascii-numeric" "date" "year" "1" { fileinto "One"; } else { fileinto "Zero"; }',
    'require ["date", "relational", "fileinto"];\nif allof(header :is "from" "boss@example.com",\n'
    '  date :value "ge" :originalzone "date" "hour" "09", date :value "lt" :originalzone "date" "hour" "17")\n'
    '{ fileinto "urgent"; }',
    'require ["date", "relational", "fileinto"];\nif anyof(date :is "received" "weekday" "0", '
    'date :is "received" "weekday" "6") { fileinto "weekend"; }',
    'require ["date", "relational", "fileinto"];\nif date :value "gt" :zone "-0500" "date" "iso8601" '
    '"2026-02-26T14:30:44-05:00" { fileinto "After"; }',
    'require ["date", "fileinto"];\nif date :zone "nonsense" "date" "year" "2026" { fileinto "Y"; }',
    'require ["date", "relational", "fileinto"];\nif currentdate :value "ge" "year" "2000" { fileinto "Now"; }',
    'require ["date", "relational", "fileinto", "comparator-i;ascii-numeric"];\n'
    'if currentdate :count "eq" :comparator "i;ascii-numeric" "std11" "1" { fileinto "Counted"; }',
    'require ["date", "fileinto"];\nif currentdate :zone "+0000" :is "zone" "+0000" { fileinto "Utc"; }',
    'require ["date", "fileinto"];\nif currentdate :matches "iso8601" "????-??-??T??:??:??*" { fileinto "Iso"; }',
    'require ["date", "relational", "vacation"];\nif allof(currentdate :value "ge" "date" "2000-01-01",\n'
    '  currentdate :value "le" "date" "2999-12-31") { vacation :days 7 "I am away."; }',
    'require ["fileinto", "index"];\nif header :index 2 :is "x-spam" "maybe" { fileinto "Second"; }',
    'require ["fileinto", "index"];\nif header :index 1 :last :is "x-spam" "yes" { fileinto "Last"; }',
    'require ["fileinto", "index"];\nif address :index 2 :is ["to", "cc"] "team@example.org" { fileinto "Cc"; }',
    # duplicate (RFC 7352): a first delivery (sieve-test keeps no state between runs)
    'require ["duplicate", "fileinto"];\nif duplicate { fileinto "Dup"; }',
    'require ["duplicate", "fileinto"];\nif duplicate :handle "h" :header "subject" :seconds 60 :last '
    '{ fileinto "Dup"; } else { fileinto "New"; }',
    'require ["duplicate", "variables", "fileinto"];\nif duplicate :uniqueid "x" :seconds 0 { fileinto "Dup"; }',
    # vacation :seconds (RFC 6131)
    'require "vacation-seconds";\nvacation :seconds 1800 "In a meeting.";',
    'require ["vacation-seconds", "vacation"];\nvacation :handle "auto" :seconds 0 "Received.";',
    # body transforms (RFC 5173 5)
    'require ["fileinto", "body"];\nif body :raw :contains "Gr=FC=DFe" { fileinto "Raw"; }',
    'require ["fileinto", "body"];\nif body :raw :contains "Content-Type: text/html" { fileinto "RawHdr"; }',
    'require ["fileinto", "body"];\nif body :raw :contains "Subject:" { fileinto "RawSubj"; }',
    'require ["fileinto", "body"];\nif body :raw :contains "PGI+SGVsbG8" { fileinto "RawB64"; }',
    'require ["fileinto", "body"];\nif body :raw :contains "MAKE MONEY FAST" { discard; }',
    'require ["fileinto", "body"];\nif body :content "text/plain" :contains "Gr\u00fc\u00dfe" { fileinto "Qp"; }',
    'require ["fileinto", "body"];\nif body :content "text/html" :contains "Hello</b" { fileinto "B64"; }',
    'require ["fileinto", "body"];\nif body :content "multipart" :contains "MIME" { fileinto "Prologue"; }',
    'require ["fileinto", "body"];\nif body :content "multipart" :is "inner-epi" { fileinto "Epilogue"; }',
    'require ["fileinto", "body"];\nif body :content "message/rfc822" :contains "hello" { fileinto "Enclosed"; }',
    'require ["fileinto", "body"];\nif body :content "message/rfc822" :contains "Please" { fileinto "EncBody"; }',
    'require ["fileinto", "body"];\nif body :content "text" :contains "Please say" { fileinto "Text"; }',
    'require ["fileinto", "body"];\nif body :content "" :contains "Please say" { fileinto "Any"; }',
    'require ["fileinto", "body"];\nif body :content "text/plain" :contains "Content-Type" { fileinto "Hdr"; }',
    'require ["fileinto", "body"];\nif body :content "text/" :contains "e" { fileinto "Slash"; }',
    'require ["fileinto", "body"];\nif body :content ["audio", "application/pdf"] :contains "" { fileinto "Pdf"; }',
    'require ["fileinto", "body"];\nif body :content "text" :contains "FAST" { fileinto "Fast"; }',
    'require ["fileinto", "body"];\nif body :text :contains "Hello" { fileinto "TextHello"; }',
    'require ["fileinto", "body", "variables"];\nif header :matches "subject" "*" {}\n'
    'if body :content "text" :matches "*e*" { fileinto "V-${1}"; }',
    # '?' is one octet under both comparators (RFC 5228 2.7.1)
    'require "fileinto";\nif header :matches "subject" "caf? x" { fileinto "One"; }',
    'require "fileinto";\nif header :matches "subject" "caf?? x" { fileinto "Two"; }',
    'require ["fileinto", "comparator-i;octet"];\nif header :comparator "i;octet" :matches "subject" "caf?? x" '
    '{ fileinto "TwoOctet"; }',
    'require ["fileinto", "comparator-i;octet"];\nif header :comparator "i;octet" :matches "subject" "Gr????e*" '
    '{ fileinto "Gruesse"; }',
    # foreverypart, break, mime, extracttext (RFC 5703)
    'require ["foreverypart", "mime", "variables", "fileinto"];\nset "n" "";\nforeverypart {\n'
    'if header :mime :matches :subtype "content-type" "*" { set "n" "${n}_${1}"; } else { set "n" "${n}_none"; } }\n'
    'fileinto "P${n}";',
    'require ["foreverypart", "variables", "fileinto"];\nset "n" "";\nforeverypart { set "n" "${n}a"; break; }\n'
    'fileinto "B${n}";',
    'require ["mime", "fileinto"];\nif header :mime :anychild :contenttype "Content-Type" "text/html" '
    '{ fileinto "Html"; }',
    'require ["mime", "fileinto"];\nif header :mime :type "Content-Type" "multipart" { fileinto "TopMulti"; }',
    'require ["mime", "foreverypart", "fileinto"];\nforeverypart { if allof (header :mime :param "filename" '
    ':contains "Content-Disposition" "important", header :mime :subtype "Content-Type" "pdf") '
    '{ fileinto "Important"; break; } }',
    'require ["mime", "fileinto"];\nif header :mime :anychild :param "name" :contains "Content-Type" "invoice" '
    '{ fileinto "Invoice"; }',
    'require ["mime", "fileinto"];\nif exists :mime :anychild "content-disposition" { fileinto "Att"; }',
    'require ["mime", "fileinto"];\nif address :mime :anychild :is :all "from" "x@example.net" { fileinto "X"; }',
    'require ["mime", "fileinto"];\nif address :mime :is :all "from" "x@example.net" { fileinto "TopX"; }',
    'require ["foreverypart", "mime", "variables", "extracttext", "fileinto"];\nforeverypart { '
    'if header :mime :subtype "content-type" "plain" { extracttext :first 4 "t"; '
    'if string :is "${t}" "Hell" { fileinto "Hell"; } } }',
    'require ["foreverypart", "mime", "variables", "extracttext", "fileinto"];\nset "n" "";\nforeverypart { '
    'extracttext "t"; if string :is "${t}" "" { set "n" "${n}e"; } else { set "n" "${n}t"; } }\nfileinto "E${n}";',
    # regex (draft-ietf-sieve-regex)
    'require ["regex", "fileinto", "variables"];\nif header :regex "subject" "^([a-z]+)ly (report)" '
    '{ fileinto "R-${1}-${2}"; }',
    'require ["regex", "fileinto", "variables"];\nif header :regex "from" "([a-z]+)@([a-z]+)\\\\.(com|de)" '
    '{ fileinto "F-${0}-${2}-${3}"; }',
    'require ["regex", "fileinto", "comparator-i;octet"];\nif header :comparator "i;octet" :regex "subject" '
    '"^WEEKLY" { fileinto "Case"; }',
    'require ["regex", "fileinto"];\nif header :regex "subject" "^caf.. x$" { fileinto "Octets"; }',
    'require ["regex", "fileinto"];\nif address :regex :domain "from" "^example\\\\.(com|org)$" { fileinto "D"; }',
    'require ["regex", "fileinto", "body"];\nif body :regex "numbers? are" { fileinto "BodyRe"; }',
    'require ["regex", "fileinto"];\nif header :regex "subject" "(" { keep; }',
    'require "fileinto";\nif header :regex "subject" "x" { keep; }',
    'require ["regex", "comparator-i;ascii-numeric"];\nif header :comparator "i;ascii-numeric" :regex "x-count" "4" '
    '{ keep; }',
    'require "foreverypart";\nbreak;',
    'require "foreverypart";\nforeverypart :name "a" { break :name "b"; }',
    'require ["foreverypart", "extracttext", "variables"];\nextracttext "x";',
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
    'require ["date"];\nif date :zone "+0100" :originalzone "date" "year" "2026" { keep; }',
    'require ["date"];\nif currentdate :originalzone "year" "2026" { keep; }',
    'require ["date", "index"];\nif date :last "date" "year" "2026" { keep; }',
    'require ["date"];\nif date :index 1 "date" "year" "2026" { keep; }',
    'require "duplicate";\nif duplicate :header "subject" :uniqueid "x" { keep; }',
    'require "vacation-seconds";\nvacation :days 1 :seconds 10 "x";',
    'require "vacation";\nvacation :seconds 10 "x";',
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

# The scripts include (RFC 6609) finds: NAME.sieve in the personal and the
# global directory, given to both sides (sieve-lite --dir/--global-dir,
# Pigeonhole's plugin sieve/sieve_global).  Those of RFC 6609 3.2 and 3.4.
INCLUDED = {
    "personal": {
        "always_allow": 'if address :is "from" "boss@example.com"\n{\n    keep;\n}\n'
                        'elsif address :is "from" "ceo@example.com"\n{\n    keep;\n}\n',
        "spam_tests": 'require ["reject"];\nif header :contains "Subject" "XXXX"\n{\n'
                      '    reject "Subject XXXX is unacceptable.";\n}\n'
                      'elsif address :is "from" "money@example.com"\n{\n'
                      '    reject "Mail from this sender is unwelcome.";\n}\n',
        "mailing_lists": 'require ["fileinto"];\nif header :is "List-ID" "sieve.ietf.org"\n{\n'
                         '    fileinto "lists.sieve";\n}\nelsif header :is "List-ID" "ietf-imapext.imc.org"\n{\n'
                         '    fileinto "lists.imapext";\n}\n',
        "subject_tests": 'require ["include", "variables"];\nglobal ["test", "test_mailbox"];\n\n'
                         'if header :contains "Subject" "${test}"\n{\n    set "test_mailbox" "spam-${test}";\n}\n',
        "file_lists": 'require ["include", "fileinto"];\nif exists "list-id" { fileinto "Lists"; return; }\n'
                      'fileinto "NotList";',
        "count": 'require ["include", "variables"];\nglobal "n";\nset "n" "${n}x";',
        "stopper": 'require "include";\nstop;',
        "setlocal": 'require ["variables", "fileinto"];\nset "local" "inner";\nfileinto "in-${local}";',
        "recurse": 'require "include";\ninclude "recurse";',
    },
    "global": {
        "spam_tests": 'require ["reject"];\nif anyof (header :contains "Subject" "$$",\n'
                      '          header :contains "Subject" "Make money")\n{\n    reject "No thank you.";\n}\n',
        "policy": 'require ["fileinto", "relational", "comparator-i;ascii-numeric"];\n'
                  'if header :value "ge" :comparator "i;ascii-numeric" "x-count" "7" { fileinto "Counted"; }',
    },
}

# include (RFC 6609), ihave (RFC 5463), environment (RFC 5183) and
# special-use (RFC 8579), where both sides define them the same way.
SCRIPTS += [
    # RFC 6609 3.2's example (spam_tests' reject against mailing_lists'
    # fileinto: a runtime error on both sides)
    'require ["include"];\ninclude :personal "always_allow";\ninclude :global "spam_tests";\n'
    'include :personal "spam_tests";\ninclude :personal "mailing_lists";',
    'require ["include"];\ninclude :personal "always_allow";\ninclude :personal "mailing_lists";',
    # 3.4.1's example
    'require ["fileinto", "include", "variables", "relational"];\nglobal "test";\nglobal "test_mailbox";\n'
    'set "test" "$$";\ninclude "subject_tests";\nset "test" "Make money";\ninclude "subject_tests";\n'
    'set "test" "report";\ninclude "subject_tests";\n'
    'if string :count "eq" "${test_mailbox}" "1"\n{\n    fileinto "${test_mailbox}";\n    stop;\n}',
    # 3.4.2's example
    'require ["variables", "include", "vacation"];\nglobal "i_am_on_vacation";\n'
    'set "global.i_am_on_vacation" "1";\nif string :is "${i_am_on_vacation}" "1"\n'
    '{\n    vacation "It\'s true, I am on vacation.";\n}',
    # return (3.3), stop in an included script (3.2), :once, :optional, private variables (3.4)
    'require ["include", "fileinto"];\ninclude "file_lists";\nfileinto "After";',
    'require ["include", "fileinto"];\nreturn;\nfileinto "Never";',
    'require ["include", "fileinto"];\ninclude "stopper";\nfileinto "Never";',
    'require ["include", "variables", "fileinto"];\nglobal "n";\ninclude :once "count";\n'
    'include :once "count";\ninclude "count";\nfileinto "n-${n}";',
    'require ["include", "fileinto"];\ninclude :optional "no_such_script";\nfileinto "Went-on";',
    'require ["include", "variables", "fileinto"];\nset "local" "outer";\ninclude "setlocal";\n'
    'fileinto "out-${local}";',
    'require ["include"];\ninclude :global "policy";',
    'require ["include"];\ninclude :personal :global "policy";',
    'require ["include"];\nglobal "x";',
    'require ["variables"];\nset "global.x" "1";',
    'require ["variables", "include"];\nset "global.12" "value";',
    'require ["include"];\ninclude "../spam_tests";',
    # ihave and error (RFC 5463)
    'require ["ihave", "fileinto"];\nif ihave "fileinto" { fileinto "Have"; }',
    'require ["ihave", "fileinto"];\nif ihave "x-no-such" { xnosuch "a" :b; fileinto "No"; }\n'
    'else { fileinto "Else"; }',
    'require ["ihave", "fileinto"];\nif ihave ["copy", "x-no-such"] { fileinto :copy "No"; }',
    'require ["ihave", "fileinto"];\nif ihave "copy" { fileinto :copy "Copied"; }',
    'require ["ihave", "fileinto"];\nif ihave "variables" { fileinto "No"; }',
    'require "ihave";\nerror "giving up";',
    'require ["ihave", "fileinto"];\nif header :contains "subject" "report" { error "no reports"; }\n'
    'fileinto "Fine";',
    'if ihave "fileinto" { keep; }',
    'require "ihave";\nif ihave "x-no-such" { xnosuch }',
    # environment (RFC 5183): items both define alike (location, phase,
    # name, version are each one's own: tested directly)
    'require ["environment", "fileinto", "variables"];\nif environment :matches "host" "*" '
    '{ fileinto "host-${1}"; }',
    'require ["environment", "fileinto", "variables"];\nif environment :matches "domain" "*" '
    '{ fileinto "domain-${1}"; }',
    'require ["environment", "fileinto"];\nif environment :contains "x-no-such-item" "" { fileinto "No"; }',
    'require ["environment", "fileinto"];\nif environment :contains "remote-ip" "" { fileinto "No"; }',
    'require "environment";\nif environment "host" { keep; }',
    # special-use (RFC 8579), with Dovecot's default namespace
    'require ["special-use", "fileinto"];\nfileinto :specialuse "\\\\Junk" "Spam";',
    'require ["special-use", "fileinto"];\nfileinto :specialuse "\\\\Archive" "Old";',
    'require ["special-use", "fileinto", "variables"];\nset "u" "\\\\Trash";\nfileinto :specialuse "${u}" "Bin";',
    'require ["special-use", "fileinto"];\nif specialuse_exists "\\\\Junk" { fileinto "Yes"; }',
    'require ["special-use", "fileinto"];\nif specialuse_exists "INBOX" ["\\\\Junk"] { fileinto "Yes"; }',
    'require ["special-use", "fileinto"];\nfileinto :specialuse "Junk" "Spam";',
    'require "fileinto";\nfileinto :specialuse "\\\\Junk" "Spam";',
]

# Where the two differ on purpose.  RFC 6609 3.1: "Sieve implementations
# MUST generate an error at execution time if an included script is a
# recursive inclusion.  Implementations MUST NOT generate errors for
# recursive includes at upload time", and the same for a script that does
# not exist; Pigeonhole refuses to compile such scripts.  The message is
# kept either way.
INCLUDE_ERRORS_AT_RUN_TIME = [
    'require "include";\ninclude "no_such_script";',
    'require "include";\ninclude :global "no_such_script";',
    'require ["include", "fileinto"];\nif header :contains "subject" "never" { include "recurse"; }\n'
    'fileinto "Ran";',
]

# Dovecot's default namespace (conf.d/15-mailboxes.conf) and lmtpd's
# [sieve] special_use default: where a store "with special-use flag" goes.
SPECIAL_USE = {"\\drafts": "Drafts", "\\junk": "Junk", "\\trash": "Trash", "\\sent": "Sent"}


# Where we differ from Pigeonhole 0.5.19 on purpose: (script, message,
# ours, Pigeonhole's), each with the RFC line that decides.
DIFFERENT = [
    # RFC 5703 7: extracttext "stores at most ":first" characters of the
    # transcoded content": characters; Pigeonhole counts octets ("Gr\u00fc").
    ('require ["foreverypart", "mime", "variables", "extracttext", "fileinto"];\nforeverypart { '
     'if header :mime :subtype "content-type" "plain" { extracttext :first 4 "t"; fileinto "T-${t}"; break; } }',
     "nested", [("store", "T-Gr\u00fc\u00df", "")], [("store", "T-Gr\u00fc", "")]),
    # RFC 5703 3: implementations "MUST support at least one nested loop
    # inside another loop"; Pigeonhole 0.5.19 fails at run time ("corrupt
    # binary deleted") once an inner foreverypart runs.
    ('require ["foreverypart", "mime", "variables", "fileinto"];\nset "n" "";\nforeverypart :name "outer" {\n'
     'if header :mime :type "content-type" "multipart" { foreverypart { if header :mime :matches :subtype '
     '"content-type" "*" { set "n" "${n}_${1}"; } } set "n" "${n}X"; } }\nfileinto "N${n}";',
     "nested", [("store", "N_alternative_plain_html_pdf_rfc822X_plain_htmlX", "")], "runtime-error"),
    ('require ["foreverypart", "variables", "fileinto"];\nset "n" "";\nforeverypart :name "o" { foreverypart { '
     'set "n" "${n}i"; break :name "o"; } set "n" "${n}a"; }\nfileinto "B${n}";',
     "plain", [("store", "Ba", "")], "runtime-error"),
    # RFC 5703 4.2's own example tests "content-from" with address :mime;
    # Pigeonhole allows address only on the fields it knows to hold
    # addresses and refuses the script.
    ('require ["mime", "fileinto"];\nif address :mime :anychild :is :all "content-from" "tim@example.com" '
     '{ fileinto "Tim"; }', "nested", [("store", "Tim", "")], "error"),
    # RFC 5703 7: "the transcoded content of the current MIME body part":
    # the HTML as it is; Pigeonhole turns it into text first.
    ('require ["foreverypart", "mime", "variables", "extracttext", "fileinto"];\nforeverypart { '
     'if header :mime :subtype "content-type" "html" { extracttext "t"; '
     'if string :contains "${t}" "<b>" { fileinto "Markup"; } } }',
     "nested", [("store", "Markup", "")], [("store", "INBOX", "")]),
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
    r = subprocess.run([SIEVE_LITE, "test", sp, mp, "--from", sender, "--to", rcpt, "--dir", os.path.join(tmp, "p"),
                        "--global-dir", os.path.join(tmp, "g")], capture_output=True, text=True)
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
                "plugin {\n  sieve_extensions = +editheader +vacation-seconds +special-use +enotify\n"
                "  sieve = file:%s/p\n  sieve_global = %s/g\n}\n" % (tmp, tmp, tmp))
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
        m = re.match(r"\+ use mailbox with special-use flag `(.*)' instead if accessible", s)
        if m and acts and acts[-1][0] == "store" and m.group(1).lower() in SPECIAL_USE:
            acts[-1][1] = SPECIAL_USE[m.group(1).lower()]
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


def write_included(tmp):
    for where, scripts in INCLUDED.items():
        d = os.path.join(tmp, where[0])
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o777)  # Pigeonhole saves the compiled binaries there
        for name, text in scripts.items():
            with open(os.path.join(d, name + ".sieve"), "w") as f:
                f.write(text)


@unittest.skipUnless(os.path.exists(SIEVE_TEST), "Pigeonhole's sieve-test is not installed (dovecot-sieve)")
class DifferentialTest(unittest.TestCase):
    def test_against_pigeonhole(self):
        tmp = tempfile.mkdtemp(prefix="sieve-diff-")
        os.chmod(tmp, 0o777)
        write_included(tmp)
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

    def test_different_on_purpose(self):
        tmp = tempfile.mkdtemp(prefix="sieve-diff-")
        os.chmod(tmp, 0o777)
        try:
            for script, mname, want_ours, want_pigeonhole in DIFFERENT:
                sender, rcpt = ENVELOPES[0]
                self.assertEqual(ours(script, MESSAGES[mname], sender, rcpt, tmp), want_ours, script)
                self.assertEqual(pigeonhole(script, MESSAGES[mname], sender, rcpt, tmp), want_pigeonhole, script)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


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

class SieveLiteClockTest(unittest.TestCase):
    """`sieve-lite test --date` and `--duplicate`: currentdate (RFC 5260 5)
    and duplicate (RFC 7352) where Pigeonhole's sieve-test has no clock to
    set and keeps no ids between runs."""

    ROUNDCUBE = ('require ["date", "relational", "vacation"];\n# rule:[Vacation]\n'
                 'if allof (currentdate :zone "+0100" :value "ge" "iso8601" "2026-12-05T00:00:00+01:00",\n'
                 '          currentdate :zone "+0100" :value "le" "iso8601" "2026-12-20T23:59:59+01:00")\n'
                 '{\n\tvacation :days 1 :subject "Out of office" "Back on the 21st.";\n}\n')

    def run_lite(self, script, *args):
        tmp = tempfile.mkdtemp(prefix="sieve-clock-")
        try:
            sp, mp = os.path.join(tmp, "s.sieve"), os.path.join(tmp, "m.eml")
            with open(sp, "w") as f:
                f.write(script)
            with open(mp, "w") as f:
                f.write(MESSAGES["dated"])
            return subprocess.run([SIEVE_LITE, "test", sp, mp] + list(args), capture_output=True, text=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_roundcube_vacation_range(self):
        inside = self.run_lite(self.ROUNDCUBE, "--date", "2026-12-07T10:00:00+01:00")
        self.assertEqual(inside.returncode, 0, inside.stderr)
        self.assertIn('vacation "Back on the 21st."\n  days: 1\n  subject: Out of office\n', inside.stdout)
        after = self.run_lite(self.ROUNDCUBE, "--date", "2026-12-21T00:00:00+01:00")
        self.assertEqual(after.stdout, "keep\n")
        # the zone of --date is the local one
        r = self.run_lite('require ["date", "variables", "fileinto"];\n'
                          'if currentdate :matches "std11" "*" { fileinto "${0}"; }\n'
                          'if date :matches "date" "iso8601" "*" { fileinto "${0}"; }',
                          "--date", "2026-12-07T10:00:00-03:30")
        self.assertEqual(r.stdout, 'fileinto "Mon, 07 Dec 2026 10:00:00 -0330"\n'
                                   'fileinto "2026-02-26T16:00:45-03:30"\n')
        bad = self.run_lite("keep;", "--date", "yesterday")
        self.assertEqual(bad.returncode, 64)

    def test_duplicate_ids(self):
        script = 'require ["duplicate", "fileinto"];\nif duplicate { fileinto "Dup"; }\n'
        first = self.run_lite(script)
        self.assertEqual(first.stdout, 'keep\nrecord duplicate "<d1@example.com>" :seconds 604800\n')
        again = self.run_lite(script, "--duplicate", "<d1@example.com>")
        self.assertEqual(again.stdout, 'fileinto "Dup"\nrecord duplicate "<d1@example.com>" :seconds 604800\n')
        # RFC 7352 3: a run that fails records nothing
        failed = self.run_lite(script + 'redirect "a@b.c"; redirect "d@e.f"; redirect "g@h.i"; redirect "j@k.l";'
                               'redirect "m@n.o";\n')
        self.assertNotIn("record", failed.stdout)


class OnPurposeTest(unittest.TestCase):
    """The cases where sieve-lite follows the RFC and Pigeonhole does not,
    or where each side has values of its own."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sieve-own-")
        os.chmod(self.tmp, 0o777)
        write_included(self.tmp)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_include_errors_at_run_time(self):
        msg, (sender, rcpt) = MESSAGES["plain"], ENVELOPES[0]
        got = [ours(s, msg, sender, rcpt, self.tmp) for s in INCLUDE_ERRORS_AT_RUN_TIME]
        self.assertEqual(got[:2], ["runtime-error"] * 2)
        # the recursion is in a branch that does not run: no error at all
        self.assertEqual(got[2], [("store", "Ran", "")])
        if os.path.exists(SIEVE_TEST):
            self.assertEqual([pigeonhole(s, msg, sender, rcpt, self.tmp) for s in INCLUDE_ERRORS_AT_RUN_TIME],
                             ["error"] * 3)

    def sieve_lite(self, script, *args):
        sp, mp = os.path.join(self.tmp, "s.sieve"), os.path.join(self.tmp, "m.eml")
        with open(sp, "w") as f:
            f.write(script)
        with open(mp, "w") as f:
            f.write(MESSAGES["plain"])
        r = subprocess.run([SIEVE_LITE, "test", sp, mp, "--dir", os.path.join(self.tmp, "p")] + list(args),
                           capture_output=True, text=True, check=True)
        return r.stdout.splitlines()

    def test_recursion_is_a_runtime_error(self):
        self.assertEqual(self.sieve_lite('require "include";\ninclude "recurse";'),
                         ["error: include: a script includes itself (recursion)", "keep"])

    def test_environment_items(self):
        # RFC 5183 4.1: we are an MDA, during final delivery (Pigeonhole's
        # sieve-test says "MS" and "post"), under our own name and version
        items = ["location", "phase", "name", "version", "remote-ip", "remote-host"]
        script = 'require ["environment", "fileinto", "variables"];\n' + "".join(
            'if environment :matches "%s" "*" { fileinto "%s=${1}"; }\n' % (i, i) for i in items)
        self.assertEqual(self.sieve_lite(script, "--remote-ip", "192.0.2.7", "--remote-host", "mx.example.net"),
                         ['fileinto "location=MDA"', 'fileinto "phase=during"', 'fileinto "name=opes-lmtpd"',
                          'fileinto "version=%s"' % VERSION, 'fileinto "remote-ip=192.0.2.7"',
                          'fileinto "remote-host=mx.example.net"'])
        # unknown: remote-ip does not exist, remote-host is "" (4.1), whose
        # :count is 0 (4)
        script = ('require ["environment", "fileinto", "relational"];\nif environment :contains "remote-ip" "" '
                  '{ fileinto "Ip"; }\nif environment :count "eq" "remote-host" "0" { fileinto "NoHost"; }')
        self.assertEqual(self.sieve_lite(script), ['fileinto "NoHost"'])


with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configure.ac")) as _f:
    VERSION = re.search(r"AC_INIT\(\[[^]]*\], \[([^]]*)\]", _f.read()).group(1)


if __name__ == "__main__":
    main()
