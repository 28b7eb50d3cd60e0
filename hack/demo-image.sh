#!/usr/bin/env bash
# Builds the demo application's image (manifests/examples/demo),
# on the project's Python base image, pushes it to the local registry and prints the reference
# pods use (hack/lib.sh python_image).
. "$(dirname "$0")/lib.sh"
python_image "${SCALEKEEPER_DEMO_IMAGE:-$REGISTRY/scalekeeper-demo:dev}" \
  "$ROOT_DIR/manifests/examples/demo" scalekeeper-demo
