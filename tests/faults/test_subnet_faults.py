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


SAMPLE = 3  # objects retrieved after each fault besides the newest; all of them at each test's end


def assert_nothing_lost(world: FaultNet, ledger, fault, rng=None) -> None:
    found = world.objects_lost(rng, SAMPLE if rng is not None else 0)
    if found.lost_bytes:
        ledger.lost(fault, found.lost_bytes, "; ".join(found.lost))
    gone = world.gone_shards()
    assert gone == [], f"shards given up as lost after a fault: {gone}"
    disagree = world.manifest_vs_miners()
    assert not disagree, disagree


def test_kill_9_of_miners_mid_put_and_mid_window_loses_nothing(world, rng, ledger, request):
    """Two miners at a time (any four of six rebuild an object), so 10 rounds make 20 kills."""
    for round_no in range(KILLS // 2):
        victims = rng.sample(MINERS, 2)
        point = rng.choice(["mid-put", "mid-window", "mid-put"])
        job = None
        if point == "mid-put":
            job = world.store_in_background(payload(rng, 200_000, 700_000), f"put-{round_no}")
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
            assert_nothing_lost(world, ledger, faults[0], rng)
    assert (final := world.objects_lost()).lost_bytes == 0, final.lost  # every object, byte for byte


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
            assert_nothing_lost(world, ledger, fault, rng)
    assert (final := world.objects_lost()).lost_bytes == 0, final.lost  # every object, byte for byte


def test_kill_9_of_the_gateway_mid_put_mid_certify_mid_repair_mid_get_loses_nothing(world, rng, ledger, request):
    for n in range(KILLS):
        point = rng.choice(["mid-put", "mid-certify", "mid-repair", "mid-get", "mid-put"])
        op = None
        if point == "mid-put":
            op = world.store_in_background(payload(rng, 200_000, 900_000), f"gw-put-{n}")
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
            assert_nothing_lost(world, ledger, fault, rng)
    # what interrupted PUTs placed is deleted from the miners: nothing half made stays anywhere
    def clean() -> bool:
        world.net.run_job("gc")
        return not world.net.orphans()

    wait_for(clean, 120, "the shards of interrupted PUTs to be removed from the miners", every=1)
    assert (final := world.objects_lost()).lost_bytes == 0, final.lost  # every object, byte for byte


# --- a clock beyond the signature window ---------------------------------------------------------

SKEW_S = 120.0  # beyond every freshness bound (requests 10 s, signed replies 30 s)


def restart_skewable(world: FaultNet, name: str, clock: "Path", monkeypatch) -> None:
    """Restart a node (cleanly) under a wall clock the test can move."""
    import signal

    net = world.net
    clock.write_text("0")
    monkeypatch.setenv("TENSORAGE_TEST_CLOCK_FILE", str(clock))
    before = net.endpoint_of(name)
    net.subnet.kill(name, signal.SIGTERM)
    if name == VALIDATOR:
        net.subnet.start(name, ["tests.faults.skewed_clock", "tensorage", "validator"], *net.validator_args)
        wait_for(lambda: net.endpoint_of(name) not in (None, before) and net.gateway_up(), 120, "the gateway")
        wait_for(net.jobs_ready, 120, "the validator's jobs")
    else:
        net.subnet.start(name, ["tests.faults.skewed_clock", "tensorage", "miner"], "--size_in_gb", str(net.size),
                         "--disable_verify", "--workers", "1")
        wait_for(lambda: net.endpoint_of(name) != before, 120, f"{name} to serve again")
        net.run_job("sync")


def latest_round(world: FaultNet, miner: str):
    rounds = world.net.subnet.rounds(VALIDATOR, world.net.hotkey(miner))
    return rounds[0] if rounds else None


def test_a_miner_whose_clock_is_off_is_refused_clearly_recovers_and_loses_nothing(world, rng, ledger, request,
                                                                               tmp_path, monkeypatch):
    name = rng.choice(MINERS)
    clock = tmp_path / "clock"
    restart_skewable(world, name, clock, monkeypatch)
    with ledger.inject("clock_skew", "miner", f"+{SKEW_S:g}s", request.node.nodeid) as fault:
        last = latest_round(world, name)
        clock.write_text(str(SKEW_S))
        try:
            refused = wait_for(lambda: (r := latest_round(world, name)) is not None and r.window > last.window + 1
                               and "401" in r.detail and r, 90, f"the validator's windows to {name} to be refused")
            assert "clock" in refused.detail, refused.detail  # says what to fix
        finally:
            clock.write_text("0")
        wait_for(lambda: (r := latest_round(world, name)) is not None and r.window > refused.window
                 and r.result == "pass", 90, f"{name} to pass a window again once its clock is right")
        found = world.miner_findings(name)
        if found.lost_bytes:
            ledger.lost(fault, found.lost_bytes, "; ".join(found.lost))
        assert_nothing_lost(world, ledger, fault)


def test_a_gateway_whose_clock_is_off_refuses_clearly_recovers_and_loses_nothing(world, rng, ledger, request,
                                                                              tmp_path, monkeypatch):
    clock = tmp_path / "clock"
    restart_skewable(world, VALIDATOR, clock, monkeypatch)
    with ledger.inject("clock_skew", "gateway", f"-{SKEW_S:g}s", request.node.nodeid) as fault:
        last = latest_round(world, MINERS[0]).window
        clock.write_text(str(-SKEW_S))
        try:
            time.sleep(0.5)  # the node rereads its clock file every 0.2 s
            with pytest.raises(Exception) as refused:
                world.store(payload(rng, 100_000, 200_000), "skewed")
            assert "clock" in str(refused.value), refused.value  # the client is told what is wrong
            # its windows to the miners are refused as well (each miner checks the request's age; the
            # requests are signed in the node's signing child, which reads the same skewed clock)
            wait_for(lambda: (r := latest_round(world, MINERS[0])) is not None and r.window > last + 1
                     and "401" in r.detail, 90, "a window refused for the gateway's clock")
        finally:
            clock.write_text("0")  # a failure here must not leave the module's validator skewed
        wait_for(lambda: all((r := latest_round(world, m)) is not None and r.result == "pass" and r.window > last + 2
                             for m in MINERS), 120, "every miner to pass a window once the clock is right")
        world.store(payload(rng, 100_000, 200_000), "after-skew")
        assert_nothing_lost(world, ledger, fault)


def test_a_client_whose_clock_is_off_is_refused_clearly_and_stores_once_fixed(world, rng, ledger, request,
                                                                           monkeypatch):
    import bittensor.http_auth

    real = time.time_ns
    with ledger.inject("clock_skew", "client", f"+{SKEW_S:g}s", request.node.nodeid) as fault:
        monkeypatch.setattr(bittensor.http_auth.time, "time_ns", lambda: real() + int(SKEW_S * 1e9))
        with pytest.raises(Exception) as refused:
            world.store(payload(rng, 100_000, 200_000), "client-skewed")
        assert "clock" in str(refused.value), refused.value
        monkeypatch.undo()
        world.store(payload(rng, 100_000, 200_000), "client-fixed")
        assert_nothing_lost(world, ledger, fault)


# --- a chain that errors or stalls ---------------------------------------------------------------

@pytest.mark.parametrize("mode", ["error", "stall"])
def test_a_chain_that_errors_or_stalls_loses_nothing_and_the_validator_recovers(world, rng, ledger, request, mode):
    from ..conftest import tensorage

    net = world.net
    seconds = rng.uniform(6, 12)
    with ledger.inject(f"chain_{mode}", "chain", f"{seconds:.1f}s", request.node.nodeid) as fault:
        last = latest_round(world, MINERS[0]).window
        on = tensorage("devnet", "fault", mode, "--seconds", f"{seconds:.1f}", "--stall-seconds", "2",
                       "--devnet.root", str(net.root))
        assert on.returncode == 0, on.stderr
        # the validator says so: its chain health leaves ok
        wait_for(lambda: net.state()["chain"]["state"] != "ok", 30, "the validator to see the chain fault")
        # meanwhile the gateway still serves every object (retrieval needs no chain call)
        during = world.objects_lost()
        if during.lost_bytes:
            ledger.lost(fault, during.lost_bytes, "during the fault: " + "; ".join(during.lost))
        wait_for(lambda: net.state()["chain"]["state"] == "ok", seconds + 60, "the chain health to recover")
        wait_for(lambda: all((r := latest_round(world, m)) is not None and r.window > last and r.result == "pass"
                             for m in MINERS), 120, "windows to pass again")
        net.run_job("set_weights")
        assert_nothing_lost(world, ledger, fault)
