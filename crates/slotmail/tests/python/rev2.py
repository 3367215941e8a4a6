"""The parts of IMAP4rev2's base that were extensions of IMAP4rev1:
BINARY (RFC 3516; RFC 9051 6.4.5) with literal8 in both directions,
BINARY.SIZE, partials, UNKNOWN-CTE and implicit \\Seen; SEARCHRES
(RFC 5182; RFC 9051 6.4.4.1): SEARCH RETURN (SAVE) and "$" in FETCH, STORE,
COPY, MOVE, UID EXPUNGE and SEARCH; MULTIAPPEND (RFC 3502): several messages
in one APPEND, all or none. Python's imaplib reads BINARY answers as an
independent client; the rest is checked on the wire.

argv: imap_port. User: alice/pw-alice.
"""

import base64
import imaplib
import re

from imapt import Lit, Report, args, connect, uid_set

PORT = args()[0]
R = Report("rev2.py")
CRLF = b"\r\n"

PAYLOAD = bytes(range(256)) * 4  # every octet, NUL included
TEXT = "Grüße, café = 100 %\r\n".encode()

MIXED = CRLF.join([
    b"From: alice@example.org",
    b"To: bob@example.org",
    b"Subject: binary parts",
    b"MIME-Version: 1.0",
    b'Content-Type: multipart/mixed; boundary="zz"',
    b"",
    b"--zz",
    b"Content-Type: text/plain; charset=utf-8",
    b"Content-Transfer-Encoding: quoted-printable",
    b"",
    b"Gr=C3=BC=C3=9Fe, caf=C3=A9 =3D 100 %",
    b"--zz",
    b"Content-Type: application/octet-stream",
    b"Content-Transfer-Encoding: base64",
    b"",
    base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n").rstrip(CRLF),
    b"--zz",
    b"Content-Type: application/x-thing",
    b"Content-Transfer-Encoding: x-private",
    b"",
    b"whatever",
    b"--zz--",
    b"",
])


def one(r):
    """The items of the first FETCH response of `r` ({} when none)."""
    f = r.fetches()
    return f[0][1] if f else {}


def search_ids(r):
    """The numbers of the `* SEARCH` answer of `r`."""
    for u in r.of("SEARCH"):
        return [int(x) for x in u.split()[2:]]
    return []


def plain(subject):
    return b"From: a@example.org\r\nSubject: " + subject.encode() + b"\r\n\r\nbody of " + subject.encode() + b"\r\n"


c = connect(PORT, "alice", "pw-alice")
caps = c.must("CAPABILITY").of("CAPABILITY")[0].upper().split()
for cap in (b"BINARY", b"SEARCHRES", b"MULTIAPPEND"):
    R.check("capability %s" % cap.decode(), cap in caps, caps)

c.must("CREATE rev2")
c.select("rev2")
r, _, uid = c.append("rev2", MIXED)
R.status("append multipart", r, "OK")

with R.section("BINARY"):
    r = c.must("UID FETCH %d (BINARY.PEEK[2] BINARY.SIZE[2])" % uid)
    raw = (r.of("FETCH") or [b""])[0]
    R.check("base64 part is sent as literal8 (it holds NUL)", b"BINARY[2] ~{" in raw, raw[:200])
    f = one(r)
    R.eq("BINARY[2] is the decoded payload", f.get("BINARY[2]"), PAYLOAD)
    R.eq("BINARY.SIZE[2] is the decoded size", int(f.get("BINARY.SIZE[2]", -1)), len(PAYLOAD))

    r = c.must("UID FETCH %d (BINARY.PEEK[1] BINARY.SIZE[1])" % uid)
    raw = r.of("FETCH")[0]
    R.check("text part without NUL is a plain literal", b"BINARY[1] {" in raw, raw[:200])
    f = one(r)
    R.eq("BINARY[1] undoes quoted-printable", f.get("BINARY[1]"), TEXT.rstrip(CRLF))
    R.eq("BINARY.SIZE[1]", int(f.get("BINARY.SIZE[1]", -1)), len(TEXT.rstrip(CRLF)))

    r = c.must("UID FETCH %d (BINARY.PEEK[2]<10.20>)" % uid)
    f = one(r)
    R.eq("partial BINARY[2]<10.20>", f.get("BINARY[2]<10>"), PAYLOAD[10:30])

    r = c.must("UID FETCH %d (BINARY.PEEK[])" % uid)
    f = one(r)
    R.eq("BINARY[] is the whole message as appended", f.get("BINARY[]"), MIXED)

    r = c.cmd("UID FETCH %d (BINARY.PEEK[3])" % uid)
    R.status("unknown transfer encoding", r, "NO", "UNKNOWN-CTE")

    r = c.must("UID FETCH %d (BINARY.PEEK[9])" % uid)
    f = one(r)
    R.eq("a part that does not exist is empty", f.get("BINARY[9]"), b"")

    r = c.must("UID FETCH %d (FLAGS)" % uid)
    R.check("BINARY.PEEK leaves \\Seen alone", "\\Seen" not in str(one(r).get("FLAGS")))
    r = c.must("UID FETCH %d (BINARY[1])" % uid)
    flags = one(r).get("FLAGS")
    R.check("BINARY sets \\Seen", flags is not None and "\\Seen" in flags, r)

    # APPEND with literal8: 8-bit content is stored as sent.
    eight = b"Subject: eight bit\r\nContent-Transfer-Encoding: binary\r\n\r\n" + "Grüße\r\n".encode()
    r = c.cmd("APPEND rev2 ", Lit(eight, binary=True))
    R.status("APPEND with literal8", r, "OK", "APPENDUID")
    uid8 = int(r.code.split()[2])
    r = c.must("UID FETCH %d (BODY.PEEK[])" % uid8)
    R.eq("literal8 APPEND stored byte for byte", one(r).get("BODY[]"), eight)
    r = c.cmd("APPEND rev2 ", Lit(b"Subject: nul\r\n\r\na\x00b\r\n", binary=True))
    R.status("APPEND of a message with NUL bytes", r, "NO", "UNKNOWN-CTE")

    # An independent client: imaplib reads the literal8 answer.
    m = imaplib.IMAP4("127.0.0.1", PORT)
    m.login("alice", "pw-alice")
    m.select("rev2", readonly=True)
    typ, data = m.uid("FETCH", str(uid), "(BINARY.PEEK[2])")
    R.eq("imaplib: FETCH BINARY status", typ, "OK")
    got = data[0][1] if data and isinstance(data[0], tuple) else None
    R.eq("imaplib: BINARY[2] decoded payload", got, PAYLOAD)
    m.logout()

with R.section("MULTIAPPEND"):
    c.must("CREATE multi")
    before = c.must("STATUS multi (MESSAGES UIDNEXT)").of("STATUS")[0]
    r = c.cmd("APPEND multi (\\Seen) ", Lit(plain("m1")), " ", Lit(plain("m2"), plus=True),
              ' (\\Flagged) "01-Jan-2024 10:00:00 +0100" ', Lit(plain("m3")))
    R.status("three messages in one APPEND", r, "OK", "APPENDUID")
    _, uv, uids = r.code.split()
    uids = uid_set(uids)
    R.eq("APPENDUID names three consecutive UIDs", len(uids), 3)
    c.select("multi")
    r = c.must("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    got = [x[1] for x in r.fetches()]
    R.eq("messages in order", [g.get("BODY[HEADER.FIELDS (SUBJECT)]").strip() for g in got],
         [b"Subject: m1", b"Subject: m2", b"Subject: m3"])
    R.eq("UIDs as announced", [int(g["UID"]) for g in got], uids)
    R.eq("flags per message", [sorted(f for f in g["FLAGS"] if f != "\\Recent") for g in got],
         [["\\Seen"], [], ["\\Flagged"]])
    R.eq("date per message", got[2].get("INTERNALDATE"), b"01-Jan-2024 10:00:00 +0100")

    # All or none: one bad message refuses the whole command.
    r = c.cmd("APPEND multi ", Lit(plain("n1")), " ", Lit(b""))
    R.status("an empty second message refuses the APPEND", r, "NO")
    r = c.cmd("APPEND multi ", Lit(plain("n1")), " ", Lit(b"Subject: x\r\n\r\n\x00\r\n", binary=True))
    R.status("a NUL in the second message refuses the APPEND", r, "NO", "UNKNOWN-CTE")
    st = c.must("STATUS multi (MESSAGES)").of("STATUS")[0]
    R.check("nothing of a refused MULTIAPPEND was stored", b"MESSAGES 3" in st, st)
    c.must("UNSELECT")

with R.section("SEARCHRES"):
    c.select("multi")
    r = c.must("SEARCH RETURN (SAVE) FLAGGED")
    R.eq("SAVE alone sends no SEARCH/ESEARCH", [u for u in r.untagged if b"SEARCH" in u], [])
    r = c.must("FETCH $ (UID)")
    R.eq("FETCH $ is the saved result", [int(x[1]["UID"]) for x in r.fetches()], [uids[2]])
    r = c.must("SEARCH RETURN (SAVE MIN) ALL")
    R.eq("SAVE with MIN answers MIN", [u.strip() for u in r.untagged if b"ESEARCH" in u],
         [b'* ESEARCH (TAG "%s") MIN 1' % r.tag.encode()])
    r = c.must("UID FETCH $ (UID)")
    R.eq("SAVE with MIN saves only the lowest", [int(x[1]["UID"]) for x in r.fetches()], [uids[0]])
    c.must("SEARCH RETURN (SAVE) UNSEEN")
    r = c.must("STORE $ +FLAGS.SILENT (\\Answered)")
    r = c.must("SEARCH ANSWERED")
    R.eq("STORE $ changed the saved messages", search_ids(r), [2, 3])
    r = c.must("SEARCH $ FLAGGED")
    R.eq("$ as a search key", search_ids(r), [3])
    r = c.must("UID SEARCH UID $")
    R.eq("UID $ as a search key", search_ids(r), uids[1:])
    c.must("CREATE saved-copy")
    r = c.must("COPY $ saved-copy")
    R.check("COPY $ answers COPYUID", r.code_name == "COPYUID", r)
    st = c.must("STATUS saved-copy (MESSAGES)").of("STATUS")[0]
    R.check("COPY $ copied the two saved messages", b"MESSAGES 2" in st, st)
    r = c.must("STORE $ +FLAGS.SILENT (\\Deleted)")
    r = c.must("UID EXPUNGE $")
    R.eq("UID EXPUNGE $ expunged the saved messages", sorted(r.numbers("EXPUNGE"), reverse=True), [3, 2])
    r = c.must("FETCH $ (UID)")
    R.eq("expunged messages drop out of $", r.fetches(), [])
    r = c.cmd("SEARCH RETURN (SAVE) CHARSET X-UNKNOWN ALL")
    R.status("a failed SEARCH with SAVE", r, "NO", "BADCHARSET")
    r = c.must("FETCH $ (UID)")
    R.eq("a failed SEARCH with SAVE leaves $ empty", r.fetches(), [])
    c.must("SEARCH RETURN (SAVE) ALL")
    c.select("multi")
    r = c.must("FETCH $ (UID)")
    R.eq("SELECT forgets the saved result", r.fetches(), [])
    r = c.cmd("FETCH 1,$ (UID)")
    R.status("$ inside a list", r, "BAD")
    c.select("saved-copy")
    c.must("SEARCH RETURN (SAVE) ALL")
    r = c.must("MOVE $ rev2")
    R.check("MOVE $ moved the saved messages", r.code_name == "COPYUID" or any(b"COPYUID" in u for u in r.untagged), r)
    st = c.must("STATUS saved-copy (MESSAGES)").of("STATUS")[0]
    R.check("MOVE $ emptied the mailbox", b"MESSAGES 0" in st, st)

c.logout()
R.finish()
