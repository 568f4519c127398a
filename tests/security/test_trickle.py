"""Found after the slow-client suite: a streamed upload (the miner's shard PUT, the gateway's object
PUT) was bounded only by idleness, 60 s without a byte. A peer sending one byte every 59 s held an
upload slot for as long as it liked (the gateway has two per client, the miner a few per gateway).
Now an upload must keep up with a floor rate once its grace is over (net/pace.py): 408 too_slow,
nothing kept, the slot freed. Before the fix both cases below waited for the 60 s idle bound and
the miner's never ended (each byte reset it)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

import tensorage.net.pace as pace
from tensorage.net.objects import ObjectDeclare, ObjectDeclared
from tensorage.storage.layout import Layout
from tensorage.storage.shards import ShardRefused, ShardStore

from ..test_shard_store import cert_for, shard_id, signer  # noqa: F401 - the fixture
from ..conftest import BOB
from .rawhttp import encode, read_response

FLOOR = 20_000  # the test's floor (bytes a second) and grace: the node's are 32 KiB/s and 10 s
GRACE = 0.5


@pytest.fixture
def floor(monkeypatch):
    monkeypatch.setattr(pace, "MIN_BYTES_PER_S", FLOOR)
    monkeypatch.setattr(pace, "GRACE_S", GRACE)


async def trickle(data: bytes, piece: int, every: float):
    for i in range(0, len(data), piece):
        await asyncio.sleep(every)
        yield data[i:i + piece]


def test_a_shard_trickled_below_the_floor_is_refused_and_nothing_kept(tmp_path, signer, floor):  # noqa: F811
    store = ShardStore(Layout(tmp_path / "db").ensure())
    try:
        data = os.urandom(40_000)
        sid = shard_id(data)
        cert = cert_for(signer, sid, len(data))
        started = time.monotonic()
        with pytest.raises(ShardRefused) as exc:  # 100 bytes every 20 ms: 5 KB/s, a quarter of the floor
            asyncio.run(store.receive(BOB, sid, len(data), trickle(data, 100, 0.02), cert))
        took = time.monotonic() - started
        assert exc.value.status == 408 and exc.value.code == "too_slow", exc.value.message
        assert "floor" in exc.value.message
        assert took < 30, took  # bounded by the floor, not by 40,000 bytes at 5 KB/s (8 s) or the idle 60 s
        assert [p.name for p in store.dir.iterdir()] == []  # no temp file, no shard
        # the same bytes at the floor's pace or faster are kept: the floor cuts only trickles
        asyncio.run(store.receive(BOB, sid, len(data), trickle(data, 4000, 0.02), cert))
        assert store.held_by(BOB, sid).read_bytes() == data
    finally:
        store.close()


def test_the_floor_counts_only_time_spent_waiting_for_the_peer():
    """The node's own work between reads (hashing, placing a segment at miners) is not the peer's."""
    async def run() -> None:
        p = pace.Pace(idle_s=60, min_bytes_per_s=1000, grace_s=0.2)
        for _ in range(5):
            await asyncio.sleep(0.3)  # our own work: 1.5 s in all, far past grace + 200 bytes at 1 kB/s
            p.got(len(await p.read(100, asyncio.sleep(0.01, b"x" * 100))))
        assert p.received == 500 and p.waited < 0.5
        with pytest.raises(pace.TooSlow, match="floor"):
            await p.read(100, asyncio.sleep(5, b""))  # the peer itself stalls: cut at the floor

    asyncio.run(run())


def test_an_object_upload_trickled_below_the_floor_is_refused_and_frees_its_slot(world, tally, monkeypatch):
    monkeypatch.setattr(pace, "MIN_BYTES_PER_S", 20_000)
    monkeypatch.setattr(pace, "GRACE_S", GRACE)
    gateway = world.nodes["validator"]
    declare = ObjectDeclare(size=20_000, k=1, n=1, block=4096).model_dump_json().encode()
    reply = world.send("validator", "POST", "/v1/objects", declare, signer="client")
    assert reply.status == 201, reply.body[:300]
    declared = ObjectDeclared.model_validate_json(reply.body)
    headers = {**world.signed("client", "PUT", declared.upload_path, b"", gateway.hotkey),
               "Content-Length": str(declared.body_bytes), "Content-Type": "application/octet-stream"}
    started = time.monotonic()
    stop = threading.Event()

    def send_trickle(s: socket.socket) -> None:
        while not stop.wait(0.05):  # 10 bytes every 50 ms: 200 B/s, a hundredth of the floor
            try:
                s.sendall(b"\0" * 10)
            except OSError:
                return

    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as s:
        s.sendall(encode("PUT", declared.upload_path, b"", headers, length=False))
        sender = threading.Thread(target=send_trickle, args=(s,), daemon=True)
        sender.start()
        try:
            reply = read_response(s)  # the gateway answers on its own, mid-body
        finally:
            stop.set()
            sender.join()
    took = time.monotonic() - started
    tally.add(f"PUT {declared.upload_path.split('?')[0][:12]}… (validator)", "trickle", reply.status)
    assert reply.status == 408 and reply.error == "too_slow", reply.body[:300]
    assert took < 10, took  # the whole body's time at the floor, 1.5 s, not the idle bound
    state = world.run(asyncio.to_thread(world.nodes["validator"].engine.gateway.db.get, declared.id))
    assert state is None or state.state == "failed", state
