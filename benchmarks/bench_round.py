"""A proof window checked against 64 miners served from one process.

* measured: the wall time of ``ValidatorEngine.proof_round()`` (read the window's beacon, draw
  every miner's sample, send 64 signed window requests at once with one deadline, check the
  answers in the verify pool's worker process, score, store the window) against 64 real
  MinerEngine servers (own hotkeys registered on a devnet, 1-2 verified k=18 plots each, so
  their sample is all their plots × J=4; signed-request middleware) that share ONE ProverPool
  (2 worker processes). ``proof_round()`` checks the current window once, so every measured
  round starts just after a new window begins (one every 3 s on the devnet).
* baseline: 64 concurrent echo round trips to 64 plain aiohttp echo servers on the same loop,
  through a client session like the validator's, each with a body the size of that miner's window
  request. Target: round / echo <= 2x.
* the round's proof lookups alone: one ``ProverPool.prove`` per miner over all its plots with a
  fresh challenge, all at once on the shared pool (what the miners do inside a round, without
  HTTP or validator). Echo and lookup rounds run after each proof round, in the same window,
  alternating which goes first.
* validator CPU per verified proof, two ways, each against ``chia.verify`` alone over the same
  (plot id, k, challenge, proof) tuples: the CPU time (psutil, user + system) of the verify
  pool's worker processes over the measured rounds, divided by the proofs they checked; and
  ``verify_pool.check_answers`` (strict parse + verify) called in this process on the very
  answers the rounds received (``time.thread_time``).

The validator, the 64 miners and the echo servers share one process and one event loop (the
proof workers and the verify worker are processes of their own, on the same 2 cores): every
round trip here also pays for the other side's Python work. Miners' periodic jobs are paused
after their first reallocation; the validator's jobs are not started (the benchmark calls
``sync()`` once, then ``proof_round()``).

Run: python -m benchmarks.bench_round [--miners 64] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import psutil

from tensorage.chain.devnet import Devnet
from tensorage.chain.devnet_init import init_devnet
from tensorage.config import PROFILES, settings_from_namespace
from tensorage.engines.validator import ValidatorEngine
from tensorage.events import ChallengeResult
from tensorage.net.messages import WindowChallenge
from tensorage.proofs import chia
from tensorage.proofs.answers import AnswerSpec
from tensorage.proofs.challenges import derive
from tensorage.proofs.plots import plot_id
from tensorage.proofs.prover_pool import PlotTask, ProverPool
from tensorage.proofs.verify_pool import AnswerInFlight, check_answers
from tensorage.proofs.windows import window_start

from .common import report, headline, parse_args
from .harness import make_plots, next_window, start_echo, start_miner, stop_miner, wallet_of


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def workers_cpu_s(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def verify_tuples(items: list[tuple[bytes, AnswerSpec]]) -> list[tuple[bytes, int, bytes, bytes]]:
    """(plot id, k, derived challenge, proof) of every proof in well-formed answers."""
    out = []
    for raw, spec in items:
        try:
            proofs = json.loads(raw)["proofs"]
        except (ValueError, KeyError):
            continue
        for plot, per_plot in zip(spec.plots, proofs):
            pid = plot_id(spec.hotkey, plot.seed)
            for j, items_j in enumerate(per_plot):
                c = derive(spec.challenge, pid, j)
                out.extend((pid, plot.k, c, bytes.fromhex(p)) for p in items_j)
    return out


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
    chain = Devnet.open(root)
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
        await validator.verifier.warm()
        verify_workers = [psutil.Process(p.pid) for p in validator.verifier.pool._processes.values()]
        results: list[ChallengeResult] = []
        validator.bus.subscribe(lambda e: results.append(e) if isinstance(e, ChallengeResult) else None)

        # what the verify pool was given and what it found, for the CPU figures
        received: list[tuple[bytes, AnswerSpec]] = []
        checked = {"proofs": 0, "valid": 0}
        check_in_pool = validator.verifier.answers

        def answer_bytes(body) -> bytes:
            """An answer streamed to a spool file arrives as an AnswerInFlight: its bytes, read before
            the pool removes the file (after the check)."""
            if isinstance(body, AnswerInFlight):
                return body.raw if body.raw is not None else Path(body.path).read_bytes()
            return body

        async def recording_answers(items: list[tuple[bytes, AnswerSpec]]):
            kept = [(answer_bytes(body), spec) for body, spec in items]
            checks = await check_in_pool(items)
            received.extend(kept)
            checked["proofs"] += sum(c.returned + c.invalid for c in checks)
            checked["valid"] += sum(c.returned for c in checks)
            return checks

        validator.verifier.answers = recording_answers  # type: ignore[method-assign]
        sync_result = await validator.sync()
        # the validator sends from its peer loop (its own thread); the echoes go out from this loop
        # through a session with the same connection settings
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2048, limit_per_host=8))

        async def echo_one(port: int, raw: bytes) -> None:
            async with session.post(f"http://127.0.0.1:{port}/echo", data=raw,
                                    headers={"Content-Type": "application/json"}) as r:
                data = await r.read()
            if r.status != 200 or data != raw:
                raise RuntimeError(f"echo answered {r.status}")

        bodies: list[bytes] = []

        async def echo_round() -> float:
            t = time.perf_counter()
            await asyncio.gather(*(echo_one(e.port, b) for e, b in zip(echoes, bodies)))
            return time.perf_counter() - t

        skipped: list[str] = []

        async def proof_round() -> float:
            for _ in range(5):  # a window this loaded machine reached too late is skipped, and said so
                w = await next_window(chain, profile)
                rounds_before = validator.rounds_run
                t = time.perf_counter()
                said = await validator.proof_round()
                took = time.perf_counter() - t
                if validator.rounds_run == rounds_before + 1 and validator.last_window == w:
                    break
                skipped.append(said)
            else:
                raise RuntimeError(f"5 windows in a row were not checked: {skipped[-5:]}")
            # the echo bodies: the window request each miner was just sent, same size
            start = window_start(w, profile)
            beacon, started = chain.block_hash(start), chain.block_timestamp(start)
            bodies[:] = [WindowChallenge(window=w, beacon=beacon.hex(), listing=validator.miners[m.hotkey].latest
                                         .listing.digest_hex, deadline=started + profile.challenge_deadline_s)
                         .model_dump_json().encode() for m in miners]
            return took

        # the round's proof lookups alone: every miner's plots, one pool.prove per miner, all at once
        lookups = [[PlotTask(seed=p.seed, path=str(p.path), plot_id=p.plot_id, k=p.k) for p in m.plots.values()]
                   for m in miners]

        async def lookup_round() -> float:
            c = os.urandom(32)
            t = time.perf_counter()
            await asyncio.gather(*(pool.prove(tasks, c, profile.challenges_per_plot) for tasks in lookups))
            return time.perf_counter() - t

        # warm-up: connections, open provers, page cache; the listings synced above count from the
        # window after the block they were seen at, so the first window may find none
        for _ in range(2):
            await proof_round()
            await echo_round()
        results.clear()
        skipped.clear()
        received.clear()
        checked.update(proofs=0, valid=0)
        cpu0 = workers_cpu_s(verify_workers)

        series: dict = {proof_round: [], echo_round: [], lookup_round: []}
        per_round: list[int] = []
        for i in range(a.rounds):
            before = len(results)
            series[proof_round].append(await proof_round())
            per_round.append(len(results) - before)
            for step in ((echo_round, lookup_round), (lookup_round, echo_round))[i % 2]:
                series[step].append(await step())
        workers_cpu = workers_cpu_s(verify_workers) - cpu0
        rounds, echo, lookup = series[proof_round], series[echo_round], series[lookup_round]
        outcomes = Counter(r.result for r in results)
        lat = [r.latency_ms for r in results if r.result in ("pass", "fail")]
        answer_bytes = [len(raw) for raw, _ in received]
    finally:
        if "session" in locals():
            await session.close()
        if validator is not None:
            await validator.stop()
            validator.chain.close()
        for e in echoes:
            await e.close()
        for m in miners:
            await stop_miner(m)
        pool.close()
        chain.close()

    # validator CPU per proof: the same answers checked here, and chia.verify alone on their proofs
    tuples = verify_tuples(received)
    best_check = best_bare = float("inf")
    for _ in range(3):
        t = time.thread_time()
        checks = check_answers(received)
        best_check = min(best_check, time.thread_time() - t)
        t = time.thread_time()
        ok = sum(chia.verify(pid, k, c, proof) for pid, k, c, proof in tuples)
        best_bare = min(best_bare, time.thread_time() - t)
    direct_proofs = sum(c.returned + c.invalid for c in checks)
    bare = best_bare / max(1, len(tuples))
    direct = best_check / max(1, direct_proofs)
    in_workers = workers_cpu / max(1, checked["proofs"])
    r50, e50, l50 = statistics.median(rounds), statistics.median(echo), statistics.median(lookup)
    rb, eb = min(rounds), min(echo)
    n_plots = sum(plots_per.values())
    report(f"proof window, {a.miners} miners in one process ({n_plots} k=18 plots, one shared ProverPool of "
           f"{pool.workers} workers), {a.rounds} windows, each followed by an echo and a lookup round", [
               ("proof round wall time (median)", ms(r50), ms(e50) + f" {a.miners} echoes", f"{r50 / e50:.1f}×",
                "≤ 2×"),
               ("proof round wall time (best)", ms(rb), ms(eb) + f" {a.miners} echoes", f"{rb / eb:.1f}×", "≤ 2×"),
               ("  of which proof lookups (ProverPool.prove alone, median)", ms(l50), "",
                f"{l50 / r50:.0%} of round", ""),
               ("  round minus proof lookups", ms(r50 - l50), ms(e50) + f" {a.miners} echoes",
                f"{(r50 - l50) / e50:.1f}×", ""),
               ("validator CPU per verified proof (verify pool workers, psutil)", f"{in_workers * 1e6:.1f} µs",
                f"{bare * 1e6:.1f} µs chia.verify", f"{in_workers / bare:.2f}×", ""),
               ("validator CPU per verified proof (check_answers, direct)", f"{direct * 1e6:.1f} µs",
                f"{bare * 1e6:.1f} µs chia.verify", f"{direct / bare:.2f}×", ""),
           ])
    headline(f"proof window over {a.miners} miners, wall time (median)", r50 * 1000, "ms", e50 * 1000,
             f"{a.miners} echoes", "≤ 2×", r50 <= 2 * e50, note=f"proof lookups {l50 / r50:.0%} of it")
    print("NOTE: validator, miners and echo servers share ONE process (the validator sends from its peer-loop thread) (2 cores, also "
          "running the proof workers and the verify worker); round trips include the miners' Python work.")
    print(f"deadline {profile.challenge_deadline_s:g}s; outcomes over {a.rounds} windows: {dict(outcomes)} "
          f"({min(per_round)}-{max(per_round)} miners a window); miner latency from the window's first block "
          f"median {statistics.median(lat):.0f} ms, max {max(lat):.0f} ms; answers "
          f"{statistics.median(answer_bytes):.0f} B median, requests {statistics.median(len(b) for b in bodies):.0f} B")
    print(f"{checked['proofs']} proofs checked in the pool ({checked['valid']} valid), {direct_proofs} in the direct "
          f"re-check, {ok}/{len(tuples)} valid by chia.verify alone; verify pool: {len(verify_workers)} worker(s), "
          f"{workers_cpu:.2f} s CPU over the measured windows")
    if skipped:
        print(f"{len(skipped)} window(s) not checked and measured again on the next: {Counter(skipped)}")
    print(f"setup: devnet init {init_s:.1f}s, plots {plot_s:.1f}s, {a.miners} miners started in {start_s:.1f}s; "
          f"sync: {sync_result}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--miners", type=int, default=64)
    p.add_argument("--rounds", type=int, default=15)
    a = parse_args(p)
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
    try:
        asyncio.run(run(a, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
