#!/usr/bin/env bash
# The test command (README: "Run the tests"). Installs what the tests need,
# then runs formatting and lint gates and the whole test suite.
#
# Independent clients the end-to-end tests drive (never only our own code):
#   python3 (imaplib, smtplib.LMTP: standard library), isync (mbsync).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
command -v mbsync >/dev/null || need_apt+=(isync)
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
# libfaketime: a replication test runs slots with their clocks offset.
command -v faketime >/dev/null || need_apt+=(faketime)
# The chaos test's full disk: mount -t tmpfs (as root).
command -v mount >/dev/null || need_apt+=(mount)
# Postfix (tests/postfix.rs runs a private instance; the system one stays
# unconfigured and stopped).
[ -x /usr/sbin/postfix ] || need_apt+=(postfix)
if ((${#need_apt[@]})); then
  echo "== installing: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [[ " ${need_apt[*]} " == *" postfix "* ]]; then
    # "No configuration": no /etc/postfix/main.cf, so Debian starts no
    # system Postfix (nothing on port 25).
    printf '%s\n' \
      'postfix postfix/main_mailer_type select No configuration' \
      'postfix postfix/mailname string slotmail.test' | $SUDO debconf-set-selections
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Should the install have started a system Postfix all the same, stop that
  # one (by its PID), so nothing of ours listens on port 25.
  pidfile=/var/spool/postfix/pid/master.pid
  if [[ " ${need_apt[*]} " == *" postfix "* ]] && [ -r "$pidfile" ]; then
    pid=$(tr -dc 0-9 <"$pidfile")
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = master ]; then
      echo "== stopping the system Postfix the install started (pid $pid)"
      $SUDO kill -TERM "$pid"
    fi
  fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build (the binary the end-to-end tests start)"
cargo build --workspace --locked
echo "== tests"
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
echo "== all tests passed"
