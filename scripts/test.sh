#!/usr/bin/env bash
# Quick start, command 2: set up, then run every check and test: formatting, clippy, unit tests
# (native), the filter core on wasm32 (wasm-bindgen-test, node), integration tests against
# real Envoy with the built .wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# wasm-bindgen-test-runner must match the wasm-bindgen version in Cargo.lock exactly.
WBG_VERSION=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [ "$(.tools/bin/wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}')" != "$WBG_VERSION" ]; then
  say "wasm-bindgen-cli $WBG_VERSION into .tools"
  # Not --locked: its lockfile pins a webpki-roots release the registry no longer serves.
  cargo install --quiet wasm-bindgen-cli --version "$WBG_VERSION" --root .tools
fi

# Debian packages some tests drive for real: Prometheus and promtool (the generated dashboards
# and alert rules), tmux (a terminal for `meshkit top`).
missing=()
[ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || missing+=(prometheus)
command -v tmux >/dev/null || missing+=(tmux)
if [ ${#missing[@]} -gt 0 ]; then
  say "Debian packages: ${missing[*]}"
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || { "${sudo[@]}" apt-get update >/dev/null && "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (native, and the filter for wasm32-wasip1)"
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked -p meshkit-filter -p noop-filter --target wasm32-wasip1 -- -D warnings

say "filter core tests on wasm32 (wasm-bindgen-test, node)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$PWD/.tools/bin/wasm-bindgen-test-runner" \
  cargo test --locked -p meshkit-filter --target wasm32-unknown-unknown

say "unit and CLI tests"
cargo test --locked --workspace --exclude meshkit-tests
say "integration tests against real Envoy (measured figures are printed)"
cargo test --locked -p meshkit-tests -- --nocapture

# The benchmark in its short mode (debug build, one quick round: proves it runs, so it cannot
# rot; its figures mean nothing here). scripts/bench.sh runs the real thing.
say "benchmark, short mode"
cargo build --release --locked --target wasm32-wasip1 -p noop-filter
cargo build --locked -p meshkit-bench -p meshkit-cli
target/debug/meshkit-bench --short
