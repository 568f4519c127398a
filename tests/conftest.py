"""Shared fixtures: real wallets, real plots, a real devnet chain file, all in temp dirs."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tensorage.chain.devnet_init import init_devnet
from tensorage.chain.wallets import create_wallet
from tensorage.config import settings_from_namespace
from tensorage.events import EventBus
from tensorage.proofs.plots import plot_filename, plot_id
from tensorage.proofs.plotter import PlotJob, run_plot

# Well-known dev accounts: valid ss58 hotkeys with fixed keys, so fixed-seed plots are reproducible.
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
FIXED_SEED = bytes(range(32))


def make_plot(directory: Path, hotkey: str, seed: bytes, k: int = 18, verify: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    job = PlotJob(tmp_root=directory / "tmp", final_dir=directory, filename=plot_filename(k, seed), k=k,
                  plot_id=plot_id(hotkey, seed), threads=2, verify=verify)
    return asyncio.run(run_plot(job)).path


@pytest.fixture(scope="session")
def alice_plot(tmp_path_factory) -> Path:
    """A k=18 plot bound to Alice's hotkey with a fixed seed (deterministic content)."""
    return make_plot(tmp_path_factory.mktemp("plots"), ALICE, FIXED_SEED)


@pytest.fixture
def devnet_root(tmp_path) -> Path:
    root = tmp_path / "devnet"
    init_devnet(root, miners=3, validators=2)
    return root


@pytest.fixture
def wallet(tmp_path):
    return create_wallet(tmp_path / "wallets", "test")


def tensorage(*args: str, cwd: Path | None = None, timeout: float = 120, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process."""
    return subprocess.run([sys.executable, "-m", "tensorage", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "COLUMNS": "200", **(env or {})})


# --- a real devnet with one plotted miner, made once, copied per test ---------------------------


@pytest.fixture(scope="session")
def plotted_devnet_template(tmp_path_factory) -> Path:
    """One miner with 4 k18 plots in a 0.03 GB share. Plot sizes vary with the seed (3.7-4.2 MB):
    when four happen to be small, a fifth fits the share and a miner started on it plots one more,
    so such a draw is made again (tests count on four). The first draw uses this session's
    wallets and the plots already made for its miner's hotkey (tests/subnet.py), the others
    fresh keys and plots."""
    from unittest import mock

    from tensorage.chain import devnet_init
    from tensorage.chain.wallets import load_wallet
    from tensorage.engines.allocator import Allocator
    from tensorage.errors import NotEnoughSpace

    from .subnet import _session_wallet, provide_plots, remember_plots

    base = tmp_path_factory.mktemp("plotted")
    for attempt in range(5):
        root = base / f"devnet-{attempt}"
        with mock.patch.object(devnet_init, "create_wallet", _session_wallet if attempt == 0 else create_wallet):
            init_devnet(root, miners=1, validators=1)
        settings = settings_from_namespace({
            "subtensor.network": "devnet", "devnet.root": str(root), "wallet.name": "miner-0",
            "db_root_path": str(root / "nodes" / "miner-0"), "size_in_gb": 0.03, "disable_prompt": True,
            "workers": 2,
        })
        allocator = Allocator(settings, load_wallet(settings).hotkey.ss58_address, EventBus())
        if attempt == 0:
            provide_plots(allocator.layout.plots, allocator.hotkey, allocator.plan().add)
        try:
            done = asyncio.run(allocator.allocate())
        except NotEnoughSpace:
            # the other way round: the first plots were large enough that the fourth planned one no
            # longer fits (a CI run drew this); the allocator says so, and we draw again
            allocator.close()
            continue
        if attempt == 0:
            remember_plots(allocator.layout.root, allocator.hotkey)
        stable = not allocator.plan().add
        allocator.close()
        assert done.plots == done.verified >= 4  # a fifth when the copied-in four are small
        if stable and done.plots == 4:
            return root
    raise AssertionError("five draws of k18 plots all left room for a fifth or no room for a fourth")


@pytest.fixture
def plotted_devnet(plotted_devnet_template, tmp_path) -> Path:
    root = tmp_path / "devnet"
    shutil.copytree(plotted_devnet_template, root)
    return root
