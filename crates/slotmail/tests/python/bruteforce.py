"""Brute-force logins are throttled across connections.

An attacker that reconnects after every failure (so the per-connection
delay and close never bite) guesses bob's password from one address, six
connections at a time, with LOGIN and AUTHENTICATE PLAIN. After the slot's
ceiling of failures for (address, user name), every further attempt is
refused with NO [UNAVAILABLE] without a password check: even bob's right
password is refused from that address. Other users from the same address,
and bob from another address, still log in. Counts and times are reported
in `info` (measured, not time-asserted).

argv: imap_port lmtp_port ceiling.
Users: alice/pw-alice, bob/pw-bob.
"""

import imaplib
import socket
import threading
import time

from imapt import Conn, Report, ServerClosed, Timeout, args, quote, sasl_plain, split_status

PORT, _LMTP, CEILING = args()[:3]
R = Report("bruteforce.py")
ATTEMPTS = CEILING * 3
PARALLEL = 6


def attempt(i):
    """One guess on a fresh connection: the tagged status and code."""
    c = Conn(PORT, timeout=20)
    try:
        if i % 2:
            r = c.cmd("LOGIN bob ", quote("guess-%d" % i))
        else:
            r = c.cmd("AUTHENTICATE PLAIN ", sasl_plain("", "bob", "guess-%d" % i))
        return (r.status, r.code_name)
    except (ServerClosed, Timeout) as e:
        return ("closed", str(e)[:80])
    finally:
        c.close()


with R.section("guessing bob's password over fresh connections"):
    results = [None] * ATTEMPTS
    lock = threading.Lock()
    next_i = [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= ATTEMPTS:
                return
            results[i] = attempt(i)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - started
    checked = sum(1 for r in results if r == ("NO", "AUTHENTICATIONFAILED"))
    throttled = sum(1 for r in results if r == ("NO", "UNAVAILABLE"))
    R.info["attempts"] = ATTEMPTS
    R.info["password_checked"] = checked
    R.info["refused_unchecked"] = throttled
    R.info["seconds"] = round(elapsed, 2)
    R.info["guesses_checked_per_second"] = round(checked / elapsed, 2)
    R.eq("every attempt was answered NO", sum(1 for r in results if r and r[0] == "NO"), ATTEMPTS, results)
    # Attempts already past the check when the ceiling was reached may
    # still be checked: at most one per parallel connection.
    R.check("at most the ceiling (+ the attempts in flight) were checked",
            CEILING <= checked <= CEILING + PARALLEL, results)
    R.check("the rest were refused unchecked with [UNAVAILABLE]", throttled >= ATTEMPTS - CEILING - PARALLEL, results)

with R.section("throttled means no password check"):
    c = Conn(PORT)
    r = c.cmd("LOGIN bob pw-bob")
    R.status("bob's right password from the throttled address is refused too", r, "NO", "UNAVAILABLE")
    c.close()
    im = imaplib.IMAP4("127.0.0.1", PORT)
    try:
        im.login("bob", "pw-bob")
        R.check("imaplib: bob's login from the throttled address refused", False, "login succeeded")
    except imaplib.IMAP4.error as e:
        R.check("imaplib: bob's login from the throttled address refused with UNAVAILABLE",
                "UNAVAILABLE" in str(e).upper(), e)
    finally:
        try:
            im.logout()
        except Exception:
            pass

with R.section("others are not locked out"):
    c = Conn(PORT)
    R.status("alice from the same address logs in", c.cmd("LOGIN alice pw-alice"), "OK")
    c.logout()
    # bob from another loopback address (127.0.0.2 reaches 127.0.0.1 on Linux).
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=("127.0.0.2", 0))
    f = s.makefile("rwb")
    greeting = f.readline()
    f.write(b"a LOGIN bob pw-bob\r\n")
    f.flush()
    line = f.readline()
    while line.startswith(b"* "):
        line = f.readline()
    st = split_status(line)
    R.check("bob from another address logs in", greeting.startswith(b"* OK") and st and st[1] == "OK", (greeting, line))
    s.close()

R.finish()
