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
if ((${#need_apt[@]})); then
  echo "== installing: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
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
