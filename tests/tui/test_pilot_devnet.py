"""Pilot tests of every screen on a real devnet (chain file, wallets, plotted miner) with real
events on a real bus; the node processes are not started (tests/tui/test_console_e2e.py does that)."""

from __future__ import annotations

from pathlib import Path

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.cli import node_passthrough
from tensorage.config import DEVNET_INSECURE_NOTICE
from tensorage.engines.devnet import DevnetSupervisor
from tensorage.events import (ChallengeResult, ErrorEvent, EventBus, JobRan, LogEvent, NodeState, PlotProgress,
                              WeightsSet)
from tensorage.tui.app import ConsoleApp
from tensorage.tui.sources import DevnetSource
from tensorage.tui.screens.wizard import WizardScreen
from tensorage.tui.widgets.chrome import DevnetNotice
from tensorage.tui.widgets.lazy_table import LazyTable
from textual.widgets import Input

from .conftest import devnet_settings, screen_text, settle, until, until_text

SIZE = (100, 30)


def devnet_app(root: Path) -> tuple[ConsoleApp, DevnetSource]:
    settings = devnet_settings(root, seconds_per_round=1, workers=2)
    supervisor = DevnetSupervisor(settings, EventBus(), node_args=node_passthrough(settings))
    backend = DevnetSource(supervisor)
    return ConsoleApp(backend, start_engines=False), backend


def hotkeys(root: Path) -> dict[str, str]:
    return {name: hk for hk, name in SubnetSpec.load(root).hotkey_names(root).items()}


async def test_overview_shows_the_real_metagraph_and_follows_the_chain(plotted_devnet):
    app, backend = devnet_app(plotted_devnet)
    hk = hotkeys(plotted_devnet)
    async with app.run_test(size=SIZE) as pilot:
        text = await until_text(pilot, "miner-0", "validator-0")
        assert "2,000" in text  # validator-0's stake, read from the chain file
        assert str(app.query_one(DevnetNotice).render()).endswith(DEVNET_INSECURE_NOTICE)
        assert "0.000" in text and "1.000" not in text  # no epoch yet: no incentive
        # the chain moves: validator-0 sets weights and an epoch runs; the epoch job's event reloads the chain
        chain = Devnet.open(plotted_devnet)
        spec = SubnetSpec.load(plotted_devnet)
        miner_uid = chain.metagraph().by_hotkey(hk["miner-0"]).uid
        chain.set_weights(spec.wallet(plotted_devnet, spec.of_role("validator")[0]), {miner_uid: 1.0})
        assert chain.run_epoch(force=True)
        chain.close()
        backend.bus.publish(JobRan(job_id="devnet_epoch", ok=True, duration_s=0.0, source="devnet"))
        await until(pilot, lambda: "1.000" in screen_text(app), "miner-0's incentive after the epoch")
        assert "last epoch" in screen_text(app)


async def test_disk_reads_the_plot_index_and_follows_plotting(plotted_devnet):
    app, backend = devnet_app(plotted_devnet)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: "miner-0" in app.disk_infos, "the plot index read in a thread")
        # four plots made and verified by the session fixture, read from miner.sqlite
        text = await until_text(pilot, "4/4")
        assert "30.0 MB" in text  # the devnet spec's share for miner-0
        assert "proven" in text and "no challenge judged yet" in text
        backend.bus.publish(PlotProgress(seed="ab" * 32, k=19, fraction=0.5, done=4, total=6, rate_per_hour=600.0,
                                         eta_s=12.0, source="miner-0"))
        await until(pilot, lambda: "k19 abababab 50%" in screen_text(app), "live plotting progress")
        assert "ETA 12s" in screen_text(app)


async def test_challenges_table_with_ten_thousand_rows_moves_by_keys(plotted_devnet):
    app, backend = devnet_app(plotted_devnet)
    hk = hotkeys(plotted_devnet)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.names, "names")
        await pilot.press("3")
        for i in range(10_000):
            backend.bus.publish(ChallengeResult(
                validator=hk["validator-0"], miner_uid=1, miner_hotkey=hk["miner-0"], plots=4,
                proofs_returned=i % 17, proofs_expected=15.2, result="fail" if i % 10 == 0 else "pass",
                latency_ms=100 + i % 50, detail=f"round {i}", source="validator-0", ts=1_800_000_000 + i))
        table = app.screen.query_one(LazyTable)
        await until(pilot, lambda: len(table.rows) == 10_000, "all rows in the table")
        await pilot.pause()
        assert app.pump.posted < 100  # a burst is coalesced, not 10,000 messages
        text = screen_text(app)
        assert "round 9999" in text and "miner-0" in text  # newest first
        assert "90%" in text  # miner-0's pass rate over the 10,000 challenges
        await pilot.press("down", "down")
        assert table.current().detail == "round 9997"
        await pilot.press("end")
        assert table.current().detail == "round 0"
        assert "round 0" in screen_text(app)  # the oldest row, rendered on demand
        await pilot.press("home")
        assert table.current().detail == "round 9999"


async def test_weights_show_each_validators_weights_and_the_chain(plotted_devnet):
    app, backend = devnet_app(plotted_devnet)
    hk = hotkeys(plotted_devnet)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: app.metagraph is not None, "metagraph")
        uid = app.metagraph.by_hotkey(hk["miner-0"]).uid
        assert "not set yet" in screen_text(app)
        backend.bus.publish(WeightsSet(block=42, weights={str(uid): 1.0}, source="validator-0"))
        await until(pilot, lambda: "set at block 42" in screen_text(app), "the validator's weights")
        row = next(line for line in screen_text(app).splitlines() if "miner-0" in line)
        assert "1.000" in row  # v0's weight for miner-0


async def test_logs_filter_by_level_source_and_search(plotted_devnet):
    app, backend = devnet_app(plotted_devnet)
    bus = backend.bus
    async with app.run_test(size=SIZE) as pilot:
        bus.publish(LogEvent(message="miner-0 says hello", source="miner-0"))
        bus.publish(ErrorEvent(message="validator-0 lost its chain", source="validator-0"))
        bus.publish(PlotProgress(seed="cd" * 32, k=18, fraction=0.3, done=0, total=4, rate_per_hour=0.0, eta_s=None,
                                 source="miner-0"))
        bus.publish(NodeState(node="miner-0", state="running", pid=1, source="devnet"))
        await pilot.press("6")
        await pilot.pause()
        text = screen_text(app)
        assert "hello" in text and "lost its chain" in text
        assert "plot k18 cdcdcdcd" not in text  # progress is debug: hidden at level info
        await pilot.press("l", "l")  # info -> warning -> error
        await pilot.pause()
        text = screen_text(app)
        assert "level ≥ error" in text and "lost its chain" in text and "hello" not in text
        await pilot.press("l")  # error -> debug (the cycle wraps)
        await pilot.pause()
        assert "plot k18 cdcdcdcd" in screen_text(app)
        await pilot.press("l")  # back to info
        await pilot.press("s")  # first source in order: devnet
        await pilot.pause()
        text = screen_text(app)
        assert "source devnet" in text and "miner-0: running" in text and "hello" not in text
        await pilot.press("s")  # devnet -> miner-0
        await pilot.pause()
        text = screen_text(app)
        assert "source miner-0" in text and "hello" in text and "lost its chain" not in text
        await pilot.press("s", "s")  # -> validator-0 -> all
        await pilot.press("slash")
        for ch in "HELLO":
            await pilot.press(ch)
        await pilot.press("enter")
        await pilot.pause()
        text = screen_text(app)
        assert "search 'HELLO'" in text and "hello" in text and "lost its chain" not in text
        await pilot.press("escape")
        await pilot.pause()
        assert "lost its chain" in screen_text(app)


async def test_help_and_quit_without_engines(plotted_devnet):
    app, _ = devnet_app(plotted_devnet)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "question_mark")
        await pilot.pause()
        text = screen_text(app)
        assert "Recent challenges, newest first" in text and "command palette" in text
        await pilot.press("escape")
        await pilot.pause()
        assert "Recent challenges, newest first" not in screen_text(app)
        await pilot.press("q")
        await until(pilot, lambda: app.engine_state == "stopped", "stopped")
    assert app.return_code == 0


async def test_wizard_refuses_wrong_entries_with_reasons_and_goes_back(plotted_devnet, tmp_path):
    app, backend = devnet_app(plotted_devnet)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    new_root = tmp_path / "new-miner"

    async def enter(pilot, text: str):
        await pilot.press("ctrl+u")  # clear the prefilled value
        if len(text) > 8:  # long paths: paste them (typing 80 keys adds nothing)
            pilot.app.screen.query_one(Input).insert_text_at_cursor(text)
        else:
            await pilot.press(*text)
        await pilot.press("enter")
        await settle(pilot, 1)

    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.pause()
        wiz = app.screen
        assert isinstance(wiz, WizardScreen) and wiz.step == "path"
        assert str(plotted_devnet / "nodes" / "miner-1") in screen_text(app)  # the next node's default root
        await enter(pilot, str(a_file / "sub"))
        assert wiz.step == "path" and "is not a directory" in wiz.refusals[-1]
        assert "is not a directory" in screen_text(app)
        await enter(pilot, str(plotted_devnet / "nodes" / "miner-0"))
        assert wiz.step == "path" and "miner-0's database root" in wiz.refusals[-1]
        await enter(pilot, str(new_root))
        assert wiz.step == "size"
        await enter(pilot, "100000")
        assert wiz.step == "size" and "does not fit" in wiz.refusals[-1] and "GB or less" in wiz.refusals[-1]
        await enter(pilot, "0.001")
        assert wiz.step == "size" and "too small" in wiz.refusals[-1]
        await enter(pilot, "lots")
        assert wiz.step == "size" and "not a number" in wiz.refusals[-1]
        await pilot.press("escape")
        assert wiz.step == "path"
        await enter(pilot, str(new_root))
        await enter(pilot, "0.03")
        assert wiz.step == "preview"
        text = screen_text(app)
        assert "4×k18" in text and "client reserve" in text and "temp while plotting" in text
        await pilot.press("enter")
        assert wiz.step == "workers"
        await enter(pilot, "0")
        assert wiz.step == "workers" and "at least 1" in wiz.refusals[-1]
        await enter(pilot, "two")
        assert wiz.step == "workers" and "not a whole number" in wiz.refusals[-1]
        await enter(pilot, "2")
        await pilot.pause()
        assert "Add a miner with 0.03 GB" in screen_text(app)  # the confirmation
        await pilot.press("n")
        await pilot.pause()
        assert wiz.step == "workers"  # declined: back to the last step
        for _ in range(3):
            await pilot.press("escape")
        assert wiz.step == "path"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, WizardScreen)
    assert not new_root.exists()  # nothing written before the confirmation
    assert [n.name for n in SubnetSpec.load(plotted_devnet).nodes] == ["validator-0", "miner-0"]
