"""The IMAP and Maildir side of the mbsync round trip (tests/mbsync.rs runs
mbsync between the steps). A model of what both sides must hold — a
multiset of (folder, message bytes, flags) — lives in a JSON state file.

Message bytes in the model are the Maildir form (LF line ends); on the IMAP
side the same message is those bytes with CRLF line ends (mbsync converts),
and the server must hold exactly that. mbsync also inserts one
"X-TUID: <12 characters>" line at the end of the header of every message it
copies (to find it again after an interruption); that one line is removed
before comparing, nothing else.

argv: imap_port lmtp_port step maildir_root state.json
steps:
  seed            write the Maildir (INBOX, Sub, Sub/Deeper; 8-bit,
                  multipart, a 1 MB attachment, flags D F R S in names)
  server1         check the server against the model, then change the
                  server: APPEND, LMTP delivery, flag changes, deletions
  local2          check the Maildir against the model, then change it:
                  flags (renames), deletions, a new message, a new folder
  server3         check the server against the model
  final           both sides hold exactly the model
User: alice/pw-alice.
"""

import base64
import imaplib
import json
import os
import random
import re
import smtplib
import time
import zlib

from imapt import Report, args

PORT, LMTP, STEP, ROOT, STATE = args()[:5]
R = Report("mbsync_steps.py " + STEP)

LETTER = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
FLAG = {v: k for k, v in LETTER.items()}


TUID = re.compile(rb"\nX-TUID: [A-Za-z0-9+/]{12}\n")
tuids = [0]


def strip_tuid(body):
    """`body` (LF form) without mbsync's X-TUID header line."""
    end = body.find(b"\n\n")
    if end < 0:
        return body
    m = TUID.search(body, 0, end + 2)
    if not m:
        return body
    tuids[0] += 1
    return body[:m.start() + 1] + body[m.end():]


def crlf(b_):
    return b_.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def lf(b_):
    return b_.replace(b"\r\n", b"\n")


def load():
    with open(STATE) as f:
        return json.load(f)


def save(model):
    with open(STATE, "w") as f:
        json.dump(model, f)


def entry(folder, body, flags):
    return {"folder": folder, "body": base64.b64encode(body).decode(), "flags": "".join(sorted(flags))}


def key(e):
    return (e["folder"], e["body"], e["flags"])


def describe(entries):
    """A readable summary of a multiset of entries (folder, size, flags, subject)."""
    out = []
    for e in sorted(entries, key=key):
        body = base64.b64decode(e["body"])
        subj = [l_ for l_ in body.split(b"\n") if l_.lower().startswith(b"subject:")][:1]
        out.append("%s %r %d bytes [%s]" % (e["folder"], subj[0][:60] if subj else b"", len(body), e["flags"]))
    return out


def compare(name, got, want):
    g = sorted(key(e) for e in got)
    w = sorted(key(e) for e in want)
    if g == w:
        return R.check(name, True)
    missing = [e for e in want if key(e) not in set(g)]
    extra = [e for e in got if key(e) not in set(w)]
    return R.check(name, False, "missing: %s\nunexpected: %s" % (describe(missing), describe(extra)))


# ---------------------------------------------------------------- Maildir side

def maildir_folder_path(folder):
    return os.path.join(ROOT, folder)


def read_maildir():
    """Every message file under ROOT as model entries."""
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        if os.path.basename(dirpath) not in ("cur", "new"):
            continue
        folder = os.path.relpath(os.path.dirname(dirpath), ROOT).replace(os.sep, "/")
        for fn in filenames:
            with open(os.path.join(dirpath, fn), "rb") as f:
                body = f.read()
            flags = fn.split(":2,", 1)[1] if ":2," in fn else ""
            out.append(dict(entry(folder, strip_tuid(body), flags), path=os.path.join(dirpath, fn)))
    return out


def maildir_folders():
    out = set()
    for dirpath, dirnames, _ in os.walk(ROOT):
        if {"cur", "new", "tmp"} <= set(dirnames):
            out.add(os.path.relpath(dirpath, ROOT).replace(os.sep, "/"))
    return out


counter = [0]


def write_local(folder, body, flags="", subdir="cur"):
    base = maildir_folder_path(folder)
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    counter[0] += 1
    name = "%d.M%dP%d.testhost" % (int(time.time()), counter[0], os.getpid())
    if subdir == "cur":
        name += ":2," + "".join(sorted(flags))
    with open(os.path.join(base, subdir, name), "wb") as f:
        f.write(body)


# ---------------------------------------------------------------- server side

def imap():
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=30)
    m.login("alice", "pw-alice")
    return m


def server_folders(m):
    typ, data = m.list('""', "*")
    assert typ == "OK", data
    out = []
    for line in data:
        name = line.rsplit(b' "/" ', 1)[1].strip()
        if name.startswith(b'"'):
            name = name[1:-1]
        out.append(name.decode())
    return out


def read_server():
    """Every message on the server as model entries (bytes in LF form), and
    whether every message was stored with CRLF line ends only."""
    m = imap()
    out = []
    crlf_only = []
    for folder in server_folders(m):
        typ, data = m.select('"%s"' % folder, readonly=True)
        assert typ == "OK", (folder, data)
        if int(data[0]) == 0:
            continue
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[])")
        assert typ == "OK", data
        for part in data:
            if not isinstance(part, tuple):
                continue
            meta = part[0].decode()
            flags = meta[meta.index("FLAGS (") + 7:].split(")")[0].split()
            letters = "".join(FLAG[f] for f in flags if f in FLAG)
            body = part[1]
            crlf_only.append(body == crlf(body))
            out.append(entry(folder, strip_tuid(lf(body)), letters))
    m.logout()
    return out, all(crlf_only)


# ---------------------------------------------------------------- messages

def msg(subject, body, extra=""):
    return ("From: Seeder <seed@example.org>\nTo: alice@example.com\nSubject: %s\n"
            "Date: Mon, 03 Jun 2024 10:00:00 +0000\nMessage-ID: <%08x@example.org>\n%s\n" % (subject, zlib.crc32(subject.encode()), extra)).encode() + body


def attachment_message():
    rnd = random.Random(1)
    data = bytes(rnd.getrandbits(8) for _ in range(1024 * 1024))
    b64 = base64.encodebytes(data)  # LF line ends, 76 columns
    return msg("one megabyte attachment", b"--XX\nContent-Type: text/plain\n\nsee attachment\n"
               b"--XX\nContent-Type: application/octet-stream; name=big.bin\nContent-Transfer-Encoding: base64\n"
               b"Content-Disposition: attachment; filename=big.bin\n\n" + b64 + b"--XX--\n",
               "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n")


if STEP == "seed":
    model = []
    seeds = [
        ("INBOX", msg("plain seen", b"hello\n"), "S"),
        ("INBOX", msg("flagged and seen", b"important\n"), "FS"),
        ("INBOX", msg("replied", b"answered\n"), "RS"),
        ("INBOX", msg("draft", b"unfinished\n"), "D"),
        ("INBOX", msg("unread", b"not yet read\n"), ""),
        ("INBOX", msg("8-bit", "Grüße aus München, ça va? 日本語\n".encode(),
                      "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"), "S"),
        ("INBOX", msg("to be deleted on the server", b"bye\n"), "S"),
        ("INBOX", msg("to be flagged deleted on the server", b"bye too\n"), ""),
        ("INBOX", attachment_message(), "S"),
        ("Sub", msg("multipart", b"--b\nContent-Type: text/plain\n\npart one\n--b\nContent-Type: text/html\n\n<p>two</p>\n--b--\n",
                    "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n"), "S"),
        ("Sub", msg("sub unread", b"in a subfolder\n"), ""),
        ("Sub/Deeper", msg("deeper", b"two levels down\n"), "F"),
    ]
    for folder, body, flags in seeds:
        write_local(folder, body, flags)
        model.append(entry(folder, body, flags))
    write_local("INBOX", msg("in new/", b"delivered locally\n"), subdir="new")
    model.append(entry("INBOX", msg("in new/", b"delivered locally\n"), ""))
    save(model)
    R.eq("seeded the Maildir", len(read_maildir()), len(model))

elif STEP == "server1":
    model = load()
    with R.section("server after the first sync"):
        got, only_crlf = read_server()
        compare("every seeded message is on the server, byte-identical (CRLF), in its folder, with its flags", got, model)
        R.check("the server holds CRLF line ends only", only_crlf)
        m = imap()
        folders = server_folders(m)
        R.check("the subfolders exist on the server", {"Sub", "Sub/Deeper"} <= set(folders), folders)
        m.logout()
    with R.section("change the server"):
        m = imap()
        new1 = crlf(msg("appended on the server", b"via IMAP APPEND\n"))
        typ, data = m.append("INBOX", "(\\Flagged)", None, new1)
        R.eq("APPEND to INBOX", typ, "OK")
        new2 = crlf(msg("appended to Sub", "8-bit: Käse\n".encode(), "Content-Type: text/plain; charset=utf-8\n"))
        typ, data = m.append("Sub", "(\\Seen \\Answered)", '"01-Jan-2024 12:00:00 +0000"', new2)
        R.eq("APPEND to Sub", typ, "OK")
        model += [entry("INBOX", lf(new1), "F"), entry("Sub", lf(new2), "RS")]
        # LMTP deliveries: to INBOX and, with a detail, to Sub.
        for rcpt, subject in [("alice@example.com", "via LMTP"), ("alice+Sub@example.com", "via LMTP to Sub")]:
            with smtplib.LMTP("127.0.0.1", LMTP, timeout=20) as lmtp:
                lmtp.ehlo_or_helo_if_needed()
                lmtp.mail("sender@example.org")
                code, _ = lmtp.rcpt(rcpt)
                R.eq("LMTP RCPT %s" % rcpt, code, 250)
                code, _ = lmtp.data(crlf(msg(subject, b"delivered by LMTP\n")))
                R.eq("LMTP DATA %s" % rcpt, code, 250)
        # What LMTP stored (with its trace headers) joins the model.
        for folder, subject in [("INBOX", b"via LMTP"), ("Sub", b"via LMTP to Sub")]:
            m.select(folder)
            typ, data = m.search(None, "SUBJECT", '"%s"' % subject.decode())
            nums = data[0].split()
            hits = []
            for n in nums:
                typ, d = m.fetch(n, "(BODY.PEEK[])")
                if d[0][1].endswith(b"delivered by LMTP\r\n") and b"\r\nSubject: " + subject + b"\r\n" in d[0][1]:
                    hits.append(d[0][1])
            R.eq("LMTP message in %s" % folder, len(hits), 1)
            if hits:
                R.check("LMTP prepended trace headers", hits[0].startswith(b"Return-Path: "), hits[0][:200])
                model.append(entry(folder, lf(hits[0]), ""))

        def find(folder, subject):
            m.select(folder)
            typ, data = m.search(None, "HEADER", "Subject", '"%s"' % subject)
            nums = data[0].split()
            assert len(nums) >= 1, (folder, subject, data)
            return nums[0]

        def model_entry(folder, subject):
            for e in model:
                if e["folder"] == folder and b"\nSubject: " + subject.encode() + b"\n" in base64.b64decode(e["body"]):
                    return e
            raise AssertionError((folder, subject))

        n = find("INBOX", "replied")
        m.store(n, "+FLAGS", "(\\Flagged)")
        m.store(n, "-FLAGS", "(\\Seen)")
        model_entry("INBOX", "replied")["flags"] = "FR"
        n = find("Sub", "sub unread")
        m.store(n, "+FLAGS", "(\\Seen)")
        model_entry("Sub", "sub unread")["flags"] = "S"
        n = find("INBOX", "to be deleted on the server")
        m.store(n, "+FLAGS", "(\\Deleted)")
        typ, _ = m.expunge()
        R.eq("EXPUNGE on the server", typ, "OK")
        model.remove(model_entry("INBOX", "to be deleted on the server"))
        # \Deleted without EXPUNGE: mbsync (Expunge Both) expunges it.
        n = find("INBOX", "to be flagged deleted on the server")
        m.store(n, "+FLAGS", "(\\Deleted)")
        model.remove(model_entry("INBOX", "to be flagged deleted on the server"))
        m.logout()
        save(model)

elif STEP == "local2":
    model = load()
    with R.section("Maildir after the second sync"):
        got = read_maildir()
        compare("the Maildir holds exactly the model: server changes applied, bytes identical (LF)", got, model)
        R.check("every server folder exists locally", {"INBOX", "Sub", "Sub/Deeper"} <= maildir_folders(), sorted(maildir_folders()))
    with R.section("change the Maildir"):
        got = read_maildir()

        def local(folder, subject):
            for e in got:
                if e["folder"] == folder and b"\nSubject: " + subject.encode() + b"\n" in base64.b64decode(e["body"]):
                    return e
            raise AssertionError((folder, subject))

        def model_entry(folder, subject):
            for e in model:
                if e["folder"] == folder and b"\nSubject: " + subject.encode() + b"\n" in base64.b64decode(e["body"]):
                    return e
            raise AssertionError((folder, subject))

        def set_flags(folder, subject, flags):
            e = local(folder, subject)
            path = e["path"]
            head = path.split(":2,", 1)[0] if ":2," in path else path
            new = os.path.join(os.path.dirname(os.path.dirname(head)), "cur", os.path.basename(head) + ":2," + "".join(sorted(flags)))
            os.rename(path, new)
            model_entry(folder, subject)["flags"] = "".join(sorted(flags))

        set_flags("INBOX", "plain seen", "FS")
        set_flags("INBOX", "flagged and seen", "")
        set_flags("INBOX", "unread", "RS")
        set_flags("Sub/Deeper", "deeper", "DS")
        for folder, subject in [("INBOX", "draft"), ("Sub", "multipart")]:
            os.remove(local(folder, subject)["path"])
            model.remove(model_entry(folder, subject))
        body = msg("written locally", b"a new local message\n")
        write_local("INBOX", body, "S")
        model.append(entry("INBOX", body, "S"))
        body = msg("new local folder", b"in a folder created locally\n")
        write_local("Local/New", body, "F")
        model.append(entry("Local/New", body, "F"))
        save(model)

elif STEP == "server3":
    model = load()
    with R.section("server after the third sync"):
        got, only_crlf = read_server()
        compare("the server holds exactly the model: local flags, deletions, new message and folder applied", got, model)
        R.check("the server holds CRLF line ends only", only_crlf)

elif STEP == "final":
    model = load()
    with R.section("both sides after a full round trip"):
        server, only_crlf = read_server()
        local = read_maildir()
        compare("the server holds exactly the model", server, model)
        compare("the Maildir holds exactly the model", local, model)
        compare("server and Maildir hold the same (folder, bytes, flags)", server, local)
        R.check("the server holds CRLF line ends only", only_crlf)
        R.info["messages"] = len(model)
        R.info["bytes"] = sum(len(base64.b64decode(e["body"])) for e in model)

R.info["x_tuid_lines_removed"] = tuids[0]
R.finish()
