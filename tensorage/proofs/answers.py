"""A miner's answer to a window, in its one canonical form, and its checker.

The answer is JSON: ``{"protocol", "window", "listing", "proofs", "chunks"}`` where
``proofs[i][j]`` lists the proofs of the i-th sampled plot for its j-th derived challenge, as
lowercase hex of exactly 8k bytes, each at most once, at most MAX_PROOFS_PER_CHALLENGE of them;
and ``chunks[i]`` is the i-th sampled shard chunk followed by its Merkle path, in canonical
base64 ("" when the miner does not have it). Anything else is refused whole: a proof counts
once, by its bytes, for one (sampled plot, j), and a chunk is right or it is not.

``check_answer`` runs in a worker process (see :mod:`tensorage.proofs.verify_pool`): its
cost is bounded by what was asked (the reply was size-bounded before it got here) and a
hostile answer can only fail itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .. import PROTOCOL_VERSION
from .challenges import derive
from .merkle import check_proof
from .windows import MAX_PROOFS_PER_CHALLENGE, SampledChunk, SampledPlot

_HEX = re.compile(r"[0-9a-f]*")
ANSWER_KEYS = {"protocol", "window", "listing", "proofs", "chunks"}


@dataclass(frozen=True)
class AnswerSpec:
    """What the validator asked: enough to check an answer without any other state."""

    hotkey: str
    window: int
    listing_hex: str
    challenge: bytes
    per_plot: int
    plots: tuple[SampledPlot, ...]
    chunks: tuple[SampledChunk, ...] = ()


@dataclass
class AnswerCheck:
    valid: list[int] = field(default_factory=list)  # valid distinct proofs per sampled plot
    invalid: int = 0
    error: Optional[str] = None  # the answer was refused whole (malformed, wrong window, ...)
    chunks: list[Optional[bool]] = field(default_factory=list)  # per sampled chunk: right, wrong, None: missing
    fault: bool = False  # not checked: the validator's verifier failed (error says how), not the miner

    @property
    def returned(self) -> int:
        return sum(self.valid)

    @property
    def chunks_ok(self) -> bool:
        """Every sampled chunk came back right (and the answer was not refused)."""
        return self.error is None and all(self.chunks)

    @property
    def chunks_right(self) -> int:
        return sum(1 for c in self.chunks if c)


def encode_answer(window: int, listing_hex: str, proofs: list[list[list[bytes]]],
                  chunks: Sequence[Optional[bytes]] = ()) -> bytes:
    """The canonical answer bytes (the miner sends the same bytes to every validator)."""
    body = {"protocol": PROTOCOL_VERSION, "window": window, "listing": listing_hex,
            "proofs": [[[p.hex() for p in per_j] for per_j in per_plot] for per_plot in proofs],
            "chunks": [base64.b64encode(c).decode() if c else "" for c in chunks]}
    return json.dumps(body, separators=(",", ":")).encode()


def canonical_b64(text: str) -> Optional[bytes]:
    """The bytes of ``text`` if it is base64 in its one spelling (padded, no stray characters, zero
    padding bits), else None. (C decoding: ``base64.b64decode(validate=True)`` runs a regex first and
    costs a third more.)"""
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    if len(text) != 4 * -(-len(raw) // 3):
        return None
    tail = len(raw) % 3 or 3  # the last quantum carries the padding bits: it must re-encode to itself
    if raw and binascii.b2a_base64(raw[-tail:], newline=False).decode() != text[-4:]:
        return None
    return raw


def _refuse(spec: AnswerSpec, why: str) -> AnswerCheck:
    return AnswerCheck(valid=[0] * len(spec.plots), error=why, chunks=[False] * len(spec.chunks))


def check_answer(raw: bytes, spec: AnswerSpec) -> AnswerCheck:
    """Parse strictly, then verify each proof against (plot id, k, derived challenge)."""
    try:
        body: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return _refuse(spec, f"answer is not JSON ({str(exc)[:80]})")
    if not isinstance(body, dict) or set(body) != ANSWER_KEYS:
        return _refuse(spec, f"answer must be an object with exactly {sorted(ANSWER_KEYS)}")
    if body["protocol"] != PROTOCOL_VERSION or type(body["protocol"]) is not int:
        return _refuse(spec, f"answer speaks protocol {body['protocol']!r}, not {PROTOCOL_VERSION}")
    if body["window"] != spec.window or type(body["window"]) is not int:
        return _refuse(spec, f"answer is for window {body['window']!r}, not {spec.window}")
    if body["listing"] != spec.listing_hex:
        return _refuse(spec, "answer is for another listing than the one asked")
    proofs = body["proofs"]
    if not isinstance(proofs, list) or len(proofs) != len(spec.plots):
        return _refuse(spec, f"answer must hold one entry per sampled plot ({len(spec.plots)})")
    checked: list[list[list[bytes]]] = []
    for i, (plot, per_plot) in enumerate(zip(spec.plots, proofs)):
        if not isinstance(per_plot, list) or len(per_plot) != spec.per_plot:
            return _refuse(spec, f"sampled plot {i} must hold {spec.per_plot} lists of proofs")
        row: list[list[bytes]] = []
        for j, items in enumerate(per_plot):
            if not isinstance(items, list) or len(items) > MAX_PROOFS_PER_CHALLENGE:
                return _refuse(spec, f"plot {i} challenge {j}: at most {MAX_PROOFS_PER_CHALLENGE} proofs in a list")
            seen: set[str] = set()
            for item in items:
                if (not isinstance(item, str) or len(item) != 16 * plot.k or not _HEX.fullmatch(item)):
                    return _refuse(spec, f"plot {i} challenge {j}: a proof must be lowercase hex of {8 * plot.k} "
                                         f"bytes")
                if item in seen:
                    return _refuse(spec, f"plot {i} challenge {j}: the same proof sent twice")
                seen.add(item)
            row.append([bytes.fromhex(item) for item in items])
        checked.append(row)
    chunks = body["chunks"]
    if not isinstance(chunks, list) or len(chunks) != len(spec.chunks):
        return _refuse(spec, f"answer must hold one entry per sampled shard chunk ({len(spec.chunks)})")
    proofs_of_chunks: list[Optional[bytes]] = []
    for i, (want, text) in enumerate(zip(spec.chunks, chunks)):
        if not isinstance(text, str) or len(text) != (4 * -(-want.proof_bytes // 3) if text else 0):
            return _refuse(spec, f"chunk {i} must be the chunk and its path in base64 ({want.proof_bytes} bytes), "
                                 f"or empty")
        raw = canonical_b64(text) if text else None
        if text and raw is None:
            return _refuse(spec, f"chunk {i} is not canonical base64")
        proofs_of_chunks.append(raw)
    out = _verify(spec, checked)
    out.chunks = [None if raw is None else check_proof(raw, want.shard, want.size, want.index)
                  for want, raw in zip(spec.chunks, proofs_of_chunks)]
    return out


def _verify(spec: AnswerSpec, proofs: list[list[list[bytes]]]) -> AnswerCheck:
    from . import chia
    from .plots import hotkey_public_key, plot_id_from_key

    out = AnswerCheck()
    key = hotkey_public_key(spec.hotkey)
    for plot, per_plot in zip(spec.plots, proofs):
        valid = 0
        if plot.counts and any(per_plot):
            pid = plot_id_from_key(key, plot.seed)
            for j, items in enumerate(per_plot):
                if not items:
                    continue
                challenge = derive(spec.challenge, pid, j)
                for proof in items:
                    if chia.verify(pid, plot.k, challenge, proof):
                        valid += 1
                    else:
                        out.invalid += 1
        out.valid.append(valid)
    return out
