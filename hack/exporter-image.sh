#!/usr/bin/env bash
# Builds the Celery exporter's image (exporter/Dockerfile) and pushes it to the local registry.
# Prints the reference pods use. The base image is the one hack/addons.sh chose (PYTHON_BASE_IMAGE in
# images.env): the public Python image when it can be pulled, else the Debian Python image built here.
. "$(dirname "$0")/lib.sh"
[ -f "$STATE_DIR/images.env" ] || "$HACK_DIR/addons.sh" images >/dev/null
# shellcheck source=/dev/null
. "$STATE_DIR/images.env"
IMAGE=${SCALEKEEPER_EXPORTER_IMAGE:-$REGISTRY/scalekeeper-celery-exporter:dev}
log "docker build $IMAGE (base $PYTHON_BASE_IMAGE)"
run_logged image-exporter docker build --build-arg "BASE_IMAGE=$PYTHON_BASE_IMAGE" -t "$IMAGE" "$ROOT_DIR/exporter"
run_logged push-exporter docker push "$IMAGE"
echo "$IMAGE"
