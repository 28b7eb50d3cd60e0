#!/usr/bin/env bash
# Builds the load test's locust image (manifests/examples/loadtest),
# on the project's Python base image, pushes it to the local registry and prints the reference
# pods use (hack/lib.sh python_image).
. "$(dirname "$0")/lib.sh"
python_image "${SCALEKEEPER_LOADTEST_IMAGE:-$REGISTRY/scalekeeper-loadtest:dev}" \
  "$ROOT_DIR/manifests/examples/loadtest" scalekeeper-loadtest
