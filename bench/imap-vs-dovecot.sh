#!/usr/bin/env bash
# One slotmail slot side by side with Dovecot over IMAP on loopback: the
# same imaptest-like load, the same users and messages, back to back.
#
# Usage:
#   bench/imap-vs-dovecot.sh (--corpus FILE | --generator GEN_CORPUS_PY) [options]
#
# The corpus (an mbox) is either given (--corpus, or CORPUS=FILE) or made with
# the corpus generator (--generator PATH/gen_corpus.py, or
# CORPUS_GENERATOR=...), with --count messages (default 2000) and --seed
# (default 20240601).
#
# Options (environment variable in brackets):
#   --dir DIR            parent of both servers' directories [BENCH_DIR,
#                        default: a new directory under /var/tmp, removed at
#                        the end]; both stores are on the same file system
#   --users N            users u1..uN, password "pw" [default 100]
#   --clients LIST       client counts of the load runs [default "20 100"]
#   --secs S             seconds per measured run [default 30]
#   --warmup S           seconds of the unmeasured run first [default 10]
#   --runs N             measured runs per server and client count; medians
#                        are reported [RUNS, default 3]
#   --prefill N          messages per INBOX before the load [default 20]
#   --idle N             connections of the idle-memory test [default 100]
#   --big-idle N         connections of the IDLE capacity test, slotmail
#                        only; 0 skips it [default 10000]
#   --wake-users N       users woken by an APPEND in the capacity test
#                        [default 10]
#   --slot-port P        [default 21143]
#   --dovecot-port P     [default 21144]
#   --threads N          worker threads of the load generator [default 1]
#   --out DIR            keep every run's JSON and the servers' logs there
#   --nice N             run everything (both servers, the load generator) at
#                        this CPU priority, e.g. -10 as root, so that other
#                        jobs on a shared machine take less of its CPU
#                        [default 0: unchanged]
#   --skip-dovecot       measure slotmail only
#
# What it does:
#   1. makes (or takes) the corpus;
#   2. installs Dovecot from Debian if it is missing (dovecot-imapd);
#   3. builds slotmail and the load generator (release);
#   4. creates the users offline in a fresh slot (`slotmail slot user add`,
#      argon2: about 0.1 s each) and in a passwd-file for a standalone
#      Dovecot (sdbox, plaintext auth, "high-performance" service settings:
#      imap-login service_count = 0, imap service_count = 256, both
#      process_min_avail = 2), each on its own port on 127.0.0.1;
#   5. pre-fills every INBOX with the same messages on both servers;
#   6. per client count: a warm-up run on each server, then the measured
#      runs alternating slotmail, Dovecot, slotmail, ...; server CPU is
#      utime+stime over the server's process tree (reaped children
#      included), memory the PSS sum, sampled once a second;
#   7. per run: both servers restarted, then 100 connections LOGIN, SELECT
#      and IDLE; memory growth per connection;
#   8. slotmail restarted, then --big-idle connections idling at once and an
#      APPEND to --wake-users users: how many of their connections see
#      EXISTS within 1 s;
#   9. prints the medians and the ratios slotmail / Dovecot (Markdown).
# The file-descriptor limit is raised to 65536 (or, when that is not
# permitted, to the hard limit if it covers the capacity test); the script
# fails with a message when it cannot. Every process it started is stopped
# by its PID; nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

corpus="${CORPUS:-}"
generator="${CORPUS_GENERATOR:-}"
count=2000
seed=20240601
dir="${BENCH_DIR:-}"
users=100
clients_list="20 100"
secs=30
warmup=10
runs="${RUNS:-3}"
prefill=20
idle_n=100
big_idle=10000
wake_users=10
slot_port=21143
dovecot_port=21144
threads=1
out=""
skip_dovecot=0
nice=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
  case "$1" in
    --corpus) corpus="$2"; shift 2 ;;
    --generator) generator="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --users) users="$2"; shift 2 ;;
    --clients) clients_list="$2"; shift 2 ;;
    --secs) secs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --prefill) prefill="$2"; shift 2 ;;
    --idle) idle_n="$2"; shift 2 ;;
    --big-idle) big_idle="$2"; shift 2 ;;
    --wake-users) wake_users="$2"; shift 2 ;;
    --slot-port) slot_port="$2"; shift 2 ;;
    --dovecot-port) dovecot_port="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --skip-dovecot) skip_dovecot=1; shift ;;
    --nice) nice="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
  esac
done

if [ "$nice" != 0 ]; then
  renice -n "$nice" -p $$ >/dev/null
fi

# File descriptors: the capacity test needs one per connection in the load
# generator and one in the server (both inherit this shell's limit).
need_fds=$(( big_idle + idle_n + 1024 ))
if ! ulimit -n 65536 2>/dev/null; then
  hard="$(ulimit -Hn)"
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$need_fds" ]; then
    echo "cannot raise the open-files limit: ulimit -n 65536 is not permitted and the" >&2
    echo "hard limit ($hard) is below the $need_fds the $big_idle-connection test needs;" >&2
    echo "raise it (limits.conf, systemd LimitNOFILE, docker --ulimit nofile=65536) or pass --big-idle 0" >&2
    exit 1
  fi
  ulimit -n "$hard"
  echo "== note: ulimit -n 65536 is not permitted here; using the hard limit $(ulimit -n)"
fi

own_dir=""
if [ -z "$dir" ]; then
  dir="$(mktemp -d /var/tmp/slotmail-imap-bench.XXXXXX)"
  own_dir="$dir"
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
# Dovecot's mail processes run as an unprivileged user and must reach
# their homes below this directory.
chmod 755 "$dir"
results="$dir/results"
mkdir -p "$results"

slot_pid=""
dovecot_pid=""
stop_slot() {
  if [ -n "$slot_pid" ]; then
    kill -TERM "$slot_pid" 2>/dev/null || true
    wait "$slot_pid" 2>/dev/null || true
    slot_pid=""
  fi
}
stop_dovecot() {
  if [ -n "$dovecot_pid" ]; then
    kill -TERM "$dovecot_pid" 2>/dev/null || true
    wait "$dovecot_pid" 2>/dev/null || true
    dovecot_pid=""
  fi
}
cleanup() {
  stop_slot
  stop_dovecot
  if [ -n "$out" ]; then
    mkdir -p "$out"
    cp "$results"/*.json "$out"/ 2>/dev/null || true
    cp "$dir"/slot/slot.log "$out"/slot.log 2>/dev/null || true
    cp "$dir"/dovecot/dovecot.log "$out"/dovecot.log 2>/dev/null || true
  fi
  if [ -n "$own_dir" ]; then rm -rf "$own_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port pid
  local i
  for i in $(seq 1 300); do
    if ! kill -0 "$2" 2>/dev/null; then
      echo "the server (pid $2) exited before listening on port $1" >&2
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1 after 30 s" >&2
  return 1
}

# 1. The corpus.
if [ -z "$corpus" ]; then
  if [ -z "$generator" ]; then
    echo "give --corpus FILE or --generator PATH/gen_corpus.py (or CORPUS / CORPUS_GENERATOR)" >&2
    exit 2
  fi
  corpus="$dir/corpus-$count-$seed.mbox"
  echo "== generating the corpus: $count messages, seed $seed"
  python3 "$generator" "$corpus" --count "$count" --seed "$seed"
fi
corpus="$(cd "$(dirname "$corpus")" && pwd)/$(basename "$corpus")"

# 2. Dovecot.
if [ "$skip_dovecot" = 0 ] && { ! command -v dovecot >/dev/null || [ ! -x /usr/lib/dovecot/imap ]; }; then
  echo "== installing Dovecot (Debian packages)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dovecot-core dovecot-imapd >/dev/null
fi

# 3. Build.
echo "== building slotmail and the load generator (release)"
cargo build --release --locked -p slotmail
cargo build --release --locked -p slotmail-bench --example imap_bench
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
slotmail="$target_dir/release/slotmail"
bench="$target_dir/release/examples/imap_bench"

# 4. The servers.
echo "== creating $users users in a fresh slot (argon2 hashing: this takes a while)"
mkdir -p "$dir/slot"
for i in $(seq 1 "$users"); do
  printf 'pw\n' | "$slotmail" slot user add --data "$dir/slot/data" "u$i" --password-stdin >/dev/null 2>&1
done
cat >"$dir/slot/slot.toml" <<EOF
version = 1
name = "bench"
data = "data"
[imap]
listen = "127.0.0.1:$slot_port"
allow_plaintext_auth = true
[limits]
connections_max = $(( big_idle + idle_n + 1000 ))
connections_per_user_max = $(( big_idle / users + 100 ))
EOF
start_slot() {
  "$slotmail" slot run --config "$dir/slot/slot.toml" >>"$dir/slot/slot.log" 2>&1 &
  slot_pid=$!
  wait_port "$slot_port" "$slot_pid"
}

if [ "$skip_dovecot" = 0 ]; then
  echo "== configuring a standalone Dovecot ($(dovecot --version | cut -d' ' -f1))"
  dv="$dir/dovecot"
  mkdir -p "$dv/home"
  mail_user=nobody
  uid="$(id -u "$mail_user")"; gid="$(id -g "$mail_user")"
  : >"$dv/users"
  for i in $(seq 1 "$users"); do
    echo "u$i:{PLAIN}pw:$uid:$gid::$dv/home/u$i::" >>"$dv/users"
    mkdir -p "$dv/home/u$i"
  done
  chown -R "$uid:$gid" "$dv/home"
  cat >"$dv/dovecot.conf" <<EOF
# A standalone Dovecot for bench/imap-vs-dovecot.sh, in the
# "high-performance" service mode of measured-imap.md.
instance_name = slotmail-imap-bench
base_dir = $dv/run
state_dir = $dv/state
log_path = $dv/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = $uid
first_valid_gid = $gid
mail_uid = $uid
mail_gid = $gid
mail_location = sdbox:~/mail
mail_fsync = optimized
passdb {
  driver = passwd-file
  args = $dv/users
}
userdb {
  driver = passwd-file
  args = $dv/users
}
protocol imap {
  mail_max_userip_connections = 1000
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $dovecot_port
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  process_min_avail = 2
}
service imap {
  service_count = 256
  process_min_avail = 2
  process_limit = 1024
}
service auth {
  client_limit = 2048
}
EOF
  start_dovecot() {
    dovecot -F -c "$dv/dovecot.conf" >>"$dv/dovecot.log" 2>&1 &
    dovecot_pid=$!
    wait_port "$dovecot_port" "$dovecot_pid"
  }
fi

servers="slotmail"
[ "$skip_dovecot" = 0 ] && servers="slotmail dovecot"
port_of() { if [ "$1" = slotmail ]; then echo "$slot_port"; else echo "$dovecot_port"; fi; }
pid_of() { if [ "$1" = slotmail ]; then echo "$slot_pid"; else echo "$dovecot_pid"; fi; }
bench_run() { # server json-or-empty args...
  local server="$1" json="$2"; shift 2
  local args=(--port "$(port_of "$server")" --users "$users" --threads "$threads"
              --server-pid "$(pid_of "$server")" "$@")
  [ -n "$json" ] && args+=(--json "$results/$json")
  "$bench" "${args[@]}"
}

start_slot
[ "$skip_dovecot" = 0 ] && start_dovecot

# 5. Pre-fill.
for s in $servers; do
  echo "== $s: pre-filling every INBOX with $prefill messages"
  bench_run "$s" "prefill-$s.json" --mode prefill --prefill "$prefill" --clients 10 --corpus "$corpus"
done

# 6. Load.
for c in $clients_list; do
  for s in $servers; do
    echo "== $s: warm-up, $c clients, $warmup s"
    bench_run "$s" "" --clients "$c" --secs "$warmup" --corpus "$corpus" >/dev/null
  done
  for r in $(seq 1 "$runs"); do
    for s in $servers; do
      echo "== $s: load, $c clients, $secs s, run $r of $runs"
      bench_run "$s" "load-$s-c$c-r$r.json" --clients "$c" --secs "$secs" --corpus "$corpus" --seed "$r"
    done
  done
done

# 7. Idle memory, freshly started servers.
for r in $(seq 1 "$runs"); do
  for s in $servers; do
    if [ "$s" = slotmail ]; then stop_slot; start_slot; else stop_dovecot; start_dovecot; fi
    sleep 1
    echo "== $s: $idle_n idle connections, run $r of $runs"
    bench_run "$s" "idle-$s-r$r.json" --mode idle --connections "$idle_n" --wake-users 10
  done
done
stop_dovecot

# 8. IDLE capacity, slotmail.
if [ "$big_idle" -gt 0 ]; then
  stop_slot; start_slot; sleep 1
  echo "== slotmail: $big_idle IDLE connections, APPEND to $wake_users users"
  bench_run slotmail "idle-big-slotmail.json" --mode idle --connections "$big_idle" \
    --wake-users "$wake_users" --connect-concurrency 100
fi
stop_slot

# 9. Summary.
echo
echo "== summary (medians of $runs runs; ratios slotmail / Dovecot)"
python3 - "$results" "$clients_list" "$runs" <<'PY'
import json, os, statistics, sys

res, clients, runs = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])

def load(name):
    p = os.path.join(res, name)
    return json.load(open(p)) if os.path.exists(p) else None

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, nd=0):
    return "–" if x is None else f"{x:.{nd}f}"

def ratio(a, b):
    return None if a is None or not b else a / b

first = next((load(f) for f in sorted(os.listdir(res)) if f.endswith(".json")), None)
if first:
    m = first["machine"]
    print(f"machine: {m['nproc']} vCPU {m.get('cpu')}, {m.get('memory_mib')} MiB, kernel {m.get('kernel')}, {m['date']}")
    print()

cmds = ["LOGIN", "LIST", "STATUS", "SELECT", "FETCH", "FETCH2", "STORE", "DELETE", "EXPUNGE", "APPEND", "LOGOUT"]
print("| server | clients | sessions/s [min–max] | " + " | ".join(c.title() for c in cmds[1:]) +
      " | server CPU % | sessions per CPU-s | PSS peak MiB | foreign CPU % | errors |")
print("|---" * (len(cmds) + 7) + "|")
summary = {}
for c in clients:
    for s in ("slotmail", "dovecot"):
        rs = [load(f"load-{s}-c{c}-r{r}.json") for r in range(1, runs + 1)]
        rs = [r["load"] for r in rs if r]
        if not rs:
            continue
        sess = [r["sessions_per_s"] for r in rs]
        per = {n: med([next(x["per_s"] for x in r["commands"] if x["name"] == n) for r in rs]) for n in cmds}
        cpu = med([r["server"]["cpu_pct"] for r in rs if r.get("server")])
        pss = med([r["server"]["pss_peak_mib"] for r in rs if r.get("server")])
        foreign = med([r.get("foreign_cpu_pct") for r in rs])
        eff = med([r["sessions_per_s"] / (r["server"]["cpu_pct"] / 100) for r in rs if r.get("server") and r["server"]["cpu_pct"] > 0])
        errors = sum(r["errors"] for r in rs)
        summary[(s, c)] = dict(sess=med(sess), cpu=cpu, pss=pss, eff=eff)
        print(f"| {s} | {c} | **{fmt(med(sess))}** [{fmt(min(sess))}–{fmt(max(sess))}] | " +
              " | ".join(fmt(per[n]) for n in cmds[1:]) +
              f" | {fmt(cpu)} | {fmt(eff)} | {fmt(pss, 1)} | {fmt(foreign)} | {errors} |")
print()
print("Latency p50 / p99 (ms), median over runs:")
print()
print("| server | clients | " + " | ".join(c.title() for c in cmds) + " |")
print("|---" * (len(cmds) + 2) + "|")
for c in clients:
    for s in ("slotmail", "dovecot"):
        rs = [load(f"load-{s}-c{c}-r{r}.json") for r in range(1, runs + 1)]
        rs = [r["load"] for r in rs if r]
        if not rs:
            continue
        cell = []
        for n in cmds:
            p50 = med([next(x["p50_ms"] for x in r["commands"] if x["name"] == n) for r in rs])
            p99 = med([next(x["p99_ms"] for x in r["commands"] if x["name"] == n) for r in rs])
            cell.append(f"{fmt(p50, 1)} / {fmt(p99, 1)}")
        print(f"| {s} | {c} | " + " | ".join(cell) + " |")
print()
for c in clients:
    a, b = summary.get(("slotmail", c)), summary.get(("dovecot", c))
    if a and b:
        r = ratio(a["sess"], b["sess"])
        print(f"c{c}: sessions/s slotmail / Dovecot = **{fmt(r, 2)}×** (target ≥ 1.5×: "
              f"{'met' if r and r >= 1.5 else 'NOT met'}); sessions per server CPU-second "
              f"{fmt(ratio(a['eff'], b['eff']), 2)}×; server CPU {fmt(a['cpu'])} % vs {fmt(b['cpu'])} %; "
              f"PSS peak {fmt(a['pss'], 1)} vs {fmt(b['pss'], 1)} MiB")
print()
print("Idle sessions (LOGIN + SELECT + IDLE, freshly started server; medians):")
print()
print("| server | connections | processes before → with | PSS before → with (MiB) | PSS per connection (KiB) | RSS per connection (KiB) | woken within 1 s |")
print("|---|---|---|---|---|---|---|")
per_conn = {}
for s in ("slotmail", "dovecot"):
    rs = [load(f"idle-{s}-r{r}.json") for r in range(1, runs + 1)]
    rs = [r["idle"] for r in rs if r]
    if not rs:
        continue
    p = med([r["pss_per_connection_kib"] for r in rs])
    q = med([r["rss_per_connection_kib"] for r in rs])
    per_conn[s] = p
    w = rs[0]
    wake = "; ".join(f"{r['wake']['woken_within_window']}/{r['wake']['connections']}" for r in rs if r.get("wake"))
    print(f"| {s} | {w['established']} | {w['server_warm']['processes']} → {w['server_idle']['processes']} | "
          f"{w['server_warm']['pss_kib']/1024:.1f} → {w['server_idle']['pss_kib']/1024:.1f} | **{fmt(p, 1)}** | {fmt(q, 1)} | {wake} |")
if "slotmail" in per_conn:
    p = per_conn["slotmail"]
    print()
    print(f"slotmail PSS per idle connection {fmt(p, 1)} KiB (target ≤ 64 KiB: {'met' if p is not None and p <= 64 else 'NOT met'})"
          + (f"; Dovecot {fmt(per_conn['dovecot'], 1)} KiB, ratio {fmt(ratio(p, per_conn['dovecot']), 3)}×" if per_conn.get("dovecot") else ""))
big = load("idle-big-slotmail.json")
if big:
    i = big["idle"]
    w = i.get("wake") or {}
    print()
    print(f"IDLE capacity (slotmail): {i['established']} of {i['connections']} connections in IDLE "
          f"(opened in {i['open_secs']:.1f} s, {i['failed']} failed); server PSS "
          f"{i['server_warm']['pss_kib']/1024:.1f} → {i['server_idle']['pss_kib']/1024:.1f} MiB = "
          f"{fmt(i['pss_per_connection_kib'], 1)} KiB per connection (RSS {fmt(i['rss_per_connection_kib'], 1)} KiB); "
          f"APPEND to {w.get('users')} users: {w.get('woken_within_window')} of their {w.get('connections')} "
          f"connections got EXISTS within {fmt(w.get('window_ms'))} ms (p50 {fmt(w.get('p50_ms'), 1)} ms, "
          f"p99 {fmt(w.get('p99_ms'), 1)} ms, max {fmt(w.get('max_ms'), 1)} ms); still idling at the end: "
          f"{i['alive_before_logout']}; DONE + LOGOUT completed: {i['logged_out']}")
PY
