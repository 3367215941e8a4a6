"""Shared helpers for the IMAP conformance scripts (standard library only).

* `Conn`: a raw-socket IMAP client that sends exactly the bytes a test asks
  for (literals, LITERAL+, STARTTLS, COMPRESS=DEFLATE) and returns every
  response of a command, untagged ones included, unparsed and parsed.
* `parse`: an IMAP data parser (atoms, quoted strings, literals, NIL,
  parenthesised lists) for FETCH, LIST, STATUS, ESEARCH and the like.
* `Report`: collects named checks; `finish()` prints one JSON line
  {"script", "checks", "passed", "failures": [{"check", "detail"}], "info"}
  that the Rust test asserts on. A section that raises is a failure too, so
  one server bug does not hide the others.

Every socket read has a timeout: a server that does not answer is a failed
check, never a hang.
"""

import base64
import json
import os
import re
import socket
import ssl
import sys
import time
import traceback
import zlib

HOST = "127.0.0.1"
TIMEOUT = float(os.environ.get("IMAPT_TIMEOUT", "10"))


class ServerClosed(Exception):
    """The server closed the connection."""


class Timeout(Exception):
    """The server did not answer in time."""


class Lit:
    """A literal to send: `{n}` (waits for the continuation) or `{n+}`;
    with `binary`, a literal8 (`~{n}`, RFC 3516)."""

    def __init__(self, data, plus=False, binary=False):
        self.data = data if isinstance(data, bytes) else data.encode()
        self.plus = plus
        self.binary = binary


def b(x):
    return x if isinstance(x, bytes) else x.encode()


def quote(s):
    """An IMAP quoted string."""
    s = b(s)
    return b'"' + s.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


# --------------------------------------------------------------------------
# Parsing

class Atom(str):
    """An unquoted atom (strings come back as bytes, NIL as None)."""


def _skip_sp(data, pos):
    while pos < len(data) and data[pos:pos + 1] == b" ":
        pos += 1
    return pos


def parse_one(data, pos=0):
    """Parse one item at `pos`: returns (value, new_pos)."""
    pos = _skip_sp(data, pos)
    if pos >= len(data):
        raise ValueError("unexpected end of data")
    c = data[pos:pos + 1]
    if c == b"(":
        items = []
        pos += 1
        while True:
            pos = _skip_sp(data, pos)
            if pos >= len(data):
                raise ValueError("unterminated list")
            if data[pos:pos + 1] == b")":
                return items, pos + 1
            item, pos = parse_one(data, pos)
            items.append(item)
    if c == b'"':
        out = bytearray()
        pos += 1
        while pos < len(data):
            ch = data[pos:pos + 1]
            if ch == b"\\":
                out += data[pos + 1:pos + 2]
                pos += 2
                continue
            if ch == b'"':
                return bytes(out), pos + 1
            out += ch
            pos += 1
        raise ValueError("unterminated quoted string")
    if c == b"{" or (c == b"~" and data[pos + 1:pos + 2] == b"{"):
        if c == b"~":
            pos += 1
        end = data.index(b"}", pos)
        n = int(data[pos + 1:end].rstrip(b"+"))
        start = end + 3  # "}\r\n"
        return data[start:start + n], start + n
    # An atom; brackets (BODY[HEADER.FIELDS (A B)]) and <partial> belong to it.
    start = pos
    depth = 0
    while pos < len(data):
        ch = data[pos:pos + 1]
        if ch == b"[":
            depth += 1
        elif ch == b"]":
            depth -= 1
        elif depth == 0 and ch in (b" ", b"(", b")", b"\r", b"\n"):
            break
        pos += 1
    word = data[start:pos].decode("utf-8", "replace")
    if word.upper() == "NIL":
        return None, pos
    return Atom(word), pos


def parse(data):
    """Parse a sequence of items (the rest of a response line)."""
    data = b(data)
    items = []
    pos = 0
    while True:
        pos = _skip_sp(data, pos)
        if pos >= len(data) or data[pos:pos + 2] == b"\r\n":
            return items
        item, pos = parse_one(data, pos)
        items.append(item)


def fetch_dict(lst):
    """A FETCH attribute list as {NAME: value} (names upper-cased)."""
    out = {}
    for i in range(0, len(lst) - 1, 2):
        out[str(lst[i]).upper()] = lst[i + 1]
    return out


STATUS_RE = re.compile(rb"^(\S+) (OK|NO|BAD|BYE|PREAUTH)(?: \[([^\]]*)\])? ?(.*)$", re.S | re.I)


def split_status(line):
    """(tag, STATUS, code or None, text) of a status response line."""
    line = b(line).rstrip(b"\r\n")
    m = STATUS_RE.match(line)
    if not m:
        return None
    tag, status, code, text = m.groups()
    return (tag.decode(), status.decode().upper(),
            code.decode("utf-8", "replace") if code is not None else None,
            text.decode("utf-8", "replace"))


class Resp:
    """Everything a command produced."""

    def __init__(self, tag):
        self.tag = tag
        self.untagged = []      # raw responses ("* ..." lines with literals)
        self.continuations = []  # "+ ..." lines seen
        self.tagged = None      # raw tagged line
        self.status = None
        self.code = None
        self.text = None
        self.literal_refused = False

    @property
    def code_name(self):
        return self.code.split(" ", 1)[0].upper() if self.code else None

    def ok(self):
        return self.status == "OK"

    def kinds(self):
        return [untagged_kind(u) for u in self.untagged]

    def of(self, kind):
        """Untagged responses of one kind ("EXISTS", "FETCH", "LIST", ...)."""
        kind = kind.upper()
        return [u for u in self.untagged if untagged_kind(u) == kind]

    def fetches(self):
        """[(seq, {ITEM: value})] of the FETCH responses."""
        out = []
        for u in self.of("FETCH"):
            m = re.match(rb"^\* (\d+) FETCH ", u, re.I)
            items = parse(u[m.end():])
            out.append((int(m.group(1)), fetch_dict(items[0])))
        return out

    def numbers(self, kind):
        """The numbers of `* n KIND` responses (EXISTS, EXPUNGE, RECENT)."""
        out = []
        for u in self.of(kind):
            out.append(int(u.split()[1]))
        return out

    def codes(self):
        """Response codes of untagged OK/NO/BAD responses: [(NAME, full)]."""
        out = []
        for u in self.untagged:
            s = split_status(u)
            if s and s[2] is not None:
                out.append((s[2].split(" ", 1)[0].upper(), s[2]))
        return out

    def code_of(self, name):
        for n, full in self.codes():
            if n == name.upper():
                return full
        return None

    def __repr__(self):
        lines = [u[:300] for u in self.untagged]
        return "untagged=%r tagged=%r" % (lines, self.tagged)


def untagged_kind(raw):
    """The kind of an untagged response: `* 3 EXISTS` -> EXISTS, `* LIST` -> LIST."""
    parts = raw.split(b" ", 3)
    if len(parts) < 2:
        return ""
    if parts[1].isdigit() and len(parts) > 2:
        return parts[2].rstrip(b"\r\n").decode("ascii", "replace").upper()
    return parts[1].rstrip(b"\r\n").decode("ascii", "replace").upper()


# --------------------------------------------------------------------------
# The client

class Conn:
    def __init__(self, port, host=HOST, timeout=TIMEOUT, tls=False, read_greeting=True):
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        # No Nagle delay on our side: latencies measured are the server's.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            self.sock = tls_context().wrap_socket(self.sock, server_hostname="slot.test")
        self.buf = b""
        self.n = 0
        self.inflate = None
        self.deflate = None
        self.closed = False
        self.seen_bye = None  # the last * BYE read, if any
        self.greeting = self.read_response() if read_greeting else None

    # -- bytes
    def send(self, data):
        data = b(data)
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout("no answer from the server within %.1f s (have %r)" % (self.timeout, self.buf[-200:]))
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Timeout("no answer from the server within %.1f s (have %r)" % (self.timeout, self.buf[-200:]))
        except (ConnectionResetError, ssl.SSLError) as e:
            self.closed = True
            raise ServerClosed("connection reset: %s" % e)
        if not chunk:
            self.closed = True
            raise ServerClosed("server closed the connection (unread: %r)" % self.buf[-200:])
        if self.inflate is not None:
            chunk = self.inflate.decompress(chunk)
        self.buf += chunk

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        i = self.buf.index(b"\r\n")
        line, self.buf = self.buf[:i + 2], self.buf[i + 2:]
        return line

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, timeout=None):
        """One whole response: a line and the literals it announces."""
        out = b""
        while True:
            line = self.read_line(timeout)
            out += line
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if not m:
                return out
            out += self.read_exact(int(m.group(1)), timeout)

    def try_read_response(self, timeout):
        """A response if one arrives within `timeout`, else None."""
        try:
            return self.read_response(timeout)
        except Timeout:
            return None

    # -- commands
    def next_tag(self):
        self.n += 1
        return "t%d" % self.n

    def cmd(self, *pieces, tag=None, timeout=None):
        """Send a command made of text pieces and `Lit`s; return its `Resp`."""
        tag = tag or self.next_tag()
        r = Resp(tag)
        line = tag.encode() + b" "
        for p in pieces:
            if isinstance(p, Lit):
                line += b"%s{%d%s}\r\n" % (b"~" if p.binary else b"", len(p.data),
                                            b"+" if p.plus else b"")
                self.send(line)
                line = b""
                if not p.plus:
                    # Wait for "+" (or a tagged refusal).
                    while True:
                        resp = self.read_response(timeout)
                        if resp.startswith(b"+"):
                            r.continuations.append(resp)
                            break
                        if resp.startswith(b"* "):
                            r.untagged.append(resp)
                            continue
                        r.literal_refused = True
                        self._tagged(r, resp)
                        return r
                self.send(p.data)
            else:
                line += b(p)
        self.send(line + b"\r\n")
        return self.finish(r, timeout)

    def finish(self, r, timeout=None):
        """Read responses up to the tagged one of `r`."""
        while True:
            resp = self.read_response(timeout)
            if resp.startswith(b"* "):
                r.untagged.append(resp)
                if resp[2:6].upper() == b"BYE ":
                    self.seen_bye = resp
            elif resp.startswith(b"+"):
                r.continuations.append(resp)
            else:
                self._tagged(r, resp)
                if r.tag is None or resp.split(b" ", 1)[0].decode() == r.tag:
                    return r
                # Someone else's tagged reply; keep it as untagged noise.
                r.untagged.append(resp)

    @staticmethod
    def _tagged(r, resp):
        r.tagged = resp
        s = split_status(resp)
        if s:
            _, r.status, r.code, r.text = s

    def login(self, user, password):
        r = self.cmd("LOGIN ", quote(user), b" ", quote(password))
        if r.status != "OK":
            raise AssertionError("LOGIN %s failed: %r" % (user, r))
        return r

    def select(self, mailbox, extra=b"", examine=False):
        verb = "EXAMINE " if examine else "SELECT "
        r = self.cmd(verb, quote(mailbox), extra)
        if r.status != "OK":
            raise AssertionError("%s%s failed: %r" % (verb, mailbox, r))
        return r

    def append(self, mailbox, message, flags=None, date=None, plus=False):
        """APPEND; returns (resp, uidvalidity, uid) (None when no APPENDUID)."""
        pieces = ["APPEND ", quote(mailbox)]
        if flags is not None:
            pieces.append(" (%s)" % flags)
        if date is not None:
            pieces.append(' "%s"' % date)
        pieces.append(" ")
        pieces.append(Lit(message, plus))
        r = self.cmd(*pieces)
        uv = uid = None
        if r.code and r.code_name == "APPENDUID":
            _, uv, uid = r.code.split()
            uv, uid = int(uv), int(uid)
        return r, uv, uid

    def must(self, *pieces, **kw):
        r = self.cmd(*pieces, **kw)
        if r.status != "OK":
            raise AssertionError("%r: expected OK, got %r" % (b"".join(b(p) if not isinstance(p, Lit) else b"{lit}" for p in pieces), r))
        return r

    def compress(self):
        r = self.cmd("COMPRESS DEFLATE")
        if r.status == "OK":
            self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            self.inflate = zlib.decompressobj(-15)
            # Anything already buffered arrived compressed.
            if self.buf:
                self.buf = self.inflate.decompress(self.buf)
        return r

    def starttls(self):
        r = self.cmd("STARTTLS")
        if r.status == "OK":
            if self.buf:
                raise AssertionError("server sent plaintext after STARTTLS OK: %r" % self.buf)
            self.sock = tls_context().wrap_socket(self.sock, server_hostname="slot.test")
        return r

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def logout(self):
        try:
            self.cmd("LOGOUT", timeout=5)
        except (ServerClosed, Timeout, OSError):
            pass
        self.close()


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(port, user, password, **kw):
    c = Conn(port, **kw)
    c.login(user, password)
    return c


def sasl_plain(authz, authc, password):
    return base64.b64encode(b(authz) + b"\0" + b(authc) + b"\0" + b(password)).decode()


def uid_set(text):
    """Expand an IMAP sequence set of UIDs (no `*`) into a sorted list."""
    out = set()
    for part in b(text).decode().split(","):
        if ":" in part:
            a, c = part.split(":")
            a, c = int(a), int(c)
            out.update(range(min(a, c), max(a, c) + 1))
        elif part:
            out.add(int(part))
    return sorted(out)


def server_alive(port, user, password):
    """A new connection gets a greeting, logs in and runs NOOP."""
    c = Conn(port, timeout=10)
    try:
        if not c.greeting.startswith(b"* OK"):
            return False
        c.login(user, password)
        return c.cmd("NOOP").status == "OK"
    finally:
        c.logout()


# --------------------------------------------------------------------------
# Results

class Report:
    def __init__(self, script):
        self.script = script
        self.checks = 0
        self.passed = []
        self.failures = []
        self.info = {}
        self._section = None

    def _name(self, name):
        return "%s: %s" % (self._section, name) if self._section else name

    def check(self, name, cond, detail=""):
        self.checks += 1
        if cond:
            self.passed.append(self._name(name))
        else:
            self.failures.append({"check": self._name(name), "detail": str(detail)[:4000]})
        return bool(cond)

    def eq(self, name, got, want, detail=""):
        return self.check(name, got == want, "expected %r, got %r %s" % (want, got, detail))

    def status(self, name, resp, want, code=None):
        """The tagged status (and response code) of `resp` are as RFC says."""
        ok = resp.status == want and (code is None or resp.code_name == code.upper())
        want_text = want + (" [%s]" % code if code else "")
        return self.check(name, ok, "expected tagged %s, got %r" % (want_text, resp))

    def section(self, name):
        return _Section(self, name)

    def finish(self):
        print(json.dumps({
            "script": self.script,
            "checks": self.checks,
            "passed": len(self.passed),
            "failures": self.failures,
            "info": self.info,
        }))
        sys.stdout.flush()


class _Section:
    def __init__(self, report, name):
        self.report = report
        self.name = name

    def __enter__(self):
        self.report._section = self.name
        return self

    def __exit__(self, typ, value, tb):
        if typ is not None:
            self.report.checks += 1
            self.report.failures.append({
                "check": "%s: section aborted" % self.name,
                "detail": "".join(traceback.format_exception(typ, value, tb))[-4000:],
            })
        self.report._section = None
        return True  # go on with the next section


def args():
    """argv: imap_port [lmtp_port] [extra...] as ints where numeric."""
    out = []
    for a in sys.argv[1:]:
        out.append(int(a) if a.isdigit() else a)
    return out


def message(subject, body=b"hello\r\n", extra_headers=b"", sender=b"sender@example.org",
            to=b"alice@example.com", date=b"Mon, 03 Jun 2024 10:00:00 +0000"):
    return (b"From: " + b(sender) + b"\r\nTo: " + b(to) + b"\r\nSubject: " + b(subject) +
            b"\r\nDate: " + b(date) + b"\r\nMessage-ID: <" + b(re.sub(r"\W", "", subject if isinstance(subject, str) else subject.decode("latin-1"))) +
            b"@example.org>\r\n" + b(extra_headers) + b"\r\n" + b(body))
