#!/usr/bin/env bash
# Fuzz the config parser and the HTTP API with cargo-fuzz (libFuzzer; needs a nightly
# toolchain). Usage: scripts/fuzz.sh [SECONDS per target, default 600] [TARGET...]
# Installs cargo-fuzz when missing. New inputs go to fuzz/corpus/<target>; a crash is saved
# under fuzz/artifacts/<target>/ and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(config api)
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
    echo "== fuzz $t for ${secs}s"
    cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=8192 2>&1 \
        | grep -E '^(#[0-9]+ +DONE|Done|==[0-9]+==|SUMMARY|thread .* panicked)' || true
    # libFuzzer exits non-zero on a crash; pipefail is off for the grep, so check artifacts.
    if compgen -G "artifacts/$t/crash-*" >/dev/null; then
        echo "fuzz $t: crash saved in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
