"""Proof windows as pure functions: canonical listings, the shared sample, the answer checker
(with a real plot and hostile spellings), the per-window credit, and the devnet beacon."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter

import pytest

from tensorage import PROTOCOL_VERSION
from tensorage.chain.devnet import Devnet
from tensorage.config import PROFILES
from tensorage.errors import BlockNotYet
from tensorage.proofs import chia
from tensorage.proofs.answers import AnswerSpec, check_answer, encode_answer
from tensorage.proofs.challenges import derive
from tensorage.proofs.listing import ENTRY_BYTES, Listing, ListingError
from tensorage.proofs.plots import estimated_plot_bytes, plot_id, proof_rate
from tensorage.proofs.verify_pool import check_listing
from tensorage.proofs.windows import (MAX_PROOFS_PER_CHALLENGE, SampledPlot, answer_bound, expected_per_challenge,
                                      sample_indices, sample_size, window_challenge, window_credit)

from .conftest import ALICE, BOB, FIXED_SEED
from .subnet import wait_for

FINNEY, DEVNET = PROFILES["finney"], PROFILES["devnet"]


def seeds(n: int, tag: bytes = b"") -> list[bytes]:
    return [hashlib.sha256(tag + i.to_bytes(4, "big")).digest() for i in range(n)]


# -- listings -------------------------------------------------------------------------------

def test_listing_is_canonical_whatever_the_order_it_was_built_in():
    plots = [(s, 18 + i % 3) for i, s in enumerate(seeds(50))]
    a = Listing.from_plots(plots)
    b = Listing.from_plots(list(reversed(plots)))
    assert a.blob == b.blob and a.digest == b.digest and len(a) == 50
    assert [s for s, _ in a.entries()] == sorted(s for s, _ in plots)
    assert Listing.parse(a.blob, 50).digest == a.digest
    assert Listing.from_b64(a.to_b64(), 50).digest == a.digest


@pytest.mark.parametrize("mutate, why", [
    (lambda b: b[ENTRY_BYTES:2 * ENTRY_BYTES] + b[:ENTRY_BYTES] + b[2 * ENTRY_BYTES:], "out of order"),
    (lambda b: b[:ENTRY_BYTES] + b[:ENTRY_BYTES] + b[ENTRY_BYTES:], "listed twice"),
    (lambda b: b[:-1], "whole number"),
    (lambda b: b"\x00" + b[1:], "k=0"),
])
def test_a_non_canonical_listing_is_refused_whole(mutate, why):
    blob = Listing.from_plots([(s, 18) for s in seeds(5)]).blob
    with pytest.raises(ListingError, match=why):
        Listing.parse(mutate(blob), 100)


def test_a_listing_over_the_network_limit_is_refused_with_the_limit():
    blob = Listing.from_plots([(s, 18) for s in seeds(11)]).blob
    with pytest.raises(ListingError, match="more than the 10"):
        Listing.parse(blob, 10)
    with pytest.raises(ListingError, match="characters"):
        Listing.from_b64("A" * 100_000, 10)
    with pytest.raises(ListingError, match="base64"):
        Listing.from_b64("not base64!", 10)


def test_listing_bytes_count_only_the_network_k_range():
    listing = Listing.from_plots([(s, k) for s, k in zip(seeds(6), (16, 18, 18, 19, 20, 21))])
    assert listing.credited_bytes(18, 20) == 2 * estimated_plot_bytes(18) + estimated_plot_bytes(19) + \
        estimated_plot_bytes(20)
    assert listing.out_of_range(18, 20) == "1 below k=18, 1 above k=20"


def test_check_listing_refuses_a_wrong_hotkey_digest_or_envelope():
    listing = Listing.from_plots([(s, 18) for s in seeds(3)])
    good = {"protocol": PROTOCOL_VERSION, "hotkey": ALICE, "digest": listing.digest_hex, "plots": listing.to_b64(),
            "shards": ""}
    ok = check_listing(json.dumps(good).encode(), ALICE, 18, 20, 100)
    assert ok.error is None and ok.listing.digest == listing.digest and ok.credited_bytes == 3 * estimated_plot_bytes(18)
    for changes, why in (({"hotkey": BOB}, "says it is"), ({"digest": "00" * 32}, "digest"),
                         ({"extra": 1}, "exactly"), ({"protocol": 1}, "protocol 1")):
        bad = check_listing(json.dumps({**good, **changes}).encode(), ALICE, 18, 20, 100)
        assert bad.listing is None and why in bad.error
    assert "not JSON" in check_listing(b"[" * 100_000, ALICE, 18, 20, 100).error
    assert "exactly" in check_listing(json.dumps([{}] * 1000).encode(), ALICE, 18, 20, 100).error


# -- the shared sample ----------------------------------------------------------------------

def test_sample_is_the_same_for_every_validator_and_distinct():
    c = window_challenge(b"\x01" * 32, 7)
    digest = b"\x02" * 32
    a = sample_indices(c, ALICE, digest, 1000, 40)
    assert a == sample_indices(c, ALICE, digest, 1000, 40)
    assert len(set(a)) == 40 and all(0 <= i < 1000 for i in a)
    assert a != sample_indices(c, BOB, digest, 1000, 40)            # per miner
    assert a != sample_indices(c, ALICE, b"\x03" * 32, 1000, 40)    # per listing
    assert a != sample_indices(window_challenge(b"\x01" * 32, 8), ALICE, digest, 1000, 40)  # per window
    assert sorted(sample_indices(c, ALICE, digest, 10, 10)) == list(range(10))


def test_sample_is_uniform_over_the_listing():
    """Every plot is drawn with probability s/n (chi-square over 2,000 windows)."""
    n, s, windows = 20, 4, 2000
    counts = Counter(i for w in range(windows)
                     for i in sample_indices(window_challenge(b"b" * 32, w), ALICE, b"d" * 32, n, s))
    expected = windows * s / n
    chi2 = sum((counts[i] - expected) ** 2 / expected for i in range(n))
    assert chi2 < 45.3  # 19 degrees of freedom, p = 0.001


def test_sample_size_follows_the_network_rate_with_a_floor_and_a_cap():
    assert FINNEY.sample_fraction == pytest.approx(0.3 * 36 / 3600)
    assert sample_size(0, FINNEY) == 0
    assert sample_size(1, FINNEY) == 1
    assert sample_size(8, FINNEY) == FINNEY.min_sample_plots           # small miners: the floor
    assert sample_size(1580, FINNEY) == math.ceil(1580 * FINNEY.sample_fraction) == 5  # 20 TB of k=29: one disk's burst
    assert sample_size(FINNEY.max_listed_plots, FINNEY) <= FINNEY.max_sample_plots
    assert sample_size(4, DEVNET) == 4 and sample_size(10, DEVNET) == 4


def test_an_answer_never_exceeds_its_bound():
    """The largest answer the protocol allows (every list full, largest k) fits the bound the
    validator reads up to, for the largest sample a network allows."""
    for profile in (FINNEY, DEVNET):
        s, j, k = profile.max_sample_plots, profile.challenges_per_plot, profile.max_k
        proof = b"\xab" * (8 * k)
        full = encode_answer(10**12, "ab" * 32, [[[proof] * MAX_PROOFS_PER_CHALLENGE] * j] * s)
        assert len(full) <= answer_bound(s, j, k)
    assert answer_bound(FINNEY.max_sample_plots, 1, FINNEY.max_k) < 16 << 20


def test_expected_per_challenge_is_the_rate_truncated_at_the_cap():
    for k in (18, 19, 20, 29):
        e = expected_per_challenge(k)
        assert proof_rate(k) - 1e-3 < e <= proof_rate(k)
    assert expected_per_challenge(18, cap=1) == pytest.approx(1 - math.exp(-proof_rate(18)))


# -- the answer checker ---------------------------------------------------------------------

def _answer_for(plot_path, window=3):
    """A one-plot listing of Alice's real plot, the spec a validator builds, and honest proofs."""
    listing = Listing.from_plots([(FIXED_SEED, 18)])
    challenge = window_challenge(b"\x05" * 32, window)
    pid = plot_id(ALICE, FIXED_SEED)
    prover = chia.open_prover(plot_path)
    for attempt in range(200):  # a window where the plot has proofs for both j
        challenge = window_challenge(attempt.to_bytes(32, "big"), window)
        proofs = [chia.full_proofs(prover, derive(challenge, pid, j)) for j in range(2)]
        if all(proofs):
            break
    spec = AnswerSpec(hotkey=ALICE, window=window, listing_hex=listing.digest_hex, challenge=challenge, per_plot=2,
                      plots=(SampledPlot(seed=FIXED_SEED, k=18, weight=1, expected=2.0),))
    return spec, proofs


def _raw(spec, lists) -> bytes:
    return json.dumps({"protocol": PROTOCOL_VERSION, "window": spec.window, "listing": spec.listing_hex,
                       "proofs": [lists], "chunks": []}).encode()


def test_honest_answer_counts_each_distinct_proof(alice_plot):
    spec, proofs = _answer_for(alice_plot)
    check = check_answer(encode_answer(spec.window, spec.listing_hex, [proofs]), spec)
    assert check.error is None and check.invalid == 0
    assert check.valid == [sum(len(p) for p in proofs)]


@pytest.mark.parametrize("spelling", ["upper", "spaces", "twice", "0x", "list_of_bytes"])
def test_a_proof_in_another_spelling_or_sent_twice_is_refused_whole(alice_plot, spelling):
    """The review's cheater sent each proof several times in different hex spellings."""
    spec, proofs = _answer_for(alice_plot)
    p = proofs[0][0].hex()
    variant = {"upper": [p, p.upper()], "spaces": [p, " ".join(p[i:i + 2] for i in range(0, len(p), 2))],
               "twice": [p, p], "0x": ["0x" + p], "list_of_bytes": [list(proofs[0][0])]}[spelling]
    check = check_answer(_raw(spec, [variant, [q.hex() for q in proofs[1]]]), spec)
    assert check.error is not None and check.valid == [0]


@pytest.mark.parametrize("body, why", [
    (b"not json", "not JSON"),
    (b"[" * 50_000 + b"]" * 50_000, "not JSON"),
    (json.dumps([{}] * 1000).encode(), "exactly"),
    (json.dumps({"protocol": 1, "window": 3, "listing": "", "proofs": []}).encode(), "protocol"),
])
def test_junk_answers_are_refused(alice_plot, body, why):
    spec, _ = _answer_for(alice_plot)
    check = check_answer(body, spec)
    assert why in check.error and check.valid == [0]


def test_answers_for_another_window_listing_or_shape_are_refused(alice_plot):
    spec, proofs = _answer_for(alice_plot)
    lists = [[q.hex() for q in proofs[0]], [q.hex() for q in proofs[1]]]
    good = json.loads(_raw(spec, lists))
    for changes, why in (({"window": spec.window + 1}, "window"), ({"window": float(spec.window)}, "window"),
                         ({"listing": "00" * 32}, "another listing"), ({"proofs": [lists, lists]}, "one entry"),
                         ({"proofs": [lists[:1]]}, "2 lists"), ({"proofs": [[["ab"] * 7, []]]}, "at most"),
                         ({"extra": True}, "exactly")):
        check = check_answer(json.dumps({**good, **changes}).encode(), spec)
        assert check.error and why in check.error, (changes, check.error)


def test_a_proof_for_another_challenge_or_plot_counts_as_invalid(alice_plot):
    spec, proofs = _answer_for(alice_plot)
    swapped = [[q.hex() for q in proofs[1]], [q.hex() for q in proofs[0]]]  # j=0's proofs under j=1
    check = check_answer(_raw(spec, swapped), spec)
    assert check.error is None and check.valid == [0] and check.invalid == sum(len(p) for p in proofs)
    bob = AnswerSpec(**{**spec.__dict__, "hotkey": BOB})  # the same plot listed by another hotkey
    check = check_answer(encode_answer(spec.window, spec.listing_hex, [proofs]), bob)
    assert check.valid == [0] and check.invalid > 0


def test_out_of_range_plots_are_never_verified_nor_credited(alice_plot):
    spec, proofs = _answer_for(alice_plot)
    ignored = AnswerSpec(**{**spec.__dict__, "plots": (SampledPlot(seed=FIXED_SEED, k=18, weight=0, expected=0.0),)})
    check = check_answer(encode_answer(spec.window, spec.listing_hex, [proofs]), ignored)
    assert check.error is None and check.valid == [0] and check.invalid == 0


# -- what a window proves --------------------------------------------------------------------

def test_window_credit_is_unbiased_for_the_held_bytes():
    """Exact expectation over every sample of 2 of 4 plots: the bytes held, whatever the mix of k."""
    from itertools import combinations

    ks = [18, 20, 18, 19]
    held = [True, False, True, True]
    e = [4 * expected_per_challenge(k) for k in ks]
    w = [estimated_plot_bytes(k) for k in ks]
    samples = list(combinations(range(4), 2))
    mean = sum(window_credit(4, [w[i] for i in s], [e[i] for i in s], [e[i] if held[i] else 0 for i in s])
               for s in samples) / len(samples)
    assert mean == pytest.approx(sum(wi for wi, h in zip(w, held) if h))


# -- the devnet beacon -----------------------------------------------------------------------

def test_devnet_beacon_is_unknown_before_its_block_and_the_same_for_everyone(tmp_path):
    Devnet.create(tmp_path, block_time=0.2).close()
    a, b = Devnet.open(tmp_path), Devnet.open(tmp_path)
    try:
        head = a.block()
        with pytest.raises(BlockNotYet):
            a.block_hash(head + 5)
        with pytest.raises(BlockNotYet):
            a.block_timestamp(head + 5)
        wait_for(lambda: b.block() >= head + 5, 10, f"block {head + 5}", every=0.05)
        later = b.block_hash(head + 5)  # drawn now, by whoever asks first
        assert a.block_hash(head + 5) == later and len(later) == 32
        assert a.block_hash(head) != later
        assert a.block_timestamp(head + 5) == pytest.approx(a.block_timestamp(head) + 1.0)
    finally:
        a.close()
        b.close()


def test_a_beacon_written_ahead_of_its_block_is_not_the_beacon(tmp_path):
    """The review's devnet hole: a process writes the hash of a future block into the shared chain
    file, then grinds its listing against it. A row dated before its block's time is redrawn."""
    Devnet.create(tmp_path, block_time=0.2).close()
    chain = Devnet.open(tmp_path)
    try:
        future = chain.block() + 3
        planted = b"\x42" * 32
        chain.BlockHashRow.insert(block=future, hash=planted, made_at=time.time()).execute()
        with pytest.raises(BlockNotYet):
            chain.block_hash(future)  # not readable before its block, planted or not
        wait_for(lambda: chain.block() >= future, 10, f"block {future}", every=0.05)
        assert chain.block_hash(future) != planted
        assert chain.block_hash(future) == chain.block_hash(future)  # and stable once drawn
    finally:
        chain.close()
