"""The validator: syncs the metagraph and miners' listings, checks proof windows, scores
miners and sets weights; and it is the client gateway (tensorage/gateway/).

A window's challenge is the hash of its first block. For each serving miner the validator
takes the newest listing it saw *before* that block (the miner could not have chosen it
knowing the beacon), derives the same sample every validator derives (plots, and chunks of
the certified client shards it lists), fetches the miner's one answer for the window with an
absolute deadline, and credits what that answer proves (engines/window_checks.py). Everything
a miner sends is size-bounded by what was asked, parsed and verified in a process pool, and
judged on its own: one miner's answer, listing or failure never touches another's result, nor
stalls the event loop. Weights count client credit under each gateway's stake bound
(engines/scoring.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import bittensor as bt

from .. import PROTOCOL_VERSION
from ..chain.port import ChainPort, Neuron
from ..config import Settings
from ..errors import BlockNotYet
from ..events import ChallengeResult, ErrorEvent, EventBus, WeightsSet, WindowJudged
from ..gateway import Gateway
from ..net.client import PeerError, SignedClient
from ..net.peer_loop import PeerLoop
from ..net.signer import SignItem, SigningService
from ..net.messages import WindowChallenge
from ..proofs import listing_spool
from ..proofs.listing import Listing, ListingError, ListingReader, max_listing_chars
from ..proofs.verify_pool import VerifyPool
from ..proofs.windows import answer_bound, window_challenge, window_of, window_start
from ..storage.validator_db import ValidatorStore
from .node import Node
from .scoring import MinerScore, bounded_scores, decay_for, normalize, stake_shares
from .window_checks import MinerView, RoundOutcome, SeenListing, WindowTask, judge_task, plan

SYNC_CONCURRENCY = 32
# A round starts this long after its window's first block (the block must be readable) and
# is skipped when less than this share of the deadline is left.
ROUND_LAG_S = 0.05
MIN_TIME_LEFT = 0.25
SIGN_BATCH = 128  # window requests signed per round trip to the signing process
PENDING_KEPT = 64  # windows waiting for their beacon block to settle (a few at most while the chain moves)


@dataclass
class PendingWindow:
    """A window asked and checked, recorded once its beacon block is deep enough."""

    window: int
    start: int
    beacon: bytes
    started: float
    judged: list[RoundOutcome]
    listings: list[str]
    refused: list[RoundOutcome]
    seconds: float = 0.0  # asking the miners and checking their answers
# Connections kept open to miners: every serving uid of the largest subnet has its own, so a window's
# requests never queue for a socket (a queue of hundreds stalls aiohttp's connector for seconds).
MINER_CONNECTIONS = 2048


class ValidatorEngine(Node):
    role = "validator"

    def __init__(self, settings: Settings, wallet: bt.Wallet, chain: ChainPort, bus: Optional[EventBus] = None,
                 source: Optional[str] = None, verify_pool: Optional[VerifyPool] = None) -> None:
        super().__init__(settings, wallet, chain, bus, source)
        self.layout.ensure()
        self.store = ValidatorStore(self.layout.validator_state_db)
        self.client = SignedClient(wallet, connections=MINER_CONNECTIONS)  # used on the peer loop only
        self.peer_loop = PeerLoop(f"{self.source}-peers")
        self.signer = SigningService(wallet, self.client.signer)  # signs each window's requests in a child process
        # Listings and answers live in files under the index (proofs/listing_spool.py, proofs/verify_pool.py):
        # the validator's memory does not grow with the miners it follows nor with a window's answers.
        self.verifier = verify_pool or VerifyPool()
        if self.verifier.spool is None:
            self.verifier.spool = self.store.listing_dir.parent  # index/verify
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validator-db")  # one writer, off the loop
        self.decay = decay_for(self.profile.half_life_windows)
        self.miners: dict[str, MinerView] = {}
        self.scores: dict[str, MinerScore] = {}
        self.rounds_run = 0
        self.last_window = -1
        self._pending: "deque[PendingWindow]" = deque()
        self.windows_void = 0  # windows whose beacon a reorganisation replaced
        self._settling = asyncio.Lock()
        self.last_verdict: dict[str, Any] = {"window": -1, "summary": ""}  # the newest window recorded (or void)
        self._block_s = self.profile.block_time_s  # the chain's, once started
        self.last_weights: dict[int, float] = {}
        self.last_weights_block: Optional[int] = None
        self.head_block = 0  # the newest block this validator has read
        self.gateway_factors: dict[str, float] = {}  # the stake bound, as of the last weights
        self._unchanged: list[str] = []
        if self.store.upgraded_from == 1:
            self.bus.log("validator state from protocol 1 dropped: its rounds and scores measured an unsound "
                         "protocol (the weights log is kept)", source=self.source)
        elif self.store.upgraded_from is not None:
            self.bus.log(f"validator state from protocol {self.store.upgraded_from}: listings dropped (miners list "
                         f"again with their shard certificates), scores kept", source=self.source)
        if not settings.no_restore_weights:
            self._restore()
        # The client gateway (docs/design.md#client-data); it ranks miners for placement by this
        # validator's scores. It talks to miners from the node's own loop (streams to and from
        # clients), so it has a client of its own: self.client lives on the peer loop.
        self.gateway_client = SignedClient(wallet)
        self.gateway: Optional[Gateway] = None if settings.gateway.disable else Gateway(
            settings, self.layout, self.hotkey, self.gateway_client, lambda: self.metagraph, self._miner_ranks,
            lambda: self.head_block, self.bus, self.source)

    def _miner_ranks(self) -> dict[str, float]:
        return self.bounded()[0]

    def bounded(self) -> tuple[dict[str, float], dict[str, float]]:
        """(score per miner, stake-bound factor per gateway) as of now (engines/scoring.py)."""
        mg = self.metagraph
        stake = stake_shares((n.hotkey, n.total_stake) for n in mg.validators) if mg is not None else {}
        return bounded_scores(self.scores.values(), stake, self.profile.challenge_deadline_s, self.decay,
                              self.last_window)

    def add_routes(self, app) -> None:
        if self.gateway is not None:
            self.gateway.add_routes(app)

    async def _write(self, func: Callable, *args: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self._db, func, *args)

    # persistence -------------------------------------------------------------------------
    def _restore(self) -> None:
        for row in self.store.scores().values():
            try:
                client = {str(g): float(v) for g, v in json.loads(row.client or "{}").items()}
            except (ValueError, AttributeError):
                client = {}
            self.scores[row.hotkey] = MinerScore(
                hotkey=row.hotkey, uid=row.uid, credit=row.credit, windows=row.windows, returned=row.returned,
                expected=row.expected, latency_ms=row.latency_ms, last_window=row.last_window, client=client)
        self.last_window = max((s.last_window for s in self.scores.values()), default=-1)
        last = self.store.last_weights()
        if last is not None:
            self.last_weights = {int(k): v for k, v in json.loads(last.weights).items()}
            self.last_weights_block = last.block
        if self.scores:
            self.bus.log(f"restored scores of {len(self.scores)} miners", source=self.source)

    def _restore_listings(self, neurons: dict[str, Neuron]) -> None:
        """Listings seen before a restart still count for the windows after them."""
        for stored in self.store.iter_listings():
            neuron = neurons.get(stored.hotkey)
            if neuron is None:
                continue
            try:
                listing = self._stored_listing(stored.blob)
            except ListingError:  # a damaged row or file, or a limit lowered since: fetched afresh at this sync
                continue
            view = self.miners.setdefault(stored.hotkey, MinerView(neuron=neuron))
            view.add(SeenListing(listing=listing, seen_block=stored.seen_block))
            view.credited_bytes = listing.credited_bytes(self.profile.min_k, self.profile.max_k)

    def _stored_listing(self, blob: bytes) -> ListingReader:
        """A listing from its database row: a reference to its spooled file, or (rows from before
        listings were spooled) its bytes, read once more into a file so they are not kept in memory."""
        limits = (self.profile.max_listed_plots, self.profile.max_listed_shards)
        directory = self.verifier.listing_dir
        if listing_spool.is_reference(blob):
            if directory is None:
                raise ListingError("a spooled listing, but this validator's verifier has no spool")
            return listing_spool.open_stored(directory, blob, *limits)
        listing = Listing.from_stored(blob, *limits)
        return listing if directory is None else listing_spool.write(directory, listing).own()

    def _score_rows(self) -> list[dict]:
        now = time.time()
        scores, _ = self.bounded()
        return [{"hotkey": s.hotkey, "uid": s.uid, "credit": s.credit, "windows": s.windows, "returned": s.returned,
                 "expected": s.expected, "last_window": s.last_window, "latency_ms": s.latency_ms,
                 "client": json.dumps(s.client), "proven_bytes": s.proven_bytes(), "score": scores[s.hotkey],
                 "updated_at": now}
                for s in self.scores.values()]

    # sync ----------------------------------------------------------------------------------
    def serving_miners(self) -> list[Neuron]:
        mg = self.metagraph
        if mg is None:
            return []
        return [n for n in mg.neurons if n.hotkey != self.hotkey and not n.validator_permit and n.endpoint]

    async def sync(self) -> str:
        mg = await self.sync_metagraph()
        present = {n.hotkey for n in mg.neurons}
        for hotkey in [h for h in self.scores if h not in present]:
            del self.scores[hotkey]  # deregistered: a new hotkey on the uid starts from zero
        await self._write(self.store.forget_miners, present)
        miners = self.serving_miners()
        if not self.miners and not self.settings.no_restore_weights:
            self._restore_listings({n.hotkey: n for n in miners})
        sem = asyncio.Semaphore(SYNC_CONCURRENCY)

        async def one(n: Neuron) -> None:
            async with sem:
                try:
                    await self.sync_miner(n)
                except Exception as exc:  # one miner's listing never stops the others' sync
                    self.miners[n.hotkey].error = f"sync failed: {type(exc).__name__}: {exc}"[:300]

        await self._write(self.store.upsert_miners, [(n.hotkey, n.uid, n.axon) for n in miners])
        self._unchanged: list[str] = []
        await asyncio.gather(*(one(n) for n in miners))
        await self._write(self.store.touch_miners, self._unchanged)
        serving = {n.hotkey for n in miners}  # built once, not once per known miner
        for hotkey in [h for h in self.miners if h not in serving]:
            del self.miners[hotkey]
        await asyncio.to_thread(self.verifier.sweep)  # files left by a crash (live ones go with their objects)
        usable = sum(1 for m in self.miners.values() if m.latest is not None)
        return f"block {mg.block}: {len(miners)} miners, {usable} with a listing"

    async def sync_miner(self, neuron: Neuron) -> MinerView:
        """Fetch the miner's listing (only when it changed), check it off the loop, and note the
        block by which it had arrived: it counts for windows that start after that block."""
        view = self.miners.get(neuron.hotkey) or MinerView(neuron=neuron)
        view.neuron = neuron
        self.miners[neuron.hotkey] = view
        host, port = neuron.endpoint  # type: ignore[misc]
        headers = {"If-None-Match": f'"{view.latest.listing.digest_hex}"'} if view.latest else {}
        try:
            reply = await self.peer_loop.call(self.client.request(
                "GET", host, port, "/v1/plots", receiver=neuron.hotkey, timeout=10.0,
                max_reply=max_listing_chars(self.profile.max_listed_plots, self.profile.max_listed_shards),
                headers=headers))
        except PeerError as exc:
            if exc.kind != "too_large":
                view.error = str(exc)[:300]
                return view
            return await self._refuse_listing(view, str(exc))
        if reply.status == 304 and headers:
            view.error = ""
            self._unchanged.append(neuron.hotkey)  # noted in one write at the end of the sync
            return view
        if reply.status != 200:
            view.error = f"GET /v1/plots answered {reply.status} {reply.error_message}"[:300]
            return view
        seen_at = time.time()  # the margin is measured with this, against the beacon block's timestamp
        seen_block = await asyncio.to_thread(self.chain.block)  # read after the listing arrived, for the record
        self.head_block = max(self.head_block, seen_block)
        check = await self.verifier.listing(reply.body, neuron.hotkey, self.profile.min_k, self.profile.max_k,
                                            self.profile.max_listed_plots, self.profile.max_listed_shards)
        view.error = ""
        if check.listing is None:
            return await self._refuse_listing(view, check.error or "")
        view.listing_error = ""
        view.refused, view.credited_bytes = check.refused, check.credited_bytes
        if view.latest is None or view.latest.listing.digest != check.listing.digest:
            view.add(SeenListing(listing=check.listing, seen_block=seen_block, seen_at=seen_at))
            await self._write(self.store.add_listing, neuron.hotkey, check.listing.digest_hex, check.listing.stored(),
                              seen_block)
            if self.gateway is not None:  # its shards the miner stopped listing are suspect
                self.gateway.listing_seen(neuron.hotkey, check.listing)
        await self._write(self.store.set_listing_state, neuron.hotkey, check.listing.digest_hex, len(check.listing),
                          check.credited_bytes, check.refused, PROTOCOL_VERSION)
        return view

    async def _refuse_listing(self, view: MinerView, why: str) -> MinerView:
        """Nothing it listed counts until it lists canonically again."""
        view.error, view.seen = "", []
        view.listing_error = f"listing refused: {why}"[:300]
        await self._write(self.store.set_listing_state, view.neuron.hotkey, "", 0, 0, view.listing_error, None)
        return view

    # windows ---------------------------------------------------------------------------------
    async def proof_round(self) -> str:
        """Check the current window, once: every miner with a listing from before its beacon.
        The verdict is recorded when the beacon block is ``settle_blocks`` deep (this round or
        the next): a beacon that a reorganisation replaced voids the window for every miner."""
        try:
            head = await asyncio.to_thread(self.chain.block)
            self.head_block = max(self.head_block, head)
            settled = await self._settle(head)
            window = window_of(head, self.profile)
            start = window_start(window, self.profile)
            if window <= self.last_window:  # before aligning: a lagging head must not schedule into the past
                self._align_rounds(None)
                return settled or f"window {window} already checked"
            started = await asyncio.to_thread(self.chain.block_timestamp, start)
            self._align_rounds(started)
            beacon = await asyncio.to_thread(self.chain.block_hash, start)
        except BlockNotYet as exc:
            return f"waiting for the next window ({exc})"
        deadline = started + self.profile.challenge_deadline_s
        if time.time() > deadline - MIN_TIME_LEFT * self.profile.challenge_deadline_s:
            return f"window {window} is nearly over; waiting for the next one"
        self.last_window = window
        asked_at = time.monotonic()
        challenge = window_challenge(beacon, window)
        # Drawing a thousand samples is tens of ms of Python: in a thread, the loop keeps its turns.
        tasks = await asyncio.to_thread(plan, self.profile, list(self.miners.values()), window, start, challenge,
                                        started, self._block_s)
        refused = [RoundOutcome(uid=v.neuron.uid, hotkey=v.neuron.hotkey, result="fail", plots=0, returned=0,
                                expected=0.0, latency_ms=0.0, detail=v.listing_error)
                   for v in self.miners.values() if v.listing_error and not v.seen]
        if not tasks and not refused:
            return f"window {window}: no miner with a listing from before block {start} yet"
        request = {"window": window, "beacon": beacon.hex(), "deadline": deadline}
        await self.peer_loop.call(self._fetch_all(tasks, request))
        answered = [t for t in tasks if t.reply is not None and t.reply.status == 200]
        for t, check in zip(answered, await self.verifier.answers([(t.reply.body, t.spec) for t in answered])):
            t.check = check
        judged = [judge_task(t, started) for t in tasks]
        self._pending.append(PendingWindow(window=window, start=start, beacon=beacon, started=started,
                                           judged=judged, listings=[t.seen.listing.digest_hex for t in tasks],
                                           refused=refused, seconds=time.monotonic() - asked_at))
        if self.jobs.has("settle_windows"):  # the verdict is recorded as soon as the beacon block is deep enough
            self.jobs.reschedule("settle_windows", started + self.profile.settle_blocks * self._block_s + ROUND_LAG_S)
        asked = f"window {window}: asked {len(tasks)} miners, judged when block {start + self.profile.settle_blocks} " \
                f"is made"
        return "; ".join(line for line in (settled, asked) if line)

    async def settle_windows(self) -> str:
        """The job that records windows once their beacon block is ``settle_blocks`` deep."""
        if not self._pending:
            return "no window waiting for its verdict"
        head = await asyncio.to_thread(self.chain.block)
        self.head_block = max(self.head_block, head)
        return await self._settle(head) or f"{len(self._pending)} window(s) wait for their beacon block to settle"

    async def _settle(self, head: int) -> str:
        """Record the pending windows whose beacon block is deep enough, or void them when the
        chain no longer has that beacon. A chain that cannot say keeps them pending."""
        async with self._settling:  # the round and the settle job never record the same window twice
            return await self._settle_locked(head)

    async def _settle_locked(self, head: int) -> str:
        summaries = []
        while self._pending and head >= self._pending[0].start + self.profile.settle_blocks:
            p = self._pending.popleft()
            try:
                now_hash = await asyncio.to_thread(self.chain.block_hash, p.start)
            except Exception:
                self._pending.appendleft(p)
                break
            if now_hash != p.beacon:
                self.windows_void += 1
                why = (f"block {p.start} was reorganised ({p.beacon.hex()[:12]}… -> {now_hash.hex()[:12]}…), so no "
                       f"miner gains or loses by it")
                event = WindowJudged(window=p.window, miners=len(p.judged) + len(p.refused), seconds=p.seconds,
                                     void=True, detail=why, source=self.source)
                self.bus.publish(event)
                message = event.summary()
                summaries.append(message)
                self.last_verdict = {"window": p.window, "summary": message}
                continue
            summaries.append(await self._verdicts(p))
            self.last_verdict = {"window": p.window, "summary": summaries[-1]}
        while len(self._pending) > PENDING_KEPT:  # a chain stuck for long: the oldest are dropped, not judged
            self._pending.popleft()
        return "; ".join(summaries)

    async def _verdicts(self, p: "PendingWindow") -> str:
        suspect = self.gateway.window_verdicts(p.judged) if self.gateway is not None else 0
        outcomes = [(o, listing) for o, listing in zip(p.judged, p.listings)] + [(o, "") for o in p.refused]
        summary = await self._record(p.window, p.started, outcomes)
        detail = ""
        chunks = sum(o.chunks_asked for o in p.judged)
        if chunks:
            detail = f"{sum(o.chunks_right for o in p.judged)}/{chunks} shard chunks right"
            if suspect:
                detail += f", {suspect} of this gateway's shards suspect"
            summary += f"; {detail}"
        results: dict[str, int] = {}
        for o, _ in outcomes:
            results[o.result] = results.get(o.result, 0) + 1
        self.bus.publish(WindowJudged(window=p.window, miners=len(outcomes), results=results, seconds=p.seconds,
                                      detail=detail, source=self.source))
        return summary

    async def _fetch_all(self, tasks: list[WindowTask], request: dict) -> None:
        """On the peer loop: every miner's request at once, each with the window's deadline. The
        requests are signed by the signing service's process (net/signer.py), a thousand
        signatures would otherwise hold the GIL the node's own loop needs; in batches of
        ``SIGN_BATCH``, each sent while the next is signed, so the first miners are not kept
        waiting for the last one's signature."""
        fetches: list[asyncio.Future] = []
        try:
            for i in range(0, len(tasks), SIGN_BATCH):
                batch = tasks[i:i + SIGN_BATCH]
                bodies = [WindowChallenge(listing=t.spec.listing_hex, **request).model_dump_json().encode()
                          for t in batch]
                signed = await self.signer.sign([SignItem("POST", "/v1/challenge", body, t.view.neuron.hotkey)
                                                 for t, body in zip(batch, bodies)])
                fetches += [asyncio.ensure_future(self._fetch(t, request, body, headers))
                            for t, body, headers in zip(batch, bodies, signed)]
            await asyncio.gather(*fetches)
        finally:  # a cancelled window leaves no request behind
            for f in fetches:
                f.cancel()

    async def _fetch(self, task: WindowTask, request: dict, body: bytes, signed: dict[str, str]) -> None:
        """One miner's answer, read up to what its sample allows, timed at arrival. A 425 (its chain
        has not reached the beacon block) is asked again, signed anew, while the deadline allows.
        Never raises."""
        n = task.view.neuron
        bound = answer_bound(len(task.spec.plots), task.spec.per_plot, self.profile.max_k, task.spec.chunks)
        # The answer streams into a spool file and its check starts the moment it is complete, while
        # other miners' answers still arrive: a window holds no answer in memory, whatever the miners.
        retry_s = min(1.0, max(0.05, self._block_s / 10))
        sink = None
        try:
            host, port = n.endpoint  # type: ignore[misc]
            while True:
                sink = self.verifier.answer_sink()
                task.reply = await self.client.request("POST", host, port, "/v1/challenge", receiver=n.hotkey,
                                                       body=body, deadline=request["deadline"], max_reply=bound,
                                                       sink=None if sink is None else sink.write, signed=signed)
                signed = None  # a retry signs a fresh nonce (the miner keeps the first one as used)
                if task.reply.status != 425 or time.time() + retry_s >= request["deadline"]:
                    break
                if sink is not None:
                    sink.discard()
                    sink = None
                task.retries += 1
                await asyncio.sleep(retry_s)  # bounded by the window's deadline
        except PeerError as exc:
            task.failure = exc
        except Exception as exc:  # anything else is this miner's failure only
            task.failure = PeerError("unreachable", f"{type(exc).__name__}: {exc}")
        if sink is not None:
            if task.reply is not None and task.reply.status == 200:
                # VerifyPool.answers takes the answer in flight in place of its bytes (proof_round passes
                # reply.body on as it always did)
                task.reply.body = self.verifier.submit(sink, task.spec)  # type: ignore[assignment]
            else:
                sink.discard()

    async def _record(self, window: int, started: float, outcomes: list[tuple[RoundOutcome, str]]) -> str:
        self.rounds_run += 1
        rows = []
        for o, listing_hex in outcomes:
            score = self.scores.get(o.hotkey)
            if score is None:
                score = self.scores[o.hotkey] = MinerScore(hotkey=o.hotkey, uid=o.uid)
            score.uid = o.uid
            score.add_window(window, o.credit, o.returned, o.expected, self.decay, o.client)
            score.note_latency(o.counts, o.latency_ms)
            rows.append({"window": window, "started_at": started, "uid": o.uid, "hotkey": o.hotkey,
                         "result": o.result, "plots": o.plots, "proofs_returned": o.returned,
                         "proofs_expected": o.expected, "credit_bytes": o.total_credit, "latency_ms": o.latency_ms,
                         "listing": listing_hex, "detail": o.detail, "client_bytes": o.client_bytes,
                         "chunks_asked": o.chunks_asked, "chunks_right": o.chunks_right})
            self.bus.publish(ChallengeResult(validator=self.hotkey, miner_uid=o.uid, miner_hotkey=o.hotkey,
                                             plots=o.plots, proofs_returned=o.returned, proofs_expected=o.expected,
                                             result=o.result, latency_ms=o.latency_ms, detail=o.detail,
                                             window=window, credit_bytes=o.total_credit, chunks_asked=o.chunks_asked,
                                             chunks_right=o.chunks_right, client_bytes=o.client_bytes,
                                             source=self.source))
        await self._write(self.store.record_rounds, rows)
        if self.rounds_run % 20 == 0:
            await self._write(self.store.prune_rounds)
        await self._save_scores()
        passed = sum(o.result == "pass" for o, _ in outcomes)
        return f"window {window}: {passed}/{len(outcomes)} passed"

    async def _save_scores(self) -> None:
        if not self.settings.no_store_weights:
            await self._write(self.store.save_scores, self._score_rows())

    @property
    def window_s(self) -> float:
        return self.profile.window_blocks * self._block_s

    @property
    def round_every_s(self) -> float:
        """This validator checks every window, or fewer when ``--seconds_per_round`` says so."""
        return max(self.window_s, self.settings.round_interval or self.window_s)

    def _align_rounds(self, window_started: Optional[float]) -> None:
        """Run the next check just after the next window (or the one ``--seconds_per_round`` asks
        for) begins, whatever the drift of the chain's block times. Never into the past: a head
        that lags (``window_started`` None: the window was checked already, or its start is old)
        is looked at again in an eighth of a block time, not in a tight loop of chain reads."""
        if not self.jobs.has("proof_round"):
            return
        now = time.time()
        at = now + max(0.05, self._block_s / 8)  # soon enough to keep the window's deadline, not a tight loop
        if window_started is not None:
            windows_ahead = max(1, round(self.round_every_s / self.window_s))
            target = window_started + windows_ahead * self.window_s + ROUND_LAG_S
            if target > now:
                at = target
        self.jobs.reschedule("proof_round", at)

    # weights -------------------------------------------------------------------------------
    def weights(self) -> dict[int, float]:
        """Normalized scores, client credit under each gateway's stake bound, never to an
        unregistered uid."""
        mg = self.metagraph
        if mg is None:
            return {}
        registered = {n.hotkey: n.uid for n in mg.neurons}
        scores, self.gateway_factors = self.bounded()
        return normalize({registered[h]: v for h, v in scores.items() if h in registered})

    async def set_weights(self) -> str:
        weights = self.weights()
        if not weights:
            return "no miner has proven any capacity yet"
        try:
            block = await asyncio.to_thread(self.chain.set_weights, self.wallet, weights)
        except Exception as exc:
            message = str(exc)
            await self._write(self.store.log_weights, self.metagraph.block if self.metagraph else 0, weights, False,
                              message)
            self.bus.publish(WeightsSet(block=0, weights={}, ok=False, message=message, source=self.source))
            raise
        self.last_weights, self.last_weights_block = weights, block
        if not self.settings.no_store_weights:
            await self._write(self.store.log_weights, block, weights, True)
        self.bus.publish(WeightsSet(block=block, weights={str(u): w for u, w in weights.items()}, source=self.source))
        return f"set {len(weights)} weights at block {block}"

    # lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        me = await self.require_registered()
        if not me.validator_permit:
            self.bus.publish(ErrorEvent(message=f"uid {me.uid} has no validator permit: miners will refuse its "
                                                f"challenges and the chain its weights until it has stake",
                                        source=self.source))
        await self.verifier.warm()
        await self.signer.warm()
        await self.start_server()
        self._block_s = await asyncio.to_thread(self.chain.block_time)
        await self.sync()
        self.jobs.add("sync", self.sync, self.profile.sync_s, first_in=None)
        self.jobs.add("proof_round", self.proof_round, self.round_every_s, first_in=0.0)
        self.jobs.add("settle_windows", self.settle_windows, self.window_s, first_in=None)
        self.jobs.add("set_weights", self.set_weights, self.settings.weights_interval,
                      first_in=None if not self.scores else 5.0)
        if self.gateway is not None:  # re-checks, repair, certificate renewal, garbage collection
            self.gateway.add_jobs(self.jobs, self.round_every_s)
        self.jobs.start()
        self.write_state()

    async def stop(self) -> None:
        await super().stop()
        await self.peer_loop.call(self.client.close())
        self.peer_loop.close()
        await self.gateway_client.close()
        try:
            await self._save_scores()
        finally:
            self._db.shutdown(wait=True)
            self.verifier.close()
            self.signer.close()
            self.store.close()
            if self.gateway is not None:
                self.gateway.close()

    def snapshot(self) -> dict[str, Any]:
        scores, factors = self.bounded()
        return {
            **super().snapshot(),
            "rounds_run": self.rounds_run,
            "windows_void": self.windows_void,
            "last_verdict": self.last_verdict,
            "last_window": self.last_window,
            "last_weights_block": self.last_weights_block,
            "last_weights": {str(uid): w for uid, w in self.last_weights.items()},
            "miners_synced": len(self.miners),
            "gateway_factors": {g: round(f, 4) for g, f in factors.items()},
            **(self.gateway.snapshot() if self.gateway is not None else {}),
            "miners": {
                s.hotkey: {"uid": s.uid, "ratio": round(s.ratio, 4), "proven_bytes": s.proven_bytes(),
                           "client_bytes": s.client_bytes(), "score": scores[s.hotkey],
                           "latency_ms": round(s.latency_ms, 1),
                           "windows": round(s.windows, 2), "last_window": s.last_window}
                for s in self.scores.values()
            },
        }
