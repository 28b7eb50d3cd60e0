"""Which policy sizes a workload several policies name (engine.claims): exactly one, the same for all."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scalekeeper.engine.claims import PolicyId, contested, target_key

policy_ids = st.builds(
    PolicyId,
    created=st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-06-30T12:00:00Z"]),
    namespace=st.sampled_from(["shop", "billing"]),
    name=st.text("abcxyz-", min_size=1, max_size=6),
)
keys = st.sampled_from([target_key("apps/v1", "Deployment", "shop", n) for n in ("web", "worker", "db")])
# policy -> the target keys it names, under target names of its own
claims = st.dictionaries(
    policy_ids,
    st.dictionaries(st.sampled_from(["web", "worker/a", "readReplicas"]), keys, max_size=3),
    max_size=6,
)


def _index(all_claims: dict[PolicyId, dict[str, str]]) -> dict[str, list[PolicyId]]:
    index: dict[str, list[PolicyId]] = {}
    for policy, targets in all_claims.items():
        for key in targets.values():
            index.setdefault(key, []).append(policy)
    return index


@given(claims)
def test_every_named_workload_has_exactly_one_policy_sizing_it(
    all_claims: dict[PolicyId, dict[str, str]],
) -> None:
    index = _index(all_claims)
    sized_by: dict[str, set[PolicyId]] = {}
    for policy, targets in all_claims.items():
        lost = contested(policy, targets, index)
        for name, key in targets.items():
            if name not in lost:
                sized_by.setdefault(key, set()).add(policy)
            else:
                # The policy it yields to names the same workload and came first.
                assert lost[name] in index[key] and lost[name] < policy
    for key, policies in index.items():
        assert sized_by.get(key) == {min(policies)}, key


@given(claims)
def test_a_policy_alone_on_its_workloads_is_never_contested(
    all_claims: dict[PolicyId, dict[str, str]],
) -> None:
    index = _index(all_claims)
    for policy, targets in all_claims.items():
        alone = {name: key for name, key in targets.items() if set(index[key]) == {policy}}
        assert not set(contested(policy, alone, index))
        # Absent from the index (not yet indexed) is the same as alone.
        assert contested(policy, alone, {}) == {}


def test_the_older_policy_keeps_the_workload_whatever_the_names() -> None:
    key = target_key("apps/v1", "Deployment", "shop", "web")
    older = PolicyId("2026-01-01T00:00:00Z", "shop", "zeta")
    newer = PolicyId("2026-01-02T00:00:00Z", "shop", "alpha")
    assert contested(newer, {"web": key}, {key: [older, newer]}) == {"web": older}
    assert contested(older, {"web": key}, {key: [older, newer]}) == {}


def test_the_key_ignores_version_and_case_but_not_group_namespace_or_name() -> None:
    base = target_key("apps/v1", "Deployment", "shop", "web")
    assert target_key("apps/v1beta2", "deployment", "shop", "web") == base
    assert target_key("extensions.example/v1", "Deployment", "shop", "web") != base
    assert target_key("apps/v1", "Deployment", "billing", "web") != base
    assert target_key("apps/v1", "Deployment", "shop", "api") != base
    # The core group has no prefix: a StatefulSet is not confused with a core kind of the same name.
    assert target_key("v1", "Deployment", "shop", "web") != base
