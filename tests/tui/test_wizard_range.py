"""Issue 15, item 0: the wizard's size range is the range it accepts. The "fits here" line and the
refusals ("use … or more / or less") come from one function (storage.partition.share_range_gb),
each end is accepted when typed back and one step past it is refused; absurd entries (1e400, nan,
1e-400) are refused with a message that names what was typed."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from tensorage.config import GB, PROFILES
from tensorage.events import EventBus
from tensorage.storage.layout import DeviceSpace, safety_margin
from tensorage.storage.partition import min_share_bytes, share_bytes, share_range_gb
from tensorage.tui.app import ConsoleApp
from tensorage.tui.screens.wizard import WizardScreen
from tensorage.tui.sources import DevnetSource
from textual.widgets import Input

from .conftest import devnet_settings, screen_text, settle

TOTAL = 271 * GB
# free space whose largest share is an awkward number of bytes (the report's 83.367… GB)
DEVICE = DeviceSpace(total=TOTAL, free=83_367_654_321 + safety_margin(TOTAL))
FITS = re.compile(r"fits here: ([0-9.]+) GB to ([0-9.]+) GB")


def test_share_range_ends_are_accepted_and_one_step_past_is_not():
    rng = random.Random(15)
    for _ in range(20_000):
        lo_bytes = rng.randrange(1, 10**12)
        hi_bytes = lo_bytes + rng.randrange(0, 10**13)
        lo, hi = share_range_gb(lo_bytes, hi_bytes)
        assert share_bytes(lo) >= lo_bytes and share_bytes(round(lo - 0.001, 3)) < lo_bytes, lo_bytes
        if hi > 0:
            assert share_bytes(hi) <= hi_bytes and share_bytes(round(hi + 0.001, 3)) > hi_bytes, hi_bytes
    # the devnet's minimum, the one the new user saw as 0.016 in one line and 0.017 in the next
    assert share_range_gb(min_share_bytes(PROFILES["devnet"]), 10 * GB)[0] == 0.017


@pytest.fixture
def fixed_device(monkeypatch):
    """The device's free space held still: other processes on this machine write while we type."""
    import tensorage.tui.sources.base as base

    monkeypatch.setattr(base, "device_space", lambda path: DEVICE)


def wizard_app(root: Path) -> ConsoleApp:
    from tensorage.cli import node_passthrough
    from tensorage.engines.devnet import DevnetSupervisor

    settings = devnet_settings(root, workers=2)
    return ConsoleApp(DevnetSource(DevnetSupervisor(settings, EventBus(), node_args=node_passthrough(settings))),
                      start_engines=False)


async def enter(pilot, text: str) -> None:
    await pilot.press("ctrl+u")
    pilot.app.screen.query_one(Input).insert_text_at_cursor(text)
    await pilot.press("enter")
    await settle(pilot)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_wizard_accepts_the_range_it_shows_and_refuses_past_it_in_the_same_words(
        tmp_path, fixed_device, size):
    app = wizard_app(tmp_path / "devnet")
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        wiz = app.screen
        assert isinstance(wiz, WizardScreen)
        await enter(pilot, str(tmp_path / "new-miner"))
        assert wiz.step == "size", wiz.refusals
        shown = FITS.search(screen_text(app).replace("\n", " "))
        assert shown, screen_text(app)
        lo, hi = shown.group(1), shown.group(2)
        assert (lo, hi) == ("0.017", "83.367")
        for below, above in ((f"{float(lo) - 0.001:.3f}", f"{float(hi) + 0.001:.3f}"),):
            await enter(pilot, below)
            assert wiz.step == "size" and f"use {lo} GB or more" in wiz.refusals[-1], wiz.refusals
            await enter(pilot, above)
            assert wiz.step == "size" and f"use {hi} GB or less" in wiz.refusals[-1], wiz.refusals
        for accepted in (lo, hi):
            await enter(pilot, accepted)
            assert wiz.step == "preview", (accepted, wiz.refusals)
            await pilot.press("escape")
            await settle(pilot)
            assert wiz.step == "size"
        for typed, said in (("1e400", "1e400 GB is more than a petabyte"), ("nan", "'nan' is not a number"),
                            ("1e-400", "1e-400 GB is too small"), ("-2", "must be positive (got -2 GB)"),
                            ("5 TB", "'5 tb' is not a number")):
            await enter(pilot, typed)
            assert wiz.step == "size" and said in wiz.refusals[-1], (typed, wiz.refusals)
            assert "inf" not in wiz.refusals[-1] and said in screen_text(app).replace("\n", " ")
