#!/usr/bin/env bash
# Shared by every hack/ script: pinned versions, cache and state locations, logging, prerequisites.
set -euo pipefail
# A failure inside $(...) must stop the script too.
shopt -s inherit_errexit

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=versions.env
. "$HACK_DIR/versions.env"

# Caches live outside the clone so a fresh clone (CI) on the same machine reuses them.
CACHE_DIR=${SCALEKEEPER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scalekeeper}
STATE_DIR=$CACHE_DIR/state          # pid files, kubeconfig, the online/offline decision
BIN_DIR=$CACHE_DIR/bin              # tools, one file per name and version
LOG_DIR=${SCALEKEEPER_LOG_DIR:-$ROOT_DIR/logs}
DOCKER_DATA_ROOT=$CACHE_DIR/docker
mkdir -p "$CACHE_DIR" "$STATE_DIR" "$BIN_DIR" "$LOG_DIR"

export PATH=$BIN_DIR/current:/usr/local/go/bin:$PATH
export KUBECONFIG=$STATE_DIR/kubeconfig
REGISTRY=localhost:$REGISTRY_PORT
NODE_CONTAINER=$CLUSTER_NAME-control-plane

log() { printf '%s [%s] %s\n' "$(date -u +%H:%M:%S)" "$(basename "$0")" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Run a step and keep its output in the log folder; print the tail when it fails.
run_logged() { # name cmd...
  local name=$1; shift
  local f=$LOG_DIR/$name.log
  if ! "$@" >"$f" 2>&1; then
    log "step '$name' failed; last lines of $f:"; tail -n 40 "$f" >&2; return 1
  fi
}

# A node that has just restarted (dockerd stopped and started again) answers /readyz and can still drop the
# next connections: seen in CI as EOF and "connection reset by peer" in the middle of an addon's apply.
# An idempotent kubectl write is retried on those failures only, after the API server answers again.
API_DROPPED='EOF|connection reset by peer|connection refused|TLS handshake timeout|i/o timeout|http2: client connection lost|the server is currently unable|etcdserver: request timed out'
kubectl_idempotent() { # logfile kubectl-args... ; stdin is read once and given to every attempt
  local logfile=$1; shift
  local input; input=$(mktemp)
  cat >"$input"
  local attempt i
  for attempt in 1 2 3 4 5; do
    if kubectl "$@" <"$input" >"$logfile" 2>&1; then rm -f "$input"; return 0; fi
    grep -Eq "$API_DROPPED" "$logfile" || break
    log "kubectl $1: the API server dropped the connection (attempt $attempt of 5, $logfile); waiting for /readyz"
    for i in $(seq 1 20); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 3; done
  done
  rm -f "$input"
  return 1
}

# Run a command that outlives its caller (a daemon) without the descriptors the caller inherited: a lock held
# by a parent (`flock FILE make test`) or a pipe a CI harness reads would otherwise stay taken, or never reach
# end of file, for as long as the daemon runs. stdin, stdout and stderr are the caller's to redirect.
detached() { # cmd...
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
  done 2>/dev/null
  exec "$@"
}

# Install Debian packages only when a command is missing; fail at once naming what could not be installed.
APT_UPDATED=
need_pkg() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || die "prerequisite '$1' (Debian package '$2') is missing and we are not root to install it"
  command -v apt-get >/dev/null || die "prerequisite '$1' is missing and apt-get is not available: install '$2'"
  log "installing Debian package $2 (for $1)"
  if [ -z "$APT_UPDATED" ]; then apt-get update -qq >"$LOG_DIR/apt-update.log" 2>&1 || true; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >"$LOG_DIR/apt-$2.log" 2>&1 \
    || die "prerequisite '$2' could not be installed (apt-get install $2); see $LOG_DIR/apt-$2.log"
  command -v "$1" >/dev/null 2>&1 || die "prerequisite '$1' still missing after installing '$2'"
}

need_go() {
  command -v go >/dev/null 2>&1 || die "prerequisite 'go' is missing: install Go >= 1.24 (https://go.dev/dl)"
}

# Stop when a module asks for a newer Go than the local toolchain (GOTOOLCHAIN=local: no toolchain download).
check_go_for() { # what module-dir
  local want have
  want=$(awk '$1 == "toolchain" {sub(/^go/, "", $2); print $2; exit}' "$2/go.mod")
  [ -n "$want" ] || want=$(awk '$1 == "go" {print $2; exit}' "$2/go.mod")
  have=$(go env GOVERSION); have=${have#go}
  [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n 1)" = "$want" ] \
    || die "$1 needs Go $want, this machine has Go $have (GOTOOLCHAIN=local): not building"
}

# An image FROM scratch for a static Go binary: the binary, the host's CA bundle (as distroless/static would
# carry), a non-root user. Built again only when the binary is newer than the last build.
go_binary_image() { # tag binary context-dir user entrypoint (JSON array items, e.g. '"/keda", "--flag"')
  local tag=$1 bin=$2 ctx=$3 name
  name=$(basename "$bin")
  if docker image inspect "$tag" >/dev/null 2>&1 && [ ! "$bin" -nt "$ctx/Dockerfile" ]; then
    return 0
  fi
  rm -rf "$ctx"; mkdir -p "$ctx"
  ln "$bin" "$ctx/$name" 2>/dev/null || cp "$bin" "$ctx/$name"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  printf 'FROM scratch\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\nCOPY %s /%s\nUSER %s\nENTRYPOINT [%s]\n' \
    "$name" "$name" "$4" "$5" >"$ctx/Dockerfile.tmp"
  log "docker build $tag"
  run_logged "image-$name" docker build -t "$tag" -f "$ctx/Dockerfile.tmp" "$ctx" || die "docker build $tag failed"
  mv "$ctx/Dockerfile.tmp" "$ctx/Dockerfile"
}

# The operator's, the demo app's and the Celery exporter's images build side by side (mostly pip downloads on a
# first run); prints their three references, a line each, in that order.
# Builds one of the project's Python images on the base hack/addons.sh chose (PYTHON_BASE_IMAGE in images.env:
# the public Python image when it can be pulled, else the Debian Python image built here), pushes it to the
# local registry and prints the reference pods use.
python_image() { # image-reference build-context log-name
  [ -f "$STATE_DIR/images.env" ] || "$HACK_DIR/addons.sh" images >/dev/null
  # shellcheck source=/dev/null
  . "$STATE_DIR/images.env"
  log "docker build $1 (base $PYTHON_BASE_IMAGE)"
  run_logged "image-$3" docker build --build-arg "BASE_IMAGE=$PYTHON_BASE_IMAGE" -t "$1" "$2"
  run_logged "push-$3" docker push "$1"
  echo "$1"
}

app_images() {
  local demo_out=$LOG_DIR/demo-image.ref exporter_out=$LOG_DIR/exporter-image.ref op
  "$HACK_DIR/demo-image.sh" >"$demo_out" & local demo_pid=$!
  "$HACK_DIR/exporter-image.sh" >"$exporter_out" & local exporter_pid=$!
  op=$("$HACK_DIR/project-image.sh" | tail -n 1)
  wait "$demo_pid" || die "hack/demo-image.sh failed (above)"
  wait "$exporter_pid" || die "hack/exporter-image.sh failed (above)"
  echo "$op"; tail -n 1 "$demo_out"; tail -n 1 "$exporter_out"
}

# Fail when a loopback port is taken by something that is not ours.
port_free_or_ours() { # port owner-description
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 1; fi
  return 0
}

# The online/offline decision, made by trying to pull once per cluster-up and remembered in the state folder.
image_mode() { cat "$STATE_DIR/image-mode" 2>/dev/null || echo unknown; }
