"""What a replica does with a policy at its due time, from who serves it now and whom the ring names.

The policy's `status.servedBy` names the member serving it. A member serves a policy only while it is
named there; it takes a policy (writes its own name, at the resourceVersion it saw, so two replicas
claiming at once cannot both win) only when the ring names it and the policy is free: released by its
old server, never served, or served by a member whose Lease has gone unrenewed for its whole duration
plus the longest request timeout, measured on this replica's own clock. A server whose ring names
another member releases the policy (writes an empty name) at its next due time, which comes only after
its cycle in flight has finished: that release is the acknowledgement the new owner waits for. So at any
time at most one replica writes to a policy's targets, even while replicas disagree on the members.
"""

from __future__ import annotations

from enum import StrEnum


class Step(StrEnum):
    SERVE = "serve"  # run its cycle
    CLAIM = "claim"  # write servedBy = me, then run its cycle
    RELEASE = "release"  # write servedBy = "": another member takes it
    WAIT = "wait"  # the ring names me, but its server has not released it nor expired
    SKIP = "skip"  # another member's


def next_step(me: str, ring_owner: str | None, served_by: str, serving: bool, server_expired: bool) -> Step:
    """`serving`: this replica's own Lease is renewed (a replica that cannot renew writes nothing, not
    even a release). `server_expired`: the member named in `served_by` has gone unrenewed for its Lease's
    duration plus the longest request timeout on this replica's clock (or never was seen)."""
    if not serving:
        return Step.SKIP
    if ring_owner != me:
        return Step.RELEASE if served_by == me else Step.SKIP
    if served_by == me:
        return Step.SERVE
    if not served_by or server_expired:
        return Step.CLAIM
    return Step.WAIT
