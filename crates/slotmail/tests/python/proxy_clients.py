"""Clients of the proxy (tests/proxy.rs), standard library only.

argv[1] is the mode:

  imap PORT TLS_PORT USER PASSWORD
      the pre-login conversation (CAPABILITY, ID, NOOP, refusals), LOGIN,
      AUTHENTICATE PLAIN with SASL-IR and with a continuation, pipelined
      commands after LOGIN, STARTTLS and implicit TLS, COMPRESS=DEFLATE and
      IDLE relayed, with imaplib and raw sockets. Prints a Report line.
  lmtp PORT SUBJECT RCPT...
      one LMTP transaction to every RCPT; prints {"rcpt": [code, text]} with
      the reply to RCPT for refused recipients and the per-recipient reply
      after the data for accepted ones, and {"order": [...]} accepted order.
  hold PORT USER PASSWORD COUNT READY_FILE SUBJECT
      COUNT raw sessions log in and wait; once all are in, READY_FILE is
      written. Each waits (at most 60 s) for the server to close it and
      records the BYE it got. Then imaplib reconnects (retrying for at most
      90 s) and APPENDs a message with SUBJECT. Prints a JSON summary.
  unavailable PORT LMTP_PORT USER PASSWORD
      a login whose store's master is down: the tagged reply and how long
      it took; and an LMTP delivery to the user. Prints JSON.
"""

import imaplib
import json
import os
import smtplib
import sys
import threading
import time

from imapt import Conn, Report, ServerClosed, Timeout, connect, message, sasl_plain, tls_context

MODE = sys.argv[1]
HOST = "127.0.0.1"


def caps_of(line):
    """Capabilities in a `[CAPABILITY ...]` code of `line` (bytes)."""
    text = line.decode(errors="replace")
    start = text.find("[CAPABILITY ")
    if start < 0:
        return []
    return text[start + 12:text.index("]", start)].upper().split()


def mode_imap(port, tls_port, user, password):
    R = Report("proxy_clients.py imap")
    with R.section("before login"):
        c = Conn(port)
        greeting_caps = caps_of(c.greeting)
        R.check("greeting carries capabilities", "IMAP4REV1" in greeting_caps, c.greeting)
        R.check("STARTTLS offered", "STARTTLS" in greeting_caps, greeting_caps)
        R.check("AUTH=PLAIN and SASL-IR offered", "AUTH=PLAIN" in greeting_caps and "SASL-IR" in greeting_caps, greeting_caps)
        r = c.cmd("CAPABILITY")
        R.status("CAPABILITY", r, "OK")
        r = c.cmd('ID ("name" "proxy-test")')
        R.status("ID", r, "OK")
        R.check("ID answers with * ID", len(r.of("ID")) == 1, r)
        R.status("NOOP", c.cmd("NOOP"), "OK")
        R.status("SELECT before login is refused", c.cmd("SELECT INBOX"), "BAD", "CLIENTBUG")
        r = c.cmd("LOGIN %s wrong-password" % user)
        R.status("wrong password", r, "NO", "AUTHENTICATIONFAILED")
        r = c.cmd("LOGIN nosuchuser whatever")
        R.status("unknown user answered like a wrong password", r, "NO", "AUTHENTICATIONFAILED")
        c.logout()

    with R.section("imaplib LOGIN"):
        i = imaplib.IMAP4(HOST, port, timeout=20)
        typ, _ = i.login(user, password)
        R.eq("login", typ, "OK")
        typ, data = i.capability()
        R.check("CAPABILITY after login is the backend's (IDLE)", typ == "OK" and b"IDLE" in data[0], data)
        typ, data = i.select("INBOX")
        R.eq("select", typ, "OK")
        before = int(data[0])
        typ, _ = i.append("INBOX", None, None, message("through the proxy", to=user + "@example.com"))
        R.eq("append", typ, "OK")
        typ, data = i.select("INBOX")
        R.eq("append visible", int(data[0]), before + 1)
        typ, data = i.fetch(str(before + 1), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        R.check("fetch", typ == "OK" and b"through the proxy" in data[0][1], data)
        typ, _ = i.logout()
        R.eq("logout", typ, "BYE")

    with R.section("AUTHENTICATE PLAIN"):
        c = Conn(port)
        r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("", user, password))
        R.status("SASL-IR", r, "OK")
        R.check("tagged OK carries the backend's capabilities", "IDLE" in caps_of(r.tagged), r)
        R.status("SELECT after SASL-IR", c.cmd("SELECT INBOX"), "OK")
        c.logout()
        i = imaplib.IMAP4(HOST, port, timeout=20)
        typ, _ = i.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (user, password)).encode())
        R.eq("continuation (imaplib authenticate)", typ, "OK")
        R.eq("list after authenticate", i.list()[0], "OK")
        i.logout()

    with R.section("commands pipelined after LOGIN go to the backend"):
        c = Conn(port)
        c.send("p1 LOGIN %s %s\r\np2 SELECT INBOX\r\np3 LOGOUT\r\n" % (user, password))
        data = b""
        try:
            while True:
                data += c.read_line(timeout=10)
        except (ServerClosed, Timeout):
            pass
        R.check("LOGIN OK", b"\r\np1 OK" in b"\r\n" + data, data)
        R.check("SELECT answered by the slot", b"p2 OK [READ-WRITE]" in data, data)
        R.check("LOGOUT answered", b"p3 OK" in data and b"* BYE" in data, data)
        c.close()

    with R.section("STARTTLS and implicit TLS"):
        i = imaplib.IMAP4(HOST, port, timeout=20)
        typ, _ = i.starttls(ssl_context=tls_context())
        R.eq("STARTTLS", typ, "OK")
        R.check("no STARTTLS after TLS", "STARTTLS" not in i.capabilities, i.capabilities)
        R.eq("login over STARTTLS", i.login(user, password)[0], "OK")
        R.eq("select over STARTTLS", i.select("INBOX")[0], "OK")
        i.logout()
        i = imaplib.IMAP4_SSL(HOST, tls_port, ssl_context=tls_context(), timeout=20)
        R.eq("login over implicit TLS", i.login(user, password)[0], "OK")
        R.eq("select over implicit TLS", i.select("INBOX")[0], "OK")
        i.logout()

    with R.section("COMPRESS=DEFLATE is relayed"):
        c = connect(port, user, password)
        r = c.compress()
        R.status("COMPRESS DEFLATE", r, "OK")
        r = c.cmd("SELECT INBOX")
        R.status("SELECT over compression", r, "OK")
        r = c.cmd("FETCH 1:* (FLAGS)")
        R.status("FETCH over compression", r, "OK")
        R.check("FETCH data over compression", len(r.fetches()) >= 1, r)
        c.logout()

    with R.section("IDLE is relayed and wakes on another session's APPEND"):
        idler = connect(port, user, password)
        idler.must("SELECT INBOX")
        idler.send("i1 IDLE\r\n")
        cont = idler.read_line(timeout=10)
        R.check("IDLE continuation", cont.startswith(b"+"), cont)
        writer = connect(port, user, password)
        started = time.monotonic()
        r, _, _ = writer.append("INBOX", message("wake the idler", to=user + "@example.com"))
        R.status("APPEND from another session", r, "OK")
        line = idler.read_line(timeout=5)
        R.check("* EXISTS during IDLE", line.startswith(b"* ") and b"EXISTS" in line, line)
        R.info["idle_wakeup_ms"] = round((time.monotonic() - started) * 1000, 1)
        idler.send("DONE\r\n")
        rest = b""
        while b"i1 " not in rest:
            rest += idler.read_line(timeout=5)
        R.check("IDLE ends with OK", b"i1 OK" in rest, rest)
        idler.logout()
        writer.logout()
    R.finish()


def mode_lmtp(port, subject, rcpts):
    l = smtplib.LMTP(HOST, port)
    l.ehlo_or_helo_if_needed = lambda: None
    code, _ = l.docmd("LHLO", "proxy-test.example")
    assert code == 250, code
    code, resp = l.mail("sender@example.org")
    assert code == 250, (code, resp)
    out, accepted = {}, []
    for r in rcpts:
        code, resp = l.rcpt(r)
        if code == 250:
            accepted.append(r)
        else:
            out[r] = [code, resp.decode()]
    msg = ("From: sender@example.org\r\nTo: %s\r\nSubject: %s\r\n\r\nhello all\r\n" % (", ".join(rcpts), subject)).encode()
    if accepted:
        code, resp = l.data(msg)  # the first accepted recipient's reply
        replies = [(code, resp)] + [l.getreply() for _ in accepted[1:]]
        for r, (code, resp) in zip(accepted, replies):
            out[r] = [code, resp.decode()]
    l.quit()
    print(json.dumps({"rcpt": out, "order": accepted}))


def mode_hold(port, user, password, count, ready_file, subject):
    sessions = []
    for _ in range(count):
        c = connect(port, user, password, timeout=60)
        c.must("SELECT INBOX")
        sessions.append(c)
    byes = [None] * count
    waited = [None] * count

    def wait(k):
        c = sessions[k]
        started = time.monotonic()
        try:
            while True:
                line = c.read_line(timeout=60)
                if line.startswith(b"* BYE"):
                    byes[k] = line.decode().strip()
        except (ServerClosed, Timeout, OSError) as e:
            if byes[k] is None:
                byes[k] = "closed without BYE: %r" % e
        waited[k] = time.monotonic() - started

    threads = [threading.Thread(target=wait, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    with open(ready_file, "w") as f:
        f.write("ready\n")
    for t in threads:
        t.join()
    attempts, errors, appended = 0, [], False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not appended:
        attempts += 1
        try:
            i = imaplib.IMAP4(HOST, port, timeout=10)
            try:
                i.login(user, password)
                typ, data = i.append("INBOX", None, None, message(subject, to=user + "@example.com"))
                if typ == "OK":
                    appended = True
                else:
                    errors.append("append: %s %r" % (typ, data))
                i.logout()
            finally:
                try:
                    i.shutdown()
                except OSError:
                    pass
        except Exception as e:  # noqa: BLE001 - every failure is a retry
            errors.append("%s: %s" % (type(e).__name__, e))
        if not appended:
            time.sleep(0.3)
    print(json.dumps({"byes": byes, "waited_s": waited, "attempts": attempts,
                      "appended": appended, "errors": errors[-10:]}))


def mode_unavailable(port, lmtp_port, user, password):
    c = Conn(port)
    started = time.monotonic()
    r = c.cmd("LOGIN %s %s" % (user, password), timeout=30)
    seconds = time.monotonic() - started
    c.logout()
    l = smtplib.LMTP(HOST, lmtp_port)
    code, resp = l.docmd("LHLO", "proxy-test.example")
    l.mail("sender@example.org")
    rcpt = l.rcpt(user + "@example.com")
    try:
        data = l.data(b"Subject: while down\r\n\r\nx\r\n")
    except smtplib.SMTPDataError as e:
        data = (e.smtp_code, e.smtp_error)
    l.quit()
    print(json.dumps({"login": r.tagged.decode().strip(), "seconds": seconds,
                      "rcpt": [rcpt[0], rcpt[1].decode()], "data": [data[0], data[1].decode()]}))


if MODE == "imap":
    mode_imap(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
elif MODE == "lmtp":
    mode_lmtp(int(sys.argv[2]), sys.argv[3], sys.argv[4:])
elif MODE == "hold":
    mode_hold(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7])
elif MODE == "unavailable":
    mode_unavailable(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
else:
    raise SystemExit("unknown mode " + MODE)
