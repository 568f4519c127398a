"""A miner's disks: one :class:`Allocator` per ``--db_root_path`` directory, the share split among
them, and which of them are lost.

The rules (docs/operators.md, "Several disks"):

* ``--size_in_gb`` is the node's total. Each disk keeps what tensorage holds on it and the rest is
  split in proportion to the room each has left (:func:`split_share`); one disk gets all of it, as
  before. Directories of one filesystem share its free space evenly.
* The first directory is the node's home: node.json, share.json, the lock, the validator indexes,
  keys and the client shards (so the client reserve) live there. Every disk keeps its own plot index
  (``index/miner.sqlite``) next to its plots, so a disk carries its records with it.
* A disk is lost when its root is gone, is on another device than when it was seen (unmounted), or
  its index or plots cannot be read (EIO from a probe, a lookup or a scrub). Its plots leave the
  listing; nothing of it is deleted or planned. It returns once it reads again and its plots'
  headers check out (a plot that does not is forgotten and replotted).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import peewee as pw

from ..checks import existing_parent
from ..config import Settings
from ..errors import NotEnoughSpace
from ..events import AllocationDone, DiskLost, DiskReturned, EventBus, PlotRemoved
from ..storage.disk_probe import is_io_error, probe
from ..storage.layout import Layout, device_space
from ..storage.lock import NodeLock
from ..storage.models import PlotState
from ..storage.partition import PartitionPlan
from .allocator import ON_DISK, Allocator, AllocatorStatus

@dataclass
class Disk:
    allocator: Allocator
    state: Literal["ok", "lost"] = "ok"
    reason: str = ""
    since: float = field(default_factory=time.time)
    device_id: Optional[int] = None  # st_dev of the root when it was last seen well
    available: int = 0  # bytes it could give when last seen (its weight in the split while lost)
    used: int = 0  # bytes tensorage held on it when last seen
    queue: str = ""  # its proof lookup queue: the first of the node's disks on the same device

    @property
    def root(self) -> Path:
        return self.allocator.layout.root

    @property
    def layout(self) -> Layout:
        return self.allocator.layout

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def split_share(total: int, available: list[int], used: Optional[list[int]] = None) -> list[int]:
    """``total`` over the disks. Each keeps what tensorage already holds on it (``used``) and the rest
    goes in proportion to the room each has left, so a disk whose free space grows (or a directory
    whose mount vanished and now shows the root filesystem) never costs another disk its plots. A
    total below what is held is split in proportion to what each disk can give. The rounding
    remainder goes to the first disk."""
    used = used or [0] * len(available)
    held = sum(used)
    if total >= held:
        base, rest, weights = list(used), total - held, [max(0, a - u) for a, u in zip(available, used)]
    else:
        base, rest, weights = [0] * len(available), total, [max(0, a) for a in available]
    room = sum(weights)
    extra = [rest * w // room for w in weights] if room > 0 else [0] * len(available)
    extra[0] += rest - sum(extra)
    return [b + e for b, e in zip(base, extra)]


def merge_plans(plans: list[PartitionPlan]) -> PartitionPlan:
    """One plan for the whole node (what `allocate` and the wizard show); ``disks`` keeps each."""
    merged = PartitionPlan(
        requested_bytes=sum(p.requested_bytes for p in plans), size_bytes=sum(p.size_bytes for p in plans),
        device_total=sum(p.device_total for p in plans), device_free=sum(p.device_free for p in plans),
        margin_bytes=sum(p.margin_bytes for p in plans), shard_bytes=sum(p.shard_bytes for p in plans),
        reserve_bytes=sum(p.reserve_bytes for p in plans),
        keep=[x for p in plans for x in p.keep], remove=[x for p in plans for x in p.remove],
        add=[k for p in plans for k in p.add],
        remove_reason="; ".join(p.remove_reason for p in plans if p.remove_reason), disks=plans)
    return merged


class DiskSet:
    """Every disk of a miner, with the one-disk :class:`Allocator`'s surface (plan, allocate,
    reallocate, check, wipe) over all of them; the home disk's for what only it holds."""

    def __init__(self, settings: Settings, hotkey: str, bus: Optional[EventBus] = None,
                 source: str = "allocator") -> None:
        self.bus = bus or EventBus()
        self.source = source
        self.hotkey = hotkey
        self.disks = [Disk(Allocator(settings, hotkey, self.bus, source, root=root, holds_shards=i == 0))
                      for i, root in enumerate(settings.db_roots)]
        self._settings = settings
        self._locks = [NodeLock(d.layout) for d in self.disks[1:]]
        for d in self.disks if len(self.disks) > 1 else []:
            d.allocator.disk_label = str(d.root)
        self._count_shared_devices()

    # -- the one-disk surface ---------------------------------------------------------------
    @property
    def home(self) -> Allocator:
        return self.disks[0].allocator

    @property
    def layout(self) -> Layout:
        return self.home.layout

    @property
    def cpus(self) -> int:
        return self.home.cpus

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._settings = settings
        for d in self.disks:
            d.allocator.settings = settings

    @property
    def index(self):
        """The home disk's plot index (a one-disk node's only one)."""
        return self.home.index

    def _count_shared_devices(self) -> None:
        devices: dict[int, list[Disk]] = {}
        for d in self.disks:
            try:
                devices.setdefault(os.stat(existing_parent(d.root)).st_dev, []).append(d)
            except OSError:
                continue
        for same in devices.values():
            for d in same:
                d.allocator.shared_device = len(same)
                d.queue = str(same[0].root)  # one head: directories of one device share a lookup queue

    def _available(self, d: Disk) -> int:
        if d.ok:
            d.available = d.allocator.max_share_bytes()
        return d.available

    def _used(self, d: Disk) -> int:
        if d.ok:
            d.used = sum(p.bytes for p in d.allocator.existing_plots()) + d.allocator.shard_bytes()
        return d.used

    def split(self, total: Optional[int] = None) -> list[int]:
        """Each disk's part of the share (lost disks keep the part they had), set on its allocator."""
        total = self.settings.size_bytes if total is None else total
        parts = split_share(total, [self._available(d) for d in self.disks], [self._used(d) for d in self.disks])
        for d, part in zip(self.disks, parts):
            d.allocator.share_bytes = part
        return parts

    def plan(self, size_bytes: Optional[int] = None) -> PartitionPlan:
        """The partition of every disk that is not lost; raises NotEnoughSpace for the node."""
        total = self.settings.size_bytes if size_bytes is None else size_bytes
        if len(self.disks) == 1:
            return self.home.plan(total)
        room = sum(self._available(d) for d in self.disks)  # a lost disk counts what it had
        if total > room:
            raise NotEnoughSpace(f"--size_in_gb {total / 1e9:g} does not fit: the {len(self.disks)} disks can give "
                                 f"{room / 1e9:.3f} GB together; use --size_in_gb {int(room / 1e6) / 1000:g} or "
                                 f"less, or free some space")
        plans: list[PartitionPlan] = []
        too_small: Optional[NotEnoughSpace] = None
        for d, part in zip(self.disks, split_share(total, [d.available for d in self.disks],
                                                   [self._used(d) for d in self.disks])):
            if not d.ok:
                continue
            try:
                plans.append(d.allocator.plan(part))
            except NotEnoughSpace as exc:  # this disk's part is too small for a plot: it holds none
                too_small = too_small or exc
        if not any(p.plot_ks for p in plans):
            if too_small is not None:
                raise too_small
            if not plans:
                raise NotEnoughSpace("every --db_root_path disk is lost: bring one back (see `tensorage status`)")
        return merge_plans(plans)

    def max_share_bytes(self) -> int:
        return sum(self._available(d) for d in self.disks if d.ok)

    def existing_plots(self):
        return [p for d in self.disks if d.ok for p in d.allocator.existing_plots()]

    def check(self, repair: bool = False) -> None:
        for d in self.disks:
            d.allocator.check(repair=repair)

    def recover(self, repair: bool = False) -> None:
        for d in self.disks:
            if d.ok:
                d.allocator.recover(repair=repair)

    def wipe(self) -> None:
        for d in self.disks:
            d.allocator.wipe()

    def refresh_counts(self) -> None:
        for d in self.disks:
            if d.ok:
                d.allocator.refresh_counts()

    def prepare_validator(self) -> Path:
        return self.home.prepare_validator()

    def ensure(self) -> None:
        """Create every disk's directories (a lost disk's are never recreated elsewhere)."""
        for d in self.disks:
            if d.ok:
                d.layout.ensure()
                d.device_id = os.stat(d.root).st_dev
        self.split()

    def lock(self, role: str) -> None:
        """Hold every disk after the first, as the node holds its home (storage/lock.py): two nodes
        sharing a disk would each take the other's plots for corrupt ones. Raises NodeLocked."""
        try:
            for lock in self._locks:
                lock.acquire(role)
        except BaseException:
            self.unlock()
            raise

    def unlock(self) -> None:
        for lock in self._locks:
            lock.release()

    async def allocate(self, size_bytes: Optional[int] = None, repair: bool = False) -> AllocationDone:
        """Recover, plan and plot every disk, one disk after the other (plotting is CPU-bound:
        ``--workers`` plots at a time in all)."""
        self.split(size_bytes)
        began = time.monotonic()
        failed, errors = 0, []
        for d in self.disks:
            if d.ok and self._plots_fit(d):
                one = await d.allocator.allocate(d.allocator.share_bytes, repair=repair)
                failed += one.failed
                errors += [f"{d.allocator.disk_label or d}: {one.last_error}"] if one.failed else []
        st = self.status
        return AllocationDone(plots=st.done, verified=st.verified, plot_bytes=st.plot_bytes,
                              seconds=time.monotonic() - began, source=self.source, failed=failed,
                              last_error="; ".join(errors))

    async def reallocate(self) -> PartitionPlan:
        """Reallocate every disk that is not lost; a disk that fails with an I/O error is lost, not
        the node."""
        for d in self.disks:  # never plan on a disk that went away since the last check
            reason = self.probe(d) if d.ok and d.device_id is not None else None
            if reason is not None:
                self.mark_lost(d, reason)
        self.split()
        plans = []
        failed: Optional[Exception] = None
        for d in self.disks:
            if not d.ok or not self._plots_fit(d):
                continue
            try:
                plans.append(await d.allocator.reallocate())
            except Exception as exc:
                reason = self.probe(d) or (f"{type(exc).__name__}: {exc}" if is_io_error(exc) else None)
                if reason is None:
                    failed = failed or exc  # the other disks still get their turn
                    continue
                self.mark_lost(d, reason)
        if failed is not None:
            raise failed
        return plans[0] if len(self.disks) == 1 and plans else merge_plans(plans)

    def _plots_fit(self, d: Disk) -> bool:
        """Whether a disk's part of the share can hold a plot (one disk: always tried, so that the
        allocator says why not). A disk whose part is too small holds none, and says so once."""
        if len(self.disks) == 1:
            return True
        try:
            d.allocator.plan()
        except NotEnoughSpace as exc:
            if d.reason != str(exc):
                d.reason = str(exc)
                self.bus.log(f"{d.root} holds no plots: {exc}", severity="warning", source=self.source)
            return False
        d.reason = ""
        return True

    # -- what only the home disk does -----------------------------------------------------------
    def home_share_bytes(self) -> int:
        """The home disk's part of the share: client shards count against it."""
        return self.home.share_size

    def plots_on_disk_bytes(self) -> int:
        return self.home.plots_on_disk_bytes()

    def free_for_shards(self, needed: int) -> int:
        return self.home.free_for_shards(needed)

    def forget_plot(self, seed: str, k: int, root: Optional[Path] = None) -> None:
        disk = self.disk_at(root) if root is not None else self.home_of_seed(seed)
        if disk is not None:
            disk.allocator.forget_plot(seed, k)

    def home_of_seed(self, seed: str) -> Optional[Disk]:
        for d in self.disks:
            if d.ok and d.allocator.index.get(seed) is not None:
                return d
        return None

    def disk_at(self, root: Path | str) -> Optional[Disk]:
        return next((d for d in self.disks if str(d.root) == str(root)), None)

    def held_rows(self, *states: PlotState) -> list[tuple[Disk, object]]:
        """(disk, index row) of the plots in ``states`` on every disk that is not lost."""
        out = []
        for d in self.disks:
            if not d.ok:
                continue
            try:
                out.extend((d, row) for row in d.allocator.index.plots(*states))
            except (OSError, pw.DatabaseError) as exc:  # SQLite's "disk I/O error" is EIO underneath
                self.mark_lost(d, self.probe(d) or f"its plot index cannot be read: {exc}")
        return out

    # -- lost and returned disks ----------------------------------------------------------------
    def probe(self, d: Disk) -> Optional[str]:
        """Why the disk cannot serve (None: it can)."""
        return probe(d.layout, d.device_id)

    def mark_lost(self, d: Disk, reason: str) -> None:
        """Take the disk's plots out of service (the caller republishes the listing)."""
        if not d.ok:
            return
        d.state, d.reason, d.since = "lost", reason, time.time()
        d.allocator.release_index()
        self.bus.publish(DiskLost(path=str(d.root), reason=reason, source=self.source))

    def _returns(self, d: Disk) -> int:
        """Blocking: reopen a disk that reads again and drop the plots that do not check out."""
        d.device_id = os.stat(d.root).st_dev
        a = d.allocator
        bad = a.integrity_problems()
        for seed, problem in bad:
            row = a.index.get(seed)
            a.forget_plot(seed, row.k)
            self.bus.publish(PlotRemoved(seed=seed, k=row.k, reason=f"after the disk returned: {problem}",
                                         source=self.source))
        a.refresh_counts()
        d.state, d.reason, d.since = "ok", "", time.time()
        held = len(a.index.plots(*ON_DISK))
        self.bus.publish(DiskReturned(path=str(d.root), plots=held, dropped=len(bad), source=self.source))
        return held

    def check_disks(self) -> list[str]:
        """Blocking: probe every disk; lose the ones that fail, bring back the ones that read again.
        Returns what changed, in words."""
        changes = []
        for d in self.disks:
            reason = self.probe(d)
            if d.ok and reason is not None:
                self.mark_lost(d, reason)
                changes.append(f"{d.root} lost: {reason}")
            elif not d.ok and reason is None:
                try:
                    held = self._returns(d)
                except Exception as exc:  # it went away again while being checked
                    d.allocator.release_index()
                    d.reason = f"{type(exc).__name__}: {exc}"
                    continue
                changes.append(f"{d.root} back with {held} plots")
        return changes

    def trouble(self, root: Path | str, reason: str) -> Optional[Disk]:
        """A lookup or scrub on ``root`` failed with ``reason``: the disk if that lost it."""
        d = self.disk_at(root)
        if d is None or not d.ok:
            return None
        lost = self.probe(d) or (f"I/O error: {reason}" if is_io_error(reason) else None)
        if lost is None:
            return None
        self.mark_lost(d, lost)
        return d

    # -- what the console and `status` show ---------------------------------------------------
    @property
    def status(self) -> AllocatorStatus:
        """All disks' plotting progress as one (each disk's allocator keeps its own)."""
        parts = [d.allocator.status for d in self.disks]
        if len(parts) == 1:
            return parts[0]
        busy = [s for s in parts if s.busy]
        return AllocatorStatus(
            planned=sum(s.planned for s in parts), done=sum(s.done for s in parts),
            verified=sum(s.verified for s in parts), plot_bytes=sum(s.plot_bytes for s in parts),
            running={k: v for s in parts for k, v in s.running.items()},
            started_at=min((s.started_at for s in busy if s.started_at), default=None),
            work_total=sum(s.work_total for s in busy), work_done=sum(s.work_done for s in busy),
            made_this_run=sum(s.made_this_run for s in parts), busy=bool(busy),
            last_error=next((s.last_error for s in parts if s.last_error), ""))

    def disk_states(self, held: dict[str, int]) -> list[dict]:
        """One entry per disk for node.json; ``held``: plots listed per disk root."""
        out = []
        for i, d in enumerate(self.disks):
            total = free = 0
            if d.ok:
                try:
                    dev = device_space(d.root)
                    total, free = dev.total, dev.free
                except OSError:
                    pass
            st = d.allocator.status
            out.append({"path": str(d.root), "home": i == 0, "state": d.state, "reason": d.reason,
                        "since": d.since, "share_bytes": d.allocator.share_size, "device_total": total,
                        "device_free": free, "plots": held.get(str(d.root), 0), "planned": st.planned,
                        "plot_bytes": st.plot_bytes})
        return out

    def close(self) -> None:
        for d in self.disks:
            d.allocator.close()

