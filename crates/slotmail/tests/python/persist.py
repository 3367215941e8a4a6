"""What IMAP promises across a server restart (RFC 3501 2.3.1.1, RFC 7162):
UIDVALIDITY, UIDs, flags, bodies, UIDNEXT, subscriptions and special-use
stay; HIGHESTMODSEQ never goes back; QRESYNC from a MODSEQ seen before the
restart still reports exactly the expunges since; new UIDs are above the
old ones; \\Recent is not handed out twice.

argv: imap_port lmtp_port (before|after) state.json. User: alice/pw-alice.
"""

import base64
import json

from imapt import Report, args, connect, message, uid_set

PORT, _LMTP, MODE, STATE = args()[:4]
R = Report("persist.py " + MODE)


def snapshot(c):
    r = c.cmd("UID FETCH 1:* (FLAGS BODY.PEEK[])")
    return {str(int(d["UID"])): {"flags": sorted(f for f in d["FLAGS"] if f != "\\Recent"),
                                 "body": base64.b64encode(d["BODY[]"]).decode()}
            for _, d in r.fetches()}


def select_info(r):
    return {k: int(r.code_of(k).split()[1]) for k in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ") if r.code_of(k)}


if MODE == "before":
    with R.section("set up"):
        c = connect(PORT, "alice", "pw-alice")
        c.must("ENABLE QRESYNC")
        c.must("CREATE P")
        R.status("CREATE with USE (\\Flagged)", c.cmd("CREATE Pflag (USE (\\Flagged))"), "OK")
        c.must("SUBSCRIBE P")
        uids = [c.append("P", message("persist %d" % i, b"body %d\r\n" % i), flags="$K%d" % i,
                         date="0%d-Feb-2024 10:00:00 +0100" % (i + 1))[2] for i in range(6)]
        r = c.select("P")
        R.eq("6 messages, all \\Recent for this first session", (r.numbers("EXISTS"), r.numbers("RECENT")), ([6], [6]))
        h_mid = select_info(r)["HIGHESTMODSEQ"]
        c.must("STORE 1 +FLAGS (\\Answered)")
        c.must("STORE 3,4 +FLAGS.SILENT (\\Deleted)")
        r = c.cmd("EXPUNGE")
        R.status("EXPUNGE", r, "OK")
        c.must("STORE 2 +FLAGS (\\Flagged)")
        r = c.select("P")
        state = {"info": select_info(r), "h_mid": h_mid, "expunged": [uids[2], uids[3]],
                 "changed": [uids[0], uids[1]], "messages": snapshot(c)}
        R.eq("4 messages remain", len(state["messages"]), 4)
        with open(STATE, "w") as f:
            json.dump(state, f)
        c.logout()
else:
    with open(STATE) as f:
        state = json.load(f)
    with R.section("after the restart"):
        c = connect(PORT, "alice", "pw-alice")
        r = c.select("P", extra=" (CONDSTORE)")
        info = select_info(r)
        R.eq("UIDVALIDITY unchanged (RFC 3501 2.3.1.1)", info.get("UIDVALIDITY"), state["info"]["UIDVALIDITY"])
        R.eq("UIDNEXT unchanged", info.get("UIDNEXT"), state["info"]["UIDNEXT"])
        R.check("HIGHESTMODSEQ did not go back (RFC 7162 3.1.2.1)", info.get("HIGHESTMODSEQ", 0) >= state["info"]["HIGHESTMODSEQ"], (info, state["info"]))
        R.eq("EXISTS unchanged", r.numbers("EXISTS"), [len(state["messages"])])
        R.eq("no message is \\Recent again", r.numbers("RECENT"), [0])
        R.eq("UIDs, flags and bodies unchanged", snapshot(c), state["messages"])
        _, _, new_uid = c.append("P", message("after restart"))
        R.check("a new UID is above every UID before the restart",
                new_uid and new_uid >= state["info"]["UIDNEXT"] and all(new_uid > int(u) for u in state["messages"]), new_uid)
        c.logout()
        q = connect(PORT, "alice", "pw-alice")
        q.must("ENABLE QRESYNC")
        r = q.cmd("SELECT P (QRESYNC (%d %d))" % (state["info"]["UIDVALIDITY"], state["h_mid"]))
        R.status("QRESYNC from a MODSEQ seen before the restart", r, "OK")
        v = []
        for u in r.of("VANISHED"):
            v += uid_set(u.split(b"(EARLIER)")[1].strip())
        R.eq("VANISHED (EARLIER): exactly the expunges since", sorted(v), sorted(state["expunged"]), r)
        fetched = sorted(int(d["UID"]) for _, d in r.fetches())
        R.check("FETCH for the changed messages (and the new one)",
                set(state["changed"]) <= set(fetched) <= set(state["changed"]) | {new_uid}, (fetched, r))
        r = q.cmd('LSUB "" "P"')
        R.eq("the subscription survived", len(r.of("LSUB")), 1, r)
        r = q.cmd('LIST "" "Pflag" RETURN (SPECIAL-USE)')
        R.check("the special use survived", r.of("LIST") and b"\\Flagged" in r.of("LIST")[0], r)
        q.logout()

R.finish()
