"""Client data end to end on a real devnet (docs/design.md#client-data): 8 miner processes (one of them a
miner that is also a client), one validator gateway, client wallets; bytes compared, manifests, listings
and shard directories inspected. Proof rounds (which check certified shard chunks), repair (with its
signed re-checks), certificate renewal and GC are run as the validator's own jobs, on demand: its
schedule runs a round only every hour here.

The tests share the subnet; after each one every node is up again (``ObjectNet.restore``), so
they pass in any order.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path

import aiohttp
import pytest

from tensorage.client.errors import ClientError, GatewayError, WrongKey
from tensorage.client.keyfile import load_key
from tensorage.net.objects import CERTIFICATE_HEADER, ObjectDeclare, ObjectDeclared
from tensorage.proofs.certificates import issue
from tensorage.proofs.merkle import MerkleBuilder, ShardTree, tree_of_file
from tensorage.proofs.plots import hotkey_public_key
from tensorage.storage.wrap import keystream, load_or_create_secret

from .client_adversary import REGEN_FILE, regenerate_shard, seeded_bytes
from .conftest import tensorage
from .objectnet import VALIDATOR, ObjectNet, cli_ids
from .subnet import wait_for

MINERS = 8
ADVERSARY = "miner-7"
REMOVED: set[tuple[str, str]] = set()  # (miner, shard) the gateway deleted: their bytes must leave the miners
SHARD_MB = 0.25  # 1 MiB of ciphertext per segment at k=4: small files already span segments
VALIDATOR_ARGS = ("--seconds_per_round", "3600", "--seconds_per_weights", "600", "--gateway.shard_mb", str(SHARD_MB),
                  "--gateway.repair_s", "3600", "--gateway.quota_gb", "0.2", "--gateway.replace_after_s", "4")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    net = ObjectNet(tmp_path_factory.mktemp("objects") / "devnet", MINERS, 0.017, VALIDATOR_ARGS,
                    adversary=ADVERSARY, guests=("guest", "adv-client"))
    try:
        net.start()
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def stored(net, tmp_path_factory):
    """Four files stored with `tensorage store` (the devnet's `client` wallet): {name: (path, id)}."""
    d = tmp_path_factory.mktemp("files")
    files = {"empty": b"", "one": b"\x42", "mib": os.urandom(1 << 20), "odd": os.urandom(2_500_001)}
    for name, data in files.items():
        (d / name).write_bytes(data)
    key = net.root / "keys" / "client.key"
    result = tensorage("store", *(str(d / n) for n in files), "--key_file", str(key), *net.flags)
    assert result.returncode == 0, result.stderr
    ids = cli_ids(result.stdout)
    return {name: (d / name, ids[str(d / name)]) for name in files}


@pytest.fixture(autouse=True)
def whole_net(net):
    """A test that kills miners or the validator leaves them up again, even when it fails."""
    yield
    net.restore()


def same(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


# --- storing and retrieving ---------------------------------------------------------------------


def test_files_come_back_identical(net, stored, tmp_path):
    assert len({oid for _, oid in stored.values()}) == 4
    path, oid = stored["odd"]
    result = tensorage("retrieve", oid, "-o", str(tmp_path / "odd"), "--key_file",
                       str(net.root / "keys" / "client.key"), *net.flags)
    assert result.returncode == 0, result.stderr
    assert same(path, tmp_path / "odd")
    with net.client() as client:
        for name in ("empty", "one", "mib"):
            path, oid = stored[name]
            client.retrieve(oid, tmp_path / name)
            assert same(path, tmp_path / name)


def test_each_segment_is_on_n_distinct_miners_that_hold_certified_bytes(net, stored):
    for name, (path, oid) in stored.items():
        rows = net.shards_of(oid)
        segments = {}
        for r in rows:
            segments.setdefault(r.segment, []).append(r)
        expected_segments = 3 if name == "odd" else 2 if name == "mib" else 1
        assert len(segments) == expected_segments, name
        for seg, shards in segments.items():
            assert sorted(r.idx for r in shards) == list(range(6)) and all(r.state == "healthy" for r in shards)
            assert len({r.miner for r in shards}) == 6, f"{name} segment {seg} shares a miner"
            for r in shards:
                f = net.shard_path(r)
                tree = tree_of_file(f)  # the file's Merkle id is its name; the sidecar is its tree
                assert tree.size == r.size and tree.id_hex == r.hash
                assert ShardTree.decode(f.with_name(r.hash + ".tree").read_bytes(), tree.id).levels == tree.levels
                assert r.cert_expiry > 0
    net.until_listed([oid for _, oid in stored.values()])
    listed = net.listed_by_validator()
    for _, oid in stored.values():
        for r in net.shards_of(oid):
            assert r.hash in listed[r.miner]  # every validator can now check it in the windows


def test_windows_check_shard_chunks_and_credit_them_at_every_validator(net, stored):
    line = net.window()
    assert "shard chunks right" in line, line
    for name in net.alive_miners():
        r = net.subnet.rounds(VALIDATOR, net.hotkey(name))[0]
        held = sum(row.size for oid in (o for _, o in stored.values()) for row in net.shards_of(oid, "healthy")
                   if row.miner == net.hotkey(name))
        if held:
            assert r.result == "pass" and r.chunks_asked > 0 and r.chunks_right == r.chunks_asked, (name, r.detail)
            assert r.client_bytes >= 2 * held  # CLIENT_WEIGHT x the certified bytes (plus any served)


def test_listing_shows_only_your_objects_and_rm_deletes_their_shards(net, stored, tmp_path):
    result = tensorage("ls", "--json", "--key_file", str(net.root / "keys" / "client.key"), *net.flags)
    assert result.returncode == 0, result.stderr
    listed = {o["id"]: o for o in json.loads(result.stdout)["objects"]}
    for name, (path, oid) in stored.items():
        assert listed[oid]["name"] == name and listed[oid]["plain_size"] == path.stat().st_size
        assert listed[oid]["healthy"] == 6 and listed[oid]["state"] == "stored"
    with net.client("guest") as guest:
        objects, _, _ = guest.list()
        assert not {o.id for o in objects} & set(listed)
    doomed = tmp_path / "doomed"
    doomed.write_bytes(os.urandom(300_000))
    with net.client() as client:
        oid = client.store(doomed).id
        rows = net.shards_of(oid)
        holders = {(net.name_of(r.miner), r.hash) for r in rows}
        assert all(h in net.shard_files(m) for m, h in holders)
        result = tensorage("rm", oid, *net.flags)
        assert result.returncode == 0, result.stderr
        with pytest.raises(GatewayError, match="no object"):
            client.retrieve(oid, tmp_path / "gone")
    net.run_job("gc")
    assert net.shards_of(oid) == []
    # the miners drop them from their next listing at once, and their bytes once no listing they still
    # answer for names them (two sync periods and two windows): checked with the other removals at the end
    REMOVED.update(holders)


def test_an_interrupted_store_leaves_no_orphan_shards_after_gc(net, tmp_path):
    from tensorage.client.pipeline import StoreSource
    from tensorage.net.client import SignedClient

    src = tmp_path / "src"
    src.write_bytes(os.urandom(3_000_000))  # three segments
    source = StoreSource(src, load_key(net.root / "keys" / "client.key").key, 4, 6)
    layout = source.layout
    gw = net.neuron(VALIDATOR)
    host, port = gw.endpoint

    async def interrupted() -> str:
        client = SignedClient(net.wallet("client"))
        try:
            declare = ObjectDeclare(size=layout.size, k=4, n=6, block=layout.block)
            reply = await client.request("POST", host, port, "/v1/objects", gw.hotkey,
                                         body=declare.model_dump_json().encode())
            declared = ObjectDeclared.model_validate_json(reply.body)

            async def body():
                sent = 0
                for batch in source.batches():
                    yield batch
                    sent += len(batch)
                    if sent >= 2 * layout.stripes_per_segment(int(SHARD_MB * 2**20)) * layout.stripe_wire:
                        break  # two segments out: wait until the first is placed, then die
                await asyncio.to_thread(wait_for, lambda: net.shards_of(declared.id), 60, "a placed segment", 0.2)
                raise ConnectionAbortedError("the client was killed")

            try:
                await client.put_stream(host, port, declared.upload_path, gw.hotkey, body(), declared.body_bytes)
            except Exception:
                pass
            return declared.id
        finally:
            await client.close()

    oid = asyncio.run(interrupted())
    with net.manifest() as m:
        wait_for(lambda: m.get(oid).state == "failed", 60, "the gateway to give up the upload")
    placed = net.shards_of(oid)
    assert placed, "no shard was placed before the interruption"
    net.run_job("gc")
    assert net.shards_of(oid) == []
    with net.manifest() as m:
        assert m.get(oid) is None
    REMOVED.update((net.name_of(r.miner), r.hash) for r in placed)  # their bytes go later: checked at the end


# --- refusals: a clear error, nothing stored or lost --------------------------------------------


def test_wrong_key_file_is_named_and_writes_nothing(net, stored, tmp_path):
    path, oid = stored["mib"]
    other = tmp_path / "other.key"
    result = tensorage("retrieve", oid, "-o", str(tmp_path / "out"), "--key_file", str(other), *net.flags)
    assert result.returncode != 0 and "no key file" in result.stderr
    with net.client(key_file=other) as wrong:  # made on first use: a different key
        with pytest.raises(WrongKey, match="another key file"):
            wrong.retrieve(oid, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [other]  # no output, no temp file
    with net.client() as client:
        client.retrieve(oid, tmp_path / "out")
    assert same(path, tmp_path / "out")


def test_unknown_and_other_clients_ids_are_refused(net, stored, tmp_path):
    _, oid = stored["one"]
    with net.client("guest") as guest:
        for target in (oid, secrets.token_hex(16)):
            with pytest.raises(GatewayError, match="no object") as exc:
                guest.retrieve(target, tmp_path / "x")
            assert exc.value.status == 404
            with pytest.raises(GatewayError, match="no object"):
                guest.remove(target)
    with pytest.raises(ClientError, match="not an object id"):
        with net.client() as client:
            client.retrieve("../../etc/passwd", tmp_path / "x")
    assert not list(tmp_path.iterdir())
    with net.client() as client:
        client.retrieve(oid, tmp_path / "one")
    assert same(stored["one"][0], tmp_path / "one")


def test_every_client_command_exits_2_for_an_unknown_object(net, stored, tmp_path):
    """Issue 15: a 404 exited 2 from `retrieve` but 1 from `rm`; one convention (README, --help)."""
    unknown = secrets.token_hex(16)
    key = ("--key_file", str(net.root / "keys" / "client.key"))
    got = tensorage("retrieve", unknown, "-o", str(tmp_path / "x"), *key, *net.flags)
    assert got.returncode == 2 and "no object" in got.stderr, got.stderr
    gone = tensorage("rm", unknown, *key, *net.flags)
    assert gone.returncode == 2 and "no object" in gone.stderr, gone.stderr
    missing = tensorage("store", str(tmp_path / "no-such-file"), *key, *net.flags)
    assert missing.returncode == 2, missing.stderr
    assert not (tmp_path / "x").exists()


def test_quota_counts_what_the_code_puts_on_miners_and_expansion_is_bounded(net, tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(150_000_000)  # sparse: 0.15 GB fits a 0.2 GB quota, but at 4 of 6 it puts 0.225 GB on miners
    with net.manifest() as m:
        before = m.Object.select().count()
    with net.client("guest") as guest:
        with pytest.raises(GatewayError, match="quota") as exc:
            guest.store(big)
        assert exc.value.status == 413 and "tensorage rm" in str(exc.value) and "k=4, n=6" in str(exc.value)
        with pytest.raises(GatewayError, match="at most 3x: use --k 3 or more for --n 8") as exc:
            guest.store(net.root / "subnet.json", k=1, n=8)
        assert exc.value.status == 400
    with net.manifest() as m:
        assert m.Object.select().count() == before


async def _raw(net: ObjectNet, method: str, node: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    host, port = net.neuron(node).endpoint
    async with aiohttp.ClientSession() as s:
        async with s.request(method, f"http://{host}:{port}{path}", data=body) as r:
            return r.status, await r.json()


def test_unsigned_and_unregistered_clients_are_refused(net, stored, tmp_path):
    _, oid = stored["one"]
    for method, path in (("GET", "/v1/objects"), ("POST", "/v1/objects"), ("GET", f"/v1/objects/{oid}"),
                         ("PUT", f"/v1/objects/{oid}?size=10"), ("DELETE", f"/v1/objects/{oid}")):
        status, body = asyncio.run(_raw(net, method, VALIDATOR, path, b"x" * 10 if method in ("POST", "PUT") else b""))
        assert status == 401 and "sign" in body["message"], (method, path, body)
    from tensorage.chain.wallets import create_wallet

    stranger = create_wallet(tmp_path / "w", "stranger")
    net.guests["stranger"] = stranger
    declare = ObjectDeclare(size=100, k=4, n=6, block=25).model_dump_json().encode()
    for method, path, body in (("GET", "/v1/objects", b""), ("POST", "/v1/objects", declare),
                               ("DELETE", f"/v1/objects/{oid}", b"")):
        reply = net.call(VALIDATOR, method, path, body, as_="stranger")
        assert reply.status == 403 and "--gateway.allow" in reply.json()["message"]
    with net.client() as client:
        assert oid in {o.id for o in client.list()[0]}


def test_shards_only_from_validators_with_a_certificate_and_under_their_id(net, stored):
    import bittensor as bt

    miner = "miner-0"
    before = net.shard_files(miner)
    data = os.urandom(5000)
    builder = MerkleBuilder()
    builder.update(data)
    good = builder.hexdigest()
    signer = bt.resolve_signer(net.wallet(VALIDATOR), role="hotkey")
    cert = issue(signer, hotkey_public_key(net.hotkey(miner)), bytes.fromhex(good), len(data), 10**9).entry().hex()

    async def put(as_: str, shard_id: str, body: bytes, declared: int = 0, certificate: str = cert):
        from tensorage.net.client import SignedClient

        neuron = net.neuron(miner)
        host, port = neuron.endpoint
        client = SignedClient(net.wallet(as_))
        try:
            return await client.put_stream(host, port, f"/v1/shards/{shard_id}?size={declared or len(body)}",
                                           neuron.hotkey, body, len(body),
                                           headers={CERTIFICATE_HEADER: certificate} if certificate else {})
        finally:
            await client.close()

    reply = asyncio.run(put("client", good, data))  # registered, but not a validator
    assert reply.status == 403 and "only validators" in reply.json()["message"]
    reply = asyncio.run(put(VALIDATOR, good, data, certificate=""))
    assert reply.status == 400 and "certificate" in reply.json()["message"]
    other = MerkleBuilder()
    other.update(b"other bytes")
    reply = asyncio.run(put(VALIDATOR, other.hexdigest(), data))  # the certificate is for another shard
    assert reply.status == 400 and "certificate is for shard" in reply.json()["message"]
    for bad in ("ABCDEF", "..%2F..%2Findex%2Fminer.sqlite", "0" * 63 + "g"):
        reply = asyncio.run(put(VALIDATOR, bad, data))
        # bad input, not an unknown shard: 400 with the JSON error that says what a shard id is
        assert (reply.status, reply.json()["error"]) == (400, "bad_shard_id"), (bad, reply.status, reply.body[:200])
    reply = asyncio.run(put(VALIDATOR, good, data[:-1], declared=len(data)))  # fewer bytes than signed
    assert reply.status == 400 and "signed size" in reply.json()["message"]
    assert net.shard_files(miner) == before  # nothing stored, no temp file left
    reply = net.call(miner, "GET", f"/v1/shards/{good}", as_=VALIDATOR)
    assert reply.status == 404


# --- failures: dead miners, damaged shards, a cheating miner --------------------------------------


def test_retrieval_survives_n_minus_k_dead_miners_and_repair_moves_their_shards(net, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(os.urandom(1_500_000))
    with net.client() as client:
        oid = client.store(src).id
        holders = sorted({net.name_of(r.miner) for r in net.shards_of(oid) if r.segment == 0} - {ADVERSARY})
        victims = holders[:2]
        for name in victims:
            net.kill(name)
        client.retrieve(oid, tmp_path / "with-two-dead")
        assert same(src, tmp_path / "with-two-dead")
        dead = {net.hotkey(v) for v in victims}
        net.window()  # they do not answer: silent, not lost (a miner may be down for a while)
        assert all(r.state == "healthy" for r in net.shards_of(oid) if r.miner in dead)
        wait_for(lambda: "shards repaired" in net.run_job("repair") and not any(
            r.miner in dead for r in net.shards_of(oid, "healthy")), 60,
            "repair to move the shards of miners silent for --gateway.replace_after_s", every=2)
        healthy = net.shards_of(oid, "healthy")
        for seg in {r.segment for r in healthy}:
            in_seg = [r for r in healthy if r.segment == seg]
            assert sorted(r.idx for r in in_seg) == list(range(6)) and len({r.miner for r in in_seg}) == 6
        client.retrieve(oid, tmp_path / "after-repair")
        assert same(src, tmp_path / "after-repair")
    stale = {(v, r.hash) for v in victims for r in net.shards_of(oid, "doomed") if r.miner == net.hotkey(v)}
    assert stale and all(h in net.shard_files(v) for v, h in stale)
    for name in victims:  # they come back: what was moved away is deleted from them
        net.revive(name)
    net.run_job("gc")
    with net.manifest() as m:
        assert not m.Shard.select().where(m.Shard.state == "doomed").exists()  # the miners confirmed the deletes
    REMOVED.update(stale)


def _damage(path: Path, how: str) -> None:
    if how == "drop":
        path.unlink()
    elif how == "truncate":
        os.truncate(path, path.stat().st_size // 2)
    else:  # flip one bit in the middle
        with open(path, "r+b") as f:
            f.seek(path.stat().st_size // 2)
            byte = f.read(1)[0]
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte ^ 0x10]))


def test_damaged_shards_are_suspect_then_lost_on_signed_checks_and_repaired(net, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(os.urandom(1_500_000))  # two segments
    with net.client() as client:
        oid = client.store(src).id
        rows = net.shards_of(oid, "healthy")
        picked: dict[str, object] = {}
        for how, seg in (("drop", 0), ("flip", 0), ("truncate", 1), ("flip too", 1)):
            picked[how] = next(r for r in rows if r.segment == seg and net.name_of(r.miner) != ADVERSARY
                               and r.id not in {p.id for p in picked.values()})
        for how, row in picked.items():
            _damage(net.shard_path(row), how.split()[0])
        # found by the windows' chunk samples and by retrievals (which read k + 1 and more when one is
        # bad); each one found is suspect, never lost on one failure
        found: set[int] = set()

        def all_found() -> bool:
            client.retrieve(oid, tmp_path / "still", force=True)
            assert same(src, tmp_path / "still")
            net.window()
            with net.manifest() as m:
                for r in picked.values():
                    if r.id not in found and m.shard(r.id).state == "suspect":
                        found.add(r.id)
                        assert m.shard(r.id).failures == 0 or "re-check" in m.shard(r.id).reason
            return found == {r.id for r in picked.values()}

        wait_for(all_found, 120, "windows and retrievals to find every damaged shard", every=0.1)

        def settled():
            net.run_job("repair")  # re-checks the suspects (signed replies only), repairs the lost
            healthy = sorted((r.segment, r.idx) for r in net.shards_of(oid, "healthy"))
            return healthy == [(s, i) for s in range(2) for i in range(6)] and \
                not {p.id for p in picked.values()} & {r.id for r in net.shards_of(oid, "healthy")}

        wait_for(settled, 90, "three signed re-checks each, then repair", every=1)
        with net.manifest() as m:
            for how, row in picked.items():
                now = m.shard(row.id)
                assert now is None or now.state == "doomed", (how, now.state)
        client.retrieve(oid, tmp_path / "repaired")
        assert same(src, tmp_path / "repaired")
    net.run_job("gc")  # the replaced shards go (their bytes once the miners' listings moved on)


def test_with_a_shard_on_every_miner_repair_gives_a_lost_one_back_to_its_miner(net, tmp_path):
    """No miner is free of the segment, so the miners whose shards were lost are the only places
    left: repair puts new shards there rather than leaving the segment short for good."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(200_000))
    alive = net.alive_miners()
    with net.client() as client:
        oid = client.store(src, n=len(alive), k=len(alive) - 2).id
        dropped = [r for r in net.shards_of(oid, "healthy") if net.name_of(r.miner) != ADVERSARY][:2]
        for row in dropped:
            _damage(net.shard_path(row), "drop")
        def found() -> bool:  # retrievals and windows find them gone: suspect
            client.retrieve(oid, tmp_path / "first", force=True)
            net.window()
            with net.manifest() as m:
                return all(m.shard(r.id).state != "healthy" for r in dropped)

        wait_for(found, 120, "the dropped shards to be found", every=0.1)

        def back():
            net.run_job("repair")
            healthy = net.shards_of(oid, "healthy")
            return sorted(r.idx for r in healthy) == list(range(len(alive))) and \
                {r.miner for r in dropped} <= {r.miner for r in healthy} and \
                not {r.id for r in dropped} & {r.id for r in healthy}

        wait_for(back, 90, "the lost shards to be rebuilt on their own miners", every=1)
        client.retrieve(oid, tmp_path / "back")
        assert same(src, tmp_path / "back")
    net.run_job("gc")


def test_corrupt_shards_are_never_served_as_good(net, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(os.urandom(300_000))  # one segment
    with net.client() as client:
        oid = client.store(src).id
        rows = net.shards_of(oid, "healthy")
        for row in rows[:2]:  # n - k of them: the object is still whole
            _damage(net.shard_path(row), "flip")
        client.retrieve(oid, tmp_path / "out")
        assert same(src, tmp_path / "out")
        _damage(net.shard_path(rows[2]), "flip")
        with pytest.raises(GatewayError, match="came back intact"):  # three of six intact: fewer than k
            client.retrieve(oid, tmp_path / "never")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no output, no temp file
        with net.manifest() as m:
            suspect = [m.shard(r.id) for r in rows if m.shard(r.id).state == "suspect"]
        assert suspect and all(r.reason.startswith("corrupt on download") for r in suspect)
        assert {r.id for r in suspect} <= {r.id for r in rows[:3]}  # only the damaged ones


def test_a_miner_that_is_its_own_client_cannot_regenerate_its_shards(net, tmp_path):
    seed, size, salt = b"adversary seed", 1_200_000, secrets.token_bytes(16)
    src = tmp_path / "regenerable"
    src.write_bytes(seeded_bytes(seed, size))
    adv = net.hotkey(ADVERSARY)
    key_file = net.root / "keys" / "adv-client.key"
    with net.client("adv-client", key_file=key_file) as client:
        alive = net.alive_miners()
        oid = client.store(src, n=len(alive), k=len(alive) - 2, salt=salt).id  # every miner, the adversary too
        mine = [r for r in net.shards_of(oid, "healthy") if r.miner == adv]
        assert mine, "the adversary holds none of its own object's shards"
        key = load_key(key_file).key
        with net.manifest() as m:
            obj = m.get(oid)
        secret = load_or_create_secret(net.subnet.db_root(VALIDATOR) / "index" / "gateway.secret")
        regen = {}
        for r in mine:
            rebuilt = regenerate_shard(seed, size, key, salt, obj.k, obj.n, obj.per_segment, r.segment, r.idx)
            stored_bytes = net.shard_path(r).read_bytes()
            assert rebuilt == keystream(secret, r.wrap)(stored_bytes)  # it regenerates the unwrapped shard exactly
            assert rebuilt != stored_bytes                             # but holds, and is checked on, the wrapped one
            regen[r.hash] = {"seed": seed.hex(), "size": size, "key": key.hex(), "salt": salt.hex(), "k": obj.k,
                             "n": obj.n, "per_segment": obj.per_segment, "segment": r.segment, "idx": r.idx}
        net.until_listed(oid)  # honest so far: its shards are listed and pass, and count for it
        honest = net.subnet.rounds(VALIDATOR, adv)[0]
        assert honest.result == "pass" and honest.client_bytes >= 2 * sum(r.size for r in mine), honest.detail
        (net.subnet.db_root(ADVERSARY) / REGEN_FILE).write_text(json.dumps(regen))
        for r in mine:
            net.shard_path(r).unlink()  # it keeps nothing but the trees, and keeps listing the certificates

        def caught():
            net.window()
            r = net.subnet.rounds(VALIDATOR, adv)[0]
            return r if r.result == "fail" else None

        window = wait_for(caught, 90, "a window that samples its regenerated chunks")
        assert window.credit_bytes == 0 and "shard chunks wrong or missing" in window.detail  # proves nothing at all
        with net.manifest() as m:
            assert any(m.shard(r.id).state == "suspect" for r in mine)

        def lost():
            net.run_job("repair")
            with net.manifest() as m:
                return all(m.shard(r.id).state in ("lost", "doomed") for r in mine
                           if m.shard(r.id) is not None and m.shard(r.id).state != "healthy") and \
                    any(m.shard(r.id).state in ("lost", "doomed") for r in mine)

        wait_for(lost, 90, "signed re-checks to find its regenerated chunks wrong")
        client.retrieve(oid, tmp_path / "back")  # k of the others suffice
        assert same(src, tmp_path / "back")
    (net.subnet.db_root(ADVERSARY) / REGEN_FILE).unlink()
    net.run_job("repair")
    net.run_job("gc")


# --- restarts and interruptions -------------------------------------------------------------------


def test_validator_restart_keeps_manifests(net, stored, tmp_path):
    with net.manifest() as m:
        shards = sorted((r.object_id, r.segment, r.idx, r.hash, r.miner, r.state) for r in m.Shard.select())
        objects = sorted((o.id, o.state, o.meta) for o in m.Object.select())
    net.stop_validator()
    net.start_validator()
    with net.manifest() as m:
        assert sorted((r.object_id, r.segment, r.idx, r.hash, r.miner, r.state) for r in m.Shard.select()) == shards
        assert sorted((o.id, o.state, o.meta) for o in m.Object.select()) == objects
    path, oid = stored["odd"]
    with net.client() as client:
        assert {oid for _, oid in stored.values()} <= {o.id for o in client.list()[0]}
        client.retrieve(oid, tmp_path / "odd")
    assert same(path, tmp_path / "odd")


def test_no_shard_bytes_outlive_their_place_in_the_manifest(net):
    """Every shard the gateway deleted (removed objects, an interrupted store, shards replaced by
    repair) leaves its miner's listing at once, and its bytes once no listing the miner still answers
    for names it (two sync periods and two windows on the devnet: the early removals are gone by now,
    the latest ones only out of the listings)."""
    from tensorage.storage.shards import ShardIndex

    net.run_job("gc")
    wait_for(lambda: not [(m, h) for m, h in REMOVED if m in net.alive_miners() and h in net.shard_files(m)], 60,
             "the bytes of the shards removed early to leave the miners", every=2)
    gateway = net.hotkey(VALIDATOR)
    for name, extra in net.orphans().items():
        index = ShardIndex(net.subnet.db_root(name) / "index" / f"validator-{gateway}.sqlite")
        try:
            assert not [h for h in extra if index.has(h)], name  # out of the listing, bytes about to go
        finally:
            index.close()
