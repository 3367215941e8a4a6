"""CONDSTORE and QRESYNC (RFC 7162): a client selects, goes away, another
session changes flags, expunges and appends; the reselect with QRESYNC
(uidvalidity modseq [known-uids]) must return exactly the expunged UIDs in
VANISHED (EARLIER) and the changed flags; UID FETCH (CHANGEDSINCE ...
VANISHED); live VANISHED instead of EXPUNGE; MODSEQ in unsolicited FETCH.

argv: imap_port. User: alice/pw-alice.
"""

from imapt import Report, args, connect, message, parse, uid_set

PORT = args()[0]
R = Report("condstore.py")


def vanished(r, earlier):
    """UIDs of the VANISHED responses of one kind, and how many there were."""
    uids, n = [], 0
    for u in r.of("VANISHED"):
        rest = u[len("* VANISHED "):].strip()
        is_earlier = rest.upper().startswith(b"(EARLIER)")
        if is_earlier != earlier:
            continue
        n += 1
        uids += uid_set(rest[len("(EARLIER)"):].strip() if is_earlier else rest)
    return sorted(uids), n


def fetched(r):
    """{uid: FETCH items} of the FETCH responses."""
    return {int(d["UID"]): d for _, d in r.fetches() if "UID" in d}


a = connect(PORT, "alice", "pw-alice")
a.must("CREATE Q")
U = []
for i in range(10):
    _, uv, u = a.append("Q", message("q%d" % i, b"qresync %d\r\n" % i))
    U.append(u)
UV = uv

with R.section("baseline"):
    r = a.cmd("ENABLE QRESYNC")
    R.check("ENABLE QRESYNC", r.status == "OK" and any(b"QRESYNC" in e.upper() for e in r.of("ENABLED")), r)
    r = a.select("Q")
    hms = r.code_of("HIGHESTMODSEQ")
    R.check("SELECT reports HIGHESTMODSEQ", hms is not None, r)
    H0 = int(hms.split()[1]) if hms else 0
    R.eq("SELECT's UIDVALIDITY", r.code_of("UIDVALIDITY"), "UIDVALIDITY %d" % UV)
    a.logout()

with R.section("another session changes the mailbox"):
    b = connect(PORT, "alice", "pw-alice")
    b.select("Q")
    b.must("STORE 2:3 +FLAGS (\\Flagged)")          # U[1], U[2] change
    b.must("STORE 9 +FLAGS ($Then)")                # U[8] changes, then goes
    b.must("STORE 5:7,9 +FLAGS.SILENT (\\Deleted)")
    r = b.cmd("UID EXPUNGE %d:%d,%d" % (U[4], U[6], U[8]))
    R.status("UID EXPUNGE by the other session", r, "OK")
    _, _, new_uid = b.append("Q", message("q-new", b"arrived later\r\n"))
    EXPUNGED = [U[4], U[5], U[6], U[8]]
    CHANGED = [U[1], U[2]]
    b.logout()

with R.section("SELECT (QRESYNC (uidvalidity modseq)) (RFC 7162 3.2.5)"):
    c = connect(PORT, "alice", "pw-alice")
    c.must("ENABLE QRESYNC")
    r = c.cmd("SELECT Q (QRESYNC (%d %d))" % (UV, H0))
    R.status("SELECT with QRESYNC", r, "OK", "READ-WRITE")
    v, n = vanished(r, earlier=True)
    R.eq("exactly the expunged UIDs in VANISHED (EARLIER)", v, sorted(EXPUNGED), r)
    R.eq("one VANISHED (EARLIER) response", n, 1, r)
    R.eq("no live VANISHED and no EXPUNGE during SELECT", (vanished(r, earlier=False)[1], r.of("EXPUNGE")), (0, []), r)
    f = fetched(r)
    R.check("FETCH for every message whose flags changed", set(CHANGED) <= set(f), r)
    R.check("no FETCH for unchanged or expunged messages", set(f) <= set(CHANGED) | {new_uid}, r)
    R.check("changed messages carry their new flags", all("\\Flagged" in f.get(u, {}).get("FLAGS", []) for u in CHANGED), r)
    R.check("the FETCHes carry UID and MODSEQ above the old one (RFC 7162 3.2.5.1)",
            all("MODSEQ" in d and int(d["MODSEQ"][0]) > H0 for d in f.values()) and f, r)
    R.eq("EXISTS after the changes", r.numbers("EXISTS"), [10 - len(EXPUNGED) + 1])
    hms = r.code_of("HIGHESTMODSEQ")
    H1 = int(hms.split()[1]) if hms else 0
    R.check("HIGHESTMODSEQ moved on", H1 > H0, (H0, H1))
    r = c.cmd("UID FETCH 1:* (UID)")
    R.eq("the view has the surviving and new messages", sorted(fetched(r)), sorted(set(U) - set(EXPUNGED)) + [new_uid])

with R.section("UID FETCH (CHANGEDSINCE m VANISHED) (RFC 7162 3.2.6)"):
    r = c.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % H0)
    R.status("UID FETCH with CHANGEDSINCE and VANISHED", r, "OK")
    v, n = vanished(r, earlier=True)
    R.eq("VANISHED (EARLIER) lists exactly the expunged UIDs", v, sorted(EXPUNGED), r)
    R.eq("FETCH for exactly the messages changed since (changed and new)", sorted(fetched(r)), sorted(CHANGED + [new_uid]), r)
    r = c.cmd("UID FETCH %d:%d (FLAGS) (CHANGEDSINCE %d VANISHED)" % (U[0], U[5], H0))
    v, _ = vanished(r, earlier=True)
    R.eq("VANISHED limited to the UID set asked for", v, [U[4], U[5]], r)
    r = c.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % H1)
    R.check("nothing changed since the current HIGHESTMODSEQ", r.status == "OK" and not r.of("VANISHED") and not r.fetches(), r)
    r = c.cmd("FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % H0)
    R.status("VANISHED with a non-UID FETCH is BAD (RFC 7162 3.2.6)", r, "BAD")

with R.section("known UIDs and a wrong UIDVALIDITY"):
    d = connect(PORT, "alice", "pw-alice")
    d.must("ENABLE QRESYNC")
    r = d.cmd("SELECT Q (QRESYNC (%d %d %d:%d))" % (UV, H0, U[0], U[5]))
    R.status("SELECT with known UIDs", r, "OK")
    v, _ = vanished(r, earlier=True)
    R.check("VANISHED (EARLIER) covers the known expunged UIDs and nothing that was not expunged",
            {U[4], U[5]} <= set(v) <= set(EXPUNGED), (v, r))
    r = d.cmd("SELECT Q (QRESYNC (%d %d))" % (UV + 1, H0))
    R.status("SELECT with a wrong UIDVALIDITY", r, "OK")
    R.check("a wrong UIDVALIDITY gets no VANISHED and no FETCH (RFC 7162 3.2.5)", not r.of("VANISHED") and not r.fetches(), r)
    R.check("... after [CLOSED] of the previous mailbox", any(b"[CLOSED]" in u for u in r.untagged), r)
    r = d.cmd("EXAMINE Q (QRESYNC (%d %d))" % (UV, H0))
    v, _ = vanished(r, earlier=True)
    R.check("EXAMINE with QRESYNC", r.status == "OK" and r.code_name == "READ-ONLY" and v == sorted(EXPUNGED), r)
    d.logout()
    e = connect(PORT, "alice", "pw-alice")
    r = e.cmd("SELECT Q (QRESYNC (%d %d))" % (UV, H0))
    R.status("QRESYNC parameter without ENABLE QRESYNC is BAD (RFC 7162 3.2.5)", r, "BAD")
    e.must("SELECT Q")
    r = e.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % H0)
    R.status("VANISHED modifier without ENABLE QRESYNC is BAD", r, "BAD")
    e.logout()

with R.section("live changes under QRESYNC (RFC 7162 3.2.10)"):
    b = connect(PORT, "alice", "pw-alice")
    b.must("SELECT Q")
    b.must("UID STORE %d +FLAGS ($Live)" % U[0])
    r = c.cmd("NOOP")
    f = fetched(r)
    R.check("unsolicited FETCH with UID, FLAGS and MODSEQ", U[0] in f and "$Live" in f[U[0]].get("FLAGS", []) and "MODSEQ" in f[U[0]], r)
    b.must("UID STORE %d +FLAGS.SILENT (\\Deleted)" % U[3])
    b.must("UID EXPUNGE %d" % U[3])
    r = c.cmd("NOOP")
    v, n = vanished(r, earlier=False)
    R.eq("another session's expunge arrives as * VANISHED <uid>", v, [U[3]], r)
    R.eq("no * n EXPUNGE once QRESYNC is enabled", r.of("EXPUNGE"), [], r)
    c.must("UID STORE %d +FLAGS.SILENT (\\Deleted)" % U[9])
    r = c.cmd("EXPUNGE")
    v, _ = vanished(r, earlier=False)
    R.eq("own EXPUNGE answers * VANISHED", v, [U[9]], r)
    R.check("EXPUNGE's tagged OK carries HIGHESTMODSEQ", r.code_name == "HIGHESTMODSEQ" and int(r.code.split()[1]) > H1, r)
    c.must("CREATE Q2")
    r = c.cmd("UID MOVE %d Q2" % U[7])
    v, _ = vanished(r, earlier=False)
    R.eq("MOVE answers * VANISHED", v, [U[7]], r)
    R.check("MOVE sends COPYUID", any(b"[COPYUID " in u for u in r.untagged) or r.code_name == "COPYUID", r)
    r = b.cmd("NOOP")
    R.check("a session without QRESYNC gets * n EXPUNGE for the same changes", len(r.of("EXPUNGE")) == 2 and not r.of("VANISHED"), r)
    b.logout()

with R.section("CLOSE under QRESYNC; MODSEQ after a CONDSTORE-enabling FETCH"):
    c.must("STORE 1 +FLAGS.SILENT (\\Deleted)")
    r = c.cmd("CLOSE")
    R.check("CLOSE under QRESYNC sends no VANISHED or EXPUNGE (RFC 3501 6.4.2)", r.status == "OK" and not r.of("VANISHED") and not r.of("EXPUNGE"), r)
    c.select("Q")
    g = connect(PORT, "alice", "pw-alice")
    g.must("SELECT Q")
    r = g.cmd("FETCH 1 (MODSEQ)")
    R.check("FETCH MODSEQ enables CONDSTORE implicitly", r.status == "OK" and r.fetches() and "MODSEQ" in r.fetches()[0][1], r)
    c.must("STORE 1 +FLAGS ($AfterEnable)")
    r = g.cmd("NOOP")
    f = [d for s, d in r.fetches() if s == 1]
    R.check("after it, unsolicited FETCH FLAGS carry MODSEQ (RFC 7162 3.1.2)", f and "MODSEQ" in f[0] and "$AfterEnable" in f[0].get("FLAGS", []), r)
    g.logout()

with R.section("CONDSTORE via SELECT (CONDSTORE) and HIGHESTMODSEQ"):
    f_ = connect(PORT, "alice", "pw-alice")
    r = f_.cmd("SELECT Q (CONDSTORE)")
    R.check("SELECT (CONDSTORE) has HIGHESTMODSEQ", r.status == "OK" and r.code_of("HIGHESTMODSEQ"), r)
    h = int(r.code_of("HIGHESTMODSEQ").split()[1])
    r = f_.cmd("STORE 1 +FLAGS ($Cs)")
    ms = [int(d["MODSEQ"][0]) for _, d in r.fetches() if "MODSEQ" in d]
    R.check("STORE after SELECT (CONDSTORE) returns MODSEQ above HIGHESTMODSEQ", ms and ms[0] > h, r)
    r = f_.cmd("STATUS Q2 (HIGHESTMODSEQ)")
    R.status("STATUS HIGHESTMODSEQ", r, "OK")
    f_.cmd("UNSELECT")
    r = f_.cmd("STATUS Q (HIGHESTMODSEQ)")
    st = parse(r.of("STATUS")[0][len("* STATUS "):])[1] if r.of("STATUS") else []
    R.check("STATUS HIGHESTMODSEQ equals the latest MODSEQ", ms and len(st) == 2 and int(st[1]) >= ms[0], (r, ms))
    f_.logout()

c.logout()
R.finish()
