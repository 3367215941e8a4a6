"""Mailbox commands: CREATE (USE), DELETE, RENAME (INBOX too), SUBSCRIBE,
UNSUBSCRIBE, LSUB, LIST (wildcards, references, LIST-EXTENDED selection and
return options, LIST-STATUS, SPECIAL-USE, CHILDREN, modified UTF-7 and
IMAP4rev2 UTF-8 names), NAMESPACE, STATUS (every item), GETQUOTA and
GETQUOTAROOT.

argv: imap_port. User: alice/pw-alice.
"""

import imaplib

from imapt import Lit, Report, args, connect, message, parse, quote

PORT = args()[0]
R = Report("mailboxes.py")


def name_of(v):
    return v if isinstance(v, str) else v.decode("utf-8")


def lists(r, kind="LIST"):
    """{name: (attributes lower-cased, delimiter, extended data)}."""
    out = {}
    for u in r.of(kind):
        items = parse(u[len(kind) + 3:])
        attrs = set(a.lower() for a in items[0])
        ext = items[3] if len(items) > 3 else None
        out[name_of(items[2])] = (attrs, items[1], ext)
    return out


def flat(v):
    """Nested lists of strings/atoms as one flat list of upper-case str."""
    if v is None:
        return []
    if isinstance(v, list):
        return [x for item in v for x in flat(item)]
    return [name_of(v).upper()]


def statuses(r):
    """{name: {ITEM: int}} of the * STATUS responses."""
    out = {}
    for u in r.of("STATUS"):
        items = parse(u[len("* STATUS "):])
        kv = items[1]
        out[name_of(items[0])] = {str(kv[i]).upper(): int(kv[i + 1]) for i in range(0, len(kv), 2)}
    return out


def status(c, mailbox, items):
    r = c.cmd("STATUS ", quote(mailbox), " (%s)" % items)
    st = statuses(r)
    return r, st.get(mailbox)


c = connect(PORT, "alice", "pw-alice")
caps = c.cmd("CAPABILITY").of("CAPABILITY")[0].decode().split()
APPENDLIMIT = next(int(x.split("=")[1]) for x in caps if x.upper().startswith("APPENDLIMIT="))

with R.section("LIST basics"):
    r = c.cmd('LIST "" ""')
    R.status('LIST "" ""', r, "OK")
    l = lists(r)
    R.check('LIST "" "" returns the root with the delimiter "/" and \\Noselect (RFC 3501 6.3.8)',
            l.get("") is not None and l[""][1] == b"/" and "\\noselect" in l[""][0], r)
    r = c.cmd('LIST "" "*"')
    initial = lists(r)
    R.info["initial_mailboxes"] = sorted(initial)
    R.check("INBOX exists from the start", "INBOX" in initial, r)
    R.check("every LIST delimiter is /", all(v[1] == b"/" for v in initial.values()), r)
    r = c.cmd('LIST "" "inbox"')
    R.eq('LIST "" "inbox" matches INBOX case-insensitively', sorted(lists(r)), ["INBOX"], r)
    r = c.cmd('LIST "" "no-such-thing*"')
    R.status("LIST with no match", r, "OK")
    R.eq("LIST with no match returns nothing", lists(r), {}, r)

with R.section("CREATE"):
    R.status("CREATE Work", c.cmd("CREATE Work"), "OK")
    R.status("CREATE an existing mailbox", c.cmd("CREATE Work"), "NO", "ALREADYEXISTS")
    R.status("CREATE INBOX (RFC 3501 6.3.3)", c.cmd("CREATE INBOX"), "NO")
    R.status("CREATE inbox (INBOX is case-insensitive)", c.cmd("CREATE inbox"), "NO")
    R.status("CREATE Work/Projects/2024", c.cmd("CREATE Work/Projects/2024"), "OK")
    l = lists(c.cmd('LIST "" "Work*"'))
    R.check("CREATE made the superior Work/Projects (RFC 3501 6.3.3 SHOULD)", "Work/Projects" in l, l)
    R.status("CREATE with a trailing delimiter", c.cmd("CREATE Trailing/"), "OK")
    l = lists(c.cmd('LIST "" "Trailing*"'))
    R.eq("CREATE Trailing/ made Trailing (no trailing delimiter in the name)", sorted(l), ["Trailing"], l)
    r = c.cmd("CREATE MyArchive (USE (\\Archive))")
    R.status("CREATE MyArchive (USE (\\Archive)) (RFC 6154 3)", r, "OK")
    r = c.cmd("CREATE Odd (USE (\\NotASpecialUse))")
    R.status("CREATE with an unknown special use (RFC 6154 3)", r, "NO", "USEATTR")
    R.eq("the refused mailbox was not created", lists(c.cmd('LIST "" "Odd"')), {})
    R.status("CREATE Entw&APw-rfe (modified UTF-7)", c.cmd('CREATE "Entw&APw-rfe"'), "OK")
    l = lists(c.cmd('LIST "" "Entw*"'))
    R.eq("LIST returns the modified UTF-7 name unchanged", sorted(l), ["Entw&APw-rfe"], l)
    R.status('CREATE "A&-B" ("&" escaped as "&-")', c.cmd('CREATE "A&-B"'), "OK")
    R.eq('LIST shows "A&-B"', sorted(lists(c.cmd('LIST "" "A&-*"'))), ["A&-B"])
    R.status("CREATE with a quoted name containing a space", c.cmd('CREATE "Two Words"'), "OK")
    R.eq("LIST shows it", sorted(lists(c.cmd('LIST "" "Two*"'))), ["Two Words"])
    R.status('CREATE a name with a double quote', c.cmd("CREATE ", quote('Say "hi"')), "OK")
    R.eq("LIST returns it correctly quoted", sorted(lists(c.cmd('LIST "" "Say*"'))), ['Say "hi"'])
    R.status("CREATE a name with a backslash", c.cmd("CREATE ", quote("back\\slash")), "OK")
    R.eq("LIST returns it correctly escaped", sorted(lists(c.cmd('LIST "" "back*"'))), ["back\\slash"])
    R.status("CREATE INBOX/Sub (a child of INBOX)", c.cmd("CREATE INBOX/Sub"), "OK")
    l = lists(c.cmd('LIST "" "INBOX*"'))
    R.check("INBOX/Sub listed and INBOX has \\HasChildren", "INBOX/Sub" in l and "\\haschildren" in l.get("INBOX", (set(),))[0], l)
    R.eq('LIST "" "inbox/%" (INBOX prefix case-insensitive)', sorted(lists(c.cmd('LIST "" "inbox/%"'))), ["INBOX/Sub"])
    R.status("CREATE with a literal name", c.cmd("CREATE ", Lit("Literal")), "OK")
    R.eq("LIST shows it", sorted(lists(c.cmd('LIST "" "Literal"'))), ["Literal"])
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=10)
    m.login("alice", "pw-alice")
    typ, _ = m.create("ViaImaplib")
    R.eq("imaplib create", typ, "OK")
    typ, data = m.list('""', "ViaImaplib")
    R.check("imaplib list sees it", typ == "OK" and data and data[0] and b"ViaImaplib" in data[0], data)
    m.logout()

with R.section("IMAP4rev2 UTF-8 names"):
    c2 = connect(PORT, "alice", "pw-alice")
    r = c2.cmd("ENABLE IMAP4rev2")
    R.check("ENABLE IMAP4rev2", r.status == "OK" and any(b"IMAP4REV2" in e.upper() for e in r.of("ENABLED")), r)
    l = lists(c2.cmd('LIST "" "Entw*"'))
    R.eq("after ENABLE IMAP4rev2, LIST names are UTF-8 (RFC 9051 5.1)", sorted(l), ["Entwürfe"], l)
    r = c2.cmd("CREATE ", quote("Résumé".encode()))
    R.status("CREATE with a UTF-8 name under IMAP4rev2", r, "OK")
    r = c2.cmd("CREATE ", quote("Amp&AOk-Lit"))
    R.status("under IMAP4rev2, CREATE takes '&' literally (no modified UTF-7)", r, "OK")
    l = lists(c2.cmd('LIST "" "Amp*"'))
    R.eq("... and LIST (rev2) shows the name as given", sorted(l), ["Amp&AOk-Lit"])
    c2.logout()
    l = lists(c.cmd('LIST "" "Amp*"'))
    R.eq("a rev1 session sees that name with '&' escaped as '&-' (RFC 3501 5.1.3)", sorted(l), ["Amp&-AOk-Lit"])
    l = lists(c.cmd('LIST "" "R*"'))
    R.check("a rev1 session sees the UTF-8 name in modified UTF-7 (RFC 3501 5.1.3)", "R&AOk-sum&AOk-" in l, l)

with R.section("DELETE"):
    R.status("DELETE a mailbox that does not exist", c.cmd("DELETE Nope"), "NO", "NONEXISTENT")
    R.status("DELETE INBOX (RFC 3501 6.3.4)", c.cmd("DELETE INBOX"), "NO")
    r = c.cmd("DELETE Work/Projects")
    if r.status == "NO":
        R.eq("DELETE of a mailbox with inferiors refused with HASCHILDREN (RFC 9051 6.3.4)", r.code_name, "HASCHILDREN", r)
        l = lists(c.cmd('LIST "" "Work/*"'))
        R.check("the refused DELETE left the mailbox and its inferiors", "Work/Projects" in l and "Work/Projects/2024" in l, l)
    else:
        R.status("DELETE of a mailbox with inferiors", r, "OK")
        l = lists(c.cmd('LIST "" "Work/*"'))
        R.check("DELETE with inferiors leaves \\Noselect and keeps the inferiors (RFC 3501 6.3.4)",
                "\\noselect" in l.get("Work/Projects", (set(),))[0] and "Work/Projects/2024" in l, l)
    R.status("DELETE Work/Projects/2024", c.cmd("DELETE Work/Projects/2024"), "OK")
    c.cmd("DELETE Work/Projects")
    R.status("DELETE Work", c.cmd("DELETE Work"), "OK")
    R.eq("Work and its inferiors are gone", lists(c.cmd('LIST "" "Work*"')), {})
    R.status("DELETE it again", c.cmd("DELETE Work"), "NO", "NONEXISTENT")
    # A deleted and recreated mailbox gets a new UIDVALIDITY (RFC 3501 2.3.1.1).
    c.must("CREATE Temp")
    _, uv1, _ = c.append("Temp", message("temp"))
    R.check("APPENDUID gives the UIDVALIDITY", uv1 is not None)
    R.status("DELETE a mailbox with messages", c.cmd("DELETE Temp"), "OK")
    c.must("CREATE Temp")
    _, st = status(c, "Temp", "MESSAGES UIDVALIDITY")
    R.check("recreated mailbox is empty", st and st["MESSAGES"] == 0, st)
    R.check("recreated mailbox has a greater UIDVALIDITY (RFC 3501 2.3.1.1)", st and uv1 is not None and st["UIDVALIDITY"] > uv1, (uv1, st))

with R.section("RENAME"):
    c.must("CREATE Old")
    msg = message("rename me", b"body of the renamed message\r\n")
    c.append("Old", msg, flags="\\Flagged")
    R.status("RENAME Old New", c.cmd("RENAME Old New"), "OK")
    _, st = status(c, "New", "MESSAGES")
    R.eq("the renamed mailbox keeps its message", st, {"MESSAGES": 1})
    R.status("the old name is gone", c.cmd("STATUS Old (MESSAGES)"), "NO")
    c.must("CREATE Parent/Child/Grandchild")
    R.status("RENAME a mailbox with inferiors", c.cmd("RENAME Parent Moved"), "OK")
    l = lists(c.cmd('LIST "" "*"'))
    R.check("inferiors are renamed too (RFC 3501 6.3.5)",
            "Moved/Child" in l and "Moved/Child/Grandchild" in l and not any(n.startswith("Parent") for n in l), sorted(l))
    R.status("RENAME onto an existing mailbox", c.cmd("RENAME New Moved"), "NO", "ALREADYEXISTS")
    R.status("RENAME a mailbox that does not exist", c.cmd("RENAME Ghost Whatever"), "NO", "NONEXISTENT")
    R.status("RENAME onto INBOX", c.cmd("RENAME New INBOX"), "NO")
    R.status("RENAME a mailbox onto itself", c.cmd("RENAME New New"), "NO")
    R.status("RENAME into a new hierarchy", c.cmd("RENAME New Deep/Er/Name"), "OK")
    l = lists(c.cmd('LIST "" "Deep*"'))
    R.check("RENAME created the superiors", "Deep" in l and "Deep/Er" in l and "Deep/Er/Name" in l, l)
    # RENAME INBOX moves its messages to the new name, leaving INBOX empty (RFC 3501 6.3.5).
    inbox_msgs = [message("inbox one", b"first\r\n"), message("inbox two", b"second\r\n")]
    for m_ in inbox_msgs:
        c.append("INBOX", m_, flags="\\Seen")
    R.status("RENAME INBOX OldInbox", c.cmd("RENAME INBOX OldInbox"), "OK")
    l = lists(c.cmd('LIST "" "*"'))
    R.check("INBOX's inferiors are unaffected by RENAME INBOX (RFC 3501 6.3.5)", "INBOX/Sub" in l and "OldInbox/Sub" not in l, sorted(l))
    _, st = status(c, "INBOX", "MESSAGES")
    R.eq("INBOX exists and is empty after RENAME INBOX", st, {"MESSAGES": 0})
    _, st = status(c, "OldInbox", "MESSAGES")
    R.eq("the new mailbox has INBOX's messages", st, {"MESSAGES": 2})
    c.select("OldInbox")
    r = c.cmd("FETCH 1:* (FLAGS BODY.PEEK[])")
    got = sorted(d["BODY[]"] for _, d in r.fetches())
    R.eq("messages moved byte-identical", got, sorted(inbox_msgs))
    R.check("flags moved with them", all("\\Seen" in d["FLAGS"] for _, d in r.fetches()), r)
    c.cmd("UNSELECT")
    R.status("SELECT INBOX after RENAME INBOX", c.cmd("SELECT INBOX"), "OK")
    c.cmd("UNSELECT")

with R.section("SUBSCRIBE, UNSUBSCRIBE, LSUB, LIST SUBSCRIBED"):
    before = set(lists(c.cmd('LSUB "" "*"'), "LSUB"))
    R.info["default_subscriptions"] = sorted(before)
    c.must("CREATE Sub/Child")
    c.must("CREATE Gone")
    R.status("SUBSCRIBE Sub/Child", c.cmd("SUBSCRIBE Sub/Child"), "OK")
    R.status("SUBSCRIBE Gone", c.cmd("SUBSCRIBE Gone"), "OK")
    c.must("DELETE Gone")
    l = lists(c.cmd('LSUB "" "*"'), "LSUB")
    R.check("LSUB * lists the subscriptions", "Sub/Child" in l, l)
    R.check("a subscription survives DELETE (RFC 3501 6.3.6: never removed unilaterally)", "Gone" in l, l)
    R.check("LSUB * does not list unsubscribed Sub", "Sub" not in l, l)
    l = lists(c.cmd('LSUB "" "%"'), "LSUB")
    R.check('LSUB "%" lists the unsubscribed superior Sub as \\Noselect (RFC 3501 6.3.9)',
            "Sub" in l and "\\noselect" in l["Sub"][0], l)
    R.check('LSUB "%" does not list Sub/Child', "Sub/Child" not in l, l)
    l = lists(c.cmd('LIST (SUBSCRIBED) "" "*"'))
    R.check("LIST (SUBSCRIBED): Sub/Child has \\Subscribed (RFC 5258 3.1)", "\\subscribed" in l.get("Sub/Child", (set(),))[0], l)
    R.check("LIST (SUBSCRIBED): Gone has \\Subscribed \\NonExistent (RFC 5258 3.1)",
            {"\\subscribed", "\\nonexistent"} <= l.get("Gone", (set(),))[0], l)
    R.eq("LIST (SUBSCRIBED) lists exactly the subscriptions", set(l), before | {"Sub/Child", "Gone"})
    l = lists(c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'))
    sub = l.get("Sub")
    R.check('LIST (SUBSCRIBED RECURSIVEMATCH) "%": Sub with CHILDINFO ("SUBSCRIBED") (RFC 5258 3.5)',
            sub is not None and flat(sub[2]) == ["CHILDINFO", "SUBSCRIBED"], l)
    R.check("... and Sub itself is not \\Subscribed", sub is not None and "\\subscribed" not in sub[0], l)
    r = c.cmd('LIST (RECURSIVEMATCH) "" "*"')
    R.status("RECURSIVEMATCH alone is BAD (RFC 5258 3)", r, "BAD")
    l = lists(c.cmd('LIST "" "Sub*" RETURN (SUBSCRIBED)'))
    R.check("RETURN (SUBSCRIBED) marks Sub/Child", "\\subscribed" in l.get("Sub/Child", (set(),))[0], l)
    R.check("RETURN (SUBSCRIBED) leaves Sub unmarked", "Sub" in l and "\\subscribed" not in l["Sub"][0], l)
    R.status("UNSUBSCRIBE Gone", c.cmd("UNSUBSCRIBE Gone"), "OK")
    l = lists(c.cmd('LSUB "" "*"'), "LSUB")
    R.check("LSUB no longer lists Gone", "Gone" not in l and "Sub/Child" in l, l)
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=10)
    m.login("alice", "pw-alice")
    typ, _ = m.subscribe("Sub")
    R.eq("imaplib subscribe", typ, "OK")
    typ, data = m.lsub('""', "Sub*")
    R.check("imaplib lsub sees both", typ == "OK" and len([d for d in data if d]) == 2, data)
    typ, _ = m.unsubscribe("Sub")
    R.eq("imaplib unsubscribe", typ, "OK")
    m.logout()

with R.section("LIST wildcards, references, CHILDREN, LIST-EXTENDED"):
    for name in ["L1/L2/L3", "L1/Other", "Lone"]:
        c.must("CREATE " + name)
    lone = [message("lone one", b"x" * 100 + b"\r\n"), message("lone two", b"y" * 200 + b"\r\n")]
    c.append("Lone", lone[0], flags="\\Seen")
    c.append("Lone", lone[1])

    def names(cmd):
        return set(lists(c.cmd(cmd)))

    top = names('LIST "" "%"')
    R.check('"%" lists top-level names only', {"INBOX", "L1", "Lone"} <= top and not any("/" in n for n in top), top)
    R.eq('"L1/%"', names('LIST "" "L1/%"'), {"L1/L2", "L1/Other"})
    R.eq('"L1/*"', names('LIST "" "L1/*"'), {"L1/L2", "L1/L2/L3", "L1/Other"})
    R.eq('reference "L1/" with "%"', names('LIST "L1/" "%"'), {"L1/L2", "L1/Other"})
    l = lists(c.cmd('LIST "L1/L2" ""'))
    R.check('LIST "L1/L2" "" returns the root "L1/" with \\Noselect (RFC 3501 6.3.8)',
            list(l) == ["L1/"] and "\\noselect" in l["L1/"][0], l)
    R.eq('"L1*"', names('LIST "" "L1*"'), {"L1", "L1/L2", "L1/L2/L3", "L1/Other"})
    R.eq('"L1%"', names('LIST "" "L1%"'), {"L1"})
    R.eq('"*L3"', names('LIST "" "*L3"'), {"L1/L2/L3"})
    R.eq('"%/%/%" (three levels)', names('LIST "" "L%/%/%"'), {"L1/L2/L3"})
    R.eq('multiple patterns ("L1" "Lone") (RFC 5258)', names('LIST "" ("L1" "Lone")'), {"L1", "Lone"})
    l = lists(c.cmd('LIST "" "*"'))
    R.check("\\HasChildren on L1 (RFC 3348 / RFC 9051 7.3.1)", "\\haschildren" in l["L1"][0], l["L1"])
    R.check("\\HasNoChildren on L1/L2/L3", "\\hasnochildren" in l["L1/L2/L3"][0], l["L1/L2/L3"])
    R.check("\\HasNoChildren on Lone", "\\hasnochildren" in l["Lone"][0], l["Lone"])
    R.check("never both \\HasChildren and \\HasNoChildren", not any({"\\haschildren", "\\hasnochildren"} <= v[0] for v in l.values()), l)
    l = lists(c.cmd('LIST "" "L*" RETURN (CHILDREN)'))
    R.check("RETURN (CHILDREN)", "\\haschildren" in l["L1"][0] and "\\hasnochildren" in l["Lone"][0], l)
    r = c.cmd('LIST "" "L*" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT UIDVALIDITY SIZE))')
    R.status("LIST RETURN (STATUS ...) (RFC 5819)", r, "OK")
    st = statuses(r)
    R.check("LIST-STATUS: a STATUS for each listed mailbox", set(st) == set(lists(r)), r)
    R.eq("LIST-STATUS values for Lone", {k: v for k, v in st.get("Lone", {}).items() if k in ("MESSAGES", "UNSEEN", "SIZE")},
         {"MESSAGES": 2, "UNSEEN": 1, "SIZE": len(lone[0]) + len(lone[1])})
    kinds = [k for k in r.kinds() if k in ("LIST", "STATUS")]
    order_ok = all(kinds[i] == "LIST" and kinds[i + 1] == "STATUS" for i in range(0, len(kinds), 2))
    R.check("each STATUS follows its LIST (RFC 5819 2)", order_ok, kinds)
    l = lists(c.cmd('LIST (SPECIAL-USE) "" "*"'))
    R.check("LIST (SPECIAL-USE) includes MyArchive with \\Archive (RFC 6154 2)", "\\archive" in l.get("MyArchive", (set(),))[0], l)
    uses = {"\\all", "\\archive", "\\drafts", "\\flagged", "\\junk", "\\sent", "\\trash", "\\important"}
    R.check("LIST (SPECIAL-USE) lists only special-use mailboxes", all(v[0] & uses for v in l.values()), l)
    R.info["special_use_mailboxes"] = sorted(l)
    l = lists(c.cmd('LIST "" "MyArchive" RETURN (SPECIAL-USE)'))
    R.check("RETURN (SPECIAL-USE) shows \\Archive", "\\archive" in l.get("MyArchive", (set(),))[0], l)
    r = c.cmd('LIST "" "*" RETURN (NOT-AN-OPTION)')
    R.status("an unknown RETURN option is BAD", r, "BAD")

with R.section("NAMESPACE"):
    r = c.cmd("NAMESPACE")
    R.status("NAMESPACE (RFC 2342)", r, "OK")
    ns = r.of("NAMESPACE")
    R.eq("one * NAMESPACE", len(ns), 1, r)
    items = parse(ns[0][len("* NAMESPACE "):])
    personal = items[0]
    R.check("a personal namespace with delimiter /", isinstance(personal, list) and personal and personal[0][1] == b"/", items)
    R.check("personal prefix is empty", personal and personal[0][0] == b"", items)
    R.check("no other users' or shared namespaces", items[1] is None and items[2] is None, items)

with R.section("STATUS"):
    c.must("CREATE Stat")
    msgs = [message("stat %d" % i, b"z" * (100 * i) + b"\r\n") for i in range(1, 4)]
    uv = uids = None
    uids = []
    for m_, fl in zip(msgs, ["\\Seen", "\\Deleted", ""]):
        _, uv, uid = c.append("Stat", m_, flags=fl)
        uids.append(uid)
    all_items = "MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ APPENDLIMIT"
    r, st = status(c, "Stat", all_items)
    R.status("STATUS with every item", r, "OK")
    st = st or {}
    R.eq("STATUS returns exactly the requested items", sorted(st), sorted(all_items.split()), r)
    R.eq("MESSAGES", st.get("MESSAGES"), 3)
    R.eq("RECENT (nobody selected it yet)", st.get("RECENT"), 3)
    R.eq("UNSEEN", st.get("UNSEEN"), 2)
    R.eq("DELETED (RFC 9051)", st.get("DELETED"), 1)
    R.eq("SIZE is the sum of RFC822.SIZEs (RFC 8438)", st.get("SIZE"), sum(len(m_) for m_ in msgs))
    R.eq("UIDVALIDITY matches APPENDUID", st.get("UIDVALIDITY"), uv)
    R.check("UIDNEXT is above every UID", st.get("UIDNEXT", 0) > max(uids), (st, uids))
    R.check("HIGHESTMODSEQ is positive (RFC 7162)", st.get("HIGHESTMODSEQ", 0) > 0, st)
    R.eq("APPENDLIMIT equals the capability (RFC 7889)", st.get("APPENDLIMIT"), APPENDLIMIT)
    for item in all_items.split():
        r, one = status(c, "Stat", item)
        R.check("STATUS (%s) alone" % item, r.status == "OK" and one is not None and list(one) == [item], r)
    h1 = st.get("HIGHESTMODSEQ", 0)
    c.select("Stat")
    c.must("STORE 3 +FLAGS (\\Flagged)")
    c.cmd("UNSELECT")
    _, st = status(c, "Stat", "HIGHESTMODSEQ UNSEEN")
    R.check("HIGHESTMODSEQ grows after a STORE", st and st["HIGHESTMODSEQ"] > h1, (h1, st))
    r = c.cmd("STATUS Nope (MESSAGES)")
    R.status("STATUS of a missing mailbox", r, "NO", "NONEXISTENT")
    r = c.cmd("STATUS Stat (BOGUS)")
    R.status("STATUS with an unknown item", r, "BAD")
    r = c.cmd("STATUS Stat ()")
    R.check("STATUS with an empty item list is BAD or OK without data", r.status == "BAD" or r.status == "OK", r)
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=10)
    m.login("alice", "pw-alice")
    typ, data = m.status("Stat", "(MESSAGES UNSEEN)")
    R.check("imaplib status", typ == "OK" and b"MESSAGES 3" in data[0] and b"UNSEEN 2" in data[0], data)
    m.logout()

with R.section("GETQUOTAROOT and GETQUOTA (RFC 9208)"):
    r = c.cmd("GETQUOTAROOT INBOX")
    R.status("GETQUOTAROOT INBOX", r, "OK")
    qr = r.of("QUOTAROOT")
    R.eq("one * QUOTAROOT", len(qr), 1, r)
    items = parse(qr[0][len("* QUOTAROOT "):])
    R.eq("QUOTAROOT names the mailbox", name_of(items[0]), "INBOX")
    roots = [name_of(x) for x in items[1:]]
    quotas = {}
    for u in r.of("QUOTA"):
        q = parse(u[len("* QUOTA "):])
        res = q[1]
        quotas[name_of(q[0])] = {str(res[i]).upper(): (int(res[i + 1]), int(res[i + 2])) for i in range(0, len(res), 3)}
    R.eq("a * QUOTA for every root", sorted(quotas), sorted(roots), r)
    R.info["quota"] = quotas
    # Usage over all mailboxes, from STATUS.
    total_bytes = total_msgs = 0
    for name in lists(c.cmd('LIST "" "*"')):
        _, st = status(c, name, "MESSAGES SIZE")
        if st:
            total_bytes += st["SIZE"]
            total_msgs += st["MESSAGES"]
    for root, res in quotas.items():
        R.check("only advertised resources (STORAGE, MESSAGE)", set(res) <= {"STORAGE", "MESSAGE"}, res)
        if "STORAGE" in res:
            used = res["STORAGE"][0]
            R.check("STORAGE usage is the total size in KiB (RFC 9208 5.1)",
                    total_bytes // 1024 <= used <= -(-total_bytes // 1024), (used, total_bytes))
        if "MESSAGE" in res:
            R.eq("MESSAGE usage is the number of messages (RFC 9208 5.2)", res["MESSAGE"][0], total_msgs)
    for root in roots:
        r = c.cmd("GETQUOTA ", quote(root))
        R.status("GETQUOTA %r" % root, r, "OK")
        R.eq("GETQUOTA answers one * QUOTA", len(r.of("QUOTA")), 1, r)
    R.status("GETQUOTA of an unknown root", c.cmd('GETQUOTA "no-such-root"'), "NO")
    R.status("GETQUOTAROOT of a missing mailbox", c.cmd("GETQUOTAROOT Nope"), "NO")

c.logout()
R.finish()
