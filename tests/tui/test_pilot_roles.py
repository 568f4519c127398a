"""Pilot tests with real engines on the console's event loop: a miner (jobs, palette, the
wizard running its allocator) and a validator challenging a real miner (challenges, weights)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from tensorage.engines.devnet import node_settings as apply_devnet_defaults
from tensorage.engines.run import build_node
from tensorage.events import EventBus
from tensorage.tui.app import ConsoleApp
from tensorage.tui.sources import LocalSource
from tensorage.tui.screens.wizard import WizardScreen
from tensorage.tui.widgets.keyed_table import KeyedTable

from .conftest import devnet_settings, screen_text, until, until_text

SIZE = (100, 30)


def node_settings(root: Path, name: str, **flags):
    return apply_devnet_defaults(devnet_settings(root, **{"wallet.name": name, **flags}))


def jobs_state(node) -> dict:
    return {j.id: j for j in node.jobs.state()}


async def select_job(pilot, job_id: str) -> None:
    table = pilot.app.screen.query_one("#jobs-table", KeyedTable)
    for _ in range(table.row_count):
        if (table.selected_key() or "").endswith("/" + job_id):
            return
        await pilot.press("down")
    raise AssertionError(f"job {job_id} not in the table")


async def test_miner_console_jobs_palette_and_wizard_allocation(plotted_devnet):
    settings = node_settings(plotted_devnet, "miner-0", size_in_gb=0.03, workers=2, seconds_per_reallocate=3600)
    node = build_node("miner", settings, EventBus())
    app = ConsoleApp(LocalSource(node))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.engine_state == "running" and jobs_state(node).get("reallocate")
                    and jobs_state(node)["reallocate"].runs >= 1, "the miner started and reallocated once")
        # Overview: who we are, from the engine and the chain
        await until(pilot, lambda: node.hotkey in screen_text(app) and "uid" in screen_text(app), "identity")
        text = await until_text(pilot, "4 plots held")  # the engine's own state
        assert "miner" in text and "miner-0/default" in text
        # Disk: the in-process allocator's status
        await pilot.press("2")
        await until(pilot, lambda: "4/4" in screen_text(app), "four verified plots")
        assert "verdicts stay with validators" in screen_text(app)
        # Jobs: pause, resume, run now, all on the real scheduler
        await pilot.press("5")
        await pilot.pause()
        await select_job(pilot, "scrub")
        await pilot.press("p")
        await until(pilot, lambda: jobs_state(node)["scrub"].paused, "scrub paused")
        await until(pilot, lambda: "paused" in screen_text(app), "paused shown")
        await pilot.press("u")
        await until(pilot, lambda: not jobs_state(node)["scrub"].paused, "scrub resumed")
        await select_job(pilot, "sync")
        runs = jobs_state(node)["sync"].runs
        await pilot.press("r")
        await until(pilot, lambda: jobs_state(node)["sync"].runs > runs, "sync ran now")
        # the command palette does the same
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"pause job: miner/sync")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: jobs_state(node)["sync"].paused, "sync paused from the palette")
        # the wizard: another path is refused for this miner, then a larger share is plotted for real
        await pilot.press("a")
        await pilot.pause()
        wiz = app.screen
        assert isinstance(wiz, WizardScreen)
        box = wiz.query_one(Input)
        assert box.value == str(node.layout.root)
        box.value = str(plotted_devnet / "elsewhere")
        await pilot.press("enter")
        await until(pilot, lambda: wiz.refusals, "a refusal")
        assert "keeps its plots in" in wiz.refusals[-1]
        box.value = str(node.layout.root)
        await pilot.press("enter")
        await until(pilot, lambda: wiz.step == "size", "size step")
        await pilot.press("ctrl+u", *"0.035", "enter")
        await until(pilot, lambda: wiz.step == "preview", "preview")
        assert "6×k18" in screen_text(app) and "to make            2" in screen_text(app)
        await pilot.press("enter")
        await pilot.press("ctrl+u", "1", "enter")
        await until(pilot, lambda: "Allocate 0.035 GB" in screen_text(app), "confirmation")
        await pilot.press("y")
        await until(pilot, lambda: wiz.step == "progress", "progress step")
        await until(pilot, lambda: "allocation complete, 6 plots" in screen_text(app), "the new plots made", 120)
        assert node.allocator.status.verified == 6 and node.settings.size_in_gb == 0.035
        await pilot.press("enter")  # close: the Disk screen shows the new share
        await until(pilot, lambda: "6/6" in screen_text(app), "disk shows 6 plots")
        await pilot.press("q")
        await until(pilot, lambda: app.engine_state == "stopped", "engines stopped", 60)
    assert app.return_code == 0
    assert node.served is None  # the server closed: the engine really stopped
    assert len(list((node.layout.plots).glob("*.plot"))) == 6
    assert not any(node.layout.plots_tmp.iterdir())  # nothing half written


async def test_validator_console_shows_real_challenges_and_weights(plotted_devnet):
    bus = EventBus()
    miner = build_node("miner", node_settings(plotted_devnet, "miner-0", size_in_gb=0.03,
                                              seconds_per_reallocate=3600), bus)
    validator = build_node("validator", node_settings(plotted_devnet, "validator-0", seconds_per_round=1,
                                                      seconds_per_weights=2), bus)
    await miner.start()
    app = ConsoleApp(LocalSource(validator))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until_text(pilot, "miners synced")  # the overview's line about the engine
            await pilot.press("3")
            await until(pilot, lambda: any(r.result == "pass" for r in app.state.results), "a passed challenge")
            await pilot.pause()
            text = screen_text(app)
            assert "pass" in text and "validator" in text
            row = next(line for line in text.splitlines() if " pass " in line and "/" in line)
            assert "4" in row  # plots asked
            await pilot.press("4")
            await until(pilot, lambda: validator.last_weights_block is not None, "weights set", 60)
            await until(pilot, lambda: "last set at block" in screen_text(app), "weights screen")
            uid = miner.uid
            line = next(ln for ln in screen_text(app).splitlines() if ln.strip().startswith(str(uid)))
            assert "1.000" in line  # the only miner gets all the weight
            await pilot.press("q")
            await until(pilot, lambda: app.engine_state == "stopped", "stopped", 60)
    finally:
        await miner.stop()
    assert app.return_code == 0
