#!/usr/bin/env bash
# LMTP delivery into one slotmail slot side by side with Dovecot's LMTP, on
# loopback: the same messages to the same users over the same number of
# connections, back to back, on the same disk.
#
# Usage:
#   bench/lmtp-vs-dovecot.sh (--corpus FILE | --generator GEN_CORPUS_PY) [options]
#
# The corpus (an mbox) is either given (--corpus, or CORPUS=FILE) or made with
# the corpus generator (--generator PATH/gen_corpus.py, or
# CORPUS_GENERATOR=...), with --count messages (default 2000) and --seed
# (default 20240601).
#
# Options (environment variable in brackets):
#   --dir DIR              parent of both servers' directories [BENCH_DIR,
#                          default: a new directory under /var/tmp, removed at
#                          the end]; both stores are on the same file system
#   --runs N               runs; medians are reported [RUNS, default 3]
#   --users N              users u1..uN@bench.test [default 100]
#   --messages N           transactions per single-recipient measurement: the
#                          first N corpus messages [default 1000]
#   --connections LIST     connection counts, single recipient [default "1 4 16"]
#   --multi-messages N     transactions per multi-recipient measurement
#                          [default 200]
#   --multi-recipients K   recipients per multi-recipient transaction
#                          [default 10]
#   --multi-connections LIST  connection counts, multi-recipient [default "1 4"]
#   --max-secs S           stop a measurement after S seconds even if it has
#                          not delivered all its messages [default 180]
#   --pause S              seconds of quiet after `sync` before every
#                          measurement [default 6]
#   --fsync-modes LIST     Dovecot mail_fsync modes [default optimized,always]
#   --slot-port P          [default 21224]
#   --dovecot-port P       [default 21225]
#   --out DIR              keep every measurement's JSON and the logs there
#   --nice N               run both servers and the client at this CPU priority
#                          (e.g. -10, as root) [default 0: unchanged]
#   --skip-dovecot         measure slotmail only
#
# What it does:
#   1. makes (or takes) the corpus;
#   2. installs Dovecot's LMTP from Debian if it is missing
#      (apt-get install dovecot-core dovecot-lmtpd);
#   3. builds slotmail and the LMTP load generator (release; the example
#      `lmtp_bench` of slotmail-bench);
#   4. creates the users once in a template slot (`slotmail slot user add`,
#      offline) and in a passwd-file for a standalone Dovecot (own
#      instance_name, base_dir and state_dir under the bench directory;
#      sdbox; `protocols = lmtp`, the LMTP service on an inet listener on
#      127.0.0.1; default LMTP service settings otherwise). Dovecot's mail
#      processes run as the current user, or as `nobody` when that is root
#      (Dovecot refuses mail access as UID 0);
#   5. per run, per server (slotmail, then Dovecot with each mail_fsync mode;
#      the order rotates from run to run): a fresh store (the slot copied from
#      the template, empty Dovecot homes), the server started, then every
#      measurement in turn — single recipient over each connection count, then
#      multi-recipient — each after `sync` and --pause seconds. The first
#      measurement of a server starts with the untimed warm-up (one small
#      message to every user). The server's CPU is read from /proc over its
#      process tree (`--server-pid`). Then the server is stopped and its store
#      removed;
#   6. prints the medians and the ratios slotmail / Dovecot (Markdown;
#      bench/lmtp_vs_dovecot.py).
# Every process it started is stopped by its PID; every directory it made is
# removed (the --out copy excepted).
set -euo pipefail
cd "$(dirname "$0")/.."

corpus="${CORPUS:-}"
generator="${CORPUS_GENERATOR:-}"
count=2000
seed=20240601
dir="${BENCH_DIR:-}"
runs="${RUNS:-3}"
users=100
messages=1000
connections_list="1 4 16"
multi_messages=200
multi_recipients=10
multi_connections_list="1 4"
max_secs=180
pause=6
fsync_modes=optimized,always
slot_port=21224
dovecot_port=21225
out=""
nice=0
skip_dovecot=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
  case "$1" in
    --corpus) corpus="$2"; shift 2 ;;
    --generator) generator="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --users) users="$2"; shift 2 ;;
    --messages) messages="$2"; shift 2 ;;
    --connections) connections_list="$2"; shift 2 ;;
    --multi-messages) multi_messages="$2"; shift 2 ;;
    --multi-recipients) multi_recipients="$2"; shift 2 ;;
    --multi-connections) multi_connections_list="$2"; shift 2 ;;
    --max-secs) max_secs="$2"; shift 2 ;;
    --pause) pause="$2"; shift 2 ;;
    --fsync-modes) fsync_modes="$2"; shift 2 ;;
    --slot-port) slot_port="$2"; shift 2 ;;
    --dovecot-port) dovecot_port="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --nice) nice="$2"; shift 2 ;;
    --skip-dovecot) skip_dovecot=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
  esac
done

own_dir=""
if [ -z "$dir" ]; then
  dir="$(mktemp -d /var/tmp/slotmail-lmtp-bench.XXXXXX)"
  own_dir="$dir"
  chmod 755 "$dir"
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
# Everything this script makes lives in one fresh directory below --dir.
work="$(mktemp -d "$dir/lmtp-bench.XXXXXX")"
# Dovecot's mail processes may run as another user and must reach their
# homes below this directory.
chmod 755 "$work"
results="$work/results"
mkdir -p "$results"

runner=()
[ "$nice" != 0 ] && runner=(nice -n "$nice")

slot_pid=""
dovecot_pid=""
stop_pid() { # pid
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
stop_slot() { if [ -n "$slot_pid" ]; then stop_pid "$slot_pid"; slot_pid=""; fi; }
stop_dovecot() { if [ -n "$dovecot_pid" ]; then stop_pid "$dovecot_pid"; dovecot_pid=""; fi; }
cleanup() {
  stop_slot
  stop_dovecot
  if [ -n "$out" ]; then
    mkdir -p "$out"
    cp "$results"/*.json "$out"/ 2>/dev/null || true
    cp "$work"/slot.log "$out"/slot.log 2>/dev/null || true
    cp "$work"/dovecot/dovecot.log "$out"/dovecot.log 2>/dev/null || true
  fi
  rm -rf "$work"
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
  corpus="$work/corpus-$count-$seed.mbox"
  echo "== generating the corpus: $count messages, seed $seed"
  python3 "$generator" "$corpus" --count "$count" --seed "$seed"
fi
corpus="$(cd "$(dirname "$corpus")" && pwd)/$(basename "$corpus")"

# 2. Dovecot's LMTP.
if [ "$skip_dovecot" = 0 ] && { ! command -v dovecot >/dev/null || [ ! -x /usr/lib/dovecot/lmtp ]; }; then
  echo "== installing Dovecot's LMTP (Debian packages)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dovecot-core dovecot-lmtpd >/dev/null
fi

# 3. Build.
echo "== building slotmail and the LMTP load generator (release)"
cargo build --release --locked -p slotmail
cargo build --release --locked -p slotmail-bench --example lmtp_bench
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
slotmail="$target_dir/release/slotmail"
bench="$target_dir/release/examples/lmtp_bench"

# 4. The users.
echo "== creating $users users in a template slot (argon2 hashing: this takes a while)"
for i in $(seq 1 "$users"); do
  if ! printf 'pw\n' | "$slotmail" slot user add --data "$work/slot-template" "u$i" --password-stdin \
      >/dev/null 2>>"$work/user-add.log"; then
    cat "$work/user-add.log" >&2
    exit 1
  fi
done
cat >"$work/slot.toml" <<EOF
version = 1
name = "lmtp-bench"
data = "slot-data"
hostname = "bench.test"
[lmtp]
listen = "127.0.0.1:$slot_port"
EOF

servers="slotmail"
if [ "$skip_dovecot" = 0 ]; then
  dv="$work/dovecot"
  mkdir -p "$dv"
  if [ "$(id -u)" -eq 0 ]; then
    mail_user=nobody
  else
    mail_user="$(id -un)"
  fi
  uid="$(id -u "$mail_user")"; gid="$(id -g "$mail_user")"
  echo "== configuring a standalone Dovecot ($(dovecot --version | cut -d' ' -f1); mail processes as $mail_user)"
  : >"$dv/users"
  for i in $(seq 1 "$users"); do
    echo "u$i:{PLAIN}pw:$uid:$gid::$dv/home/u$i::" >>"$dv/users"
  done
  if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null; then
    for u in dovecot "$mail_user"; do
      if id "$u" >/dev/null 2>&1 && ! runuser -u "$u" -- test -r "$dv/users"; then
        echo "Dovecot's user $u cannot read $dv/users: every directory above it must be" >&2
        echo "searchable by others (chmod o+x), or choose another --dir" >&2
        exit 1
      fi
    done
  fi
  as_root=""
  if [ "$(id -u)" -ne 0 ]; then
    # Without root the master cannot switch users or chroot: everything runs
    # as the current user.
    as_root="default_internal_user = $mail_user
default_login_user = $mail_user
service anvil {
  chroot =
}"
  fi
  for mode in ${fsync_modes//,/ }; do
    cat >"$dv/dovecot-$mode.conf" <<EOF
# A standalone Dovecot for bench/lmtp-vs-dovecot.sh: LMTP only, sdbox,
# mail_fsync = $mode.
instance_name = slotmail-lmtp-bench
base_dir = $dv/run
state_dir = $dv/state
log_path = $dv/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
hostname = bench.test
postmaster_address = postmaster@bench.test
# Recipients are u1@bench.test...; the passwd-file has u1...
auth_username_format = %Ln
first_valid_uid = $uid
first_valid_gid = $gid
mail_uid = $uid
mail_gid = $gid
mail_location = sdbox:~/mail
mail_fsync = $mode
passdb {
  driver = passwd-file
  args = $dv/users
}
userdb {
  driver = passwd-file
  args = $dv/users
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $dovecot_port
  }
}
$as_root
EOF
    servers="$servers dovecot-$mode"
  done
fi

# 5. The runs.
fresh_store() { # server
  if [ "$1" = slotmail ]; then
    rm -rf "$work/slot-data"
    cp -a "$work/slot-template" "$work/slot-data"
  else
    rm -rf "$dv/home"
    mkdir -p "$dv/home"
    for i in $(seq 1 "$users"); do mkdir -p "$dv/home/u$i"; done
    chown -R "$uid:$gid" "$dv/home"
  fi
}
remove_store() { # server
  if [ "$1" = slotmail ]; then rm -rf "$work/slot-data"; else rm -rf "$dv/home"; fi
}
start_server() { # server
  if [ "$1" = slotmail ]; then
    "${runner[@]}" "$slotmail" slot run --config "$work/slot.toml" >>"$work/slot.log" 2>&1 &
    slot_pid=$!
    wait_port "$slot_port" "$slot_pid"
  else
    "${runner[@]}" dovecot -F -c "$dv/$1.conf" >>"$dv/dovecot.log" 2>&1 &
    dovecot_pid=$!
    wait_port "$dovecot_port" "$dovecot_pid"
  fi
}
stop_server() { if [ "$1" = slotmail ]; then stop_slot; else stop_dovecot; fi; }
server_port() { if [ "$1" = slotmail ]; then echo "$slot_port"; else echo "$dovecot_port"; fi; }
server_pid() { if [ "$1" = slotmail ]; then echo "$slot_pid"; else echo "$dovecot_pid"; fi; }

measurements=()
for c in $connections_list; do measurements+=("1:$c:$messages"); done
for c in $multi_connections_list; do measurements+=("$multi_recipients:$c:$multi_messages"); done

read -r -a server_list <<<"$servers"
n_servers=${#server_list[@]}
for r in $(seq 1 "$runs"); do
  for k in $(seq 0 $((n_servers - 1))); do
    s="${server_list[$(( (k + r - 1) % n_servers ))]}"
    fresh_store "$s"
    sync
    start_server "$s"
    first=1
    for m in "${measurements[@]}"; do
      IFS=: read -r rcpts conns msgs <<<"$m"
      sync
      sleep "$pause"
      echo "== run $r of $runs, $s: $conns connection(s), $rcpts recipient(s), $msgs messages  [load: $(cut -d' ' -f1-3 /proc/loadavg)]"
      args=(--addr "127.0.0.1:$(server_port "$s")" --corpus "$corpus" --users "$users"
            --connections "$conns" --recipients "$rcpts" --count "$msgs" --secs "$max_secs"
            --server-pid "$(server_pid "$s")" --json "$results/$s-r$rcpts-c$conns-run$r.json")
      [ "$first" = 1 ] || args+=(--no-warmup)
      first=0
      "${runner[@]}" "$bench" "${args[@]}" | sed 's/^/   /'
    done
    stop_server "$s"
    remove_store "$s"
  done
done

# 6. Summary.
echo
python3 bench/lmtp_vs_dovecot.py "$results"
