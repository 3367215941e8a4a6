"""APPEND (flags, date, APPENDUID, TRYCREATE, LITERAL+, 8-bit), SELECT and
EXAMINE (every response item of RFC 3501 6.3.1 / RFC 9051 6.3.2, CONDSTORE,
QRESYNC's [CLOSED]), CHECK, CLOSE, UNSELECT, EXPUNGE and UID EXPUNGE.

argv: imap_port. Users: alice/pw-alice, bob/pw-bob.
"""

import email.utils
import imaplib
import time

from imapt import Lit, Report, args, connect, message, parse

PORT = args()[0]
R = Report("select_append.py")


def internaldate_ts(v):
    """INTERNALDATE "14-Jul-2023 02:44:25 -0700" -> unix seconds."""
    s = v.decode() if isinstance(v, bytes) else v
    return email.utils.mktime_tz(email.utils.parsedate_tz(s.replace("-", " ", 2)))


def seq_uids(c):
    r = c.cmd("FETCH 1:* (UID)")
    return [d["UID"] and int(d["UID"]) for _, d in sorted(r.fetches())]


c = connect(PORT, "alice", "pw-alice")

with R.section("APPEND"):
    m1 = message("flags and date", b"append with flags and a date\r\n")
    r, uv, uid1 = c.append("INBOX", m1, flags="\\Seen \\Flagged $Work", date="14-Jul-2023 02:44:25 -0700")
    R.status("APPEND with flags and date", r, "OK", "APPENDUID")
    R.check("APPENDUID has UIDVALIDITY and UID (RFC 4315)", uv and uid1, r)
    m2 = message("plain", b"no flags, no date\r\n")
    before = time.time()
    r, uv2, uid2 = c.append("INBOX", m2)
    R.status("APPEND without flags or date", r, "OK", "APPENDUID")
    R.eq("same UIDVALIDITY", uv2, uv)
    R.check("UIDs ascend", uid2 and uid1 and uid2 > uid1, (uid1, uid2))
    m3 = message("literal plus", b"sent as a non-synchronizing literal\r\n")
    r, _, uid3 = c.append("INBOX", m3, plus=True)
    R.status("APPEND with LITERAL+ (RFC 7888)", r, "OK", "APPENDUID")
    R.eq("no continuation for LITERAL+", len(r.continuations), 0)
    m4 = (b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.de>\r\nTo: alice@example.com\r\nSubject: 8bit\r\n"
          b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
          b"Gr\xfc\xdfe aus M\xfcnchen \x80\xff\r\nlone LF\nand a NUL-free binary-ish line \x01\x02\x7f\r\n")
    r, _, uid4 = c.append("INBOX", m4, flags="\\Draft")
    R.status("APPEND of an 8-bit message", r, "OK", "APPENDUID")
    r = c.cmd("APPEND NoSuchMailbox ", Lit(m2))
    R.status("APPEND to a missing mailbox (RFC 3501 6.3.11)", r, "NO", "TRYCREATE")
    c.must("CREATE Dates")
    r = c.cmd('APPEND Dates " 5-Mar-2024 10:00:00 +0000" ', Lit(m2))
    R.status("APPEND with a space-padded day (RFC 3501 9 date-day-fixed)", r, "OK")
    r = c.cmd('APPEND Dates () "05-Mar-2024 23:30:00 -1100" ', Lit(m2))
    R.status("APPEND with an empty flag list and a -1100 zone", r, "OK")
    r = c.cmd('APPEND INBOX (\\Seen) "32-Foo-2023 99:00:00 +0000" ', Lit(m2))
    R.status("APPEND with an invalid date is BAD", r, "BAD")
    r = c.cmd("APPEND INBOX (\\NotAFlag) ", Lit(m2))
    R.check("APPEND with an unknown system flag is refused (BAD or NO)", r.status in ("BAD", "NO"), r)
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=10)
    m.login("alice", "pw-alice")
    m5 = message("imaplib append", b"appended by imaplib\r\n")
    typ, data = m.append("INBOX", "(\\Answered)", None, m5)
    R.eq("imaplib append", typ, "OK")
    R.check("imaplib append returns APPENDUID", data and b"APPENDUID" in data[0], data)
    m.logout()
    appended = [(uid1, m1), (uid2, m2), (uid3, m3), (uid4, m4)]
    R.info["uids"] = [u for u, _ in appended]

with R.section("SELECT response items (RFC 3501 6.3.1, RFC 7162)"):
    r = c.cmd("SELECT INBOX (CONDSTORE)")
    R.status("SELECT INBOX (CONDSTORE)", r, "OK", "READ-WRITE")
    flags = r.of("FLAGS")
    R.eq("one * FLAGS", len(flags), 1, r)
    fl = set(f.lower() for f in parse(flags[0][len("* FLAGS "):])[0]) if flags else set()
    R.check("FLAGS lists the system flags", {"\\answered", "\\flagged", "\\deleted", "\\seen", "\\draft"} <= fl, fl)
    R.check("FLAGS lists the keyword $Work", "$work" in fl, fl)
    R.eq("* n EXISTS", r.numbers("EXISTS"), [5])
    R.eq("* n RECENT (the first session sees them \\Recent)", r.numbers("RECENT"), [5])
    pf = r.code_of("PERMANENTFLAGS")
    R.check("OK [PERMANENTFLAGS (... \\*)]", pf is not None and "\\*" in pf and "\\Seen" in pf and "\\Deleted" in pf, r)
    unseen = r.code_of("UNSEEN")
    R.eq("OK [UNSEEN n]: the first unseen is message 2 (RFC 3501 erratum 3032)", unseen, "UNSEEN 2", r)
    uidv = r.code_of("UIDVALIDITY")
    R.eq("OK [UIDVALIDITY] matches APPENDUID", uidv, "UIDVALIDITY %d" % uv, r)
    uidnext = r.code_of("UIDNEXT")
    R.check("OK [UIDNEXT] is above every UID", uidnext and int(uidnext.split()[1]) > max(u for u, _ in appended), r)
    hms = r.code_of("HIGHESTMODSEQ")
    R.check("OK [HIGHESTMODSEQ] with CONDSTORE (RFC 7162 3.1.2.1)", hms and int(hms.split()[1]) > 0, r)
    R.check("no VANISHED/FETCH noise on a plain SELECT", not r.of("VANISHED") and not r.of("FETCH"), r)
    r = c.cmd("FETCH 1:* (UID FLAGS)")
    got = {int(d["UID"]): set(d["FLAGS"]) for _, d in r.fetches()}
    R.check("flags stored by APPEND", {"\\Seen", "\\Flagged", "$Work"} <= got.get(uid1, set()), got)
    R.check("\\Recent on new messages in the first session", all("\\Recent" in f for f in got.values()), got)
    R.check("\\Draft stored by APPEND", "\\Draft" in got.get(uid4, set()), got)
    r = c.cmd("UID FETCH %d (INTERNALDATE)" % uid1)
    d = r.fetches()[0][1] if r.fetches() else {}
    R.eq("INTERNALDATE as given to APPEND (same instant)", d.get("INTERNALDATE") and internaldate_ts(d["INTERNALDATE"]),
         internaldate_ts("14-Jul-2023 02:44:25 -0700"), r)
    r = c.cmd("UID FETCH %d (INTERNALDATE)" % uid2)
    d = r.fetches()[0][1] if r.fetches() else {}
    t = d.get("INTERNALDATE") and internaldate_ts(d["INTERNALDATE"])
    R.check("INTERNALDATE defaults to the time of APPEND", t and before - 5 <= t <= time.time() + 5, (t, before))
    r = c.cmd("UID FETCH 1:* (BODY.PEEK[])")
    got = {int(d["UID"]): d["BODY[]"] for _, d in r.fetches()}
    for uid, body in appended:
        R.check("message %d byte-identical" % uid, got.get(uid) == body, (got.get(uid), body))

    # A second session: nothing is \Recent any more (RFC 3501 2.3.2).
    c2 = connect(PORT, "alice", "pw-alice")
    r = c2.cmd("SELECT INBOX")
    R.eq("a later session sees * 0 RECENT", r.numbers("RECENT"), [0])
    R.check("SELECT without CONDSTORE still OK [UIDVALIDITY]", r.code_of("UIDVALIDITY") is not None, r)
    c2.logout()

with R.section("EXAMINE"):
    c2 = connect(PORT, "alice", "pw-alice")
    r = c2.cmd("EXAMINE INBOX")
    R.status("EXAMINE INBOX", r, "OK", "READ-ONLY")
    pf = r.code_of("PERMANENTFLAGS")
    R.check("EXAMINE: no permanent flags (RFC 3501 6.3.2)", pf is None or pf.replace(" ", "") == "PERMANENTFLAGS()", r)
    R.eq("EXAMINE: EXISTS", r.numbers("EXISTS"), [5])
    r = c2.cmd("FETCH 2 (BODY[])")
    R.check("FETCH BODY[] on a read-only mailbox returns the body", r.fetches() and r.fetches()[0][1].get("BODY[]") == m2, r)
    R.check("... without a FLAGS (\\Seen) update", not any("\\Seen" in d.get("FLAGS", []) for _, d in r.fetches()), r)
    r = c2.cmd("FETCH 2 (FLAGS)")
    R.check("... and \\Seen is still unset", "\\Seen" not in r.fetches()[0][1]["FLAGS"], r)
    r = c2.cmd("STORE 2 +FLAGS (\\Flagged)")
    R.status("STORE in a read-only mailbox", r, "NO")
    r = c2.cmd("EXPUNGE")
    R.status("EXPUNGE in a read-only mailbox", r, "NO")
    r = c2.cmd("CLOSE")
    R.status("CLOSE of a read-only mailbox", r, "OK")
    R.check("CLOSE sends no EXPUNGE (RFC 3501 6.4.2)", not r.of("EXPUNGE"), r)
    c2.logout()

with R.section("SELECT failures and reselect"):
    r = c.cmd("SELECT NoSuchMailbox")
    R.status("SELECT a missing mailbox", r, "NO", "NONEXISTENT")
    r = c.cmd("FETCH 1 (FLAGS)")
    R.status("a failed SELECT leaves no mailbox selected (RFC 3501 6.3.1)", r, "BAD")
    c.select("INBOX")
    c.must("CREATE Other")
    r = c.cmd("SELECT Other")
    R.status("SELECT while another mailbox is selected", r, "OK")
    R.eq("EXISTS of the newly selected mailbox", r.numbers("EXISTS"), [0])
    R.check("no [UNSEEN] in an empty mailbox (RFC 3501 erratum 3032)", r.code_of("UNSEEN") is None, r)
    c2 = connect(PORT, "alice", "pw-alice")
    c2.must("ENABLE QRESYNC")
    c2.select("INBOX")
    r = c2.cmd("SELECT Other")
    closed = [i for i, u in enumerate(r.untagged) if b"[CLOSED]" in u]
    R.check("with QRESYNC, reselect sends OK [CLOSED] first (RFC 7162 3.2.11)", closed == [0], r)
    c2.logout()

with R.section("IMAP4rev2 SELECT (RFC 9051 6.3.2)"):
    c2 = connect(PORT, "alice", "pw-alice")
    c2.must("ENABLE IMAP4rev2")
    r = c2.cmd("SELECT INBOX")
    R.status("SELECT under IMAP4rev2", r, "OK", "READ-WRITE")
    R.eq("no * RECENT under IMAP4rev2", r.of("RECENT"), [])
    lst = r.of("LIST")
    R.check("a * LIST with the mailbox name (RFC 9051 6.3.2)", len(lst) == 1 and parse(lst[0][len("* LIST "):])[2] in ("INBOX", b"INBOX"), r)
    R.eq("EXISTS", r.numbers("EXISTS"), [5])
    R.check("[UIDVALIDITY] [UIDNEXT] [PERMANENTFLAGS]", all(r.code_of(x) for x in ("UIDVALIDITY", "UIDNEXT", "PERMANENTFLAGS")), r)
    r = c2.cmd("SEARCH ALL")
    R.check("SEARCH under IMAP4rev2 answers ESEARCH", r.of("ESEARCH") and not r.of("SEARCH"), r)
    r = c2.cmd("UID SEARCH ALL")
    e = r.of("ESEARCH")
    R.check("UID SEARCH under IMAP4rev2: * ESEARCH (TAG ...) UID ALL ...", len(e) == 1 and b"(TAG \"%s\") UID ALL " % r.tag.encode() in e[0], r)
    r = c2.cmd("FETCH 1:* (FLAGS)")
    R.check("no \\Recent in FLAGS under IMAP4rev2 (RFC 9051 removed it)", r.fetches() and not any("\\Recent" in d["FLAGS"] for _, d in r.fetches()), r)
    r = c2.cmd("SEARCH RECENT")
    R.check("SEARCH RECENT under IMAP4rev2 is BAD or matches nothing", r.status == "BAD" or (r.status == "OK" and b" ALL " not in b"".join(r.of("ESEARCH"))), r)
    c2.logout()

with R.section("CHECK, CLOSE, UNSELECT"):
    c.select("INBOX")
    R.status("CHECK", c.cmd("CHECK"), "OK")
    c.must("UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid3)
    r = c.cmd("UNSELECT")
    R.status("UNSELECT (RFC 3691)", r, "OK")
    R.check("UNSELECT sends no EXPUNGE", not r.of("EXPUNGE"), r)
    R.status("no mailbox after UNSELECT", c.cmd("FETCH 1 FLAGS"), "BAD")
    R.status("CHECK without a selected mailbox", c.cmd("CHECK"), "BAD")
    R.status("UNSELECT without a selected mailbox", c.cmd("UNSELECT"), "BAD")
    R.status("CLOSE without a selected mailbox", c.cmd("CLOSE"), "BAD")
    r = c.select("INBOX")
    R.eq("UNSELECT expunged nothing", r.numbers("EXISTS"), [5])
    r = c.cmd("CLOSE")
    R.status("CLOSE", r, "OK")
    R.check("CLOSE sends no EXPUNGE (RFC 3501 6.4.2)", not r.of("EXPUNGE"), r)
    R.status("no mailbox after CLOSE", c.cmd("FETCH 1 FLAGS"), "BAD")
    r = c.select("INBOX")
    R.eq("CLOSE expunged the \\Deleted message", r.numbers("EXISTS"), [4])
    r = c.cmd("UID FETCH %d (FLAGS)" % uid3)
    R.eq("the \\Deleted message is gone", r.fetches(), [])

with R.section("UIDs are never reused (RFC 3501 2.3.1.1)"):
    c.must("CREATE Reuse")
    _, _, r1 = c.append("Reuse", message("reuse 1"))
    _, _, r2 = c.append("Reuse", message("reuse 2"))
    c.select("Reuse")
    c.must("UID STORE %d +FLAGS.SILENT (\\Deleted)" % r2)
    c.must("EXPUNGE")
    c.must("UNSELECT")
    _, _, r3 = c.append("Reuse", message("reuse 3"))
    R.check("a new UID after expunging the highest one is still higher", r3 and r2 and r3 > r2, (r1, r2, r3))
    r = c.cmd("STATUS Reuse (UIDNEXT)")
    R.check("UIDNEXT is above every UID ever assigned", r.of("STATUS") and int(r.of("STATUS")[0].split(b"UIDNEXT ")[1].split(b")")[0]) > r3, r)

with R.section("INBOX is case-insensitive (RFC 3501 5.1)"):
    r = c.cmd("SELECT inbox")
    R.status("SELECT inbox", r, "OK", "READ-WRITE")
    r = c.cmd('STATUS "Inbox" (MESSAGES)')
    R.status("STATUS Inbox", r, "OK")
    r2_, _, _ = c.append("iNbOx", message("mixed-case inbox"))
    R.status("APPEND to iNbOx", r2_, "OK", "APPENDUID")
    r = c.cmd("NOOP")
    R.check("the message appended to iNbOx shows up in the selected INBOX", r.numbers("EXISTS") or r2_.numbers("EXISTS"), (r2_, r))
    c.must("UNSELECT")

with R.section("EXPUNGE and UID EXPUNGE"):
    c.must("CREATE Exp")
    uids = []
    for i in range(6):
        _, _, u = c.append("Exp", message("exp %d" % i))
        uids.append(u)
    c.select("Exp")
    R.eq("view before", seq_uids(c), uids)
    c.must("STORE 2,4,5 +FLAGS.SILENT (\\Deleted)")
    r = c.cmd("EXPUNGE")
    R.status("EXPUNGE", r, "OK")
    # Replay the EXPUNGE responses on the view (each renumbers the rest).
    view = list(uids)
    for n in r.numbers("EXPUNGE"):
        if 1 <= n <= len(view):
            view.pop(n - 1)
        else:
            R.check("EXPUNGE %d is within the mailbox" % n, False, r)
    R.eq("EXPUNGE responses remove exactly messages 2, 4, 5", view, [uids[0], uids[2], uids[5]], r)
    R.eq("the server's view agrees", seq_uids(c), view)
    r = c.cmd("EXPUNGE")
    R.check("a second EXPUNGE expunges nothing", r.status == "OK" and not r.of("EXPUNGE"), r)
    # UID EXPUNGE removes only the given \Deleted messages (RFC 4315 2.1).
    c.must("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    r = c.cmd("UID EXPUNGE %d" % uids[2])
    R.status("UID EXPUNGE", r, "OK")
    R.eq("UID EXPUNGE sends one EXPUNGE for message 2", r.numbers("EXPUNGE"), [2], r)
    R.eq("the other \\Deleted messages remain", seq_uids(c), [uids[0], uids[5]])
    r = c.cmd("UID EXPUNGE %d" % (uids[5] + 1000))
    R.check("UID EXPUNGE of a UID that does not exist is OK and silent", r.status == "OK" and not r.of("EXPUNGE"), r)
    c.must("STORE 1:* -FLAGS.SILENT (\\Deleted)")
    r = c.cmd("UID EXPUNGE 1:*")
    R.eq("UID EXPUNGE ignores messages without \\Deleted", r.numbers("EXPUNGE"), [], r)
    R.status("EXPUNGE without a selected mailbox", (c.cmd("UNSELECT"), c.cmd("EXPUNGE"))[1], "BAD")
    R.status("UID EXPUNGE without a selected mailbox", c.cmd("UID EXPUNGE 1"), "BAD")

c.logout()
R.finish()
