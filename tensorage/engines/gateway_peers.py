"""The gateway's side of the miners' shard endpoints: place, fetch (checked), delete, audit,
and which miners to use (ranked by the validator's scores, with room, not failing lately).

Every answer is bounded by what was asked (a shard download stops at the shard's size) and
hashed as it arrives; a miner's failure only ever changes that miner's standing.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable, Optional

from ..chain.port import Metagraph, Neuron
from ..net.client import PeerError, Reply, SignedClient
from ..net.objects import AuditRequest, ShardStored
from ..storage.streams import HashingFile
from ..storage.wrap import Keystream
from .gateway_spool import SpoolError

COOLDOWN_S = 60.0       # a miner that failed a placement is skipped this long
IDLE_TIMEOUT_S = 30.0   # a shard transfer that makes no progress this long is abandoned


class PlacementError(Exception):
    def __init__(self, kind: str, message: str, landed: bool) -> None:
        super().__init__(message)
        self.kind = kind        # refused | no_room | unreachable | timeout
        self.landed = landed    # the miner may hold it anyway (no answer): delete it later


class FetchError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind        # corrupt | missing | refused | unreachable | timeout


@dataclass
class MinerStanding:
    axon: Optional[str] = None         # where it was when this was learned: a new address starts afresh
    free_bytes: Optional[int] = None   # last reported room for shards
    failed_at: float = 0.0
    bytes_per_s: float = 0.0           # download speed, EMA (0: unknown)


class ShardPeers:
    def __init__(self, client: SignedClient, metagraph: Callable[[], Optional[Metagraph]],
                 rank: Callable[[], dict[str, float]], self_hotkey: str) -> None:
        self.client = client
        self.metagraph = metagraph
        self.rank = rank
        self.self_hotkey = self_hotkey
        self.standing: dict[str, MinerStanding] = {}

    def _standing(self, hotkey: str) -> MinerStanding:
        st = self.standing.get(hotkey)
        if st is None:
            neuron = self.neuron(hotkey)
            st = self.standing[hotkey] = MinerStanding(axon=neuron.axon if neuron else None)
        return st

    def failed(self, hotkey: str) -> None:
        """It did not answer (a placement, an audit): no new shards for it for a while."""
        self._standing(hotkey).failed_at = time.monotonic()

    # who ------------------------------------------------------------------------------------
    def miners(self) -> list[Neuron]:
        mg = self.metagraph()
        if mg is None:
            return []
        return [n for n in mg.neurons if n.endpoint and not n.validator_permit and n.hotkey != self.self_hotkey]

    def neuron(self, hotkey: str) -> Optional[Neuron]:
        mg = self.metagraph()
        return mg.by_hotkey(hotkey) if mg else None

    def candidates(self, size: int, exclude: set[str] = frozenset(), last: set[str] = frozenset()) -> list[Neuron]:
        """Miners to place a shard of ``size`` bytes on, best first: well scored, with room (or room
        unknown), not failed in the last minute; those in ``last`` only after every other one. Ties
        are shuffled so load spreads."""
        scores = self.rank()
        now = time.monotonic()
        out = []
        for n in self.miners():
            st = self._standing(n.hotkey)
            if st.axon != n.axon:  # restarted, or moved: judge it afresh
                self.standing[n.hotkey] = st = MinerStanding(axon=n.axon)
            if n.hotkey in exclude or now - st.failed_at < COOLDOWN_S:
                continue
            if st.free_bytes is not None and st.free_bytes < size:
                continue
            out.append(n)
        random.shuffle(out)
        return sorted(out, key=lambda n: (n.hotkey in last, -scores.get(n.hotkey, 0.0)))

    def by_speed(self, hotkeys: list[str]) -> list[str]:
        """Fastest first; unknown speeds go first so they get measured."""
        return sorted(hotkeys, key=lambda h: self._standing(h).bytes_per_s or float("inf"), reverse=True)

    # place ------------------------------------------------------------------------------------
    async def put(self, miner: Neuron, shard: str, path: Path, size: int) -> ShardStored:
        host, port = miner.endpoint  # type: ignore[misc]
        st = self._standing(miner.hotkey)
        try:
            reply = await self.client.put_stream(host, port, f"/v1/shards/{shard}?size={size}", miner.hotkey,
                                                 _read_file(path), size, idle_timeout=IDLE_TIMEOUT_S)
        except PeerError as exc:
            st.failed_at = time.monotonic()
            raise PlacementError(exc.kind, f"{miner.hotkey[:8]}: {exc}", landed=True) from None
        if reply.status == 200:
            try:
                stored = ShardStored.model_validate_json(reply.body)
            except ValueError:
                st.failed_at = time.monotonic()
                raise PlacementError("refused", f"{miner.hotkey[:8]} answered junk to a shard PUT", landed=True)
            st.free_bytes = stored.free_bytes
            return stored
        st.failed_at = time.monotonic()
        if reply.status == 507:
            st.free_bytes = 0
            raise PlacementError("no_room", f"{miner.hotkey[:8]} has no room: {reply.error_message}", landed=False)
        raise PlacementError("refused", f"{miner.hotkey[:8]} refused the shard: HTTP {reply.status} "
                                        f"{reply.error_message}", landed=reply.status >= 500)

    # fetch ------------------------------------------------------------------------------------
    async def fetch(self, miner: Neuron, shard: str, size: int, dest: Path, unwrap: Optional[Keystream]) -> None:
        """Download a shard into ``dest`` (unwrapped if ``unwrap``), checking its length and hash;
        raises FetchError, and leaves no file behind on failure."""
        if not miner.endpoint:
            raise FetchError("unreachable", f"{miner.hotkey[:8]} serves no endpoint")
        host, port = miner.endpoint
        st = self._standing(miner.hotkey)
        started = time.perf_counter()
        try:
            out = HashingFile(dest, transform=unwrap, hash_input=True)
        except OSError as exc:
            raise SpoolError(f"cannot create {dest}: {exc}") from None
        try:
            async with self.client.get_stream(host, port, f"/v1/shards/{shard}", miner.hotkey,
                                              idle_timeout=IDLE_TIMEOUT_S) as resp:
                if resp.status != 200:
                    text = (await resp.content.read(2048)).decode(errors="replace")
                    kind = "missing" if resp.status == 404 else "refused"
                    raise FetchError(kind, f"{miner.hotkey[:8]} answered {resp.status}: {text[:200]}")
                async for chunk in resp.content.iter_chunked(1 << 18):
                    if out.size + len(chunk) > size:
                        raise FetchError("corrupt", f"{miner.hotkey[:8]} sent more than the shard's {size} bytes")
                    try:
                        await out.write(chunk)
                    except OSError as exc:
                        raise SpoolError(f"cannot write {dest}: {exc}") from None
            digest = await out.finish(sync=False)
        except PeerError as exc:
            out.discard()
            raise FetchError(exc.kind, f"{miner.hotkey[:8]}: {exc}") from None
        except BaseException:
            out.discard()
            raise
        if out.size != size or digest != shard:
            dest.unlink(missing_ok=True)
            raise FetchError("corrupt", f"{miner.hotkey[:8]} sent {out.size} bytes hashing to {digest[:12]}…, not "
                                        f"the shard ({size} bytes, {shard[:12]}…)")
        seconds = max(1e-6, time.perf_counter() - started)
        rate = size / seconds
        st.bytes_per_s = rate if st.bytes_per_s == 0 else 0.7 * st.bytes_per_s + 0.3 * rate

    # delete / audit ---------------------------------------------------------------------------
    async def delete(self, miner: Neuron, shard: str) -> str:
        """ok (gone now or already), refused, or unreachable."""
        if not miner.endpoint:
            return "unreachable"
        host, port = miner.endpoint
        try:
            reply = await self.client.request("DELETE", host, port, f"/v1/shards/{shard}", miner.hotkey, timeout=10.0)
        except PeerError:
            return "unreachable"
        if reply.status in (200, 404):
            return "ok"
        return "refused" if reply.status < 500 else "unreachable"

    async def audit(self, miner: Neuron, req: AuditRequest, deadline: float) -> Reply:
        """Raises PeerError (timeout, unreachable)."""
        if not miner.endpoint:
            raise PeerError("unreachable", f"{miner.hotkey[:8]} serves no endpoint")
        host, port = miner.endpoint
        return await self.client.request("POST", host, port, "/v1/audits", miner.hotkey,
                                         body=req.model_dump_json().encode(), deadline=deadline)


async def _read_file(path: Path, chunk: int = 1 << 20) -> AsyncIterator[bytes]:
    """A spooled shard in 1 MiB reads off the event loop (aiohttp's own file payload reads 64 KiB
    per executor call: 16 times the round trips)."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise SpoolError(f"cannot read the spooled shard {path}: {exc}") from None
    try:
        while True:
            data = await asyncio.to_thread(f.read, chunk)
            if not data:
                return
            yield data
    finally:
        f.close()
