#!/usr/bin/env bash
# The cluster's own dependencies: Prometheus, Redis, RabbitMQ, metrics-server. Stock images when the machine
# can pull, else built here (Debian packages / Go modules) under our own names; either way pushed to the local
# registry and applied from hack/addons/*.yaml.
#   hack/addons.sh up | images | debian_images | rabbitmq_dockerfile
. "$(dirname "$0")/lib.sh"
B=scalekeeper-build

# Prints the image reference the cluster should pull for one dependency.
dep_image() { # name
  local mode; mode=$(image_mode)
  case "$1:$mode" in
    prometheus:online) echo "$PROMETHEUS_IMAGE_STOCK" ;;
    redis:online) echo "$REDIS_IMAGE_STOCK" ;;
    rabbitmq:online) echo "$RABBITMQ_IMAGE_STOCK" ;;
    metrics-server:online) echo "$METRICS_SERVER_IMAGE_STOCK" ;;
    python:online) echo "$PYTHON_IMAGE_STOCK" ;;
    prometheus:offline) echo "$B/prometheus:$PROMETHEUS_VERSION" ;;
    redis:offline) local v=${DEB_REDIS#*:}; echo "$B/redis:${v%%-*}-debian" ;;
    rabbitmq:offline) echo "$B/rabbitmq:${DEB_RABBITMQ%%-*}-debian" ;;
    metrics-server:offline) echo "$B/metrics-server:$METRICS_SERVER_VERSION" ;;
    python:offline) echo "$B/python:${DEB_PYTHON%%-*}-debian" ;;
    *) die "unknown dependency $1 or image mode '$mode' (run hack/cluster.sh up first)" ;;
  esac
}

debian_image() { # tag packages-with-versions entrypoint-json
  local d; d=$(mktemp -d)
  cat >"$d/Dockerfile" <<DOCKERFILE
FROM $B/debian-slim:$DEBIAN_SUITE
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $2 \
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT $3
DOCKERFILE
  run_logged "image-$(basename "${1%%:*}")" docker build -t "$1" "$d"; rm -rf "$d"
}

# The project image and the demo app build FROM this: Debian's Python plus the host's CA bundle, because
# HTTPS from here is signed by CAs the host trusts and a stock image does not (pip would fail).
python_image() { # tag
  local d; d=$(mktemp -d)
  cp /etc/ssl/certs/ca-certificates.crt "$d/host-ca.crt"
  cat >"$d/Dockerfile" <<DOCKERFILE
FROM $B/debian-slim:$DEBIAN_SUITE
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3=$DEB_PYTHON python3-venv=$DEB_PYTHON && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python
COPY host-ca.crt /etc/ssl/scalekeeper/host-ca.crt
ENV PIP_CERT=/etc/ssl/scalekeeper/host-ca.crt REQUESTS_CA_BUNDLE=/etc/ssl/scalekeeper/host-ca.crt PYTHONUNBUFFERED=1
DOCKERFILE
  run_logged image-python docker build -t "$1" "$d"; rm -rf "$d"
}

# RabbitMQ from Debian's package, shaped like the stock image so one manifest (hack/addons/rabbitmq.yaml) runs
# either: the same user and group (999, made before the package would pick other ids), HOME where the server
# and its CLI keep the Erlang cookie, and the scripts on PATH that log to stdout (Debian's /usr/sbin wrappers
# send the server's output to files under /var/log/rabbitmq). Printed alone by `addons.sh rabbitmq_dockerfile`
# for hack/lint-dockerfile.sh.
rabbitmq_dockerfile() {
  cat <<DOCKERFILE
FROM $B/debian-slim:$DEBIAN_SUITE
RUN groupadd --system --gid 999 rabbitmq \\
    && useradd --system --uid 999 --gid rabbitmq --home-dir /var/lib/rabbitmq --shell /usr/sbin/nologin rabbitmq \\
    && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
      rabbitmq-server=$DEB_RABBITMQ && rm -rf /var/lib/apt/lists/* /var/lib/rabbitmq/.erlang.cookie
ENV PATH=/usr/lib/rabbitmq/bin:\$PATH HOME=/var/lib/rabbitmq LANG=C.UTF-8
USER 999:999
EXPOSE 5672 15672
ENTRYPOINT ["rabbitmq-server"]
DOCKERFILE
}

rabbitmq_image() { # tag
  local d; d=$(mktemp -d)
  rabbitmq_dockerfile >"$d/Dockerfile"
  run_logged image-rabbitmq docker build -t "$1" "$d"; rm -rf "$d"
}

build_offline() { # name tag
  case "$1" in
    prometheus)
      "$HACK_DIR/build-go.sh" offline >&2
      local p; p=$(mktemp -d); cp "$CACHE_DIR/components/prometheus-$PROMETHEUS_VERSION" "$p/prometheus"
      printf 'FROM scratch\nCOPY prometheus /bin/prometheus\nUSER 65534\nENTRYPOINT ["/bin/prometheus"]\n' >"$p/Dockerfile"
      run_logged image-prometheus docker build -t "$2" "$p"; rm -rf "$p" ;;
    redis) debian_image "$2" "redis-server=$DEB_REDIS" '["/usr/bin/redis-server"]' ;;
    rabbitmq) rabbitmq_image "$2" ;;
    metrics-server)
      "$HACK_DIR/build-go.sh" offline >&2
      local d; d=$(mktemp -d); cp "$CACHE_DIR/components/metrics-server-$METRICS_SERVER_VERSION" "$d/metrics-server"
      printf 'FROM scratch\nCOPY metrics-server /metrics-server\nENTRYPOINT ["/metrics-server"]\n' >"$d/Dockerfile"
      run_logged image-metrics-server docker build -t "$2" "$d"; rm -rf "$d" ;;
    python) python_image "$2" ;;
  esac
}

# Make one dependency image available locally; print its local name.
local_image() { # name
  local src; src=$(dep_image "$1")
  if ! docker image inspect "$src" >/dev/null 2>&1; then
    if [ "$(image_mode)" = online ]; then
      docker pull -q "$src" >/dev/null || die "docker pull $src failed"
    else
      "$HACK_DIR/rootfs.sh" >&2
      log "building $src"
      build_offline "$1" "$src"
    fi
  fi
  echo "$src"
}

# The images made of Debian packages need no Go build: hack/cluster.sh makes them while Go compiles.
debian_images() {
  local name
  for name in redis rabbitmq python; do local_image "$name" >/dev/null; done
}

# Make one dependency image available locally and in the registry; print the reference pods use.
ensure_image() { # name
  local src; src=$(local_image "$1")
  local dst
  case "$src" in "$B"/*) dst=$REGISTRY/$src ;; *) dst=$REGISTRY/${src#*/} ;; esac
  docker tag "$src" "$dst"
  # Pushing what the registry already holds only compares digests: cheap, and it catches a rebuilt image.
  run_logged "push-$1" docker push "$dst"
  echo "$dst"
}

# ${ADDON_SHA}: the digest of the manifest file and of the files its pod reads beside it. A pod template
# carrying it rolls whenever one changes, a ConfigMap the pod reads only at start included.
render() { # file [file read by its pod...]
  local sha; sha=$(cat "$@" | sha256sum | cut -c1-16)
  sed -e "s#\${ADDON_SHA}#$sha#g" -e "s#\${PROMETHEUS_IMAGE}#$PROMETHEUS_IMAGE#g" -e "s#\${REDIS_IMAGE}#$REDIS_IMAGE#g" \
      -e "s#\${RABBITMQ_IMAGE}#$RABBITMQ_IMAGE#g" -e "s#\${METRICS_SERVER_IMAGE}#$METRICS_SERVER_IMAGE#g" "$1"
}

images() {
  PROMETHEUS_IMAGE=$(ensure_image prometheus)
  REDIS_IMAGE=$(ensure_image redis)
  RABBITMQ_IMAGE=$(ensure_image rabbitmq)
  METRICS_SERVER_IMAGE=$(ensure_image metrics-server)
  PYTHON_IMAGE=$(ensure_image python)
  cat >"$STATE_DIR/images.env" <<ENV
PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE
REDIS_IMAGE=$REDIS_IMAGE
RABBITMQ_IMAGE=$RABBITMQ_IMAGE
METRICS_SERVER_IMAGE=$METRICS_SERVER_IMAGE
PYTHON_BASE_IMAGE=$(dep_image python)
ENV
}

# The chart's alert rules, which the cluster's Prometheus evaluates (its rule_files), with shorter `for`s.
RULES=$ROOT_DIR/manifests/chart/scalekeeper/rules/scalekeeper-rules.yaml

up() {
  images
  local f
  for f in priority prometheus redis rabbitmq metrics-server; do
    local reads=()
    if [ "$f" = prometheus ]; then
      # Each alert's `for: 5m` shortened to 20 s, so that a fault test sees one fire in the time it waits;
      # the 5 minutes themselves are what `promtool test rules` checks (tests/rules/).
      local rules=$STATE_DIR/scalekeeper-rules.yaml
      sed -E 's/^( +for:) 5m$/\1 20s/' "$RULES" >"$rules"
      reads=("$rules")
      { kubectl create namespace scalekeeper-system --dry-run=client -o yaml
        echo ---
        kubectl -n scalekeeper-system create configmap prometheus-rules --from-file="$rules" --dry-run=client -o yaml
      } | kubectl_idempotent "$LOG_DIR/addon-prometheus-rules.log" apply -f - \
        || { cat "$LOG_DIR/addon-prometheus-rules.log" >&2; die "applying Prometheus's rules failed"; }
    fi
    render "$HACK_DIR/addons/$f.yaml" "${reads[@]}" | kubectl_idempotent "$LOG_DIR/addon-$f.log" apply -f - \
      || { cat "$LOG_DIR/addon-$f.log" >&2; die "applying addon $f failed"; }
  done
  kubectl -n scalekeeper-system rollout status deploy/prometheus --timeout=180s >/dev/null \
    || die "Prometheus did not become ready (kubectl -n scalekeeper-system describe pod -l app=prometheus)"
  kubectl -n scalekeeper-system rollout status deploy/redis --timeout=120s >/dev/null || die "Redis did not become ready"
  kubectl -n scalekeeper-system rollout status deploy/rabbitmq --timeout=180s >/dev/null \
    || die "RabbitMQ did not become ready (kubectl -n scalekeeper-system logs deploy/rabbitmq)"
  kubectl -n kube-system rollout status deploy/metrics-server --timeout=180s >/dev/null || die "metrics-server did not become ready"
  log "addons ready: prometheus ($PROMETHEUS_IMAGE), redis ($REDIS_IMAGE), rabbitmq ($RABBITMQ_IMAGE)," \
    "metrics-server ($METRICS_SERVER_IMAGE)"
}

"${1:-up}"
