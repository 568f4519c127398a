"""Nothing is lost because of our own failure, on a real devnet: six miner processes (honest, but
able to answer the way a version rollout or a drifted clock would), one validator gateway checking
every window, real client objects.

* An outage over PHASE windows, then two miners paused over 2 * PHASE more and a third killed with
  kill -9, and meanwhile the others answering 426 (another protocol) and 401 stale (clock skew) for
  PHASE windows each: no shard is lost, and every object is healthy again once they are back. PHASE
  is one window more than the failures in a row that lose a shard (LOST_AFTER): anything the
  gateway counted against these miners would have lost a shard.
* store, rm, store of a file that fills the miners succeeds without a restart.
* kill -9 of the gateway right after it said "stored" loses no object.
* backup, wipe, restore brings every object back.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tensorage.gateway.repair import LOST_AFTER

from .conftest import tensorage
from .objectnet import VALIDATOR, ObjectNet
from .shard_adversaries import MOOD_FILE
from .subnet import wait_for

pytestmark = pytest.mark.timeout(600)

MINERS = [f"miner-{i}" for i in range(6)]
VALIDATOR_ARGS = ("--seconds_per_weights", "600", "--gateway.shard_mb", "1", "--gateway.quota_gb", "1")
PHASE = LOST_AFTER + 1  # windows of each kind of trouble


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    net = ObjectNet(tmp_path_factory.mktemp("durability") / "devnet", len(MINERS), 0.03, VALIDATOR_ARGS,
                    strategies={m: "moody" for m in MINERS})
    try:
        net.start()
        yield net
    finally:
        for name in MINERS:
            proc = net.subnet.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        net.close()


@pytest.fixture(autouse=True)
def whole_net(net):
    """Each test gets every node up, unpaused and in its normal mood, whatever ran (or failed)
    before it: results never depend on the order the tests run in."""
    yield
    for name in MINERS:
        (net.subnet.db_root(name) / MOOD_FILE).unlink(missing_ok=True)
    net.restore()


def store(net: ObjectNet, tmp_path, size: int, name: str = "src"):
    src = tmp_path / name
    src.write_bytes(os.urandom(size))
    with net.client() as client:
        return src, client.store(src).id


def gone_shards(net: ObjectNet) -> list:
    """Shards the manifest gave up (lost) or is deleting (doomed): none may be, here."""
    with net.manifest() as m:
        return [(r.object_id[:8], r.idx, r.state, r.reason) for r in m.Shard.select()
                if r.state in ("lost", "doomed")]


def windows(net: ObjectNet, count: int) -> None:
    first = net.subnet.rounds(VALIDATOR, net.hotkey(MINERS[0]))[0].window
    wait_for(lambda: net.subnet.rounds(VALIDATOR, net.hotkey(MINERS[0]))[0].window >= first + count,
             count * 6 + 30, f"{count} windows", every=0.5)


@pytest.mark.faults  # a fault test: run with the fault suite (`pytest -m faults`), not in the default ten minutes
def test_outage_pause_kill_rollout_and_skew_lose_no_shard(net, tmp_path):
    src, oid = store(net, tmp_path, 3_000_000)  # three segments on all six miners
    net.until_listed(oid)
    procs = net.subnet.procs
    holders = MINERS
    # the validator's network is down for PHASE windows: every miner times out
    for name in holders:
        procs[name].send_signal(signal.SIGSTOP)
    windows(net, PHASE)
    assert gone_shards(net) == []
    # two stay paused, one is killed, the other three answer as a version rollout would, then a clock skew
    for name in holders[2:]:
        procs[name].send_signal(signal.SIGCONT)
    net.kill(holders[2])
    for mood in ("426", "stale"):
        for name in holders[3:]:
            (net.subnet.db_root(name) / MOOD_FILE).write_text(mood)
        windows(net, PHASE)
        rounds = net.subnet.rounds(VALIDATOR, net.hotkey(holders[3]))[:3]
        assert any(mood.replace("stale", "401") in r.detail for r in rounds), [r.detail for r in rounds]
        assert gone_shards(net) == []
    for name in holders[3:]:
        (net.subnet.db_root(name) / MOOD_FILE).unlink()
    for name in holders[:2]:
        procs[name].send_signal(signal.SIGCONT)
    net.revive(holders[2])
    # back: windows pass again, nothing was given up, and every segment has its six healthy shards
    wait_for(lambda: all(net.subnet.rounds(VALIDATOR, net.hotkey(m))[0].result == "pass" for m in MINERS), 90,
             "every miner to pass a window again", every=1)
    assert gone_shards(net) == []
    with net.client() as client:
        listed = {o.id: o for o in client.list()[0]}
        assert listed[oid].healthy == 6 and listed[oid].state == "stored"
        client.retrieve(oid, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == src.read_bytes()


def test_store_rm_store_of_a_file_that_fills_the_miners_needs_no_restart(net, tmp_path):
    from tensorage.net.objects import ShardSummary

    room = min(ShardSummary.model_validate_json(net.call(m, "GET", "/v1/shards", as_=VALIDATOR).body).free_bytes
               for m in MINERS)
    size = int(room * 4 * 0.8)  # each of the six shards takes 80 % of the tightest miner's room
    src, first = store(net, tmp_path, size, "big")
    result = tensorage("rm", first, "--key_file", str(net.root / "keys" / "client.key"), *net.flags)
    assert result.returncode == 0, result.stderr
    net.run_job("gc")
    _, second = store(net, tmp_path, size, "big-again")  # right away: the removed shards' room is free already
    with net.client() as client:
        client.retrieve(second, tmp_path / "again")
    result = tensorage("rm", second, "--key_file", str(net.root / "keys" / "client.key"), *net.flags)
    assert result.returncode == 0, result.stderr
    net.run_job("gc")


def test_kill_9_of_the_gateway_right_after_stored_loses_no_object(net, tmp_path):
    src, oid = store(net, tmp_path, 1_500_000)
    net.subnet.kill(VALIDATOR)  # SIGKILL: the manifest committed with synchronous=FULL before "stored" was sent
    net.start_validator()
    with net.client() as client:
        assert oid in {o.id for o in client.list()[0]}
        client.retrieve(oid, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == src.read_bytes()
    assert all(r.state == "healthy" for r in net.shards_of(oid))


def test_backup_wipe_restore_brings_every_object_back(net, tmp_path):
    _, own = store(net, tmp_path, 600_000)  # at least one object, whatever ran before
    with net.client() as client:
        objects = {o.id for o in client.list()[0]}
    assert own in objects
    root = net.subnet.db_root(VALIDATOR)
    dest = tmp_path / "gateway-backup.tar"
    result = tensorage("gateway", "backup", str(dest), "--db_root_path", str(root), *net.flags)  # while it runs
    assert result.returncode == 0, result.stderr
    assert f"backed up {len(objects)} objects" in result.stdout and dest.stat().st_mode & 0o777 == 0o600
    refused = tensorage("gateway", "restore", str(dest), "--db_root_path", str(root), *net.flags)
    assert refused.returncode != 0 and "validator" in refused.stderr  # not under a running validator
    net.stop_validator()
    for name in ("gateway.sqlite", "gateway.sqlite-wal", "gateway.sqlite-shm", "gateway.secret"):
        (root / "index" / name).unlink(missing_ok=True)  # the disk that held them is gone
    result = tensorage("gateway", "restore", str(dest), "--db_root_path", str(root), *net.flags)
    assert result.returncode == 0, result.stderr
    net.start_validator()
    with net.client() as client:
        assert {o.id for o in client.list()[0]} == objects
        for oid in objects:
            client.retrieve(oid, tmp_path / oid)


@pytest.mark.slow  # a one-time migration, 23 s: run with -m slow
def test_a_protocol_2_gateway_and_its_miners_upgrade_without_losing_an_object(net, tmp_path):
    """Protocol 2 named shards by sha256 and kept no trees nor certificates. Here an object's manifest
    rows and its miners' files are put back as protocol 2 left them; after an upgrade (a restart) the
    miners rename and hash them once, the gateway finds each by its old name, checks both names and
    certifies it: the object comes back and its shards count in the windows again."""
    import hashlib
    import sqlite3

    src, oid = store(net, tmp_path, 1_000_000, "old")
    rows = net.shards_of(oid)
    net.stop_validator()
    for name in MINERS:
        net.subnet.kill(name, signal.SIGTERM)
    gateway_hotkey = net.hotkey(VALIDATOR)
    by_miner: dict[str, list[tuple[str, int]]] = {}
    for r in rows:  # the miners: files under their sha256, no tree, an index of protocol 2
        shards = net.subnet.db_root(net.name_of(r.miner)) / "shards"
        sha = hashlib.sha256((shards / r.hash).read_bytes()).hexdigest()
        (shards / r.hash).rename(shards / sha)
        (shards / f"{r.hash}.tree").unlink()
        by_miner.setdefault(r.miner, []).append((sha, r.size))
        r.sha = sha
    for miner, shards in by_miner.items():
        index = net.subnet.db_root(net.name_of(miner)) / "index" / f"validator-{gateway_hotkey}.sqlite"
        con = sqlite3.connect(index)
        con.execute("DROP TABLE shards")
        con.execute("DROP TABLE IF EXISTS legacy")
        con.execute('CREATE TABLE "shards" (id VARCHAR(64) PRIMARY KEY, size INTEGER NOT NULL, stored_at REAL NOT NULL)')
        con.executemany("INSERT INTO shards VALUES (?, ?, ?)", [(sha, size, time.time()) for sha, size in shards])
        con.execute("PRAGMA user_version = 0")
        con.commit()
        con.close()
    manifest = sqlite3.connect(net.subnet.db_root(VALIDATOR) / "index" / "gateway.sqlite")  # the gateway's rows
    manifest.execute("DELETE FROM shards WHERE object_id = ?", (oid,))
    manifest.execute("ALTER TABLE shards RENAME TO shards_v3")
    manifest.execute('CREATE TABLE "shards" (id INTEGER PRIMARY KEY, object_id VARCHAR(32), segment INTEGER, '
                     'idx INTEGER, hash VARCHAR(64), wrap VARCHAR(32), miner VARCHAR(255), size INTEGER, state '
                     'VARCHAR(8), misses INTEGER, passes INTEGER, last_audit_ok INTEGER, audited_at REAL, placed_at '
                     'REAL, reason TEXT, attempts INTEGER)')
    manifest.executemany("INSERT INTO shards (object_id, segment, idx, hash, wrap, miner, size, state, misses, passes, "
                         "last_audit_ok, placed_at, reason, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 'healthy', 0, 1, 1, "
                         "?, '', 0)", [(oid, r.segment, r.idx, r.sha, r.wrap, r.miner, r.size, time.time())
                                       for r in rows])
    manifest.execute("INSERT INTO shards (object_id, segment, idx, hash, wrap, miner, size, state, misses, passes, "
                     "last_audit_ok, placed_at, reason, attempts) SELECT object_id, segment, idx, hash, wrap, miner, "
                     "size, state, 0, 0, 0, placed_at, reason, attempts FROM shards_v3")
    manifest.execute("DROP TABLE shards_v3")
    manifest.execute("PRAGMA user_version = 0")
    manifest.commit()
    manifest.close()
    before = {name: net.endpoint_of(name) for name in MINERS}
    for name in MINERS:  # the upgrade: every node restarts on protocol 3
        net._start_miner(name)
    wait_for(lambda: all(net.endpoint_of(n) != before[n] for n in MINERS), 120, "the miners to serve again")
    net.start_validator()

    def migrated() -> bool:  # the repair job migrates what it reaches, every run
        net.run_job("sync")
        net.run_job("repair")
        with net.manifest() as m:
            return not m.legacy()

    wait_for(migrated, 60, "every protocol-2 shard to be migrated", every=1)
    net.run_job("certify")
    assert sorted((r.segment, r.idx, r.state) for r in net.shards_of(oid)) == \
        sorted((r.segment, r.idx, "healthy") for r in rows)
    with net.client() as client:
        client.retrieve(oid, tmp_path / "old-back")
    assert (tmp_path / "old-back").read_bytes() == src.read_bytes()
    net.until_listed(oid)  # certified, listed, and proven in the windows again
