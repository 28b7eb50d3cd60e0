#!/usr/bin/env bash
# The test suite: unit and property tests, then everything that runs against the kind cluster.
# Expects `make cluster-up` to have run (the Makefile's `test` target does it); builds and pushes the
# operator image first so in-cluster tests run the code under test. On failure, collects every component's
# logs into logs/ and prints their tails.
. "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
app_images >/dev/null
# Run once, in the chart-installed pass alone: what they prove is the installed product's path.
INSTALLED_ONLY=(tests/cluster/test_bottleneck.py)
whole=0
if [ $# -eq 0 ]; then
  whole=1
  set -- tests "${INSTALLED_ONLY[@]/#/--ignore=}"
fi
set +e
"$ROOT_DIR/.venv/bin/pytest" -q -rfE --durations=15 "$@"
rc=$?
# The operator's end-to-end tests ran against a local process above; run them again against the operator
# installed in the cluster from the Helm chart, under its service account (the product's own path).
if [ $rc -eq 0 ] && [ $whole -eq 1 ]; then
  log "operator end-to-end tests again, with the operator installed in the cluster by the chart"
  SCALEKEEPER_E2E_OPERATOR=cluster "$ROOT_DIR/.venv/bin/pytest" -q -rfE --durations=5 \
    tests/cluster/test_operator_basics.py tests/cluster/test_faults.py tests/cluster/test_demo_scaling.py \
    "${INSTALLED_ONLY[@]}"
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
