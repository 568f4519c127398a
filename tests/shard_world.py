"""A small world for attacks on client shards: a real miner ShardService behind the real signed-request
middleware on 127.0.0.1, a real Gateway (manifest, peers, placement, certificates) on the same metagraph, and the
real window planner/checker. No devnet, no plots: cheap enough for a 2-core machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import bittensor as bt

from tensorage.chain.port import Metagraph, Neuron
from tensorage.chain.wallets import create_wallet
from tensorage.config import PROFILES, settings_from_namespace
from tensorage.engines.shard_routes import ShardService
from tensorage.engines.window_checks import MinerView, SeenListing, judge_task, plan
from tensorage.net.auth import PeerDirectory
from tensorage.net.client import Reply, SignedClient
from tensorage.net.server import make_app, serve
from tensorage.proofs import merkle
from tensorage.proofs.answers import check_answer, encode_answer
from tensorage.proofs.listing import Listing
from tensorage.proofs.windows import window_challenge
from tensorage.storage.layout import Layout

DEV = PROFILES["devnet"]
NETUID = 7


def neuron(hotkey: str, uid: int, axon: Optional[str], permit: bool = False, stake: float = 0.0,
           coldkey: Optional[str] = None) -> Neuron:
    return Neuron(uid=uid, hotkey=hotkey, coldkey=coldkey or hotkey, active=True, validator_permit=permit,
                  last_update=0, block_at_registration=0, rank=0, trust=0, consensus=0, incentive=0, dividends=0,
                  emission=0, total_stake=stake, axon=axon)


class StubAllocator:
    """No plots on disk: shards only (the miner's plots are not what these attacks need)."""

    def plots_on_disk_bytes(self) -> int:
        return 0

    def free_for_shards(self, n: int) -> None:
        pass


def tree_of(data: bytes) -> merkle.ShardTree:
    b = merkle.MerkleBuilder()
    b.update(data)
    return b.finish()


@dataclass
class Miner:
    wallet: bt.Wallet
    service: ShardService
    served: object
    directory: PeerDirectory

    @property
    def hotkey(self) -> str:
        return self.wallet.hotkey.ss58_address

    @property
    def port(self) -> int:
        return self.served.port  # type: ignore[attr-defined]


@dataclass
class World:
    root: Path
    mg: Metagraph
    miners: list[Miner] = field(default_factory=list)
    wallets: dict[str, bt.Wallet] = field(default_factory=dict)
    clients: list[SignedClient] = field(default_factory=list)

    def client(self, name: str) -> SignedClient:
        c = SignedClient(self.wallets[name])
        self.clients.append(c)
        return c

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        for m in self.miners:
            await m.served.close()  # type: ignore[attr-defined]
            m.service.close()


async def start_miner(world: World, name: str, uid: int, share_bytes: int = 1 << 30) -> Miner:
    wallet = create_wallet(world.root / "w", name)
    world.wallets[name] = wallet
    hotkey = wallet.hotkey.ss58_address
    layout = Layout(world.root / name).ensure()

    def stake_share(h: str) -> float:
        total = sum(n.total_stake for n in world.mg.validators)
        n = world.mg.by_hotkey(h)
        return n.total_stake / total if n is not None and n.validator_permit and total > 0 else 0.0

    service = ShardService(layout, StubAllocator(), lambda: share_bytes, hotkey,
                           bt.resolve_signer(wallet, role="hotkey"), stake_share, DEV.max_listed_shards,
                           max_expiry=lambda: world.mg.block + 2 * DEV.cert_lifetime_blocks)  # as MinerEngine

    async def load() -> Metagraph:
        return world.mg

    directory = PeerDirectory(load)
    directory.update(world.mg)
    app = make_app(hotkey, directory, NETUID, max_body=8 << 20)
    service.add_routes(app)
    served = await serve(app)
    world.mg.neurons.append(neuron(hotkey, uid, f"127.0.0.1:{served.port}"))
    m = Miner(wallet, service, served, directory)
    world.miners.append(m)
    return m


def add_validator(world: World, name: str, uid: int, stake: float) -> bt.Wallet:
    wallet = create_wallet(world.root / "w", name)
    world.wallets[name] = wallet
    world.mg.neurons.append(neuron(wallet.hotkey.ss58_address, uid, None, permit=True, stake=stake))
    return wallet


def make_gateway(world: World, name: str):
    from tensorage.gateway import Gateway

    wallet = world.wallets[name]
    settings = settings_from_namespace({"subtensor.network": "devnet", "db_root_path": str(world.root / f"gw-{name}")})
    client = SignedClient(wallet)
    world.clients.append(client)
    return Gateway(settings, Layout(settings.db_root), wallet.hotkey.ss58_address, client, lambda: world.mg,
                   head_block=lambda: world.mg.block)


def window_verdict(miner: Miner, listing: Listing, window: int, block: int):
    """What every validator concludes about one window of this miner: the real planner, the miner's
    real chunk reads from disk, the real checker and judge."""
    view = MinerView(neuron=neuron(miner.hotkey, 1, "127.0.0.1:1"), seen=[SeenListing(listing, 0)])
    beacon = os.urandom(32)
    challenge = window_challenge(beacon, window)
    (task,) = plan(DEV, [view], window, block, challenge, beacon_at=float(block), block_s=1.0)
    proofs = miner.service.store.read_proofs(list(task.spec.chunks))
    raw = encode_answer(window, listing.digest_hex, [], proofs)
    task.reply = Reply(status=200, body=raw, latency_ms=1.0, arrived_at=0.0)
    task.check = check_answer(raw, task.spec)
    return judge_task(task, 0.0), task
