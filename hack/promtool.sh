#!/usr/bin/env bash
# promtool of the cluster's Prometheus (PROMETHEUS_MODULE_VERSION, same plugins), built once into the cache by
# hack/build-go.sh and run with the arguments given; later runs only exec it.
#   hack/promtool.sh check rules FILE...   hack/promtool.sh test rules TEST-FILE...
. "$(dirname "$0")/lib.sh"
out=$BIN_DIR/promtool-$PROMETHEUS_VERSION
if [ ! -x "$out" ]; then
  log "building promtool $PROMETHEUS_VERSION (once; cached in $BIN_DIR)"
  "$HACK_DIR/build-go.sh" promtool >&2 || die "building promtool failed (above)"
fi
exec "$out" "$@"
