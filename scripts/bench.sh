#!/usr/bin/env bash
# The per-request cost benchmark: builds the no-op filter and the harness (release), then runs
# bare Envoy, the no-op filter and meshkit (success and error paths) interleaved on a 2-hop
# path and prints the table. Arguments go to meshkit-bench (e.g. --rounds 6, --short).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
printf '\033[1m==> %s\033[0m\n' "no-op filter (.wasm) and the benchmark harness (release)" >&2
cargo build --release --locked --target wasm32-wasip1 -p noop-filter
cargo build --release --locked -p meshkit-bench -p meshkit-cli
exec target/release/meshkit-bench "$@"
