#!/usr/bin/env bash
# Builds Go programs from their modules into the cache, keyed by version: nothing rebuilds when present.
#   hack/build-go.sh tools        kind, helm, kubectl (+ crictl)
#   hack/build-go.sh helm         helm only
#   hack/build-go.sh kubernetes   every Kubernetes command the node image needs
#   hack/build-go.sh components   etcd, CoreDNS, pause, local-path-provisioner, registry, metrics-server
. "$(dirname "$0")/lib.sh"
need_go; need_pkg jq jq
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
# Go 1.27 changes encoding/json defaults in a way that breaks the apiserver's OpenAPI handler.
case "$(go env GOVERSION)" in go1.2[7-9]*|go1.[3-9]*) export GOEXPERIMENT=nojsonv2 ;; esac
SRC=$CACHE_DIR/go-src

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

kubernetes() {
  local out=$CACHE_DIR/kubernetes/$K8S_VERSION/bin
  local cmds="kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl"
  local missing=0 c
  for c in $cmds; do [ -x "$out/$c" ] || missing=1; done
  [ $missing = 0 ] && return 0
  local d=$SRC/kubernetes-$K8S_VERSION; mkdir -p "$d" "$out"
  # k8s.io/kubernetes refers to its staging modules by ./staging paths: point each at its published version.
  local gomod; gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod)
  { printf 'module scalekeeper.dev/kbuild\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    grep '=> ./staging' "$gomod" | awk -v v="$K8S_STAGING_VERSION" '{print "\t"$1" => "$1" "v}'; echo ')'; } >"$d/go.mod"
  (cd "$d" && go get "k8s.io/kubernetes@$K8S_VERSION") >/dev/null 2>&1 || die "resolving k8s.io/kubernetes@$K8S_VERSION failed"
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local v=k8s.io/component-base/version cv=k8s.io/client-go/pkg/version
  # kubeadm reads its own version to pick image tags, so the version stamps must be right.
  local ldf="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  ldf="$ldf -X $v.gitCommit=0000000000000000000000000000000000000000 -X $v.buildDate=2026-01-01T00:00:00Z"
  ldf="$ldf -X $cv.gitVersion=$K8S_VERSION -X $cv.gitMajor=1 -X $cv.gitMinor=$minor"
  local pkgs="" ; for c in $cmds; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
  log "go build Kubernetes $K8S_VERSION ($cmds): about 7 minutes cold on 2 cores"
  # shellcheck disable=SC2086
  (cd "$d" && go build -trimpath -ldflags "$ldf" -o "$out/" $pkgs) || die "Kubernetes build failed"
}

# helm alone, for the release workflow (it packages and pushes the chart, and needs no cluster tools).
helm() {
  build_module "$BIN_DIR/helm-$HELM_VERSION" scalekeeper.dev/helmbuild "	helm.sh/helm/v3 $HELM_VERSION" \
    helm.sh/helm/v3/cmd/helm "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  mkdir -p "$BIN_DIR/current"
  ln -sfn "$BIN_DIR/helm-$HELM_VERSION" "$BIN_DIR/current/helm"
}

tools() {
  local b=$BIN_DIR
  build_module "$b/kind-$KIND_VERSION" scalekeeper.dev/kindbuild "	sigs.k8s.io/kind $KIND_VERSION" sigs.k8s.io/kind
  helm
  build_module "$b/crictl-$CRICTL_VERSION" scalekeeper.dev/crictlbuild "	sigs.k8s.io/cri-tools $CRICTL_VERSION" \
    sigs.k8s.io/cri-tools/cmd/crictl "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
  kubernetes
  mkdir -p "$b/current"
  ln -sfn "$b/kind-$KIND_VERSION" "$b/current/kind"
  ln -sfn "$CACHE_DIR/kubernetes/$K8S_VERSION/bin/kubectl" "$b/current/kubectl"
}

components() {
  local x=$CACHE_DIR/components
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
  build_module "$x/registry-$DISTRIBUTION_VERSION" scalekeeper.dev/registrybuild \
    "	github.com/distribution/distribution/v3 $DISTRIBUTION_VERSION" github.com/distribution/distribution/v3/cmd/registry
  build_module "$x/prometheus-$PROMETHEUS_VERSION" scalekeeper.dev/prombuild \
    "	github.com/prometheus/prometheus $PROMETHEUS_MODULE_VERSION" github.com/prometheus/prometheus/cmd/prometheus \
    "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v} -X github.com/prometheus/common/version.Branch=release"
  build_module "$x/metrics-server-$METRICS_SERVER_VERSION" scalekeeper.dev/msbuild \
    "	sigs.k8s.io/metrics-server $METRICS_SERVER_VERSION" sigs.k8s.io/metrics-server/cmd/metrics-server
}

for what in "$@"; do "$what"; done
