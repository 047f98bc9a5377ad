"""Helpers for integration tests: start the built lmtpd on a private
configuration (loopback port 0 and a UNIX socket in a temp dir), talk raw
LMTP to it, read what it wrote, and report results as TAP."""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

LMTPD = os.environ.get("LMTPD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "lmtpd", "lmtpd")
TOP_SRCDIR = os.environ.get("TOP_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")


MAIL_USER = "nobody"  # lmtpd refuses to deliver as root


def _sanitized():
    try:
        out = subprocess.run(["ldd", LMTPD], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return b"libasan" in out or b"libubsan" in out


# Time and memory bounds of the tests are for a release build; ASan makes
# lmtpd several times slower, holds freed memory in quarantine and turns
# realloc's in-place growth into copies: bounds are multiplied by this.
SLOWDOWN = 6 if _sanitized() else 1


def own(path):
    """Hands a path the test made to the mail user, as an admin would."""
    if os.geteuid() == 0:
        pw = pwd.getpwnam(MAIL_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


class Daemon:
    """One lmtpd process with its own directory, config and log.  Paths in
    the config are relative to that directory (lmtpd runs there), so the
    unprivileged mail user needs no access to the directories above it."""

    def __init__(self, extra=None, users=None, keep_listen=None):
        self.dir = tempfile.mkdtemp(prefix="lmtpd-test-")
        os.chmod(self.dir, 0o755)
        self.mail = os.path.join(self.dir, "mail")
        self.sock = os.path.join(self.dir, "run", "lmtpd.sock")
        self.conf = os.path.join(self.dir, "lmtpd.conf")
        self.log_path = os.path.join(self.dir, "lmtpd.log")
        self.extra = extra or {}
        self.users = users
        self.proc = None
        self.port = None
        # e.g. ["prlimit", "--nofile=64"]; LMTPD_WRAP runs every lmtpd of the
        # tests under a tool, such as valgrind (README, Testing)
        self.wrap = os.environ.get("LMTPD_WRAP", "").split()
        self.env = None   # environment for lmtpd, None = the test's
        self.write_config()

    def config_text(self, extra=None):
        groups = {
            "server": {
                "listen": "inet:127.0.0.1:0;unix:run/lmtpd.sock",
                "hostname": "lmtp.test",
                "spool_dir": "spool",
                "idle_timeout": "60",
                "shutdown_timeout": "10",
            },
            "limits": {},
            "delivery": {"mail_root": "mail", "duplicate_db": "lib/duplicates"},
            "users": {"domains": "*"},
            "mailboxes": {},
        }
        if os.geteuid() == 0:
            groups["server"]["user"] = MAIL_USER
        if self.users is not None:
            path = os.path.join(self.dir, "users")
            with open(path, "w") as f:
                f.write("".join(u + "\n" for u in self.users))
            groups["users"] = {"map": "users"}
        for key, value in (extra if extra is not None else self.extra).items():
            group, name = key.split(".", 1)
            if value is None:
                groups.setdefault(group, {}).pop(name, None)
            else:
                groups.setdefault(group, {})[name] = value
        out = []
        for group, kv in groups.items():
            out.append("[%s]" % group)
            out.extend("%s = %s" % (k, v) for k, v in kv.items())
        return "\n".join(out) + "\n"

    def write_config(self, extra=None, text=None):
        with open(self.conf, "w") as f:
            f.write(text if text is not None else self.config_text(extra))

    def start(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.wrap + [LMTPD, "-c", "lmtpd.conf", "-d"], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir, env=self.env)
        deadline = time.time() + 10
        while time.time() < deadline:
            log = self.read_log()  # one read: a line may be half written
            m = re.search(r"listening on inet:127\.0\.0\.1:(\d+)[\n\"]", log)
            if m and "started" in log:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("lmtpd exited: " + self.read_log())
            time.sleep(0.02)
        raise RuntimeError("lmtpd did not start: " + self.read_log())

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def cleanup(self):
        self.stop()
        try:
            self.final_log = self.read_log()
        except OSError:
            self.final_log = ""
        shutil.rmtree(self.dir, ignore_errors=True)
        # under --enable-sanitizers, a report from the daemon fails the test
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if mark in self.final_log:
                raise AssertionError("lmtpd: " + self.final_log[self.final_log.index(mark):][:3000])
        # under valgrind (LMTPD_WRAP), its error summary must be zero
        m = re.search(r"^==\d+== (Invalid |Conditional jump|Use of uninitialised|Syscall param|Mismatched free"
                      r"|.* definitely lost in)", self.final_log, re.M)
        if m or (self.proc and self.proc.returncode == 99 and "valgrind" in " ".join(self.wrap)):
            raise AssertionError("lmtpd under valgrind: " + self.final_log[-6000:])

    def connect(self, unix=False, timeout=10):
        return Client(self, unix, timeout)

    def user_file(self, address, name, text):
        """Writes a file into a user's home below the mail root (a Sieve
        script), owned by the mail user as lmtpd would find it; its path."""
        local, domain = address.split("@")
        home = os.path.join(self.mail, domain, local)
        os.makedirs(home, exist_ok=True)
        for p in (os.path.join(self.mail, domain), home):
            own(p)
        path = os.path.join(home, name)
        with open(path, "w") as f:
            f.write(text)
        own(path)
        return path

    def maildir(self, address, folder=None):
        local, domain = address.lower().rsplit("@", 1)
        d = os.path.join(self.mail, domain, local, "Maildir")
        return os.path.join(d, folder) if folder else d

    def messages(self, address, sub="new", folder=None):
        d = os.path.join(self.maildir(address, folder), sub)
        if not os.path.isdir(d):
            return []
        out = []
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                out.append((name, f.read()))
        return out



# the spam test string: any spam filter scores it far above its threshold
class Ext4Image:
    """A fresh ext4 file system (mkfs.ext4 with @mkfs_opts), loop-mounted on
    @mountpoint and handed to the mail user, for tests of what lmtpd does on
    a given file system (sync_mode).  close() unmounts it and removes the
    image.  Raises unittest.SkipTest, saying why, where loop mounts are
    impossible (not root, no loop devices)."""

    def __init__(self, mountpoint, mkfs_opts=(), size_mb=256):
        if os.geteuid() != 0:
            raise unittest.SkipTest("loop mounts need root")
        self.mountpoint = mountpoint
        self.image = tempfile.mktemp(prefix="lmtpd-ext4-", suffix=".img")
        with open(self.image, "wb") as f:
            f.truncate(size_mb << 20)
        self.mounted = False
        try:
            subprocess.run(["mkfs.ext4", "-q", "-F"] + list(mkfs_opts) + [self.image], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            os.makedirs(mountpoint, exist_ok=True)
            r = subprocess.run(["mount", "-o", "loop", self.image, mountpoint], stderr=subprocess.PIPE)
        except (OSError, subprocess.CalledProcessError) as e:
            os.unlink(self.image)
            raise unittest.SkipTest("no ext4 image: %s" % e)
        if r.returncode != 0:
            os.unlink(self.image)
            raise unittest.SkipTest("no loop mount here: %s" % r.stderr.decode().strip())
        self.mounted = True
        own(mountpoint)

    def close(self):
        if self.mounted:
            subprocess.run(["umount", self.mountpoint], check=True)
            self.mounted = False
        if os.path.exists(self.image):
            os.unlink(self.image)


GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def metrics_text(daemon):
    """The Prometheus text of @daemon's metrics_listen (inet), as a scraper
    gets it: one GET, the body up to the close."""
    m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", daemon.read_log())
    with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = recv_to_close(s)
    return data.split(b"\r\n\r\n", 1)[1].decode()


def recv_to_close(sock):
    """Every byte @sock receives until the peer closes it."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk



def terminate(proc, timeout=10):
    """Stops a process a test started: SIGTERM, then SIGKILL after @timeout."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port():
    """A loopback TCP port free now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def doc_block(doc, first_line):
    """The fenced block of docs/@doc whose first line is @first_line: tests
    run what the guides tell people to type."""
    top = os.environ.get("TOP_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(top, "docs", doc)) as f:
        text = f.read()
    m = re.search(r"```\w*\n(%s\n.*?)```" % re.escape(first_line), text, re.S)
    if m is None:
        raise AssertionError("%s has no block starting %r" % (doc, first_line))
    return m.group(1)


class Client:
    """Raw LMTP over a socket, with bounded reads of replies."""

    def __init__(self, daemon, unix=False, timeout=10):
        if unix:
            self.where = daemon.sock
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.connect(daemon.sock)
        else:
            self.where = "127.0.0.1:%d" % daemon.port
            self.s = socket.create_connection(("127.0.0.1", daemon.port))
        self.s.settimeout(timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("%s closed the connection; have %r" % (self.where, self.buf))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """One reply, multiline joined: returns (code, [lines])."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), lines

    def code(self):
        return self.reply()[0]

    def text(self):
        code, lines = self.reply()
        return lines[-1]

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.text()

    def closed(self, timeout=5):
        """True if the server closes the connection (EOF) within timeout."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True  # closed with our unread input pending
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def dotstuff(body):
    """bytes with LF or CRLF line ends -> DATA payload with CRLF, stuffed."""
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)
    return out + b".\r\n"


def strip_trace(data):
    """Removes the Return-Path, Delivered-To and Received headers we add."""
    m = re.match(rb"Return-Path: <[^\n]*>\n(Delivered-To: [^\n]*\n)?(X-Original-To: [^\n]*\n)?"
                 rb"Received: [^\n]*\n(\t[^\n]*\n)*", data)
    assert m, "no trace headers in %r" % data[:300]
    return data[m.end():]


class TapResult(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.n = 0

    def _emit(self, test, ok, detail=None, directive=""):
        self.n += 1
        name = test.id().split(".", 1)[-1]
        print("%s %d - %s%s" % ("ok" if ok else "not ok", self.n, name, directive))
        if detail:
            for line in detail.rstrip().splitlines():
                print("# " + line)
        sys.stdout.flush()

    def addSuccess(self, test):
        self._emit(test, True)

    @staticmethod
    def _details(test, err):
        text = "".join(traceback.format_exception(*err))
        d = getattr(test, "d", None)
        log = ""
        if d is not None:  # reported before or after tearDown, by Python version
            try:
                log = d.read_log()
            except OSError:
                log = getattr(d, "final_log", "")
        if log:
            text += "lmtpd log (last 40 lines):\n" + "\n".join(log.splitlines()[-40:])
        return text

    def addFailure(self, test, err):
        self._emit(test, False, self._details(test, err))

    def addError(self, test, err):
        self._emit(test, False, self._details(test, err))

    def addSkip(self, test, reason):
        self._emit(test, True, directive=" # SKIP " + reason)


def main():
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules["__main__"])
    print("1..%d" % suite.countTestCases())
    sys.stdout.flush()
    result = TapResult()
    suite.run(result)
    sys.exit(0 if result.wasSuccessful() else 1)


CALLOUTD = os.environ.get("CALLOUTD") or os.path.join(os.path.dirname(LMTPD), "..", "ocp", "ocp-calloutd")


class Callout:
    """ocp-calloutd with a test script, on a loopback port."""

    def __init__(self, script, parts=None, listen="inet:127.0.0.1:0"):
        self.dir = tempfile.mkdtemp(prefix="calloutd-")
        self.script = os.path.join(self.dir, "script")
        with open(self.script, "w") as f:
            f.write(script)
        self.log_path = os.path.join(self.dir, "log")
        self.log = open(self.log_path, "wb")
        args = [CALLOUTD, "--listen", listen, "--script", self.script, "-d"]
        if parts:
            args += ["--parts", parts]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            m = re.search(r"listening on inet:127\.0\.0\.1:(\d+)\n", self.read_log())
            if m:
                self.port = int(m.group(1))
                self.endpoint = "inet:127.0.0.1:%d" % self.port
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("ocp-calloutd did not start: " + self.read_log())

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def bytes_sent(self):
        counts = re.findall(r"(\d+) octets sent in all", self.read_log())
        return int(counts[-1]) if counts else 0

    def stop(self):
        terminate(self.proc)
        self.log.close()
        log = self.read_log()
        shutil.rmtree(self.dir, ignore_errors=True)
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if mark in log:
                raise AssertionError("ocp-services: " + log[log.index(mark):][:3000])


SERVICES = os.environ.get("SERVICES") or os.path.join(os.path.dirname(LMTPD), "..", "services", "ocp-services")


class Services:
    """ocp-services with a configuration; ports are read from its log."""

    def __init__(self, conf_text, files=None):
        self.dir = tempfile.mkdtemp(prefix="services-")
        os.chmod(self.dir, 0o755)
        for name, text in (files or {}).items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        self.conf = os.path.join(self.dir, "services.conf")
        if os.geteuid() == 0:
            conf_text = "[server]\nuser = %s\n" % MAIL_USER + conf_text
        with open(self.conf, "w") as f:
            f.write(conf_text.replace("@DIR@", self.dir))
        self.log_path = os.path.join(self.dir, "log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([SERVICES, "-c", self.conf, "-d"], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.time() + 10
        while time.time() < deadline:
            text = self.read_log()
            if "started\n" in text:
                self.ports = {m.group(1): int(m.group(2)) for m in
                              re.finditer(r"ocp-services: (\S+) \(\w+\) listening on inet:127\.0\.0\.1:(\d+)\n", text)}
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("ocp-services did not start: " + self.read_log())

    def endpoint(self, name):
        return "inet:127.0.0.1:%d" % self.ports[name]

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def path(self, name):
        return os.path.join(self.dir, name)

    def stop(self):
        terminate(self.proc)
        self.log.close()
        log = self.read_log()
        shutil.rmtree(self.dir, ignore_errors=True)
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if mark in log:
                raise AssertionError("ocp-services: " + log[log.index(mark):][:3000])
