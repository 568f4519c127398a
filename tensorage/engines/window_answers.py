"""A miner's side of proof windows: one answer per (window, listing), whoever asks.

Every validator asks for the same window and the same listing, so the miner looks its
plots up once and sends the same bytes to all of them: its disk's work does not grow with
the number of validators. The beacon comes from the miner's own view of the chain, and
only the current window is answered, so a caller cannot make it look up more than the
protocol asks.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Awaitable, Callable, Optional

from ..chain.port import ChainPort
from ..config import NetworkProfile
from ..errors import BlockNotYet, ChainError
from ..net.errors import reject
from ..net.messages import WindowChallenge
from ..proofs.answers import encode_answer
from ..proofs.listing import Listing
from ..proofs.windows import SampledChunk, draw_chunks, draw_sample, window_challenge, window_start

# A miner changes its listing at most once per sync period (MinerEngine.current_listing), so a
# validator's snapshot is its current listing or the one before: those two are answered, nothing
# older. The disk looks a window up at most twice, whoever asks and in whatever order.
LISTINGS_ANSWERED = 2
WINDOWS_KEPT = 3         # answers kept for the current and the previous windows
LATE_GRACE_S = 1.0       # clocks differ a little: answer until this long after the deadline

ProveSample = Callable[[list[tuple[bytes, int]], bytes, int], Awaitable[list[list[list[bytes]]]]]
ProveChunks = Callable[[list[SampledChunk]], Awaitable[list[Optional[bytes]]]]


async def _no_chunks(chunks: list[SampledChunk]) -> list[Optional[bytes]]:
    return [None] * len(chunks)


class WindowAnswerer:
    def __init__(self, profile: NetworkProfile, chain: ChainPort, hotkey: str, prove: ProveSample,
                 prove_chunks: ProveChunks = _no_chunks) -> None:
        self.profile = profile
        self.chain = chain
        self.hotkey = hotkey
        self._prove = prove
        self._prove_chunks = prove_chunks
        self.listings: "OrderedDict[str, Listing]" = OrderedDict()
        self._beacons: dict[int, tuple[bytes, float]] = {}
        self._answers: "OrderedDict[tuple[int, str], asyncio.Task[bytes]]" = OrderedDict()
        self.computed = 0  # answers looked up on disk (the rest were served from the first)
        self.sizes: dict[tuple[int, str], tuple[int, int]] = {}  # (window, listing) -> (plots, proofs)

    def remember(self, listing: Listing) -> None:
        """The listing this miner publishes now: validators may name it, or the one before it."""
        self.listings[listing.digest_hex] = listing
        self.listings.move_to_end(listing.digest_hex)
        while len(self.listings) > LISTINGS_ANSWERED:
            self.listings.popitem(last=False)

    async def beacon(self, window: int) -> tuple[bytes, float]:
        """(block hash, unix time) of the window's first block, from this node's chain. Only the
        current window's is read (and kept), so no caller can make it read or keep old ones."""
        cached = self._beacons.get(window)
        if cached is not None:
            return cached
        start = window_start(window, self.profile)
        try:
            started = await asyncio.to_thread(self.chain.block_timestamp, start)
            if time.time() > started + self.profile.challenge_deadline_s + LATE_GRACE_S:
                reject(408, "window_over", f"window {window} is over: only the current window is answered")
            beacon = await asyncio.to_thread(self.chain.block_hash, start)
        except BlockNotYet:
            reject(425, "too_early", f"window {window} starts at block {start}, which this miner's chain has not "
                                     f"reached: check the validator's and this miner's chain connections")
        except ChainError as exc:
            reject(503, "chain_unavailable", f"this miner cannot read block {start} ({exc}); try again")
        self._beacons[window] = (beacon, started)
        newest = max(self._beacons)
        for old in [w for w in self._beacons if w < newest - WINDOWS_KEPT]:
            del self._beacons[old]
        return beacon, started

    async def answer(self, req: WindowChallenge) -> tuple[bytes, bool]:
        """The canonical answer bytes for the request's window and listing, and whether this
        call looked them up (only the first caller of a window does)."""
        beacon, started = await self.beacon(req.window)
        if beacon.hex() != req.beacon:
            reject(409, "beacon_mismatch", f"window {req.window}'s beacon here is {beacon.hex()[:16]}…, not "
                                           f"{req.beacon[:16]}…: the two nodes see different chains")
        if time.time() > started + self.profile.challenge_deadline_s + LATE_GRACE_S:
            reject(408, "window_over", f"window {req.window} is over: only the current window is answered")
        listing = self.listings.get(req.listing)
        if listing is None:
            reject(409, "unknown_listing", f"listing {req.listing[:16]}… is neither this miner's current listing nor "
                                           f"the one before: sync its plot list with GET /v1/plots")
        key = (req.window, req.listing)
        task = self._answers.get(key)
        fresh = task is None
        if task is None:
            task = self._answers[key] = asyncio.ensure_future(self._compute(req.window, beacon, listing))
            for old in [k for k in self._answers if k[0] < req.window - WINDOWS_KEPT]:
                self._answers.pop(old).cancel()
                self.sizes.pop(old, None)
        try:
            return await asyncio.shield(task), fresh
        except Exception:
            if self._answers.get(key) is task:  # a failed lookup is tried again by the next caller
                del self._answers[key]
            raise

    def keep_only(self, listing: Listing) -> None:
        """Answer only this listing from now on (the ones before it are past every validator's sync)."""
        for key in [k for k in self.listings if k != listing.digest_hex]:
            del self.listings[key]

    def shards_answered(self) -> set[str]:
        """Shard ids of the listings this miner still answers for: their bytes must stay."""
        return {c.shard_hex for listing in self.listings.values() for c in listing.certificates()}

    def _draw(self, challenge: bytes, listing: Listing, window: int):
        entries = [(p.seed, p.k) for p in draw_sample(self.profile, challenge, self.hotkey, listing)]
        return entries, draw_chunks(self.profile, challenge, self.hotkey, listing, window_start(window, self.profile))

    async def _compute(self, window: int, beacon: bytes, listing: Listing) -> bytes:
        self.computed += 1
        challenge = window_challenge(beacon, window)
        # thousands of plots and certificates are tens of ms of Python: drawn in a thread
        entries, chunks = await asyncio.to_thread(self._draw, challenge, listing, window)
        proofs, chunk_proofs = await asyncio.gather(self._prove(entries, challenge, self.profile.challenges_per_plot),
                                                    self._prove_chunks(chunks))
        self.sizes[(window, listing.digest_hex)] = (len(entries),
                                                    sum(len(items) for per_plot in proofs for items in per_plot))
        return encode_answer(window, listing.digest_hex, proofs, chunk_proofs)

    def close(self) -> None:
        for task in self._answers.values():
            task.cancel()
        self._answers.clear()
