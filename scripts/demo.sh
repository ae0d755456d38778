#!/usr/bin/env bash
# Quick start, command 1: set up, regenerate the example mesh's config, run the mesh with real
# Envoy, send one successful request and one that fails at `users`, print every access log
# line, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
printf '\033[1m==> %s\033[0m\n' "generate envoy/generated from envoy/mesh.yaml" >&2
target/debug/meshkit generate envoy/mesh.yaml -o envoy/generated >/dev/null
printf '\033[1m==> %s\033[0m\n' "run the mesh (access log JSON on stdout)" >&2
exec target/debug/meshkit up envoy/mesh.yaml --demo "$@"
