"""What a replica does with a policy at its due time (pure): a hand-worked table, and the property that
makes a handover safe: a replica writes to a policy only while the policy names it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalekeeper.engine.handover import Step, next_step


@pytest.mark.parametrize(
    ("owner", "served_by", "serving", "expired", "step"),
    [
        ("me", "me", True, False, Step.SERVE),
        ("me", "", True, False, Step.CLAIM),  # never served, or released
        ("me", "old", True, False, Step.WAIT),  # its server has not acknowledged yet
        ("me", "old", True, True, Step.CLAIM),  # its server's Lease is past duration + timeout
        ("other", "me", True, False, Step.RELEASE),
        ("other", "other", True, False, Step.SKIP),
        ("other", "", True, False, Step.SKIP),
        (None, "me", True, False, Step.RELEASE),  # no ring yet: nobody, not even me
        ("me", "me", False, False, Step.SKIP),  # cannot renew its own Lease: writes nothing
        ("other", "me", False, False, Step.SKIP),  # ... not even a release
    ],
)
def test_the_step_table(owner: str | None, served_by: str, serving: bool, expired: bool, step: Step) -> None:
    assert next_step("me", owner, served_by, serving, expired) is step


members = st.sampled_from(["me", "a", "b", ""])


@given(members, members, st.booleans(), st.booleans())
def test_only_the_named_server_serves_and_only_a_ring_owner_claims(
    owner: str, served_by: str, serving: bool, expired: bool
) -> None:
    step = next_step("me", owner or None, served_by, serving, expired)
    if step is Step.SERVE:
        assert served_by == "me" and owner == "me" and serving
    if step is Step.CLAIM:
        assert owner == "me" and serving and (served_by == "" or expired)
    if step is Step.RELEASE:
        assert served_by == "me" and owner != "me" and serving
