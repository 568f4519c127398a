"""Issue 15, item 0: what a new user saw on a nine-node devnet at 80x24, 120x40 and larger. Every
row of every table is on screen or reachable by keys (no mouse), no cell is cut, and the header's
block follows the chain while a dialog is open. Pilot tests on fixed state (tests/tui/nine_nodes.py)."""

from __future__ import annotations

import re

import pytest

from tensorage.events import JobRan
from tensorage.tui.widgets.chrome import NavBar
from tensorage.tui.widgets.keyed_table import KeyedTable

from .conftest import screen_text, settle, until
from .nine_nodes import EXTRA, NineNodes, install, nine_node_app

SIZES = [(80, 24), (120, 40), (160, 50)]
NODES = ["validator-0", "validator-1"] + [f"miner-{i}" for i in range(7)]
MINERS = [f"miner-{i}" for i in range(7)]


@pytest.fixture(autouse=True)
def nine(monkeypatch):
    install(monkeypatch)


def row_lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip().startswith(name + " ")]


def in_table(app, table, names: list[str]) -> set[str]:
    """The names shown in ``table``'s own rows on screen (not elsewhere on the screen)."""
    r = table.region
    lines = screen_text(app).splitlines()[r.y:r.y + r.height]
    return {n for n in names if any(re.search(rf"(^|\s){re.escape(n)}\s", line[r.x:r.x + r.width] + " ")
                                    for line in lines)}


async def reachable(pilot, table_id: str, names: list[str]) -> set[str]:
    """The rows of ``table_id`` seen on screen, before and while moving through it by keys (tab to
    the table, then down to its end)."""
    app = pilot.app
    table = app.screen.query_one(table_id, KeyedTable)
    seen = in_table(app, table, names)
    for _ in range(8):  # tab until the table has the focus
        if app.focused is table:
            break
        await pilot.press("tab")
    else:
        return seen
    for _ in range(len(names) + 2):
        await pilot.press("down")
        await pilot.pause()
        seen |= in_table(app, table, names)
    return seen


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_jobs_node_pane_shows_every_node_or_scrolls_to_it_by_keys(size):
    app = nine_node_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        if size[1] >= 40:  # room enough: all nine at once
            shown = {n for n in NODES if row_lines(screen_text(app).split("node processes")[-1], n)}
            assert shown == set(NODES), screen_text(app)
        assert await reachable(pilot, "#nodes-table", NODES) == set(NODES), screen_text(app)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_disk_shows_every_miner_with_its_whole_eta(size):
    app = nine_node_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        text = screen_text(app)
        for name in MINERS:  # seven miners fit at 80x24 (header + 7 rows), whole
            lines = row_lines(text, name)
            assert lines, f"{name} hidden:\n{text}"
            want = "2 min" if name in EXTRA else ("18s" if name == "miner-2" else "done")
            assert lines[0].rstrip(" ▇▁▏▎▍▌▋▊▉█").endswith(want), f"{name}'s ETA cut:\n{text}"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_challenges_peers_show_every_miner_or_scroll_to_it_by_keys(size):
    app = nine_node_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        top = screen_text(app).split(" time ")[0]
        if size[1] >= 40:
            assert {n for n in MINERS if row_lines(top, n)} == set(MINERS), screen_text(app)
        assert await reachable(pilot, "#chal-peers", MINERS) == set(MINERS), screen_text(app)


class MovingChain(NineNodes):
    """The chain moves: each read is one block later."""

    block = 100

    def load_chain(self):
        mg, _, epoch = super().load_chain()
        self.block += 1
        return mg, self.block, epoch


DIALOGS = {"help": ("1", "question_mark"), "job result": ("5", "enter"), "palette": ("1", "ctrl+p"),
           "store prompt": ("7", "s")}


@pytest.mark.parametrize("dialog", list(DIALOGS))
async def test_the_header_block_follows_the_chain_while_a_dialog_is_open(dialog):
    app = nine_node_app(MovingChain)
    backend = app.backend
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen_key, open_key = DIALOGS[dialog]
        await pilot.press(screen_key)
        await settle(pilot)
        under = app.screen
        await pilot.press(open_key)
        await until(pilot, lambda: app.screen is not under, f"the {dialog} dialog to open", timeout=20)
        before = backend.block
        backend.bus.publish(JobRan(job_id="devnet_epoch", ok=True, duration_s=0.01, source="devnet"))
        await until(pilot, lambda: f"block {before + 1}" in under.query_one(NavBar).render().plain,
                    f"the header under the {dialog} dialog to show block {before + 1}", timeout=20)
        assert app.screen is not under  # still open


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_no_table_scrolls_sideways(size):
    """A table wider than its room gets a horizontal scrollbar, which cuts its last column and takes
    the row of its last line (80 columns, keys only)."""
    app = nine_node_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        wide = []
        for key in "1234567":
            await pilot.press(key)
            await settle(pilot)
            for table in app.screen.query(KeyedTable):
                room = table.scrollable_content_region.width
                if table.display and table.virtual_size.width > room:
                    wide.append(f"{key}:{table.id} {table.virtual_size.width} > {room}")
        assert wide == [], screen_text(app)


@pytest.mark.parametrize("size", [(80, 24), (80, 16)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("key,table_id,names", [("1", "#ov-metagraph", NODES), ("4", "#weights-table", MINERS),
                                                ("2", "#disk-table", MINERS)], ids=["overview", "weights", "disk"])
async def test_every_row_is_reachable_by_keys_on_a_small_terminal(size, key, table_id, names):
    app = nine_node_app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot)
        assert await reachable(pilot, table_id, names) == set(names), screen_text(app)
