"""kill -9 of miners, the validator and its gateway at seeded random points of their work, 20+
times each, on one small real subnet (six miners, one validator gateway, client objects).

After every restart: each miner's shards match their Merkle ids and its indexes, with no temp file
or unindexed shard left from before the kill; the validator's databases pass integrity checks and
keep their scores and last weights; the gateway's spool from before the kill is gone; every object
the client was told is stored comes back byte for byte, and no shard of one was given up as lost."""

from __future__ import annotations

import contextlib
import time

import pytest

from ..objectnet import VALIDATOR
from ..subnet import wait_for
from .procs import kill9
from .world import MINERS, Background, FaultNet, payload

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1200)]

KILLS = 20


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import random

    from .conftest import SEED

    world = FaultNet.start(tmp_path_factory.mktemp("node-kills"))
    try:
        rng = random.Random(f"{SEED}/world")
        ids = [world.store(payload(rng, 200_000, 700_000), f"first-{i}") for i in range(2)]
        world.net.until_listed(ids)
        yield world
    finally:
        world.close()


def kill(world: FaultNet, name: str) -> None:
    kill9(world.net.subnet.procs.pop(name))


def revive_miners(world: FaultNet, names: list[str]) -> None:
    net = world.net
    before = {n: net.endpoint_of(n) for n in names}
    for n in names:
        net._start_miner(n)
    wait_for(lambda: all(net.endpoint_of(n) != before[n] for n in names), 120, f"{names} to serve again")
    net.run_job("sync")


def start_job(world: FaultNet, job: str) -> None:
    reply = world.net.call(VALIDATOR, "POST", f"/v1/jobs/{job}/run")
    assert reply.status == 200, reply.error_message


def assert_nothing_lost(world: FaultNet, ledger, fault) -> None:
    found = world.objects_lost()
    if found.lost_bytes:
        ledger.lost(fault, found.lost_bytes, "; ".join(found.lost))
    gone = world.gone_shards()
    assert gone == [], f"shards given up as lost after a kill: {gone}"


def test_kill_9_of_miners_mid_put_and_mid_window_loses_nothing(world, rng, ledger, request):
    """Two miners at a time (any four of six rebuild an object), so 10 rounds make 20 kills."""
    for round_no in range(KILLS // 2):
        victims = rng.sample(MINERS, 2)
        point = rng.choice(["mid-put", "mid-window", "mid-put"])
        job = None
        if point == "mid-put":
            job = world.store_in_background(payload(rng, 300_000, 900_000), f"put-{round_no}")
            delay = rng.uniform(0.0, 1.5)
        else:
            delay = rng.uniform(0.0, 3.0)  # a devnet window is 3 blocks of 1 s
        time.sleep(delay)  # the random point itself, not a wait for state
        with contextlib.ExitStack() as stack:
            faults = [stack.enter_context(ledger.inject("kill9", "miner", f"{point} +{delay:.2f}s", request.node.nodeid))
                      for _ in victims]
            for name in victims:
                kill(world, name)
            half_made = {n: set(world.miner_findings(n).leftovers) for n in victims}
            if job is not None:
                job.join()
            revive_miners(world, victims)
            for name, fault in zip(victims, faults):
                found = world.miner_findings(name)
                if found.lost_bytes:
                    ledger.lost(fault, found.lost_bytes, f"{name}: " + "; ".join(found.lost))
                stale = half_made[name] & set(found.leftovers)
                assert not stale, f"{name} kept half-made files across its restart: {sorted(stale)}"
            assert_nothing_lost(world, ledger, faults[0])


def restart_validator(world: FaultNet) -> None:
    world.net.start_validator()


def test_kill_9_of_the_validator_mid_window_mid_weights_mid_sync_loses_nothing(world, rng, ledger, request):
    for _ in range(KILLS):
        point = rng.choice(["mid-window", "mid-weights", "mid-sync", "mid-settle"])
        job = {"mid-weights": "set_weights", "mid-sync": "sync", "mid-settle": "settle_windows"}.get(point)
        before = world.validator_state()
        if job:
            start_job(world, job)
            delay = rng.uniform(0.0, 0.5)
        else:
            delay = rng.uniform(0.0, 3.0)
        time.sleep(delay)
        with ledger.inject("kill9", "validator", f"{point} +{delay:.2f}s", request.node.nodeid) as fault:
            kill(world, VALIDATOR)
            restart_validator(world)
            after = world.validator_state()
            missing = set(before["scores"]) - set(after["scores"])
            assert not missing, f"scores of {len(missing)} miners lost by a kill"
            if before["weights"]:
                assert after["weights"] and after["weights"][0][0] >= before["weights"][0][0], \
                    "the last weights set were lost by a kill"
            assert_nothing_lost(world, ledger, fault)


def test_kill_9_of_the_gateway_mid_put_mid_certify_mid_repair_mid_get_loses_nothing(world, rng, ledger, request):
    for n in range(KILLS):
        point = rng.choice(["mid-put", "mid-certify", "mid-repair", "mid-get", "mid-put"])
        op = None
        if point == "mid-put":
            op = world.store_in_background(payload(rng, 300_000, 1_500_000), f"gw-put-{n}")
            delay = rng.uniform(0.0, 2.0)
        elif point == "mid-get":
            kept = rng.choice(world.kept)
            op = Background(lambda: world.net.client().__enter__().retrieve(kept.object_id, world.tmp / "mid-get"))
            delay = rng.uniform(0.0, 0.5)
        else:
            start_job(world, point.removeprefix("mid-"))
            delay = rng.uniform(0.0, 0.5)
        time.sleep(delay)
        with ledger.inject("kill9", "gateway", f"{point} +{delay:.2f}s", request.node.nodeid) as fault:
            spooled = world.spool_files()
            kill(world, VALIDATOR)
            if op is not None:
                op.join()
            restart_validator(world)
            stale = spooled & world.spool_files()
            assert not stale, f"spool files outlived the gateway that made them: {sorted(stale)}"
            assert_nothing_lost(world, ledger, fault)
    # what interrupted PUTs placed is deleted from the miners: nothing half made stays anywhere
    def clean() -> bool:
        world.net.run_job("gc")
        return not world.net.orphans()

    wait_for(clean, 120, "the shards of interrupted PUTs to be removed from the miners", every=1)
