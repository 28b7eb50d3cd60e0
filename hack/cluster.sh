#!/usr/bin/env bash
# The local kind cluster every end-to-end test runs on.
#   hack/cluster.sh up       idempotent: reuses a healthy cluster, recreates a stale one, builds what is missing
#   hack/cluster.sh down     deletes the cluster and the registry container, stops the dockerd we started
#   hack/cluster.sh status   one line per component
#   hack/cluster.sh logs     kind export logs + dockerd + registry logs into logs/
. "$(dirname "$0")/lib.sh"
# Host ports published on loopback: Prometheus and Redis through NodePorts, and the local registry.
PROMETHEUS_PORT=30090
REDIS_PORT=30379

node_running() { [ "$(docker inspect -f '{{.State.Running}}' "$NODE_CONTAINER" 2>/dev/null)" = true ]; }
cluster_healthy() {
  node_running || return 1
  kind get kubeconfig --name "$CLUSTER_NAME" >"$KUBECONFIG.tmp" 2>/dev/null && mv "$KUBECONFIG.tmp" "$KUBECONFIG" || return 1
  # A running node whose API server is only slow (a loaded machine, a restart) is waited for, not recreated.
  local i
  for i in $(seq 1 ${1:-20}); do
    kubectl get --raw /readyz >/dev/null 2>&1 && return 0
    sleep 3
  done
  return 1
}

# Online or offline, decided by trying to pull the stock node image (once; remembered until `down`).
decide_image_mode() {
  local mode; mode=$(image_mode)
  if [ "$mode" = unknown ]; then
    if docker image inspect "$KIND_NODE_IMAGE_STOCK" >/dev/null 2>&1 \
       || timeout 90 docker pull "$KIND_NODE_IMAGE_STOCK" >"$LOG_DIR/pull-probe.log" 2>&1; then
      mode=online
    else
      mode=offline
      log "cannot pull $KIND_NODE_IMAGE_STOCK ($(tail -n 1 "$LOG_DIR/pull-probe.log")): building images here"
    fi
    echo "$mode" >"$STATE_DIR/image-mode"
  fi
  echo "$mode"
}

check_ports() {
  local p
  for p in $PROMETHEUS_PORT $REDIS_PORT; do
    port_free_or_ours "$p" || die "port 127.0.0.1:$p is already in use by another program (needed by the kind node's port mapping); free it"
  done
  if ! docker inspect "$REGISTRY_NAME" >/dev/null 2>&1; then
    port_free_or_ours "$REGISTRY_PORT" || die "port 127.0.0.1:$REGISTRY_PORT is already in use by another program (needed by the local registry); free it"
  fi
}

registry_up() {
  local image
  if [ "$(image_mode)" = online ]; then
    image=docker.io/library/registry:3
    docker image inspect "$image" >/dev/null 2>&1 || docker pull -q "$image" >/dev/null
  else
    image=scalekeeper-build/registry:$DISTRIBUTION_VERSION
    if ! docker image inspect "$image" >/dev/null 2>&1; then
      "$HACK_DIR/build-go.sh" offline >&2
      local d; d=$(mktemp -d); cp "$CACHE_DIR/components/registry-$DISTRIBUTION_VERSION" "$d/registry"
      cp "$HACK_DIR/files/registry-config.yml" "$d/config.yml"
      printf 'FROM scratch\nCOPY registry /bin/registry\nCOPY config.yml /etc/distribution/config.yml\nVOLUME /var/lib/registry\nENTRYPOINT ["/bin/registry"]\nCMD ["serve","/etc/distribution/config.yml"]\n' >"$d/Dockerfile"
      run_logged image-registry docker build -t "$image" "$d"; rm -rf "$d"
    fi
  fi
  if ! node_running_registry; then
    docker rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true
    mkdir -p "$CACHE_DIR/registry-data"
    log "starting registry $REGISTRY_NAME on 127.0.0.1:$REGISTRY_PORT"
    docker run -d --restart=always --name "$REGISTRY_NAME" -p "127.0.0.1:$REGISTRY_PORT:5000" \
      -v "$CACHE_DIR/registry-data:/var/lib/registry" "$image" >/dev/null
  fi
}
node_running_registry() { [ "$(docker inspect -f '{{.State.Running}}' "$REGISTRY_NAME" 2>/dev/null)" = true ]; }

kind_config() { # node-image-mode
  cp "$HACK_DIR/files/10-scalekeeper-ptp.conflist" "$STATE_DIR/10-scalekeeper-ptp.conflist"
  cat <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  # One node, so a static CNI config of the standard plugins is the whole network (no kindnetd).
  disableDefaultCNI: true
  podSubnet: $POD_SUBNET
  serviceSubnet: $SERVICE_SUBNET
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
nodes:
- role: control-plane
  extraMounts:
  - hostPath: $STATE_DIR/10-scalekeeper-ptp.conflist
    containerPath: /etc/cni/net.d/10-scalekeeper-ptp.conflist
    readOnly: true
  extraPortMappings:
  - {containerPort: $PROMETHEUS_PORT, hostPort: $PROMETHEUS_PORT, listenAddress: 127.0.0.1}
  - {containerPort: $REDIS_PORT, hostPort: $REDIS_PORT, listenAddress: 127.0.0.1}
YAML
}

# Before kube-proxy programs the node, a pod's packet to a service IP follows the default route out of
# the machine; nothing addressed to the cluster's ranges may leave through the external interface.
guard_cluster_ranges() {
  local ext; ext=$(ip route show default | awk '{for(i=1;i<NF;i++) if ($i=="dev") {print $(i+1); exit}}')
  [ -n "$ext" ] || { log "no default route: nothing to guard"; return 0; }
  iptables -N DOCKER-USER 2>/dev/null || true
  local cidr
  for cidr in "$SERVICE_SUBNET" "$POD_SUBNET"; do
    iptables -C DOCKER-USER -o "$ext" -d "$cidr" -j DROP -m comment --comment scalekeeper-cluster-ranges 2>/dev/null \
      || iptables -I DOCKER-USER -o "$ext" -d "$cidr" -j DROP -m comment --comment scalekeeper-cluster-ranges
  done
  echo "$ext" >"$STATE_DIR/guard-interface"
}

create_cluster() {
  local node_image=$1
  kind delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
  check_ports
  kind_config >"$STATE_DIR/kind-config.yaml"
  log "kind create cluster --name $CLUSTER_NAME --image $node_image"
  run_logged kind-create kind create cluster --name "$CLUSTER_NAME" --image "$node_image" \
    --config "$STATE_DIR/kind-config.yaml" --kubeconfig "$KUBECONFIG" --wait 3m
}

# Offline node images hold our local-path-provisioner build instead of kind's (see versions.env).
use_local_storage_images() {
  [ "$(image_mode)" = offline ] || return 0
  local lpp=scalekeeper-build/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION
  kubectl -n local-path-storage patch deployment local-path-provisioner --type json -p "[
    {\"op\": \"replace\", \"path\": \"/spec/template/spec/containers/0/image\", \"value\": \"$lpp\"},
    {\"op\": \"replace\", \"path\": \"/spec/template/spec/containers/0/command/4\", \"value\": \"scalekeeper-build/debian-slim:$DEBIAN_SUITE\"}]" >/dev/null
}

connect_registry() {
  docker network connect kind "$REGISTRY_NAME" 2>/dev/null || true
  # kind's local-registry pattern: the node's containerd resolves localhost:5001 to the registry container.
  docker exec "$NODE_CONTAINER" sh -c "mkdir -p /etc/containerd/certs.d/$REGISTRY && \
    printf '[host.\"http://$REGISTRY_NAME:5000\"]\n' > /etc/containerd/certs.d/$REGISTRY/hosts.toml"
  kubectl_idempotent "$LOG_DIR/local-registry-hosting.log" apply -f - <<YAML || die "applying the local-registry-hosting ConfigMap failed ($LOG_DIR/local-registry-hosting.log)"
apiVersion: v1
kind: ConfigMap
metadata: {name: local-registry-hosting, namespace: kube-public}
data:
  localRegistryHosting.v1: |
    host: "$REGISTRY"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
YAML
}

up() {
  local t0; t0=$(date +%s)
  "$HACK_DIR/docker.sh" up
  local mode; mode=$(decide_image_mode)
  log "image mode: $mode"
  local node_image
  if [ "$mode" = online ]; then
    "$HACK_DIR/build-go.sh" tools
    node_image=$KIND_NODE_IMAGE_STOCK
  else
    # What downloads Debian packages (the root filesystems, the node's base image, the Redis, RabbitMQ and Python
    # images) runs while Go compiles in the other two lanes.
    log "building the cluster from source: about 13 min on a fresh 2-core machine, seconds once cached"
    ( "$HACK_DIR/rootfs.sh" && "$HACK_DIR/node-image.sh" base >/dev/null && "$HACK_DIR/addons.sh" debian_images ) &
    local debian_pid=$!
    "$HACK_DIR/build-go.sh" offline
    wait "$debian_pid" || die "building the Debian-based images failed (above)"
    node_image=$("$HACK_DIR/node-image.sh")
  fi
  if cluster_healthy && [ "$(docker inspect -f '{{.Config.Image}}' "$NODE_CONTAINER")" = "$node_image" ]; then
    log "cluster $CLUSTER_NAME is up and healthy: reusing it"
  else
    create_cluster "$node_image"
    use_local_storage_images
  fi
  registry_up
  connect_registry
  guard_cluster_ranges
  "$HACK_DIR/addons.sh" up
  write_env
  log "cluster ready in $(( $(date +%s) - t0 )) s ($mode images); kubeconfig: $KUBECONFIG"
}

# What tests and users need to reach the cluster, in one file the pytest fixture reads.
write_env() {
  cat >"$STATE_DIR/cluster.env" <<ENV
KUBECONFIG=$KUBECONFIG
SCALEKEEPER_CLUSTER=$CLUSTER_NAME
SCALEKEEPER_REGISTRY=$REGISTRY
SCALEKEEPER_IMAGE_MODE=$(image_mode)
PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
SCALEKEEPER_GUARD_INTERFACE=$(cat "$STATE_DIR/guard-interface" 2>/dev/null || true)
ENV
}

down() {
  if docker info >/dev/null 2>&1; then
    kind delete cluster --name "$CLUSTER_NAME" 2>/dev/null || true
    docker rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true
  fi
  local ext; ext=$(cat "$STATE_DIR/guard-interface" 2>/dev/null || true)
  if [ -n "$ext" ]; then
    local cidr
    for cidr in "$SERVICE_SUBNET" "$POD_SUBNET"; do
      while iptables -D DOCKER-USER -o "$ext" -d "$cidr" -j DROP -m comment --comment scalekeeper-cluster-ranges 2>/dev/null; do :; done
    done
  fi
  "$HACK_DIR/docker.sh" down
  rm -f "$STATE_DIR/image-mode" "$STATE_DIR/cluster.env" "$STATE_DIR/guard-interface" "$KUBECONFIG"
  log "cluster $CLUSTER_NAME removed (caches kept in $CACHE_DIR)"
}

status() {
  "$HACK_DIR/docker.sh" status
  echo "image mode: $(image_mode)"
  if node_running; then echo "node $NODE_CONTAINER: running"; else echo "node $NODE_CONTAINER: not running"; fi
  if node_running_registry; then echo "registry $REGISTRY_NAME: running on $REGISTRY"; else echo "registry: not running"; fi
  if cluster_healthy 1; then
    echo "apiserver: ready"; kubectl get nodes --no-headers 2>/dev/null | sed 's/^/node: /'
    kubectl get deploy -n scalekeeper-system --no-headers 2>/dev/null | sed 's/^/addon: /'
  else
    echo "apiserver: not reachable"; return 1
  fi
}

logs() {
  local d=$LOG_DIR/cluster-$(date -u +%Y%m%dT%H%M%S)
  mkdir -p "$d"
  kind export logs "$d/kind" --name "$CLUSTER_NAME" >/dev/null 2>&1 || log "kind export logs failed (cluster down?)"
  docker logs "$REGISTRY_NAME" >"$d/registry.log" 2>&1 || true
  cp "$LOG_DIR/dockerd.log" "$d/" 2>/dev/null || true
  echo "$d"
}

"${1:-up}"
