"""Names and label values the operator derives from users' names, kept within Kubernetes' limits the way
its own controllers do: unchanged when they fit, else cut and ended with a short hash of the whole."""

from __future__ import annotations

import hashlib

LABEL_VALUE_MAX = 63
HASH_LENGTH = 10


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def fitted(text: str, limit: int) -> str:
    """`text` when it is at most `limit` characters, else its start and a hash of all of it (so two long
    texts with one start still differ), without a `-` or `.` where they meet."""
    if len(text) <= limit:
        return text
    head = text[: limit - HASH_LENGTH - 1].rstrip("-.")
    return f"{head}-{_digest(text)}"


def label_value(text: str) -> str:
    """A label value naming `text` (a policy's or a Deployment's name, both up to 253 characters)."""
    return fitted(text, LABEL_VALUE_MAX)
