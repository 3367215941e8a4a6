#!/usr/bin/env bash
# The proxy's overhead: the same imaptest-like IMAP load (`slotmail bench
# imap`) against a store's master slot directly and through `slotmail proxy
# run`, runs alternating, on loopback.
#
# Usage:
#   bench/imap-via-proxy.sh [options]
#
# Options (SLOTMAIL_BIN=PATH in the environment skips the build):
#   --users N        users u1..uN, password "pw" [default 20]
#   --clients N      concurrent clients [default 20]
#   --secs S         seconds per measured run [default 20]
#   --warmup S       unmeasured seconds before each run [default 3]
#   --runs N         measured runs per path; medians are reported [default 3]
#   --messages N     messages in the generated corpus [default 400]
#   --out DIR        keep every run's JSON and the logs there
#   --nice N         run servers and load generator at this CPU priority
#
# What it does:
#   1. builds slotmail (release) and writes a corpus of --messages synthetic
#      messages (an mbox, deterministic);
#   2. makes a cluster with `slotmail ctl` under a new directory in /var/tmp:
#      two machines (127.81.0.1, 127.81.0.2; ports 31143/32424/32500), one
#      slot each, one store (master and replica, replication on), users
#      u1..uN added through `ctl user add` on the master; one `slotmail
#      machine run` per machine;
#   3. starts `slotmail proxy run` on 127.0.0.1 in front of it;
#   4. pre-fills every INBOX with 20 corpus messages (directly);
#   5. runs the load --runs times on each path, alternating direct, proxy,
#      direct, ...; the server CPU of a direct run is the two supervisors'
#      process trees (both slots), of a proxy run the same plus the proxy;
#   6. prints the medians: sessions/s, the per-command p50 latency on both
#      paths and the difference (the proxy's added latency per command).
# Every process it started is stopped by PID; the directory is removed.
set -euo pipefail

USERS=20 CLIENTS=20 SECS=20 WARMUP=3 RUNS=3 MESSAGES=400 OUT="" NICE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --users) USERS=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --messages) MESSAGES=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --nice) NICE=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${SLOTMAIL_BIN:-}" ]; then
    BIN=$SLOTMAIL_BIN   # a binary built already (e.g. to try the script quickly)
else
    cargo build --release -p slotmail --manifest-path "$ROOT/Cargo.toml" >&2
    BIN="$ROOT/target/release/slotmail"
fi
DIR=$(mktemp -d /var/tmp/slotmail-proxy-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    if [ -n "$OUT" ]; then
        mkdir -p "$OUT"
        cp "$DIR"/*.json "$DIR"/*.log "$OUT"/ 2>/dev/null || true
        cp "$DIR"/state/*/*.log "$OUT"/ 2>/dev/null || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
run_nice() { nice -n "$NICE" "$@"; }

# 1. Corpus: deterministic synthetic messages of 1–40 KiB.
python3 - "$MESSAGES" > "$DIR/corpus.mbox" <<'EOF'
import random, sys
rnd = random.Random(20261129)
words = "mail store slot replica master proxy message folder flag deliver quota".split()
for i in range(int(sys.argv[1])):
    body_lines = []
    size = rnd.randint(1024, 40 * 1024)
    while sum(len(l) + 1 for l in body_lines) < size:
        body_lines.append(" ".join(rnd.choice(words) for _ in range(rnd.randint(5, 14))))
    print("From sender%d@example.org Mon Jun  3 10:%02d:00 2024" % (i, i % 60))
    print("From: Sender %d <sender%d@example.org>" % (i, i))
    print("To: user@example.com")
    print("Subject: synthetic message %d" % i)
    print("Date: Mon, 03 Jun 2024 10:%02d:00 +0000" % (i % 60))
    print("Message-ID: <synthetic-%d@example.org>" % i)
    print()
    for l in body_lines:
        print(">" + l if l.startswith("From ") else l)
    print()
EOF

# 2. The cluster.
CL="$DIR/cluster.toml"
ctl() { "$BIN" ctl --cluster "$CL" "$@" 2>>"$DIR/ctl.log"; }
ctl init --name bench --allow-plaintext-auth --imap-port 31143 --lmtp-port 32424 --sync-port 32500 >/dev/null
ctl machine add m1 --address 127.81.0.1 >/dev/null
ctl machine add m2 --address 127.81.0.2 >/dev/null
ctl slot add m1 >/dev/null
ctl slot add m2 >/dev/null
ctl store create s1 --slots m1-1,m2-1 >/dev/null
for m in m1 m2; do
    # nice execs the program: $! is the supervisor itself.
    nice -n "$NICE" "$BIN" machine run --cluster "$CL" --machine "$m" 2>"$DIR/machine-$m.log" &
    PIDS+=($!)
done
SUP_PIDS=("${PIDS[@]}")
for _ in $(seq 300); do ctl status >/dev/null 2>&1 && break; sleep 0.2; done
ctl status >/dev/null
for i in $(seq "$USERS"); do echo pw | ctl user add "u$i" --password-stdin >/dev/null; done

# 3. The proxy.
PROXY_PORT=31990
cat > "$DIR/proxy.toml" <<EOF
version = 1
cluster = "cluster.toml"
hostname = "proxy.bench"

[imap]
listen = "127.0.0.1:$PROXY_PORT"
allow_plaintext_auth = true

[limits]
connections_per_user_max = 1000
EOF
RUST_LOG=warn nice -n "$NICE" "$BIN" proxy run --config "$DIR/proxy.toml" 2>"$DIR/proxy.log" &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break; sleep 0.1; done

bench() { run_nice "$BIN" bench imap -- --users "$USERS" --corpus "$DIR/corpus.mbox" "$@"; }
# 4. Pre-fill.
bench --host 127.81.0.1 --port 31143 --mode prefill --prefill 20 --clients 4 >/dev/null

# 5. Alternating runs.
for r in $(seq "$RUNS"); do
    for path in direct proxy; do
        if [ "$path" = direct ]; then
            target=(--host 127.81.0.1 --port 31143)
            pids=()
            for p in "${SUP_PIDS[@]}"; do pids+=(--server-pid "$p"); done
        else
            target=(--host 127.0.0.1 --port "$PROXY_PORT")
            pids=(--server-pid "$PROXY_PID")
            for p in "${SUP_PIDS[@]}"; do pids+=(--server-pid "$p"); done
        fi
        bench "${target[@]}" --clients "$CLIENTS" --secs "$SECS" --warmup "$WARMUP" \
            --seed "$r" "${pids[@]}" --json "$DIR/$path-$r.json" >/dev/null
        echo "run $r $path: $(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["load"]["sessions_per_s"], 1), "sessions/s")' "$DIR/$path-$r.json")" >&2
    done
done

# 6. Medians.
python3 - "$DIR" "$RUNS" "$CLIENTS" "$SECS" <<'EOF'
import json, statistics, sys
d, runs, clients, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rep = {p: [json.load(open("%s/%s-%d.json" % (d, p, r)))["load"] for r in range(1, runs + 1)] for p in ("direct", "proxy")}
med = lambda xs: statistics.median(xs)
sps = {p: med([x["sessions_per_s"] for x in rep[p]]) for p in rep}
cpu = {p: med([x["server"]["cpu_pct"] for x in rep[p] if x.get("server")]) for p in rep}
errs = {p: sum(x["errors"] for x in rep[p]) for p in rep}
print("clients %s, %d runs of %s s per path (medians)\n" % (clients, runs, secs))
print("| path | sessions/s [min–max] | server CPU (% of 1 core) | errors |")
print("|---|---|---|---|")
for p in rep:
    v = [x["sessions_per_s"] for x in rep[p]]
    print("| %s | **%.1f** [%.1f–%.1f] | %.0f %% | %d |" % (p, sps[p], min(v), max(v), cpu[p], errs[p]))
print("\nthroughput through the proxy: %.1f %% of direct (%+.1f %%)\n" % (100 * sps["proxy"] / sps["direct"], 100 * (sps["proxy"] / sps["direct"] - 1)))
names = [c["name"] for c in rep["direct"][0]["commands"] if c["count"]]
def p50(p, n):
    return med([c["p50_ms"] for x in rep[p] for c in x["commands"] if c["name"] == n and c["count"]])
print("| command | p50 direct (ms) | p50 proxy (ms) | added (ms) |")
print("|---|---|---|---|")
for n in names:
    a, b = p50("direct", n), p50("proxy", n)
    print("| %s | %.2f | %.2f | %+.2f |" % (n, a, b, b - a))
EOF
