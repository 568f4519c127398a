"""Proofs of space: binding to the hotkey, challenge binding, tamper detection, proof rate."""

from __future__ import annotations

import hashlib
import math
import random

import pytest

from tensorage.errors import ProtocolError
from tensorage.proofs import chia
from tensorage.proofs.challenges import derive
from tensorage.proofs.plots import plot_id, proof_rate
from tensorage.proofs.plot_check import verify_plot

from .conftest import ALICE, BOB, FIXED_SEED


def _some_proofs(path, pid, n=20):
    prover = chia.open_prover(path)
    out = []
    for j in range(200):
        c = derive(b"test", pid, j)
        for proof in chia.full_proofs(prover, c):
            out.append((c, proof))
        if len(out) >= n:
            return out
    return out


def test_plot_id_binds_hotkey_and_seed():
    assert plot_id(ALICE, FIXED_SEED) != plot_id(BOB, FIXED_SEED)
    assert plot_id(ALICE, FIXED_SEED) != plot_id(ALICE, bytes(32))
    assert plot_id(ALICE, FIXED_SEED) == plot_id(ALICE, FIXED_SEED)
    with pytest.raises(ProtocolError):
        plot_id("not-an-address", FIXED_SEED)
    with pytest.raises(ProtocolError):
        plot_id(ALICE, b"short")


def test_plot_header_carries_alice_id(alice_plot):
    header_id, k = chia.plot_header(alice_plot)
    assert k == 18
    assert header_id == plot_id(ALICE, FIXED_SEED)
    assert verify_plot(alice_plot, plot_id(ALICE, FIXED_SEED), 18) >= 1


def test_proofs_verify_under_owner_and_fail_under_another_hotkey(alice_plot):
    a_id, b_id = plot_id(ALICE, FIXED_SEED), plot_id(BOB, FIXED_SEED)
    proofs = _some_proofs(alice_plot, a_id)
    assert len(proofs) >= 10
    assert all(chia.verify(a_id, 18, c, p) for c, p in proofs)
    assert not any(chia.verify(b_id, 18, c, p) for c, p in proofs)


def test_proof_is_bound_to_its_challenge(alice_plot):
    a_id = plot_id(ALICE, FIXED_SEED)
    proofs = _some_proofs(alice_plot, a_id)
    other = hashlib.sha256(b"another challenge").digest()
    assert not any(chia.verify(a_id, 18, other, p) for _, p in proofs)
    # nor under the next derived challenge, nor with a wrong k
    assert not any(chia.verify(a_id, 18, hashlib.sha256(c).digest(), p) for c, p in proofs)
    assert not any(chia.verify(a_id, 19, c, p) for c, p in proofs)


def test_truncated_or_bit_flipped_proofs_fail(alice_plot):
    a_id = plot_id(ALICE, FIXED_SEED)
    rng = random.Random(7)
    for c, p in _some_proofs(alice_plot, a_id):
        assert not chia.verify(a_id, 18, c, p[:-1])
        assert not chia.verify(a_id, 18, c, p + b"\0")
        assert not chia.verify(a_id, 18, c, b"")
        flipped = bytearray(p)
        bit = rng.randrange(len(p) * 8)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not chia.verify(a_id, 18, c, bytes(flipped))


def test_proof_count_over_200_challenges_is_poisson_around_the_rate(alice_plot):
    """~1 proof per plot per challenge: the count over 200 challenges is within 4 sigma of the rate."""
    prover = chia.open_prover(alice_plot)
    rng = random.Random(2024)
    counts = [len(chia.full_proofs(prover, rng.randbytes(32))) for _ in range(200)]
    total = sum(counts)
    mean = 200 * proof_rate(18)
    assert abs(total - mean) <= 4 * math.sqrt(mean), (total, mean)
    # Poisson: about e^-rate of challenges have no proof at all
    zeros = counts.count(0) / 200
    assert abs(zeros - math.exp(-proof_rate(18))) < 0.12
    # and a handful have several
    assert max(counts) >= 2
    assert 0.8 <= total / 200 <= 1.1


def test_a_proof_has_one_spelling_only(alice_plot):
    """A proof counts once, by its bytes: no reordering of its 64 x-values (swapping the two
    halves of any node of its tree) gives another proof that verifies."""
    a_id = plot_id(ALICE, FIXED_SEED)
    k = 18

    def xs(proof: bytes) -> list[int]:
        bits = int.from_bytes(proof, "big")
        return [(bits >> (k * (63 - i))) & ((1 << k) - 1) for i in range(64)]

    def pack(x: list[int]) -> bytes:
        value = 0
        for v in x:
            value = (value << k) | v
        return value.to_bytes(8 * k, "big")

    tried = 0
    for c, p in _some_proofs(alice_plot, a_id):
        x = xs(p)
        assert pack(x) == p
        for size in (1, 2, 4, 8, 16, 32):
            for start in range(0, 64, 2 * size):
                y = x[:start] + x[start + size:start + 2 * size] + x[start:start + size] + x[start + 2 * size:]
                tried += 1
                assert not chia.verify(a_id, k, c, pack(y))
    assert tried >= 63
