"""The miner's shard store on real files: Merkle-addressed shards with their tree sidecars and
certificates, per-validator indexes, atomic writes, recovery after a kill, chunks proven from disk,
deletion that waits for the listings still answered, and the scrub."""

from __future__ import annotations

import asyncio
import os

import bittensor as bt
import pytest

from tensorage.chain.wallets import create_wallet
from tensorage.proofs import merkle
from tensorage.proofs.certificates import issue
from tensorage.proofs.plots import hotkey_public_key
from tensorage.proofs.windows import SampledChunk
from tensorage.storage.layout import Layout
from tensorage.storage.shards import ShardRefused, ShardStore, parse_certificate

from .conftest import ALICE, BOB

MINER = ALICE


async def chunks(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def shard_id(data: bytes) -> str:
    builder = merkle.MerkleBuilder()
    builder.update(data)
    return builder.hexdigest()


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return bt.resolve_signer(create_wallet(tmp_path_factory.mktemp("w"), "gw"), role="hotkey")


def cert_for(signer, sid: str, size: int, expiry: int = 1000):
    return issue(signer, hotkey_public_key(MINER), bytes.fromhex(sid), size, expiry)


def put(store: ShardStore, validator: str, sid: str, data: bytes, size: int | None = None, cert=None) -> None:
    asyncio.run(store.receive(validator, sid, len(data) if size is None else size, chunks(data), cert))


@pytest.fixture
def store(tmp_path):
    layout = Layout(tmp_path / "db").ensure()
    s = ShardStore(layout)
    yield s
    s.close()


def files(store: ShardStore) -> list[str]:
    return sorted(p.name for p in store.dir.iterdir())


def test_a_shard_is_kept_only_under_its_merkle_id_with_its_tree(store, signer):
    data = os.urandom(40_000)
    sid = shard_id(data)
    put(store, BOB, sid, data, cert=cert_for(signer, sid, len(data)))
    assert files(store) == [sid, sid + ".tree"]
    tree_bytes = (store.dir / (sid + ".tree")).stat().st_size
    assert store.used_bytes == 40_000 + tree_bytes and store.held_by(BOB, sid).read_bytes() == data
    with pytest.raises(ShardRefused) as exc:
        put(store, BOB, shard_id(b"else"), data)
    assert exc.value.status == 422 and "Merkle id" in exc.value.message
    for bad in ("../../index/miner.sqlite", "AB" * 32, sid[:-1], sid + "0", "/etc/passwd"):
        with pytest.raises(ShardRefused) as exc:
            store.path(bad)
        assert exc.value.status == 400
    with pytest.raises(ShardRefused, match="arrived"):
        put(store, BOB, shard_id(data + b"x"), data, size=len(data) + 1)
    with pytest.raises(ShardRefused, match="more than"):
        put(store, BOB, sid, data + b"x", size=len(data))
    assert files(store) == [sid, sid + ".tree"]  # nothing else kept, no temp file


def test_chunks_are_proven_from_disk_and_only_for_the_placing_validator(store, signer):
    data = os.urandom(3 * merkle.CHUNK_BYTES + 17)
    sid = shard_id(data)
    put(store, BOB, sid, data, cert=cert_for(signer, sid, len(data)))
    samples = [SampledChunk(shard=bytes.fromhex(sid), size=len(data), index=i, gateway=b"g" * 32) for i in range(4)]
    proofs = store.read_proofs(samples)
    assert all(merkle.check_proof(p, bytes.fromhex(sid), len(data), i) for i, p in enumerate(proofs))
    assert store.prove(BOB, sid, [0, 3])[0][1] == proofs[3]
    assert store.prove(ALICE, sid, [0]) is None  # not held for that validator
    with pytest.raises(ShardRefused) as exc:
        store.held_by(ALICE, sid)
    assert exc.value.status == 403 and "another validator" in exc.value.message
    os.truncate(store.path(sid), merkle.CHUNK_BYTES)  # damaged: chunks past the cut cannot be produced
    assert store.read_proofs(samples)[0] is not None and store.read_proofs(samples)[2] is None
    (store.dir / (sid + ".tree")).write_bytes(b"junk")
    assert store.read_proofs(samples) == [None] * 4


def test_the_listing_carries_live_certificates_and_deletion_waits_for_answered_listings(store, signer):
    data = os.urandom(5000)
    sid = shard_id(data)
    put(store, BOB, sid, data, cert=cert_for(signer, sid, len(data), expiry=100))
    assert [c.shard_hex for c in store.certificates(block=50)] == [sid]
    assert store.certificates(block=101) == []  # expired: no longer listed
    newer = cert_for(signer, sid, len(data), expiry=200)
    assert store.set_certificate(BOB, newer) and not store.set_certificate(BOB, cert_for(signer, sid, len(data), 150))
    assert store.certificates(block=150)[0].expiry == 200
    before = store.generation
    store.delete(BOB, sid)
    assert store.generation > before and store.certificates(block=150) == []  # leaves the next listing at once
    assert store.purge(keep={sid}) == 0 and store.path(sid).exists()  # a listing still answered names it
    assert store.purge(keep=set()) == 1 and files(store) == [] and store.used_bytes == 0


def test_certificates_expired_past_grace_leave_the_listing(store, signer):
    data = os.urandom(100)
    sid = shard_id(data)
    put(store, BOB, sid, data, cert=cert_for(signer, sid, len(data), expiry=100))
    assert store.expire(block=150, grace=60) == 0
    assert store.expire(block=161, grace=60) == 1 and store.purge(set()) == 1


def test_a_certificate_is_taken_only_from_its_gateway_for_this_miner_and_shard(signer):
    sid, size = shard_id(b"abc"), 3
    good = cert_for(signer, sid, size)
    gateway = hotkey_public_key(signer.ss58_address)
    assert parse_certificate(good.entry().hex(), hotkey_public_key(MINER), gateway, sid, size) == good
    for text, miner, gw, shard, n, status in (
            (good.entry().hex(), hotkey_public_key(BOB), gateway, sid, size, 403),  # for another miner
            (good.entry().hex(), hotkey_public_key(MINER), hotkey_public_key(BOB), sid, size, 403),  # another caller
            (good.entry().hex(), hotkey_public_key(MINER), gateway, shard_id(b"x"), size, 400),
            (good.entry().hex(), hotkey_public_key(MINER), gateway, sid, 4, 400),
            ("zz", hotkey_public_key(MINER), gateway, sid, size, 400)):
        with pytest.raises(ShardRefused) as exc:
            parse_certificate(text, miner, gw, shard, n)
        assert exc.value.status == status


def test_recovery_after_a_kill_keeps_only_indexed_whole_shards(tmp_path, signer):
    layout = Layout(tmp_path / "db").ensure()
    store = ShardStore(layout)
    data = os.urandom(3000)
    sid = shard_id(data)
    put(store, BOB, sid, data, cert=cert_for(signer, sid, len(data)))
    store.close()
    (layout.shards / ".tmp-half-written").write_bytes(b"partial")
    stray = os.urandom(100)
    (layout.shards / shard_id(stray)).write_bytes(stray)  # renamed, index row never written
    (layout.shards / (shard_id(stray) + ".tree")).write_bytes(b"t")
    again = ShardStore(layout)
    try:
        assert sorted(p.name for p in layout.shards.iterdir()) == [sid, sid + ".tree"]
        assert again.held_by(BOB, sid).exists() and [c.shard_hex for c in again.certificates(0)] == [sid]
    finally:
        again.close()


def test_the_scrub_drops_a_damaged_shard_from_the_listing(store, signer):
    data = os.urandom(2 * merkle.CHUNK_BYTES)
    sid = shard_id(data)
    put(store, BOB, sid, data, cert=cert_for(signer, sid, len(data)))
    assert store.scrub() == []
    with open(store.path(sid), "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    assert store.scrub() == [sid]
    assert store.certificates(0) == [] and files(store) == [] and store.used_bytes == 0
