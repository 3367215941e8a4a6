"""FETCH and UID FETCH (RFC 3501 6.4.5, RFC 9051 6.4.5): every data item
(FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE BODY[...]
with HEADER, TEXT, part numbers, MIME, HEADER.FIELDS(.NOT), partials,
RFC822*, the FAST/ALL/FULL macros, MODSEQ and CHANGEDSINCE), BODY versus
BODY.PEEK and \\Seen, with every body compared byte for byte with what was
appended.

argv: imap_port. User: alice/pw-alice.
"""

import base64
import email.utils
import imaplib
import random

from imapt import Lit, Report, args, connect

PORT = args()[0]
R = Report("fetch.py")
CRLF = b"\r\n"

# ---- the messages
A_HEADER = (b'From: "Alice Example" <alice@example.org>\r\n'
            b"To: Bob <bob@example.com>, carol@example.net\r\n"
            b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from Alice\r\n"
            b"Date: Tue, 05 Mar 2024 10:00:00 +0100\r\n"
            b"Message-ID: <a1@example.org>\r\n"
            b"In-Reply-To: <a0@example.org>\r\n"
            b"X-Extra: something\r\n"
            b"Received: from relay.example.org by mx.example.com; Tue, 05 Mar 2024 10:00:01 +0100\r\n"
            b"\r\n")
A_BODY = b"Hello Bob,\r\nline two\r\nline three\r\n"
A = A_HEADER + A_BODY

P1_MIME = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
P1_BODY = "Grüße aus München\r\nzweite Zeile\r\n".encode()
random.seed(7)
BIN = bytes(random.getrandbits(8) for _ in range(3000))
P2_MIME = (b'Content-Type: application/octet-stream; name="data.bin"\r\n'
           b"Content-Transfer-Encoding: base64\r\n"
           b'Content-Disposition: attachment; filename="data.bin"\r\n\r\n')
P2_BODY = base64.encodebytes(BIN).replace(b"\n", b"\r\n")
P3_MIME = b"Content-Type: message/rfc822\r\n\r\n"
INNER_HEADER = (b"From: inner@example.org\r\nTo: alice@example.com\r\nSubject: inner message\r\n"
                b"Date: Wed, 06 Mar 2024 11:00:00 +0000\r\nMessage-ID: <inner@example.org>\r\n\r\n")
INNER_BODY = b"inner body line 1\r\ninner body line 2\r\n"
INNER = INNER_HEADER + INNER_BODY
B_HEADER = (b"From: carol@example.net\r\nTo: alice@example.com\r\nSubject: multipart\r\n"
            b"Date: Wed, 06 Mar 2024 12:00:00 +0000\r\nMessage-ID: <b1@example.org>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n")
B_TEXT = (b"preamble text\r\n"
          b"--XYZ\r\n" + P1_MIME + P1_BODY +
          b"\r\n--XYZ\r\n" + P2_MIME + P2_BODY +
          b"\r\n--XYZ\r\n" + P3_MIME + INNER +
          b"\r\n--XYZ--\r\nepilogue\r\n")
B = B_HEADER + B_TEXT

C = (b"From: latin@example.org\r\nSubject: 8-bit\r\n\r\n"
     b"Gr\xfc\xdfe \x80\x81\xfe\xff and a lone LF\nend\r\n")

D = (b"From: a@b.example\r\nTo: undisclosed-recipients:;\r\n"
     b"Cc: Team: x@y.example, w@y.example;\r\nSubject: group test\r\n\r\nbody\r\n")

E = b"From: big@example.org\r\nSubject: big\r\n\r\n" + b"".join(
    b"%07d " % i + b"0123456789abcdef" * 4 + CRLF for i in range(20000))

F = b"From: nobody@example.org\r\nSubject: no body at all\r\n"

# Raw 8-bit (UTF-8) header values, a folded header, repeated fields, a
# display name with a comma and an escaped quote, an empty Subject.
G_HEADER = ("From: \"Doe, J\\\"ohn\\\"\" <jd@example.org>\r\n"
            "To: Zoë Ünicode <zoe@example.org>\r\n"
            "Subject: Grüße ohne Kodierung\r\n"
            "Reply-To: replies@example.org\r\n"
            "X-Folded: first part\r\n  second part\r\n\tthird part\r\n"
            "Received: one\r\nReceived: two\r\n"
            "Content-Type: text/plain; charset=utf-8; name=\"Ünïcödé.txt\"\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n").encode()
G = G_HEADER + "Körper\r\n".encode()
H = b"From: empty-subject@example.org\r\nSubject:\r\n\r\nx\r\n"

SEEN_MSGS = [A.replace(b"a1@", b"s%d@" % i) for i in range(6)]

c = connect(PORT, "alice", "pw-alice")
c.must("CREATE F")
DATE = "05-Mar-2024 10:00:05 +0100"
UID = {}
for name, m in [("A", A), ("B", B), ("C", C), ("D", D), ("E", E), ("F", F), ("G", G), ("H", H)] + [("S%d" % i, m) for i, m in enumerate(SEEN_MSGS)]:
    r, uv, uid = c.append("F", m, date=DATE)
    assert r.status == "OK", (name, r)
    UID[name] = uid
SEQ = {name: i + 1 for i, name in enumerate(UID)}
c.must("SELECT F")


def fetch1(name, items, uid=False):
    if uid:
        r = c.cmd("UID FETCH %d %s" % (UID[name], items))
    else:
        r = c.cmd("FETCH %d %s" % (SEQ[name], items))
    f = [d for seq, d in r.fetches() if seq == SEQ[name]]
    merged = {}
    for d in f:
        merged.update(d)
    return r, merged


def body_eq(name, msg, items, key, want):
    r, d = fetch1(msg, items)
    got = d.get(key)
    return R.check("%s: %s" % (msg, name), r.status == "OK" and got == want,
                   "key %s: expected %r..., got %r... (%r)" % (key, want[:200] if want else want, got[:200] if isinstance(got, bytes) else got, r if got is None else ""))


def up(v):
    """Case-fold the atoms/strings that IMAP compares case-insensitively."""
    return v.upper() if isinstance(v, (str, bytes)) else v


with R.section("FLAGS UID INTERNALDATE RFC822.SIZE"):
    r, d = fetch1("A", "(FLAGS UID INTERNALDATE RFC822.SIZE)")
    R.status("FETCH (FLAGS UID INTERNALDATE RFC822.SIZE)", r, "OK")
    R.eq("UID matches APPENDUID", int(d.get("UID", 0)), UID["A"])
    R.eq("RFC822.SIZE is the octet count", int(d.get("RFC822.SIZE", -1)), len(A))
    idate = d.get("INTERNALDATE")
    R.check("INTERNALDATE is the APPEND date",
            idate and email.utils.mktime_tz(email.utils.parsedate_tz(idate.decode().replace("-", " ", 2))) ==
            email.utils.mktime_tz(email.utils.parsedate_tz(DATE.replace("-", " ", 2))), idate)
    R.check("FLAGS is a list", isinstance(d.get("FLAGS"), list), d)
    import re as _re
    raw = [u for u in r.of("FETCH")][0] if r.of("FETCH") else b""
    R.check('INTERNALDATE is "dd-Mon-yyyy hh:mm:ss +zzzz" (RFC 3501 9 date-time)',
            _re.search(rb'INTERNALDATE "( \d|\d\d)-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"', raw), raw)
    for name, m in [("B", B), ("C", C), ("E", E), ("F", F)]:
        r, d = fetch1(name, "RFC822.SIZE")
        R.eq("RFC822.SIZE of %s" % name, int(d.get("RFC822.SIZE", -1)), len(m))
    r = c.cmd("UID FETCH %d FLAGS" % UID["B"])
    R.check("UID FETCH includes UID even when not asked (RFC 3501 6.4.8)",
            r.fetches() and int(r.fetches()[0][1].get("UID", 0)) == UID["B"] and r.fetches()[0][0] == SEQ["B"], r)
    r = c.cmd("FETCH 1:* (UID)")
    R.eq("FETCH 1:* (UID) in order", [(s, int(d["UID"])) for s, d in r.fetches()], [(SEQ[n], UID[n]) for n in UID])
    r = c.cmd("UID FETCH %d:* (UID)" % (UID["F"] + 1000))
    R.check("UID FETCH n:* with n above every UID returns the last message (RFC 3501 6.4.8)",
            r.status == "OK" and [int(d["UID"]) for _, d in r.fetches()] == [max(UID.values())], r)
    r = c.cmd("UID FETCH %d FLAGS" % (max(UID.values()) + 500))
    R.check("UID FETCH of a missing UID is OK and empty", r.status == "OK" and not r.fetches(), r)

with R.section("ENVELOPE"):
    r, d = fetch1("A", "ENVELOPE")
    env = d.get("ENVELOPE")
    want = [b"Tue, 05 Mar 2024 10:00:00 +0100", b"=?utf-8?q?Gr=C3=BC=C3=9Fe?= from Alice",
            [[b"Alice Example", None, b"alice", b"example.org"]],
            [[b"Alice Example", None, b"alice", b"example.org"]],
            [[b"Alice Example", None, b"alice", b"example.org"]],
            [[b"Bob", None, b"bob", b"example.com"], [None, None, b"carol", b"example.net"]],
            None, None, b"<a0@example.org>", b"<a1@example.org>"]
    R.eq("ENVELOPE of A (sender and reply-to default to from, subject not decoded; RFC 3501 7.4.2)", env, want)
    r, d = fetch1("D", "ENVELOPE")
    env = d.get("ENVELOPE")
    R.check("ENVELOPE without Date/Message-ID has NIL there", env and env[0] is None and env[9] is None, env)
    R.eq("ENVELOPE group syntax: empty group (RFC 3501 7.4.2)", env and env[5],
         [[None, None, b"undisclosed-recipients", None], [None, None, None, None]])
    R.eq("ENVELOPE group syntax: group with members", env and env[6],
         [[None, None, b"Team", None], [None, None, b"x", b"y.example"], [None, None, b"w", b"y.example"], [None, None, None, None]])
    r, d = fetch1("B", "ENVELOPE")
    env = d.get("ENVELOPE")
    R.check("ENVELOPE of B", env and env[1] == b"multipart" and env[2] == [[None, None, b"carol", b"example.net"]] and env[9] == b"<b1@example.org>", env)

def seven_bit_outside_literals(raw):
    """Whether every byte outside literals is 7-bit (RFC 3501 4.3: quoted
    strings are 7-bit; 8-bit text must be sent as a literal)."""
    out = bytearray()
    pos = 0
    import re as _re
    for m in _re.finditer(rb"\{(\d+)\}\r\n", raw):
        if m.start() < pos:
            continue
        out += raw[pos:m.start()]
        pos = m.end() + int(m.group(1))
    out += raw[pos:]
    return all(ch < 0x80 for ch in out)


with R.section("8-bit headers, folding, quoting"):
    r = c.cmd("FETCH %d (ENVELOPE BODYSTRUCTURE)" % SEQ["G"])
    R.status("FETCH ENVELOPE BODYSTRUCTURE of a message with raw UTF-8 headers", r, "OK")
    R.check("8-bit header text is sent as literals, never in quoted strings (RFC 3501 4.3, 9)",
            r.fetches() and all(seven_bit_outside_literals(u) for u in r.of("FETCH")), r)
    d = r.fetches()[0][1] if r.fetches() else {}
    env = d.get("ENVELOPE") or [None] * 10
    R.eq("ENVELOPE subject: the raw 8-bit bytes", env[1], "Grüße ohne Kodierung".encode())
    R.eq("ENVELOPE from: quoted display name with comma and escaped quotes", env[2], [['Doe, J"ohn"'.encode(), None, b"jd", b"example.org"]])
    R.eq("ENVELOPE to: 8-bit display name", env[5], [["Zoë Ünicode".encode(), None, b"zoe", b"example.org"]])
    R.eq("ENVELOPE reply-to when present", env[4], [[None, None, b"replies", b"example.org"]])
    R.eq("ENVELOPE sender defaults to from", env[3], env[2])
    bs = d.get("BODYSTRUCTURE") or []
    params = bs[2] if len(bs) > 2 and isinstance(bs[2], list) else []
    pd = {up(params[i]): params[i + 1] for i in range(0, len(params) - 1, 2)}
    R.eq("BODYSTRUCTURE 8-bit parameter value", pd.get(b"NAME"), "Ünïcödé.txt".encode())
    r, d = fetch1("G", "BODY.PEEK[HEADER.FIELDS (X-Folded Received)]")
    hf = [v for k, v in d.items() if k.startswith("BODY[HEADER.FIELDS")]
    R.eq("HEADER.FIELDS keeps folded lines and repeated fields, in message order", hf,
         [b"X-Folded: first part\r\n  second part\r\n\tthird part\r\nReceived: one\r\nReceived: two\r\n\r\n"])
    body_eq("BODY[] of the 8-bit header message", "G", "BODY.PEEK[]", "BODY[]", G)
    r, d = fetch1("H", "ENVELOPE")
    R.eq("ENVELOPE of an empty Subject: is the empty string", (d.get("ENVELOPE") or [None, None])[1], b"")


with R.section("BODY and BODYSTRUCTURE"):
    def lines(b_):
        return b_.count(b"\r\n")

    r, d = fetch1("A", "BODYSTRUCTURE")
    bs = d.get("BODYSTRUCTURE")
    R.check("BODYSTRUCTURE of a plain message: TEXT PLAIN, us-ascii, 7BIT, size, lines (RFC 2045 defaults)",
            bs and [up(x) for x in bs[:2]] == [b"TEXT", b"PLAIN"] and [up(x) for x in (bs[2] or [])] == [b"CHARSET", b"US-ASCII"]
            and up(bs[5]) == b"7BIT" and int(bs[6]) == len(A_BODY) and int(bs[7]) == lines(A_BODY), bs)
    r, d = fetch1("A", "BODY")
    body = d.get("BODY")
    R.check("BODY of a plain message has no extension data", body and len(body) == 8 and body[:8] == bs[:8], (body, bs))
    r, d = fetch1("B", "BODYSTRUCTURE")
    bs = d.get("BODYSTRUCTURE")
    ok = isinstance(bs, list) and len(bs) >= 5
    R.check("BODYSTRUCTURE of B is a multipart with three parts", ok and all(isinstance(x, list) for x in bs[:3]) and up(bs[3]) == b"MIXED", bs)
    if ok:
        p1, p2, p3 = bs[0], bs[1], bs[2]
        R.check("part 1: TEXT PLAIN charset utf-8 8BIT size lines",
                [up(x) for x in p1[:2]] == [b"TEXT", b"PLAIN"] and [up(x) for x in (p1[2] or [])] == [b"CHARSET", b"UTF-8"]
                and up(p1[5]) == b"8BIT" and int(p1[6]) == len(P1_BODY) and int(p1[7]) == lines(P1_BODY), p1)
        R.check("part 2: APPLICATION OCTET-STREAM name data.bin BASE64 size",
                [up(x) for x in p2[:2]] == [b"APPLICATION", b"OCTET-STREAM"] and p2[2] and up(p2[2][0]) == b"NAME" and p2[2][1] == b"data.bin"
                and up(p2[5]) == b"BASE64" and int(p2[6]) == len(P2_BODY), p2)
        R.check("part 2 extension data: disposition attachment; filename data.bin",
                len(p2) >= 9 and isinstance(p2[8], list) and up(p2[8][0]) == b"ATTACHMENT" and [up(x) for x in p2[8][1][:1]] == [b"FILENAME"] and p2[8][1][1] == b"data.bin", p2)
        R.check("part 3: MESSAGE RFC822 with envelope, body structure and lines",
                [up(x) for x in p3[:2]] == [b"MESSAGE", b"RFC822"] and int(p3[6]) == len(INNER)
                and isinstance(p3[7], list) and p3[7][1] == b"inner message" and isinstance(p3[8], list)
                and [up(x) for x in p3[8][:2]] == [b"TEXT", b"PLAIN"] and int(p3[8][6]) == len(INNER_BODY)
                and int(p3[9]) == lines(INNER), p3)
        R.check("multipart extension data: boundary parameter",
                isinstance(bs[4], list) and up(bs[4][0]) == b"BOUNDARY" and bs[4][1] == b"XYZ", bs[3:])
    r, d = fetch1("B", "BODY")
    body = d.get("BODY")
    R.check("BODY of a multipart: parts and subtype only, no extension data",
            isinstance(body, list) and len(body) == 4 and up(body[3]) == b"MIXED" and len(body[1]) == 7, body)

with R.section("BODY[section] byte for byte"):
    body_eq("BODY[]", "A", "BODY.PEEK[]", "BODY[]", A)
    body_eq("BODY[HEADER] includes the blank line", "A", "BODY.PEEK[HEADER]", "BODY[HEADER]", A_HEADER)
    body_eq("BODY[TEXT]", "A", "BODY.PEEK[TEXT]", "BODY[TEXT]", A_BODY)
    body_eq("BODY[1] of a single-part message is its body (RFC 3501 6.4.5)", "A", "BODY.PEEK[1]", "BODY[1]", A_BODY)
    r, d = fetch1("A", "BODY.PEEK[HEADER.FIELDS (From Subject)]")
    hf = [v for k, v in d.items() if k.upper() == "BODY[HEADER.FIELDS (FROM SUBJECT)]"]
    R.eq("BODY[HEADER.FIELDS (From Subject)] (fields plus the blank line)", hf,
         [b'From: "Alice Example" <alice@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from Alice\r\n\r\n'])
    r, d = fetch1("A", "BODY.PEEK[HEADER.FIELDS (subject from)]")
    hf = [v for k, v in d.items() if k.startswith("BODY[HEADER.FIELDS")]
    R.eq("HEADER.FIELDS with lower-case names: same fields, message order", hf,
         [b'From: "Alice Example" <alice@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from Alice\r\n\r\n'])
    r = c.cmd('FETCH %d BODY.PEEK[HEADER.FIELDS ("Subject" ' % SEQ["A"], Lit("Date"), ")]")
    hf = [v for _, d in r.fetches() for k, v in d.items() if k.startswith("BODY[HEADER.FIELDS")]
    R.eq("HEADER.FIELDS with a quoted and a literal field name (astring, RFC 3501 9)", hf,
         [b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from Alice\r\nDate: Tue, 05 Mar 2024 10:00:00 +0100\r\n\r\n"])
    r, d = fetch1("A", "BODY.PEEK[HEADER.FIELDS (From)]<6.5>")
    hf = [v for k, v in d.items() if k.startswith("BODY[HEADER.FIELDS")]
    R.eq("partial of HEADER.FIELDS", hf, [b'From: "Alice Example" <alice@example.org>\r\n\r\n'[6:11]])
    r, d = fetch1("A", "BODY.PEEK[HEADER.FIELDS.NOT (Received X-Extra)]")
    hf = [v for k, v in d.items() if k.startswith("BODY[HEADER.FIELDS.NOT")]
    want = b"".join(l_ + CRLF for l_ in A_HEADER.split(CRLF) if l_ and not l_.startswith((b"Received", b"X-Extra"))) + CRLF
    R.eq("BODY[HEADER.FIELDS.NOT (Received X-Extra)]", hf, [want])
    r, d = fetch1("A", "BODY.PEEK[HEADER.FIELDS (X-Absent)]")
    hf = [v for k, v in d.items() if k.startswith("BODY[HEADER.FIELDS")]
    R.eq("HEADER.FIELDS of an absent field: just the blank line (RFC 9051 6.4.5)", hf, [CRLF])
    body_eq("BODY[] of a multipart", "B", "BODY.PEEK[]", "BODY[]", B)
    body_eq("BODY[HEADER] of a multipart", "B", "BODY.PEEK[HEADER]", "BODY[HEADER]", B_HEADER)
    body_eq("BODY[TEXT] (preamble and epilogue included)", "B", "BODY.PEEK[TEXT]", "BODY[TEXT]", B_TEXT)
    body_eq("BODY[1]", "B", "BODY.PEEK[1]", "BODY[1]", P1_BODY)
    body_eq("BODY[1.MIME]", "B", "BODY.PEEK[1.MIME]", "BODY[1.MIME]", P1_MIME)
    body_eq("BODY[2] (base64 as stored)", "B", "BODY.PEEK[2]", "BODY[2]", P2_BODY)
    body_eq("BODY[2.MIME]", "B", "BODY.PEEK[2.MIME]", "BODY[2.MIME]", P2_MIME)
    body_eq("BODY[3] (the encapsulated message)", "B", "BODY.PEEK[3]", "BODY[3]", INNER)
    body_eq("BODY[3.MIME] (the MIME header of the message/rfc822 part)", "B", "BODY.PEEK[3.MIME]", "BODY[3.MIME]", P3_MIME)
    body_eq("BODY[3.HEADER]", "B", "BODY.PEEK[3.HEADER]", "BODY[3.HEADER]", INNER_HEADER)
    body_eq("BODY[3.TEXT]", "B", "BODY.PEEK[3.TEXT]", "BODY[3.TEXT]", INNER_BODY)
    body_eq("BODY[3.1]", "B", "BODY.PEEK[3.1]", "BODY[3.1]", INNER_BODY)
    r, d = fetch1("B", "BODY.PEEK[3.HEADER.FIELDS (Subject)]")
    R.eq("BODY[3.HEADER.FIELDS (Subject)]", [v for k, v in d.items() if k.startswith("BODY[3.HEADER.FIELDS")],
         [b"Subject: inner message\r\n\r\n"])
    R.eq("the base64 part decodes to the attachment", base64.b64decode(P2_BODY), BIN)
    body_eq("BODY[] of an 8-bit message with a lone LF", "C", "BODY.PEEK[]", "BODY[]", C)
    body_eq("BODY[TEXT] of the 8-bit message", "C", "BODY.PEEK[TEXT]", "BODY[TEXT]", C.split(b"\r\n\r\n", 1)[1])
    body_eq("BODY[] of a 1.4 MB message", "E", "BODY.PEEK[]", "BODY[]", E)
    body_eq("BODY[] of a message without a body", "F", "BODY.PEEK[]", "BODY[]", F)
    body_eq("BODY[HEADER] of a message without a blank line", "F", "BODY.PEEK[HEADER]", "BODY[HEADER]", F)
    body_eq("BODY[TEXT] of a message without a body is empty", "F", "BODY.PEEK[TEXT]", "BODY[TEXT]", b"")

with R.section("partial fetches"):
    body_eq("BODY[]<0.10>", "A", "BODY.PEEK[]<0.10>", "BODY[]<0>", A[:10])
    body_eq("BODY[TEXT]<5.7>", "A", "BODY.PEEK[TEXT]<5.7>", "BODY[TEXT]<5>", A_BODY[5:12])
    body_eq("BODY[]<n.100> near the end returns what is left", "A", "BODY.PEEK[]<%d.100>" % (len(A) - 3), "BODY[]<%d>" % (len(A) - 3), A[-3:])
    body_eq("BODY[]<n.10> beyond the end is empty (RFC 3501 6.4.5)", "A", "BODY.PEEK[]<%d.10>" % (len(A) + 10), "BODY[]<%d>" % (len(A) + 10), b"")
    body_eq("BODY[1]<3.4> of a part", "B", "BODY.PEEK[1]<3.4>", "BODY[1]<3>", P1_BODY[3:7])
    body_eq("BODY[]<1000000.1000> of the big message", "E", "BODY.PEEK[]<1000000.1000>", "BODY[]<1000000>", E[1000000:1001000])
    r = c.cmd("FETCH %d BODY.PEEK[]<0.0>" % SEQ["A"])
    R.check("BODY[]<0.0> is BAD or an empty string", r.status == "BAD" or (r.status == "OK" and r.fetches() and r.fetches()[0][1].get("BODY[]<0>") == b""), r)

with R.section("RFC822 items and macros"):
    body_eq("RFC822 is BODY[]", "A", "RFC822", "RFC822", A)
    body_eq("RFC822.HEADER is BODY.PEEK[HEADER]", "B", "RFC822.HEADER", "RFC822.HEADER", B_HEADER)
    body_eq("RFC822.TEXT is BODY[TEXT]", "C", "RFC822.TEXT", "RFC822.TEXT", C.split(b"\r\n\r\n", 1)[1])
    for macro, items in [("FAST", {"FLAGS", "INTERNALDATE", "RFC822.SIZE"}),
                         ("ALL", {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"}),
                         ("FULL", {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"})]:
        r, d = fetch1("D", macro)
        R.eq("FETCH %s returns exactly its items (RFC 3501 6.4.5)" % macro, set(d), items, r)
    r, d = fetch1("A", "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject)] FLAGS)")
    R.check("several items in one FETCH", {"UID", "RFC822.SIZE", "FLAGS"} <= set(d) and any(k.startswith("BODY[HEADER.FIELDS") for k in d), d)

with R.section("BODY versus BODY.PEEK and \\Seen (RFC 3501 6.4.5)"):
    def flags(name):
        _, d = fetch1(name, "FLAGS")
        return d.get("FLAGS", [])

    c.must("STORE 1:* -FLAGS.SILENT (\\Seen)")
    for name, item in [("S0", "BODY.PEEK[]"), ("S1", "BODY.PEEK[TEXT]"), ("S2", "RFC822.HEADER"), ("S3", "BODY.PEEK[1]")]:
        fetch1(name, item)
        R.check("%s leaves \\Seen unset" % item, "\\Seen" not in flags(name), flags(name))
    for name, item, key in [("S0", "BODY[]", "BODY[]"), ("S1", "BODY[TEXT]", "BODY[TEXT]"), ("S2", "RFC822", "RFC822"),
                            ("S3", "RFC822.TEXT", "RFC822.TEXT"), ("S4", "BODY[HEADER]", "BODY[HEADER]"), ("S5", "BODY[]<0.10>", "BODY[]<0>")]:
        r, d = fetch1(name, item)
        R.check("%s returns the data" % item, isinstance(d.get(key), bytes), r)
        R.check("%s sets \\Seen" % item, "\\Seen" in flags(name), flags(name))
        R.check("%s reports the new FLAGS in the FETCH response (RFC 3501 6.4.5 SHOULD)" % item,
                "\\Seen" in d.get("FLAGS", []), r)
    r = c.cmd("FETCH %d (FLAGS BODY[])" % SEQ["S0"])
    R.check("BODY[] of an already \\Seen message sends one FETCH", len(r.fetches()) == 1, r)

with R.section("MODSEQ and CHANGEDSINCE (RFC 7162)"):
    r = c.cmd("FETCH 1:* (MODSEQ)")
    ms = {s: int(d["MODSEQ"][0]) for s, d in r.fetches()}
    R.check("MODSEQ for every message, all positive", len(ms) == len(UID) and all(v > 0 for v in ms.values()), r)
    top = max(ms.values())
    r = c.cmd("STORE %d,%d +FLAGS ($Changed)" % (SEQ["B"], SEQ["D"]))
    changed = {s: int(d["MODSEQ"][0]) for s, d in r.fetches() if "MODSEQ" in d}
    R.check("STORE returns MODSEQ above the old maximum", set(changed) == {SEQ["B"], SEQ["D"]} and min(changed.values()) > top, r)
    r = c.cmd("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % top)
    got = {s: d for s, d in r.fetches()}
    R.eq("FETCH (CHANGEDSINCE) returns only the changed messages", sorted(got), sorted([SEQ["B"], SEQ["D"]]), r)
    R.check("... with MODSEQ included (RFC 7162 3.1.4.1)", all("MODSEQ" in d for d in got.values()), r)
    r = c.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % max(changed.values() or [top]))
    R.check("CHANGEDSINCE the newest MODSEQ returns nothing", r.status == "OK" and not r.fetches(), r)
    r = c.cmd("FETCH 1 (FLAGS) (CHANGEDSINCE)")
    R.status("CHANGEDSINCE without a value is BAD", r, "BAD")

with R.section("imaplib fetch"):
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=20)
    m.login("alice", "pw-alice")
    m.select("F", readonly=True)
    typ, data = m.uid("FETCH", "%d,%d,%d" % (UID["A"], UID["B"], UID["E"]), "(BODY.PEEK[])")
    bodies = [p[1] for p in data if isinstance(p, tuple)]
    R.check("imaplib UID FETCH of three bodies", typ == "OK" and bodies == [A, B, E], [len(b_) for b_ in bodies])
    typ, data = m.fetch(str(SEQ["C"]), "(RFC822)")
    R.check("imaplib FETCH RFC822 of the 8-bit message", typ == "OK" and data[0][1] == C, data[:1])
    m.logout()

with R.section("bad FETCH"):
    for bad in ["FETCH 1 (FLAGS", "FETCH 1 BOGUS", "FETCH 1 BODY[NOSUCH]", "FETCH 1 BODY[]<x.y>", "FETCH",
                "FETCH 1", "FETCH a:b FLAGS", "FETCH 0 FLAGS", "FETCH %d FLAGS" % (len(UID) + 1), "UID FETCH 0 FLAGS"]:
        r = c.cmd(bad)
        R.status(bad, r, "BAD")
        R.check("%s: BAD has text" % bad, bool(r.text and r.text.strip()), r)
        c.cmd("NOOP")

c.logout()
R.finish()
