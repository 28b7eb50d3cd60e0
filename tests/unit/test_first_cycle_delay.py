"""Spreading the first cycles of the policies found at a start over their interval."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from scalekeeper.runtime import first_cycle_delay

intervals = st.floats(min_value=1.0, max_value=3600.0)


@given(st.uuids().map(str), intervals, st.floats(min_value=0.0, max_value=7200.0))
def test_the_delay_is_within_the_interval_and_zero_after_the_first_interval(
    uid: str, interval: float, since_start: float
) -> None:
    delay = first_cycle_delay(uid, interval, since_start)
    assert 0.0 <= delay <= interval
    if since_start >= interval:
        assert delay == 0.0
    # the first cycle never starts later than one interval after the operator did
    assert since_start + delay <= interval or delay == 0.0


@given(st.uuids().map(str), intervals)
def test_a_policy_keeps_its_slot(uid: str, interval: float) -> None:
    assert first_cycle_delay(uid, interval, 0.0) == first_cycle_delay(uid, interval, 0.0)


def test_the_policies_found_at_a_start_spread_over_the_interval() -> None:
    delays = [first_cycle_delay(str(uuid.UUID(int=i * 7919 + 1)), 15.0, 0.0) for i in range(1000)]
    per_tenth = [0] * 10
    for d in delays:
        per_tenth[min(9, int(d / 1.5))] += 1
    # 1,000 policies: about 100 per tenth of the interval, none close to all at once
    assert all(60 <= n <= 140 for n in per_tenth), per_tenth
