#!/usr/bin/env bash
# The prometheus-adapter (Kubernetes SIG Instrumentation, Go module sigs.k8s.io/prometheus-adapter at
# PROMETHEUS_ADAPTER_VERSION): the custom-metrics API server through which a plain autoscaling/v2 HPA reads the
# Celery queue depth from Prometheus, the third contender of issue 8 beside scalekeeper and KEDA. Installed from
# the manifests the module ships; nothing of it is copied into this repo.
#   hack/prometheus-adapter.sh build      the image: the stock one when the machine can pull (image mode
#                                         online), else the adapter built from its Go module (cached by version)
#                                         into an image FROM scratch; pushed to the local registry either way
#   hack/prometheus-adapter.sh install    the module's deploy/manifests that concern custom metrics, in namespace
#                                         prometheus-adapter, with our image, our rules and our Prometheus;
#                                         APIServices v1beta1 + v1beta2.custom.metrics.k8s.io; waits until served
#   hack/prometheus-adapter.sh check      end to end in namespace adapter-check: the demo's exporter and video
#                                         worker, N real tasks published, the metric read back, an HPA scaling
#                                         the worker to ceil(N / target); removes what it created
#   hack/prometheus-adapter.sh uninstall  APIServices first, then everything install applied; images, caches kept
# Served: custom.metrics.k8s.io only. The module's api-service.yaml registers v1beta1.metrics.k8s.io, which is the
# cluster's metrics-server's, and its resource-metrics RBAC (system:aggregated-metrics-reader, also
# metrics-server's) goes with it: neither is applied, and our rules have no resourceRules, so the adapter does not
# even build a resource-metrics provider. external.metrics.k8s.io is KEDA's here: never registered.
# Metrics (Object metrics on the exporter's Deployment; label `workload` -> deployments.apps, `namespace` -> namespace):
#   celery_queue_backlog_tasks   waiting + in-flight messages (what scalekeeper sizes on)
#   celery_queue_waiting_tasks   waiting messages only
# A metric selector on `queue` (an HPA's metric.selector, or ?metricLabelSelector=queue%3Dvideo on the raw API;
# not labelSelector, which selects objects and is ignored here) narrows to that queue; without one the value is
# the sum over every queue the exporter reports.
. "$(dirname "$0")/lib.sh"
need_go; need_pkg jq jq
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=
ADAPTER_MODULE=sigs.k8s.io/prometheus-adapter
ADAPTER_CACHE=$CACHE_DIR/prometheus-adapter/$PROMETHEUS_ADAPTER_VERSION
NAMESPACE=prometheus-adapter
APISERVICES=(v1beta1.custom.metrics.k8s.io v1beta2.custom.metrics.k8s.io)
# The cluster's Prometheus (hack/addons/prometheus.yaml): plain HTTP, scrapes every second.
PROMETHEUS_URL=http://prometheus.scalekeeper-system.svc:9090/
# How often the adapter lists Prometheus series to find metrics. Upstream's 1m would hide a new exporter's
# series from the API for up to a minute; values themselves are queried live on every request.
RELIST_INTERVAL=10s
CHECK_NAMESPACE=adapter-check
mkdir -p "$ADAPTER_CACHE"

# The reference pods pull, in one place: the stock image mirrored into the local registry when the machine can
# pull (under its own path, as hack/addons.sh does), else ours, under the scalekeeper-build/ prefix.
adapter_image() {
  case "$(image_mode)" in
    online) echo "$REGISTRY/${PROMETHEUS_ADAPTER_IMAGE_STOCK#*/}" ;;
    offline) echo "$REGISTRY/scalekeeper-build/prometheus-adapter:$PROMETHEUS_ADAPTER_VERSION" ;;
    *) die "image mode '$(image_mode)' unknown (run hack/cluster.sh up first)" ;;
  esac
}

# The module's source folder in the Go module cache (downloaded once; read-only).
module_dir() {
  (cd "$CACHE_DIR" && go mod download -json "$ADAPTER_MODULE@$PROMETHEUS_ADAPTER_VERSION") \
    >"$ADAPTER_CACHE/module.json" || die "go mod download $ADAPTER_MODULE@$PROMETHEUS_ADAPTER_VERSION failed"
  jq -er .Dir "$ADAPTER_CACHE/module.json"
}

binary() {
  local out=$ADAPTER_CACHE/bin
  [ -x "$out/adapter" ] && return 0
  local dir; dir=$(module_dir)
  check_go_for "prometheus-adapter $PROMETHEUS_ADAPTER_VERSION" "$dir"
  mkdir -p "$out"
  log "go build prometheus-adapter $PROMETHEUS_ADAPTER_VERSION (Go $(go env GOVERSION)); cold, this takes a while"
  local t0=$SECONDS before; before=$(du -sm "$(go env GOCACHE)" 2>/dev/null | cut -f1 || echo 0)
  # Upstream's Makefile: CGO_ENABLED=0 go build ./cmd/adapter (no ldflags). Built inside the module itself so
  # its go.sum and replace directives apply unchanged; -s -w only drop the symbol tables.
  (cd "$dir" && run_logged prometheus-adapter-build go build -mod=readonly -trimpath -ldflags "-s -w" \
    -o "$out/adapter" ./cmd/adapter) \
    || die "go build of prometheus-adapter failed (see $LOG_DIR/prometheus-adapter-build.log)"
  local after; after=$(du -sm "$(go env GOCACHE)" 2>/dev/null | cut -f1 || echo 0)
  log "built in $((SECONDS - t0)) s; binary $(du -sh "$out/adapter" | cut -f1), Go build cache grew by $((after - before)) MB"
}


build() {
  local img; img=$(adapter_image)
  if [ "$(image_mode)" = online ]; then
    docker image inspect "$img" >/dev/null 2>&1 || {
      docker pull -q "$PROMETHEUS_ADAPTER_IMAGE_STOCK" >/dev/null || die "docker pull $PROMETHEUS_ADAPTER_IMAGE_STOCK failed"
      docker tag "$PROMETHEUS_ADAPTER_IMAGE_STOCK" "$img"
    }
  else
    binary
    # Upstream's image is distroless/static with /adapter, user 65534: the same thing without pulling a base.
    go_binary_image "$img" "$ADAPTER_CACHE/bin/adapter" "$ADAPTER_CACHE/image" 65534 '"/adapter"'
  fi
  # Pushing what the registry already holds only compares digests.
  run_logged push-prometheus-adapter docker push "$img" || die "docker push $img failed"
  log "prometheus-adapter $PROMETHEUS_ADAPTER_VERSION image in the registry: $img"
}

# The adapter's discovery rules: each Prometheus series celery_queue_waiting_tasks{namespace, workload, queue, pod}
# (hack/addons/prometheus.yaml sets namespace, pod and workload = the pod's `app` label) yields two Object metrics
# on the Deployment named by `workload`. <<.LabelMatchers>> carries namespace, workload and the request's metric
# selector (queue="video"), so a selector narrows before anything is summed. `max by (workload, queue)` first:
# while the exporter rolls, an old and a new pod report the same queue, and summing them would count it twice.
rules_config() {
  cat <<'YAML'
rules:
# waiting + in-flight (delivered, not acked yet): the work the queue still holds; what scalekeeper sizes on
- seriesQuery: 'celery_queue_waiting_tasks{namespace!="",workload!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
      workload: {group: apps, resource: deployment}
  name: {matches: ^celery_queue_waiting_tasks$, as: celery_queue_backlog_tasks}
  metricsQuery: |-
    sum by (<<.GroupBy>>) (
      max by (<<.GroupBy>>, queue) (celery_queue_waiting_tasks{<<.LabelMatchers>>})
      + max by (<<.GroupBy>>, queue) (celery_queue_inflight_tasks{<<.LabelMatchers>>})
    )
# waiting only
- seriesQuery: 'celery_queue_waiting_tasks{namespace!="",workload!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
      workload: {group: apps, resource: deployment}
  name: {matches: ^celery_queue_waiting_tasks$, as: celery_queue_waiting_tasks}
  metricsQuery: sum by (<<.GroupBy>>) (max by (<<.GroupBy>>, queue) (<<.Series>>{<<.LabelMatchers>>}))
YAML
}

# kubectl kustomize over the module's own deploy/manifests, rendered to $ADAPTER_CACHE/prometheus-adapter.yaml.
# Two levels because the namespace transformer moves every namespaced object: the inner one puts everything in
# $NAMESPACE; the outer one adds the auth-reader RoleBinding, which must stay in kube-system (it grants reading
# the extension-apiserver-authentication ConfigMap there), and points its subject at $NAMESPACE.
# Left out: api-service.yaml, cluster-role-aggregated-metrics-reader.yaml, cluster-role-metrics-server-resources.yaml
# (metrics.k8s.io: metrics-server's); cluster-role-binding-hpa-custom-metrics.yaml (binds a ClusterRole
# custom-metrics-server-resources the module does not ship; the HPA controller's bootstrap role
# system:controller:horizontal-pod-autoscaler already reads custom.metrics.k8s.io); config-map.yaml (resource
# rules only: replaced by ours); pod-disruption-budget.yaml (minAvailable 1 of our single replica would block
# every eviction).
render() {
  local dir ov=$ADAPTER_CACHE/overlay img; img=$(adapter_image)
  dir=$(module_dir)/deploy/manifests
  rm -rf "$ov"; mkdir -p "$ov/namespaced"
  local m; m=$(realpath --relative-to="$ov/namespaced" "$dir")
  cat >"$ov/namespaced/namespace.yaml" <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: $NAMESPACE}
YAML
  rules_config >"$ov/namespaced/config.yaml"
  cat >"$ov/namespaced/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $NAMESPACE
resources:
- namespace.yaml
- $m/service-account.yaml
- $m/cluster-role.yaml
- $m/cluster-role-binding.yaml
- $m/cluster-role-binding-delegator.yaml
- $m/service.yaml
- $m/deployment.yaml
- $m/network-policy.yaml
configMapGenerator:
- name: adapter-config
  files: [config.yaml]
  options: {disableNameSuffixHash: true, labels: {app.kubernetes.io/name: prometheus-adapter}}
images:
- name: ${PROMETHEUS_ADAPTER_IMAGE_STOCK%:*}
  newName: ${img%:*}
  newTag: ${img##*:}
patches:
# The cluster-scoped objects keep upstream's metadata.namespace: monitoring, which the API server ignores.
- target: {kind: ClusterRoleBinding}
  patch: |-
    - op: remove
      path: /metadata/namespace
# test before replace: if upstream's argument list moves, rendering fails instead of editing the wrong flag.
- target: {group: apps, version: v1, kind: Deployment, name: prometheus-adapter}
  patch: |-
    - op: replace
      path: /spec/replicas
      value: 1
    # The adapter reads its rules only at start: a changed rules file changes the pod template, so apply rolls it.
    - op: add
      path: /spec/template/metadata/annotations
      value: {scalekeeper.dev/rules-sha256: "$(sha256sum "$ov/namespaced/config.yaml" | cut -c1-64)"}
    - op: test
      path: /spec/template/spec/containers/0/args/2
      value: --metrics-relist-interval=1m
    - op: replace
      path: /spec/template/spec/containers/0/args/2
      value: --metrics-relist-interval=$RELIST_INTERVAL
    - op: test
      path: /spec/template/spec/containers/0/args/3
      value: --prometheus-url=https://prometheus.monitoring.svc:9090/
    - op: replace
      path: /spec/template/spec/containers/0/args/3
      value: --prometheus-url=$PROMETHEUS_URL
YAML
  cat >"$ov/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- namespaced
- $(realpath --relative-to="$ov" "$dir")/role-binding-auth-reader.yaml
patches:
- target: {kind: RoleBinding, name: resource-metrics-auth-reader}
  patch: |-
    - op: test
      path: /subjects/0/name
      value: prometheus-adapter
    - op: replace
      path: /subjects/0/namespace
      value: $NAMESPACE
YAML
  # The module's manifests sit in the Go module cache, outside the overlay: allow kustomize to read them.
  kubectl kustomize --load-restrictor=LoadRestrictionsNone "$ov" >"$ADAPTER_CACHE/prometheus-adapter.yaml.tmp" \
    || die "kubectl kustomize $ov failed"
  mv "$ADAPTER_CACHE/prometheus-adapter.yaml.tmp" "$ADAPTER_CACHE/prometheus-adapter.yaml"
  # Registered apart, once the adapter answers: an APIService whose backend is not up makes discovery of its
  # group fail, which stalls namespace deletion and garbage collection cluster-wide.
  local v priority
  for v in v1beta1 v1beta2; do
    # the newer version is the one clients (the HPA controller) prefer
    priority=100; [ $v = v1beta1 ] || priority=200
    cat <<YAML
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: $v.custom.metrics.k8s.io, labels: {app.kubernetes.io/name: prometheus-adapter}}
spec:
  group: custom.metrics.k8s.io
  version: $v
  groupPriorityMinimum: 100
  versionPriority: $priority
  # The adapter serves a self-signed certificate it generates in --cert-dir at start (upstream's way).
  insecureSkipTLSVerify: true
  service: {name: prometheus-adapter, namespace: $NAMESPACE}
YAML
  done >"$ADAPTER_CACHE/apiservices.yaml"
}

install() {
  local img; img=$(adapter_image)
  local repo=${img#"$REGISTRY"/}; repo=${repo%:*}
  curl -sf -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY/v2/$repo/manifests/${img##*:}" \
    || die "$img is not in the registry: run hack/prometheus-adapter.sh build"
  kubectl get apiservice v1beta1.external.metrics.k8s.io >/dev/null 2>&1 \
    && log "external.metrics.k8s.io is served by $(kubectl get apiservice v1beta1.external.metrics.k8s.io \
      -o jsonpath='{.spec.service.namespace}/{.spec.service.name}'); left alone"
  render
  log "applying prometheus-adapter $PROMETHEUS_ADAPTER_VERSION ($img) to namespace $NAMESPACE"
  run_logged prometheus-adapter-apply kubectl apply -f "$ADAPTER_CACHE/prometheus-adapter.yaml" \
    || die "applying prometheus-adapter failed (see $LOG_DIR/prometheus-adapter-apply.log)"
  kubectl -n "$NAMESPACE" rollout status deploy/prometheus-adapter --timeout=600s >/dev/null \
    || die "prometheus-adapter did not become ready (kubectl -n $NAMESPACE describe pod -l app.kubernetes.io/name=prometheus-adapter)"
  run_logged prometheus-adapter-apiservices kubectl apply -f "$ADAPTER_CACHE/apiservices.yaml" \
    || die "registering the APIServices failed (see $LOG_DIR/prometheus-adapter-apiservices.log)"
  local a
  for a in "${APISERVICES[@]}"; do
    kubectl wait --for=condition=Available "apiservice/$a" --timeout=180s >/dev/null \
      || die "APIService $a did not become Available (kubectl get apiservice $a -o yaml)"
  done
  log "prometheus-adapter ready: APIServices ${APISERVICES[*]} Available, Prometheus $PROMETHEUS_URL"
}

uninstall() {
  [ -f "$ADAPTER_CACHE/prometheus-adapter.yaml" ] || render
  # The APIServices first: once their Service is gone an unavailable aggregated API stalls discovery (and
  # namespace deletion) cluster-wide.
  kubectl delete apiservice "${APISERVICES[@]}" --ignore-not-found >/dev/null
  run_logged prometheus-adapter-delete kubectl delete -f "$ADAPTER_CACHE/prometheus-adapter.yaml" \
    --ignore-not-found --wait --timeout=180s \
    || die "deleting prometheus-adapter failed (see $LOG_DIR/prometheus-adapter-delete.log)"
  log "prometheus-adapter removed (namespace $NAMESPACE, cluster RBAC, APIServices); images and caches kept"
}

# --- check: the adapter end to end on the real cluster, in namespace $CHECK_NAMESPACE -----------------------------
CHECK_TASKS=${ADAPTER_CHECK_TASKS:-60}        # tasks published to the video queue
CHECK_TARGET=${ADAPTER_CHECK_TARGET:-15}      # the HPA's averageValue: tasks per worker replica
CHECK_MAX_REPLICAS=10
# Every Redis key of the check (kombu's and the demo's) carries this prefix, so it shares no queue with anyone.
CHECK_PREFIX=$CHECK_NAMESPACE:
CUSTOM_METRICS=/apis/custom.metrics.k8s.io

# Prints the value of one Object metric on deployments.apps/queue-exporter (a plain number), or nothing when the
# adapter has none (404 until Prometheus holds the exporter's series). The metric's own labels are selected by
# metricLabelSelector, what the HPA sends for metric.selector; labelSelector would select objects, and for one
# named object the adapter ignores it (the queue would not be filtered).
object_metric() { # api-version metric metric-label-selector
  local q='' out; [ -z "$3" ] || q="?metricLabelSelector=$(jq -rn --arg s "$3" '$s | @uri')"
  out=$(kubectl get --raw "$CUSTOM_METRICS/$1/namespaces/$CHECK_NAMESPACE/deployments.apps/queue-exporter/$2$q" \
    2>/dev/null) || return 0
  jq -r '.items[0].value // empty' <<<"$out" | quantity
}

# A Kubernetes quantity as the adapter writes it ("60", "1500m") to a plain number.
quantity() {
  awk '{ v = $1; if (v ~ /m$/) { sub(/m$/, "", v); v = v / 1000 } print v + 0 }'
}

# Keys of the check in the cluster's Redis, deleted through redis-cli in its pod (the image has no shell tools).
purge_check_keys() {
  local keys
  mapfile -t keys < <(kubectl -n scalekeeper-system exec deploy/redis -- redis-cli --scan --pattern "$CHECK_PREFIX*")
  [ ${#keys[@]} -eq 0 ] || kubectl -n scalekeeper-system exec deploy/redis -- redis-cli DEL "${keys[@]}" >/dev/null
}

check_cleanup() {
  # The script's exit status stays the check's: nothing here calls exit.
  if [ -n "${ADAPTER_CHECK_KEEP:-}" ]; then
    log "ADAPTER_CHECK_KEEP set: namespace $CHECK_NAMESPACE and keys $CHECK_PREFIX* left in place"; return
  fi
  log "cleaning up: namespace $CHECK_NAMESPACE, Redis keys $CHECK_PREFIX*"
  # Deleting the namespace stops the workers (warm shutdown restores their prefetched messages), then the keys go.
  kubectl delete namespace "$CHECK_NAMESPACE" --ignore-not-found --wait --timeout=180s >/dev/null \
    || log "namespace $CHECK_NAMESPACE still terminating after 180 s"
  purge_check_keys || log "could not delete the Redis keys $CHECK_PREFIX*"
}

# The demo's config, video worker and queue exporter (manifests/examples/demo/render.py), nothing else.
check_manifests() { # demo-image exporter-image redis-image
  "$PY" - "$1" "$2" "$3" "$CHECK_PREFIX" <<'PY'
import sys

sys.path.insert(0, "manifests/examples/demo")
import yaml
from render import render

wanted = {("ConfigMap", "demo-config"), ("Deployment", "worker-video"), ("Deployment", "queue-exporter"),
          ("Service", "queue-exporter")}
images = {"DEMO_IMAGE": sys.argv[1], "EXPORTER_IMAGE": sys.argv[2], "REDIS_IMAGE": sys.argv[3]}
docs = render(images, key_prefix=sys.argv[4])
yaml.safe_dump_all([d for d in docs if (d["kind"], d["metadata"]["name"]) in wanted], sys.stdout, sort_keys=False)
PY
}

check() {
  PY=${PYTHON:-$ROOT_DIR/.venv/bin/python}
  "$PY" -c 'import yaml' 2>/dev/null || die "no Python with PyYAML at $PY (make venv, or set PYTHON=...)"
  local a
  for a in "${APISERVICES[@]}"; do
    [ "$(kubectl get apiservice "$a" -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null)" = True ] \
      || die "APIService $a is not Available: run hack/prometheus-adapter.sh build install"
  done
  local demo_image exporter_image redis_image t0=$SECONDS
  demo_image=$("$HACK_DIR/demo-image.sh"); exporter_image=$("$HACK_DIR/exporter-image.sh")
  # shellcheck source=/dev/null
  . "$STATE_DIR/images.env"; redis_image=${REDIS_IMAGE:?no REDIS_IMAGE in $STATE_DIR/images.env}
  cd "$ROOT_DIR" || die "cannot cd to $ROOT_DIR"

  kubectl delete namespace "$CHECK_NAMESPACE" --ignore-not-found --wait --timeout=180s >/dev/null
  purge_check_keys
  trap check_cleanup EXIT
  kubectl create namespace "$CHECK_NAMESPACE" >/dev/null
  check_manifests "$demo_image" "$exporter_image" "$redis_image" | kubectl -n "$CHECK_NAMESPACE" apply -f - >/dev/null \
    || die "applying the demo's exporter and worker failed"
  kubectl -n "$CHECK_NAMESPACE" rollout status deploy/queue-exporter --timeout=180s >/dev/null \
    || die "queue-exporter did not become ready"
  kubectl -n "$CHECK_NAMESPACE" rollout status deploy/worker-video --timeout=180s >/dev/null \
    || die "worker-video did not become ready"
  log "exporter and worker-video ready ($((SECONDS - t0)) s); waiting for the adapter to serve the empty queue"

  # 1. The metric exists and reads 0 before anything is published.
  local v='' deadline=$((SECONDS + 120))
  until [ "$v" = 0 ]; do
    [ $SECONDS -lt $deadline ] || die "celery_queue_backlog_tasks{queue=video} not served as 0 within 120 s (last: '${v:-none}')"
    sleep 2; v=$(object_metric v1beta1 celery_queue_backlog_tasks queue=video)
  done
  log "served: celery_queue_backlog_tasks{queue=video} = 0 ($((SECONDS - t0)) s)"

  # 2. N real tasks on the video queue, 30 s each (the demo's MAX_TASK_SECONDS), published by the demo's producer:
  # none completes within the next 30 s, so the backlog (waiting + in flight) must read exactly N meanwhile.
  kubectl -n "$CHECK_NAMESPACE" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: producer}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 10001, runAsGroup: 10001, runAsNonRoot: true}
  containers:
  - name: producer
    image: $demo_image
    command: [python, -m, scalekeeper_demo.produce, --queue, video, --count, "$CHECK_TASKS", --seconds, "30"]
    envFrom: [{configMapRef: {name: demo-config}}]
    securityContext: {allowPrivilegeEscalation: false}
YAML
  kubectl -n "$CHECK_NAMESPACE" wait --for=jsonpath='{.status.phase}'=Succeeded pod/producer --timeout=180s >/dev/null \
    || die "the producer did not finish (kubectl -n $CHECK_NAMESPACE logs producer)"
  local published; published=$(kubectl -n "$CHECK_NAMESPACE" logs producer | jq -r 'select(.published) | .published')
  [ "$published" = "$CHECK_TASKS" ] || die "the producer published '$published' tasks, not $CHECK_TASKS"
  local t_published=$SECONDS
  v=; deadline=$((SECONDS + 20))
  until [ "$v" = "$CHECK_TASKS" ]; do
    [ $SECONDS -lt $deadline ] || die "celery_queue_backlog_tasks{queue=video} = '${v:-none}' 20 s after publishing $CHECK_TASKS"
    sleep 1; v=$(object_metric v1beta1 celery_queue_backlog_tasks queue=video)
  done
  log "published $CHECK_TASKS tasks; the adapter serves celery_queue_backlog_tasks{queue=video} = $v ($((SECONDS - t_published)) s later)"

  # 3. The selector filters, both versions serve, the waiting-only metric is there.
  local v2 emails all waiting
  v2=$(object_metric v1beta2 celery_queue_backlog_tasks queue=video)
  emails=$(object_metric v1beta1 celery_queue_backlog_tasks queue=emails)
  all=$(object_metric v1beta1 celery_queue_backlog_tasks "")
  waiting=$(object_metric v1beta1 celery_queue_waiting_tasks queue=video)
  log "v1beta2 backlog{queue=video} = $v2; backlog{queue=emails} = $emails; backlog (no selector: all queues) = $all;" \
    "waiting{queue=video} = $waiting (the rest is in flight)"
  [ "$v2" = "$CHECK_TASKS" ] || die "v1beta2 serves backlog{queue=video} = '$v2', v1beta1 $CHECK_TASKS"
  [ "$emails" = 0 ] || die "backlog{queue=emails} = '$emails': the queue selector does not filter"
  [ "$all" = "$CHECK_TASKS" ] || die "backlog without selector = '$all', expected $CHECK_TASKS (emails and reports are empty)"
  awk -v w="${waiting:--1}" -v n="$CHECK_TASKS" 'BEGIN { exit !(w > 0 && w <= n) }' \
    || die "waiting{queue=video} = '$waiting', expected in (0, $CHECK_TASKS]"

  # 4. A plain HPA on the worker, fed by the adapter.
  local expected=$(((CHECK_TASKS + CHECK_TARGET - 1) / CHECK_TARGET))
  [ $expected -le $CHECK_MAX_REPLICAS ] || expected=$CHECK_MAX_REPLICAS
  kubectl -n "$CHECK_NAMESPACE" apply -f - >/dev/null <<YAML
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: worker-video}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker-video}
  minReplicas: 1
  maxReplicas: $CHECK_MAX_REPLICAS
  metrics:
  - type: Object
    object:
      describedObject: {apiVersion: apps/v1, kind: Deployment, name: queue-exporter}
      metric: {name: celery_queue_backlog_tasks, selector: {matchLabels: {queue: video}}}
      target: {type: AverageValue, averageValue: "$CHECK_TARGET"}
YAML
  local t_hpa=$SECONDS replicas=1 seen row
  log "HPA created (target $CHECK_TARGET tasks per replica): expecting worker-video at ceil($CHECK_TASKS/$CHECK_TARGET) = $expected replicas"
  # hpa_per_replica: the metric over the current replicas, as the HPA reports it for an AverageValue target
  printf '%6s %16s %12s %10s %7s\n' t_s hpa_per_replica hpa_desired replicas ready >&2
  deadline=$((SECONDS + 180))
  while :; do
    row=$(kubectl -n "$CHECK_NAMESPACE" get hpa worker-video -o json \
      | jq -r '[(.status.currentMetrics[0].object.current.averageValue // "-"), (.status.desiredReplicas // "-")] | @tsv')
    seen=$(kubectl -n "$CHECK_NAMESPACE" get deploy worker-video -o jsonpath='{.spec.replicas} {.status.readyReplicas}')
    replicas=${seen%% *}
    printf '%6d %16s %12s %10s %7s\n' $((SECONDS - t_hpa)) "${row%%$'\t'*}" "${row##*$'\t'}" "$replicas" "${seen#* }" >&2
    [ "$replicas" != "$expected" ] || break
    if [ $SECONDS -ge $deadline ]; then
      kubectl -n "$CHECK_NAMESPACE" describe hpa worker-video >&2
      die "worker-video at $replicas replicas 180 s after the HPA was created, expected $expected"
    fi
    sleep 3
  done
  log "PASS: the HPA scaled worker-video 1 -> $replicas from celery_queue_backlog_tasks{queue=video} in" \
    "$((SECONDS - t_hpa)) s ($((SECONDS - t0)) s in all, before cleanup)"
}

[ $# -gt 0 ] || die "usage: hack/prometheus-adapter.sh build|install|check|uninstall ..."
for what in "$@"; do
  case "$what" in
    build|install|check|uninstall|render) "$what" ;;
    *) die "unknown step '$what' (build|install|check|uninstall)" ;;
  esac
done
