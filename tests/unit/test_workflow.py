"""The users' GitHub workflow runs exactly the make targets the repository's CI entry point (.ci/run) runs.

Both files are parsed: the make invocations of .ci/run, and those of the workflow's gating steps (steps
that run on success; `if: failure()` diagnostics are not gating). They must be the same targets in the same
order, and each must be a target of the Makefile, so the two CIs cannot drift apart.

Every workflow's actions are pinned by commit SHA with the release's tag in a comment, and the release
workflow builds and pushes the image and the chart from a version tag.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "e2e.yaml"
RELEASE = WORKFLOWS / "release.yaml"
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


def _workflow(path: Path = WORKFLOW) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
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


@pytest.mark.parametrize("path", [WORKFLOW, RELEASE, CI_RUN])
def test_files_exist(path: Path) -> None:
    assert path.is_file(), path


# ---------------------------------------------------------------- actions pinned by commit SHA

_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)\s*(#.*)?$")


def unpinned(text: str) -> list[str]:
    """The `uses:` lines of a workflow not pinned to a commit: an action must name a full 40-hex SHA and its
    release tag in a comment (`# v1.2.3`, so an update shows what it moves to); a docker:// action an image
    digest. Local actions (./path) are the repository's own code."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        m = _USES.match(line)
        if not m:
            continue
        ref, comment = m.group(1).strip("'\""), m.group(2) or ""
        if ref.startswith("./"):
            continue
        if ref.startswith("docker://"):
            pinned = re.search(r"@sha256:[0-9a-f]{64}$", ref) is not None
        else:
            pinned = re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref) is not None
            pinned = pinned and re.fullmatch(r"#\s*v\d+\.\d+\.\d+\S*", comment.strip()) is not None
        if not pinned:
            problems.append(f"line {number}: {line.strip()}")
    return problems


def _uses_values(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [str(v) for k, v in node.items() if k == "uses"] + [
            u for v in node.values() for u in _uses_values(v)
        ]
    if isinstance(node, list):
        return [u for v in node for u in _uses_values(v)]
    return []


def test_the_pin_checker_refuses_tags_branches_and_bare_shas() -> None:
    sha = "fbc6f3992d24b796d5a048ff273f7fcc4a7b6c09"
    assert unpinned(f"    - uses: actions/checkout@{sha} # v5.1.0\n      uses: ./local\n") == []
    assert unpinned("      - uses: docker://alpine@sha256:" + "a" * 64 + "\n") == []
    for bad in (
        "      - uses: actions/checkout@v5",
        "      - uses: actions/checkout@main # v5.1.0",
        f"      - uses: actions/checkout@{sha}",
        f"      - uses: actions/checkout@{sha[:12]} # v5.1.0",
        f"        uses: 'actions/checkout@{sha}' # latest",
        "      - uses: docker://alpine:3.20",
    ):
        assert unpinned(bad + "\n") == [f"line 1: {bad.strip()}"], bad


def _workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yaml"), *WORKFLOWS.glob("*.yml")])


def test_every_workflow_pins_its_actions_by_commit_sha() -> None:
    files = _workflow_files()
    assert {WORKFLOW, RELEASE} <= set(files)
    for path in files:
        text = path.read_text()
        # Every `uses` the YAML holds is on a line of its own, where the checker reads it (and its comment).
        on_lines = [m.group(1).strip("'\"") for line in text.splitlines() if (m := _USES.match(line))]
        assert sorted(on_lines) == sorted(_uses_values(yaml.safe_load(text))), path.name
        problems = unpinned(text)
        assert not problems, f"{path.relative_to(ROOT)}: not pinned by commit SHA + # vX.Y.Z: {problems}"


# ---------------------------------------------------------------- the release workflow


def _release_steps() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    wf = _workflow(RELEASE)
    (job,) = wf["jobs"].values()
    return wf, job["steps"]


def test_release_runs_on_a_version_tag_with_package_write_only() -> None:
    wf, _ = _release_steps()
    assert wf["on"] == {"push": {"tags": ["v*"]}}
    assert wf["permissions"] == {"contents": "read"}
    (job,) = wf["jobs"].values()
    assert job["permissions"] == {"contents": "read", "packages": "write"}


def test_release_checks_the_tag_then_pushes_the_image_and_the_chart() -> None:
    _, steps = _release_steps()
    runs = [str(s.get("run", "")) for s in steps]
    uses = [str(s.get("uses", "")).split("@")[0] for s in steps]
    check = next(i for i, r in enumerate(runs) if "GITHUB_REF_NAME" in r)
    for source in ("pyproject.toml", "Chart.yaml", "appVersion"):
        assert source in runs[check], f"the tag is not checked against {source}"
    build = uses.index("docker/build-push-action")
    assert check < build
    image = steps[build]["with"]
    assert image["push"] is True and image["context"] == "."
    assert "VERSION=" in image["build-args"] and "REVISION=" in image["build-args"]
    assert "steps.version.outputs.version" in image["tags"]
    chart = next(i for i, r in enumerate(runs) if "helm push" in r)
    assert check < chart
    assert "helm package manifests/chart/scalekeeper" in runs[chart]
    assert "helm lint --strict" in runs[chart]
    assert "oci://" in runs[check] and '"$CHARTS"' in runs[chart]
    # helm comes from the version hack/versions.env pins, built before it is used.
    built = next(i for i, r in enumerate(runs) if "hack/build-go.sh helm" in r)
    assert uses.index("actions/setup-go") < built < chart
