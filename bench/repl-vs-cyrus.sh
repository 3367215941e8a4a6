#!/usr/bin/env bash
# slotmail's replication side by side with Cyrus IMAP's rolling replication
# (sync_client -r → sync_server), on loopback, measured by the same client
# (`slotmail bench repl`) in the same run.
#
# Usage:
#   bench/repl-vs-cyrus.sh (--corpus FILE | --generator GEN_CORPUS_PY | --synthetic) [options]
#
# Messages: the corpus (an mbox) is either given (--corpus, or CORPUS=FILE)
# or made with the corpus generator (--generator PATH/gen_corpus.py, or
# CORPUS_GENERATOR=...; --count messages, default 2000, --seed, default
# 20240601); its messages of at most --message-max-bytes (default 102400)
# are cycled, each made unique by an extra header. --synthetic uses
# 2,300-byte synthetic messages instead (the size of the published anchor).
#
# Options (environment variable in brackets):
#   --dir DIR            working directory [BENCH_DIR, default: a new
#                        directory under /var/tmp, removed at the end]
#   --runs N             lag runs per system, watch mode and interval; every
#                        sample is pooled [RUNS, default 1]
#   --samples N          samples per kind of change and run, for Cyrus and
#                        slotmail's polled runs [default 100]
#   --slotmail-samples N samples of slotmail's IDLE-watched runs [default 200]
#   --slotmail-pause-max-ms MS  their pause [default 200: slotmail has no
#                        timer to desynchronize from]
#   --pause-max-ms MS    random pause before each sample [default 1000, as
#                        in the anchor: Cyrus's lag follows its interval]
#   --load-clients N     IMAP load generator clients for the lag under load
#                        [default 10]; 0 skips it
#   --messages N         full sync and burst size [default 10000]
#   --intervals LIST     Cyrus sync_repeat_interval values to measure, in
#                        seconds [default "1 0": the default and the tuned]
#   --out DIR            keep every JSON report and the servers' logs
#   --skip-cyrus         measure slotmail only
#   --skip-slotmail      measure Cyrus only
#   --no-cyrus-lag       Cyrus: skip the lag runs
#   --no-cyrus-burst     Cyrus: skip the LMTP burst
#
# What it does:
#   1. makes (or takes) the corpus; builds slotmail (release);
#   2. slotmail: `slotmail bench repl` (master 127.0.0.1, replica 127.0.0.2,
#      separate processes): lag idle and under load, watched with IDLE
#      (the first run also does the full sync and the burst), then the same
#      lag runs watched by polling NOOP + UID FETCH every millisecond: the
#      method Cyrus needs, as its IDLE does not see replicated changes;
#   3. installs Debian's cyrus-common and sasl2-bin if missing, and unpacks
#      Debian's cyrus-imapd and cyrus-replication (of the same version)
#      into the working directory (`apt-get download`, `dpkg -x`): they
#      conflict with dovecot-imapd, which the other benchmarks use;
#   4. Cyrus: three private instances on 127.0.0.1 (own config, spool and
#      sockets under the working directory, own ports, each its `master`
#      started in the foreground and stopped by PID): a master with lmtpd,
#      sync_log and a rolling `sync_client -r` under DAEMON, a replica with
#      sync_server, and an empty second replica for the full sync; users in
#      a private sasldb; mailboxes created over IMAP as admin;
#   5. Cyrus, per interval: lag idle and under load (same client, same
#      options, polled), then the burst by LMTP;
#   6. Cyrus full sync: the full-sync user filled on the master, then timed
#      `sync_client -u full` into the empty replica, from the command's
#      start to the replica's STATUS showing every message;
#   7. prints the figures and the ratios Cyrus / slotmail (Markdown).
# Nothing is left running: every process is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

corpus="${CORPUS:-}"
generator="${CORPUS_GENERATOR:-}"
synthetic=0
count=2000
seed=20240601
dir="${BENCH_DIR:-}"
runs="${RUNS:-1}"
samples=100
slot_samples=200
slot_pause=200
pause=1000
load_clients=10
messages=10000
intervals="1 0"
out=""
skip_cyrus=0
skip_slotmail=0
cyrus_lag=1
cyrus_burst=1
max_bytes=102400

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
  case "$1" in
    --corpus) corpus="$2"; shift 2 ;;
    --generator) generator="$2"; shift 2 ;;
    --synthetic) synthetic=1; shift ;;
    --count) count="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --message-max-bytes) max_bytes="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --samples) samples="$2"; shift 2 ;;
    --slotmail-samples) slot_samples="$2"; shift 2 ;;
    --slotmail-pause-max-ms) slot_pause="$2"; shift 2 ;;
    --pause-max-ms) pause="$2"; shift 2 ;;
    --load-clients) load_clients="$2"; shift 2 ;;
    --messages) messages="$2"; shift 2 ;;
    --intervals) intervals="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --skip-cyrus) skip_cyrus=1; shift ;;
    --skip-slotmail) skip_slotmail=1; shift ;;
    --no-cyrus-lag) cyrus_lag=0; shift ;;
    --no-cyrus-burst) cyrus_burst=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
  esac
done

own_dir=""
if [ -z "$dir" ]; then
  dir="$(mktemp -d /var/tmp/slotmail-repl-bench.XXXXXX)"
  own_dir="$dir"
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
chmod 755 "$dir"
results="$dir/results"
mkdir -p "$results"

pids=()
cy_pid_m=""; cy_pid_r=""; cy_pid_e=""
stop_pid() { # pid
  local p="$1" i
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
stop_cyrus() {
  stop_pid "$cy_pid_m"; cy_pid_m=""
  stop_pid "$cy_pid_r"; cy_pid_r=""
  stop_pid "$cy_pid_e"; cy_pid_e=""
}
cleanup() {
  stop_cyrus
  if [ -n "$out" ]; then
    mkdir -p "$out"
    cp "$results"/*.json "$out"/ 2>/dev/null || true
    for x in m r e; do cp "$dir/cyrus/$x/master.log" "$out/cyrus-$x.log" 2>/dev/null || true; done
  fi
  if [ -n "$own_dir" ]; then rm -rf "$own_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Messages and build.
msg_args=()
if [ "$synthetic" = 1 ]; then
  msg_args=(--synthetic-bytes 2300)
else
  if [ -z "$corpus" ]; then
    if [ -z "$generator" ]; then
      echo "give --corpus FILE, --generator PATH/gen_corpus.py or --synthetic" >&2
      exit 2
    fi
    corpus="$dir/corpus-$count-$seed.mbox"
    echo "== generating the corpus: $count messages, seed $seed"
    python3 "$generator" "$corpus" --count "$count" --seed "$seed"
  fi
  corpus="$(cd "$(dirname "$corpus")" && pwd)/$(basename "$corpus")"
  msg_args=(--corpus "$corpus" --message-max-bytes "$max_bytes")
fi

echo "== building slotmail (release)"
cargo build --release --locked -p slotmail
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
slotmail="$target_dir/release/slotmail"

common=("${msg_args[@]}")
cmp_lag=(--samples "$samples" --pause-max-ms "$pause")

# 2. slotmail: IDLE-watched runs (its own method) and polled runs (the
# method Cyrus needs, since its IDLE does not see replicated changes).
if [ "$skip_slotmail" = 0 ]; then
  for w in idle poll; do
    for r in $(seq 1 "$runs"); do
      extra=(--full-sync 0 --burst 0 "${cmp_lag[@]}")
      if [ "$w" = idle ]; then extra=(--samples "$slot_samples" --pause-max-ms "$slot_pause"); fi
      if [ "$w" = idle ] && [ "$r" = 1 ]; then extra+=(--full-sync "$messages" --burst "$messages");
      elif [ "$w" = idle ]; then extra+=(--full-sync 0 --burst 0); fi
      echo "== slotmail ($w): run $r of $runs: lag (idle, under load) ${extra[*]}"
      "$slotmail" bench repl "${common[@]}" --watch "$w" --load-clients "$load_clients" "${extra[@]}" \
        --seed "$r" --dir "$dir/slotmail" --json "$results/slotmail-$w-r$r.json"
      rm -rf "$dir/slotmail"
    done
  done
fi

if [ "$skip_cyrus" = 0 ]; then
  # 3. Cyrus from Debian. cyrus-imapd and cyrus-replication conflict with
  # dovecot-imapd (both provide imap-server), which the IMAP and LMTP
  # benchmarks need on the same machine: installing them would remove
  # Dovecot. So cyrus-common (master, lmtpd, ctl_cyrusdb, libraries) and
  # sasl2-bin are installed with apt-get, and the two conflicting packages
  # are fetched with `apt-get download` (the version of cyrus-common) and
  # unpacked into the working directory; cyrus.conf names every program
  # by its full path.
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [ ! -x /usr/lib/cyrus/bin/master ] || ! command -v saslpasswd2 >/dev/null; then
    echo "== installing cyrus-common and sasl2-bin (Debian packages)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cyrus-common sasl2-bin >/dev/null
  fi
  cyver="$(dpkg-query -W -f '${Version}' cyrus-common)"
  pkg="$dir/cyrus-pkg"
  mkdir -p "$pkg"
  if ! (cd "$pkg" && apt-get download -q "cyrus-imapd=$cyver" "cyrus-replication=$cyver" >/dev/null 2>&1); then
    $SUDO apt-get update -qq
    (cd "$pkg" && apt-get download -q "cyrus-imapd=$cyver" "cyrus-replication=$cyver" >/dev/null 2>&1)
  fi
  for deb in "$pkg"/*.deb; do dpkg -x "$deb" "$pkg/root"; done
  chmod -R a+rX "$pkg"
  cyrbin=/usr/lib/cyrus/bin           # master, lmtpd, ctl_cyrusdb
  cyrpriv="$pkg/root/usr/lib/cyrus/bin"  # imapd, idled, sync_client, sync_server
  echo "== Cyrus $cyver"

  # 4. Three private instances.
  cy="$dir/cyrus"
  mkdir -p "$cy"
  m_imap=23143; m_lmtp=23024; r_imap=23144; r_sync=23205; e_imap=23145; e_sync=23206
  for u in admin lag burst full $(seq -f 'u%g' 1 20); do
    printf 'pw' | saslpasswd2 -p -c -f "$cy/sasldb2" -u replbench "$u"
  done
  write_conf() { # name imap-port lmtp-port sync-port role interval target-sync-port
    local n="$1" d="$cy/$1"
    mkdir -p "$d/spool" "$d/conf"
    for sub in db proc lock socket log sync quota user sieve msg ptclient; do mkdir -p "$d/conf/$sub"; done
    cat >"$d/imapd.conf" <<EOF
configdirectory: $d/conf
partition-default: $d/spool
servername: replbench
admins: admin
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $cy/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
altnamespace: yes
unixhierarchysep: yes
lmtpsocket: $d/conf/socket/lmtp
idlesocket: $d/conf/socket/idle
notifysocket: $d/conf/socket/notify
syslog_prefix: replbench-$n
EOF
    if [ "$5" = master ]; then
      cat >>"$d/imapd.conf" <<EOF
sync_log: 1
sync_host: 127.0.0.1
sync_port: $7
sync_try_imap: no
sync_authname: admin
sync_password: pw
sync_repeat_interval: $6
sync_reconnect_maxwait: 5s
EOF
      # The same master, pointed at the empty replica: for `sync_client -u`.
      sed "s/^sync_port: .*/sync_port: $e_sync/" "$d/imapd.conf" >"$d/imapd-full.conf"
      cat >"$d/cyrus.conf" <<EOF
START { recover cmd="$cyrbin/ctl_cyrusdb -C $d/imapd.conf -r" }
SERVICES {
  imap cmd="$cyrpriv/imapd -C $d/imapd.conf" listen="127.0.0.1:$2" prefork=2
  lmtp cmd="$cyrbin/lmtpd -C $d/imapd.conf -a" listen="127.0.0.1:$3" prefork=1
}
EVENTS { checkpoint cmd="$cyrbin/ctl_cyrusdb -C $d/imapd.conf -c" period=30 }
DAEMON {
  idled cmd="$cyrpriv/idled -C $d/imapd.conf"
  syncclient cmd="$cyrpriv/sync_client -C $d/imapd.conf -r"
}
EOF
    else
      cat >"$d/cyrus.conf" <<EOF
START { recover cmd="$cyrbin/ctl_cyrusdb -C $d/imapd.conf -r" }
SERVICES {
  imap cmd="$cyrpriv/imapd -C $d/imapd.conf" listen="127.0.0.1:$2" prefork=2
  syncserver cmd="$cyrpriv/sync_server -C $d/imapd.conf" listen="127.0.0.1:$4" prefork=1
}
EVENTS { checkpoint cmd="$cyrbin/ctl_cyrusdb -C $d/imapd.conf -c" period=30 }
DAEMON {
  idled cmd="$cyrpriv/idled -C $d/imapd.conf"
}
EOF
    fi
  }
  start_cyrus() { # name port -> sets cy_pid_<name>
    local n="$1" d="$cy/$1"
    "$cyrbin/master" -C "$d/imapd.conf" -M "$d/cyrus.conf" -p "$d/master.pid" -l 64 >>"$d/master.log" 2>&1 &
    local pid=$!
    case "$n" in m) cy_pid_m=$pid ;; r) cy_pid_r=$pid ;; e) cy_pid_e=$pid ;; esac
    local i
    for i in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || { echo "Cyrus $n exited; its log:" >&2; tail -20 "$d/master.log" >&2; return 1; }
      (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
      sleep 0.1
    done
    echo "Cyrus $n does not listen on $2" >&2
    return 1
  }
  imap_admin() { # port python-body
    python3 - "$1" <<PY
import imaplib, sys
c = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
c.login('admin', 'pw')
$2
c.logout()
PY
  }
  cyrus_bench() { # label args...
    local label="$1"; shift
    "$slotmail" bench repl --master "127.0.0.1:$m_imap" --replica "127.0.0.1:$r_imap" \
      --master-lmtp "127.0.0.1:$m_lmtp" --lmtp-rcpt '%u' --dir "$dir/cyrus-bench" \
      "${common[@]}" --watch poll "$@" --json "$results/cyrus-$label.json"
  }

  first=1
  for iv in $intervals; do
    stop_cyrus
    rm -rf "$cy/m" "$cy/r" "$cy/e"
    write_conf m "$m_imap" "$m_lmtp" "" master "${iv}s" "$r_sync"
    write_conf r "$r_imap" "" "$r_sync" replica
    write_conf e "$e_imap" "" "$e_sync" replica
    chown -R cyrus:mail "$cy"
    start_cyrus r "$r_imap"
    start_cyrus e "$e_imap"
    start_cyrus m "$m_imap"
    echo "== Cyrus (sync_repeat_interval ${iv}s): creating mailboxes"
    imap_admin "$m_imap" "
for u in ['lag', 'burst', 'full'] + ['u%d' % i for i in range(1, 21)]:
    typ, data = c.create('user/' + u)
    assert typ == 'OK', (u, data)
"
    # Until the rolling replica has them all.
    python3 - "$r_imap" <<'PY'
import imaplib, sys, time
t = time.time()
while True:
    try:
        c = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); c.login('admin', 'pw')
        n = len([l for l in c.list('""', 'user/*')[1] if l])
        c.logout()
        if n >= 23: break
    except Exception:
        pass
    if time.time() - t > 60: sys.exit('the Cyrus replica did not get the mailboxes within 60 s')
    time.sleep(0.2)
PY
    for r in $(seq 1 "$runs"); do
      [ "$cyrus_lag" = 1 ] || break
      echo "== Cyrus (interval ${iv}s): lag run $r of $runs"
      cyrus_bench "i$iv-r$r" "${cmp_lag[@]}" --load-clients "$load_clients" --full-sync 0 --burst 0 --seed "$r"
    done
    [ "$cyrus_burst" = 1 ] && echo "== Cyrus (interval ${iv}s): burst of $messages LMTP deliveries" &&
    cyrus_bench "i$iv-burst" --samples 0 --load-clients 0 --no-idle-lag --full-sync 0 --burst "$messages"
    if [ "$first" = 1 ]; then
      first=0
      # 6. Full sync into the empty replica.
      echo "== Cyrus: filling the full-sync user with $messages messages"
      cyrus_bench fill --samples 0 --load-clients 0 --no-idle-lag --burst 0 \
        --full-sync "$messages" --fill-only
      sleep 5
      echo "== Cyrus: sync_client -u full into the empty replica"
      "$slotmail" bench repl --master "127.0.0.1:$m_imap" --replica "127.0.0.1:$r_imap" \
        --full-sync-replica "127.0.0.1:$e_imap" --dir "$dir/cyrus-bench" "${common[@]}" --watch poll \
        --samples 0 --load-clients 0 --no-idle-lag --burst 0 --full-sync "$messages" \
        --full-sync-command "runuser -u cyrus -- $cyrpriv/sync_client -C $cy/m/imapd-full.conf -u full" \
        --json "$results/cyrus-fullsync.json"
    fi
  done
  stop_cyrus
fi

# 7. Summary.
echo
echo "== summary"
python3 - "$results" <<'PY'
import json, math, os, sys
res = sys.argv[1]
def load(n):
    p = os.path.join(res, n)
    return json.load(open(p)) if os.path.exists(p) else None
def rank(v, p):
    v = sorted(v)
    return v[max(1, min(len(v), math.ceil(p * len(v)))) - 1] if v else None
def pooled(files, under_load):
    out = {}
    for f in files:
        r = load(f)
        for ph in (r or {}).get('lag', []):
            if ph['under_load'] != under_load: continue
            for k in ph['kinds']:
                out.setdefault(k['kind'], []).extend(k['samples_ms'])
    return out
files = sorted(f for f in os.listdir(res) if f.endswith('.json'))
first = next((load(f) for f in files), None)
if first:
    m = first['machine']
    print(f"machine: {m['nproc']} vCPU {m.get('cpu')}, {m.get('memory_mib')} MiB, kernel {m.get('kernel')}, {m['date']}")
    print()
systems = [('slotmail, IDLE', [f for f in files if f.startswith('slotmail-idle-r')]),
           ('slotmail, polled', [f for f in files if f.startswith('slotmail-poll-r')])]
for iv in sorted({f.split('-')[1] for f in files if f.startswith('cyrus-i') and '-r' in f}, reverse=True):
    systems.append((f'Cyrus {iv[1:]} s, polled', [f for f in files if f.startswith(f'cyrus-{iv}-r')]))
fmt = lambda x: '–' if x is None else f'{x:.1f}'
base = {}
print('| system | load | kind | n | p50 ms | p99 ms | max ms | p50 / slotmail polled | p99 / slotmail polled |')
print('|---|---|---|---|---|---|---|---|---|')
for name, fs in systems:
    for ul in (False, True):
        for kind, v in pooled(fs, ul).items():
            p50, p99, mx = rank(v, .5), rank(v, .99), max(v)
            if name == 'slotmail, polled': base[(ul, kind)] = (p50, p99)
            b = base.get((ul, kind)) if name.startswith('Cyrus') else None
            r50 = f'{p50 / b[0]:.0f}×' if b and b[0] else ''
            r99 = f'{p99 / b[1]:.0f}×' if b and b[1] else ''
            print(f"| {name} | {'load' if ul else 'idle'} | {kind} | {len(v)} | {fmt(p50)} | {fmt(p99)} | {fmt(mx)} | {r50} | {r99} |")
print()
for f in files:
    r = load(f)
    for ph in r.get('lag', []):
        if ph.get('load'):
            l = ph['load']
            print(f"load during {f[:-5]}: {l['clients']} clients, {l['sessions_per_s']:.0f} sessions/s, {l['commands_per_s']:.0f} commands/s, {l['errors']} errors, machine {l['machine_busy_pct']:.0f} % busy")
    b = r.get('burst')
    if b:
        print(f"burst {f[:-5]}: {b['messages']} LMTP deliveries in {b['deliver_secs']:.1f} s ({b['deliver_per_s']:.0f}/s); replica complete {b['complete_after_last_ms']:.1f} ms after the last 250 (replica holds {b['replica_messages']})")
sf = (load('slotmail-idle-r1.json') or {}).get('full_sync')
cf = (load('cyrus-fullsync.json') or {}).get('full_sync')
for name, f in (('slotmail', sf), ('Cyrus', cf)):
    if f:
        print(f"full sync {name}: {f['messages']} messages, {f['bytes']/1e6:.1f} MB in {f['sync_secs']:.2f} s = {f['messages_per_s']:.0f} msg/s, {f['mb_per_s']:.1f} MB/s (verified: {f['verified']})")
if sf and cf:
    print(f"full sync time Cyrus / slotmail = {cf['sync_secs'] / sf['sync_secs']:.2f}× (target ≥ 2×)")
PY
