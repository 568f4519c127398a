"""The partition planner: pure arithmetic over device space, plots and shards."""

from __future__ import annotations

import random

import pytest

from tensorage.config import GB, PROFILES
from tensorage.errors import NotEnoughSpace
from tensorage.proofs.plots import estimated_plot_bytes, peak_bytes
from tensorage.storage.layout import DeviceSpace
from tensorage.storage.partition import ExistingPlot, plan_partition

FINNEY = PROFILES["finney"]
DEVNET = PROFILES["devnet"]
BIG_DISK = DeviceSpace(total=4000 * GB, free=3000 * GB)


def assert_plottable_in_order(plan, size, shard_bytes=0):
    """Making the plan's plots in order never needs more than the share."""
    used = sum(p.bytes for p in plan.keep) + shard_bytes
    for k in plan.add:
        assert used + peak_bytes(k) <= size, (k, used)
        used += estimated_plot_bytes(k)
    assert plan.plot_bytes + plan.reserve_bytes <= size


def test_default_100_gb_on_finney_plans_several_sizes_at_or_above_min_k():
    plan = plan_partition(100 * GB, BIG_DISK, FINNEY)
    ks = plan.plot_ks
    assert len(set(ks)) >= 2, ks
    assert min(ks) >= FINNEY.min_k
    assert plan.plot_bytes >= 0.5 * 100 * GB  # a useful share of the disk holds proofs
    assert plan.reserve_bytes >= 10 * GB
    assert_plottable_in_order(plan, 100 * GB)
    assert plan.add == sorted(plan.add, reverse=True)  # largest first


@pytest.mark.parametrize("seed", range(5))
def test_random_sizes_always_plot_in_order(seed):
    rng = random.Random(seed)
    for _ in range(50):
        size = int(rng.uniform(0.02, 5) * GB)
        plan = plan_partition(size, BIG_DISK, DEVNET)
        assert plan.add, size
        assert_plottable_in_order(plan, size)


def test_size_larger_than_free_is_refused_with_what_fits():
    disk = DeviceSpace(total=100 * GB, free=40 * GB)
    with pytest.raises(NotEnoughSpace) as exc:
        plan_partition(100 * GB, disk, FINNEY)
    message = str(exc.value)
    assert "40.00 GB free" in message and "--size_in_gb 39" in message


def test_share_too_small_for_one_plot_is_refused():
    with pytest.raises(NotEnoughSpace) as exc:
        plan_partition(1 * GB, BIG_DISK, FINNEY)
    assert "too small for one k=29 plot" in str(exc.value)


def test_space_already_used_by_us_counts_as_available():
    disk = DeviceSpace(total=10 * GB, free=int(0.25 * GB))  # margin 0.2 GB: 0.05 GB free for us
    existing = [ExistingPlot(seed=f"{i:064x}", k=20, bytes=17 * 10**6) for i in range(5)]
    with pytest.raises(NotEnoughSpace):
        plan_partition(int(0.12 * GB), disk, DEVNET)
    plan = plan_partition(int(0.12 * GB), disk, DEVNET, existing=existing)
    assert len(plan.keep) == 5


def test_reserve_growth_removes_plots_and_shrink_adds_them():
    size = int(0.08 * GB)
    first = plan_partition(size, BIG_DISK, DEVNET)
    existing = [ExistingPlot(seed=f"{i:064x}", k=k, bytes=estimated_plot_bytes(k)) for i, k in enumerate(first.add)]
    steady = plan_partition(size, BIG_DISK, DEVNET, existing=existing)
    assert not steady.add and not steady.remove
    grown = plan_partition(size, BIG_DISK, DEVNET, existing=existing, shard_bytes=30 * 10**6)
    assert grown.remove and not grown.add
    assert grown.plot_bytes + grown.reserve_bytes <= size
    kept = grown.keep
    shrunk = plan_partition(size, BIG_DISK, DEVNET, existing=kept, shard_bytes=0)
    assert shrunk.add and not shrunk.remove
