"""Cheating miners (docs/design.md, "Proofs of space"), run as real processes against a real validator:

    python -m tests.adversaries STRATEGY [--borrow-from DB_ROOT] <tensorage miner flags>

Each is the real MinerEngine with one method overridden: what it lists, or how it
answers. None of this lives in the product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from tensorage.config import add_axon_flags, add_common_flags, settings_from_namespace
from tensorage.engines.miner import HeldPlot, MinerEngine
from tensorage.engines.run import build_node, main as run_main
from tensorage.net.messages import ChallengeRequest, ChallengeResponse, PlotEntry, PlotProofs
from tensorage.proofs.plots import plot_filename, plot_id
from tensorage.proofs.plotter import PlotJob, run_plot
from tensorage.proofs.prover_pool import PlotTask
from tensorage.storage.models import MinerIndex, PlotState


class Adversary(MinerEngine):
    """Cheaters do not follow the allocation plan or scrub: they keep their files as rigged."""

    async def reallocate(self) -> str:
        return "adversary: no reallocation"

    async def scrub(self) -> str:
        return "adversary: no scrub"

    def real(self) -> list[HeldPlot]:
        return sorted(self.plots.values(), key=lambda p: p.seed)


class FakeLister(Adversary):
    """Holds two plots, lists those and two it never made."""

    def listed_plots(self) -> list[PlotEntry]:
        real = self.real()[:2]
        fakes = [PlotEntry(seed=(f"{i:02x}" * 32), k=18) for i in (0xF1, 0xF2)]
        return [PlotEntry(seed=p.seed, k=p.k) for p in real] + fakes


class Fraction(Adversary):
    """Lists all its plots but deleted half of the files (f = 0.5)."""

    async def start(self) -> None:
        await super().start()
        for p in self.real()[: len(self.plots) // 2]:
            p.path.unlink(missing_ok=True)


class Borrower(Adversary):
    """Lists another miner's plots and answers from that miner's files."""

    borrow_from: Path

    def refresh_plots(self) -> None:
        index = MinerIndex(self.borrow_from / "index" / "miner.sqlite")
        try:
            rows = index.plots(PlotState.VERIFIED)
        finally:
            index.close()
        self.plots = {
            r.seed: HeldPlot(seed=r.seed, k=r.k, path=self.borrow_from / "plots" / plot_filename(r.k, bytes.fromhex(r.seed)),
                             plot_id=plot_id(self.hotkey, bytes.fromhex(r.seed)))
            for r in rows
        }


class Replayer(Adversary):
    """Answers the first challenge honestly, then replays those proofs forever."""

    cache: dict[tuple[str, int], list[str]]

    async def prove(self, req: ChallengeRequest) -> ChallengeResponse:
        if not hasattr(self, "cache"):
            self.cache = {}
        fresh = [s for s in req.plots if not any(key[0] == s for key in self.cache)]
        if fresh:
            answer = await super().prove(req.model_copy(update={"plots": fresh}))
            for item in answer.proofs:
                self.cache[(item.seed, item.j)] = item.proofs
        proofs = [PlotProofs(seed=s, j=j, proofs=self.cache.get((s, j), []))
                  for s in req.plots for j in range(req.per_plot)]
        return ChallengeResponse(proofs=proofs)


class Duplicate(Adversary):
    """Holds two plots and lists each of them twice."""

    def listed_plots(self) -> list[PlotEntry]:
        real = [PlotEntry(seed=p.seed, k=p.k) for p in self.real()[:2]]
        return real + real


class SmallK(Adversary):
    """Its plots are smaller than it claims (k=18 listed as k=19), plus k=16 entries."""

    def listed_plots(self) -> list[PlotEntry]:
        lies = [PlotEntry(seed=p.seed, k=p.k + 1) for p in self.real()]
        tiny = [PlotEntry(seed=(f"{i:02x}" * 32), k=16) for i in (0xA1, 0xA2)]
        return lies + tiny

    async def prove(self, req: ChallengeRequest) -> ChallengeResponse:
        return await super().prove(req)  # answers from its real (smaller) plots


class OnDemand(Adversary):
    """Stores nothing: lists seeds and builds the sampled plots when challenged, within the deadline."""

    MARGIN_S = 0.35

    def seeds(self) -> list[str]:
        path = self.layout.root / "on-demand-seeds.json"
        if not path.exists():
            path.write_text(json.dumps([os.urandom(32).hex() for _ in range(4)]))
        return json.loads(path.read_text())

    def listed_plots(self) -> list[PlotEntry]:
        return [PlotEntry(seed=s, k=self.profile.min_k) for s in self.seeds()]

    def plot_count(self) -> int:
        return len(self.seeds())

    async def prove(self, req: ChallengeRequest) -> ChallengeResponse:
        k = self.profile.min_k
        built: list[HeldPlot] = []
        work = self.layout.root / "on-demand"
        for seed in req.plots:
            remaining = req.deadline - time.time() - self.MARGIN_S
            if remaining <= 0:
                break
            pid = plot_id(self.hotkey, bytes.fromhex(seed))
            job = PlotJob(tmp_root=work / "tmp", final_dir=work, filename=plot_filename(k, bytes.fromhex(seed)), k=k,
                          plot_id=pid, threads=1, verify=False)
            try:
                result = await asyncio.wait_for(run_plot(job), timeout=remaining)
            except (asyncio.TimeoutError, Exception):
                break
            built.append(HeldPlot(seed=seed, k=k, path=result.path, plot_id=pid))
        tasks = [PlotTask(seed=p.seed, path=str(p.path), plot_id=p.plot_id, k=k) for p in built]
        results = await self.pool.prove(tasks, bytes.fromhex(req.challenge), req.per_plot)
        for p in built:
            p.path.unlink(missing_ok=True)  # keeps nothing between challenges
        return ChallengeResponse(proofs=[PlotProofs(seed=s, j=j, proofs=[x.hex() for x in payload])
                                         for s, j, payload in results if j is not None])


class Slow(Adversary):
    """Honest proofs, delivered after the deadline."""

    async def prove(self, req: ChallengeRequest) -> ChallengeResponse:
        answer = await super().prove(req)
        await asyncio.sleep(max(0.0, req.deadline - time.time() + 0.5))
        return answer


STRATEGIES = {"fake_lister": FakeLister, "fraction": Fraction, "borrower": Borrower, "replayer": Replayer,
              "duplicate": Duplicate, "small_k": SmallK, "on_demand": OnDemand, "slow": Slow}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.adversaries")
    p.add_argument("strategy", choices=sorted(STRATEGIES))
    p.add_argument("--borrow-from", type=Path, default=None)
    p.add_argument("--events", default=None)
    add_common_flags(p)
    add_axon_flags(p)
    args = p.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("strategy", "borrow_from", "events")}
    settings = settings_from_namespace(flags)
    cls = STRATEGIES[args.strategy]

    def factory(role, settings, bus, source=None):
        node = build_node("miner", settings, bus, source=args.strategy)
        node.__class__ = cls  # same state, cheating methods
        if args.borrow_from is not None:
            node.borrow_from = args.borrow_from
        return node

    return run_main("miner", settings, events_jsonl=False, node_factory=factory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
