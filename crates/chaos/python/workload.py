"""The chaos harness's workload: independent IMAP and LMTP clients.

One IMAP client and one LMTP client per user, each a thread, talk to the
proxy until the stop file appears. The IMAP client mostly APPENDs to INBOX
and sometimes flags (\\Flagged) or expunges one of the messages it had
acknowledged; the LMTP client delivers. Every acknowledged operation is one
JSON line (with the client's clock, ms since the epoch) in OUT/KIND-USER.jsonl,
flushed at once. On a refusal, a timeout or a broken connection the client
reconnects to the proxy and goes on with a new message.

Usage: workload.py IMAP_HOST:PORT LMTP_HOST:PORT OUT STOPFILE SEED PAUSE_MS USER:PASSWORD...
"""

import hashlib
import imaplib
import json
import os
import random
import re
import smtplib
import socket
import sys
import threading
import time

# Longest a client runs, whatever happens to the stop file (seconds).
MAX_SECONDS = 4 * 3600
# Socket timeout of one client operation (seconds).
TIMEOUT = 10
RETRY_PAUSE = 0.05

imap_addr, lmtp_addr, out_dir, stop_file, seed, pause_ms = sys.argv[1:7]
users = [a.split(":", 1) for a in sys.argv[7:]]
split = lambda s: (s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1]))
imap_addr, lmtp_addr = split(imap_addr), split(lmtp_addr)
pause = int(pause_ms) / 1000.0
APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")


def now_ms():
    return int(time.time() * 1000)


def message(kind, user, n, rng):
    mid = "%s-%s-%d-%d" % (kind, user, n, rng.randrange(1 << 30))
    lines = rng.randrange(1, 40)
    body = "".join("line %d of %s %s\r\n" % (i, mid, "x" * rng.randrange(0, 60)) for i in range(lines))
    raw = (
        "From: chaos@example.org\r\nTo: %s@chaos.test\r\nSubject: %s\r\n"
        "Message-ID: <%s@chaos.test>\r\n\r\n%s" % (user, mid, mid, body)
    ).encode()
    return mid, raw


class Client:
    def __init__(self, kind, user, password, rng):
        self.kind, self.user, self.password, self.rng = kind, user, password, rng
        self.out = open(os.path.join(out_dir, "%s-%s.jsonl" % (kind, user)), "w")
        self.conn = None
        self.port = None
        self.live = []  # acknowledged, not expunged: ids
        self.refused = self.errors = self.attempts = 0
        self.n = 0

    def record(self, rec):
        rec["t"] = now_ms()
        rec["user"] = self.user
        rec["client"] = self.kind
        rec["port"] = self.port
        self.out.write(json.dumps(rec) + "\n")
        self.out.flush()

    def drop(self):
        c, self.conn = self.conn, None
        try:
            if c is not None:
                if self.kind == "imap":
                    c.shutdown()
                else:
                    c.close()
        except Exception:
            pass

    def connect(self):
        if self.kind == "imap":
            c = imaplib.IMAP4(imap_addr[0], imap_addr[1], timeout=TIMEOUT)
            self.port = c.sock.getsockname()[1]
            try:
                c.login(self.user, self.password)
                typ, data = c.select("INBOX")
                if typ != "OK":
                    raise RuntimeError("SELECT %r" % (data,))
            except Exception:
                try:
                    c.shutdown()
                except Exception:
                    pass
                raise
        else:
            c = smtplib.LMTP(lmtp_addr[0], lmtp_addr[1], timeout=TIMEOUT)
            self.port = c.sock.getsockname()[1]
            c.ehlo_or_helo_if_needed()
        self.conn = c

    def step(self):
        """One operation; True if acknowledged, False if refused."""
        self.n += 1
        if self.kind == "lmtp":
            mid, raw = message("lmtp", self.user, self.n, self.rng)
            try:
                refused = self.conn.sendmail("chaos@example.org", [self.user + "@chaos.test"], raw)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as e:
                self.drop()
                return False
            if refused:
                self.drop()
                return False
            self.record({"op": "deliver", "id": mid, "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)})
            return True
        r = self.rng.random()
        if r < 0.08 and self.live:
            return self.change(self.rng.choice(self.live), expunge=False)
        if r < 0.12 and self.live:
            mid = self.live.pop(self.rng.randrange(len(self.live)))
            ok = self.change(mid, expunge=True)
            if not ok:
                self.live.append(mid)
            return ok
        mid, raw = message("imap", self.user, self.n, self.rng)
        typ, data = self.conn.append("INBOX", None, None, raw)
        text = b" ".join(d for d in data if isinstance(d, bytes))
        if typ != "OK":
            self.drop()
            return False
        m = APPENDUID.search(text)
        if m is None:
            raise RuntimeError("APPEND OK without APPENDUID: %r" % text)
        self.live.append(mid)
        self.record({
            "op": "append", "id": mid, "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw),
            "uidvalidity": int(m.group(1)), "uid": int(m.group(2)),
        })
        return True

    def change(self, mid, expunge):
        c = self.conn
        typ, data = c.uid("SEARCH", "HEADER", "Message-ID", "<%s@chaos.test>" % mid)
        if typ != "OK":
            self.drop()
            return False
        uids = data[0].split() if data and data[0] else []
        if not uids:
            # Not visible here (yet): nothing was acknowledged.
            return False
        uid = uids[0].decode()
        if expunge:
            typ, data = c.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
            if typ != "OK":
                self.drop()
                return False
            typ, data = c.uid("EXPUNGE", uid)
            if typ != "OK":
                self.drop()
                return False
            self.record({"op": "expunge", "id": mid, "uid": int(uid)})
        else:
            typ, data = c.uid("STORE", uid, "+FLAGS.SILENT", "(\\Flagged)")
            if typ != "OK":
                self.drop()
                return False
            self.record({"op": "flag", "id": mid, "uid": int(uid), "flag": "\\Flagged"})
        return True

    def run(self, deadline):
        while time.monotonic() < deadline and not os.path.exists(stop_file):
            try:
                if self.conn is None:
                    self.connect()
                self.attempts += 1
                if not self.step():
                    self.refused += 1
                    time.sleep(RETRY_PAUSE)
                elif pause > 0:
                    time.sleep(pause)
            except Exception as e:
                self.errors += 1
                self.drop()
                time.sleep(RETRY_PAUSE)
        self.drop()
        self.record({"op": "summary", "attempts": self.attempts, "refused": self.refused, "errors": self.errors})
        self.out.close()


def main():
    deadline = time.monotonic() + MAX_SECONDS
    threads = []
    for i, (user, password) in enumerate(users):
        for k, kind in enumerate(("imap", "lmtp")):
            rng = random.Random("%s/%d/%d" % (seed, i, k))
            c = Client(kind, user, password, rng)
            t = threading.Thread(target=c.run, args=(deadline,), daemon=True)
            t.start()
            threads.append(t)
    for t in threads:
        t.join()


main()
