#!/usr/bin/env bash
# Builds the Celery exporter's image (exporter/Dockerfile),
# on the project's Python base image, pushes it to the local registry and prints the reference
# pods use (hack/lib.sh python_image).
. "$(dirname "$0")/lib.sh"
python_image "${SCALEKEEPER_EXPORTER_IMAGE:-$REGISTRY/scalekeeper-celery-exporter:dev}" \
  "$ROOT_DIR/exporter" exporter
