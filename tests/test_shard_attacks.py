"""Attacks on certified client shards by hostile validators, clients and miners, each against the
real code (tests/shard_world.py: a real ShardService behind the signed middleware on 127.0.0.1, a
real Gateway, the real window planner and checker). An independent attacker wrote each one as a
test that passed while the attack worked; here each asserts the defence holds, and the control in
each shows the attack's path is a real one."""

from __future__ import annotations

import asyncio
import os
import stat
import time

import pytest
from aiohttp import web
from pydantic import ValidationError

from tensorage.chain.port import Metagraph
from tensorage.gateway.certificates import certificate, renew
from tensorage.gateway.peers import PlacementError
from tensorage.proofs import merkle
from tensorage.proofs.certificates import issue
from tensorage.proofs.listing import Listing
from tensorage.proofs.plots import hotkey_public_key

from .shard_world import DEV, World, add_validator, make_gateway, neuron, start_miner, tree_of, window_verdict


@pytest.fixture
async def world(tmp_path):
    w = World(root=tmp_path, mg=Metagraph(netuid=7, block=100, neurons=[]))
    try:
        yield w
    finally:
        await w.close()


async def place(gw, miner, data: bytes, tmp) -> str:
    """The honest gateway's own path: certify, then PUT with the certificate header."""
    tree = tree_of(data)
    path = tmp / f"spool-{tree.id_hex[:8]}"
    path.write_bytes(data)
    cert = certificate(gw, miner.hotkey, tree.id_hex, len(data))
    await gw.peers.put(gw.peers.neuron(miner.hotkey), tree.id_hex, path, len(data), cert)
    return tree.id_hex


def listing_of(miner, block: int) -> Listing:
    return Listing.from_plots([], miner.service.store.certificates(block))


async def test_a_hostile_validator_cannot_poison_a_miner_with_a_resized_or_endless_certificate(world, tmp_path):
    """F1: a 1 %-stake validator placed a 1-byte shard, then 'renewed' its certificate to claim 64 MiB
    and never expire: every window of the miner failed at every validator, for good."""
    add_validator(world, "honest-gw", 10, stake=90.0)
    add_validator(world, "hostile", 11, stake=1.0)
    miner = await start_miner(world, "honest-miner", 1)
    gw, hostile = make_gateway(world, "honest-gw"), make_gateway(world, "hostile")
    try:
        await place(gw, miner, os.urandom(3 * merkle.CHUNK_BYTES + 5), tmp_path)
        y = await place(hostile, miner, b"\x00", tmp_path)
        n, key = hostile.peers.neuron(miner.hotkey), hotkey_public_key(miner.hotkey)
        resized = issue(hostile.signer, key, bytes.fromhex(y), merkle.MAX_SHARD_BYTES, world.mg.block + 600)
        endless = issue(hostile.signer, key, bytes.fromhex(y), 1, expiry=2**62)
        fair = issue(hostile.signer, key, bytes.fromhex(y), 1, world.mg.block + 600)
        assert await hostile.peers.certify(n, [resized]) is None
        assert await hostile.peers.certify(n, [endless]) is None
        taken = await hostile.peers.certify(n, [fair])  # control: an honest renewal of the same shard is taken
        assert taken is not None and taken.taken == 1
        path = tmp_path / "again"
        path.write_bytes(b"\x00")
        for cert in (resized, endless):  # nor by sending the shard again with it
            with pytest.raises(PlacementError, match="bad_certificate|certificate"):
                await hostile.peers.put(n, y, path, 1, cert)
        listing = listing_of(miner, world.mg.block)
        assert {c.shard_hex: (c.size, c.expiry) for c in listing.certificates()}[y] == (1, world.mg.block + 600)
        results = [window_verdict(miner, listing, w, world.mg.block)[0] for w in range(2, 42)]
        assert all(r.result == "pass" and r.total_credit > 0 for r in results)
        miner.service.store.expire(10**9, DEV.cert_grace_blocks)
        assert listing_of(miner, 10**9).cert_count == 0  # years later nothing of it is listed
    finally:
        gw.close()
        hostile.close()


@pytest.mark.parametrize("detector", ["listing", "renewal"])
async def test_a_shard_a_miner_quietly_drops_is_suspected(world, tmp_path, detector):
    """F2: a miner deleted 3 of 4 shards and stopped listing them: windows passed (nothing listed to
    sample), renewals were all taken, and the gateway's manifest said healthy forever."""
    add_validator(world, "gw", 10, stake=100.0)
    miner = await start_miner(world, "lazy-miner", 1)
    gw = make_gateway(world, "gw")
    try:
        oid = "a" * 32
        gw.db.declare(id=oid, client="c", size=1, k=1, n=1, block=1, per_segment=1, segments=4, meta="",
                      expires_at=None)
        rows = []
        for seg in range(4):
            data = os.urandom(2 * merkle.CHUNK_BYTES + seg)
            sid = await place(gw, miner, data, tmp_path)
            row = gw.db.add_shard(object_id=oid, segment=seg, idx=0, hash=sid, wrap="00" * 16, miner=miner.hotkey,
                                  size=len(data), cert_expiry=world.mg.block + DEV.cert_lifetime_blocks)
            gw.db.update_shard(row, state="placed")
            rows.append((row, sid))
        gw.db.commit(oid)
        for _, sid in rows[:3]:
            miner.service.store.path(sid).unlink()
            miner.service.store.tree_path(sid).unlink()
        listing = listing_of(miner, world.mg.block)
        assert listing.cert_count == 1
        assert all(window_verdict(miner, listing, w, world.mg.block)[0].result == "pass" for w in range(1, 21))
        if detector == "listing":
            assert gw.listing_seen(miner.hotkey, listing) == 0  # placed just now: its listing may lag
            gw.db.Shard.update(placed_at=time.time() - gw.listing_grace_s - 1).execute()
            assert gw.listing_seen(miner.hotkey, listing) == 3
        else:
            world.mg.block += DEV.cert_lifetime_blocks - DEV.cert_renew_blocks + 1
            assert (await renew(gw)).startswith("1 certificates renewed")
        states = [gw.db.shard(r).state for r, _ in rows]
        assert states == ["suspect"] * 3 + ["healthy"]
    finally:
        gw.close()


def test_a_client_cannot_declare_one_byte_blocks():
    """F4: block=1 made the gateway demultiplex byte by byte in Python: ~1 s of CPU per MiB."""
    from tensorage.net.objects import MIN_BLOCK, ObjectDeclare

    with pytest.raises(ValidationError, match="too small"):
        ObjectDeclare(size=300 * 10**6, k=1, n=3, block=1)
    ObjectDeclare(size=300 * 10**6, k=1, n=3, block=MIN_BLOCK)
    ObjectDeclare(size=10, k=2, n=3, block=5)  # a tiny object is one stripe whatever its block


async def test_concurrent_declarations_cannot_pass_the_quota_together(world, tmp_path):
    """F5: with an await between the quota check and the insert, 8 declarations at once of 0.9x the
    quota were all accepted while one miner answered slowly."""
    from tensorage.chain.wallets import create_wallet
    from tensorage.net.auth import PeerDirectory
    from tensorage.net.client import SignedClient
    from tensorage.net.objects import ObjectDeclare, ShardSummary
    from tensorage.net.server import make_app, serve

    add_validator(world, "gw", 10, stake=100.0)
    gw = make_gateway(world, "gw")
    slow = web.Application()

    async def summary(request):
        await asyncio.sleep(1.5)
        return web.json_response(ShardSummary(shards=0, bytes=0, free_bytes=0).model_dump())

    slow.router.add_get("/v1/shards", summary)
    slow_served = await serve(slow)
    slow_key = create_wallet(tmp_path / "w", "slow").hotkey.ss58_address
    world.mg.neurons.append(neuron(slow_key, 20, f"127.0.0.1:{slow_served.port}"))
    for i in range(3):
        world.mg.neurons.append(neuron(create_wallet(tmp_path / "w", f"m{i}").hotkey.ss58_address, 21 + i,
                                       f"10.9.9.{i}:1"))
    gw.peers._room(slow_key, 0)
    client_wallet = create_wallet(tmp_path / "w", "client")
    world.mg.neurons.append(neuron(client_wallet.hotkey.ss58_address, 30, None))

    async def load():
        return world.mg

    directory = PeerDirectory(load)
    directory.update(world.mg)
    app = make_app(gw.hotkey, directory, 7)
    gw.add_routes(app)
    served = await serve(app)
    client = SignedClient(client_wallet)
    world.clients.append(client)
    quota = gw.cfg.quota_bytes
    body = ObjectDeclare(size=int(quota * 0.9), k=1, n=1, block=1 << 20).model_dump_json().encode()
    try:
        gw.peers.of(slow_key).free_at -= 60  # its room is stale: every declaration asks it again, slowly
        replies = await asyncio.gather(*(client.request("POST", "127.0.0.1", served.port, "/v1/objects", gw.hotkey,
                                                        body=body, timeout=30) for _ in range(8)))
        assert sorted(r.status for r in replies) == [201] + [413] * 7
        assert gw.db.used_bytes(client_wallet.hotkey.ss58_address) <= quota
    finally:
        await served.close()
        await slow_served.close()
        gw.close()


async def test_put_delete_churn_stays_within_twice_the_gateway_cap(world, tmp_path):
    """F6: deleted shards are kept until no answered listing names them, and the cap counted only
    live ones: 12 PUT+DELETE rounds left 12x a 1 %-stake gateway's cap on the miner's disk."""
    add_validator(world, "big", 10, stake=99.0)
    add_validator(world, "hostile", 11, stake=1.0)
    miner = await start_miner(world, "miner", 1, share_bytes=64 << 20)
    hostile = make_gateway(world, "hostile")
    try:
        svc = miner.service
        _, cap = svc.gateway_cap(hostile.hotkey)
        n = hostile.peers.neuron(miner.hotkey)
        size = cap - 4096
        placed = 0
        with pytest.raises(PlacementError, match="still kept"):
            for _ in range(12):
                sid = await place(hostile, miner, os.urandom(size), tmp_path)
                placed += 1
                assert await hostile.peers.delete(n, sid) == "ok"
        assert placed == 2  # a store right after a removal still works: once
        on_disk = sum(p.stat().st_size for p in svc.store.dir.iterdir() if p.suffix != ".tree")
        assert on_disk <= 2 * cap
    finally:
        hostile.close()


async def test_tiny_shards_of_one_gateway_cannot_fill_the_listing(world, tmp_path):
    """F7: 4,096 four-byte shards from a 1 %-stake validator filled the miner's listing: the 99 %
    gateway was refused with listing_full. Each gateway now gets its stake's share of the slots."""
    add_validator(world, "honest-gw", 10, stake=99.0)
    add_validator(world, "hostile", 11, stake=1.0)
    miner = await start_miner(world, "miner", 1)
    honest, hostile = make_gateway(world, "honest-gw"), make_gateway(world, "hostile")
    slots, _ = miner.service.gateway_cap(hostile.hotkey)
    assert slots == int(DEV.max_listed_shards * 0.03)  # 3 x its 1 % of 4,096: 122
    try:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> bool:
            async with sem:
                try:
                    await place(hostile, miner, i.to_bytes(4, "big"), tmp_path)
                    return True
                except PlacementError:
                    return False

        placed = await asyncio.gather(*(one(i) for i in range(slots + 20)))
        assert sum(placed) == slots
        await place(honest, miner, os.urandom(3 * merkle.CHUNK_BYTES), tmp_path)
    finally:
        honest.close()
        hostile.close()


def test_a_backup_never_holds_the_secret_in_a_file_others_can_read(tmp_path, monkeypatch):
    """F8: the backup tar (manifest and wrap secret) was written 0644 and made 0600 only after."""
    from tensorage.gateway import backup as backup_mod
    from tensorage.storage import files
    from tensorage.storage.gateway_db import GatewayStore
    from tensorage.storage.layout import Layout
    from tensorage.storage.wrap import SECRET_FILE, load_or_create_secret

    layout = Layout(tmp_path / "v").ensure()
    GatewayStore(layout.index / "gateway.sqlite").close()
    load_or_create_secret(layout.index / SECRET_FILE)
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(stat.S_IMODE(os.stat(src).st_mode))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", spy)
    old = os.umask(0o022)
    try:
        backup_mod.backup(layout, tmp_path / "backup.tar")
    finally:
        os.umask(old)
    assert seen and all(m & (stat.S_IRWXG | stat.S_IRWXO) == 0 for m in seen)
