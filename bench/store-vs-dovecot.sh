#!/usr/bin/env bash
# The store benchmark side by side with Dovecot, on the same corpus and disk.
#
# Usage:
#   bench/store-vs-dovecot.sh (--corpus FILE | --generator GEN_CORPUS_PY) [options]
#
# The corpus (an mbox) is either given (--corpus, or CORPUS=FILE) or made with
# the corpus generator (--generator PATH/gen_corpus.py, or
# CORPUS_GENERATOR=...), with --count messages (default 2000) and --seed
# (default 20240601).
#
# Options (environment variable in brackets):
#   --dir DIR              parent directory of every store, ours and Dovecot's
#                          [BENCH_DIR, default: a new directory under /var/tmp];
#                          both sides write to the same file system
#   --runs N               runs; medians are reported [RUNS, default 3]
#   --select-messages N    size of the open/select mailbox [default 100000]
#   --select-fill MODE     copy (default: 2000 messages appended, the rest
#                          copies) or append (every message appended; slow)
#   --fsync-modes LIST     Dovecot mail_fsync modes to run [default optimized,always]
#   --out DIR              write the runs' JSON there as well
#   --nice N               run both sides at this CPU priority (e.g. -10, as
#                          root) so that other jobs on a shared machine take
#                          less of their CPU time [default 0: unchanged]
#
# What it does:
#   1. makes (or takes) the corpus;
#   2. installs Dovecot from Debian if doveadm is missing
#      (apt-get install dovecot-core dovecot-imapd);
#   3. builds the store bench (cargo build --release -p slotmail-bench
#      --example store_bench);
#   4. runs bench/store_vs_dovecot.py: per run, our store bench, then a
#      standalone Dovecot (sdbox; own config, base_dir and passwd-file user
#      under the bench directory; no master process, no listener) for each
#      mail_fsync mode, then Dovecot's open/select of a large mailbox;
#   5. prints the medians and the ratios ours / Dovecot.
# Nothing is left behind: every store and Dovecot directory is removed; no
# Dovecot daemon is started (doveadm and imap run as plain child processes).
set -euo pipefail
cd "$(dirname "$0")/.."

corpus="${CORPUS:-}"
generator="${CORPUS_GENERATOR:-}"
count=2000
seed=20240601
dir="${BENCH_DIR:-}"
runs="${RUNS:-3}"
select_messages=100000
select_fill=copy
fsync_modes=optimized,always
out=""
nice=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
  case "$1" in
    --corpus) corpus="$2"; shift 2 ;;
    --generator) generator="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --select-messages) select_messages="$2"; shift 2 ;;
    --select-fill) select_fill="$2"; shift 2 ;;
    --fsync-modes) fsync_modes="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --nice) nice="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
  esac
done

own_dir=""
if [ -z "$dir" ]; then
  dir="$(mktemp -d /var/tmp/slotmail-bench.XXXXXX)"
  own_dir="$dir"
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
cleanup() { if [ -n "$own_dir" ]; then rm -rf "$own_dir"; fi; }
trap cleanup EXIT

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
if ! command -v doveadm >/dev/null || [ ! -x /usr/lib/dovecot/imap ]; then
  echo "== installing Dovecot (Debian packages)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dovecot-core dovecot-imapd >/dev/null
fi

# 3. Our bench.
echo "== building the store bench"
cargo build --release --locked -p slotmail-bench --example store_bench
bench_bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/store_bench"

# 4. and 5.
args=(--corpus "$corpus" --dir "$dir" --bench-bin "$bench_bin" --runs "$runs"
      --select-messages "$select_messages" --select-fill "$select_fill" --fsync-modes "$fsync_modes")
[ -n "$out" ] && args+=(--out "$out")
runner=()
[ "$nice" != 0 ] && runner=(nice -n "$nice")
"${runner[@]}" python3 bench/store_vs_dovecot.py "${args[@]}"
