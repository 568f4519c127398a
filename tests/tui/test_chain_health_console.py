"""The console says when a node cannot reach its chain: in the title bar (every screen) and on the
Overview, at 80x24 as well as wider."""

from __future__ import annotations

import pytest

from tensorage.engines.snapshot import ChainHealthState
from tensorage.tui.app import ConsoleApp
from tensorage.tui.widgets.chrome import NavBar

from .conftest import NOW, StaticBackend, feed_fixed_events, settle


class ChainDownBackend(StaticBackend):
    """The fixed devnet, with validator-1's chain unreachable for 2 minutes and the rest ok."""

    def load_node_files(self) -> dict:
        snaps = super().load_node_files()
        for name, snap in snaps.items():
            snap.chain = ChainHealthState(state="ok", since=NOW - 600, last_ok_at=NOW - 1)
        snaps["validator-1"].chain = ChainHealthState(
            state="unreachable", since=NOW - 125, last_ok_at=NOW - 126, failures=6, next_retry=NOW + 32,
            last_error="ChainStalled: reading the block on devnet got no answer within 5s")
        return snaps


def screen_text(app: ConsoleApp) -> str:
    """What the screen shows, as plain text (the SVG screenshot spells spaces as entities)."""
    import html
    import re

    svg = app.export_screenshot()
    return html.unescape(" ".join(re.findall(r">([^<]*)</text>", svg))).replace("\xa0", " ")


def app_with(backend) -> ConsoleApp:
    feed_fixed_events(backend.bus)
    return ConsoleApp(backend, start_engines=False)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_a_node_whose_chain_is_down_shows_in_the_title_bar_and_overview(size):
    app = app_with(ChainDownBackend())
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        nav = app.screen.query_one(NavBar)
        assert "⚠ chain down" in nav.status
        assert "⚠ chain down" in nav.render().plain, "the title bar must keep it in view"
        overview = screen_text(app)
        assert "chain link" in overview and "validator-1" in overview
        assert "2m 05s" in overview and "retry in 32s" in overview
        await pilot.press("5")  # another screen: the title bar still says it
        await settle(pilot)
        assert "⚠ chain down" in app.screen.query_one(NavBar).render().plain


async def test_every_node_ok_reads_ok_and_no_warning():
    class AllOk(StaticBackend):
        def load_node_files(self) -> dict:
            snaps = super().load_node_files()
            for snap in snaps.values():
                snap.chain = ChainHealthState(state="ok", since=NOW - 600)
            return snaps

    app = app_with(AllOk())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "chain down" not in app.screen.query_one(NavBar).status
        assert "✓ ok on 5 nodes" in screen_text(app)


def test_a_job_backing_off_reads_retry_not_failed():
    from tensorage.scheduler import JobInfo
    from tensorage.tui.screens.jobs import state_text

    info = JobInfo(id="sync", seconds=10, next_run=NOW + 8, paused=False, runs=4, last_ok=False,
                   last_result="ChainStalled: ...", last_duration_s=5.0, last_run_at=NOW - 5, running=False,
                   chain_failures=3, retry_at=NOW + 8)
    assert state_text(info).plain == "retry #3 5.00s"
    info.chain_failures = 0
    assert state_text(info).plain == "FAILED 5.00s"
