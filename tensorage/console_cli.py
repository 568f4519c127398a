"""`tensorage-console`: the operator console, or the same engines headless (``--no-tui``).

* ``tensorage-console --network devnet``: a whole local subnet (chain clock in this process,
  miners and validators as supervised child processes), created on first run under
  ``--devnet.root`` (~/.tensorage/devnet).
* ``tensorage-console --role miner|validator --wallet.name … --subtensor.network finney``: one
  engine in this process, on the console's event loop.
* ``tensorage-console --attach --wallet.name … [--db_root_path …]``: a miner or validator already running
  in its own process (pm2, systemd): its events stream in over its operator endpoint, signed with the
  node's own hotkey; quitting the console leaves the node running.
* ``--no-tui``: the same, with rich logging (pm2, systemd, a pipe).

Errors an operator can fix print one line and exit non-zero, like ``tensorage``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional

from rich.console import Console

from .config import ArgumentParser, Settings, add_axon_flags, add_common_flags, add_flags, settings_from_namespace
from .errors import ConfigError

err = Console(stderr=True, soft_wrap=True)

OWN_FLAGS = ("role", "no_tui", "miners", "validators", "attach")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="tensorage-console",
        description="The tensorage operator console: a whole local subnet (--network devnet) or one miner or "
                    "validator (--role), keyboard-driven; --no-tui runs the same engines with plain logs.")
    p.add_argument("--role", choices=["miner", "validator"], default=None,
                   help="run one engine in this process (default: the whole devnet when --network devnet)")
    p.add_argument("--attach", nargs="?", const="", default=None, metavar="HOST:PORT",
                   help="attach to a miner or validator already running (pm2, systemd) with the node's own "
                        "wallet; its endpoint is read from --db_root_path unless given")
    p.add_argument("--no-tui", dest="no_tui", action="store_true", default=False,
                   help="no console: log events with rich (for pm2, systemd or a pipe)")
    p.add_argument("--miners", type=int, default=6, help="devnet: miners to create on first run (6)")
    p.add_argument("--validators", type=int, default=2, help="devnet: validators to create on first run (2)")
    add_common_flags(p)
    add_axon_flags(p)
    add_flags(p, "metrics")  # a node the console runs serves metrics as `tensorage miner` would
    return p


def resolve(argv: Optional[list[str]]) -> tuple[Settings, Optional[str], argparse.Namespace]:
    from .engines.devnet import node_settings

    args = build_parser().parse_args(argv)
    ns = {k: v for k, v in vars(args).items() if k not in OWN_FLAGS}
    settings = node_settings(settings_from_namespace(ns))
    role = args.role or ("validator" if settings.validator else None)
    if args.attach is not None:
        if args.role:
            raise ConfigError("--attach follows a node that is already running: drop --role")
        return settings, "attached", args
    if role is None and settings.network != "devnet":
        raise ConfigError(
            "nothing to run: pass --network devnet for a whole local subnet, --role miner|validator "
            "with --wallet.name/--wallet.hotkey for one node (e.g. --role miner --subtensor.network finney), "
            "or --attach to follow a node already running")
    if role is None and (args.miners < 1 or args.validators < 1):
        raise ConfigError("a devnet needs at least 1 miner and 1 validator (--miners, --validators)")
    return settings, role, args


def build_backend(settings: Settings, role: Optional[str], args: argparse.Namespace):
    """The engines to drive (not started yet): a devnet supervisor or one node."""
    from .cli import node_passthrough
    from .events import EventBus

    bus = EventBus()
    if role == "attached":
        from .chain.wallets import load_wallet
        from .tui.sources.attached import AttachedSource

        return AttachedSource(settings, bus, load_wallet(settings), endpoint=args.attach or None)
    if role is None:
        from .engines.devnet import DevnetSupervisor
        from .tui.sources.devnet import DevnetSource

        supervisor = DevnetSupervisor(settings, bus, miners=args.miners, validators=args.validators,
                                      node_args=node_passthrough(settings))
        return DevnetSource(supervisor)
    from .engines.run import build_node
    from .tui.sources.local import LocalSource

    return LocalSource(build_node(role, settings, bus))


def log_to_file(settings: Settings, role: Optional[str]) -> Optional[Path]:
    """While the console owns the terminal, Python logging goes to a file next to the data."""
    base = settings.devnet_root / "logs" if role is None else settings.db_root
    path = base / "console.log"
    root = logging.getLogger()
    try:
        base.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path)
    except OSError:
        handler, path = logging.NullHandler(), None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if settings.logging.debug or settings.logging.trace else logging.INFO)
    for noisy in ("aiohttp.access", "apscheduler.executors.default", "apscheduler.scheduler", "peewee", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path


def run_tui(settings: Settings, role: Optional[str], args: argparse.Namespace) -> int:
    from .tui.app import ConsoleApp

    log_to_file(settings, role)
    backend = build_backend(settings, role, args)
    app = ConsoleApp(backend, handle_signals=True, freeze_heap=True)
    result = app.run()
    if app.exit_message:
        err.print(f"[bold red]error:[/] {app.exit_message}", highlight=False)
    code = app.return_code if app.return_code is not None else (result or 0)
    return int(code or 0)


def run_headless(settings: Settings, role: Optional[str], args: argparse.Namespace) -> int:
    from . import cli

    args.events = None
    if role == "attached":
        return follow_headless(settings, args)
    if role is None:
        return cli.cmd_devnet_up(settings, args)
    return cli.cmd_miner(settings, args) if role == "miner" else cli.cmd_validator(settings, args)


def follow_headless(settings: Settings, args: argparse.Namespace) -> int:
    """--attach --no-tui: the running node's events as log lines, until Ctrl-C."""
    import asyncio
    import signal

    from .logs import log_events, setup_logging_for

    setup_logging_for(settings.logging, "console", settings.wallet.name)
    backend = build_backend(settings, "attached", args)
    log_events(backend.bus)

    async def follow() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        err.print(await backend.start())
        try:
            await stop.wait()
        finally:
            await backend.stop()

    asyncio.run(follow())
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    from .cli import guarded

    def call() -> int:
        settings, role, args = resolve(argv)
        if args.no_tui:
            return run_headless(settings, role, args)
        return run_tui(settings, role, args)

    return guarded(call)


if __name__ == "__main__":
    import sys

    sys.exit(main())
