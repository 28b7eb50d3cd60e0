"""engine/bottleneck.py: the signals of one cycle (a hand-worked table) and the episodes built from them
(a hand-worked table, and properties: an episode starts only after its hold, ends only after its clear, and a
signal chattering inside the windows starts no second one)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalekeeper.engine.bottleneck import (
    CONNECTIONS,
    Episode,
    Growth,
    Signal,
    Transition,
    Windows,
    advance,
    connection_signals,
    resource_signals,
    tier_signals,
)
from scalekeeper.engine.types import ConnectionUsage, LimitedBy, TargetDecision, TargetHistory

BACKLOG = Growth("load", "backlog", "BacklogGrowingAtMax", 4)


def decision(
    current: int, desired: int, limited_by: LimitedBy, raw: int | None, load: float | None = None
) -> TargetDecision:
    metrics = {} if load is None else {"load": load}
    return TargetDecision(current, desired, limited_by, "", TargetHistory(), raw=raw, metrics=metrics)


# (case, decision, growth, baseline before) -> (reasons, baseline after)
SIGNALS = [
    ("needs more than max", decision(2, 2, LimitedBy.MAX, 5), None, None, ["AtMaxReplicas"], None),
    ("capped at max on its way up", decision(1, 2, LimitedBy.MAX, 5), None, None, ["AtMaxReplicas"], None),
    # Above max only because someone set it there: the demand (1) is not above it.
    ("current above max", decision(6, 4, LimitedBy.MAX, 1), None, None, [], None),
    ("at max, recommendation within it", decision(4, 4, LimitedBy.NONE, 4), None, None, [], None),
    (
        "budget holds a scale-up",
        decision(2, 3, LimitedBy.CONNECTION_BUDGET, 6),
        None,
        None,
        ["ConnectionBudget"],
        None,
    ),
    ("a rate rule is no bottleneck", decision(2, 4, LimitedBy.SCALE_UP_POLICY, 8), None, None, [], None),
    # Growth: the baseline is the load when the tier reached max; 10% above it, needing all of max, counts.
    ("reaches max: baseline taken", decision(4, 4, LimitedBy.NONE, 4, 40), BACKLOG, None, [], 40.0),
    ("grew 10%: not yet", decision(4, 4, LimitedBy.NONE, 4, 44), BACKLOG, 40.0, [], 40.0),
    ("grew 25%", decision(4, 4, LimitedBy.NONE, 4, 50), BACKLOG, 40.0, ["BacklogGrowingAtMax"], 40.0),
    (
        "grew, and needs more than max",
        decision(4, 4, LimitedBy.MAX, 6, 60),
        BACKLOG,
        40.0,
        ["AtMaxReplicas", "BacklogGrowingAtMax"],
        40.0,
    ),
    ("grew but needs only 3 of 4", decision(4, 4, LimitedBy.STABILIZATION, 3, 50), BACKLOG, 40.0, [], 40.0),
    ("left max: baseline dropped", decision(3, 3, LimitedBy.NONE, 3, 80), BACKLOG, 40.0, [], None),
    ("scaling down from max", decision(4, 3, LimitedBy.NONE, 3, 80), BACKLOG, 40.0, [], None),
    ("no load read: baseline kept", decision(4, 4, LimitedBy.MISSING_METRIC, None), BACKLOG, 40.0, [], 40.0),
    ("from an idle start", decision(4, 4, LimitedBy.NONE, 4, 3), BACKLOG, 0.0, ["BacklogGrowingAtMax"], 0.0),
]


@pytest.mark.parametrize(
    ("d", "growth", "before", "reasons", "after"), [c[1:] for c in SIGNALS], ids=[c[0] for c in SIGNALS]
)
def test_tier_signals_table(
    d: TargetDecision, growth: Growth | None, before: float | None, reasons: list[str], after: float | None
) -> None:
    signals, baseline = tier_signals(d, growth, before)
    assert [s.reason for s in signals] == reasons
    assert baseline == after


def test_signal_messages_say_the_numbers() -> None:
    (at_max,), _ = tier_signals(decision(2, 2, LimitedBy.MAX, 5), None, None)
    assert at_max.message == "at maxReplicas 2 while its demand needs 5"
    (grew,), _ = tier_signals(decision(4, 4, LimitedBy.NONE, 4, 50), BACKLOG, 40.0)
    assert grew.message == "at maxReplicas 4 while its backlog grew from 40 to 50"


def test_an_absent_target_has_no_signal_and_no_baseline() -> None:
    gone = TargetDecision(0, 0, LimitedBy.NONE, "", TargetHistory(), exists=False)
    assert tier_signals(gone, BACKLOG, 40.0) == ((), None)


@pytest.mark.parametrize(
    ("total", "limit", "told"),
    [(90, 100, False), (91, 100, True), (120, 100, True), (0, 0, False)],
)
def test_connections_near_their_limit(total: int, limit: int, told: bool) -> None:
    usage = ConnectionUsage(web_pods=0, worker_pods=0, total=total, max_connections=limit)
    signals = connection_signals(usage)
    assert bool(signals) is told
    if told:
        assert (
            signals[0].reason == "ConnectionsNearLimit" and f"of maxConnections {limit}" in signals[0].message
        )
    assert connection_signals(None) == ()
    assert CONNECTIONS == "connections"


def test_windows_scale_with_the_interval() -> None:
    assert Windows.for_interval(5) == Windows(30, 60)
    assert Windows.for_interval(1) == Windows(6, 12)


# ------------------------------------------------------------------------------------------------ episodes

SAT = (Signal("AtMaxReplicas", "at maxReplicas 2 while its demand needs 5"),)
W = Windows(30, 60)


def run(cycles: list[tuple[float, bool]], windows: Windows = W) -> list[tuple[float, Transition]]:
    episode, told = Episode(), []
    for now, held in cycles:
        episode, change = advance(episode, SAT if held else (), now, windows)
        if change is not None:
            told.append((now, change))
    return told


def every(step: float, start: float, end: float, held: bool) -> list[tuple[float, bool]]:
    return [(start + i * step, held) for i in range(int((end - start) / step))]


S, E = Transition.STARTED, Transition.ENDED
# Cycles every 5 s, hold 30 s, clear 60 s, worked by hand.
EPISODES = [
    ("saturated 25 s: too short", every(5, 0, 30, True) + every(5, 30, 200, False), []),
    ("saturated from 0: starts at 30", every(5, 0, 35, True), [(30, S)]),
    (
        "a break at 20 restarts the hold",
        [*every(5, 0, 20, True), (20, False), *every(5, 25, 60, True)],
        [(55, S)],
    ),
    # Started at 30; clear from 40: ends at 100, the first cycle 60 s after 40.
    ("ends 60 s after clearing", every(5, 0, 40, True) + every(5, 40, 105, False), [(30, S), (100, E)]),
    # Clear 40..90 (50 s), saturated again at 95: the episode goes on, no second Warning.
    (
        "a short clear keeps the episode",
        every(5, 0, 40, True) + every(5, 40, 95, False) + every(5, 95, 200, True),
        [(30, S)],
    ),
    (
        # Clear 40..100: ends at 100; saturated again from 105, a new episode starts 30 s later.
        "a second episode after a full clear",
        every(5, 0, 40, True) + every(5, 40, 105, False) + every(5, 105, 140, True),
        [(30, S), (100, E), (135, S)],
    ),
]


@pytest.mark.parametrize(("cycles", "told"), [c[1:] for c in EPISODES], ids=[c[0] for c in EPISODES])
def test_episodes_table(cycles: list[tuple[float, bool]], told: list[tuple[float, Transition]]) -> None:
    assert run(cycles) == told


def test_an_episode_keeps_the_last_signals_it_saw() -> None:
    episode, _ = advance(Episode(), SAT, 0, W)
    episode, change = advance(episode, SAT, 30, W)
    assert change is S and episode.active and episode.signals == SAT
    episode, change = advance(episode, (), 35, W)
    assert change is None and episode.active and episode.signals == SAT and episode.clear_since == 35


def test_a_restored_episode_ends_after_its_clear_without_starting_again() -> None:
    restored = Episode(started=0.0)  # what memory.restore_memory builds from status.bottlenecks
    assert run_from(restored, every(5, 100, 170, False)) == [(160, E)]
    assert run_from(restored, every(5, 100, 200, True)) == []


def run_from(episode: Episode, cycles: list[tuple[float, bool]]) -> list[tuple[float, Transition]]:
    told = []
    for now, held in cycles:
        episode, change = advance(episode, SAT if held else (), now, W)
        if change is not None:
            told.append((now, change))
    return told


@st.composite
def chatter(draw: st.DrawFn) -> tuple[Windows, list[tuple[float, bool]]]:
    """Cycles at irregular steps (0.5 s to 20 s), the signal on or off at each, in runs."""
    hold = draw(st.floats(1, 60))
    windows = Windows(hold, draw(st.floats(hold, 120)))
    runs = draw(st.lists(st.tuples(st.booleans(), st.integers(1, 30)), min_size=1, max_size=20))
    cycles, now = [], 0.0
    for held, length in runs:
        for _ in range(length):
            cycles.append((now, held))
            now += draw(st.floats(0.5, 20))
    return windows, cycles


@settings(max_examples=300)
@given(chatter())
def test_episodes_start_only_after_their_hold_end_only_after_their_clear_and_never_flap(
    case: tuple[Windows, list[tuple[float, bool]]],
) -> None:
    windows, cycles = case
    told = run(cycles, windows)
    # Starts and ends alternate, beginning with a start: one Warning per episode, however it chattered.
    assert [t for _, t in told] == [S, E] * (len(told) // 2) + [S] * (len(told) % 2)
    for when, change in told:
        held_run = _run_before(cycles, when, held=change is S)
        needed = windows.hold_seconds if change is S else windows.clear_seconds
        assert when - held_run >= needed, (when, change, held_run)
    # And whenever the signal held for the whole hold window, an episode is on by the end of it.
    episode = Episode()
    for now, held in cycles:
        episode, _ = advance(episode, SAT if held else (), now, windows)
        if held and now - _run_before(cycles, now, held=True) >= windows.hold_seconds:
            assert episode.active


def _run_before(cycles: list[tuple[float, bool]], when: float, held: bool) -> float:
    """When the run of cycles with the signal `held` (or clear) that includes `when` began."""
    start = when
    for now, value in reversed([c for c in cycles if c[0] <= when]):
        if value is not held:
            break
        start = now
    return start


@pytest.mark.parametrize(
    ("cpu", "memory", "reasons"),
    [
        (None, None, []),  # no cAdvisor series, or no limits: not evaluated
        (0.8, 0.85, []),  # at the thresholds: not above them
        (0.81, None, ["CpuHigh"]),
        (None, 0.86, ["MemoryHigh"]),
        (1.7, 0.99, ["CpuHigh", "MemoryHigh"]),  # CPU above its limit: a burst the quota throttles
    ],
)
def test_resource_signals_table(cpu: float | None, memory: float | None, reasons: list[str]) -> None:
    assert [s.reason for s in resource_signals(cpu, memory)] == reasons


def test_resource_messages_say_the_share_and_the_threshold() -> None:
    cpu, memory = resource_signals(0.93, 0.9)
    assert cpu.message == "CPU at 93% of its limits (> 80%)"
    assert memory.message == "memory at 90% of its limits (> 85%)"
