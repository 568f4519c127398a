"""A real devnet for client data: miner processes, one validator gateway, client wallets, and the
test's eyes on it (the gateway's SQLite manifest, the miners' shard directories, job runs)."""

from __future__ import annotations

import re

import asyncio
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import bittensor as bt

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.wallets import create_wallet
from tensorage.client.api import ObjectClient
from tensorage.client.keyfile import load_or_create_key
from tensorage.net.client import SignedClient
from tensorage.storage.gateway_db import GatewayStore

from .subnet import Subnet, wait_for

VALIDATOR = "validator-0"


class ObjectNet:
    def __init__(self, root: Path, miners: int, size: float, validator_args: tuple[str, ...],
                 adversary: Optional[str] = None, guests: tuple[str, ...] = (), names: Optional[list[str]] = None,
                 strategies: Optional[dict[str, str]] = None) -> None:
        """``names``: the miners' names (default miner-0...); ``strategies``: miners that run as
        tests.shard_adversaries STRATEGY; ``adversary``: the miner that runs as tests.client_adversary."""
        self.subnet = Subnet.create(root, miners=miners, validators=1, sizes=(size,), names=names)
        self.root = root
        self.size = size
        self.miners = list(names) if names is not None else [f"miner-{i}" for i in range(miners)]
        self.strategies = strategies or {}
        self.adversary = adversary
        self.guests = {g: create_wallet(root / "wallets", g) for g in guests}
        allow = ",".join(w.hotkey.ss58_address for w in self.guests.values())
        self.validator_args = validator_args + (("--gateway.allow", allow) if allow else ())
        self.dead: set[str] = set()

    @classmethod
    def wrap(cls, subnet: Subnet, miners: list[str]) -> "ObjectNet":
        """The test's eyes and hands on a subnet some other fixture made and started."""
        net = cls.__new__(cls)
        net.subnet, net.root, net.size, net.miners = subnet, subnet.root, 0.0, list(miners)
        net.strategies, net.adversary, net.guests, net.validator_args, net.dead = {}, None, {}, (), set()
        return net

    # processes ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Every process at once (2 cores: the imports overlap; each miner plots what the plots
        this session already made for its hotkey, copied in first, leave to make), then one
        metagraph sync so the gateway sees every miner's endpoint."""
        self.subnet.provide_cached({name: self.size for name in self.miners})
        for name in self.miners:
            self._start_miner(name)
        self.start_validator()
        wait_for(lambda: self.subnet.served(self.miners), 120, "every miner to serve")
        self.run_job("sync")

    def _start_miner(self, name: str) -> None:
        # --disable_verify: these miners' plots only keep proof rounds quiet; client data needs none
        if name == self.adversary:
            self.subnet.start(name, ["tests.client_adversary"], "--size_in_gb", str(self.size), "--disable_verify",
                              "--workers", "1")
        elif name in self.strategies:
            self.subnet.start(name, ["tests.shard_adversaries", self.strategies[name]], "--size_in_gb", str(self.size),
                              "--disable_verify", "--workers", "1")
        else:
            self.subnet.start_miner(name, self.size, "--disable_verify", "--workers", "1")

    def start_validator(self) -> None:
        before = self.endpoint_of(VALIDATOR)
        self.subnet.start_validator(VALIDATOR, *self.validator_args)
        wait_for(lambda: self.endpoint_of(VALIDATOR) not in (None, before) and self.gateway_up(), 120,
                 "the validator's gateway")
        wait_for(self.jobs_ready, 120, "the validator's jobs")  # it serves before its first sync adds them

    def jobs_ready(self, node: str = VALIDATOR) -> bool:
        try:
            return "sync" in {j["id"] for j in self.state(node)["jobs"]}
        except Exception:  # noqa: BLE001 - not answering yet
            return False

    def stop_validator(self) -> None:
        self.subnet.kill(VALIDATOR, signal.SIGTERM)

    def kill(self, name: str) -> None:
        self.subnet.kill(name)
        self.dead.add(name)

    def revive(self, name: str) -> None:
        """Start a killed miner again (same db root) and let the validator see its new endpoint."""
        before = self.endpoint_of(name)
        self._start_miner(name)
        wait_for(lambda: self.endpoint_of(name) != before, 120, f"{name} to serve again")
        self.dead.discard(name)
        self.run_job("sync")

    def restore(self) -> list[str]:
        """Put back whatever a test left broken, whether it passed or not: paused processes go
        on, a miner or validator that is down is started again. Tests of one module share the
        net, so each of them starts from a whole one whatever ran (or failed) before. Returns
        what it had to restore."""
        fixed = []
        for name, proc in list(self.subnet.procs.items()):
            if proc.poll() is None and self._stopped(proc.pid):
                proc.send_signal(signal.SIGCONT)
                fixed.append(f"{name} continued")
        for name in self.miners:
            if not self.subnet.alive(name):
                self.subnet.procs.pop(name, None)
                self.revive(name)
                fixed.append(f"{name} revived")
        if not self.subnet.alive(VALIDATOR):
            self.subnet.procs.pop(VALIDATOR, None)
            self.start_validator()
            self.run_job("sync")
            fixed.append(f"{VALIDATOR} restarted")
        return fixed

    @staticmethod
    def _stopped(pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] == "T"

    def close(self, graceful: bool = True) -> None:
        self.subnet.stop_all(graceful)
        self.subnet.remember(self.miners)

    # identities ------------------------------------------------------------------------------------
    def wallet(self, name: str) -> bt.Wallet:
        if name in self.guests:
            return self.guests[name]
        if name == "client":
            return bt.Wallet(name="client", hotkey="default", path=str(self.root / "wallets"))
        spec = SubnetSpec.load(self.root)
        return spec.wallet(self.root, next(n for n in spec.nodes if n.name == name))

    def hotkey(self, name: str) -> str:
        return self.wallet(name).hotkey.ss58_address

    def name_of(self, hotkey: str) -> str:
        return next(n for n in self.miners if self.hotkey(n) == hotkey)

    def neuron(self, name: str):
        chain = Devnet.open(self.root)
        try:
            return chain.metagraph().by_hotkey(self.hotkey(name))
        finally:
            chain.close()

    def endpoint_of(self, name: str):
        n = self.neuron(name)
        return n.axon if n else None

    def gateway_up(self, node: str = VALIDATOR) -> bool:
        try:
            return asyncio.run(self._call(node, "GET", "/v1/gateway")).status == 200
        except Exception:
            return False

    @property
    def flags(self) -> tuple[str, ...]:
        return ("--subtensor.network", "devnet", "--devnet.root", str(self.root))

    # talking to nodes ------------------------------------------------------------------------------
    async def _call(self, node: str, method: str, path: str, body: bytes = b"", as_: Optional[str] = None):
        wallet = self.wallet(as_ or node)
        neuron = self.neuron(node)
        host, port = neuron.endpoint
        client = SignedClient(wallet)
        try:
            return await client.request(method, host, port, path, neuron.hotkey, body=body, timeout=30)
        finally:
            await client.close()

    def call(self, node: str, method: str, path: str, body: bytes = b"", as_: Optional[str] = None):
        return asyncio.run(self._call(node, method, path, body, as_))

    def state(self, node: str = VALIDATOR) -> dict:
        reply = self.call(node, "GET", "/v1/state")
        assert reply.status == 200, reply.error_message
        return reply.json()

    def run_job(self, job: str, timeout: float = 120, node: str = VALIDATOR) -> str:
        """Run a node's job now and wait for that run to finish; returns its result line."""
        # a node that just started serves its state a moment before its scheduler lists the job
        runs = wait_for(lambda: next(((j["runs"],) for j in self.state(node)["jobs"] if j["id"] == job), None),
                        timeout, f"job {job} to be scheduled", every=0.2)[0]
        reply = self.call(node, "POST", f"/v1/jobs/{job}/run")
        assert reply.status == 200, reply.error_message
        done = wait_for(lambda: next((j for j in self.state(node)["jobs"] if j["id"] == job and j["runs"] > runs
                                      and not j["running"]), None), timeout, f"job {job} to run", every=0.2)
        assert done["last_ok"], done["last_result"]
        return done["last_result"]

    def window(self, timeout: float = 120) -> str:
        """One proof round on the next fresh window, as the validator's schedule would run it, and
        its verdict once the beacon block is deep enough (the settle_windows job); returns the
        verdict's line."""
        def fresh_round():
            found = re.search(r"window (\d+): asked", self.run_job("proof_round"))
            return int(found.group(1)) if found else None

        window = wait_for(fresh_round, timeout, "a proof round on a fresh window", every=0.5)

        def verdict():
            last = self.state()["last_verdict"]
            return last["summary"] if last["window"] >= window else None

        return wait_for(verdict, timeout, f"window {window}'s verdict", every=0.25)

    def listed_by_validator(self) -> dict[str, set[str]]:
        """Shard ids each miner's newest listing certifies, as the validator stored it."""
        return {h: {c.shard_hex for c in certs} for h, certs in self.certificates_listed().items()}

    def certificates_listed(self) -> dict[str, list]:
        """The certificates each miner's newest listing carries, as the validator stored it."""
        from tensorage.config import PROFILES
        from tensorage.proofs.listing_spool import ListingUnavailable

        profile = PROFILES["devnet"]
        out: dict[str, list] = {}
        store = self.subnet.store(VALIDATOR)
        try:
            for row in store.listings():  # oldest first per miner: the newest wins
                try:
                    listing = store.listing(row, profile.max_listed_plots, profile.max_listed_shards)
                except ListingUnavailable:  # a snapshot the validator no longer follows
                    continue
                out[row.hotkey] = listing.certificates()
        finally:
            store.close()
        return out

    def until_listed(self, object_ids, timeout: float = 90) -> None:
        """Sync until the validator holds listings that certify every live shard of these objects
        (a miner changes its listing at most once per sync period), then let a window pass so those
        listings are older than the next beacon."""
        ids = [object_ids] if isinstance(object_ids, str) else list(object_ids)

        def all_listed() -> bool:
            self.run_job("sync")
            listed = self.listed_by_validator()
            rows = [r for oid in ids for r in self.shards_of(oid, "healthy", "suspect")]
            return all(r.hash in listed.get(r.miner, set()) for r in rows if self.name_of(r.miner) not in self.dead)

        wait_for(all_listed, timeout, "the miners' listings to certify the shards", every=1.0)
        self.window()

    @contextmanager
    def client(self, wallet: str = "client", key_file: Optional[Path] = None) -> Iterator["SyncClient"]:
        key = load_or_create_key(key_file or (self.root / "keys" / f"{wallet}.key"))
        yield SyncClient(self, self.wallet(wallet), key.key)

    # the test's eyes ------------------------------------------------------------------------------
    @contextmanager
    def manifest(self) -> Iterator[GatewayStore]:
        store = GatewayStore(self.subnet.db_root(VALIDATOR) / "index" / "gateway.sqlite")
        try:
            yield store
        finally:
            store.close()

    def shards_of(self, object_id: str, *states: str) -> list:
        with self.manifest() as m:
            return m.object_shards(object_id, *states)

    def shard_files(self, name: str) -> dict[str, int]:
        d = self.subnet.db_root(name) / "shards"
        return {p.name: p.stat().st_size for p in d.iterdir() if not p.name.endswith(".tree")} if d.exists() else {}

    def shard_path(self, row) -> Path:
        return self.subnet.db_root(self.name_of(row.miner)) / "shards" / row.hash

    def alive_miners(self) -> list[str]:
        return [m for m in self.miners if m not in self.dead]

    def orphans(self) -> dict[str, set[str]]:
        """Shard files on live miners that the manifest does not count as live, per miner."""
        with self.manifest() as m:
            live = {(r.miner, r.hash) for r in m.Shard.select().where(m.Shard.state.in_(["placed", "healthy", "suspect", "lost"]))}
        out = {}
        for name in self.alive_miners():
            extra = {h for h in self.shard_files(name) if (self.hotkey(name), h) not in live}
            if extra:
                out[name] = extra
        return out


class SyncClient:
    """The client API, one event loop per call (tests are synchronous)."""

    def __init__(self, net: ObjectNet, wallet: bt.Wallet, key: bytes) -> None:
        self.net, self.wallet, self.key = net, wallet, key

    def _run(self, op):
        async def go():
            gw = self.net.neuron(VALIDATOR)
            client = ObjectClient(self.wallet, self.key, gw)
            try:
                return await op(client)
            finally:
                await client.close()

        return asyncio.run(go())

    def store(self, path: Path, **kw):
        return self._run(lambda c: c.store(path, **kw))

    def retrieve(self, object_id: str, out: Path, **kw):
        return self._run(lambda c: c.retrieve(object_id, out, **kw))

    def list(self):
        return self._run(lambda c: c.list())

    def remove(self, object_id: str):
        return self._run(lambda c: c.remove(object_id))


def cli_ids(stdout: str) -> dict[str, str]:
    """`tensorage store` output: '<id>  <path>' per line -> {path: id}."""
    out = {}
    for line in stdout.strip().splitlines():
        object_id, _, path = line.partition("  ")
        out[path.strip()] = object_id.strip()
    return out
