"""A script's surroundings at delivery, through the built lmtpd (issue 17):
include (RFC 6609) from the user's sieve/ directory and [sieve] global_dir,
as Pigeonhole lays them out, never through a symlink the user planted;
fileinto :specialuse (RFC 8579) through [sieve] special_use; the
environment (RFC 5183) with the client XFORWARD names."""

import os
import unittest

from lmtptest import Daemon, main, own
from test_sieve import MSG, session, transaction


class IncludeAtDeliveryTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon({"server.xforward_hosts": "local"})
        self.glob = os.path.join(self.d.dir, "global-sieve")
        os.makedirs(self.glob)
        own(self.glob)

    def tearDown(self):
        self.d.cleanup()

    def home(self, address):
        local, domain = address.split("@")
        home = os.path.join(self.d.mail, domain, local)
        os.makedirs(os.path.join(home, "sieve"), exist_ok=True)
        for p in (os.path.join(self.d.mail, domain), home, os.path.join(home, "sieve")):
            own(p)
        return home

    def write(self, path, text):
        with open(path, "w") as f:
            f.write(text)
        own(path)

    def user(self, address, scripts, active="default"):
        """The user's scripts as sieve/NAME.sieve, .dovecot.sieve a link to
        the active one (as ManageSieve leaves them)."""
        home = self.home(address)
        for name, text in scripts.items():
            self.write(os.path.join(home, "sieve", name + ".sieve"), text)
        os.symlink(os.path.join("sieve", active + ".sieve"), os.path.join(home, ".dovecot.sieve"))
        return home

    def deliver(self, address, xforward=None, msg=MSG):
        c = session(self.d) if xforward is None else self.d.connect(unix=True)
        if xforward is not None:
            c.code()
            c.cmd("LHLO client")
            self.assertEqual(c.cmd("XFORWARD " + xforward), "250 2.0.0 Ok")
        self.assertEqual(transaction(c, [address], msg)[0][0], 250)

    def folders(self, address):
        base = self.d.maildir(address)
        return sorted(f for f in os.listdir(base) if f.startswith(".") and os.path.isdir(os.path.join(base, f)))

    def test_personal_and_global_includes(self):
        # RFC 6609 3.2: :personal from the user's repository, :global from
        # the site's
        self.d.extra["sieve.global_dir"] = self.glob
        self.d.write_config()
        self.write(os.path.join(self.glob, "policy.sieve"), 'require ["fileinto", "copy"];\nfileinto :copy "Audit";\n')
        self.user("alice@example.org", {
            "default": 'require ["include", "variables", "fileinto"];\nglobal "box";\ninclude :global "policy";\n'
                       'include "rules";\nfileinto "${box}";\n',
            "rules": 'require ["include", "variables"];\nglobal "box";\n'
                     'if header :contains "subject" "status" { set "box" "Reports"; }\n',
        })
        self.d.start()
        self.deliver("alice@example.org")
        self.assertEqual(self.folders("alice@example.org"), [".Audit", ".Reports"])
        self.assertEqual(len(self.d.messages("alice@example.org", "new", ".Reports")), 1)
        self.assertEqual(self.d.messages("alice@example.org"), [])

    def test_symlinked_include_is_refused(self):
        # RFC 6609 4: no file the user should not reach; a link in sieve/
        # is not followed: a runtime error, the message kept, the user told
        home = self.user("bob@example.org", {
            "default": 'require ["include", "fileinto"];\ninclude "rules";\nfileinto "Never";\n',
        })
        secret = os.path.join(self.d.dir, "secret.sieve")
        self.write(secret, 'require "fileinto";\nfileinto "Secret";\n')
        os.symlink(secret, os.path.join(home, "sieve", "rules.sieve"))
        self.d.start()
        self.deliver("bob@example.org")
        self.assertEqual(len(self.d.messages("bob@example.org")), 1)
        self.assertEqual(self.folders("bob@example.org"), [])
        with open(os.path.join(home, ".dovecot.sieve.log")) as f:
            log = f.read()
        self.assertIn("include: personal script 'rules': ", log)
        self.assertIn("a symbolic link (not followed)", log)
        self.assertIn("kept in INBOX", log)

    def test_missing_and_broken_includes(self):
        # RFC 6609 3.1: missing is an error at execution time (global_dir
        # unset: there are no global scripts), :optional is not; a script
        # that does not compile says where
        home = self.user("carol@example.org", {
            "default": 'require ["include", "fileinto"];\ninclude :optional "nothing";\n'
                       'include :optional :global "nothing";\nfileinto "Went-on";\ninclude :global "policy";\n',
            "broken": 'require "fileinto";\nfileinto;\n',
            "uses_broken": 'require "include";\ninclude "broken";\n',
        })
        self.d.start()
        self.deliver("carol@example.org")
        self.assertEqual(len(self.d.messages("carol@example.org")), 1)
        self.assertEqual(self.folders("carol@example.org"), [])
        os.unlink(os.path.join(home, ".dovecot.sieve"))
        os.symlink(os.path.join("sieve", "uses_broken.sieve"), os.path.join(home, ".dovecot.sieve"))
        self.deliver("carol@example.org", msg=MSG.replace("<m1@", "<m2@"))
        with open(os.path.join(home, ".dovecot.sieve.log")) as f:
            log = f.read().splitlines()
        self.assertEqual(len(log), 2, log)
        self.assertIn("include: global script 'policy' does not exist; message kept in INBOX", log[0])
        self.assertIn("sieve/broken.sieve:2:1: fileinto: wrong number of arguments", log[1])

    def test_special_use_and_environment(self):
        # RFC 8579 4 through [sieve] special_use (the use with or without
        # its backslash); RFC 5183 4.1 remote-ip/remote-host from XFORWARD
        self.d.extra["sieve.special_use"] = "Junk=Quarantine;Trash=Bin"
        self.d.write_config()
        self.user("dave@example.org", {
            "default": 'require ["special-use", "fileinto", "environment", "copy"];\n'
                       'if allof (environment "remote-ip" "192.0.2.9", environment "remote-host" "mx.example.net",\n'
                       '          environment "location" "MDA", environment "phase" "during",\n'
                       '          environment "host" "lmtp.test", environment "domain" "test")\n'
                       '{ fileinto :specialuse "\\\\Junk" "Spam"; }\n'
                       'fileinto :copy :specialuse "\\\\Archive" "Archive";\n',
        })
        self.d.start()
        self.deliver("dave@example.org", xforward="NAME=mx.example.net ADDR=192.0.2.9")
        self.assertEqual(self.folders("dave@example.org"), [".Archive", ".Quarantine"])
        self.assertEqual(self.d.messages("dave@example.org"), [])

    def test_remote_ip_v6_and_unknown(self):
        # RFC 5183 4.1: an IPv6 remote-ip as RFC 2821's address literal; a
        # client on the UNIX socket has none (the test fails), and no name
        # ("" for remote-host)
        self.user("erin@example.org", {
            "default": 'require ["fileinto", "environment", "relational", "comparator-i;ascii-numeric"];\n'
                       'if environment "remote-ip" "IPv6:2001:db8::7" { fileinto "Six"; }\n'
                       'if environment :contains "remote-ip" "" { fileinto "HasIp"; }\n'
                       'if environment :count "eq" :comparator "i;ascii-numeric" "remote-host" "0" '
                       '{ fileinto "NoName"; }\n',
        })
        self.d.start()
        self.deliver("erin@example.org", xforward="ADDR=IPV6:2001:DB8::7")
        self.assertEqual(self.folders("erin@example.org"), [".HasIp", ".NoName", ".Six"])
        c = self.d.connect(unix=True)
        c.code()
        c.cmd("LHLO client")
        self.assertEqual(transaction(c, ["erin@example.org"], MSG.replace("<m1@", "<m2@"))[0][0], 250)
        self.assertEqual(len(self.d.messages("erin@example.org", "new", ".NoName")), 2)
        self.assertEqual(len(self.d.messages("erin@example.org", "new", ".HasIp")), 1)


if __name__ == "__main__":
    main()
