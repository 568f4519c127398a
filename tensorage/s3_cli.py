"""`tensorage s3`: serve S3 on 127.0.0.1 with the client's wallet and key file, so aws-cli, boto3
and rclone store on the subnet. Its state (credentials, the name mapping, spooled bodies) lives
beside the key file unless ``--s3.dir`` says otherwise."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from rich.console import Console

from .config import Settings

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
DEFAULT_PORT = 9009


def add_s3_command(sub: argparse._SubParsersAction, common) -> None:
    text = "serve S3 on 127.0.0.1 (aws-cli, boto3, rclone): objects are encrypted here and stored on the subnet"
    p = sub.add_parser("s3", help=text, description=text)
    p.set_defaults(func=cmd_s3)
    p.add_argument("--s3.port", dest="s3_port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    p.add_argument("--s3.host", dest="s3_host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1: plaintext stays on this machine)")
    p.add_argument("--s3.dir", dest="s3_dir", type=Path, default=None,
                   help="credentials, name mapping and spool (default: beside the key file)")
    common(p)


def cmd_s3(settings: Settings, args: argparse.Namespace) -> int:
    from aiohttp import web

    from .client.connect import client_settings
    from .client_cli import key_for_writing
    from .procutil import tune_for_bulk_bytes
    from .s3.auth import CREDENTIALS_FILE, Verifier, load_or_create
    from .s3.mapping import Mapping
    from .s3.rebuild import rebuild
    from .s3.remote import Remote
    from .s3.routes import S3Server

    settings = client_settings(settings)
    key = key_for_writing(settings, args.key_file)
    state = Path(args.s3_dir) if args.s3_dir else key.path.parent
    state.mkdir(parents=True, exist_ok=True)
    creds = load_or_create(state / CREDENTIALS_FILE)
    if creds.created:
        out.print(f"created S3 credentials (shown once; kept in {creds.path}):\n"
                  f"  aws_access_key_id = {creds.access_key}\n  aws_secret_access_key = {creds.secret_key}",
                  highlight=False)
    else:
        out.print(f"S3 credentials: {creds.path}", highlight=False)
    mapping = Mapping(state / "tensorage-s3.sqlite")
    tune_for_bulk_bytes()

    async def run() -> int:
        from concurrent.futures import ThreadPoolExecutor

        # bodies stored while they arrive hold a worker thread each, waiting for bytes
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32, thread_name_prefix="s3"))
        remote = Remote(settings, key.key)
        await remote.client()  # a gateway now, or a clear error before anything listens
        rebuilt = await rebuild(mapping, remote)
        if rebuilt.added:
            out.print(f"mapping: {rebuilt.added} object(s) added from the gateway's listing", highlight=False)
        if rebuilt.sealed_elsewhere:
            err.print(f"[yellow]{rebuilt.sealed_elsewhere} object(s) of this wallet are sealed under another key "
                      f"file: not served here[/]")
        server = S3Server(mapping, remote, Verifier(creds), state / "tensorage-s3-spool")
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.s3_host, args.s3_port)
        await site.start()
        port = runner.addresses[0][1]
        out.print(f"serving S3 on http://{args.s3_host}:{port} (gateway uid {remote._client.gateway.uid}); "
                  f"Ctrl-C stops", highlight=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            await remote.close()
            mapping.close()
        return 0

    return asyncio.run(run())
