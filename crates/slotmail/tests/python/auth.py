"""CAPABILITY, LOGIN, AUTHENTICATE PLAIN (SASL-IR, continuation, authzid),
ENABLE, ID, NOOP, LOGOUT and commands in the wrong state, on a slot that
allows plaintext authentication.

argv: imap_port. Users: alice/pw-alice, bob/pw-bob, admin/pw-admin (admin).
"""

import imaplib

from imapt import Conn, Lit, Report, Resp, args, connect, parse, quote, sasl_plain

PORT = args()[0]
R = Report("auth.py")

# Every capability this suite exercises (the extension's tests live in the
# other scripts). A capability the server advertises that is not here is a
# failure: the suite must grow with the server.
COVERED = {
    "IMAP4REV1", "IMAP4REV2", "LITERAL+", "ID", "ENABLE", "AUTH=PLAIN", "SASL-IR",
    "LOGINDISABLED", "STARTTLS", "IDLE", "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC",
    "NAMESPACE", "SPECIAL-USE", "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS",
    "CHILDREN", "UNSELECT", "ESEARCH", "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE",
    "STATUS=SIZE", "APPENDLIMIT", "COMPRESS=DEFLATE",
    "BINARY", "SEARCHRES", "MULTIAPPEND",  # rev2.py
}


def caps_of(resp):
    lines = resp.of("CAPABILITY")
    assert len(lines) == 1, "expected one * CAPABILITY, got %r" % resp
    return [w.upper() for w in lines[0].decode().split()[2:]]


def code_caps(code):
    return [w.upper() for w in code.split()[1:]]


with R.section("greeting and CAPABILITY before login"):
    c = Conn(PORT)
    R.check("greeting is * OK", c.greeting.startswith(b"* OK "), c.greeting)
    g = c.greeting.decode()
    R.check("greeting carries [CAPABILITY ...] (RFC 9051 7.1)", "[CAPABILITY " in g.upper(), g)
    r = c.cmd("CAPABILITY")
    R.status("CAPABILITY", r, "OK")
    pre = caps_of(r)
    R.info["capabilities_preauth"] = pre
    R.check("IMAP4rev1 advertised", "IMAP4REV1" in pre, pre)
    R.check("IMAP4rev2 advertised", "IMAP4REV2" in pre, pre)
    R.check("AUTH=PLAIN advertised (plaintext allowed)", "AUTH=PLAIN" in pre, pre)
    R.check("SASL-IR advertised", "SASL-IR" in pre, pre)
    R.check("no LOGINDISABLED when plaintext auth is allowed", "LOGINDISABLED" not in pre, pre)
    greeting_caps = [w.upper() for w in g[g.index("[CAPABILITY ") + 12:g.index("]")].split()]
    R.eq("greeting capabilities equal CAPABILITY's", sorted(greeting_caps), sorted(pre))
    r = c.cmd("NOOP")
    R.status("NOOP before login", r, "OK")
    r = c.cmd("ID NIL")
    R.status("ID NIL before login (RFC 2971)", r, "OK")
    R.check("ID answers with * ID", len(r.of("ID")) == 1, r)
    r = c.cmd('ID ("name" "conformance" "version" "1")')
    R.status("ID with parameters", r, "OK")
    ids = parse(r.of("ID")[0][5:])[0] if r.of("ID") else None
    R.check("* ID is NIL or a list of string pairs", ids is None or (isinstance(ids, list) and len(ids) % 2 == 0), r)
    for cmd in ["SELECT INBOX", "EXAMINE INBOX", 'LIST "" "*"', "STATUS INBOX (MESSAGES)",
                "CREATE foo", "ENABLE CONDSTORE", "FETCH 1 FLAGS", "NAMESPACE", "IDLE",
                "GETQUOTAROOT INBOX", "COMPRESS DEFLATE", "APPEND INBOX {1+}\r\nx"]:
        r = c.cmd(cmd)
        R.status("%s before login is BAD (wrong state)" % cmd.split("{")[0].strip(), r, "BAD")
        R.check("%s before login: BAD has text" % cmd.split()[0], bool(r.text and r.text.strip()), r)
        # The server may close after many BADs in a row; keep the count low.
        c.cmd("NOOP")
    c.logout()

with R.section("LOGIN"):
    c = Conn(PORT)
    r = c.cmd("LOGIN alice wrong-password")
    R.status("LOGIN with a wrong password", r, "NO", "AUTHENTICATIONFAILED")
    r = c.cmd("LOGIN nobody-here pw")
    R.status("LOGIN of an unknown user", r, "NO", "AUTHENTICATIONFAILED")
    r = c.cmd("SELECT INBOX")
    R.status("still not authenticated after failed LOGIN", r, "BAD")
    r = c.cmd("LOGIN alice pw-alice")
    R.status("LOGIN alice (atoms)", r, "OK")
    if r.code_name == "CAPABILITY":
        R.check("tagged OK [CAPABILITY] after login lists IDLE", "IDLE" in code_caps(r.code), r)
    r = c.cmd("CAPABILITY")
    post = caps_of(r)
    R.info["capabilities"] = post
    R.check("IMAP4rev1 still advertised after login", "IMAP4REV1" in post, post)
    for cap in ["IDLE", "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "NAMESPACE", "UNSELECT",
                "ESEARCH", "LIST-EXTENDED", "SPECIAL-USE", "COMPRESS=DEFLATE"]:
        R.check("%s advertised after login" % cap, cap in post, post)
    appendlimit = [c_ for c_ in post if c_.startswith("APPENDLIMIT")]
    R.check("APPENDLIMIT=<n> advertised with a value (RFC 7889)", len(appendlimit) == 1 and appendlimit[0].startswith("APPENDLIMIT=") and appendlimit[0][12:].isdigit(), appendlimit)
    uncovered = sorted(set(cap.split("=")[0] if cap.startswith("APPENDLIMIT") else cap for cap in pre + post) - COVERED)
    R.check("every advertised capability is covered by this suite", not uncovered, "not covered: %r" % uncovered)
    r = c.cmd("LOGIN alice pw-alice")
    R.status("LOGIN when already authenticated is BAD", r, "BAD")
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("", "alice", "pw-alice"))
    R.status("AUTHENTICATE when already authenticated is BAD", r, "BAD")
    c.logout()

    # Quoted strings with escapes and synchronizing / non-synchronizing literals.
    c = Conn(PORT)
    r = c.cmd("LOGIN ", quote("bob"), " ", quote("pw-bob"))
    R.status("LOGIN with quoted strings", r, "OK")
    c.logout()
    c = Conn(PORT)
    r = c.cmd("LOGIN ", Lit("alice"), " ", Lit("pw-alice"))
    R.status("LOGIN with synchronizing literals", r, "OK")
    R.eq("two continuations for two literals", len(r.continuations), 2)
    c.logout()
    c = Conn(PORT)
    r = c.cmd("LOGIN ", Lit("alice", plus=True), " ", Lit("pw-alice", plus=True))
    R.status("LOGIN with LITERAL+ literals", r, "OK")
    R.eq("no continuation for LITERAL+", len(r.continuations), 0)
    c.logout()

    c = Conn(PORT)
    r = c.cmd('LOGIN alice ""')
    R.status("LOGIN with an empty password", r, "NO", "AUTHENTICATIONFAILED")
    c.logout()
    # Command names and keywords are case-insensitive (RFC 3501 9, note 3).
    c = Conn(PORT)
    r = c.cmd("login alice pw-alice")
    R.status("lower-case login", r, "OK")
    r = c.cmd("sElEcT inbox")
    R.status("mixed-case sElEcT inbox", r, "OK")
    r = c.cmd("uid fetch 1:* (flags)")
    R.status("lower-case uid fetch", r, "OK")
    r = c.cmd("noop")
    R.status("lower-case noop", r, "OK")
    r = c.cmd("select ", Lit("INBOX"))
    R.status("SELECT with the mailbox as a literal", r, "OK")
    r = c.cmd('status "INBOX" (messages uidnext)')
    R.check("lower-case STATUS items; response items upper-case", r.status == "OK" and b"MESSAGES " in r.of("STATUS")[0] and b"UIDNEXT " in r.of("STATUS")[0], r)
    # LITERAL+ lets a client pipeline an APPEND and more in one write.
    c.send(b"p1 APPEND INBOX {5+}\r\nhello\r\np2 NOOP\r\np3 STATUS INBOX (MESSAGES)\r\n")
    r1 = c.finish(Resp("p1"))
    r2 = c.finish(Resp("p2"))
    r3 = c.finish(Resp("p3"))
    R.check("pipelined APPEND {5+}, NOOP, STATUS all answered OK in order", (r1.status, r2.status, r3.status) == ("OK", "OK", "OK"), (r1, r2, r3))
    c.logout()
    # Non-ASCII and quote/backslash passwords (users carol and dave).
    c = Conn(PORT)
    r = c.cmd("LOGIN carol ", Lit("pässwörd".encode()))
    R.status("LOGIN with a UTF-8 password in a literal", r, "OK")
    c.logout()
    c = Conn(PORT)
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("", "carol", "pässwörd".encode()))
    R.status("AUTHENTICATE PLAIN with a UTF-8 password", r, "OK")
    c.logout()
    c = Conn(PORT)
    r = c.cmd("LOGIN dave ", quote('q"uo\\te'))
    R.status("LOGIN with a quoted password containing \\\" and \\\\ escapes", r, "OK")
    c.logout()
    # The independent client's own LOGIN.
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=10)
    typ, data = m.login("alice", "pw-alice")
    R.eq("imaplib login", typ, "OK")
    typ, data = m.select("INBOX")
    R.eq("imaplib select after login", typ, "OK")
    m.logout()

with R.section("AUTHENTICATE PLAIN"):
    c = Conn(PORT)
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("", "alice", "pw-alice"))
    R.status("AUTHENTICATE PLAIN with SASL-IR (RFC 4959)", r, "OK")
    R.eq("SASL-IR needs no continuation", len(r.continuations), 0)
    r = c.cmd("SELECT INBOX")
    R.status("authenticated after SASL-IR", r, "OK")
    c.logout()

    c = Conn(PORT)
    tag = c.next_tag()
    c.send(tag + " AUTHENTICATE PLAIN\r\n")
    cont = c.read_response()
    R.check("AUTHENTICATE PLAIN without IR gets an empty continuation '+ '", cont.rstrip(b"\r\n") in (b"+", b"+ "), cont)
    c.send(sasl_plain("", "bob", "pw-bob") + "\r\n")
    r = c.finish(Resp(tag))
    R.status("AUTHENTICATE PLAIN with continuation", r, "OK")
    c.logout()

    # Cancel with "*": tagged BAD (RFC 9051 6.2.2).
    c = Conn(PORT)
    tag = c.next_tag()
    c.send(tag + " AUTHENTICATE PLAIN\r\n")
    c.read_response()
    c.send("*\r\n")
    r = c.finish(Resp(tag))
    R.status("AUTHENTICATE cancelled with '*' (RFC 9051 6.2.2)", r, "BAD")
    # Invalid BASE64: tagged BAD.
    tag = c.next_tag()
    c.send(tag + " AUTHENTICATE PLAIN\r\n")
    c.read_response()
    c.send("!!!not-base64!!!\r\n")
    r = c.finish(Resp(tag))
    R.status("AUTHENTICATE with invalid BASE64 (RFC 9051 6.2.2)", r, "BAD")
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("", "alice", "wrong"))
    R.status("AUTHENTICATE PLAIN with a wrong password", r, "NO", "AUTHENTICATIONFAILED")
    r = c.cmd("AUTHENTICATE X-UNKNOWN-MECH")
    R.status("AUTHENTICATE with an unsupported mechanism", r, "NO")
    r = c.cmd("NOOP")
    R.status("connection usable after failed AUTHENTICATEs", r, "OK")
    c.logout()

    # imaplib's AUTHENTICATE (continuation).
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=10)
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0alice\0pw-alice")
    R.eq("imaplib authenticate PLAIN", typ, "OK")
    m.logout()

with R.section("AUTHENTICATE PLAIN with an authorization identity"):
    # Alice makes a mailbox only she has.
    c = connect(PORT, "alice", "pw-alice")
    c.cmd("CREATE alice-marker")
    c.logout()
    # The admin acts as alice.
    c = Conn(PORT)
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("alice", "admin", "pw-admin"))
    R.status("admin with authzid=alice", r, "OK")
    r = c.cmd('LIST "" "alice-marker"')
    R.eq("admin acting as alice sees alice's mailboxes", len(r.of("LIST")), 1, r)
    c.logout()
    c = Conn(PORT)
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("admin", "admin", "pw-admin"))
    R.status("authzid equal to authcid", r, "OK")
    r = c.cmd('LIST "" "alice-marker"')
    R.eq("admin as itself does not see alice's mailboxes", len(r.of("LIST")), 0, r)
    c.logout()
    # A non-admin may not act as someone else (RFC 5530 AUTHORIZATIONFAILED).
    c = Conn(PORT)
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("alice", "bob", "pw-bob"))
    R.status("non-admin bob with authzid=alice", r, "NO", "AUTHORIZATIONFAILED")
    r = c.cmd("SELECT INBOX")
    R.status("not authenticated after the refused authorization", r, "BAD")
    # Also with continuation data.
    tag = c.next_tag()
    c.send(tag + " AUTHENTICATE PLAIN\r\n")
    c.read_response()
    c.send(sasl_plain("alice", "bob", "pw-bob") + "\r\n")
    r = c.finish(Resp(tag))
    R.status("non-admin authzid via continuation", r, "NO", "AUTHORIZATIONFAILED")
    c.logout()
    c = Conn(PORT)
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("alice", "admin", "wrong"))
    R.status("admin authzid with a wrong password", r, "NO", "AUTHENTICATIONFAILED")
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("no-such-user", "admin", "pw-admin"))
    R.check("admin acting as an unknown user is refused", r.status == "NO", r)
    c.logout()

with R.section("ENABLE"):
    c = connect(PORT, "alice", "pw-alice")
    r = c.cmd("ENABLE CONDSTORE")
    R.status("ENABLE CONDSTORE", r, "OK")
    en = r.of("ENABLED")
    R.check("* ENABLED CONDSTORE (RFC 5161)", len(en) == 1 and "CONDSTORE" in en[0].decode().upper().split(), r)
    r = c.cmd("ENABLE X-NOT-AN-EXTENSION")
    R.status("ENABLE of an unknown extension is OK", r, "OK")
    en = r.of("ENABLED")
    R.check("unknown extension not in * ENABLED", len(en) == 1 and en[0].decode().split()[2:] == [], r)
    r = c.cmd("ENABLE QRESYNC")
    R.status("ENABLE QRESYNC", r, "OK")
    R.check("* ENABLED QRESYNC", any("QRESYNC" in e.decode().upper() for e in r.of("ENABLED")), r)
    r = c.cmd("ENABLE")
    R.status("ENABLE without arguments is BAD", r, "BAD")
    c.select("INBOX")
    r = c.cmd("ENABLE IMAP4rev2")
    R.status("ENABLE in the selected state is BAD (RFC 5161 3.1)", r, "BAD")
    c.logout()

with R.section("LOGOUT"):
    c = connect(PORT, "alice", "pw-alice")
    r = c.cmd("LOGOUT")
    R.status("LOGOUT", r, "OK")
    R.check("* BYE before the tagged OK", len(r.of("BYE")) == 1, r)
    try:
        extra = c.read_response(timeout=3)
        R.check("server closes after LOGOUT", False, "got %r" % extra)
    except Exception as e:  # ServerClosed expected
        R.check("server closes after LOGOUT", type(e).__name__ == "ServerClosed", repr(e))
    c.close()

R.finish()
