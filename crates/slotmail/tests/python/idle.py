"""IDLE (RFC 2177): another connection's APPEND, an LMTP delivery, a flag
change and an expunge wake an idling session; the latency from the
writer's completion to the idler's untagged response is measured (each
must be under 1 s). Several idlers wake at once; IDLE works without a
selected mailbox; DONE ends it with a tagged OK.

argv: imap_port lmtp_port. Users: alice/pw-alice.
"""

import smtplib
import threading
import time

from imapt import Report, Resp, ServerClosed, Timeout, args, connect, message, untagged_kind

PORT, LMTP = args()[:2]
R = Report("idle.py")
LIMIT_S = 1.0


class Idler:
    """A session in IDLE whose responses a thread timestamps as they arrive."""

    def __init__(self, mailbox="INBOX"):
        self.c = connect(PORT, "alice", "pw-alice")
        if mailbox:
            self.select = self.c.must("SELECT ", mailbox)
        self.tag = self.c.next_tag()
        self.c.send(self.tag + " IDLE\r\n")
        self.cont = self.c.read_response()
        self.events = []
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stop:
            try:
                resp = self.c.read_response(timeout=0.2)
            except Timeout:
                continue
            except (ServerClosed, OSError):
                return
            with self.lock:
                self.events.append((time.monotonic(), resp))
            if resp.startswith(self.tag.encode() + b" "):
                return

    def wait_for(self, pred, timeout=5.0):
        """(arrival time, response) of the first matching response."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for ev in self.events:
                    if pred(ev[1]):
                        self.events.remove(ev)
                        return ev
            time.sleep(0.002)
        return None

    def drain(self):
        with self.lock:
            out = [r for _, r in self.events]
            self.events.clear()
        return out

    def done(self):
        self.c.send("DONE\r\n")
        ev = self.wait_for(lambda r: r.startswith(self.tag.encode() + b" "))
        self.stop = True
        self.thread.join(2)
        return ev[1] if ev else None


def kind(k):
    return lambda r: untagged_kind(r) == k


latencies = {"append": [], "lmtp": [], "store": [], "expunge": []}
# From the start of the writer's command (commit included): the latency a
# user sees.
from_send = {"append": [], "lmtp": [], "store": [], "expunge": []}

with R.section("IDLE wakes on another session's APPEND"):
    idler = Idler()
    R.check("IDLE answers with a continuation (RFC 2177)", idler.cont.startswith(b"+"), idler.cont)
    exists = idler.select.numbers("EXISTS")[0]
    writer = connect(PORT, "alice", "pw-alice")
    for i in range(5):
        t_send = time.monotonic()
        r, _, _ = writer.append("INBOX", message("idle %d" % i, b"wake up %d\r\n" % i))
        t_ok = time.monotonic()
        R.status("APPEND %d by the second connection" % i, r, "OK")
        ev = idler.wait_for(kind("EXISTS"))
        R.check("APPEND %d: * EXISTS arrives during IDLE" % i, ev is not None, idler.drain())
        if ev:
            exists += 1
            R.eq("APPEND %d: the EXISTS count" % i, int(ev[1].split()[1]), exists)
            latencies["append"].append(max(0.0, ev[0] - t_ok))
            from_send["append"].append(ev[0] - t_send)
    # LMTP delivery wakes IDLE too.
    for i in range(3):
        with smtplib.LMTP("127.0.0.1", LMTP, timeout=10) as lmtp:
            body = message("lmtp %d" % i, b"delivered %d\r\n" % i)
            lmtp.ehlo_or_helo_if_needed()
            lmtp.mail("sender@example.org")
            lmtp.rcpt("alice@example.com")
            t_send = time.monotonic()
            code, _ = lmtp.data(body)
            t_ok = time.monotonic()
        R.eq("LMTP delivery %d accepted" % i, code, 250)
        ev = idler.wait_for(kind("EXISTS"))
        R.check("LMTP delivery %d: * EXISTS arrives during IDLE" % i, ev is not None, idler.drain())
        if ev:
            exists += 1
            latencies["lmtp"].append(max(0.0, ev[0] - t_ok))
            from_send["lmtp"].append(ev[0] - t_send)
    writer.must("SELECT INBOX")
    # A flag change: * n FETCH (FLAGS ...).
    for i in range(3):
        t_send = time.monotonic()
        r = writer.cmd("STORE %d +FLAGS ($Woken%d)" % (i + 1, i))
        t_ok = time.monotonic()
        ev = idler.wait_for(lambda r_: untagged_kind(r_) == "FETCH" and b"$Woken%d" % i in r_)
        R.check("STORE %d: * FETCH (FLAGS) arrives during IDLE" % i, ev is not None, idler.drain())
        if ev:
            R.check("STORE %d: FETCH for message %d" % (i, i + 1), ev[1].startswith(b"* %d FETCH" % (i + 1)), ev[1])
            latencies["store"].append(max(0.0, ev[0] - t_ok))
            from_send["store"].append(ev[0] - t_send)
    # An expunge: * n EXPUNGE (allowed during IDLE).
    for i in range(2):
        writer.must("STORE 1 +FLAGS.SILENT (\\Deleted)")
        t_send = time.monotonic()
        r = writer.cmd("EXPUNGE")
        t_ok = time.monotonic()
        ev = idler.wait_for(kind("EXPUNGE"))
        R.check("EXPUNGE %d: * 1 EXPUNGE arrives during IDLE" % i, ev is not None and ev[1].startswith(b"* 1 EXPUNGE"), idler.drain())
        if ev:
            exists -= 1
            latencies["expunge"].append(max(0.0, ev[0] - t_ok))
            from_send["expunge"].append(ev[0] - t_send)
    r = idler.done()
    R.check("DONE ends IDLE with a tagged OK", r is not None and r.split()[1] == b"OK", r)
    r = idler.c.cmd("FETCH 1:* (UID)")
    R.eq("after IDLE the view has every message", len(r.fetches()), exists, r)
    idler.c.logout()
    writer.logout()

for k in latencies:
    for label, series in (("after_ok", latencies[k]), ("from_send", from_send[k])):
        v = series
        if v:
            R.info["%s_latency_ms_%s" % (k, label)] = {"max": round(max(v) * 1000, 2), "mean": round(sum(v) / len(v) * 1000, 2), "n": len(v)}
            R.check("%s wake-up latency (%s) under %.0f ms (max %.1f ms)" % (k, label, LIMIT_S * 1000, max(v) * 1000), max(v) < LIMIT_S, v)
R.check("latencies were measured", len(latencies["append"]) == 5 and len(latencies["lmtp"]) == 3, latencies)
# The IMAP issue's promise: another session's APPEND reaches an idling
# session within 100 ms. The median of the samples is asserted (one slow
# sample on a loaded machine does not make the promise false).
if latencies["append"]:
    med = sorted(latencies["append"])[len(latencies["append"]) // 2]
    R.check("median APPEND-to-IDLE latency under 100 ms (%.1f ms)" % (med * 1000), med < 0.100, latencies["append"])

with R.section("several idlers wake at once; other mailboxes stay quiet"):
    idlers = [Idler() for _ in range(3)]
    other = Idler("Archive")
    writer = connect(PORT, "alice", "pw-alice")
    writer.append("INBOX", message("fan-out"))
    for n, idl in enumerate(idlers):
        R.check("idler %d woke" % n, idl.wait_for(kind("EXISTS")) is not None, idl.drain())
    time.sleep(0.3)
    noise = [r for r in other.drain() if untagged_kind(r) in ("EXISTS", "EXPUNGE", "FETCH")]
    R.eq("an idler on another mailbox gets no EXISTS/EXPUNGE/FETCH", noise, [])
    for idl in idlers + [other]:
        r = idl.done()
        R.check("DONE", r is not None and r.split()[1] == b"OK", r)
        idl.c.logout()
    writer.logout()

with R.section("IDLE without a selected mailbox; bad continuation"):
    idl = Idler(mailbox=None)
    R.check("IDLE in the authenticated state (RFC 2177)", idl.cont.startswith(b"+"), idl.cont)
    r = idl.done()
    R.check("DONE", r is not None and r.split()[1] == b"OK", r)
    idl.c.logout()
    c = connect(PORT, "alice", "pw-alice")
    c.must("SELECT INBOX")
    tag = c.next_tag()
    c.send(tag + " IDLE\r\n")
    c.read_response()
    c.send("NOT-DONE\r\n")
    r = c.finish(Resp(tag))
    R.status("IDLE ended by something other than DONE is BAD", r, "BAD")
    R.status("the session goes on", c.cmd("NOOP"), "OK")
    tag = c.next_tag()
    c.send(tag + " IDLE\r\n")
    c.read_response()
    c.send("done\r\n")
    r = c.finish(Resp(tag))
    R.status("DONE is case-insensitive", r, "OK")
    c.logout()

R.finish()
