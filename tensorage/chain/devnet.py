"""The devnet: a whole subnet's chain state in one SQLite file that several processes share.

It holds hotkeys, stake, permits, endpoints, weights and a block clock
(``block = (now - genesis) / block_time``), and runs simplified Yuma consensus each
epoch. Only the chain is simulated: the miners and validators that use it are real
processes talking signed HTTP on 127.0.0.1. Writes take SQLite's write lock up front
(``BEGIN IMMEDIATE``) so concurrent registrations and weight sets serialize cleanly.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import bittensor as bt
import peewee as pw

from ..config import PROFILES
from ..errors import BlockNotYet, ChainError, ConfigError, NotRegistered
from ..storage.files import atomic_write
from ..storage.models import open_sqlite
from .consensus import yuma
from .devnet_faults import faultable
from .port import Metagraph, Neuron

MAX_UIDS = 256
MAX_VALIDATORS = 64
EMISSION_PER_BLOCK = 1.0
CHAIN_FILE = "chain.sqlite"
SUBNET_FILE = "subnet.json"
BLOCK_HASHES_KEPT = 100_000   # a day of 1 s blocks; older beacons are forgotten
BLOCK_HASH_PRUNE_EVERY = 1000


def _models(db: pw.Database):
    class Base(pw.Model):
        class Meta:
            database = db

    class Meta_(Base):
        key = pw.CharField(primary_key=True)
        value = pw.TextField()

        class Meta:
            table_name = "meta"

    class NeuronRow(Base):
        uid = pw.IntegerField(primary_key=True)
        hotkey = pw.CharField(unique=True)
        coldkey = pw.CharField()
        stake = pw.FloatField(default=0.0)
        validator_permit = pw.BooleanField(default=False)
        ip = pw.CharField(null=True)
        port = pw.IntegerField(null=True)
        registered_block = pw.IntegerField()
        last_update = pw.IntegerField(default=0)
        rank = pw.FloatField(default=0.0)
        trust = pw.FloatField(default=0.0)
        consensus = pw.FloatField(default=0.0)
        incentive = pw.FloatField(default=0.0)
        dividends = pw.FloatField(default=0.0)
        emission = pw.FloatField(default=0.0)

        class Meta:
            table_name = "neurons"

    class WeightRow(Base):
        validator_uid = pw.IntegerField()
        miner_uid = pw.IntegerField()
        weight = pw.FloatField()
        block = pw.IntegerField()

        class Meta:
            table_name = "weights"
            primary_key = pw.CompositeKey("validator_uid", "miner_uid")

    class EpochRow(Base):
        block = pw.IntegerField(primary_key=True)
        ran_at = pw.FloatField()

        class Meta:
            table_name = "epochs"

    class BlockHashRow(Base):
        block = pw.IntegerField(primary_key=True)
        hash = pw.BlobField()
        made_at = pw.FloatField()  # a row written before its block's time is ignored and redrawn

        class Meta:
            table_name = "block_hashes"

    return Meta_, NeuronRow, WeightRow, EpochRow, BlockHashRow


@dataclass
class DevnetNode:
    """A node of the local subnet, as `tensorage devnet up` runs it."""

    name: str
    role: str  # miner | validator
    size_in_gb: float
    db_root_path: Optional[str] = None  # default: <devnet root>/nodes/<name>
    workers: Optional[int] = None

    @property
    def wallet_name(self) -> str:
        return self.name


@dataclass
class SubnetSpec:
    nodes: list[DevnetNode]

    def save(self, root: Path) -> None:
        atomic_write(root / SUBNET_FILE, json.dumps({"nodes": [asdict(n) for n in self.nodes]}, indent=2).encode())

    @classmethod
    def load(cls, root: Path) -> "SubnetSpec":
        path = root / SUBNET_FILE
        try:
            data = json.loads(path.read_text())
            return cls(nodes=[DevnetNode(**n) for n in data["nodes"]])
        except FileNotFoundError:
            raise ChainError(f"no devnet at {root}: run `tensorage devnet init` first") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ChainError(f"{path} is damaged ({exc}): run `tensorage devnet init --force` to recreate the devnet") from None

    def of_role(self, role: str) -> list[DevnetNode]:
        return [n for n in self.nodes if n.role == role]

    def wallet(self, root: Path, node: DevnetNode) -> bt.Wallet:
        return bt.Wallet(name=node.wallet_name, hotkey="default", path=str(Path(root) / "wallets"))

    def hotkey_names(self, root: Path) -> dict[str, str]:
        """hotkey -> node name, for tables (nodes whose wallet is gone are skipped)."""
        names = {}
        for node in self.nodes:
            try:
                names[self.wallet(root, node).hotkey.ss58_address] = node.name
            except OSError:
                continue
        return names


class Devnet:
    """The devnet chain backend (implements :class:`~tensorage.chain.port.ChainPort`)."""

    network = "devnet"

    def __init__(self, root: Path, netuid: int = 7) -> None:
        self.root = Path(root)
        self.netuid = netuid
        path = self.root / CHAIN_FILE
        if not path.exists():
            raise ChainError(f"no devnet chain at {path}: run `tensorage devnet init` first")
        self.db = open_sqlite(path, "devnet (`tensorage devnet init --force`)")
        self.Meta, self.NeuronRow, self.WeightRow, self.EpochRow, self.BlockHashRow = _models(self.db)
        self.db.create_tables([self.Meta, self.NeuronRow, self.WeightRow, self.EpochRow, self.BlockHashRow], safe=True)
        self._genesis = float(self._meta("genesis", "0"))
        self.seconds_per_block = float(self._meta("block_time", str(PROFILES["devnet"].block_time_s)))
        self.tempo = int(self._meta("tempo", str(PROFILES["devnet"].tempo)))
        runs = int(self._meta("netuid", str(netuid)))
        if runs != netuid:  # one subnet per devnet: another netuid is a mistake, never silently this one
            self.db.close()
            raise ConfigError(f"the devnet at {self.root} runs netuid {runs} only, not {netuid}: leave out --netuid "
                              f"(or pass --netuid {runs})")

    # lifecycle -------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, block_time: Optional[float] = None, tempo: Optional[int] = None,
               netuid: int = 7) -> "Devnet":
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        db = open_sqlite(root / CHAIN_FILE, "devnet")
        Meta, NeuronRow, WeightRow, EpochRow, BlockHashRow = _models(db)
        with db.atomic("IMMEDIATE"):
            db.create_tables([Meta, NeuronRow, WeightRow, EpochRow, BlockHashRow], safe=True)
            defaults = {
                "genesis": repr(time.time()),
                "block_time": repr(block_time or PROFILES["devnet"].block_time_s),
                "tempo": str(tempo or PROFILES["devnet"].tempo),
                "netuid": str(netuid),
            }
            for key, value in defaults.items():
                Meta.insert(key=key, value=value).on_conflict_ignore().execute()
        db.close()
        return cls(root, netuid)

    @classmethod
    def open(cls, root: Path, netuid: int = 7) -> "Devnet":
        return cls(Path(root), netuid)

    def close(self) -> None:
        self.db.close()

    def _meta(self, key: str, default: str) -> str:
        row = self.Meta.get_or_none(self.Meta.key == key)
        return row.value if row else default

    # clock -------------------------------------------------------------------------------
    @faultable
    def block(self) -> int:
        return int((time.time() - self._genesis) / self.seconds_per_block)

    @faultable
    def block_timestamp(self, block: int) -> float:
        if block > self.block():
            raise BlockNotYet(f"devnet block {block} is not made yet (head is {self.block()})")
        return self._genesis + block * self.seconds_per_block

    @faultable
    def block_time(self) -> float:
        return self.seconds_per_block

    @faultable
    def block_hash(self, block: int) -> bytes:
        """A random hash per block, drawn by whoever asks first once the block's time has come, so
        no process can know it before then (the beacon of proof windows). A row dated before its
        block's time (written ahead by someone hoping to choose a beacon) is ignored and redrawn.
        The devnet still trusts every process that can write its file: it is not a real chain."""
        if block < 0 or block > self.block():
            raise BlockNotYet(f"devnet block {block} is not made yet (head is {self.block()})")
        due = self._genesis + block * self.seconds_per_block
        row = self.BlockHashRow.get_or_none(self.BlockHashRow.block == block)
        if row is not None and row.made_at >= due:
            return bytes(row.hash)
        with self.db.atomic("IMMEDIATE"):
            row = self.BlockHashRow.get_or_none(self.BlockHashRow.block == block)
            if row is None or row.made_at < due:
                self.BlockHashRow.replace(block=block, hash=secrets.token_bytes(32), made_at=time.time()).execute()
            if block % BLOCK_HASH_PRUNE_EVERY == 0:
                self.BlockHashRow.delete().where(self.BlockHashRow.block < block - BLOCK_HASHES_KEPT).execute()
        return bytes(self.BlockHashRow.get(self.BlockHashRow.block == block).hash)

    def reorganise(self, block: int) -> bytes:
        """Give a made block another hash, as a fork that replaced it would (tests, and operators
        trying what a reorganisation does to a window). Returns the new hash."""
        if block < 0 or block > self.block():
            raise BlockNotYet(f"devnet block {block} is not made yet (head is {self.block()})")
        new = secrets.token_bytes(32)
        with self.db.atomic("IMMEDIATE"):
            self.BlockHashRow.replace(block=block, hash=new, made_at=time.time()).execute()
        return new

    # reads -------------------------------------------------------------------------------
    @faultable
    def metagraph(self) -> Metagraph:
        block = self.block()
        neurons = [
            Neuron(
                uid=r.uid, hotkey=r.hotkey, coldkey=r.coldkey, active=True,
                validator_permit=r.validator_permit, last_update=r.last_update,
                block_at_registration=r.registered_block, rank=r.rank, trust=r.trust,
                consensus=r.consensus, incentive=r.incentive, dividends=r.dividends,
                emission=r.emission, total_stake=r.stake,
                axon=f"{r.ip}:{r.port}" if r.ip and r.port else None,
            )
            for r in self.NeuronRow.select().order_by(self.NeuronRow.uid)
        ]
        return Metagraph(netuid=self.netuid, block=block, neurons=neurons)

    def weights(self) -> dict[int, dict[int, float]]:
        out: dict[int, dict[int, float]] = {}
        for r in self.WeightRow.select():
            out.setdefault(r.validator_uid, {})[r.miner_uid] = r.weight
        return out

    def last_epoch_block(self) -> Optional[int]:
        return self.EpochRow.select(pw.fn.MAX(self.EpochRow.block)).scalar()

    # writes ------------------------------------------------------------------------------
    def register(self, hotkey: str, coldkey: str) -> int:
        """Register a hotkey (idempotent); returns its uid."""
        with self.db.atomic("IMMEDIATE"):
            row = self.NeuronRow.get_or_none(self.NeuronRow.hotkey == hotkey)
            if row:
                return row.uid
            count = self.NeuronRow.select().count()
            if count >= MAX_UIDS:
                raise ChainError(f"the devnet subnet is full ({MAX_UIDS} uids): run `tensorage devnet init --force` for a fresh one")
            uid = count
            self.NeuronRow.create(uid=uid, hotkey=hotkey, coldkey=coldkey, registered_block=self.block())
            return uid

    def add_stake(self, hotkey: str, amount: float) -> None:
        with self.db.atomic("IMMEDIATE"):
            row = self._neuron(hotkey)
            row.stake += amount
            row.save()
            self._update_permits()

    def _update_permits(self) -> None:
        staked = (self.NeuronRow.select().where(self.NeuronRow.stake > 0)
                  .order_by(self.NeuronRow.stake.desc(), self.NeuronRow.uid).limit(MAX_VALIDATORS))
        permitted = {r.uid for r in staked}
        self.NeuronRow.update(validator_permit=self.NeuronRow.uid.in_(list(permitted) or [-1])).execute()

    def _neuron(self, hotkey: str):
        row = self.NeuronRow.get_or_none(self.NeuronRow.hotkey == hotkey)
        if row is None:
            raise NotRegistered(f"hotkey {hotkey} is not registered on the devnet: run `tensorage devnet init` "
                                f"or register it with `tensorage devnet register`")
        return row

    @faultable
    def serve(self, wallet: bt.Wallet, ip: str, port: int) -> None:
        self.serve_hotkey(wallet.hotkey.ss58_address, ip, port)

    def serve_hotkey(self, hotkey: str, ip: str, port: int) -> None:
        with self.db.atomic("IMMEDIATE"):
            row = self._neuron(hotkey)
            row.ip, row.port = ip, port
            row.save()

    @faultable
    def set_weights(self, wallet: bt.Wallet, weights: dict[int, float]) -> int:
        return self.set_weights_hotkey(wallet.hotkey.ss58_address, weights)

    def set_weights_hotkey(self, hotkey: str, weights: dict[int, float]) -> int:
        clean = {int(u): float(w) for u, w in weights.items() if w is not None and math.isfinite(w) and w > 0}
        total = sum(clean.values())
        block = self.block()
        with self.db.atomic("IMMEDIATE"):
            row = self._neuron(hotkey)
            if not row.validator_permit:
                raise ChainError(f"uid {row.uid} has no validator permit: stake to it before setting weights")
            registered = {r.uid for r in self.NeuronRow.select(self.NeuronRow.uid)}
            unknown = sorted(set(clean) - registered)
            if unknown:
                raise NotRegistered(f"cannot set weights to unregistered uids {unknown}: sync the metagraph first")
            self.WeightRow.delete().where(self.WeightRow.validator_uid == row.uid).execute()
            if total > 0:
                self.WeightRow.insert_many(
                    [{"validator_uid": row.uid, "miner_uid": u, "weight": w / total, "block": block}
                     for u, w in sorted(clean.items())]
                ).execute()
            row.last_update = block
            row.save()
        return block

    # epochs ------------------------------------------------------------------------------
    def run_epoch(self, force: bool = False) -> bool:
        """Run consensus if an epoch is due (or forced); True when it ran."""
        with self.db.atomic("IMMEDIATE"):
            block = self.block()
            last = self.last_epoch_block()
            if not force and last is not None and block < last + self.tempo:
                return False
            rows = list(self.NeuronRow.select())
            uids = [r.uid for r in rows]
            permitted = {r.uid: r.stake for r in rows if r.validator_permit}
            weights = {v: row for v, row in self.weights().items() if v in permitted}
            res = yuma(weights, permitted, uids, EMISSION_PER_BLOCK * self.tempo)
            for r in rows:
                r.rank, r.trust, r.consensus = res.rank[r.uid], res.trust[r.uid], res.consensus[r.uid]
                r.incentive, r.dividends, r.emission = res.incentive[r.uid], res.dividends[r.uid], res.emission[r.uid]
                r.save()
            self.EpochRow.insert(block=block, ran_at=time.time()).on_conflict_replace().execute()
            return True
