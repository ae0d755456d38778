#!/usr/bin/env bash
# The example mesh in containers: builds the images from local files (scripts/compose-images.sh;
# nothing is pulled), generates the Compose project from envoy/mesh.yaml into .meshkit/compose,
# starts it, sends the demo traffic (a request that succeeds and one that fails at users), prints
# the access log lines of both, and takes the project down again (--keep leaves it running).
#
# Needs a Docker engine and docker-compose. `meshkit up` (the quick start) needs neither.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
[ "${1:-}" = "--keep" ] && keep=true

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

scripts/setup.sh
scripts/compose-images.sh
export MESHKIT_ENVOY_IMAGE=${MESHKIT_ENVOY_IMAGE:-meshkit-envoy:1.40.0}
export MESHKIT_DEMO_IMAGE=${MESHKIT_DEMO_IMAGE:-meshkit-demo:local}
export MESHKIT_ENTRY_PORT=${MESHKIT_ENTRY_PORT:-18001}

out=.meshkit/compose
say "meshkit generate envoy/mesh.yaml --compose $out"
target/debug/meshkit generate envoy/mesh.yaml --compose "$out" >/dev/null
project=meshkit-demo
compose() { (cd "$out" && docker-compose --ansi never -p "$project" "$@"); }
$keep || trap 'say "docker-compose down"; compose down --volumes --remove-orphans >/dev/null 2>&1' EXIT

say "docker-compose up -d"
compose up -d
say "waiting for every container to be healthy"
deadline=$((SECONDS + 120))
while :; do
  # Every container has a health check; one without would show "none", not healthy.
  ids=$(compose ps -q)
  unhealthy=$( [ -n "$ids" ] && docker inspect --format '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids | grep -v ' healthy$' || true)
  [ -n "$ids" ] && [ -z "$unhealthy" ] && break
  if [ $SECONDS -gt $deadline ]; then echo "not healthy: $unhealthy" >&2; compose logs --tail 20 >&2; exit 1; fi
  sleep 0.5
done

entry=http://127.0.0.1:$MESHKIT_ENTRY_PORT/
say "GET $entry (every hop succeeds)"
curl -sS -H 'x-request-id: compose-demo-ok' "$entry"; echo
say "GET $entry with x-demo: users.status=503;users.code=CM503001 (users fails)"
curl -sS -H 'x-request-id: compose-demo-fail' -H 'x-demo: users.status=503;users.code=CM503001' "$entry"; echo

say "access log lines of both requests (one per hop)"
for id in compose-demo-ok compose-demo-fail; do
  for _ in $(seq 1 50); do
    lines=$(compose logs --no-color --no-log-prefix | grep "\"request_id\":\"$id\"" || true)
    [ "$(printf '%s\n' "$lines" | grep -c .)" -ge 5 ] && break
    sleep 0.2
  done
  printf '%s\n' "$lines"
done
$keep && say "left running: (cd $out && docker-compose -p $project down) stops it"
