"""Challenge round trip: a validator's signed POST /v1/challenge to a real miner, against an
echo round trip of the same size.

* measured: a real MinerEngine in this process (real devnet in a temp dir, ``--plots`` verified
  k=18 plots bound to its hotkey, its ProverPool of 2 worker processes, its signed-request
  middleware), called by the validator wallet through ``SignedClient`` with a fresh challenge
  over ``--plots`` plots and per_plot = the devnet's challenges_per_plot. Latency is the whole
  ``SignedClient.request`` call (signing included), as the validator sees it.
* baseline: a plain aiohttp server on the same loop whose handler returns the body, called
  through the same client session, with a request body of the same size, unsigned.
* breakdown: ``bt.http_auth.sign`` and ``bt.http_auth.verify`` timed alone, and
  ``ProverPool.prove`` (the miner's proof lookups, IPC to the workers included) timed alone,
  as shares of the median challenge round trip; and the same signed challenge with the
  lookups stubbed (the pool answers at once with an earlier lookup's proofs, same reply size):
  signing, auth middleware, pydantic, JSON and HTTP without the proofs, against the echo.
  All series are interleaved, rotating which goes first, so load from other processes on
  this shared machine hits every series alike.

The miner's periodic jobs (sync, reallocate, scrub) are paused after its first reallocation
so they do not run during the measurement.

Run: python -m benchmarks.bench_challenge [--plots 8] [--requests 300] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import bittensor as bt

from tensorage.chain.devnet_init import init_devnet
from tensorage.config import PROFILES
from tensorage.net.auth import ALLOWED_SKEW_S, MAX_AGE_S
from tensorage.net.client import SignedClient
from tensorage.net.messages import ChallengeRequest, ChallengeResponse
from tensorage.proofs.challenges import new_challenge
from tensorage.proofs.prover_pool import PlotTask

from .common import pct, report
from .harness import make_plots, start_echo, start_miner, stop_miner, wallet_of

PATH = "/v1/challenge"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def run(a: argparse.Namespace, base: Path) -> None:
    profile = PROFILES["devnet"]
    per_plot = profile.challenges_per_plot
    root = base / "devnet"
    init_devnet(root, miners=1, validators=1, miner_sizes_gb=(0.06,))
    db_root = root / "nodes" / "miner-0"
    miner_hotkey = wallet_of(root, "miner-0").hotkey.ss58_address
    plot_s = await make_plots([(db_root, miner_hotkey, a.plots)])
    miner = await start_miner(root, "miner-0", db_root)
    echo = await start_echo()
    validator = wallet_of(root, "validator-0")
    client = SignedClient(validator)
    try:
        seeds = sorted(miner.plots)[:a.plots]
        host, port = "127.0.0.1", miner.served.port
        echo_url = f"http://127.0.0.1:{echo.port}/echo"

        def body() -> bytes:
            return ChallengeRequest(challenge=new_challenge().hex(), plots=seeds, per_plot=per_plot,
                                    deadline=time.time() + profile.challenge_deadline_s).model_dump_json().encode()

        proofs_seen: list[int] = []
        response_bytes: list[int] = []

        async def challenge_once(record: bool = True) -> float:
            raw = body()
            t = time.perf_counter()
            reply = await client.request("POST", host, port, PATH, receiver=miner.hotkey, body=raw,
                                         deadline=time.time() + profile.challenge_deadline_s)
            took = time.perf_counter() - t
            if reply.status != 200:
                raise RuntimeError(f"challenge answered {reply.status}: {reply.error_message}")
            if record:
                resp = ChallengeResponse.model_validate_json(reply.body)
                proofs_seen.append(sum(len(p.proofs) for p in resp.proofs))
                response_bytes.append(len(reply.body))
            return took

        async def echo_once() -> float:
            raw = body()  # same size as a challenge body (fresh challenge, same plots)
            t = time.perf_counter()
            async with client.session.post(echo_url, data=raw, headers={"Content-Type": "application/json"}) as r:
                data = await r.read()
            took = time.perf_counter() - t
            if r.status != 200 or data != raw:
                raise RuntimeError(f"echo answered {r.status}")
            return took

        # warm up connections, the workers' open provers and the page cache
        for _ in range(20):
            await challenge_once()
            await echo_once()
        proofs_seen.clear()

        # the breakdown, each part timed alone: same body size, same wallet, same pool
        store = bt.http_auth.InMemoryNonceStore(retention=60.0)
        signer = bt.resolve_signer(validator, role="hotkey")  # what SignedClient signs with
        tasks = [PlotTask(seed=p.seed, path=str(p.path), plot_id=p.plot_id, k=p.k)
                 for p in (miner.plots[s] for s in seeds)]
        sign_t, verify_t, prove_t = [], [], []

        async def parts_once() -> float:
            raw = body()
            t = time.perf_counter()
            headers = bt.http_auth.sign(signer, method="POST", path=PATH, body=raw, receiver_ss58=miner.hotkey)
            t1 = time.perf_counter()
            bt.http_auth.verify(headers, raw, method="POST", path=PATH, self_hotkey_ss58=miner.hotkey,
                                max_age=MAX_AGE_S, allowed_skew=ALLOWED_SKEW_S, nonce_store=store)
            t2 = time.perf_counter()
            await miner.pool.prove(tasks, new_challenge(), per_plot)
            t3 = time.perf_counter()
            sign_t.append(t1 - t)
            verify_t.append(t2 - t1)
            prove_t.append(t3 - t2)
            return t3 - t

        # the same signed challenge with the lookups stubbed: the miner's pool answers at once with
        # the proofs of one earlier real lookup (same reply size), so this times everything else
        class CannedPool:
            workers = miner.pool.workers

            def __init__(self, results: list) -> None:
                self.results = results

            async def prove(self, tasks, challenge, per_plot) -> list:
                return self.results

        real_pool = miner.pool
        canned = CannedPool(await real_pool.prove(tasks, new_challenge(), per_plot))

        async def stubbed_once() -> float:
            miner.pool = canned
            try:
                return await challenge_once(record=False)
            finally:
                miner.pool = real_pool

        # interleaved, rotating the order, so load from other processes hits every series alike
        reps = []
        stub_t: list[float] = []
        for _ in range(a.reps):
            chal, ech = [], []
            for i in range(a.requests):
                order = (challenge_once, echo_once, parts_once, stubbed_once)
                for step in order[i % 4:] + order[:i % 4]:
                    took = await step()
                    if step is challenge_once:
                        chal.append(took)
                    elif step is echo_once:
                        ech.append(took)
                    elif step is stubbed_once:
                        stub_t.append(took)
            reps.append((pct(chal, 50), pct(chal, 99), pct(ech, 50), pct(ech, 99)))
    finally:
        await client.close()
        await echo.close()
        await stop_miner(miner)

    med = [statistics.median(col) for col in zip(*reps)]
    c50, c99, e50, e99 = med
    best = [min(col) for col in zip(*reps)]
    s, v, p = statistics.median(sign_t), statistics.median(verify_t), statistics.median(prove_t)
    st50 = statistics.median(stub_t)
    n = a.requests * a.reps
    rows = [
        (f"challenge round trip p50 ({a.plots} plots × {per_plot})", ms(c50), ms(e50) + " echo",
         f"{c50 / e50:.1f}×", ""),
        ("challenge round trip p99", ms(c99), ms(e99) + " echo", f"{c99 / e99:.1f}×", ""),
        ("  best repetition p50 / p99", f"{ms(best[0])} / {ms(best[1])}", f"{ms(best[2])} / {ms(best[3])}",
         f"{best[0] / best[2]:.1f}× / {best[1] / best[3]:.1f}×", ""),
        ("  sign (bt.http_auth.sign, alone, median)", ms(s), "", f"{s / c50:.1%} of p50", ""),
        ("  verify (bt.http_auth.verify, alone, median)", ms(v), "", f"{v / c50:.1%} of p50", ""),
        ("  sign + verify", ms(s + v), "", f"{(s + v) / c50:.1%} of p50", ""),
        (f"  proof lookups (ProverPool.prove, {miner.pool.workers} workers, alone)", ms(p), "",
         f"{p / c50:.1%} of p50", ""),
        ("challenge round trip p50, lookups stubbed (canned proofs)", ms(st50), ms(e50) + " echo",
         f"{st50 / e50:.1f}×", ""),
        ("  of which sign + verify", ms(s + v), "", f"{(s + v) / st50:.1%} of it", ""),
    ]
    report(f"challenge round trip: {n} signed challenges vs {n} echoes, interleaved, median of {a.reps} "
           f"repetitions (best shown too)", rows)
    body_len = len(ChallengeRequest(challenge="0" * 64, plots=seeds, per_plot=per_plot, deadline=time.time())
                   .model_dump_json())
    print(f"request body {body_len} B both ways in; challenge reply {statistics.median(response_bytes):.0f} B "
          f"(echo reply = request body); {statistics.mean(proofs_seen):.2f} proofs per challenge "
          f"({statistics.mean(proofs_seen) / (a.plots * per_plot):.3f} per lookup); "
          f"{a.plots} k=18 plots made in {plot_s:.1f}s")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--plots", type=int, default=8)
    p.add_argument("--requests", type=int, default=300, help="challenges (and echoes) per repetition")
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
    try:
        asyncio.run(run(a, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
