#!/usr/bin/env bash
# Throughput of `slotmail check --full` on one user of 10,000 messages,
# against the raw read rate of the same message files.
#
# Usage:
#   bench/check-full.sh [--messages N] [--runs N] [--dir DIR] [--keep]
#
# What it does:
#   1. builds slotmail (release);
#   2. makes a cluster of two machines on 127.0.0.71 and 127.0.0.72 (one
#      slot each, one store: master and replica) under a new directory
#      (default under /var/tmp; --dir chooses the parent), starts their
#      supervisors (`slotmail machine run`), adds the user `bench`;
#   3. appends N messages (default 10,000; 1 to 4 KB of text each, ~22 MB,
#      deterministic) to the user's INBOX at the master with Python's
#      imaplib, one connection, and waits until `slotmail check --quick`
#      finds the replica caught up;
#   4. per run (default 3): the raw read rate — every message file of the
#      user on both slots read once with Python (`open().read()`, 64 KiB
#      buffered), bytes / seconds — then `slotmail check --user bench
#      --full --json`, whose report gives bytes read (both sides) and
#      elapsed time; then `--quick` for comparison;
#   5. prints one JSON line per measurement and the medians; stops the
#      supervisors by PID and removes the directory (unless --keep).
#
# Both measurements read warm data (the files were just written and read);
# nothing drops the page cache. The check reads the same bytes through two
# IMAP servers (master and replica, concurrently), verifying each message's
# hash on the server side as it is read, and hashes them again (BLAKE3) on
# the client side.
set -euo pipefail

MESSAGES=10000
RUNS=3
PARENT=/var/tmp
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --messages) MESSAGES="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --dir) PARENT="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --release -p slotmail --manifest-path "$ROOT/Cargo.toml" >&2
BIN="$ROOT/target/release/slotmail"
DIR="$(mktemp -d "$PARENT/slotmail-check-bench.XXXXXX")"
C="$DIR/cluster.toml"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
    done
    if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else echo "kept $DIR" >&2; fi
}
trap cleanup EXIT

export RUST_LOG=warn
"$BIN" ctl --cluster "$C" init --name bench --allow-plaintext-auth \
    --imap-port 31143 --lmtp-port 32424 --sync-port 32500 >/dev/null
for m in 1 2; do
    "$BIN" ctl --cluster "$C" machine add "b$m" --address "127.0.0.7$m" >/dev/null
    "$BIN" ctl --cluster "$C" slot add "b$m" >/dev/null
done
"$BIN" ctl --cluster "$C" plan --replicas 1 --apply >/dev/null
for m in 1 2; do
    "$BIN" machine run --cluster "$C" --machine "b$m" 2>"$DIR/machine-b$m.log" &
    PIDS+=($!)
done
for _ in $(seq 1 300); do
    "$BIN" ctl --cluster "$C" status >/dev/null 2>&1 && break
    sleep 0.2
done
"$BIN" ctl --cluster "$C" status >/dev/null
echo "bench-pw" | "$BIN" ctl --cluster "$C" user add bench --password-stdin >/dev/null
MASTER_JSON="$("$BIN" ctl --cluster "$C" user show bench --json)"
IMAP="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["master"]["imap"])' <<<"$MASTER_JSON")"

python3 - "$IMAP" "$MESSAGES" <<'EOF'
import imaplib, random, sys, time
host, port = sys.argv[1].rsplit(":", 1)
n = int(sys.argv[2])
rnd = random.Random(20261129)
words = ["mail", "store", "replica", "master", "slot", "check", "byte", "lag",
         "quorum", "epoch", "user", "folder", "message", "hash", "disk", "sync"]
i = imaplib.IMAP4(host, int(port))
i.login("bench", "bench-pw")
t = time.time()
total = 0
for k in range(n):
    size = rnd.randint(1000, 3400)
    lines = []
    while sum(len(l) + 2 for l in lines) < size:
        lines.append(" ".join(rnd.choice(words) for _ in range(10)))
    msg = ("From: sender%d@example.org\r\nTo: bench@example.org\r\nSubject: message %d\r\n"
           "Message-ID: <%d@bench.example.org>\r\n\r\n" % (k % 50, k, k)) + "\r\n".join(lines) + "\r\n"
    data = msg.encode()
    total += len(data)
    typ, resp = i.append("INBOX", None, None, data)
    assert typ == "OK", resp
i.logout()
print("appended %d messages, %.1f MB, in %.1f s" % (n, total / 1e6, time.time() - t), file=sys.stderr)
EOF

for _ in $(seq 1 120); do
    if "$BIN" check --cluster "$C" --user bench --quick --json --no-progress >"$DIR/quick.json" 2>/dev/null \
        && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["lagging"]==0 and d["settled"]==0 else 1)' "$DIR/quick.json"; then
        break
    fi
    sleep 1
done

SLOTS="$DIR/slots"
for r in $(seq 1 "$RUNS"); do
    python3 - "$SLOTS" <<'EOF'
import json, os, sys, time
files = []
for root, dirs, names in os.walk(sys.argv[1]):
    if os.sep + "msg" + os.sep in root + os.sep:
        files.extend(os.path.join(root, n) for n in names)
t = time.perf_counter()
total = 0
for f in files:
    with open(f, "rb", buffering=65536) as h:
        total += len(h.read())
s = time.perf_counter() - t
print(json.dumps({"what": "raw read", "files": len(files), "bytes": total,
                  "seconds": round(s, 3), "mb_per_s": round(total / 1e6 / s, 1)}))
EOF
    for level in full quick; do
        "$BIN" check --cluster "$C" --user bench "--$level" --json --no-progress >"$DIR/run.json"
        python3 - "$DIR/run.json" "$level" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["exit"] == 0 and d["diverged"] == 0, d
s = d["elapsed_ms"] / 1000
print(json.dumps({"what": "check --" + sys.argv[2], "messages": d["messages"],
                  "bytes": d["bytes_read"], "seconds": round(s, 3),
                  "mb_per_s": round(d["bytes_read"] / 1e6 / s, 1),
                  "messages_per_s": round(d["messages"] / s)}))
EOF
    done
done | tee "$DIR/results.jsonl"

python3 - "$DIR/results.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for what in ["raw read", "check --full", "check --quick"]:
    r = [x for x in rows if x["what"] == what]
    print("median %-14s %6.1f MB/s  %6.3f s  (%d runs)" % (
        what, statistics.median(x["mb_per_s"] for x in r),
        statistics.median(x["seconds"] for x in r), len(r)))
EOF
