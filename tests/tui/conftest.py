"""Console test fixtures: a real plotted devnet to copy, a fixed-state backend for snapshots,
and helpers to wait on real engines without timing assertions."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest

from tensorage.chain.devnet import DevnetNode, SubnetSpec
from tensorage.chain.port import Metagraph, Neuron
from tensorage.config import GB, PROFILES, settings_from_namespace
from tensorage.client.api import Listed
from tensorage.client.session import ClientSession, Objects
from tensorage.events import (AllocationDone, ChallengeResult, ChallengeServed, ClientTransfer, ErrorEvent,
                              EventBus, JobRan, LogEvent, NodeState, PlanReady, PlotDone, PlotProgress, PlotVerified,
                              WeightsSet)
from tensorage.scheduler import JobInfo
from tensorage.storage.layout import DeviceSpace
from tensorage.storage.partition import plan_partition
from tensorage.tui.sources import DevnetSource, DiskInfo, JobRow, NodeRow, PathCheck

# --- time: every clock the console prints is UTC in tests --------------------------------------


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def until(pilot, predicate: Callable[[], object], what: str, timeout: float = 90.0, step: float = 0.2):
    """Let the app run until ``predicate()`` holds; fail with ``what`` if it never does.

    Waiting is not asserting on time: the timeout only bounds a hung test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}; the screen was:\n{screen_text(pilot.app)}")
        await pilot.pause(step)


async def settle(pilot, rounds: int = 3) -> None:
    """Let thread workers answer (chain, node files, disks, wizard checks) and the screen redraw."""
    from textual.worker import WorkerCancelled

    for _ in range(rounds):
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive worker replaced by a newer one
            pass
        await pilot.pause()


async def until_text(pilot, *needles: str, timeout: float = 60.0) -> str:
    """Wait until every needle is on screen; returns the screen."""
    def shown() -> str:
        text = screen_text(pilot.app)
        return text if all(n in text for n in needles) else ""

    return await until(pilot, shown, f"{needles} on screen", timeout)


def screen_text(app) -> str:
    """What the screen shows, as plain text (like tmux capture-pane)."""
    return "\n".join(strip.text.rstrip() for strip in app.screen._compositor.render_strips())


def devnet_settings(root: Path, **flags):
    return settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(root), **flags})


# --- fixed state for snapshots ------------------------------------------------------------------

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
HOTKEYS = {
    "validator-0": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
    "validator-1": "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
    "miner-0": "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y",
    "miner-1": "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy",
    "miner-2": "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw",
}
UIDS = {"validator-0": 0, "validator-1": 1, "miner-0": 2, "miner-1": 3, "miner-2": 4}
SIZES = {"miner-0": 0.03, "miner-1": 0.05, "miner-2": 0.08}
DEVICE = DeviceSpace(total=500 * GB, free=200 * GB)


def fixed_metagraph() -> Metagraph:
    incentive = {2: 0.152, 3: 0.318, 4: 0.530}
    neurons = []
    for name, uid in UIDS.items():
        v = name.startswith("validator")
        neurons.append(Neuron(uid=uid, hotkey=HOTKEYS[name], coldkey=HOTKEYS[name], active=True, validator_permit=v,
                              last_update=95, block_at_registration=0, rank=0.0, trust=0.0,
                              consensus=incentive.get(uid, 0.0), incentive=incentive.get(uid, 0.0),
                              dividends=(0.66 if uid == 0 else 0.34) if v else 0.0,
                              emission=round(incentive.get(uid, 0.0) * 10 if not v else (6.6 if uid == 0 else 3.4), 2),
                              total_stake=2000.0 if uid == 0 else 1000.0 if uid == 1 else 0.0,
                              axon=f"127.0.0.1:{40000 + uid}"))
    return Metagraph(netuid=7, block=100, neurons=neurons)


def job(id_: str, seconds: float, runs: int, ok, result: str, paused: bool = False, running: bool = False) -> JobInfo:
    return JobInfo(id=id_, seconds=seconds, next_run=None if paused else NOW + seconds / 2, paused=paused, runs=runs,
                   last_ok=ok, last_result=result, last_duration_s=0.05 if ok is not None else None,
                   last_run_at=NOW - 2 if ok is not None else None, running=running)


FIXED_OBJECTS = [
    Listed(id="3f2a9c" + "0" * 26, name="holiday-2026.mov", plain_size=48_200_000, size=48_201_000, k=4, n=6,
           state="stored", healthy=6, segments=3, created_at=NOW - 3600),
    Listed(id="b71e04" + "1" * 26, name="a very long file name that the table has to cut somewhere.tar.gz",
           plain_size=1_200_000, size=1_200_300, k=4, n=6, state="stored", healthy=5, segments=1,
           created_at=NOW - 600),
    Listed(id="c0ffee" + "2" * 26, name=None, plain_size=None, size=7_000_000, k=4, n=6, state="damaged",
           healthy=3, segments=1, created_at=NOW - 86400),
]


class FixedClient(ClientSession):
    """The devnet's client session with a fixed listing (snapshots); commands are recorded."""

    def __init__(self, settings, bus) -> None:
        super().__init__(settings, bus)
        self.commands: list[tuple] = []

    async def list(self) -> Objects:
        gateway = next(n for n in fixed_metagraph().neurons if n.uid == 0)
        return Objects(objects=list(FIXED_OBJECTS), used_bytes=56_401_300, quota_bytes=1_000_000_000,
                       gateway=gateway, sealed=False)

    def start_store(self, path) -> str:
        self.commands.append(("store", path))
        return "store-0"

    def start_retrieve(self, object_id, out) -> str:
        self.commands.append(("retrieve", object_id, out))
        return "retrieve-0"

    async def remove(self, object_id) -> None:
        self.commands.append(("remove", object_id))


class StaticBackend(DevnetSource):
    """A devnet console whose every read returns fixed data (deterministic snapshots)."""

    def __init__(self) -> None:
        settings = devnet_settings(Path("/srv/tensorage/devnet"), workers=2)
        spec = SubnetSpec(nodes=[DevnetNode("validator-0", "validator", 0.0), DevnetNode("validator-1", "validator", 0.0)]
                          + [DevnetNode(n, "miner", s) for n, s in SIZES.items()])
        supervisor = SimpleNamespace(settings=settings, bus=EventBus(history=5000), root=settings.devnet_root,
                                     spec=spec, chain=None, jobs=None, spec_or_file=lambda: spec,
                                     db_root=lambda node: settings.devnet_root / "nodes" / node.name)
        super().__init__(supervisor, clock=lambda: NOW, cpus=2)
        self.commands: list[tuple[str, str]] = []  # job commands sent (tests read them)
        self.client = FixedClient(settings, supervisor.bus)

    async def start(self) -> str:
        return "fixed"

    async def stop(self) -> None:
        return None

    def load_chain(self):
        return fixed_metagraph(), 100, 95

    def load_names(self) -> dict[str, str]:
        return {h: n for n, h in HOTKEYS.items()}

    def jobs(self, snapshots) -> list[JobRow]:
        rows = [JobRow("devnet", job("devnet_epoch", 1, 100, True, "epoch at block 95"))]
        for name, snap in sorted(snapshots.items()):
            rows += [JobRow(name, j.info()) for j in snap.jobs]
        return rows

    async def control(self, row, action: str) -> str:
        self.commands.append((row.key, action))
        return f"{row.info.id}: {action} (fixed)"

    def nodes(self) -> list[NodeRow]:
        return [NodeRow(node=n.name, role=n.role, state="running", pid=1000 + UIDS[n.name],
                        log=f"/srv/tensorage/devnet/logs/{n.name}.log",
                        db_root_path=f"/srv/tensorage/devnet/nodes/{n.name}") for n in self.supervisor.spec.nodes]

    def load_node_files(self) -> dict:
        from tensorage.engines.snapshot import parse_snapshot

        def node(name: str, role: str, **extra) -> dict:
            return {"role": role, "source": name, "hotkey": HOTKEYS[name], "network": "devnet", "netuid": 7,
                    "db_root_path": f"/srv/tensorage/devnet/nodes/{name}", "pid": 1000 + UIDS[name], "protocol": 1,
                    "started_at": NOW - 300, "updated_at": NOW, **extra}

        snaps = {}
        for i, name in enumerate(("miner-0", "miner-1", "miner-2")):
            shards = (2, 3, 0)[i]
            snaps[name] = node(name, "miner", jobs=[vars(job("reallocate", 30, 3, True, "4 plots planned (0 made)")),
                                                    vars(job("scrub", 120, 0, None, "")),
                                                    vars(job("sync", 10, 9, True, "block 99, 2 validators"))],
                               shards=shards, shard_bytes=shards * 3_015_000, shard_free_bytes=2_000_000,
                               shards_by_validator={HOTKEYS["validator-0"]: {"shards": shards,
                                                                             "bytes": shards * 3_015_000}},
                               shards_certified=shards)
        for i, name in enumerate(("validator-0", "validator-1")):
            snaps[name] = {
                **node(name, "validator"),
                "jobs": [vars(job("proof_round", 3, 30, True, "round 30: 3/3 passed")),
                         vars(job("set_weights", 10, 9, i == 0, "set 3 weights at block 98" if i == 0
                                  else "ChainError: database is locked")),
                         vars(job("sync", 10, 9, True, "block 99: 3 miners, 19 plots accepted", paused=i == 1))],
                "miners": {HOTKEYS[m]: {"uid": UIDS[m], "ratio": r, "score": s * 0.97, "latency_ms": 150.0}
                           for m, r, s in (("miner-0", 0.91, 14e6), ("miner-1", 0.99, 38e6), ("miner-2", 1.0, 64e6))},
            }
        return {name: parse_snapshot(data) for name, data in snaps.items()}

    def load_disks(self) -> dict[str, DiskInfo]:
        out = {}
        for i, (name, gb) in enumerate(SIZES.items()):
            planned = (4, 6, 9)[i]
            done = (4, 6, 5)[i]
            out[name] = DiskInfo(name=name, db_root=f"/srv/tensorage/devnet/nodes/{name}", size_bytes=int(gb * GB),
                                 planned=planned, done=done, verified=done if i < 2 else done - 1,
                                 plot_bytes=done * 3_900_000, by_k={"18": done},
                                 device_total=DEVICE.total, device_free=DEVICE.free)
        return out

    def default_path(self) -> str:
        return "/srv/tensorage/devnet/nodes/miner-3"

    def check_path(self, text: str) -> PathCheck:
        return PathCheck(path=Path(text.strip()), device_total=DEVICE.total, device_free=DEVICE.free,
                         max_share=DEVICE.free - GB, min_share=16_400_000)

    def plan(self, path: Path, size_bytes: int):
        return plan_partition(size_bytes, DEVICE, PROFILES["devnet"])


def feed_fixed_events(bus: EventBus) -> None:
    """A few minutes of a small devnet, at fixed times."""
    t = NOW - 300
    pub = bus.publish
    for name in ("validator-0", "validator-1", "miner-0", "miner-1", "miner-2"):
        pub(NodeState(node=name, state="running", pid=1000 + UIDS[name], source="devnet", ts=t))
    pub(LogEvent(message="created a devnet at /srv/tensorage/devnet: 2 validators, 3 miners", source="devnet", ts=t))
    plans = {"miner-0": [18] * 4, "miner-1": [19, 19, 19, 18, 18, 18], "miner-2": [20] + [19] * 4 + [18] * 4}
    for name, ks in plans.items():
        size = int(SIZES[name] * GB)
        plot_bytes = {18: 3_900_000, 19: 8_600_000, 20: 16_800_000}
        pb = sum(plot_bytes[k] for k in ks)
        pub(PlanReady(size_bytes=size, plot_bytes=pb, reserve_bytes=size // 10, temp_bytes=2 * plot_bytes[max(ks)],
                      free_bytes=size - pb, plots=ks, to_make=len(ks), to_remove=0, source=name, ts=t + 5))
    t += 6
    for name, n_done in (("miner-0", 4), ("miner-1", 6), ("miner-2", 5)):
        total = len(plans[name])
        for i in range(n_done):
            seed = f"{UIDS[name]:02x}{i:02x}" + "ab" * 30
            k = plans[name][i]
            for f in (0.25, 0.5, 1.0):
                pub(PlotProgress(seed=seed, k=k, fraction=f, done=i, total=total, rate_per_hour=720.0,
                                 eta_s=5.0 * (total - i), source=name, ts=t))
            pub(PlotDone(seed=seed, k=k, bytes=3_900_000, seconds=4.0, done=i + 1, total=total, source=name, ts=t))
            if not (name == "miner-2" and i == n_done - 1):
                pub(PlotVerified(seed=seed, k=k, proofs=3, expected=0.9, ok=True, source=name, ts=t))
            t += 1
        if n_done == total:
            pub(AllocationDone(plots=total, verified=total, plot_bytes=total * 3_900_000, seconds=n_done * 4.0,
                               source=name, ts=t))
    # miner-2 is still plotting its 6th plot
    pub(PlotProgress(seed="04" + "cd" * 31, k=18, fraction=0.42, done=5, total=9, rate_per_hour=900.0, eta_s=18.0,
                     source="miner-2", ts=t))
    # 12 rounds from each validator
    for r in range(12):
        for v in ("validator-0", "validator-1"):
            for m, ret, exp in (("miner-0", 13, 15.2), ("miner-1", 15, 15.2), ("miner-2", 16, 15.4)):
                result, detail = "pass", ""
                if m == "miner-0" and r == 7 and v == "validator-1":
                    result, ret, detail = "timeout", 0, "deadline passed after 3.0s"
                if m == "miner-0" and r == 9 and v == "validator-0":
                    result, ret, detail = "fail", 2, "1 invalid proofs"
                latency = 120.0 + 17 * ((r * 7 + UIDS[m] * 3) % 11)
                asked = 4 if m != "miner-2" and r >= 10 else 0  # the last windows sample certified shard chunks
                passed = asked - (1 if m == "miner-0" and r == 11 else 0)
                if asked and passed < asked:
                    result, detail = "fail", "1 of 4 shard chunks wrong or missing: the window proves nothing"
                pub(ChallengeResult(validator=HOTKEYS[v], miner_uid=UIDS[m], miner_hotkey=HOTKEYS[m], plots=4,
                                    proofs_returned=ret, proofs_expected=exp, result=result, latency_ms=latency,
                                    detail=detail, window=40 + r, credit_bytes=ret / exp * 15.7e6, source=v, ts=t,
                                    chunks_asked=asked, chunks_right=passed,
                                    client_bytes=2 * 3_015_000 if asked and passed == asked else 0.0))
                pub(ChallengeServed(validator_hotkey=HOTKEYS[v], plots=4, proofs=ret, latency_ms=latency - 10,
                                    window=40 + r, cached=v == "validator-1", source=m, ts=t))
            pub(JobRan(job_id="proof_round", ok=True, duration_s=0.3, result=f"window {40 + r}: 3/3 passed",
                       source=v, ts=t))
        t += 3
    # this console's client: one store done, one running
    pub(ClientTransfer(transfer="store-1", op="store", name="holiday-2026.mov", state="done", done=48_200_000,
                       total=48_200_000, object_id=FIXED_OBJECTS[0].id, seconds=12.4, source="client", ts=t - 3000))
    pub(ClientTransfer(transfer="store-2", op="store", name="backup.tar", state="running", done=31_000_000,
                       total=80_000_000, source="client", ts=t))
    pub(WeightsSet(block=98, weights={"2": 0.148, "3": 0.322, "4": 0.530}, source="validator-0", ts=t))
    pub(WeightsSet(block=0, weights={}, ok=False, message="ChainError: database is locked", source="validator-1",
                   ts=t + 1))
    pub(WeightsSet(block=97, weights={"2": 0.160, "3": 0.310, "4": 0.530}, source="validator-1", ts=t - 10))
    pub(ErrorEvent(message="job set_weights failed: ChainError: database is locked", source="validator-1", ts=t + 1))
    pub(LogEvent(message="miner-2 reallocation: 4 plots to make", severity="warning", source="miner-2", ts=t + 2))


@pytest.fixture
def static_backend() -> StaticBackend:
    backend = StaticBackend()
    feed_fixed_events(backend.bus)
    return backend
