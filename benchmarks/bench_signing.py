"""A window's signatures: what signing a request to every miner costs the validator's own process.

* measured: ``SigningService.sign`` of N window requests (each bound to its receiver) through the
  signing child process (net/signer.py): this process's CPU time (every thread: what holds the GIL
  the node's loop needs) and the wall time.
* baseline, same process and run, interleaved: the same N requests signed here with
  ``bittensor.http_auth.sign`` and a signer resolved once (how the validator signed before).

CPU time, not wall time, is the figure: it is what a shared machine disturbs least.

Run: python -m benchmarks.bench_signing [--requests 1024] [--reps 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import bittensor as bt

from tensorage.chain.wallets import create_wallet
from tensorage.net.signer import SignItem, SigningService, sign_batch

from .common import headline, parse_args, report


async def run(a: argparse.Namespace, tmp: Path) -> None:
    wallet = create_wallet(tmp / "w", "validator")
    miners = [create_wallet(tmp / "w", f"m{i}").hotkey.ss58_address for i in range(16)]
    body = b'{"window": 1, "beacon": "%s", "deadline": 1.0, "listing": "%s"}' % (b"ab" * 32, b"cd" * 32)
    items = [SignItem("POST", "/v1/challenge", body, miners[i % len(miners)]) for i in range(a.requests)]
    signer = bt.resolve_signer(wallet, role="hotkey")
    service = SigningService(wallet)
    await service.warm()
    here_cpu, here_wall, child_cpu, child_wall = [], [], [], []
    try:
        for _ in range(a.reps):  # interleaved, so drift on a shared machine hits both sides
            c, t = time.process_time(), time.perf_counter()
            sign_batch(signer, items)
            here_cpu.append(time.process_time() - c)
            here_wall.append(time.perf_counter() - t)
            c, t = time.process_time(), time.perf_counter()
            signed = await service.sign(items)
            child_cpu.append(time.process_time() - c)
            child_wall.append(time.perf_counter() - t)
        assert len(signed) == len(items) and service.restarts == 0
    finally:
        service.close()
    m = statistics.median
    report(f"signing {a.requests} window requests, median of {a.reps} (range)", [
        ("this process's CPU, signing child", f"{m(child_cpu) * 1000:.1f} ms ({min(child_cpu) * 1000:.1f}–"
         f"{max(child_cpu) * 1000:.1f})", f"{m(here_cpu) * 1000:.0f} ms in-process ({min(here_cpu) * 1000:.0f}–"
         f"{max(here_cpu) * 1000:.0f})", f"{m(child_cpu) / m(here_cpu):.3f}×", "≪ 1"),
        ("wall time, signing child", f"{m(child_wall) * 1000:.0f} ms", f"{m(here_wall) * 1000:.0f} ms in-process",
         f"{m(child_wall) / m(here_wall):.2f}×", ""),
    ])
    headline(f"validator-process CPU to sign {a.requests} window requests (signing child)", m(child_cpu) * 1000, "ms",
             m(here_cpu) * 1000, "signed in the validator's process", "≪ baseline",
             m(child_cpu) < 0.25 * m(here_cpu), note=f"wall {m(child_wall) * 1000:.0f} vs {m(here_wall) * 1000:.0f} ms")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=1024)
    p.add_argument("--reps", type=int, default=7)
    a = parse_args(p)
    with tempfile.TemporaryDirectory(prefix="tensorage-bench-") as tmp:
        asyncio.run(run(a, Path(tmp)))


if __name__ == "__main__":
    main()
