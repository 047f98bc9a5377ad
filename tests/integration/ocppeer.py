"""An OCP Core peer written from RFC 4037 section 3.1 alone, independent of
the C code: a tokenizer for the ABNF, a serializer, and a small callout
server and processor built on them.  The tests use it to check that
lmtpd's client and ocp-calloutd speak the protocol as written."""

import re
import socket
import threading
import time

SAFE = re.compile(rb"[A-Za-z0-9_-]")


class ParseError(Exception):
    pass


class More(Exception):
    pass


class Msg:
    def __init__(self, name, anon=None, named=None, payload=None):
        self.name = name
        self.anon = anon or []          # values: bytes (atom), list, or Struct
        self.named = named or {}        # name -> value (or tuple of values)
        self.payload = payload

    def __repr__(self):
        return "Msg(%r, %r, %r, %r)" % (self.name, self.anon, self.named, self.payload)


class Struct:
    def __init__(self, anon=None, named=None):
        self.anon = anon or []
        self.named = named or {}


def enc_value(v):
    if isinstance(v, Struct):
        s = b"{" + b" ".join(enc_value(x) for x in v.anon)
        if v.named:
            s += b"\r\n" + b"\r\n".join(k.encode() + b": " + enc_value(x) for k, x in v.named.items()) + b"\r\n"
        return s + b"}"
    if isinstance(v, list):
        return b"(" + b",".join(enc_value(x) for x in v) + b")"
    if isinstance(v, int):
        v = str(v).encode()
    if isinstance(v, str):
        v = v.encode()
    if v and all(SAFE.match(bytes([c])) for c in v):
        return v
    return b'"%d:%s"' % (len(v), v)


def encode(m):
    out = m.name.encode()
    if m.anon:
        out += b" " + b" ".join(enc_value(v) for v in m.anon)
    if m.named:
        parts = []
        for k, v in m.named.items():
            vs = v if isinstance(v, tuple) else (v,)
            parts.append(k.encode() + b": " + b" ".join(enc_value(x) for x in vs))
        out += b"\r\n" + b"\r\n".join(parts) + b"\r\n"
    if m.payload is not None:
        out += b"\r\n%d:" % len(m.payload) + m.payload + b"\r\n"
    return out + b";\r\n"


class Parser:
    def __init__(self, buf):
        self.b = buf
        self.i = 0

    def peek(self):
        if self.i >= len(self.b):
            raise More()
        return self.b[self.i:self.i + 1]

    def expect(self, s):
        for c in s:
            if self.peek() != bytes([c]):
                raise ParseError("expected %r at %d" % (s, self.i))
            self.i += 1

    def size(self):
        j = self.i
        while self.peek().isdigit():
            self.i += 1
        digits = self.b[j:self.i]
        self.expect(b":")
        if not digits or (len(digits) > 1 and digits[0:1] == b"0") or int(digits) > 2147483647:
            raise ParseError("bad size")
        n = int(digits)
        if len(self.b) - self.i < n:
            raise More()
        d = self.b[self.i:self.i + n]
        self.i += n
        return d

    def name(self):
        j = self.i
        if not self.peek().isalpha():
            raise ParseError("bad name")
        while SAFE.match(self.peek()):
            self.i += 1
        return self.b[j:self.i].decode()

    def value(self):
        c = self.peek()
        if c == b'"':
            self.i += 1
            d = self.size()
            self.expect(b'"')
            return d
        if c == b"(":
            self.i += 1
            items = []
            if self.peek() == b")":
                self.i += 1
                return items
            while True:
                items.append(self.value())
                c = self.peek()
                self.i += 1
                if c == b")":
                    return items
                if c != b",":
                    raise ParseError("bad list")
        if c == b"{":
            self.i += 1
            st = Struct()
            if self.peek() not in (b"\r", b"}"):
                st.anon = self.anon()
            if self.peek() == b"\r":
                self.expect(b"\r\n")
                st.named = self.named()
                self.expect(b"\r\n")
            self.expect(b"}")
            return st
        if SAFE.match(c):
            j = self.i
            while SAFE.match(self.peek()):
                self.i += 1
            return self.b[j:self.i]
        raise ParseError("bad value at %d" % self.i)

    def anon(self):
        vals = [self.value()]
        while self.peek() == b" ":
            self.i += 1
            vals.append(self.value())
        return vals

    def named(self):
        out = {}
        while True:
            k = self.name()
            self.expect(b": ")
            vals = [self.value()]
            while self.peek() == b" ":
                self.i += 1
                vals.append(self.value())
            if k in out:
                raise ParseError("repeated name")
            out[k] = vals[0] if len(vals) == 1 else tuple(vals)
            if self.b[self.i:self.i + 2] != b"\r\n":
                raise ParseError("bad named")
            if len(self.b) < self.i + 3:
                raise More()
            if not self.b[self.i + 2:self.i + 3].isalpha():
                return out
            self.i += 2

    def message(self):
        m = Msg(self.name())
        if self.peek() == b" ":
            self.i += 1
            m.anon = self.anon()
        if self.peek() == b"\r":
            self.expect(b"\r\n")
            if self.peek().isalpha():
                m.named = self.named()
                self.expect(b"\r\n")
                if self.peek() == b"\r":
                    self.expect(b"\r\n")
            if self.peek().isdigit():
                m.payload = self.size()
                self.expect(b"\r\n")
        self.expect(b";\r\n")
        return m


def decode_one(buf):
    """(message, rest) or (None, buf) if incomplete."""
    p = Parser(buf)
    try:
        m = p.message()
    except More:
        return None, buf
    return m, buf[p.i:]


class Conn:
    def __init__(self, sock, timeout=10):
        self.s = sock
        self.s.settimeout(timeout)
        self.buf = b""
        self.log = []

    def send(self, m):
        data = encode(m) if isinstance(m, Msg) else m
        self.log.append(("out", data))
        self.s.sendall(data)

    def recv(self):
        while True:
            m, rest = decode_one(self.buf)
            if m is not None:
                self.log.append(("in", self.buf[:len(self.buf) - len(rest)]))
                self.buf = rest
                return m
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("peer closed")
            self.buf += chunk


PROFILE = b"urn:x-opes-lmtpd:ocp:lmtp:1"


class Server:
    """A callout server: accepts our profile, answers each transaction with
    handler(envelope, header, body) -> (verdict-named-params, new_header or
    None[, new_body or None]).

    strict: RFC 4037 read to the letter: a TS whose xid is not higher than
    every earlier one on the connection closes the connection (s10.2), and a
    message for a transaction this side already ended is recorded in errors.
    ask_progress: sends "PQ xid" after the processor's AME and records the
    answer in progress_answers.  keepalive: (count, seconds) sends that many
    "PA xid" that far apart before answering.  ask_ability: sends AQ for the
    profile after NR and records the answer in ability_answers.  modp_only:
    answers a DUY-based way: an empty DUM with only Modp, then DUY of all.
    te_gap: seconds between AME and TE, so they arrive in two reads.
    profiles: the versions of our profile it speaks, preferred first."""

    def __init__(self, handler, dwsr=False, strict=False, ask_progress=False, keepalive=None,
                 ask_ability=False, modp_only=False, te_gap=0, profiles=(PROFILE,)):
        self.handler = handler
        self.profiles = profiles    # the versions of our profile it speaks, preferred first
        self.offered = []
        self.dwsr = dwsr            # ask for no more body after the first chunk
        self.strict = strict
        self.ask_progress = ask_progress
        self.keepalive = keepalive
        self.ask_ability = ask_ability
        self.modp_only = modp_only
        self.te_gap = te_gap        # seconds between AME and TE (two reads)
        self.ame_results = []
        self.progress_answers = []
        self.ability_answers = []
        self.closed_by_ce = []      # per connection: did it end with CE?
        self.non_increasing = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.transactions = 0
        self.connections = 0
        self.errors = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.conn, args=(Conn(s, 60),), daemon=True).start()

    def answer(self, c, xid, t):
        if self.keepalive:
            count, every = self.keepalive
            for _ in range(count):
                time.sleep(every)
                c.send(Msg("PA", [xid]))
        out = self.handler(t["env"], t["header"], t["body"])
        if isinstance(out, bytes):      # raw bytes: not OCP at all
            c.send(out)
            return
        named, new_header = out[0], out[1]
        new_body = out[2] if len(out) > 2 else None
        with self.lock:
            self.transactions += 1
        c.send(Msg("AMS", [xid], named))
        if self.modp_only:
            c.send(Msg("DUM", [xid, 0], {"Modp": 0}, b""))
            c.send(Msg("DUY", [xid, 0, len(t["header"]) + len(t["body"])]))
        else:
            if new_header is not None:
                c.send(Msg("DUM", [xid, 0], {"AM-Part": b"message-header"}, new_header))
            if new_body is not None:
                c.send(Msg("DUM", [xid, len(new_header or b"")], {"AM-Part": b"message-body"}, new_body))
            elif new_header is not None and t["body"]:
                c.send(Msg("DUY", [xid, len(t["header"]), len(t["body"])]))
        c.send(Msg("AME", [xid]))
        if self.te_gap:
            time.sleep(self.te_gap)
        c.send(Msg("TE", [xid]))
        t["ended"] = True

    def conn(self, c):
        ended_by_ce = False
        try:
            c.send(Msg("CS"))
            first = c.recv()
            assert first.name == "CS", first
            txns = {}
            last_xid = -1
            pending = []        # answers that wait for a PA
            while True:
                m = c.recv()
                xid = m.anon[0] if m.anon and isinstance(m.anon[0], bytes) else None
                if self.strict and xid is not None and m.name not in ("TS", "PA", "PR", "PQ", "SGC", "SGD"):
                    t = txns.get(xid)
                    if t is not None and t.get("ended"):
                        self.errors.append("%s for transaction %s already ended" % (m.name, xid.decode()))
                if m.name == "NO":
                    offered = {f.anon[0]: f for f in m.anon[0] if isinstance(f, Struct) and f.anon}
                    self.offered.append(list(offered))
                    chosen = next(p for p in self.profiles if p in offered)
                    c.send(Msg("NR", [Struct([chosen], {"Parts": offered[chosen].named.get("Parts", [])})]))
                    if self.ask_ability:
                        c.send(Msg("AQ", [Struct([chosen])]))
                elif m.name == "AA":
                    self.ability_answers.append(m.anon)
                elif m.name == "SGC":
                    pass
                elif m.name == "TS":
                    if self.strict and int(xid) <= last_xid:
                        with self.lock:
                            self.non_increasing += 1
                        raise EOFError("non-increasing xid %s after %d" % (xid.decode(), last_xid))
                    last_xid = int(xid)
                    txns[m.anon[0]] = {"env": {}, "header": b"", "body": b"", "next": 0}
                elif m.name == "AMS":
                    txns[m.anon[0]]["env"] = m.named
                elif m.name == "DUM":
                    t = txns[m.anon[0]]
                    assert int(m.anon[1]) == t["next"], "offsets must be contiguous"
                    t["next"] += len(m.payload)
                    t["header" if m.named["AM-Part"] == b"message-header" else "body"] += m.payload
                    if self.dwsr and m.named["AM-Part"] == b"message-body" and not t.get("asked"):
                        t["asked"] = True
                        c.send(Msg("DWSR", [m.anon[0], t["next"]]))
                elif m.name == "AME":
                    self.ame_results.append(m.anon[1].anon[0] if len(m.anon) > 1 else b"200")
                    if self.ask_progress:
                        pending.append(xid)
                        c.send(Msg("PQ", [xid]))
                    else:
                        self.answer(c, xid, txns[xid])
                elif m.name == "PA" and self.ask_progress:
                    self.progress_answers.append(m.anon)
                    if xid in pending:
                        pending.remove(xid)
                        self.answer(c, xid, txns[xid])
                elif m.name == "TE":
                    t = txns.get(m.anon[0])
                    if t is not None:
                        t["ended"] = True
                elif m.name == "PQ":
                    c.send(Msg("PA"))
                elif m.name == "CE":
                    ended_by_ce = True
                    return
        except EOFError:
            return
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))
        finally:
            self.closed_by_ce.append(ended_by_ce)
            try:
                c.s.close()
            except OSError:
                pass

    def close(self):
        self.sock.close()
