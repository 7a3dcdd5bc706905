#!/usr/bin/env bash
# The whole test suite: unit, table and property tests of every crate, and the scenario tests
# in tests/ (a real daemon, real zoo processes, temp dirs). Scenario tests need the binaries,
# so they are built first.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  echo "cargo-nextest not found; using cargo test"
  cargo test --workspace --no-fail-fast
fi
