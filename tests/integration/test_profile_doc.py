"""Replays every dialog of docs/ocp-lmtp-profile.md against ocp-calloutd
(or, for a dialog with "# services-conf" lines, against ocp-services on
that configuration), byte for byte, so the profile document and the code
cannot drift apart."""

import os
import re
import socket
import unittest

from lmtptest import Callout, Services, TOP_SRCDIR, main

DOC = os.path.join(TOP_SRCDIR, "docs", "ocp-lmtp-profile.md")


def unescape(s):
    return s.replace("\\r", "\r").replace("\\n", "\n").encode("latin1")


def dialogs():
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```ocp-dialog\n(.*?)```", text, re.S)


class ProfileDoc(unittest.TestCase):
    def test_document_has_dialogs(self):
        self.assertGreaterEqual(len(dialogs()), 4)

    def test_replay(self):
        for n, block in enumerate(dialogs()):
            script, parts, steps, conf, files = [], None, [], [], {}
            for line in block.splitlines():
                if line.startswith("# script "):
                    script.append(line[9:])
                elif line.startswith("# parts "):
                    parts = line[8:]
                elif line.startswith("# services-conf "):
                    conf.append(line[16:])
                elif line.startswith("# file "):
                    name, text = line[7:].split(" ", 1)
                    files[name] = files.get(name, "") + text + "\n"
                elif line[:3] in ("P: ", "S: "):
                    steps.append((line[0], unescape(line[3:])))
            if conf:
                co = Services("\n".join(conf) + "\n", files)
                co.port, = co.ports.values()
            else:
                co = Callout("\n".join(script) + "\n", parts)
            try:
                s = socket.create_connection(("127.0.0.1", co.port))
                s.settimeout(5)
                i = 0
                while i < len(steps):
                    who = steps[i][0]
                    chunk = b""
                    while i < len(steps) and steps[i][0] == who:
                        chunk += steps[i][1]
                        i += 1
                    if who == "P":
                        s.sendall(chunk)
                        continue
                    got = b""
                    while len(got) < len(chunk):
                        data = s.recv(65536)
                        self.assertTrue(data, "server closed; got %r, want %r" % (got, chunk))
                        got += data
                    self.assertEqual(got, chunk, "dialog %d differs" % (n + 1))
                s.close()
            finally:
                co.stop()


if __name__ == "__main__":
    main()
