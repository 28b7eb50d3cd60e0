"""Ordering two resourceVersions of one object.

KEP-5504 (Kubernetes 1.35) makes resourceVersions of one resource comparable: decimal integers of any
length that only grow. The API servers before it produce the same (etcd revisions); something else (an
aggregated API of its own making) may not, and then only equality is known.
"""

from __future__ import annotations


def compare_versions(a: str, b: str) -> int | None:
    """-1, 0 or 1 as `a` is older than, the same as, or newer than `b`; None when either is not a
    well-formed version (digits, no leading zero) and so cannot be ordered."""
    if not _well_formed(a) or not _well_formed(b):
        return None
    if len(a) != len(b):
        return -1 if len(a) < len(b) else 1
    return (a > b) - (a < b)


def is_older(version: str, than: str, known_older: frozenset[str] = frozenset()) -> bool:
    """Whether `version` predates `than`. Versions that cannot be ordered count as older only when
    they are among `known_older` (seen before `than` was written)."""
    order = compare_versions(version, than)
    if order is None:
        return version in known_older
    return order < 0


def _well_formed(version: str) -> bool:
    return version.isascii() and version.isdigit() and (version == "0" or not version.startswith("0"))
