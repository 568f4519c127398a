"""The security suite's world: a real miner and a real validator (with its client gateway) running in
this process on one event loop in a thread of their own, serving on 127.0.0.1 ephemeral ports, on a
real devnet chain file with real plots; the identities a hostile peer may hold; and the test's eyes
(the nodes' files, databases and listing digest, and every error they log).

The nodes' scheduled jobs are paused once they are up, so whatever changes on disk while the suite
runs was caused by a request: that is what the "no state change" checks rely on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Coroutine, Optional

import bittensor as bt

from tensorage import PROTOCOL_VERSION
from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.wallets import create_wallet
from tensorage.config import settings_from_namespace
from tensorage.engines.devnet import node_settings
from tensorage.engines.run import build_node
from tensorage.events import EventBus

from ..windows import current_window
from .rawhttp import Response, request

# Who a hostile request may come from. "own" is the node's own hotkey (the operator's).
IDENTITIES = ("miner", "miner-x", "validator", "client", "stranger")


class ErrorLog(logging.Handler):
    """Every ERROR a node logs (the auth middleware's "handler failed", aiohttp's "Error handling
    request") and every exception its event loop saw but nobody handled."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()} {record.exc_text or ''}".strip())

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.records.append(f"event loop: {context.get('message')} {context.get('exception')!r}")


@dataclass
class Node:
    name: str          # the wallet's name on the devnet
    engine: Any        # MinerEngine or ValidatorEngine
    port: int = 0

    @property
    def hotkey(self) -> str:
        return self.engine.hotkey

    @property
    def root(self) -> Path:
        return Path(self.engine.settings.db_root)


@dataclass
class World:
    root: Path
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    nodes: dict[str, Node] = field(default_factory=dict)
    wallets: dict[str, bt.Wallet] = field(default_factory=dict)
    errors: ErrorLog = field(default_factory=ErrorLog)
    object_id: str = ""  # the client's object on the gateway (see _seed)
    shard_id: str = ""   # its one shard, on the miner
    _thread: Optional[threading.Thread] = None

    # lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        spec = SubnetSpec.load(self.root)
        by_name = {n.name: n for n in spec.nodes}
        self.wallets["miner"] = spec.wallet(self.root, by_name["miner-0"])
        self.wallets["validator"] = spec.wallet(self.root, by_name["validator-0"])
        self.wallets["miner-x"] = create_wallet(self.root / "wallets", "miner-x")    # another registered miner
        self.wallets["client"] = create_wallet(self.root / "wallets", "client-x")    # on --gateway.allow only
        self.wallets["stranger"] = create_wallet(self.root / "wallets", "stranger")  # known to nobody
        chain = Devnet.open(self.root)
        try:
            x = self.wallets["miner-x"]
            chain.register(x.hotkey.ss58_address, x.coldkeypub.ss58_address)
        finally:
            chain.close()
        logging.getLogger().addHandler(self.errors)
        self.loop.set_exception_handler(self.errors.loop_exception)
        self._thread = threading.Thread(target=self.loop.run_forever, name="security-nodes", daemon=True)
        self._thread.start()
        self.run(self._start(), timeout=240)

    def _settings(self, name: str, **flags):
        return node_settings(settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(self.root),
                                                      "wallet.name": name, **flags}))

    async def _start(self) -> None:
        bus = EventBus()
        miner = build_node("miner", self._settings("miner-0", size_in_gb=0.03, seconds_per_reallocate=3600), bus)
        validator = build_node("validator", self._settings(
            "validator-0", **{"gateway.allow": self.wallets["client"].hotkey.ss58_address}), bus)
        for name, engine in (("miner", miner), ("validator", validator)):
            await engine.launch()
            for job in engine.jobs.state():  # quiet: from here on, only requests change a node's state
                engine.jobs.pause(job.id)
            self.nodes[name] = Node(name, engine, engine.served.port)
        await asyncio.to_thread(self.settle)
        await self._seed()
        await asyncio.to_thread(self.settle)

    async def _seed(self) -> None:
        """One object stored by the client through the real gateway (k=1, n=1): the gateway then has
        an object and the miner a certified shard placed by the validator, so ids near real ones
        (and real ones asked by the wrong peer) are tried against real state."""
        from tensorage.client.api import ObjectClient
        from tensorage.client.keyfile import load_or_create_key

        chain = Devnet.open(self.root)
        try:
            gateway = chain.metagraph().by_hotkey(self.nodes["validator"].hotkey)
        finally:
            chain.close()
        source = self.root.parent / "seed.bin"
        source.write_bytes(bytes(range(256)) * 64)
        key = load_or_create_key(self.root.parent / "client.key").key
        client = ObjectClient(self.wallets["client"], key, gateway)
        try:
            self.object_id = (await client.store(source, k=1, n=1)).id
        finally:
            await client.close()
        shards = self.nodes["miner"].root / "shards"
        (self.shard_id,) = [p.name for p in shards.iterdir() if len(p.name) == 64]
        miner = self.nodes["miner"].engine
        for _ in range(120):  # a listing changes at most once per sync period: wait until it names the shard
            if miner.current_listing().cert_count == 1:
                return
            await asyncio.sleep(0.5)
        raise AssertionError("the miner's listing never named the seeded shard")

    def settle(self) -> None:
        """Wait for jobs that were already running when they were paused."""
        for _ in range(600):
            if not any(j.running for n in self.nodes.values() for j in n.engine.jobs.state()):
                return
            time.sleep(0.1)

    def stop(self) -> None:
        async def stop_all() -> None:
            for node in self.nodes.values():
                await node.engine.shutdown()

        try:
            self.run(stop_all(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            logging.getLogger().removeHandler(self.errors)

    def run(self, coro: Coroutine, timeout: float = 60) -> Any:
        """Run a coroutine on the nodes' loop (the nodes' own objects live there)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def quiet(self) -> None:
        """Wait for the gateway's retrievals still running after their answer was read (they count
        the bytes they served when they end)."""
        async def no_retrievals() -> None:
            while self.nodes["validator"].engine.gateway._retrieves:
                await asyncio.sleep(0.01)

        self.run(no_retrievals(), timeout=30)

    # identities -------------------------------------------------------------------------------
    def hotkey(self, who: str) -> str:
        if who in self.nodes:
            return self.nodes[who].hotkey
        return self.wallets[who].hotkey.ss58_address

    def signed(self, who: str, method: str, target: str, body: bytes, receiver: str,
               nonce_ns: Optional[int] = None) -> dict[str, str]:
        return bt.http_auth.sign(self.wallets[who], method=method, path=target, body=body, receiver_ss58=receiver,
                                 nonce_ns=nonce_ns)

    def send(self, node: str, method: str, target: str, body: bytes = b"", headers: Optional[dict] = None,
             signer: Optional[str] = None, receiver: Optional[str] = None, timeout: float = 30.0,
             whole: bool = False) -> Response:
        """One raw HTTP request to ``node``; with ``signer``, signed by that identity for ``receiver``
        (default: the node itself) over exactly the bytes sent."""
        n = self.nodes[node]
        all_headers = dict(headers or {})
        if signer is not None:
            all_headers.update(self.signed(signer, method, target, body, receiver or n.hotkey))
        return request("127.0.0.1", n.port, method, target, body, all_headers, timeout=timeout, whole=whole)

    # honest traffic ---------------------------------------------------------------------------
    def challenge_body(self) -> tuple[bytes, float]:
        """An honest window challenge for the miner (its current listing, the current window) and
        its deadline."""
        miner = self.nodes["miner"].engine
        window, beacon, deadline = current_window(miner.chain, miner.profile, min_left_s=1.5)
        listing = self.run(_listing_digest(miner))
        body = {"protocol": PROTOCOL_VERSION, "window": window,
                "beacon": beacon.hex(), "listing": listing, "deadline": deadline}
        return json.dumps(body).encode(), deadline

    # the test's eyes ---------------------------------------------------------------------------
    def snapshot(self, node: str) -> dict[str, str]:
        """What a request could have changed on ``node``: every file's content (SQLite by its rows,
        so a checkpoint that rewrites pages is no change), and the miner's listing digest. node.json
        (timestamps the node rewrites on any event) and the lock file are left out."""
        self.quiet()
        n = self.nodes[node]
        out = {}
        for p in sorted(n.root.rglob("*")):
            if not p.is_file() or p.name.endswith(("-wal", "-shm", "-journal")) or p.name in ("node.json", "node.lock"):
                continue
            rel = str(p.relative_to(n.root))
            out[rel] = sqlite_digest(p) if p.suffix == ".sqlite" else file_digest(p)
        if node == "miner":
            out["<listing>"] = self.run(_listing_digest(n.engine))
        return out

    def outside_files(self) -> dict[str, str]:
        """Every file of the test's tree that is no node's (wallets, the canary, the devnet's spec),
        with its content digest: a traversal that writes or removes anything shows here."""
        skip = {n.root for n in self.nodes.values()}
        out = {}
        for p in sorted(self.root.parent.rglob("*")):
            if not p.is_file() or any(s == p or s in p.parents for s in skip):
                continue
            if p.name.endswith(("-wal", "-shm", "-journal")) or p.suffix == ".sqlite" or p.suffix == ".log":
                continue  # the devnet chain file advances its block clock on its own
            out[str(p)] = file_digest(p)
        return out


async def _listing_digest(miner) -> str:
    return miner.current_listing().digest_hex


def file_digest(path: Path) -> str:
    """Content hash; a plot (MBs, written once) by its size, mtime and both ends, which any write moves."""
    st = path.stat()
    h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode())
    with path.open("rb") as f:
        if st.st_size <= 1 << 20:
            h.update(f.read())
        else:
            h.update(f.read(1 << 16))
            f.seek(-(1 << 16), 2)
            h.update(f.read())
    return h.hexdigest()


def sqlite_digest(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        h = hashlib.sha256()
        for line in db.iterdump():
            h.update(line.encode())
        return h.hexdigest()
    finally:
        db.close()
