"""`tensorage` (subcommands) and `tensorage-console` entry points.

Thin: parse flags into Settings, build engines, render their events with rich,
and turn TensorageError into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Callable, Optional

from rich.console import Console

from .config import DEVNET_INSECURE_NOTICE, GB, Settings, add_axon_flags, add_common_flags, settings_from_namespace
from .client_cli import add_client_commands
from .errors import ConfigError, TensorageError
from .gateway_config import add_gateway_flags

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
DEVNET_MINERS = 6


def apply_devnet_defaults(settings: Settings) -> Settings:
    """On the devnet a node named by --wallet.name gets its own db root and size."""
    if settings.network != "devnet":
        return settings
    from .chain.devnet import SubnetSpec
    from .chain.devnet_init import devnet_exists

    root = settings.devnet_root
    update: dict = {}
    if "db_root_path" not in settings.model_fields_set:
        update["db_root_path"] = str(root / "nodes" / settings.wallet.name)
    if "size_in_gb" not in settings.model_fields_set and devnet_exists(root):
        node = next((n for n in SubnetSpec.load(root).nodes if n.name == settings.wallet.name), None)
        if node is not None and node.size_in_gb > 0:
            update["size_in_gb"] = node.size_in_gb
    return settings.model_copy(update=update) if update else settings


# -- allocate ------------------------------------------------------------------------------

def cmd_allocate(settings: Settings, args: argparse.Namespace) -> int:
    from .chain.wallets import load_wallet
    from .engines.allocator import Allocator
    from .events import EventBus
    from .logs import log_events, setup_logging
    from .render import allocation_progress, plan_table

    setup_logging(settings.logging.debug, settings.logging.trace)
    wallet = load_wallet(settings)
    hotkey = wallet.hotkey.ss58_address
    bus = EventBus()
    allocator = Allocator(settings, hotkey, bus)
    if settings.validator:
        path = allocator.prepare_validator()
        out.print(f"validator database ready at {path} (no hash database: proofs verify from the plot id alone)")
        return 0
    if settings.restart:
        if not _confirm(settings, f"--restart removes every plot under {allocator.layout.plots}. Continue?"):
            return 1
        allocator.wipe()
    allocator.check(repair=args.repair)
    plan = allocator.plan()
    out.print(plan_table(plan, settings, hotkey, allocator.cpus))
    if not settings.profile.secure:
        err.print(f"[yellow]{DEVNET_INSECURE_NOTICE}[/]")
    if not plan.add and not plan.remove:
        out.print("nothing to do: the partition already matches the plan")
    elif not _confirm(settings, "Allocate this partition?"):
        out.print("nothing written")
        return 1
    if sys.stderr.isatty() and not (settings.logging.debug or settings.logging.trace):
        with allocation_progress(bus, err):
            done = asyncio.run(allocator.allocate(plan.requested_bytes, repair=args.repair))
    else:  # a pipe, pm2 or systemd: one log line per event
        log_events(bus)
        done = asyncio.run(allocator.allocate(plan.requested_bytes, repair=args.repair))
    out.print(f"[green]done:[/] {done.plots} plots, {done.verified} verified, {done.plot_bytes / GB:.3f} GB "
              f"in {done.seconds:.1f}s")
    allocator.close()
    return 0


def _confirm(settings: Settings, question: str) -> bool:
    if settings.disable_prompt:
        return True
    if not sys.stdin.isatty():
        raise ConfigError(f"{question} — no terminal to ask on: pass --disable_prompt to go ahead without asking")
    from rich.prompt import Confirm

    return Confirm.ask(question, console=err, default=False)


# -- status --------------------------------------------------------------------------------

def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from .status import node_status

    if settings.network == "devnet" and "name" not in settings.wallet.model_fields_set:
        from .status import devnet_status

        print(json.dumps(devnet_status(settings), indent=2, default=str))
        return 0
    hotkey = _hotkey_or_none(settings)
    status = node_status(settings, hotkey, with_chain=not args.offline)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        from .render import status_table

        out.print(status_table(status))
    return 0


def _hotkey_or_none(settings: Settings) -> Optional[str]:
    from .chain.wallets import load_wallet
    from .errors import WalletError

    try:
        return load_wallet(settings).hotkey.ss58_address
    except WalletError:
        return None


# -- devnet --------------------------------------------------------------------------------

def cmd_devnet_init(settings: Settings, args: argparse.Namespace) -> int:
    from .chain.devnet_init import CLIENT_WALLET, init_devnet

    spec = init_devnet(settings.devnet_root, miners=args.miners, validators=args.validators, force=args.force)
    out.print(f"devnet ready at {settings.devnet_root}: "
              f"{len(spec.of_role('validator'))} validators, {len(spec.of_role('miner'))} miners, and a registered "
              f"client wallet '{CLIENT_WALLET}' (`tensorage store FILE --network devnet`)")
    err.print(f"[yellow]{DEVNET_INSECURE_NOTICE}[/]")
    return cmd_devnet_show(settings, args)


def cmd_devnet_show(settings: Settings, args: argparse.Namespace) -> int:
    from .chain.devnet import Devnet, SubnetSpec
    from .render import metagraph_table

    chain = Devnet.open(settings.devnet_root, settings.resolved_netuid)
    try:
        mg = chain.metagraph()
        last_epoch = chain.last_epoch_block()
    finally:
        chain.close()
    from .chain.devnet_init import client_names

    try:
        roles = SubnetSpec.load(settings.devnet_root).hotkey_names(settings.devnet_root)
    except TensorageError:
        roles = {}
    roles.update(client_names(settings.devnet_root))
    out.print(metagraph_table(mg, roles, last_epoch, width=out.width))
    return 0


def node_passthrough(settings: Settings) -> tuple[str, ...]:
    """Flags a supervisor hands on to every node it starts."""
    args: list[str] = []
    for flag in ("seconds_per_round", "seconds_per_weights", "seconds_per_reallocate", "workers"):
        if flag in settings.model_fields_set:
            args += [f"--{flag}", str(getattr(settings, flag))]
    for flag in ("disable_verify",):
        if getattr(settings, flag):
            args.append(f"--{flag}")
    if settings.logging.debug:
        args.append("--logging.debug")
    return tuple(args)


def cmd_devnet_up(settings: Settings, args: argparse.Namespace) -> int:
    from .engines.devnet import DevnetSupervisor
    from .events import EventBus
    from .logs import log_events, setup_logging

    setup_logging(settings.logging.debug, settings.logging.trace)
    err.print(f"[yellow]{DEVNET_INSECURE_NOTICE}[/]")
    bus = EventBus()
    log_events(bus)
    supervisor = DevnetSupervisor(settings, bus, miners=args.miners, validators=args.validators,
                                  node_args=node_passthrough(settings))
    asyncio.run(supervisor.run_until_stopped())
    return 0


def cmd_devnet_epoch(settings: Settings, args: argparse.Namespace) -> int:
    from .chain.devnet import Devnet

    chain = Devnet.open(settings.devnet_root, settings.resolved_netuid)
    try:
        ran = chain.run_epoch(force=True)
    finally:
        chain.close()
    out.print("epoch ran" if ran else "no epoch due")
    return cmd_devnet_show(settings, args)


# -- miner / validator -------------------------------------------------------------------

def cmd_miner(settings: Settings, args: argparse.Namespace) -> int:
    from .engines.run import main as run_main

    if not settings.profile.secure:
        err.print(f"[yellow]{DEVNET_INSECURE_NOTICE}[/]")
    return run_main("miner", settings, events_jsonl=args.events == "jsonl")


def cmd_validator(settings: Settings, args: argparse.Namespace) -> int:
    from .engines.run import main as run_main

    return run_main("validator", settings, events_jsonl=args.events == "jsonl")


# -- wiring --------------------------------------------------------------------------------

Handler = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tensorage", description="tensorage: a storage subnet for Bittensor")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Handler, help: str, axon: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        add_common_flags(p)
        if axon:
            add_axon_flags(p)
        p.set_defaults(func=handler)
        return p

    p = command("allocate", cmd_allocate, "plan the disk share and fill it with verified plots")
    p.add_argument("--repair", action="store_true", default=False,
                   help="forget plots that are listed but missing or corrupt, and plot them again")
    for name, handler, text in (("miner", cmd_miner, "serve plots and proofs, keep the disk allocated"),
                                ("validator", cmd_validator, "challenge miners, score them, set weights")):
        p = command(name, handler, text, axon=True)
        p.add_argument("--events", choices=["jsonl"], default=None,
                       help="also write engine events to stdout as JSON lines (for supervisors)")
        if name == "validator":
            add_gateway_flags(p)
    add_client_commands(sub)
    p = command("status", cmd_status, "print this node's state")
    p.add_argument("--json", action="store_true", default=False, help="machine-readable output")
    p.add_argument("--offline", action="store_true", default=False, help="do not contact the chain")

    devnet = sub.add_parser("devnet", help="a whole subnet on this machine", description="a whole subnet on this machine")
    dsub = devnet.add_subparsers(dest="devnet_command", metavar="DEVNET_COMMAND")
    d = dsub.add_parser("init", help="create the devnet chain, wallets and registrations")
    add_common_flags(d)
    d.add_argument("--miners", type=int, default=DEVNET_MINERS, help=f"miners to create ({DEVNET_MINERS}: one per "
                   f"shard of the default 4-of-6 erasure code)")
    d.add_argument("--validators", type=int, default=2)
    d.add_argument("--force", action="store_true", default=False, help="replace an existing devnet")
    d.set_defaults(func=cmd_devnet_init)
    d = dsub.add_parser("up", help="run the whole local subnet (chain clock, miners, validators) until Ctrl-C")
    add_common_flags(d)
    d.add_argument("--miners", type=int, default=DEVNET_MINERS, help="miners to create if the devnet does not exist yet")
    d.add_argument("--validators", type=int, default=2, help="validators to create if the devnet does not exist yet")
    d.set_defaults(func=cmd_devnet_up)
    d = dsub.add_parser("show", help="print the devnet metagraph")
    add_common_flags(d)
    d.set_defaults(func=cmd_devnet_show)
    d = dsub.add_parser("epoch", help="run consensus now")
    add_common_flags(d)
    d.set_defaults(func=cmd_devnet_epoch)
    return parser


def run(argv: Optional[list[str]] = None, parser: Optional[argparse.ArgumentParser] = None) -> int:
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    func: Optional[Handler] = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    def call() -> int:
        ns = {k: v for k, v in vars(args).items() if k not in ("func", "command", "devnet_command", "miners",
                                                               "validators", "force", "json", "offline", "repair",
                                                               "events")}
        if getattr(args, "command", None) == "devnet":
            ns.setdefault("subtensor.network", "devnet")
        settings = apply_devnet_defaults(settings_from_namespace(ns))
        return func(settings, args)

    return guarded(call)


def guarded(call: Callable[[], int]) -> int:
    """Run a command: an operator error becomes one line on stderr and a non-zero exit code."""
    try:
        return call()
    except TensorageError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def main(argv: Optional[list[str]] = None) -> None:
    sys.exit(run(argv))


def console_main(argv: Optional[list[str]] = None) -> None:
    from .console_cli import main as _console

    sys.exit(_console(argv))
