"""A whole subnet of real processes on the devnet: 3 miners of different sizes, 2 validators.
Weights converge to proven capacity, consensus follows, each miner looks a window up once
for both validators, and nodes survive kill -9."""

from __future__ import annotations

import math
import re
import signal
import statistics
from collections import Counter

import pytest

from tensorage.chain.devnet import Devnet
from tensorage.proofs.plots import estimated_plot_bytes
from tensorage.storage.models import MinerIndex

from .subnet import Subnet, wait_for

# Two minutes of windows on two cores: run with `pytest -m slow`. The default suite keeps kill -9 and
# restarts in test_devnet_up, test_allocator and test_client_data, and sharing in test_auth.
pytestmark = pytest.mark.slow

SIZES = {"miner-0": 0.02, "miner-1": 0.03, "miner-2": 0.05}  # 2, 4 and 7 k=18 plots
VALIDATOR_ARGS = ("--seconds_per_weights", "6")
MIN_ROUNDS = 20


@pytest.fixture(scope="module")
def subnet(tmp_path_factory):
    subnet = Subnet.create(tmp_path_factory.mktemp("subnet") / "devnet", miners=3, validators=2,
                           sizes=tuple(SIZES.values()))
    subnet.allocate_here(SIZES)
    for name, size in SIZES.items():
        subnet.start_miner(name, size, "--logging.debug")  # a shared answer is a debug line
    try:
        wait_for(lambda: subnet.served(list(SIZES)), 60, "miners to serve")
        for v in ("validator-0", "validator-1"):
            subnet.start_validator(v, *VALIDATOR_ARGS)
        yield subnet
    finally:
        subnet.stop_all()


@pytest.fixture(autouse=True)
def whole_subnet(subnet):
    """A test that kills a node starts it again itself; if it fails before that, this does, so
    the next test never finds a node dead because of the one before."""
    yield
    for name, size in SIZES.items():
        if not subnet.alive(name):
            subnet.procs.pop(name, None)
            subnet.start_miner(name, size)
    for v in ("validator-0", "validator-1"):
        if not subnet.alive(v):
            subnet.procs.pop(v, None)
            subnet.start_validator(v, *VALIDATOR_ARGS)


def capacity_share(subnet: Subnet) -> dict[int, float]:
    """What each miner really holds: its verified plots' bytes, as a share of all."""
    held = {}
    for name in SIZES:
        index = MinerIndex(subnet.db_root(name) / "index" / "miner.sqlite")
        held[subnet.uid(name)] = sum(estimated_plot_bytes(p.k) for p in index.plots())
        index.close()
    total = sum(held.values())
    return {uid: b / total for uid, b in held.items()}


def chain_weights(subnet: Subnet) -> dict[int, dict[int, float]]:
    chain = Devnet.open(subnet.root)
    try:
        return chain.weights()
    finally:
        chain.close()


def last_updates(subnet: Subnet, uids: list[int]) -> dict[int, int]:
    """The block each of these uids last set weights at."""
    chain = Devnet.open(subnet.root)
    try:
        return {n.uid: n.last_update for n in chain.metagraph().neurons if n.uid in uids}
    finally:
        chain.close()


def noise_bound(subnet: Subnet, validator: str, name: str, share: float) -> float:
    """How far a weight may sit from the miner's share of capacity by sampling alone: 3.5 standard
    errors of its per-window credit (one more half for the other miners' errors, which the
    normalization mixes in), plus 0.02 for plot-to-plot proof rates. A window samples a few plots
    and finds a Poisson number of proofs on each, so 20 windows leave several percent of noise."""
    credits = [r.credit_bytes for r in subnet.rounds(validator, subnet.hotkey(name))]
    rel_se = statistics.stdev(credits) / statistics.fmean(credits) / math.sqrt(len(credits))
    return 3.5 * share * rel_se + 0.02


def enough_rounds(subnet: Subnet, validator: str, n: int) -> bool:
    return all(len(subnet.rounds(validator, subnet.hotkey(m))) >= n for m in SIZES)


def test_weights_converge_to_proven_capacity_and_incentive_follows(subnet):
    for v in ("validator-0", "validator-1"):
        wait_for(lambda v=v: enough_rounds(subnet, v, MIN_ROUNDS), 150, f"{MIN_ROUNDS} rounds by {v}")
    share = capacity_share(subnet)
    v_uids = [subnet.uid("validator-0"), subnet.uid("validator-1")]
    wait_for(lambda: all(v in chain_weights(subnet) for v in v_uids), 30, "both validators to set weights")
    set_at = last_updates(subnet, v_uids)  # one more weight setting by each, on top of the rounds above
    wait_for(lambda: all(b > set_at[v] for v, b in last_updates(subnet, v_uids).items()), 30,
             "both validators to set weights once more")
    weights = chain_weights(subnet)
    names = {subnet.uid(m): m for m in SIZES}
    bound = {(v, uid): noise_bound(subnet, v, names[uid], expected)
             for v in ("validator-0", "validator-1") for uid, expected in share.items()}
    for v_name, v in zip(("validator-0", "validator-1"), v_uids):
        for uid, expected in share.items():
            got, b = weights[v].get(uid, 0.0), bound[(v_name, uid)]
            print(f"validator {v}: uid {uid} weight {got:.3f}, holds {expected:.3f} (bound ±{b:.3f})")
            assert abs(got - expected) <= b, f"validator {v}: uid {uid} weight {got:.3f}, holds {expected:.3f} ± {b:.3f}"
    chain = Devnet.open(subnet.root)
    try:
        chain.run_epoch(force=True)
        incentive = {n.uid: n.incentive for n in chain.metagraph().neurons}
    finally:
        chain.close()
    for uid, expected in share.items():  # consensus of the two: within the larger of their bounds
        b = max(bound[(v, uid)] for v in ("validator-0", "validator-1"))
        assert abs(incentive[uid] - expected) <= b, (uid, incentive[uid], expected, b)
    assert all(incentive[v] == 0 for v in v_uids)
    for v in ("validator-0", "validator-1"):
        rounds = [r.result for m in SIZES for r in subnet.rounds(v, subnet.hotkey(m))]
        assert rounds.count("pass") >= 0.95 * len(rounds), rounds


def test_a_miner_looks_each_window_up_once_for_every_validator(subnet):
    """Both validators check every window; the miner's disk does the work once a window."""
    wait_for(lambda: enough_rounds(subnet, "validator-1", 5), 60, "rounds by validator-1")
    for name in SIZES:
        log = subnet.log(name)
        fresh = Counter(re.findall(r"\(window (\d+), looked up\)", log))
        shared = Counter(re.findall(r"\(window (\d+), shared answer\)", log))
        assert fresh and max(fresh.values()) == 1, fresh.most_common(3)
        both = [w for w in fresh if shared[w] >= 1]
        assert len(both) >= 0.8 * len(fresh), (name, len(both), len(fresh))


def test_killed_miner_is_unreachable_then_recovers(subnet):
    hotkey = subnet.hotkey("miner-0")

    def ratio() -> float:
        row = subnet.scores("validator-0").get(hotkey)
        return row.returned / row.expected if row and row.expected else 0.0

    before = ratio()
    last_id = subnet.rounds("validator-0", hotkey)[0].id
    subnet.kill("miner-0", signal.SIGKILL)
    wait_for(lambda: sum(r.result == "unreachable" for r in subnet.rounds("validator-0", hotkey) if r.id > last_id) >= 3,
             30, "rounds marking miner-0 unreachable")
    assert ratio() < before
    subnet.start_miner("miner-0", SIZES["miner-0"])
    back_id = subnet.rounds("validator-0", hotkey)[0].id
    wait_for(lambda: any(r.result == "pass" for r in subnet.rounds("validator-0", hotkey) if r.id > back_id),
             40, "miner-0 passing again")
    returned = ratio()
    wait_for(lambda: ratio() > returned + 0.03, 40, "miner-0's score to recover")


def test_validator_killed_mid_round_resumes_with_its_scores(subnet):
    v_hotkey = subnet.hotkey("validator-0")
    before = {h: s.returned / s.expected for h, s in subnet.scores("validator-0").items() if s.expected}
    assert len(before) == 3
    # mid-round: a miner has just answered validator-0, the validator is collecting and verifying
    marker = f"answered {v_hotkey[:8]}"
    seen = subnet.log("miner-2").count(marker)
    wait_for(lambda: subnet.log("miner-2").count(marker) > seen, 20, "validator-0 to start a round", every=0.05)
    subnet.kill("validator-0", signal.SIGKILL)
    after_kill = {h: s.returned / s.expected for h, s in subnet.scores("validator-0").items() if s.expected}
    for hotkey, ratio in before.items():
        assert abs(after_kill[hotkey] - ratio) < 0.15, "scores on disk must survive the kill"
    v_uid = subnet.uid("validator-0")
    weights_before = chain_weights(subnet)[v_uid]
    subnet.start_validator("validator-0", *VALIDATOR_ARGS)
    wait_for(lambda: "restored scores of 3 miners" in subnet.log("validator-0"), 30, "validator-0 to restore scores")
    chain = Devnet.open(subnet.root)
    try:
        block = chain.block()
    finally:
        chain.close()
    wait_for(lambda: min(w["block"] for w in _weight_blocks(subnet, v_uid)) > block, 30, "validator-0 to set weights again")
    weights_after = chain_weights(subnet)[v_uid]
    for uid, w in weights_before.items():
        assert abs(weights_after[uid] - w) <= 0.1 * w + 0.01, (uid, weights_after[uid], w)


def _weight_blocks(subnet: Subnet, uid: int) -> list[dict]:
    chain = Devnet.open(subnet.root)
    try:
        return [{"block": r.block} for r in chain.WeightRow.select().where(chain.WeightRow.validator_uid == uid)]
    finally:
        chain.close()
