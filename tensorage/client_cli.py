"""`tensorage store | retrieve | ls | rm`: a client's files through a validator gateway.

On the devnet the commands use the wallet named ``client`` unless ``--wallet.name`` says
otherwise. The key file (``--key_file``, default beside the wallet) is made on first store and
never leaves this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)
from rich.table import Table

from .client.connect import client_settings, connect_client, key_path
from .procutil import tune_for_bulk_bytes
from .config import Settings
from .gateway_config import add_gateway_choice_flags
from .net.objects import DEFAULT_K, DEFAULT_N

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

# One convention for every client command (README, "Client data"): a failure is an error, whether
# the command was given one object or several, so scripts test one code.
EXIT_FAILED = 2  # TensorageError.exit_code: what `guarded` returns for an error raised outright
EXIT_CODES = ("exit status: 0 when everything given is done; 2 on any error (with several files or ids: when any "
              "failed, each named on stderr); 130 when interrupted")


def add_client_commands(sub: argparse._SubParsersAction) -> None:
    """Register the client subcommands on ``cli.build_parser``'s subparsers: only the flags a client
    uses (chain, wallet, gateway, key file), not a node's."""

    def command(name: str, handler: Callable, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text, epilog=EXIT_CODES)
        p.set_defaults(func=handler)
        return p

    p = command("store", cmd_store, "encrypt, erasure-code and store files through a validator gateway; prints an "
                                    "object id per file")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--k", type=int, default=DEFAULT_K, help=f"shards needed to rebuild ({DEFAULT_K})")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"shards stored, on n distinct miners ({DEFAULT_N})")
    _common(p)
    p = command("retrieve", cmd_retrieve, "fetch, check and decrypt an object into a file")
    p.add_argument("object_id", metavar="ID")
    p.add_argument("-o", "--output", type=Path, default=None, help="output file (default: its stored name, here)")
    p.add_argument("--force", action="store_true", default=False, help="replace the output file if it exists")
    _common(p)
    p = command("ls", cmd_ls, "list your objects on the gateway")
    p.add_argument("--json", action="store_true", default=False, help="machine-readable output")
    _common(p)
    p = command("rm", cmd_rm, "remove objects (their shards are deleted from the miners)")
    p.add_argument("object_ids", nargs="+", metavar="ID")
    _common(p)
    from .s3_cli import add_s3_command

    add_s3_command(sub, _common)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key_file", type=Path, default=None,
                   help="the client key file (default: tensorage-client.key beside the wallet)")
    c = p.add_argument_group("chain and wallet")
    c.add_argument("--subtensor.network", "--network", dest="subtensor.network", default=argparse.SUPPRESS,
                   help="devnet, finney, test, local or ws://host:port (finney)")
    c.add_argument("--netuid", dest="netuid", type=int, default=argparse.SUPPRESS,
                   help="subnet uid (7 on finney, 12 on test)")
    c.add_argument("--wallet.name", dest="wallet.name", default=argparse.SUPPRESS,
                   help="coldkey name (default; on the devnet: client)")
    c.add_argument("--wallet.hotkey", dest="wallet.hotkey", default=argparse.SUPPRESS, help="hotkey name (default)")
    c.add_argument("--wallet.path", dest="wallet.path", default=argparse.SUPPRESS,
                   help="wallet directory (~/.bittensor/wallets)")
    c.add_argument("--devnet.root", dest="devnet.root", default=argparse.SUPPRESS,
                   help="devnet chain and wallets (~/.tensorage/devnet)")
    add_gateway_choice_flags(p)


@contextmanager
def _progress() -> Iterator[Progress]:
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=err, transient=False, disable=not err.is_terminal)
    with bar:
        yield bar


def key_for_writing(settings: Settings, key_file: Optional[str]):
    """The client key, made on first use (``store``, ``s3``), with the warning to back it up."""
    from .client.keyfile import load_or_create_key, terminal_ask

    key = load_or_create_key(key_path(settings, key_file), terminal_ask())
    if key.created:
        err.print(f"[yellow]created the key file {key.path}: back it up — without it your objects cannot be "
                  f"decrypted by anyone[/]")
    return key


def cmd_store(settings: Settings, args: argparse.Namespace) -> int:
    from .errors import TensorageError

    settings = client_settings(settings)
    key = key_for_writing(settings, args.key_file)

    async def run() -> int:
        failed = 0
        client = await connect_client(settings, key.key)
        try:
            with _progress() as bar:
                for path in args.files:
                    size = path.stat().st_size if path.is_file() else 0
                    task = bar.add_task(f"store {path.name}", total=size)
                    try:
                        stored = await client.store(path, args.k, args.n,
                                                    progress=lambda done, t=task: bar.update(t, completed=done))
                    except TensorageError as exc:
                        failed += 1
                        bar.update(task, description=f"[red]failed {path.name}")
                        err.print(f"[bold red]error:[/] {exc}", highlight=False)
                        continue
                    bar.update(task, completed=size)
                    out.print(f"{stored.id}  {path}", highlight=False)
        finally:
            await client.close()
        return EXIT_FAILED if failed else 0

    tune_for_bulk_bytes()
    return asyncio.run(run())


def cmd_retrieve(settings: Settings, args: argparse.Namespace) -> int:
    from .client.keyfile import load_key, terminal_ask

    settings = client_settings(settings)
    key = load_key(key_path(settings, args.key_file), terminal_ask())

    async def run() -> int:
        client = await connect_client(settings, key.key)
        try:
            with _progress() as bar:
                task = bar.add_task(f"retrieve {args.object_id[:12]}", total=None)

                def started(entry, target) -> None:
                    from .client.sealing import open_meta

                    size = (open_meta(key.key, entry.meta) or {}).get("size")
                    bar.update(task, description=f"retrieve {target}", total=size if isinstance(size, int) else None)

                got = await client.retrieve(args.object_id, args.output, force=args.force,
                                            progress=lambda done: bar.update(task, completed=done),
                                            on_start=started)
                bar.update(task, total=got.plain_size, completed=got.plain_size)
        finally:
            await client.close()
        err.print(f"wrote {got.path} ({got.plain_size} bytes, sha256 {got.sha256}, every tag checked)",
                  highlight=False)
        return 0

    tune_for_bulk_bytes()
    return asyncio.run(run())


def cmd_ls(settings: Settings, args: argparse.Namespace) -> int:
    from .client.errors import KeyFileError
    from .client.keyfile import load_key, terminal_ask

    settings = client_settings(settings)
    try:
        key = load_key(key_path(settings, args.key_file), terminal_ask()).key
    except KeyFileError:
        key = b""  # names stay sealed, ids and sizes still list

    async def run() -> int:
        client = await connect_client(settings, key)
        try:
            objects, used, quota = await client.list()
        finally:
            await client.close()
        if args.json:
            rows = [{k: v for k, v in o.__dict__.items() if k != "meta"} for o in objects]
            print(json.dumps({"objects": rows, "used_bytes": used, "quota_bytes": quota}, indent=2))
            return 0
        render_listing(out, objects, used, quota)
        return 0

    return asyncio.run(run())


def render_listing(console: Console, objects: list, used: int, quota: int) -> None:
    """One line per object, name last. In a pipe the lines are plain and never wrapped (scripts cut
    columns); at a terminal a table fits the width and cuts a long name with an ellipsis instead of
    squeezing every other name (one 250-character name made every name 11 characters wide)."""
    noun = "object" if len(objects) == 1 else "objects"
    title = f"{len(objects)} {noun}, {used / 1e6:.2f} of {quota / 1e6:.0f} MB used"
    rows = [(o.id, _size(o.plain_size if o.plain_size is not None else o.size), f"{o.healthy}/{o.n}", o.state,
             dt.datetime.fromtimestamp(o.created_at).strftime("%m-%d %H:%M"),
             o.name if o.name is not None else "(sealed with another key)") for o in objects]
    if not console.is_terminal:
        console.file.write(title + "\n")
        for row in rows:
            console.file.write("  ".join(row) + "\n")
        return
    table = Table(title=title, box=None, padding=(0, 1, 0, 0), pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=32)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("shards", justify="right", no_wrap=True)  # healthy of n (k rebuild)
    table.add_column("state", no_wrap=True)
    table.add_column("stored", no_wrap=True)
    headers = ("id", "size", "shards", "state", "stored")
    fixed = sum(max([len(h)] + [len(r[i]) for r in rows]) + 1 for i, h in enumerate(headers))
    table.add_column("name", no_wrap=True, overflow="ellipsis", max_width=max(10, console.width - fixed))
    for row in rows:
        table.add_row(*row)
    console.print(table, soft_wrap=False, highlight=False)


def cmd_rm(settings: Settings, args: argparse.Namespace) -> int:
    from .errors import TensorageError

    settings = client_settings(settings)

    async def run() -> int:
        failed = 0
        client = await connect_client(settings, b"")
        try:
            for object_id in args.object_ids:
                try:
                    await client.remove(object_id)
                    out.print(f"removed {object_id}", highlight=False)
                except TensorageError as exc:
                    failed += 1
                    err.print(f"[bold red]error:[/] {exc}", highlight=False)
        finally:
            await client.close()
        return EXIT_FAILED if failed else 0

    return asyncio.run(run())


def _size(n: Optional[int]) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)
