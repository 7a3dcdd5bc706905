#!/usr/bin/env bash
# The whole test suite: unit, table and property tests of every crate, and the scenario tests
# in tests/ (a real daemon, real zoo processes, temp dirs). Scenario tests need the binaries,
# so they are built first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's systemd package gives the real `systemd-notify` the notify tests drive (no systemd
# needs to run). Installed where we are root on Debian; elsewhere those tests say "skipped".
if ! command -v systemd-notify >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's systemd package (for systemd-notify)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1; } \
    || echo "could not install systemd; the systemd-notify tests will say so"
fi
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  echo "cargo-nextest not found; using cargo test"
  cargo test --workspace --no-fail-fast
fi
# candor-sdk is a library for others: its examples are doc tests (nextest does not run those),
# and it must package and build on its own as it would be published.
cargo test --doc -p candor-sdk --all-features
cargo package -p candor-sdk --allow-dirty --quiet
