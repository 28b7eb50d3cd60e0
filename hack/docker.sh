#!/usr/bin/env bash
# Start or stop the Docker engine the cluster runs on. Only starts one when none answers, and only stops the
# one it started (by its PID file), never by process name.
#   hack/docker.sh up | down | status
. "$(dirname "$0")/lib.sh"
PID_FILE=$STATE_DIR/dockerd.pid
WRAPPER=$CACHE_DIR/runc-nosysres

# CAP_SYS_RESOURCE is bit 24. Where the bounding set lacks it, `docker run --privileged` asks runc for a
# capability the kernel will not grant and every privileged container (every kind node) fails to start.
lacks_sys_resource() {
  local bnd; bnd=$(awk '/^CapBnd:/{print $2}' /proc/self/status)
  (( (16#$bnd >> 24 & 1) == 0 ))
}

up() {
  if docker info >/dev/null 2>&1; then
    log "a Docker engine already answers; using it"
    return 0
  fi
  need_pkg dockerd docker.io
  need_pkg iptables iptables
  need_pkg jq jq
  local args=(--data-root "$DOCKER_DATA_ROOT" -H unix:///var/run/docker.sock --pidfile "$PID_FILE")
  if lacks_sys_resource; then
    install -m 0755 "$HACK_DIR/files/runc-nosysres" "$WRAPPER"
    args+=(--add-runtime "nosysres=$WRAPPER" --default-runtime nosysres)
    log "this kernel withholds CAP_SYS_RESOURCE: using the runc wrapper that drops it"
  fi
  # A stale pid file from a killed engine would make dockerd refuse to start.
  if [ -f "$PID_FILE" ] && ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then rm -f "$PID_FILE"; fi
  rm -f /var/run/docker.sock
  log "starting dockerd (data root $DOCKER_DATA_ROOT, log $LOG_DIR/dockerd.log)"
  (detached nohup dockerd "${args[@]}") >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  local i
  for i in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -n 30 "$LOG_DIR/dockerd.log" >&2; die "dockerd did not answer within 60 s"; }
  log "dockerd is up ($(docker version -f '{{.Server.Version}}'))"
}

down() {
  if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    local pid; pid=$(cat "$PID_FILE")
    log "stopping dockerd $pid"
    kill -TERM "$pid"
    local i; for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$PID_FILE"
}

status() {
  if docker info >/dev/null 2>&1; then
    echo "docker: up ($(docker version -f '{{.Server.Version}}' 2>/dev/null), runtime $(docker info -f '{{.DefaultRuntime}}'))"
  else
    echo "docker: down"
  fi
}

"${1:-up}"
