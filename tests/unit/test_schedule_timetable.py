"""The timetable of policy cycles (scheduler.Schedule): pure, driven by an event-driven run."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scalekeeper.scheduler import Schedule


def run_timetable(
    intervals: dict[str, float], durations: list[float], horizon: float, workers: int
) -> tuple[dict[str, list[tuple[float, float]]], list[float]]:
    """Every (start, end) of each policy's cycles over `horizon` seconds, cycles taking the durations in
    turn, at most `workers` at once: an event-driven run of the timetable. And each cycle's delay (its
    start minus when it fell due)."""
    schedule = Schedule()
    for uid, interval in intervals.items():
        schedule.add(uid, interval, 0.0)
    now, turn = 0.0, 0
    running: list[tuple[float, str, float]] = []  # (end, uid, start)
    runs: dict[str, list[tuple[float, float]]] = {uid: [] for uid in intervals}
    delays: list[float] = []
    while now <= horizon:
        while len(running) < workers and (popped := schedule.pop_due(now)) is not None:
            uid, due = popped
            delays.append(now - due)
            assert all(uid != other for _, other, _ in running), "a policy ran twice at once"
            end = now + durations[turn % len(durations)]
            turn += 1
            running.append((end, uid, now))
        upcoming = [end for end, _, _ in running]
        if len(running) < workers and (due := schedule.next_due()) is not None:
            upcoming.append(due)
        now = max(now, min(upcoming))
        for item in [r for r in running if r[0] <= now]:
            running.remove(item)
            end, uid, start = item
            runs[uid].append((start, end))
            schedule.finished(uid, start, end)
    return runs, delays


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text("abcdef", min_size=1, max_size=3), st.sampled_from([1.0, 2.0, 5.0, 15.0]), min_size=1
    ),
    st.lists(st.floats(min_value=0.01, max_value=3.0), min_size=1, max_size=5),
)
def test_with_enough_workers_each_policy_starts_every_interval(
    intervals: dict[str, float], durations: list[float]
) -> None:
    horizon = 60.0
    runs, delays = run_timetable(intervals, durations, horizon, workers=len(intervals))
    assert delays and all(d == 0.0 for d in delays)  # a free worker for each: none starts late
    for uid, interval in intervals.items():
        starts = [start for start, _ in runs[uid]]
        assert starts and starts[0] == 0.0
        for (start, end), following in zip(runs[uid], starts[1:], strict=False):
            # from start to start when the cycle is shorter than the interval, at once after it otherwise
            assert following == max(start + interval, end), (uid, start, end, following)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=2, max_value=40),
    st.integers(min_value=1, max_value=4),
    st.floats(min_value=0.05, max_value=1.0),
)
def test_when_workers_are_short_every_policy_still_gets_its_turn(
    policies: int, workers: int, duration: float
) -> None:
    intervals = {f"p{i}": 5.0 for i in range(policies)}
    horizon = 120.0
    runs, delays = run_timetable(intervals, [duration], horizon, workers)
    assert min(delays) >= 0.0
    if policies * duration > 5.0 * workers:  # more cycle time than the workers have: cycles start late
        assert max(delays) > 0.0
    # Throughput is the workers' (cycles of `duration`), shared fairly: the most overdue goes first, so
    # no policy's cycles fall behind another's by more than one.
    counts = [len(r) for r in runs.values()]
    assert max(counts) - min(counts) <= 1, counts
    capacity = horizon / duration * workers
    expected = min(capacity / policies, horizon / 5.0)
    assert min(counts) >= int(expected) - 1, (counts, expected)


def test_a_woken_policy_is_due_now_or_right_after_its_running_cycle() -> None:
    schedule = Schedule()
    schedule.add("a", 15.0, 0.0)
    assert schedule.pop_due(0.0) == ("a", 0.0)
    schedule.finished("a", 0.0, 0.5)
    assert schedule.pop_due(5.0) is None
    schedule.wake("a", 5.0)  # its spec changed
    assert schedule.pop_due(5.0) == ("a", 5.0)
    schedule.wake("a", 6.0)  # changed again while that cycle runs
    assert schedule.pop_due(6.0) is None  # never twice at once
    schedule.finished("a", 5.0, 7.0)
    assert schedule.pop_due(8.0) == ("a", 7.0)  # due when that cycle ended: started a second late


def test_a_removed_policy_never_comes_due() -> None:
    schedule = Schedule()
    schedule.add("a", 1.0, 0.0)
    schedule.add("b", 1.0, 0.5)
    schedule.remove("a")
    assert schedule.pop_due(10.0) == ("b", 0.5)
    assert schedule.pop_due(10.0) is None
    schedule.add("c", 1.0, 0.0)
    assert schedule.pop_due(10.0) == ("c", 0.0)
    schedule.remove("c")
    schedule.finished("c", 10.0, 10.5)  # a cycle that ran while its policy went
    assert "c" not in schedule and schedule.next_due() is None
