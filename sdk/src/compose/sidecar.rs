//! The sidecar container's entrypoint and the containers' health checks: small bash programs
//! (both the official Envoy image and meshkit's images have bash; no curl is needed: bash
//! speaks HTTP/1.1 over `/dev/tcp`). Every `$` is doubled for Compose's interpolation.

use super::escape;
use crate::model::{DrainTiming, Service};

/// `bash -c` runs Envoy in the background and, on SIGTERM (`docker compose stop`), drains it
/// before stopping it (see the module docs of [`super`]): health check failed, a wait for
/// callers to notice, listeners draining, a wait for requests already on their way, then
/// until no inbound request is in flight (at most the app's timeout).
pub(super) fn entrypoint(service: &Service, concurrency: u32, drain: &DrainTiming) -> Vec<String> {
    let admin = service.sidecar.admin_port;
    let script = format!(
        r#"envoy -c {dir}/envoy.json --concurrency {concurrency} --drain-time-s {drain_s} --drain-strategy immediate --file-flush-interval-msec 100 --log-level info &
pid=$!
post() {{
  exec 3<>/dev/tcp/127.0.0.1/{admin} || return
  printf 'POST %s HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n' "$1" >&3
  read -r -t 2 status <&3
  echo "meshkit: POST $1: $status" >&2
  exec 3<&-
}}
active() {{
  exec 3<>/dev/tcp/127.0.0.1/{admin} || return
  printf 'GET /stats?filter=downstream_rq_active HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n' >&3
  local line n=
  while IFS= read -r -t 2 line <&3; do
    case $line in http.inbound.downstream_rq_active:*) n=${{line##* }}; n=${{n%$'\r'}};; esac
  done
  exec 3<&-
  echo "$n"
}}
draining=
drain() {{
  draining=1
  post /healthcheck/fail
  sleep {notice}
  post '/drain_listeners?graceful&inboundonly'
  sleep {settle}
  # Until none is in flight (a poll that fails is tried again), while Envoy runs, for at
  # most the app's timeout (SECONDS counts whole seconds: one more).
  until_s=$((SECONDS + {in_flight_s} + 1))
  while :; do
    n=$(active)
    [[ $n == 0 ]] && break
    kill -0 "$pid" 2>/dev/null && (( SECONDS < until_s )) || break
    sleep 0.1
  done
  echo "meshkit: inbound requests in flight at stop: ${{n:-unknown}}" >&2
  kill -TERM "$pid"
}}
trap drain TERM
wait "$pid"
code=$?
if [ -n "$draining" ]; then wait "$pid"; code=$?; fi
exit "$code"
"#,
        dir = super::CONFIG_DIR,
        drain_s = (drain.listener_drain_time().as_secs_f64().ceil() as u64).max(1),
        notice = drain.notice.as_secs_f64(),
        settle = drain.settle.as_secs_f64(),
        in_flight_s = service.app.timeout.as_secs_f64().ceil() as u64,
    );
    vec!["/bin/bash".into(), "-c".into(), escape(&script)]
}

/// Healthy once Envoy's admin says it is ready (`GET /ready` answers 200).
pub(super) fn ready_check(admin_port: u16) -> Vec<String> {
    let script = format!(
        r#"exec 3<>/dev/tcp/127.0.0.1/{admin_port} && printf 'GET /ready HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n' >&3 && read -r status <&3 && [[ $status == *' 200 '* ]]"#
    );
    vec![
        "CMD".into(),
        "/bin/bash".into(),
        "-c".into(),
        escape(&script),
    ]
}

/// Healthy once something accepts connections on `port`.
pub(super) fn port_open_check(port: u16) -> Vec<String> {
    vec![
        "CMD".into(),
        "/bin/bash".into(),
        "-c".into(),
        format!("exec 3<>/dev/tcp/127.0.0.1/{port}"),
    ]
}
