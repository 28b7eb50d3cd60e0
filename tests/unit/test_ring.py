"""The consistent-hash ring (pure): every replica with the same members names the same owner, a join
moves about 1/N of the policies and only to the newcomer, a leave moves only the leaver's."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scalekeeper.engine.ring import HashRing

UIDS = [f"3f6c1e2a-0000-4000-8000-{i:012d}" for i in range(3000)]
names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


def owners(ring: HashRing) -> dict[str, str | None]:
    return {uid: ring.owner(uid) for uid in UIDS}


def test_no_member_no_owner_and_one_member_owns_everything() -> None:
    assert HashRing(()).owner("x") is None
    assert set(owners(HashRing(["only"])).values()) == {"only"}


@settings(max_examples=25, deadline=None)
@given(st.sets(names, min_size=1, max_size=8), names)
def test_a_join_moves_policies_only_to_the_newcomer_and_about_one_nth(members: set[str], new: str) -> None:
    if new in members:
        return
    before, after = owners(HashRing(members)), owners(HashRing(members | {new}))
    moved = [uid for uid in UIDS if before[uid] != after[uid]]
    assert all(after[uid] == new for uid in moved)
    assert len(moved) / len(UIDS) <= 1 / (len(members) + 1) + 0.10


@settings(max_examples=25, deadline=None)
@given(st.sets(names, min_size=2, max_size=8))
def test_a_leave_moves_only_the_leavers_policies(members: set[str]) -> None:
    gone = sorted(members)[0]
    before, after = owners(HashRing(members)), owners(HashRing(members - {gone}))
    assert all(before[uid] == gone for uid in UIDS if before[uid] != after[uid])
    assert gone not in after.values()


@settings(max_examples=10, deadline=None)
@given(st.integers(3, 10))
def test_the_largest_share_stays_near_the_mean(n: int) -> None:
    shares = list(owners(HashRing(f"scalekeeper-{i}" for i in range(n))).values())
    largest = max(shares.count(m) for m in set(shares))
    assert largest <= 1.25 * len(UIDS) / n


def test_the_owner_does_not_depend_on_the_order_members_are_given() -> None:
    assert owners(HashRing(["a", "b", "c"])) == owners(HashRing(["c", "a", "b"]))
