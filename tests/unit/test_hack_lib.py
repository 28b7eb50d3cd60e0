"""hack/lib.sh's `detached`: a daemon started through it keeps none of its caller's descriptors beyond stdin,
stdout and stderr (a lock the caller holds is released when the caller ends, not when the daemon does)."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_detached_daemon_holds_no_descriptor_of_its_caller(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    fds = tmp_path / "fds"
    script = f"""
        . "{ROOT}/hack/lib.sh"
        exec 9>"{lock}"
        flock 9
        (detached bash -c 'ls /proc/$$/fd > "{fds}"; sleep 30') >/dev/null 2>&1 </dev/null &
        until [ -s "{fds}" ]; do sleep 0.05; done
        echo $!
    """
    daemon = int(
        subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            env={
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp_path),
                "SCALEKEEPER_CACHE": str(tmp_path / "cache"),
            },
        ).stdout.split()[-1]
    )
    try:
        assert sorted(int(n) for n in fds.read_text().split()) == [0, 1, 2]
        # The caller is gone, the daemon runs on: the lock is free.
        with lock.open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        subprocess.run(["kill", str(daemon)], check=False)
