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

from .client_cli import add_client_commands
from .config import DEVNET_INSECURE_NOTICE, GB, ArgumentParser, Settings, add_flags, settings_from_namespace
from .errors import ConfigError, TensorageError
from .gateway_config import add_gateway_flags

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
DEVNET_MINERS = 6
_json_stderr: Optional[tuple[str, str]] = None  # --logging.format json: (role, node); stderr is JSON lines too


def say(text: str, level: str = "warning") -> None:
    """A notice or an error on stderr: rich for a person, a JSON line under --logging.format json."""
    if _json_stderr:
        import logging

        from .logs import json_line

        print(json_line(logging.getLevelName(level.upper()), text, *_json_stderr), file=sys.stderr, flush=True)
        return
    style = {"warning": "yellow", "error": "bold red"}.get(level, "")
    err.print(f"[{style}]{text}[/]" if style else text, highlight=False)


def apply_devnet_defaults(settings: Settings) -> Settings:
    """On the devnet a node named by --wallet.name gets its own db root and size (engines.devnet)."""
    from .engines.devnet import node_settings

    return node_settings(settings)


# -- allocate ------------------------------------------------------------------------------

def cmd_allocate(settings: Settings, args: argparse.Namespace) -> int:
    from .chain.wallets import load_wallet
    from .engines.disks import DiskSet
    from .events import EventBus
    from .logs import setup_logging_for
    from .storage import share as stored_share
    from .storage.layout import Footprint, Layout
    from .storage.lock import NodeLock

    setup_logging_for(settings.logging, "allocate", settings.wallet.name)
    wallet = load_wallet(settings)
    hotkey = wallet.hotkey.ss58_address
    bus = EventBus()
    flags = stored_share.flags_of(settings)
    if not settings.validator:  # without --size_in_gb, the share stored with the node
        settings = stored_share.resolve(settings, Layout(settings.db_root))[0]
    allocator = DiskSet(settings, hotkey, bus)  # one Allocator per --db_root_path disk
    layout = allocator.layout
    for root in [settings.db_root] if settings.validator else settings.db_roots:
        Layout(root).check_writable_target()  # a clear refusal, for every disk, before the lock creates anything
    footprint, lock = Footprint.of(layout), NodeLock(layout)
    lock.acquire("allocate")  # one node or allocation per root
    try:
        allocator.lock("allocate")  # and per disk
    except BaseException:
        lock.release()
        raise
    try:
        try:
            plan = _plan(settings, args, allocator, hotkey)
        except BaseException:  # refused: leave the root as it was
            allocator.close()
            footprint.remove_new()
            raise
        if plan is None:
            allocator.close()
            footprint.remove_new()
            out.print("nothing written")
            return 1
        if not settings.validator and (flags[0] is not None or stored_share.load(layout) is None):
            stored_share.store(layout, settings.size_in_gb, flags[1], "allocate", flags)  # the operator's decision
        return _allocate(settings, args, allocator, bus, plan)
    finally:
        allocator.unlock()
        allocator.close()
        lock.release()


def _plan(settings: Settings, args: argparse.Namespace, allocator, hotkey: str):
    """Everything up to the operator's yes: checks, the plan. None when the operator declines."""
    from .render import plan_table

    if settings.validator:
        return True
    if settings.restart:
        if not _confirm(settings, f"--restart removes every plot under {allocator.layout.plots}. Continue?"):
            return None
        allocator.wipe()
    allocator.check(repair=args.repair)
    plan = allocator.plan()
    out.print(plan_table(plan, settings, hotkey, allocator.cpus))
    if not settings.profile.secure:
        err.print(f"[yellow]{DEVNET_INSECURE_NOTICE}[/]")
    if not plan.add and not plan.remove:
        out.print("nothing to do: the partition already matches the plan")
        return plan
    question = "Allocate this partition?"
    if plan.remove:
        question = (f"This removes {len(plan.remove)} plot(s) ({plan.remove_reason}). " + question)
    return plan if _confirm(settings, question) else None


def _allocate(settings: Settings, args: argparse.Namespace, allocator, bus, plan) -> int:
    from .logs import log_events
    from .render import allocation_progress

    if settings.validator:
        path = allocator.prepare_validator()
        out.print(f"validator database ready at {path} (no hash database: proofs verify from the plot id alone)")
        return 0
    if sys.stderr.isatty() and not (settings.logging.debug or settings.logging.trace):
        with allocation_progress(bus, err):
            done = asyncio.run(allocator.allocate(plan.requested_bytes, repair=args.repair))
    else:  # a pipe, pm2 or systemd: one log line per event
        log_events(bus)
        done = asyncio.run(allocator.allocate(plan.requested_bytes, repair=args.repair))
    out.print(f"[green]done:[/] {done.plots} plots, {done.verified} verified, {done.plot_bytes / GB:.3f} GB "
              f"in {done.seconds:.1f}s")
    if done.failed:  # the plots made are kept; the share is short of what was asked
        err.print(f"[red]error:[/] {done.failed} plots could not be made ({done.last_error}); the plots made are "
                  f"kept: fix the cause and run allocate again to make the rest")
        return 1
    return 0


def _confirm(settings: Settings, question: str) -> bool:
    if settings.disable_prompt:
        return True
    if not sys.stdin.isatty():
        raise ConfigError(f"{question} — no terminal to ask on: pass --disable_prompt to go ahead without asking")
    from rich.prompt import Confirm

    return Confirm.ask(question, console=err, default=False)


# -- status --------------------------------------------------------------------------------

STATUS_CHAIN_UNREADABLE = 1  # status printed what it could read, but not the chain: monitoring must notice


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from .status import node_status

    if settings.network == "devnet" and "name" not in settings.wallet.model_fields_set:
        from .status import devnet_status

        report = devnet_status(settings)
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            from .render import devnet_status_table

            out.print(devnet_status_table(report))
        return 0
    hotkey = _hotkey_or_none(settings)
    status = node_status(settings, hotkey, with_chain=not args.offline)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        from .render import status_table

        out.print(status_table(status))
    return STATUS_CHAIN_UNREADABLE if status.get("chain_error") else 0


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

    from .chain.devnet_faults import read_fault

    chain = Devnet.open(settings.devnet_root, settings.resolved_netuid)
    try:
        mg = chain.metagraph()
        last_epoch = chain.last_epoch_block()
        fault = read_fault(chain)
    finally:
        chain.close()
    from .chain.devnet_init import client_names

    try:
        roles = SubnetSpec.load(settings.devnet_root).hotkey_names(settings.devnet_root)
    except TensorageError:
        roles = {}
    roles.update(client_names(settings.devnet_root))
    out.print(metagraph_table(mg, roles, last_epoch, width=out.width))
    if fault is not None:
        out.print(f"[yellow]fault switch on: {fault.describe()}[/]")
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
    if settings.logging.format != "rich":  # each node's log file in the same format as the supervisor's
        args += ["--logging.format", settings.logging.format]
    return tuple(args)


def cmd_devnet_up(settings: Settings, args: argparse.Namespace) -> int:
    from .engines.devnet import DevnetSupervisor
    from .events import EventBus
    from .logs import log_events, setup_logging_for

    setup_logging_for(settings.logging, "devnet")
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


def cmd_devnet_fault(settings: Settings, args: argparse.Namespace) -> int:
    """Make the devnet's chain error or stall for every node using it (or stop that)."""
    from .chain.devnet import Devnet
    from .chain.devnet_faults import set_fault

    chain = Devnet.open(settings.devnet_root, settings.resolved_netuid)
    try:
        fault = set_fault(chain, args.mode, args.seconds, args.stall_seconds)
    finally:
        chain.close()
    out.print("devnet chain answers normally again" if fault is None else f"devnet fault on: {fault.describe()}")
    return 0


# -- miner / validator -------------------------------------------------------------------

def cmd_miner(settings: Settings, args: argparse.Namespace) -> int:
    from .engines.run import main as run_main

    if not settings.profile.secure:
        say(DEVNET_INSECURE_NOTICE)
    if not confirm_smaller_share(settings):
        out.print("nothing changed: start the miner without --size_in_gb to keep the stored share")
        return 1
    return run_main("miner", settings, events_jsonl=args.events == "jsonl")


def confirm_smaller_share(settings: Settings) -> bool:
    """A --size_in_gb smaller than the share stored with the node removes plots: ask first when a
    person is at a terminal (pm2 and systemd have none: the flag is their operator's decision)."""
    from .storage import share as stored_share
    from .storage.layout import Layout

    layout = Layout(settings.db_root)
    stored = stored_share.load(layout)
    resolved, state, _ = stored_share.resolve(settings, layout)
    if stored is None or state.source != "flag" or resolved.size_in_gb >= stored.size_in_gb:
        return True
    if settings.disable_prompt or not sys.stdin.isatty():
        return True
    from .chain.wallets import load_wallet
    from .engines.disks import DiskSet

    allocator = DiskSet(resolved, load_wallet(settings).hotkey.ss58_address)
    try:
        plan = allocator.plan()
    finally:
        allocator.close()
    if not plan.remove:
        return True
    return _confirm(settings, f"--size_in_gb {resolved.size_in_gb:g} is smaller than the share stored with this node "
                              f"({stored.size_in_gb:g} GB, {stored_share.describe(stored)}): {len(plan.remove)} "
                              f"plot(s) would be removed ({plan.remove_reason}). Continue?")


def cmd_validator(settings: Settings, args: argparse.Namespace) -> int:
    from .engines.run import main as run_main

    return run_main("validator", settings, events_jsonl=args.events == "jsonl")


# -- gateway custody ------------------------------------------------------------------------

def cmd_gateway_backup(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from .gateway.backup import backup
    from .storage.layout import Layout

    done = backup(Layout(settings.db_root).require_existing(), Path(args.dest))
    out.print(f"backed up {done.objects} objects ({done.shards} shards) and the wrapping secret to {done.path} "
              f"({done.bytes} bytes; it holds the secret: keep it like a coldkey)", highlight=False)
    return 0


def cmd_gateway_restore(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from .gateway.backup import restore
    from .storage.layout import Layout

    done = restore(Layout(settings.db_root), Path(args.src))
    out.print(f"restored {done.objects} objects ({done.shards} shards) and the wrapping secret under "
              f"{settings.db_root}; start the validator to serve them (what was there is kept as *.pre-restore-*)",
              highlight=False)
    return 0


# -- wiring --------------------------------------------------------------------------------

Handler = Callable[[Settings, argparse.Namespace], int]


COMMAND_FLAGS = {
    "allocate": ("storage", "share", "allocate", "prompt", "chain", "wallet", "devnet", "logging"),
    "miner": ("storage", "share", "reallocate", "prompt", "chain", "wallet", "devnet", "logging", "axon",
              "metrics"),
    "validator": ("storage", "rounds", "weights_store", "chain", "wallet", "devnet", "logging", "axon",
                  "metrics"),
    "status": ("storage", "chain", "wallet", "devnet"),
    "devnet init": ("devnet", "logging"),
        "devnet show": ("devnet",),
    "devnet epoch": ("devnet",),
    "devnet fault": ("devnet",),
    "gateway backup": ("home", "chain", "wallet", "devnet"),
    "gateway restore": ("home", "chain", "wallet", "devnet"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="tensorage", description="tensorage: a storage subnet for Bittensor")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)

    def command(name: str, handler: Handler, help: str, parent=None, *groups: str) -> argparse.ArgumentParser:
        p = (parent or sub).add_parser(name.split()[-1], help=help, description=help)
        add_flags(p, *(groups or COMMAND_FLAGS[name]))
        p.set_defaults(func=handler)
        return p

    p = command("allocate", cmd_allocate, "plan the disk share and fill it with verified plots")
    p.add_argument("--repair", action="store_true", default=False,
                   help="forget plots that are listed but missing or corrupt, and plot them again")
    for name, handler, text in (("miner", cmd_miner, "serve plots and proofs, keep the disk allocated"),
                                ("validator", cmd_validator, "challenge miners, score them, set weights")):
        p = command(name, handler, text)
        p.add_argument("--events", choices=["jsonl"], default=None,
                       help="also write engine events to stdout as JSON lines (for supervisors)")
        if name == "validator":
            add_gateway_flags(p)
    add_client_commands(sub)
    p = command("status", cmd_status, "print this node's state")
    p.add_argument("--json", action="store_true", default=False, help="machine-readable output")
    p.add_argument("--offline", action="store_true", default=False, help="do not contact the chain")

    devnet = sub.add_parser("devnet", help="a whole subnet on this machine", description="a whole subnet on this machine")
    dsub = devnet.add_subparsers(dest="devnet_command", metavar="DEVNET_COMMAND", parser_class=ArgumentParser)
    d = command("devnet init", cmd_devnet_init, "create the devnet chain, wallets and registrations", dsub)
    d.add_argument("--miners", type=int, default=DEVNET_MINERS, help=f"miners to create ({DEVNET_MINERS}: one per "
                   f"shard of the default 4-of-6 erasure code)")
    d.add_argument("--validators", type=int, default=2)
    d.add_argument("--force", action="store_true", default=False, help="replace an existing devnet")
    d = command("devnet up", cmd_devnet_up, "run the whole local subnet (chain clock, miners, validators) until "
                "Ctrl-C", dsub, "devnet", "rounds", "reallocate", "logging")
    d.add_argument("--workers", dest="workers", type=int, default=argparse.SUPPRESS,
                   help="parallel plots per miner (CPU count)")
    d.add_argument("--disable_verify", dest="disable_verify", action="store_true", default=argparse.SUPPRESS,
                   help="miners skip the sample-challenge check of each new plot")
    d.add_argument("--miners", type=int, default=DEVNET_MINERS, help="miners to create if the devnet does not exist yet")
    d.add_argument("--validators", type=int, default=2, help="validators to create if the devnet does not exist yet")
    command("devnet show", cmd_devnet_show, "print the devnet metagraph", dsub)
    command("devnet epoch", cmd_devnet_epoch, "run consensus now", dsub)
    d = command("devnet fault", cmd_devnet_fault, "make the devnet's chain error or stall for its nodes (to try how "
                "they cope), or answer again with `off`", dsub)
    d.add_argument("mode", choices=("error", "stall", "off"), help="error: every chain call fails at once; stall: "
                   "every call hangs, then times out; off: normal again")
    d.add_argument("--seconds", type=float, default=None, help="turn itself off after this long (default: until off)")
    d.add_argument("--stall-seconds", dest="stall_seconds", type=float, default=5.0,
                   help="how long a stalled call hangs before it times out")

    gateway = sub.add_parser("gateway", help="a validator gateway's custody: back up and restore its manifest and "
                                             "wrapping secret", description="back up and restore a validator "
                                             "gateway's manifest and wrapping secret (docs/operators.md)")
    gsub = gateway.add_subparsers(dest="gateway_command", metavar="GATEWAY_COMMAND", parser_class=ArgumentParser)
    g = command("gateway backup", cmd_gateway_backup, "copy the manifest (online) and the secret into one file",
                gsub)
    g.add_argument("dest", help="file to write (or a directory: a dated file in it)")
    g = command("gateway restore", cmd_gateway_restore, "put a backup back under a stopped validator's root", gsub)
    g.add_argument("src", help="the file `tensorage gateway backup` wrote")
    return parser


OWN_ARGS = ("func", "command", "devnet_command", "gateway_command", "miners", "validators", "force", "json", "offline",
            "repair", "events", "dest", "src", "mode", "seconds", "stall_seconds")


def run(argv: Optional[list[str]] = None, parser: Optional[argparse.ArgumentParser] = None) -> int:
    parser = parser or build_parser()

    def call() -> int:
        args, extra = parser.parse_known_args(argv)
        if extra:
            what = " ".join(x for x in (getattr(args, "command", None), getattr(args, "devnet_command", None),
                                        getattr(args, "gateway_command", None)) if x)
            prog = f"tensorage {what}".strip()
            raise ConfigError(f"`{prog}` does not take {' '.join(extra)}: see `{prog} --help` for its flags")
        func: Optional[Handler] = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 2
        ns = {k: v for k, v in vars(args).items() if k not in OWN_ARGS}
        if getattr(args, "command", None) == "devnet":
            ns.setdefault("subtensor.network", "devnet")
        settings = apply_devnet_defaults(settings_from_namespace(ns))
        global _json_stderr
        if settings.logging.format == "json":
            _json_stderr = (getattr(args, "command", None) or "", settings.wallet.name)
        return func(settings, args)

    return guarded(call)


def guarded(call: Callable[[], int]) -> int:
    """Run a command: an operator error becomes one line on stderr and a non-zero exit code."""
    try:
        return call()
    except TensorageError as exc:
        if _json_stderr:
            say(f"error: {exc}", "error")
        else:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        say("interrupted", "info")
        return 130


def main(argv: Optional[list[str]] = None) -> None:
    sys.exit(run(argv))


def console_main(argv: Optional[list[str]] = None) -> None:
    from .console_cli import main as _console

    sys.exit(_console(argv))
