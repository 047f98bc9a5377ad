"""The example configurations work as documented: ocp-services starts every
service of conf/services.conf.example, and lmtpd on conf/lmtpd.conf.example
uses them."""

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from lmtptest import free_port, LMTPD, MAIL_USER, main, SERVICES, TOP_SRCDIR
from test_delivery import transaction
import lmtptest


class Examples(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="examples-")
        os.chmod(self.dir, 0o755)
        shutil.copytree(os.path.join(TOP_SRCDIR, "conf"), os.path.join(self.dir, "conf"))
        ports = {}
        for name in ("services.conf.example", "lmtpd.conf.example"):
            p = os.path.join(self.dir, "conf", name)
            with open(p) as f:
                text = f.read()
            # the example's account may not exist on a test machine, and its
            # ports may be taken (by a quick start running here)
            text = text.replace("user = lmtpd", "user = %s" % MAIL_USER)
            text = re.sub(r"127\.0\.0\.1:(113\d\d)",
                          lambda m: "127.0.0.1:%d" % ports.setdefault(m.group(1), free_port()), text)
            with open(p, "w") as f:
                f.write(text)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, args, ready):
        log = open(os.path.join(self.dir, os.path.basename(args[0]) + ".log"), "wb")
        p = subprocess.Popen(args, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        for _ in range(200):
            with open(log.name) as f:
                text = f.read()
            if ready in text:
                return text
            self.assertIsNone(p.poll(), text)
            time.sleep(0.05)
        self.fail("did not start: " + text)

    def test_every_service_starts_and_lmtpd_uses_them(self):
        text = self.start([SERVICES, "-c", "conf/services.conf.example"], "ocp-services: started")
        names = re.findall(r"ocp-services: (\w+) \((\w+)\) listening", text)
        self.assertEqual(sorted(n for n, m in names),
                         sorted(["access", "blocking", "normalize", "security", "links", "spam", "logging",
                                 "reroute"]))
        text = self.start([LMTPD, "-c", "conf/lmtpd.conf.example", "--listen", "127.0.0.1:0", "-d"], "started")
        port = int(re.search(r"listening on inet:127\.0\.0\.1:(\d+)\n", text).group(1))
        d = lmtptest.Daemon.__new__(lmtptest.Daemon)
        d.port = port
        c = lmtptest.Client(d)
        c.reply()
        c.cmd("LHLO x")
        r = transaction(c, ["ann@example.org", "joe@example.org"],
                        b"Subject: hello\r\nFrom: s@example.net\r\nTo: joe@example.org\r\n\r\nhi\r\n")
        self.assertTrue(all(x.startswith("250") for x in r), r)
        mail = os.path.join(self.dir, "var", "mail")
        ann = os.listdir(os.path.join(mail, "example.org", "ann", "Maildir", "new"))
        joe = os.listdir(os.path.join(mail, "fr.example.org", "joe", "Maildir", "new"))
        self.assertEqual((len(ann), len(joe)), (1, 1))
        with open(os.path.join(mail, "example.org", "ann", "Maildir", "new", ann[0]), "rb") as f:
            data = f.read()
        for svc in ("access", "blocking", "normalize", "security", "links", "spam", "logging"):
            self.assertRegex(data, (r"urn:x-opes-lmtpd:service:%s ; verdict=(accept|modify)" % svc).encode())
        self.assertIn(b"X-Spam-Status: No", data)
        with open(os.path.join(self.dir, "var", "log", "mail.jsonl")) as f:
            self.assertIn('"to":["ann@example.org"]', f.read())


if __name__ == "__main__":
    main()
