#!/usr/bin/env python3
"""Switchover and failover times of a loopback cluster under write load.

Usage: bench/failover.py [--slotmail BIN] [--switchovers N] [--failovers M]
                         [--dir DIR] [--out FILE]

Builds a cluster of 3 machines (127.0.9.1-3) x 2 slots in a new
directory, stores of 2 placed by `ctl plan --apply`, one `slotmail machine
run` per machine, one user per store, and runs the test writers
(crates/slotmail/tests/python/writers.py: IMAP APPEND and LMTP, retrying on
refusals and following the directory; each waits --writer-pause after an
acknowledgement) for every user throughout. Then:

- N switchovers of the first store, back and forth, 1 s apart: per
  switchover ctl's `write_refusal_ms` (master read-only -> new master
  writable), `drain_ms` and `flip_ms`;
- M failovers: kill -9 every process of the first store's master's machine,
  `ctl failover MACHINE` (its `promoted_ms`: command start -> every
  promoted master writable; and kill -> writable as seen from here), then
  restart the machine's supervisor, `ctl reconcile` the fenced slot (its
  time, and the rebuild's), and wait until `ctl status` is healthy.

Prints a Markdown table (median, max) and the writers' longest refused
windows; --out keeps every ctl document. Everything it started is stopped
by PID; the directory is removed unless --dir was given. Standard library
only.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MACHINES = [("b1", "127.0.9.1"), ("b2", "127.0.9.2"), ("b3", "127.0.9.3")]
USERS = [("u1", "pw-1"), ("u2", "pw-2"), ("u3", "pw-3")]

ap = argparse.ArgumentParser()
ap.add_argument("--slotmail", default=os.path.join(ROOT, "target/release/slotmail"))
ap.add_argument("--switchovers", type=int, default=10)
ap.add_argument("--failovers", type=int, default=3)
ap.add_argument("--dir")
ap.add_argument("--out")
ap.add_argument("--writer-pause", type=float, default=0.01,
                help="seconds each writer waits after an acknowledgement (default 0.01)")
args = ap.parse_args()

work = args.dir or tempfile.mkdtemp(prefix="slotmail-failover-bench-")
os.makedirs(work, exist_ok=True)
cluster = os.path.join(work, "cluster.toml")
sups = {}
writers = None


def ctl(*a, stdin="", ok=(0,)):
    p = subprocess.run(
        [args.slotmail, "ctl", "--cluster", cluster, *a, "--json"],
        input=stdin.encode(),
        capture_output=True,
        timeout=600,
    )
    if p.returncode not in ok:
        sys.exit("ctl %s: exit %d\n%s\n%s" % (a, p.returncode, p.stdout.decode(), p.stderr.decode()))
    return json.loads(p.stdout)


def start_machine(m):
    log = open(os.path.join(work, "machine-%s.log" % m), "ab")
    sups[m] = subprocess.Popen(
        [args.slotmail, "machine", "run", "--cluster", cluster, "--machine", m],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
    )


def healthy(limit=120):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        p = subprocess.run([args.slotmail, "ctl", "--cluster", cluster, "status", "--json"], capture_output=True)
        if p.returncode == 0:
            return
        time.sleep(0.2)
    sys.exit("cluster not healthy after %d s" % limit)


def stop_all():
    if writers is not None and writers.poll() is None:
        open(os.path.join(work, "writers.stop"), "w").close()
        try:
            writers.wait(60)
        except subprocess.TimeoutExpired:
            writers.kill()
    for p in sups.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in sups.values():
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


docs = {"switchovers": [], "failovers": []}
try:
    ctl("init", "--name", "bench", "--allow-plaintext-auth")
    for m, a in MACHINES:
        ctl("machine", "add", m, "--address", a)
        ctl("slot", "add", m, "--count", "2")
    ctl("plan", "--replicas", "1", "--apply")
    for m, _ in MACHINES:
        start_machine(m)
    healthy()
    for u, p in USERS:
        ctl("user", "add", u, "--password-stdin", stdin=p + "\n")
    store = ctl("user", "show", USERS[0][0])["store"]
    writers = subprocess.Popen(
        ["python3", os.path.join(ROOT, "crates/slotmail/tests/python/writers.py"),
         args.slotmail, cluster, os.path.join(work, "writers.stop")]
        + ["%s:%s" % up for up in USERS],
        stdout=open(os.path.join(work, "writers.json"), "wb"),
        stderr=open(os.path.join(work, "writers.err"), "wb"),
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", WRITER_PAUSE=str(args.writer_pause)),
    )
    time.sleep(2)
    for i in range(args.switchovers):
        d = ctl("switchover", store)
        docs["switchovers"].append(d)
        print("switchover %d: refused %d ms, drained %d ms" % (i + 1, d["write_refusal_ms"], d["drain_ms"]), flush=True)
        time.sleep(1)
    for i in range(args.failovers):
        show = ctl("user", "show", USERS[0][0])
        machine = show["master"]["machine"]
        slots = ctl("slot", "list")["slots"]
        pids = [s["process"]["pid"] for s in slots if s["machine"] == machine and s["process"]["pid"]]
        pids.append(sups[machine].pid)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        sups[machine].wait()
        killed = time.monotonic()
        time.sleep(0.5)  # the status files of the dead master age a little
        fo = ctl("failover", machine)
        fo["kill_to_writable_ms"] = int((time.monotonic() - killed) * 1000)
        start_machine(machine)
        # Wait for the fenced slots to answer, then reconcile each.
        rec = {"wall_ms": 0, "summary": {"appended": 0}}
        for st in fo["stores"]:
            fenced = st["fenced"]
            start = time.monotonic()
            while time.monotonic() - start < 60:
                s = [x for x in ctl("slot", "list")["slots"] if x["id"] == fenced][0]
                if s["admin"] and s["admin"].get("read_only"):
                    break
                time.sleep(0.1)
            t = time.monotonic()
            r = ctl("reconcile", fenced)
            rec["wall_ms"] += int((time.monotonic() - t) * 1000)
            rec["summary"]["appended"] += r["summary"]["appended"]
        healthy()
        docs["failovers"].append({"failover": fo, "reconcile": rec})
        print("failover %d: promoted %d ms, kill->writable %d ms, reconcile+rebuild %d ms (%d appended)" % (
            i + 1, fo["stores"][0]["promoted_ms"], fo["kill_to_writable_ms"], rec["wall_ms"],
            rec["summary"]["appended"]), flush=True)
        time.sleep(1)
    open(os.path.join(work, "writers.stop"), "w").close()
    writers.wait(60)
    report = json.load(open(os.path.join(work, "writers.json")))
finally:
    stop_all()


def row(name, values):
    values = [v for v in values if v is not None]
    if not values:
        return "| %s | - | - | 0 |" % name
    return "| %s | %d | %d | %d |" % (name, statistics.median(values), max(values), len(values))


sw = docs["switchovers"]
fo = docs["failovers"]
print("| measure (ms) | median | max | n |")
print("| --- | ---: | ---: | ---: |")
print(row("switchover: writes refused (ctl)", [d["write_refusal_ms"] for d in sw]))
print(row("switchover: drained and proven equal", [d["drain_ms"] for d in sw]))
print(row("switchover: directory changed", [d["flip_ms"] for d in sw]))
print(row("switchover: old master back as replica", [d["old_master_back_ms"] for d in sw]))
print(row("failover: command start -> promoted master writable", [f["failover"]["stores"][0]["promoted_ms"] for f in fo]))
print(row("failover: kill -9 -> promoted master writable", [f["failover"]["kill_to_writable_ms"] for f in fo]))
print(row("reconcile + rebuild of the old master", [f["reconcile"]["wall_ms"] for f in fo]))
print(row("reconcile: messages appended", [f["reconcile"]["summary"]["appended"] for f in fo]))
print()
for w in report["writers"]:
    print("writer %s %s: %d acknowledged, %d refused, %d errors, longest window without an acknowledgement %d ms"
          % (w["kind"], w["user"], len(w["acked"]), w["refused"], w["errors"], w["longest_outage_ms"]))
if args.out:
    json.dump({"ctl": docs, "writers": [{k: v for k, v in w.items() if k != "acked"} for w in report["writers"]]},
              open(args.out, "w"), indent=1)
if not args.dir:
    shutil.rmtree(work, ignore_errors=True)
