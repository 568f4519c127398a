"""Sample-challenge a plot file: is it ours, readable, and does it answer with valid proofs?

Light imports on purpose: the plotting child runs this right after plotting.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PlotError

VERIFY_TARGET_PROOFS = 3
VERIFY_MAX_CHALLENGES = 48


def verify_plot(path: Path, plot_id: bytes, k: int) -> int:
    """Sample-challenge a fresh plot; returns valid proofs found or raises PlotError.

    Asks derived challenges until a few proofs came back (P(no proof in 48 challenges)
    ~ e^-42 for an honest plot) and checks each with the stateless verifier.
    """
    from . import chia
    from .challenges import derive

    header_id, header_k = chia.plot_header(path)
    if header_id != plot_id or header_k != k:
        raise PlotError(f"{path.name}: header says k={header_k} id={header_id.hex()[:12]}, expected k={k} "
                        f"id={plot_id.hex()[:12]}; the plot belongs to another hotkey or is corrupt — remove it")
    prover = chia.open_prover(path)
    found = 0
    for j in range(VERIFY_MAX_CHALLENGES):
        challenge = derive(b"tensorage/verify", plot_id, j)
        for proof in chia.full_proofs(prover, challenge):
            if not chia.verify(plot_id, k, challenge, proof):
                raise PlotError(f"{path.name}: the plot returned an invalid proof; it is corrupt — it will be replotted")
            found += 1
        if found >= VERIFY_TARGET_PROOFS:
            return found
    if found == 0:
        raise PlotError(f"{path.name}: no proof in {VERIFY_MAX_CHALLENGES} challenges; the plot is corrupt")
    return found
