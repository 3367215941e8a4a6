#!/usr/bin/env python3
"""The store benchmark side by side with Dovecot (driven by store-vs-dovecot.sh).

Runs the same workloads on the same corpus, on the same disk, through
slotmail's store (the `store_bench` example of crates/bench) and through a
standalone Dovecot (sdbox, no listeners, no master process) using Dovecot's
own programs:

* `doveadm` (one process per command, offline): `import` for bulk append,
  `fetch text` for reading everything, `batch` of `flags add` for one flag
  change per command in one process, `flags add ... all` for one change of
  all messages, `mailbox status` and `fetch 'uid flags'` on a large mailbox;
* Dovecot's `imap` binary in PREAUTH mode over a pipe (one process, no
  network, no login): APPEND one message per command, FETCH of every body,
  STORE one message per command and all in one, SELECT of a large mailbox.
  This is the fair counterpart of the store's one-commit-per-call API.

Needs only the Python standard library. Prints a Markdown table of medians
and ratios; writes every run's figures as JSON.
"""
import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import time

# ---------------------------------------------------------------- corpus


def parse_mbox(path):
    """Messages of an mboxrd file, CRLF line ends, quoting undone.

    The same rules as crates/bench/src/mbox.rs: a line starting "From "
    starts a message; one '>' is removed from lines matching ^>+From ; the
    empty line before a From_ line is a separator, not message content.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data.endswith(b"\n"):
        data = data[:-1]
    lines = data.split(b"\n") if data else []
    msgs, cur = [], None
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.startswith(b"From "):
            if cur is not None:
                if cur and cur[-1] == b"":
                    cur.pop()
                msgs.append(cur)
            cur = []
            continue
        if cur is None:
            if line == b"":
                continue
            sys.exit(f"{path}: not an mbox (text before the first From line)")
        if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
            line = line[1:]
        cur.append(line)
    if cur is not None:
        msgs.append(cur)
    return [b"".join(l + b"\r\n" for l in m) for m in msgs]


def small_message(i):
    """The same bytes as `small_message` in crates/bench/src/store.rs."""
    s, day, m, sec = i % 97, i % 28 + 1, i // 60 % 60, i % 60
    return (
        f"Return-Path: <sender{s}@example.org>\r\n"
        f"Received: from mx.example.org (mx.example.org [192.0.2.7])\r\n\tby mail.example.com with LMTP; "
        f"Mon, {day} Jan 2024 10:{m:02}:{sec:02} +0000\r\n"
        f"From: Sender {s} <sender{s}@example.org>\r\n"
        f"To: Bench User <bench@example.com>\r\n"
        f"Subject: Message number {i} of the select benchmark\r\n"
        f"Date: Mon, {day} Jan 2024 10:{m:02}:{sec:02} +0000\r\n"
        f"Message-ID: <{i}.select@example.org>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"\r\n"
        f"Hello,\r\n\r\nthis is message {i}. It is short, as most mail in a large mailbox is:\r\n"
        f"a notification, a reply, a line or two of text.\r\n\r\n-- \r\nSender {s}\r\n"
    ).encode()


def write_maildir(path, msgs):
    """A Maildir holding `msgs` in order (names sort in append order)."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    for i, raw in enumerate(msgs):
        with open(os.path.join(path, "cur", f"{1_700_000_000 + i}.M{i:07d}.bench:2,"), "wb") as f:
            f.write(raw)


# ---------------------------------------------------------------- Dovecot

IMAP_BIN = "/usr/lib/dovecot/imap"

CONF = """\
# A standalone Dovecot for the store benchmark: no master process, no
# listeners; doveadm and imap run offline against this file.
base_dir = {t}/run
state_dir = {t}/state
log_path = {t}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_uid = {uid}
mail_gid = {gid}
mail_location = sdbox:~/mail
mail_fsync = {fsync}
passdb {{
  driver = passwd-file
  args = {t}/users
}}
userdb {{
  driver = passwd-file
  args = {t}/users
}}
"""


class Dovecot:
    """One standalone instance under `root`, for one mail_fsync mode."""

    def __init__(self, root, fsync, mail_user):
        self.root = root
        self.fsync = fsync
        pw = pwd.getpwnam(mail_user) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.makedirs(os.path.join(root, "run"), exist_ok=True)
        os.makedirs(os.path.join(root, "home"), exist_ok=True)
        self.conf = os.path.join(root, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(t=root, uid=self.uid, gid=self.gid, fsync=fsync))
        with open(os.path.join(root, "users"), "w") as f:
            for u in ("bench", "select"):
                f.write(f"{u}:{{PLAIN}}pw:{self.uid}:{self.gid}::{root}/home/{u}::\n")
        self.chown()

    def chown(self):
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", self.root], check=True)

    def env(self, user):
        e = dict(os.environ)
        e.update(USER=user, HOME=os.path.join(self.root, "home", user))
        return e

    def doveadm(self, user, *args, stdout=subprocess.DEVNULL, opts=()):
        """Run one doveadm command; returns (seconds, stdout bytes or None)."""
        cmd = ["doveadm", "-c", self.conf, *opts, *args]
        t = time.monotonic()
        p = subprocess.run(cmd, env=self.env(user), stdout=stdout, stderr=subprocess.PIPE)
        dt = time.monotonic() - t
        if p.returncode != 0:
            sys.exit(f"doveadm {' '.join(args[:3])}: exit {p.returncode}: {p.stderr.decode(errors='replace')}")
        return dt, p.stdout

    def imap(self, user):
        return Imap([IMAP_BIN, "-c", self.conf], self.env(user))

    def reset_user(self, user):
        home = os.path.join(self.root, "home", user)
        shutil.rmtree(home)
        os.makedirs(home)
        self.chown()


class Imap:
    """An IMAP session with a PREAUTH imap process over a pipe."""

    def __init__(self, cmd, env):
        self.p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.r = self.p.stdout
        self.n = 0
        self.buf = b""
        greeting = self._readline()
        if not greeting.startswith(b"* PREAUTH"):
            sys.exit(f"imap: unexpected greeting {greeting!r}")

    def _line(self):
        """One response line with its literals inlined; returns (line, literal bytes)."""
        out, lit = b"", 0
        while True:
            line = self._readline()
            out += line
            if line.endswith(b"}\r\n") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1:-3])
                out += self._read(size)
                lit += size
                continue
            return out, lit

    def _readline(self):
        while b"\r\n" not in self.buf:
            chunk = os.read(self.r.fileno(), 1 << 20)
            if not chunk:
                sys.exit("imap: connection closed")
            self.buf += chunk
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def _read(self, size):
        while len(self.buf) < size:
            chunk = os.read(self.r.fileno(), max(1 << 20, size - len(self.buf)))
            if not chunk:
                sys.exit("imap: connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def cmd(self, text, literal=None):
        """Send a command (LITERAL+ for `literal`); wait for its tagged reply.
        Returns the literal bytes received in untagged responses."""
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.p.stdin.write(tag + b" " + text + b"\r\n")
        else:
            self.p.stdin.write(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        self.p.stdin.flush()
        received = 0
        while True:
            line, lit = self._line()
            received += lit
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    sys.exit(f"imap: {text[:40]!r}: {line!r}")
                return received

    def sched(self):
        """(seconds on a CPU, seconds waiting for one) of the imap process."""
        with open(f"/proc/{self.p.pid}/schedstat") as f:
            on_cpu, queue = f.read().split()[:2]
        return int(on_cpu) / 1e9, int(queue) / 1e9

    def close(self):
        try:
            self.cmd(b"LOGOUT")
        except SystemExit:
            pass
        self.p.stdin.close()
        self.p.wait(timeout=30)


def settle():
    """Write back dirty pages and let recently freed inodes age: on ext4
    without a journal, creating a file skips (one by one) the inodes freed
    in the last 5 s, or 5 min while their inode-table block is dirty, so a
    phase that follows a large deletion pays for it."""
    os.sync()
    time.sleep(SETTLE_SECONDS)


SETTLE_SECONDS = 6


def timed(f):
    t = time.monotonic()
    out = f()
    return time.monotonic() - t, out


def dovecot_corpus_run(root, fsync, msgs, mail_user):
    """Append, fetch and flag workloads on one fresh instance; the corpus is
    in the Maildir `root`/src-maildir."""
    dv = Dovecot(root, fsync, mail_user)
    maildir = os.path.join(root, "src-maildir")
    n, total = len(msgs), sum(len(m) for m in msgs)
    lf_total = sum(len(m.replace(b"\r\n", b"\n")) for m in msgs)
    res = {"fsync": fsync}

    # Bulk: doveadm import (one process, one transaction for the mailbox).
    dt, _ = dv.doveadm("bench", "import", f"maildir:{maildir}", "", "all")
    res["import_s"] = dt
    dt, out = dv.doveadm("bench", "mailbox", "status", "messages", "INBOX", stdout=subprocess.PIPE)
    assert out.strip().endswith(b"messages=%d" % n), out
    # doveadm fetch text of everything (one process).
    dt, out = dv.doveadm("bench", "fetch", "text", "mailbox", "INBOX", "all", stdout=subprocess.PIPE)
    res["doveadm_fetch_s"] = dt
    res["doveadm_fetch_bytes_ok"] = len(out) == lf_total + len(b"text:\n") * n
    # Flags, one command per message, all in one doveadm process.
    batch = []
    for uid in range(1, n + 1):
        batch += [":", "flags", "add", "\\Seen", "mailbox", "INBOX", "uid", str(uid)]
    dt, _ = dv.doveadm("bench", "batch", *batch)
    res["doveadm_flags_each_s"] = dt
    dt, _ = dv.doveadm("bench", "flags", "add", "\\Flagged", "mailbox", "INBOX", "all")
    res["doveadm_flags_all_s"] = dt

    # Per-command IMAP on a second, empty user's INBOX: same process model
    # as the store bench (one process, one commit per call).
    dv.reset_user("bench")
    s = dv.imap("bench")
    lat = []
    cpu0 = s.sched()
    t0 = time.monotonic()
    for raw in msgs:
        t = time.monotonic()
        s.cmd(b"APPEND INBOX", raw)
        lat.append(time.monotonic() - t)
    res["imap_append_s"] = time.monotonic() - t0
    cpu1 = s.sched()
    res["imap_append_server_cpu_s"] = cpu1[0] - cpu0[0]
    res["imap_append_server_waiting_for_cpu_s"] = cpu1[1] - cpu0[1]
    lat.sort()
    res["imap_append_p50_ms"] = lat[len(lat) // 2] * 1e3
    res["imap_append_p99_ms"] = lat[min(len(lat) - 1, round((len(lat) - 1) * 0.99))] * 1e3
    s.cmd(b"SELECT INBOX")
    dt, got = timed(lambda: s.cmd(b"UID FETCH 1:* (BODY.PEEK[])"))
    res["imap_fetch_s"] = dt
    if got != total:
        sys.exit(f"imap FETCH returned {got} bytes, expected {total}")
    t0 = time.monotonic()
    for uid in range(1, n + 1):
        s.cmd(b"UID STORE %d +FLAGS.SILENT (\\Seen)" % uid)
    res["imap_flags_each_s"] = time.monotonic() - t0
    dt, _ = timed(lambda: s.cmd(b"UID STORE 1:* +FLAGS.SILENT (\\Flagged)"))
    res["imap_flags_all_s"] = dt
    s.close()
    return res


def dovecot_select_run(root, select_n, distinct, mail_user, repeats):
    """Open/select a mailbox of `select_n` small messages."""
    dv = Dovecot(root, "optimized", mail_user)
    src = os.path.join(root, "select-src")
    write_maildir(src, [small_message(i) for i in range(min(distinct, select_n))])
    dv.chown()
    t = time.monotonic()
    # The fill is not measured: no fsync for it.
    dv.doveadm("select", "import", f"maildir:{src}", "", "all", opts=["-o", "mail_fsync=never"])
    have = min(distinct, select_n)
    while have < select_n:
        k = min(have, select_n - have)
        dv.doveadm("select", "copy", "INBOX", "mailbox", "INBOX", "uid", f"1:{k}",
                   opts=["-o", "mail_fsync=never"])
        have += k
    fill_s = time.monotonic() - t
    _, out = dv.doveadm("select", "mailbox", "status", "messages", "INBOX", stdout=subprocess.PIPE)
    assert out.strip().endswith(b"messages=%d" % select_n), out
    res = {"messages": select_n, "fill_s": fill_s}
    res["doveadm_list_s"] = statistics.median(
        dv.doveadm("select", "mailbox", "list")[0] for _ in range(repeats))
    res["doveadm_status_s"] = statistics.median(
        dv.doveadm("select", "mailbox", "status", "messages uidnext highestmodseq unseen", "INBOX")[0]
        for _ in range(repeats))
    res["doveadm_fetch_uid_flags_s"] = statistics.median(
        dv.doveadm("select", "fetch", "uid flags", "mailbox", "INBOX", "all")[0] for _ in range(repeats))
    cold, warm, fetch_flags = [], [], []
    for _ in range(repeats):
        s = dv.imap("select")
        cold.append(timed(lambda: s.cmd(b"SELECT INBOX"))[0])
        fetch_flags.append(timed(lambda: s.cmd(b"UID FETCH 1:* (FLAGS)"))[0])
        s.cmd(b"UNSELECT")
        warm.append(timed(lambda: s.cmd(b"SELECT INBOX"))[0])
        s.close()
    res["imap_select_cold_s"] = statistics.median(cold)
    res["imap_select_warm_s"] = statistics.median(warm)
    res["imap_fetch_flags_s"] = statistics.median(fetch_flags)
    return res


# ---------------------------------------------------------------- slotmail


def ours_run(bench_bin, corpus, parent, select_n, fill, out_json, repeats):
    cmd = [bench_bin, "--corpus", corpus, "--dir", parent, "--select-messages", str(select_n),
           "--select-fill", fill, "--warm-repeats", str(repeats), "--json", out_json]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sys.stdout.write(p.stdout.decode(errors="replace"))
    if p.returncode != 0:
        sys.exit(f"store_bench failed: exit {p.returncode}")
    with open(out_json) as f:
        return json.load(f)


# ---------------------------------------------------------------- report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="mbox file")
    ap.add_argument("--dir", required=True, help="parent directory of all stores (the disk to measure)")
    ap.add_argument("--bench-bin", required=True, help="the store_bench example binary")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--select-messages", type=int, default=100_000)
    ap.add_argument("--select-fill", default="copy", choices=["copy", "append"])
    ap.add_argument("--fsync-modes", default="optimized,always")
    ap.add_argument("--repeats", type=int, default=5, help="repetitions of select timings")
    ap.add_argument("--mail-user", default="nobody", help="uid Dovecot's mail runs as when run by root")
    ap.add_argument("--out", help="directory for the JSON results")
    a = ap.parse_args()

    if shutil.which("doveadm") is None or not os.path.exists("/usr/lib/dovecot/imap"):
        sys.exit("Dovecot is not installed (doveadm, /usr/lib/dovecot/imap)")
    version = subprocess.run(["dovecot", "--version"], stdout=subprocess.PIPE).stdout.decode().strip()
    msgs = parse_mbox(a.corpus)
    n, total = len(msgs), sum(len(m) for m in msgs)
    print(f"corpus: {n} messages, {total / 1e6:.1f} MB (CRLF); Dovecot {version}; nice {os.nice(0)}", flush=True)
    work = os.path.join(a.dir, f"store-vs-dovecot.{os.getpid()}")
    os.makedirs(work)
    distinct = 2000 if a.select_fill == "copy" else a.select_messages
    runs = []
    try:
        maildir = os.path.join(work, "corpus-maildir")
        write_maildir(maildir, msgs)
        for r in range(a.runs):
            dov = {}

            def run_ours():
                print(f"== run {r + 1}/{a.runs}: slotmail store", flush=True)
                settle()
                return ours_run(a.bench_bin, a.corpus, work, a.select_messages, a.select_fill,
                                os.path.join(work, f"ours-{r}.json"), a.repeats)

            # Alternate which side goes first, so neither always inherits
            # the other's dirty page cache and freshly freed inodes.
            ours = run_ours() if r % 2 == 0 else None
            for mode in a.fsync_modes.split(","):
                settle()
                print(f"== run {r + 1}/{a.runs}: Dovecot, mail_fsync={mode}", flush=True)
                root = os.path.join(work, f"dovecot-{mode}")
                # The source maildir gets Dovecot's index files (and must be
                # the mail user's): a fresh copy per run, inside the instance.
                shutil.copytree(maildir, os.path.join(root, "src-maildir"))
                dov[mode] = dovecot_corpus_run(root, mode, msgs, a.mail_user)
                print("   " + json.dumps(dov[mode]), flush=True)
                shutil.rmtree(root)
            if a.select_messages > 0:
                settle()
                print(f"== run {r + 1}/{a.runs}: Dovecot, select of {a.select_messages}", flush=True)
                root = os.path.join(work, "dovecot-select")
                dov["select"] = dovecot_select_run(root, a.select_messages, distinct, a.mail_user, a.repeats)
                print("   " + json.dumps(dov["select"]), flush=True)
                shutil.rmtree(root)
            if ours is None:
                ours = run_ours()
            runs.append({"ours": ours, "dovecot": dov})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "store-vs-dovecot.json"), "w") as f:
            json.dump({"dovecot_version": version, "nice": os.nice(0), "runs": runs}, f, indent=1)
    print()
    print(report(runs, n, total, a.fsync_modes.split(","), a.select_messages))


def med(values):
    return statistics.median(values)


def report(runs, n, total, modes, select_n):
    mb = total / 1e6

    def ours(path):
        vals = []
        for run in runs:
            v = run["ours"]
            for k in path:
                v = v[k]
            vals.append(v)
        return vals

    def dov(mode, key):
        return [run["dovecot"][mode][key] for run in runs]

    def rate_row(name, our_secs, dv_secs, dv_label, with_mb=True):
        o, d = med(our_secs), med(dv_secs)
        unit = lambda s: f"{n / s:,.0f} msg/s" + (f", {mb / s:.1f} MB/s" if with_mb else "")
        per_run = ", ".join(f"{dr / orr:.2f}" for orr, dr in zip(our_secs, dv_secs))
        return (f"| {name} | {unit(o)} ({o:.3f} s) [{min(our_secs):.3f}–{max(our_secs):.3f}] "
                f"| {unit(d)} ({d:.3f} s) [{min(dv_secs):.3f}–{max(dv_secs):.3f}] | {dv_label} "
                f"| **{d / o:.2f}×** ({per_run}) |")

    lines = [
        f"Medians of {len(runs)} runs; {n} messages, {mb:.1f} MB; seconds as median [min–max]. "
        "Ratio = ours / Dovecot as a rate, i.e. Dovecot's seconds / ours (higher is better: "
        "above 1 the store is faster); the ratio of the medians, then each run's own ratio.",
        "",
        "| workload | slotmail store | Dovecot | Dovecot method | ours / Dovecot (runs) |",
        "|---|---|---|---|---|",
    ]
    for mode in modes:
        lines.append(rate_row("append, 1 commit per message", ours(["append", "seconds"]),
                              dov(mode, "imap_append_s"), f"IMAP APPEND each, mail_fsync={mode}"))
        lines.append(rate_row("append (bulk)", ours(["append", "seconds"]),
                              dov(mode, "import_s"), f"doveadm import (1 transaction), mail_fsync={mode}"))
    mode = modes[0]
    lines.append(rate_row("fetch all bodies", ours(["fetch", "seconds"]), dov(mode, "imap_fetch_s"),
                          "IMAP UID FETCH 1:* BODY.PEEK[]"))
    lines.append(rate_row("fetch all bodies", ours(["fetch", "seconds"]), dov(mode, "doveadm_fetch_s"),
                          "doveadm fetch text all"))
    for mode in modes:
        lines.append(rate_row("+\\Seen, 1 message per call", ours(["flags_each", "seconds"]),
                              dov(mode, "imap_flags_each_s"), f"IMAP UID STORE each, mail_fsync={mode}",
                              with_mb=False))
        lines.append(rate_row("+\\Seen, 1 message per call", ours(["flags_each", "seconds"]),
                              dov(mode, "doveadm_flags_each_s"), f"doveadm batch of flags add, mail_fsync={mode}",
                              with_mb=False))
    lines.append(rate_row("+\\Flagged, all in 1 call", ours(["flags_all", "seconds"]),
                          dov(modes[0], "imap_flags_all_s"), "IMAP UID STORE 1:*", with_mb=False))
    lines += ["", "Where the append time went (median over runs; the rest of the wall time is blocked: "
              "fsync, disk, pipe):", ""]
    try:
        split = [r["ours"]["append"]["time"] for r in runs]
        lines.append(f"- slotmail store: {med(ours(['append', 'seconds'])):.2f} s wall, "
                     f"{med([t['on_cpu_s'] for t in split]):.2f} s on CPU, "
                     f"{med([t['waiting_for_cpu_s'] for t in split]):.2f} s waiting for a CPU")
    except (KeyError, TypeError):
        pass
    for mode in modes:
        try:
            lines.append(f"- Dovecot imap, mail_fsync={mode}: {med(dov(mode, 'imap_append_s')):.2f} s wall, "
                         f"{med(dov(mode, 'imap_append_server_cpu_s')):.2f} s on CPU, "
                         f"{med(dov(mode, 'imap_append_server_waiting_for_cpu_s')):.2f} s waiting for a CPU")
        except KeyError:
            pass
    if select_n > 0:
        cold = med(ours(["select", "cold", "total_seconds"]))
        snap_cold = med(ours(["select", "cold", "snapshot_seconds"]))
        warm = med(ours(["select", "warm_snapshot_seconds"]))
        status = med(ours(["select", "warm_status_seconds"]))
        claim = med(ours(["select", "claim_recent_seconds"]))
        sel = lambda k: med(dov("select", k))
        lines += [
            "",
            f"Open/select of a {select_n:,}-message mailbox (lower is better; ratio = our time / Dovecot's):",
            "",
            "| step | slotmail store | Dovecot | Dovecot method | ours / Dovecot |",
            "|---|---|---|---|---|",
            f"| new process: open + list of all messages | {cold * 1e3:.1f} ms (open slot + user + mailbox "
            f"+ snapshot; snapshot {snap_cold * 1e3:.1f}) | {sel('imap_select_cold_s') * 1e3:.1f} ms "
            f"| first IMAP SELECT in a new imap process | **{cold / sel('imap_select_cold_s'):.2f}×** |",
            f"| same, + claim \\Recent (1 commit) | {(cold + claim) * 1e3:.1f} ms | "
            f"{sel('imap_select_cold_s') * 1e3:.1f} ms | (SELECT includes it) "
            f"| **{(cold + claim) / sel('imap_select_cold_s'):.2f}×** |",
            f"| warm: list of all messages again | {warm * 1e3:.1f} ms (snapshot) | "
            f"{sel('imap_select_warm_s') * 1e3:.1f} ms | UNSELECT + SELECT in the same process "
            f"| **{warm / sel('imap_select_warm_s'):.2f}×** |",
            f"| every message's UID and flags | {warm * 1e3:.1f} ms (snapshot) | "
            f"{sel('imap_fetch_flags_s') * 1e3:.1f} ms | IMAP UID FETCH 1:* (FLAGS) "
            f"| **{warm / sel('imap_fetch_flags_s'):.2f}×** |",
            f"| mailbox counters | {status * 1e3:.2f} ms (status) | {sel('doveadm_status_s') * 1e3:.1f} ms "
            f"| doveadm mailbox status (a process; `mailbox list` alone: {sel('doveadm_list_s') * 1e3:.1f} ms) "
            f"| {status / sel('doveadm_status_s'):.3f}× |",
            f"| new process: UID and flags of all | {cold * 1e3:.1f} ms | "
            f"{sel('doveadm_fetch_uid_flags_s') * 1e3:.1f} ms | doveadm fetch 'uid flags' all "
            f"| **{cold / sel('doveadm_fetch_uid_flags_s'):.2f}×** |",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
