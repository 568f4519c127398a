"""Snapshots of the main screens at 80x24 and 120x40, from fixed state (no clocks, ports or
generated hotkeys). Update after a deliberate change with `pytest tests/tui --snapshot-update`
and look at the report before committing."""

from __future__ import annotations

import pytest

from tensorage.tui.app import ConsoleApp

from tensorage.engines.snapshot import DiskState

from .conftest import StaticBackend, feed_fixed_events, settle

SIZES = [(80, 24), (120, 40)]
SCREENS = [("overview", "1"), ("disk", "2"), ("challenges", "3"), ("weights", "4"), ("jobs", "5"), ("logs", "6"),
           ("objects", "7")]


def fixed_app() -> ConsoleApp:
    backend = StaticBackend()
    feed_fixed_events(backend.bus)
    return ConsoleApp(backend, start_engines=False)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen,key", SCREENS, ids=[s for s, _ in SCREENS])
def test_screen(snap_compare, screen, key, size):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_wizard_preview(snap_compare, size):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("enter")  # the default path
        await settle(pilot)
        await pilot.press("enter")  # the suggested size
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=size, run_before=run_before)


def test_wizard_refusal_80x24(snap_compare):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("ctrl+u", *"5000", "enter")
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


def test_help_80x24(snap_compare):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("5", "question_mark")
        await settle(pilot)

    assert snap_compare(fixed_app(), terminal_size=(80, 24), run_before=run_before)


class TwoDiskBackend(StaticBackend):
    """miner-0 with two disks, the second lost (its plots out of the listing)."""

    def load_node_files(self) -> dict:
        snaps = super().load_node_files()
        base = "/srv/tensorage/devnet/nodes/miner-0"
        snaps["miner-0"].disks = [
            DiskState(path=base, home=True, share_bytes=15_000_000, device_total=500 * 10**9,
                      device_free=120 * 10**9, plots=2, planned=2, plot_bytes=7_800_000),
            DiskState(path="/mnt/disk-b/tensorage", state="lost", share_bytes=15_000_000,
                      reason="/mnt/disk-b/tensorage is gone (removed, renamed or unmounted)", since=0.0),
        ]
        return snaps


def test_disk_screen_two_disks_one_lost_80x24(snap_compare):
    """Each disk on its own line: path, ok with share/plots/free, or lost with the reason."""
    backend = TwoDiskBackend()
    feed_fixed_events(backend.bus)

    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)

    assert snap_compare(ConsoleApp(backend, start_engines=False), terminal_size=(80, 24), run_before=run_before)
