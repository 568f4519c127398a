"""A failure of the validator's verifier fails only what it held (issue 14, part 7a).

Real worker processes (the validator's VerifyPool), Alice's real k=18 plot and honest answers from
it for several "miners" of one window; one answer meets an injected fault: a worker that dies under
it, or a checker bug that raises. Every other miner of the window is still checked and credited, and
the faulty one's check says the verifier failed (not the miner). A listing the verifier cannot check
is a VerifierFault, never a refusal; a hostile listing is still a refusal.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tensorage.config import PROFILES
from tensorage.engines.window_checks import MinerView, SeenListing, WindowTask, judge_task
from tensorage.net.client import Reply
from tensorage.proofs import verify_pool
from tensorage.proofs.answers import AnswerSpec, encode_answer
from tensorage.proofs.listing import Listing
from tensorage.proofs.verify_pool import VerifierFault, VerifyPool

from . import verify_faults
from .conftest import ALICE, FIXED_SEED
from .shard_world import neuron
from .test_windows import _answer_for

MINERS = 6
FAULTY = 3  # the index of the miner whose answer meets the fault


def _window(alice_plot) -> tuple[list[tuple[bytes, AnswerSpec]], Listing]:
    """One honest answer per miner (Alice's plot, so every proof verifies), the faulty one under
    BUGGY_HOTKEY's name."""
    spec, proofs = _answer_for(alice_plot)
    listing = Listing.from_plots([(FIXED_SEED, 18)])
    raw = encode_answer(spec.window, spec.listing_hex, [proofs])
    items = []
    for i in range(MINERS):
        s = spec if i != FAULTY else AnswerSpec(**{**spec.__dict__, "hotkey": verify_faults.BUGGY_HOTKEY})
        items.append((raw, s))
    return items, listing


def _judge(items, checks, listing) -> list:
    outcomes = []
    started = time.time()
    for i, ((_, spec), check) in enumerate(zip(items, checks)):
        view = MinerView(neuron=neuron(spec.hotkey, i, "127.0.0.1:1"))
        task = WindowTask(view=view, seen=SeenListing(listing, 0), spec=spec,
                          reply=Reply(status=200, body=b"", latency_ms=5.0, arrived_at=started + 0.1), check=check)
        outcomes.append(judge_task(task, started))
    return outcomes


def _assert_only_the_faulty_one_failed(outcomes, checks) -> None:
    for i, (o, check) in enumerate(zip(outcomes, checks)):
        if i == FAULTY:
            assert o.result == "fail" and o.credit == 0 and not o.counts
            assert check.fault and "verifier" in check.error and "not counted" in check.error
        else:
            assert o.result == "pass" and o.credit > 0 and o.counts, (i, o)
            assert not check.fault and check.error is None


@pytest.mark.parametrize("fault", ["bug", "crash"])
def test_a_verifier_fault_on_one_answer_fails_that_answer_only(alice_plot, monkeypatch, fault):
    items, listing = _window(alice_plot)
    if fault == "bug":  # the checker raises on the whole batch holding the faulty answer
        monkeypatch.setattr(verify_pool, "check_answers", verify_faults.buggy_check_answers)
    else:  # the worker dies unpickling the faulty answer: the pool breaks under the whole batch
        raw, spec = items[FAULTY]
        items[FAULTY] = (verify_faults.CrashOnLoad(raw), spec)
    pool = VerifyPool(workers=1)
    try:
        checks = asyncio.run(pool.answers(items))
    finally:
        pool.close()
    assert pool.faults >= 2  # the batch's failure, then the faulty answer's alone
    _assert_only_the_faulty_one_failed(_judge(items, checks, listing), checks)


@pytest.mark.parametrize("fault", ["bug", "crash"])
def test_a_verifier_fault_on_an_answer_in_flight_fails_that_answer_only(alice_plot, tmp_path, monkeypatch, fault):
    """Answers streamed to the spool and checked as they arrive (what the validator's _fetch does)."""
    items, listing = _window(alice_plot)
    faulty = verify_faults.buggy_check_answer_file if fault == "bug" else verify_faults.crashing_check_answer_file
    monkeypatch.setattr(verify_pool, "check_answer_file", faulty)
    pool = VerifyPool(workers=1, spool=tmp_path / "verify")

    async def window() -> list:
        handles = []
        for raw, spec in items:
            sink = pool.answer_sink()
            for i in range(0, len(raw), 1000):  # as the client writes it, chunk by chunk
                sink.write(raw[i:i + 1000])
            handles.append((pool.submit(sink, spec), spec))
        return await pool.answers(handles)

    try:
        checks = asyncio.run(window())
    finally:
        pool.close()
    _assert_only_the_faulty_one_failed(_judge(items, checks, listing), checks)
    assert list((tmp_path / "verify" / "answers").iterdir()) == []  # every answer file removed once checked


def _listing_reply(hotkey: str = ALICE) -> bytes:
    from tensorage.net.messages import PlotsResponse

    listing = Listing.from_plots([(FIXED_SEED, 18)])
    return PlotsResponse(hotkey=hotkey, digest=listing.digest_hex, plots=listing.to_b64()).model_dump_json().encode()


@pytest.mark.parametrize("fault", [verify_faults.crashing_check_listing, verify_faults.buggy_check_listing])
def test_a_listing_the_verifier_cannot_check_is_a_fault_not_a_refusal(tmp_path, monkeypatch, fault):
    monkeypatch.setattr(verify_pool, "check_listing", fault)
    pool = VerifyPool(workers=1, spool=tmp_path / "verify")
    devnet = PROFILES["devnet"]
    try:
        with pytest.raises(VerifierFault, match="not refused|checked again at the next sync"):
            asyncio.run(pool.listing(_listing_reply(), ALICE, devnet.min_k, devnet.max_k, devnet.max_listed_plots))
    finally:
        pool.close()
    assert pool.faults == 1


def test_a_hostile_listing_is_still_a_clear_refusal(tmp_path):
    pool = VerifyPool(workers=1, spool=tmp_path / "verify")
    devnet = PROFILES["devnet"]
    args = (devnet.min_k, devnet.max_k, devnet.max_listed_plots)
    try:
        junk = asyncio.run(pool.listing(b"[" * 100_000, ALICE, *args))
        other = asyncio.run(pool.listing(_listing_reply(), "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty", *args))
        good = asyncio.run(pool.listing(_listing_reply(), ALICE, *args))
    finally:
        pool.close()
    assert junk.listing is None and "not JSON" in junk.error
    assert other.listing is None and "the chain says" in other.error
    assert good.error is None and len(good.listing) == 1 and pool.faults == 0
    assert good.listing.entry(0) == (FIXED_SEED, 18)


def test_latency_is_averaged_over_answers_that_count_only(alice_plot):
    """A refused, faulty, timed-out or empty answer never moves the latency average; a credited one does."""
    from tensorage.engines.scoring import MinerScore
    from tensorage.engines.window_checks import RoundOutcome

    def outcome(result: str, credit: float, latency_ms: float) -> RoundOutcome:
        return RoundOutcome(uid=1, hotkey=ALICE, result=result, plots=4, returned=0, expected=4.0,
                            latency_ms=latency_ms, credit=credit)

    score = MinerScore(hotkey=ALICE, uid=1)
    assert score.note_latency(outcome("pass", 1e6, 800.0).counts, 800.0)
    assert score.latency_ms == 800.0
    for o in (outcome("fail", 0.0, 5.0),          # refused or proved nothing: fast junk
              outcome("timeout", 0.0, 2000.0),    # no answer
              outcome("unreachable", 0.0, 1.0),
              outcome("pass", 0.0, 3.0)):         # plots the network does not count: credits nothing
        assert not o.counts and not score.note_latency(o.counts, o.latency_ms)
    assert score.latency_ms == 800.0
    partial = outcome("fail", 5e5, 400.0)  # too few proofs to pass, but the valid ones are credited
    assert partial.counts and score.note_latency(partial.counts, partial.latency_ms)
    assert score.latency_ms == pytest.approx(0.8 * 800 + 0.2 * 400)

    # and from a real check: a verifier fault on an honest answer does not count
    spec, proofs = _answer_for(alice_plot)
    listing = Listing.from_plots([(FIXED_SEED, 18)])
    items = [(encode_answer(spec.window, spec.listing_hex, [proofs]), spec)]
    pool = VerifyPool(workers=1)
    try:
        good = asyncio.run(pool.answers(items))
        bad = asyncio.run(pool.answers([(verify_faults.CrashOnLoad(items[0][0]), spec)]))
    finally:
        pool.close()
    assert [o.counts for o in _judge(items, good, listing)] == [True]
    assert [o.counts for o in _judge(items, bad, listing)] == [False]


def test_an_answer_whose_work_was_cancelled_under_it_is_checked_again(alice_plot, tmp_path):
    """A pool shut down under answers in flight (another answer broke it) cancels their work: they are
    checked again alone, not lost and not failed."""
    items, listing = _window(alice_plot)
    items = [(raw, items[0][1]) for raw, _ in items]  # every miner honest
    pool = VerifyPool(workers=1, spool=tmp_path / "verify")

    async def window() -> tuple[list, int]:
        handles = []
        for raw, spec in items:
            sink = pool.answer_sink()
            sink.write(raw)
            handles.append((pool.submit(sink, spec), spec))
        cancelled = sum(h.future.cancel() for h, _ in handles[2:])  # still queued behind the first ones
        return await pool.answers(handles), cancelled

    try:
        checks, cancelled = asyncio.run(window())
    finally:
        pool.close()
    assert cancelled >= 1
    assert all(c.error is None and not c.fault for c in checks)
    assert all(o.result == "pass" and o.counts for o in _judge(items, checks, listing))
