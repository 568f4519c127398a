"""The console attached to a miner that runs in its own process (as under pm2 or systemd):
its events stream in, its jobs are controlled remotely, the wizard gives it a new share,
and quitting the console leaves the node running."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from textual.widgets import Input

from tensorage.chain.wallets import load_wallet
from tensorage.engines.devnet import node_settings as apply_devnet_defaults
from tensorage.events import EventBus
from tensorage.storage.layout import Layout
from tensorage.tui.app import ConsoleApp
from tensorage.tui.sources import AttachedSource
from tensorage.tui.screens.wizard import WizardScreen
from tensorage.tui.widgets.keyed_table import KeyedTable

from .conftest import devnet_settings, screen_text, until, until_text

SIZE = (100, 30)


def node_state(db_root) -> dict:
    try:
        return json.loads((Layout(db_root).index / "node.json").read_text())
    except (OSError, ValueError):
        return {}


async def test_console_attaches_to_a_running_miner(plotted_devnet, tmp_path):
    settings = apply_devnet_defaults(devnet_settings(plotted_devnet, **{"wallet.name": "miner-0"}))
    db_root = settings.db_root
    log = open(tmp_path / "miner.log", "wb")
    miner = subprocess.Popen([sys.executable, "-m", "tensorage", "miner", "--subtensor.network", "devnet",
                              "--devnet.root", str(plotted_devnet), "--wallet.name", "miner-0", "--size_in_gb", "0.03",
                              "--seconds_per_reallocate", "3600"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):  # the node writes its state file once it serves
            if node_state(db_root).get("endpoint") and node_state(db_root).get("state") == "running":
                break
            await asyncio.sleep(0.1)
        backend = AttachedSource(settings, EventBus(), load_wallet(settings))
        app = ConsoleApp(backend)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.engine_state == "running", "the console to attach to the running miner")
            text = await until_text(pilot, "attached", "4 plots held")
            assert backend.hotkey in text
            # the node's own history and live events arrive through its stream
            await pilot.press("6")
            await until_text(pilot, "miner serving on")
            # its jobs, controlled over HTTP
            await pilot.press("5")
            await until(pilot, lambda: "scrub" in screen_text(app), "the node's jobs")
            table = app.screen.query_one("#jobs-table", KeyedTable)
            for _ in range(table.row_count):
                if (table.selected_key() or "").endswith("/scrub"):
                    break
                await pilot.press("down")
            await pilot.press("p")
            await until(pilot, lambda: any(j.id == "scrub" and j.paused for j in backend.snap.jobs),
                        "scrub paused in the running node")
            # the wizard gives the running miner a larger share; it plots, and the console follows
            await pilot.press("a")
            await pilot.pause()
            assert isinstance(app.screen, WizardScreen)
            box = app.screen.query_one(Input)
            box.value = "/somewhere/else"
            await pilot.press("enter")
            await until_text(pilot, "keeps its plots in")
            box.value = str(db_root)
            await pilot.press("enter")
            await until(pilot, lambda: "Size" in screen_text(app), "the size step")
            app.screen.query_one(Input).value = "0.05"
            await pilot.press("enter")
            await until_text(pilot, "Preview")
            await pilot.press("enter")
            await until(pilot, lambda: "Workers" in screen_text(app), "the workers step")
            app.screen.query_one(Input).value = "2"
            await pilot.press("enter")
            await pilot.press("y")
            await until(pilot, lambda: backend.snap.share.size_in_gb == 0.05 and backend.snap.plots_held > 4,
                        "the running miner to plot its larger share", timeout=120)
            assert backend.snap.share.source == "stored"
            await pilot.press("q")
        assert miner.poll() is None, "quitting an attached console must leave the node running"
        assert node_state(db_root)["state"] == "running"
    finally:
        miner.terminate()
        miner.wait(timeout=20)
    assert node_state(db_root)["state"] == "stopped"


def test_attach_headless_follows_events_and_refuses_a_stopped_node(plotted_devnet, tmp_path):
    import signal
    import time

    args = ["--subtensor.network", "devnet", "--devnet.root", str(plotted_devnet), "--wallet.name", "miner-0"]
    settings = apply_devnet_defaults(devnet_settings(plotted_devnet, **{"wallet.name": "miner-0"}))
    never = subprocess.run([sys.executable, "-m", "tensorage.console_cli", "--attach", "--no-tui", *args],
                           capture_output=True, text=True, timeout=60)
    assert never.returncode != 0 and "no node has run at" in never.stderr
    miner = subprocess.Popen([sys.executable, "-m", "tensorage", "miner", *args, "--size_in_gb", "0.03",
                              "--seconds_per_reallocate", "3600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not node_state(settings.db_root).get("endpoint") and time.monotonic() < deadline:
            time.sleep(0.1)
        follower = subprocess.Popen([sys.executable, "-m", "tensorage.console_cli", "--attach", "--no-tui", *args],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines = []
        assert follower.stderr is not None
        for line in follower.stderr:
            lines.append(line)
            if "miner serving on" in line:
                break
        assert any("attached to miner" in line for line in lines), lines
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=20) == 0
        assert miner.poll() is None
    finally:
        miner.terminate()
        miner.wait(timeout=20)
    stopped = subprocess.run([sys.executable, "-m", "tensorage.console_cli", "--attach", "--no-tui", *args],
                             capture_output=True, text=True, timeout=60)
    assert stopped.returncode != 0 and "is stopped" in stopped.stderr
