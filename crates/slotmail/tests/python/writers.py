"""Continuous writers for switchover and failover tests.

One IMAP writer (APPEND to INBOX) and one LMTP writer (delivery) per user,
each in its own thread, write unique messages as fast as the server
acknowledges them until the stop file appears (or MAX_SECONDS pass). They
follow the directory: on every refusal (IMAP NO [UNAVAILABLE], LMTP 4xx)
or broken connection they ask `slotmail ctl user show USER --json` where
the user's master is now, and retry the same message there.

With `--proxy IMAP_HOST:PORT LMTP_HOST:PORT` they write through the proxy
instead: every connection goes to the proxy, which routes it to the user's
current master; a refusal (NO [UNAVAILABLE] at LOGIN or APPEND, LMTP 4xx),
a BYE or a dropped connection means reconnect to the proxy and retry the
same message. The directory is then read only to report which masters the
writer saw.

Usage: writers.py [--proxy IMAP LMTP] SLOTMAIL CLUSTER STOPFILE USER:PASSWORD...

Prints one JSON document: per writer the acknowledged messages (id,
sha256 and size of the exact bytes sent), refusals, errors, and the
longest time between two acknowledgements that had refusals or errors in
between (the refused-write window as a client sees it).
"""

import hashlib
import imaplib
import json
import os
import smtplib
import subprocess
import sys
import threading
import time

MAX_SECONDS = 240
RETRY_PAUSE = 0.02
# Pause after each acknowledged message (seconds; the benchmark's rate).
PAUSE = float(os.environ.get("WRITER_PAUSE", "0"))

args = sys.argv[1:]
proxy = None
if args and args[0] == "--proxy":
    split = lambda s: (s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1]))
    proxy = (split(args[1]), split(args[2]))
    args = args[3:]
slotmail, cluster, stopfile = args[0], args[1], args[2]
users = [a.split(":", 1) for a in args[3:]]


class Refused(Exception):
    """The proxy refused a login: the user's master is unavailable."""


def master(user):
    out = subprocess.run(
        [slotmail, "ctl", "--cluster", cluster, "user", "show", user, "--json"],
        capture_output=True,
        timeout=30,
    )
    doc = json.loads(out.stdout)
    m = doc["master"]
    split = lambda s: (s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1]))
    return split(m["imap"]), split(m["lmtp"]), m["slot"]


def message(kind, user, n):
    mid = "%s-%s-%d" % (kind, user, n)
    body = "".join("line %d of %s\r\n" % (i, mid) for i in range(1 + n % 7))
    raw = (
        "From: writer@example.org\r\nTo: %s@e2e.test\r\nSubject: %s\r\n"
        "Message-ID: <%s@e2e.test>\r\n\r\n%s" % (user, mid, mid, body)
    ).encode()
    return mid, raw


class Writer:
    def __init__(self, kind, user, password):
        self.kind, self.user, self.password = kind, user, password
        self.acked, self.refused, self.errors = [], 0, 0
        self.last_ok = None
        self.trouble = False
        self.longest_ms = 0
        self.slots = []
        self.conn = None
        self.last_error = None

    def note_ok(self, mid, raw):
        now = time.monotonic()
        if self.trouble and self.last_ok is not None:
            self.longest_ms = max(self.longest_ms, int((now - self.last_ok) * 1000))
        self.trouble = False
        self.last_ok = now
        self.acked.append(
            {"id": mid, "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
        )

    def drop(self):
        try:
            if self.conn is not None:
                if self.kind == "imap":
                    self.conn.shutdown()
                else:
                    self.conn.close()
        except Exception:
            pass
        self.conn = None

    def note_master(self, slot):
        if not self.slots or self.slots[-1] != slot:
            self.slots.append(slot)

    def connect(self):
        imap, lmtp, slot = master(self.user)
        self.note_master(slot)
        if proxy is not None:
            imap, lmtp = proxy
        if self.kind == "imap":
            c = imaplib.IMAP4(imap[0], imap[1], timeout=10)
            try:
                c.login(self.user, self.password)
            except imaplib.IMAP4.error as e:
                try:
                    c.shutdown()
                except Exception:
                    pass
                if "UNAVAILABLE" in str(e):
                    raise Refused(str(e))
                raise
        else:
            c = smtplib.LMTP(lmtp[0], lmtp[1], timeout=10)
            c.ehlo_or_helo_if_needed()
        self.conn = c
        if proxy is not None and self.kind == "imap":
            # The proxy chose the master at login, after the lookup above:
            # a switch in between sends this session to the new master
            # (whose refusal or BYE would otherwise be what tells us).
            self.note_master(master(self.user)[2])

    def send(self, raw):
        """True if acknowledged, False if refused; raises on a broken link."""
        if self.kind == "imap":
            typ, data = self.conn.append("INBOX", None, None, raw)
            if typ == "OK":
                return True
            if b"UNAVAILABLE" in b" ".join(d for d in data if isinstance(d, bytes)):
                return False
            raise RuntimeError("APPEND %s %r" % (typ, data))
        try:
            refused = self.conn.sendmail(
                "writer@example.org", [self.user + "@e2e.test"], raw
            )
        except smtplib.SMTPRecipientsRefused as e:
            codes = [c for c, _ in e.recipients.values()]
            if all(400 <= c < 500 for c in codes):
                self.conn.rset()
                return False
            raise
        except smtplib.SMTPDataError as e:
            if 400 <= e.smtp_code < 500:
                self.conn.rset()
                return False
            raise
        return not refused

    def run(self):
        deadline = time.monotonic() + MAX_SECONDS
        n = 0
        mid, raw = message(self.kind, self.user, n)
        while not os.path.exists(stopfile) and time.monotonic() < deadline:
            try:
                if self.conn is None:
                    self.connect()
                if self.send(raw):
                    self.note_ok(mid, raw)
                    n += 1
                    if PAUSE:
                        time.sleep(PAUSE)
                    mid, raw = message(self.kind, self.user, n)
                else:
                    self.refused += 1
                    self.trouble = True
                    # The master may have changed: look again.
                    self.drop()
                    time.sleep(RETRY_PAUSE)
            except Refused:
                self.refused += 1
                self.trouble = True
                self.drop()
                time.sleep(RETRY_PAUSE)
            except Exception as e:
                self.errors += 1
                self.trouble = True
                self.last_error = repr(e)[:200]
                self.drop()
                time.sleep(RETRY_PAUSE)
        self.drop()

    def report(self):
        return {
            "kind": self.kind,
            "user": self.user,
            "acked": self.acked,
            "refused": self.refused,
            "errors": self.errors,
            "last_error": self.last_error,
            "longest_outage_ms": self.longest_ms,
            "masters": self.slots,
        }


writers = [Writer(k, u, p) for u, p in users for k in ("imap", "lmtp")]
threads = [threading.Thread(target=w.run) for w in writers]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"writers": [w.report() for w in writers]}))
