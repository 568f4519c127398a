"""Plan the partition of a disk share: plots (capacity proofs) and a reserve for client shards.

Pure functions over numbers: planning writes nothing, so the wizard and
``allocate`` can show the plan before the operator confirms.

Rules:
* the share never exceeds what the device can give (free space + what tensorage already
  holds - a safety margin); a larger request is refused with the largest that fits;
* the reserve is the client shards already stored plus ``reserve_fraction`` of the share
  as headroom for new ones; plots get the rest;
* plots are planned largest first and a plot is only planned if its peak (temp files +
  final file) fits in the space not yet taken by plots and shards, so plotting in that
  order never runs out of room. The reserve's empty part doubles as temp space;
* reallocation keeps the largest existing plots that fit the budget and drops the rest
  (clients need the room), or plans new ones when space frees up.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Optional

from ..config import GB, NetworkProfile
from ..errors import NotEnoughSpace
from ..proofs.plots import estimated_plot_bytes, peak_bytes, working_bytes
from .layout import DeviceSpace, safety_margin

MAX_PLOTS = 100_000
# Single-thread seconds for a k=18 plot measured on this class of machine (1.0 s); each k
# doubles the entries and adds a bit per entry. Only for ETAs before plotting starts.
_K18_SECONDS = 1.0


@dataclass(frozen=True)
class ExistingPlot:
    seed: str
    k: int
    bytes: int


@dataclass
class PartitionPlan:
    requested_bytes: int
    size_bytes: int
    device_total: int
    device_free: int
    margin_bytes: int
    shard_bytes: int
    reserve_bytes: int
    keep: list[ExistingPlot] = field(default_factory=list)
    remove: list[ExistingPlot] = field(default_factory=list)
    add: list[int] = field(default_factory=list)
    remove_reason: str = ""  # why ``remove`` is not empty, in words an operator can check
    root: str = ""  # the disk (--db_root_path directory) planned; empty for a whole node's plan
    disks: list["PartitionPlan"] = field(default_factory=list)  # a node of several disks: each one's plan

    @property
    def plot_ks(self) -> list[int]:
        return sorted([p.k for p in self.keep] + self.add, reverse=True)

    @property
    def plot_bytes(self) -> int:
        return sum(p.bytes for p in self.keep) + sum(estimated_plot_bytes(k) for k in self.add)

    @property
    def free_bytes(self) -> int:
        """Share left over once the plan is done (reserve headroom included)."""
        return max(0, self.size_bytes - self.plot_bytes - self.shard_bytes)

    @property
    def temp_bytes(self) -> int:
        """Working space the largest plot still to make needs (taken from the free part)."""
        return working_bytes(max(self.add)) if self.add else 0

    def plot_seconds(self, workers: int, cpus: int) -> float:
        """Rough time to make the planned plots with this many parallel plots."""
        parallel = max(1, min(workers, len(self.add) or 1))
        threads = max(1, cpus // parallel)
        total = sum(seconds_per_plot(k) for k in self.add) / min(parallel, cpus)
        return total / (1 + 0.3 * (threads - 1))  # chiapos threads scale poorly

    def describe_plots(self) -> str:
        ks = self.plot_ks
        return ", ".join(f"{ks.count(k)}×k{k}" for k in sorted(set(ks), reverse=True)) or "none"


def seconds_per_plot(k: int) -> float:
    return _K18_SECONDS * 2 ** (k - 18) * (k / 18)


def reserve_bytes(size_bytes: int, shard_bytes: int, profile: NetworkProfile) -> int:
    """The client reserve: what clients stored plus headroom for what they will store."""
    return shard_bytes + int(profile.reserve_fraction * size_bytes)


def _gb(n: int) -> str:
    return f"{n / GB:.3g} GB"


def removal_reason(size_bytes: int, existing: list[ExistingPlot], shard_bytes: int, reserve: int,
                   profile: NetworkProfile) -> str:
    """Why a plan drops plots: the share is smaller than the plots, or client shards took the room."""
    plots = sum(p.bytes for p in existing)
    headroom = int(profile.reserve_fraction * size_bytes)
    if shard_bytes and plots + headroom <= size_bytes:
        return (f"client shards ({_gb(shard_bytes)}) need the room: the client reserve is {_gb(reserve)} of the "
                f"{_gb(size_bytes)} share")
    return (f"the share is {_gb(size_bytes)}: {_gb(plots)} of plots and a {_gb(reserve)} client reserve do not "
            f"fit in it")


def max_share_bytes(device: DeviceSpace, used_by_us: int) -> int:
    return max(0, device.free + used_by_us - safety_margin(device.total))


def share_bytes(size_in_gb: float) -> int:
    """A share typed in GB, in bytes (the one conversion: what is printed as accepted is accepted)."""
    return int(size_in_gb * GB)


def share_range_gb(min_bytes: int, max_bytes: int) -> tuple[float, float]:
    """The shares from ``min_bytes`` to ``max_bytes`` as an operator types them (GB, 3 decimals): the
    smallest such value not below the minimum and the largest not above the maximum. The wizard's
    "fits here" line and the refusals' "use … or more / or less" print these, so both agree and
    typing either back is accepted."""
    lo = math.ceil(min_bytes / GB * 1000) / 1000
    while share_bytes(lo) < min_bytes:  # float rounding
        lo = round(lo + 0.001, 3)
    hi = math.floor(max(0, max_bytes) / GB * 1000) / 1000
    while hi > 0 and share_bytes(hi) > max_bytes:
        hi = round(hi - 0.001, 3)
    return lo, hi


def min_share_bytes(profile: NetworkProfile) -> int:
    """Smallest share that can build one plot of the minimum k and keep a reserve."""
    return int(peak_bytes(profile.min_k) / (1 - profile.reserve_fraction)) + 1


def plan_partition(
    size_bytes: int,
    device: DeviceSpace,
    profile: NetworkProfile,
    existing: Optional[list[ExistingPlot]] = None,
    shard_bytes: int = 0,
    used_by_us: Optional[int] = None,
    holds_shards: bool = True,
) -> PartitionPlan:
    """``holds_shards``: client shards live on this disk, so it keeps the client reserve; a disk
    that holds none (every --db_root_path after the first) gives its whole share to plots."""
    existing = list(existing or [])
    if used_by_us is None:
        used_by_us = sum(p.bytes for p in existing) + shard_bytes
    margin = safety_margin(device.total)
    available = max_share_bytes(device, used_by_us)
    needed = min_share_bytes(profile)
    lo_gb, hi_gb = share_range_gb(needed, available)
    if size_bytes > available:
        raise NotEnoughSpace(
            f"--size_in_gb {size_bytes / GB:g} does not fit: the device has {device.free / GB:.2f} GB free"
            f" (+{used_by_us / GB:.2f} GB already used by tensorage, keeping a {margin / GB:.2f} GB margin);"
            f" use --size_in_gb {hi_gb:.3f} or less, or free some space"
        )
    if size_bytes < needed and not existing and shard_bytes == 0:
        raise NotEnoughSpace(
            f"--size_in_gb {size_bytes / GB:g} is too small for one k={profile.min_k} plot"
            f" ({peak_bytes(profile.min_k) / GB:.3f} GB while plotting, plus the client reserve);"
            f" use --size_in_gb {lo_gb:.3f} or more"
        )

    reserve = reserve_bytes(size_bytes, shard_bytes, profile) if holds_shards else 0
    plan = PartitionPlan(
        requested_bytes=size_bytes, size_bytes=size_bytes, device_total=device.total, device_free=device.free,
        margin_bytes=margin, shard_bytes=shard_bytes, reserve_bytes=reserve,
    )
    budget = size_bytes - reserve
    used = 0
    for plot in sorted(existing, key=lambda p: (p.k, p.bytes), reverse=True):
        if used + plot.bytes <= budget:
            plan.keep.append(plot)
            used += plot.bytes
        else:
            plan.remove.append(plot)

    if plan.remove:
        plan.remove_reason = removal_reason(size_bytes, existing, shard_bytes, reserve, profile)

    space_now = size_bytes - used - shard_bytes
    budget_left = budget - used
    count = len(plan.keep)
    while count < MAX_PLOTS:
        k = next((k for k in range(profile.max_k, profile.min_k - 1, -1)
                  if estimated_plot_bytes(k) <= budget_left and peak_bytes(k) <= space_now), None)
        if k is None:
            break
        plan.add.append(k)
        est = estimated_plot_bytes(k)
        budget_left -= est
        space_now -= est
        count += 1
    return plan
