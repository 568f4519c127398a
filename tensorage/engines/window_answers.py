"""A miner's side of proof windows: one answer per (window, beacon, listing), whoever asks.

Every validator asks for the same window and the same listing, so the miner looks its
plots up once and sends the same bytes to all of them: its disk's work does not grow with
the number of validators. The beacon comes from the miner's own view of the chain (a
validator's claim is only ever compared with it, so one hostile validator cannot poison the
answer every validator gets), and only the current window is answered, so a caller cannot
make it look up more than the protocol asks.

Which listings are answered. A validator's snapshot for a window is the newest listing that
reached it more than the margin before the beacon block (engines/window_checks.py). A
validator whose syncs fail keeps an older snapshot, so a listing stays answerable for
``answer_for_s`` after it was replaced: ``SYNCS_MISSED + 1`` sync periods, the margin and the
window it is asked in. The miner changes its listing at most once a sync period, so that is
``listings_answered`` listings at most (finney: (3 x 120 + 12 + 36) / 120 -> 4, +1 current = 5;
devnet: (3 x 5 + 1 + 3) / 5 -> 4, +1 = 5). So that nobody can make the disk look a window up for
all of them, a validator is answered only the current listing and the two newest it fetched
itself (GET /v1/plots, 304s included) before the beacon less the margin: the one its snapshot rule
picks, and the one before in case the reply's transfer straddled the boundary.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

from ..chain.port import ChainPort
from ..config import NetworkProfile
from ..errors import BlockNotYet, ChainError
from ..net.errors import reject
from ..net.messages import WindowChallenge
from ..proofs.answers import encode_answer
from ..proofs.listing import Listing
from ..proofs.windows import SampledChunk, draw_chunks, draw_sample, window_challenge, window_start

SYNCS_MISSED = 2         # a validator whose sync failed twice in a row is still answered
FETCHES_KEPT = 8         # per validator: its recent GET /v1/plots (listing digest, time)
CALLERS_KEPT = 1024      # validators whose fetches are remembered (least recently seen go first)
CLOCK_SLACK_S = 2.0      # clocks of miner, validator and block author differ by this much (at most half the margin)
WINDOWS_KEPT = 3         # answers kept for the current and the previous windows
LATE_GRACE_S = 1.0       # clocks differ a little: answer until this long after the deadline
# A miner whose chain node is behind waits this many block times for the window's first block
# (never past the request's deadline) instead of refusing: one block behind is ordinary on finney.
BLOCK_WAIT_BLOCKS = 1.5

# The validator a request comes from, set by the HTTP handler for the request's task.
ASKED_BY: contextvars.ContextVar[str] = contextvars.ContextVar("asked_by", default="")


def answer_for_s(profile: NetworkProfile) -> float:
    """Seconds a replaced listing stays answerable (module docstring)."""
    return ((SYNCS_MISSED + 1) * profile.sync_s + profile.listing_margin_blocks * profile.block_time_s
            + profile.window_s)


def listings_answered(profile: NetworkProfile) -> int:
    """Listings that can be answerable at once: one change per sync period over ``answer_for_s``."""
    return math.ceil(answer_for_s(profile) / profile.sync_s) + 1


@dataclass
class _Kept:
    listing: Listing
    replaced_at: Optional[float] = None  # monotonic time it stopped being current


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
        self.listings: "OrderedDict[str, _Kept]" = OrderedDict()  # oldest first, the current one last
        self._fetches: "OrderedDict[str, list[tuple[float, str]]]" = OrderedDict()
        self._beacons: dict[int, tuple[bytes, float]] = {}
        self._beacon_reads: dict[int, asyncio.Task] = {}
        self._answers: "OrderedDict[tuple[int, str, str], asyncio.Task[bytes]]" = OrderedDict()
        self.computed = 0  # answers looked up on disk (the rest were served from the first)
        self.sizes: dict[tuple[int, str], tuple[int, int]] = {}  # (window, listing) -> (plots, proofs)

    def remember(self, listing: Listing) -> None:
        """The listing this miner publishes now (the ones before stay answerable for a while)."""
        now = time.monotonic()
        kept = self.listings.get(listing.digest_hex)
        if kept is None or kept.replaced_at is not None:
            for other in self.listings.values():
                if other.replaced_at is None:
                    other.replaced_at = now
            self.listings[listing.digest_hex] = _Kept(listing)
        self.listings.move_to_end(listing.digest_hex)
        self.expire()

    def expire(self) -> bool:
        """Forget listings replaced longer than ``answer_for_s`` ago (and the oldest beyond
        ``listings_answered``); True when one was forgotten (its shard bytes may go)."""
        now = time.monotonic()
        gone = [d for d, k in self.listings.items()
                if k.replaced_at is not None and now - k.replaced_at > answer_for_s(self.profile)]
        gone += [d for d in list(self.listings)[:max(0, len(self.listings) - listings_answered(self.profile))]
                 if d not in gone]
        for digest in gone:
            del self.listings[digest]
        return bool(gone)

    @property
    def current(self) -> Optional[Listing]:
        return next(reversed(self.listings.values())).listing if self.listings else None

    def fetched(self, caller: str, digest_hex: str, at: Optional[float] = None) -> None:
        """A validator fetched (or confirmed with a 304) this listing now (or at unix time ``at``)."""
        rows = self._fetches.pop(caller, [])
        rows.append((time.time() if at is None else at, digest_hex))
        self._fetches[caller] = rows[-FETCHES_KEPT:]
        while len(self._fetches) > CALLERS_KEPT:
            self._fetches.popitem(last=False)

    def _admitted(self, caller: str, beacon_at: float) -> set[str]:
        """Listings this caller may name for a window whose beacon block was made at ``beacon_at``."""
        current = self.current
        allowed = {current.digest_hex} if current is not None else set()
        margin_s = self.profile.listing_margin_blocks * self.profile.block_time_s
        cutoff = beacon_at - margin_s + min(CLOCK_SLACK_S, margin_s / 2)  # always before the beacon
        before = [d for at, d in self._fetches.get(caller, []) if at < cutoff]
        allowed.update(list(dict.fromkeys(reversed(before)))[:2])
        return allowed

    async def beacon(self, window: int, deadline: Optional[float] = None) -> tuple[bytes, float]:
        """(block hash, unix time) of the window's first block, from this node's chain. Only the
        current window's is read (and kept), so no caller can make it read or keep old ones. A
        chain a little behind is waited for, once for all callers; each caller stops waiting at
        its own ``deadline``, so one caller's short deadline never cuts another's wait."""
        cached = self._beacons.get(window)
        if cached is not None:
            return cached
        task = self._beacon_reads.get(window)
        if task is None:
            task = self._beacon_reads[window] = asyncio.ensure_future(self._read_beacon(window))
            task.add_done_callback(lambda t: self._beacon_reads.pop(window, None) if
                                   self._beacon_reads.get(window) is t else None)
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        try:
            found = await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            reject(425, "too_early", f"window {window} starts at block {window_start(window, self.profile)}, which "
                                     f"this miner's chain had not reached by your deadline: check the validator's "
                                     f"and this miner's chain connections")
        self._beacons[window] = found
        newest = max(self._beacons)
        for old in [w for w in self._beacons if w < newest - WINDOWS_KEPT]:
            del self._beacons[old]
        return found

    async def _read_beacon(self, window: int) -> tuple[bytes, float]:
        start = window_start(window, self.profile)
        block_s = self.profile.block_time_s
        wait_until = time.time() + BLOCK_WAIT_BLOCKS * block_s
        poll_s = min(1.0, max(0.05, block_s / 10))
        while True:
            try:
                started = await asyncio.to_thread(self.chain.block_timestamp, start)
                if time.time() > started + self.profile.challenge_deadline_s + LATE_GRACE_S:
                    reject(408, "window_over", f"window {window} is over: only the current window is answered")
                return await asyncio.to_thread(self.chain.block_hash, start), started
            except BlockNotYet:
                if time.time() + poll_s > wait_until:
                    reject(425, "too_early", f"window {window} starts at block {start}, which this miner's chain has "
                                             f"not reached after {BLOCK_WAIT_BLOCKS:g} block times: check the "
                                             f"validator's and this miner's chain connections")
                await asyncio.sleep(poll_s)  # a bounded wait for one block, not a periodic loop
            except ChainError as exc:
                reject(503, "chain_unavailable", f"this miner cannot read block {start} ({exc}); try again")

    async def _checked_beacon(self, req: WindowChallenge) -> tuple[bytes, float]:
        """This node's beacon for the request's window, read again once when the request names
        another (the chain may have reorganised since it was read); never the request's word."""
        beacon, started = await self.beacon(req.window, req.deadline)
        if beacon.hex() != req.beacon:
            try:
                again = await asyncio.to_thread(self.chain.block_hash, window_start(req.window, self.profile))
            except (BlockNotYet, ChainError):
                again = beacon
            if again != beacon:
                beacon = again
                self._beacons[req.window] = (beacon, started)
        if beacon.hex() != req.beacon:
            reject(409, "beacon_mismatch", f"window {req.window}'s beacon here is {beacon.hex()[:16]}…, not "
                                           f"{req.beacon[:16]}…: the two nodes see different chains")
        return beacon, started

    async def answer(self, req: WindowChallenge) -> tuple[bytes, bool]:
        """The canonical answer bytes for the request's window and listing, and whether this
        call looked them up (only the first caller of a window does)."""
        beacon, started = await self._checked_beacon(req)
        if time.time() > started + self.profile.challenge_deadline_s + LATE_GRACE_S:
            reject(408, "window_over", f"window {req.window} is over: only the current window is answered")
        self.expire()
        kept = self.listings.get(req.listing)
        caller = ASKED_BY.get()
        if kept is None or (caller and req.listing not in self._admitted(caller, started)):
            reject(409, "unknown_listing", f"listing {req.listing[:16]}… is not one this miner answers you for (its "
                                           f"current listing, or the newest you fetched before the window): sync "
                                           f"its plot list with GET /v1/plots")
        listing = kept.listing
        key = (req.window, req.beacon, req.listing)
        task = self._answers.get(key)
        fresh = task is None
        if task is None:
            task = self._answers[key] = asyncio.ensure_future(self._compute(req.window, beacon, listing))
            for old in [k for k in self._answers if k[0] < req.window - WINDOWS_KEPT]:
                self._answers.pop(old).cancel()
            for old in [k for k in self.sizes if k[0] < req.window - WINDOWS_KEPT]:
                del self.sizes[old]
        try:
            return await asyncio.shield(task), fresh
        except Exception:
            if self._answers.get(key) is task:  # a failed lookup is tried again by the next caller
                del self._answers[key]
            raise

    def shards_answered(self) -> set[str]:
        """Shard ids of the listings this miner still answers for: their bytes must stay."""
        return {c.shard_hex for kept in self.listings.values() for c in kept.listing.certificates()}

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
        for task in [*self._answers.values(), *self._beacon_reads.values()]:
            task.cancel()
        self._answers.clear()
