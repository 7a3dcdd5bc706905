#!/usr/bin/env bash
# Crash -> restart latency: a service that runs 1 s and exits 1, 20 cycles, with
# backoff.reset_after = 500ms so that every run counts as good (restart is immediate).
# The service stamps its own start and exit (candor-zoo --stamp); we report p50/p99 of the
# gap from each exit to the next start.
#
# usage: bench/restart_latency.sh [cycles]     (builds release binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${1:-20}"
cargo build --release --bins -q
bin="$PWD/target/release"
work="$(mktemp -d /tmp/candor-bench.XXXXXX)"
trap '"$bin/candor" --socket "$work/s.sock" shutdown >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cat > "$work/candor.toml" <<TOML
[daemon]
state_dir = "$work/state"

[service.crasher]
command = ["$bin/candor-zoo", "crash-loop", "--after", "1s", "--code", "1", "--stamp", "$work/stamps"]
backoff = { initial = "100ms", max = "30s", reset_after = "500ms" }
TOML
"$bin/candor" daemon -c "$work/candor.toml" --socket "$work/s.sock" >"$work/daemon.log" 2>&1 &
need=$((cycles + 1))
deadline=$((SECONDS + cycles * 2 + 30))
while [ "$(grep -c '^start' "$work/stamps" 2>/dev/null || echo 0)" -lt "$need" ]; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "timed out; daemon log:"; cat "$work/daemon.log"; exit 1; }
  sleep 0.2
done
python3 - "$work/stamps" "$cycles" <<'PY'
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
print(f"crash->restart gap over {len(gaps)} cycles (ms): p50 {pct(50):.2f}  p99 {pct(99):.2f}  min {gaps[0]:.2f}  max {gaps[-1]:.2f}")
PY
