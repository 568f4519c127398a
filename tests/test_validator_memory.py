"""A validator's memory at the limits (issue 14, part 5): listings kept as files and read by index,
answers streamed to the spool and never held whole, caches bounded. Real files, real worker
processes, a real HTTP server; the figures at 256 miners are in benchmarks/bench_validator_scale.py.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import pickle
import time
import tracemalloc

import pytest
from aiohttp import web

from tensorage.config import PROFILES
from tensorage.engines.window_checks import MinerView, SeenListing, plan
from tensorage.net.client import SignedClient
from tensorage.net.messages import PlotsResponse
from tensorage.net.server import serve
from tensorage.proofs import listing_spool
from tensorage.proofs.listing import ENTRY_BYTES, Listing, ListingError
from tensorage.proofs.listing_spool import ListingUnavailable, SpooledListing
from tensorage.proofs.verify_pool import VerifyPool, check_listing
from tensorage.proofs.windows import draw_chunks, draw_sample, live_by_gateway, window_challenge
from tensorage.storage.validator_db import ValidatorStore

from .conftest import ALICE, BOB
from .shard_world import neuron
from .test_certified_shards import certs_for, gateway_signer  # noqa: F401 (a fixture)

DEV, FINNEY = PROFILES["devnet"], PROFILES["finney"]


def big_listing(n: int, certs=()) -> Listing:
    seeds = sorted(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n))
    return Listing(b"".join(bytes([18 + i % 3]) + s for i, s in enumerate(seeds)),
                   b"".join(c.entry() for c in sorted(certs, key=lambda c: c.shard)))


def reply_of(listing: Listing, hotkey: str = ALICE) -> bytes:
    return PlotsResponse(hotkey=hotkey, digest=listing.digest_hex, plots=listing.to_b64(),
                         shards=listing.certs_b64()).model_dump_json().encode()


def spooled(listing: Listing, root) -> SpooledListing:
    check = check_listing(reply_of(listing), ALICE, DEV.min_k, DEV.max_k, DEV.max_listed_plots,
                          DEV.max_listed_shards, spool=str(root))
    assert check.error is None and isinstance(check.listing, SpooledListing)
    return check.listing.own()


def test_a_spooled_listing_samples_exactly_as_the_listing_it_holds(tmp_path, gateway_signer):  # noqa: F811
    certs = certs_for(gateway_signer, ALICE, [1 << 20, 3 << 20, 100, 5 << 20], expiry=1000)
    certs += certs_for(gateway_signer, ALICE, [2 << 20], expiry=40)  # expires before block 50
    memory = big_listing(5000, certs)
    disk = spooled(memory, tmp_path)
    assert (disk.digest, len(disk), disk.cert_count) == (memory.digest, 5000, 5)
    assert disk.blob == memory.blob and disk.certs == memory.certs
    assert disk.k_counts() == memory.k_counts() and disk.credited_bytes(18, 20) == memory.credited_bytes(18, 20)
    for w in range(20):
        c = window_challenge(os.urandom(32), w)
        for profile in (DEV, FINNEY):
            assert draw_sample(profile, c, ALICE, disk) == draw_sample(profile, c, ALICE, memory)
        for block in (0, 50):
            assert draw_chunks(DEV, c, ALICE, disk, block) == draw_chunks(DEV, c, ALICE, memory, block)
    assert [g.credit for g in live_by_gateway(disk, 50)] == [g.credit for g in live_by_gateway(memory, 50)]


def test_a_spooled_listing_holds_no_entries_in_memory(tmp_path):
    """65,536 plots (2.2 MB of entries) for a few hundred bytes, whatever is sampled from it."""
    disk = spooled(big_listing(FINNEY.max_listed_plots), tmp_path)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        view = MinerView(neuron=neuron(ALICE, 1, "127.0.0.1:1"))
        view.add(SeenListing(disk, 0))
        del disk
        for w in range(50):
            tasks = plan(FINNEY, [view], w, 10, window_challenge(os.urandom(32), w), beacon_at=120.0, block_s=12.0)
            assert len(tasks[0].spec.plots) == 197  # the finney sample at the limit
            del tasks
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 64 << 10, f"{held} bytes held for a listing of {FINNEY.max_listed_plots * ENTRY_BYTES} bytes"


def test_a_spooled_file_lives_as_long_as_its_listing_and_no_longer(tmp_path):
    disk = spooled(big_listing(10), tmp_path)
    path = disk.path
    sent = pickle.loads(pickle.dumps(disk))  # as a worker's copy travels: it does not own the file
    assert sent == disk and os.path.exists(path)
    del sent
    gc.collect()
    assert os.path.exists(path)
    view = MinerView(neuron=neuron(ALICE, 1, "127.0.0.1:1"))
    view.add(SeenListing(disk, 1))
    del disk
    gc.collect()
    assert os.path.exists(path)  # the view holds it
    for i in range(3):  # three newer listings push it out of the view
        view.add(SeenListing(spooled(big_listing(11 + i), tmp_path), 2 + i))
    gc.collect()
    assert not os.path.exists(path)
    assert len(list(tmp_path.glob("*.listing"))) == 3


def test_a_stored_reference_reopens_the_file_and_refuses_a_damaged_one(tmp_path):
    disk = spooled(big_listing(300), tmp_path)
    ref = disk.stored()
    assert len(ref) < 120 and listing_spool.is_reference(ref)
    again = listing_spool.open_stored(tmp_path, ref, DEV.max_listed_plots, DEV.max_listed_shards)
    assert again.digest == disk.digest and again.entries_at([0, 299]) == disk.entries_at([0, 299])
    with pytest.raises(ListingError):  # a listing of bytes is not a reference, and the other way round
        listing_spool.open_stored(tmp_path, big_listing(3).stored(), 10, 10)
    with pytest.raises(ListingError):
        Listing.from_stored(ref, DEV.max_listed_plots, DEV.max_listed_shards)
    with open(disk.path, "r+b") as f:  # one flipped bit: the digest no longer matches
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ListingUnavailable, match="digest"):
        listing_spool.open_stored(tmp_path, ref, DEV.max_listed_plots, DEV.max_listed_shards)
    os.truncate(disk.path, 50)
    with pytest.raises(ListingUnavailable):
        listing_spool.open_stored(tmp_path, ref, DEV.max_listed_plots, DEV.max_listed_shards)


def test_a_listing_whose_file_is_gone_sits_the_window_out_alone(tmp_path):
    views = []
    for i, hotkey in enumerate((ALICE, BOB)):
        view = MinerView(neuron=neuron(hotkey, i, f"127.0.0.1:{i + 1}"))
        view.add(SeenListing(spooled(big_listing(100 + i), tmp_path), 0))
        views.append(view)
    os.unlink(views[0].latest.listing.path)
    tasks = plan(DEV, views, 5, 15, window_challenge(b"\x01" * 32, 5), beacon_at=15.0, block_s=1.0)
    assert [t.view.neuron.hotkey for t in tasks] == [BOB]
    assert "gone" in views[0].error and views[0].seen == []  # so the next sync fetches it again


def test_sweep_removes_only_files_no_live_listing_owns(tmp_path):
    kept = spooled(big_listing(10), tmp_path)
    orphan = tmp_path / "0123456789abcdef-000000000000.listing"  # a crash's leftover
    orphan.write_bytes(b"x" * 33)
    young = tmp_path / "fedcba9876543210-000000000000.listing"  # a worker's, not handed over yet
    young.write_bytes(b"x" * 33)
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    os.utime(kept.path, (old, old))
    assert listing_spool.sweep(tmp_path, min_age_s=600) == 1
    assert os.path.exists(kept.path) and young.exists() and not orphan.exists()


def test_a_listing_seen_again_replaces_its_row(tmp_path):
    store = ValidatorStore(tmp_path / "v.sqlite")
    try:
        store.add_listing(ALICE, "aa" * 32, b"first file", 10)
        store.add_listing(ALICE, "bb" * 32, b"other", 11)
        store.add_listing(ALICE, "aa" * 32, b"second file", 12)  # A, B, then A again: the row names the new file
        rows = {r.digest: r for r in store.listings()}
        assert rows["aa" * 32].blob == b"second file" and rows["aa" * 32].seen_block == 12
    finally:
        store.close()


def test_the_pool_spools_listings_in_its_workers(tmp_path):
    pool = VerifyPool(workers=1, spool=tmp_path / "verify")
    try:
        check = asyncio.run(pool.listing(reply_of(big_listing(2000)), ALICE, DEV.min_k, DEV.max_k,
                                         DEV.max_listed_plots))
    finally:
        pool.close()
    assert isinstance(check.listing, SpooledListing) and len(check.listing) == 2000
    assert os.path.dirname(check.listing.path) == str(tmp_path / "verify" / "listings")
    assert check.listing.stored() != big_listing(2000).stored() and len(check.listing.stored()) < 120
    path = check.listing.path
    del check
    gc.collect()
    assert not os.path.exists(path)  # the parent owned it: gone with the object


def test_an_answer_streams_to_the_sink_and_an_error_stays_in_the_body(tmp_path, wallet):
    """The validator's client writes a successful answer to the spool chunk by chunk (never whole in
    memory); an error answer is still read into the reply, so its message can be shown."""
    payload = os.urandom(3 << 20)

    async def answer(request: web.Request) -> web.Response:
        if request.query.get("fail"):
            return web.json_response({"error": "nope", "message": "try later"}, status=503)
        return web.Response(body=payload)

    async def run():
        app = web.Application()
        app.router.add_post("/v1/challenge", answer)
        served = await serve(app, "127.0.0.1", 0)
        client = SignedClient(wallet)
        pool = VerifyPool(workers=1, spool=tmp_path / "verify")
        try:
            sink = pool.answer_sink()
            chunks = []

            def write(chunk: bytes) -> None:
                chunks.append(len(chunk))
                sink.write(chunk)

            ok = await client.request("POST", "127.0.0.1", served.port, "/v1/challenge", receiver=ALICE,
                                      body=b"{}", max_reply=4 << 20, sink=write)
            path = sink.close()
            failed = await client.request("POST", "127.0.0.1", served.port, "/v1/challenge?fail=1", receiver=ALICE,
                                          body=b"{}", sink=write)
            return ok, path, chunks, failed
        finally:
            await client.close()
            await served.close()
            pool.close()

    ok, path, chunks, failed = asyncio.run(run())
    assert ok.status == 200 and ok.body == b""
    assert max(chunks) <= 1 << 16 and sum(chunks) == len(payload)
    with open(path, "rb") as f:
        assert f.read() == payload
    assert failed.status == 503 and "try later" in failed.error_message


def test_an_answer_the_spool_cannot_hold_is_checked_from_memory(alice_plot, tmp_path):
    """A full disk under the spool is the validator's problem, never the miner's: the answer is kept in
    memory from the failed write on, and checked as usual."""
    import errno

    from tensorage.proofs.answers import encode_answer

    from .test_windows import _answer_for

    spec, proofs = _answer_for(alice_plot)
    raw = encode_answer(spec.window, spec.listing_hex, [proofs])

    class FillsUp:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, chunk):
            self.writes += 1
            if self.writes > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(chunk)

        def close(self):
            self.f.close()

    pool = VerifyPool(workers=1, spool=tmp_path / "verify")
    try:
        sink = pool.answer_sink()
        sink._file = FillsUp(sink._file)
        for i in range(0, len(raw), 100):
            sink.write(raw[i:i + 100])
        (check,) = asyncio.run(pool.answers([(pool.submit(sink, spec), spec)]))
    finally:
        pool.close()
    assert sink.memory == raw
    assert check.error is None and check.valid == [sum(len(p) for p in proofs)]
    assert list((tmp_path / "verify" / "answers").iterdir()) == []


def test_listing_files_outlive_a_validator_that_exits(tmp_path):
    """A restart opens them again: a process that exits (as a validator stopping) leaves its files."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from tensorage.proofs import listing_spool; "
            "from tensorage.proofs.listing import Listing; "
            "l = listing_spool.write(Path(sys.argv[1]), Listing(bytes([18]) + bytes(32))).own(); "
            "print(l.stored().hex())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    again = listing_spool.open_stored(tmp_path, bytes.fromhex(out.stdout.strip()), 10, 0)
    assert again.entry(0) == (bytes(32), 18)


def test_a_window_of_large_answers_is_never_held_in_memory(tmp_path):
    """64 answers of 512 KiB (32 MiB, as a hostile window at finney's answer bound) stream through the
    spool into the workers: the validator's own peak stays a few chunks, whatever the total."""
    from tensorage.proofs.answers import AnswerSpec

    spec = AnswerSpec(hotkey=ALICE, window=1, listing_hex="00" * 32, challenge=bytes(32), per_plot=1, plots=())
    chunk = b"[" + b"0," * ((1 << 16) // 2 - 1) + b"0"  # 64 KiB as the client reads it
    pool = VerifyPool(workers=1, spool=tmp_path / "verify")

    async def window() -> list:
        handles = []
        for _ in range(64):
            sink = pool.answer_sink()
            for _ in range(8):
                sink.write(chunk)
            handles.append((pool.submit(sink, spec), spec))
        return await pool.answers(handles)

    asyncio.run(pool.warm())
    tracemalloc.start()
    try:
        checks = asyncio.run(window())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        pool.close()
    assert all(c.error and "not JSON" in c.error and not c.fault for c in checks)  # each checked, each refused
    assert peak < 2 << 20, f"peak {peak} bytes for {64 * 8 * len(chunk)} bytes of answers"
