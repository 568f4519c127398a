"""Jobs (APScheduler) and the validator's score persistence flags."""

from __future__ import annotations

import asyncio

import pytest

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.config import settings_from_namespace
from tensorage.engines.scoring import judge, latency_factor, normalize, poisson_cdf
from tensorage.engines.validator import ValidatorEngine
from tensorage.events import EventBus, JobRan
from tensorage.scheduler import Jobs


async def test_jobs_run_report_pause_resume_and_run_now():
    bus = EventBus()
    ran: list[JobRan] = []
    bus.subscribe(lambda e: ran.append(e) if isinstance(e, JobRan) else None)
    jobs = Jobs(bus, "test")
    calls = {"ok": 0, "boom": 0}

    async def ok():
        calls["ok"] += 1
        return "fine"

    async def boom():
        calls["boom"] += 1
        raise RuntimeError("disk on fire")

    jobs.add("ok", ok, seconds=3600, first_in=0)
    jobs.add("boom", boom, seconds=3600, first_in=0)
    jobs.start()
    try:
        for _ in range(100):
            if calls["ok"] and calls["boom"]:
                break
            await asyncio.sleep(0.02)
        state = {j.id: j for j in jobs.state()}
        assert state["ok"].last_ok is True and state["ok"].last_result == "fine" and state["ok"].runs == 1
        assert state["boom"].last_ok is False and "disk on fire" in state["boom"].last_result
        assert state["ok"].next_run is not None and not state["ok"].paused
        jobs.pause("ok")
        assert {j.id: j for j in jobs.state()}["ok"].paused
        jobs.run_now("ok")  # paused: runs once, stays paused
        for _ in range(100):
            if calls["ok"] == 2:
                break
            await asyncio.sleep(0.02)
        assert calls["ok"] == 2 and {j.id: j for j in jobs.state()}["ok"].paused
        jobs.resume("ok")
        assert not {j.id: j for j in jobs.state()}["ok"].paused
        assert {e.job_id for e in ran} == {"ok", "boom"}
    finally:
        jobs.shutdown()


def _validator(devnet_root, tmp_path, **flags) -> ValidatorEngine:
    settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(devnet_root),
                                        "wallet.name": "validator-0", "db_root_path": str(tmp_path / "v"), **flags})
    spec = SubnetSpec.load(devnet_root)
    wallet = spec.wallet(devnet_root, spec.of_role("validator")[0])
    return ValidatorEngine(settings, wallet, Devnet.open(devnet_root))


async def test_scores_are_stored_and_restored_unless_told_not_to(devnet_root, tmp_path):
    from tensorage.engines.scoring import MinerScore

    v = _validator(devnet_root, tmp_path)
    v.scores["hk"] = MinerScore(hotkey="hk", uid=3, credit=4e6, windows=2.0, returned=40.0, expected=50.0,
                                latency_ms=120.0, last_window=17)
    await v._save_scores()
    v._db.shutdown()
    v.store.close()
    restored = _validator(devnet_root, tmp_path)
    hk = restored.scores["hk"]
    assert (hk.credit, hk.windows, hk.last_window, hk.ratio) == (4e6, 2.0, 17, pytest.approx(0.8))
    assert restored.last_window == 17  # the window it already checked is not checked twice
    restored.store.close()
    fresh = _validator(devnet_root, tmp_path, no_restore_weights=True)
    assert fresh.scores == {}
    fresh.store.close()
    nostore = _validator(devnet_root, tmp_path, no_store_weights=True)
    nostore.scores["other"] = MinerScore(hotkey="other", uid=4, credit=1.0, windows=1.0)
    await nostore._save_scores()
    assert "other" not in nostore.store.scores()
    nostore.store.close()


def test_a_window_is_credited_once_and_skipped_windows_decay():
    from tensorage.engines.scoring import MinerScore, decay_for

    decay = decay_for(24)
    s = MinerScore(hotkey="hk", uid=1)
    assert s.add_window(5, 100.0, 4, 4.0, decay)
    assert not s.add_window(5, 100.0, 4, 4.0, decay)   # the same window again: nothing changes
    assert not s.add_window(4, 100.0, 4, 4.0, decay)   # nor an older one
    assert (s.credit, s.windows) == (100.0, 1.0)
    s.add_window(7, 0.0, 0, 4.0, decay)                 # two windows later, an empty one
    assert s.credit == pytest.approx(100.0 * decay ** 2) and s.windows == pytest.approx(decay ** 2 + 1)
    steady = MinerScore(hotkey="hk", uid=1)
    for w in range(2000):
        steady.add_window(w, 50.0, 1, 1.0, decay)
    assert steady.score(2.0, decay, 1999) == pytest.approx(50.0) and steady.proven_bytes() == pytest.approx(50.0)
    # no longer judged (it stopped serving, or took a validator permit): it fades with the window clock
    assert steady.score(2.0, decay, 1999 + 24) == pytest.approx(25.0)
    assert steady.score(2.0, decay, 1999 + 48) == pytest.approx(12.5)


def test_weights_fade_for_a_miner_that_is_no_longer_checked(devnet_root, tmp_path):
    """The review's retiree: a score built, then the miner unserves and deletes its plots. Its
    weight must fall as windows pass without it, not stay frozen."""
    from tensorage.engines.scoring import MinerScore

    v = _validator(devnet_root, tmp_path)
    v.directory.update(v.chain.metagraph())
    hotkeys = [n.hotkey for n in v.metagraph.neurons if not n.validator_permit][:2]
    for w in range(100):
        v.scores.setdefault(hotkeys[0], MinerScore(hotkey=hotkeys[0], uid=0)).add_window(w, 10.0, 1, 1.0, v.decay)
        if w < 60:  # the retiree stops being judged at window 60
            v.scores.setdefault(hotkeys[1], MinerScore(hotkey=hotkeys[1], uid=1)).add_window(w, 10.0, 1, 1.0, v.decay)
        v.last_window = w
    weights = v.weights()
    uids = {n.hotkey: n.uid for n in v.metagraph.neurons}
    assert weights[uids[hotkeys[1]]] < 0.4 * weights[uids[hotkeys[0]]]  # 40 windows idle: decay^40 = 0.31
    v.store.close()


def test_scoring_rules():
    assert poisson_cdf(0, 1.0) == pytest.approx(0.36788, abs=1e-4)
    assert poisson_cdf(3, 2.0) == pytest.approx(0.85712, abs=1e-4)
    assert judge(14, 15.0, 0) == "pass"
    assert judge(0, 15.0, 0) == "fail"        # e^-15: no honest miner returns nothing
    assert judge(20, 15.0, 1) == "fail"       # one invalid proof is cheating
    assert latency_factor(0, 2.0) == 1.0 and latency_factor(2000, 2.0) == pytest.approx(0.8)
    assert normalize({1: 3.0, 2: 1.0, 3: 0.0}) == {1: 0.75, 2: 0.25}
    assert normalize({1: 0.0}) == {}


async def test_a_damaged_stored_listing_does_not_stop_the_validator(devnet_root, tmp_path):
    """A listing row that no longer parses (damaged, or a limit lowered since) is fetched afresh."""
    spec = SubnetSpec.load(devnet_root)
    miner = spec.wallet(devnet_root, spec.of_role("miner")[0]).hotkey.ss58_address
    chain = Devnet.open(devnet_root)
    chain.serve_hotkey(miner, "127.0.0.1", 9)  # serving (nobody listens there)
    chain.close()
    v = _validator(devnet_root, tmp_path)
    v.store.add_listing(miner, "ab" * 32, b"\x12" * 40, 1)  # not a whole number of entries
    v.store.close()
    restarted = _validator(devnet_root, tmp_path)
    try:
        result = await restarted.sync()
        assert "0 with a listing" in result and restarted.miners[miner].error
    finally:
        await restarted.peer_loop.call(restarted.client.close())
        restarted.peer_loop.close()
        restarted._db.shutdown()
        restarted.store.close()
