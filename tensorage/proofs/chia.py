"""The only module that calls chiapos: plot, prove, verify.

chiapos holds the GIL while it proves and writes progress to C++ stdout while it
plots, so callers run proofs in a process pool and plotting in a child process
(:mod:`tensorage.proofs.plotter`).
"""

from __future__ import annotations

from pathlib import Path

from chiapos import DiskPlotter, DiskProver, Verifier

from ..errors import PlotError

_VERIFIER = Verifier()


def plotter_tuning(k: int) -> tuple[int, int, int]:
    """(buffer MiB, buckets, stripe size) that chiapos accepts at this k.

    Small k refuses Chia's defaults ("Stripe size too large"); large k wants them.
    """
    if k < 21:
        return 100, 16, 2000
    if k < 25:
        return 400, 32, 8192
    if k < 30:
        return 2000, 64, 65536
    return 3389, 128, 65536


def create_plot(tmp_dir: Path, final_dir: Path, filename: str, k: int, plot_id: bytes, threads: int) -> None:
    """Build one plot (blocking; prints chiapos progress on stdout)."""
    buffer_mib, buckets, stripe = plotter_tuning(k)
    DiskPlotter().create_plot_disk(
        str(tmp_dir), str(tmp_dir), str(final_dir), filename, k, b"", plot_id,
        buffer_mib, buckets, stripe, max(1, threads), False,
    )


def open_prover(path: Path) -> DiskProver:
    try:
        return DiskProver(str(path))
    except Exception as exc:  # chiapos raises bare std::exception
        raise PlotError(f"cannot open plot {path}: {exc}; remove it and run `tensorage allocate` to replot") from None


def plot_header(path: Path) -> tuple[bytes, int]:
    """(plot id, k) read from the plot file's header."""
    prover = open_prover(path)
    return prover.get_id(), prover.get_size()


def full_proofs(prover: DiskProver, challenge: bytes) -> list[bytes]:
    """Every full proof the plot holds for a 32-byte challenge (often none, sometimes several)."""
    try:
        count = len(prover.get_qualities_for_challenge(challenge))
        return [bytes(prover.get_full_proof(challenge, i)) for i in range(count)]
    except Exception as exc:
        raise PlotError(f"plot {prover.get_filename()} cannot be read ({exc}); it will be re-verified and replotted") from None


def verify(plot_id: bytes, k: int, challenge: bytes, proof: bytes) -> bool:
    """True when ``proof`` is a valid proof of space for this plot id, k and challenge."""
    if len(plot_id) != 32 or len(challenge) != 32 or len(proof) != 8 * k:
        return False
    try:
        return _VERIFIER.validate_proof(plot_id, k, challenge, proof) is not None
    except Exception:
        return False

