"""hack/lib.sh's helpers.

`detached`: a daemon started through it keeps none of its caller's descriptors beyond stdin, stdout and
stderr (a lock the caller holds is released when the caller ends, not when the daemon does).
`kubectl_idempotent`: a write the API server dropped is sent again, whole; a write it refused is not.
"""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_with_lib(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`script` in bash after hack/lib.sh, its caches under `tmp_path`."""
    return subprocess.run(
        ["bash", "-c", f'. "{ROOT}/hack/lib.sh"\n{script}'],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "SCALEKEEPER_CACHE": str(tmp_path / "cache"),
            **env,
        },
    )


def test_a_detached_daemon_holds_no_descriptor_of_its_caller(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    fds = tmp_path / "fds"
    script = f"""
        exec 9>"{lock}"
        flock 9
        (detached bash -c 'ls /proc/$$/fd > "{fds}"; sleep 30') >/dev/null 2>&1 </dev/null &
        until [ -s "{fds}" ]; do sleep 0.05; done
        echo $!
    """
    started = run_with_lib(script, tmp_path)
    assert started.returncode == 0, started.stderr
    daemon = int(started.stdout.split()[-1])
    try:
        assert sorted(int(n) for n in fds.read_text().split()) == [0, 1, 2]
        # The caller is gone, the daemon runs on: the lock is free.
        with lock.open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        subprocess.run(["kill", str(daemon)], check=False)


# Stands in for kubectl's transport only: the first DROPS writes fail as a dropped connection does, the rest
# succeed; every write's stdin is recorded so that the retry is seen to carry the whole manifest again.
FAKE_KUBECTL = """#!/bin/bash
[ "$1" = get ] && exit 0
n=$(cat "$STATE/writes" 2>/dev/null || echo 0); echo $((n + 1)) > "$STATE/writes"
cat > "$STATE/stdin-$n"
if [ "$n" -lt "$DROPS" ]; then echo "$FAILURE" >&2; exit 1; fi
echo "configmap/x configured"
"""


def run_idempotent_apply(tmp_path: Path, drops: int, failure: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    script = f"""
        export PATH="{bin_dir}:$PATH"
        printf 'kind: ConfigMap\\nmetadata: {{name: x}}\\n' \\
            | kubectl_idempotent "{tmp_path}/apply.log" apply -f -
    """
    return run_with_lib(script, tmp_path, STATE=str(tmp_path), DROPS=str(drops), FAILURE=failure)


def test_a_write_the_api_server_dropped_is_sent_again_whole(tmp_path: Path) -> None:
    dropped = 'Get "https://127.0.0.1:45687/apis/apps/v1/namespaces/x/deployments/prometheus": EOF'
    result = run_idempotent_apply(tmp_path, drops=2, failure=dropped)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "writes").read_text().strip() == "3"
    sent = [(tmp_path / f"stdin-{n}").read_text() for n in range(3)]
    assert sent == ["kind: ConfigMap\nmetadata: {name: x}\n"] * 3
    assert result.stderr.count("the API server dropped the connection") == 2


def test_a_write_the_api_server_refused_is_not_sent_again(tmp_path: Path) -> None:
    refused = 'The ConfigMap "x" is invalid: data: Invalid value'
    result = run_idempotent_apply(tmp_path, drops=5, failure=refused)
    assert result.returncode == 1
    assert (tmp_path / "writes").read_text().strip() == "1"
    assert refused in (tmp_path / "apply.log").read_text()
