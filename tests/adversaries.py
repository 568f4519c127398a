"""Cheating and hostile miners, run as real processes against a real validator:

    python -m tests.adversaries STRATEGY [--borrow-from DB_ROOT] <tensorage miner flags>

Each is the real MinerEngine with one method overridden: what it lists, how it looks
proofs up, or what bytes it answers. None of this lives in the product. docs/proofs.md
lists what each one tries and what it must end up with.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from aiohttp import web

from tensorage.config import add_axon_flags, add_common_flags, settings_from_namespace
from tensorage.engines.miner import HeldPlot, MinerEngine
from tensorage.engines.run import build_node, main as run_main
from tensorage.net.auth import VALIDATOR, access
from tensorage.net.messages import PlotsResponse, WindowChallenge
from tensorage.proofs.listing import ENTRY_BYTES, Listing
from tensorage.proofs.plots import plot_filename, plot_id
from tensorage.proofs.plotter import PlotJob, run_plot
from tensorage.proofs.prover_pool import PlotTask, ProverPool
from tensorage.proofs.windows import draw_sample, window_challenge, window_of, window_start
from tensorage.storage.models import MinerIndex, PlotState


def fakes(n: int, k: int, salt: bytes = b"") -> list[tuple[bytes, int]]:
    """Invented plots: seeds nobody ever plotted."""
    return [(hashlib.sha256(b"fake" + salt + i.to_bytes(4, "big")).digest(), k) for i in range(n)]


class Adversary(MinerEngine):
    """Cheaters do not follow the allocation plan or scrub: they keep their files as rigged."""

    async def reallocate(self) -> str:
        return "adversary: no reallocation"

    async def scrub(self) -> str:
        return "adversary: no scrub"

    def real(self) -> list[HeldPlot]:
        return sorted(self.plots.values(), key=lambda p: p.seed)

    def entries(self, plots: list[HeldPlot]) -> list[tuple[bytes, int]]:
        return [(bytes.fromhex(p.seed), p.k) for p in plots]

    def current_listing(self) -> Listing:  # no caching: cheaters change what they list
        return Listing.from_plots(self.listed_plots())


# -- holding less than it lists ------------------------------------------------------------

class FakeLister(Adversary):
    """Holds two plots, lists those and two it never made."""

    def listed_plots(self):
        return self.entries(self.real()[:2]) + fakes(2, 18)


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
    """Answers its first window honestly, then replays those proofs forever."""

    cache: dict[tuple[bytes, int], list[bytes]]

    async def prove_sample(self, entries, challenge, per_plot):
        if not hasattr(self, "cache"):
            self.cache = {}
        fresh = [e for e in entries if (e[0], 0) not in self.cache]
        if fresh:
            for (seed, _), per_j in zip(fresh, await super().prove_sample(fresh, challenge, per_plot)):
                for j, proofs in enumerate(per_j):
                    self.cache[(seed, j)] = proofs
        return [[self.cache.get((seed, j), []) for j in range(per_plot)] for seed, _ in entries]


class Duplicate(Adversary):
    """Holds two plots and lists each of them twice (a listing no honest miner sends)."""

    def current_listing(self) -> Listing:
        blob = Listing.from_plots(self.entries(self.real()[:2])).blob
        doubled = b"".join(blob[i:i + ENTRY_BYTES] * 2 for i in range(0, len(blob), ENTRY_BYTES))
        return Listing(doubled)


class SmallK(Adversary):
    """Its plots are smaller than it claims (k=18 listed as k=19), plus k=16 entries."""

    def listed_plots(self):
        return [(s, k + 1) for s, k in self.entries(self.real())] + fakes(2, 16)

    async def prove_sample(self, entries, challenge, per_plot):
        held = {bytes.fromhex(p.seed): p for p in self.plots.values()}
        real = [(s, held[s].k) if s in held else (s, k) for s, k in entries]
        return await super().prove_sample(real, challenge, per_plot)  # answers from its real, smaller plots


class OnDemand(Adversary):
    """Stores nothing: lists seeds and builds the sampled plots when a window asks, one after
    the other while time is left before the deadline. A plotting failure is not hidden: the
    answer fails with it (HTTP 500, in the validator's round)."""

    MARGIN_S = 0.2
    deadline = 0.0
    window = -1

    def seeds(self) -> list[str]:
        path = self.layout.root / "on-demand-seeds.json"
        if not path.exists():
            path.write_text(json.dumps([os.urandom(32).hex() for _ in range(4)]))
        return json.loads(path.read_text())

    def listed_plots(self):
        return [(bytes.fromhex(s), self.profile.min_k) for s in self.seeds()]

    def plot_count(self) -> int:
        return len(self.seeds())

    async def window_answer(self, req: WindowChallenge):
        self.deadline, self.window = req.deadline, req.window
        return await super().window_answer(req)

    async def prove_sample(self, entries, challenge, per_plot):
        work = self.layout.root / "on-demand" / challenge.hex()[:16]  # a late build must not meet the next window's
        built: list[HeldPlot] = []
        started = time.monotonic()
        for seed, k in entries:
            if self.deadline - time.time() - self.MARGIN_S <= 0:
                break  # out of time: the rest of the sample goes unanswered
            pid = plot_id(self.hotkey, seed)
            job = PlotJob(tmp_root=work / "tmp", final_dir=work, filename=plot_filename(k, seed), k=k,
                          plot_id=pid, threads=2, verify=False)
            result = await run_plot(job)
            built.append(HeldPlot(seed=seed.hex(), k=k, path=result.path, plot_id=pid))
        tasks = [PlotTask(seed=p.seed, path=str(p.path), plot_id=p.plot_id, k=p.k) for p in built]
        found = {(s, j): proofs for s, j, proofs in await self.pool.prove(tasks, challenge, per_plot) if j is not None}
        shutil.rmtree(work, ignore_errors=True)  # keeps nothing between windows
        late = time.time() > self.deadline
        self.bus.log(f"on-demand: window {self.window} built {len(built)} of {len(entries)} sampled plots in "
                     f"{time.monotonic() - started:.1f}s ({'after' if late else 'before'} the deadline)",
                     source=self.source)
        return [[found.get((seed.hex(), j), []) for j in range(per_plot)] for seed, _ in entries]


class Slow(Adversary):
    """Honest proofs, delivered after the deadline."""

    async def window_answer(self, req: WindowChallenge):
        answer = await super().window_answer(req)
        await asyncio.sleep(max(0.0, req.deadline - time.time() + 0.5))
        return answer


# -- the review's classes: counting, plot sizes, listings over time ------------------------

class MultiSpell(Adversary):
    """Holds two of the four plots it lists and sends each valid proof several times, in
    upper case, spaced out and plain."""

    def listed_plots(self):
        return self.entries(self.real()[:2]) + fakes(2, 18, b"spell")

    async def window_answer(self, req: WindowChallenge):
        honest, fresh = await super().window_answer(req)
        body = json.loads(honest)
        body["proofs"] = [[[v for p in items for v in (p, p.upper(), " ".join(p[i:i + 2] for i in range(0, len(p), 2)))]
                           for items in per_plot] for per_plot in body["proofs"]]
        return json.dumps(body).encode(), fresh


class MixedK(Adversary):
    """Holds its k=18 plots and lists them next to invented k=20 plots (4.4x the bytes each)."""

    def listed_plots(self):
        return self.entries(self.real()) + fakes(4, 20, b"mixed")


class Alternating(Adversary):
    """Alternates, one plot-list request to the next, between its real listing and one padded
    with invented plots."""

    flips = 0

    def listed_plots(self):
        self.flips += 1
        return self.entries(self.real()) + (fakes(12, 20, b"alt") if self.flips % 2 else [])


class Timed(Adversary):
    """Lists its real plots around the moment a window starts (when the old validator drew its
    sample) and a padded listing the rest of the time."""

    def listed_plots(self):
        block_s = self.chain.block_time()
        window_s = self.profile.window_blocks * block_s
        started = self.chain.block_timestamp(window_start(window_of(self.chain.block(), self.profile), self.profile))
        phase = (time.time() - started) / window_s
        near_start = phase > 0.7 or phase < 0.1
        return self.entries(self.real()) + ([] if near_start else fakes(12, 20, b"timed"))


class Grinder(Adversary):
    """Holds two plots and lists them with six invented ones. The moment it sees a window's
    beacon it grinds invented seeds until the window's sample would land on its real plots,
    and lists that: the validator must not use a listing chosen after the beacon."""

    ground: dict[int, list[tuple[bytes, int]]]

    def listed_plots(self):
        if not hasattr(self, "ground"):
            self.ground = {}
        window = window_of(self.chain.block(), self.profile)
        if window not in self.ground:
            real = self.entries(self.real()[:2])
            challenge = window_challenge(self.chain.block_hash(window_start(window, self.profile)), window)
            for attempt in range(200):
                candidate = real + fakes(6, 18, attempt.to_bytes(4, "big") + window.to_bytes(8, "big"))
                sampled = {p.seed for p in draw_sample(self.profile, challenge, self.hotkey, Listing.from_plots(candidate))}
                if all(seed in sampled for seed, _ in real):
                    break
            self.ground = {window: candidate}
        return self.ground[window]


class InFlight(Adversary):
    """Holds all its plots and lists them with invented ones that change on every request,
    including while its answer to a window is being looked up."""

    turns = 0

    def listed_plots(self):
        self.turns += 1
        return self.entries(self.real()) + fakes(3, 18, self.turns.to_bytes(4, "big"))

    async def prove_sample(self, entries, challenge, per_plot):
        self.turns += 1  # its listing changes mid-window
        return await super().prove_sample(entries, challenge, per_plot)


class Retiree(Adversary):
    """Answers honestly for a few windows, then stops serving (publishes no address) and deletes
    its plots, hoping to keep the score it built: a score must fade with the window clock."""

    RETIRE_AFTER = 6
    answered = 0

    async def window_answer(self, req: WindowChallenge):
        self.answered += 1
        if self.answered == self.RETIRE_AFTER:
            await asyncio.to_thread(self.chain.serve, self.wallet, "0.0.0.0", 0)
            self.published = None  # retired: the node no longer keeps the chain pointing at it
            for p in self.real():
                p.path.unlink(missing_ok=True)
            self.bus.log("retired: no address published, plots deleted", source=self.source)
        return await super().window_answer(req)


# -- hostile peers: big, slow, malformed -----------------------------------------------------

class Junk8M(Adversary):
    """Answers every window with 8 MiB of ``{}`` items."""

    async def window_answer(self, req: WindowChallenge):
        return b"[" + b"{}," * ((8 << 20) // 3) + b"{}]", True


class SlowJunk(Adversary):
    """Streams a 4 MiB junk answer slowly, finishing just before the deadline."""

    @access(VALIDATOR)
    async def handle_challenge(self, request: web.Request) -> web.StreamResponse:
        from tensorage.net.auth import BODY

        req = WindowChallenge.model_validate_json(request[BODY])
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunks = 64
        step = max(0.0, req.deadline - time.time() - 0.2) / chunks
        try:
            for _ in range(chunks):
                await response.write(b'{"junk":"' + b"x" * ((4 << 20) // chunks) + b'"},')
                await asyncio.sleep(step)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response


class JunkListing(Adversary):
    """Answers GET /v1/plots with 8 MiB of junk."""

    @access(VALIDATOR)
    async def handle_plots(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"plots":"' + b"A" * (8 << 20) + b'"}', content_type="application/json")


class HugeListing(Adversary):
    """Lists more plots than the network allows under one hotkey."""

    def listed_plots(self):
        return self.entries(self.real()) + fakes(self.profile.max_listed_plots + 10, 18, b"huge")

    def current_listing(self) -> Listing:
        if not hasattr(self, "_huge"):
            self._huge = Listing.from_plots(self.listed_plots())
        return self._huge


class FreshListing(Adversary):
    """Lists 60,000 fresh invented plots next to its real ones at every sync."""

    turns = 0

    def current_listing(self) -> Listing:
        self.turns += 1
        plots = self.entries(self.real()) + fakes(60_000, 18, b"fresh" + self.turns.to_bytes(4, "big"))
        return Listing.from_plots(plots)

    @access(VALIDATOR)
    async def handle_plots(self, request: web.Request) -> web.Response:
        listing = self.current_listing()
        self.answerer.remember(listing)
        body = PlotsResponse(hotkey=self.hotkey, digest=listing.digest_hex, plots=listing.to_b64())
        return web.Response(body=body.model_dump_json().encode(), content_type="application/json")


STRATEGIES = {"fake_lister": FakeLister, "fraction": Fraction, "borrower": Borrower, "replayer": Replayer,
              "duplicate": Duplicate, "small_k": SmallK, "on_demand": OnDemand, "slow": Slow,
              "multi_spell": MultiSpell, "mixed_k": MixedK, "alternating": Alternating, "timed": Timed,
              "grinder": Grinder, "in_flight": InFlight, "retiree": Retiree, "junk_8m": Junk8M, "slow_junk": SlowJunk,
              "junk_listing": JunkListing, "huge_listing": HugeListing, "fresh_listing": FreshListing}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.adversaries")
    p.add_argument("strategy", choices=sorted(STRATEGIES))
    p.add_argument("--borrow-from", type=Path, default=None)
    add_common_flags(p)
    add_axon_flags(p)
    args = p.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("strategy", "borrow_from")}
    settings = settings_from_namespace(flags)
    cls = STRATEGIES[args.strategy]

    def factory(role, settings, bus, source=None):
        node = build_node("miner", settings, bus, source=args.strategy)
        node.__class__ = cls  # same state, cheating methods
        node.pool = ProverPool(1)  # one lookup process each: twenty of them share two cores
        if args.borrow_from is not None:
            node.borrow_from = args.borrow_from
        return node

    return run_main("miner", settings, events_jsonl=False, node_factory=factory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
