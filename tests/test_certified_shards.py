"""Certified client shards, piece by piece (protocol 3): the Merkle tree and id, certificates,
listings that carry them, the chunks a window samples, how an answer's chunks are checked, and the
stake bound weights count client credit under. The end-to-end runs are in test_client_data.py and
test_client_yuma.py."""

from __future__ import annotations

import base64
import json
import os
import random

import pytest

from tensorage import PROTOCOL_VERSION
from tensorage.chain.wallets import create_wallet
from tensorage.config import PROFILES
from tensorage.engines.scoring import MinerScore, bounded_scores, stake_bound
from tensorage.proofs import merkle
from tensorage.proofs.answers import AnswerSpec, check_answer, encode_answer
from tensorage.proofs.certificates import Certificate, CertificateError, issue
from tensorage.proofs.listing import MAX_GATEWAYS, Listing, ListingError
from tensorage.proofs.plots import hotkey_public_key
from tensorage.proofs.verify_pool import check_listing
from tensorage.proofs.windows import (CLIENT_WEIGHT, SERVE_WEIGHT, client_credit, draw_chunks, live_certificates,
                                      window_challenge)

from .conftest import ALICE, BOB

DEV = PROFILES["devnet"]


@pytest.fixture(scope="module")
def gateway_signer(tmp_path_factory):
    import bittensor as bt

    wallet = create_wallet(tmp_path_factory.mktemp("w"), "gateway")
    return bt.resolve_signer(wallet, role="hotkey")


def tree_of(data: bytes) -> merkle.ShardTree:
    builder = merkle.MerkleBuilder()
    builder.update(data)
    return builder.finish()


# --- the Merkle tree -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, merkle.CHUNK_BYTES - 1, merkle.CHUNK_BYTES, merkle.CHUNK_BYTES + 1,
                                  5 * merkle.CHUNK_BYTES + 7, (1 << 20) + 5])
def test_every_chunk_proves_against_the_id_and_nothing_else_does(size):
    data = os.urandom(size)
    tree = tree_of(data)
    # the id does not depend on how the bytes arrived
    builder = merkle.MerkleBuilder()
    cuts = sorted(random.sample(range(1, size), min(size - 1, 5))) if size > 1 else []
    for a, b in zip([0] + cuts, cuts + [size]):
        builder.update(data[a:b])
    assert builder.finish().id == tree.id
    for i in range(merkle.leaf_count(size)):
        proof = data[i * merkle.CHUNK_BYTES:(i + 1) * merkle.CHUNK_BYTES] + b"".join(tree.path(i))
        assert len(proof) == merkle.proof_bytes(size, i)
        assert merkle.check_proof(proof, tree.id, size, i)
        flipped = bytearray(proof)
        flipped[len(proof) // 2] ^= 1
        assert not merkle.check_proof(bytes(flipped), tree.id, size, i)
        assert not merkle.check_proof(proof, tree.id, size + 1, i)  # the id binds the size
        if merkle.leaf_count(size) > 1:
            assert not merkle.check_proof(proof, tree.id, size, (i + 1) % merkle.leaf_count(size))
    decoded = merkle.ShardTree.decode(tree.encode(), tree.id)
    assert decoded.levels == tree.levels
    with pytest.raises(merkle.MerkleError):
        merkle.ShardTree.decode(tree.encode(), os.urandom(32))


def test_a_shard_tree_sidecar_is_small_and_its_path_one_read():
    size = merkle.MAX_SHARD_BYTES
    # 4,096 leaves: 8,191 nodes of 32 bytes plus a 16-byte header, read whole for a path
    assert merkle.leaf_count(size) == 4096
    assert merkle.max_path_length(size) == 12
    assert 16 + 32 * 8191 <= 256 << 10


# --- certificates --------------------------------------------------------------------------------


def test_a_certificate_binds_miner_shard_size_expiry_and_served(gateway_signer):
    shard = os.urandom(32)
    cert = issue(gateway_signer, hotkey_public_key(ALICE), shard, 1000, expiry=500, served=300)
    assert cert.valid_for(hotkey_public_key(ALICE))
    assert not cert.valid_for(hotkey_public_key(BOB))  # not for another miner
    assert Certificate.from_entry(cert.entry()) == cert
    for field, value in (("shard", os.urandom(32)), ("size", 999), ("expiry", 501), ("served", 301)):
        forged = Certificate(**{**cert.__dict__, field: value})
        assert not forged.valid_for(hotkey_public_key(ALICE)), field
    assert issue(gateway_signer, hotkey_public_key(ALICE), shard, 1000, 500, served=5000).served == 1000
    with pytest.raises(CertificateError, match="served"):
        Certificate.from_entry(Certificate(**{**cert.__dict__, "served": 1001}).entry())
    with pytest.raises(CertificateError, match="bytes"):
        Certificate.from_entry(Certificate(**{**cert.__dict__, "size": merkle.MAX_SHARD_BYTES + 1}).entry())


# --- listings --------------------------------------------------------------------------------------


def certs_for(signer, miner: str, sizes: list[int], expiry: int = 1000) -> list[Certificate]:
    return [issue(signer, hotkey_public_key(miner), os.urandom(32), s, expiry) for s in sizes]


def test_a_listing_carries_certificates_canonically(gateway_signer):
    certs = certs_for(gateway_signer, ALICE, [100, 200, 300])
    plots = [(os.urandom(32), 18) for _ in range(3)]
    a = Listing.from_plots(plots, certs)
    b = Listing.from_plots(list(reversed(plots)), list(reversed(certs)))
    assert a.stored() == b.stored() and a.digest == b.digest and a.cert_count == 3 and len(a) == 3
    assert Listing.from_stored(a.stored(), 10, 10).digest == a.digest
    assert Listing.from_plots(plots, certs[:2]).digest != a.digest  # the digest covers the certificates
    swapped = certs[1].entry() + certs[0].entry() + certs[2].entry()
    ordered = b"".join(c.entry() for c in sorted(certs, key=lambda c: c.shard))
    with pytest.raises(ListingError):
        Listing.parse(a.blob, 10, swapped if swapped != ordered else certs[0].entry() * 2, 10)
    with pytest.raises(ListingError, match="listed twice"):
        Listing.parse(a.blob, 10, ordered[:152] * 2, 10)
    with pytest.raises(ListingError, match="more than the 2"):
        Listing.parse(a.blob, 10, ordered, 2)


def test_a_validator_refuses_a_listing_with_a_forged_or_borrowed_certificate(gateway_signer):
    mine = certs_for(gateway_signer, ALICE, [100, 200])
    borrowed = certs_for(gateway_signer, BOB, [300])  # signed for another miner
    forged = Certificate(**{**mine[0].__dict__, "size": 150})

    def body(certs):
        listing = Listing.from_plots([], certs)
        return json.dumps({"protocol": PROTOCOL_VERSION, "hotkey": ALICE, "digest": listing.digest_hex,
                           "plots": "", "shards": listing.certs_b64()}).encode()

    assert check_listing(body(mine), ALICE, 18, 20, 10, 10).listing is not None
    for bad in (mine + borrowed, [forged, mine[1]]):
        check = check_listing(body(bad), ALICE, 18, 20, 10, 10)
        assert check.listing is None and "not signed by its gateway" in check.error


def test_a_listing_names_at_most_max_gateways(tmp_path):
    import bittensor as bt

    signers = [bt.resolve_signer(create_wallet(tmp_path, f"g{i}"), role="hotkey") for i in range(MAX_GATEWAYS + 1)]
    certs = [certs_for(s, ALICE, [10])[0] for s in signers]
    with pytest.raises(ListingError, match="gateways"):
        Listing.parse(b"", 0, Listing.from_plots([], certs).certs, 1000)


# --- window samples --------------------------------------------------------------------------------


def test_chunks_are_drawn_per_gateway_in_proportion_to_bytes_and_skip_expired(gateway_signer, tmp_path):
    import bittensor as bt

    other = bt.resolve_signer(create_wallet(tmp_path, "other"), role="hotkey")
    big, small = certs_for(gateway_signer, ALICE, [9 * merkle.CHUNK_BYTES, merkle.CHUNK_BYTES])
    expired = certs_for(gateway_signer, ALICE, [merkle.CHUNK_BYTES], expiry=10)[0]
    theirs = certs_for(other, ALICE, [100 * merkle.CHUNK_BYTES])  # a second gateway gets its own chunks
    listing = Listing.from_plots([], [big, small, expired] + theirs)
    hits = {big.shard: 0, small.shard: 0}
    for w in range(300):
        chunks = draw_chunks(DEV, window_challenge(os.urandom(32), w), ALICE, listing, start_block=50)
        mine = [c for c in chunks if c.gateway == big.gateway]
        assert len(mine) == DEV.chunks_per_gateway and len({(c.shard, c.index) for c in mine}) == len(mine)
        assert len([c for c in chunks if c.gateway == theirs[0].gateway]) == DEV.chunks_per_gateway
        assert expired.shard not in {c.shard for c in chunks}  # expired at the window's first block
        for c in mine:
            hits[c.shard] += 1
            assert 0 <= c.index < merkle.leaf_count(c.size)
    share = hits[big.shard] / (hits[big.shard] + hits[small.shard])
    assert 0.85 < share < 0.95  # 9 of 10 chunks (1,200 draws: sd ~0.009)
    again = draw_chunks(DEV, window_challenge(b"x" * 32, 1), ALICE, listing, 50)
    assert again == draw_chunks(DEV, window_challenge(b"x" * 32, 1), ALICE, listing, 50)  # every validator alike
    credit = client_credit(live_certificates(listing, 50))
    assert credit[big.gateway] == CLIENT_WEIGHT * 10 * merkle.CHUNK_BYTES
    served = issue(gateway_signer, hotkey_public_key(ALICE), os.urandom(32), 1000, 100, served=400)
    assert client_credit([served])[served.gateway] == CLIENT_WEIGHT * 1000 + SERVE_WEIGHT * 400


def test_an_answer_proves_its_chunks_or_fails_them(gateway_signer):
    data = os.urandom(3 * merkle.CHUNK_BYTES + 100)
    tree = tree_of(data)
    cert = issue(gateway_signer, hotkey_public_key(ALICE), tree.id, len(data), 100)
    listing = Listing.from_plots([], [cert])
    challenge = window_challenge(b"b" * 32, 7)
    chunks = draw_chunks(DEV, challenge, ALICE, listing, 5)
    spec = AnswerSpec(hotkey=ALICE, window=7, listing_hex=listing.digest_hex, challenge=challenge, per_plot=4,
                      plots=(), chunks=tuple(chunks))
    proofs = [data[c.index * merkle.CHUNK_BYTES:(c.index + 1) * merkle.CHUNK_BYTES] + b"".join(tree.path(c.index))
              for c in chunks]
    good = check_answer(encode_answer(7, listing.digest_hex, [], proofs), spec)
    assert good.error is None and good.chunks == [True] * len(chunks) and good.chunks_ok
    wrong = list(proofs)
    wrong[0] = bytes([wrong[0][0] ^ 1]) + wrong[0][1:]
    missing = [None] + proofs[1:]
    assert check_answer(encode_answer(7, listing.digest_hex, [], wrong), spec).chunks[0] is False
    check = check_answer(encode_answer(7, listing.digest_hex, [], missing), spec)
    assert check.chunks[0] is None and not check.chunks_ok
    other_shard = [proofs[1]] + proofs[1:] if chunks[0].index != chunks[1].index else proofs  # another chunk's bytes
    assert not check_answer(encode_answer(7, listing.digest_hex, [], other_shard), spec).chunks_ok
    body = json.loads(encode_answer(7, listing.digest_hex, [], proofs))
    body["chunks"][0] = body["chunks"][0].rstrip("=") + "=" * (len(body["chunks"][0]) - len(body["chunks"][0].rstrip("=")))
    body["chunks"][0] = " " + body["chunks"][0][1:]
    refused = check_answer(json.dumps(body).encode(), spec)
    assert refused.error and not refused.chunks_ok
    body["chunks"] = body["chunks"][:-1]
    assert "one entry per sampled shard chunk" in check_answer(json.dumps(body).encode(), spec).error
    text = base64.b64encode(proofs[0]).decode()
    assert len(text) == 4 * -(-chunks[0].proof_bytes // 3)


def test_holding_ninety_percent_of_each_shard_keeps_fewer_windows_than_that(gateway_signer):
    """Over 300 windows of the real sample and checker: a miner that dropped 2 of every 16 of each shard's
    chunks keeps ~0.875^4 = 59 % of its windows, and a failed window credits nothing at all, so it
    earns well under the 87.5 % it holds."""
    sizes = [16 * merkle.CHUNK_BYTES] * 5
    datas = [os.urandom(s) for s in sizes]
    trees = [tree_of(d) for d in datas]
    listing = Listing.from_plots([], [issue(gateway_signer, hotkey_public_key(ALICE), t.id, len(d), 10**6)
                                      for t, d in zip(trees, datas)])
    by_id = {t.id: (t, d) for t, d in zip(trees, datas)}
    kept = 0
    for w in range(300):
        challenge = window_challenge(os.urandom(32), w)
        chunks = draw_chunks(DEV, challenge, ALICE, listing, 0)
        proofs = [None if c.index % 10 == 3 else  # a tenth of every shard's chunks is gone
                  by_id[c.shard][1][c.index * merkle.CHUNK_BYTES:(c.index + 1) * merkle.CHUNK_BYTES]
                  + b"".join(by_id[c.shard][0].path(c.index)) for c in chunks]
        spec = AnswerSpec(hotkey=ALICE, window=w, listing_hex=listing.digest_hex, challenge=challenge, per_plot=4,
                          plots=(), chunks=tuple(chunks))
        kept += check_answer(encode_answer(w, listing.digest_hex, [], proofs), spec).chunks_ok
    held = sum(1 for s in sizes for i in range(merkle.leaf_count(s)) if i % 10 != 3) / sum(
        merkle.leaf_count(s) for s in sizes)
    assert held == pytest.approx(14 / 16)
    assert abs(kept / 300 - held ** DEV.chunks_per_gateway) < 0.09  # 3 standard errors of 300 windows
    assert kept / 300 < held - 0.1


# --- the stake bound ---------------------------------------------------------------------------------


def test_the_stake_bound_pays_honest_gateways_in_full_and_caps_colluders_at_their_share():
    # an honest gateway with 20 % of the stake whose certificates are under a fifth of all credit
    assert stake_bound(4.5, {"g": 1.0}, {"g": 0.2}) == {"g": 1.0}
    # a colluder certifying 100x the network's plots directs exactly its stake share of the total
    f = stake_bound(1.0, {"g": 100.0}, {"g": 0.2})["g"]
    counted = 100.0 * f
    assert counted / (1.0 + counted) == pytest.approx(0.2)
    # two capped gateways: each its share; a gateway without stake counts nothing
    f = stake_bound(1.0, {"g": 100.0, "h": 100.0, "x": 5.0}, {"g": 0.2, "h": 0.3})
    total = 1.0 + 100 * f["g"] + 100 * f["h"]
    assert 100 * f["g"] / total == pytest.approx(0.2) and 100 * f["h"] / total == pytest.approx(0.3)
    assert f["x"] == 0.0


def test_bounded_scores_scale_only_the_capped_gateway():
    decay = 0.9
    honest = MinerScore(hotkey="plots", uid=0)
    colluder = MinerScore(hotkey="colluder", uid=1)
    keeper = MinerScore(hotkey="keeper", uid=2)
    for w in range(50):
        honest.add_window(w, 100.0, 1, 1.0, decay)
        colluder.add_window(w, 10.0, 1, 1.0, decay, {"bad": 10_000.0})
        keeper.add_window(w, 50.0, 1, 1.0, decay, {"good": 40.0})
    scores, factors = bounded_scores([honest, colluder, keeper], {"bad": 0.1, "good": 0.5}, 8.0, decay, 49)
    assert factors["good"] == 1.0 and factors["bad"] < 0.01
    total = sum(scores.values())
    assert (scores["colluder"] - 10.0 * (1 - decay ** 50)) / total <= 0.1 + 1e-9  # at most its stake share
    assert scores["keeper"] == pytest.approx(90.0 / 100.0 * scores["plots"], rel=1e-6)  # paid in full
