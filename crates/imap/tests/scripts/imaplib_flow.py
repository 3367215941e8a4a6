"""Drive the slot's IMAP server with Python's imaplib (an independent client).

usage: imaplib_flow.py PORT
Exits non-zero (with a traceback) on the first surprise; prints "ALL OK".
"""
import imaplib
import re
import sys
import time

port = int(sys.argv[1])


def ok(result, what):
    typ, data = result
    assert typ == "OK", f"{what}: {typ} {data!r}"
    return data


def message(subject, body):
    return (
        f"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.com>\r\n"
        f"Subject: {subject}\r\nDate: Tue, 05 Mar 2024 10:00:00 +0000\r\n"
        f"Message-ID: <{abs(hash(subject))}@example.org>\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{body}\r\n"
    ).encode("utf-8")


m = imaplib.IMAP4("127.0.0.1", port)
caps = m.capabilities
assert "IMAP4REV1" in caps and "AUTH=PLAIN" in caps, caps
ok(m.login("alice", "secret"), "login")
caps = ok(m.capability(), "capability")[0].decode().upper().split()
for cap in ["IDLE", "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "SPECIAL-USE", "COMPRESS=DEFLATE", "ESEARCH"]:
    assert cap in caps, (cap, caps)

# LIST with special-use.
names = ok(m.list(), "list")
assert any(b"\\Sent" in n and n.endswith(b'"Sent"') for n in names), names

# APPEND: flags, date, UTF-8 body, bytes 0x80..0xff (no NUL, no bare CR/LF).
weird = bytes(b for b in range(1, 256) if b not in (10, 13))
messages = [
    message("hello", "Hello, world"),
    message("Grüße", "Größere Grüße aus Köln ✓"),
    b"Subject: raw bytes\r\n\r\n" + weird + b"\r\nend\r\n",
]
uids = []
for i, raw in enumerate(messages):
    flags = "(\\Flagged)" if i == 0 else None
    date = imaplib.Time2Internaldate(time.time()) if i == 0 else '"01-Jan-2020 12:00:00 +0000"'
    data = ok(m.append("INBOX", flags, date, raw), "append")
    match = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert match, data
    uids.append(int(match.group(2)))
assert uids == [1, 2, 3], uids

typ, data = m.append("Nowhere", None, None, messages[0])
assert typ == "NO" and b"TRYCREATE" in data[0], (typ, data)

data = ok(m.select("INBOX"), "select")
assert data == [b"3"], data

# Bodies come back byte-identical.
for uid, raw in zip(uids, messages):
    data = ok(m.uid("FETCH", str(uid), "(RFC822.SIZE BODY.PEEK[])"), "fetch")
    header, body = data[0]
    assert body == raw, (uid, body, raw)
    assert f"RFC822.SIZE {len(raw)}".encode() in header, header

# BODY[] (not PEEK) sets \Seen and reports it.
data = ok(m.fetch("1", "(BODY[TEXT])"), "fetch text")
assert data[0][1] == b"Hello, world\r\n", data
flags = ok(m.fetch("1", "(FLAGS)"), "flags")
assert b"\\Seen" in flags[0] and b"\\Flagged" in flags[0], flags

# Header fields as mbsync asks for them.
data = ok(m.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID)])"), "fetch headers")
subjects = [part[1] for part in data if isinstance(part, tuple)]
assert len(subjects) == 3 and subjects[0].startswith(b"Subject: hello\r\n"), subjects

# STORE and SEARCH.
ok(m.store("2", "+FLAGS", "(\\Answered $Label)"), "store")
assert ok(m.search(None, "ANSWERED"), "search") == [b"2"]
assert ok(m.search(None, "KEYWORD", "$Label"), "search kw") == [b"2"]
assert ok(m.search(None, "FLAGGED", "SEEN"), "search flags") == [b"1"]
assert ok(m.search(None, "SUBJECT", "hello"), "search subj") == [b"1"]
m.literal = "köln".encode()
assert ok(m.search("UTF-8", "BODY"), "search body") == [b"2"]
assert ok(m.uid("SEARCH", "NOT", "SEEN"), "uid search") == [b"2 3"]
assert ok(m.search(None, "SINCE", "1-Jan-2021"), "since") == [b"1"]

# COPY, MOVE, EXPUNGE.
data = ok(m.copy("1:2", "Archive"), "copy")
assert b"[COPYUID" in data[0], data
typ, data = m.uid("MOVE", "3", "Trash")
assert typ == "OK", (typ, data)
assert ok(m.status("Trash", "(MESSAGES)"), "status")[0].endswith(b"(MESSAGES 1)")
ok(m.store("1", "+FLAGS", "\\Deleted"), "delete")
expunged = ok(m.expunge(), "expunge")
# imaplib also returns the EXPUNGE of the MOVE above, which it kept.
assert expunged == [b"3", b"1"], expunged
assert ok(m.search(None, "ALL"), "all") == [b"1"]
status = ok(m.status("INBOX", "(MESSAGES UIDNEXT UNSEEN)"), "status inbox")[0]
assert status.endswith(b"(MESSAGES 1 UIDNEXT 4 UNSEEN 1)"), status

# CREATE, RENAME, DELETE with modified UTF-7.
ok(m.create("Entw&APw-rfe/Alt"), "create")
names = ok(m.list('""', "Entw*"), "list entw")
assert names == [b'(\\HasChildren) "/" "Entw&APw-rfe"', b'(\\HasNoChildren) "/" "Entw&APw-rfe/Alt"'], names
ok(m.delete("Entw&APw-rfe/Alt"), "delete mutf7 child")
ok(m.delete("Entw&APw-rfe"), "delete mutf7")
ok(m.create("Projects/Alt"), "create ascii")
ok(m.rename("Projects", "Old"), "rename")
ok(m.delete("Old/Alt"), "delete child")
ok(m.delete("Old"), "delete")
typ, data = m.delete("Old")
assert typ == "NO" and b"NONEXISTENT" in data[0], (typ, data)

ok(m.close(), "close")
typ, data = m.logout()
assert typ == "BYE", (typ, data)

# AUTHENTICATE PLAIN, an admin acting as alice.
a = imaplib.IMAP4("127.0.0.1", port)
ok(a.authenticate("PLAIN", lambda _: b"alice\0root\0secret"), "authenticate as alice")
assert ok(a.select("INBOX", readonly=True), "examine") == [b"1"]
a.logout()
b = imaplib.IMAP4("127.0.0.1", port)
try:
    b.authenticate("PLAIN", lambda _: b"alice\0bob\0secret")
    raise AssertionError("bob acted as alice")
except imaplib.IMAP4.error as e:
    assert "AUTHORIZATIONFAILED" in str(e), e
try:
    b.login("alice", "wrong")
    raise AssertionError("wrong password accepted")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e
b.logout()
print("ALL OK")
