#!/usr/bin/env bash
# Builds the operator image from the project's Dockerfile and pushes it to the local registry.
# Prints the reference pods use. The base image is the public Python image when it can be pulled,
# else the Debian Python image built by hack/addons.sh.
. "$(dirname "$0")/lib.sh"
[ -f "$STATE_DIR/images.env" ] || "$HACK_DIR/addons.sh" images >/dev/null
# shellcheck source=/dev/null
. "$STATE_DIR/images.env"
IMAGE=${SCALEKEEPER_IMAGE:-$REGISTRY/scalekeeper:dev}
log "docker build $IMAGE (base $PYTHON_BASE_IMAGE)"
run_logged image-scalekeeper docker build --build-arg "BASE_IMAGE=$PYTHON_BASE_IMAGE" -t "$IMAGE" "$ROOT_DIR"
run_logged push-scalekeeper docker push "$IMAGE"
echo "$IMAGE"
