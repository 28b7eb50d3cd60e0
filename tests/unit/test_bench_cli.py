"""Every benchmark's command line answers a bad flag with one line naming it and exit 2, never the usage
or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = (
    "loadtest",
    "protection",
    "quality",
    "quality_real",
    "reaction",
    "reaction_peer",
    "scale",
    "shards",
    "soak",
)


@pytest.mark.parametrize("bench", BENCHES)
def test_a_bad_flag_is_one_line_and_exit_2(bench: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
    run = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", "--no-such-flag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"python -m bench.{bench}: unrecognized arguments: --no-such-flag (see --help)"
    ]
