"""The miner's shard store on real files: content addressing, per-validator indexes, atomic writes,
recovery after a kill, and audits answered from disk."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from tensorage.net.objects import AuditItem
from tensorage.storage.audits import audit_digest, make_audits
from tensorage.storage.layout import Layout
from tensorage.storage.shards import ShardRefused, ShardStore

from .conftest import ALICE, BOB


async def chunks(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def put(store: ShardStore, validator: str, shard_id: str, data: bytes, size: int | None = None) -> None:
    asyncio.run(store.receive(validator, shard_id, len(data) if size is None else size, chunks(data)))


@pytest.fixture
def store(tmp_path):
    layout = Layout(tmp_path / "db").ensure()
    s = ShardStore(layout)
    yield s
    s.close()


def files(store: ShardStore) -> list[str]:
    return sorted(p.name for p in store.dir.iterdir())


def test_a_shard_is_kept_only_under_its_hash(store):
    data = os.urandom(10_000)
    sid = hashlib.sha256(data).hexdigest()
    put(store, ALICE, sid, data)
    assert files(store) == [sid] and store.used_bytes == 10_000
    assert store.held_by(ALICE, sid).read_bytes() == data
    wrong = hashlib.sha256(b"else").hexdigest()
    with pytest.raises(ShardRefused) as exc:
        put(store, ALICE, wrong, data)
    assert exc.value.status == 422
    for bad in ("../../index/miner.sqlite", "AB" * 32, sid[:-1], sid + "0", "/etc/passwd"):
        with pytest.raises(ShardRefused) as exc:
            store.path(bad)
        assert exc.value.status == 400
    with pytest.raises(ShardRefused, match="too_short|arrived"):
        put(store, ALICE, hashlib.sha256(data + b"x").hexdigest(), data, size=len(data) + 1)
    with pytest.raises(ShardRefused, match="more than"):
        put(store, ALICE, sid, data + b"x", size=len(data))
    assert files(store) == [sid] and store.used_bytes == 10_000  # nothing else kept, no temp file


def test_only_the_placing_validator_reads_audits_or_deletes(store):
    data = os.urandom(5000)
    sid = hashlib.sha256(data).hexdigest()
    put(store, ALICE, sid, data)
    with pytest.raises(ShardRefused) as exc:
        store.held_by(BOB, sid)
    assert exc.value.status == 403 and "another validator" in exc.value.message
    with pytest.raises(ShardRefused):
        store.delete(BOB, sid)
    nonce = os.urandom(16)
    item = AuditItem(shard=sid, offset=100, length=200, nonce=nonce.hex())
    assert store.audit(ALICE, [item])[0].digest == audit_digest(data[100:300], nonce).hex()
    assert store.audit(BOB, [item])[0].error == "not held for this validator"
    put(store, BOB, sid, data)  # the same bytes placed by two validators: one file, two index rows
    store.delete(ALICE, sid)
    assert files(store) == [sid]
    store.delete(BOB, sid)
    assert files(store) == [] and store.used_bytes == 0


def test_audits_from_a_truncated_shard_fail(store):
    data = os.urandom(8192)
    sid = hashlib.sha256(data).hexdigest()
    put(store, ALICE, sid, data)
    audits = make_audits(store.path(sid), len(data), 8, length=1024)
    os.truncate(store.path(sid), 4096)
    answers = store.audit(ALICE, [AuditItem(shard=sid, offset=a.offset, length=a.length, nonce=a.nonce.hex())
                                  for a in audits])
    for a, ans in zip(audits, answers):
        ok = ans.digest is not None and bytes.fromhex(ans.digest) == a.digest
        assert ok == (a.offset + a.length <= 4096)


def test_recovery_after_a_kill_keeps_only_indexed_whole_shards(tmp_path):
    layout = Layout(tmp_path / "db").ensure()
    store = ShardStore(layout)
    data = os.urandom(3000)
    sid = hashlib.sha256(data).hexdigest()
    put(store, ALICE, sid, data)
    store.close()
    (layout.shards / ".tmp-half-written").write_bytes(b"partial")
    stray = os.urandom(100)
    (layout.shards / hashlib.sha256(stray).hexdigest()).write_bytes(stray)  # renamed, index row never written
    again = ShardStore(layout)
    try:
        assert sorted(p.name for p in layout.shards.iterdir()) == [sid]
        assert again.used_bytes == 3000 and again.held_by(ALICE, sid).exists()
    finally:
        again.close()
