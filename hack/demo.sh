#!/usr/bin/env bash
# `make demo`: the kind cluster, the operator from the Helm chart (watching only namespace demo, with its own
# Lease), the demo application and its ScalingPolicy (windows shortened), real load on web (make loadtest's
# locust, as a pod) and on the video queue, the tiers scaling live in the terminal with web's latency, and a
# plot of it all in out/demo.png. Leaves everything running.
#   hack/demo.sh                    the whole demo (about 20 min on a fresh 2-core machine, 7 min once built)
#   DEMO_SKIP_SETUP=1 hack/demo.sh  only the policy, the load and the live view (cluster, chart, app in place)
#   PYTHONPATH=hack .venv/bin/python -m demo_watch plot   re-draws out/demo.png from the last run's record
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$HACK_DIR/.." && pwd)

# Prerequisites, all reported at once, before anything starts.
missing=()
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  missing+=("python3 >= 3.11 (Debian/Ubuntu: apt-get install python3 python3-venv)")
elif [ ! -x "$ROOT_DIR/.venv/bin/python" ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=("python3-venv, to create the project's .venv (Debian/Ubuntu: apt-get install python3-venv)")
fi
go_bin=$(command -v go 2>/dev/null || { [ -x /usr/local/go/bin/go ] && echo /usr/local/go/bin/go; } || true)
go_version=; if [ -n "$go_bin" ]; then go_version=$("$go_bin" env GOVERSION 2>/dev/null || true); fi
go_minor=0; [[ $go_version =~ ^go1\.([0-9]+) ]] && go_minor=${BASH_REMATCH[1]}
if [ -z "$go_bin" ] || [ "$go_minor" -lt 24 ]; then
  missing+=("go >= 1.24${go_version:+ (found $go_version)}, which builds kind, helm and kubectl (https://go.dev/dl, unpacked in /usr/local/go)")
fi
if ! command -v docker >/dev/null 2>&1; then
  # As root with apt-get, hack/docker.sh installs Debian's docker.io itself.
  if [ "$(id -u)" != 0 ]; then
    missing+=("docker (Debian/Ubuntu: apt-get install docker.io), or run as root and hack/docker.sh installs it")
  elif ! command -v apt-get >/dev/null 2>&1; then
    missing+=("docker: no apt-get here to install docker.io; install a Docker engine")
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "make demo: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

# shellcheck source=lib.sh
. "$HACK_DIR/lib.sh"
NS=demo
RELEASE=scalekeeper-demo
RELEASE_NS=scalekeeper-demo
POLICY=demo
PY=$ROOT_DIR/.venv/bin/python
# The demo's watcher, the package hack/demo_watch.
# It reads locust's log with bench.loadtest's reader, so the project root is on its path too.
demo_watch() { PYTHONPATH="$HACK_DIR:$ROOT_DIR${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m demo_watch "$@"; }
T0=$(date +%s)
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then B=$'\033[1m'; N=$'\033[0m'; else B=; N=; fi
step() { printf '\n%s==> %s%s  (+%ss)\n' "$B" "$*" "$N" "$(( $(date +%s) - T0 ))"; }

setup() {
  # The venv installs while the cluster builds: they share nothing, and a first run waits for both.
  make -C "$ROOT_DIR" -s venv >"$LOG_DIR/demo-venv.log" 2>&1 & local venv_pid=$!
  step "cluster: hack/cluster.sh up (reuses a healthy one; about 13 min on a fresh 2-core machine)"
  "$HACK_DIR/cluster.sh" up

  step "project venv (.venv) for the live view and the plot (installed beside the cluster build)"
  # make venv creates or refreshes it (the Makefile's marker); a no-op when current
  wait "$venv_pid" || { tail -n 20 "$LOG_DIR/demo-venv.log" >&2; die "make venv failed ($LOG_DIR/demo-venv.log)"; }
  "$PY" -c 'import kubernetes, matplotlib, requests, yaml, scalekeeper' \
    || die "the venv $ROOT_DIR/.venv lacks a package: run make venv"

  step "images: operator, demo app, Celery exporter and locust (hack/*-image.sh), about a minute the first time"
  local images op_image demo_image exporter_image op_ref demo_ref exporter_ref
  # The load generator's image (make loadtest's) builds beside the others, on the same base.
  "$HACK_DIR/loadtest-image.sh" >"$LOG_DIR/loadtest-image.ref" & local locust_pid=$!
  images=$(app_images)
  wait "$locust_pid" || die "hack/loadtest-image.sh failed (above)"
  op_image=$(sed -n 1p <<<"$images"); demo_image=$(sed -n 2p <<<"$images"); exporter_image=$(sed -n 3p <<<"$images")
  # Pods run the digest just pushed: a rebuilt :dev rolls the pods, an unchanged one leaves them alone.
  op_ref=$(repo_digest "$op_image"); demo_ref=$(repo_digest "$demo_image"); exporter_ref=$(repo_digest "$exporter_image")
  LOCUST_REF=$(repo_digest "$(tail -n 1 "$LOG_DIR/loadtest-image.ref")")
  log "operator $op_ref"; log "demo app $demo_ref"; log "Celery exporter $exporter_ref"; log "locust $LOCUST_REF"

  step "CRD and the operator's chart (release $RELEASE in namespace $RELEASE_NS, watching only namespace $NS)"
  kubectl apply --server-side --force-conflicts -f "$ROOT_DIR/crds/scalingpolicies.scalekeeper.dev.yaml" >/dev/null
  kubectl wait --for=condition=Established --timeout=60s crd/scalingpolicies.scalekeeper.dev >/dev/null
  # The chart puts its Role in the watched namespace, so that namespace must exist first.
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  run_logged demo-helm helm upgrade --install "$RELEASE" "$ROOT_DIR/manifests/chart/scalekeeper" \
    -n "$RELEASE_NS" --create-namespace \
    --set "watchNamespaces={$NS}" \
    --set "image.repository=${op_image%:*}" --set "image.tag=${op_image##*:}" --set "image.digest=${op_ref#*@}" \
    --set prometheus.url=http://prometheus.scalekeeper-system.svc:9090 \
    --set logFormat=plain \
    --wait --timeout 180s \
    || { operator_diagnosis; die "helm upgrade --install of manifests/chart/scalekeeper failed (above; $LOG_DIR/demo-helm.log)"; }

  step "demo app in namespace $NS (manifests/examples/demo, key prefix \"$NS:\") and a load generator pod"
  # shellcheck source=/dev/null
  . "$STATE_DIR/images.env"
  demo_watch app --demo-image "$demo_ref" --exporter-image "$exporter_ref" --redis-image "$REDIS_IMAGE" \
    --key-prefix "$NS:" \
    >"$LOG_DIR/demo-app.yaml"
  kubectl -n "$NS" apply -f "$LOG_DIR/demo-app.yaml" >"$LOG_DIR/demo-apply.log" \
    || { cat "$LOG_DIR/demo-apply.log" >&2; die "applying the demo app ($LOG_DIR/demo-app.yaml) failed"; }
  # A pod's resources cannot change in place through apply: a changed load generator is replaced.
  loadgen_pod "$demo_ref" | kubectl -n "$NS" apply -f - >/dev/null 2>&1 || {
    kubectl -n "$NS" delete pod loadgen --wait=true --timeout=60s >/dev/null 2>&1 || true
    loadgen_pod "$demo_ref" | kubectl -n "$NS" apply -f - >/dev/null
  }
  local w
  for w in deploy/db-primary statefulset/db-replica deploy/web deploy/worker-emails deploy/worker-video \
           deploy/worker-reports deploy/queue-exporter; do
    kubectl -n "$NS" rollout status "$w" --timeout=240s >/dev/null || die "$w did not become ready (kubectl -n $NS describe $w)"
  done
  kubectl -n "$NS" wait --for=condition=Ready pod/loadgen --timeout=120s >/dev/null || die "the loadgen pod did not start"
  log "demo app ready"
}

# The pod the load program runs in (the demo image, its config; `sleep` until exec'd into).
loadgen_pod() { # image
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: loadgen
  labels: {app: loadgen, app.kubernetes.io/part-of: scalekeeper-demo}
spec:
  securityContext: {runAsUser: 10001, runAsGroup: 10001, runAsNonRoot: true}
  terminationGracePeriodSeconds: 1
  containers:
  - name: loadgen
    image: $1
    command: ["sleep", "infinity"]
    envFrom: [{configMapRef: {name: demo-config}}]
    resources: {requests: {cpu: 10m, memory: 64Mi}, limits: {memory: 256Mi}}
    securityContext: {allowPrivilegeEscalation: false}
YAML
}

# Another scalekeeper operator that serves namespace $NS (every namespace, or a pattern matching it) sizes the
# demo's policy too: two deciders on one policy give duplicate Events and 409 conflicts. Say so up front.
warn_other_operators() {
  local ns name replicas watched p serves
  while read -r ns name replicas watched; do
    if [ -z "$ns" ] || [ "$ns" = "$RELEASE_NS" ] || [ "${replicas:-0}" = 0 ]; then continue; fi
    serves=
    if [ -z "$watched" ]; then serves="every namespace"; else
      for p in ${watched//,/ }; do
        # shellcheck disable=SC2053  # the operator's namespace list may hold glob patterns
        [[ $NS == $p ]] && serves="$watched"
      done
    fi
    [ -n "$serves" ] || continue
    log "WARNING: operator $ns/$name serves $serves, so it sizes $NS/$POLICY too (duplicate Events, 409 conflicts)."
    log "WARNING: restrict it (SCALEKEEPER_NAMESPACES / the chart's watchNamespaces) or remove it for a clean demo."
  done < <(kubectl get deploy -A -l app.kubernetes.io/name=scalekeeper -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{" "}{.spec.replicas}{" "}{.spec.template.spec.containers[0].env[?(@.name=="SCALEKEEPER_NAMESPACES")].value}{"\n"}{end}' 2>/dev/null)
}

# What the operator's pods are doing, when the release did not become ready.
operator_diagnosis() {
  kubectl -n "$RELEASE_NS" get pods -o wide >&2 || true
  local pod; pod=$(kubectl -n "$RELEASE_NS" get pods -o name 2>/dev/null | head -n 1)
  [ -n "$pod" ] || return 0
  log "last lines of $pod's log (the previous container's when it restarted):"
  { kubectl -n "$RELEASE_NS" logs "$pod" --previous --tail=15 2>/dev/null \
      || kubectl -n "$RELEASE_NS" logs "$pod" --tail=15; } >&2 || true
}

repo_digest() { # image:tag -> repository@sha256:... (what the registry holds since the push)
  local d
  d=$(docker inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$1" | grep -m1 "^${1%:*}@") \
    || die "no registry digest for $1 after pushing it"
  echo "$d"
}

# A run starts from the manifests' sizes: no policy, nothing queued, every tier at 1.
reset_demo() {
  if kubectl -n "$NS" get scalingpolicy "$POLICY" >/dev/null 2>&1; then
    log "a previous run's policy is there: deleting it and resetting the tiers to 1"
    kubectl -n "$NS" delete scalingpolicy "$POLICY" --wait=true --timeout=60s >/dev/null \
      || die "deleting the previous policy $NS/$POLICY did not finish in 60 s (kubectl -n $NS get scalingpolicy $POLICY -o yaml: a finalizer left by an earlier build is the operator's to remove)"
  fi
  kubectl -n "$NS" wait --for=delete "hpa/$POLICY-web" --timeout=60s >/dev/null 2>&1 || true
  # A previous run's locust, if it still runs, would load web while the tiers are reset.
  kubectl -n "$NS" delete pod locust --ignore-not-found --wait=false >/dev/null
  kubectl -n "$NS" scale deploy/web deploy/worker-video deploy/worker-emails deploy/worker-reports --replicas=1 >/dev/null
  kubectl -n "$NS" scale statefulset/db-replica --replicas=1 >/dev/null
  kubectl -n "$NS" exec loadgen -- celery -A scalekeeper_demo.celery_app purge -f -Q video,emails,reports \
    >"$LOG_DIR/demo-purge.log" 2>&1 || log "purging the demo's queues failed (see $LOG_DIR/demo-purge.log); continuing"
  for w in deploy/web deploy/worker-video deploy/worker-emails deploy/worker-reports statefulset/db-replica; do
    kubectl -n "$NS" rollout status "$w" --timeout=120s >/dev/null || true
  done
}

# The demo's operator must renew its member Lease, or the demo's policy is not sized. One that stopped
# renewing (seen after the node restarted under it: no log line, no renewal) is restarted once; it is the
# demo's own release.
MEMBERS="scalekeeper.dev/group=scalekeeper-leader"
lease_fresh() {
  local holder renew age
  holder=$(kubectl -n "$RELEASE_NS" get lease -l "$MEMBERS" -o jsonpath='{.items[0].spec.holderIdentity}' 2>/dev/null) || return 1
  renew=$(kubectl -n "$RELEASE_NS" get lease -l "$MEMBERS" -o jsonpath='{.items[0].spec.renewTime}' 2>/dev/null) || return 1
  [ -n "$holder" ] && [ -n "$renew" ] || return 1
  age=$(( $(date +%s) - $(date -d "$renew" +%s) ))
  [ "$age" -le 15 ] && kubectl -n "$RELEASE_NS" get pod "$holder" >/dev/null 2>&1 || return 1
  echo "$holder"
}

wait_for_member() {
  local holder attempt
  for attempt in 1 2; do
    for _ in $(seq 1 45); do
      if holder=$(lease_fresh); then
        log "operator $holder renews its member Lease in $RELEASE_NS"; return 0
      fi
      sleep 1
    done
    [ "$attempt" = 1 ] || break
    log "no operator of $RELEASE_NS renewed a member Lease for 45 s: restarting deploy/$RELEASE"
    kubectl -n "$RELEASE_NS" rollout restart "deploy/$RELEASE" >/dev/null
    kubectl -n "$RELEASE_NS" rollout status "deploy/$RELEASE" --timeout=120s >/dev/null || true
  done
  operator_diagnosis
  die "no operator pod of $RELEASE_NS renews a member Lease (kubectl -n $RELEASE_NS logs deploy/$RELEASE)"
}

LOCUST_REF=
[ -n "${DEMO_SKIP_SETUP:-}" ] || setup
# Without setup, the locust image the last setup (or make loadtest) pushed.
[ -n "$LOCUST_REF" ] || LOCUST_REF=$(repo_digest "${SCALEKEEPER_LOADTEST_IMAGE:-$REGISTRY/scalekeeper-loadtest:dev}")

step "ScalingPolicy $NS/$POLICY from manifests/examples/scalingpolicy-demo.yaml, windows shortened for the demo"
wait_for_member
warn_other_operators
reset_demo
demo_watch policy --namespace "$NS" >"$LOG_DIR/demo-policy.yaml"
kubectl -n "$NS" apply -f "$LOG_DIR/demo-policy.yaml" >/dev/null
log "applied (the full policy as applied: $LOG_DIR/demo-policy.yaml)"

step "load (web: locust, pod $NS/locust) and the tiers, live (about 5.5 min)"
rc=0
demo_watch run --namespace "$NS" --policy "$POLICY" --out "$ROOT_DIR/out" --locust-image "$LOCUST_REF" \
  --log "$LOG_DIR/demo-load.log" || rc=$?

cat <<EOF

${B}Done in $(( $(date +%s) - T0 )) s.${N} The cluster and the demo keep running:
  kubectl -n $NS get scalingpolicy $POLICY; kubectl -n $NS describe scalingpolicy $POLICY
  kubectl -n $RELEASE_NS logs deploy/$RELEASE            (KUBECONFIG=$KUBECONFIG)
  hack/demo.sh again replays it; DEMO_SKIP_SETUP=1 skips building and installing.
To remove them:
  kubectl delete ns $NS
  helm -n $RELEASE_NS uninstall $RELEASE && kubectl delete ns $RELEASE_NS
  make cluster-down                                   (the whole cluster)
EOF
exit "$rc"
