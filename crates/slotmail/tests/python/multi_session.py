"""Several sessions on one mailbox see each other's changes at command
boundaries (RFC 3501 5.2, 7.4.1): EXISTS/RECENT for new messages, FETCH
FLAGS for flag changes, FLAGS for new keywords, EXPUNGE — but never an
EXPUNGE while answering FETCH, STORE or SEARCH. A read-only session sees
the same. Users are isolated; deleting a selected mailbox elsewhere never
hangs the session.

argv: imap_port. Users: alice/pw-alice, bob/pw-bob.
"""

from imapt import Report, ServerClosed, args, connect, message, server_alive

PORT = args()[0]
R = Report("multi_session.py")


def uids(conn):
    r = conn.cmd("FETCH 1:* (UID)")
    by_seq = {s: int(d["UID"]) for s, d in r.fetches() if "UID" in d}
    return [by_seq[s] for s in sorted(by_seq)]


a = connect(PORT, "alice", "pw-alice")
a.must("CREATE M")
U = [a.append("M", message("m%d" % i))[2] for i in range(3)]
b = connect(PORT, "alice", "pw-alice")
x = connect(PORT, "alice", "pw-alice")
a.select("M")
b.select("M")
x.select("M", examine=True)

with R.section("new messages"):
    rb_append, _, u4 = b.append("M", message("m3 by b"))
    r = a.cmd("NOOP")
    R.eq("A sees * 4 EXISTS at its next command", r.numbers("EXISTS"), [4], r)
    R.check("A gets a RECENT count with it (rev1)", len(r.numbers("RECENT")) == 1, r)
    r = x.cmd("NOOP")
    R.eq("the EXAMINE session sees * 4 EXISTS", r.numbers("EXISTS"), [4], r)
    r = b.cmd("NOOP")
    R.eq("B, which appended, sees * 4 EXISTS too (in the APPEND answer or the next NOOP)",
         rb_append.numbers("EXISTS") + r.numbers("EXISTS"), [4], (rb_append, r))
    R.eq("A's view", uids(a), U + [u4])
    r = a.cmd("NOOP")
    R.eq("EXISTS is not repeated", r.numbers("EXISTS"), [], r)

with R.section("flag changes"):
    b.must("STORE 1 +FLAGS (\\Flagged)")
    r = a.cmd("NOOP")
    f = r.fetches()
    R.check("A sees * 1 FETCH (FLAGS (\\Flagged ...))", len(f) == 1 and f[0][0] == 1 and "\\Flagged" in f[0][1].get("FLAGS", []), r)
    r = x.cmd("NOOP")
    R.check("the EXAMINE session sees the flag change", any(s == 1 and "\\Flagged" in d.get("FLAGS", []) for s, d in r.fetches()), r)
    a.must("STORE 2 +FLAGS (\\Seen)")
    r = b.cmd("NOOP")
    R.check("B sees A's change", any(s == 2 and "\\Seen" in d.get("FLAGS", []) for s, d in r.fetches()), r)
    r = a.cmd("NOOP")
    R.eq("A is not told about its own STORE again", r.fetches(), [], r)
    b.must("STORE 3 +FLAGS (BrandNewKeyword)")
    r = a.cmd("NOOP")
    fl = [u for u in r.untagged if u.startswith(b"* FLAGS")]
    R.check("A gets * FLAGS with the new keyword (RFC 3501 7.2.6)", fl and b"BrandNewKeyword" in fl[-1], r)
    R.check("... and the FETCH of message 3", any(s == 3 and "BrandNewKeyword" in d.get("FLAGS", []) for s, d in r.fetches()), r)
    # Both change the same message: each ends up seeing the union.
    a.must("STORE 4 +FLAGS.SILENT ($FromA)")
    b.must("STORE 4 +FLAGS.SILENT ($FromB)")
    ra = a.cmd("FETCH 4 (FLAGS)")
    rb = b.cmd("FETCH 4 (FLAGS)")
    fa = set(ra.fetches()[-1][1]["FLAGS"]) if ra.fetches() else set()
    fb = set(rb.fetches()[-1][1]["FLAGS"]) if rb.fetches() else set()
    R.check("concurrent +FLAGS from two sessions both stick", {"$FromA", "$FromB"} <= fa and {"$FromA", "$FromB"} <= fb, (ra, rb))

with R.section("expunges wait for a command that allows them (RFC 3501 7.4.1)"):
    b.must("STORE 2 +FLAGS.SILENT (\\Deleted)")
    r = b.cmd("EXPUNGE")
    R.eq("B's EXPUNGE", r.numbers("EXPUNGE"), [2], r)
    for cmd in ["FETCH 1:* (UID FLAGS)", "STORE 1 +FLAGS.SILENT ($Busy)", "SEARCH ALL", "FETCH 2 (UID)"]:
        r = a.cmd(cmd)
        R.check("no EXPUNGE while answering %s" % cmd.split()[0] + (" (%s)" % cmd), not r.of("EXPUNGE"), r)
        R.check("%s still answers OK (or NO for the expunged message)" % cmd, r.status in ("OK", "NO"), r)
    r = a.cmd("SEARCH ALL")
    hits = [int(n) for n in r.of("SEARCH")[0].split()[2:]] if r.of("SEARCH") else []
    R.eq("A's SEARCH still numbers by A's old view (4 messages)", max(hits) if hits else 0, 4, r)
    r = a.cmd("NOOP")
    R.eq("the EXPUNGE arrives at A's NOOP", r.numbers("EXPUNGE"), [2], r)
    R.eq("A's view matches B's", uids(a), uids(b))
    r = x.cmd("CHECK")
    R.eq("the EXAMINE session gets the EXPUNGE at CHECK", r.numbers("EXPUNGE"), [2], r)
    # Several expunges and an append in one go.
    b.must("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    b.must("EXPUNGE")
    _, _, u5 = b.append("M", message("m5 by b"))
    r = a.cmd("NOOP")
    view = [U[0], U[2], u4]
    for n in r.numbers("EXPUNGE"):
        if 1 <= n <= len(view):
            view.pop(n - 1)
    R.eq("replaying A's EXPUNGEs leaves only message 4", view, [u4], r)
    R.eq("then * 2 EXISTS for the new one", r.numbers("EXISTS"), [2], r)
    R.eq("A's view", uids(a), [u4, u5])
    r = a.cmd("UID FETCH 1:* (FLAGS)")
    R.check("UID FETCH works on the new view", r.status == "OK" and len(r.fetches()) == 2, r)

with R.section("users are isolated"):
    bob = connect(PORT, "bob", "pw-bob")
    bob.append("INBOX", message("for bob only"))
    bob.must("CREATE M")
    bob.append("M", message("bob's M"))
    r = a.cmd("NOOP")
    R.eq("alice's session sees nothing of bob's changes", (r.numbers("EXISTS"), r.fetches()), ([], []), r)
    bob.logout()

with R.section("the selected mailbox is deleted by another session"):
    a.must("CREATE Doomed")
    a.append("Doomed", message("doomed"))
    d = connect(PORT, "alice", "pw-alice")
    d.select("Doomed")
    R.status("DELETE of a mailbox selected elsewhere", a.cmd("DELETE Doomed"), "OK")
    try:
        r = d.cmd("NOOP")
        R.check("the other session gets an answer (BYE, NO or OK), not a hang", r.status in ("OK", "NO", "BAD") or r.of("BYE"), r)
        if r.status == "OK" and not r.of("BYE"):
            r = d.cmd("FETCH 1 (FLAGS)")
            R.check("... and its FETCH does not return the deleted data as if nothing happened",
                    r.status != "OK" or not r.fetches() or r.of("EXPUNGE"), r)
    except ServerClosed:
        R.check("the server closed the session whose mailbox is gone, after * BYE", d.seen_bye is not None, d.seen_bye)
        R.info["deleted_selected_mailbox"] = (d.seen_bye or b"").decode(errors="replace").strip()
    d.close()
    R.check("the server still serves new connections", server_alive(PORT, "alice", "pw-alice"))

for conn in (a, b, x):
    conn.logout()
R.finish()
