"""Bad input never hangs or crashes the server: malformed commands get a
tagged BAD with text; commands in the wrong state, out-of-range sequence
numbers and invalid modified UTF-7 names are refused; over-long lines,
garbage bytes, broken literals, deep nesting and abrupt disconnects are
survived, and a new connection is served afterwards.

argv: imap_port. Users: alice/pw-alice.
"""

import random
import socket
import struct
import threading
import time

from imapt import Conn, Lit, Report, Resp, ServerClosed, Timeout, args, connect, message, parse, quote, server_alive, split_status

PORT = args()[0]
R = Report("bad_input.py")
ALIVE = lambda: server_alive(PORT, "alice", "pw-alice")  # noqa: E731


def bad(c, line, name=None):
    """Send one command line; it must get a tagged BAD with a text."""
    r = c.cmd(line)
    name = name or line
    ok = R.status("%r is BAD" % name, r, "BAD")
    if ok:
        R.check("%r: BAD has a human-readable text" % name, bool(r.text and r.text.strip()), r)
    c.cmd("NOOP")  # the server may close after many BADs in a row
    return r


with R.section("malformed commands"):
    c = connect(PORT, "alice", "pw-alice")
    for line in ["FOOBAR", "SELECT", "SELECT a b c", 'LIST "unterminated', "LIST", 'LIST ""',
                 "CREATE", 'CREATE "a" "b"', "DELETE", "RENAME a", "SUBSCRIBE", "LSUB",
                 "STATUS INBOX", "STATUS INBOX MESSAGES", "STATUS INBOX (MESSAGES",
                 "APPEND", "APPEND INBOX", "APPEND INBOX (\\Seen", "NOOP extra", "CAPABILITY x",
                 "EXAMINE", "ENABLE", 'ID ("a")', "ID", "GETQUOTA", "GETQUOTAROOT",
                 "LIST (BOGUS) \"\" \"*\"", "UID", "UID FROB 1", "NAMESPACE x",
                 "SELECT INBOX (BOGUSPARAM)", "LOGIN alice pw-alice"]:
        bad(c, line)
    c.logout()

with R.section("lines without a usable tag"):
    c = connect(PORT, "alice", "pw-alice")
    for raw in [b"\r\n", b" NOOP\r\n", b"* NOOP\r\n", b"+ NOOP\r\n", b"a{b NOOP\r\n", b"a+b NOOP\r\n", b'a"b NOOP\r\n', b"a\x00b NOOP\r\n"]:
        c.send(raw)
        resp = c.try_read_response(5)
        s = split_status(resp or b"")
        R.check("%r: answered with BAD" % raw, s is not None and s[1] == "BAD", resp)
        R.status("%r: the session goes on" % raw, c.cmd("NOOP"), "OK")
    bad(c, "NOOP\x01", "a control character in the command")
    c.logout()

with R.section("commands in the wrong state"):
    c = connect(PORT, "alice", "pw-alice")
    for line in ["FETCH 1 FLAGS", "UID FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL", "UID SEARCH ALL",
                 "COPY 1 INBOX", "MOVE 1 INBOX", "EXPUNGE", "UID EXPUNGE 1", "CLOSE", "UNSELECT", "CHECK",
                 "AUTHENTICATE PLAIN", "STARTTLS"]:
        bad(c, line, "%s without a selected mailbox / after login" % line)
    c.logout()

with R.section("out-of-range sequence numbers"):
    c = connect(PORT, "alice", "pw-alice")
    c.must("CREATE Seq")
    c.must("CREATE Empty")
    for i in range(3):
        c.append("Seq", message("seq %d" % i))
    c.must("SELECT Empty")
    bad(c, "FETCH 1 FLAGS", "FETCH 1 in an empty mailbox")
    r = c.cmd("UID FETCH 1:* FLAGS")
    R.check("UID FETCH 1:* in an empty mailbox is OK and empty", r.status == "OK" and not r.fetches(), r)
    c.must("SELECT Seq")
    for line in ["FETCH 4 FLAGS", "FETCH 1:4 FLAGS", "FETCH 2,9 FLAGS", "FETCH 0 FLAGS", "FETCH 0:2 FLAGS",
                 "FETCH 4294967296 FLAGS", "FETCH 99999999999999999999 FLAGS", "FETCH -1 FLAGS",
                 "STORE 5 +FLAGS (\\Seen)", "COPY 7 INBOX", "MOVE 9 INBOX", "UID FETCH 0 FLAGS",
                 "UID STORE 0 +FLAGS (\\Seen)", "FETCH 1 BODY[0]", "FETCH 1 BODY[1.0]",
                 "STORE 1 +FLAGS (a]b)", "STORE 1 +FLAGS (foo%)", "STORE 1 +FLAGS (\\)"]:
        bad(c, line)
    r = c.cmd("UID FETCH 100:200 FLAGS")
    R.check("UID FETCH of UIDs that do not exist is OK and silent (RFC 3501 6.4.8)", r.status == "OK" and not r.fetches(), r)
    r = c.cmd("FETCH 1:3 FLAGS")
    R.check("FETCH 1:3 works", r.status == "OK" and len(r.fetches()) == 3, r)
    c.logout()

with R.section("invalid modified UTF-7 mailbox names"):
    c = connect(PORT, "alice", "pw-alice")
    invalid = ["&Jjo!", "foo&", "&AGE-", "&ZeVnLIqe", "a&b", "&U,BTFw", "&2D0-", "&-&"]
    for name in invalid:
        r = c.cmd("CREATE ", quote(name))
        R.check("CREATE %r is refused (NO or BAD)" % name, r.status in ("NO", "BAD"), r)
        c.cmd("NOOP")
    for name in invalid[:3]:
        r = c.cmd("SELECT ", quote(name))
        R.check("SELECT %r is refused" % name, r.status in ("NO", "BAD"), r)
        r = c.cmd("RENAME INBOX ", quote(name))
        R.check("RENAME INBOX %r is refused" % name, r.status in ("NO", "BAD"), r)
        r = c.cmd("APPEND ", quote(name), " ", Lit(message("x")))
        R.check("APPEND to %r is refused" % name, r.status in ("NO", "BAD"), r)
        c.cmd("NOOP")
    r = c.cmd('LIST "" "*"')
    names = []
    for u in r.of("LIST"):
        n = parse(u[len("* LIST "):])[2]
        names.append(n if isinstance(n, str) else n.decode())
    R.check("none of the invalid names exists", not (set(names) & set(invalid)), names)
    r = c.cmd("CREATE ", quote("&U,BTFw-"))
    R.status("a valid mUTF-7 name (&U,BTFw- is 台北) is accepted", r, "OK")
    c.logout()

with R.section("over-long lines"):
    c = connect(PORT, "alice", "pw-alice")
    line = b't1 LIST "" "' + b"x" * 100000 + b'"\r\n'
    c.send(line)
    resp = c.try_read_response(10)
    s = split_status(resp or b"")
    R.check("a 100 kB command line is answered with BAD (or BYE)", s is not None and s[1] in ("BAD", "BYE"), resp)
    try:
        r = c.cmd("NOOP")
        R.check("after the long line the session goes on", r.status == "OK", r)
    except ServerClosed:
        R.check("after the long line the server closed after BYE", s is not None and (s[1] == "BYE" or b"BYE" in c.buf), resp)
    c.close()
    # 4 MB without any CRLF: the server must answer or close, not buffer it all.
    c = connect(PORT, "alice", "pw-alice")
    answered = False
    try:
        for _ in range(64):
            c.sock.sendall(b"y" * 65536)
        c.sock.sendall(b"\r\n")
        resp = c.try_read_response(10)
        answered = resp is not None
        R.check("4 MB without CRLF: answered with BAD or BYE", resp is not None and split_status(resp) and split_status(resp)[1] in ("BAD", "BYE"), resp)
    except (BrokenPipeError, ConnectionResetError, ServerClosed):
        answered = True
        R.check("4 MB without CRLF: the server closed the connection", True)
    R.check("4 MB without CRLF: no hang", answered)
    c.close()
    R.check("a new connection is served after the long lines", ALIVE())

with R.section("garbage bytes"):
    rnd = random.Random(42)
    for n in range(3):
        c = Conn(PORT)
        if n > 0:
            c.login("alice", "pw-alice")
        garbage = bytes(rnd.getrandbits(8) for _ in range(65536))
        got = b""
        send_error = []

        def sender():
            try:
                c.sock.sendall(garbage + b"\r\nzz NOOP\r\n")
            except OSError as e:  # the server may close while we send
                send_error.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline and b"zz OK" not in got:
                got += c.read_line(timeout=max(0.01, deadline - time.monotonic()))
        except (ServerClosed, Timeout):
            pass
        t.join(5)
        R.check("garbage %d: the server answered (BAD/BYE) or closed, and did not hang" % n,
                (b"BAD" in got or b"BYE" in got) and (c.closed or b"zz OK" in got), (got[-300:], send_error))
        c.close()
    R.check("a new connection is served after garbage", ALIVE())

with R.section("broken literals and abrupt disconnects"):
    c = Conn(PORT)
    bad(c, "LOGIN {abc}", "LOGIN with a malformed literal marker")
    c.send("t99 LOGIN {99999999999999999999999}\r\n")
    resp = c.try_read_response(5)
    R.check("a literal size that overflows is refused without a continuation", resp is not None and not resp.startswith(b"+"), resp)
    c.cmd("NOOP")
    c.close()
    # Disconnect in the middle of a literal, of a line, of AUTHENTICATE, of IDLE.
    for n, partial in enumerate([b"t1 APPEND INBOX {1000}\r\n", b"t1 LOGIN alice", b"t1 AUTHENTICATE PLAIN\r\n"]):
        c = Conn(PORT)
        if n == 0:
            c.login("alice", "pw-alice")
        c.send(partial)
        if partial.endswith(b"\r\n"):
            c.try_read_response(2)
            c.send(b"abc")
        # RST instead of FIN.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    c = connect(PORT, "alice", "pw-alice")
    c.must("SELECT INBOX")
    c.send("t1 IDLE\r\n")
    c.read_response()
    c.close()
    conns = [Conn(PORT) for _ in range(30)]
    for k in conns:
        k.send(b"x LOGIN alice")
    for k in conns:
        k.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        k.close()
    R.check("a new connection is served after abrupt disconnects", ALIVE())
    c = connect(PORT, "alice", "pw-alice")
    r = c.cmd("STATUS INBOX (MESSAGES)")
    R.check("the half-sent APPEND stored nothing", r.of("STATUS") and b"MESSAGES 0)" in r.of("STATUS")[0], r)
    c.logout()

with R.section("extreme mailbox names"):
    c = connect(PORT, "alice", "pw-alice")
    for name in ["/".join("d%d" % i for i in range(300)), "n" * 5000, "x/" + "y" * 2000, "/leading", "double//slash", "trailing/"]:
        r = c.cmd("CREATE ", quote(name))
        R.check("CREATE of a %d-character name %r...: answered OK, NO or BAD" % (len(name), name[:20]), r.status in ("OK", "NO", "BAD"), r)
        c.cmd("NOOP")
    r = c.cmd('LIST "" "*"')
    R.status("LIST still works", r, "OK")
    r = c.cmd('LIST "" ""')
    R.status('LIST "" "" still works', r, "OK")
    c.logout()

with R.section("deep nesting and big commands"):
    c = connect(PORT, "alice", "pw-alice")
    c.must("SELECT INBOX")
    r = c.cmd("SEARCH " + "(" * 2000 + "ALL" + ")" * 2000)
    R.check("SEARCH nested 2000 deep: BAD or OK, answered", r.status in ("BAD", "OK"), r)
    c.cmd("NOOP")
    r = c.cmd("SEARCH " + "NOT " * 5000 + "ALL")
    R.check("SEARCH with 5000 NOTs: BAD or OK, answered", r.status in ("BAD", "OK"), r)
    c.cmd("NOOP")
    r = c.cmd("SEARCH " + "OR " * 3000 + "ALL " * 3001)
    R.check("SEARCH with 3000 ORs: BAD or OK, answered", r.status in ("BAD", "OK"), r)
    c.cmd("NOOP")
    r = c.cmd('LIST "" "' + "*%" * 1500 + '"')
    R.check("LIST with a 3000-character wildcard pattern answers", r.status in ("OK", "BAD"), r)
    r = c.cmd('LIST "" "' + "%" * 5000 + 'x"')
    R.check("LIST with a 5000-character pattern answers", r.status in ("OK", "BAD"), r)
    t0 = time.monotonic()
    c.send(b"".join(b"p%d NOOP\r\n" % i for i in range(300)))
    oks = 0
    for i in range(300):
        r = c.finish(Resp("p%d" % i))
        oks += r.status == "OK"
    R.eq("300 pipelined NOOPs get 300 OKs", oks, 300)
    R.info["pipelined_noop_ms"] = round((time.monotonic() - t0) * 1000, 1)
    r = c.cmd("FETCH 1:* (" + " ".join(["FLAGS"] * 2000) + ")")
    R.check("FETCH with 2000 items answers", r.status in ("OK", "BAD"), r)
    c.logout()

with R.section("too many bad commands in a row"):
    c = connect(PORT, "alice", "pw-alice")
    closed = False
    statuses = []
    for i in range(30):
        try:
            statuses.append(c.cmd("BOGUS%d" % i).status)
        except ServerClosed:
            closed = True
            break
    R.check("every bad command is answered BAD until the server (optionally) says BYE and closes",
            all(s == "BAD" for s in statuses) and (closed or len(statuses) == 30), statuses)
    R.info["bad_commands_before_close"] = len(statuses) if closed else None
    c.close()

R.check("finally, the server still serves a new connection", ALIVE())
R.finish()
