"""STORE and UID STORE (+FLAGS, -FLAGS, FLAGS, .SILENT, keywords,
UNCHANGEDSINCE with [MODIFIED]), COPY and UID COPY ([COPYUID], TRYCREATE,
flags and INTERNALDATE preserved), MOVE and UID MOVE (RFC 6851).

argv: imap_port. Users: alice/pw-alice.
"""

from imapt import Report, args, connect, message, parse, uid_set

PORT = args()[0]
R = Report("store_copy_move.py")

c = connect(PORT, "alice", "pw-alice")
c.must("CREATE St")
MSGS = [message("store %d" % i, b"message %d\r\n" % i) for i in range(8)]
UIDS = []
for m in MSGS:
    _, uv, u = c.append("St", m, date="01-Jan-2024 08:00:00 +0000")
    UIDS.append(u)
UV = uv
c.must("SELECT St")


def flags_of(conn=None):
    r = (conn or c).cmd("FETCH 1:* (FLAGS)")
    return {s: set(f for f in d["FLAGS"] if f != "\\Recent") for s, d in r.fetches()}


with R.section("STORE"):
    r = c.cmd("STORE 1 +FLAGS (\\Flagged)")
    R.status("STORE +FLAGS", r, "OK")
    f = r.fetches()
    R.check("untagged FETCH with the new FLAGS (RFC 3501 6.4.6)", len(f) == 1 and f[0][0] == 1 and "\\Flagged" in f[0][1]["FLAGS"], r)
    r = c.cmd("STORE 1 +FLAGS (\\Seen $Label1)")
    R.check("+FLAGS adds to the existing flags", r.fetches() and {"\\Flagged", "\\Seen", "$Label1"} <= set(r.fetches()[0][1]["FLAGS"]), r)
    r = c.cmd("STORE 1 -FLAGS (\\Flagged)")
    R.check("-FLAGS removes only the given flags", r.fetches() and "\\Flagged" not in r.fetches()[0][1]["FLAGS"] and "\\Seen" in r.fetches()[0][1]["FLAGS"], r)
    r = c.cmd("STORE 1 FLAGS (\\Answered $Other)")
    R.check("FLAGS replaces the flags", r.fetches() and set(r.fetches()[0][1]["FLAGS"]) - {"\\Recent"} == {"\\Answered", "$Other"}, r)
    r = c.cmd("STORE 2:4 +FLAGS.SILENT (\\Deleted)")
    R.status("STORE +FLAGS.SILENT", r, "OK")
    R.eq(".SILENT sends no FETCH (RFC 3501 6.4.6)", r.fetches(), [], r)
    fl = flags_of()
    R.check(".SILENT still stored the flag", all("\\Deleted" in fl[s] for s in (2, 3, 4)) and "\\Deleted" not in fl[5], fl)
    r = c.cmd("STORE 2:4 -FLAGS.SILENT (\\Deleted)")
    R.eq("-FLAGS.SILENT sends no FETCH", r.fetches(), [], r)
    r = c.cmd("STORE 5 FLAGS.SILENT ()")
    R.status("FLAGS.SILENT () clears the flags", r, "OK")
    R.eq("flags cleared", flags_of()[5], set())
    r = c.cmd("UID STORE %d +FLAGS (\\Draft)" % UIDS[5])
    f = r.fetches()
    R.check("UID STORE: the FETCH carries the UID (RFC 3501 6.4.8)", len(f) == 1 and f[0][0] == 6 and int(f[0][1].get("UID", 0)) == UIDS[5], r)
    r = c.cmd("UID STORE %d +FLAGS (\\Draft)" % (UIDS[-1] + 100))
    R.check("UID STORE of a missing UID is OK and silent", r.status == "OK" and not r.fetches(), r)
    r = c.cmd("STORE 1 +FLAGS (NewKeyword)")
    R.status("STORE of a new keyword", r, "OK")
    r2 = c.cmd("NOOP")
    fl_resp = [u for u in r.untagged + r2.untagged if u.startswith(b"* FLAGS")]
    R.check("the new keyword is announced in * FLAGS (RFC 3501 7.2.6)", fl_resp and b"NewKeyword" in fl_resp[-1], (r, r2))
    r = c.cmd("STORE 1 +FLAGS (\\Recent)")
    R.check("STORE \\Recent is refused or ignored (RFC 3501 2.3.2)", r.status in ("OK", "BAD", "NO"), r)
    r = c.cmd("STORE 1 +FLAGS (\\NotASystemFlag)")
    R.check("STORE of an unknown system flag is refused", r.status in ("BAD", "NO"), r)
    r = c.cmd("STORE 1 +FLAGS \\Seen")
    R.status("STORE with a single flag without parentheses (RFC 3501 9: flag-list or flag)", r, "OK")
    r = c.cmd("STORE 1 ADDFLAGS (\\Seen)")
    R.status("STORE with a bad data item", r, "BAD")

with R.section("STORE UNCHANGEDSINCE (RFC 7162 3.1.3)"):
    r = c.cmd("FETCH 1:2 (MODSEQ)")
    ms = {s: int(d["MODSEQ"][0]) for s, d in r.fetches()}
    R.check("FETCH MODSEQ", set(ms) == {1, 2}, r)
    base = max(ms.values())
    other = connect(PORT, "alice", "pw-alice")
    other.must("SELECT St")
    other.must("STORE 2 +FLAGS ($ByOther)")
    r = c.cmd("STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS ($Cond)" % base)
    R.status("conditional STORE: one message changed meanwhile", r, "OK", "MODIFIED")
    R.eq("[MODIFIED] names message 2", r.code and uid_set(r.code.split()[1]), [2], r)
    got = {s: d for s, d in r.fetches()}
    R.check("message 1 was stored and reported with MODSEQ", 1 in got and "$Cond" in got[1].get("FLAGS", []) and "MODSEQ" in got[1], r)
    fl = flags_of()
    R.check("message 2 was not changed by the conditional STORE", "$Cond" not in fl[2] and "$ByOther" in fl[2], fl)
    r = c.cmd("UID STORE %d,%d (UNCHANGEDSINCE %d) -FLAGS ($Cond)" % (UIDS[0], UIDS[1], base))
    R.status("conditional UID STORE", r, "OK", "MODIFIED")
    R.eq("[MODIFIED] of UID STORE names UIDs (both changed since)", r.code and uid_set(r.code.split()[1]), sorted([UIDS[0], UIDS[1]]), r)
    R.check("... and message 1 keeps $Cond", "$Cond" in flags_of()[1])
    r = c.cmd("STORE 3 (UNCHANGEDSINCE 0) +FLAGS (\\Flagged)")
    R.status("UNCHANGEDSINCE 0 always fails (RFC 7162 3.1.3)", r, "OK", "MODIFIED")
    R.check("... and \\Flagged was not set", "\\Flagged" not in flags_of()[3])
    r = c.cmd("FETCH 3 (MODSEQ)")
    cur = int(r.fetches()[0][1]["MODSEQ"][0])
    r = c.cmd("STORE 3 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % cur)
    R.check("UNCHANGEDSINCE the current MODSEQ succeeds", r.status == "OK" and r.code_name != "MODIFIED" and "\\Flagged" in flags_of()[3], r)
    other.logout()

with R.section("COPY and UID COPY (RFC 4315 COPYUID)"):
    c.must("CREATE Dest")
    c.must("STORE 4 FLAGS (\\Seen $Copied)")
    r = c.cmd("COPY 3:4 Dest")
    R.status("COPY", r, "OK", "COPYUID")
    parts = r.code.split() if r.code else []
    R.check("COPYUID uidvalidity source-set dest-set", len(parts) == 4 and uid_set(parts[2]) == [UIDS[2], UIDS[3]] and len(uid_set(parts[3])) == 2, r)
    dest_uids = uid_set(parts[3]) if len(parts) == 4 else []
    d = connect(PORT, "alice", "pw-alice")
    rs = d.select("Dest")
    R.check("COPYUID's UIDVALIDITY is the destination's", len(parts) == 4 and rs.code_of("UIDVALIDITY") == "UIDVALIDITY " + parts[1], rs)
    rf = d.cmd("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")
    got = {int(x["UID"]): x for _, x in rf.fetches()}
    R.eq("the copies have the COPYUID UIDs", sorted(got), dest_uids)
    if len(dest_uids) == 2:
        R.eq("copied bodies are byte-identical", [got[u]["BODY[]"] for u in dest_uids], [MSGS[2], MSGS[3]])
        R.check("flags are copied (RFC 3501 6.4.7 SHOULD)", {"\\Seen", "$Copied"} <= set(got[dest_uids[1]]["FLAGS"]), got)
        R.check("copies are \\Recent in the destination (RFC 3501 6.4.7)", all("\\Recent" in got[u]["FLAGS"] for u in dest_uids), got)
        R.check("INTERNALDATE is copied", all(got[u]["INTERNALDATE"].startswith(b"01-Jan-2024") for u in dest_uids), got)
    d.logout()
    R.eq("the source still has its messages", len(flags_of()), 8)
    r = c.cmd("UID COPY %d Dest" % UIDS[6])
    R.status("UID COPY", r, "OK", "COPYUID")
    R.check("UID COPY's COPYUID names the source UID", r.code and uid_set(r.code.split()[2]) == [UIDS[6]], r)
    # COPYUID pairs source and destination UIDs in the same order (RFC 4315 3).
    c.must("CREATE Pairs")
    r = c.cmd("UID COPY %d,%d,%d Pairs" % (UIDS[7], UIDS[0], UIDS[4]))
    parts = r.code.split() if r.code and r.code_name == "COPYUID" else []
    R.check("UID COPY of a non-contiguous set: COPYUID", len(parts) == 4, r)
    if len(parts) == 4:
        src, dst = uid_set(parts[2]), uid_set(parts[3])
        R.eq("COPYUID source set", src, sorted([UIDS[7], UIDS[0], UIDS[4]]))
        d = connect(PORT, "alice", "pw-alice")
        d.select("Pairs")
        rf = d.cmd("UID FETCH 1:* (BODY.PEEK[])")
        got = {int(x["UID"]): x["BODY[]"] for _, x in rf.fetches()}
        R.eq("each destination UID holds the message of the paired source UID",
             [got.get(u) for u in dst], [MSGS[UIDS.index(u)] for u in src])
        d.logout()
    # COPY into the selected mailbox itself.
    r = c.cmd("COPY 1 St")
    R.status("COPY into the selected mailbox", r, "OK", "COPYUID")
    r2 = c.cmd("NOOP")
    R.eq("the copy shows up as * 9 EXISTS", r.numbers("EXISTS") + r2.numbers("EXISTS"), [9], (r, r2))
    c.must("UID STORE %s +FLAGS.SILENT (\\Deleted)" % uid_set(r.code.split()[3])[0] if r.code_name == "COPYUID" else "NOOP")
    c.must("UID EXPUNGE %s" % uid_set(r.code.split()[3])[0] if r.code_name == "COPYUID" else "NOOP")
    r = c.cmd("COPY 1 NoSuchMailbox")
    R.status("COPY to a missing mailbox (RFC 3501 6.4.7)", r, "NO", "TRYCREATE")
    r = c.cmd("UID COPY %d Dest" % (UIDS[-1] + 100))
    R.check("UID COPY of missing UIDs is OK without COPYUID", r.status == "OK" and r.code_name != "COPYUID", r)
    r = c.cmd("COPY 99 Dest")
    R.status("COPY of a message number beyond EXISTS is BAD", r, "BAD")

with R.section("MOVE and UID MOVE (RFC 6851)"):
    c.must("CREATE Moved")
    before = flags_of()
    r = c.cmd("MOVE 2 Moved")
    R.status("MOVE", r, "OK")
    cu = [u for u in r.untagged if b"[COPYUID " in u]
    R.check("untagged OK [COPYUID] before the EXPUNGE (RFC 6851 4.3)", len(cu) == 1 and r.untagged.index(cu[0]) < r.untagged.index(r.of("EXPUNGE")[0]) if r.of("EXPUNGE") else False, r)
    R.eq("* 2 EXPUNGE", r.numbers("EXPUNGE"), [2], r)
    moved_uid = uid_set(parse(cu[0].split(b"[COPYUID ")[1].split(b"]")[0])[2])[0] if cu else None
    R.eq("the source has one message less", len(flags_of()), 7)
    d = connect(PORT, "alice", "pw-alice")
    d.select("Moved")
    rf = d.cmd("UID FETCH 1:* (FLAGS BODY.PEEK[])")
    got = {int(x["UID"]): x for _, x in rf.fetches()}
    R.check("the moved message is in the destination, byte-identical", moved_uid in got and got[moved_uid]["BODY[]"] == MSGS[1], (moved_uid, list(got)))
    R.check("its flags moved with it", moved_uid in got and set(before[2]) <= set(got[moved_uid]["FLAGS"]), (before[2], got.get(moved_uid)))
    d.logout()
    r = c.cmd("UID MOVE %d:%d Moved" % (UIDS[4], UIDS[5]))
    R.status("UID MOVE", r, "OK")
    view = [UIDS[0], UIDS[2], UIDS[3], UIDS[4], UIDS[5], UIDS[6], UIDS[7]]
    for n in r.numbers("EXPUNGE"):
        if 1 <= n <= len(view):
            view.pop(n - 1)
    R.eq("UID MOVE's EXPUNGEs remove exactly the moved UIDs", view, [UIDS[0], UIDS[2], UIDS[3], UIDS[6], UIDS[7]], r)
    r2 = c.cmd("FETCH 1:* (UID)")
    R.eq("the view agrees", [int(x["UID"]) for _, x in r2.fetches()], [UIDS[0], UIDS[2], UIDS[3], UIDS[6], UIDS[7]])
    r = c.cmd("MOVE 1 NoSuchMailbox")
    R.status("MOVE to a missing mailbox", r, "NO", "TRYCREATE")
    r = c.cmd("MOVE 99 Moved")
    R.status("MOVE of a message number beyond EXISTS is BAD", r, "BAD")
    e = connect(PORT, "alice", "pw-alice")
    e.select("St", examine=True)
    r = e.cmd("MOVE 1 Moved")
    R.status("MOVE out of a read-only mailbox", r, "NO")
    r = e.cmd("COPY 1 Moved")
    R.status("COPY out of a read-only mailbox is allowed", r, "OK", "COPYUID")
    e.logout()

c.logout()
R.finish()
