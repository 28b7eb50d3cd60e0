#!/usr/bin/env bash
# Builds the load test's locust image (manifests/examples/loadtest) and pushes it to the local registry.
# Prints the reference pods use. The base image is the one hack/addons.sh chose (PYTHON_BASE_IMAGE in
# images.env): the public Python image when it can be pulled, else the Debian Python image built here.
. "$(dirname "$0")/lib.sh"
[ -f "$STATE_DIR/images.env" ] || "$HACK_DIR/addons.sh" images >/dev/null
# shellcheck source=/dev/null
. "$STATE_DIR/images.env"
IMAGE=${SCALEKEEPER_LOADTEST_IMAGE:-$REGISTRY/scalekeeper-loadtest:dev}
log "docker build $IMAGE (base $PYTHON_BASE_IMAGE)"
run_logged image-scalekeeper-loadtest docker build --build-arg "BASE_IMAGE=$PYTHON_BASE_IMAGE" -t "$IMAGE" \
  "$ROOT_DIR/manifests/examples/loadtest"
run_logged push-scalekeeper-loadtest docker push "$IMAGE"
echo "$IMAGE"
