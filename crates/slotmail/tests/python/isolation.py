"""A user never sees or changes another user's mail.

Three phases against one slot (the Rust test stops the slot between them
and compares the victim's store on disk byte for byte):

* `setup`: bob (the victim) gets mail over LMTP (smtplib) and APPEND in
  INBOX and in mailboxes of his own (`BobVault`, `BobVault/Deep`), with
  flags and subscriptions; alice (the attacker) gets one message of her own.
  What bob sees is saved to the state file.
* `attack`: alice (and mallory, another ordinary user) name bob's mail with
  every command that takes a mailbox or messages: SELECT, EXAMINE, STATUS,
  LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, APPEND, COPY,
  MOVE, UID COPY, UID MOVE, GETQUOTAROOT, GETQUOTA, NAMESPACE, and with
  mailbox-name tricks (`../bob/INBOX`, `~bob`, `#shared`, `Other Users/bob`,
  `/`, `%`, `*`, NUL, overlong names, modified UTF-7 spellings, INBOX case
  variants, `..`); UID ranges past UIDNEXT and `*`; SEARCH and FETCH. No
  untagged answer ever carries bob's mailbox names, his messages' marker
  or his quota; alice's own state stays whole. A non-admin's AUTHENTICATE
  PLAIN with bob as authorization identity is refused (imaplib as client).
* `verify`: an admin may act as bob (AUTHENTICATE PLAIN with an
  authorization identity, read-only EXAMINE); bob's own view equals the one
  saved at setup.

argv: imap_port lmtp_port phase state_file.
Users: alice/pw-alice, bob/pw-bob, mallory/pw-mallory, admin/pw-admin (admin).
"""

import hashlib
import imaplib
import json
import smtplib

from imapt import Conn, Lit, Report, args, connect, message, parse, quote, sasl_plain

PORT, LMTP, PHASE, STATE = args()[:4]
R = Report("isolation.py %s" % PHASE)

# Everything of bob's carries one of these; alice's answers never may.
MARK = b"BOB-SECRET"
BOB_BOXES = ["BobVault", "BobVault/Deep"]
# Bob's quota (set by the Rust test before start): never shown to alice.
BOB_QUOTA_MESSAGES = b"777"


def bob_view(c):
    """What bob's client sees: mailboxes, subscriptions and every message."""
    view = {}
    lst = c.must('LIST "" "*"')
    view["list"] = sorted(u.decode() for u in lst.of("LIST"))
    lsub = c.must('LSUB "" "*"')
    view["lsub"] = sorted(u.decode() for u in lsub.of("LSUB"))
    view["boxes"] = {}
    for box in ["INBOX"] + BOB_BOXES:
        r = c.select(box, examine=True)
        uv = r.code_of("UIDVALIDITY")
        f = c.cmd("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        msgs = []
        for _, d in f.fetches():
            msgs.append([int(d["UID"]), sorted(str(x) for x in d["FLAGS"]), d["INTERNALDATE"].decode(),
                         int(d["RFC822.SIZE"]), hashlib.sha256(d["BODY[]"]).hexdigest()])
        view["boxes"][box] = {"uidvalidity": uv, "messages": sorted(msgs)}
        c.must("UNSELECT")
    q = c.must("GETQUOTAROOT INBOX")
    view["quota"] = [u.decode() for u in q.of("QUOTA")]
    return view


def no_leak(name, r):
    """No untagged response of `r` carries bob's marker, mailbox names or quota."""
    bad = [u for u in r.untagged
           if MARK in u or b"BobVault" in u or (b"QUOTA" in u.upper() and BOB_QUOTA_MESSAGES in u)]
    R.check("%s: nothing of bob's in the answer" % name, not bad, bad)


def refused(name, r, codes=None):
    """A tagged NO or BAD (with one of `codes`, when given), and no leak."""
    no_leak(name, r)
    ok = r.status in ("NO", "BAD") and (codes is None or r.code_name in codes)
    R.check("%s: refused%s" % (name, " with [%s]" % "|".join(codes) if codes else ""), ok, r)


# The mailbox names of bob's mail as an attacker might spell them.
TRICKS = [
    "../bob/INBOX", "../bob", "../../bob/BobVault", "..", "../", "./INBOX/../bob",
    "~bob", "~bob/INBOX", "~bob/BobVault", "#shared", "#shared/bob", "#user/bob/INBOX",
    "#mh/bob", "Other Users/bob", "Other Users/bob/INBOX", "Other Users/bob/BobVault",
    "Shared Folders/bob", "user/bob", "user.bob", "user/bob/BobVault", "/", "//", "/bob/INBOX",
    "%", "*", "bob", "bob/INBOX", "BobVault", "BobVault/Deep", "INBOX/../BobVault",
    "INBOX/..", "bob@slot.test", "bob@slot.test/INBOX",
]
# Case variants of INBOX: alice's own INBOX, never bob's.
INBOX_CASES = ["INBOX", "inbox", "Inbox", "iNbOx"]


def phase_setup():
    state = {}
    with R.section("bob's mail"):
        with smtplib.LMTP("127.0.0.1", LMTP, timeout=10) as lmtp:
            for i in range(3):
                msg = message("BOB-SECRET lmtp %d" % i, body=b"BOB-SECRET body %d\r\n" % i, to=b"bob@slot.test")
                refused_rcpts = lmtp.sendmail("sender@example.org", ["bob@slot.test"], msg)
                R.eq("LMTP delivery %d to bob accepted" % i, refused_rcpts, {})
        c = connect(PORT, "bob", "pw-bob")
        for box in BOB_BOXES:
            R.status("CREATE %s" % box, c.cmd("CREATE ", quote(box)), "OK")
            R.status("SUBSCRIBE %s" % box, c.cmd("SUBSCRIBE ", quote(box)), "OK")
            for i in range(2):
                r, _, _ = c.append(box, message("BOB-SECRET %s %d" % (box, i), body=b"BOB-SECRET in a box\r\n"),
                                   flags="\\Flagged $BobKeyword")
                R.status("APPEND to %s" % box, r, "OK")
        c.select("INBOX")
        R.status("bob flags his first message", c.cmd("STORE 1 +FLAGS (\\Seen BOB-SECRET-KW)"), "OK")
        state["bob"] = bob_view(c)
        R.eq("bob sees 3 messages in INBOX", len(state["bob"]["boxes"]["INBOX"]["messages"]), 3)
        c.logout()
    with R.section("alice's own mail"):
        a = connect(PORT, "alice", "pw-alice")
        r, _, uid = a.append("INBOX", message("alice's own", body=b"alice's own body\r\n"))
        R.status("alice appends one message to her INBOX", r, "OK")
        state["alice_uid"] = uid
        a.logout()
    with open(STATE, "w") as f:
        json.dump(state, f)


def phase_attack():
    with open(STATE) as f:
        state = json.load(f)
    a = connect(PORT, "alice", "pw-alice")

    with R.section("NAMESPACE"):
        r = a.must("NAMESPACE")
        ns = r.of("NAMESPACE")
        R.check("only a personal namespace: other users' and shared are NIL",
                len(ns) == 1 and ns[0].rstrip().endswith(b"NIL NIL"), r)
        no_leak("NAMESPACE", r)

    with R.section("SELECT, EXAMINE, STATUS, GETQUOTAROOT on trick names"):
        for name in TRICKS:
            for verb in ("SELECT", "EXAMINE"):
                refused("%s %r" % (verb, name), a.cmd(verb, " ", quote(name)))
            refused("STATUS %r" % name, a.cmd("STATUS ", quote(name), " (MESSAGES UIDNEXT UIDVALIDITY)"))
            refused("GETQUOTAROOT %r" % name, a.cmd("GETQUOTAROOT ", quote(name)))
        for root in ["bob", "user.bob", "user/bob", "~bob", "#shared", "INBOX"]:
            refused("GETQUOTA %r" % root, a.cmd("GETQUOTA ", quote(root)), ["NONEXISTENT"])
        r = a.must('GETQUOTA ""')
        no_leak('GETQUOTA ""', r)

    with R.section("INBOX case variants are alice's INBOX"):
        for name in INBOX_CASES:
            r = a.cmd("EXAMINE ", quote(name))
            R.status("EXAMINE %r" % name, r, "OK")
            R.eq("EXAMINE %r: alice's one message" % name, r.numbers("EXISTS"), [1], r)
            no_leak("EXAMINE %r" % name, r)
            r = a.cmd("STATUS ", quote(name), " (MESSAGES)")
            R.check("STATUS %r: alice's one message" % name, r.ok() and b"MESSAGES 1)" in b"".join(r.of("STATUS")), r)
        a.must("UNSELECT")

    with R.section("LIST and LSUB never show bob's mailboxes"):
        for ref, pat in [("", "*"), ("", "%"), ("", "%/%"), ("~bob", "*"), ("", "~bob/*"), ("", "../*"),
                         ("..", "*"), ("../bob", "*"), ("#shared", "*"), ("", "#shared/*"),
                         ("Other Users", "*"), ("", "Other Users/*"), ("/", "*"), ("", "/*"), ("", "*/*"),
                         ("", "Bob*"), ("", "*Vault*"), ("user", "*"), ("", "user/bob/*"), ("", "..%"),
                         ("", "INBOX/../*")]:
            for verb in ("LIST", "LSUB"):
                r = a.cmd(verb, " ", quote(ref), " ", quote(pat))
                R.check("%s %r %r answered" % (verb, ref, pat), r.status in ("OK", "NO", "BAD"), r)
                no_leak("%s %r %r" % (verb, ref, pat), r)
        r = a.must('LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT))')
        no_leak("LIST-STATUS", r)
        R.check("LIST-STATUS counts only alice's message", b"MESSAGES 1" in b"".join(r.of("STATUS")), r)

    with R.section("DELETE, RENAME, APPEND, SUBSCRIBE on bob's names"):
        for name in TRICKS:
            if name in ("%", "*"):
                continue
            refused("DELETE %r" % name, a.cmd("DELETE ", quote(name)))
            refused("RENAME %r" % name, a.cmd("RENAME ", quote(name), " ", quote("Stolen")))
            r = a.cmd("APPEND ", quote(name), " ", Lit(message("planted by alice", body=b"x\r\n")))
            refused("APPEND %r" % name, r)
            # SUBSCRIBE to a name that does not exist may be allowed (RFC
            # 9051 6.3.7): it only ever touches alice's own list.
            r = a.cmd("SUBSCRIBE ", quote(name))
            R.check("SUBSCRIBE %r answered" % name, r.status in ("OK", "NO", "BAD"), r)
            no_leak("SUBSCRIBE %r" % name, r)
            r = a.cmd("UNSUBSCRIBE ", quote(name))
            R.check("UNSUBSCRIBE %r answered" % name, r.status in ("OK", "NO", "BAD"), r)
        refused("RENAME INBOX to ~bob/INBOX must not reach bob", a.cmd('RENAME "Nope" "~bob/INBOX"'))

    with R.section("names the parser or the store must refuse"):
        for label, pieces in [
            ("NUL in a literal name", ["CREATE ", Lit(b"a\x00b")]),
            ("NUL in SELECT", ["SELECT ", Lit(b"INBOX\x00../bob")]),
            ("a control character", ["CREATE ", Lit(b"a\x01b")]),
            ("overlong name (5000 bytes)", ["CREATE ", quote("x" * 5000)]),
            ("overlong hierarchy (100 levels)", ["CREATE ", quote("/".join(["d"] * 100))]),
            ("non-canonical modified UTF-7 for '../bob'", ["CREATE ", quote("&AC4ALgAv-bob")]),
            ("modified UTF-7 encoding '~' ", ["SELECT ", quote("&AH4-bob")]),
            ("unterminated modified UTF-7", ["CREATE ", quote("&AGI")]),
            ("empty name", ["SELECT ", quote("")]),
        ]:
            r = a.cmd(*pieces)
            refused(label, r)
        R.check("the connection survived", a.cmd("NOOP").ok())

    with R.section("UID ranges past UIDNEXT, *, SEARCH and FETCH"):
        r = a.select("INBOX")
        R.eq("alice's INBOX has one message", r.numbers("EXISTS"), [1], r)
        for cmd in ["UID FETCH 1:4294967295 (UID BODY.PEEK[])", "UID FETCH 2:* (UID BODY.PEEK[])",
                    "UID FETCH * (UID BODY.PEEK[])", "FETCH 1:* (UID BODY.PEEK[])", "UID FETCH 100:200 (BODY.PEEK[])",
                    "FETCH * (BODY.PEEK[])", "UID FETCH 1,3,5,7,9 (BODY.PEEK[HEADER])"]:
            r = a.cmd(cmd)
            no_leak(cmd, r)
            R.check("%s: at most alice's one message" % cmd,
                    len(r.fetches()) <= 1 and all(int(d.get("UID", state["alice_uid"])) == state["alice_uid"]
                                                  for _, d in r.fetches()), r)
        for cmd in ["FETCH 2 (BODY[])", "FETCH 2:4 FLAGS", "STORE 2:4 +FLAGS (\\Deleted)", "COPY 2:3 Alicebox"]:
            r = a.cmd(cmd)
            refused(cmd, r)
        for cmd in ["SEARCH TEXT BOB-SECRET", "UID SEARCH BODY BOB-SECRET", "SEARCH SUBJECT lmtp",
                    "UID SEARCH UID 1:4294967295", "SEARCH ALL", "UID SEARCH RETURN (ALL COUNT) 1:*"]:
            r = a.cmd(cmd)
            no_leak(cmd, r)
            R.status(cmd, r, "OK")
        r = a.cmd("UID SEARCH TEXT BOB-SECRET")
        R.eq("no hit for bob's marker", [u.strip() for u in r.of("SEARCH")], [b"* SEARCH"], r)
        r = a.cmd("UID SEARCH UID 1:4294967295")
        R.eq("UID SEARCH of every UID finds alice's only",
             [u.strip() for u in r.of("SEARCH")], [b"* SEARCH %d" % state["alice_uid"]], r)
        r = a.cmd("UID STORE 1:* FLAGS (\\Seen)")
        R.check("UID STORE 1:* changes alice's message only", r.ok() and len(r.fetches()) <= 1, r)

    with R.section("COPY and MOVE to bob's mailboxes"):
        for name in TRICKS:
            if name.upper() in ("INBOX",) or name in ("%", "*"):
                continue
            for verb in ("COPY 1", "UID COPY %d" % state["alice_uid"], "UID COPY 1:*", "MOVE 1",
                         "UID MOVE %d" % state["alice_uid"], "UID MOVE 1:4294967295"):
                r = a.cmd(verb, " ", quote(name))
                refused("%s %r" % (verb, name), r)
        r = a.cmd("UID FETCH 1:* (UID)")
        R.eq("alice's message is still in her INBOX after every refused MOVE",
             [int(d["UID"]) for _, d in r.fetches()], [state["alice_uid"]], r)
        a.must("UNSELECT")

    with R.section("CREATE with trick names stays in alice's namespace"):
        created = []
        own_before = set(a.must('LIST "" "*"').of("LIST"))
        for name in ["../bob/Planted", "~bob/Planted", "Other Users/bob/Planted", "#shared/Planted", "user.bob.Planted"]:
            r = a.cmd("CREATE ", quote(name))
            no_leak("CREATE %r" % name, r)
            if r.ok():
                created.append(name)
                lst = a.must("LIST ", quote(""), " ", quote(name))
                R.check("CREATE %r: the new mailbox is alice's own" % name, len(lst.of("LIST")) == 1, lst)
                R.status("DELETE %r again" % name, a.cmd("DELETE ", quote(name)), "OK")
            else:
                R.check("CREATE %r refused with a reason" % name, r.status in ("NO", "BAD") and r.text, r)
        R.info["trick_names_alice_may_create_as_her_own"] = created
        # Parents created on the way are alice's too; remove them, deepest first.
        extra = set(a.must('LIST "" "*"').of("LIST")) - own_before
        for name in sorted((parse(u[len(b"* LIST "):])[2].decode() for u in extra), key=len, reverse=True):
            R.status("DELETE alice's own parent %r" % name, a.cmd("DELETE ", quote(name)), "OK")

    with R.section("a non-admin cannot act as bob (AUTHENTICATE PLAIN authzid)"):
        for who, pw in [("alice", "pw-alice"), ("mallory", "pw-mallory")]:
            c = Conn(PORT)
            r = c.cmd("AUTHENTICATE PLAIN ", sasl_plain("bob", who, pw))
            R.status("%s as bob (SASL-IR) refused" % who, r, "NO", "AUTHORIZATIONFAILED")
            r = c.cmd("SELECT INBOX")
            R.status("%s: still not authenticated afterwards" % who, r, "BAD")
            c.logout()
            # imaplib, an independent client, with the continuation form.
            im = imaplib.IMAP4("127.0.0.1", PORT)
            try:
                im.authenticate("PLAIN", lambda _: b"bob\0" + who.encode() + b"\0" + pw.encode())
                R.check("imaplib: %s as bob refused" % who, False, "AUTHENTICATE succeeded")
            except imaplib.IMAP4.error as e:
                R.check("imaplib: %s as bob refused with AUTHORIZATIONFAILED" % who,
                        "AUTHORIZATIONFAILED" in str(e).upper(), e)
            finally:
                try:
                    im.logout()
                except Exception:
                    pass
        for label, user in [("Dovecot master-user syntax", "bob*alice"), ("a NUL in LOGIN", None)]:
            c = Conn(PORT)
            if user is not None:
                r = c.cmd("LOGIN ", quote(user), " ", quote("pw-alice"))
            else:
                r = c.cmd("LOGIN ", Lit(b"bob\x00alice"), " ", quote("pw-alice"))
            R.check("%s refused" % label, r.status in ("NO", "BAD"), r)
            c.logout()
        # An empty authzid, or one equal to the authcid, is the user herself.
        c = Conn(PORT)
        R.status("alice with authzid alice is alice", c.cmd("AUTHENTICATE PLAIN ", sasl_plain("alice", "alice", "pw-alice")), "OK")
        r = c.cmd("EXAMINE INBOX")
        R.eq("... and sees her own INBOX", r.numbers("EXISTS"), [1], r)
        no_leak("alice's own EXAMINE", r)
        c.logout()

    with R.section("mallory, another ordinary user, sees nothing of bob's either"):
        m = connect(PORT, "mallory", "pw-mallory")
        for cmd in ['LIST "" "*"', 'LIST "" "~bob/*"', 'STATUS "BobVault" (MESSAGES)', 'SELECT "../bob/INBOX"',
                    "EXAMINE INBOX", "SEARCH TEXT BOB-SECRET", "FETCH 1:* (BODY.PEEK[])"]:
            r = m.cmd(cmd)
            no_leak("mallory: %s" % cmd, r)
        m.logout()
    a.logout()


def phase_verify():
    with open(STATE) as f:
        state = json.load(f)
    with R.section("an admin acts as bob"):
        c = Conn(PORT)
        r = c.cmd("AUTHENTICATE PLAIN ", sasl_plain("bob", "admin", "wrong"))
        R.status("admin with a wrong password is refused", r, "NO", "AUTHENTICATIONFAILED")
        r = c.cmd("AUTHENTICATE PLAIN ", sasl_plain("nobody-here", "admin", "pw-admin"))
        R.status("admin as a user that does not exist is refused", r, "NO", "AUTHORIZATIONFAILED")
        c.logout()
        im = imaplib.IMAP4("127.0.0.1", PORT)
        typ, _ = im.authenticate("PLAIN", lambda _: b"bob\0admin\0pw-admin")
        R.eq("imaplib: admin authorized as bob", typ, "OK")
        typ, data = im.select("INBOX", readonly=True)
        R.eq("imaplib: the admin sees bob's INBOX (3 messages)", (typ, data), ("OK", [b"3"]))
        typ, data = im.fetch("1", "(BODY.PEEK[])")
        R.check("imaplib: and bob's first message", typ == "OK" and MARK in data[0][1], data)
        im.logout()
    with R.section("bob's view is unchanged"):
        c = connect(PORT, "bob", "pw-bob")
        now = bob_view(c)
        for key in ("list", "lsub", "quota"):
            R.eq("bob's %s" % key, now[key], state["bob"][key])
        for box in ["INBOX"] + BOB_BOXES:
            R.eq("bob's %s" % box, now["boxes"][box], state["bob"]["boxes"][box])
        R.check("bob's quota shows his limit", any(BOB_QUOTA_MESSAGES.decode() in q for q in now["quota"]), now["quota"])
        c.logout()


{"setup": phase_setup, "attack": phase_attack, "verify": phase_verify}[PHASE]()
R.finish()
