#!/usr/bin/env bash
# Crash -> restart latency: a service that runs 1 s and exits 1, 20 cycles, with
# backoff.reset_after = 500ms so that every run counts as good (restart is immediate).
# The service stamps its own start and exit (candor-zoo --stamp); we report p50/p99 of the
# gap from each exit to the next start.
#
# With --runit, the same service under runit's runsv instead (Debian's runit package,
# installed when missing and root), for a pair measured on the same machine in the same run.
#
# usage: bench/restart_latency.sh [--runit] [cycles]     (builds release binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."
runit=0
if [ "${1:-}" = "--runit" ]; then runit=1; shift; fi
cycles="${1:-20}"
cargo build --release --bins -q
bin="$PWD/target/release"
work="$(mktemp -d /tmp/candor-bench.XXXXXX)"
need=$((cycles + 1))
deadline=$((SECONDS + cycles * 2 + 30))
if [ "$runit" = 1 ]; then
  if ! command -v runsv >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "runsv not found (apt-get install runit)"; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends runit >/dev/null
  fi
  mkdir -p "$work/sv/crasher"
  printf '#!/bin/sh\nexec "%s/candor-zoo" crash-loop --after 1s --code 1 --stamp "%s/stamps"\n' "$bin" "$work" > "$work/sv/crasher/run"
  chmod +x "$work/sv/crasher/run"
  runsv "$work/sv/crasher" >"$work/daemon.log" 2>&1 &
  runsv_pid=$!
  trap 'sv -w 5 force-stop "$work/sv/crasher" >/dev/null 2>&1 || true; kill "$runsv_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
else
trap '"$bin/candor" --socket "$work/s.sock" shutdown >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cat > "$work/candor.toml" <<TOML
[daemon]
state_dir = "$work/state"

[service.crasher]
command = ["$bin/candor-zoo", "crash-loop", "--after", "1s", "--code", "1", "--stamp", "$work/stamps"]
backoff = { initial = "100ms", max = "30s", reset_after = "500ms" }
TOML
"$bin/candor" daemon -c "$work/candor.toml" --socket "$work/s.sock" >"$work/daemon.log" 2>&1 &
fi
while [ "$(grep -c '^start' "$work/stamps" 2>/dev/null || echo 0)" -lt "$need" ]; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "timed out; daemon log:"; cat "$work/daemon.log"; exit 1; }
  sleep 0.2
done
python3 - "$work/stamps" "$cycles" "$([ "$runit" = 1 ] && echo runit || echo candor)" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
cycles = int(sys.argv[2])
gaps = []
for a, b in zip(rows, rows[1:]):
    if a[0] == "exit" and b[0] == "start":
        gaps.append((int(b[1]) - int(a[1])) / 1e6)
gaps = sorted(gaps[:cycles])
def pct(p):
    k = max(0, min(len(gaps) - 1, round(p / 100 * (len(gaps) - 1))))
    return gaps[k]
print(f"{sys.argv[3]}: crash->restart gap over {len(gaps)} cycles (ms): p50 {pct(50):.2f}  p99 {pct(99):.2f}  min {gaps[0]:.2f}  max {gaps[-1]:.2f}")
PY
