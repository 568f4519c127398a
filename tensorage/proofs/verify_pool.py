"""Parse and verify what miners send, in worker processes, never on the event loop.

chiapos' verifier and ``json.loads`` hold the GIL, so a thread would still stall the
validator's loop (its health endpoint, other miners' answers arriving). Each item is
checked on its own inside the worker: a hostile answer or listing can only fail itself,
and its cost is bounded by the size the caller allowed it before it got here.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Optional

from .. import PROTOCOL_VERSION
from ..procutil import child_pool
from .answers import AnswerCheck, AnswerSpec, check_answer
from .listing import Listing, ListingError
from .plots import hotkey_public_key

WORK_TIMEOUT_S = 120.0
ANSWERS_PER_TASK = 32


@dataclass
class ListingCheck:
    listing: Optional[Listing] = None
    error: Optional[str] = None     # refused whole: the reason, for the operator
    refused: str = ""               # entries that cannot count (k out of range)
    credited_bytes: int = 0


LISTING_KEYS = {"protocol", "hotkey", "digest", "plots", "shards"}


def check_listing(raw: bytes, hotkey: str, min_k: int, max_k: int, max_plots: int,
                  max_shards: int = 0) -> ListingCheck:
    """A miner's ``GET /v1/plots`` answer: envelope, hotkey, canonical entries, every
    certificate's signature (for this miner), digest."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return ListingCheck(error=f"plot list is not JSON ({str(exc)[:80]})")
    if not isinstance(body, dict) or set(body) != LISTING_KEYS:
        return ListingCheck(error=f"plot list must be an object with exactly {', '.join(sorted(LISTING_KEYS))}")
    if body["protocol"] != PROTOCOL_VERSION:
        return ListingCheck(error=f"miner speaks protocol {body['protocol']!r}, this validator {PROTOCOL_VERSION}: "
                                  f"upgrade the older side")
    if body["hotkey"] != hotkey:
        return ListingCheck(error=f"miner says it is {str(body['hotkey'])[:60]!r}, the chain says {hotkey}")
    if not all(isinstance(body[key], str) for key in ("plots", "shards", "digest")):
        return ListingCheck(error="plots and shards must be base64 strings and digest a hex string")
    try:
        listing = Listing.from_b64(body["plots"], max_plots, body["shards"], max_shards)
    except ListingError as exc:
        return ListingCheck(error=str(exc))
    if body["digest"] != listing.digest_hex:
        return ListingCheck(error="the listing's digest does not match its entries")
    miner_key = hotkey_public_key(hotkey)
    forged = next((c for c in listing.certificates() if not c.valid_for(miner_key)), None)
    if forged is not None:
        return ListingCheck(error=f"the certificate of shard {forged.shard_hex[:16]}… is not signed by its gateway "
                                  f"for this miner")
    return ListingCheck(listing=listing, refused=listing.out_of_range(min_k, max_k),
                        credited_bytes=listing.credited_bytes(min_k, max_k))


def check_answers(batch: list[tuple[bytes, AnswerSpec]]) -> list[AnswerCheck]:
    out = []
    for raw, spec in batch:
        try:
            out.append(check_answer(raw, spec))
        except Exception as exc:  # a checker bug must not take the batch's other miners with it
            out.append(AnswerCheck(valid=[0] * len(spec.plots), error=f"could not check: {type(exc).__name__}",
                                   chunks=[False] * len(spec.chunks)))
    return out


def _warm() -> int:
    from . import chia  # noqa: F401

    hotkey_public_key("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
    return os.getpid()


class VerifyPool:
    def __init__(self, workers: Optional[int] = None) -> None:
        self.workers = workers or max(1, min(4, (os.cpu_count() or 2) - 1))
        self._pool: Optional[ProcessPoolExecutor] = None

    @property
    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = child_pool(self.workers)
        return self._pool

    async def _run(self, func, *args):
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self.pool, func, *args), WORK_TIMEOUT_S)
        except BrokenProcessPool:
            self.close()  # a dead worker: the next call starts a fresh pool
            raise

    async def warm(self) -> None:
        """Start the workers and pay their imports (chiapos, the ss58 decoder) before a round does."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, _warm) for _ in range(self.workers)))

    async def listing(self, raw: bytes, hotkey: str, min_k: int, max_k: int, max_plots: int,
                      max_shards: int = 0) -> ListingCheck:
        try:
            return await self._run(check_listing, raw, hotkey, min_k, max_k, max_plots, max_shards)
        except (BrokenProcessPool, TimeoutError) as exc:
            return ListingCheck(error=f"could not check the plot list: {type(exc).__name__}")

    async def answers(self, items: list[tuple[bytes, AnswerSpec]]) -> list[AnswerCheck]:
        """Check many answers, in batches spread over the workers; one result per item, in order."""
        batches = [items[i:i + ANSWERS_PER_TASK] for i in range(0, len(items), ANSWERS_PER_TASK)]

        async def one(batch: list[tuple[bytes, AnswerSpec]]) -> list[AnswerCheck]:
            try:
                return await self._run(check_answers, batch)
            except (BrokenProcessPool, TimeoutError) as exc:
                return [AnswerCheck(valid=[0] * len(spec.plots), error=f"could not check: {type(exc).__name__}",
                                    chunks=[False] * len(spec.chunks)) for _, spec in batch]

        parts = await asyncio.gather(*(one(b) for b in batches))
        return [check for part in parts for check in part]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
