#!/usr/bin/env bash
# Starts and stops the platform's own processes for `make run`: per hub its
# aggregate processor, projector and gRPC server; the webhook ingress; the
# Message Hub's router; the REST API gateway; every spoke; and, for development,
# local stand-ins of Facebook, Botpress and Odoo. Background processes with PID
# files and logs under .run/. Touches only processes whose PID files it wrote.
#
# POSEIDON_LAYOUT=small (the default) runs every role in one process (`poseidon
# together --all`, the small footprint of one machine); POSEIDON_LAYOUT=roles runs
# one process per role, as production does (one role per pod).
# POSEIDON_INSTANCES=N (default 1; N > 1 implies LAYOUT=roles) starts N of every role that shares its work
# through Kafka consumer groups (processors, projectors, router, saga driver,
# spokes), and N ingresses and N API gateways on consecutive ports from
# POSEIDON_INGRESS_PORT and POSEIDON_GATEWAY_PORT (put a load balancer in front). Instance 2 and up take any free ops port (see their
# logs); gRPC servers and the dashboard stay single here: more of them need
# their own ports behind a load balancer.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUN=$ROOT/.run
PY=$ROOT/.venv/bin/python
POSEIDON=$ROOT/.venv/bin/poseidon
mkdir -p "$RUN"
cd "$ROOT"

alive() { # pidfile
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  # No pipe into `grep -q` here: under pipefail its early exit fails the check.
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    local cmd; cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    case "$cmd" in *poseidon*|*tests.standins*) echo "$pid"; return 0 ;; esac
  fi
  rm -f "$1"; return 1
}

launch() { # name command...
  local name=$1 pid; shift
  if pid=$(alive "$RUN/$name.pid"); then echo "$name already running (pid $pid)"; return 0; fi
  # Started directly (no subshell), so $! is the process itself and stop can find it.
  POSEIDON_LOG_FORMAT=${POSEIDON_LOG_FORMAT:-json} nohup "$@" >>"$RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

# instances name command...: N copies of a role (the first keeps the plain name and its ops port).
instances() {
  local name=$1 i; shift
  launch "$name" "$@"
  for i in $(seq 2 "${POSEIDON_INSTANCES:-1}"); do POSEIDON_OPS_PORT=0 launch "$name-$i" "$@"; done
}

start() {
  "$POSEIDON" topics create
  "$POSEIDON" tls init  # gRPC serves TLS: a development CA in .state/tls unless there is one
  local hub role name i
  # Stand-ins for the outside world (development only: point the URLs elsewhere in production).
  if [ "${POSEIDON_STANDINS:-1}" = 1 ]; then
    # The stand-ins sign with the built-in development secrets: a development stack.
    export POSEIDON_DEV_MODE=${POSEIDON_DEV_MODE:-1}
    # The Facebook stand-in serves attachments over http on loopback: allow exactly that.
    export POSEIDON_ATTACHMENT_HOSTS=${POSEIDON_ATTACHMENT_HOSTS:-127.0.0.1}
    export POSEIDON_ATTACHMENT_ALLOWED_ADDRESSES=${POSEIDON_ATTACHMENT_ALLOWED_ADDRESSES:-127.0.0.1}
    for name in facebook botpress odoo; do launch "standin-$name" "$PY" -m "tests.standins.$name"; done
  fi
  if [ "${POSEIDON_LAYOUT:-small}" = small ] && [ "${POSEIDON_INSTANCES:-1}" = 1 ]; then
    # Every role in one process (`poseidon together --all`): one interpreter and one copy of
    # the libraries instead of 36; each role keeps its own ops port, health and restarts.
    launch platform "$POSEIDON" together --all
    "$PY" -m poseidon.devstack
    return
  fi
  for hub in $("$POSEIDON" hubs); do
    for role in processor projector; do instances "$hub-$role" "$POSEIDON" "$role" "$hub"; done
    launch "$hub-grpc" "$POSEIDON" grpc "$hub"
  done
  launch ingress "$POSEIDON" ingress
  local port=${POSEIDON_INGRESS_PORT:-8080}
  for i in $(seq 2 "${POSEIDON_INSTANCES:-1}"); do
    POSEIDON_INGRESS_PORT=$((port + i - 1)) POSEIDON_OPS_PORT=0 launch "ingress-$i" "$POSEIDON" ingress
  done
  instances router "$POSEIDON" router
  instances saga-driver "$POSEIDON" saga-driver
  launch dashboard "$POSEIDON" dashboard
  launch gateway "$POSEIDON" gateway
  local api_port=${POSEIDON_GATEWAY_PORT:-8070}
  for i in $(seq 2 "${POSEIDON_INSTANCES:-1}"); do
    POSEIDON_GATEWAY_PORT=$((api_port + i - 1)) POSEIDON_OPS_PORT=0 launch "gateway-$i" "$POSEIDON" gateway
  done
  for name in $("$POSEIDON" spokes); do instances "spoke-$name" "$POSEIDON" spoke "$name"; done
  "$PY" -m poseidon.devstack
}

stop() {
  local f pid
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    if pid=$(alive "$f"); then
      kill -TERM "$pid"
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "stopped $(basename "$f" .pid) (pid $pid)"
    fi
    rm -f "$f"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
