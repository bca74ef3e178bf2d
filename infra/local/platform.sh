#!/usr/bin/env bash
# Starts and stops the platform's own processes for `make run`: per hub, its
# aggregate processor, projector and gRPC query server, in the background with
# PID files and logs under .run/. Touches only processes whose PID files it wrote.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUN=$ROOT/.run
POSEIDON=$ROOT/.venv/bin/poseidon
HUBS=${POSEIDON_HUBS:-$("$POSEIDON" hubs)}
ROLES="processor projector grpc"
mkdir -p "$RUN"

alive() { # pidfile
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "poseidon"; then echo "$pid"; return 0; fi
  rm -f "$1"; return 1
}

start() {
  "$POSEIDON" topics create
  local hub role name pid
  for hub in $HUBS; do
    for role in $ROLES; do
      name=$hub-$role
      if pid=$(alive "$RUN/$name.pid"); then echo "$name already running (pid $pid)"; continue; fi
      POSEIDON_LOG_FORMAT=${POSEIDON_LOG_FORMAT:-json} nohup "$POSEIDON" "$role" "$hub" >>"$RUN/$name.log" 2>&1 </dev/null &
      echo $! >"$RUN/$name.pid"
    done
  done
  # Wait until every ops endpoint answers healthy.
  "$ROOT/.venv/bin/python" - $HUBS <<'PY'
import sys, time, urllib.request
from poseidon.settings import Settings
s = Settings.from_env()
deadline = time.time() + 60
for hub in sys.argv[1:]:
    for role in ("processor", "projector", "grpc"):
        url = f"http://{s.ops_host}:{s.ops_port_for(role, hub)}/healthz"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit(f"{hub}-{role} not healthy at {url} after 60s; see .run/{hub}-{role}.log")
            time.sleep(0.5)
        print(f"  {hub}-{role:<9} healthy   ops http://{s.ops_host}:{s.ops_port_for(role, hub)}/healthz  /metrics")
    print(f"  {hub} gRPC queries on {s.grpc_host}:{s.grpc_port(hub)} (health + reflection)")
print(f"  Kafka {s.kafka_bootstrap}   PostgreSQL {s.pg_dsn}")
PY
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
