"""APPENDLIMIT (RFC 7889) on a slot with [limits] message_size_max set low:
the limit is advertised in CAPABILITY and STATUS, a message of exactly that
size is accepted, and a synchronizing literal over it is refused with
NO [TOOBIG] *before* the client sends it (no continuation), without
breaking the session. Oversized literals before login are refused too.

argv: imap_port lmtp_port limit. User: alice/pw-alice.
"""

import imaplib

from imapt import Conn, Report, Resp, ServerClosed, args, connect, server_alive

PORT, _LMTP, LIMIT = args()[:3]
R = Report("appendlimit.py")


def msg_of_size(n):
    head = b"From: big@example.org\r\nSubject: size %d\r\n\r\n" % n
    body = (b"x" * 76 + b"\r\n") * (n // 78 + 1)
    return (head + body)[:n - 2] + b"\r\n"


c = connect(PORT, "alice", "pw-alice")

with R.section("the limit is advertised"):
    caps = c.cmd("CAPABILITY").of("CAPABILITY")[0].decode().split()
    R.check("CAPABILITY APPENDLIMIT=%d" % LIMIT, "APPENDLIMIT=%d" % LIMIT in caps, caps)
    r = c.cmd("STATUS INBOX (APPENDLIMIT)")
    R.check("STATUS APPENDLIMIT %d (RFC 7889 4)" % LIMIT, r.of("STATUS") and b"APPENDLIMIT %d)" % LIMIT in r.of("STATUS")[0], r)

with R.section("at the limit"):
    m = msg_of_size(LIMIT)
    assert len(m) == LIMIT
    r, _, uid = c.append("INBOX", m)
    R.status("APPEND of exactly APPENDLIMIT bytes", r, "OK", "APPENDUID")
    c.must("SELECT INBOX")
    r = c.cmd("UID FETCH %d (RFC822.SIZE BODY.PEEK[])" % uid)
    d = r.fetches()[0][1] if r.fetches() else {}
    R.check("stored byte-identical", d.get("BODY[]") == m and int(d.get("RFC822.SIZE", 0)) == LIMIT, len(d.get("BODY[]", b"")))

with R.section("over the limit: refused before the literal is sent"):
    for size in (LIMIT + 1, LIMIT * 10, 4294967296):
        tag = c.next_tag()
        c.send("%s APPEND INBOX (\\Seen) {%d}\r\n" % (tag, size))
        resp = c.try_read_response(5)
        R.check("APPEND {%d}: an answer arrives without sending the literal" % size, resp is not None, resp)
        if resp is None:
            break
        R.check("APPEND {%d}: no continuation request" % size, not resp.startswith(b"+"), resp)
        if resp.startswith(b"+"):
            break
        r = Resp(tag)
        Conn._tagged(r, resp)
        R.check("APPEND {%d}: tagged NO [TOOBIG] (RFC 7889, RFC 9051 7.1)" % size,
                resp.startswith(tag.encode() + b" ") and r.status == "NO" and r.code_name == "TOOBIG", resp)
        R.status("the session goes on after the refusal", c.cmd("NOOP"), "OK")
    r = c.cmd("STATUS INBOX (MESSAGES)")
    R.check("nothing was appended", r.of("STATUS") and b"MESSAGES 1)" in r.of("STATUS")[0], r)
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=10)
    m.login("alice", "pw-alice")
    try:
        typ, data = m.append("INBOX", None, None, msg_of_size(LIMIT + 100))
        R.check("imaplib append over the limit gets NO [TOOBIG]", typ == "NO" and b"TOOBIG" in data[0], (typ, data))
    except imaplib.IMAP4.error as e:
        R.check("imaplib append over the limit gets NO [TOOBIG]", "TOOBIG" in str(e), str(e))
    typ, _ = m.noop()
    R.eq("imaplib session goes on", typ, "OK")
    m.logout()

with R.section("non-synchronizing literal over the limit (RFC 7888 4)"):
    big = msg_of_size(LIMIT + 1000)
    tag = c.next_tag()
    c.send(("%s APPEND INBOX {%d+}\r\n" % (tag, len(big))).encode() + big + b"\r\n")
    closed = False
    try:
        r = c.finish(Resp(tag), timeout=10)
        R.check("LITERAL+ over the limit: tagged NO or BAD with [TOOBIG]", r.status in ("NO", "BAD") and r.code_name == "TOOBIG", r)
    except ServerClosed:
        closed = True
        R.check("LITERAL+ over the limit: connection closed after * BYE", c.seen_bye is not None, c.seen_bye)
    if not closed:
        R.status("the session goes on after the discarded literal", c.cmd("NOOP"), "OK")

with R.section("literals before login"):
    p = Conn(PORT)
    tag = p.next_tag()
    p.send("%s LOGIN {100000}\r\n" % tag)
    resp = p.try_read_response(5)
    R.check("LOGIN {100000} before login: tagged NO or BAD, no continuation",
            resp is not None and (resp.startswith(tag.encode() + b" NO ") or resp.startswith(tag.encode() + b" BAD ")), resp)
    R.status("the connection goes on", p.cmd("NOOP"), "OK")
    p.close()
    R.check("the server still serves new connections", server_alive(PORT, "alice", "pw-alice"))

c.logout()
R.finish()
