#!/usr/bin/env bash
# The test suite: unit and property tests, then everything that runs against the kind cluster.
# Expects `make cluster-up` to have run (the Makefile's `test` target does it); builds and pushes the
# operator image first so in-cluster tests run the code under test. On failure, collects every component's
# logs into logs/ and prints their tails.
. "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
app_images >/dev/null
# Run once, in the chart-installed pass alone: what they prove is the installed product's path (the chart's
# dashboard and alerts; a pod killed and restarted by its Deployment), or a superset of the local run's.
INSTALLED_ONLY=(
  tests/cluster/test_bottleneck.py
  tests/cluster/test_faults.py::test_prometheus_outage_holds_then_recovers
  tests/cluster/test_faults.py::test_operator_killed_after_a_step_does_not_double_step_after_restart
)
# Run once, in the local pass alone: the engine's logic (a forecast, a blind worker tier), the same wherever
# the operator runs.
LOCAL_ONLY=(
  tests/cluster/test_operator_basics.py::test_a_forecast_raises_replicas_ahead_of_a_rise_seen_a_season_ago
  tests/cluster/test_demo_scaling.py::test_broker_restart_holds_the_workers_blind_then_recovers
)
whole=0
if [ $# -eq 0 ]; then
  whole=1
  set -- tests
  for t in "${INSTALLED_ONLY[@]}"; do
    case $t in *::*) set -- "$@" "--deselect=$t" ;; *) set -- "$@" "--ignore=$t" ;; esac
  done
fi
set +e
# Short tracebacks: CI keeps the head of the output, where a failure's message (what the test saw) must fit.
"$ROOT_DIR/.venv/bin/pytest" -q -rfE --tb=short --durations=15 "$@"
rc=$?
# The operator's end-to-end tests ran against a local process above; run them again against the operator
# installed in the cluster from the Helm chart, under its service account (the product's own path).
if [ $rc -eq 0 ] && [ $whole -eq 1 ]; then
  log "operator end-to-end tests again, with the operator installed in the cluster by the chart"
  # The files of the operator's path, with the installed-only tests (in them, or files of their own).
  chart=(tests/cluster/test_operator_basics.py tests/cluster/test_faults.py tests/cluster/test_demo_scaling.py)
  for t in "${INSTALLED_ONLY[@]}"; do [[ $t == *::* ]] || chart+=("$t"); done
  for t in "${LOCAL_ONLY[@]}"; do chart+=("--deselect=$t"); done
  SCALEKEEPER_E2E_OPERATOR=cluster "$ROOT_DIR/.venv/bin/pytest" -q -rfE --tb=short --durations=5 "${chart[@]}"
  rc=$?
fi
set -e
if [ $rc -ne 0 ]; then
  d=$("$HACK_DIR/cluster.sh" logs)
  log "tests failed (exit $rc); logs collected in $d. Tails:"
  for f in "$LOG_DIR/dockerd.log" "$d/registry.log" "$d"/kind/*/journal.log "$d"/kind/*/containerd.log; do
    [ -f "$f" ] && { echo "----- $f"; tail -n 15 "$f"; }
  done
fi
exit $rc
