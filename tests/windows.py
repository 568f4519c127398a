"""Proof-window helpers for tests: the current window, with time left to answer it."""

from __future__ import annotations

import time

from tensorage.config import NetworkProfile
from tensorage.proofs.windows import window_of, window_start


def current_window(chain, profile: NetworkProfile, min_left_s: float = 1.0) -> tuple[int, bytes, float]:
    """(window, beacon, deadline) of a window whose deadline is at least ``min_left_s`` away,
    waiting for the next one when the current one is nearly over."""
    while True:
        window = window_of(chain.block(), profile)
        start = window_start(window, profile)
        deadline = chain.block_timestamp(start) + profile.challenge_deadline_s
        if deadline - time.time() >= min_left_s:
            return window, chain.block_hash(start), deadline
        time.sleep(max(0.05, chain.block_timestamp(start) + profile.window_blocks * chain.block_time() - time.time()))
