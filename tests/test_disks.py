"""Several disks per miner: the share split, per-disk plotting, per-disk proof queues, and a disk
that goes away mid-run (real plots, real files, a real miner engine on a devnet in temp dirs)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tensorage.chain.devnet import Devnet
from tensorage.chain.wallets import load_wallet
from tensorage.config import settings_from_namespace
from tensorage.engines.disks import split_share
from tensorage.engines.miner import MinerEngine
from tensorage.engines.snapshot import MinerSnapshot
from tensorage.errors import ConfigError
from tensorage.events import DiskLost, DiskReturned, EventBus
from tensorage.proofs.prover_pool import PlotTask, ProverPool
from tensorage.status import disks_status


# -- the share split and the flag ---------------------------------------------------------------

def test_split_follows_what_each_disk_can_give():
    assert split_share(100, [300, 100]) == [75, 25]
    assert split_share(100, [1, 1, 1]) == [34, 33, 33]  # the remainder to the first (home) disk
    assert split_share(100, [50]) == [100]
    assert split_share(100, [0, 0]) == [100, 0]
    # what a disk holds stays its own; the rest follows the room left (a disk whose free space
    # grows, or a vanished mount showing the root filesystem, never takes another disk's plots)
    assert split_share(100, [300, 100], used=[50, 0]) == [86, 14]
    assert split_share(100, [60, 10**12], used=[60, 0]) == [60, 40]
    assert split_share(40, [300, 100], used=[50, 10]) == [30, 10]  # a smaller share: by what each can give


def test_db_root_path_takes_one_directory_per_disk(tmp_path):
    one = settings_from_namespace({"db_root_path": str(tmp_path / "a")})
    assert one.db_roots == [tmp_path / "a"] and one.proof_processes == 1
    two = settings_from_namespace({"db_root_path": [str(tmp_path / "a"), str(tmp_path / "b")]})
    assert two.db_root == tmp_path / "a" and two.db_roots == [tmp_path / "a", tmp_path / "b"]
    assert two.proof_processes == 2
    assert settings_from_namespace({"db_root_path": [str(tmp_path / "a"), str(tmp_path / "b")],
                                    "proof_workers": 5}).proof_processes == 5
    with pytest.raises(ConfigError, match="overlap"):
        settings_from_namespace({"db_root_path": [str(tmp_path / "a"), str(tmp_path / "a" / "b")]})
    with pytest.raises(ConfigError, match="proof_workers"):
        settings_from_namespace({"db_root_path": str(tmp_path / "a"), "proof_workers": 0})


# -- the prover: a queue per disk, disks in parallel ----------------------------------------------

class Recorder:
    """An instrumented lookup: counts lookups running at once, per disk and in all."""

    def __init__(self, seconds: float = 0.03) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.max_per_disk: dict[str, int] = {}
        self.total = self.max_total = 0
        self.order: list[str] = []
        self.seconds = seconds

    def __call__(self, tasks: list[PlotTask], challenge: bytes, per_plot: int) -> list:
        (task,) = tasks  # one plot per call: work is taken a plot at a time
        with self.lock:
            self.running[task.disk] = self.running.get(task.disk, 0) + 1
            self.max_per_disk[task.disk] = max(self.max_per_disk.get(task.disk, 0), self.running[task.disk])
            self.total += 1
            self.max_total = max(self.max_total, self.total)
            self.order.append(task.seed)
        time.sleep(self.seconds)
        with self.lock:
            self.running[task.disk] -= 1
            self.total -= 1
        return [(task.seed, j, [task.seed.encode()]) for j in range(per_plot)]


def tasks_on(disk: str, n: int) -> list[PlotTask]:
    return [PlotTask(seed=f"{disk}-{i}", path=f"/{disk}/{i}.plot", plot_id=b"x" * 32, k=18, disk=disk)
            for i in range(n)]


async def test_lookups_queue_per_disk_and_disks_run_in_parallel():
    rec = Recorder()
    pool = ProverPool(3, lookup=rec, executor=ThreadPoolExecutor(8))
    tasks = tasks_on("a", 6) + tasks_on("b", 6) + tasks_on("c", 2)
    out = await pool.prove(tasks, b"c" * 32, 2)
    assert [(s, j) for s, j, _ in out] == [(t.seed, j) for t in tasks for j in range(2)]  # in the tasks' order
    assert rec.max_per_disk == {"a": 1, "b": 1, "c": 1}  # one head, one lookup at a time
    assert rec.max_total == 3  # three disks, three workers: all of them at once
    pool.close()


async def test_fewer_workers_than_disks_take_work_dynamically():
    rec = Recorder()
    pool = ProverPool(2, lookup=rec, executor=ThreadPoolExecutor(8))
    # static chunks (tasks[i::2]) would put disk a's plots on both workers at once; taken a plot at a
    # time, disk a holds one worker and b and c take turns on the other
    tasks = tasks_on("a", 6) + tasks_on("b", 1) + tasks_on("c", 1)
    await pool.prove(tasks, b"c" * 32, 1)
    assert max(rec.max_per_disk.values()) == 1 and rec.max_total == 2
    assert len(rec.order) == len(tasks)  # one plot per call
    assert rec.order[:3] == ["a-0", "b-0", "c-0"]  # the next plot of a free disk, not the next chunk
    pool.close()


async def test_tasks_without_a_disk_use_every_worker():
    rec = Recorder()
    pool = ProverPool(3, lookup=rec, executor=ThreadPoolExecutor(8))
    await pool.prove([PlotTask(seed=str(i), path="", plot_id=b"", k=18) for i in range(9)], b"c" * 32, 1)
    assert rec.max_total == 3
    pool.close()


# -- a miner with two disks ----------------------------------------------------------------------

def io_error_for(disk: str):
    """A lookup that answers like a failing device (EIO) for every plot under ``disk``."""
    from tensorage.proofs.prover_pool import prove_batch

    def lookup(tasks, challenge, per_plot):
        (task,) = tasks
        if task.path.startswith(disk + os.sep):
            return [(task.seed, None, f"[Errno 5] {os.strerror(5)}: '{task.path}'")]
        return prove_batch(tasks, challenge, per_plot)
    return lookup


async def start_miner(devnet_root: Path, disks: list[Path], size: float = 0.05) -> MinerEngine:
    """A real miner engine on ``disks``, allocated, started (its jobs run), events recorded."""
    settings = settings_from_namespace({
        "subtensor.network": "devnet", "devnet.root": str(devnet_root), "wallet.name": "miner-0",
        "db_root_path": [str(d) for d in disks], "size_in_gb": size, "workers": 2, "disable_prompt": True,
        "seconds_per_reallocate": 3600,
    })
    bus = EventBus()
    events: list = []
    bus.subscribe(events.append)
    engine = MinerEngine(settings, load_wallet(settings), Devnet.open(devnet_root), bus)
    await engine.allocator.allocate()
    await engine.start()
    engine.test_events = events
    engine.test_disks = disks
    return engine


@pytest.fixture
async def two_disk_miner(devnet_root, tmp_path):
    engine = await start_miner(devnet_root, [tmp_path / "disk-a", tmp_path / "disk-b"])
    yield engine
    await engine.stop()


async def answer_all(engine: MinerEngine, entries) -> dict[str, int]:
    """Proofs found per disk for every (seed, k) in ``entries`` (4 challenges each)."""
    disk_of = {p.seed: p.disk for p in engine.plots.values()}
    proofs = await engine.prove_sample(entries, os.urandom(32), 4)
    found: dict[str, int] = {}
    for (seed, _), per_j in zip(entries, proofs):
        d = disk_of.get(seed.hex(), "gone")
        found[d] = found.get(d, 0) + sum(len(p) for p in per_j)
    return found


async def test_two_disks_plot_answer_lose_one_and_get_it_back(two_disk_miner):
    engine = two_disk_miner
    a, b = (str(d) for d in engine.test_disks)
    per_disk = engine.plots_per_disk()
    assert per_disk.get(a, 0) >= 2 and per_disk.get(b, 0) >= 2, per_disk  # plotted on both
    assert not (Path(b) / "shards").exists() or not any((Path(b) / "shards").iterdir())
    assert (Path(b) / "index" / "miner.sqlite").exists()  # each disk keeps its own plot index
    assert not (Path(b) / "index" / "node.json").exists()  # node-wide state stays on the first
    entries = engine.listed_plots()
    found = await answer_all(engine, entries)
    assert found.get(a, 0) > 0 and found.get(b, 0) > 0, found  # answers from both disks

    before = engine.current_listing()

    # disk b goes away mid-run (renamed away: what an unmounted or pulled disk looks like)
    (Path(b)).rename(Path(b + "-away"))
    result = await engine.check_disks()
    assert "lost" in result
    lost = [e for e in engine.test_events if isinstance(e, DiskLost)]
    assert lost and lost[0].path == b
    assert set(engine.plots_per_disk()) == {a}
    engine._listed_at -= engine.profile.sync_s  # a sync period later: the next listing is published
    listing = engine.current_listing()
    assert len(before) == per_disk[a] + per_disk[b] and len(listing) == per_disk[a]  # b's plots leave it
    assert {seed for seed, _ in listing.entries()} == {bytes.fromhex(p.seed) for p in engine.plots.values()}
    found = await answer_all(engine, entries)  # still answers from disk a; b's plots get nothing
    assert found.get(a, 0) > 0 and "gone" in found and found["gone"] == 0
    snap = MinerSnapshot.model_validate(engine.snapshot())
    states = {d.path: d for d in snap.disks}
    assert states[a].state == "ok" and states[b].state == "lost" and "gone" in states[b].reason
    assert "1 disk(s) lost" in snap.summary()
    assert not Path(b).exists()  # nothing recreated in its place
    await engine.scrub()  # a scrub does not forget a lost disk's plots, nor crash
    await engine.reallocate()  # nor plans on it
    assert not Path(b).exists()

    # it comes back: its plots return after a check
    Path(b + "-away").rename(Path(b))
    result = await engine.check_disks()
    assert "back with" in result
    assert any(isinstance(e, DiskReturned) and e.path == b for e in engine.test_events)
    assert engine.plots_per_disk() == per_disk


async def test_an_io_error_in_a_lookup_loses_the_disk_not_the_node(two_disk_miner):
    engine = two_disk_miner
    a, b = (str(d) for d in engine.test_disks)
    entries = engine.listed_plots()
    engine.pool.close()
    engine.pool = ProverPool(2, lookup=io_error_for(b), executor=ThreadPoolExecutor(2))
    found = await answer_all(engine, entries)
    assert found.get(a, 0) > 0
    states = {d["path"]: d for d in engine.snapshot()["disks"]}
    assert states[b]["state"] == "lost" and os.strerror(5) in states[b]["reason"]
    assert set(engine.plots_per_disk()) == {a}
    # the files were fine all along: the next disk check brings it back
    assert "back with" in await engine.check_disks()
    assert set(engine.plots_per_disk()) == {a, b}


def test_status_names_a_lost_disk_from_the_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "index").mkdir(parents=True)
    settings = settings_from_namespace({"db_root_path": [str(a), str(b)]})
    disks = disks_status(settings, None)
    assert [d["state"] for d in disks] == ["ok", "lost"] and str(b) in disks[1]["reason"]


def test_a_disk_serves_one_node(tmp_path, devnet_root):
    from tensorage.engines.disks import DiskSet
    from tensorage.errors import NodeLocked

    def disks(*names: str) -> DiskSet:
        settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(devnet_root),
                                            "db_root_path": [str(tmp_path / n) for n in names]})
        return DiskSet(settings, "hotkey")

    first, second = disks("a", "shared"), disks("b", "shared")
    first.lock("miner")
    with pytest.raises(NodeLocked, match="shared"):
        second.lock("miner")
    first.unlock()
    second.lock("miner")
    second.unlock()


@pytest.fixture
def two_mounts(tmp_path):
    """Two small tmpfs mounts (this test runs as root); skipped where mounting is not allowed."""
    points = [tmp_path / "mnt-a", tmp_path / "mnt-b"]
    mounted = []
    for p in points:
        p.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(p)],
                          capture_output=True).returncode != 0:
            for m in mounted:
                subprocess.run(["umount", "-l", str(m)], capture_output=True)
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(p)
    yield points
    for p in points:
        subprocess.run(["umount", "-l", str(p)], capture_output=True)


async def test_an_unmounted_disk_is_lost_and_the_node_answers_from_the_other(devnet_root, two_mounts):
    a, b = two_mounts  # the mount points themselves: an unmounted one is an empty directory again
    engine = await start_miner(devnet_root, [a, b], size=0.04)
    try:
        per_disk = engine.plots_per_disk()
        assert per_disk.get(str(a), 0) >= 1 and per_disk.get(str(b), 0) >= 1, per_disk
        assert len({p.queue for p in engine.plots.values()}) == 2  # two devices: lookups in parallel
        entries = engine.listed_plots()
        # the disk is unmounted under the running node (lazily: the node still has its files open)
        assert subprocess.run(["umount", "-l", str(two_mounts[1])]).returncode == 0
        result = await engine.check_disks()  # (the disks job may have noticed first: the state says why)
        lost = {d.path: d for d in MinerSnapshot.model_validate(engine.snapshot()).disks}[str(b)]
        assert "lost" in result and lost.state == "lost" and "another device" in lost.reason, (result, lost)
        assert set(engine.plots_per_disk()) == {str(a)}, (result, engine.snapshot()["disks"], per_disk)
        found = await answer_all(engine, entries)
        assert found.get(str(a), 0) > 0 and found.get("gone", 0) == 0
        await engine.scrub()
        states = {d.path: d for d in MinerSnapshot.model_validate(engine.snapshot()).disks}
        assert states[str(b)].state == "lost" and "unmounted" in states[str(b)].reason
        assert not any(b.iterdir())  # the empty mount point is left alone: nothing plotted on the root disk
    finally:
        await engine.stop()


async def test_a_disk_whose_part_is_too_small_holds_no_plots(devnet_root, tmp_path):
    from tensorage.engines.disks import DiskSet

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        settings = settings_from_namespace({
            "subtensor.network": "devnet", "devnet.root": str(devnet_root), "wallet.name": "miner-0",
            "db_root_path": [str(tmp_path / "big"), str(small)], "size_in_gb": 0.02, "workers": 2})
        disks = DiskSet(settings, load_wallet(settings).hotkey.ss58_address)
        plan = disks.plan()
        assert [len(p.add) for p in plan.disks] == [len(plan.add)]  # only the big disk has a plan
        done = await disks.allocate()
        assert done.plots >= 1 and not list((small / "plots").glob("*.plot"))
        await disks.reallocate()  # no error for the small disk, every time
        disks.close()
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


async def test_an_io_error_in_a_scrub_loses_the_disk_and_forgets_no_plot(two_disk_miner):
    import errno

    engine = two_disk_miner
    a, b = (str(d) for d in engine.test_disks)
    per_disk = engine.plots_per_disk()
    real_check = engine.pool.check

    async def failing_check(path, plot_id, k, disk=""):
        if str(path).startswith(b + os.sep):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return await real_check(path, plot_id, k, disk)

    engine.pool.check = failing_check
    result = await engine.scrub()
    assert "0 removed" in result  # the disk is lost, not its plots
    states = {d["path"]: d for d in engine.snapshot()["disks"]}
    assert states[b]["state"] == "lost" and os.strerror(errno.EIO) in states[b]["reason"]
    assert set(engine.plots_per_disk()) == {a}
    engine.pool.check = real_check
    assert "back with" in await engine.check_disks()
    assert engine.plots_per_disk() == per_disk  # every plot of b is still there


def test_directories_of_one_device_share_a_lookup_queue(tmp_path, devnet_root):
    from tensorage.engines.disks import DiskSet

    settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(devnet_root),
                                        "db_root_path": [str(tmp_path / "a"), str(tmp_path / "b")]})
    disks = DiskSet(settings, "hotkey")
    assert [d.queue for d in disks.disks] == [str(tmp_path / "a")] * 2
    assert [d.allocator.shared_device for d in disks.disks] == [2, 2]  # its free space counted once
    disks.close()


async def test_losing_the_home_disk_does_not_stop_the_node(two_disk_miner):
    engine = two_disk_miner
    a, b = (str(d) for d in engine.test_disks)
    entries = engine.listed_plots()
    Path(a).rename(Path(a + "-away"))
    try:
        result = await engine.check_disks()
        assert "lost" in result
        assert set(engine.plots_per_disk()) == {b}, (result, [(d.root, d.state) for d in engine.allocator.disks])
        found = await answer_all(engine, entries)
        assert found.get(b, 0) > 0  # disk b still answers
        await engine.scrub()
        await engine.reallocate()
        states = {d["path"]: d for d in engine.snapshot()["disks"]}
        assert states[a]["state"] == "lost" and states[a]["home"] and states[b]["state"] == "ok"
        assert not Path(a).exists()
    finally:
        Path(a + "-away").rename(Path(a))
    assert "back with" in await engine.check_disks()
