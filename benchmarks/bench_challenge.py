"""Window request round trip: a validator's signed POST /v1/challenge to a real miner, against
an echo round trip of the same size.

In protocol 2 a miner looks a window up once and serves every later validator the same bytes,
so two requests are measured in every window:

* first: the first request of a window (validator-0). The miner reads the window's beacon from
  its chain, draws the sample (the devnet samples ``min_sample_plots`` = 4 of the ``--plots``
  verified k=18 plots bound to its hotkey) and looks up 4 plots × J=4 challenges in its
  ProverPool (one worker process per disk: one here), then encodes the answer.
* second: a second validator's request (validator-1, its own wallet and session) for the same
  window and listing, served from the window's answer: signing, the auth middleware, pydantic,
  HTTP, no lookups.
* baseline: a plain aiohttp server on the same loop whose handler returns the body, called
  through the same client session, with a request body of the same size (the window request's
  bytes), unsigned.
* breakdown: ``bt.http_auth.sign`` and ``bt.http_auth.verify`` timed alone, and the lookups alone
  (``MinerEngine.prove_sample`` on the sample of a fresh random challenge: ProverPool IPC
  included), as shares of the median first and second requests.

The miner is a real MinerEngine in this process (real devnet in a temp dir, its signed-request
middleware, its periodic jobs paused after its first reallocation); latency is the whole
``SignedClient.request`` call (signing included), as a validator sees it. Each iteration waits
for a new window and then runs first, second, echo and the breakdown in a rotating order (first
always before second), so load from other processes on this shared machine hits every series
alike. Windows are 3 blocks; the devnet is created with ``--block_time`` (0.2 s, so a window is
0.6 s instead of the devnet's 3 s) to get one first-request sample per window quickly. The
deadline stays the devnet's 2 s.

Run: python -m benchmarks.bench_challenge [--plots 4] [--requests 150] [--reps 3] [--block_time 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import bittensor as bt

from tensorage.chain.devnet import Devnet
from tensorage.chain.devnet_init import init_devnet
from tensorage.config import PROFILES
from tensorage.net.auth import ALLOWED_SKEW_S, MAX_AGE_S
from tensorage.net.client import SignedClient
from tensorage.net.messages import PlotsResponse, WindowChallenge
from tensorage.proofs.listing import Listing
from tensorage.proofs.windows import draw_sample, window_start

from .common import pct, report, headline, parse_args
from .harness import make_plots, next_window, start_echo, start_miner, stop_miner, wallet_of

PATH = "/v1/challenge"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def run(a: argparse.Namespace, base: Path) -> None:
    profile = PROFILES["devnet"]
    per_plot = profile.challenges_per_plot
    root = base / "devnet"
    init_devnet(root, miners=1, validators=2, miner_sizes_gb=(0.06,), block_time=a.block_time)
    db_root = root / "nodes" / "miner-0"
    miner_hotkey = wallet_of(root, "miner-0").hotkey.ss58_address
    plot_s = await make_plots([(db_root, miner_hotkey, a.plots)])
    miner = await start_miner(root, "miner-0", db_root)
    echo = await start_echo()
    chain = Devnet.open(root)
    validators = [wallet_of(root, "validator-0"), wallet_of(root, "validator-1")]
    first_client, second_client = clients = [SignedClient(w) for w in validators]
    try:
        host, port = "127.0.0.1", miner.served.port
        echo_url = f"http://127.0.0.1:{echo.port}/echo"
        # the listing, as a validator syncs it
        reply = await first_client.request("GET", host, port, "/v1/plots", receiver=miner.hotkey)
        plots = PlotsResponse.model_validate_json(reply.body)
        listing = Listing.from_b64(plots.plots, profile.max_listed_plots)
        if listing.digest_hex != plots.digest or len(listing) != a.plots:
            raise RuntimeError(f"the miner lists {len(listing)} plots, {a.plots} were made")
        sampled = len(draw_sample(profile, os.urandom(32), miner.hotkey, listing))

        window_body: dict = {}
        answers: dict[int, bytes] = {}
        reply_bytes: list[int] = []
        proofs_seen: list[int] = []

        async def window_request(client: SignedClient, first: bool) -> float:
            raw, w = window_body["raw"], window_body["window"]
            computed = miner.answerer.computed
            t = time.perf_counter()
            reply = await client.request("POST", host, port, PATH, receiver=miner.hotkey, body=raw,
                                         deadline=window_body["deadline"])
            took = time.perf_counter() - t
            if reply.status != 200:
                raise RuntimeError(f"window {w} answered {reply.status}: {reply.error_message}")
            looked_up = miner.answerer.computed - computed
            if looked_up != (1 if first else 0):
                raise RuntimeError(f"window {w}: {looked_up} lookups for the {'first' if first else 'second'} request")
            if first:
                answers[w] = reply.body
                reply_bytes.append(len(reply.body))
                proofs_seen.append(miner.answerer.sizes[(w, listing.digest_hex)][1])
            elif reply.body != answers[w]:
                raise RuntimeError(f"window {w}: the second validator got other bytes than the first")
            return took

        async def first_once() -> float:
            return await window_request(first_client, True)

        async def second_once() -> float:
            return await window_request(second_client, False)

        async def echo_once() -> float:
            raw = window_body["raw"]  # the window request's bytes: same size both ways
            t = time.perf_counter()
            async with first_client.session.post(echo_url, data=raw,
                                                 headers={"Content-Type": "application/json"}) as r:
                data = await r.read()
            took = time.perf_counter() - t
            if r.status != 200 or data != raw:
                raise RuntimeError(f"echo answered {r.status}")
            return took

        # the breakdown, each part timed alone: same body, same wallet, the miner's own lookups
        store = bt.http_auth.InMemoryNonceStore(retention=60.0)
        signer = bt.resolve_signer(validators[0], role="hotkey")  # what SignedClient signs with
        sign_t, verify_t, prove_t = [], [], []

        async def parts_once() -> float:
            raw = window_body["raw"]
            challenge = os.urandom(32)  # a fresh challenge: not the window's, whose reads are cached
            entries = [(p.seed, p.k) for p in draw_sample(profile, challenge, miner.hotkey, listing)]
            t = time.perf_counter()
            headers = bt.http_auth.sign(signer, method="POST", path=PATH, body=raw, receiver_ss58=miner.hotkey)
            t1 = time.perf_counter()
            bt.http_auth.verify(headers, raw, method="POST", path=PATH, self_hotkey_ss58=miner.hotkey,
                                max_age=MAX_AGE_S, allowed_skew=ALLOWED_SKEW_S, nonce_store=store)
            t2 = time.perf_counter()
            await miner.prove_sample(entries, challenge, per_plot)
            t3 = time.perf_counter()
            sign_t.append(t1 - t)
            verify_t.append(t2 - t1)
            prove_t.append(t3 - t2)
            return t3 - t

        async def new_window() -> None:
            w = await next_window(chain, profile)
            start = window_start(w, profile)
            beacon = await asyncio.to_thread(chain.block_hash, start)
            deadline = chain.block_timestamp(start) + profile.challenge_deadline_s
            window_body.update(window=w, deadline=deadline, raw=WindowChallenge(
                window=w, beacon=beacon.hex(), listing=listing.digest_hex, deadline=deadline).model_dump_json().encode())
            for old in [k for k in answers if k < w - 3]:
                del answers[old]

        # first always before second; echo and the breakdown take every other place in turn
        orders = ((first_once, second_once, echo_once, parts_once), (echo_once, first_once, second_once, parts_once),
                  (first_once, parts_once, second_once, echo_once), (parts_once, first_once, echo_once, second_once))

        # warm up connections, the workers' open provers and the page cache
        for i in range(10):
            await new_window()
            for step in orders[i % 4]:
                await step()
        for box in (sign_t, verify_t, prove_t, reply_bytes, proofs_seen):
            box.clear()

        reps = []
        windows = skipped = 0
        previous = window_body["window"]
        started_at = time.monotonic()
        for _ in range(a.reps):
            series: dict = {first_once: [], second_once: [], echo_once: []}
            for i in range(a.requests):
                await new_window()
                w = window_body["window"]
                for step in orders[i % 4]:
                    took = await step()
                    if step in series:
                        series[step].append(took)
                windows += 1
                skipped += w - previous - 1  # windows that went by while the previous one was measured
                previous = w
            first, second, ech = series[first_once], series[second_once], series[echo_once]
            reps.append((pct(first, 50), pct(first, 99), pct(second, 50), pct(second, 99), pct(ech, 50),
                         pct(ech, 99)))
        wall = time.monotonic() - started_at
    finally:
        chain.close()
        for c in clients:
            await c.close()
        await echo.close()
        await stop_miner(miner)

    f50, f99, s50, s99, e50, e99 = (statistics.median(col) for col in zip(*reps))
    best = [min(col) for col in zip(*reps)]
    s, v, p = statistics.median(sign_t), statistics.median(verify_t), statistics.median(prove_t)
    n = a.requests * a.reps
    rows = [
        (f"first request of a window p50 (lookups: {sampled} plots × J={per_plot})", ms(f50), ms(e50) + " echo",
         f"{f50 / e50:.1f}×", ""),
        ("first request p99", ms(f99), ms(e99) + " echo", f"{f99 / e99:.1f}×", ""),
        ("  best repetition p50 / p99", f"{ms(best[0])} / {ms(best[1])}", f"{ms(best[4])} / {ms(best[5])}",
         f"{best[0] / best[4]:.1f}× / {best[1] / best[5]:.1f}×", ""),
        ("second validator, same window p50 (the window's answer)", ms(s50), ms(e50) + " echo", f"{s50 / e50:.1f}×",
         ""),
        ("second validator p99", ms(s99), ms(e99) + " echo", f"{s99 / e99:.1f}×", ""),
        ("  best repetition p50 / p99", f"{ms(best[2])} / {ms(best[3])}", f"{ms(best[4])} / {ms(best[5])}",
         f"{best[2] / best[4]:.1f}× / {best[3] / best[5]:.1f}×", ""),
        ("  sign (bt.http_auth.sign, alone, median)", ms(s), "", f"{s / f50:.1%} of first, {s / s50:.0%} of second",
         ""),
        ("  verify (bt.http_auth.verify, alone, median)", ms(v), "",
         f"{v / f50:.1%} of first, {v / s50:.0%} of second", ""),
        ("  sign + verify", ms(s + v), "", f"{(s + v) / f50:.1%} of first, {(s + v) / s50:.0%} of second", ""),
        (f"  lookups alone (prove_sample, {miner.pool.workers} workers, median)", ms(p), "",
         f"{p / f50:.0%} of first", ""),
        ("  first minus second p50 (what looking the window up adds)", ms(f50 - s50), ms(p) + " lookups alone",
         f"{(f50 - s50) / p:.2f}×", ""),
    ]
    report(f"window request round trip: {n} windows, first and second request of each vs {n} echoes, "
           f"interleaved, median of {a.reps} repetitions (best shown too)", rows)
    headline("a second validator's window request p50 (the stored answer)", s50 * 1000, "ms", e50 * 1000,
             "plain aiohttp echo of the same bytes", note=f"first request p99 {ms(f99)} vs {ms(e99)} echo")
    print(f"request body {len(window_body['raw'])} B (echo: the same bytes both ways); answer "
          f"{statistics.median(reply_bytes):.0f} B; {statistics.mean(proofs_seen):.2f} proofs per answer "
          f"({statistics.mean(proofs_seen) / (sampled * per_plot):.3f} per lookup); {a.plots} k=18 plots made in "
          f"{plot_s:.1f}s; blocks of {a.block_time:g}s, windows of {profile.window_blocks * a.block_time:g}s: "
          f"{windows} windows in {wall:.0f}s, {skipped} went by unmeasured")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--plots", type=int, default=4, help="plots the miner holds (the devnet samples 4 a window)")
    p.add_argument("--requests", type=int, default=150, help="windows (first, second and echo) per repetition")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--block_time", type=float, default=0.2, help="devnet seconds a block (a window is 3 blocks)")
    a = parse_args(p)
    base = Path(tempfile.mkdtemp(prefix="tensorage-bench-"))
    try:
        asyncio.run(run(a, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
