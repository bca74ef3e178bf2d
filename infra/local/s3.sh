#!/usr/bin/env bash
# Local S3 server for development and tests: S3Proxy (a real S3 API, AWS signature
# v2/v4, over the jclouds filesystem backend) in .stack/s3proxy/, on loopback only.
# `setup` fetches its jar from Maven Central (cached); `up` starts it and waits until
# the endpoint answers; `down` stops only the process whose PID file it wrote.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STACK=${POSEIDON_STACK_DIR:-$ROOT/.stack}
S3_PORT=${POSEIDON_S3_PORT:-18084}
S3_HEAP=${POSEIDON_S3_HEAP:-256m}
POM=$ROOT/infra/local/s3proxy-pom.xml
PROPS=$ROOT/infra/local/s3proxy.properties
S3_VERSION=$(sed -n 's:.*<s3proxy.version>\(.*\)</s3proxy.version>.*:\1:p' "$POM")
S3_DIR=$STACK/s3proxy
S3_LIB=$S3_DIR/lib-$S3_VERSION
S3_JAR=$S3_LIB/s3proxy-$S3_VERSION-jar-with-dependencies.jar
S3_DATA=$S3_DIR/data
PIDFILE=$S3_DIR/s3proxy.pid
LOG=$S3_DIR/logs/s3proxy.log
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3

log() { printf '[s3] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A PID file is ours only if that process is alive and its command line names our
# own data folder; anything else is a stale file and is removed.
alive_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(head -1 "$PIDFILE" 2>/dev/null || true)
  local cmd=""
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  # No pipe into `grep -q` here: under pipefail its early exit fails the check.
  if [[ "$cmd" == *"jclouds.filesystem.basedir=$S3_DATA"* ]]; then
    echo "$pid"; return 0
  fi
  log "removing stale PID file $PIDFILE"
  rm -f "$PIDFILE"; return 1
}

# Any HTTP answer counts (anonymous requests get 403 AccessDenied): the server is listening.
answers() {
  "$PY" - "http://127.0.0.1:$S3_PORT/" 2>/dev/null <<'PYCODE'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PYCODE
}

setup() {
  if [ -f "$S3_LIB/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "Maven is required to fetch S3Proxy from Maven Central"
  mkdir -p "$S3_LIB"
  log "fetching S3Proxy $S3_VERSION from Maven Central"
  mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$S3_LIB" -DincludeScope=runtime
  [ -f "$S3_JAR" ] || die "S3Proxy jar not found after fetching: $S3_JAR"
  touch "$S3_LIB/.complete"
}

up() {
  [ -f "$S3_LIB/.complete" ] || die "S3Proxy $S3_VERSION jar missing in $S3_LIB: run '$0 setup' (or 'make setup')"
  command -v java >/dev/null || die "Java 17+ is required to run S3Proxy"
  local pid
  if pid=$(alive_pid); then
    log "s3proxy already running (pid $pid) on 127.0.0.1:$S3_PORT"; return 0
  fi
  if answers; then die "something else already answers on 127.0.0.1:$S3_PORT"; fi
  mkdir -p "$S3_DATA" "$(dirname "$LOG")"
  # System properties override the properties file: absolute data folder and port here,
  # credentials only where the environment sets them (they must match the platform's).
  local jopts=(-Xms64m -Xmx"$S3_HEAP" -Djclouds.filesystem.basedir="$S3_DATA" -Ds3proxy.endpoint="http://127.0.0.1:$S3_PORT")
  [ -n "${POSEIDON_S3_ACCESS_KEY:-}" ] && jopts+=(-Ds3proxy.identity="$POSEIDON_S3_ACCESS_KEY")
  [ -n "${POSEIDON_S3_SECRET_KEY:-}" ] && jopts+=(-Ds3proxy.credential="$POSEIDON_S3_SECRET_KEY")
  log "starting s3proxy $S3_VERSION on 127.0.0.1:$S3_PORT (data in $S3_DATA)"
  (cd "$S3_DIR" && exec nohup java "${jopts[@]}" -jar "$S3_JAR" --properties "$PROPS" >>"$LOG" 2>&1 </dev/null) &
  echo $! >"$PIDFILE"
  local i
  for i in $(seq 1 60); do
    if answers; then log "s3proxy ready (pid $(cat "$PIDFILE"))"; return 0; fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || die "s3proxy exited during start; see $LOG"
    sleep 0.5
  done
  die "s3proxy not answering after 30s; see $LOG"
}

down() {
  local pid
  if pid=$(alive_pid); then
    log "stopping s3proxy (pid $pid)"
    kill -TERM "$pid"
    local i; for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { log "s3proxy did not stop in 15s; SIGKILL"; kill -KILL "$pid"; }
  fi
  rm -f "$PIDFILE"
}

status() {
  local pid
  if pid=$(alive_pid 2>/dev/null); then echo "s3proxy: running pid $pid 127.0.0.1:$S3_PORT"; else echo "s3proxy: stopped"; fi
}

case "${1:-}" in
  setup) setup ;;
  up) up ;;
  down) down ;;
  status) status ;;
  logs) [ -f "$LOG" ] && { printf '==> %s <==\n' "$LOG"; tail -n "${LINES_PER_LOG:-40}" "$LOG"; } || true ;;
  *) echo "usage: $0 setup|up|down|status|logs" >&2; exit 2 ;;
esac
