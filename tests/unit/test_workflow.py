"""The users' GitHub workflow runs exactly the make targets the repository's CI entry point (.ci/run) runs.

Both files are parsed: the make invocations of .ci/run, and those of the workflow's gating steps (steps
that run on success; `if: failure()` diagnostics are not gating). They must be the same targets in the same
order, and each must be a target of the Makefile, so the two CIs cannot drift apart.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "e2e.yaml"
CI_RUN = ROOT / ".ci" / "run"
MAKEFILE = ROOT / "Makefile"

_OPERATORS = {";", "&&", "||", "|", "&", "(", ")", "\n"}
# make options that take the next word as their argument
_MAKE_OPTS_WITH_ARG = {"-C", "-f", "-I", "-o", "-W", "--directory", "--file", "--makefile", "--include-dir"}


def make_targets(script: str) -> list[str]:
    """The targets of every `make` command in a shell script, in order (comments and VAR=value skipped)."""
    script = script.replace("\\\n", " ")
    targets: list[str] = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
        i = 0
        while i < len(words):
            if Path(words[i]).name != "make":
                i += 1
                continue
            i += 1
            while i < len(words) and words[i] not in _OPERATORS:
                word = words[i]
                if word in _MAKE_OPTS_WITH_ARG or (
                    word == "-j" and i + 1 < len(words) and words[i + 1].isdigit()
                ):
                    i += 2
                    continue
                if not word.startswith("-") and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word):
                    targets.append(word)
                i += 1
    return targets


def test_parser_reads_make_commands() -> None:
    assert make_targets("make test") == ["test"]
    assert make_targets("set -e\n# make nothing\ncd x && make -C . V=1 lint unit || exit 1") == [
        "lint",
        "unit",
    ]
    assert make_targets('sudo -E env "PATH=$PATH" make -j 2 test\n/usr/bin/make \\\n  image') == [
        "test",
        "image",
    ]
    assert make_targets("echo make-believe; remake all") == []


def _workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in data:
        data["on"] = data.pop(True)
    return data


def _gating(step: dict[str, Any]) -> bool:
    condition = str(step.get("if", ""))
    return not any(word in condition for word in ("failure()", "always()", "cancelled()"))


def _job() -> dict[str, Any]:
    jobs = _workflow()["jobs"]
    assert len(jobs) == 1, f"expected one job, found {sorted(jobs)}"
    job: dict[str, Any] = next(iter(jobs.values()))
    return job


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", MAKEFILE.read_text(), re.M))


def test_ci_run_calls_make() -> None:
    targets = make_targets(CI_RUN.read_text())
    assert targets, ".ci/run calls no make target: this test has nothing to compare against"
    assert set(targets) <= _makefile_targets()


def test_workflow_runs_exactly_the_ci_run_targets() -> None:
    expected = make_targets(CI_RUN.read_text())
    steps = _job()["steps"]
    gating = [make_targets(str(s["run"])) for s in steps if "run" in s and _gating(s)]
    actual = [t for targets in gating for t in targets]
    assert actual == expected, (
        f".github/workflows/e2e.yaml runs make {actual}, .ci/run runs make {expected}: keep them the same"
    )


def test_diagnostic_steps_call_real_targets() -> None:
    steps = _job()["steps"]
    others = [t for s in steps if "run" in s and not _gating(s) for t in make_targets(str(s["run"]))]
    assert set(others) <= _makefile_targets(), others


def test_workflow_triggers_runner_and_toolchains() -> None:
    wf = _workflow()
    on = wf["on"]
    assert "push" in on and "pull_request" in on
    job = _job()
    assert job["runs-on"] == "ubuntu-latest"
    assert 0 < int(job["timeout-minutes"]) <= 90
    steps = job["steps"]
    uses = [str(s.get("uses", "")) for s in steps]

    def index(action: str) -> int:
        found = [i for i, u in enumerate(uses) if u.split("@")[0] == action]
        assert found, f"no {action} step"
        return found[0]

    checkout, python, go = index("actions/checkout"), index("actions/setup-python"), index("actions/setup-go")
    assert str(steps[python]["with"]["python-version"]) == "3.11"
    assert steps[go].get("with", {}).get("go-version")
    first_make = next(i for i, s in enumerate(steps) if "run" in s and make_targets(str(s["run"])))
    assert checkout < first_make and python < first_make and go < first_make


def test_logs_are_uploaded_on_failure() -> None:
    steps = _job()["steps"]
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert len(uploads) == 1
    upload = uploads[0]
    assert "failure()" in str(upload.get("if", ""))
    assert str(upload["with"]["path"]).rstrip("/") == "logs"
    # The upload comes after the step that fails.
    first_make = next(i for i, s in enumerate(steps) if "run" in s and make_targets(str(s["run"])))
    assert steps.index(upload) > first_make


@pytest.mark.parametrize("path", [WORKFLOW, CI_RUN])
def test_files_exist(path: Path) -> None:
    assert path.is_file(), path
