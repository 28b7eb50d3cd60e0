"""`scalekeeper simulate` as a new user meets it: every bad trace, policy or flag is one line and exit 2,
before anything is simulated; odd but valid traces (epoch times, a byte-order mark) are read right."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from scalekeeper.simulate import TraceFile, TraceScan, main
from scalekeeper.simulate import cli as simulate_cli

ROOT = Path(__file__).resolve().parents[2]
DEMO_POLICY = ROOT / "manifests" / "examples" / "scalingpolicy-demo.yaml"

SPEC = """\
spec:
  intervalSeconds: 15
  workers:
    - queue: video
      deployment: worker-video
      minReplicas: 1
      maxReplicas: 10
      tasksPerWorker: 2
      concurrency: 2
      prefetchMultiplier: 1
"""
TRACE = "t_seconds,arrivals\n0,30\n60,120\n120,30\n"


def with_simulation(block: str) -> str:
    return SPEC + "simulation:\n" + "".join(f"  {line}\n" for line in block.splitlines())


# (id, policy text, trace bytes, extra flags, what the one line must name)
BAD: list[tuple[str, str, bytes, list[str], str]] = [
    ("row with one value", SPEC, b"t_seconds,arrivals\n0,1\n60\n", [], "row 3:"),
    ("infinite time", SPEC, b"0,1\ninf,2\n", [], "row 2: time inf is not a finite"),
    ("NaN time", SPEC, b"0,1\nnan,2\n", [], "row 2: time nan is not a finite"),
    ("NaN arrivals", SPEC, b"0,nan\n", [], "row 1: arrivals nan"),
    ("negative arrivals", SPEC, b"0,1\n60,-3\n", [], "row 2: arrivals -3"),
    ("text arrivals", SPEC, b"0,1\n60,many\n", [], "row 2: arrivals 'many' is not a number"),
    ("text time", SPEC, b"t,n\n0,1\nlater,2\n", [], "row 3: time 'later'"),
    ("negative time", SPEC, b"-60,1\n0,2\n", [], "row 1: time -60 is negative"),
    ("negative time later", SPEC, b"0,1\n-5,2\n", [], "row 2: time -5 is negative"),
    ("times going back", SPEC, b"0,1\n60,1\n30,1\n", [], "row 3: time 30 is not after row 2"),
    ("three columns", SPEC, b"0,1,2\n", [], "row 1: expected t_seconds,arrivals"),
    ("milliseconds", SPEC, b"0,1\n1700000000000,1\n", [], "row 2 is 1.7e+12 s after the first row"),
    ("not UTF-8", SPEC, b"0,1\n\xff\xfe,2\n", [], "row 2: not UTF-8"),
    ("empty", SPEC, b"", [], "no rows"),
    ("header only", SPEC, b"t_seconds,arrivals\n", [], "no rows"),
    ("one column without --step", SPEC, b"5\n6\n", [], "needs --step"),
    ("--step 0", SPEC, b"5\n6\n", ["--step", "0"], "--step must be"),
    ("--tail -1", SPEC, TRACE.encode(), ["--tail", "-1"], "--tail must be a number of seconds >= 0"),
    ("--tail nan", SPEC, TRACE.encode(), ["--tail", "nan"], "--tail must be"),
    ("--tail text", SPEC, TRACE.encode(), ["--tail", "long"], "argument --tail: invalid float value"),
    ("--service-seconds 0", SPEC, TRACE.encode(), ["--service-seconds", "0"], "--service-seconds must be"),
    ("--start-delay -100", SPEC, TRACE.encode(), ["--start-delay", "-100"], "--start-delay must be"),
    ("--target-wait -5", SPEC, TRACE.encode(), ["--target-wait", "-5"], "--target-wait must be"),
    ("--oracle-interval 0", SPEC, TRACE.encode(), ["--oracle-interval", "0"], "--oracle-interval must"),
    ("--initial-replicas 11", SPEC, TRACE.encode(), ["--initial-replicas", "11"], "--initial-replicas 11"),
    ("--initial-replicas 0", SPEC, TRACE.encode(), ["--initial-replicas", "0"], "--initial-replicas 0"),
    ("--queue unknown", SPEC, TRACE.encode(), ["--queue", "audio"], "--queue audio: no worker"),
    ("--plot folder missing", SPEC, TRACE.encode(), ["--plot", "{tmp}/nowhere/out.png"], "--plot"),
    ("--plot not an image", SPEC, TRACE.encode(), ["--plot", "{tmp}/out.txt"], "must end in .png"),
    ("--plot a folder", SPEC, TRACE.encode(), ["--plot", "{tmp}/dir.png"], "is a folder"),
    ("--distribution", SPEC, TRACE.encode(), ["--service-distribution", "normal"], "invalid choice"),
    (
        "serviceSeconds null",
        with_simulation("serviceSeconds: null"),
        TRACE.encode(),
        [],
        "simulation.serviceSeconds must be a number of seconds > 0, got null",
    ),
    ("serviceSeconds 0", with_simulation("serviceSeconds: 0"), TRACE.encode(), [], "serviceSeconds"),
    ("serviceSeconds text", with_simulation("serviceSeconds: two"), TRACE.encode(), [], "got 'two'"),
    ("startDelay -1", with_simulation("startDelaySeconds: -1"), TRACE.encode(), [], "startDelaySeconds"),
    ("distribution", with_simulation("serviceDistribution: pareto"), TRACE.encode(), [], "pareto"),
    (
        "unknown field",
        with_simulation("serviceSecs: 2"),
        TRACE.encode(),
        [],
        "simulation.serviceSecs: unknown",
    ),
    ("simulation a list", SPEC + "simulation: [1]\n", TRACE.encode(), [], "simulation must be a mapping"),
    (
        "annotation",
        "metadata:\n  annotations:\n    scalekeeper.dev/simulation: 'serviceSeconds: -2'\n" + SPEC,
        TRACE.encode(),
        [],
        "metadata.annotations[scalekeeper.dev/simulation].serviceSeconds",
    ),
    ("policy not YAML", "spec: [unclosed\n", TRACE.encode(), [], "not valid YAML"),
    (
        "policy without spec",
        "kind: ScalingPolicy\nmetadata: {name: a}\n",
        TRACE.encode(),
        [],
        "without a spec",
    ),
    ("policy not UTF-8", "spec: \udcff\n", TRACE.encode(), [], "not UTF-8"),
    ("policy a list", "- 1\n", TRACE.encode(), [], "expected a ScalingPolicy"),
    ("policy spec invalid", "spec:\n  workers:\n    - queue: q\n", TRACE.encode(), [], "spec.workers[0]"),
    (
        "policy without workers",
        "spec:\n  web: {deployment: web, maxReplicas: 3, cpuUtilization: 80}\n",
        TRACE.encode(),
        [],
        "no workers",
    ),
    ("policy with no tier", "spec:\n  workers: []\n", TRACE.encode(), [], "spec: spec must set at least one"),
]


@pytest.mark.parametrize(("policy", "trace", "flags", "named"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    policy: str,
    trace: bytes,
    flags: list[str],
    named: str,
) -> None:
    (tmp_path / "policy.yaml").write_bytes(policy.encode("utf-8", "surrogateescape"))
    (tmp_path / "trace.csv").write_bytes(trace)
    (tmp_path / "dir.png").mkdir()
    argv = ["--policy", str(tmp_path / "policy.yaml"), "--trace", str(tmp_path / "trace.csv")]
    argv += [f.replace("{tmp}", str(tmp_path)) for f in flags]
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(argv))
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before anything is simulated
    assert err.count("\n") == 1 and err.startswith("scalekeeper simulate: "), err
    assert named in err
    assert not (tmp_path / "out.png").exists()


def test_missing_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "policy.yaml").write_text(SPEC)
    assert main(["--policy", str(tmp_path / "policy.yaml"), "--trace", str(tmp_path / "none.csv")]) == 2
    assert "--trace" in capsys.readouterr().err
    assert main(["--policy", str(tmp_path / "policy.yaml"), "--trace", str(tmp_path)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert main(["--policy", str(tmp_path / "none.yaml"), "--trace", str(tmp_path / "none.csv")]) == 2
    assert "--policy" in capsys.readouterr().err


def read(tmp_path: Path, data: bytes, step: float | None = None) -> tuple[list[tuple[float, ...]], TraceScan]:
    path = tmp_path / "trace.csv"
    path.write_bytes(data)
    scan = TraceScan()
    return [tuple(i) for i in TraceFile(path, step).intervals(scan)], scan


@pytest.mark.parametrize(
    ("data", "step", "intervals", "origin"),
    [
        # A byte-order mark on a file without a header: its first row is a row.
        (b"\xef\xbb\xbf0,5\n60,7\n", None, [(0.0, 5.0, 60.0), (60.0, 7.0, 60.0)], 0.0),
        (b"\xef\xbb\xbft_seconds,arrivals\n0,5\n", None, [(0.0, 5.0, 60.0)], 0.0),
        (b"\xef\xbb\xbf5\n7\n", 30.0, [(0.0, 5.0, 30.0), (30.0, 7.0, 30.0)], 0.0),
        # Epoch seconds start at 0; so does any trace, its gaps kept.
        (
            b"1700000000,5\n1700000060,7\n1700000300,1\n",
            None,
            [(0, 5, 60), (60, 7, 240), (300, 1, 240)],
            1.7e9,
        ),
        # Windows line ends, blank lines, spaces, a trailing comma; --step sets the last interval.
        (b"t,n\r\n0, 5\r\n\r\n 60 ,7,\r\n", 10.0, [(0.0, 5.0, 60.0), (60.0, 7.0, 10.0)], 0.0),
    ],
    ids=["bom", "bom and header", "bom one column", "epoch", "crlf"],
)
def test_odd_but_valid_traces(
    tmp_path: Path,
    data: bytes,
    step: float | None,
    intervals: list[tuple[float, ...]],
    origin: float,
) -> None:
    got, scan = read(tmp_path, data, step)
    assert got == intervals and scan.origin == origin and scan.rows == len(intervals)


def run_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trace: str, *flags: str, policy: Path | None = None
) -> tuple[str, str]:
    if policy is None:
        policy = tmp_path / "policy.yaml"
        policy.write_text(SPEC)
    (tmp_path / "trace.csv").write_text(trace)
    code = main(["--policy", str(policy), "--trace", str(tmp_path / "trace.csv"), *flags])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def test_epoch_times_run_as_times_from_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, err = run_cli(tmp_path, capsys, "1700000000,30\n1700000060,60\n1700000120,30\n", "--tail", "60")
    assert "shifted to start at 0" in err
    assert "over 3 simulated minutes (+1 min tail)" in out


def test_the_readme_command_on_the_demo_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`scalekeeper simulate --policy manifests/examples/scalingpolicy-demo.yaml --trace trace.csv --plot
    out.png`: the demo has three queues; the first is simulated, with a note."""
    out, err = run_cli(
        tmp_path, capsys, TRACE, "--plot", str(tmp_path / "out.png"), "--tail", "120", policy=DEMO_POLICY
    )
    assert "simulating the first, video" in err
    assert out.startswith("queue video:") and "plot written to" in out
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_oracle_and_reversals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = run_cli(tmp_path, capsys, TRACE, "--oracle", "--tail", "120", "--service-seconds", "2")
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert {"scalekeeper", "hpa-default", "keda-style", "oracle"} <= rows.keys()
    header = next(line for line in out.splitlines() if line.startswith("rule"))
    assert "reversals" in header and "undrained" in header
    assert "knowing the future" in out and "of the 3 minutes with arrivals" in out


def test_progress_shows_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simulate_cli, "PROGRESS_SECONDS", 0.0)
    trace = "".join(f"{t},{2}\n" for t in range(0, 20_000, 10))
    _, err = run_cli(tmp_path, capsys, trace, "--tail", "60")
    lines: list[str] = err.splitlines()
    said: Callable[[str], bool] = lambda text: any(text in line for line in lines)  # noqa: E731
    assert said("reading the trace: 1,024 rows") and said("rules: simulated")
