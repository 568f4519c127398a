"""Challenge derivation: J challenges per sampled plot, each bound to the plot's id.

An honest plot has no proof for ~1/e of single challenges and "no proof" cannot be
verified, so a window asks J derived challenges per sampled plot and the score compares
proofs returned with proofs expected over many windows (proofs/windows.py).
"""

from __future__ import annotations

import hashlib

CHALLENGE_BYTES = 32


def derive(challenge: bytes, plot_id: bytes, j: int) -> bytes:
    """The j-th challenge for one plot: ``sha256(c | plot_id | j)``."""
    return hashlib.sha256(challenge + plot_id + j.to_bytes(4, "big")).digest()
