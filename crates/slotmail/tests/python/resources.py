"""Resource exhaustion is bounded: connection floods, huge literals, long
lines, pipelined floods with an unread answer, deep MIME nesting, a
million-part message, and LMTP with too many recipients or too much data.

Each attack is answered with a clear refusal (or accepted within bounds),
the slot stays responsive, and its memory (VmHWM, the peak resident set,
from /proc/PID/status, reset through /proc/PID/clear_refs before each
attack) grows by less than a stated bound per attack. The
figures are reported in `info`.

argv: imap_port lmtp_port slot_pid connections_max per_user_max message_size_max
lmtp_connections_max.
Users: alice/pw-alice, bob/pw-bob, carol/pw-carol.
"""

import smtplib
import socket
import time

from imapt import Conn, Report, Resp, ServerClosed, Timeout, args, connect, message, server_alive

PORT, LMTP, PID, CONN_MAX, PER_USER_MAX, SIZE_MAX, LMTP_CONN_MAX = args()[:7]
R = Report("resources.py")
MIB = 1 << 20
ALIVE = lambda: server_alive(PORT, "alice", "pw-alice")  # noqa: E731


def mem():
    """(VmRSS, VmHWM) of the slot in bytes."""
    out = {}
    with open("/proc/%d/status" % PID) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out["VmRSS"], out["VmHWM"]


class Bounded:
    """Measures one attack: peak memory growth must stay under `bound`."""

    def __init__(self, name, bound):
        self.name = name
        self.bound = bound

    def __enter__(self):
        # Reset the peak to the current resident set (Linux >= 4.0), so
        # each attack's own peak is measured.
        with open("/proc/%d/clear_refs" % PID, "w") as f:
            f.write("5")
        self.rss0, _ = mem()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, typ, value, tb):
        rss, hwm = mem()
        grew = hwm - self.rss0
        R.info[self.name] = {"seconds": round(time.monotonic() - self.t0, 2), "peak_growth_mib": round(grew / MIB, 1),
                             "rss_mib": round(rss / MIB, 1), "bound_mib": self.bound // MIB}
        R.check("%s: peak memory grew %.1f MiB (bound %d MiB)" % (self.name, grew / MIB, self.bound // MIB),
                grew < self.bound, R.info[self.name])
        R.check("%s: the slot still serves a new login" % self.name, ALIVE())
        return False


def closed_or_bye(c, timeout=10):
    """Read until the server closes; return everything read."""
    got = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            got += c.read_line(timeout=max(0.1, deadline - time.monotonic()))
    except (ServerClosed, Timeout):
        pass
    return got


R.info["baseline_rss_mib"] = round(mem()[0] / MIB, 1)

with R.section("connection flood"):
    with Bounded("connection_flood", 32 * MIB):
        held = [Conn(PORT) for _ in range(CONN_MAX)]
        R.check("%d connections greeted" % CONN_MAX, all(c.greeting.startswith(b"* OK") for c in held))
        refused = []
        for _ in range(5):
            c = Conn(PORT, read_greeting=False)
            refused.append(closed_or_bye(c, 5))
            c.close()
        R.check("connections past connections_max get * BYE and are closed",
                all(x.startswith(b"* BYE") for x in refused), refused)
        R.check("the refusal says why", all(b"Too many connections" in x for x in refused), refused)
        r = held[0].cmd("LOGIN alice pw-alice")
        R.status("a connection within the limit is served meanwhile", r, "OK")
        for c in held:
            c.close()
        time.sleep(0.5)
        # The permits come back.
        again = [Conn(PORT) for _ in range(CONN_MAX - 1)]
        R.check("after the flood the slot greets %d new connections" % (CONN_MAX - 1),
                all(c.greeting.startswith(b"* OK") for c in again))
        for c in again:
            c.close()
        time.sleep(0.5)

with R.section("one user's connections"):
    mine = []
    for i in range(PER_USER_MAX):
        mine.append(connect(PORT, "carol", "pw-carol"))
    c = Conn(PORT)
    r = c.cmd("LOGIN carol pw-carol")
    R.status("login past connections_per_user_max refused", r, "NO", "LIMIT")
    R.status("another user is not affected", c.cmd("LOGIN alice pw-alice"), "OK")
    c.logout()
    for m in mine:
        m.close()

with R.section("huge literals"):
    with Bounded("huge_literals", 16 * MIB):
        c = connect(PORT, "alice", "pw-alice")
        c.send(b"t1 APPEND INBOX {10000000000}\r\n")
        line = c.read_line()
        R.check("a 10 GB synchronizing literal is refused with NO [TOOBIG] before any data",
                line.startswith(b"t1 NO [TOOBIG]"), line)
        R.status("the session goes on", c.cmd("NOOP"), "OK")
        c.send(b"t2 APPEND INBOX {%d}\r\n" % (SIZE_MAX + 1))
        line = c.read_line()
        R.check("a literal one byte over the limit is refused with NO [TOOBIG]", line.startswith(b"t2 NO [TOOBIG]"), line)
        c.close()
        # LITERAL+: the data comes without asking. The slot must not keep it.
        c = connect(PORT, "alice", "pw-alice")
        c.send(b"t3 APPEND INBOX {10000000000+}\r\n")
        sent = 0
        chunk = b"y" * (1 << 16)
        try:
            c.sock.settimeout(10)
            while sent < 64 * MIB:
                c.sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        got = closed_or_bye(c, 10)
        R.info["literal_plus_bytes_sent_before_close"] = sent
        R.check("a 10 GB LITERAL+ is answered (TOOBIG/BAD) and the connection closed",
                b"TOOBIG" in got or b"BAD" in got or b"BYE" in got, got[:300])
        c.close()
        # Before login the literal limit is small.
        c = Conn(PORT)
        c.send(b"t4 LOGIN {100000}\r\n")
        line = c.read_line()
        R.check("a 100 kB literal before login is refused", line.startswith(b"t4 NO") or line.startswith(b"t4 BAD"), line)
        c.close()

with R.section("long lines"):
    with Bounded("long_lines", 16 * MIB):
        socks = []
        for i in range(10):
            s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
            s.recv(4096)
            socks.append(s)
        line = b"a NOOP " + b"z" * (1 << 16)
        sent = []
        for i, s in enumerate(socks):
            n = 0
            try:
                # 10 MiB lines (dropped, then BAD), or 20 MiB (past the
                # discard ceiling: the connection is closed).
                for _ in range(160 if i % 2 == 0 else 320):
                    s.sendall(line)
                    n += len(line)
                s.sendall(b"\r\n")
            except OSError:
                pass
            sent.append(n)
        answers = []
        for s in socks:
            s.settimeout(5)
            try:
                answers.append(s.recv(4096))
            except OSError as e:
                answers.append(str(e).encode())
            s.close()
        R.info["long_line_bytes_sent"] = sent
        R.check("a 10 MiB line is dropped and answered BAD [TOOBIG]",
                all(a.startswith(b"a BAD [TOOBIG]") for a in answers[0::2]), answers[0::2])
        R.check("a 20 MiB line (past the discard ceiling) closes the connection, with a BAD or nothing",
                all(a == b"" or a.startswith(b"* BYE") or b"BAD" in a for a in answers[1::2]), answers[1::2])

with R.section("pipelined flood without reading the answers"):
    with Bounded("pipelined_flood", 16 * MIB):
        c = connect(PORT, "alice", "pw-alice")
        body = b"p" * 100_000
        R.status("a 100 kB message to fetch", c.append("INBOX", message("pipeline", body=body + b"\r\n"))[0], "OK")
        c.select("INBOX")
        cmd = b"f FETCH 1:* (BODY.PEEK[])\r\n"
        c.sock.setblocking(False)
        sent = 0
        progress = []
        for second in range(5):
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                try:
                    sent += c.sock.send(cmd * 64)
                except BlockingIOError:
                    time.sleep(0.01)
                except OSError:
                    break
            progress.append(sent)
        R.info["pipelined_commands_sent_per_second"] = [p // len(cmd) for p in progress]
        # Each FETCH answers 100 kB: had the slot gone on reading commands
        # while its answers piled up, it would hold gigabytes by now.
        R.check("the slot stopped reading once its answers were not read (the last second sent < 64 KiB)",
                progress[-1] - progress[-2] < 64 * 1024, progress)
        c.close()

with R.section("deep MIME nesting"):
    depth = 5000
    head = b"From: a@example.org\r\nSubject: deep\r\n"
    parts = b""
    for i in range(depth):
        parts += b"Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n" % (i, i)
    deep = head + parts + b"Content-Type: text/plain\r\n\r\nleaf\r\n" + b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    rfc822 = head + b"".join([b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"] * depth) + b"\r\nleaf\r\n"
    with Bounded("deep_mime", 32 * MIB):
        c = connect(PORT, "alice", "pw-alice")
        c.must("CREATE Deep")
        for label, msg in [("multipart", deep), ("message/rfc822", rfc822)]:
            r, _, uid = c.append("Deep", msg)
            R.status("%d-deep %s accepted" % (depth, label), r, "OK")
            c.select("Deep")
            t0 = time.monotonic()
            r = c.cmd("UID FETCH %d (BODYSTRUCTURE BODY.PEEK[1.1.1.1])" % uid, timeout=60)
            R.info["deep_%s_fetch_seconds" % label] = round(time.monotonic() - t0, 2)
            R.status("FETCH BODYSTRUCTURE of the %d-deep %s" % (depth, label), r, "OK")
            bs = b"".join(r.untagged)
            nesting = max_depth = 0
            for ch in bs:
                if ch == 0x28:
                    nesting += 1
                    max_depth = max(max_depth, nesting)
                elif ch == 0x29:
                    nesting -= 1
            R.info["deep_%s_bodystructure_bytes" % label] = len(bs)
            R.check("%s: BODYSTRUCTURE nesting is bounded (%d levels of parentheses)" % (label, max_depth),
                    max_depth < 400, max_depth)
            c.must("UNSELECT")
        c.logout()

with R.section("a million-part message"):
    n = 1_000_000
    head = b"From: a@example.org\r\nSubject: a million parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    part = b"--b\r\n\r\nx\r\n"
    tail = b"--b--\r\n"
    size = len(head) + n * len(part) + len(tail)
    R.info["million_part_message_bytes"] = size
    with Bounded("million_parts", 4 * SIZE_MAX):
        c = connect(PORT, "alice", "pw-alice")
        c.must("CREATE Million")
        t0 = time.monotonic()
        c.send(b"m1 APPEND Million {%d+}\r\n" % size)
        c.send(head)
        block = part * 10_000
        for _ in range(n // 10_000):
            c.send(block)
        c.send(tail + b"\r\n")
        r = c.finish(Resp("m1"), timeout=120)
        R.info["million_parts_append_seconds"] = round(time.monotonic() - t0, 2)
        R.check("the million-part APPEND is accepted, or refused with a clear code",
                r.status == "OK" or (r.status == "NO" and r.code_name in ("TOOBIG", "LIMIT", "OVERQUOTA")), r)
        if r.ok():
            c.select("Million")
            t0 = time.monotonic()
            r = c.cmd("FETCH 1 (BODYSTRUCTURE)", timeout=60)
            R.info["million_parts_bodystructure_seconds"] = round(time.monotonic() - t0, 2)
            bs = b"".join(r.untagged)
            R.info["million_parts_bodystructure_bytes"] = len(bs)
            R.status("FETCH BODYSTRUCTURE answered", r, "OK")
            R.check("BODYSTRUCTURE is bounded (< 2 MB; parts past the ceiling are not listed)", len(bs) < 2_000_000, len(bs))
            r = c.cmd("FETCH 1 (BODY.PEEK[999999] BODY.PEEK[5000])", timeout=60)
            R.check("FETCH of a part number past the recorded parts is answered", r.status in ("OK", "NO", "BAD"), r)
            t0 = time.monotonic()
            r = c.cmd("SEARCH BODY needle-not-there", timeout=60)
            R.info["million_parts_search_seconds"] = round(time.monotonic() - t0, 2)
            R.status("SEARCH BODY over it answered", r, "OK")
            t0 = time.monotonic()
            r = c.cmd("FETCH 1 (RFC822.SIZE BODY.PEEK[])", timeout=60)
            got = [d for _, d in r.fetches()]
            R.check("BODY[] gives back the whole message", r.ok() and got and len(got[0]["BODY[]"]) == size, (r.status, size))
        c.logout()

with R.section("LMTP: too many recipients, oversized data"):
    with Bounded("lmtp", 5 * SIZE_MAX // 2):
        with smtplib.LMTP("127.0.0.1", LMTP, timeout=30) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            code, _ = lmtp.mail("sender@example.org")
            R.eq("MAIL FROM accepted", code, 250)
            codes = []
            try:
                for _ in range(600):
                    codes.append(lmtp.rcpt("bob@slot.test")[0])
            except smtplib.SMTPServerDisconnected:
                codes.append("closed")
            accepted = codes.count(250)
            R.info["lmtp_rcpt_answers_of_600"] = {str(k): codes.count(k) for k in sorted(set(codes), key=str)}
            R.eq("the first 500 recipients are accepted", accepted, 500, codes[:3])
            rest = codes[accepted:]
            R.check("recipients past the limit are refused with 452 (RFC 5321 4.5.3.1.10), "
                    "and a client that goes on is cut off with 421",
                    rest and all(c == 452 for c in rest if c not in (421, "closed")) and rest[0] == 452, rest[:3] + rest[-3:])
        with smtplib.LMTP("127.0.0.1", LMTP, timeout=30) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            code, msg = lmtp.docmd("MAIL FROM:<sender@example.org> SIZE=%d" % (SIZE_MAX * 4))
            R.check("MAIL FROM with a SIZE over the limit is refused with 552", code == 552, (code, msg))
        with smtplib.LMTP("127.0.0.1", LMTP, timeout=60) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            big = message("too big", body=(b"w" * 998 + b"\r\n") * (SIZE_MAX // 1000 + 200))
            # No SIZE parameter (smtplib's sendmail would send one and be
            # refused at MAIL FROM): the data itself must be cut off.
            R.eq("MAIL FROM without SIZE", lmtp.mail("sender@example.org")[0], 250)
            R.eq("RCPT TO bob", lmtp.rcpt("bob@slot.test")[0], 250)
            try:
                code, msg = lmtp.data(big)
                R.check("DATA of %d bytes (limit %d) is refused with 552" % (len(big), SIZE_MAX), code == 552, (code, msg))
            except smtplib.SMTPServerDisconnected as e:
                R.check("DATA over the limit is refused (the server closed)", False, e)
        with smtplib.LMTP("127.0.0.1", LMTP, timeout=10) as lmtp:
            R.eq("the LMTP listener still delivers", lmtp.sendmail("s@example.org", ["bob@slot.test"], message("after")), {})

with R.section("LMTP connection flood"):
    with Bounded("lmtp_connection_flood", 32 * MIB):
        held = []
        for _ in range(LMTP_CONN_MAX):
            s = socket.create_connection(("127.0.0.1", LMTP), timeout=10)
            held.append((s, s.makefile("rb")))
        greetings = [f.readline() for _, f in held]
        R.check("%d LMTP connections greeted with 220" % LMTP_CONN_MAX, all(g.startswith(b"220") for g in greetings),
                [g for g in greetings if not g.startswith(b"220")][:3])
        over = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", LMTP), timeout=10)
            over.append(s.makefile("rb").readline())
            s.close()
        R.check("LMTP connections past the limit get 421 4.3.2", all(o.startswith(b"421 4.3.2") for o in over), over)
        for s, f in held:
            f.close()  # the socket stays open while its file object is
            s.close()
        time.sleep(0.5)
        with smtplib.LMTP("127.0.0.1", LMTP, timeout=10) as lmtp:
            R.eq("after the flood LMTP delivers again", lmtp.sendmail("s@example.org", ["bob@slot.test"], message("after flood")), {})

R.info["final_rss_mib"] = round(mem()[0] / MIB, 1)
R.finish()
