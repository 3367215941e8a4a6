"""SEARCH and UID SEARCH (RFC 3501 6.4.4, RFC 9051 6.4.4): flags, keywords,
sizes, internal and sent dates, address and text keys (decoded MIME
encoded-words, quoted-printable and base64 bodies, CHARSET UTF-8 with a
literal), HEADER, UID and sequence sets, NOT/OR nesting, MODSEQ (RFC 7162)
and ESEARCH RETURN (MIN MAX COUNT ALL) (RFC 4731).

argv: imap_port. User: alice/pw-alice.
"""

import base64
import imaplib

from imapt import Lit, Report, args, connect, parse, uid_set

PORT = args()[0]
R = Report("search.py")

CRLF = b"\r\n"


def msg(headers, body):
    return CRLF.join(h.encode() if isinstance(h, str) else h for h in headers) + CRLF + CRLF + body


zurich = ("Zürich liegt am See. " * 600).encode()
MSGS = [
    # 1
    (msg(["From: Alice <alice@example.org>", "To: bob@example.com", "Subject: Quarterly report",
          "Date: Wed, 01 Jan 2020 12:00:00 +0000", "Message-ID: <q1@example.org>"],
         b"The budget numbers are attached.\r\n"),
     "\\Seen", "01-Feb-2020 12:00:00 +0000"),
    # 2
    (msg(["From: =?utf-8?q?J=C3=BCrgen_Gro=C3=9F?= <jg@example.de>", "To: alice@example.com",
          "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Date: Mon, 15 Mar 2021 12:00:00 +0100",
          "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"],
         "Schöne Grüße aus München\r\n".encode()),
     "", "15-Mar-2021 12:00:00 +0000"),
    # 3
    (msg(["From: carol@example.net", "To: alice@example.com", "Cc: Dave <dave@example.com>", "Subject: Menu",
          "Date: Fri, 10 Jun 2022 12:00:00 +0000", "MIME-Version: 1.0",
          "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"],
         b"Caf=C3=A9 cr=C3=A8me br=C3=BBl=C3=A9e\r\n"),
     "\\Flagged \\Answered $Important", "10-Jun-2022 12:00:00 +0000"),
    # 4
    (msg(["From: dave@example.com", "To: alice@example.com", "Bcc: eve@example.org", "Subject: Big one",
          "Date: Sun, 01 Jan 2023 12:00:00 +0000", "X-Priority: 1", "MIME-Version: 1.0",
          "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"],
         base64.encodebytes(zurich).replace(b"\n", b"\r\n")),
     "\\Deleted", "01-Jan-2023 12:00:00 +0000"),
    # 5
    (msg(["From: Alice <alice@example.org>", "To: bob@example.com", "Subject: Re: Quarterly report",
          "Date: Mon, 02 Jan 2023 12:00:00 +0000", "In-Reply-To: <q1@example.org>"],
         b"Thanks for the report.\r\n"),
     "\\Draft \\Seen", "02-Jan-2023 12:00:00 +0000"),
    # 6
    (msg(["From: frank@example.com", "To: alice@example.com", "Subject: Attachment",
          "Date: Tue, 03 Jan 2023 12:00:00 +0000", "MIME-Version: 1.0",
          'Content-Type: multipart/mixed; boundary="b1"'],
         b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee the attached invoice\r\n"
         b"--b1\r\nContent-Type: application/pdf; name=invoice.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         + base64.b64encode(b"PDFDATA-invoice-xyz") + b"\r\n--b1--\r\n"),
     "$Later", "03-Jan-2023 12:00:00 +0000"),
]
ALL = [1, 2, 3, 4, 5, 6]
SIZES = [len(m) for m, _, _ in MSGS]

c = connect(PORT, "alice", "pw-alice")
c.must("CREATE S")
UIDS = []
for m, flags, date in MSGS:
    r, _, uid = c.append("S", m, flags=flags, date=date)
    assert r.status == "OK", r
    UIDS.append(uid)
c.must("SELECT S")


def search(*pieces, uid=False, conn=None):
    conn = conn or c
    r = conn.cmd("UID SEARCH " if uid else "SEARCH ", *pieces)
    hits = []
    for u in r.of("SEARCH"):
        rest = u[len("* SEARCH"):].split(b"(")[0]
        hits += [int(x) for x in rest.split()]
    return r, sorted(hits)


def expect(name, query, want, uid=False, charset=None):
    pieces = [query] if isinstance(query, (str, bytes, Lit)) else list(query)
    if charset:
        pieces = ["CHARSET %s " % charset] + pieces
    r, hits = search(*pieces, uid=uid)
    if uid:
        want = sorted(UIDS[i - 1] for i in want)
    return R.check("%s%s -> %s" % ("UID SEARCH " if uid else "SEARCH ", name, want),
                   r.status == "OK" and hits == sorted(want), "got %s / %r" % (hits, r))


with R.section("flags and keywords"):
    expect("ALL", "ALL", ALL)
    expect("SEEN", "SEEN", [1, 5])
    expect("UNSEEN", "UNSEEN", [2, 3, 4, 6])
    expect("ANSWERED", "ANSWERED", [3])
    expect("UNANSWERED", "UNANSWERED", [1, 2, 4, 5, 6])
    expect("FLAGGED", "FLAGGED", [3])
    expect("UNFLAGGED", "UNFLAGGED", [1, 2, 4, 5, 6])
    expect("DELETED", "DELETED", [4])
    expect("UNDELETED", "UNDELETED", [1, 2, 3, 5, 6])
    expect("DRAFT", "DRAFT", [5])
    expect("UNDRAFT", "UNDRAFT", [1, 2, 3, 4, 6])
    expect("KEYWORD $Important", "KEYWORD $Important", [3])
    expect("KEYWORD $important (case-insensitive)", "KEYWORD $important", [3])
    expect("KEYWORD $Later", "KEYWORD $Later", [6])
    expect("KEYWORD $Nothing", "KEYWORD $Nothing", [])
    expect("UNKEYWORD $Important", "UNKEYWORD $Important", [1, 2, 4, 5, 6])
    expect("RECENT (first session)", "RECENT", ALL)
    expect("NEW", "NEW", [2, 3, 4, 6])
    expect("OLD", "OLD", [])
    c2 = connect(PORT, "alice", "pw-alice")
    c2.must("SELECT S")
    r, hits = search("RECENT", conn=c2)
    R.eq("SEARCH RECENT in a later session", hits, [], r)
    r, hits = search("OLD", conn=c2)
    R.eq("SEARCH OLD in a later session", hits, ALL, r)
    c2.logout()

with R.section("sizes and dates"):
    expect("LARGER 10000", "LARGER 10000", [i for i, s in enumerate(SIZES, 1) if s > 10000])
    expect("SMALLER 10000", "SMALLER 10000", [i for i, s in enumerate(SIZES, 1) if s < 10000])
    expect("LARGER <size of 1> (strictly larger)", "LARGER %d" % SIZES[0], [i for i, s in enumerate(SIZES, 1) if s > SIZES[0]])
    expect("SMALLER <size of 1> (strictly smaller)", "SMALLER %d" % SIZES[0], [i for i, s in enumerate(SIZES, 1) if s < SIZES[0]])
    expect("BEFORE 1-Jan-2023", "BEFORE 1-Jan-2023", [1, 2, 3])
    expect("ON 02-Jan-2023", "ON 02-Jan-2023", [5])
    expect("SINCE 02-Jan-2023", "SINCE 02-Jan-2023", [5, 6])
    expect("SINCE 01-Jan-2023", "SINCE 01-Jan-2023", [4, 5, 6])
    expect('BEFORE "15-Mar-2021" (quoted date)', 'BEFORE "15-Mar-2021"', [1])
    expect("SENTBEFORE 01-Jan-2023", "SENTBEFORE 01-Jan-2023", [1, 2, 3])
    expect("SENTON 15-Mar-2021", "SENTON 15-Mar-2021", [2])
    expect("SENTSINCE 02-Jan-2023", "SENTSINCE 02-Jan-2023", [5, 6])
    expect("SENTON 01-Jan-2020", "SENTON 01-Jan-2020", [1])

with R.section("dates disregard time and timezone (RFC 3501 6.4.4)"):
    c.must("CREATE S2")
    for subj, date, idate in [("late west", "Mon, 02 Jan 2023 23:30:00 -0500", "02-Jan-2023 23:30:00 -0500"),
                              ("early east", "Tue, 03 Jan 2023 00:30:00 +1400", "03-Jan-2023 00:30:00 +1400")]:
        c.append("S2", msg(["From: z@example.org", "Subject: " + subj, "Date: " + date], b"x\r\n"), date=idate)
    c.must("SELECT S2")
    for q, want in [("ON 02-Jan-2023", [1]), ("ON 03-Jan-2023", [2]), ("SINCE 03-Jan-2023", [2]), ("BEFORE 03-Jan-2023", [1]),
                    ("SENTON 02-Jan-2023", [1]), ("SENTON 03-Jan-2023", [2]), ("SENTSINCE 03-Jan-2023", [2]), ("SENTBEFORE 03-Jan-2023", [1])]:
        r, hits = search(q)
        R.eq("SEARCH %s (dates in their own zones)" % q, hits, want, r)
    c.must("SELECT S")

with R.section("addresses, subject, header"):
    expect("FROM alice", "FROM alice", [1, 5])
    expect("FROM EXAMPLE.DE (case-insensitive)", "FROM EXAMPLE.DE", [2])
    expect("FROM jürgen (decoded encoded-word, CHARSET UTF-8 literal)", ["FROM ", Lit("jürgen".encode())], [2], charset="UTF-8")
    expect("TO bob", "TO bob", [1, 5])
    expect("CC dave", "CC dave", [3])
    expect('CC "Dave" (display name)', 'CC "Dave"', [3])
    expect("BCC eve", "BCC eve", [4])
    expect('SUBJECT "quarterly"', 'SUBJECT "quarterly"', [1, 5])
    expect('SUBJECT "Re: Quarterly"', 'SUBJECT "Re: Quarterly"', [5])
    expect("SUBJECT Grüße (encoded-word, UTF-8 literal)", ["SUBJECT ", Lit("Grüße".encode())], [2], charset="UTF-8")
    expect('HEADER X-Priority "1"', 'HEADER X-Priority "1"', [4])
    expect('HEADER X-Priority "" (present at all)', 'HEADER X-Priority ""', [4])
    expect('HEADER x-priority "" (field name case-insensitive)', 'HEADER x-priority ""', [4])
    expect('HEADER In-Reply-To "q1@example"', 'HEADER In-Reply-To "q1@example"', [5])
    expect('HEADER X-Absent ""', 'HEADER X-Absent ""', [])

with R.section("BODY and TEXT"):
    expect("BODY budget", "BODY budget", [1])
    expect("BODY report (body only, not the subject)", "BODY report", [5])
    expect("BODY invoice (a MIME part)", "BODY invoice", [6])
    expect("BODY crème (quoted-printable decoded, CHARSET UTF-8)", ["BODY ", Lit("crème".encode())], [3], charset="UTF-8")
    expect("BODY Zürich (base64 decoded, CHARSET UTF-8)", ["BODY ", Lit("Zürich liegt".encode())], [4], charset="UTF-8")
    expect("BODY schöne (8bit UTF-8 body)", ["BODY ", Lit("Schöne Grüße".encode())], [2], charset="UTF-8")
    expect("BODY SCHöNE (ASCII case-insensitive)", ["BODY ", Lit("SCHöNE".encode())], [2], charset="UTF-8")
    expect("BODY quoted UTF-8 string", ["BODY ", b'"M\xc3\xbcnchen"'], [2], charset="UTF-8")
    expect("TEXT quarterly (header)", "TEXT quarterly", [1, 5])
    expect("TEXT budget (body)", "TEXT budget", [1])
    expect("TEXT frank (From field)", "TEXT frank", [6])
    expect("CHARSET US-ASCII FROM alice", "FROM alice", [1, 5], charset="US-ASCII")
    r = c.cmd("SEARCH CHARSET X-NO-SUCH-CHARSET BODY x")
    R.status("SEARCH with an unknown CHARSET (RFC 3501 6.4.4)", r, "NO", "BADCHARSET")

with R.section("sets, NOT, OR, nesting"):
    expect("2:4", "2:4", [2, 3, 4])
    expect("4:2 (reversed range)", "4:2", [2, 3, 4])
    expect("*", "*", [6])
    expect("5:*", "5:*", [5, 6])
    expect("1,3,5", "1,3,5", [1, 3, 5])
    expect("UID <uid of 3>", "UID %d" % UIDS[2], [3])
    expect("UID 1:*", "UID 1:*", ALL)
    expect("UID <uid 2>:<uid 4>", "UID %d:%d" % (UIDS[1], UIDS[3]), [2, 3, 4])
    expect("NOT SEEN", "NOT SEEN", [2, 3, 4, 6])
    expect("NOT NOT SEEN", "NOT NOT SEEN", [1, 5])
    expect("OR SEEN FLAGGED", "OR SEEN FLAGGED", [1, 3, 5])
    expect("NOT (OR SEEN FLAGGED)", "NOT (OR SEEN FLAGGED)", [2, 4, 6])
    expect("OR OR SEEN DRAFT ANSWERED", "OR OR SEEN DRAFT ANSWERED", [1, 3, 5])
    expect("(OR FROM alice CC dave) UNDELETED", "(OR FROM alice CC dave) UNDELETED", [1, 3, 5])
    expect("OR (SEEN DRAFT) (FLAGGED ANSWERED)", "OR (SEEN DRAFT) (FLAGGED ANSWERED)", [3, 5])
    expect("OR NOT SEEN NOT FLAGGED", "OR NOT SEEN NOT FLAGGED", ALL)
    expect("SEEN FROM alice (implicit AND)", "SEEN FROM alice", [1, 5])
    expect("((SEEN) (NOT DRAFT))", "((SEEN) (NOT DRAFT))", [1])
    expect("NOT (1:3)", "NOT 1:3", [4, 5, 6])
    expect("OR 1 UID <uid 6>", "OR 1 UID %d" % UIDS[5], [1, 6])
    expect("UID SEARCH SEEN", "SEEN", [1, 5], uid=True)
    expect("UID SEARCH OR FLAGGED DELETED", "OR FLAGGED DELETED", [3, 4], uid=True)
    expect("UID SEARCH 2:3 (message numbers in a UID SEARCH)", "2:3", [2, 3], uid=True)

with R.section("MODSEQ (RFC 7162 3.1.5)"):
    r = c.cmd("FETCH 1:* (MODSEQ)")
    modseqs = {seq: int(d["MODSEQ"][0]) for seq, d in r.fetches()}
    R.check("FETCH MODSEQ for every message", sorted(modseqs) == ALL, r)
    r = c.cmd("STORE 2 +FLAGS ($Touched)")
    new = [int(d["MODSEQ"][0]) for seq, d in r.fetches() if seq == 2 and "MODSEQ" in d]
    R.check("STORE under CONDSTORE returns the new MODSEQ", new and new[0] > max(modseqs.values()), r)
    top = new[0] if new else max(modseqs.values()) + 1
    r = c.cmd("SEARCH MODSEQ %d" % top)
    s = r.of("SEARCH")
    R.check("SEARCH MODSEQ <new> -> 2 (MODSEQ <new>)", r.status == "OK" and len(s) == 1 and
            s[0].rstrip() == b"* SEARCH 2 (MODSEQ %d)" % top, r)
    r, hits = search("MODSEQ 1")
    R.eq("SEARCH MODSEQ 1 -> all", hits, ALL, r)
    r = c.cmd('SEARCH MODSEQ "/flags/$Touched" all %d' % top)
    R.check("SEARCH MODSEQ with an entry name", r.status == "OK" and r.of("SEARCH") and r.of("SEARCH")[0].startswith(b"* SEARCH 2"), r)
    r = c.cmd("SEARCH MODSEQ %d" % (top + 1000))
    s = r.of("SEARCH")
    R.check("no match: * SEARCH without MODSEQ", r.status == "OK" and len(s) == 1 and s[0].rstrip() == b"* SEARCH", r)

with R.section("ESEARCH (RFC 4731)"):
    def esearch(r):
        e = r.of("ESEARCH")
        if len(e) != 1:
            return None
        items = parse(e[0][len("* ESEARCH "):])
        out = {}
        if items and isinstance(items[0], list):
            out["TAG"] = items[0][1].decode() if isinstance(items[0][1], bytes) else items[0][1]
            items = items[1:]
        if items and str(items[0]).upper() == "UID":
            out["UID"] = True
            items = items[1:]
        for i in range(0, len(items) - 1, 2):
            out[str(items[i]).upper()] = str(items[i + 1])
        return out

    r = c.cmd("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
    e = esearch(r)
    R.check("ESEARCH answer with the command's tag", e and e.get("TAG") == r.tag, r)
    R.check("RETURN (MIN MAX COUNT ALL) UNSEEN",
            e and e.get("MIN") == "2" and e.get("MAX") == "6" and e.get("COUNT") == "4" and uid_set(e.get("ALL", "")) == [2, 3, 4, 6], r)
    R.check("no * SEARCH with RETURN", not r.of("SEARCH"), r)
    r = c.cmd("UID SEARCH RETURN (COUNT) ALL")
    e = esearch(r)
    R.check("UID SEARCH RETURN (COUNT) -> UID COUNT 6", e and e.get("UID") and e.get("COUNT") == "6" and "ALL" not in e, r)
    r = c.cmd("UID SEARCH RETURN (MIN MAX) SEEN")
    e = esearch(r)
    R.check("UID SEARCH RETURN (MIN MAX) gives UIDs", e and e.get("UID") and e.get("MIN") == str(UIDS[0]) and e.get("MAX") == str(UIDS[4]), r)
    r = c.cmd("SEARCH RETURN () FLAGGED")
    e = esearch(r)
    R.check("RETURN () means RETURN (ALL)", e and e.get("ALL") == "3", r)
    r = c.cmd("SEARCH RETURN (MIN MAX COUNT ALL) KEYWORD $Nothing")
    e = esearch(r)
    R.check("no match: COUNT 0 only (RFC 4731 3.1)", e is not None and e.get("COUNT") == "0" and not ({"MIN", "MAX", "ALL"} & set(e)), r)
    r = c.cmd("SEARCH RETURN (COUNT) MODSEQ %d" % top)
    e = esearch(r)
    R.check("RETURN (COUNT) with MODSEQ carries MODSEQ (RFC 7162 3.1.5)", e and e.get("COUNT") == "1" and e.get("MODSEQ") == str(top), r)
    r = c.cmd("SEARCH RETURN (BOGUS) ALL")
    R.status("an unknown RETURN option is BAD", r, "BAD")

with R.section("imaplib"):
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=10)
    m.login("alice", "pw-alice")
    m.select("S")
    typ, data = m.search(None, "FROM", "alice")
    R.check("imaplib search FROM alice", typ == "OK" and data[0].split() == [b"1", b"5"], data)
    typ, data = m.uid("SEARCH", "FLAGGED")
    R.check("imaplib uid search FLAGGED", typ == "OK" and data[0].split() == [str(UIDS[2]).encode()], data)
    m.literal = "crème".encode()
    typ, data = m.search("UTF-8", "BODY")
    R.check("imaplib search CHARSET UTF-8 BODY <literal>", typ == "OK" and data[0].split() == [b"3"], data)
    m.logout()

with R.section("bad SEARCH syntax"):
    for bad in ["SEARCH FOOBAR", "SEARCH BEFORE not-a-date", "SEARCH LARGER x", "SEARCH (SEEN",
                "SEARCH OR SEEN", "SEARCH KEYWORD", "SEARCH", "SEARCH RETURN (COUNT)"]:
        r = c.cmd(bad)
        R.status(bad, r, "BAD")
        c.cmd("NOOP")

c.logout()
R.finish()
