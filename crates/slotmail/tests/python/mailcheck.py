"""Read a user's whole mailbox tree over IMAP (Python's imaplib).

dump HOST PORT USER PASSWORD
    One JSON document: every mailbox with its UIDVALIDITY and every
    message's UID, flags (sorted, without \\Recent) and SHA-256 of its bytes.
    Two dumps of master and replica are equal iff a client sees the same.

verify HOST PORT USER PASSWORD ACKED.json
    ACKED.json is writers.py's report. Every message a writer of USER saw
    acknowledged must be there, found by its Message-ID: an APPENDed one
    byte for byte, a delivered one as its bytes after the trace headers
    the slot prepended. Prints {found, missing, mismatched, duplicates}.
"""

import hashlib
import imaplib
import json
import re
import sys


def messages(host, port, user, password):
    c = imaplib.IMAP4(host, int(port), timeout=30)
    c.login(user, password)
    typ, boxes = c.list()
    assert typ == "OK", boxes
    out = {}
    for line in boxes:
        name = line.decode().rsplit(' "/" ', 1)[1].strip()
        if name.startswith('"'):
            name = name[1:-1]
        typ, data = c.select('"%s"' % name, readonly=True)
        assert typ == "OK", (name, data)
        typ, v = c.response("UIDVALIDITY")
        msgs = []
        if int(data[0]) > 0:
            typ, parts = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            assert typ == "OK", parts
            for p in parts:
                if not isinstance(p, tuple):
                    continue
                head = p[0].decode()
                uid = int(re.search(r"UID (\d+)", head).group(1))
                flags = re.search(r"FLAGS \(([^)]*)\)", head).group(1).split()
                flags = sorted(f for f in flags if f.lower() != "\\recent")
                msgs.append({"uid": uid, "flags": flags, "raw": p[1]})
        out[name] = {"uidvalidity": int(v[0]), "messages": msgs}
    c.logout()
    return out


def dump(args):
    boxes = messages(*args)
    for b in boxes.values():
        for m in b["messages"]:
            m["sha256"] = hashlib.sha256(m.pop("raw")).hexdigest()
    print(json.dumps({"mailboxes": boxes}, sort_keys=True))


def verify(args):
    host, port, user, password, acked_file = args
    boxes = messages(host, port, user, password)
    by_id = {}
    for name, b in boxes.items():
        for m in b["messages"]:
            found = re.search(rb"Message-ID: <([^>]+)@e2e.test>", m["raw"])
            if found:
                by_id.setdefault(found.group(1).decode(), []).append(m["raw"])
    report = json.load(open(acked_file))
    found, missing, mismatched, duplicates = 0, [], [], 0
    for w in report["writers"]:
        if w["user"] != user:
            continue
        for a in w["acked"]:
            copies = by_id.get(a["id"], [])
            if not copies:
                missing.append(a["id"])
                continue
            duplicates += len(copies) - 1
            ok = False
            for raw in copies:
                body = raw if w["kind"] == "imap" else raw[len(raw) - a["size"]:]
                if w["kind"] == "lmtp" and not raw.startswith(b"Return-Path:") and not raw.startswith(b"Received:"):
                    continue
                if len(body) == a["size"] and hashlib.sha256(body).hexdigest() == a["sha256"]:
                    ok = True
            if ok:
                found += 1
            else:
                mismatched.append(a["id"])
    print(json.dumps({"found": found, "missing": missing, "mismatched": mismatched, "duplicates": duplicates}))


if __name__ == "__main__":
    {"dump": dump, "verify": verify}[sys.argv[1]](sys.argv[2:])
