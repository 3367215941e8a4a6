"""Read every user's INBOX back through the proxy for the chaos harness.

For each user: UIDVALIDITY, and per message its UID, flags, size, SHA-256 of
the exact bytes and the Message-ID. A message the server refuses to send
(NO, e.g. [CORRUPTION]) is listed under "unreadable".

Usage: readback.py IMAP_HOST:PORT USER:PASSWORD...   (prints one JSON document)
"""

import hashlib
import imaplib
import json
import re
import sys

BATCH = 200
FIRST = b"From: chaos@example.org\r\n"
MID = re.compile(rb"(?im)^Message-ID:\s*<([^>@]+)@")
UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
UID = re.compile(rb"UID (\d+)")
FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")

host, port = sys.argv[1].rsplit(":", 1)
out = {}
for spec in sys.argv[2:]:
    user, password = spec.split(":", 1)
    c = imaplib.IMAP4(host, int(port), timeout=60)
    c.login(user, password)
    typ, data = c.select("INBOX", readonly=True)
    assert typ == "OK", data
    uv = c.response("UIDVALIDITY")[1][0]
    typ, data = c.uid("SEARCH", "ALL")
    uids = [int(u) for u in data[0].split()] if data and data[0] else []
    msgs, unreadable = [], []

    def fetch(uid_set):
        typ, data = c.uid("FETCH", uid_set, "(UID FLAGS BODY.PEEK[])")
        if typ != "OK":
            return None
        got = []
        for part in data:
            if not isinstance(part, tuple):
                continue
            uid, flags = UID.search(part[0]), FLAGS.search(part[0])
            raw = part[1]
            mid = MID.search(raw)
            got.append({
                "uid": int(uid.group(1)),
                "flags": flags.group(1).decode().split() if flags else [],
                "size": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest(),
                # LMTP delivery prepends trace headers: the bytes the client
                # sent start at its first header.
                "sha256_sent": hashlib.sha256(raw[max(raw.find(FIRST), 0):]).hexdigest(),
                "id": mid.group(1).decode() if mid else None,
            })
        return got

    for i in range(0, len(uids), BATCH):
        batch = uids[i:i + BATCH]
        got = fetch(",".join(str(u) for u in batch))
        if got is None:
            for u in batch:
                one = fetch(str(u))
                if one is None:
                    unreadable.append(u)
                else:
                    msgs.extend(one)
        else:
            msgs.extend(got)
    c.logout()
    out[user] = {"uidvalidity": int(uv), "messages": msgs, "unreadable": unreadable}
print(json.dumps(out))
