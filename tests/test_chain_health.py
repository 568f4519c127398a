"""A chain that errors or stalls: jobs back off, nodes keep serving and say so, the devnet can fake it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tensorage.chain.devnet import Devnet
from tensorage.chain.devnet_faults import read_fault, set_fault
from tensorage.chain.health import ChainHealth, MonitoredChain, describe
from tensorage.config import settings_from_namespace
from tensorage.errors import BlockNotYet, ChainStalled, ChainUnreachable, NotRegistered
from tensorage.events import ErrorEvent, EventBus
from tensorage.scheduler import BACKOFF_FIRST_S, BACKOFF_MAX_S, Jobs, backoff_delay


def test_backoff_doubles_from_two_seconds_up_to_a_minute():
    assert [backoff_delay(n) for n in range(1, 9)] == [2, 4, 8, 16, 32, 60, 60, 60]
    assert (BACKOFF_FIRST_S, BACKOFF_MAX_S) == (2.0, 60.0)


async def test_a_job_failing_on_the_chain_backs_off_then_returns_to_its_period():
    bus = EventBus()
    errors: list[str] = []
    bus.subscribe(lambda e: errors.append(e.message) if isinstance(e, ErrorEvent) else None)
    jobs = Jobs(bus, "test", backoff_first_s=10.0, backoff_max_s=40.0)
    outcomes = [ChainUnreachable("down"), ChainStalled("slow"), ChainUnreachable("down"), ChainUnreachable("down"), None]

    async def job():
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "fine"

    jobs.add("sync", job, 3600, first_in=3600)
    jobs.start()
    try:
        retries = []
        for _ in range(4):
            before = time.time()
            await jobs._runner("sync")()
            info = next(j for j in jobs.state() if j.id == "sync")
            retries.append(round(info.next_run - before))
            assert info.retry_at == pytest.approx(info.next_run, abs=0.01) and jobs.next_retry() == info.retry_at
        assert retries == [10, 20, 40, 40]  # not the 3600 s period, not a tight loop
        assert jobs.backing_off() == ["sync"] and "retrying in 40s" in errors[-1]
        assert jobs.retry_backed_off() == ["sync"]
        assert next(j for j in jobs.state() if j.id == "sync").next_run <= time.time() + 0.5
        await jobs._runner("sync")()
        info = next(j for j in jobs.state() if j.id == "sync")
        assert info.chain_failures == 0 and info.retry_at is None and jobs.next_retry() is None
        assert not jobs.backing_off()
    finally:
        jobs.shutdown()


async def test_other_failures_and_block_not_yet_do_not_back_off():
    jobs = Jobs(EventBus(), "test")

    async def not_yet():
        raise BlockNotYet("block 9 is not made yet")

    jobs.add("round", not_yet, 3600, first_in=3600)
    jobs.start()
    try:
        await jobs._runner("round")()
        assert not jobs.backing_off()
    finally:
        jobs.shutdown()


class Flaky:
    network, netuid = "fake", 7

    def __init__(self) -> None:
        self.fail: Exception | None = None

    def block(self) -> int:
        if self.fail:
            raise self.fail
        return 5

    def register(self) -> str:  # not a port method: passes through
        return "registered"


def test_monitored_chain_marks_unreachable_only_when_the_chain_does_not_answer():
    clock = [1000.0]
    health = ChainHealth(clock=lambda: clock[0])
    inner = Flaky()
    chain = MonitoredChain(inner, health)
    assert health.view().state == "unknown" and describe(health.view()) == "chain not read yet"
    assert chain.block() == 5 and health.view().state == "ok"
    inner.fail = NotRegistered("hotkey x is not registered")
    with pytest.raises(NotRegistered):
        chain.block()
    assert health.view().state == "ok" and "not registered" in health.view().last_error  # refused, but answered
    inner.fail = BlockNotYet("later")
    with pytest.raises(BlockNotYet):
        chain.block()
    assert health.view().state == "ok"
    clock[0] = 1010.0
    inner.fail = ChainStalled("no answer within 20s")
    for _ in range(3):
        with pytest.raises(ChainStalled):
            chain.block()
    view = health.view(next_retry=1018.0)
    assert (view.state, view.since, view.failures) == ("unreachable", 1010.0, 3)
    assert describe(view, now=1012.0) == "chain unreachable for 2s, retry in 6s: ChainStalled: no answer within 20s"
    inner.fail = None
    clock[0] = 1020.0
    assert chain.block() == 5
    assert (health.view().state, health.view().since, health.view().failures) == ("ok", 1020.0, 0)
    assert health.recoveries == 1
    assert chain.register() == "registered" and chain.inner is inner


def test_the_devnet_fault_switch(devnet_root):
    node_chain = Devnet.open(devnet_root)
    node_chain.faults_apply = True
    operator = Devnet.open(devnet_root)  # the supervisor, the console, `devnet fault off`: never faulted
    try:
        assert node_chain.block() >= 0
        set_fault(operator, "error")
        time.sleep(0.3)  # the nodes' cached view of the switch
        with pytest.raises(ChainUnreachable, match="fault switch"):
            node_chain.metagraph()
        assert operator.metagraph().neurons
        set_fault(operator, "stall", stall_s=0.4)
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(ChainStalled, match="within 0.4s"):
            node_chain.block_hash(0)
        assert 0.35 < time.monotonic() - started < 2.0
        set_fault(operator, "stall", seconds=0.5, stall_s=5.0)  # ends by itself: the stalled call goes through
        time.sleep(0.3)
        started = time.monotonic()
        assert node_chain.block() >= 0 and time.monotonic() - started < 2.0
        assert read_fault(operator) is None
        set_fault(operator, "error")
        set_fault(operator, "off")
        time.sleep(0.3)
        assert node_chain.metagraph().neurons
    finally:
        node_chain.close()
        operator.close()


def test_the_devnet_port_is_safe_from_many_threads(devnet_root):
    """Engines call the port with asyncio.to_thread: several threads draw beacons, read the
    metagraph and write weights at once on one Devnet object. (peewee gives each thread its own
    SQLite connection and writes take the lock up front, so nothing needed fixing; close() closes
    the calling thread's connection only, which the console relies on.)"""
    chain = Devnet.open(devnet_root)
    errors: list[BaseException] = []
    hashes: dict[int, set[bytes]] = {}
    lock = threading.Lock()
    validator = next(n for n in chain.metagraph().neurons if n.validator_permit)
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(15):
                head = chain.block()
                for b in range(max(0, head - 3), head + 1):
                    h = chain.block_hash(b)
                    with lock:
                        hashes.setdefault(b, set()).add(h)
                chain.metagraph()
                if i % 2:
                    chain.set_weights_hotkey(validator.hotkey, {0: 1.0, 1: float(i)})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(len(v) == 1 for v in hashes.values()), "a block got two beacons"
    chain.close()


# --- end to end: a miner and a validator on a devnet whose chain errors, stalls, recovers ------------------


def settings_for(root, name: str, **flags):
    return settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(root), "wallet.name": name,
                                    "db_root_path": str(root / "nodes" / name), **flags})


async def until(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def get_plots(client, miner) -> tuple[int, float]:
    host, port = miner.axon.local_endpoint(miner.served.port).rsplit(":", 1)
    started = time.monotonic()
    reply = await client.request("GET", host, int(port), "/v1/plots", receiver=miner.hotkey, timeout=5.0)
    return reply.status, time.monotonic() - started


@pytest.mark.faults  # a fault test: run with the fault suite (`pytest -m faults`), not in the default ten minutes
async def test_nodes_ride_out_a_chain_that_errors_then_stalls_then_recovers(plotted_devnet):
    from tensorage.engines.run import build_node
    from tensorage.net.client import SignedClient
    from tensorage.status import node_status

    root = plotted_devnet
    miner_settings = settings_for(root, "miner-0", size_in_gb=0.03, seconds_per_reallocate=3600)
    validator_settings = settings_for(root, "validator-0")
    miner = build_node("miner", miner_settings, EventBus())
    validator = build_node("validator", validator_settings, EventBus())
    for node in (miner, validator):
        node.jobs.backoff_first_s, node.jobs.backoff_max_s = 0.5, 2.0
    switch = Devnet.open(root)
    client = SignedClient(validator.wallet)
    try:
        await miner.launch()
        await validator.launch()
        await until(lambda: (s := validator.scores.get(miner.hotkey)) is not None and s.windows > 0, 60,
                    "a first window checked")
        assert miner.chain_health.state == validator.chain_health.state == "ok"

        # the chain errors: both nodes notice at their next chain call, back off, keep serving
        set_fault(switch, "error")
        await until(lambda: miner.chain_health.state == validator.chain_health.state == "unreachable", 20,
                    "both nodes to see the chain down")
        window_down = validator.last_window
        assert (await get_plots(client, miner))[0] == 200
        snap = validator.typed_snapshot()
        assert snap.chain.state == "unreachable" and "fault switch" in snap.chain.last_error
        assert snap.chain.next_retry is not None and any(j.chain_failures for j in snap.jobs)
        await miner.flush_state()
        status = node_status(miner_settings, miner.hotkey, with_chain=False, live=False)
        assert status["chain_health"]["state"] == "unreachable"

        # the chain stalls: calls hang until their bound, then fail; /v1/plots still answers at once
        set_fault(switch, "stall", stall_s=1.0)
        await until(lambda: "ChainStalled" in validator.chain_health.view().last_error, 20, "a stalled call")
        status, took = await get_plots(client, miner)
        assert status == 200 and took < 1.0
        assert validator.last_window == window_down  # no window is checked blind

        # it recovers: health goes back to ok and the validator checks windows again
        set_fault(switch, "off")
        await until(lambda: miner.chain_health.state == validator.chain_health.state == "ok", 20, "recovery")
        await until(lambda: validator.last_window > window_down and
                    validator.scores[miner.hotkey].last_window > window_down, 30, "windows after recovery")
        await until(lambda: not validator.jobs.backing_off(), 20, "every job back on its period")
        assert validator.typed_snapshot().chain.state == "ok"
    finally:
        set_fault(switch, "off")
        switch.close()
        await client.close()
        await validator.shutdown()
        await miner.shutdown()


def test_callers_do_not_pile_up_behind_a_stalled_call():
    release = threading.Event()

    class Stuck:
        def block(self) -> int:
            release.wait(5)
            return 7

        def metagraph(self):
            return "mg"

    health = ChainHealth()
    chain = MonitoredChain(Stuck(), health)
    chain.suspect_s = 0.2
    stuck = threading.Thread(target=chain.block)
    stuck.start()
    time.sleep(0.05)
    assert chain.metagraph() == "mg"  # a call that just started is not a stall yet
    time.sleep(0.3)
    started = time.monotonic()
    with pytest.raises(ChainStalled, match="not asked"):
        chain.metagraph()
    assert time.monotonic() - started < 0.1
    release.set()
    stuck.join()
    assert chain.metagraph() == "mg" and health.state == "ok"


def test_one_call_at_a_time_probes_an_unreachable_chain():
    release = threading.Event()
    health = ChainHealth()
    health.failed(ChainUnreachable("connection refused"))

    class Probe:
        def block(self) -> int:
            release.wait(5)
            return 7

    chain = MonitoredChain(Probe(), health)
    probe = threading.Thread(target=chain.block)
    probe.start()
    time.sleep(0.05)
    with pytest.raises(ChainUnreachable, match="already probing"):
        chain.block()
    assert health.view().last_error == "ChainUnreachable: connection refused"  # a call not made tells nothing
    release.set()
    probe.join()
    assert health.state == "ok"


def test_a_slow_write_does_not_hold_back_reads():
    """set_weights waits for a block or two on finney: reads meanwhile are not a stall."""
    release = threading.Event()

    class Writing:
        def set_weights(self, wallet, weights) -> int:
            release.wait(5)
            return 9

        def block(self) -> int:
            return 7

    chain = MonitoredChain(Writing(), ChainHealth())
    chain.suspect_s = 0.1
    writer = threading.Thread(target=chain.set_weights, args=(None, {}))
    writer.start()
    time.sleep(0.3)
    assert chain.block() == 7
    release.set()
    writer.join()


def test_backed_off_jobs_are_kicked_once_when_the_chain_comes_back_not_on_every_run():
    """A job backing off from a refusal (the chain answered) must not be re-run at every other
    job's run: only a chain that was unreachable and answers again kicks the backed-off jobs."""
    from types import SimpleNamespace

    from tensorage.engines.node import Node
    from tensorage.events import JobRan

    kicks: list[int] = []
    health = ChainHealth()
    node = SimpleNamespace(chain_health=health, _recoveries_seen=0, source="t", bus=EventBus(),
                           jobs=SimpleNamespace(retry_backed_off=lambda: kicks.append(1) or ["set_weights"]),
                           write_state=lambda: None)
    ran = JobRan(job_id="sync", ok=True, duration_s=0.1, result="", source="t")
    health.ok()
    health.failed(NotRegistered("uid 9 is not registered"))  # a refusal: answered
    for _ in range(3):
        Node._on_event(node, ran)
    assert kicks == []
    health.failed(ChainUnreachable("down"))
    Node._on_event(node, ran)
    health.ok()
    for _ in range(3):
        Node._on_event(node, ran)
    assert kicks == [1]


def test_devnet_fault_from_the_command_line(devnet_root):
    from .conftest import tensorage

    on = tensorage("devnet", "fault", "stall", "--seconds", "60", "--stall-seconds", "2", "--devnet.root",
                   str(devnet_root))
    assert on.returncode == 0 and "stalls 2s" in on.stdout, on.stderr
    shown = tensorage("devnet", "show", "--devnet.root", str(devnet_root))
    assert "fault switch on" in shown.stdout
    bad = tensorage("devnet", "fault", "error", "--seconds", "0", "--devnet.root", str(devnet_root))
    assert bad.returncode != 0 and "--seconds must be positive" in bad.stderr + bad.stdout
    off = tensorage("devnet", "fault", "off", "--devnet.root", str(devnet_root))
    assert off.returncode == 0 and "normally again" in off.stdout
    chain = Devnet.open(devnet_root)
    try:
        assert read_fault(chain) is None
    finally:
        chain.close()
