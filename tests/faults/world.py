"""One small real subnet for the kill cases of miners, validators and gateways: six miner processes
(k=4 of n=6 lets two be down), one validator gateway, client objects whose bytes the test keeps.
Made once per module; faults restart processes, never rebuild it."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..objectnet import VALIDATOR, ObjectNet
from .integrity import Findings, check_shards, integrity_ok, rows

MINERS = [f"miner-{i}" for i in range(6)]
VALIDATOR_ARGS = ("--seconds_per_weights", "600", "--gateway.shard_mb", "1", "--gateway.quota_gb", "1")
SHARE_GB = 0.02


@dataclass
class Kept:
    """An object the client was told is stored, and its bytes."""

    object_id: str
    data: bytes


@dataclass
class FaultNet:
    net: ObjectNet
    tmp: Path
    kept: list[Kept] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path) -> "FaultNet":
        net = ObjectNet(root / "devnet", len(MINERS), SHARE_GB, VALIDATOR_ARGS)
        try:
            net.start()
        except BaseException:
            net.close()  # a start that failed half way leaves no node running
            raise
        return cls(net, root)

    def close(self) -> None:
        self.net.close()

    # client data ---------------------------------------------------------------------------
    def store(self, data: bytes, name: str) -> str:
        src = self.tmp / name
        src.write_bytes(data)
        with self.net.client() as client:
            object_id = client.store(src).id
        self.kept.append(Kept(object_id, data))
        src.unlink()
        return object_id

    def store_in_background(self, data: bytes, name: str) -> "Background":
        return Background(lambda: self.store(data, name))

    def objects_lost(self, rng=None, sample: int = 0) -> Findings:
        """Retrieve the objects the client was told are stored and compare their bytes: every one, or
        (``sample``) the newest and ``sample`` others drawn with ``rng``; every object stays listed."""
        out = Findings()
        chosen = self.kept
        if sample and len(self.kept) > sample + 1:
            chosen = [self.kept[-1], *rng.sample(self.kept[:-1], sample)]
        with self.net.client() as client:
            listed = {o.id for o in client.list()[0]}
            for kept in self.kept:
                if kept.object_id not in listed:
                    out.lose(len(kept.data), f"object {kept.object_id[:8]} is no longer listed")
            for kept in chosen:
                if kept.object_id not in listed:
                    out.lose(len(kept.data), f"object {kept.object_id[:8]} is no longer listed")
                    continue
                dest = self.tmp / f"back-{kept.object_id}"
                try:
                    client.retrieve(kept.object_id, dest)
                    back = dest.read_bytes()
                except Exception as exc:  # noqa: BLE001 - any failure to get the bytes back is a loss
                    out.lose(len(kept.data), f"object {kept.object_id[:8]} cannot be retrieved: {exc}")
                    continue
                finally:
                    dest.unlink(missing_ok=True)
                if back != kept.data:
                    differ = sum(a != b for a, b in zip(back, kept.data)) + abs(len(back) - len(kept.data))
                    out.lose(differ, f"object {kept.object_id[:8]} came back with {differ} bytes wrong")
        return out

    def gone_shards(self) -> list:
        """Shards of kept objects the manifest gave up on (a kill must never make one lost)."""
        db = self.net.subnet.db_root(VALIDATOR) / "index" / "gateway.sqlite"
        ids = {k.object_id for k in self.kept}
        return [r for r in rows(db, "SELECT object_id, idx, state, reason FROM shards WHERE state = 'lost'")
                if r[0] in ids]

    # nodes -------------------------------------------------------------------------------------
    def miner_findings(self, name: str) -> Findings:
        return check_shards(self.net.subnet.db_root(name), self.net.hotkey(name))

    def manifest_vs_miners(self) -> list[str]:
        """Shards of kept objects the manifest counts healthy must be in their miner's index and on
        its disk (the gateway's view and the miners' agree across kills)."""
        db = self.validator_root() / "index" / "gateway.sqlite"
        ids = {k.object_id for k in self.kept}
        held: dict[str, set[str]] = {}
        problems = []
        for object_id, miner, shard, state in rows(db, "SELECT object_id, miner, hash, state FROM shards "
                                                       "WHERE state = 'healthy'"):
            if object_id not in ids:
                continue
            name = self.net.name_of(miner)
            if name not in held:
                index = self.net.subnet.db_root(name) / "index" / f"validator-{self.net.hotkey(VALIDATOR)}.sqlite"
                held[name] = {i for (i,) in rows(index, "SELECT id FROM shards WHERE deleted_at IS NULL")}
            if shard not in held[name] or not (self.net.subnet.db_root(name) / "shards" / shard).exists():
                problems.append(f"{object_id[:8]}: shard {shard[:12]} healthy in the manifest, not held by {name}")
        return problems

    def validator_root(self) -> Path:
        return self.net.subnet.db_root(VALIDATOR)

    def validator_state(self) -> dict:
        """What a validator must keep across a kill: its scores and its last weights."""
        index = self.validator_root() / "index"
        assert integrity_ok(index / "validator.sqlite") and integrity_ok(index / "gateway.sqlite")
        return {"scores": dict(rows(index / "validator.sqlite", "SELECT hotkey, score FROM scores")),
                "weights": rows(index / "validator.sqlite",
                                "SELECT id, block, weights FROM weights WHERE ok = 1 ORDER BY id DESC LIMIT 1")}

    def spool_files(self) -> set[str]:
        spool = self.validator_root() / "spool"
        return {p.name for p in spool.iterdir()} if spool.exists() else set()


class Background:
    """An operation in a thread (a client PUT the fault lands in the middle of)."""

    def __init__(self, op: Callable[[], object]) -> None:
        self.result: Optional[object] = None
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, args=(op,), daemon=True)
        self.thread.start()

    def _run(self, op) -> None:
        try:
            self.result = op()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc

    def join(self, timeout: float = 180) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "a client operation hung after a kill"


def payload(rng, low: int, high: int) -> bytes:
    return rng.randbytes(rng.randint(low, high)) if hasattr(rng, "randbytes") else os.urandom(rng.randint(low, high))
