#!/usr/bin/env bash
# Builds Go programs from their modules into the cache, keyed by version: nothing rebuilds when present.
#   hack/build-go.sh tools     kind, helm, kubectl: what the scripts run on the host (all a pulling machine builds)
#   hack/build-go.sh helm      helm only (the release workflow packages and pushes the chart with it)
#   hack/build-go.sh offline   the tools and what an offline cluster is made of, in two lanes at once: the
#                              Kubernetes family (the Kubernetes commands, metrics-server, helm) beside kind,
#                              etcd, CoreDNS, pause, local-path-provisioner, registry, Prometheus
#   hack/build-go.sh crictl    crictl, for the node image's base (hack/cluster.sh builds it in a third lane)
#   hack/build-go.sh promtool  promtool, for `make rules-check` (hack/promtool.sh)
. "$(dirname "$0")/lib.sh"
need_go; need_pkg jq jq
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
# Go 1.27 changes encoding/json defaults in a way that breaks the apiserver's OpenAPI handler.
case "$(go env GOVERSION)" in go1.2[7-9]*|go1.[3-9]*) export GOEXPERIMENT=nojsonv2 ;; esac
SRC=$CACHE_DIR/go-src
KUBE_BIN=$CACHE_DIR/kubernetes/$K8S_VERSION/bin
COMPONENTS=$CACHE_DIR/components
KUBE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl)

# build_module out-file module-name "require lines" package [ldflags] [extra go.mod text]
build_module() {
  local out=$1 mod=$2 reqs=$3 pkg=$4 ldflags=${5:--s -w} extra=${6:-}
  [ -x "$out" ] && return 0
  local d=$SRC/$(basename "$out")
  mkdir -p "$d" "$(dirname "$out")"
  printf 'module %s\n\ngo 1.24\n\nrequire (\n%s\n)\n%s\n' "$mod" "$reqs" "$extra" >"$d/go.mod"
  [ -f "$d/main.go" ] || [ "$pkg" != . ] || die "build of $out needs $d/main.go"
  log "go build $pkg -> $out"
  (cd "$d" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg") \
    || die "go build of $pkg failed"
  mv "$out.tmp" "$out"
}

# The Kubernetes commands, metrics-server and helm share most of their packages (client-go, apiserver, the API
# types, gRPC, OpenTelemetry). Built from one module graph, each shared package is compiled once for all three
# instead of once per program: minimal version selection over the three lifts a few shared modules (x/net,
# x/crypto, ...) to the newer versions metrics-server and helm ask for.
#   family command...   any of KUBE_COMMANDS, metrics-server, helm; only the missing ones are built
family() {
  local want=() c
  for c in "$@"; do [ -x "$(family_out "$c")" ] || want+=("$c"); done
  [ ${#want[@]} -gt 0 ] || return 0
  local d=$SRC/family-$K8S_VERSION
  if [ ! -f "$d/.resolved" ]; then
    mkdir -p "$d"
    # k8s.io/kubernetes refers to its staging modules by ./staging paths: point each at its published version.
    local gomod; gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod)
    { printf 'module scalekeeper.dev/kfamily\n\ngo 1.24\n\nrequire (\n\tk8s.io/kubernetes %s\n' "$K8S_VERSION"
      printf '\tsigs.k8s.io/metrics-server %s\n\thelm.sh/helm/v3 %s\n)\n\nreplace (\n' "$METRICS_SERVER_VERSION" "$HELM_VERSION"
      grep '=> ./staging' "$gomod" | awk -v v="$K8S_STAGING_VERSION" '{print "\t"$1" => "$1" "v}'; echo ')'; } >"$d/go.mod"
    (cd "$d" && go get "k8s.io/kubernetes@$K8S_VERSION" "sigs.k8s.io/metrics-server@$METRICS_SERVER_VERSION" \
      "helm.sh/helm/v3@$HELM_VERSION") >"$LOG_DIR/go-get-family.log" 2>&1 \
      || die "resolving the Kubernetes family failed (see $LOG_DIR/go-get-family.log)"
    touch "$d/.resolved"
  fi
  local kube=() rest=()
  for c in "${want[@]}"; do
    case "$c" in metrics-server|helm) rest+=("$c") ;; *) kube+=("k8s.io/kubernetes/cmd/$c") ;; esac
  done
  if [ ${#kube[@]} -gt 0 ]; then
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local v=k8s.io/component-base/version cv=k8s.io/client-go/pkg/version
    # kubeadm reads its own version to pick image tags, so the version stamps must be right.
    local ldf="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
    ldf="$ldf -X $v.gitCommit=0000000000000000000000000000000000000000 -X $v.buildDate=2026-01-01T00:00:00Z"
    ldf="$ldf -X $cv.gitVersion=$K8S_VERSION -X $cv.gitMajor=1 -X $cv.gitMinor=$minor"
    mkdir -p "$KUBE_BIN"
    local expect=; [ ${#kube[@]} -lt ${#KUBE_COMMANDS[@]} ] || expect=": about 11 min on 2 cores beside the other lane"
    log "go build ${kube[*]##*/} (Kubernetes $K8S_VERSION)$expect"
    (cd "$d" && go build -trimpath -ldflags "$ldf" -o "$KUBE_BIN/" "${kube[@]}") || die "Kubernetes build failed"
  fi
  # Separate links, each with its own version stamp; their packages are already in the build cache.
  for c in "${rest[@]}"; do
    local out; out=$(family_out "$c"); mkdir -p "$(dirname "$out")"
    local pkg ldf
    case "$c" in
      # helm renders for the Kubernetes version it was built against unless told otherwise (--kube-version)
      helm) pkg=helm.sh/helm/v3/cmd/helm; ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
        local minor p; minor=${K8S_STAGING_VERSION#v0.}; minor=${minor%%.*}
        for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
          ldf="$ldf -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
        done ;;
      metrics-server) pkg=sigs.k8s.io/metrics-server/cmd/metrics-server
        ldf="-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION" ;;
    esac
    log "go build $pkg -> $out"
    (cd "$d" && go build -trimpath -ldflags "$ldf" -o "$out.tmp" "$pkg") || die "go build of $pkg failed"
    mv "$out.tmp" "$out"
  done
}

family_out() { # command -> where its binary lives
  case "$1" in
    helm) echo "$BIN_DIR/helm-$HELM_VERSION" ;;
    metrics-server) echo "$COMPONENTS/metrics-server-$METRICS_SERVER_VERSION" ;;
    *) echo "$KUBE_BIN/$1" ;;
  esac
}

kind_tool() {
  build_module "$BIN_DIR/kind-$KIND_VERSION" scalekeeper.dev/kindbuild "	sigs.k8s.io/kind $KIND_VERSION" sigs.k8s.io/kind
}

link_tools() {
  mkdir -p "$BIN_DIR/current"
  ln -sfn "$BIN_DIR/kind-$KIND_VERSION" "$BIN_DIR/current/kind"
  ln -sfn "$BIN_DIR/helm-$HELM_VERSION" "$BIN_DIR/current/helm"
  ln -sfn "$KUBE_BIN/kubectl" "$BIN_DIR/current/kubectl"
}

tools() {
  kind_tool
  family kubectl helm
  link_tools
}

helm() {
  family helm
  mkdir -p "$BIN_DIR/current"
  ln -sfn "$BIN_DIR/helm-$HELM_VERSION" "$BIN_DIR/current/helm"
}

# Everything but the Kubernetes family and crictl: small programs, and Prometheus.
components() {
  local x=$COMPONENTS
  kind_tool
  local e=$ETCD_VERSION
  build_module "$x/etcd-$ETCD_VERSION" scalekeeper.dev/etcdbuild \
    "	go.etcd.io/etcd/server/v3 $e
	go.etcd.io/etcd/api/v3 $e
	go.etcd.io/etcd/client/pkg/v3 $e
	go.etcd.io/etcd/client/v3 $e
	go.etcd.io/etcd/pkg/v3 $e" go.etcd.io/etcd/server/v3
  mkdir -p "$SRC/coredns-$COREDNS_VERSION" "$SRC/pause-$PAUSE_IMAGE_TAG"
  cp "$HACK_DIR/src/coredns/main.go" "$SRC/coredns-$COREDNS_VERSION/main.go"
  build_module "$x/coredns-$COREDNS_VERSION" scalekeeper.dev/corednsbuild "	github.com/coredns/coredns $COREDNS_VERSION" .
  cp "$HACK_DIR/src/pause/main.go" "$SRC/pause-$PAUSE_IMAGE_TAG/main.go"
  build_module "$x/pause-$PAUSE_IMAGE_TAG" scalekeeper.dev/pause "" .
  build_module "$x/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION" scalekeeper.dev/lppbuild \
    "	github.com/rancher/local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION" github.com/rancher/local-path-provisioner
  mkdir -p "$SRC/registry-$DISTRIBUTION_VERSION"
  cp "$HACK_DIR/src/registry/main.go" "$SRC/registry-$DISTRIBUTION_VERSION/main.go"
  build_module "$x/registry-$DISTRIBUTION_VERSION" scalekeeper.dev/registrybuild \
    "	github.com/distribution/distribution/v3 $DISTRIBUTION_VERSION" .
  prometheus
}

# `kind export logs` runs crictl in the node.
crictl() {
  build_module "$BIN_DIR/crictl-$CRICTL_VERSION" scalekeeper.dev/crictlbuild "	sigs.k8s.io/cri-tools $CRICTL_VERSION" \
    sigs.k8s.io/cri-tools/cmd/crictl "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
}

# Prometheus with only the service discovery the cluster's scrape config uses (kubernetes_sd; file and http
# are always in): upstream chooses the discovery plugins by regenerating plugins/plugins.go from plugins.yml
# (`make plugins`), which a module build cannot do, so the module's source is copied and that one file
# replaced. The cloud discoveries it leaves out are half of the build.
prometheus() {
  prometheus_command prometheus "$COMPONENTS/prometheus-$PROMETHEUS_VERSION"
}

# promtool from the same module and plugins as the cluster's Prometheus, so the rules it checks and tests are
# read as that Prometheus reads them (hack/promtool.sh).
promtool() {
  prometheus_command promtool "$BIN_DIR/promtool-$PROMETHEUS_VERSION"
}

prometheus_command() { # command out-file
  local out=$2
  [ -x "$out" ] && return 0
  local d=$SRC/$(basename "$out") src
  mkdir -p "$d"
  src=$(GOFLAGS='' go mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" | jq -r .Dir)
  rm -rf "$d/prometheus"; cp -r "$src" "$d/prometheus"; chmod -R u+w "$d/prometheus"
  cp "$HACK_DIR/src/prometheus/plugins.go" "$d/prometheus/plugins/plugins.go"
  build_module "$out" scalekeeper.dev/prombuild "	github.com/prometheus/prometheus $PROMETHEUS_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/$1" \
    "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v} -X github.com/prometheus/common/version.Branch=release" \
    "replace github.com/prometheus/prometheus => ./prometheus"
}

kill_tree() { # pid
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}

# Two lanes at once: one `go build` alone leaves a core idle while it downloads modules and links.
offline() {
  ( components ) & local components_pid=$!
  # A failed lane stops the script; the other lane (its go build and compilers too) must not go on without it.
  # shellcheck disable=SC2064  # the pid is expanded now: the local is gone when the EXIT trap runs
  trap "kill_tree $components_pid" EXIT
  family "${KUBE_COMMANDS[@]}" metrics-server helm
  wait "$components_pid" || die "building the components failed (above)"
  link_tools
}

for what in "$@"; do "$what"; done
