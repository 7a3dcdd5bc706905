#!/usr/bin/env bash
# The whole test suite: unit, table and property tests of every crate, and the scenario tests
# in tests/ (a real daemon, real zoo processes, temp dirs). Scenario tests need the binaries,
# so they are built first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's packages the tests drive: systemd for the real `systemd-notify` (no systemd needs
# to run), python3-prometheus-client for a real parser of /metrics, tmux to drive `candor top`,
# chromium for the dashboard (driven by npm's playwright-core, installed in tests/browser).
# gunicorn, a real program that takes held sockets (LISTEN_FDS) and says READY=1, for replicas.
# rsyslog, a real syslog receiver (Unix socket, UDP, TCP) for log forwarding; systemd's
# systemd-journald runs as the journald receiver in a mount namespace of its own.
# Installed where we are root on Debian; elsewhere those tests say "skipped".
need=()
command -v systemd-notify >/dev/null 2>&1 || need+=(systemd)
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || need+=(python3-prometheus-client)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v gunicorn >/dev/null 2>&1 || need+=(gunicorn)
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ "${#need[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; } \
    || echo "could not install ${need[*]}; the tests that need them will say so"
fi
if [ ! -d tests/browser/node_modules/playwright-core ] && command -v npm >/dev/null 2>&1; then
  echo "installing npm's playwright-core in tests/browser (for the dashboard test)"
  (cd tests/browser && npm ci --no-audit --no-fund --silent) \
    || echo "could not install playwright-core; the browser test will say so"
fi
# PyPI's kubernetes-validate (the Kubernetes JSON schemas of 1.25-1.37; --strict rejects unknown
# fields) for the `candor export kubernetes` test: a venv in target/, made once (a 23 MB
# download, 144 MB unpacked, ~7 s).
kv=target/kubernetes-validate
if ! "$kv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  echo "installing PyPI's kubernetes-validate in $kv (for the export kubernetes test)"
  { python3 -m venv "$kv" \
      && "$kv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0; } >/dev/null 2>&1 \
    || echo "could not install kubernetes-validate; the export kubernetes test will say so"
fi
export CANDOR_KUBERNETES_VALIDATE="$PWD/$kv/bin/kubernetes-validate"
# PyPI's opentelemetry-proto (and protobuf) for the OTLP forwarding test's receiver, which
# decodes each request with the project's own generated classes: a venv in target/, made once.
op=target/otlp-proto
if ! "$op/bin/python" -c 'import opentelemetry.proto.collector.logs.v1.logs_service_pb2' >/dev/null 2>&1; then
  echo "installing PyPI's opentelemetry-proto in $op (for the OTLP forwarding test)"
  { python3 -m venv "$op" \
      && "$op/bin/pip" install -q --disable-pip-version-check opentelemetry-proto==1.45.2; } >/dev/null 2>&1 \
    || echo "could not install opentelemetry-proto; the OTLP forwarding tests will say so"
fi
export CANDOR_OTLP_PYTHON="$PWD/$op/bin/python"
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  echo "cargo-nextest not found; using cargo test"
  cargo test --workspace --no-fail-fast
fi
# candor-sdk is a library for others: its examples are doc tests (nextest does not run those).
# Every crate must package and build on its own as it would be published.
echo "doc tests of candor-sdk"
cargo test --doc -p candor-sdk --all-features
# cargo verifies each package against the others' new tarballs, unpacked into
# $CARGO_HOME/registry/src beside real downloads — and keeps an unpacked copy from an earlier
# run of the same version instead of the new one, and its build of them too (a registry
# crate of one version is taken never to change). Our own crates are never real downloads:
# remove those copies and builds so that the check builds what is being packaged.
for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/candor-*-[0-9]*; do
  [ -d "$d" ] && [ -f "crates/$(basename "$d" | sed 's/-[0-9][0-9.]*$//')/Cargo.toml" ] && rm -rf "$d"
done
rm -rf target/debug/.fingerprint/candor-*
echo "packaging every crate and building each from its package alone (cargo package; a few minutes)"
cargo package --workspace --allow-dirty --quiet
echo "all tests passed"
