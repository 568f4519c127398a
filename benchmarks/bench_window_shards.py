"""What certified client shards cost a proof window (protocol 3).

* measured 1, the miner's disk: read syscalls per sampled chunk (``/proc/self/io`` syscr around
  ``ShardStore.read_proofs``) over many windows' real samples of real shards with their sidecar
  trees. Each read is a seek on a hard disk; the model says 2 (the sidecar, read whole; the chunk).
* measured 2, the validator's CPU: checking a window's chunks (parse, base64, Merkle path against the
  certified id) per chunk, against a plain blake3 of the same bytes, and a sha256, in the same process.
* the figure: reads per second at finney's window for a miner with shards of 1, 8 and 64 gateways,
  against one hard disk's ~120 random reads/s, next to what its plots cost (bench_disk_budget).
* measured 3, the validator's planning: ``plan`` for a miner listing finney's most certificates
  (what a sybil lists for free), per window, against the deadline split over 256 uids; and the
  signature check of such a listing, done once per listing change.

Run: python -m benchmarks.bench_window_shards [--shards 32] [--windows 200]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import blake3
import bittensor as bt

from tensorage import PROTOCOL_VERSION
from tensorage.chain.port import Neuron
from tensorage.chain.wallets import create_wallet
from tensorage.config import PROFILES
from tensorage.engines.window_checks import MinerView, SeenListing, plan
from tensorage.proofs import merkle
from tensorage.proofs.answers import AnswerSpec, check_answer, encode_answer
from tensorage.proofs.certificates import issue
from tensorage.proofs.listing import Listing
from tensorage.proofs.plots import hotkey_public_key
from tensorage.proofs.verify_pool import check_listing
from tensorage.proofs.windows import draw_chunks, window_challenge
from tensorage.storage.layout import Layout
from tensorage.storage.shards import ShardStore

from .bench_disk_budget import HDD_READS_PER_S, syscr
from .common import report, headline, parse_args

MINER = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
SHARD_BYTES = 16 << 20


async def _chunks(data: bytes, step: int = 1 << 20):
    for i in range(0, len(data), step):
        yield data[i:i + step]


def make_store(root: Path, shards: int, signer) -> tuple[ShardStore, Listing]:
    store = ShardStore(Layout(root).ensure())
    certs = []
    gateway = signer.ss58_address
    for i in range(shards):
        data = os.urandom(SHARD_BYTES)
        builder = merkle.MerkleBuilder()
        builder.update(data)
        sid = builder.finish().id
        cert = issue(signer, hotkey_public_key(MINER), sid, len(data), 10**9)
        asyncio.run(store.receive(gateway, sid.hex(), len(data), _chunks(data), cert))
        certs.append(cert)
    return store, Listing.from_plots([], certs)


def drop_caches(root: Path) -> None:
    """Evict the shards and trees from the page cache, so each read is one the disk would do."""
    for p in (root / "shards").iterdir():
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def planning(signer, profile, windows: int = 50) -> tuple[float, float]:
    """(seconds to plan one window of a full listing, seconds to check its signatures once)."""
    certs = [issue(signer, hotkey_public_key(MINER), os.urandom(32), merkle.MAX_SHARD_BYTES, 10**9)
             for _ in range(profile.max_listed_shards)]
    listing = Listing.from_plots([], certs)
    body = json.dumps({"protocol": PROTOCOL_VERSION, "hotkey": MINER, "digest": listing.digest_hex, "plots": "",
                       "shards": listing.certs_b64()}).encode()
    t0 = time.perf_counter()
    assert check_listing(body, MINER, profile.min_k, profile.max_k, profile.max_listed_plots,
                         profile.max_listed_shards).error is None
    verify_s = time.perf_counter() - t0
    neuron = Neuron(uid=1, hotkey=MINER, coldkey=MINER, active=True, validator_permit=False, last_update=0,
                    block_at_registration=0, rank=0, trust=0, consensus=0, incentive=0, dividends=0, emission=0,
                    total_stake=0, axon="10.0.0.1:1")
    seen = Listing.from_stored(listing.stored(), profile.max_listed_plots, profile.max_listed_shards)
    view = MinerView(neuron=neuron, seen=[SeenListing(seen, 0)])
    t0 = time.perf_counter()
    for w in range(windows):
        (task,) = plan(profile, [view], w, 2500, window_challenge(b"b" * 32, w), beacon_at=2500 * 12.0, block_s=12.0)
        assert len(task.spec.chunks) == profile.chunks_per_gateway
    return (time.perf_counter() - t0) / windows, verify_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=32)
    ap.add_argument("--windows", type=int, default=200)
    args = parse_args(ap)
    finney = PROFILES["finney"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        signer = bt.resolve_signer(create_wallet(tmp / "w", "gateway"), role="hotkey")
        started = time.perf_counter()
        store, listing = make_store(tmp / "miner", args.shards, signer)
        made = time.perf_counter() - started
        reads = chunks = 0
        answers = []
        for w in range(args.windows):
            challenge = window_challenge(hashlib.sha256(w.to_bytes(4, "big")).digest(), w)
            sample = draw_chunks(finney, challenge, MINER, listing, 0)
            drop_caches(tmp / "miner")
            before = syscr()
            proofs = store.read_proofs(sample)
            reads += syscr() - before
            chunks += len(sample)
            assert all(proofs)
            spec = AnswerSpec(hotkey=MINER, window=w, listing_hex=listing.digest_hex, challenge=challenge,
                              per_plot=finney.challenges_per_plot, plots=(), chunks=tuple(sample))
            answers.append((encode_answer(w, listing.digest_hex, [], proofs), spec, proofs))
        store.close()
        # the validator's side: the whole answer check, per chunk, against plain hashes of the same bytes
        t0 = time.process_time()
        for raw, spec, _ in answers:
            assert check_answer(raw, spec).chunks_ok
        check_us = (time.process_time() - t0) / chunks * 1e6
        t0 = time.process_time()
        for _, _, proofs in answers:
            for p in proofs:
                blake3.blake3(p).digest()
        blake_us = (time.process_time() - t0) / chunks * 1e6
        t0 = time.process_time()
        for _, _, proofs in answers:
            for p in proofs:
                hashlib.sha256(p).digest()
        sha_us = (time.process_time() - t0) / chunks * 1e6
    per_chunk = reads / chunks
    windows_per_hour = 3600 / finney.window_s
    rows = []
    for gateways in (1, 8, 64):
        per_s = per_chunk * finney.chunks_per_gateway * gateways * windows_per_hour / 3600
        rows.append((gateways, per_s, per_s / HDD_READS_PER_S))
    made_rate = args.shards * SHARD_BYTES / made / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        signer = bt.resolve_signer(create_wallet(Path(tmp), "gateway"), role="hotkey")
        plan_s, verify_s = planning(signer, finney)
    budget = finney.challenge_deadline_s / 256
    report("bench_window_shards: certified client shards in proof windows", [
        (f"reads per sampled chunk ({chunks} chunks, {args.windows} windows, page cache evicted)",
         f"{per_chunk:.2f} read syscalls", "model: 2 (sidecar tree, chunk)", f"{per_chunk / 2:.2f}", "2"),
        ("validator CPU per chunk (parse, base64, Merkle path)", f"{check_us:.1f} us",
         f"blake3 of the same bytes {blake_us:.1f} us", f"{check_us / blake_us:.1f}x", "-"),
        ("  (the same, against sha256)", f"{check_us:.1f} us", f"sha256 {sha_us:.1f} us", f"{check_us / sha_us:.1f}x",
         "-"),
        *[(f"disk at finney, shards of {g} gateway{'s' if g > 1 else ''} ({finney.chunks_per_gateway} chunks each, "
           f"{windows_per_hour:.0f} windows/h)", f"{r:.2f} reads/s", f"one hard disk {HDD_READS_PER_S:.0f}/s",
           f"{f:.2%}", "<= 10 % with plots") for g, r, f in rows],
        (f"plan one window of a full listing ({finney.max_listed_shards} certificates, finney)",
         f"{plan_s * 1000:.1f} ms", f"deadline / 256 uids {budget * 1000:.0f} ms", f"{plan_s / budget:.2f}", "< 1"),
        ("  its signatures, checked once per listing change (verify pool)", f"{verify_s:.2f} s",
         f"sync period {finney.sync_s:.0f} s", f"{verify_s / finney.sync_s:.3f}", "-"),
        (f"shards received ({args.shards} x {SHARD_BYTES >> 20} MiB: Merkle-checked, tree written, fsynced)",
         f"{made_rate:.0f} MB/s", "-", "-", "-"),
    ])
    headline("validator CPU per checked shard chunk", check_us, "µs", blake_us, "blake3 of the same bytes")
    headline("miner disk for shards of 8 gateways at finney", rows[1][2] * 100, "% of one hard disk", None, "",
             "≤ 10 % with plots", rows[1][2] <= 0.10, note=f"{per_chunk:.2f} reads per sampled chunk (model 2)")


if __name__ == "__main__":
    main()
