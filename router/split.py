"""Sticky, deterministic assignment of users to variant A (prod) or B (staging)."""

from __future__ import annotations

import hashlib
import secrets

A, B = "A", "B"


def bucket(experiment_id: str, user_id: str) -> float:
    """A number in [0, 1) fixed by (experiment, user): sha256, first 8 bytes, scaled.

    Hashing the experiment id too re-shuffles users between experiments, so the same users are
    not always the ones who try new models.
    """
    digest = hashlib.sha256(f"{experiment_id}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiment_id: str | None, user_id: str | None, split_b: float) -> str:
    """The variant of a request: B when the user's bucket falls below ``split_b``.

    No experiment (no staging model) -> A. No user id -> a fresh random draw per request.
    A user keeps their variant while the split stays; raising the split only moves users from A to
    B (their buckets are fixed), never back.
    """
    if experiment_id is None or split_b <= 0.0:
        return A
    point = bucket(experiment_id, user_id) if user_id is not None else secrets.randbelow(2**53) / 2**53
    return B if point < split_b else A
