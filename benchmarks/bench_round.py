"""A proof round against 64 miners served from one process.

* measured: the wall time of ``ValidatorEngine.proof_round()`` (sample plots, sign, send 64
  challenges at once with one deadline, verify, score, store the round) against 64 real
  MinerEngine servers (own hotkeys registered on a devnet, 1-2 verified k=18 plots each,
  signed-request middleware) that share ONE ProverPool (2 worker processes).
* baseline: 64 concurrent echo round trips to 64 plain aiohttp echo servers on the same loop,
  through the validator's own client session, each with a body the size of that miner's
  challenge. Target: round / echo <= 2x.
* the round's proof lookups alone: one ``ProverPool.prove`` per miner over all its plots, all
  at once on the shared pool (what the miners do inside a round, without HTTP or validator).
  Rounds, echo rounds and lookup rounds are interleaved, rotating which goes first.
* validator CPU per verified proof: thread CPU time (``time.thread_time``) spent in
  ``ValidatorEngine.count_valid`` divided by the proofs it checked, against a baseline of
  ``chia.verify`` alone over the same (plot id, k, challenge, proof) tuples.

The validator, the 64 miners and the echo servers share one process and one event loop:
every round trip here also pays for the other side's Python work, on the same 2 cores
as the proof workers. Miners' periodic jobs are paused after their first reallocation.

Run: python -m benchmarks.bench_round [--miners 64] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from tensorage.chain.devnet import Devnet
from tensorage.chain.devnet_init import init_devnet
from tensorage.config import PROFILES, plots_to_sample, settings_from_namespace
from tensorage.engines.validator import ValidatorEngine
from tensorage.events import ChallengeResult
from tensorage.net.messages import ChallengeRequest
from tensorage.proofs import chia
from tensorage.proofs.challenges import derive, new_challenge
from tensorage.proofs.prover_pool import PlotTask, ProverPool

from .common import report
from .harness import make_plots, start_echo, start_miner, stop_miner, wallet_of


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def run(a: argparse.Namespace, base: Path) -> None:
    profile = PROFILES["devnet"]
    root = base / "devnet"
    t0 = time.monotonic()
    init_devnet(root, miners=a.miners, validators=1, miner_sizes_gb=(0.01,))
    init_s = time.monotonic() - t0
    names = [f"miner-{i}" for i in range(a.miners)]
    db_roots = {n: root / "nodes" / n for n in names}
    plots_per = {n: 1 + (i % 2) for i, n in enumerate(names)}  # 1-2 plots each
    plot_s = await make_plots([(db_roots[n], wallet_of(root, n).hotkey.ss58_address, plots_per[n]) for n in names])

    pool = ProverPool(min(2, os.cpu_count() or 1))
    miners, echoes = [], []
    validator = None
    try:
        await pool.warm()
        t0 = time.monotonic()
        for n in names:
            miners.append(await start_miner(root, n, db_roots[n], pool=pool))
        start_s = time.monotonic() - t0
        echoes = [await start_echo() for _ in names]
        vsettings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(root),
                                             "wallet.name": "validator-0",
                                             "db_root_path": str(root / "nodes" / "validator-0")})
        validator = ValidatorEngine(vsettings, wallet_of(root, "validator-0"), Devnet.open(root), source="validator")
        results: list[ChallengeResult] = []
        validator.bus.subscribe(lambda e: results.append(e) if isinstance(e, ChallengeResult) else None)

        # count_valid, timed: thread CPU per call, and the tuples it verified for the baseline
        cpu = {"s": 0.0, "checked": 0, "valid": 0}
        items: list[tuple[bytes, int, bytes, bytes]] = []
        original = validator.count_valid

        def timed_count_valid(view, sampled, challenge, per_plot, response):
            t = time.thread_time()
            valid, invalid = original(view, sampled, challenge, per_plot, response)
            cpu["s"] += time.thread_time() - t
            cpu["valid"] += valid
            cpu["checked"] += valid + invalid
            for item in response.proofs:
                c = derive(challenge, view.plot_ids[item.seed], item.j)
                items.extend((view.plot_ids[item.seed], sampled[item.seed], c, bytes.fromhex(p)) for p in item.proofs)
            return valid, invalid

        validator.count_valid = timed_count_valid  # type: ignore[method-assign]
        sync_result = await validator.sync()

        # echo bodies: one per miner, the size of the challenge the validator sends it
        bodies = []
        for m in miners:
            view = validator.miners[m.hotkey]
            k = plots_to_sample(profile, len(view.plots))
            bodies.append(ChallengeRequest(challenge=new_challenge().hex(), plots=[s for s, _ in view.plots[:k]],
                                           per_plot=profile.challenges_per_plot, deadline=time.time())
                          .model_dump_json().encode())
        session = validator.client.session

        async def echo_one(port: int, raw: bytes) -> None:
            async with session.post(f"http://127.0.0.1:{port}/echo", data=raw,
                                    headers={"Content-Type": "application/json"}) as r:
                data = await r.read()
            if r.status != 200 or data != raw:
                raise RuntimeError(f"echo answered {r.status}")

        async def echo_round() -> float:
            t = time.perf_counter()
            await asyncio.gather(*(echo_one(e.port, b) for e, b in zip(echoes, bodies)))
            return time.perf_counter() - t

        async def proof_round() -> float:
            t = time.perf_counter()
            await validator.proof_round()
            return time.perf_counter() - t

        # the round's proof lookups alone: every miner's plots, one pool.prove per miner, all at once
        lookups = [[PlotTask(seed=p.seed, path=str(p.path), plot_id=p.plot_id, k=p.k) for p in m.plots.values()]
                   for m in miners]

        async def lookup_round() -> float:
            c = new_challenge()
            t = time.perf_counter()
            await asyncio.gather(*(pool.prove(tasks, c, profile.challenges_per_plot) for tasks in lookups))
            return time.perf_counter() - t

        for _ in range(2):  # warm-up: connections, open provers, page cache
            await proof_round()
            await echo_round()
        results.clear()
        cpu.update(s=0.0, checked=0, valid=0)
        items.clear()

        # interleaved, rotating which goes first, so load from other processes hits every series alike
        series: dict = {proof_round: [], echo_round: [], lookup_round: []}
        order = tuple(series)
        for i in range(a.rounds):
            for step in order[i % 3:] + order[:i % 3]:
                series[step].append(await step())
                await asyncio.sleep(0.05)
        rounds, echo, lookup = series[proof_round], series[echo_round], series[lookup_round]
        outcomes = Counter(r.result for r in results)
        lat = [r.latency_ms for r in results if r.result in ("pass", "fail")]
    finally:
        if validator is not None:
            await validator.client.close()
            validator.store.close()
            validator.chain.close()
        for e in echoes:
            await e.close()
        for m in miners:
            await stop_miner(m)
        pool.close()

    best_v = float("inf")
    for _ in range(3):
        t = time.thread_time()
        ok = sum(chia.verify(pid, k, c, proof) for pid, k, c, proof in items)
        best_v = min(best_v, time.thread_time() - t)
    per_proof = cpu["s"] / max(1, cpu["checked"])
    bare = best_v / max(1, len(items))
    r50, e50, l50 = statistics.median(rounds), statistics.median(echo), statistics.median(lookup)
    rb, eb = min(rounds), min(echo)
    n_plots = sum(plots_per.values())
    report(f"proof round, {a.miners} miners in one process ({n_plots} k=18 plots, one shared ProverPool of "
           f"{pool.workers} workers), {a.rounds} rounds interleaved with echo and lookup rounds", [
               ("proof round wall time (median)", ms(r50), ms(e50) + f" {a.miners} echoes", f"{r50 / e50:.1f}×",
                "≤ 2×"),
               ("proof round wall time (best)", ms(rb), ms(eb) + f" {a.miners} echoes", f"{rb / eb:.1f}×", "≤ 2×"),
               ("  of which proof lookups (ProverPool.prove alone, median)", ms(l50), "",
                f"{l50 / r50:.0%} of round", ""),
               ("  round minus proof lookups", ms(r50 - l50), ms(e50) + f" {a.miners} echoes",
                f"{(r50 - l50) / e50:.1f}×", ""),
               ("validator CPU per verified proof (count_valid)", f"{per_proof * 1e6:.1f} µs",
                f"{bare * 1e6:.1f} µs chia.verify", f"{per_proof / bare:.2f}×", ""),
           ])
    print("NOTE: validator, miners and echo servers share ONE process and ONE event loop (2 cores, also "
          "running the proof workers); round trips include the miners' Python work.")
    print(f"deadline {profile.challenge_deadline_s:g}s; outcomes over {a.rounds} rounds: {dict(outcomes)}; "
          f"miner latency median {statistics.median(lat):.0f} ms, max {max(lat):.0f} ms; "
          f"{cpu['checked']} proofs checked, {cpu['valid']} valid, {ok}/{len(items)} in the bare re-check")
    print(f"setup: devnet init {init_s:.1f}s, plots {plot_s:.1f}s, {a.miners} miners started in {start_s:.1f}s; "
          f"sync: {sync_result}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--miners", type=int, default=64)
    p.add_argument("--rounds", type=int, default=15)
    a = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
    try:
        asyncio.run(run(a, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
