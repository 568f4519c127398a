"""Plot identity and sizes: what a validator can recompute without the plot.

``plot_id = sha256("tensorage/plot/v1" | hotkey public key | seed)``: a validator
recomputes it from the miner's hotkey, so a plot serves one hotkey only and a
listed plot cannot be borrowed from another miner.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from functools import lru_cache

from ..errors import ProtocolError

PLOT_ID_DOMAIN = b"tensorage/plot/v1"
SEED_BYTES = 32
PLOT_NAME = re.compile(r"^plot-k(?P<k>\d{2})-(?P<seed>[0-9a-f]{64})\.plot$")

# Final plot bytes ~= Chia's formula (2k+1) * 2^(k-1) * 0.762; measured here k=18..22 within
# +4.5 % of it, so plans add 5 %. Chiapos' working space (temp files) measured 2.6-2.8x the
# final size at k=18..21 ("Approximate working space used" in its output); plans count 2.8x.
_SIZE_SAFETY = 1.05
WORKING_RATIO = 2.8

# Proofs per challenge of one plot (= table-7 entries / 2^k) vary from plot to plot: over
# 4,000 challenges on each of 12 k=18, 10 k=19 and 6 k=20 plots we measured means of 0.949,
# 0.953, 0.991 with plot-to-plot standard deviations of 0.065, 0.051, 0.037 (k=21, 22: 0.997,
# 0.989 on two plots each). A validator cannot know a plot's own rate, so it expects the
# population mean: unbiased, so a miner holding a fraction f of its listed plots scores f of
# an honest peer; an honest miner's plots differ from the mean by ~6/sqrt(n) % for n plots
# of k=18 (less at larger k), which is the estimator's floor on small miners.
# Re-measured (issue 14: `python -m benchmarks.bench_proof_rate`, 1,000 challenges a plot, four runs
# pooled; ± one standard error of the population mean, plot-to-plot spread included):
#   k=18  0.9445 ± 0.005 over 192 plots: within 1 SE of 0.949 (an independent count gave 0.940 over
#         64), so 0.949 stands;
#   k=19  0.966 ± 0.004 over 224 plots (runs of 64, 32, 128: 0.962, 0.979, 0.965): 3.5 SE above the
#         0.953 of 10 plots, so 0.966;
#   k=20  0.980 ± 0.004 over 112 plots (runs of 32, 16, 64: 0.983, 0.982, 0.979): 2.4 SE below the
#         0.991 of 6 plots, so 0.980.
# A rate set too low over-credits every honest plot of that k by the same factor, one too high
# under-credits it: before, k=19 plots were over-credited by 1.4 % and k=20 under-credited by 1.1 %.
# (Finney's k >= 29 uses _PROOF_RATE_LARGE_K, measured on two plots each at k=21 and 22 only.)
_PROOF_RATE = {18: 0.949, 19: 0.966, 20: 0.980}
_PROOF_RATE_LARGE_K = 0.99


@lru_cache(maxsize=4096)
def hotkey_public_key(hotkey_ss58: str) -> bytes:
    from bittensor.sp_core import ss58_decode  # bittensor takes 0.35 s to import: not in plotting children

    try:
        return bytes(ss58_decode(hotkey_ss58))
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"{hotkey_ss58!r} is not an ss58 hotkey address ({exc})") from None


def plot_id(hotkey_ss58: str, seed: bytes) -> bytes:
    return plot_id_from_key(hotkey_public_key(hotkey_ss58), seed)


def plot_id_from_key(public_key: bytes, seed: bytes) -> bytes:
    """``plot_id`` with the hotkey already decoded (many plots of one miner)."""
    if len(seed) != SEED_BYTES:
        raise ProtocolError(f"plot seed must be {SEED_BYTES} bytes, got {len(seed)}")
    return hashlib.sha256(PLOT_ID_DOMAIN + public_key + seed).digest()


def new_seed() -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def plot_filename(k: int, seed: bytes) -> str:
    return f"plot-k{k:02d}-{seed.hex()}.plot"


def parse_plot_filename(name: str) -> tuple[int, bytes] | None:
    m = PLOT_NAME.match(name)
    return (int(m["k"]), bytes.fromhex(m["seed"])) if m else None


def estimated_plot_bytes(k: int) -> int:
    return int((2 * k + 1) * 2 ** (k - 1) * 0.762 * _SIZE_SAFETY)


def working_bytes(k: int) -> int:
    """Temp space chiapos needs while building a plot of size k (final file excluded)."""
    return int(estimated_plot_bytes(k) * WORKING_RATIO)


def peak_bytes(k: int) -> int:
    """Disk a plot occupies at its peak: temp files plus the final file being written."""
    return working_bytes(k) + estimated_plot_bytes(k)


def proof_rate(k: int) -> float:
    """Expected full proofs per challenge for one honest plot of size k."""
    return _PROOF_RATE.get(k, _PROOF_RATE_LARGE_K)

