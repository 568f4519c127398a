"""The allocator: turns a disk share into plots plus a reserve for client shards.

It plans (no writes) so the operator can confirm, then makes the planned plots in
child processes, ``workers`` at a time and never more than free space allows,
verifying each with sample challenges. A kill at any point is safe: the next run
removes half-made plots and restarts them. ``reallocate()`` follows the client
reserve: it drops plots when shards need the room and plots again when room frees up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import Settings
from ..errors import DiskFull, NotEnoughSpace, PlotError
from ..events import (AllocationDone, ErrorEvent, EventBus, PlanReady, PlotDone, PlotProgress, PlotRemoved,
                      PlotVerified)
from ..proofs.plots import (estimated_plot_bytes, parse_plot_filename, peak_bytes, plot_filename, plot_id,
                            proof_rate)
from ..proofs.plot_check import verify_plot
from ..proofs.plotter import PlotJob, run_plot
from ..storage.full import disk_full
from ..storage.layout import DeviceSpace, Layout, device_space, dir_bytes, safety_margin
from ..storage.models import MinerIndex, PlotState
from ..storage.partition import ExistingPlot, PartitionPlan, max_share_bytes, plan_partition, seconds_per_plot

MAX_CONSECUTIVE_FAILURES = 3
ON_DISK = (PlotState.PLOTTING, PlotState.DONE, PlotState.VERIFIED)


@dataclass
class PlotInFlight:
    seed: str
    k: int
    fraction: float = 0.0
    started: float = field(default_factory=time.monotonic)


@dataclass
class AllocatorStatus:
    """What the console and `status --json` show; updated as the engine works."""

    planned: int = 0
    done: int = 0
    verified: int = 0
    plot_bytes: int = 0
    running: dict[str, PlotInFlight] = field(default_factory=dict)
    started_at: Optional[float] = None
    work_total: float = 0.0
    work_done: float = 0.0
    made_this_run: int = 0
    busy: bool = False
    last_error: str = ""

    @property
    def rate_per_hour(self) -> float:
        if not self.started_at or self.made_this_run == 0:
            return 0.0
        return self.made_this_run / max(1e-6, time.monotonic() - self.started_at) * 3600

    def as_dict(self) -> dict:
        """Plain data for the console and an attached console (JSON-able)."""
        return {"planned": self.planned, "done": self.done, "verified": self.verified, "plot_bytes": self.plot_bytes,
                "rate_per_hour": self.rate_per_hour, "eta_s": self.eta_s, "busy": self.busy,
                "last_error": self.last_error, "running": {s: (p.k, p.fraction) for s, p in self.running.items()}}

    @property
    def eta_s(self) -> Optional[float]:
        if not self.busy or not self.started_at:
            return None
        elapsed = time.monotonic() - self.started_at
        progress = self.work_done + sum(seconds_per_plot(p.k) * p.fraction for p in self.running.values())
        if progress <= 0 or elapsed < 0.5:
            return None
        return max(0.0, (self.work_total - progress) * elapsed / progress)


class Allocator:
    def __init__(self, settings: Settings, hotkey: str, bus: Optional[EventBus] = None,
                 source: str = "allocator", root: Optional[Path] = None, holds_shards: bool = True) -> None:
        """One disk: ``root`` (default: the first --db_root_path). ``holds_shards``: client shards live
        here, so its partition keeps the client reserve (only the first disk; engines/disks.py)."""
        self.settings = settings
        self.hotkey = hotkey
        self.profile = settings.profile
        self.layout = Layout(root if root is not None else settings.db_root)
        self.holds_shards = holds_shards
        self.share_bytes: Optional[int] = None  # this disk's part of --size_in_gb (None: all of it)
        self.shared_device = 1  # how many of the node's disks are directories of this one device
        self.disk_label = ""  # names the disk in its events when the node has several
        self.bus = bus or EventBus()
        self.source = source
        self.status = AllocatorStatus()
        self._index: Optional[MinerIndex] = None
        self._lock = asyncio.Lock()
        self.cpus = os.cpu_count() or 1
        # Recovery reads every plot's header and may delete temp files: off the event loop, in one
        # thread of its own (so the plot index has at most one extra SQLite connection).
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="allocator-io")

    # -- reading state (no writes) --------------------------------------------------------
    @property
    def index(self) -> MinerIndex:
        if self._index is None:
            self.layout.ensure()
            self._index = MinerIndex(self.layout.miner_db)
        return self._index

    def _existing_index(self) -> Optional[MinerIndex]:
        if self._index is None and self.layout.miner_db.exists():
            self._index = MinerIndex(self.layout.miner_db)
        return self._index

    def existing_plots(self) -> list[ExistingPlot]:
        index = self._existing_index()
        if index is None:
            return []
        return [ExistingPlot(seed=p.seed, k=p.k, bytes=p.bytes) for p in index.plots(*ON_DISK)]

    def shard_bytes(self) -> int:
        return dir_bytes(self.layout.shards) if self.holds_shards else 0

    def device(self) -> DeviceSpace:
        """The device's space, split evenly among the node's disks that are directories of it (so
        two directories of one filesystem never count its free space twice)."""
        dev = device_space(self.layout.root)
        n = max(1, self.shared_device)
        return DeviceSpace(total=dev.total // n, free=dev.free // n)

    @property
    def share_size(self) -> int:
        return self.share_bytes if self.share_bytes is not None else self.settings.size_bytes

    def plan(self, size_bytes: Optional[int] = None) -> PartitionPlan:
        """The partition for the current disk, index and shards; raises NotEnoughSpace."""
        self.layout.check_writable_target()
        existing = self.existing_plots()
        plan = plan_partition(
            size_bytes if size_bytes is not None else self.share_size,
            self.device(), self.profile, existing=existing, shard_bytes=self.shard_bytes(),
            holds_shards=self.holds_shards,
        )
        plan.root = str(self.layout.root)
        return plan

    def max_share_bytes(self) -> int:
        used = sum(p.bytes for p in self.existing_plots()) + self.shard_bytes()
        return max_share_bytes(self.device(), used)

    def refresh_counts(self) -> None:
        index = self._existing_index()
        if index is None:
            return
        counts = index.counts()
        self.status.planned = sum(counts.values())
        self.status.done = counts.get(PlotState.DONE.value, 0) + counts.get(PlotState.VERIFIED.value, 0)
        self.status.verified = counts.get(PlotState.VERIFIED.value, 0)
        self.status.plot_bytes = index.bytes_in(PlotState.DONE, PlotState.VERIFIED)

    # -- maintenance ---------------------------------------------------------------------
    def wipe(self) -> None:
        """--restart: remove every plot and the plot index. Client shards are kept."""
        if self._index is not None:
            self._index.close()
            self._index = None
        shutil.rmtree(self.layout.plots, ignore_errors=True)
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.layout.miner_db) + suffix).unlink(missing_ok=True)
        self.bus.log("wiped plots and the plot index (client shards kept)", source=self.source)

    def recover(self, repair: bool = False) -> None:
        """After a kill: finish or undo what was in flight, adopt our orphan plot files,
        and refuse (or with ``repair`` forget) plots that are listed but missing or unreadable."""
        self.check(repair=repair)
        index = self.index
        for row in index.plots(PlotState.PLOTTING):
            final = self.layout.plots / plot_filename(row.k, bytes.fromhex(row.seed))
            if final.exists():
                index.mark_done(row.seed, final.stat().st_size, 0.0)
            else:
                index.set_state(row.seed, PlotState.PLANNED)
        for row in index.plots(PlotState.FAILED):
            index.set_state(row.seed, PlotState.PLANNED)
        if self.layout.plots_tmp.exists():
            for leftover in self.layout.plots_tmp.iterdir():
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        known = {p.seed for p in index.plots()}
        for path in sorted(self.layout.plots.glob("plot-k*.plot")):
            parsed = parse_plot_filename(path.name)
            if parsed is None or parsed[1].hex() in known:
                continue
            k, seed = parsed
            try:
                verify_header(path, plot_id(self.hotkey, seed), k)
            except PlotError as exc:
                self.bus.publish(ErrorEvent(message=f"ignoring {path.name}: {exc}", source=self.source))
                continue
            index.add_planned([(seed.hex(), k, path.stat().st_size)])
            index.mark_done(seed.hex(), path.stat().st_size, 0.0)
            self.bus.log(f"adopted plot file {path.name} found without an index row", source=self.source)
        for seed, problem in self.integrity_problems():
            self.forget_plot(seed, index.get(seed).k)
            self.bus.publish(ErrorEvent(message=f"repair: {problem}; it will be replotted", source=self.source))
        self.refresh_counts()

    def forget_plot(self, seed: str, k: int) -> None:
        """Drop a plot: the index row first, so a kill before the unlink leaves an orphan file
        that the next recovery re-adopts, never a listed plot without its file."""
        self.index.remove([seed])
        (self.layout.plots / plot_filename(k, bytes.fromhex(seed))).unlink(missing_ok=True)

    def plots_on_disk_bytes(self) -> int:
        index = self._existing_index()
        return index.bytes_in(*ON_DISK) if index is not None else 0

    def free_for_shards(self, needed: int) -> int:
        """Client shards need ``needed`` more bytes of the share now: drop finished plots, smallest
        first, until they fit (docs/design.md#client-data: audited shard bytes earn like plot bytes, so trading a
        plot for a shard costs the miner nothing). Plots being made are left alone. Returns the
        bytes freed; the next reallocation plans around the larger reserve."""
        index = self._existing_index()
        if index is None or needed <= 0:
            return 0
        freed = 0
        for row in sorted(index.plots(PlotState.DONE, PlotState.VERIFIED), key=lambda r: (r.bytes, r.seed)):
            if freed >= needed:
                break
            self.forget_plot(row.seed, row.k)
            freed += row.bytes
            self.bus.publish(PlotRemoved(seed=row.seed, k=row.k, reason="client shards need the room",
                                         source=self.source))
        if freed:
            self.refresh_counts()
        return freed

    def integrity_problems(self) -> list[tuple[str, str]]:
        """(seed, what is wrong) for plots the index lists but the disk cannot prove. Read-only."""
        index = self._existing_index()
        if index is None:
            return []
        problems: list[tuple[str, str]] = []
        for row in index.plots(PlotState.DONE, PlotState.VERIFIED):
            path = self.layout.plots / plot_filename(row.k, bytes.fromhex(row.seed))
            if not path.exists():
                problems.append((row.seed, f"plot k{row.k} {row.seed[:8]} is listed in {self.layout.miner_db.name} "
                                           f"but {path} is missing"))
                continue
            try:
                verify_header(path, plot_id(self.hotkey, bytes.fromhex(row.seed)), row.k)
            except PlotError as exc:
                problems.append((row.seed, str(exc)))
        return problems

    def check(self, repair: bool = False) -> None:
        """Refuse to start (before any write) when listed plots are missing or corrupt, unless repairing."""
        problems = [] if repair else self.integrity_problems()
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise PlotError(f"{problems[0][1]}{more}: restore the file(s), or run `tensorage allocate --repair` "
                            f"to forget them and plot again (nothing was changed)")

    # -- doing the work --------------------------------------------------------------------
    async def allocate(self, size_bytes: Optional[int] = None, repair: bool = False) -> AllocationDone:
        """Recover from any earlier kill, plan the share and make every planned plot."""
        async with self._lock:
            self.recover(repair=repair)
            self._apply(self.plan(size_bytes))
            return await self._make_plots()

    async def _off_loop(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self._io, func, *args)

    async def reallocate(self) -> PartitionPlan:
        """Follow the current client reserve and free space; returns the plan it applied. A full
        device is a :class:`DiskFull` that says so (index rows change in transactions and a plot's
        file goes only after its row, so a failed write loses nothing)."""
        try:
            return await self._reallocate()
        except Exception as exc:
            known = disk_full(exc, self.layout.root, "the plot index") or (
                exc if isinstance(exc, NotEnoughSpace) else None)
            if known is None:
                raise
            self.status.last_error = str(known)  # `status` and the console say why plotting stopped
            raise known from None

    async def _reallocate(self) -> PartitionPlan:
        async with self._lock:
            await self._off_loop(self.recover, True)
            try:
                plan = self.plan()
            except NotEnoughSpace as exc:
                # The device filled up under us (other files): keep every plot, plot nothing new, and
                # fail the job with why. The plots are not what filled it; removing them would lose
                # what the operator set.
                device = self.device()
                if device.free < safety_margin(device.total):
                    raise DiskFull(f"the disk under {self.layout.root} is full ({device.free / 1e6:.1f} MB free): "
                                   f"every plot is kept and none is made; free some space on it (or lower "
                                   f"--size_in_gb) and the next run plots again") from None
                raise NotEnoughSpace(f"every plot is kept and none is made: {exc}") from None
            self._apply(plan)
            await self._make_plots()
            return plan

    def _apply(self, plan: PartitionPlan) -> None:
        self._planned_shard_bytes = plan.shard_bytes
        index = self.index
        for p in plan.remove:
            self.forget_plot(p.seed, p.k)
            self.bus.publish(PlotRemoved(seed=p.seed, k=p.k, reason=plan.remove_reason, source=self.source))
        planned = index.plots(PlotState.PLANNED)
        wanted = list(plan.add)
        keep_rows: list[str] = []
        for row in planned:
            if row.k in wanted:
                wanted.remove(row.k)
                keep_rows.append(row.seed)
        index.remove([r.seed for r in planned if r.seed not in keep_rows])
        index.add_planned([(os.urandom(32).hex(), k, estimated_plot_bytes(k)) for k in wanted])
        self.refresh_counts()
        self.bus.publish(PlanReady(
            size_bytes=plan.size_bytes, plot_bytes=plan.plot_bytes, reserve_bytes=plan.reserve_bytes,
            temp_bytes=plan.temp_bytes, free_bytes=plan.free_bytes, plots=plan.plot_ks, to_make=len(plan.add),
            to_remove=len(plan.remove), disk=self.disk_label, source=self.source,
        ))

    def _share_free(self, inflight_peak: int) -> int:
        """Bytes a new plot may still take: within the share and on the device."""
        on_disk = self.index.bytes_in(PlotState.DONE, PlotState.VERIFIED) + self.shard_bytes()
        share = self.share_size - on_disk - inflight_peak
        device = self.device().free - inflight_peak
        return min(share, device)

    def _shards_took_the_room(self, need: int) -> bool:
        """A plot of ``need`` peak bytes would fit the share but for the client shards in it."""
        shards = self.shard_bytes()
        if shards <= 0:
            return False
        plots = self.index.bytes_in(PlotState.DONE, PlotState.VERIFIED)
        return self.share_size - plots >= need > self.share_size - plots - shards and self.device().free + shards >= need

    @staticmethod
    def _concurrent_fit(pending: list, free: int, slots: int) -> int:
        """How many of the next pending plots can start now (threads are split among them)."""
        n = 0
        for row in pending[:max(0, slots)]:
            if peak_bytes(row.k) > free:
                break
            free -= peak_bytes(row.k)
            n += 1
        return n

    async def _make_plots(self) -> AllocationDone:
        index = self.index
        began = time.monotonic()
        if not self.settings.disable_verify:
            for row in index.plots(PlotState.DONE):
                await self._verify_existing(row)
        pending = list(index.plots(PlotState.PLANNED))
        st = self.status
        st.busy, st.started_at, st.made_this_run, st.last_error = bool(pending), time.monotonic(), 0, ""
        st.work_total, st.work_done = sum(seconds_per_plot(r.k) for r in pending), 0.0
        workers = max(1, self.settings.workers)
        running: dict[asyncio.Task, object] = {}
        failures = failed_this_run = 0
        try:
            while pending or running:
                inflight = sum(peak_bytes(r.k) for r in running.values())
                free = self._share_free(inflight)
                fits = self._concurrent_fit(pending, free, workers - len(running))
                for row in pending[:fits]:
                    threads = max(1, self.cpus // (len(running) + fits))
                    running[asyncio.create_task(self._make_one(row, threads=threads))] = row
                del pending[:fits]
                if not running and self.shard_bytes() > getattr(self, "_planned_shard_bytes", 0):
                    # client shards took the room since the plan: the next reallocation plans around them
                    index.remove([r.seed for r in pending])
                    self.bus.log(f"client shards took the room of {len(pending)} planned plots; the next "
                                 f"reallocation plans around them", source=self.source)
                    pending.clear()
                    break
                if not running and self._shards_took_the_room(peak_bytes(pending[0].k)):
                    # a share full of client shards is a state, not a failure: the plots wait for room
                    index.remove([r.seed for r in pending])
                    self.bus.log(f"client shards fill the share: {len(pending)} planned plot(s) wait until "
                                 f"they leave room", source=self.source)
                    pending.clear()
                    break
                if not running:
                    need = peak_bytes(pending[0].k)
                    raise NotEnoughSpace(
                        f"no room to build a k={pending[0].k} plot ({need / 1e9:.3f} GB while plotting, "
                        f"{max(0, self._share_free(0)) / 1e9:.3f} GB free in the share): free some disk space "
                        f"or lower --size_in_gb, then run again")
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    row = running.pop(task)
                    st.running.pop(row.seed, None)
                    st.work_done += seconds_per_plot(row.k)
                    exc = task.exception()
                    if exc is None:
                        failures = 0
                        continue
                    if not isinstance(exc, PlotError):
                        raise exc
                    failures += 1
                    failed_this_run += 1
                    st.last_error = str(exc)
                    index.set_state(row.seed, PlotState.FAILED)
                    self.bus.publish(ErrorEvent(message=str(exc), source=self.source))
                    if failures >= MAX_CONSECUTIVE_FAILURES:
                        raise PlotError(f"{failures} plots failed in a row, last: {exc}")
        except BaseException:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for row in running.values():
                if index.get(row.seed) and index.get(row.seed).state == PlotState.PLOTTING.value:
                    index.set_state(row.seed, PlotState.PLANNED)
            raise
        finally:
            st.busy = False
            st.running.clear()
            self.refresh_counts()
        done = AllocationDone(plots=st.done, verified=st.verified, plot_bytes=st.plot_bytes,
                              seconds=time.monotonic() - began, disk=self.disk_label, source=self.source,
                              failed=failed_this_run, last_error=st.last_error if failed_this_run else "")
        self.bus.publish(done)
        return done

    async def _make_one(self, row, threads: int) -> None:
        seed = bytes.fromhex(row.seed)
        pid = plot_id(self.hotkey, seed)
        job = PlotJob(tmp_root=self.layout.plots_tmp, final_dir=self.layout.plots, filename=plot_filename(row.k, seed),
                      k=row.k, plot_id=pid, threads=threads, verify=not self.settings.disable_verify)
        self.index.set_state(row.seed, PlotState.PLOTTING)
        flight = self.status.running[row.seed] = PlotInFlight(seed=row.seed, k=row.k)

        def progress(fraction: float) -> None:
            flight.fraction = fraction
            st = self.status
            self.bus.publish(PlotProgress(seed=row.seed, k=row.k, fraction=fraction, done=st.done,
                                          total=st.planned, rate_per_hour=st.rate_per_hour, eta_s=st.eta_s,
                                          source=self.source))

        result = await run_plot(job, progress)
        self.index.mark_done(row.seed, result.bytes, result.seconds)
        st = self.status
        st.made_this_run += 1
        st.done += 1
        st.plot_bytes += result.bytes
        self.bus.publish(PlotDone(seed=row.seed, k=row.k, bytes=result.bytes, seconds=result.seconds,
                                  done=st.done, total=st.planned, source=self.source))
        if result.verified:
            self.index.mark_verified(row.seed, result.proofs_checked)
            st.verified += 1
            self.bus.publish(PlotVerified(seed=row.seed, k=row.k, proofs=result.proofs_checked,
                                          expected=proof_rate(row.k), ok=True, source=self.source))

    async def _verify_existing(self, row) -> None:
        """A plot that finished before a kill but was never verified."""
        seed = bytes.fromhex(row.seed)
        path = self.layout.plots / plot_filename(row.k, seed)
        try:
            proofs = await asyncio.to_thread(verify_plot, path, plot_id(self.hotkey, seed), row.k)
        except PlotError as exc:
            self.forget_plot(row.seed, row.k)
            self.bus.publish(PlotVerified(seed=row.seed, k=row.k, proofs=0, expected=proof_rate(row.k), ok=False,
                                          source=self.source))
            self.bus.publish(ErrorEvent(message=f"{exc}; it will be replotted", source=self.source))
            return
        self.index.mark_verified(row.seed, proofs)
        self.bus.publish(PlotVerified(seed=row.seed, k=row.k, proofs=proofs, expected=proof_rate(row.k), ok=True,
                                      source=self.source))

    def prepare_validator(self) -> Path:
        """--validator: a validator's database (scores, rounds, weights; no hash DB)."""
        from ..storage.validator_db import ValidatorStore

        self.layout.ensure()
        ValidatorStore(self.layout.validator_state_db).close()
        return self.layout.validator_state_db

    def release_index(self) -> None:
        """Close the plot index without a word to the disk it is on (a lost disk: the next use
        reopens it once the disk reads again)."""
        index, self._index = self._index, None
        if index is not None:
            with contextlib.suppress(Exception):
                self._io.submit(index.close).result(timeout=5)
            with contextlib.suppress(Exception):
                index.close()

    def close(self) -> None:
        if self._index is not None:
            with contextlib.suppress(RuntimeError):  # the recovery thread's connection, if it has one
                self._io.submit(self._index.close).result()
            self._index.close()
            self._index = None
        self._io.shutdown(wait=False)


def verify_header(path: Path, expected_id: bytes, k: int) -> None:
    from ..proofs.chia import plot_header

    try:
        header_id, header_k = plot_header(path)
    except PlotError:
        raise PlotError(f"{path.name} is not a readable plot (corrupt or truncated)") from None
    if header_id != expected_id or header_k != k:
        raise PlotError(f"{path.name} was not made for this hotkey at k={k}")

