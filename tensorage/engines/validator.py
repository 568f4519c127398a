"""The validator: syncs the metagraph and miners' plot lists, runs proof rounds,
scores miners and sets weights.

A round sends one fresh challenge to every serving miner at once, each over a
random sample of its plots, with one absolute deadline for all; answers are checked
with the stateless verifier (plot id recomputed from the miner's hotkey), scored, and
stored so a restart resumes with the same scores.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import bittensor as bt

from .. import PROTOCOL_VERSION
from ..chain.port import ChainPort, Neuron
from ..config import Settings, plots_to_sample
from ..errors import ProtocolError
from ..events import ChallengeResult, ErrorEvent, EventBus, WeightsSet
from ..net.client import PeerError, SignedClient
from ..net.messages import ChallengeRequest, ChallengeResponse, PlotsResponse
from ..proofs import chia
from ..proofs.challenges import CapacityEstimate, derive, expected_proofs, new_challenge
from ..proofs.plots import estimated_plot_bytes, plot_id
from ..storage.validator_db import ValidatorStore
from .gateway import Gateway
from .node import Node
from .scoring import DECAY, MinerScore, judge, normalize

SYNC_CONCURRENCY = 32
MAX_LISTED_PLOTS = 1_000_000


@dataclass
class MinerView:
    """What this validator knows of one miner right now."""

    neuron: Neuron
    plots: list[tuple[str, int]] = field(default_factory=list)  # accepted (seed hex, k)
    plot_ids: dict[str, bytes] = field(default_factory=dict)
    listed: int = 0
    refused: str = ""
    error: str = ""
    stored: bool = False  # this listing is in the store (written since this process started)

    @property
    def listed_bytes(self) -> int:
        return sum(estimated_plot_bytes(k) for _, k in self.plots)


@dataclass
class RoundOutcome:
    uid: int
    hotkey: str
    result: str
    plots: int
    returned: int
    expected: float
    latency_ms: float
    detail: str = ""


class ValidatorEngine(Node):
    role = "validator"

    def __init__(self, settings: Settings, wallet: bt.Wallet, chain: ChainPort, bus: Optional[EventBus] = None,
                 source: Optional[str] = None) -> None:
        super().__init__(settings, wallet, chain, bus, source)
        self.layout.ensure()
        self.store = ValidatorStore(self.layout.validator_state_db)
        self.client = SignedClient(wallet)
        self.miners: dict[str, MinerView] = {}
        self.scores: dict[str, MinerScore] = {}
        self.rounds_run = 0
        self.last_weights: dict[int, float] = {}
        self.last_weights_block: Optional[int] = None
        if not settings.no_restore_weights:
            self._restore()
        # The client gateway (DESIGN §5); it ranks miners for placement by this validator's scores.
        self.gateway: Optional[Gateway] = None if settings.gateway.disable else Gateway(
            settings, self.layout, self.hotkey, self.client, lambda: self.metagraph, self._miner_ranks, self.bus,
            self.source)

    def _miner_ranks(self) -> dict[str, float]:
        deadline = self.profile.challenge_deadline_s
        return {h: s.score(deadline) for h, s in self.scores.items()}

    def add_routes(self, app) -> None:
        if self.gateway is not None:
            self.gateway.add_routes(app)

    # persistence -------------------------------------------------------------------------
    def _restore(self) -> None:
        for row in self.store.scores().values():
            self.scores[row.hotkey] = MinerScore(
                hotkey=row.hotkey, uid=row.uid, estimate=CapacityEstimate(row.returned, row.expected),
                latency_ms=row.latency_ms, listed_bytes=0)
        for m in self.store.miners():
            plots = self.store.miner_plots(m.hotkey)
            if m.hotkey in self.scores:
                self.scores[m.hotkey].listed_bytes = sum(estimated_plot_bytes(k) for _, k in plots)
        last = self.store.last_weights()
        if last is not None:
            self.last_weights = {int(k): v for k, v in json.loads(last.weights).items()}
            self.last_weights_block = last.block
        if self.scores:
            self.bus.log(f"restored scores of {len(self.scores)} miners", source=self.source)

    def _save_scores(self) -> None:
        if self.settings.no_store_weights:
            return
        deadline = self.profile.challenge_deadline_s
        self.store.save_scores([
            {"hotkey": s.hotkey, "uid": s.uid, "returned": s.estimate.returned, "expected": s.estimate.expected,
             "latency_ms": s.latency_ms, "proven_bytes": s.proven_bytes(), "score": s.score(deadline),
             "updated_at": time.time()}
            for s in self.scores.values()
        ])

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
        self.store.forget_miners(present)
        miners = self.serving_miners()
        sem = asyncio.Semaphore(SYNC_CONCURRENCY)

        async def one(n: Neuron) -> None:
            async with sem:
                await self.sync_miner(n)

        await asyncio.gather(*(one(n) for n in miners))
        serving = {n.hotkey for n in miners}  # built once, not once per known miner
        for hotkey in [h for h in self.miners if h not in serving]:
            del self.miners[hotkey]
        accepted = sum(len(m.plots) for m in self.miners.values())
        return f"block {mg.block}: {len(miners)} miners, {accepted} plots accepted"

    async def sync_miner(self, neuron: Neuron) -> MinerView:
        view = self.miners.get(neuron.hotkey) or MinerView(neuron=neuron)
        view.neuron = neuron
        self.miners[neuron.hotkey] = view
        self.store.upsert_miner(neuron.hotkey, neuron.uid, neuron.axon)
        host, port = neuron.endpoint  # type: ignore[misc]
        try:
            reply = await self.client.request("GET", host, port, "/v1/plots", receiver=neuron.hotkey, timeout=10.0)
            if reply.status != 200:
                raise ProtocolError(f"GET /v1/plots answered {reply.status} {reply.error_message}")
            listing = PlotsResponse.model_validate_json(reply.body)
            before = (view.plots, view.listed, view.refused, view.stored)
            self.accept_plots(view, listing)
            view.error = ""
        except (PeerError, ProtocolError, ValueError) as exc:
            view.error = str(exc)[:300]
            return view
        if (view.plots, view.listed, view.refused, True) == before:
            self.store.touch_miner(neuron.hotkey)  # unchanged: do not rewrite thousands of rows
        else:
            self.store.set_miner_plots(neuron.hotkey, view.plots, view.listed, view.listed_bytes, view.refused,
                                       listing.protocol)
            view.stored = True
        score = self.scores.get(neuron.hotkey)
        if score is not None:
            score.listed_bytes = view.listed_bytes
            score.uid = neuron.uid
        return view

    def accept_plots(self, view: MinerView, listing: PlotsResponse) -> None:
        """Keep plots that can count: right protocol, hotkey and k range, each seed once."""
        if listing.protocol != PROTOCOL_VERSION:
            raise ProtocolError(f"miner speaks protocol {listing.protocol}, this validator {PROTOCOL_VERSION}")
        if listing.hotkey != view.neuron.hotkey:
            raise ProtocolError(f"miner at {view.neuron.axon} says it is {listing.hotkey}, the chain says "
                                f"{view.neuron.hotkey}")
        seen: set[str] = set()
        accepted: list[tuple[str, int]] = []
        small = large = dup = 0
        for entry in listing.plots[:MAX_LISTED_PLOTS]:
            if entry.seed in seen:
                dup += 1
                continue
            seen.add(entry.seed)
            if entry.k < self.profile.min_k:
                small += 1
                continue
            if entry.k > self.profile.max_k:
                large += 1
                continue
            accepted.append((entry.seed, entry.k))
        reasons = [f"{n} {what}" for n, what in ((small, f"below k={self.profile.min_k}"),
                                                 (large, f"above k={self.profile.max_k}"),
                                                 (dup, "listed twice")) if n]
        view.listed = len(listing.plots)
        view.refused = ", ".join(reasons)
        view.plots = accepted
        view.plot_ids = {seed: plot_id(view.neuron.hotkey, bytes.fromhex(seed)) for seed, _ in accepted}

    # rounds ---------------------------------------------------------------------------------
    async def proof_round(self) -> str:
        targets = [m for m in self.miners.values() if m.plots and m.neuron.endpoint]
        if not targets:
            return "no miner with plots yet"
        challenge = new_challenge()
        deadline = time.time() + self.profile.challenge_deadline_s
        outcomes = await asyncio.gather(*(self.challenge_miner(m, challenge, deadline) for m in targets))
        self.rounds_run += 1
        rows = []
        for o in outcomes:
            self._score(o)
            rows.append({"started_at": deadline - self.profile.challenge_deadline_s, "uid": o.uid, "hotkey": o.hotkey,
                         "result": o.result, "plots": o.plots, "proofs_returned": o.returned,
                         "proofs_expected": o.expected, "latency_ms": o.latency_ms, "detail": o.detail[:500]})
            self.bus.publish(ChallengeResult(validator=self.hotkey, miner_uid=o.uid, miner_hotkey=o.hotkey,
                                             plots=o.plots, proofs_returned=o.returned, proofs_expected=o.expected,
                                             result=o.result, latency_ms=o.latency_ms, detail=o.detail,
                                             source=self.source))
        self.store.record_rounds(rows)
        if self.rounds_run % 20 == 0:
            self.store.prune_rounds()
        self._save_scores()
        passed = sum(o.result == "pass" for o in outcomes)
        return f"round {self.rounds_run}: {passed}/{len(outcomes)} passed"

    async def challenge_miner(self, view: MinerView, challenge: bytes, deadline: float) -> RoundOutcome:
        n = view.neuron
        sample = random.sample(view.plots, plots_to_sample(self.profile, len(view.plots)))
        per_plot = self.profile.challenges_per_plot
        expected = expected_proofs([k for _, k in sample], per_plot)
        out = RoundOutcome(uid=n.uid, hotkey=n.hotkey, result="fail", plots=len(sample), returned=0,
                           expected=expected, latency_ms=0.0)
        req = ChallengeRequest(challenge=challenge.hex(), plots=[s for s, _ in sample], per_plot=per_plot,
                               deadline=deadline)
        host, port = n.endpoint  # type: ignore[misc]
        try:
            reply = await self.client.request("POST", host, port, "/v1/challenge", receiver=n.hotkey,
                                              body=req.model_dump_json().encode(), deadline=deadline)
        except PeerError as exc:
            out.result, out.detail = exc.kind, str(exc)
            out.latency_ms = (time.time() - (deadline - self.profile.challenge_deadline_s)) * 1000
            return out
        out.latency_ms = reply.latency_ms
        if reply.status != 200:
            out.detail = f"HTTP {reply.status} {reply.error_message}"
            return out
        try:
            response = ChallengeResponse.model_validate_json(reply.body)
        except ValueError as exc:
            out.detail = f"malformed answer: {str(exc)[:200]}"
            return out
        returned, invalid = self.count_valid(view, dict(sample), challenge, per_plot, response)
        out.returned = returned
        out.result = judge(returned, expected, invalid)
        details = []
        if invalid:
            details.append(f"{invalid} invalid proofs")
        if response.missing:
            details.append(f"{len(response.missing)} plots missing")
        out.detail = ", ".join(details)
        return out

    def count_valid(self, view: MinerView, sampled: dict[str, int], challenge: bytes, per_plot: int,
                    response: ChallengeResponse) -> tuple[int, int]:
        """Valid distinct proofs for (sampled plot, j < per_plot); anything else is ignored or invalid."""
        valid = invalid = 0
        seen: set[tuple[str, int]] = set()
        for item in response.proofs:
            key = (item.seed, item.j)
            if item.seed not in sampled or item.j >= per_plot or key in seen:
                continue  # not asked, or answered twice: counts for nothing
            seen.add(key)
            k = sampled[item.seed]
            c = derive(challenge, view.plot_ids[item.seed], item.j)
            for proof_hex in set(item.proofs):
                try:
                    proof = bytes.fromhex(proof_hex)
                except ValueError:
                    invalid += 1
                    continue
                if chia.verify(view.plot_ids[item.seed], k, c, proof):
                    valid += 1
                else:
                    invalid += 1
        return valid, invalid

    def _score(self, o: RoundOutcome) -> None:
        view = self.miners.get(o.hotkey)
        score = self.scores.get(o.hotkey)
        if score is None:
            score = self.scores[o.hotkey] = MinerScore(hotkey=o.hotkey, uid=o.uid, estimate=CapacityEstimate())
        score.uid = o.uid
        score.listed_bytes = view.listed_bytes if view else score.listed_bytes
        score.estimate.update(o.returned, o.expected, DECAY)
        if o.result in ("pass", "fail") and o.latency_ms > 0:
            score.latency_ms = o.latency_ms if score.latency_ms == 0 else 0.8 * score.latency_ms + 0.2 * o.latency_ms
        elif o.result == "timeout":
            score.latency_ms = self.profile.challenge_deadline_s * 1000

    # weights -------------------------------------------------------------------------------
    def weights(self) -> dict[int, float]:
        mg = self.metagraph
        if mg is None:
            return {}
        registered = {n.hotkey: n.uid for n in mg.neurons}
        deadline = self.profile.challenge_deadline_s
        return normalize({registered[h]: s.score(deadline) for h, s in self.scores.items() if h in registered})

    async def set_weights(self) -> str:
        weights = self.weights()
        if not weights:
            return "no miner has proven any capacity yet"
        try:
            block = await asyncio.to_thread(self.chain.set_weights, self.wallet, weights)
        except Exception as exc:
            message = str(exc)
            self.store.log_weights(self.metagraph.block if self.metagraph else 0, weights, False, message)
            self.bus.publish(WeightsSet(block=0, weights={}, ok=False, message=message, source=self.source))
            raise
        self.last_weights, self.last_weights_block = weights, block
        if not self.settings.no_store_weights:
            self.store.log_weights(block, weights, True)
        self.bus.publish(WeightsSet(block=block, weights={str(u): w for u, w in weights.items()}, source=self.source))
        return f"set {len(weights)} weights at block {block}"

    # lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        me = await self.require_registered()
        if not me.validator_permit:
            self.bus.publish(ErrorEvent(message=f"uid {me.uid} has no validator permit: miners will refuse its "
                                                f"challenges and the chain its weights until it has stake",
                                        source=self.source))
        await self.start_server()
        await self.sync()
        self.jobs.add("sync", self.sync, self.profile.sync_s, first_in=None)
        self.jobs.add("proof_round", self.proof_round, self.settings.round_interval, first_in=1.0)
        self.jobs.add("set_weights", self.set_weights, self.settings.weights_interval,
                      first_in=None if not self.scores else 5.0)
        if self.gateway is not None:
            self.gateway.add_jobs(self.jobs, self.settings.round_interval)
        self.jobs.start()
        self.write_state()

    async def stop(self) -> None:
        await super().stop()
        await self.client.close()
        self._save_scores()
        self.store.close()
        if self.gateway is not None:
            self.gateway.close()

    def snapshot(self) -> dict[str, Any]:
        deadline = self.profile.challenge_deadline_s
        return {
            **super().snapshot(),
            "rounds_run": self.rounds_run,
            "last_weights_block": self.last_weights_block,
            "last_weights": {str(uid): w for uid, w in self.last_weights.items()},
            "miners_synced": len(self.miners),
            **(self.gateway.snapshot() if self.gateway is not None else {}),
            "miners": {
                s.hotkey: {"uid": s.uid, "ratio": round(s.ratio, 4), "proven_bytes": s.proven_bytes(),
                           "score": s.score(deadline), "latency_ms": round(s.latency_ms, 1)}
                for s in self.scores.values()
            },
        }
