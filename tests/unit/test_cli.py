"""The `scalekeeper` command itself: --version, `python -m scalekeeper`, one-line refusals, and `run --help`
listing every environment variable the operator reads, with its default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from scalekeeper.cli import main
from scalekeeper.config import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "scalekeeper"


def _run_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _variables_in_the_code() -> set[str]:
    """Every SCALEKEEPER_* name the package's source spells out, wherever it reads it."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        found |= set(re.findall(r"\bSCALEKEEPER_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    return found


def test_run_help_lists_every_variable_the_code_reads(capsys: pytest.CaptureFixture[str]) -> None:
    listed = set(re.findall(r"^  ([A-Z][A-Z0-9_]+) ", _run_help(capsys), re.M))
    read = _variables_in_the_code()
    assert "SCALEKEEPER_PROMETHEUS_URL" in read and "SCALEKEEPER_TRACEMALLOC" in read
    missing = sorted(read - listed)
    assert not missing, f"read by operator/scalekeeper but not in `scalekeeper run --help`: {missing}"


def test_run_help_gives_each_setting_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _run_help(capsys).splitlines()
    for setting in SETTINGS:
        (line,) = [ln for ln in lines if ln.startswith(f"  {setting.env} ")]
        assert line.endswith(f"default: {setting.default or '(empty)'}"), line
        assert setting.meaning in lines[lines.index(line) + 1]


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"scalekeeper {metadata.version('scalekeeper')}\n"


def test_python_dash_m_is_the_same_command() -> None:
    # The worktree's package first on the path: the module run is this source's, not another install's.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "scalekeeper", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"scalekeeper {metadata.version('scalekeeper')}\n"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        ([], "required: command"),
        (["bogus"], "'bogus'"),
        (["run", "extra"], "extra"),
        (["--verbose", "run"], "unrecognized arguments: --verbose"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scalekeeper: ") and named in err, err


def test_a_bad_setting_stops_run_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCALEKEEPER_TRACEMALLOC", "yes")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SCALEKEEPER_TRACEMALLOC" in err, err
