"""A real local subnet for end-to-end tests: devnet chain file, real node processes, log files."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from unittest import mock

import bittensor as bt
import peewee

from tensorage.chain import devnet_init
from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.devnet_init import init_devnet
from tensorage.chain.wallets import create_wallet
from tensorage.proofs.plots import parse_plot_filename
from tensorage.storage.validator_db import ValidatorStore

# One test session's keys and plots. A devnet made by Subnet.create gives its n-th node the same
# wallet as every other such devnet's n-th node (a wallet is made once per name, then copied), so
# the plots made for a hotkey in one test module serve it in the next: a k=18 plot costs seconds
# of plotting and verifying on two cores, a copy a few milliseconds. Plots are bound to a hotkey
# (plot id = hash of its key and the seed), so a cached plot is only ever handed to its own hotkey.
_SESSION = Path(tempfile.mkdtemp(prefix="tensorage-test-session-"))
atexit.register(shutil.rmtree, _SESSION, True)
_KEYS, _PLOTS = _SESSION / "wallets", _SESSION / "plots"


def _session_wallet(path: Path, name: str, hotkey: str = "default") -> bt.Wallet:
    """``create_wallet`` for init_devnet: this session's wallet of that name, copied in."""
    if not (_KEYS / name).exists():
        create_wallet(_KEYS, name, hotkey)
    if not (Path(path) / name).exists():
        shutil.copytree(_KEYS / name, Path(path) / name)
    return bt.Wallet(name=name, hotkey=hotkey, path=str(path))


def _cached_plots(hotkey: str) -> list[Path]:
    return sorted((_PLOTS / hotkey).glob("plot-k*.plot"))


def provide_plots(plots_dir: Path, hotkey: str, ks: list[int]) -> int:
    """Copy cached plots of this hotkey (one per k asked, as far as the cache has them) into
    ``plots_dir``, where the allocator adopts them as a restarted miner does; returns how many."""
    wanted = list(ks)
    plots_dir.mkdir(parents=True, exist_ok=True)
    have = {p.name for p in plots_dir.glob("plot-k*.plot")}
    copied = 0
    for path in _cached_plots(hotkey):
        parsed = parse_plot_filename(path.name)
        if parsed is None or parsed[0] not in wanted or path.name in have:
            continue
        wanted.remove(parsed[0])
        shutil.copyfile(path, plots_dir / path.name)  # a copy: tests delete and damage their plots
        copied += 1
    return copied


def remember_plots(db_root: Path, hotkey: str) -> None:
    """Add a node's finished plots (the files its plot index calls done or verified) to the
    session's cache for its hotkey."""
    from tensorage.proofs.plots import plot_filename
    from tensorage.storage.models import MinerIndex, PlotState

    index_path = db_root / "index" / "miner.sqlite"
    if not index_path.exists():
        return
    index = MinerIndex(index_path)
    try:
        names = [plot_filename(r.k, bytes.fromhex(r.seed)) for r in index.plots(PlotState.DONE, PlotState.VERIFIED)]
    finally:
        index.close()
    cache = _PLOTS / hotkey
    cache.mkdir(parents=True, exist_ok=True)
    for path in (db_root / "plots" / name for name in names):
        if path.exists() and not (cache / path.name).exists():
            tmp = cache / (path.name + ".tmp")
            shutil.copyfile(path, tmp)
            tmp.rename(cache / path.name)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Subnet:
    root: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    first_window: int = 0  # tests that let the subnet settle count windows from here
    retiree_mid: float = 0.0

    @classmethod
    def create(cls, root: Path, miners: int, validators: int, sizes: tuple[float, ...],
               names: Optional[list[str]] = None) -> "Subnet":
        """``names``: the miners' names (and their wallets'), instead of miner-0, miner-1, ..."""
        with mock.patch.object(devnet_init, "create_wallet", _session_wallet):
            init_devnet(root, miners=miners, validators=validators, miner_sizes_gb=sizes)
        (root / "logs").mkdir(exist_ok=True)
        subnet = cls(root)
        if names is not None:
            spec = subnet.spec
            mapping = {f"miner-{i}": name for i, name in enumerate(names)}
            for node in spec.nodes:
                if node.name in mapping:
                    (root / "wallets" / node.name).rename(root / "wallets" / mapping[node.name])
                    node.name = mapping[node.name]
            spec.save(root)
        return subnet

    @property
    def spec(self) -> SubnetSpec:
        return SubnetSpec.load(self.root)

    def db_root(self, name: str) -> Path:
        return self.root / "nodes" / name

    def hotkey(self, name: str) -> str:
        node = next(n for n in self.spec.nodes if n.name == name)
        return self.spec.wallet(self.root, node).hotkey.ss58_address

    def uid(self, name: str) -> int:
        chain = Devnet.open(self.root)
        try:
            return chain.metagraph().by_hotkey(self.hotkey(name)).uid  # type: ignore[union-attr]
        finally:
            chain.close()

    def common(self, name: str) -> list[str]:
        return ["--subtensor.network", "devnet", "--devnet.root", str(self.root), "--wallet.name", name,
                "--db_root_path", str(self.db_root(name))]

    def allocate(self, sizes: dict[str, float], timeout: float = 180) -> None:
        """Allocate several miners at once, as separate processes."""
        procs = {name: subprocess.Popen([sys.executable, "-m", "tensorage", "allocate", *self.common(name),
                                         "--size_in_gb", str(size), "--disable_prompt"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for name, size in sizes.items()}
        for name, proc in procs.items():
            _, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"allocate {name} failed: {err}"

    def allocate_here(self, sizes: dict[str, float], workers: int = 1, verify: bool = True) -> None:
        """Allocate several miners with the real Allocator engine in this process (one event loop,
        one plotting child per miner at a time): the same plots, files and index rows as
        ``tensorage allocate``, without paying a node process's start-up per miner. Plots this
        session already made for a miner's hotkey are copied in and adopted, not made again."""
        from tensorage.config import settings_from_namespace
        from tensorage.engines.allocator import Allocator

        async def all_of() -> None:
            allocators = []
            for name, size in sizes.items():
                settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(self.root),
                                                    "wallet.name": name, "db_root_path": str(self.db_root(name)),
                                                    "size_in_gb": size, "workers": workers, "disable_prompt": True,
                                                    "disable_verify": not verify})
                allocator = Allocator(settings, self.hotkey(name))
                provide_plots(allocator.layout.plots, allocator.hotkey, allocator.plan().add)
                allocators.append(allocator)
            cores = asyncio.Semaphore(os.cpu_count() or 2)  # one plotting child per core, not one per miner

            async def one(a: Allocator) -> None:
                async with cores:
                    await a.allocate()

            try:
                await asyncio.gather(*(one(a) for a in allocators))
                for a in allocators:
                    remember_plots(a.layout.root, a.hotkey)
            finally:
                for a in allocators:
                    a.close()

        asyncio.run(all_of())

    def provide_cached(self, sizes: dict[str, float]) -> None:
        """Copy in the plots this session already made for these miners' hotkeys, as many as each
        share plans; the miner processes adopt them and plot only the rest."""
        from tensorage.config import settings_from_namespace
        from tensorage.engines.allocator import Allocator

        for name, size in sizes.items():
            settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(self.root),
                                                "wallet.name": name, "db_root_path": str(self.db_root(name)),
                                                "size_in_gb": size, "disable_prompt": True})
            allocator = Allocator(settings, self.hotkey(name))
            try:
                provide_plots(allocator.layout.plots, allocator.hotkey, allocator.plan().add)
            finally:
                allocator.close()

    def remember(self, names: list[str]) -> None:
        """Keep these miners' finished plots for later modules of the session."""
        for name in names:
            remember_plots(self.db_root(name), self.hotkey(name))

    def start(self, name: str, argv: list[str], *extra: str) -> subprocess.Popen:
        log = open(self.root / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", *argv, *self.common(name), *extra], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
        log.close()
        self.procs[name] = proc
        return proc

    def start_miner(self, name: str, size: float, *extra: str) -> subprocess.Popen:
        return self.start(name, ["tensorage", "miner"], "--size_in_gb", str(size), *extra)

    def start_validator(self, name: str, *extra: str) -> subprocess.Popen:
        return self.start(name, ["tensorage", "validator"], *extra)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=20)

    def served(self, names: list[str]) -> bool:
        chain = Devnet.open(self.root)
        try:
            mg = chain.metagraph()
        finally:
            chain.close()
        return all((n := mg.by_hotkey(self.hotkey(name))) is not None and n.axon for name in names)

    def log(self, name: str) -> str:
        return (self.root / "logs" / f"{name}.log").read_text(errors="replace")

    def store(self, validator: str) -> ValidatorStore:
        return ValidatorStore(self.db_root(validator) / "index" / "validator.sqlite", readonly=True)

    def rounds(self, validator: str, hotkey: str) -> list:
        if not (self.db_root(validator) / "index" / "validator.sqlite").exists():
            return []
        store = self.store(validator)
        try:
            return store.recent_rounds(limit=1000, hotkey=hotkey)
        except peewee.OperationalError:  # the validator is starting: its tables are not made yet
            return []
        finally:
            store.close()

    def scores(self, validator: str) -> dict:
        store = self.store(validator)
        try:
            return {h: s for h, s in store.scores().items()}
        finally:
            store.close()

    def stop_all(self, graceful: bool = True) -> None:
        """SIGTERM and wait (up to 10 s) for a clean stop; ``graceful=False``: SIGKILL, for a
        fixture whose tests never look at how nodes stop (twenty nodes shutting down at once
        on two cores take longer than the grace and are killed anyway)."""
        procs = list(self.procs.values())
        self.procs.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate() if graceful else proc.kill()
        deadline = time.monotonic() + 10
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def alive(self, name: str) -> Optional[bool]:
        proc = self.procs.get(name)
        return None if proc is None else proc.poll() is None
