#!/usr/bin/env bash
# KEDA, the peer bench.reaction_peer compares against, built from its Go module (github.com/kedacore/keda/v2
# at KEDA_VERSION) and installed from the manifests that module ships. Nothing of KEDA is copied into this repo.
#   hack/keda.sh build       operator + metrics adapter binaries (cached by version), images FROM scratch, pushed
#   hack/keda.sh install     KEDA's config/minimal kustomization (CRDs, RBAC, operator, metrics-apiserver,
#                            APIService) with our images, applied in namespace keda; waits until Ready
#   hack/keda.sh uninstall   deletes all of it, KEDA's objects first, then the APIService
#                            v1beta1.external.metrics.k8s.io, the namespace, the cluster RBAC and the CRDs
# The admission webhooks are left out: they only validate ScaledObjects (failurePolicy Ignore) and take no part in
# scaling. KEDA does not need cert-manager for them (its operator issues its own certificates); config/minimal is
# KEDA's own webhook-less variant, and the operator is told not to patch the missing webhook configuration.
. "$(dirname "$0")/lib.sh"
need_go; need_pkg jq jq
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=
KEDA_MODULE=github.com/kedacore/keda/v2
KEDA_CACHE=$CACHE_DIR/keda/$KEDA_VERSION
OPERATOR_IMAGE=$REGISTRY/keda:$KEDA_VERSION
ADAPTER_IMAGE=$REGISTRY/keda-metrics-apiserver:$KEDA_VERSION
APISERVICE=v1beta1.external.metrics.k8s.io
mkdir -p "$KEDA_CACHE"

# The module's source folder in the Go module cache (downloaded once; read-only).
module_dir() {
  (cd "$CACHE_DIR" && go mod download -json "$KEDA_MODULE@$KEDA_VERSION") >"$KEDA_CACHE/module.json" \
    || die "go mod download $KEDA_MODULE@$KEDA_VERSION failed"
  jq -er .Dir "$KEDA_CACHE/module.json"
}

binaries() {
  local out=$KEDA_CACHE/bin
  [ -x "$out/keda" ] && [ -x "$out/keda-adapter" ] && return 0
  local dir; dir=$(module_dir)
  check_go_for "KEDA $KEDA_VERSION" "$dir"
  mkdir -p "$out"
  # KEDA's Makefile sets these two; the module proxy carries no commit hash, so GitCommit names the source.
  local v=$KEDA_MODULE/version
  local ldf="-s -w -X $v.Version=${KEDA_VERSION#v} -X $v.GitCommit=$KEDA_VERSION-goproxy"
  log "go build KEDA $KEDA_VERSION operator + metrics adapter (Go $(go env GOVERSION)); cold, this takes a while"
  local t0=$SECONDS before; before=$(du -sm "$(go env GOCACHE)" 2>/dev/null | cut -f1 || echo 0)
  # Built inside the module itself so its go.sum, replace and exclude directives apply unchanged.
  (cd "$dir" && run_logged keda-build go build -mod=readonly -trimpath -ldflags "$ldf" -o "$out/" \
    ./cmd/operator ./cmd/adapter) || die "go build of KEDA $KEDA_VERSION failed (see $LOG_DIR/keda-build.log)"
  # go build names each binary after its package folder; KEDA's images call them keda and keda-adapter.
  mv "$out/operator" "$out/keda"; mv "$out/adapter" "$out/keda-adapter"
  local after; after=$(du -sm "$(go env GOCACHE)" 2>/dev/null | cut -f1 || echo 0)
  log "built in $((SECONDS - t0)) s; binaries $(du -sh "$out" | cut -f1), Go build cache grew by $((after - before)) MB"
}

build() {
  binaries
  # KEDA's own user, as its images run
  go_binary_image "$OPERATOR_IMAGE" "$KEDA_CACHE/bin/keda" "$KEDA_CACHE/image-keda" 65532:65532 \
    '"/keda", "--zap-log-level=info", "--zap-encoder=console"'
  go_binary_image "$ADAPTER_IMAGE" "$KEDA_CACHE/bin/keda-adapter" "$KEDA_CACHE/image-keda-adapter" 65532:65532 \
    '"/keda-adapter", "--secure-port=6443", "--zap-log-level=info", "--zap-encoder=console"'
  # Pushing what the registry already holds only compares digests.
  run_logged push-keda docker push "$OPERATOR_IMAGE" || die "docker push $OPERATOR_IMAGE failed"
  run_logged push-keda-adapter docker push "$ADAPTER_IMAGE" || die "docker push $ADAPTER_IMAGE failed"
  log "KEDA $KEDA_VERSION images in the registry: $OPERATOR_IMAGE $ADAPTER_IMAGE"
}

# KEDA's config/minimal with our image names, rendered to $KEDA_CACHE/keda.yaml.
render() {
  local dir ov=$KEDA_CACHE/overlay
  dir=$(module_dir); mkdir -p "$ov"
  # kustomize takes a base only by a relative path.
  cat >"$ov/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$ov" "$dir/config/minimal")
images:
- name: ghcr.io/kedacore/keda
  newName: $REGISTRY/keda
  newTag: $KEDA_VERSION
- name: ghcr.io/kedacore/keda-metrics-apiserver
  newName: $REGISTRY/keda-metrics-apiserver
  newTag: $KEDA_VERSION
patches:
- target: {group: apps, version: v1, kind: Deployment, name: keda-operator}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --enable-webhook-patching=false
YAML
  kubectl kustomize "$ov" >"$KEDA_CACHE/keda.yaml.tmp" || die "kubectl kustomize $ov failed"
  mv "$KEDA_CACHE/keda.yaml.tmp" "$KEDA_CACHE/keda.yaml"
}

install() {
  local img
  for img in keda keda-metrics-apiserver; do
    curl -sf -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://$REGISTRY/v2/$img/manifests/$KEDA_VERSION" || die "$REGISTRY/$img:$KEDA_VERSION is not in the registry: run hack/keda.sh build"
  done
  render
  log "applying KEDA $KEDA_VERSION (config/minimal, no admission webhooks) to namespace keda"
  # server-side: the ScaledJob CRD is too large for the last-applied annotation of a client-side apply.
  run_logged keda-apply kubectl apply --server-side --force-conflicts -f "$KEDA_CACHE/keda.yaml" \
    || die "applying KEDA failed (see $LOG_DIR/keda-apply.log)"
  kubectl -n keda rollout status deploy/keda-operator --timeout=300s >/dev/null \
    || die "keda-operator did not become ready (kubectl -n keda logs deploy/keda-operator)"
  kubectl -n keda rollout status deploy/keda-metrics-apiserver --timeout=300s >/dev/null \
    || die "keda-metrics-apiserver did not become ready (kubectl -n keda describe pod -l app=keda-metrics-apiserver)"
  kubectl wait --for=condition=Available "apiservice/$APISERVICE" --timeout=180s >/dev/null \
    || die "APIService $APISERVICE did not become Available (kubectl get apiservice $APISERVICE -o yaml)"
  log "KEDA $KEDA_VERSION ready: operator, metrics-apiserver, APIService $APISERVICE Available"
}

uninstall() {
  [ -f "$KEDA_CACHE/keda.yaml" ] || render
  # KEDA's objects carry its finalizer: delete them while the operator still runs to remove it.
  if kubectl get crd scaledobjects.keda.sh >/dev/null 2>&1; then
    kubectl delete scaledobjects.keda.sh,scaledjobs.keda.sh -A --all --timeout=60s >/dev/null 2>&1 \
      || log "some ScaledObjects/ScaledJobs did not go within 60 s"
  fi
  # The APIService first: once its Service is gone an unavailable aggregated API stalls discovery (and
  # namespace deletion) cluster-wide.
  kubectl delete apiservice "$APISERVICE" --ignore-not-found >/dev/null
  run_logged keda-delete kubectl delete -f "$KEDA_CACHE/keda.yaml" --ignore-not-found --wait --timeout=180s \
    || die "deleting KEDA failed (see $LOG_DIR/keda-delete.log)"
  log "KEDA removed (namespace keda, CRDs, cluster RBAC, APIService $APISERVICE); images and caches kept"
}

[ $# -gt 0 ] || die "usage: hack/keda.sh build|install|uninstall ..."
for what in "$@"; do
  case "$what" in build|install|uninstall|render) "$what" ;; *) die "unknown step '$what' (build|install|uninstall)" ;; esac
done
